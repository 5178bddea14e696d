// AsioZkClient: zk2etcd's own ZooKeeper protocol client, the production ZkClient.
//
// One network thread (standalone asio) owns the TCP connection: it writes pipelined requests,
// at most `max_in_flight` unanswered at a time, reads framed replies, pings, detects dead
// connections, fails over across the servers of the connection string (tried in random order),
// re-establishes the session with its id and password, re-sends credentials and re-registers
// every watch with SetWatches2 frames of at most `set_watches_max_bytes`. It only decodes and
// enqueues: callbacks, watch events and session events run on a separate delivery thread, in the
// order the server answered (see zk_client.h for the contract).
//
// A new session's reads and watch registrations (not its writes, nor what follows a write, and
// nothing once credentials are configured or added) go right behind its ConnectRequest, in the
// same write when they were asked for before the connection was up: the server takes them once
// it has set the session up and answers them right behind the handshake, a round trip sooner. If
// the connection ends before the handshake is answered, they wait for the next connection, as
// anything unsent does (a server may have run them for a session the client never learned of,
// which is harmless for a read or a watch: that session's watches go with it).
//
// A frame that is malformed, truncated or longer than `max_frame_bytes` closes the connection
// with an error that names the problem (logged, and in SessionInfo::last_error and the
// kDisconnected event's reason); the client then reconnects. Nothing the server sends can make
// it allocate more than about `max_frame_bytes` per frame.
//
// Thread-safe (see ZkClient). The Clock, OpObserver and Logger must outlive the client.
#pragma once

#include <atomic>
#include <chrono>
#include <cstdint>
#include <functional>
#include <memory>
#include <string>
#include <utility>
#include <vector>

#include "common/clock.h"
#include "common/op_observer.h"
#include "zk/zk_client.h"

namespace zk2etcd::ops {
class Logger;
}

namespace zk2etcd::zk {

struct ZkClientOptions {
  // "host1:port1,host2:port2/chroot".
  std::string connect_string;
  // Requested; the server clamps it to its min/max session timeout.
  std::chrono::milliseconds session_timeout{10000};
  // Requests sent and not yet answered; more wait in the client, in order.
  size_t max_in_flight = 1024;
  // Server frames longer than this close the connection (ZooKeeper's jute.maxbuffer is 1 MiB
  // by default; replies of getChildren on huge nodes can exceed it, hence the margin).
  size_t max_frame_bytes = 16 * 1024 * 1024;
  // Requests longer than this fail at once with kInvalidArgument, as the server would drop the
  // connection for them (its jute.maxbuffer).
  size_t max_request_bytes = 1024 * 1024 - 1;
  // Each SetWatches2 frame sent after a reconnect stays within this.
  size_t set_watches_max_bytes = 128 * 1024;
  // Use ZooKeeper 3.6+'s multiRead for MultiRead(); when false, or after the server answered
  // Unimplemented, reads are pipelined one by one.
  bool enable_multi_read = true;
  // Report kExpired after the negotiated timeout without reaching any server, rather than only
  // when a server says so after reconnecting (by then the server has expired it anyway).
  bool local_session_expiry = true;
  // After every server failed in turn, wait a random time up to this before the next round.
  std::chrono::milliseconds max_reconnect_delay{1000};
  // Time allowed for each connection attempt (TCP connect and handshake). 0: adaptive, from
  // min(2 s, timeout / 3) doubling after each attempt that timed out, up to min(timeout /
  // servers, 2/3 timeout) (a starting server may accept a connection and never answer it).
  std::chrono::milliseconds connect_timeout{0};
  // Credentials (scheme, credential) sent before anything else on every connection.
  std::vector<std::pair<std::string, std::string>> auth;

  // Injected dependencies; null means the default (system clock, random_device-seeded
  // generator, no observer, no logging).
  const Clock* clock = nullptr;
  std::function<uint64_t()> random;
  OpObserver* observer = nullptr;
  ops::Logger* logger = nullptr;
  // A session beside another one to the same server (ZkClientFactory::NewClientOf: the walk's
  // helpers): its connection lines (lost, attempts, established, expired) are debug lines, since
  // the session it sits beside logs the same outage.
  bool beside_another_session = false;
  // Shared by the clients of one ensemble (copies of these options share it; null: not shared).
  // Set when one of them warns that a connection attempt failed, cleared when one establishes or
  // resumes a session: a new session in the same outage (`sync` opens one after each session
  // timeout, `zk2zk` at each attempt to reach an ensemble) logs its failed attempts at debug
  // level, so that an outage is one warning, not one per session.
  std::shared_ptr<std::atomic<bool>> outage_warned;
};

// Parses the options, starts the client's threads and begins connecting; the handlers see
// kConnected when the session is established. Requests may be issued at once: they wait for
// the connection (failing with kConnectionLoss if none comes within the session timeout).
ZkResult<std::unique_ptr<ZkClient>> NewAsioZkClient(ZkClientOptions options,
                                                    ZkEventHandlers handlers);

// A factory of AsioZkClients with the same options.
std::unique_ptr<ZkClientFactory> NewAsioZkClientFactory(ZkClientOptions options);

}  // namespace zk2etcd::zk

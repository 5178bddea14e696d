// The session logic of the ZooKeeper client, without sockets or threads, so that it can be tested
// with a fake clock: which server to try next (HostList) and what the session does with time
// (SessionMachine): the ConnectRequest of each attempt, the events the owner sees (connected,
// disconnected, reconnected, expired), when to ping (a third of the negotiated timeout without
// sending or hearing), when a connection is dead (two thirds without hearing), when a connection
// attempt has taken too long, and when a session that cannot reach any server must be taken as
// expired (the negotiated timeout without hearing from a server: the server has expired it too).
//
// Not thread-safe: owned by the client's network thread.
#pragma once

#include <chrono>
#include <cstdint>
#include <functional>
#include <optional>
#include <string>
#include <vector>

#include "zk/connect_string.h"
#include "zk/protocol.h"
#include "zk/zk_types.h"

namespace zk2etcd::zk {

// "0x1000a2b3c0000", as ZooKeeper's logs write session ids.
std::string FormatSessionId(int64_t session_id);

// The servers of a connection string in a random order, tried in turn.
class HostList {
 public:
  // REQUIRES: !servers.empty(). `random` returns uniformly distributed 64-bit values; a source
  // that always returns 0 keeps the given order.
  HostList(std::vector<ServerAddress> servers, const std::function<uint64_t()>& random);

  // The server to try next; cycles through all of them.
  const ServerAddress& Next();
  // Connection attempts since the last successful handshake.
  size_t failed_attempts() const { return failed_attempts_; }
  // True when the attempts since the last success have gone round the whole list (the caller
  // then waits a little before the next round).
  bool RoundFailed() const {
    return failed_attempts_ > 0 && failed_attempts_ % servers_.size() == 0;
  }
  void OnAttemptFailed() { ++failed_attempts_; }
  void OnConnected() { failed_attempts_ = 0; }
  size_t size() const { return servers_.size(); }
  const std::vector<ServerAddress>& servers() const { return servers_; }

 private:
  std::vector<ServerAddress> servers_;
  size_t next_ = 0;
  size_t failed_attempts_ = 0;
};

class SessionMachine {
 public:
  using TimePoint = std::chrono::steady_clock::time_point;
  using Duration = std::chrono::steady_clock::duration;

  struct Config {
    std::chrono::milliseconds requested_timeout{10000};
    size_t server_count = 1;
    // Declare the session expired after the negotiated timeout without hearing from any server.
    bool local_expiry = true;
    // A fixed time for each connection attempt (TCP connect and handshake); 0 for the adaptive
    // default (see connect_timeout()).
    std::chrono::milliseconds connect_timeout{0};
  };

  enum class Phase { kConnecting, kConnected, kExpired, kAuthFailed, kClosed };
  enum class Action {
    kNone,
    kSendPing,        // connected and idle for a third of the timeout
    kConnectionDead,  // connected but nothing heard for two thirds of the timeout
    kConnectTimeout,  // an attempt (TCP connect + handshake) took too long
    kExpire,          // no server heard for the whole negotiated timeout
  };

  explicit SessionMachine(Config config);

  // Starts an attempt at `now` and returns the ConnectRequest to send.
  // REQUIRES: phase() == kConnecting.
  proto::ConnectRequest BeginAttempt(TimePoint now);
  // The attempt failed before a handshake (refused, reset, bad frame, or `timed_out`).
  void OnAttemptFailed(bool timed_out = false);
  // The server's answer to the ConnectRequest: kConnected (first session), kReconnected (same
  // session) or kExpired (the server no longer knows the session).
  SessionEvent OnConnectResponse(const proto::ConnectResponse& response, TimePoint now,
                                 const std::string& server);
  // A connected connection ended. Returns the kDisconnected event.
  // REQUIRES: phase() == kConnected.
  SessionEvent OnConnectionLost(TimePoint now, const std::string& server, std::string reason);

  void OnSend(TimePoint now) { last_send_ = now; }
  void OnPingSent(TimePoint now) {
    last_send_ = now;
    last_ping_ = now;
  }
  void OnReceive(TimePoint now) { last_receive_ = now; }
  // A reply header's zxid (ignored if not larger than what was seen).
  void OnZxid(int64_t zxid) {
    if (zxid > last_zxid_) last_zxid_ = zxid;
  }

  // What the client must do now.
  Action Poll(TimePoint now) const;
  // When Poll() may next return something other than kNone (the client's timer).
  TimePoint NextDeadline(TimePoint now) const;

  // Terminal transitions.
  SessionEvent Expire(std::string reason);
  void MarkAuthFailed() { phase_ = Phase::kAuthFailed; }
  void MarkClosed() { phase_ = Phase::kClosed; }

  Phase phase() const { return phase_; }
  bool terminal() const {
    return phase_ == Phase::kExpired || phase_ == Phase::kAuthFailed || phase_ == Phase::kClosed;
  }
  bool has_session() const { return session_id_ != 0; }
  int64_t session_id() const { return session_id_; }
  int64_t last_zxid() const { return last_zxid_; }
  // The negotiated timeout once a session exists, the requested one before.
  std::chrono::milliseconds timeout() const;
  Duration ping_interval() const { return timeout() / 3; }
  Duration read_timeout() const { return timeout() * 2 / 3; }
  // How long the current attempt may take. A healthy server answers a handshake in
  // milliseconds, but a starting one may accept the connection and never answer; so the first
  // attempt gets min(2 s, a third of the timeout), and each attempt after one that timed out
  // twice as long, up to min(timeout / servers, two thirds of the timeout).
  Duration connect_timeout() const;

 private:
  Config config_;
  Phase phase_ = Phase::kConnecting;
  int64_t session_id_ = 0;
  std::string password_;
  std::chrono::milliseconds negotiated_timeout_{0};
  int64_t last_zxid_ = 0;
  bool attempt_active_ = false;
  int timed_out_attempts_ = 0;  // consecutive
  TimePoint attempt_started_{};
  TimePoint last_send_{};
  TimePoint last_receive_{};
  TimePoint last_ping_{};
};

}  // namespace zk2etcd::zk

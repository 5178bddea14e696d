// The production EtcdClient: etcd's v3 gRPC API through Debian's gRPC C++.
//
// One channel per endpoint (plus txn_connections - 1 for transactions, far_txn_connections - 1
// when etcd is far); calls go to a preferred
// endpoint and move to the next one when it fails (so a DNS name per member works, as in
// --etcd-servers). Every call runs asynchronously on one completion queue served by one client
// thread, which also runs the callbacks; synchronous methods wait for their asynchronous call.
// Transactions in flight are bounded by a window. Failed calls are retried with exponential backoff
// and jitter when a repeat is safe (see CallOptions); an expired or rejected auth token is renewed
// once per call. Watches, lease keep-alives and election observers are streams that reconnect on
// their own.
//
// Deadlines and timers use the real time (gRPC requires it); the injected Clock measures the
// durations reported to the OpObserver and the lease renewal age. Thread-safe; destroying the
// client cancels everything in flight (callbacks get kCancelled) and joins its thread.
// REQUIRES: not destroyed on its own callback thread.
#pragma once

#include <atomic>
#include <chrono>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "common/backoff.h"
#include "common/clock.h"
#include "common/op_observer.h"
#include "common/result.h"
#include "etcd/etcd_client.h"

namespace zk2etcd::ops {
class Logger;
}  // namespace zk2etcd::ops

namespace zk2etcd::etcd {

struct TlsOptions {
  std::string ca_file;    // PEM; empty: the system's roots
  std::string cert_file;  // PEM client certificate; with key_file, or neither
  std::string key_file;
  // The name to check the server certificate against, instead of the endpoint's host.
  std::string server_name_override;
};

struct GrpcEtcdClientOptions {
  // "host:port", "http://host:port" or "https://host:port" (https implies TLS).
  std::vector<std::string> endpoints;
  std::optional<TlsOptions> tls;
  // With a user, the client exchanges user and password for a token (Auth.Authenticate) and
  // renews it when etcd rejects it.
  std::string user;
  std::string password;
  // The factory waits this long for a first connection (and authentication) and fails with the
  // last error if none succeeds; it fails at once when every endpoint has failed a connection
  // attempt (refused, reset, TLS refused), so that the caller's retries say so and pace the next
  // dial. Zero: do not wait; calls connect on demand. It is also the time each connection
  // attempt (TCP, TLS, HTTP/2 settings) of the main channels is given, at least 1 s (5 s when
  // zero): raise it for an etcd whose round trips are long. The transaction connections to the
  // endpoint the dial reached get three times that dial (at least 100 ms, at most this).
  std::chrono::milliseconds dial_timeout{5000};
  // When set and true, the factory stops waiting for that first connection and fails with
  // kCancelled (a SIGTERM while the servers do not answer). Not owned; read only by the factory.
  const std::atomic<bool>* cancel_dial = nullptr;
  // Deadline of each attempt of a call (Campaign has none).
  std::chrono::milliseconds call_timeout{10000};
  // Attempts per call, across endpoints, when retrying is allowed.
  int max_attempts = 4;
  // Between attempts of a call and watch reconnects: 50 ms doubling up to 2 s, each delay less a
  // random part of up to half (jitter from `random`).
  BackoffOptions backoff{.initial = std::chrono::milliseconds(50),
                         .max = std::chrono::milliseconds(2000),
                         .multiplier = 2.0,
                         .jitter = 0.5,
                         .jitter_direction = JitterDirection::kDown};
  // The window: transactions sent and not yet answered.
  int max_txns_in_flight = 4;
  int max_txn_ops = kDefaultMaxTxnOps;
  // Connections per endpoint that transactions are spread over, round-robin (every other call
  // uses the first). etcd's HTTP/2 receive window is per connection, starts at 64 KiB and grows
  // only a round trip at a time, so through one connection a burst of transactions trickles at
  // about 64 KiB per round trip. Through 30 ms round trips, 2,251 repairs (3 MB of transactions)
  // took 0.35 s on 1 connection, 0.22 s on 4, 0.16 s on 8 and 0.10 s on 32 in transactions of
  // up to 1 MiB; in 56 KiB ones (connectors/etcd/etcd_sink.h) 0.16 s on 8, 0.11 s on 16 and
  // 0.08 s on 32 and on 64 (docs/BENCHMARKS.md). Near etcd the window is no limit, and 32
  // connections cost 6 ms at start-up on loopback; so `txn_connections` to begin with, and
  // `far_txn_connections` once the dial of the first endpoint has taken `far_dial` or longer (at
  // least one round trip: TCP's handshake, then HTTP/2's settings; a name to resolve and a TLS
  // handshake count too). A dial that settles on another endpoint, whose first endpoint failed a
  // connection attempt first (it was not up yet), or none (dial_timeout <= 0), keeps
  // `txn_connections`. The extra connections of the endpoint the factory dials start
  // connecting at once; others connect on their first transaction. At least 1.
  int txn_connections = 8;
  int far_txn_connections = 32;
  std::chrono::milliseconds far_dial{5};
  // HTTP/2 keep-alive pings, which detect a dead server under an idle watch. etcd refuses pings
  // more frequent than every 5 s.
  std::chrono::milliseconds keepalive_time{10000};
  std::chrono::milliseconds keepalive_timeout{5000};
  // Optional; not owned; must outlive the client.
  OpObserver* observer = nullptr;
  ops::Logger* logger = nullptr;
  // Jitter source; DefaultRandomSource() when empty.
  RandomSource random;
};

// Builds channels (reading the TLS files), then dials as dial_timeout says. Errors:
// kInvalidArgument (no endpoints, unreadable files, mixed http/https), kUnavailable or kTlsFailed
// (every endpoint failed an attempt, or none was reachable within dial_timeout), kAuthFailed,
// kCancelled (cancel_dial was set).
Result<std::unique_ptr<EtcdClient>, Error> NewGrpcEtcdClient(GrpcEtcdClientOptions options,
                                                             const Clock& clock);

}  // namespace zk2etcd::etcd

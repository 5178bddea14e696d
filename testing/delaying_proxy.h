// DelayingTcpProxy: a userspace TCP proxy on 127.0.0.1 that makes a loopback server look like one
// behind a slow, slightly lossy network, for benchmarks and tests.
//
// Every chunk read from one side (what one recv() returned) is forwarded to the other side
// `one_way_delay` later; a seeded random `hold_fraction` of chunks is held `hold` longer, as a
// packet that had to be retransmitted would be. Byte order per direction is kept: a held chunk
// also delays every chunk behind it on that connection (head-of-line blocking, as TCP does).
// Bytes are never changed, dropped or reordered. Each accepted connection opens its own
// connection to 127.0.0.1:target_port.
//
// One thread with poll() and non-blocking sockets; up to `max_queued_bytes` per direction are
// buffered (past that the proxy stops reading that side, so the sender sees back-pressure).
// Thread-safety: the public methods may be called from any thread; the destructor stops the
// thread and closes every connection.
#pragma once

#include <atomic>
#include <chrono>
#include <cstdint>
#include <memory>
#include <string>
#include <thread>
#include <vector>

#include "testing/process.h"

namespace zk2etcd::testing {

struct DelayingProxyOptions {
  std::chrono::microseconds one_way_delay{15000};  // added to every chunk, each direction
  double hold_fraction = 0.005;                    // chunks held longer (0..1)
  std::chrono::microseconds hold{200000};          // how much longer
  uint64_t seed = 1;                               // of the random choice of held chunks
  size_t max_queued_bytes = 16 << 20;              // per direction of a connection
  int listen_port = 0;                             // 0: a free port
};

class DelayingTcpProxy {
 public:
  struct Stats {
    uint64_t connections = 0;  // accepted and connected to the target
    uint64_t chunks = 0;       // forwarded or queued, both directions
    uint64_t held_chunks = 0;  // of those, held `hold` longer
    uint64_t bytes = 0;
  };

  // Listens on 127.0.0.1 on `options.listen_port` (a free one if 0) and starts the proxy thread.
  static FixtureResult<std::unique_ptr<DelayingTcpProxy>> Start(int target_port,
                                                                DelayingProxyOptions options);
  ~DelayingTcpProxy();
  DelayingTcpProxy(const DelayingTcpProxy&) = delete;
  DelayingTcpProxy& operator=(const DelayingTcpProxy&) = delete;

  int port() const { return port_; }
  std::string address() const { return "127.0.0.1:" + std::to_string(port_); }
  Stats stats() const;

 private:
  struct Connection;
  DelayingTcpProxy(int listen_fd, int port, int target_port, DelayingProxyOptions options);
  void Loop();
  void Accept();

  const int listen_fd_;
  const int port_;
  const int target_port_;
  const DelayingProxyOptions options_;
  int wake_pipe_[2] = {-1, -1};  // the destructor writes to stop poll() at once
  std::atomic<uint64_t> connections_{0};
  std::atomic<uint64_t> chunks_{0};
  std::atomic<uint64_t> held_chunks_{0};
  std::atomic<uint64_t> bytes_{0};
  std::vector<std::unique_ptr<Connection>> connections_list_;  // proxy thread only
  std::thread thread_;
};

}  // namespace zk2etcd::testing

// Loopback networking helpers for fixtures: free ports and a one-shot TCP exchange used to probe
// whether a server is ready. Blocking; thread-safe.
#pragma once

#include <chrono>
#include <memory>
#include <string>

#include "testing/process.h"

namespace zk2etcd::testing {

// A TCP port on 127.0.0.1 that was free a moment ago (bound to port 0, then released).
FixtureResult<int> PickFreePort();

// Connects to 127.0.0.1:port, sends `request`, and reads until the peer closes, `enough` bytes
// arrived, or `timeout` passes. Fails if the connection cannot be made or nothing was received.
FixtureResult<std::string> TcpExchange(int port, const std::string& request,
                                       std::chrono::milliseconds timeout, size_t enough = 65536);

// A server that takes connections and never answers (an etcd or ZooKeeper that is paused or
// hangs): 127.0.0.1:port() listens, and the kernel completes each TCP handshake into the backlog,
// which is never accepted. Closed on destruction.
class SilentListener {
 public:
  static FixtureResult<std::unique_ptr<SilentListener>> Start();
  ~SilentListener();
  SilentListener(const SilentListener&) = delete;
  SilentListener& operator=(const SilentListener&) = delete;
  int port() const { return port_; }
  std::string address() const { return "127.0.0.1:" + std::to_string(port_); }

 private:
  SilentListener(int fd, int port) : fd_(fd), port_(port) {}
  int fd_;
  int port_;
};

}  // namespace zk2etcd::testing

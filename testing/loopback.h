// Loopback networking helpers for fixtures: free ports and a one-shot TCP exchange used to probe
// whether a server is ready. Blocking; thread-safe.
#pragma once

#include <chrono>
#include <string>

#include "testing/process.h"

namespace zk2etcd::testing {

// A TCP port on 127.0.0.1 that was free a moment ago (bound to port 0, then released).
FixtureResult<int> PickFreePort();

// Connects to 127.0.0.1:port, sends `request`, and reads until the peer closes, `enough` bytes
// arrived, or `timeout` passes. Fails if the connection cannot be made or nothing was received.
FixtureResult<std::string> TcpExchange(int port, const std::string& request,
                                       std::chrono::milliseconds timeout, size_t enough = 65536);

}  // namespace zk2etcd::testing

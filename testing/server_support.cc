#include "testing/server_support.h"

#include <thread>

namespace zk2etcd::testing {

FixtureResult<void> WaitUntilReady(ChildProcess& process, const std::string& what,
                                   const std::string& log_path,
                                   const std::function<bool()>& ready,
                                   std::chrono::milliseconds timeout) {
  const auto start = std::chrono::steady_clock::now();
  while (true) {
    if (ready()) return {};
    if (process.HasExited()) {
      return Unexpected{FixtureError{what + " exited during start-up; log " + log_path +
                                     " ends with:\n" + TailOfFile(log_path)}};
    }
    if (std::chrono::steady_clock::now() - start > timeout) {
      process.Kill9();
      return Unexpected{FixtureError{what + " not ready after " +
                                     std::to_string(timeout.count()) + " ms; log " + log_path +
                                     " ends with:\n" + TailOfFile(log_path)}};
    }
    std::this_thread::sleep_for(std::chrono::milliseconds(20));
  }
}

}  // namespace zk2etcd::testing

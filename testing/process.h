// Child processes for test fixtures: real servers (ZooKeeper, etcd, Redis) and short commands
// (openssl, etcdctl).
//
// Every child is forked by one long-lived thread and asks the kernel to SIGKILL it when that
// thread dies (PR_SET_PDEATHSIG), i.e. when the test process exits, crashes or is killed: no
// server outlives the test binary, whatever happens to it. Thread-safe.
#pragma once

#include <sys/types.h>

#include <chrono>
#include <string>
#include <vector>

#include "common/result.h"

namespace zk2etcd::testing {

// An error from a fixture. `missing_program` is set when the server or tool is not installed,
// which outside CI makes a test skip instead of fail.
struct FixtureError {
  std::string message;
  bool missing_program = false;
};

template <typename T>
using FixtureResult = Result<T, FixtureError>;

// True when the CI environment variable is "true" (a missing server is then always a failure).
bool InCi();

// Finds `program` in PATH (or checks an absolute path).
bool ProgramExists(const std::string& program);

class ChildProcess {
 public:
  ChildProcess() = default;
  ChildProcess(const ChildProcess&) = delete;
  ChildProcess& operator=(const ChildProcess&) = delete;
  // Kills (SIGKILL) and reaps the child if still running.
  ~ChildProcess();

  // Starts argv[0] (looked up in PATH) with stdout and stderr appended to `log_path`, or, when
  // `log_path` is empty, shared with this process. REQUIRES: not running.
  FixtureResult<void> Start(std::vector<std::string> argv, const std::string& log_path);

  bool running() const { return pid_ > 0; }
  pid_t pid() const { return pid_; }
  // Whether the child has exited (reaps it if so). REQUIRES: running().
  bool HasExited();
  // Waits up to `timeout` for the child to exit and reaps it; returns its wait status, or -1 if
  // it is still running. REQUIRES: running().
  int WaitFor(std::chrono::milliseconds timeout);

  void Kill9();              // SIGKILL and reap; no-op when not running
  void Terminate(std::chrono::milliseconds grace);  // SIGTERM, then SIGKILL after `grace`
  // SIGSTOP / SIGCONT; each returns once every thread of the process is stopped / running
  // again (read from /proc), or after 10 s.
  void Pause();
  void Resume();

 private:
  void Reap();
  pid_t pid_ = -1;
};

// Runs a short command to completion and returns its combined output; fails when it exits
// non-zero or runs longer than `timeout` (then it is killed).
FixtureResult<std::string> RunCommand(const std::vector<std::string>& argv,
                                      std::chrono::milliseconds timeout);

// Last `max_bytes` of a file, for error messages about a server that failed.
std::string TailOfFile(const std::string& path, size_t max_bytes = 2000);

}  // namespace zk2etcd::testing

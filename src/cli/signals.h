// SignalWaiter: how a long-running command reacts to SIGINT, SIGTERM and SIGHUP in a
// multi-threaded process: the signals are blocked in every thread started after the waiter is
// constructed, and one thread of its own waits for them (sigwait) and runs the command's
// callbacks. Construct it before any thread starts; destroy it on the thread that built it.
#pragma once

#include <pthread.h>
#include <signal.h>

#include <atomic>
#include <functional>
#include <thread>

namespace zk2etcd::cli {

// Blocks SIGINT, SIGTERM and SIGHUP in every thread started from now on, and lets one thread
// wait for them: the safe way to react to signals in a multi-threaded process.
class SignalWaiter {
 public:
  SignalWaiter() {
    sigemptyset(&set_);
    sigaddset(&set_, SIGINT);
    sigaddset(&set_, SIGTERM);
    sigaddset(&set_, SIGHUP);
    pthread_sigmask(SIG_BLOCK, &set_, &previous_);
  }
  ~SignalWaiter() {
    done_.store(true);
    if (thread_.joinable()) {
      pthread_kill(thread_.native_handle(), SIGHUP);  // wakes the sigwait
      thread_.join();
    }
    pthread_sigmask(SIG_SETMASK, &previous_, nullptr);
  }
  // `on_stop` runs (on the waiter thread) for SIGINT or SIGTERM, `on_reload` for SIGHUP.
  void Start(std::function<void(int)> on_stop, std::function<void()> on_reload) {
    thread_ = std::thread([this, on_stop = std::move(on_stop), on_reload = std::move(on_reload)] {
      while (!done_.load()) {
        int signal = 0;
        if (sigwait(&set_, &signal) != 0 || done_.load()) return;
        if (signal == SIGHUP) {
          on_reload();
        } else {
          on_stop(signal);
          return;
        }
      }
    });
  }

 private:
  sigset_t set_{};
  sigset_t previous_{};
  std::atomic<bool> done_{false};
  std::thread thread_;
};

}  // namespace zk2etcd::cli

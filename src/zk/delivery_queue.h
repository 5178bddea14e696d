// The delivery thread of AsioZkClient: callbacks, watch events and session events run there, one
// at a time, in the order they were queued, so that the network thread only decodes and queues.
// Completion is a unit of work for it; MakeCompletion wraps a function. Internal to AsioZkClient.
//
// Thread-safety: DeliveryQueue is thread-safe (a mutex guards the queue); completions run on its
// thread only, which StopAndJoin lets finish what is queued before it ends.
#pragma once

#include <condition_variable>
#include <memory>
#include <mutex>
#include <thread>
#include <utility>
#include <vector>

namespace zk2etcd::zk::detail {

// Work for the delivery thread.
class Completion {
 public:
  virtual ~Completion() = default;
  virtual void Run() = 0;
};

template <typename F>
class FunctionCompletion final : public Completion {
 public:
  explicit FunctionCompletion(F f) : f_(std::move(f)) {}
  void Run() override { f_(); }

 private:
  F f_;
};

template <typename F>
std::unique_ptr<Completion> MakeCompletion(F f) {
  return std::make_unique<FunctionCompletion<F>>(std::move(f));
}

// The delivery thread: runs completions one at a time, in the order they were pushed.
class DeliveryQueue {
 public:
  DeliveryQueue() : thread_([this] { Loop(); }) {}
  ~DeliveryQueue() { StopAndJoin(); }

  // Queues `completion` and returns true, or returns false (leaving it) once the thread ended.
  bool TryPush(std::unique_ptr<Completion>& completion);

  // REQUIRES: the thread has not ended (the client pushes only before it stops the queue).
  void PushAll(std::vector<std::unique_ptr<Completion>>& batch);

  // Lets the thread run everything queued (and whatever that queues), then end; joins it unless
  // called on it.
  void StopAndJoin();

  bool OnDeliveryThread() const { return std::this_thread::get_id() == thread_.get_id(); }

 private:
  void Loop();

  std::mutex mutex_;
  std::condition_variable cv_;
  std::vector<std::unique_ptr<Completion>> queue_;
  bool stopping_ = false;
  bool finished_ = false;
  std::mutex join_mutex_;
  std::thread thread_;  // last: starts after the rest is constructed
};

}  // namespace zk2etcd::zk::detail

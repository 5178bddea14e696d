// OwnershipRecorder: keeps the ownership store (ownership_store.h) up to date for the
// incremental sync without ever making its caller wait for the store.
//
// Record() and Forget() only enqueue: per key the latest request wins (a Forget after a Record of
// the same key replaces it), and a worker thread sends what is queued in batches (one Record and
// one Forget call per batch). The worker knows whether the store answers: any failed call makes
// it unreachable; the failed updates stay queued (unless a newer one for the key came meanwhile),
// and the worker pings the store with backoff until it answers, then calls `on_reachable` and
// sends the queue again. ConfirmReachable() asks the worker whether the store answers now, for a
// delete that must not happen while it does not (design §2): while the store is known to be
// unreachable the answer is "no" at once, otherwise the worker pings it. Every call to the store,
// each bounded by the store's own timeout, happens on the worker thread.
//
// Thread-safe. Callbacks run on the worker thread, one at a time, never under the recorder's
// lock, in the order the worker saw things happen (a "no" from ConfirmReachable always comes
// before the `on_reachable` that follows it). After Stop(), ConfirmReachable answers "no" on
// the caller's thread and updates are dropped.
#pragma once

#include <chrono>
#include <condition_variable>
#include <cstdint>
#include <functional>
#include <mutex>
#include <string>
#include <thread>
#include <unordered_map>
#include <vector>

#include "common/backoff.h"
#include "common/clock.h"
#include "ownership/ownership_store.h"

namespace zk2etcd::ownership {

struct OwnershipRecorderOptions {
  // Keys per Record or Forget call.
  size_t batch_size = 1000;
  // Pings while the store is unreachable: the first after initial_backoff, then doubling up to
  // max_backoff. The store is noticed back within max_backoff of answering.
  std::chrono::milliseconds initial_backoff{100};
  std::chrono::milliseconds max_backoff{1000};
  // The store answered again after a failure.
  std::function<void()> on_reachable;
  // A call failed while the store was reachable: updates wait and deletes are refused from now.
  std::function<void(const OwnershipError&)> on_unreachable;
};

class OwnershipRecorder {
 public:
  // Starts the worker. `store` and `clock` must outlive the recorder.
  OwnershipRecorder(OwnershipStore& store, const Clock& clock, OwnershipRecorderOptions options);
  // Stop()s.
  ~OwnershipRecorder();
  OwnershipRecorder(const OwnershipRecorder&) = delete;
  OwnershipRecorder& operator=(const OwnershipRecorder&) = delete;

  // Queues "key was written with value" / "key was deleted". Never blocks on the store.
  void Record(std::string key, std::string value);
  void Forget(std::string key);
  // Calls done(true) once the store has answered a ping sent after this call, done(false) if the
  // store is known to be unreachable or that ping fails.
  void ConfirmReachable(std::function<void(bool reachable)> done);
  // Someone else saw the store fail (the reconciler): the worker treats it as unreachable, pings
  // it with backoff and calls on_reachable when it answers.
  void ReportUnreachable(const OwnershipError& error);

  // Answers waiting confirmations with "no", sends what is queued if the store is reachable
  // (giving up at the first failure), and stops the worker. Waits for at most one call that
  // does not answer (the store's timeout). Returns how many updates were never sent. Idempotent.
  size_t Stop();

  // Updates queued or being sent.
  size_t queued() const;
  // Whether the last call to the store succeeded (true before the first call).
  bool reachable() const;

 private:
  struct Update {
    bool forget = false;
    std::string value;
  };
  using Batch = std::vector<std::pair<std::string, Update>>;

  void WorkerLoop();
  // Sends one batch (reordered: records first); false if the store failed, with the updates
  // from `failed_from` on not applied. REQUIRES: mutex_ not held.
  bool Send(Batch& batch, size_t& failed_from, OwnershipError& error);
  // Takes up to batch_size updates off the queue. REQUIRES: mutex_ held.
  Batch TakeBatchLocked();
  // Queues failed updates again, except where a newer one came meanwhile. REQUIRES: mutex_ held.
  void RequeueLocked(Batch batch, size_t from);
  // REQUIRES: mutex_ held.
  void BecomeUnreachableLocked();
  // Answers the confirmations in `waiters`. REQUIRES: mutex_ not held.
  static void Answer(std::vector<std::function<void(bool)>>& waiters, bool reachable);

  OwnershipStore& store_;
  const Clock& clock_;
  const OwnershipRecorderOptions options_;

  mutable std::mutex mutex_;
  std::condition_variable wake_;
  std::unordered_map<std::string, Update> pending_;
  size_t in_flight_ = 0;
  std::vector<std::function<void(bool)>> waiters_;
  bool reachable_ = true;
  // Pings while unreachable: initial_backoff doubling up to max_backoff, without jitter.
  Backoff backoff_{{.initial = options_.initial_backoff,
                    .max = options_.max_backoff,
                    .multiplier = 2.0}};
  std::chrono::steady_clock::time_point next_ping_at_{};
  bool stopping_ = false;
  bool stopped_ = false;
  size_t dropped_ = 0;
  std::mutex stop_mutex_;  // serializes Stop() calls
  std::thread worker_;
};

}  // namespace zk2etcd::ownership

// FencedWriter: turns a stream of fenced writes (core/sink.h) into batches applied by a sink, with
// a bounded number in flight, retried until the sink takes them.
//
// Submit() queues a write; a sender thread packs queued writes into batches (within the sink's
// BatchLimits for the write's batch class, never the same key twice in one, never two batch
// classes in one) as soon as the window has room, so a lone write goes out at once and a burst
// goes out in full batches (group commit). A batch that fails with a retryable error is sent
// again after a backoff: fenced writes are safe to repeat. A batch refused for a reason a repeat
// cannot fix is halved until only the refused writes fail. A write the sink skipped because its
// source entry is going (core::WriteAnswer::skipped) completes as kStale: the change that removes
// the entry follows. Lost leadership completes the writes with an error, unless the batch carried
// an earlier leadership of this process than the one now set (it waited out an outage in which
// the lock was lost and won again): then it goes again under the current fence. When the sink's
// answer asks for a write again in another variant (a cheaper form whose guard no longer held, or
// a form for large values), it goes again, in order.
//
// Each write's callback runs exactly once, on the writer's sender thread, never under the
// writer's lock; so do the lines of the failure log (FencedWriterOptions::logger). Thread-safe.
#pragma once

#include <chrono>
#include <condition_variable>
#include <cstdint>
#include <deque>
#include <functional>
#include <mutex>
#include <optional>
#include <string>
#include <thread>

#include "common/backoff.h"
#include "common/clock.h"
#include "common/rate_limiter.h"
#include "common/result.h"
#include "core/sink.h"
#include "ops/failure_log.h"
#include "ops/log.h"
#include "sync/window_sizer.h"

namespace zk2etcd::sync {

struct WriteError {
  enum class Code {
    kNotLeader,  // the leadership fence failed: this process no longer leads
    kRefused,    // the sink refused the write for a reason a repeat cannot fix
    kStopped,    // the writer stopped before the write was applied
  };
  Code code = Code::kRefused;
  std::optional<core::SinkError> sink_error;
  std::string message;
  // kNotLeader: the fence the write was sent under (a failure of an earlier leadership of this
  // process says nothing about the current one). Unset for unfenced writes.
  std::optional<core::Fence> fence = std::nullopt;
};

using WriteResult = Result<core::WriteOutcome, WriteError>;

struct FencedWriterOptions {
  // Caps on the sink's BatchLimits (0: the sink's own).
  size_t max_writes_per_batch = 0;
  size_t max_batch_bytes = 0;
  // The most batches in flight. The window itself is sized by bandwidth-delay between
  // min(8, this) and this (window_sizer.h): a near sink keeps the small window, a distant one
  // gets as many as one round trip needs.
  size_t max_txns_in_flight = 4;
  // The most bytes of batches in flight (as the sink counts them: core::WriteCost), whatever the
  // window says; a batch goes whenever nothing is in flight. The window starts at its largest:
  // with values near ZooKeeper's 1 MiB limit, 64 batches would hold 64 MiB.
  size_t max_bytes_in_flight = 16 << 20;
  std::chrono::milliseconds initial_backoff{100};
  // Small enough that writes resume within a fraction of a second of the sink answering again;
  // a retry against a server that refuses connections costs next to nothing.
  std::chrono::milliseconds max_backoff{500};
  uint64_t jitter_seed = 0x5eed;
  // When set, every batch takes its writes from this limiter and waits as it says
  // (--max-write-rate). Must outlive the writer.
  RateLimiter* rate_limiter = nullptr;
  // When set, failed batches that are retried are logged, from the sender thread: a warning with
  // the sink's error when they start ("<sink> writes failing; retrying") and while they go on
  // ("<sink> writes still failing; retrying"), at most one warning every `failure_log_period`
  // however the failures come and go, and an info line when a batch is applied after a warned
  // failure ("<sink> writes applied again"). Must outlive the writer.
  ops::Logger* logger = nullptr;
  std::chrono::seconds failure_log_period{60};
  std::string log_name;  // the sink, as the lines name it (empty: Sink::Name())
};

class FencedWriter {
 public:
  using Done = std::function<void(const WriteResult&)>;
  // Called once per batch attempt, for metrics: how many writes it carried, whether the sink
  // answered (and its error), and how long it took.
  using TxnObserver = std::function<void(size_t writes, const std::optional<core::SinkError>& error,
                                         std::chrono::nanoseconds duration)>;
  // Called once per write that the sink refused on its own, for metrics, just before that
  // write's callback (which gets kRefused); runs on the sender thread, never under the lock.
  using RefusalObserver =
      std::function<void(const core::SinkWrite& write, const core::SinkError& error)>;

  FencedWriter(core::Sink& sink, FencedWriterOptions options, const Clock& clock,
               TxnObserver observer = nullptr, RefusalObserver on_refused = nullptr);
  // Stop()s.
  ~FencedWriter();
  FencedWriter(const FencedWriter&) = delete;
  FencedWriter& operator=(const FencedWriter&) = delete;

  void Submit(core::SinkWrite write, Done done);
  // Writes are fenced by this leadership from the next batch on (nullopt: no fence).
  void SetLeader(std::optional<core::Fence> leader);

  // Waits until every write submitted before the call has completed, or `timeout` passes.
  // Returns whether everything completed.
  bool Drain(std::chrono::milliseconds timeout);
  // Completes every queued write with kStopped, waits for the transactions in flight, and stops
  // the sender thread. Later Submits complete at once with kStopped.
  void Stop();

  // Writes queued or in flight.
  size_t pending() const;
  // Whether the last batch attempt failed and writes are waiting to be retried.
  bool retrying() const;
  // When the writes of the last failed attempt may go again (on the writer's clock); set when the
  // failure is handled, kept until an attempt succeeds.
  std::chrono::steady_clock::time_point retry_at() const;
  // Writes that the sink refused on their own (completed with kRefused).
  uint64_t refused_writes() const;
  // Writes sent again in another variant because the sink's answer asked for it.
  uint64_t resends() const;

 private:
  struct Entry {
    core::SinkWrite write;
    Done done;
    int variant = 0;  // the sink's form for the write
    // The largest batch the write may go in: halved each time the sink refuses one that
    // carries it, until it goes alone.
    size_t max_batch = SIZE_MAX;
  };
  struct Completion {
    Completion(Done done_in, WriteResult result_in,
               std::optional<core::SinkWrite> refused_in = std::nullopt)
        : done(std::move(done_in)), result(std::move(result_in)), refused(std::move(refused_in)) {}
    Done done;
    WriteResult result;
    std::optional<core::SinkWrite> refused;  // for on_refused_: the write the sink refused
  };

  void SenderLoop();
  // Takes the next batch off the queue: writes of the first queued one's batch class; sets
  // `bytes` to its size as the sink counts it. REQUIRES: mutex_ held.
  std::vector<Entry> TakeBatchLocked(size_t* bytes);
  // `fence`: the leadership the batch was sent under.
  void OnBatchDone(std::vector<Entry> batch, size_t bytes, WindowSizer::Ticket ticket,
                   core::BatchResult result, std::chrono::steady_clock::time_point started,
                   const std::optional<core::Fence>& fence);
  // Notes a batch's answer in the failure log's state, queueing a line for the sender thread to
  // log when one is due (FencedWriterOptions::logger). REQUIRES: mutex_ held.
  void NoteForFailureLogLocked(const core::BatchResult& result,
                               std::chrono::steady_clock::time_point now);
  // Completes, requeues or splits the writes of a finished batch. REQUIRES: mutex_ held.
  void HandleBatchDoneLocked(std::vector<Entry>& batch, const core::BatchResult& result,
                             const std::optional<core::Fence>& fence);

  core::Sink& sink_;
  const FencedWriterOptions options_;
  const Clock& clock_;
  const TxnObserver observer_;
  const RefusalObserver on_refused_;

  mutable std::mutex mutex_;
  std::condition_variable wake_;       // sender: queue, window or stop changed
  std::condition_variable completed_;  // Drain: something completed
  std::deque<Entry> queue_;
  std::deque<Completion> completions_;
  size_t in_flight_txns_ = 0;
  WindowSizer window_;  // how many transactions may be in flight
  size_t in_flight_writes_ = 0;
  size_t in_flight_bytes_ = 0;
  uint64_t submitted_ = 0;
  uint64_t finished_ = 0;
  uint64_t refused_writes_ = 0;
  uint64_t resends_ = 0;
  std::optional<core::Fence> leader_;
  // Retries while the sink fails: initial_backoff doubling up to max_backoff, each delay plus a
  // random part of up to half of it.
  Backoff backoff_{{.initial = options_.initial_backoff,
                    .max = options_.max_backoff,
                    .multiplier = 2.0,
                    .jitter = 0.5,
                    .jitter_direction = JitterDirection::kUp,
                    .seed = options_.jitter_seed}};
  std::chrono::steady_clock::time_point retry_at_{};
  std::chrono::steady_clock::time_point rate_ready_at_{};  // the rate limiter's
  bool stopping_ = false;

  // The failure log (NoteForFailureLogLocked; with a logger only), and the lines the sender
  // thread logs next.
  std::optional<ops::FailureLog> failure_log_;
  std::vector<ops::FailureLog::Line> failure_lines_;

  std::thread sender_;
};

}  // namespace zk2etcd::sync

// FencedWriter: turns a stream of fenced writes (see fenced_txn.h) into batched etcd
// transactions, with a bounded number in flight, retried until etcd takes them.
//
// Submit() queues a write; a sender thread packs queued writes into transactions (at most
// MaxKeysPerTxn keys and max_txn_bytes bytes each, never the same key twice in one) as soon as the
// window has room, so a lone write goes out at once and a burst goes out in full batches (group
// commit). Writes that carry an observed state the zxid rule applies to (FlatEligible, a full
// sync's repairs) go together in flat transactions; if one fails, its writes go again, in
// order, in the nested form, which decides key by key (fenced_txn.h). A transaction that fails
// because etcd is unreachable or slow is sent again after a backoff: fenced writes are safe to
// repeat. Errors that a repeat cannot fix (permission denied, a value too large, ...) and lost
// leadership complete the writes with an error.
//
// Each write's callback runs exactly once, on the writer's sender thread, never under the
// writer's lock. Thread-safe.
#pragma once

#include <chrono>
#include <condition_variable>
#include <cstdint>
#include <deque>
#include <functional>
#include <mutex>
#include <optional>
#include <thread>

#include "common/backoff.h"
#include "common/clock.h"
#include "common/result.h"
#include "etcd/etcd_client.h"
#include "sync/fenced_txn.h"
#include "sync/window_sizer.h"

namespace zk2etcd::sync {

struct WriteError {
  enum class Code {
    kNotLeader,  // the leadership compare failed: this process no longer leads
    kEtcd,       // etcd refused the transaction for a reason a repeat cannot fix
    kStopped,    // the writer stopped before the write was applied
  };
  Code code = Code::kEtcd;
  std::optional<etcd::Error> etcd_error;
  std::string message;
};

using WriteResult = Result<WriteOutcome, WriteError>;

struct FencedWriterOptions {
  int max_keys_per_txn = MaxKeysPerTxn();
  // etcd refuses requests over --max-request-bytes (1.5 MiB by default).
  size_t max_txn_bytes = 1 << 20;
  // The most transactions in flight. The window itself is sized by bandwidth-delay between
  // min(8, this) and this (window_sizer.h): a near etcd keeps the small window, a distant one
  // gets as many as one round trip needs.
  size_t max_txns_in_flight = 4;
  std::chrono::milliseconds initial_backoff{100};
  // Small enough that writes resume within a fraction of a second of etcd answering again; a
  // retry against an etcd that refuses connections costs next to nothing.
  std::chrono::milliseconds max_backoff{500};
  uint64_t jitter_seed = 0x5eed;
};

class FencedWriter {
 public:
  using Done = std::function<void(const WriteResult&)>;
  // Called once per transaction attempt, for metrics: how many writes it carried, whether etcd
  // answered (and its error), and how long it took.
  using TxnObserver = std::function<void(size_t writes, const std::optional<etcd::Error>& error,
                                         std::chrono::nanoseconds duration)>;
  // Called once per write that etcd refused on its own, for metrics, just before that write's
  // callback (which gets kEtcd); runs on the sender thread, never under the writer's lock.
  using RefusalObserver = std::function<void(const FencedWrite& write, const etcd::Error& error)>;

  FencedWriter(etcd::EtcdClient& etcd, FencedWriterOptions options, const Clock& clock,
               TxnObserver observer = nullptr, RefusalObserver on_refused = nullptr);
  // Stop()s.
  ~FencedWriter();
  FencedWriter(const FencedWriter&) = delete;
  FencedWriter& operator=(const FencedWriter&) = delete;

  void Submit(FencedWrite write, Done done);
  // Writes are fenced by this leadership from the next transaction on (nullopt: no fence).
  void SetLeader(std::optional<etcd::LeaderKey> leader);

  // Waits until every write submitted before the call has completed, or `timeout` passes.
  // Returns whether everything completed.
  bool Drain(std::chrono::milliseconds timeout);
  // Completes every queued write with kStopped, waits for the transactions in flight, and stops
  // the sender thread. Later Submits complete at once with kStopped.
  void Stop();

  // Writes queued or in flight.
  size_t pending() const;
  // Whether the last transaction attempt failed and writes are waiting to be retried.
  bool retrying() const;
  // Flat transactions whose compares failed, so that their writes were sent again nested.
  uint64_t flat_fallbacks() const;
  // Writes that etcd refused on their own (completed with kEtcd).
  uint64_t refused_writes() const;
  // Writes sent again in another put form because a reply asked for it (large creates).
  uint64_t form_resends() const;

 private:
  struct Entry {
    FencedWrite write;
    Done done;
    PutForm form = PutForm::kNested;  // the form the write goes in (nested transactions)
    // The largest transaction the write may go in: halved each time etcd refuses one that
    // carries it, until it goes alone.
    size_t max_batch = SIZE_MAX;
  };
  struct Completion {
    Completion(Done done_in, WriteResult result_in,
               std::optional<FencedWrite> refused_in = std::nullopt)
        : done(std::move(done_in)), result(std::move(result_in)), refused(std::move(refused_in)) {}
    Done done;
    WriteResult result;
    std::optional<FencedWrite> refused;  // for on_refused_: the write etcd refused
  };

  void SenderLoop();
  // Takes the next batch off the queue: flat-eligible writes if the first queued one is,
  // otherwise writes for the nested form. REQUIRES: mutex_ held.
  std::vector<Entry> TakeBatchLocked(bool& flat);
  void OnTxnDone(std::vector<Entry> batch, bool flat, WindowSizer::Ticket ticket,
                 etcd::EtcdResult<etcd::TxnResponse> result,
                 std::chrono::steady_clock::time_point started);
  // Completes, requeues or splits the writes of a finished transaction. REQUIRES: mutex_ held.
  void HandleTxnDoneLocked(std::vector<Entry>& batch, bool flat,
                           const etcd::EtcdResult<etcd::TxnResponse>& result);
  static bool Retryable(const etcd::Error& error);

  etcd::EtcdClient& etcd_;
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
  uint64_t submitted_ = 0;
  uint64_t finished_ = 0;
  uint64_t flat_fallbacks_ = 0;
  uint64_t refused_writes_ = 0;
  uint64_t form_resends_ = 0;
  std::optional<etcd::LeaderKey> leader_;
  // Retries while etcd fails: initial_backoff doubling up to max_backoff, each delay plus a random
  // part of up to half of it.
  Backoff backoff_{{.initial = options_.initial_backoff,
                    .max = options_.max_backoff,
                    .multiplier = 2.0,
                    .jitter = 0.5,
                    .jitter_direction = JitterDirection::kUp,
                    .seed = options_.jitter_seed}};
  std::chrono::steady_clock::time_point retry_at_{};
  bool stopping_ = false;
  std::thread sender_;
};

}  // namespace zk2etcd::sync

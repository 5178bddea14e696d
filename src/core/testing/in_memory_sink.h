// InMemorySink: a core::Sink over a sorted map with a history, for the engine's unit tests (no
// etcd).
//
// Each source key may hold a value (with the sink's version of it) and an ownership record (with
// the source version it was written from and its own version). One point counter, advanced once
// by every batch that changes something (and by every test change), gives the versions: what a
// batch changes gets the new point, like etcd's mod_revision. Writes follow core/sink.h exactly
// (the rules of sync/fenced_txn.h):
//   put, no claim:    applies if the record holds source_version <= version, or if neither the
//                     value nor the record exists; else kStale (record) or kForeign (value only);
//   delete, no claim: applies if the record holds source_version < version (value and record go);
//                     else kStale (record), kForeign (value only) or kAlreadyAbsent (neither);
//   claim (put, delete) or adopt: applies only if there is no record and the value's version ==
//                     *claim (0 when absent); else kStale (record), kForeign (value only), and
//                     for neither: kAlreadyAbsent (delete), kStale (put), kForeign (adopt).
//                     An adopt writes only the record; a claimed put the value and the record.
// A batch fenced by a Fence other than the one SetFence() made valid fails with kNotLeader and
// applies nothing. One variant (0), one batch class (0); a batch over Limits() fails kRefused.
// It is a CheckpointedSink too: ApplyAtomicAsync applies its writes by the same rules and records
// the checkpoint in the same batch (one point), AtomicLimits() being Limits(0) minus one write
// (and Options::max_atomic_bytes, when set).
// Batches apply and answer on the sink's worker thread, in submission order, never inline.
// List() reads at any point since the last Compact() (older: kCompacted; later than now: kOther).
// The cursor reads its whole listing at the first Next() (or at Start() when a point is given)
// and must not outlive the sink. Breaking a REQUIRES of core::Sink (duplicate keys in a batch,
// variants that do not match the writes) aborts with a message.
//
// Thread-safety: every method is thread-safe (a cursor is thread-compatible).
#pragma once

#include <chrono>
#include <cstddef>
#include <cstdint>
#include <deque>
#include <functional>
#include <map>
#include <memory>
#include <mutex>
#include <optional>
#include <set>
#include <string>
#include <string_view>
#include <vector>

#include "core/sink.h"
#include "core/testing/worker.h"

namespace zk2etcd::core::memory {

class InMemorySink : public Sink, public CheckpointedSink {
 public:
  struct Options {
    std::string key_prefix = "/sink";  // SinkKeyFor(key) = key_prefix + key
    size_t max_writes = 64;
    size_t max_bytes = 1 << 20;
    // The bytes of an atomic batch (AtomicLimits), when not 0 (else max_bytes): lower, it makes
    // a large write go through ApplyAsync alone, as etcd's nested form does for large values.
    size_t max_atomic_bytes = 0;
    // What ListsByPage says: false plays a sink whose listing reads everything at once.
    bool lists_by_page = true;
    bool far = false;  // what Far says
    // How long a listing's first read takes (a far sink's round trip); 0: none.
    std::chrono::milliseconds list_delay{0};
  };
  InMemorySink() : InMemorySink(Options{}) {}
  explicit InMemorySink(Options options);
  ~InMemorySink() override;  // batches still held answer kCancelled

  // core::Sink.
  bool ListsByPage() const override { return options_.lists_by_page; }
  bool Far() const override { return options_.far; }
  std::unique_ptr<SinkCursor> List(const std::string& source_prefix,
                                   const ListOptions& options) override;
  SinkResult<int64_t> CurrentPoint() override;
  SinkResult<std::vector<SinkEntry>> Read(const std::vector<std::string>& keys) override;
  std::string SinkKeyFor(std::string_view key) const override;
  std::string_view Name() const override { return "memory sink"; }
  int DefaultVariant(const SinkWrite& write) const override;
  int BatchClass(int variant) const override;
  BatchLimits Limits(int batch_class) const override;
  WriteCost Cost(const SinkWrite& write, int variant) const override;
  void ApplyAsync(std::vector<SinkWrite> writes, std::vector<int> variants,
                  const std::optional<Fence>& fence,
                  std::function<void(BatchResult)> done) override;
  // core::CheckpointedSink.
  SinkResult<std::optional<int64_t>> ReadCheckpoint() override;
  BatchLimits AtomicLimits() const override;
  WriteCost AtomicCost(const SinkWrite& write) const override { return Cost(write, 0); }
  void ApplyAtomicAsync(std::vector<SinkWrite> writes, int64_t checkpoint,
                        const std::optional<Fence>& fence,
                        std::function<void(BatchResult)> done) override;
  std::optional<int64_t> checkpoint() const;  // as recorded
  size_t atomic_batches_applied() const;      // ApplyAtomicAsync batches that applied

  // The fence batches must carry (nullopt: every fenced batch fails). Unfenced batches apply.
  void SetFence(std::optional<Fence> fence);
  std::optional<Fence> fence() const;

  // Test changes, each at a new point; each returns that point.
  // Writes the value as another tool would: no record is made (an existing one stays).
  int64_t PutForeign(const std::string& key, const std::string& value);
  // Writes the value and an ownership record holding `source_version`.
  int64_t PutOwned(const std::string& key, const std::string& value, int64_t source_version);
  // Writes only an ownership record (without a value: a leftover).
  int64_t PutRecord(const std::string& key, int64_t source_version);
  // Deletes the value as another tool would (a record stays).
  int64_t DeleteValue(const std::string& key);
  // Points before `point` become unavailable to List.
  void Compact(int64_t point);

  // The entry now, or nullopt when neither a value nor a record exists.
  std::optional<SinkEntry> Get(const std::string& key) const;
  std::vector<std::string> Keys() const;              // entries with a value or a record, sorted
  size_t Size() const;                                // Keys().size()
  std::map<std::string, std::string> Values() const;  // source key -> value, for those with one
  int64_t point() const;

  // The next `n` batches fail with `code` and apply nothing.
  void FailNextApplies(int n, SinkError::Code code = SinkError::Code::kUnavailable);
  // The next `n` reads (CurrentPoint, Read, a listing's first Next) fail with `code`.
  void FailNextReads(int n, SinkError::Code code = SinkError::Code::kUnavailable);
  // Any batch holding `key` fails with kRefused (a writer must split down to the write).
  void RefuseKey(const std::string& key);
  void ClearRefusedKeys();
  // Writes of `key` are left out and answered `skipped` (as a sink does for a write whose source
  // lease ended).
  void SkipKey(const std::string& key);
  // Holds batches (unapplied, unanswered) from now until ResumeApplies; they then apply in order.
  void PauseApplies();
  void ResumeApplies();
  // Waits until every batch submitted so far has been answered (except those held by a pause).
  void Drain();

  size_t batches_applied() const;  // batches answered write by write
  size_t writes_applied() const;   // writes answered kApplied
  size_t max_batch_seen() const;   // the most writes one submitted batch held
  size_t batches_submitted() const;
  size_t listings_read() const;  // cursors that read their listing (List's Next or Start)
  size_t points_read() const;    // CurrentPoint calls

 private:
  struct Stored {
    std::optional<std::string> value;
    int64_t version = 0;  // of the value; 0 without one
    std::optional<OwnerRecord> owner;
  };
  struct Revision {
    int64_t point = 0;
    std::optional<Stored> state;  // nullopt: neither a value nor a record from this point on
  };
  struct Batch {
    std::vector<SinkWrite> writes;
    std::vector<int> variants;
    std::optional<Fence> fence;
    std::function<void(BatchResult)> done;
    std::optional<int64_t> checkpoint;  // an atomic batch
  };
  class Cursor;

  // The state of `key` at `point` (nullptr: none).
  const Stored* StateAt(const std::string& key, int64_t point) const;
  const Stored* CurrentLocked(const std::string& key) const { return StateAt(key, point_); }
  SinkEntry EntryFor(const std::string& key, const Stored* state) const;
  // One test change at a new point.
  int64_t ChangeLocked(const std::string& key, std::optional<Stored> state);
  std::optional<SinkError> ReadErrorLocked();
  // The listing of `prefix` at `point` (0: now), for a cursor.
  SinkResult<int64_t> ListAt(const std::string& prefix, int64_t point,
                             std::vector<SinkEntry>* entries);
  BatchResult ApplyLocked(const Batch& batch);
  void Enqueue(Batch batch);
  void ProcessQueue();  // on the worker

  const Options options_;
  mutable std::mutex mu_;
  std::map<std::string, std::vector<Revision>> data_;
  int64_t point_ = 1;
  int64_t compacted_ = 0;
  std::optional<Fence> fence_;
  std::optional<int64_t> checkpoint_;
  size_t atomic_batches_applied_ = 0;
  std::deque<Batch> queue_;
  bool paused_ = false;
  int fail_applies_ = 0;
  SinkError::Code fail_apply_code_ = SinkError::Code::kUnavailable;
  int fail_reads_ = 0;
  SinkError::Code fail_read_code_ = SinkError::Code::kUnavailable;
  std::set<std::string> refused_;
  std::set<std::string> skipped_;
  size_t batches_applied_ = 0;
  size_t writes_applied_ = 0;
  size_t max_batch_seen_ = 0;
  size_t batches_submitted_ = 0;
  size_t listings_read_ = 0;
  size_t points_read_ = 0;
  Worker worker_;  // last: joined first
};

}  // namespace zk2etcd::core::memory

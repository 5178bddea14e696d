// InMemorySource: a core::Source over a sorted map, for the engine's unit tests (no ZooKeeper).
//
// Each key holds a value and a version; one point counter, advanced by every change (in scope or
// not, like ZooKeeper's zxid), gives both: a changed key's version is the new point. Only keys in
// the source's Scope appear in snapshots and are announced. A change is announced (OnChange) only
// while the source is open and connected, like a real watch; changes made while it is closed,
// disconnected or lost are not. Events, announcements and ReadAsync answers come in order on the
// source's own worker thread, never inline; Close() returns after the ones owed have been dealt
// with (ReadAsync callbacks owed then answer kUnavailable), so no listener call follows it.
//
// Test controls: Put/Delete change the data; FailOpen/FailNextReads inject errors; Disconnect,
// Reconnect and Lose drive the connection (kDisconnected, kReconnected, kLost). After Lose the
// source counts as closed: Open (with or without a Close first) starts again.
//
// It also has a history, like etcd: OpenAfter(point) replays the in-scope changes after `point`
// as ChangeSets (one per point; Apply makes several changes at one point) and then delivers new
// ones, in order, also while disconnected (an etcd watch resumes where it was). Compact(point)
// drops the history before `point` (OpenAfter an older point fails kCompacted); BreakStream()
// ends an ordered stream with kCompacted, as a watch that fell behind a compaction.
// set_exact_snapshots(true) marks snapshots exact (core::Snapshot::exact).
// Breaking a REQUIRES of core::Source (Open while open) aborts with a message.
//
// Thread-safety: every method is thread-safe.
#pragma once

#include <cstddef>
#include <cstdint>
#include <functional>
#include <map>
#include <mutex>
#include <optional>
#include <string>
#include <vector>

#include "core/entry.h"
#include "core/scope.h"
#include "core/source.h"
#include "core/testing/worker.h"

namespace zk2etcd::core::memory {

class InMemorySource : public Source {
 public:
  explicit InMemorySource(Scope scope);
  ~InMemorySource() override;  // Close()

  // core::Source.
  SourceResult<void> Open(SourceListener& listener) override;
  SourceResult<void> OpenAfter(SourceListener& listener, int64_t point) override;
  SourceResult<int64_t> CurrentPoint() override;
  void Close() override;
  SourceResult<Snapshot> ReadSnapshot(const SnapshotOptions& options) override;
  SourceResult<std::vector<EntryState>> Reread(const std::vector<std::string>& keys,
                                               const RereadOptions& options) override;
  void ReadAsync(const std::string& key,
                 std::function<void(SourceResult<EntryState>)> done) override;
  SourceStatus Status() const override;
  std::string_view Name() const override { return "memory source"; }

  // Creates or changes `key`; returns its new version (the new point).
  int64_t Put(const std::string& key, const std::string& value);
  // Deletes `key`; false (and no new point) if it does not exist.
  bool Delete(const std::string& key);
  // Several changes at one new point (a transaction), returned. A change's version is ignored:
  // a put gets the new point; a delete of an absent key is dropped.
  int64_t Apply(const std::vector<SourceChange>& changes);
  // History before `point` is gone.
  void Compact(int64_t point);
  // Ends an open ordered stream with kCompacted (the source counts as closed).
  void BreakStream();
  void set_exact_snapshots(bool exact);
  // OpenAfter calls that succeeded, and the point of the last one.
  size_t ordered_opens() const;
  int64_t last_open_after() const;
  std::optional<SourceEntry> Get(const std::string& key) const;
  int64_t point() const;

  // The next `n` Open() calls fail with `code`.
  void FailOpen(int n, SourceError::Code code = SourceError::Code::kUnavailable);
  // The next `n` reads (ReadSnapshot, Reread or ReadAsync, each counts one) fail with `code`.
  void FailNextReads(int n, SourceError::Code code = SourceError::Code::kUnavailable);
  // Sends kDisconnected; reads fail with kUnavailable and nothing is announced until Reconnect.
  void Disconnect();
  // Sends kReconnected (changes made while disconnected stay unannounced).
  void Reconnect();
  // Sends kLost and ends the stream: the source is closed.
  void Lose();

  // Waits until every announcement, event and ReadAsync answer owed so far has been delivered.
  void Drain();
  // Runs `hook` with the keys of every later successful Reread once they are read, before the
  // Reread returns (on the reader's thread, outside the source's lock): a change made there
  // comes after the second read of a reconciliation and before its repairs.
  void SetRereadHook(std::function<void(const std::vector<std::string>& keys)> hook);
  // Runs `hook` after every later successful ReadSnapshot has read its entries (and handed each
  // to SnapshotOptions::on_entry), before it returns (on the reader's thread, outside the
  // source's lock): a change made there comes after the snapshot of a reconciliation and before
  // its second read.
  void SetSnapshotHook(std::function<void()> hook);

  size_t snapshots_read() const;  // successful ReadSnapshot calls
  size_t reads() const;           // keys answered by Reread and ReadAsync (successfully)

 private:
  struct Stored {
    std::string value;
    int64_t version = 0;
  };
  // Calls `call` with the listener on the worker, unless the stream it belongs to has ended.
  void DeliverLocked(std::function<void(SourceListener&)> call);
  // Why reads cannot be answered now (consuming an injected failure), or nullopt; `closed` is
  // the code when the source is closed.
  std::optional<SourceError> ReadErrorLocked(SourceError::Code closed);
  EntryState StateLocked(const std::string& key) const;
  SourceResult<void> OpenLocked(SourceListener& listener);
  // Records one point's changes and announces them.
  void AnnounceLocked(ChangeSet set);

  const Scope scope_;
  mutable std::mutex mu_;
  std::map<std::string, Stored> data_;
  int64_t point_ = 0;
  std::vector<ChangeSet> history_;  // in-scope changes, by point
  int64_t compacted_ = 0;
  bool ordered_ = false;  // the open stream is an ordered one
  bool exact_snapshots_ = false;
  size_t ordered_opens_ = 0;
  int64_t last_open_after_ = -1;
  SourceListener* listener_ = nullptr;  // from Open until Close
  uint64_t stream_ = 0;                 // advanced by Open and Close: stale deliveries drop
  bool open_ = false;                   // opened, and neither closed nor lost since
  bool connected_ = false;
  int64_t session_ = 0;
  int fail_opens_ = 0;
  SourceError::Code fail_open_code_ = SourceError::Code::kUnavailable;
  int fail_reads_ = 0;
  SourceError::Code fail_read_code_ = SourceError::Code::kUnavailable;
  size_t snapshots_read_ = 0;
  size_t reads_ = 0;
  std::function<void(const std::vector<std::string>& keys)> reread_hook_;  // guarded by mu_
  std::function<void()> snapshot_hook_;                                    // guarded by mu_
  Worker worker_;                                                          // last: joined first
};

}  // namespace zk2etcd::core::memory

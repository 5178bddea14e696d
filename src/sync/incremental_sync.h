// IncrementalSync: applies a source's changes to the sink as they happen.
//
// A change announced by the source's stream only marks its key dirty; the key is then read
// (ReadAsync: the value and its version, or the absence with the point it was seen at) and
// written with a fenced put or delete. Because the read comes after the announcement, it sees
// that change or a newer one; because writes are fenced by source version, reads and writes may
// complete in any order without ever moving the sink backwards. Changes of a key that is being
// read or written are folded into one more read afterwards, so memory grows with the number of
// distinct dirty keys (at most the scope), not with the number of changes.
//
// Reads that fail (a connection loss) stay queued and are retried by Resume() after the
// reconnect.
//
// With an ownership store (--redis-server), all of its traffic goes through an OwnershipRecorder
// (ownership/ownership_recorder.h) and its own thread, so a store that does not answer never holds
// up a read or a write: applied writes queue a Record or Forget; a delete is sent only after the
// store answered a ping sent after the read (design §2: nothing is deleted while the store is
// unreachable). A delete refused for that reason is deferred: its path is kept (and logged once),
// and when the store answers again every deferred path is read again and, if still absent,
// deleted through the usual fenced write (a node created again meanwhile is written instead).
//
// Thread-safe: MarkDirty is called from the source's delivery thread; completions arrive from
// the source's, the writer's and the recorder's threads; everything else from the owner's thread.
#pragma once

#include <atomic>
#include <chrono>
#include <condition_variable>
#include <cstdint>
#include <deque>
#include <functional>
#include <memory>
#include <mutex>
#include <optional>
#include <random>
#include <set>
#include <string>
#include <unordered_map>
#include <unordered_set>

#include "common/clock.h"
#include "core/scope.h"
#include "core/sink.h"
#include "core/source.h"
#include "ops/log.h"
#include "ownership/ownership_recorder.h"
#include "ownership/ownership_store.h"
#include "sync/fenced_writer.h"

namespace zk2etcd::sync {

// What happened to one change, for metrics and the event log.
struct AppliedChange {
  std::string trace_id;
  std::string key;  // the sink's name
  core::SinkWrite::Type type = core::SinkWrite::Type::kPut;
  int64_t version = 0;  // the write's source version (a delete: the point of the absence)
  std::optional<core::WriteOutcome> outcome;  // nullopt: failed
  std::string error;
  bool not_leader = false;           // failed because this process no longer leads
  std::optional<core::Fence> fence;  // not_leader: the fence that failed, if the write had one
  // From the first change that made the key dirty to the write's completion, and to the end of
  // the source read (the rest is the sink write).
  std::chrono::nanoseconds delay{0};
  std::chrono::nanoseconds read_delay{0};
};

struct IncrementalSyncOptions {
  size_t read_window = 50;
  // Called for every completed write (on the writer's thread); must be quick.
  std::function<void(const AppliedChange&)> on_change;
  // Called with the path and point of every delete just before it goes to the writer (on the
  // thread that sends it); must be quick (RecentDeletes::Note).
  std::function<void(const std::string& path, int64_t point)> on_delete_sent;
  // Seeds the trace ids; unset: std::random_device, so that ids differ between processes, runs
  // and the directions of one process (zk2zk).
  std::optional<uint64_t> trace_seed;
  // The recorder's batching and backoff; its callbacks are IncrementalSync's own.
  ownership::OwnershipRecorderOptions recorder;
  // The debug line logged for each announced change (e.g. "zookeeper event").
  std::string change_log_message = "source change";
  // Called (on the recorder's thread) when the ownership store answers again after a failure,
  // after the deferred deletes were queued again; must be quick.
  std::function<void()> on_ownership_store_back;
};

class IncrementalSync {
 public:
  IncrementalSync(const core::Scope& scope, core::Sink& sink, FencedWriter& writer,
                  ownership::OwnershipStore* ownership, ops::Logger& logger, const Clock& clock,
                  IncrementalSyncOptions options);
  ~IncrementalSync();

  // The source reads go to; null pauses reading (changes still queue). Once SetSource returns,
  // no read is being issued through this object to the previous source (reads it had taken
  // still call back; failures are re-queued).
  void SetSource(core::Source* source);
  // A change of `key` (from the source's listener): marks it dirty.
  void MarkDirty(const std::string& key);
  // Sends the reads that wait (after a reconnect or SetSource).
  void Resume();

  // Writes refused because the key had no ownership record (kForeign) leave their path in a
  // bounded set: a reconciliation that adopts keys (AdoptPolicy) calls RetryForeign, which marks
  // them dirty again, so that a change that raced the adoption is not lost; one that adopts
  // nothing calls ForgetForeign.
  void RetryForeign();
  void ForgetForeign();

  // Paths waiting to be read, being read, or being written.
  size_t queue_depth() const;
  // Deletes waiting for the ownership store to answer again.
  size_t deferred_deletes() const;
  // Ownership store updates not yet acknowledged by the store (0 without a store).
  size_t ownership_updates_queued() const;
  // The ownership store failed elsewhere (the reconciler): deletes wait until it answers again.
  void ReportOwnershipStoreUnreachable(const ownership::OwnershipError& error);
  // Waits until nothing is queued or in flight, or `timeout` passes.
  bool WaitIdle(std::chrono::milliseconds timeout);
  // Stops reading; writes already handed to the writer complete as the writer decides.
  void Stop();
  // Sends the ownership updates still queued, once, if the store answers, and stops the
  // recorder; waits for at most one store call that does not answer (the store's timeout).
  // Call after the writer drained. Returns how many updates were dropped. Idempotent.
  size_t StopOwnershipUpdates();

 private:
  struct PathState {
    bool queued = false;
    bool busy = false;   // a read or write is in flight
    bool dirty = false;  // another event came while busy
    std::string trace_id;
    std::chrono::steady_clock::time_point first_event{};
    std::chrono::steady_clock::time_point read_done{};
  };

  void Pump();
  void OnRead(const std::string& path, core::SourceResult<core::EntryState> entry);
  void Submit(const std::string& path, core::SinkWrite write);
  void OnWritten(const std::string& path, const core::SinkWrite& write, const WriteResult& result);
  // The store did not confirm it answers: keep the delete for when it does.
  void DeferDelete(const std::string& path, const std::string& key);
  // On the recorder's thread.
  void OnOwnershipStoreBack();
  void Retire(const std::string& path);
  std::string NewTraceId();  // REQUIRES: mutex_ held

  const core::Scope& scope_;
  core::Sink& sink_;
  FencedWriter& writer_;
  ops::Logger& logger_;
  const Clock& clock_;
  const IncrementalSyncOptions options_;

  // Held while a read is handed to the source, so that SetSource can swap sources safely. Taken
  // before mutex_ when both are needed. The source never calls back inline.
  std::mutex source_mutex_;
  core::Source* source_ = nullptr;  // guarded by source_mutex_

  mutable std::mutex mutex_;
  std::condition_variable idle_;
  std::unordered_map<std::string, PathState> paths_;
  std::deque<std::string> ready_;
  size_t reads_in_flight_ = 0;
  std::unordered_set<std::string> foreign_paths_;  // see RetryForeign
  bool stopped_ = false;
  std::mt19937_64 trace_random_;
  std::set<std::string> deferred_deletes_;  // guarded by mutex_

  // Last: stopped and destroyed first, since its callbacks use everything above.
  std::unique_ptr<ownership::OwnershipRecorder> recorder_;
};

}  // namespace zk2etcd::sync

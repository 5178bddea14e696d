// IncrementalSync: applies ZooKeeper watch events to etcd as they happen.
//
// An event (NodeCreated, NodeDataChanged, NodeDeleted under a persistent recursive watch) only
// marks its path dirty; the path is then read (getData: data and mzxid, or NoNode with the zxid
// of the absence) and written with a fenced put or delete. Because the read comes after the
// event, it sees that change or a newer one; because writes are fenced by zxid, reads and writes
// may complete in any order without ever moving etcd backwards. Events for a path that is being
// read or written are folded into one more read afterwards, so memory grows with the number of
// distinct dirty paths (at most the tree), not with the number of events.
//
// Reads that fail with a connection loss stay queued and are retried by Resume() after the
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
// Thread-safe: OnWatchEvent is called from the ZooKeeper client's delivery thread;
// completions arrive from the writer's thread and the recorder's thread; everything else from
// the owner's thread.
#pragma once

#include <atomic>
#include <chrono>
#include <condition_variable>
#include <cstdint>
#include <deque>
#include <functional>
#include <memory>
#include <mutex>
#include <random>
#include <set>
#include <string>
#include <unordered_map>
#include <unordered_set>

#include "common/clock.h"
#include "ops/log.h"
#include "ownership/ownership_recorder.h"
#include "ownership/ownership_store.h"
#include "sync/fenced_writer.h"
#include "connectors/etcd/key_layout.h"
#include "core/scope.h"
#include "zk/zk_client.h"

namespace zk2etcd::sync {

// Moved to connectors/etcd (issue 12); transitional.
using connectors::KeyLayout;

// What happened to one change, for metrics and the event log.
struct AppliedChange {
  std::string trace_id;
  std::string key;
  FencedWrite::Type type = FencedWrite::Type::kPut;
  int64_t zxid = 0;
  std::optional<WriteOutcome> outcome;  // nullopt: failed
  std::string error;
  bool not_leader = false;  // failed because this process no longer leads
  // From the first event that made the path dirty to the write's completion, and to the end of
  // the ZooKeeper read (the rest is the etcd write).
  std::chrono::nanoseconds delay{0};
  std::chrono::nanoseconds read_delay{0};
};

struct IncrementalSyncOptions {
  size_t read_window = 50;
  // Called for every completed write (on the writer's thread); must be quick.
  std::function<void(const AppliedChange&)> on_change;
  uint64_t trace_seed = 0x7ace;
  // The recorder's batching and backoff; its callbacks are IncrementalSync's own.
  ownership::OwnershipRecorderOptions recorder;
  // Called (on the recorder's thread) when the ownership store answers again after a failure,
  // after the deferred deletes were queued again; must be quick.
  std::function<void()> on_ownership_store_back;
};

class IncrementalSync {
 public:
  IncrementalSync(const core::Scope& scope, const KeyLayout& layout, FencedWriter& writer,
                  ownership::OwnershipStore* ownership, ops::Logger& logger, const Clock& clock,
                  IncrementalSyncOptions options);
  ~IncrementalSync();

  // The client reads go to; null pauses reading (events still queue). Once SetClient returns,
  // no read is being issued to the previous client, which may then be destroyed (it still owes
  // callbacks for reads it had taken; they come back as connection losses and are re-queued).
  void SetClient(zk::ZkClient* client);
  // From the ZooKeeper client's watch handler.
  void OnWatchEvent(const zk::WatchEvent& event);
  // Marks a path dirty as if an event had come (used for classic watches and tests).
  void MarkDirty(const std::string& path);
  // Sends the reads that wait (after a reconnect or SetClient).
  void Resume();
  // Classic watch mode: each read re-arms the node's one-shot data watch.
  void SetReadWithWatch(bool read_with_watch) { read_with_watch_.store(read_with_watch); }

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
  void OnRead(const std::string& path, zk::ZkResult<zk::GetDataReply> reply);
  void Submit(const std::string& path, FencedWrite write);
  void OnWritten(const std::string& path, const FencedWrite& write, const WriteResult& result);
  // The store did not confirm it answers: keep the delete for when it does.
  void DeferDelete(const std::string& path, const std::string& key);
  // On the recorder's thread.
  void OnOwnershipStoreBack();
  void Retire(const std::string& path);
  std::string NewTraceId();  // REQUIRES: mutex_ held

  const core::Scope& scope_;
  const KeyLayout& layout_;
  FencedWriter& writer_;
  ops::Logger& logger_;
  const Clock& clock_;
  const IncrementalSyncOptions options_;

  // Held while a read is handed to the client, so that SetClient can swap clients safely. Taken
  // before mutex_ when both are needed. The client never calls back inline.
  std::mutex client_mutex_;
  zk::ZkClient* client_ = nullptr;  // guarded by client_mutex_

  mutable std::mutex mutex_;
  std::condition_variable idle_;
  std::unordered_map<std::string, PathState> paths_;
  std::deque<std::string> ready_;
  size_t reads_in_flight_ = 0;
  std::unordered_set<std::string> foreign_paths_;  // see RetryForeign
  bool stopped_ = false;
  std::atomic<bool> read_with_watch_{false};
  std::mt19937_64 trace_random_;
  std::set<std::string> deferred_deletes_;  // guarded by mutex_

  // Last: stopped and destroyed first, since its callbacks use everything above.
  std::unique_ptr<ownership::OwnershipRecorder> recorder_;
};

}  // namespace zk2etcd::sync

// Source: where a job reads from (ZooKeeper for zk2etcd and zk2zk, etcd for etcd2etcd).
//
// A source gives the engine three things over one scope (chosen when the source is built):
//   - a change stream: after Open() returns, every change of an in-scope key is announced to the
//     listener by key (no value: the engine reads the key afterwards, so it sees that change or a
//     newer one). The stream starts before any snapshot is read, so that no change can fall
//     between a snapshot and the stream (ZooKeeper: watches registered before the walk; etcd: a
//     watch from the snapshot's revision + 1);
//   - a snapshot: every in-scope entry, sorted, at one point;
//   - reads: of given keys at once (Reread, for a reconciliation's second look) or of one key
//     asynchronously (ReadAsync, for the change stream).
// Connection state changes come to the listener as SourceEvents; the engine decides what to do
// (reconcile after kReconnected, Close and Open again after kLost).
//
// A source with a history (etcd) also offers an ordered change stream (OpenAfter): every change
// after a given point, delivered with its new state as ChangeSets, one per point, in order, each
// exactly once. A job that applies them in that order, and records the last point applied in the
// same atomic write as the data (CheckpointedSink, sink.h), can resume after a restart from that
// point without reading the whole scope again.
//
// Thread-safety: every method is thread-safe. The listener is called on the source's own threads
// and must only record or enqueue; ReadAsync's callback runs on the source's thread, never inline.
#pragma once

#include <atomic>
#include <cstddef>
#include <cstdint>
#include <functional>
#include <string>
#include <string_view>
#include <vector>

#include "common/result.h"
#include "core/entry.h"

namespace zk2etcd::core {

struct SourceError {
  enum class Code {
    kUnavailable,  // not connected, or the connection was lost: try again later
    kClosed,       // Close() was called, or the operation was cancelled
    kAuthFailed,   // credentials refused: retrying cannot help
    kUnsupported,  // the server lacks something the source needs: retrying cannot help
    kCompacted,    // the point asked for is gone from the source's history (etcd compaction)
    kOther,        // any other failure of one operation
  };
  Code code = Code::kOther;
  std::string message;  // names the source ("ZooKeeper", "etcd") and what failed
  const std::string& ToString() const { return message; }
  bool Fatal() const { return code == Code::kAuthFailed || code == Code::kUnsupported; }
};
template <typename T>
using SourceResult = Result<T, SourceError>;

struct SnapshotOptions {
  size_t window = 50;  // requests in flight
  // Called now and then with the number of entries read so far (from the source's threads).
  std::function<void(size_t entries_read)> on_progress;
  // When set and true, the read stops early with kClosed.
  const std::atomic<bool>* cancel = nullptr;
  // When set, a source that reads piece by piece (the ZooKeeper walk) may hand over each entry
  // as it reads it, before the snapshot is complete: from any thread (its own, or the caller's),
  // one call at a time, none after the read returned, with the key, value and version the
  // snapshot will hold, at most once per entry of one read (none for an entry it leaves out). A
  // read that fails may have handed entries over: they were read. Must only copy or enqueue:
  // the read waits for it. A source that reads in one piece (etcd's range) does not call it.
  std::function<void(const SourceEntry& entry)> on_entry;
};

struct RereadOptions {
  size_t window = 50;  // requests in flight
  // One entry per key, when known: the value size a snapshot saw, so that reads can be batched
  // by size.
  const std::vector<size_t>* expected_bytes = nullptr;
};

enum class SourceEventType {
  kConnected,     // Open() connected (informational)
  kDisconnected,  // reads fail with kUnavailable until kReconnected or kLost
  kReconnected,   // the stream is back, but changes made meanwhile may not have been announced
  kLost,          // the stream ended for good (a ZooKeeper session expired): Close, Open again
  kFatal,         // retrying cannot help (credentials refused)
  // An ordered stream cannot go on: the next changes are gone from the source's history (etcd
  // compacted them). The stream has ended: reconcile, then OpenAfter the snapshot's point.
  kCompacted,
};
struct SourceEvent {
  SourceEventType type = SourceEventType::kConnected;
  std::string reason;
};

class SourceListener {
 public:
  virtual ~SourceListener() = default;
  // An in-scope key was created, changed or deleted.
  virtual void OnChange(const std::string& key) = 0;
  // The in-scope changes of one point of an ordered stream (OpenAfter), in order. By default,
  // each changed key goes to OnChange.
  virtual void OnChangeSet(ChangeSet set) {
    for (const SourceChange& change : set.changes) OnChange(change.key);
  }
  virtual void OnSourceEvent(const SourceEvent& event) = 0;
};

struct SourceStatus {
  bool connected = false;
  size_t watches = 0;      // watches registered (ZooKeeper: persistent, or classic child watches)
  int64_t session_id = 0;  // the source's session, when it has one
  // The change stream works from one-shot per-entry watches (a ZooKeeper 3.4/3.5 server).
  bool classic_watches = false;
};

class Source {
 public:
  virtual ~Source() = default;

  // Connects and starts the change stream: every change after Open() returns reaches
  // `listener`, which must outlive the source or the next Close(). Blocking. Fails with
  // kUnavailable (try again later) or a Fatal() error. REQUIRES: not open.
  virtual SourceResult<void> Open(SourceListener& listener) = 0;
  // Like Open, but the change stream is ordered and starts after `point`: every in-scope change
  // with a greater point reaches listener.OnChangeSet, in order, once (also across reconnects).
  // Fails with kCompacted when the changes after `point` are gone, and with kUnsupported for a
  // source without a history (the default). REQUIRES: not open.
  virtual SourceResult<void> OpenAfter(SourceListener& listener, int64_t point) {
    (void)listener;
    (void)point;
    return Unexpected{SourceError{SourceError::Code::kUnsupported,
                                  std::string(Name()) + " has no ordered change stream"}};
  }
  // The source's newest point (cheap): where an ordered stream opened now would start from.
  virtual SourceResult<int64_t> CurrentPoint() {
    return Unexpected{SourceError{SourceError::Code::kUnsupported,
                                  std::string(Name()) + " has no ordered change stream"}};
  }
  // Ends the change stream and the connection; blocking calls in progress fail at once with
  // kClosed, and ReadAsync callbacks still owed come back with kUnavailable. Returns only when
  // nothing more will be delivered to the listener or a callback, also when another thread's
  // Close is in progress (it waits for that one), so the source may then be destroyed.
  // Idempotent. Must not be called from the listener or a callback.
  virtual void Close() = 0;

  // Every in-scope entry, sorted by key, at one point. Blocking. REQUIRES: open.
  virtual SourceResult<Snapshot> ReadSnapshot(const SnapshotOptions& options) = 0;
  // The given keys as they are now, in the order given (absent keys with exists false).
  // Blocking.
  virtual SourceResult<std::vector<EntryState>> Reread(const std::vector<std::string>& keys,
                                                       const RereadOptions& options) = 0;
  // One key; `done` runs once, on the source's thread. kUnavailable when not connected.
  virtual void ReadAsync(const std::string& key,
                         std::function<void(SourceResult<EntryState>)> done) = 0;

  virtual SourceStatus Status() const = 0;
  // What the source is, for messages: "ZooKeeper", "etcd".
  virtual std::string_view Name() const = 0;
};

}  // namespace zk2etcd::core

// Sink: where a job writes to (etcd for zk2etcd and etcd2etcd, ZooKeeper for zk2zk).
//
// Every entry a sink holds for a job is keyed by the source's key (the sink maps it to its own
// name, e.g. an etcd key under --etcd-key-prefix) and may carry an ownership record: the proof
// that this job wrote it, holding the source version it was written from. The sink gives the
// engine:
//   - a listing of a source prefix, sorted by source key, at one point of the sink's history,
//     each entry with its value, the sink's version of it and its ownership record (an entry may
//     be an ownership record alone: a leftover);
//   - reads of given keys (the same view, now);
//   - fenced batch writes: each write carries the source version it was made from, and applies
//     only if the entry's ownership record holds an older one (or, for a new entry, none exists
//     and neither does the entry), so a late write never overwrites a newer one; an entry
//     without an ownership record is foreign and never changed, unless the write carries a
//     claim (the entry's sink version as observed: it applies only to that exact entry).
//     Each write's outcome comes back: applied, stale, foreign, already absent.
//
// A sink may encode writes in several forms ("variants", numbered by the sink). The engine's
// writer asks for each write's default variant, packs writes of one batch class within the
// limits the sink gives, and, when an answer asks for it, sends a write again in another variant.
// The engine never looks inside a variant.
//
// Thread-safety: every method is thread-safe. ApplyAsync's callback runs on the sink's thread,
// never inline.
#pragma once

#include <cstddef>
#include <cstdint>
#include <functional>
#include <memory>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "common/result.h"

namespace zk2etcd::core {

struct SinkError {
  enum class Code {
    kUnavailable,  // unreachable, slow, or a transient refusal: the same request may go again
    kNotLeader,    // the leadership fence failed: this process no longer leads
    kRefused,      // refused for a reason a repeat cannot fix (too large, not permitted)
    kCompacted,    // the point a listing asked for is no longer available
    kCancelled,    // the call was cancelled (shutting down)
    kOther,        // anything else (an answer the sink could not read)
  };
  Code code = Code::kOther;
  std::string message;  // names the sink and what failed
  // The sink's own name for the error (e.g. etcd's "unavailable"), for metric labels.
  std::string label;
  const std::string& ToString() const { return message; }
  bool Retryable() const { return code == Code::kUnavailable; }
};
template <typename T>
using SinkResult = Result<T, SinkError>;

// The ownership record of an entry.
struct OwnerRecord {
  // The source version the entry was written from; INT64_MAX when the record holds none (it is
  // then treated as newer than anything).
  int64_t source_version = 0;
  int64_t record_version = 0;  // the sink's version of the record itself
};

struct SinkEntry {
  std::string key;       // the source's key
  std::string sink_key;  // the sink's name for it (reports, logs, the external ownership store)
  std::optional<std::string> value;  // nullopt: the entry is absent (only its record may exist)
  int64_t version = 0;               // the sink's version of the value, when present
  std::optional<OwnerRecord> owner;
};

struct ListOptions {
  // The sink's point to list at; 0: the newest when the listing starts.
  int64_t point = 0;
  int64_t page_size = 1000;
  // Sorted source keys where requests may end (keys about a page apart), so that a page costs a
  // page on servers that walk a whole range per request. Empty: the sink pages as it likes.
  std::vector<std::string> splits;
  // Requests the sink may send ahead of the one being read.
  size_t prefetch = 8;
};

class SinkCursor {
 public:
  virtual ~SinkCursor() = default;
  // With ListOptions::point given, sends the first requests now, so they travel while the
  // caller does something else. Otherwise does nothing (Next sends what it needs).
  virtual void Start() = 0;
  // The next entry in source-key order, or nullopt after the last one.
  virtual SinkResult<std::optional<SinkEntry>> Next() = 0;
  // The point read at (0 until the first Next).
  virtual int64_t point() const = 0;
};

struct SinkWrite {
  // kAdopt: only write the ownership record of an entry that exists without one and equals the
  // source (REQUIRES claim).
  enum class Type { kPut, kDelete, kAdopt };
  Type type = Type::kPut;
  std::string key;    // the source's key
  std::string value;  // kPut
  // kPut, kAdopt: the source version of the value. kDelete: the source point at which the key
  // was observed absent.
  int64_t version = 0;
  // The entry's sink version, as observed, when the write may change an entry that has no
  // ownership record (the external ownership store vouched for it, or an adoption policy): the
  // write then applies only to that exact entry.
  std::optional<int64_t> claim;
  // What the writer read in the sink before choosing this write (versions 0: absent). A sink may
  // use it for a cheaper form that applies only while it still holds.
  struct Observed {
    int64_t entry_version = 0;
    int64_t record_version = 0;
    int64_t owner_version = 0;  // the record's source version; INT64_MAX if it holds none
  };
  std::optional<Observed> observed;
  // The source's lease of the entry (SourceEntry::lease), 0 when none; a sink that copies
  // leases binds the entry to its own lease of the same TTL.
  int64_t lease = 0;
};

enum class WriteOutcome {
  kApplied,        // the entry (and its ownership record) now reflect the write
  kStale,          // the sink already holds a newer (put) or the same-or-newer (delete) version;
                   // from FencedWriter also a write the sink skipped (WriteAnswer::skipped)
  kForeign,        // the entry exists without an ownership record: not ours, left alone
  kAlreadyAbsent,  // delete: neither the entry nor its record exists
};
std::string_view WriteOutcomeName(WriteOutcome outcome);

// The leadership a batch is fenced by: it applies only while `key` holds `revision` (etcd: the
// election key's create revision).
struct Fence {
  std::string key;
  int64_t revision = 0;
};

// How writes of one batch class are packed into one batch.
struct BatchLimits {
  size_t max_writes = 1;
  size_t max_bytes = 1 << 20;  // of the encoded batch
  size_t overhead_bytes = 0;   // the batch's own, before any write
  int max_ops = 0;             // 0: no separate operation budget
  int fence_ops = 0;           // what a fence costs of max_ops
};
struct WriteCost {
  size_t bytes = 0;
  int ops = 0;
};

// One write's answer within an applied batch.
struct WriteAnswer {
  std::optional<WriteOutcome> outcome;  // set unless resend_variant is
  std::optional<int> resend_variant;    // send the write again in this variant
  std::string error;                    // neither set: the sink could not read the answer
  // With `error`: the sink left the write out on purpose because its source entry is about to go
  // (e.g. the source's lease of it ended, so the source deletes it at a later point): not a
  // failure for a job that follows the source's changes.
  bool skipped = false;
};
// The whole batch's answer: one WriteAnswer per write, in order, or an error for all of them.
using BatchResult = SinkResult<std::vector<WriteAnswer>>;

class Sink {
 public:
  virtual ~Sink() = default;

  // The entries below `source_prefix` (a prefix of the source's scope), in source-key order.
  virtual std::unique_ptr<SinkCursor> List(const std::string& source_prefix,
                                           const ListOptions& options) = 0;
  // Whether a cursor reads a page (ListOptions::page_size) per request, so that its first
  // page_size - 1 entries cost about one request per range: the reconciler then lists a small sink
  // while the snapshot is read. False for a sink whose listing reads everything at once.
  virtual bool ListsByPage() const { return false; }
  // Whether a round trip to the sink is long (etcd: its dial took 5 ms or more, see
  // EtcdClient::Far): writing while the source is still read then hides round trips, where on a
  // near sink it only competes with the read for the machine (sync/reconciler.h, "Repairs during
  // the walk").
  virtual bool Far() const { return false; }
  // The sink's newest point (cheap), for a listing that should start with every request at once.
  virtual SinkResult<int64_t> CurrentPoint() = 0;
  // The given keys as they are now, in the order given (absent ones with no value). Blocking.
  virtual SinkResult<std::vector<SinkEntry>> Read(const std::vector<std::string>& keys) = 0;
  // The sink's name for a source key.
  virtual std::string SinkKeyFor(std::string_view key) const = 0;
  // What the sink is, for messages: "etcd", "ZooKeeper".
  virtual std::string_view Name() const = 0;

  virtual int DefaultVariant(const SinkWrite& write) const = 0;
  // Writes of different batch classes never share a batch.
  virtual int BatchClass(int variant) const = 0;
  virtual BatchLimits Limits(int batch_class) const = 0;
  virtual WriteCost Cost(const SinkWrite& write, int variant) const = 0;
  // Applies one batch of writes with distinct keys, each in its variant, fenced by `fence` when
  // given. `done` runs once, on the sink's thread. A batch that fails with a Retryable() error
  // applied nothing and may go again.
  virtual void ApplyAsync(std::vector<SinkWrite> writes, std::vector<int> variants,
                          const std::optional<Fence>& fence,
                          std::function<void(BatchResult)> done) = 0;
};

// A sink that records, in the same atomic write as the data, how far an ordered change stream
// (Source::OpenAfter) has been applied: its checkpoint. A job resumes from it after a restart or
// a failover; since data and checkpoint are written together, the checkpoint never claims a
// change that the sink does not hold. Thread-safety as Sink.
class CheckpointedSink {
 public:
  virtual ~CheckpointedSink() = default;
  // The checkpoint recorded, or nullopt when none was.
  virtual SinkResult<std::optional<int64_t>> ReadCheckpoint() = 0;
  // How many writes, of what AtomicCost, one atomic batch may carry besides the checkpoint.
  virtual BatchLimits AtomicLimits() const = 0;
  // What `write` costs of AtomicLimits in an atomic batch (the form it goes in there).
  virtual WriteCost AtomicCost(const SinkWrite& write) const = 0;
  // Applies `writes` (distinct keys, each by Sink::ApplyAsync's rules, within AtomicLimits) and
  // records `checkpoint`, in one atomic batch fenced by `fence` when given: all of it or none of
  // it. The answers never ask for a resend. `done` runs once, on the sink's thread. An empty
  // `writes` records the checkpoint alone.
  virtual void ApplyAtomicAsync(std::vector<SinkWrite> writes, int64_t checkpoint,
                                const std::optional<Fence>& fence,
                                std::function<void(BatchResult)> done) = 0;
};

}  // namespace zk2etcd::core

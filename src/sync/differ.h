// ComputeDiff: compares a source's snapshot with what the sink holds, key by key, in one
// streaming merge: the snapshot's entries (read whole, sorted) against the sink's listing of each
// scope prefix (entries with their ownership records, read page by page at one point of the
// sink). Memory is the snapshot plus the pages the sink's cursor holds (DiffOptions::prefetch).
//
// Only keys in scope are compared: sink entries under an excluded path (or written by someone
// else outside the mapped keys) are never reported, so never touched. Blocking; thread-safe
// (uses only the sink's thread-safe calls).
#pragma once

#include <cstdint>
#include <deque>
#include <functional>
#include <future>
#include <map>
#include <optional>
#include <string>
#include <vector>

#include "core/entry.h"
#include "core/scope.h"
#include "core/sink.h"

namespace zk2etcd::sync {

struct Difference {
  enum class Kind {
    kMissing,     // in the source, not in the sink
    kChanged,     // in both, values differ, the key is ours
    kExtra,       // in the sink (ours), not in the source
    kForeign,     // in the sink without an ownership record, differs from or is absent in the
                  // source
    kConflict,    // in both, values differ, and the key has no ownership record: another
                  // writer's value (reported instead of kForeign when an adoption policy is
                  // set, see AdoptPolicy; the first pass never classifies it)
    kOrphanMeta,  // an ownership record whose key is absent from both sides: our own leftover
    kUnclaimed,   // equal on both sides, but the key has no ownership record (e.g. written by
                  // the Go tool): not a difference; with an ownership store that vouches for it,
                  // or an adoption policy, the job adopts it by adding the record
  };
  Kind kind = Kind::kMissing;
  std::string key;   // the sink's name (reports, logs, the external ownership store)
  std::string path;  // the source's key
  // The entry as the snapshot had it (kMissing, kChanged, kForeign when it exists).
  std::optional<size_t> entry_index;
  size_t source_bytes = 0;                // the entry's value size, when it exists
  int64_t sink_version = 0;               // when the key exists in the sink
  std::optional<std::string> sink_value;  // the key's value, when it exists in the sink
  // When an ownership record exists: the source version it holds (INT64_MAX when it holds none,
  // i.e. treated as newer than anything) and the record's own sink version.
  std::optional<int64_t> owner_version;
  int64_t record_version = 0;
};
std::string_view DifferenceKindName(Difference::Kind kind);
// How many kinds there are (kUnclaimed is the last), for tallies indexed by kind.
inline constexpr size_t kDifferenceKindCount =
    static_cast<size_t>(Difference::Kind::kUnclaimed) + 1;

// The difference between a source value (null: absent) and a sink value (null: absent) with or
// without an ownership record; nullopt when they agree (kUnclaimed when they agree but the key
// has no record).
std::optional<Difference::Kind> Classify(const std::string* source_value,
                                         const std::string* sink_value, bool has_owner);

struct DiffReport {
  // In key order; without a chunk callback all of them, with one what is left after the last call.
  std::vector<Difference> differences;
  size_t listed = 0;          // differences found (passed to the callback or kept)
  size_t source_entries = 0;  // in-scope source entries compared
  size_t sink_entries = 0;    // in-scope sink entries compared
  size_t in_sync = 0;         // keys equal on both sides (unclaimed ones included)
  size_t unclaimed = 0;       // equal, but without an ownership record
  int64_t sink_point = 0;
  size_t Count(Difference::Kind kind) const;
};

struct DiffOptions {
  int64_t page_size = 1000;
  // Requests the sink's cursor may send ahead of the merge (ListOptions::prefetch).
  size_t prefetch = 8;
  // List kUnclaimed keys in `differences` (for adoption); otherwise they are only counted.
  bool list_unclaimed = false;
  // When set, called (on the caller's thread) with every `chunk` differences as the merge finds
  // them, and once more with the rest; the list is emptied after each call, so memory holds one
  // chunk rather than every difference. Returning false stops the merge (the report is then
  // incomplete).
  std::function<bool(std::vector<Difference>& chunk)> on_differences;
  size_t chunk = 2048;
  // The sink point to list at; 0: the newest when the listing starts. A point read before the
  // snapshot lets the listing start with every request at once (one round trip less); it is
  // only older, which the second read and the fenced repairs already allow for (a repair
  // compares what the listing saw), and kCompacted if the sink compacted it meanwhile.
  int64_t point = 0;
  // Complete listings of some scope prefixes at `point` (REQUIRES point != 0), in source-key order,
  // read while the snapshot was read: those prefixes are not listed again (for a small or empty
  // sink, the listing's round trips overlap the snapshot's).
  const std::map<std::string, std::vector<core::SinkEntry>>* listed = nullptr;
};

core::SinkResult<DiffReport> ComputeDiff(const core::Snapshot& snapshot, const core::Scope& scope,
                                         core::Sink& sink, const DiffOptions& options = {});

}  // namespace zk2etcd::sync

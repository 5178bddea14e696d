// ComputeDiff: compares the ZooKeeper tree with what etcd holds, key by key, in one streaming
// merge: ZooKeeper's nodes (read whole, sorted) against etcd's data keys and meta records, read
// page by page, all at one etcd revision. Memory is the ZooKeeper tree plus a few pages per
// cursor (DiffOptions::prefetch).
//
// Only keys whose path is in scope are compared: etcd keys under an excluded path (or written by
// someone else outside the mapped paths) are never reported, so never touched. Blocking;
// thread-safe (uses only the client's thread-safe calls).
#pragma once

#include <cstdint>
#include <deque>
#include <functional>
#include <future>
#include <optional>
#include <string>
#include <vector>

#include "etcd/etcd_client.h"
#include "connectors/etcd/fenced_txn.h"
#include "connectors/etcd/key_layout.h"
#include "core/scope.h"
#include "sync/zk_walker.h"

namespace zk2etcd::sync {

// Moved to connectors/etcd (issue 12); transitional.
using connectors::DecodeZxid;
using connectors::EncodeZxid;
using connectors::KeyLayout;
using connectors::KeyRange;

// Reads the keys of some ranges in key order, a page at a time, all at one revision.
//
// etcd 3.4 walks the whole index of a request's range before it applies the limit, so paging
// [key, end) with a limit costs the keys from `key` to `end` per page: quadratic in the size of
// the range (a million keys in pages of 1,000 kept etcd busy for minutes). Each request
// therefore ends at the next of the sorted `splits` (keys expected to be about a page apart,
// such as every page_size-th ZooKeeper key), and a page costs what lies before that split.
//
// The split ranges do not depend on each other, so the first page of each of the next
// `prefetch` of them is requested at once (each on its own short-lived thread, the client's
// Range being blocking and thread-safe): over a network with a round trip of R, listing S
// split ranges takes about S x R / prefetch instead of S x R. Only a split range with more
// than a page (etcd holds more than ZooKeeper there) is paged on sequentially. Memory: up to
// 1 + prefetch pages. Destroying a cursor waits for the requests it has in flight.
class RangeCursor {
 public:
  // `revision` 0 reads the first page at the newest revision and the rest at that one.
  // `splits`: strictly increasing keys where requests may end (none: each range is paged whole).
  // `prefetch`: split ranges requested ahead of the one being read (0: one request at a time).
  RangeCursor(etcd::EtcdClient& etcd, std::vector<KeyRange> ranges, int64_t revision,
              int64_t page_size, std::vector<std::string> splits = {}, size_t prefetch = 0);
  ~RangeCursor();
  RangeCursor(const RangeCursor&) = delete;
  RangeCursor& operator=(const RangeCursor&) = delete;
  // With a revision given: sends the first 1 + prefetch requests now, so that they travel
  // while the caller does something else (such as starting another cursor). Otherwise, and
  // when called again, does nothing: Next() sends what it needs.
  void Start();
  // The next key-value, or nullopt after the last one.
  etcd::EtcdResult<std::optional<etcd::KeyValue>> Next();
  // The revision read at (0 until the first page).
  int64_t revision() const { return revision_; }
  size_t keys_read() const { return keys_read_; }
  size_t requests() const { return requests_; }

 private:
  etcd::EtcdResult<void> FetchPage();
  // Starts requests for the next segments while fewer than 1 + prefetch are in flight.
  void TopUp();

  etcd::EtcdClient& etcd_;
  // Every request's first page, in key order: a range cut at the splits inside it.
  std::vector<etcd::RangeRequest> segments_;
  size_t next_segment_ = 0;  // the first not yet requested
  std::deque<std::future<etcd::EtcdResult<etcd::RangeResponse>>> in_flight_;
  std::deque<etcd::RangeRequest> in_flight_requests_;  // beside in_flight_
  // The rest of a segment that had more than a page, read before the segments after it.
  std::optional<etcd::RangeRequest> continuation_;
  int64_t revision_;
  const int64_t page_size_;
  const size_t prefetch_;
  size_t requests_ = 0;
  std::vector<etcd::KeyValue> page_;
  size_t page_position_ = 0;
  size_t keys_read_ = 0;
};

struct Difference {
  enum class Kind {
    kMissing,     // in ZooKeeper, not in etcd
    kChanged,     // in both, values differ, the key is ours
    kExtra,       // in etcd (ours), not in ZooKeeper
    kForeign,     // in etcd without a meta record, differs from or is absent in ZooKeeper
    kConflict,    // in both, values differ, and the key has no ownership record: another
                  // writer's value (reported instead of kForeign when an adoption policy is
                  // set, see AdoptPolicy; the first pass never classifies it)
    kOrphanMeta,  // a meta record whose key is absent from both sides: zk2etcd's own leftover
    kUnclaimed,   // equal on both sides, but the key has no meta record (e.g. written by the Go
                  // tool): not a difference; with an ownership store that vouches for it, zk2etcd
                  // adopts it by adding the meta record
  };
  Kind kind = Kind::kMissing;
  std::string key;
  std::string path;
  // The node as ZooKeeper had it (kMissing, kChanged, kForeign when the node exists).
  std::optional<size_t> node_index;
  size_t zk_data_bytes = 0;               // the node's data size, when it exists
  int64_t etcd_mod_revision = 0;          // when the key exists in etcd
  std::optional<std::string> etcd_value;  // the key's value, when it exists in etcd
  // When a meta record exists: the zxid it holds (INT64_MAX when it holds none, i.e. treated as
  // newer than anything) and its mod_revision.
  std::optional<int64_t> meta_zxid;
  int64_t meta_mod_revision = 0;
};
std::string_view DifferenceKindName(Difference::Kind kind);
// How many kinds there are (kUnclaimed is the last), for tallies indexed by kind.
inline constexpr size_t kDifferenceKindCount =
    static_cast<size_t>(Difference::Kind::kUnclaimed) + 1;

// The difference between a znode's data (null: absent) and an etcd key's value (null: absent)
// with or without a meta record; nullopt when they agree (kUnclaimed when they agree but the key
// has no meta record).
std::optional<Difference::Kind> Classify(const std::string* zk_data, const std::string* etcd_value,
                                         bool has_meta);

struct DiffReport {
  // In key order; without a chunk callback all of them, with one what is left after the last call.
  std::vector<Difference> differences;
  size_t listed = 0;     // differences found (passed to the callback or kept)
  size_t zk_nodes = 0;   // in-scope znodes compared
  size_t etcd_keys = 0;  // in-scope etcd keys compared
  size_t in_sync = 0;    // keys equal on both sides (unclaimed ones included)
  size_t unclaimed = 0;  // equal, but without a meta record
  int64_t etcd_revision = 0;
  size_t Count(Difference::Kind kind) const;
};

struct DiffOptions {
  int64_t page_size = 1000;
  // Split ranges listed ahead of the merge, per cursor (see RangeCursor).
  size_t prefetch = 8;
  // List kUnclaimed keys in `differences` (for adoption); otherwise they are only counted.
  bool list_unclaimed = false;
  // When set, called (on the caller's thread) with every `chunk` differences as the merge finds
  // them, and once more with the rest; the list is emptied after each call, so memory holds one
  // chunk rather than every difference. Returning false stops the merge (the report is then
  // incomplete).
  std::function<bool(std::vector<Difference>& chunk)> on_differences;
  size_t chunk = 2048;
  // The revision to list at; 0: the newest when the listing starts. A revision read before the
  // walk lets the data keys and the meta records be listed at once (one round trip less); it
  // is only older, which the second read and the fenced repairs already allow for (a repair
  // compares what the listing saw), and kCompacted if etcd compacted it meanwhile.
  int64_t revision = 0;
};

etcd::EtcdResult<DiffReport> ComputeDiff(const ZkTree& tree, const core::Scope& scope,
                                         const KeyLayout& layout, etcd::EtcdClient& etcd,
                                         const DiffOptions& options = {});

}  // namespace zk2etcd::sync

#include "sync/differ.h"

#include <algorithm>

#include "connectors/etcd/fenced_txn.h"

namespace zk2etcd::sync {

RangeCursor::RangeCursor(etcd::EtcdClient& etcd, std::vector<KeyRange> ranges, int64_t revision,
                         int64_t page_size, std::vector<std::string> splits, size_t prefetch)
    : etcd_(etcd), revision_(revision), page_size_(page_size), prefetch_(prefetch) {
  for (const KeyRange& range : ranges) {
    etcd::RangeRequest request;
    request.key = range.key;
    request.range_end = range.range_end;
    if (range.range_end.empty()) {  // a single key: no limit, no splits
      segments_.push_back(std::move(request));
      continue;
    }
    request.limit = page_size_;
    const bool to_the_end = range.range_end == std::string(1, '\0');
    for (auto split = std::upper_bound(splits.begin(), splits.end(), range.key);
         split != splits.end() && (to_the_end || *split < range.range_end); ++split) {
      request.range_end = *split;
      segments_.push_back(request);
      request.key = *split;
    }
    request.range_end = range.range_end;
    segments_.push_back(std::move(request));
  }
}

RangeCursor::~RangeCursor() {
  for (auto& future : in_flight_) future.wait();
}

void RangeCursor::TopUp() {
  while (next_segment_ < segments_.size() && in_flight_.size() < 1 + prefetch_) {
    etcd::RangeRequest request = segments_[next_segment_++];
    request.revision = revision_;
    ++requests_;
    in_flight_requests_.push_back(request);
    in_flight_.push_back(
        std::async(std::launch::async, [this, request] { return etcd_.Range(request); }));
  }
}

void RangeCursor::Start() {
  if (revision_ != 0 && requests_ == 0) TopUp();
}

etcd::EtcdResult<void> RangeCursor::FetchPage() {
  page_.clear();
  page_position_ = 0;
  while (page_.empty()) {
    etcd::RangeRequest request;
    etcd::EtcdResult<etcd::RangeResponse> response = Unexpected{etcd::Error{}};
    if (continuation_) {
      request = *std::move(continuation_);
      continuation_.reset();
      request.revision = revision_;
      ++requests_;
      response = etcd_.Range(request);
    } else if (revision_ == 0 && next_segment_ < segments_.size()) {
      // The first request fixes the revision every other one reads at.
      request = segments_[next_segment_++];
      ++requests_;
      response = etcd_.Range(request);
    } else {
      TopUp();
      if (in_flight_.empty()) return {};  // every segment read
      request = std::move(in_flight_requests_.front());
      in_flight_requests_.pop_front();
      response = in_flight_.front().get();
      in_flight_.pop_front();
    }
    if (!response.ok()) return Unexpected{response.error()};
    if (revision_ == 0) revision_ = response->revision;
    page_ = std::move(response->kvs);
    if (request.limit > 0 && response->more && !page_.empty()) {
      request.key = page_.back().key + std::string(1, '\0');
      continuation_ = std::move(request);
    }
    TopUp();  // the next segments travel while this page is merged
  }
  return {};
}

etcd::EtcdResult<std::optional<etcd::KeyValue>> RangeCursor::Next() {
  if (page_position_ >= page_.size()) {
    if (auto fetched = FetchPage(); !fetched.ok()) return Unexpected{fetched.error()};
    if (page_.empty()) return std::optional<etcd::KeyValue>();
  }
  ++keys_read_;
  return std::optional<etcd::KeyValue>(std::move(page_[page_position_++]));
}

std::string_view DifferenceKindName(Difference::Kind kind) {
  switch (kind) {
    case Difference::Kind::kMissing:
      return "missing";
    case Difference::Kind::kChanged:
      return "changed";
    case Difference::Kind::kExtra:
      return "extra";
    case Difference::Kind::kForeign:
      return "foreign";
    case Difference::Kind::kConflict:
      return "conflict";
    case Difference::Kind::kOrphanMeta:
      return "orphan_meta";
    case Difference::Kind::kUnclaimed:
      return "unclaimed";
  }
  return "unknown";
}

std::optional<Difference::Kind> Classify(const std::string* zk_data, const std::string* etcd_value,
                                         bool has_meta) {
  if (zk_data != nullptr && etcd_value == nullptr) return Difference::Kind::kMissing;
  if (zk_data != nullptr) {
    if (*zk_data == *etcd_value) {
      return has_meta ? std::nullopt : std::optional(Difference::Kind::kUnclaimed);
    }
    return has_meta ? Difference::Kind::kChanged : Difference::Kind::kForeign;
  }
  if (etcd_value != nullptr)
    return has_meta ? Difference::Kind::kExtra : Difference::Kind::kForeign;
  if (has_meta) return Difference::Kind::kOrphanMeta;
  return std::nullopt;
}

size_t DiffReport::Count(Difference::Kind kind) const {
  size_t count = 0;
  for (const Difference& difference : differences) count += difference.kind == kind ? 1 : 0;
  return count;
}

namespace {

// A cursor with one entry of look-ahead.
class Head {
 public:
  explicit Head(RangeCursor& cursor) : cursor_(cursor) {}
  etcd::EtcdResult<void> Advance() {
    auto next = cursor_.Next();
    if (!next.ok()) return Unexpected{next.error()};
    current_ = std::move(*next);
    return {};
  }
  const std::optional<etcd::KeyValue>& current() const { return current_; }

 private:
  RangeCursor& cursor_;
  std::optional<etcd::KeyValue> current_;
};

}  // namespace

etcd::EtcdResult<DiffReport> ComputeDiff(const ZkTree& tree, const core::Scope& scope,
                                         const KeyLayout& layout, etcd::EtcdClient& etcd,
                                         const DiffOptions& options) {
  const int64_t page_size = options.page_size;
  const bool list_unclaimed = options.list_unclaimed;
  DiffReport report;
  report.etcd_revision = options.revision;
  bool stopped = false;
  // Lists a difference, handing a full chunk to the callback.
  auto list = [&](Difference difference) {
    report.differences.push_back(std::move(difference));
    ++report.listed;
    if (options.on_differences && report.differences.size() >= std::max<size_t>(1, options.chunk)) {
      stopped = !options.on_differences(report.differences);
      report.differences.clear();
    }
  };
  for (const std::string& prefix : scope.prefixes()) {
    // ZooKeeper side: the sorted nodes at or below this prefix.
    std::vector<size_t> nodes;
    for (size_t i = 0; i < tree.nodes.size(); ++i) {
      if (core::IsSameOrBelow(tree.nodes[i].path, prefix)) nodes.push_back(i);
    }
    // Requests end at every page_size-th ZooKeeper key: about a page each when etcd holds
    // what ZooKeeper does (see RangeCursor).
    const size_t split_every = static_cast<size_t>(std::max<int64_t>(1, page_size));
    std::vector<std::string> data_splits;
    std::vector<std::string> meta_splits;
    for (size_t i = split_every; i < nodes.size(); i += split_every) {
      data_splits.push_back(layout.KeyFor(tree.nodes[nodes[i]].path));
      meta_splits.push_back(layout.MetaKeyFor(data_splits.back()));
    }
    RangeCursor data_cursor(etcd, layout.DataRangesFor(prefix), report.etcd_revision, page_size,
                            std::move(data_splits), options.prefetch);
    Head data(data_cursor);
    std::optional<RangeCursor> meta_cursor;
    if (report.etcd_revision != 0) {  // both listings start at once
      meta_cursor.emplace(etcd, layout.MetaRangesFor(prefix), report.etcd_revision, page_size,
                          std::move(meta_splits), options.prefetch);
      data_cursor.Start();
      meta_cursor->Start();
    }
    if (auto first = data.Advance(); !first.ok()) return Unexpected{first.error()};
    if (report.etcd_revision == 0) report.etcd_revision = data_cursor.revision();
    if (!meta_cursor) {
      meta_cursor.emplace(etcd, layout.MetaRangesFor(prefix), report.etcd_revision, page_size,
                          std::move(meta_splits), options.prefetch);
    }
    Head meta(*meta_cursor);
    if (auto first = meta.Advance(); !first.ok()) return Unexpected{first.error()};

    size_t next_node = 0;
    while (true) {
      const std::string* zk_key_ptr = nullptr;
      std::string zk_key;
      if (next_node < nodes.size()) {
        zk_key = layout.KeyFor(tree.nodes[nodes[next_node]].path);
        zk_key_ptr = &zk_key;
      }
      std::optional<std::string> meta_data_key;
      if (meta.current()) meta_data_key = layout.KeyForMetaKey(meta.current()->key);
      // The smallest key among the three heads.
      const std::string* smallest = zk_key_ptr;
      if (data.current() && (!smallest || data.current()->key < *smallest)) {
        smallest = &data.current()->key;
      }
      if (meta_data_key && (!smallest || *meta_data_key < *smallest)) smallest = &*meta_data_key;
      if (smallest == nullptr) break;
      const std::string key = *smallest;

      const bool has_node = zk_key_ptr != nullptr && zk_key == key;
      const bool has_key = data.current() && data.current()->key == key;
      const bool has_meta = meta_data_key && *meta_data_key == key;
      const std::optional<std::string> path = layout.PathFor(key);
      if (path && scope.Contains(*path)) {
        Difference difference;
        difference.key = key;
        difference.path = *path;
        if (has_node) {
          difference.node_index = nodes[next_node];
          difference.zk_data_bytes = tree.nodes[nodes[next_node]].data.size();
        }
        if (has_key) {
          difference.etcd_mod_revision = data.current()->mod_revision;
        }
        if (has_meta) {
          difference.meta_zxid = DecodeZxid(meta.current()->value).value_or(INT64_MAX);
          difference.meta_mod_revision = meta.current()->mod_revision;
        }
        if (has_node) ++report.zk_nodes;
        if (has_key) ++report.etcd_keys;
        const std::optional<Difference::Kind> kind =
            Classify(has_node ? &tree.nodes[nodes[next_node]].data : nullptr,
                     has_key ? &data.current()->value : nullptr, has_meta);
        if (kind && has_key) difference.etcd_value = data.current()->value;
        if (kind == Difference::Kind::kUnclaimed) {
          ++report.in_sync;
          ++report.unclaimed;
          if (list_unclaimed) {
            difference.kind = *kind;
            list(std::move(difference));
          }
        } else if (kind) {
          difference.kind = *kind;
          list(std::move(difference));
        } else if (has_node) {
          ++report.in_sync;
        }
      }
      if (has_node) ++next_node;
      if (has_key) {
        if (auto advanced = data.Advance(); !advanced.ok()) return Unexpected{advanced.error()};
      }
      if (has_meta) {
        if (auto advanced = meta.Advance(); !advanced.ok()) return Unexpected{advanced.error()};
      }
      if (stopped) return report;
    }
  }
  if (options.on_differences && !report.differences.empty()) {
    options.on_differences(report.differences);
    report.differences.clear();
  }
  return report;
}

}  // namespace zk2etcd::sync

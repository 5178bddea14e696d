#include "sync/differ.h"

#include <algorithm>

#include "sync/fenced_txn.h"

namespace zk2etcd::sync {

RangeCursor::RangeCursor(etcd::EtcdClient& etcd, std::vector<KeyRange> ranges, int64_t revision,
                         int64_t page_size, std::vector<std::string> splits)
    : etcd_(etcd),
      ranges_(std::move(ranges)),
      revision_(revision),
      page_size_(page_size),
      splits_(std::move(splits)) {
  if (!ranges_.empty()) next_key_ = ranges_[0].key;
}

etcd::EtcdResult<void> RangeCursor::FetchPage() {
  page_.clear();
  page_position_ = 0;
  while (page_.empty() && range_index_ < ranges_.size()) {
    if (range_done_) {
      ++range_index_;
      range_done_ = false;
      if (range_index_ < ranges_.size()) next_key_ = ranges_[range_index_].key;
      continue;
    }
    const KeyRange& range = ranges_[range_index_];
    etcd::RangeRequest request;
    request.key = next_key_;
    request.range_end = range.range_end;
    request.revision = revision_;
    const bool single_key = range.range_end.empty();
    bool ends_at_split = false;
    if (!single_key) {
      request.limit = page_size_;
      const auto split = std::upper_bound(splits_.begin(), splits_.end(), next_key_);
      const bool to_the_end = range.range_end == std::string(1, '\0');
      if (split != splits_.end() && (to_the_end || *split < range.range_end)) {
        request.range_end = *split;
        ends_at_split = true;
      }
    }
    ++requests_;
    auto response = etcd_.Range(request);
    if (!response.ok()) return Unexpected{response.error()};
    if (revision_ == 0) revision_ = response->revision;
    page_ = std::move(response->kvs);
    if (!single_key && response->more && !page_.empty()) {
      next_key_ = page_.back().key + std::string(1, '\0');
    } else if (ends_at_split) {
      next_key_ = request.range_end;
    } else {
      range_done_ = true;
    }
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

etcd::EtcdResult<DiffReport> ComputeDiff(const ZkTree& tree, const Scope& scope,
                                         const KeyLayout& layout, etcd::EtcdClient& etcd,
                                         const DiffOptions& options) {
  const int64_t page_size = options.page_size;
  const bool list_unclaimed = options.list_unclaimed;
  DiffReport report;
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
      if (IsSameOrBelow(tree.nodes[i].path, prefix)) nodes.push_back(i);
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
                            std::move(data_splits));
    Head data(data_cursor);
    if (auto first = data.Advance(); !first.ok()) return Unexpected{first.error()};
    if (report.etcd_revision == 0) report.etcd_revision = data_cursor.revision();
    RangeCursor meta_cursor(etcd, layout.MetaRangesFor(prefix), report.etcd_revision, page_size,
                            std::move(meta_splits));
    Head meta(meta_cursor);
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

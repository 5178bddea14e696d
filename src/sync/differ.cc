#include "sync/differ.h"

#include <algorithm>

namespace zk2etcd::sync {

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

std::optional<Difference::Kind> Classify(const std::string* source_value,
                                         const std::string* sink_value, bool has_owner) {
  if (source_value != nullptr && sink_value == nullptr) return Difference::Kind::kMissing;
  if (source_value != nullptr) {
    if (*source_value == *sink_value) {
      return has_owner ? std::nullopt : std::optional(Difference::Kind::kUnclaimed);
    }
    return has_owner ? Difference::Kind::kChanged : Difference::Kind::kForeign;
  }
  if (sink_value != nullptr) {
    return has_owner ? Difference::Kind::kExtra : Difference::Kind::kForeign;
  }
  if (has_owner) return Difference::Kind::kOrphanMeta;
  return std::nullopt;
}

size_t DiffReport::Count(Difference::Kind kind) const {
  size_t count = 0;
  for (const Difference& difference : differences) count += difference.kind == kind ? 1 : 0;
  return count;
}

namespace {

// A listing already read (DiffOptions::listed), as a cursor.
class ListedCursor final : public core::SinkCursor {
 public:
  ListedCursor(const std::vector<core::SinkEntry>& entries, int64_t point)
      : entries_(entries), point_(point) {}
  void Start() override {}
  core::SinkResult<std::optional<core::SinkEntry>> Next() override {
    if (next_ == entries_.size()) return std::optional<core::SinkEntry>();
    return std::optional<core::SinkEntry>(entries_[next_++]);
  }
  int64_t point() const override { return point_; }

 private:
  const std::vector<core::SinkEntry>& entries_;
  const int64_t point_;
  size_t next_ = 0;
};

// The listing of `prefix` that DiffOptions::listed holds, if any.
const std::vector<core::SinkEntry>* ListedFor(const DiffOptions& options,
                                              const std::string& prefix) {
  if (options.listed == nullptr || options.point == 0) return nullptr;
  const auto it = options.listed->find(prefix);
  return it == options.listed->end() ? nullptr : &it->second;
}

}  // namespace

core::SinkResult<DiffReport> ComputeDiff(const core::Snapshot& snapshot, const core::Scope& scope,
                                         core::Sink& sink, const DiffOptions& options) {
  const int64_t page_size = options.page_size;
  const bool list_unclaimed = options.list_unclaimed;
  DiffReport report;
  report.sink_point = options.point;
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
  const std::vector<core::SourceEntry>& entries = snapshot.entries;
  for (const std::string& prefix : scope.prefixes()) {
    // Source side: the sorted entries at or below this prefix.
    std::vector<size_t> below;
    for (size_t i = 0; i < entries.size(); ++i) {
      if (scope.Covers(entries[i].key, prefix)) below.push_back(i);
    }
    // Requests end at every page_size-th source key: about a page each when the sink holds
    // what the source does (see core::ListOptions::splits).
    core::ListOptions list_options;
    list_options.point = report.sink_point;
    list_options.page_size = page_size;
    list_options.prefetch = options.prefetch;
    const size_t split_every = static_cast<size_t>(std::max<int64_t>(1, page_size));
    for (size_t i = split_every; i < below.size(); i += split_every) {
      list_options.splits.push_back(entries[below[i]].key);
    }
    std::unique_ptr<core::SinkCursor> cursor;
    if (const std::vector<core::SinkEntry>* listed = ListedFor(options, prefix)) {
      cursor = std::make_unique<ListedCursor>(*listed, options.point);
    } else {
      cursor = sink.List(prefix, list_options);
    }
    cursor->Start();
    auto first = cursor->Next();
    if (!first.ok()) return Unexpected{first.error()};
    std::optional<core::SinkEntry> held = std::move(*first);
    if (report.sink_point == 0) report.sink_point = cursor->point();

    size_t next = 0;
    while (next < below.size() || held) {
      const core::SourceEntry* entry = next < below.size() ? &entries[below[next]] : nullptr;
      const bool has_entry = entry != nullptr && (!held || entry->key <= held->key);
      const bool has_sink_entry = held && (entry == nullptr || held->key <= entry->key);
      const std::string& key = has_entry ? entry->key : held->key;
      const bool has_value = has_sink_entry && held->value.has_value();
      const bool has_owner = has_sink_entry && held->owner.has_value();
      if (scope.Contains(key)) {
        Difference difference;
        difference.key = has_sink_entry ? held->sink_key : sink.SinkKeyFor(key);
        difference.path = key;
        if (has_entry) {
          difference.entry_index = below[next];
          difference.source_bytes = entry->value.size();
          ++report.source_entries;
        }
        if (has_value) {
          difference.sink_version = held->version;
          ++report.sink_entries;
        }
        if (has_owner) {
          difference.owner_version = held->owner->source_version;
          difference.record_version = held->owner->record_version;
        }
        const std::optional<Difference::Kind> kind = Classify(
            has_entry ? &entry->value : nullptr, has_value ? &*held->value : nullptr, has_owner);
        if (kind && has_value) difference.sink_value = *held->value;
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
        } else if (has_entry) {
          ++report.in_sync;
        }
      }
      if (has_entry) ++next;
      if (has_sink_entry) {
        auto advanced = cursor->Next();
        if (!advanced.ok()) return Unexpected{advanced.error()};
        held = std::move(*advanced);
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

#include "zk/watch_registry.h"

#include <algorithm>

namespace zk2etcd::zk {

namespace {

std::vector<std::string> Sorted(const std::unordered_set<std::string>& set) {
  std::vector<std::string> paths(set.begin(), set.end());
  std::sort(paths.begin(), paths.end());
  return paths;
}

}  // namespace

WatchRegistry::PathSet* WatchRegistry::SetFor(WatchKind kind) {
  return const_cast<PathSet*>(static_cast<const WatchRegistry*>(this)->SetFor(kind));
}

const WatchRegistry::PathSet* WatchRegistry::SetFor(WatchKind kind) const {
  switch (kind) {
    case WatchKind::kData:
      return &data_;
    case WatchKind::kExist:
      return &exist_;
    case WatchKind::kChild:
      return &child_;
    case WatchKind::kPersistent:
      return &persistent_;
    case WatchKind::kPersistentRecursive:
      return &persistent_recursive_;
    case WatchKind::kNone:
      return nullptr;
  }
  return nullptr;
}

void WatchRegistry::Add(WatchKind kind, std::string_view path) {
  if (PathSet* set = SetFor(kind)) set->emplace(path);
}

void WatchRegistry::OnEvent(WatchEventType type, std::string_view path) {
  if (empty()) return;
  const std::string key(path);
  switch (type) {
    case WatchEventType::kNodeCreated:
    case WatchEventType::kNodeDataChanged:
      data_.erase(key);
      exist_.erase(key);
      break;
    case WatchEventType::kNodeDeleted:
      data_.erase(key);
      exist_.erase(key);
      child_.erase(key);
      break;
    case WatchEventType::kNodeChildrenChanged:
      child_.erase(key);
      break;
    default:
      break;
  }
}

bool WatchRegistry::Remove(WatcherType type, std::string_view path) {
  const std::string key(path);
  size_t removed = 0;
  switch (type) {
    case WatcherType::kChildren:
      removed = child_.erase(key);
      break;
    case WatcherType::kData:
      removed = data_.erase(key) + exist_.erase(key);
      break;
    case WatcherType::kAny:
      removed = child_.erase(key) + data_.erase(key) + exist_.erase(key) + persistent_.erase(key) +
                persistent_recursive_.erase(key);
      break;
    case WatcherType::kPersistent:
      removed = persistent_.erase(key);
      break;
    case WatcherType::kPersistentRecursive:
      removed = persistent_recursive_.erase(key);
      break;
  }
  return removed > 0;
}

bool WatchRegistry::Contains(WatchKind kind, std::string_view path) const {
  const PathSet* set = SetFor(kind);
  return set != nullptr && set->contains(std::string(path));
}

proto::SetWatches2 WatchRegistry::Snapshot(int64_t relative_zxid) const {
  proto::SetWatches2 watches;
  watches.relative_zxid = relative_zxid;
  watches.data_watches = Sorted(data_);
  watches.exist_watches = Sorted(exist_);
  watches.child_watches = Sorted(child_);
  watches.persistent_watches = Sorted(persistent_);
  watches.persistent_recursive_watches = Sorted(persistent_recursive_);
  return watches;
}

size_t WatchRegistry::size() const {
  return data_.size() + exist_.size() + child_.size() + persistent_.size() +
         persistent_recursive_.size();
}

void WatchRegistry::Clear() {
  data_.clear();
  exist_.clear();
  child_.clear();
  persistent_.clear();
  persistent_recursive_.clear();
}

}  // namespace zk2etcd::zk

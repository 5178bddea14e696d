#include "sync/recent_deletes.h"

#include <algorithm>

namespace zk2etcd::sync {

void RecentDeletes::Begin() {
  std::lock_guard lock(mutex_);
  active_ = true;
  points_.clear();
}

void RecentDeletes::End() {
  std::lock_guard lock(mutex_);
  active_ = false;
  points_.clear();
}

void RecentDeletes::Note(const std::string& path, int64_t point) {
  std::lock_guard lock(mutex_);
  if (!active_) return;
  int64_t& newest = points_[path];
  newest = std::max(newest, point);
}

std::optional<int64_t> RecentDeletes::DeletedAfter(const std::string& path, int64_t version) const {
  std::lock_guard lock(mutex_);
  const auto it = points_.find(path);
  if (it == points_.end() || it->second <= version) return std::nullopt;
  return it->second;
}

}  // namespace zk2etcd::sync

#include "sync/announced_changes.h"

namespace zk2etcd::sync {

void AnnouncedChanges::Begin() {
  std::lock_guard lock(mutex_);
  active_ = true;
  gap_ = false;
  paths_.clear();
}

void AnnouncedChanges::End() {
  std::lock_guard lock(mutex_);
  active_ = false;
  gap_ = false;
  paths_.clear();
}

void AnnouncedChanges::Note(const std::string& path) {
  std::lock_guard lock(mutex_);
  if (active_ && !gap_) paths_.insert(path);
}

void AnnouncedChanges::NoteGap() {
  std::lock_guard lock(mutex_);
  if (!active_) return;
  gap_ = true;
  paths_.clear();  // every path counts now
}

bool AnnouncedChanges::MayHaveChanged(const std::string& path) const {
  std::lock_guard lock(mutex_);
  return !active_ || gap_ || paths_.count(path) > 0;
}

}  // namespace zk2etcd::sync

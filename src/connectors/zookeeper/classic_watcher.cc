#include "connectors/zookeeper/classic_watcher.h"

namespace zk2etcd::connectors {

namespace {

std::string ChildPath(const std::string& parent, const std::string& name) {
  return parent == "/" ? "/" + name : parent + "/" + name;
}

}  // namespace

ClassicWatcher::ClassicWatcher(const core::Scope& scope,
                               std::function<void(const std::string& path)> on_change,
                               ops::Logger& logger)
    : scope_(scope), on_change_(std::move(on_change)), logger_(logger) {}

void ClassicWatcher::SetClient(zk::ZkClient* client) {
  std::lock_guard lock(client_mutex_);
  client_ = client;
}

size_t ClassicWatcher::watched_parents() const {
  std::lock_guard lock(mutex_);
  return children_.size();
}

void ClassicWatcher::Clear() {
  std::lock_guard lock(mutex_);
  children_.clear();
}

void ClassicWatcher::NoteChildren(const std::string& path,
                                  const std::vector<std::string>& children) {
  std::lock_guard lock(mutex_);
  children_[path] = std::set<std::string>(children.begin(), children.end());
}

void ClassicWatcher::OnWatchEvent(const zk::WatchEvent& event) {
  switch (event.type) {
    case zk::WatchEventType::kNodeChildrenChanged:
      Relist(event.path);
      return;
    case zk::WatchEventType::kNodeDeleted: {
      std::lock_guard lock(mutex_);
      children_.erase(event.path);
      return;
    }
    default:
      return;
  }
}

void ClassicWatcher::Relist(const std::string& path) {
  if (!scope_.ShouldDescend(path)) return;
  std::lock_guard lock(client_mutex_);
  if (client_ == nullptr) return;
  client_->GetChildren(path, true, [this, path](zk::ZkResult<zk::ChildrenReply> reply) {
    OnChildren(path, std::move(reply));
  });
}

void ClassicWatcher::OnChildren(const std::string& path, zk::ZkResult<zk::ChildrenReply> reply) {
  if (!reply.ok()) {
    if (reply.error().code == zk::ZkErrorCode::kNoNode) {
      std::lock_guard lock(mutex_);
      children_.erase(path);
    } else {
      // The next reconciliation walks again and re-arms what a lost connection dropped.
      logger_.Debug("child list failed", {{"path", path}, {"error", reply.error().ToString()}});
    }
    return;
  }
  std::set<std::string> now(reply->children.begin(), reply->children.end());
  std::vector<std::string> added, removed;
  {
    std::lock_guard lock(mutex_);
    std::set<std::string>& before = children_[path];
    for (const std::string& name : now) {
      if (!before.count(name)) added.push_back(name);
    }
    for (const std::string& name : before) {
      if (!now.count(name)) removed.push_back(name);
    }
    before = std::move(now);
  }
  for (const std::string& name : added) {
    const std::string child = ChildPath(path, name);
    on_change_(child);  // its read sets the data watch
    Relist(child);      // its child watch, and descendants created with it
  }
  for (const std::string& name : removed) on_change_(ChildPath(path, name));
}

}  // namespace zk2etcd::connectors

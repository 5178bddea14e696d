// ClassicWatcher: change notification for ZooKeeper servers without persistent recursive watches
// (3.4 and 3.5), from one-shot watches.
//
// Every in-scope node carries a data watch (set by the reads of the walk and of the change
// stream's reads, which re-arm it in the same read that sees the node's state, so no change falls
// in between) and a child watch (set by the walk and here). Data events are the owner's to
// announce. A child event re-lists the children (re-arming the child watch in that read), compares
// them with the last list, reports new and vanished children to `on_change`, and lists new
// children in turn, so a subtree created at once is found whole. Costs one watch of each kind per
// node on the server.
//
// Thread-safe: OnWatchEvent and callbacks come from the client's delivery thread; `on_change` is
// called there too.
#pragma once

#include <functional>
#include <mutex>
#include <set>
#include <string>
#include <unordered_map>
#include <vector>

#include "core/scope.h"
#include "ops/log.h"
#include "zk/zk_client.h"

namespace zk2etcd::connectors {

class ClassicWatcher {
 public:
  // `on_change` receives the path of every child that appeared or vanished (in scope or not: it
  // filters).
  ClassicWatcher(const core::Scope& scope, std::function<void(const std::string& path)> on_change,
                 ops::Logger& logger);

  // The client child lists are read from; null stops re-listing. Once SetClient returns, no
  // request is being issued to the previous client.
  void SetClient(zk::ZkClient* client);
  // Every watch event of the session: child events re-list, deletes forget the node's children.
  // Data events are left to the caller.
  void OnWatchEvent(const zk::WatchEvent& event);
  // The children of `path` as a read (with a child watch) saw them; from the walk.
  void NoteChildren(const std::string& path, const std::vector<std::string>& children);
  // Forgets every child list (a new session has none of the old one's watches).
  void Clear();
  // Nodes whose children are known (for tests and metrics).
  size_t watched_parents() const;

 private:
  void Relist(const std::string& path);
  void OnChildren(const std::string& path, zk::ZkResult<zk::ChildrenReply> reply);

  const core::Scope& scope_;
  const std::function<void(const std::string& path)> on_change_;
  ops::Logger& logger_;
  std::mutex client_mutex_;
  zk::ZkClient* client_ = nullptr;  // guarded by client_mutex_
  mutable std::mutex mutex_;
  std::unordered_map<std::string, std::set<std::string>> children_;
};

}  // namespace zk2etcd::connectors

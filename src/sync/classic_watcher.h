// ClassicWatcher: change notification for ZooKeeper servers without persistent recursive watches
// (3.4 and 3.5), from one-shot watches.
//
// Every in-scope node carries a data watch (set by the reads of the walk and of IncrementalSync,
// which re-arm it in the same read that sees the node's state, so no change falls in between)
// and a child watch (set by the walk and here). Data events go straight to IncrementalSync. A
// child event re-lists the children (re-arming the child watch in that read), compares them with
// the last list, marks new and vanished children dirty, and lists new children in turn, so a
// subtree created at once is found whole. Costs one watch of each kind per node on the server.
//
// Thread-safe: OnWatchEvent and callbacks come from the client's delivery thread.
#pragma once

#include <mutex>
#include <set>
#include <string>
#include <unordered_map>
#include <vector>

#include "ops/log.h"
#include "sync/incremental_sync.h"
#include "core/scope.h"
#include "zk/zk_client.h"

namespace zk2etcd::sync {

class ClassicWatcher {
 public:
  ClassicWatcher(const core::Scope& scope, IncrementalSync& incremental, ops::Logger& logger);

  // Same discipline as IncrementalSync::SetClient.
  void SetClient(zk::ZkClient* client);
  void OnWatchEvent(const zk::WatchEvent& event);
  // The children of `path` as a read (with a child watch) saw them; from the walk.
  void NoteChildren(const std::string& path, const std::vector<std::string>& children);
  // Nodes whose children are known (for tests and metrics).
  size_t watched_parents() const;

 private:
  void Relist(const std::string& path);
  void OnChildren(const std::string& path, zk::ZkResult<zk::ChildrenReply> reply);

  const core::Scope& scope_;
  IncrementalSync& incremental_;
  ops::Logger& logger_;
  std::mutex client_mutex_;
  zk::ZkClient* client_ = nullptr;  // guarded by client_mutex_
  mutable std::mutex mutex_;
  std::unordered_map<std::string, std::set<std::string>> children_;
};

}  // namespace zk2etcd::sync

// WatchRegistry: the client's record of the watches its session holds on the server, so that
// they can be re-registered (SetWatches2) after a reconnect.
//
// It follows the server's rules: a one-shot watch is dropped when an event fires it (NodeCreated
// and NodeDataChanged fire data and exist watches, NodeDeleted fires data, exist and child
// watches, NodeChildrenChanged fires child watches); persistent and persistent recursive watches
// stay until removed. Paths are the server's (chroot included). Not thread-safe: owned by the
// client's network thread.
#pragma once

#include <string>
#include <string_view>
#include <unordered_set>

#include "zk/protocol.h"
#include "zk/zk_types.h"

namespace zk2etcd::zk {

enum class WatchKind { kNone, kData, kExist, kChild, kPersistent, kPersistentRecursive };

class WatchRegistry {
 public:
  void Add(WatchKind kind, std::string_view path);
  // Applies a server notification: drops the one-shot watches it fired.
  void OnEvent(WatchEventType type, std::string_view path);
  // Applies a successful removeWatches; returns whether anything was removed.
  bool Remove(WatcherType type, std::string_view path);
  bool Contains(WatchKind kind, std::string_view path) const;

  // Every watch, as one SetWatches2 record (split it with proto::ChunkSetWatches).
  proto::SetWatches2 Snapshot(int64_t relative_zxid) const;
  size_t size() const;
  bool empty() const { return size() == 0; }
  void Clear();

 private:
  using PathSet = std::unordered_set<std::string>;
  PathSet* SetFor(WatchKind kind);
  const PathSet* SetFor(WatchKind kind) const;

  PathSet data_;
  PathSet exist_;
  PathSet child_;
  PathSet persistent_;
  PathSet persistent_recursive_;
};

}  // namespace zk2etcd::zk

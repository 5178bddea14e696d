// AnnouncedChanges: the source keys whose changes the job's change stream announced while a
// reconciliation ran, so that the reconciliation can repair every other key from its snapshot
// without reading it a second time.
//
// Why that is safe: the stream was registered before the snapshot was read (a ZooKeeper
// persistent watch, or one-shot watches set by the reads themselves), so every change made to an
// entry after the snapshot read it is announced. (The ZooKeeper source may have read the prefixes
// before Begin, right behind the watch registration: it uses that read only if no change in scope
// was announced between that read and the walk, ZooKeeperSource's WalkHead, so the same holds.)
// For a key with no announcement since Begin, the snapshot's state was current when it was read,
// and any later change reaches the sink through the incremental path: a put is fenced by the
// source version (an older repair never undoes a newer put), and a delete that lands before the
// repair's put is deleted again (RecentDeletes).
// A key announced since Begin is read again, as every key was before: its snapshot state may be
// older than what the incremental path already wrote, and an older put would be refused as
// stale at best. The same holds for every key once the stream had a gap (a disconnection or a
// lost session: changes made then were never announced): MayHaveChanged is then true for all.
// A gap whose event the source delivers only after the reconciliation decided (a silent
// partition is noticed by the ZooKeeper client's timeout) can let a repair from the walk write a
// node back that the server deleted meanwhile; the reconciliation the service runs after every
// reconnect and every lost session removes it again (before this shortcut, the second read would
// have failed instead, and that same reconciliation followed).
// A change a source leaves unannounced by design (zk2zk's reverse direction skips the forward
// direction's own writes, ZooKeeperSourceOptions::announce) is the job's echo, which needs no
// repair either.
//
// Only announcements between Begin and End are kept (End forgets them), so memory holds the
// paths changed during one reconciliation, not every change. Thread-safe.
#pragma once

#include <mutex>
#include <string>
#include <unordered_set>

namespace zk2etcd::sync {

class AnnouncedChanges {
 public:
  // A reconciliation starts (before it reads anything) / has finished.
  void Begin();
  void End();
  // The stream announced a change of `path`.
  void Note(const std::string& path);
  // The stream stopped announcing for a while (disconnected, lost): changes may have gone
  // unannounced.
  void NoteGap();
  // Whether `path` may have changed since Begin: announced, or any key after a gap. True
  // outside Begin and End (nothing is known then).
  bool MayHaveChanged(const std::string& path) const;

 private:
  mutable std::mutex mutex_;
  bool active_ = false;
  bool gap_ = false;
  std::unordered_set<std::string> paths_;
};

}  // namespace zk2etcd::sync

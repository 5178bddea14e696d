// RecentDeletes: the deletes the incremental path sent while a reconciliation ran, so that a
// repair that wrote a node the source deleted meanwhile can delete it again.
//
// Why it is needed: a delete removes the entry together with its ownership record, and with the
// record the version that a later put is fenced against. A put made from a read older than the
// deletion then finds neither and creates the entry again (core/sink.h: "for a new entry, none
// exists and neither does the entry"): the sink holds a node the source no longer has. The
// incremental path never does this to itself (IncrementalSync reads and writes a key one at a
// time), but a reconciliation's repair can: its second read sees the node at version V, the node
// is deleted at point A > V, the incremental path's delete lands, then the repair's put.
//
// So the incremental path notes each delete (path and point) before it hands it to the writer,
// and the reconciliation asks, for each repair put that applied, whether a newer delete of its
// path was noted: that delete may have landed first, so the path is deleted again (fenced by the
// point, so a node created again since is not touched). The check covers every order: a delete
// applied before the put was handed to the writer, and so noted, before the put completed; a
// delete noted after the put completed lands after it. Only deletes noted between Begin and End
// are kept (no repair is under way outside a reconciliation); End forgets them.
//
// Thread-safe.
#pragma once

#include <cstdint>
#include <mutex>
#include <optional>
#include <string>
#include <unordered_map>

namespace zk2etcd::sync {

class RecentDeletes {
 public:
  // A reconciliation starts (before it reads anything) / has finished every repair.
  void Begin();
  void End();
  // The incremental path is about to send a delete of `path`, seen absent at `point`.
  void Note(const std::string& path, int64_t point);
  // The point of the newest delete of `path` noted since Begin, if it is newer than `version`.
  std::optional<int64_t> DeletedAfter(const std::string& path, int64_t version) const;

 private:
  mutable std::mutex mutex_;
  bool active_ = false;
  std::unordered_map<std::string, int64_t> points_;  // path -> newest point noted
};

}  // namespace zk2etcd::sync

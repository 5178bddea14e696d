// The values every job shares: an entry of a source as a read saw it, and a snapshot of a scope.
//
// A key is the source's own name for an entry (a ZooKeeper path, an etcd key). A version is the
// source's version of an entry's value (ZooKeeper's mzxid, etcd's mod_revision): it grows with
// every change of the source, so of two reads of one key the higher version is the newer. A point
// is a position in the source's history (ZooKeeper's zxid, etcd's revision) on the same scale.
// Plain values; thread-compatible.
#pragma once

#include <cstddef>
#include <cstdint>
#include <string>
#include <vector>

namespace zk2etcd::core {

struct SourceEntry {
  std::string key;
  std::string value;
  int64_t version = 0;
  // The source's lease the entry is bound to (etcd), 0 when none: a job may bind the copy to a
  // lease of the same TTL (etcd2etcd --copy-leases).
  int64_t lease = 0;
};

// Every entry of a scope at one point of the source's history, sorted by key (byte order).
struct Snapshot {
  std::vector<SourceEntry> entries;
  // Every change up to this point that the read could see is in `entries`.
  int64_t point = 0;
  size_t requests = 0;  // requests the read took (for figures)
  // Of those, sent a second time because the first answer was late (ZooKeeper: on a second
  // session, zk_walker.h).
  size_t requests_sent_again = 0;
  // Every entry is exactly as it was at `point` (etcd: one read at one revision), so a
  // difference found against it needs no second read to be confirmed. False for a walk that
  // reads entries one by one (ZooKeeper): what it saw of one entry may predate `point`.
  bool exact = false;
};

// One key as one read saw it.
struct EntryState {
  bool exists = false;
  std::string value;
  int64_t version = 0;  // when it exists
  // The point at which the read was answered: for an absent key, where the absence was seen.
  int64_t observed_at = 0;
  int64_t lease = 0;  // as SourceEntry::lease, when it exists
};

// One key's change as an ordered change stream delivers it: the new state, not just the key.
struct SourceChange {
  std::string key;
  bool exists = false;  // false: deleted
  std::string value;    // when it exists
  // When it exists, the entry's version after the change; for a delete, the point of the delete.
  int64_t version = 0;
  int64_t lease = 0;  // as SourceEntry::lease
};

// Every in-scope change the source made at one point (an etcd revision: one transaction, which
// a job applies as one), in the source's order.
struct ChangeSet {
  int64_t point = 0;
  std::vector<SourceChange> changes;
};

}  // namespace zk2etcd::core

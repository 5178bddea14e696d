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
};

// Every entry of a scope at one point of the source's history, sorted by key (byte order).
struct Snapshot {
  std::vector<SourceEntry> entries;
  // Every change up to this point that the read could see is in `entries`.
  int64_t point = 0;
  size_t requests = 0;  // requests the read took (for figures)
};

// One key as one read saw it.
struct EntryState {
  bool exists = false;
  std::string value;
  int64_t version = 0;  // when it exists
  // The point at which the read was answered: for an absent key, where the absence was seen.
  int64_t observed_at = 0;
};

}  // namespace zk2etcd::core

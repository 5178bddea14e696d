// KeyLayout: where a source key lands in etcd, and where the job keeps its own records.
//
// zk2etcd (Create: a path scope):
//   data key   = destination prefix + ZooKeeper path        ("" + "/dubbo/a" = "/dubbo/a")
//   meta key   = meta prefix + data key                     ("/zk2etcd/meta/dubbo/a")
// etcd2etcd (ForMirror: a key-prefix scope, --prefix):
//   data key   = destination prefix + (source key without the source prefix), or the source key
//                itself without a destination prefix  ("/registry/a" -> "/mirror/a" or itself)
//   meta key   = meta prefix + data key (the meta prefix is MirrorKeysFor(...).records_prefix)
//
// The meta prefix must lie outside the synced key space (and the synced space outside it), so
// that the job's records never look like synced keys. Immutable; thread-safe.
#pragma once

#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "common/result.h"
#include "core/scope.h"

namespace zk2etcd::connectors {

inline constexpr std::string_view kDefaultMetaPrefix = "/zk2etcd/meta";
// Where an etcd2etcd mirror keeps its own keys on the destination, by default (--meta-prefix).
inline constexpr std::string_view kDefaultMirrorMetaRoot = "/etcd2etcd";

// A mirror's own keys on the destination, all below "<meta_root>/<name>/":
struct MirrorKeys {
  std::string records_prefix;  // ".../records": the meta records (KeyLayout's meta prefix)
  std::string checkpoint_key;  // ".../checkpoint": the source revision applied so far
  std::string election_name;   // ".../election": the replicas' leader election
  std::string leases_prefix;   // ".../leases/": source lease -> destination lease (LeaseMirror)
};
// The keys of mirror `name` under `meta_root` (e.g. kDefaultMirrorMetaRoot). A trailing '/' of
// meta_root is not doubled.
MirrorKeys MirrorKeysFor(std::string_view meta_root, std::string_view name);

// An etcd key range [key, range_end); an empty range_end means the single key.
struct KeyRange {
  std::string key;
  std::string range_end;
};

class KeyLayout {
 public:
  static Result<KeyLayout, std::string> Create(std::string destination_prefix,
                                               std::string meta_prefix, const core::Scope& scope);
  // The layout of a mirror of the source keys starting with `source_prefix` (a key-prefix scope,
  // may be empty: every key). With `destination_prefix`, a key is renamed from source_prefix to
  // it; without, it keeps its name. Fails (one line naming --meta-prefix, --name, --dest-prefix
  // and --prefix) when the meta prefix's range and the destination's data range overlap (either
  // inside the other).
  static Result<KeyLayout, std::string> ForMirror(std::string source_prefix,
                                                  std::optional<std::string> destination_prefix,
                                                  std::string meta_prefix);

  // The data key of a source key (a ZooKeeper path, or a mirror's source key, which starts with
  // the source prefix: a key that does not is appended whole to the destination prefix).
  std::string KeyFor(std::string_view path) const;
  // The source key of a data key (a ZooKeeper path, or a mirror's source key), or nullopt if the
  // key is not under the destination prefix (or, for a path layout, not a path).
  std::optional<std::string> PathFor(std::string_view key) const;
  std::string MetaKeyFor(std::string_view key) const;
  // The data key of a meta key, or nullopt if it is not one.
  std::optional<std::string> KeyForMetaKey(std::string_view meta_key) const;

  // The etcd ranges holding the keys of everything at or below ZooKeeper path `prefix`: the key
  // itself and the keys below "<key>/", so that "/dubbox" is never listed for "/dubbo". For a
  // mirror: the one range of every data key starting with KeyFor(prefix) (string semantics:
  // "/registry" covers "/registry2").
  std::vector<KeyRange> DataRangesFor(std::string_view prefix) const;
  // The same for the meta records of those keys.
  std::vector<KeyRange> MetaRangesFor(std::string_view prefix) const;

  const std::string& destination_prefix() const { return destination_prefix_; }
  const std::string& meta_prefix() const { return meta_prefix_; }
  // True for a mirror's layout (ForMirror).
  bool key_prefix() const { return key_prefix_; }
  // A mirror's source prefix (empty for a path layout).
  const std::string& source_prefix() const { return source_prefix_; }

 private:
  KeyLayout(std::string destination_prefix, std::string meta_prefix)
      : destination_prefix_(std::move(destination_prefix)), meta_prefix_(std::move(meta_prefix)) {}
  static std::vector<KeyRange> RangesBelow(const std::string& key);
  std::vector<KeyRange> RangesFor(const std::string& key) const;

  std::string destination_prefix_;
  std::string meta_prefix_;
  bool key_prefix_ = false;
  std::string source_prefix_;  // key_prefix_ only
};

}  // namespace zk2etcd::connectors

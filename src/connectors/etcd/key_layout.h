// KeyLayout: where a znode lands in etcd, and where zk2etcd keeps its own records.
//
//   data key   = destination prefix + ZooKeeper path        ("" + "/dubbo/a" = "/dubbo/a")
//   meta key   = meta prefix + data key                     ("/zk2etcd/meta/dubbo/a")
//
// The meta prefix must lie outside the synced key space (and the synced space outside it), so
// that zk2etcd's records never look like synced keys. Immutable; thread-safe.
#pragma once

#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "common/result.h"
#include "core/scope.h"

namespace zk2etcd::connectors {

inline constexpr std::string_view kDefaultMetaPrefix = "/zk2etcd/meta";

// An etcd key range [key, range_end); an empty range_end means the single key.
struct KeyRange {
  std::string key;
  std::string range_end;
};

class KeyLayout {
 public:
  static Result<KeyLayout, std::string> Create(std::string destination_prefix,
                                               std::string meta_prefix, const core::Scope& scope);

  std::string KeyFor(std::string_view path) const;
  // The ZooKeeper path of a data key, or nullopt if the key is not under the destination prefix.
  std::optional<std::string> PathFor(std::string_view key) const;
  std::string MetaKeyFor(std::string_view key) const;
  // The data key of a meta key, or nullopt if it is not one.
  std::optional<std::string> KeyForMetaKey(std::string_view meta_key) const;

  // The etcd ranges holding the keys of everything at or below ZooKeeper path `prefix`: the key
  // itself and the keys below "<key>/", so that "/dubbox" is never listed for "/dubbo".
  std::vector<KeyRange> DataRangesFor(std::string_view prefix) const;
  // The same for the meta records of those keys.
  std::vector<KeyRange> MetaRangesFor(std::string_view prefix) const;

  const std::string& destination_prefix() const { return destination_prefix_; }
  const std::string& meta_prefix() const { return meta_prefix_; }

 private:
  KeyLayout(std::string destination_prefix, std::string meta_prefix)
      : destination_prefix_(std::move(destination_prefix)), meta_prefix_(std::move(meta_prefix)) {}
  static std::vector<KeyRange> RangesBelow(const std::string& key);

  std::string destination_prefix_;
  std::string meta_prefix_;
};

}  // namespace zk2etcd::connectors

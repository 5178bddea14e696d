#include "connectors/etcd/key_layout.h"

#include "etcd/etcd_client.h"

namespace zk2etcd::connectors {

Result<KeyLayout, std::string> KeyLayout::Create(std::string destination_prefix,
                                                 std::string meta_prefix,
                                                 const core::Scope& scope) {
  if (!destination_prefix.empty() && destination_prefix.back() == '/') {
    return Unexpected{"--etcd-key-prefix \"" + destination_prefix +
                      "\" must not end with '/' (ZooKeeper paths start with one)"};
  }
  if (meta_prefix.empty() || meta_prefix.front() != '/' || meta_prefix.back() == '/') {
    return Unexpected{"--etcd-meta-prefix \"" + meta_prefix +
                      "\" must start with '/' and not end with '/'"};
  }
  KeyLayout layout(std::move(destination_prefix), std::move(meta_prefix));
  for (const std::string& prefix : scope.prefixes()) {
    const std::string meta_root = layout.MetaKeyFor(layout.KeyFor(prefix));
    for (const std::string& other : scope.prefixes()) {
      const std::string synced = layout.KeyFor(other);
      if (core::IsSameOrBelow(meta_root, synced) || core::IsSameOrBelow(synced, meta_root) ||
          core::IsSameOrBelow(synced, layout.meta_prefix_)) {
        return Unexpected{"--etcd-meta-prefix \"" + layout.meta_prefix_ +
                          "\" overlaps the synced etcd keys under \"" + synced +
                          "\"; choose a meta prefix outside them, or set --etcd-key-prefix"};
      }
    }
  }
  return layout;
}

std::string KeyLayout::KeyFor(std::string_view path) const {
  if (path == "/" && !destination_prefix_.empty()) return destination_prefix_ + "/";
  std::string key;
  key.reserve(destination_prefix_.size() + path.size());
  key += destination_prefix_;
  key += path;
  return key;
}

std::optional<std::string> KeyLayout::PathFor(std::string_view key) const {
  if (!key.starts_with(destination_prefix_)) return std::nullopt;
  std::string_view path = key.substr(destination_prefix_.size());
  if (path.empty() || path.front() != '/') return std::nullopt;
  if (path.size() > 1 && path.back() == '/') return std::nullopt;
  return std::string(path);
}

std::string KeyLayout::MetaKeyFor(std::string_view key) const {
  std::string meta;
  meta.reserve(meta_prefix_.size() + key.size());
  meta += meta_prefix_;
  meta += key;
  return meta;
}

std::optional<std::string> KeyLayout::KeyForMetaKey(std::string_view meta_key) const {
  if (!meta_key.starts_with(meta_prefix_)) return std::nullopt;
  return std::string(meta_key.substr(meta_prefix_.size()));
}

std::vector<KeyRange> KeyLayout::RangesBelow(const std::string& key) {
  // The key itself, then everything below "<key>/". For the root "/" the second range starts at
  // "/" + "/"... which is not what we want: the root's key already ends with '/'.
  if (!key.empty() && key.back() == '/') return {{key, etcd::PrefixEnd(key)}};
  const std::string below = key + "/";
  return {{key, ""}, {below, etcd::PrefixEnd(below)}};
}

std::vector<KeyRange> KeyLayout::DataRangesFor(std::string_view prefix) const {
  return RangesBelow(KeyFor(prefix));
}

std::vector<KeyRange> KeyLayout::MetaRangesFor(std::string_view prefix) const {
  return RangesBelow(MetaKeyFor(KeyFor(prefix)));
}

}  // namespace zk2etcd::connectors

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

Result<KeyLayout, std::string> KeyLayout::ForMirror(std::string source_prefix,
                                                    std::optional<std::string> destination_prefix,
                                                    std::string meta_prefix) {
  std::string destination = destination_prefix ? std::move(*destination_prefix) : source_prefix;
  if (meta_prefix.empty()) {
    return Unexpected{std::string("--meta-prefix and --name give an empty records prefix")};
  }
  // The records' directory ("<meta root>/<name>/") holds the checkpoint, the election and the
  // lease mappings too: none of it may be a data key, nor any data key one of them.
  const size_t slash = meta_prefix.rfind('/');
  const std::string_view directory = slash == std::string::npos
                                         ? std::string_view(meta_prefix)
                                         : std::string_view(meta_prefix).substr(0, slash + 1);
  if (directory.starts_with(destination) || std::string_view(destination).starts_with(directory)) {
    return Unexpected{"the mirror's own keys under \"" + std::string(directory) +
                      "\" (--meta-prefix, --name) overlap the destination keys under \"" +
                      destination + "\" (--dest-prefix, or --prefix without it); choose a " +
                      "--meta-prefix outside them, or another --dest-prefix"};
  }
  KeyLayout layout(std::move(destination), std::move(meta_prefix));
  layout.key_prefix_ = true;
  layout.source_prefix_ = std::move(source_prefix);
  return layout;
}

MirrorKeys MirrorKeysFor(std::string_view meta_root, std::string_view name) {
  std::string base(meta_root);
  if (!base.empty() && base.back() == '/') base.pop_back();
  base += '/';
  base += name;
  return MirrorKeys{base + "/records", base + "/checkpoint", base + "/election", base + "/leases/"};
}

std::string KeyLayout::KeyFor(std::string_view path) const {
  if (key_prefix_) {
    std::string key;
    const std::string_view rest =
        path.starts_with(source_prefix_) ? path.substr(source_prefix_.size()) : path;
    key.reserve(destination_prefix_.size() + rest.size());
    key += destination_prefix_;
    key += rest;
    return key;
  }
  if (path == "/" && !destination_prefix_.empty()) return destination_prefix_ + "/";
  std::string key;
  key.reserve(destination_prefix_.size() + path.size());
  key += destination_prefix_;
  key += path;
  return key;
}

std::optional<std::string> KeyLayout::PathFor(std::string_view key) const {
  if (!key.starts_with(destination_prefix_)) return std::nullopt;
  if (key_prefix_) return source_prefix_ + std::string(key.substr(destination_prefix_.size()));
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

std::vector<KeyRange> KeyLayout::RangesFor(const std::string& key) const {
  if (key_prefix_) return {{key, etcd::PrefixEnd(key)}};
  return RangesBelow(key);
}

std::vector<KeyRange> KeyLayout::DataRangesFor(std::string_view prefix) const {
  return RangesFor(KeyFor(prefix));
}

std::vector<KeyRange> KeyLayout::MetaRangesFor(std::string_view prefix) const {
  return RangesFor(MetaKeyFor(KeyFor(prefix)));
}

}  // namespace zk2etcd::connectors

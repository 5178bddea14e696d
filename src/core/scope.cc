#include "core/scope.h"

#include <algorithm>

namespace zk2etcd::core {

namespace {

constexpr std::string_view kZooKeeperSystemTree = "/zookeeper";

// Sorts and drops every entry that lies below another one.
std::vector<std::string> MergeNested(std::vector<std::string> paths) {
  std::sort(paths.begin(), paths.end());
  paths.erase(std::unique(paths.begin(), paths.end()), paths.end());
  std::vector<std::string> merged;
  for (std::string& path : paths) {
    const bool covered = std::any_of(merged.begin(), merged.end(), [&](const std::string& kept) {
      return IsSameOrBelow(path, kept);
    });
    if (!covered) merged.push_back(std::move(path));
  }
  return merged;
}

}  // namespace

bool IsSameOrBelow(std::string_view path, std::string_view ancestor) {
  // An ancestor ending in '/' ("/" itself, or an etcd key like "/zk/") covers what starts with it.
  if (!ancestor.empty() && ancestor.back() == '/') return path.starts_with(ancestor);
  if (!path.starts_with(ancestor)) return false;
  return path.size() == ancestor.size() || path[ancestor.size()] == '/';
}

Result<void, std::string> ValidateZkPath(std::string_view path, std::string_view what) {
  auto invalid = [&](std::string_view why) {
    return Unexpected{std::string(what) + " \"" + std::string(path) + "\" is not a valid " +
                      "ZooKeeper path: " + std::string(why)};
  };
  if (path.empty() || path.front() != '/') return invalid("it must start with '/'");
  if (path == "/") return {};
  if (path.back() == '/') return invalid("it must not end with '/'");
  if (path.find('\0') != std::string_view::npos) return invalid("it contains a NUL byte");
  size_t start = 1;
  while (start <= path.size()) {
    const size_t end = std::min(path.find('/', start), path.size());
    const std::string_view component = path.substr(start, end - start);
    if (component.empty()) return invalid("it contains an empty component (\"//\")");
    if (component == "." || component == "..") return invalid("it contains . or ..");
    start = end + 1;
  }
  return {};
}

Result<Scope, std::string> Scope::Create(const std::vector<std::string>& prefixes,
                                         const std::vector<std::string>& excludes,
                                         const ScopeFlagNames& flags) {
  const std::string prefixes_flag(flags.prefixes);
  const std::string excludes_flag(flags.excludes);
  if (prefixes.empty()) {
    return Unexpected{prefixes_flag + " is empty: give at least one path to sync"};
  }
  for (const std::string& prefix : prefixes) {
    if (auto valid = ValidateZkPath(prefix, prefixes_flag); !valid.ok()) {
      return Unexpected{valid.error()};
    }
  }
  for (const std::string& exclude : excludes) {
    if (auto valid = ValidateZkPath(exclude, excludes_flag); !valid.ok()) {
      return Unexpected{valid.error()};
    }
  }
  std::vector<std::string> merged_prefixes = MergeNested(prefixes);
  std::vector<std::string> all_excludes = excludes;
  all_excludes.emplace_back(kZooKeeperSystemTree);
  std::vector<std::string> merged_excludes;
  for (std::string& exclude : MergeNested(std::move(all_excludes))) {
    for (const std::string& prefix : merged_prefixes) {
      if (IsSameOrBelow(prefix, exclude)) {
        if (exclude == kZooKeeperSystemTree) {
          return Unexpected{prefixes_flag + " \"" + prefix +
                            "\" lies in ZooKeeper's own /zookeeper tree, which is never synced"};
        }
        return Unexpected{excludes_flag + " \"" + exclude + "\" removes the whole " +
                          prefixes_flag + " \"" + prefix + "\""};
      }
    }
    const bool inside_some_prefix =
        std::any_of(merged_prefixes.begin(), merged_prefixes.end(),
                    [&](const std::string& prefix) { return IsSameOrBelow(exclude, prefix); });
    if (inside_some_prefix) merged_excludes.push_back(std::move(exclude));
  }
  std::vector<std::string> ignored_excludes;
  for (const std::string& exclude : excludes) {
    const bool inside_some_prefix =
        std::any_of(merged_prefixes.begin(), merged_prefixes.end(),
                    [&](const std::string& prefix) { return IsSameOrBelow(exclude, prefix); });
    if (!inside_some_prefix) ignored_excludes.push_back(exclude);
  }
  Scope scope(std::move(merged_prefixes), std::move(merged_excludes), /*key_prefix=*/false);
  scope.ignored_excludes_ = std::move(ignored_excludes);
  return scope;
}

Scope Scope::ForKeyPrefix(std::string prefix) {
  std::vector<std::string> prefixes;
  prefixes.push_back(std::move(prefix));
  return Scope(std::move(prefixes), {}, /*key_prefix=*/true);
}

bool Scope::Covers(std::string_view key, std::string_view prefix) const {
  return key_prefix_ ? key.starts_with(prefix) : IsSameOrBelow(key, prefix);
}

bool Scope::IsExcluded(std::string_view path) const {
  return std::any_of(excludes_.begin(), excludes_.end(),
                     [&](const std::string& exclude) { return IsSameOrBelow(path, exclude); });
}

bool Scope::Contains(std::string_view path) const {
  const bool under_prefix =
      std::any_of(prefixes_.begin(), prefixes_.end(),
                  [&](const std::string& prefix) { return Covers(path, prefix); });
  return under_prefix && !IsExcluded(path);
}

bool Scope::ShouldDescend(std::string_view path) const {
  if (IsExcluded(path)) return false;
  return std::any_of(prefixes_.begin(), prefixes_.end(), [&](const std::string& prefix) {
    return Covers(path, prefix) || (!key_prefix_ && IsSameOrBelow(prefix, path));
  });
}

}  // namespace zk2etcd::core

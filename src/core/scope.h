// Scope: which keys of a source a job mirrors. Two kinds:
//
//   - paths (Create: zk2etcd and zk2zk, from --zookeeper-prefix and --zookeeper-exclude-prefix):
//     a path is in scope when it equals a prefix or lies below it, with a path boundary
//     ("/dubbo" covers "/dubbo" and "/dubbo/x", never "/dubbox"), and it is neither equal to nor
//     below an exclude. Empty list entries are ignored, overlapping prefixes are merged, and an
//     empty exclude list excludes nothing. ZooKeeper's own "/zookeeper" subtree is always
//     excluded;
//   - a key prefix (ForKeyPrefix: etcd2etcd's --prefix): every key that starts with the prefix,
//     byte for byte ("/registry" covers "/registry2" too), as etcd's own --prefix.
//
// Immutable after creation; thread-safe.
#pragma once

#include <string>
#include <string_view>
#include <vector>

#include "common/result.h"

namespace zk2etcd::core {

// True when `path` equals `ancestor` or lies below it ("/" is the ancestor of every path).
bool IsSameOrBelow(std::string_view path, std::string_view ancestor);

// Checks that `path` is an absolute ZooKeeper path: starts with '/', no empty, "." or ".."
// component, no trailing '/' (except "/" itself), no NUL. The error names `what` and the path.
Result<void, std::string> ValidateZkPath(std::string_view path, std::string_view what);

// The flags a path scope's lists come from, for its error messages.
struct ScopeFlagNames {
  std::string_view prefixes = "--zookeeper-prefix";
  std::string_view excludes = "--zookeeper-exclude-prefix";
};

class Scope {
 public:
  // Fails (one line naming the flag and the value) on an invalid path, an empty prefix list, or
  // an exclude that removes a whole prefix.
  static Result<Scope, std::string> Create(const std::vector<std::string>& prefixes,
                                           const std::vector<std::string>& excludes,
                                           const ScopeFlagNames& flags = {});

  // A key-prefix scope: every key starting with `prefix` (which may be empty: every key).
  static Scope ForKeyPrefix(std::string prefix);

  bool Contains(std::string_view path) const;
  // Whether `key` lies in the part of the scope under `prefix` (one of prefixes()): at or below
  // it for paths, starting with it for a key prefix.
  bool Covers(std::string_view key, std::string_view prefix) const;
  // True for a ForKeyPrefix scope.
  bool key_prefix() const { return key_prefix_; }
  // Whether a walk that reached `path` must look at its children: false when the subtree is
  // excluded or lies outside every prefix and is not an ancestor of one.
  bool ShouldDescend(std::string_view path) const;
  bool IsExcluded(std::string_view path) const;

  // The merged prefixes, sorted; none lies below another.
  const std::vector<std::string>& prefixes() const { return prefixes_; }
  // The excludes that lie inside some prefix (others cannot matter), sorted.
  const std::vector<std::string>& excludes() const { return excludes_; }
  // The excludes given to Create that lie outside every prefix, so exclude nothing, in the order
  // given (for a warning: a typo there silently syncs what the operator meant to leave out).
  const std::vector<std::string>& ignored_excludes() const { return ignored_excludes_; }

 private:
  Scope(std::vector<std::string> prefixes, std::vector<std::string> excludes, bool key_prefix)
      : prefixes_(std::move(prefixes)), excludes_(std::move(excludes)), key_prefix_(key_prefix) {}

  std::vector<std::string> prefixes_;
  std::vector<std::string> excludes_;
  std::vector<std::string> ignored_excludes_;
  bool key_prefix_ = false;
};

}  // namespace zk2etcd::core

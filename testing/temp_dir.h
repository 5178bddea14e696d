// Temporary directories for server data and logs, removed when the owner is destroyed.
//
// Each lives under /tmp/zk2etcd-test.<pid>.<random>; creating the first one also removes the
// directories of earlier test processes that are no longer alive, so a test binary that crashed
// leaves nothing behind for long. Thread-safe.
#pragma once

#include <string>

#include "testing/process.h"

namespace zk2etcd::testing {

class TempDir {
 public:
  static FixtureResult<TempDir> Create(const std::string& label);
  TempDir(TempDir&& other) noexcept : path_(std::move(other.path_)) { other.path_.clear(); }
  TempDir& operator=(TempDir&&) = delete;
  TempDir(const TempDir&) = delete;
  ~TempDir();

  const std::string& path() const { return path_; }
  std::string File(const std::string& name) const { return path_ + "/" + name; }

 private:
  explicit TempDir(std::string path) : path_(std::move(path)) {}
  std::string path_;
};

// Writes `contents` to `path`, replacing it.
FixtureResult<void> WriteFile(const std::string& path, const std::string& contents);

}  // namespace zk2etcd::testing

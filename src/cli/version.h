// What `zk2etcd version` prints: the build's identity and the versions of the libraries it was
// compiled against. Pure; thread-safe.
#pragma once

#include <string>
#include <utility>
#include <vector>

namespace zk2etcd::cli {

struct BuildInfo {
  std::string version;
  std::string git_commit;
  std::string build_date;
  std::string compiler;
  // (name, version) of each dependency, in a stable order.
  std::vector<std::pair<std::string, std::string>> dependencies;
};

BuildInfo GetBuildInfo();
std::string FormatVersion(const BuildInfo& info);

}  // namespace zk2etcd::cli

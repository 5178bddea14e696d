// The build's identity, defined in a file that cmake/write_build_info.cmake generates at build
// time (library zk2etcd_build_info). Constants; thread-safe.
#pragma once

namespace zk2etcd::build_values {
extern const char kVersion[];
extern const char kGitCommit[];
extern const char kBuildDate[];
extern const char kEtcdProtoVersion[];  // Debian version of golang-etcd-server-dev
}  // namespace zk2etcd::build_values

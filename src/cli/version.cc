#include "cli/version.h"

#include <asio/version.hpp>
#include <google/protobuf/stubs/common.h>
#include <grpcpp/grpcpp.h>
#include <hiredis/hiredis.h>
#include <openssl/crypto.h>

#include "common/build_values.h"

namespace zk2etcd::cli {

BuildInfo GetBuildInfo() {
  BuildInfo info;
  info.version = build_values::kVersion;
  info.git_commit = build_values::kGitCommit;
  info.build_date = build_values::kBuildDate;
#if defined(__clang__)
  info.compiler = "clang " __clang_version__;
#elif defined(__GNUC__)
  info.compiler = "g++ " __VERSION__;
#else
  info.compiler = "unknown";
#endif
  info.dependencies = {
      {"gRPC", grpc::Version()},
      {"protobuf", google::protobuf::internal::VersionString(GOOGLE_PROTOBUF_VERSION)},
      {"asio", std::to_string(ASIO_VERSION / 100000) + "." +
                   std::to_string(ASIO_VERSION / 100 % 1000) + "." +
                   std::to_string(ASIO_VERSION % 100)},
      {"hiredis", std::to_string(HIREDIS_MAJOR) + "." + std::to_string(HIREDIS_MINOR) + "." +
                      std::to_string(HIREDIS_PATCH)},
      {"OpenSSL", OpenSSL_version(OPENSSL_VERSION_STRING)},
      {"etcd API (.proto)", build_values::kEtcdProtoVersion},
  };
  return info;
}

std::string FormatVersion(const BuildInfo& info) {
  std::string out = "zk2etcd " + info.version + "\n";
  out += "  git commit:  " + info.git_commit + "\n";
  out += "  build date:  " + info.build_date + "\n";
  out += "  compiler:    " + info.compiler + "\n";
  out += "  libraries:\n";
  for (const auto& [name, version] : info.dependencies) {
    out += "    " + name + std::string(name.size() < 18 ? 18 - name.size() : 1, ' ') + version +
           "\n";
  }
  return out;
}

}  // namespace zk2etcd::cli

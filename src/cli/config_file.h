// The optional --config file: YAML whose keys are flag names without the dashes, e.g.
//
//   zookeeper-servers: zk-0:2181,zk-1:2181
//   zookeeper-prefix: [/dubbo, /roc]      # a list is the same as a comma-separated string
//   fullsync-interval: 5m
//   log-level: info
//
// Values from the file count below flags and environment variables. Pure function of the file;
// thread-safe.
#pragma once

#include <string>
#include <utility>
#include <vector>

#include "common/result.h"

namespace zk2etcd::cli {

// (flag name, value) pairs in file order. Errors name the file and, where known, the line.
Result<std::vector<std::pair<std::string, std::string>>, std::string> LoadConfigFile(
    const std::string& path);

}  // namespace zk2etcd::cli

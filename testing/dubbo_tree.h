// Dubbo-shaped ZooKeeper trees for tests and the local demo:
//   /dubbo/<interface>/{providers,consumers,configurators,routers}/<URL-encoded Dubbo URL>
// plus /dubbo/config/... (which zk2etcd excludes by default). Deterministic for a given shape.
// Pure functions; thread-safe.
#pragma once

#include <string>
#include <vector>

#include "common/strings.h"

namespace zk2etcd::testing {

struct DubboTreeShape {
  std::string root = "/dubbo";
  int interfaces = 10;
  int providers_per_interface = 3;
  int consumers_per_interface = 2;
  // Every n-th leaf carries data (a small JSON blob); 0 for none.
  int data_every = 7;
  // Nodes under <root>/config, as Dubbo's configuration centre writes them.
  int config_nodes = 3;
};

struct ZNode {
  std::string path;
  std::string data;
};

// Every node of the tree, parents before children (the root first), so creating them in order
// works. Intermediate nodes have empty data.
std::vector<ZNode> MakeDubboTree(const DubboTreeShape& shape);

// Node names are percent-encoded Dubbo URLs (zk2etcd::UrlEncode, common/strings.h).
using ::zk2etcd::UrlEncode;

}  // namespace zk2etcd::testing

#include "testing/dubbo_tree.h"


namespace zk2etcd::testing {

namespace {

std::string DubboUrl(const std::string& side, const std::string& interface, int host, int index) {
  const std::string scheme = side == "provider" ? "dubbo" : "consumer";
  const std::string address = "10.0." + std::to_string(host / 250) + "." +
                              std::to_string(host % 250 + 1) + (side == "provider" ? ":20880" : "");
  return scheme + "://" + address + "/" + interface + "?application=demo-" + side +
         "&dubbo=2.0.2&interface=" + interface + "&methods=sayHello,sayGoodbye&pid=" +
         std::to_string(1000 + index) + "&side=" + side + "&timestamp=16" +
         std::to_string(10000000 + index * 7919) + "000";
}

}  // namespace

std::vector<ZNode> MakeDubboTree(const DubboTreeShape& shape) {
  std::vector<ZNode> nodes;
  nodes.push_back({shape.root, ""});
  int leaf = 0;
  auto leaf_data = [&] {
    ++leaf;
    if (shape.data_every <= 0 || leaf % shape.data_every != 0) return std::string();
    return "{\"weight\":" + std::to_string(leaf % 100) + ",\"leaf\":" + std::to_string(leaf) + "}";
  };
  for (int i = 0; i < shape.interfaces; ++i) {
    const std::string interface = "org.example.service" + std::to_string(i / 100) + ".Demo" +
                                  std::to_string(i) + "Service";
    const std::string base = shape.root + "/" + interface;
    nodes.push_back({base, ""});
    for (const char* category : {"providers", "consumers", "configurators", "routers"}) {
      nodes.push_back({base + "/" + category, ""});
    }
    for (int p = 0; p < shape.providers_per_interface; ++p) {
      nodes.push_back({base + "/providers/" + UrlEncode(DubboUrl("provider", interface, p, i)),
                       leaf_data()});
    }
    for (int c = 0; c < shape.consumers_per_interface; ++c) {
      nodes.push_back({base + "/consumers/" + UrlEncode(DubboUrl("consumer", interface, c, i)),
                       leaf_data()});
    }
  }
  if (shape.config_nodes > 0) {
    nodes.push_back({shape.root + "/config", ""});
    nodes.push_back({shape.root + "/config/dubbo", ""});
    for (int n = 0; n < shape.config_nodes; ++n) {
      nodes.push_back({shape.root + "/config/dubbo/app" + std::to_string(n) + ".configurators",
                       "configVersion: v2.7\nenabled: true\n"});
    }
  }
  return nodes;
}

}  // namespace zk2etcd::testing

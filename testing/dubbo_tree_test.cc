#include "testing/dubbo_tree.h"

#include <gtest/gtest.h>

#include <set>

namespace zk2etcd::testing {
namespace {

TEST(DubboTreeTest, ParentsComeBeforeChildrenAndPathsAreUnique) {
  DubboTreeShape shape;
  shape.interfaces = 20;
  const std::vector<ZNode> nodes = MakeDubboTree(shape);
  std::set<std::string> seen;
  for (const ZNode& node : nodes) {
    const std::string parent = node.path.substr(0, node.path.rfind('/'));
    if (node.path != shape.root) {
      EXPECT_TRUE(seen.count(parent)) << node.path;
    }
    EXPECT_TRUE(seen.insert(node.path).second) << "duplicate " << node.path;
  }
  // root + per interface (1 + 4 categories + 3 providers + 2 consumers) + config (2 + 3)
  EXPECT_EQ(nodes.size(), 1u + 20u * 10u + 5u);
}

TEST(DubboTreeTest, LeafNamesAreUrlEncodedDubboUrlsOfRealisticLength) {
  const std::vector<ZNode> nodes = MakeDubboTree(DubboTreeShape{});
  const ZNode& provider = nodes.at(6);
  ASSERT_NE(provider.path.find("/providers/dubbo%3A%2F%2F10.0.0.1%3A20880%2F"), std::string::npos)
      << provider.path;
  const std::string leaf = provider.path.substr(provider.path.rfind('/') + 1);
  EXPECT_GT(leaf.size(), 150u);
  EXPECT_EQ(leaf.find('/'), std::string::npos);
}

}  // namespace
}  // namespace zk2etcd::testing

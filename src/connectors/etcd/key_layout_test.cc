#include "connectors/etcd/key_layout.h"

#include <gtest/gtest.h>

namespace zk2etcd::connectors {
namespace {

core::Scope MakeScope(std::vector<std::string> prefixes) {
  return core::Scope::Create(prefixes, {}).value();
}

TEST(KeyLayoutTest, MapsPathsToKeysAndBack) {
  KeyLayout layout =
      KeyLayout::Create("", std::string(kDefaultMetaPrefix), MakeScope({"/dubbo"})).value();
  EXPECT_EQ(layout.KeyFor("/dubbo/a"), "/dubbo/a");
  EXPECT_EQ(layout.PathFor("/dubbo/a"), "/dubbo/a");
  EXPECT_EQ(layout.MetaKeyFor("/dubbo/a"), "/zk2etcd/meta/dubbo/a");
  EXPECT_EQ(layout.KeyForMetaKey("/zk2etcd/meta/dubbo/a"), "/dubbo/a");
  EXPECT_EQ(layout.KeyForMetaKey("/other/dubbo/a"), std::nullopt);
}

TEST(KeyLayoutTest, DestinationPrefixIsPrepended) {
  KeyLayout layout = KeyLayout::Create("/registry", "/zk2etcd/meta", MakeScope({"/dubbo"})).value();
  EXPECT_EQ(layout.KeyFor("/dubbo/a"), "/registry/dubbo/a");
  EXPECT_EQ(layout.PathFor("/registry/dubbo/a"), "/dubbo/a");
  EXPECT_EQ(layout.PathFor("/registryx/dubbo/a"), std::nullopt);
  EXPECT_EQ(layout.PathFor("/other"), std::nullopt);
  EXPECT_EQ(layout.MetaKeyFor("/registry/dubbo/a"), "/zk2etcd/meta/registry/dubbo/a");
}

TEST(KeyLayoutTest, RangesRespectPathBoundaries) {
  KeyLayout layout = KeyLayout::Create("", "/zk2etcd/meta", MakeScope({"/dubbo"})).value();
  const std::vector<KeyRange> ranges = layout.DataRangesFor("/dubbo");
  ASSERT_EQ(ranges.size(), 2u);
  EXPECT_EQ(ranges[0].key, "/dubbo");
  EXPECT_EQ(ranges[0].range_end, "");
  EXPECT_EQ(ranges[1].key, "/dubbo/");
  EXPECT_EQ(ranges[1].range_end, "/dubbo0");
  // "/dubbox" sorts after "/dubbo/" and "/dubbo0" ('x' > '0'), so no range includes it.
  EXPECT_GT(std::string("/dubbox"), ranges[1].range_end);
  const std::vector<KeyRange> meta = layout.MetaRangesFor("/dubbo");
  EXPECT_EQ(meta[1].key, "/zk2etcd/meta/dubbo/");
}

TEST(KeyLayoutTest, RootPrefixNeedsADestinationPrefix) {
  auto clash = KeyLayout::Create("", "/zk2etcd/meta", MakeScope({"/"}));
  ASSERT_FALSE(clash.ok());
  EXPECT_NE(clash.error().find("--etcd-meta-prefix"), std::string::npos);

  KeyLayout layout = KeyLayout::Create("/zk", "/zk2etcd/meta", MakeScope({"/"})).value();
  EXPECT_EQ(layout.KeyFor("/"), "/zk/");
  EXPECT_EQ(layout.KeyFor("/a"), "/zk/a");
  EXPECT_EQ(layout.PathFor("/zk/"), "/");
  const std::vector<KeyRange> ranges = layout.DataRangesFor("/");
  ASSERT_EQ(ranges.size(), 1u);
  EXPECT_EQ(ranges[0].key, "/zk/");
}

TEST(KeyLayoutTest, MetaPrefixMustStayOutsideSyncedKeys) {
  EXPECT_FALSE(KeyLayout::Create("", "/dubbo/meta", MakeScope({"/dubbo"})).ok());
  EXPECT_FALSE(KeyLayout::Create("", "/zk2etcd/meta", MakeScope({"/zk2etcd"})).ok());
  EXPECT_FALSE(KeyLayout::Create("", "/m", MakeScope({"/m/dubbo", "/dubbo"})).ok());
  EXPECT_TRUE(KeyLayout::Create("", "/dubbox", MakeScope({"/dubbo"})).ok());
  EXPECT_FALSE(KeyLayout::Create("/reg/", "/m", MakeScope({"/dubbo"})).ok());
  EXPECT_FALSE(KeyLayout::Create("", "m", MakeScope({"/dubbo"})).ok());
}

}  // namespace
}  // namespace zk2etcd::connectors

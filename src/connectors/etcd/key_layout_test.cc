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

TEST(KeyLayoutTest, MirrorKeepsKeysWithoutADestinationPrefix) {
  KeyLayout layout =
      KeyLayout::ForMirror("/registry", std::nullopt, "/etcd2etcd/m/records").value();
  EXPECT_TRUE(layout.key_prefix());
  EXPECT_EQ(layout.KeyFor("/registry/a"), "/registry/a");
  EXPECT_EQ(layout.KeyFor("/registry2"), "/registry2");
  EXPECT_EQ(layout.PathFor("/registry/a"), "/registry/a");
  EXPECT_EQ(layout.PathFor("/registry2/x/"), "/registry2/x/");  // any key, no path rules
  EXPECT_EQ(layout.PathFor("/other"), std::nullopt);
  EXPECT_EQ(layout.MetaKeyFor("/registry/a"), "/etcd2etcd/m/records/registry/a");
  EXPECT_EQ(layout.KeyForMetaKey("/etcd2etcd/m/records/registry/a"), "/registry/a");
}

TEST(KeyLayoutTest, MirrorRenamesTheSourcePrefixToTheDestinationPrefix) {
  KeyLayout layout =
      KeyLayout::ForMirror("/registry", std::string("/copy"), "/etcd2etcd/m/records").value();
  EXPECT_EQ(layout.KeyFor("/registry/a"), "/copy/a");
  EXPECT_EQ(layout.KeyFor("/registry2"), "/copy2");
  EXPECT_EQ(layout.KeyFor("/registry"), "/copy");
  EXPECT_EQ(layout.PathFor("/copy/a"), "/registry/a");
  EXPECT_EQ(layout.PathFor("/copy2"), "/registry2");
  EXPECT_EQ(layout.PathFor("/registry/a"), std::nullopt);
  EXPECT_EQ(layout.MetaKeyFor(layout.KeyFor("/registry/a")), "/etcd2etcd/m/records/copy/a");

  // An empty source prefix mirrors every key below the destination prefix.
  KeyLayout all = KeyLayout::ForMirror("", std::string("/dc1/"), "/etcd2etcd/m/records").value();
  EXPECT_EQ(all.KeyFor("a/b"), "/dc1/a/b");
  EXPECT_EQ(all.PathFor("/dc1/a/b"), "a/b");
}

TEST(KeyLayoutTest, MirrorRangesArePlainStringPrefixes) {
  KeyLayout layout =
      KeyLayout::ForMirror("/registry", std::nullopt, "/etcd2etcd/m/records").value();
  const std::vector<KeyRange> ranges = layout.DataRangesFor("/registry");
  ASSERT_EQ(ranges.size(), 1u);
  EXPECT_EQ(ranges[0].key, "/registry");
  EXPECT_EQ(ranges[0].range_end, "/registrz");
  EXPECT_LT(std::string("/registry2"), ranges[0].range_end);  // "/registry" covers "/registry2"
  const std::vector<KeyRange> meta = layout.MetaRangesFor("/registry");
  ASSERT_EQ(meta.size(), 1u);
  EXPECT_EQ(meta[0].key, "/etcd2etcd/m/records/registry");
  EXPECT_EQ(meta[0].range_end, "/etcd2etcd/m/records/registrz");

  KeyLayout renamed =
      KeyLayout::ForMirror("/registry", std::string("/copy"), "/etcd2etcd/m/records").value();
  EXPECT_EQ(renamed.DataRangesFor("/registry")[0].key, "/copy");
  EXPECT_EQ(renamed.DataRangesFor("/registry")[0].range_end, "/copz");
}

TEST(KeyLayoutTest, MirrorRecordsMustStayOutsideTheDestinationKeys) {
  // The destination range holds the records.
  auto inside = KeyLayout::ForMirror("/", std::nullopt, "/etcd2etcd/m/records");
  ASSERT_FALSE(inside.ok());
  EXPECT_NE(inside.error().find("--meta-prefix"), std::string::npos);
  EXPECT_NE(inside.error().find("--dest-prefix"), std::string::npos);
  EXPECT_NE(inside.error().find("--prefix"), std::string::npos);
  EXPECT_NE(inside.error().find("--name"), std::string::npos);
  EXPECT_EQ(inside.error().find('\n'), std::string::npos);
  EXPECT_FALSE(KeyLayout::ForMirror("/etcd", std::nullopt, "/etcd2etcd/m/records").ok());
  EXPECT_FALSE(KeyLayout::ForMirror("", std::nullopt, "/etcd2etcd/m/records").ok());
  // The records hold the destination range.
  EXPECT_FALSE(
      KeyLayout::ForMirror("/a", std::string("/etcd2etcd/m/records/x"), "/etcd2etcd/m/records")
          .ok());
  // The mirror's checkpoint, election and leases share the records' directory.
  EXPECT_FALSE(
      KeyLayout::ForMirror("/a", std::string("/etcd2etcd/m/c"), "/etcd2etcd/m/records").ok());
  // Another mirror's directory is fine, and so is a destination prefix outside the meta root.
  EXPECT_TRUE(
      KeyLayout::ForMirror("/a", std::string("/etcd2etcd/other/"), "/etcd2etcd/m/records").ok());
  EXPECT_TRUE(KeyLayout::ForMirror("/", std::string("/copy/"), "/etcd2etcd/m/records").ok());
}

TEST(KeyLayoutTest, MirrorKeysLieBelowTheMetaRootAndName) {
  const MirrorKeys keys = MirrorKeysFor(kDefaultMirrorMetaRoot, "dc1");
  EXPECT_EQ(keys.records_prefix, "/etcd2etcd/dc1/records");
  EXPECT_EQ(keys.checkpoint_key, "/etcd2etcd/dc1/checkpoint");
  EXPECT_EQ(keys.election_name, "/etcd2etcd/dc1/election");
  EXPECT_EQ(keys.leases_prefix, "/etcd2etcd/dc1/leases/");
  EXPECT_EQ(MirrorKeysFor("/meta/", "x").records_prefix, "/meta/x/records");
}

}  // namespace
}  // namespace zk2etcd::connectors

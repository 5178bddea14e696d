#include "zk/watch_registry.h"

#include <gtest/gtest.h>

namespace zk2etcd::zk {
namespace {

TEST(WatchRegistryTest, OneShotWatchesFollowTheServerRules) {
  WatchRegistry registry;
  registry.Add(WatchKind::kData, "/d");
  registry.Add(WatchKind::kExist, "/e");
  registry.Add(WatchKind::kChild, "/c");
  registry.Add(WatchKind::kChild, "/d");
  registry.Add(WatchKind::kPersistent, "/p");
  registry.Add(WatchKind::kPersistentRecursive, "/r");
  EXPECT_EQ(registry.size(), 6u);

  registry.OnEvent(WatchEventType::kNodeChildrenChanged, "/d");
  EXPECT_TRUE(registry.Contains(WatchKind::kData, "/d")) << "a child event leaves data watches";
  EXPECT_FALSE(registry.Contains(WatchKind::kChild, "/d"));

  registry.OnEvent(WatchEventType::kNodeCreated, "/e");
  EXPECT_FALSE(registry.Contains(WatchKind::kExist, "/e"));

  registry.OnEvent(WatchEventType::kNodeDeleted, "/c");
  EXPECT_FALSE(registry.Contains(WatchKind::kChild, "/c"));

  registry.OnEvent(WatchEventType::kNodeDataChanged, "/d");
  EXPECT_FALSE(registry.Contains(WatchKind::kData, "/d"));

  for (auto type : {WatchEventType::kNodeCreated, WatchEventType::kNodeDeleted,
                    WatchEventType::kNodeDataChanged, WatchEventType::kNodeChildrenChanged}) {
    registry.OnEvent(type, "/p");
    registry.OnEvent(type, "/r");
  }
  EXPECT_TRUE(registry.Contains(WatchKind::kPersistent, "/p"));
  EXPECT_TRUE(registry.Contains(WatchKind::kPersistentRecursive, "/r"));
  EXPECT_EQ(registry.size(), 2u);
}

TEST(WatchRegistryTest, RemoveByType) {
  WatchRegistry registry;
  registry.Add(WatchKind::kData, "/a");
  registry.Add(WatchKind::kExist, "/a");
  registry.Add(WatchKind::kChild, "/a");
  registry.Add(WatchKind::kPersistentRecursive, "/a");
  EXPECT_TRUE(registry.Remove(WatcherType::kData, "/a"));
  EXPECT_FALSE(registry.Contains(WatchKind::kExist, "/a"));
  EXPECT_TRUE(registry.Contains(WatchKind::kChild, "/a"));
  EXPECT_FALSE(registry.Remove(WatcherType::kData, "/a"));
  EXPECT_TRUE(registry.Remove(WatcherType::kPersistentRecursive, "/a"));
  EXPECT_TRUE(registry.Contains(WatchKind::kChild, "/a"));
  registry.Add(WatchKind::kPersistent, "/a");
  EXPECT_TRUE(registry.Remove(WatcherType::kAny, "/a"));
  EXPECT_TRUE(registry.empty()) << "kAny removes every watch on the path";
}

TEST(WatchRegistryTest, SnapshotListsEveryWatchSorted) {
  WatchRegistry registry;
  registry.Add(WatchKind::kData, "/b");
  registry.Add(WatchKind::kData, "/a");
  registry.Add(WatchKind::kData, "/a");
  registry.Add(WatchKind::kPersistent, "/p");
  const proto::SetWatches2 snapshot = registry.Snapshot(99);
  EXPECT_EQ(snapshot.relative_zxid, 99);
  EXPECT_EQ(snapshot.data_watches, (std::vector<std::string>{"/a", "/b"}));
  EXPECT_EQ(snapshot.persistent_watches, (std::vector<std::string>{"/p"}));
  EXPECT_TRUE(snapshot.exist_watches.empty());
  registry.Clear();
  EXPECT_TRUE(registry.empty());
}

}  // namespace
}  // namespace zk2etcd::zk

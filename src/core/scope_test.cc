#include "core/scope.h"

#include <gtest/gtest.h>

namespace zk2etcd::core {
namespace {

Scope MakeScope(std::vector<std::string> prefixes, std::vector<std::string> excludes) {
  auto scope = Scope::Create(prefixes, excludes);
  EXPECT_TRUE(scope.ok()) << scope.error();
  return std::move(scope).value();
}

TEST(IsSameOrBelowTest, RespectsPathBoundaries) {
  EXPECT_TRUE(IsSameOrBelow("/dubbo", "/dubbo"));
  EXPECT_TRUE(IsSameOrBelow("/dubbo/a/b", "/dubbo"));
  EXPECT_FALSE(IsSameOrBelow("/dubbox", "/dubbo"));
  EXPECT_FALSE(IsSameOrBelow("/dubbox/a", "/dubbo"));
  EXPECT_FALSE(IsSameOrBelow("/dub", "/dubbo"));
  EXPECT_TRUE(IsSameOrBelow("/anything", "/"));
  EXPECT_TRUE(IsSameOrBelow("/", "/"));
}

// The Go tool matched prefixes without a boundary: /dubbo also took /dubbox.
TEST(ScopeTest, PrefixDoesNotCoverSiblingWithSameStart) {
  Scope scope = MakeScope({"/dubbo"}, {"/dubbo/config"});
  EXPECT_TRUE(scope.Contains("/dubbo"));
  EXPECT_TRUE(scope.Contains("/dubbo/svc/providers/x"));
  EXPECT_FALSE(scope.Contains("/dubbox"));
  EXPECT_FALSE(scope.Contains("/dubbox/svc"));
  EXPECT_FALSE(scope.Contains("/dubbo/config"));
  EXPECT_FALSE(scope.Contains("/dubbo/config/app"));
  EXPECT_TRUE(scope.Contains("/dubbo/configurators")) << "exclude must stop at a path boundary";
}

// The Go tool split "" into {""}, and every path starts with "": everything was excluded.
TEST(ScopeTest, EmptyExcludeListExcludesNothing) {
  Scope scope = MakeScope({"/dubbo"}, {});
  EXPECT_TRUE(scope.Contains("/dubbo/config/x"));
  EXPECT_TRUE(scope.excludes().empty());
}

TEST(ScopeTest, OverlappingPrefixesMerge) {
  Scope scope = MakeScope({"/dubbo/a", "/dubbo", "/roc", "/dubbo"}, {});
  EXPECT_EQ(scope.prefixes(), (std::vector<std::string>{"/dubbo", "/roc"}));
}

TEST(ScopeTest, RootPrefixNeverTakesZooKeeperSystemTree) {
  Scope scope = MakeScope({"/"}, {});
  EXPECT_TRUE(scope.Contains("/"));
  EXPECT_TRUE(scope.Contains("/dubbo"));
  EXPECT_FALSE(scope.Contains("/zookeeper"));
  EXPECT_FALSE(scope.Contains("/zookeeper/quota"));
  EXPECT_TRUE(scope.Contains("/zookeeperx"));
}

TEST(ScopeTest, ShouldDescendIntoAncestorsOfPrefixesButNotExcludes) {
  Scope scope = MakeScope({"/a/b"}, {"/a/b/c"});
  EXPECT_TRUE(scope.ShouldDescend("/"));
  EXPECT_TRUE(scope.ShouldDescend("/a"));
  EXPECT_TRUE(scope.ShouldDescend("/a/b"));
  EXPECT_TRUE(scope.ShouldDescend("/a/b/d"));
  EXPECT_FALSE(scope.ShouldDescend("/a/b/c"));
  EXPECT_FALSE(scope.ShouldDescend("/a/x"));
  EXPECT_FALSE(scope.Contains("/a"));
}

TEST(ScopeTest, ExcludesOutsideEveryPrefixAreDropped) {
  Scope scope = MakeScope({"/dubbo"}, {"/other", "/dubbo/config", "/dubbo/config/deeper"});
  EXPECT_EQ(scope.excludes(), (std::vector<std::string>{"/dubbo/config"}));
  EXPECT_EQ(scope.ignored_excludes(), (std::vector<std::string>{"/other"}));

  Scope boundary = MakeScope({"/dubbo"}, {"/dubbox", "/dubbo/x"});
  EXPECT_EQ(boundary.ignored_excludes(), (std::vector<std::string>{"/dubbox"}));
}

TEST(ScopeTest, RejectsBadInputWithOneClearLine) {
  struct Case {
    std::vector<std::string> prefixes, excludes;
    std::string expected;
  };
  for (const Case& c : std::vector<Case>{
           {{}, {}, "--zookeeper-prefix is empty"},
           {{"dubbo"}, {}, "must start with '/'"},
           {{"/dubbo/"}, {}, "must not end with '/'"},
           {{"/a//b"}, {}, "empty component"},
           {{"/a/../b"}, {}, ". or .."},
           {{"/dubbo"}, {"config"}, "--zookeeper-exclude-prefix \"config\""},
           {{"/dubbo/a"}, {"/dubbo"}, "removes the whole --zookeeper-prefix \"/dubbo/a\""},
           {{"/dubbo"}, {"/dubbo"}, "removes the whole"},
           {{"/zookeeper/quota"}, {}, "ZooKeeper's own /zookeeper tree"},
       }) {
    auto scope = Scope::Create(c.prefixes, c.excludes);
    ASSERT_FALSE(scope.ok());
    EXPECT_NE(scope.error().find(c.expected), std::string::npos) << scope.error();
    EXPECT_EQ(scope.error().find('\n'), std::string::npos);
  }
}

TEST(ScopeTest, AKeyPrefixCoversEveryKeyStartingWithItAsEtcdDoes) {
  Scope scope = Scope::ForKeyPrefix("/registry");
  EXPECT_TRUE(scope.key_prefix());
  EXPECT_EQ(scope.prefixes(), (std::vector<std::string>{"/registry"}));
  EXPECT_TRUE(scope.Contains("/registry"));
  EXPECT_TRUE(scope.Contains("/registry/a/b"));
  EXPECT_TRUE(scope.Contains("/registry2"));  // string semantics, no path boundary
  EXPECT_FALSE(scope.Contains("/regist"));
  EXPECT_FALSE(scope.Contains("/other"));
  EXPECT_TRUE(scope.Covers("/registryx", "/registry"));
  EXPECT_TRUE(Scope::ForKeyPrefix("").Contains("anything"));
  // The path scope keeps its boundary.
  EXPECT_FALSE(MakeScope({"/registry"}, {}).Covers("/registry2", "/registry"));
}

}  // namespace
}  // namespace zk2etcd::core

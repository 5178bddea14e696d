#include "zk/connect_string.h"

#include <gtest/gtest.h>

namespace zk2etcd::zk {
namespace {

TEST(ConnectStringTest, ParsesServersAndChroot) {
  auto parsed = ParseConnectString(" zk1:2181, zk2:2182 ,10.0.0.3/apps/dubbo ");
  ASSERT_TRUE(parsed.ok()) << parsed.error().message;
  ASSERT_EQ(parsed->servers.size(), 3u);
  EXPECT_EQ(parsed->servers[0], (ServerAddress{"zk1", 2181}));
  EXPECT_EQ(parsed->servers[1], (ServerAddress{"zk2", 2182}));
  EXPECT_EQ(parsed->servers[2], (ServerAddress{"10.0.0.3", kDefaultZooKeeperPort}));
  EXPECT_EQ(parsed->chroot, "/apps/dubbo");
}

TEST(ConnectStringTest, RootChrootMeansNone) {
  auto parsed = ParseConnectString("127.0.0.1:2181/");
  ASSERT_TRUE(parsed.ok());
  EXPECT_EQ(parsed->chroot, "");
}

TEST(ConnectStringTest, Ipv6InBrackets) {
  auto parsed = ParseConnectString("[::1]:2281,[fe80::1]");
  ASSERT_TRUE(parsed.ok()) << parsed.error().message;
  EXPECT_EQ(parsed->servers[0], (ServerAddress{"::1", 2281}));
  EXPECT_EQ(parsed->servers[1].port, kDefaultZooKeeperPort);
  EXPECT_EQ(parsed->servers[0].ToString(), "[::1]:2281");
}

TEST(ConnectStringTest, RejectsBadInput) {
  for (const char* bad : {"", " , ", "zk:0", "zk:65536", "zk:abc", "zk:", ":2181", "::1:2181",
                          "[::1", "zk/a//b", "zk/a/", "zk/./a"}) {
    auto parsed = ParseConnectString(bad);
    EXPECT_FALSE(parsed.ok()) << bad;
    if (!parsed.ok()) {
      EXPECT_EQ(parsed.error().code, ZkErrorCode::kInvalidArgument);
    }
  }
}

TEST(PathTest, Validation) {
  EXPECT_FALSE(InvalidPathReason("/"));
  EXPECT_FALSE(InvalidPathReason("/a/b-c.d_e"));
  EXPECT_TRUE(InvalidPathReason(""));
  EXPECT_TRUE(InvalidPathReason("a"));
  EXPECT_TRUE(InvalidPathReason("/a/"));
  EXPECT_FALSE(InvalidPathReason("/a/", /*sequential=*/true));
  EXPECT_TRUE(InvalidPathReason("/a//b"));
  EXPECT_TRUE(InvalidPathReason("/a/../b"));
  EXPECT_TRUE(InvalidPathReason("/a/."));
  EXPECT_TRUE(InvalidPathReason(std::string("/a\0b", 4)));
  EXPECT_TRUE(InvalidPathReason("/a\nb"));
  EXPECT_FALSE(InvalidPathReason("/dubbo/com.foo.Bar/providers/dubbo%3A%2F%2F10.0.0.1"));
}

TEST(PathTest, ChrootMapping) {
  EXPECT_EQ(ServerPath("", "/a"), "/a");
  EXPECT_EQ(ServerPath("/app", "/"), "/app");
  EXPECT_EQ(ServerPath("/app", "/a/b"), "/app/a/b");
  EXPECT_EQ(ClientPath("/app", "/app"), "/");
  EXPECT_EQ(ClientPath("/app", "/app/a"), "/a");
  EXPECT_EQ(ClientPath("/app", "/apple"), "/apple") << "no path boundary, not inside";
  EXPECT_EQ(ClientPath("", "/x"), "/x");
}

TEST(PathTest, ParentBaseJoin) {
  EXPECT_EQ(ParentPath("/a/b"), "/a");
  EXPECT_EQ(ParentPath("/a"), "/");
  EXPECT_EQ(ParentPath("/"), "");
  EXPECT_EQ(BaseName("/a/b"), "b");
  EXPECT_EQ(BaseName("/"), "");
  EXPECT_EQ(JoinPath("/", "b"), "/b");
  EXPECT_EQ(JoinPath("/a", "b"), "/a/b");
}

TEST(ZkErrorTest, LabelsAreFixedAndServerCodesMap) {
  EXPECT_EQ(ZkErrorLabel(ZkErrorCode::kOk), "success");
  EXPECT_EQ(ZkErrorLabel(ZkErrorCode::kNoNode), "no_node");
  EXPECT_EQ(ZkErrorLabel(ZkErrorCode::kConnectionLoss), "connection_loss");
  EXPECT_EQ(ZkErrorLabel(ZkErrorCode::kSessionExpired), "session_expired");
  EXPECT_EQ(ZkErrorCodeFromServer(-101), ZkErrorCode::kNoNode);
  EXPECT_EQ(ZkErrorCodeFromServer(-110), ZkErrorCode::kNodeExists);
  EXPECT_EQ(ZkErrorCodeFromServer(-6), ZkErrorCode::kUnimplemented);
  EXPECT_EQ(ZkErrorCodeFromServer(-999), ZkErrorCode::kSystemError);
  for (int c = 0; c <= static_cast<int>(ZkErrorCode::kSystemError); ++c) {
    const auto code = static_cast<ZkErrorCode>(c);
    EXPECT_FALSE(ZkErrorLabel(code).empty());
    if (code != ZkErrorCode::kSystemError) {
      EXPECT_EQ(ZkErrorCodeFromServer(ZkErrorCodeToServer(code)), code) << ZkErrorLabel(code);
    }
  }
  const ZkError error = MakeZkError(ZkErrorCode::kNoNode, "get /a", 42);
  EXPECT_EQ(error.message, "get /a: no node");
  EXPECT_EQ(error.zxid, 42);
  EXPECT_EQ(error.ToString(), "get /a: no node (zxid 42)");
}

}  // namespace
}  // namespace zk2etcd::zk

// Smoke test of the ZooKeeper fixture through the official C client.
#include <gtest/gtest.h>

#include "testing/server_support.h"
#include "testing/shared_servers.h"
#include "testing/zookeeper_c_client.h"

namespace zk2etcd::testing {
namespace {

using std::chrono::seconds;

TEST(ZooKeeperServerTest, WritesSurviveKill9AndRestartAndPauseBlocksService) {
  std::unique_ptr<ZooKeeperServer> server;
  ASSERT_FIXTURE_OK_AND_ASSIGN(server, ZooKeeperServer::Start());
  {
    std::unique_ptr<ZooKeeperCClient> client;
    ASSERT_FIXTURE_OK_AND_ASSIGN(client, ZooKeeperCClient::Connect(server->address(), seconds(10)));
    ASSERT_FIXTURE_OK(client->Create("/smoke", "hello"));
    std::optional<std::string> data;
    ASSERT_FIXTURE_OK_AND_ASSIGN(data, client->Get("/smoke"));
    EXPECT_EQ(data, "hello");
  }

  server->Kill9();
  EXPECT_FALSE(server->running());
  EXPECT_FALSE(server->IsServing());
  ASSERT_FIXTURE_OK(server->Restart());
  {
    std::unique_ptr<ZooKeeperCClient> client;
    ASSERT_FIXTURE_OK_AND_ASSIGN(client, ZooKeeperCClient::Connect(server->address(), seconds(10)));
    std::optional<std::string> data;
    ASSERT_FIXTURE_OK_AND_ASSIGN(data, client->Get("/smoke"));
    EXPECT_EQ(data, "hello") << "data must survive kill -9 and restart";
  }

  server->Pause();
  EXPECT_FALSE(server->IsServing()) << "a paused server must not answer";
  server->Resume();
  EXPECT_TRUE(server->IsServing());
}

TEST(ZooKeeperServerTest, DigestProtectedNodeIsReadableOnlyAfterAuth) {
  ZooKeeperServer* server = nullptr;
  ASSERT_FIXTURE_OK_AND_ASSIGN(server, SharedZooKeeper());
  const std::string path = UniquePath("digest");
  ASSERT_FIXTURE_OK(server->CreateDigestProtectedNode(path, "secret-data", "alice", "pw"));

  std::unique_ptr<ZooKeeperCClient> anonymous;
  ASSERT_FIXTURE_OK_AND_ASSIGN(anonymous, ZooKeeperCClient::Connect(server->address(), seconds(10)));
  auto denied = anonymous->Get(path);
  ASSERT_FALSE(denied.ok());
  EXPECT_NE(denied.error().message.find("not authenticated"), std::string::npos)
      << denied.error().message;

  std::unique_ptr<ZooKeeperCClient> alice;
  ASSERT_FIXTURE_OK_AND_ASSIGN(alice, ZooKeeperCClient::Connect(server->address(), seconds(10)));
  ASSERT_FIXTURE_OK(alice->AddDigestAuth("alice", "pw"));
  std::optional<std::string> data;
  ASSERT_FIXTURE_OK_AND_ASSIGN(data, alice->Get(path));
  EXPECT_EQ(data, "secret-data");
}

}  // namespace
}  // namespace zk2etcd::testing

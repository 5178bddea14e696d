// Smoke test of the Redis fixture through hiredis.
#include <hiredis/hiredis.h>
#include <gtest/gtest.h>

#include <memory>

#include "testing/server_support.h"
#include "testing/shared_servers.h"

namespace zk2etcd::testing {
namespace {

using RedisContextPtr = std::unique_ptr<redisContext, decltype(&redisFree)>;
using ReplyPtr = std::unique_ptr<redisReply, decltype(&freeReplyObject)>;

RedisContextPtr ConnectTo(int port) {
  const timeval timeout{1, 0};
  RedisContextPtr context(redisConnectWithTimeout("127.0.0.1", port, timeout), &redisFree);
  if (context && context->err == 0) redisSetTimeout(context.get(), timeout);
  return context;
}

// The reply as text ("OK", a string value, an error message), or "<no reply>".
std::string Command(redisContext* context, const std::vector<std::string>& args) {
  std::vector<const char*> argv;
  std::vector<size_t> lengths;
  for (const std::string& arg : args) {
    argv.push_back(arg.data());
    lengths.push_back(arg.size());
  }
  ReplyPtr reply(static_cast<redisReply*>(redisCommandArgv(
                     context, static_cast<int>(argv.size()), argv.data(), lengths.data())),
                 &freeReplyObject);
  if (!reply) return "<no reply>";
  if (reply->type == REDIS_REPLY_NIL) return "<nil>";
  return std::string(reply->str != nullptr ? reply->str : "", reply->len);
}

TEST(RedisServerTest, WritesSurviveKill9AndRestartAndPauseBlocksService) {
  std::unique_ptr<RedisServer> server;
  ASSERT_FIXTURE_OK_AND_ASSIGN(server, RedisServer::Start());
  {
    RedisContextPtr redis = ConnectTo(server->port());
    ASSERT_TRUE(redis && redis->err == 0);
    EXPECT_EQ(Command(redis.get(), {"SET", "/dubbo/a", "owned"}), "OK");
    EXPECT_EQ(Command(redis.get(), {"GET", "/dubbo/a"}), "owned");
  }
  server->Kill9();
  EXPECT_FALSE(server->IsServing());
  ASSERT_FIXTURE_OK(server->Restart());
  {
    RedisContextPtr redis = ConnectTo(server->port());
    ASSERT_TRUE(redis && redis->err == 0);
    EXPECT_EQ(Command(redis.get(), {"GET", "/dubbo/a"}), "owned")
        << "the append-only file must keep data across kill -9";
  }
  server->Pause();
  {
    RedisContextPtr redis = ConnectTo(server->port());
    ASSERT_TRUE(redis);
    EXPECT_EQ(Command(redis.get(), {"PING"}), "<no reply>") << "a paused server must not answer";
  }
  server->Resume();
  EXPECT_TRUE(server->IsServing());
}

TEST(RedisServerTest, PasswordAndAclUserAreEnforced) {
  RedisOptions options;
  options.password = "default-pw";
  options.acl_user = "zk2etcd";
  options.acl_password = "acl-pw";
  std::unique_ptr<RedisServer> server;
  ASSERT_FIXTURE_OK_AND_ASSIGN(server, RedisServer::Start(options));
  RedisContextPtr redis = ConnectTo(server->port());
  ASSERT_TRUE(redis && redis->err == 0);
  EXPECT_NE(Command(redis.get(), {"GET", "k"}).find("NOAUTH"), std::string::npos);
  EXPECT_EQ(Command(redis.get(), {"AUTH", "zk2etcd", "acl-pw"}), "OK");
  EXPECT_EQ(Command(redis.get(), {"SET", "k", "v"}), "OK");
  RedisContextPtr second = ConnectTo(server->port());
  EXPECT_EQ(Command(second.get(), {"AUTH", "default-pw"}), "OK");
  EXPECT_EQ(Command(second.get(), {"GET", "k"}), "v");
}

TEST(RedisServerTest, SharedServerServes) {
  RedisServer* server = nullptr;
  ASSERT_FIXTURE_OK_AND_ASSIGN(server, SharedRedis());
  RedisContextPtr redis = ConnectTo(server->port());
  ASSERT_TRUE(redis && redis->err == 0);
  EXPECT_EQ(Command(redis.get(), {"PING"}), "PONG");
}

}  // namespace
}  // namespace zk2etcd::testing

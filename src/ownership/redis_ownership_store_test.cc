// RedisOwnershipStore against a real Redis 7.
#include "ownership/redis_ownership_store.h"

#include <gtest/gtest.h>
#include <hiredis/hiredis.h>

#include "testing/server_support.h"
#include "testing/shared_servers.h"

namespace zk2etcd::ownership {
namespace {

using testing::RedisServer;

std::unique_ptr<RedisOwnershipStore> StoreFor(const std::string& address,
                                              std::string username = "",
                                              std::string password = "") {
  RedisOptions options;
  options.address = address;
  options.username = std::move(username);
  options.password = std::move(password);
  options.timeout = std::chrono::milliseconds(500);
  options.batch_size = 7;  // small, so that tests cross batch boundaries
  return RedisOwnershipStore::Create(options).value();
}

TEST(RedisOwnershipStoreTest, RecordLookupForgetInBatches) {
  RedisServer* server = nullptr;
  ASSERT_FIXTURE_OK_AND_ASSIGN(server, testing::SharedRedis());
  auto store = StoreFor(server->address());
  const std::string base = testing::UniquePath("owned");
  std::vector<std::pair<std::string, std::string>> records;
  std::vector<std::string> keys;
  for (int i = 0; i < 20; ++i) {
    keys.push_back(base + "/k" + std::to_string(i));
    if (i % 2 == 0) records.emplace_back(keys.back(), "value" + std::to_string(i));
  }
  ASSERT_TRUE(store->Record(records).ok());
  auto owned = store->Lookup(keys);
  ASSERT_TRUE(owned.ok()) << owned.error().message;
  for (int i = 0; i < 20; ++i) EXPECT_EQ((*owned)[i], i % 2 == 0) << keys[i];

  ASSERT_TRUE(store->Forget({keys[0], keys[2]}).ok());
  owned = store->Lookup({keys[0], keys[2], keys[4]});
  ASSERT_TRUE(owned.ok());
  EXPECT_EQ(*owned, (std::vector<bool>{false, false, true}));
}

// The Go tool wrote SET <etcd key> <value>; such keys must count as owned.
TEST(RedisOwnershipStoreTest, KeysRecordedByTheGoToolCountAsOwned) {
  RedisServer* server = nullptr;
  ASSERT_FIXTURE_OK_AND_ASSIGN(server, testing::SharedRedis());
  const std::string key = testing::UniquePath("go-tool") + "/dubbo/svc/providers/x";
  {
    std::unique_ptr<redisContext, decltype(&redisFree)> raw(
        redisConnect("127.0.0.1", server->port()), &redisFree);
    ASSERT_TRUE(raw && raw->err == 0);
    freeReplyObject(redisCommand(raw.get(), "SET %s %s", key.c_str(), "provider-data"));
  }
  auto owned = StoreFor(server->address())->Lookup({key});
  ASSERT_TRUE(owned.ok());
  EXPECT_TRUE((*owned)[0]);
}

TEST(RedisOwnershipStoreTest, CredentialsAreUsedAndWrongOnesAreAuthFailed) {
  testing::RedisOptions options;
  options.password = "default-pw";
  options.acl_user = "zk2etcd";
  options.acl_password = "acl-pw";
  std::unique_ptr<RedisServer> server;
  ASSERT_FIXTURE_OK_AND_ASSIGN(server, RedisServer::Start(options));

  EXPECT_TRUE(StoreFor(server->address(), "", "default-pw")->Ping().ok());
  EXPECT_TRUE(StoreFor(server->address(), "zk2etcd", "acl-pw")->Ping().ok());

  auto wrong = StoreFor(server->address(), "zk2etcd", "not-the-password")->Ping();
  ASSERT_FALSE(wrong.ok());
  EXPECT_EQ(wrong.error().code, OwnershipErrorCode::kAuthFailed);
  EXPECT_EQ(wrong.error().message.find("not-the-password"), std::string::npos);

  auto none = StoreFor(server->address())->Lookup({"k"});
  ASSERT_FALSE(none.ok());
  EXPECT_EQ(none.error().code, OwnershipErrorCode::kAuthFailed);
}

TEST(RedisOwnershipStoreTest, OutageIsUnavailableAndTheStoreReconnectsAfterIt) {
  std::unique_ptr<RedisServer> server;
  ASSERT_FIXTURE_OK_AND_ASSIGN(server, RedisServer::Start());
  auto store = StoreFor(server->address());
  ASSERT_TRUE(store->Record({{"/dubbo/a", "1"}}).ok());

  server->Kill9();
  auto down = store->Lookup({"/dubbo/a"});
  ASSERT_FALSE(down.ok());
  EXPECT_EQ(down.error().code, OwnershipErrorCode::kUnavailable);

  ASSERT_FIXTURE_OK(server->Restart());
  auto back = store->Lookup({"/dubbo/a"});
  ASSERT_TRUE(back.ok()) << back.error().message;
  EXPECT_TRUE((*back)[0]) << "the record must survive the restart (append-only file)";

  server->Pause();
  const auto start = std::chrono::steady_clock::now();
  auto paused = store->Ping();
  EXPECT_FALSE(paused.ok());
  EXPECT_LT(std::chrono::steady_clock::now() - start, std::chrono::seconds(3))
      << "a hung server must fail within the timeout";
  server->Resume();
  EXPECT_TRUE(store->Ping().ok());
}

TEST(RedisOwnershipStoreTest, BadAddressesAreRefused) {
  for (const char* bad : {"localhost", ":6379", "host:0", "host:99999", "host:port"}) {
    RedisOptions options;
    options.address = bad;
    EXPECT_FALSE(RedisOwnershipStore::Create(options).ok()) << bad;
  }
}

}  // namespace
}  // namespace zk2etcd::ownership

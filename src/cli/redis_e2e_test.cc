// zk2etcd sync with the Go tool's Redis ownership store (--redis-server) that stops answering,
// end to end: the built binary against real ZooKeeper 3.8, etcd 3.4 and Redis 7 servers
// (issue 13). Redis paused (SIGSTOP) is the hard case: connections are accepted and nothing is
// answered, so every call waits out the client's timeout (3 s).
#include <gtest/gtest.h>

#include <thread>

#include "cli/e2e_support.h"
#include "testing/process.h"
#include "testing/redis_server.h"
#include "testing/server_support.h"
#include "testing/zookeeper_c_client.h"

namespace zk2etcd::e2e {
namespace {

using std::chrono::milliseconds;
using std::chrono::seconds;
using testing::EtcdServer;
using testing::RedisServer;
using testing::ZooKeeperCClient;
using testing::ZooKeeperServer;

constexpr auto kConverge = seconds(30);
constexpr char kProviders[] = "/dubbo/svc/providers";

class RedisE2eTest : public ::testing::Test {
 protected:
  void SetUp() override {
    ASSERT_FIXTURE_OK_AND_ASSIGN(zookeeper_, ZooKeeperServer::Start());
    ASSERT_FIXTURE_OK_AND_ASSIGN(etcd_, EtcdServer::Start());
    ASSERT_FIXTURE_OK_AND_ASSIGN(redis_, RedisServer::Start());
    ASSERT_FIXTURE_OK_AND_ASSIGN(zk_,
                                 ZooKeeperCClient::Connect(zookeeper_->address(), seconds(20)));
    view_ = std::make_unique<EtcdView>(etcd_->endpoint());
  }
  void TearDown() override {
    if (redis_) redis_->Resume();
  }

  // zk2etcd sync with Redis and a full sync period far beyond the test: whatever happens here is
  // the change path's doing.
  std::unique_ptr<Zk2etcdProcess> StartSync() {
    auto process = std::make_unique<Zk2etcdProcess>(std::vector<std::string>{
        "sync", "--zookeeper-servers=" + zookeeper_->address(),
        "--etcd-servers=" + etcd_->endpoint(), "--redis-server=" + redis_->address(),
        "--fullsync-interval=5m", "--log-format=text", "--http-addr=127.0.0.1:0"});
    auto started = process->Start();
    EXPECT_TRUE(started.ok()) << started.error().message;
    EXPECT_TRUE(process->WaitForLog("reconciliation done", 1, kConverge)) << process->Log();
    return process;
  }

  std::optional<std::string> RedisGet(const std::string& key) {
    auto value = testing::RunCommand(
        {"redis-cli", "-p", std::to_string(redis_->port()), "--raw", "GET", key}, seconds(10));
    if (!value.ok()) return std::nullopt;
    return *value;
  }

  std::string Provider(const std::string& name) { return std::string(kProviders) + "/" + name; }

  std::unique_ptr<ZooKeeperServer> zookeeper_;
  std::unique_ptr<EtcdServer> etcd_;
  std::unique_ptr<RedisServer> redis_;
  std::unique_ptr<ZooKeeperCClient> zk_;
  std::unique_ptr<EtcdView> view_;
};

TEST_F(RedisE2eTest, DeletesDeferredWhileRedisIsPausedAreAppliedWithinSecondsOfItsReturn) {
  for (const char* name : {"p1", "p2", "p3"}) {
    ASSERT_FIXTURE_OK(zk_->CreateRecursive(Provider(name), name));
  }
  auto sync = StartSync();
  ASSERT_TRUE(Eventually([&] { return RedisGet(Provider("p3")) == "p3\n"; }, kConverge))
      << sync->Log();

  redis_->Pause();
  ASSERT_FIXTURE_OK(zk_->Delete(Provider("p1")));
  ASSERT_FIXTURE_OK(zk_->Delete(Provider("p2")));
  const auto resume_at = std::chrono::steady_clock::now() + seconds(10);
  while (std::chrono::steady_clock::now() < resume_at) {
    std::this_thread::sleep_for(milliseconds(250));
    ASSERT_EQ(view_->Get(Provider("p1")), "p1") << "deleted while Redis was paused";
    ASSERT_EQ(view_->Get(Provider("p2")), "p2") << "deleted while Redis was paused";
  }
  EXPECT_TRUE(sync->WaitForLog("delete deferred", 2, seconds(1))) << sync->Log();
  redis_->Resume();
  const auto resumed = std::chrono::steady_clock::now();
  EXPECT_TRUE(Eventually([&] { return !view_->Get(Provider("p1")) && !view_->Get(Provider("p2")); },
                         seconds(5)))
      << sync->Log();
  const auto took = std::chrono::steady_clock::now() - resumed;
  std::cout << "deferred deletes applied " << std::chrono::duration_cast<milliseconds>(took).count()
            << " ms after Redis answered again\n";
  EXPECT_EQ(view_->Get(Provider("p3")), "p3");
  // The Go tool's records follow: the deleted keys are forgotten.
  EXPECT_TRUE(Eventually([&] { return RedisGet(Provider("p1")) == "\n"; }, seconds(5)));
  EXPECT_EQ(RedisGet(Provider("p2")), "\n");
  EXPECT_EQ(RedisGet(Provider("p3")), "p3\n");
  EXPECT_EQ(sync->Terminate(seconds(20)), 0);
}

// A key the Go tool wrote (recorded in Redis) that differs from ZooKeeper, with Redis hanging when
// sync starts: its ownership cannot be told, so the first full sync leaves it alone and says how
// many keys it could not ask about, and runs again after the reconciliation backoff (0.5 s, then
// doubling), which repairs it once Redis answers (it waited for the next period, 5 minutes here,
// before).
TEST_F(RedisE2eTest, AGoToolKeyLeftAloneWhileRedisHangsAtStartIsRepairedWhenItAnswers) {
  ASSERT_FIXTURE_OK(zk_->CreateRecursive(Provider("g1"), "new"));
  view_->Put(Provider("g1"), "old");
  ASSERT_TRUE(testing::RunCommand(
                  {"redis-cli", "-p", std::to_string(redis_->port()), "SET", Provider("g1"), "old"},
                  seconds(10))
                  .ok());
  redis_->Pause();
  auto sync = StartSync();
  EXPECT_EQ(view_->Get(Provider("g1")), "old") << sync->Log();
  EXPECT_EQ(sync->CountLines("ownership_unknown=1"), 1u) << sync->Log();
  redis_->Resume();
  const auto resumed = std::chrono::steady_clock::now();
  EXPECT_TRUE(Eventually([&] { return view_->Get(Provider("g1")) == "new"; }, seconds(10)))
      << sync->Log();
  std::cout << "the Go tool's key repaired "
            << std::chrono::duration_cast<milliseconds>(std::chrono::steady_clock::now() - resumed)
                   .count()
            << " ms after Redis answered again\n";
  EXPECT_EQ(RedisGet(Provider("g1")), "new\n");
  EXPECT_EQ(sync->Terminate(seconds(20)), 0);
}

TEST_F(RedisE2eTest, ChangesReachEtcdWithinASecondWhileRedisHangsAndStopDoesNotWaitForIt) {
  for (const char* name : {"p1", "p2"}) {
    ASSERT_FIXTURE_OK(zk_->CreateRecursive(Provider(name), name));
  }
  auto sync = StartSync();
  ASSERT_TRUE(Eventually([&] { return RedisGet(Provider("p2")) == "p2\n"; }, kConverge))
      << sync->Log();

  redis_->Pause();
  // A data change (its Redis record then waits on Redis) and a delete (which must wait for
  // Redis), then a create that needs nothing from Redis.
  ASSERT_FIXTURE_OK(zk_->Set(Provider("p1"), "changed"));
  ASSERT_FIXTURE_OK(zk_->Delete(Provider("p2")));
  const auto created = std::chrono::steady_clock::now();
  ASSERT_FIXTURE_OK(zk_->CreateRecursive(Provider("new"), "fresh"));
  EXPECT_TRUE(Eventually([&] { return view_->Get(Provider("new")) == "fresh"; }, seconds(1)))
      << sync->Log();
  std::cout << "create reached etcd after "
            << std::chrono::duration_cast<milliseconds>(std::chrono::steady_clock::now() - created)
                   .count()
            << " ms while Redis was paused\n";
  EXPECT_EQ(view_->Get(Provider("p1")), "changed");
  EXPECT_EQ(view_->Get(Provider("p2")), "p2") << "deleted while Redis was paused";

  // SIGTERM while Redis still hangs: at most one Redis timeout (3 s) on the way out.
  const auto terminated = std::chrono::steady_clock::now();
  EXPECT_EQ(sync->Terminate(seconds(20)), 0);
  EXPECT_LT(std::chrono::steady_clock::now() - terminated, seconds(8)) << sync->Log();

  // diff cannot tell the Go tool's keys from another writer's without Redis: it gives up with
  // exit 2 at --connect-timeout instead of printing a report that calls them foreign.
  Zk2etcdProcess diff({"diff", "--zookeeper-servers=" + zookeeper_->address(),
                       "--etcd-servers=" + etcd_->endpoint(), "--redis-server=" + redis_->address(),
                       "--connect-timeout=4s", "--log-format=text"});
  const auto diff_started = std::chrono::steady_clock::now();
  EXPECT_EQ(diff.RunToCompletion(seconds(60)), 2) << diff.Log();
  // --connect-timeout, overshot by at most one Redis timeout (3 s) and the servers' connections.
  EXPECT_LT(std::chrono::steady_clock::now() - diff_started, seconds(20)) << diff.Log();
  EXPECT_EQ(diff.CountLines("zk2etcd diff: redis unreachable"), 1u) << diff.Log();
  EXPECT_GE(diff.CountLines("redis unreachable; retrying"), 1u) << diff.Log();
}

}  // namespace
}  // namespace zk2etcd::e2e

// Large values end to end (issue 13): the largest znode a default ZooKeeper 3.8 accepts reaches
// a default etcd 3.4 byte for byte, through `sync` and through `diff --fix`; and a write etcd
// refuses (an etcd started with a small --max-request-bytes) fails alone, logged at error level
// with its key, counted in /metrics and shown by `diff`, while the other keys sync.
#include <gtest/gtest.h>

#include <iostream>
#include <random>
#include <regex>
#include <sstream>
#include <thread>

#include "cli/e2e_support.h"
#include "testing/server_support.h"
#include "testing/zookeeper_c_client.h"

namespace zk2etcd::e2e {
namespace {

using std::chrono::milliseconds;
using std::chrono::seconds;
using testing::EtcdServer;
using testing::ZooKeeperCClient;
using testing::ZooKeeperServer;

constexpr auto kConverge = seconds(60);
constexpr size_t kSmallMaxRequestBytes = 256 * 1024;

std::string RandomBytes(size_t size, uint64_t seed) {
  std::mt19937_64 random(seed);
  std::string bytes(size, '\0');
  for (char& c : bytes) c = static_cast<char>(random() & 0xff);
  return bytes;
}

// Lines of `log` that contain every one of `parts`.
size_t LinesWithAll(const std::string& log, const std::vector<std::string>& parts) {
  std::istringstream lines(log);
  size_t count = 0;
  for (std::string line; std::getline(lines, line);) {
    bool all = true;
    for (const std::string& part : parts) all = all && line.find(part) != std::string::npos;
    if (all) ++count;
  }
  return count;
}

class LargeValuesE2eTest : public ::testing::Test {
 protected:
  // One ZooKeeper, a default etcd and one with a small --max-request-bytes for the whole suite;
  // each test works under its own prefix.
  static void SetUpTestSuite() {
    auto zookeeper = ZooKeeperServer::Start();
    ASSERT_TRUE(zookeeper.ok()) << zookeeper.error().message;
    zookeeper_ = std::move(zookeeper).value().release();
    auto etcd = EtcdServer::Start();
    ASSERT_TRUE(etcd.ok()) << etcd.error().message;
    etcd_ = std::move(etcd).value().release();
    testing::EtcdOptions small;
    small.extra_args = {"--max-request-bytes=" + std::to_string(kSmallMaxRequestBytes)};
    auto small_etcd = EtcdServer::Start(small);
    ASSERT_TRUE(small_etcd.ok()) << small_etcd.error().message;
    small_etcd_ = std::move(small_etcd).value().release();
    max_data_ = FindLargestCreate();
    std::cout << "largest znode data ZooKeeper accepts at a " << kPathLength
              << "-byte path: " << max_data_ << " bytes\n";
  }

  static void TearDownTestSuite() {
    delete zookeeper_;
    delete etcd_;
    delete small_etcd_;
    zookeeper_ = nullptr;
    etcd_ = small_etcd_ = nullptr;
  }

  // The largest data the server lets a client create at a path of kPathLength bytes (its
  // jute.maxbuffer bounds the whole request), found by bisection with the official C client.
  // Random bytes; a refused request closes the connection, so each try has its own session.
  static constexpr size_t kPathLength = 12;  // "/lv-sync/big", "/lv-diff/big", "/lv-prob/big"
  static size_t FindLargestCreate() {
    const std::string path = "/lv-prob/big";
    auto tries = [&](size_t size) {
      auto client = ZooKeeperCClient::Connect(zookeeper_->address(), seconds(10));
      if (!client.ok()) return false;
      (void)(*client)->CreateRecursive("/lv-prob", "");
      const bool created = (*client)->Create(path, RandomBytes(size, size)).ok();
      if (created) (void)(*client)->Delete(path);
      return created;
    };
    size_t accepted = 1000 * 1000;  // well under 1 MiB: must be accepted
    size_t refused = 1024 * 1024;   // jute.maxbuffer is 1 MiB - 1: must be refused
    EXPECT_TRUE(tries(accepted));
    EXPECT_FALSE(tries(refused));
    while (refused - accepted > 1) {
      const size_t middle = accepted + (refused - accepted) / 2;
      (tries(middle) ? accepted : refused) = middle;
    }
    return accepted;
  }

  void SetUp() override {
    ASSERT_NE(zookeeper_, nullptr);
    ASSERT_NE(etcd_, nullptr);
    ASSERT_NE(small_etcd_, nullptr);
    ASSERT_GT(max_data_, 1000u * 1000u);
    ASSERT_FIXTURE_OK_AND_ASSIGN(zk_,
                                 ZooKeeperCClient::Connect(zookeeper_->address(), seconds(20)));
  }

  static std::vector<std::string> Args(const std::string& command, const EtcdServer& etcd,
                                       const std::string& prefix,
                                       std::vector<std::string> extra = {}) {
    std::vector<std::string> args = {command,
                                     "--zookeeper-servers=" + zookeeper_->address(),
                                     "--etcd-servers=" + etcd.endpoint(),
                                     "--zookeeper-prefix=" + prefix,
                                     "--zookeeper-exclude-prefix=" + prefix + "/config",
                                     "--log-format=text"};
    if (command == "sync") {
      args.push_back("--http-addr=127.0.0.1:0");
      args.push_back("--fullsync-interval=0");
    }
    args.insert(args.end(), extra.begin(), extra.end());
    return args;
  }

  static ZooKeeperServer* zookeeper_;
  static EtcdServer* etcd_;
  static EtcdServer* small_etcd_;
  static size_t max_data_;
  std::unique_ptr<ZooKeeperCClient> zk_;
};

ZooKeeperServer* LargeValuesE2eTest::zookeeper_ = nullptr;
EtcdServer* LargeValuesE2eTest::etcd_ = nullptr;
EtcdServer* LargeValuesE2eTest::small_etcd_ = nullptr;
size_t LargeValuesE2eTest::max_data_ = 0;

TEST_F(LargeValuesE2eTest, SyncCopiesTheLargestZnodeByteExactWhenCreatedAndChanged) {
  const std::string big = "/lv-sync/big";
  ASSERT_EQ(big.size(), kPathLength);
  ASSERT_FIXTURE_OK(zk_->CreateRecursive("/lv-sync/small", "s"));
  EtcdView view(etcd_->endpoint());
  Zk2etcdProcess sync(Args("sync", *etcd_, "/lv-sync"));
  ASSERT_FIXTURE_OK(sync.Start());
  ASSERT_TRUE(sync.WaitForLog("reconciliation done", 1, kConverge)) << sync.Log();

  const std::string first = RandomBytes(max_data_, 1);
  ASSERT_FIXTURE_OK(zk_->Create(big, first));
  EXPECT_TRUE(Eventually([&] { return view.Get(big) == first; }, kConverge))
      << "size " << max_data_ << "\n"
      << sync.Log();
  const std::string second = RandomBytes(max_data_, 2);
  ASSERT_FIXTURE_OK(zk_->Set(big, second));
  EXPECT_TRUE(Eventually([&] { return view.Get(big) == second; }, kConverge)) << sync.Log();
  EXPECT_EQ(view.Get("/lv-sync/small"), "s");
  EXPECT_EQ(sync.CountLines("write failed"), 0u) << sync.Log();
  EXPECT_EQ(sync.Terminate(seconds(20)), 0) << sync.Log();
}

TEST_F(LargeValuesE2eTest, DiffFixCopiesTheLargestZnodeByteExact) {
  const std::string big = "/lv-diff/big";
  ASSERT_EQ(big.size(), kPathLength);
  const std::string first = RandomBytes(max_data_, 3);
  ASSERT_FIXTURE_OK(zk_->CreateRecursive("/lv-diff", ""));
  ASSERT_FIXTURE_OK(zk_->Create(big, first));
  EtcdView view(etcd_->endpoint());
  {
    Zk2etcdProcess fix(Args("diff", *etcd_, "/lv-diff", {"--fix"}));
    EXPECT_EQ(fix.RunToCompletion(seconds(120)), 0) << fix.Log();
  }
  EXPECT_TRUE(view.Get(big) == first) << "size " << max_data_;
  const std::string second = RandomBytes(max_data_, 4);
  ASSERT_FIXTURE_OK(zk_->Set(big, second));
  {
    Zk2etcdProcess fix(Args("diff", *etcd_, "/lv-diff", {"--fix"}));
    EXPECT_EQ(fix.RunToCompletion(seconds(120)), 0) << fix.Log();
  }
  EXPECT_TRUE(view.Get(big) == second);
  Zk2etcdProcess clean(Args("diff", *etcd_, "/lv-diff"));
  EXPECT_EQ(clean.RunToCompletion(seconds(120)), 0) << clean.Log();
}

TEST_F(LargeValuesE2eTest, AWriteEtcdRefusesIsLoggedCountedAndShownByDiffWhileOthersSync) {
  const size_t too_large = kSmallMaxRequestBytes + 64 * 1024;
  // Before sync starts: the first full sync repairs these in one batch with the refused one.
  ASSERT_FIXTURE_OK(zk_->CreateRecursive("/lv-refu", ""));
  for (int i = 0; i < 10; ++i) {
    ASSERT_FIXTURE_OK(zk_->Create("/lv-refu/a" + std::to_string(i), "v" + std::to_string(i)));
  }
  ASSERT_FIXTURE_OK(zk_->Create("/lv-refu/big1", RandomBytes(too_large, 5)));
  EtcdView view(small_etcd_->endpoint());
  Zk2etcdProcess sync(Args("sync", *small_etcd_, "/lv-refu"));
  ASSERT_FIXTURE_OK(sync.Start());
  ASSERT_TRUE(sync.WaitForLog("reconciliation done", 1, kConverge)) << sync.Log();
  for (int i = 0; i < 10; ++i) {
    EXPECT_EQ(view.Get("/lv-refu/a" + std::to_string(i)), "v" + std::to_string(i)) << sync.Log();
  }
  EXPECT_EQ(view.Get("/lv-refu/big1"), std::nullopt);
  EXPECT_EQ(LinesWithAll(sync.Log(),
                         {" ERROR ", "repair failed", "/lv-refu/big1", "request is too large"}),
            1u)
      << sync.Log();

  // While it runs: the incremental path.
  ASSERT_FIXTURE_OK(zk_->Create("/lv-refu/big2", RandomBytes(too_large, 6)));
  ASSERT_FIXTURE_OK(zk_->Create("/lv-refu/b", "after"));
  ASSERT_FIXTURE_OK(zk_->Set("/lv-refu/a0", "changed"));
  EXPECT_TRUE(Eventually([&] { return view.Get("/lv-refu/b") == "after"; }, kConverge));
  EXPECT_TRUE(Eventually([&] { return view.Get("/lv-refu/a0") == "changed"; }, kConverge));
  EXPECT_TRUE(sync.WaitForLog("/lv-refu/big2", 1, kConverge)) << sync.Log();
  EXPECT_EQ(LinesWithAll(sync.Log(),
                         {" ERROR ", "write failed", "/lv-refu/big2", "request is too large"}),
            1u)
      << sync.Log();
  EXPECT_EQ(view.Get("/lv-refu/big2"), std::nullopt);

  const int port = HttpPort(sync);
  ASSERT_NE(port, 0) << sync.Log();
  const std::string metrics = Http(port, "/metrics").body;
  EXPECT_NE(metrics.find("\nzk2etcd_etcd_refused_writes_total{status=\"invalid_argument\"} 2\n"),
            std::string::npos)
      << metrics;
  // A refused repair is not retried by a full sync after another (each reads both sides whole;
  // they ran every 0.5 s, forever): the next is the period's (--fullsync-interval).
  std::this_thread::sleep_for(seconds(3));
  EXPECT_EQ(sync.CountLines("reconciliation done"), 1u) << sync.Log();
  EXPECT_EQ(sync.Terminate(seconds(20)), 0) << sync.Log();

  Zk2etcdProcess diff(Args("diff", *small_etcd_, "/lv-refu", {"--output=json"}));
  EXPECT_EQ(diff.RunToCompletion(seconds(60)), 1) << diff.Log();
  EXPECT_NE(diff.Log().find("\"missing\":[\"/lv-refu/big1\",\"/lv-refu/big2\"]"), std::string::npos)
      << diff.Log();
  // diff --fix cannot repair them either: it says so per key and exits non-zero.
  Zk2etcdProcess fix(Args("diff", *small_etcd_, "/lv-refu", {"--fix"}));
  EXPECT_NE(fix.RunToCompletion(seconds(60)), 0) << fix.Log();
  EXPECT_EQ(LinesWithAll(fix.Log(), {" ERROR ", "repair failed", "/lv-refu/big1"}), 1u)
      << fix.Log();
  EXPECT_EQ(LinesWithAll(fix.Log(), {" ERROR ", "repair failed", "/lv-refu/big2"}), 1u);
}

}  // namespace
}  // namespace zk2etcd::e2e

// ZooKeeperSink against a real ZooKeeper 3.8 (the binary's shared server; each test under its
// own path): what the in-memory server cannot prove — that a real server moves a parent's
// sequence counter as the sink counts on, that its multis apply the fences and versions, that
// ACLs are copied as given, and how large a value one multi carries.
#include <gtest/gtest.h>

#include <chrono>
#include <future>

#include "connectors/zookeeper/zookeeper_sink.h"
#include "ops/log.h"
#include "testing/server_support.h"
#include "testing/shared_servers.h"
#include "zk/asio_zk_client.h"

namespace zk2etcd::connectors {
namespace {

using core::SinkWrite;
using core::WriteOutcome;
using std::chrono::milliseconds;
using ::zk2etcd::testing::SharedZooKeeper;
using ::zk2etcd::testing::UniquePath;
using ::zk2etcd::testing::ZooKeeperServer;

SinkWrite Put(std::string key, std::string value, int64_t version) {
  SinkWrite write;
  write.key = std::move(key);
  write.value = std::move(value);
  write.version = version;
  return write;
}

class ZooKeeperSinkIntegrationTest : public ::testing::Test {
 protected:
  void SetUp() override {
    ASSERT_FIXTURE_OK_AND_ASSIGN(server_, SharedZooKeeper());
    zk::ZkClientOptions options;
    options.connect_string = server_->address();
    options.session_timeout = milliseconds(10000);
    factory_ = zk::NewAsioZkClientFactory(options);
    auto client = zk::NewAsioZkClient(options, {});
    ASSERT_TRUE(client.ok()) << client.error().ToString();
    client_ = std::move(client).value();
    root_ = UniquePath("zksink");
    meta_ = root_ + "-meta";
    auto scope = core::Scope::Create({root_}, {});
    ASSERT_TRUE(scope.ok());
    scope_.emplace(std::move(scope).value());
  }

  std::unique_ptr<ZooKeeperSink> MakeSink(ZooKeeperSinkOptions options = {}) {
    options.meta_root = meta_;
    return std::make_unique<ZooKeeperSink>(*factory_, *scope_, logger_, std::move(options));
  }

  core::BatchResult Apply(ZooKeeperSink& sink, std::vector<SinkWrite> writes,
                          std::optional<core::Fence> fence = std::nullopt) {
    std::promise<core::BatchResult> answered;
    std::vector<int> variants(writes.size(), 0);
    sink.ApplyAsync(
        std::move(writes), std::move(variants), fence,
        [&answered](core::BatchResult result) { answered.set_value(std::move(result)); });
    return answered.get_future().get();
  }

  std::optional<WriteOutcome> ApplyOne(ZooKeeperSink& sink, SinkWrite write) {
    auto result = Apply(sink, {std::move(write)});
    if (!result.ok()) {
      ADD_FAILURE() << result.error().message;
      return std::nullopt;
    }
    if (!(*result)[0].outcome) ADD_FAILURE() << (*result)[0].error;
    return (*result)[0].outcome;
  }

  std::string DataOf(const std::string& path) {
    auto read = zk::blocking::GetData(*client_, path);
    return read.ok() ? read->data : "<absent>";
  }

  SystemClock clock_;
  std::shared_ptr<ops::MemoryLogSink> log_sink_ = std::make_shared<ops::MemoryLogSink>();
  ops::Logger logger_{log_sink_, ops::LogFormat::kJson, ops::LogLevel::kDebug, clock_};
  ZooKeeperServer* server_ = nullptr;
  std::unique_ptr<zk::ZkClientFactory> factory_;
  std::unique_ptr<zk::ZkClient> client_;
  std::string root_;
  std::string meta_;
  std::optional<core::Scope> scope_;
};

TEST_F(ZooKeeperSinkIntegrationTest, AClientsNextSequentialCreateSortsAfterTheCopies) {
  auto sink = MakeSink();
  const std::string parent = root_ + "/locks";
  // Copies of sequential nodes the source numbered 7 and 1041 (its counter ran ahead).
  auto copied = Apply(*sink, {Put(parent + "/lock-0000000007", "a", 10),
                              Put(parent + "/lock-0000001041", "b", 11)});
  ASSERT_TRUE(copied.ok()) << copied.error().message;
  for (const auto& answer : *copied) EXPECT_EQ(answer.outcome, WriteOutcome::kApplied);
  auto next =
      zk::blocking::Create(*client_, parent + "/lock-", "", zk::CreateMode::kEphemeralSequential);
  ASSERT_TRUE(next.ok()) << next.error().ToString();
  EXPECT_GT(next->path, parent + "/lock-0000001041");
  auto children = zk::blocking::GetChildren(*client_, parent);
  ASSERT_TRUE(children.ok());
  EXPECT_EQ(children->children.size(), 3u);  // no bump node left behind
}

TEST_F(ZooKeeperSinkIntegrationTest, WritesAreFencedAndVersionedOnARealServer) {
  auto sink = MakeSink();
  const std::string lock = meta_ + "-lock";
  ASSERT_TRUE(zk::blocking::Create(*client_, lock, "leader").ok());
  const core::Fence fence{lock, 1};
  auto written = Apply(*sink, {Put(root_ + "/svc/providers/p1", "url-1", 100)}, fence);
  ASSERT_TRUE(written.ok()) << written.error().message;
  EXPECT_EQ((*written)[0].outcome, WriteOutcome::kApplied);
  EXPECT_EQ(DataOf(root_ + "/svc/providers/p1"), "url-1");
  EXPECT_EQ(DataOf(meta_ + "/owned" + root_ + "/svc/providers/p1"), "100");
  EXPECT_EQ(DataOf(meta_ + "/owned" + root_ + "/svc"), "0");  // an ancestor it made

  EXPECT_EQ(ApplyOne(*sink, Put(root_ + "/svc/providers/p1", "older", 90)), WriteOutcome::kStale);
  ASSERT_TRUE(zk::blocking::Create(*client_, root_ + "/svc/providers/direct", "theirs").ok());
  EXPECT_EQ(ApplyOne(*sink, Put(root_ + "/svc/providers/direct", "ours", 200)),
            WriteOutcome::kForeign);
  EXPECT_EQ(DataOf(root_ + "/svc/providers/direct"), "theirs");

  ASSERT_TRUE(zk::blocking::Delete(*client_, lock).ok());
  auto refused = Apply(*sink, {Put(root_ + "/svc/providers/p1", "deposed", 300)}, fence);
  ASSERT_FALSE(refused.ok());
  EXPECT_EQ(refused.error().code, core::SinkError::Code::kNotLeader);
  EXPECT_EQ(DataOf(root_ + "/svc/providers/p1"), "url-1");
}

TEST_F(ZooKeeperSinkIntegrationTest, CreatesCarryTheSourcesAcl) {
  const std::vector<zk::Acl> acl = {
      zk::Acl{zk::kPermAll, "world", "anyone"},
      zk::Acl{zk::kPermRead, "digest", "reader:2jmj7l5rSw0yVb/vlWAYkK/YBwk="}};
  ZooKeeperSinkOptions options;
  options.source_info = [&acl](const std::string&, auto done) {
    done(std::optional<SourceNodeInfo>(SourceNodeInfo{acl, zk::Stat{}}));
  };
  auto sink = MakeSink(options);
  ASSERT_EQ(ApplyOne(*sink, Put(root_ + "/with-acl", "v", 10)), WriteOutcome::kApplied);
  auto copied = zk::blocking::GetAcl(*client_, root_ + "/with-acl");
  ASSERT_TRUE(copied.ok()) << copied.error().ToString();
  EXPECT_EQ(copied->acl, acl);
}

TEST_F(ZooKeeperSinkIntegrationTest, TheLargestValueOfADefaultServerIsCopiedByteExact) {
  // A default server takes requests up to jute.maxbuffer (1 MiB - 1) plus 1 KiB of headroom; the
  // sink's multi carries the value, the record and (without a fence) nothing else.
  auto sink = MakeSink();
  ASSERT_TRUE(zk::blocking::CreateAll(*client_, root_).ok());
  std::string largest(1024 * 1024 - 1024, '\0');
  for (size_t i = 0; i < largest.size(); ++i) largest[i] = static_cast<char>(i * 131 % 251);
  auto direct = zk::blocking::Create(*client_, root_ + "/direct-largest", largest);
  ASSERT_TRUE(direct.ok()) << "the server refused the value itself: " << direct.error().ToString();
  EXPECT_EQ(ApplyOne(*sink, Put(root_ + "/largest", largest, 10)), WriteOutcome::kApplied);
  EXPECT_TRUE(DataOf(root_ + "/largest") == largest);
}

}  // namespace
}  // namespace zk2etcd::connectors

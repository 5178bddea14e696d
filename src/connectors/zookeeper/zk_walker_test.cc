// WalkZkTree and ReadNodes against a client that holds every multiRead until the test answers
// it, so that what the walk has in flight at once can be counted.
#include "connectors/zookeeper/zk_walker.h"

#include <gtest/gtest.h>

#include <chrono>
#include <condition_variable>
#include <deque>
#include <future>
#include <mutex>

namespace zk2etcd::connectors {
namespace {

// Holds multiRead requests; every other call fails at once (the walks under test use none).
class HoldingZkClient final : public zk::ZkClient {
 public:
  struct Held {
    std::vector<zk::ReadOp> ops;
    zk::ZkCallback<zk::MultiReadReply> done;
  };

  void MultiRead(std::vector<zk::ReadOp> ops, zk::ZkCallback<zk::MultiReadReply> done) override {
    std::lock_guard lock(mutex_);
    held_.push_back({std::move(ops), std::move(done)});
    changed_.notify_all();
  }
  // Waits (at most 10 s) until at least `count` requests are held; returns them all.
  std::deque<Held> TakeAtLeast(size_t count) {
    std::unique_lock lock(mutex_);
    changed_.wait_for(lock, std::chrono::seconds(10), [&] { return held_.size() >= count; });
    return std::exchange(held_, {});
  }
  size_t held() {
    std::lock_guard lock(mutex_);
    return held_.size();
  }

  void GetData(std::string_view, bool, zk::ZkCallback<zk::GetDataReply> done) override {
    done(Fail());
  }
  void GetChildren(std::string_view, bool, zk::ZkCallback<zk::ChildrenReply> done) override {
    done(Fail());
  }
  void Exists(std::string_view, bool, zk::ZkCallback<zk::ExistsReply> done) override {
    done(Fail());
  }
  void Create(std::string_view, std::string_view, zk::CreateMode, const std::vector<zk::Acl>&,
              zk::ZkCallback<zk::CreateReply> done) override {
    done(Fail());
  }
  void Delete(std::string_view, int32_t, zk::ZkCallback<zk::Ack> done) override { done(Fail()); }
  void SetData(std::string_view, std::string_view, int32_t,
               zk::ZkCallback<zk::SetDataReply> done) override {
    done(Fail());
  }
  void Multi(std::vector<zk::MultiOp>, zk::ZkCallback<zk::MultiReply> done) override {
    done(Fail());
  }
  void GetAcl(std::string_view, zk::ZkCallback<zk::GetAclReply> done) override { done(Fail()); }
  void Sync(std::string_view, zk::ZkCallback<zk::SyncReply> done) override { done(Fail()); }
  void AddWatch(std::string_view, zk::AddWatchMode, zk::ZkCallback<zk::Ack> done) override {
    done(Fail());
  }
  void RemoveWatches(std::string_view, zk::WatcherType, zk::ZkCallback<zk::Ack> done) override {
    done(Fail());
  }
  void AddAuth(std::string_view, std::string_view, zk::ZkCallback<zk::Ack> done) override {
    done(Fail());
  }
  void Close() override {}
  zk::SessionInfo session() const override { return {}; }

 private:
  static Unexpected<zk::ZkError> Fail() {
    return Unexpected{zk::MakeZkError(zk::ZkErrorCode::kUnimplemented, "not in this test")};
  }

  std::mutex mutex_;
  std::condition_variable changed_;
  std::deque<Held> held_;
};

// Answers a held request: /dubbo has `leaves` children, every other node none.
void Answer(HoldingZkClient::Held& held, int leaves) {
  zk::MultiReadReply reply;
  reply.zxid = 7;
  for (const zk::ReadOp& op : held.ops) {
    zk::ReadResult result;
    result.kind = op.kind;
    if (op.kind == zk::ReadOp::Kind::kGetData) {
      result.data = "d" + op.path;
    } else if (op.path == "/dubbo") {
      for (int i = 0; i < leaves; ++i) result.children.push_back("n" + std::to_string(i));
    }
    reply.results.push_back(std::move(result));
  }
  held.done(std::move(reply));
}

// A level of 3,000 nodes is 200 multiReads of 15: all of them go out at once, though the
// window asked for is 50 (kMinMultiReadWindow), so that a long round trip costs one per level.
TEST(ZkWalkerTest, AWideLevelIsRequestedInOneGoWithMultiRead) {
  constexpr int kLeaves = 3000;
  HoldingZkClient client;
  const core::Scope scope = core::Scope::Create({"/dubbo"}, {}).value();
  WalkOptions options;
  options.window = 50;
  auto walk = std::async(std::launch::async, [&] { return WalkZkTree(client, scope, options); });
  auto root = client.TakeAtLeast(1);
  ASSERT_EQ(root.size(), 1u);
  Answer(root.front(), kLeaves);
  // Every request of the level goes out before any is answered (the walk may still be sending
  // when the first arrives: wait for all of them, bounded; a walk held to the window of 50 would
  // leave this at 50).
  auto level = client.TakeAtLeast(kLeaves / 15);
  EXPECT_EQ(level.size(), static_cast<size_t>(kLeaves / 15));
  while (!level.empty()) {
    for (HoldingZkClient::Held& held : level) Answer(held, kLeaves);
    level = client.held() > 0 ? client.TakeAtLeast(1) : std::deque<HoldingZkClient::Held>{};
  }
  ASSERT_EQ(walk.wait_for(std::chrono::seconds(10)), std::future_status::ready);
  auto tree = walk.get();
  ASSERT_TRUE(tree.ok()) << tree.error().ToString();
  EXPECT_EQ(tree->entries.size(), static_cast<size_t>(kLeaves + 1));
}

// The same for the second read: 2,000 nodes at up to 64 per request, all at once.
TEST(ZkWalkerTest, ReadNodesWithMultiReadSendsEveryBatchAtOnce) {
  HoldingZkClient client;
  std::vector<std::string> paths;
  for (int i = 0; i < 2000; ++i) paths.push_back("/dubbo/n" + std::to_string(i));
  NodeReadOptions options;
  options.window = 4;
  options.multi_read_batch = 10;
  auto reads = std::async(std::launch::async, [&] { return ReadNodes(client, paths, options); });
  auto batches = client.TakeAtLeast(200);
  EXPECT_EQ(batches.size(), 200u);
  for (HoldingZkClient::Held& held : batches) Answer(held, 0);
  ASSERT_EQ(reads.wait_for(std::chrono::seconds(10)), std::future_status::ready);
  auto nodes = reads.get();
  ASSERT_TRUE(nodes.ok()) << nodes.error().ToString();
  ASSERT_EQ(nodes->size(), paths.size());
  EXPECT_TRUE(nodes->back().exists);
  EXPECT_EQ(nodes->back().value, "d" + paths.back());
}

}  // namespace
}  // namespace zk2etcd::connectors

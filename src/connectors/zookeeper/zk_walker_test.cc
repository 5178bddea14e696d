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

// Answers a held request: /dubbo has `leaves` children, every other node none; data is `data`
// followed by the path, read at `zxid`.
void Answer(HoldingZkClient::Held& held, int leaves, int64_t zxid = 7,
            const std::string& data = "d") {
  zk::MultiReadReply reply;
  reply.zxid = zxid;
  for (const zk::ReadOp& op : held.ops) {
    zk::ReadResult result;
    result.kind = op.kind;
    if (op.kind == zk::ReadOp::Kind::kGetData) {
      result.data = data + op.path;
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

// A walk of /dubbo with `leaves` children on a first and a second session, both held by the
// test.
struct TwoSessionWalk {
  explicit TwoSessionWalk(std::chrono::milliseconds min_stall) {
    options.hedge = &second;
    options.min_stall = min_stall;
    walk = std::async(std::launch::async, [this] { return WalkZkTree(first, scope, options); });
  }
  // The first session answers the root at zxid 7, then holds the level's requests, which go
  // again on the second session after a stall: returns them (those held by the first session
  // stay in `stalled`).
  std::deque<HoldingZkClient::Held> StallTheLevel(int leaves) {
    auto root = first.TakeAtLeast(1);
    EXPECT_EQ(root.size(), 1u);
    if (!root.empty()) Answer(root.front(), leaves, 7);
    stalled = first.TakeAtLeast(leaves / 15);
    EXPECT_EQ(stalled.size(), static_cast<size_t>(leaves / 15));
    auto again = second.TakeAtLeast(leaves / 15);
    EXPECT_EQ(again.size(), static_cast<size_t>(leaves / 15));
    return again;
  }

  HoldingZkClient first, second;
  const core::Scope scope = core::Scope::Create({"/dubbo"}, {}).value();
  WalkOptions options;
  std::future<Result<core::Snapshot, zk::ZkError>> walk;
  std::deque<HoldingZkClient::Held> stalled;
};

// The first session answers the root, then stalls (a held TCP segment) with the whole level of 20
// requests unanswered. After a stall the level goes again on the second session, whose answers
// end the walk; the first session's answers, when they come at last, change nothing (and find
// the walk's state alive: the walk returned long before).
TEST(ZkWalkerTest, RequestsAStalledSessionHoldsGoAgainOnTheSecondSession) {
  constexpr int kLeaves = 300;  // 20 requests of 15
  TwoSessionWalk test(std::chrono::milliseconds(20));
  for (HoldingZkClient::Held& held : test.StallTheLevel(kLeaves)) {
    Answer(held, kLeaves, 8, "second");
  }
  ASSERT_EQ(test.walk.wait_for(std::chrono::seconds(10)), std::future_status::ready);
  auto tree = test.walk.get();
  ASSERT_TRUE(tree.ok()) << tree.error().ToString();
  EXPECT_EQ(tree->entries.size(), static_cast<size_t>(kLeaves + 1));
  EXPECT_EQ(tree->requests, static_cast<size_t>(1 + kLeaves / 15));
  EXPECT_EQ(tree->requests_sent_again, static_cast<size_t>(kLeaves / 15));
  EXPECT_EQ(tree->entries.back().value, "second" + tree->entries.back().key);
  EXPECT_EQ(tree->point, 8);
  for (HoldingZkClient::Held& held : test.stalled) Answer(held, kLeaves, 9, "first");
  EXPECT_EQ(test.first.held() + test.second.held(), 0u);
}

// The second session is not used while the first answers: 2,000 nodes answered as they come.
TEST(ZkWalkerTest, ASessionThatAnswersKeepsEveryRequest) {
  constexpr int kLeaves = 2000;
  TwoSessionWalk test(std::chrono::seconds(2));
  const auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(10);
  while (test.walk.wait_for(std::chrono::milliseconds(1)) != std::future_status::ready &&
         std::chrono::steady_clock::now() < deadline) {
    if (test.first.held() == 0) continue;
    for (HoldingZkClient::Held& request : test.first.TakeAtLeast(1)) Answer(request, kLeaves);
  }
  ASSERT_EQ(test.walk.wait_for(std::chrono::seconds(0)), std::future_status::ready);
  auto tree = test.walk.get();
  ASSERT_TRUE(tree.ok()) << tree.error().ToString();
  EXPECT_EQ(tree->entries.size(), static_cast<size_t>(kLeaves + 1));
  EXPECT_EQ(tree->requests_sent_again, 0u);
  EXPECT_EQ(test.second.held(), 0u);
}

// An answer of the second session read at a zxid below the first session's first answer may
// predate changes that no watch announced (another server, behind): it is not used, the second
// session is given up for the walk, and the first session's answers make the snapshot.
TEST(ZkWalkerTest, AnAnswerOfTheSecondSessionOlderThanTheWalkIsNotUsed) {
  constexpr int kLeaves = 300;
  TwoSessionWalk test(std::chrono::milliseconds(20));
  for (HoldingZkClient::Held& held : test.StallTheLevel(kLeaves)) {
    Answer(held, kLeaves, 6, "behind");
  }
  EXPECT_NE(test.walk.wait_for(std::chrono::milliseconds(100)), std::future_status::ready);
  for (HoldingZkClient::Held& held : test.stalled) Answer(held, kLeaves, 7, "first");
  ASSERT_EQ(test.walk.wait_for(std::chrono::seconds(10)), std::future_status::ready);
  auto tree = test.walk.get();
  ASSERT_TRUE(tree.ok()) << tree.error().ToString();
  ASSERT_EQ(tree->entries.size(), static_cast<size_t>(kLeaves + 1));
  for (const core::SourceEntry& entry : tree->entries) {
    if (entry.key != "/dubbo") {
      EXPECT_EQ(entry.value, "first" + entry.key);
    }
  }
  EXPECT_EQ(tree->point, 7);
}

}  // namespace
}  // namespace zk2etcd::connectors

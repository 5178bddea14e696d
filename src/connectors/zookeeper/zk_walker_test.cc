// WalkZkTree and ReadNodes against a client that holds every multiRead until the test answers
// it, so that what the walk has in flight at once can be counted.
#include "connectors/zookeeper/zk_walker.h"

#include <gtest/gtest.h>

#include <algorithm>
#include <chrono>
#include <condition_variable>
#include <cstdlib>
#include <deque>
#include <future>
#include <iostream>
#include <mutex>
#include <thread>

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
  zk::SessionInfo session() const override {
    zk::SessionInfo info;
    info.state = connected ? zk::SessionState::kConnected : zk::SessionState::kConnecting;
    return info;
  }

  std::atomic<bool> connected{true};

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

// Answers every request of `held` as Answer() does.
void AnswerAll(std::deque<HoldingZkClient::Held>& held, int leaves, int64_t zxid = 7,
               const std::string& data = "d") {
  for (HoldingZkClient::Held& request : held) Answer(request, leaves, zxid, data);
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
    AnswerAll(level, kLeaves);
    level = client.held() > 0 ? client.TakeAtLeast(1) : std::deque<HoldingZkClient::Held>{};
  }
  ASSERT_EQ(walk.wait_for(std::chrono::seconds(10)), std::future_status::ready);
  auto tree = walk.get();
  ASSERT_TRUE(tree.ok()) << tree.error().ToString();
  EXPECT_EQ(tree->entries.size(), static_cast<size_t>(kLeaves + 1));
}

// Each entry the snapshot takes is handed over as it is read (WalkOptions::on_entry), once:
// the root's before its children are answered, and in the end exactly the snapshot's entries.
TEST(ZkWalkerTest, EveryEntryIsHandedOverOnceAsItIsRead) {
  constexpr int kLeaves = 40;
  HoldingZkClient client;
  const core::Scope scope = core::Scope::Create({"/dubbo"}, {"/dubbo/n7"}).value();
  std::mutex mutex;
  std::vector<core::SourceEntry> handed_over;
  WalkOptions options;
  options.on_entry = [&](const core::SourceEntry& entry) {
    std::lock_guard lock(mutex);
    handed_over.push_back(entry);
  };
  auto walk = std::async(std::launch::async, [&] { return WalkZkTree(client, scope, options); });
  auto root = client.TakeAtLeast(1);
  EXPECT_EQ(root.size(), 1u);
  AnswerAll(root, kLeaves, /*zxid=*/7);
  auto level = client.TakeAtLeast(3);  // 39 leaves in scope, 15 per request
  EXPECT_EQ(level.size(), 3u);
  {
    std::lock_guard lock(mutex);
    EXPECT_EQ(handed_over.size(), 1u);
    if (!handed_over.empty()) {
      EXPECT_EQ(handed_over[0].key, "/dubbo");
      EXPECT_EQ(handed_over[0].value, "d/dubbo");
    }
  }
  // Every request answered before anything can end the test (the walk would wait for them).
  while (!level.empty()) {
    AnswerAll(level, kLeaves, /*zxid=*/9);
    level = client.held() > 0 ? client.TakeAtLeast(1) : std::deque<HoldingZkClient::Held>{};
  }
  ASSERT_EQ(walk.wait_for(std::chrono::seconds(10)), std::future_status::ready);
  auto tree = walk.get();
  ASSERT_TRUE(tree.ok()) << tree.error().ToString();
  ASSERT_EQ(tree->entries.size(), static_cast<size_t>(kLeaves));  // the excluded one left out
  std::lock_guard lock(mutex);
  std::sort(handed_over.begin(), handed_over.end(),
            [](const core::SourceEntry& a, const core::SourceEntry& b) { return a.key < b.key; });
  ASSERT_EQ(handed_over.size(), tree->entries.size());
  for (size_t i = 0; i < handed_over.size(); ++i) {
    EXPECT_EQ(handed_over[i].key, tree->entries[i].key);
    EXPECT_EQ(handed_over[i].value, tree->entries[i].value);
    EXPECT_EQ(handed_over[i].version, tree->entries[i].version);
  }
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
  AnswerAll(batches, 0);
  ASSERT_EQ(reads.wait_for(std::chrono::seconds(10)), std::future_status::ready);
  auto nodes = reads.get();
  ASSERT_TRUE(nodes.ok()) << nodes.error().ToString();
  ASSERT_EQ(nodes->size(), paths.size());
  EXPECT_TRUE(nodes->back().exists);
  EXPECT_EQ(nodes->back().value, "d" + paths.back());
}

// The walk read /dubbo and its `leaves` children, each child's data `from` followed by its path.
void ExpectLeavesFrom(const core::Snapshot& tree, int leaves, const std::string& from) {
  ASSERT_EQ(tree.entries.size(), static_cast<size_t>(leaves + 1));
  for (const core::SourceEntry& entry : tree.entries) {
    if (entry.key != "/dubbo") {
      EXPECT_EQ(entry.value, from + entry.key);
    }
  }
}

constexpr std::chrono::microseconds kNeverSpread = std::chrono::hours(1);

// A walk of /dubbo on a first session and `helpers` more, all held by the test; by default
// requests are spread over the sessions whatever the round trip.
struct SpreadWalk {
  SpreadWalk(size_t helpers, std::chrono::milliseconds min_stall,
             std::chrono::microseconds spread_from = std::chrono::microseconds(0))
      : sessions(1 + helpers) {
    for (size_t i = 1; i < sessions.size(); ++i) options.helpers.push_back(&sessions[i]);
    options.min_stall = min_stall;
    options.spread_from = spread_from;
    walk =
        std::async(std::launch::async, [this] { return WalkZkTree(sessions[0], scope, options); });
  }
  // The first session answers the root (/dubbo with `leaves` children) at zxid 7, after
  // `delay`; returns the requests of the level as each session holds them (a session expected to
  // hold none is left alone: what a stall sends there later is the test's to take).
  std::vector<std::deque<HoldingZkClient::Held>> AnswerTheRoot(
      int leaves, const std::vector<size_t>& spread,
      std::chrono::milliseconds delay = std::chrono::milliseconds(0)) {
    auto root = sessions[0].TakeAtLeast(1);
    EXPECT_EQ(root.size(), 1u);
    std::this_thread::sleep_for(delay);
    if (!root.empty()) Answer(root.front(), leaves, 7);
    std::vector<std::deque<HoldingZkClient::Held>> level(sessions.size());
    for (size_t i = 0; i < sessions.size(); ++i) {
      if (spread[i] == 0) continue;
      level[i] = sessions[i].TakeAtLeast(spread[i]);
      EXPECT_EQ(level[i].size(), spread[i]) << "session " << i;
    }
    return level;
  }
  // The walk's result. A walk that has not ended within 10 s would hang the test (the future
  // waits for it): the test binary stops at once instead.
  zk2etcd::Result<core::Snapshot, zk::ZkError> Finished() {
    if (walk.wait_for(std::chrono::seconds(10)) != std::future_status::ready) {
      std::cerr << "the walk did not end within 10 s\n";
      std::abort();
    }
    return walk.get();
  }

  std::deque<HoldingZkClient> sessions;
  const core::Scope scope = core::Scope::Create({"/dubbo"}, {}).value();
  WalkOptions options;
  std::future<zk2etcd::Result<core::Snapshot, zk::ZkError>> walk;
};

// Once the first session has answered (the root), the walk's requests go to the session with the
// fewest unanswered: a level of 20 requests is 7, 7 and 6 on three sessions. While every session
// answers, no request is sent twice.
TEST(ZkWalkerTest, ALevelIsSpreadOverTheSessionsOnceTheFirstHasAnswered) {
  constexpr int kLeaves = 300;  // 20 requests of 15
  SpreadWalk test(2, std::chrono::seconds(5));
  for (auto& held : test.AnswerTheRoot(kLeaves, {7, 7, 6})) {
    AnswerAll(held, kLeaves, 8);
  }
  auto tree = test.Finished();
  ASSERT_TRUE(tree.ok()) << tree.error().ToString();
  EXPECT_EQ(tree->entries.size(), static_cast<size_t>(kLeaves + 1));
  EXPECT_EQ(tree->requests, static_cast<size_t>(1 + kLeaves / 15));
  EXPECT_EQ(tree->requests_sent_again, 0u);
  EXPECT_EQ(tree->point, 8);
}

// On a short round trip (below spread_from) the first session keeps every request while it
// answers, and the helpers are not used: 2,000 nodes answered as they come.
TEST(ZkWalkerTest, OnAShortRoundTripTheFirstSessionKeepsEveryRequest) {
  constexpr int kLeaves = 2000;
  SpreadWalk test(2, std::chrono::seconds(2), kNeverSpread);
  const auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(10);
  while (test.walk.wait_for(std::chrono::milliseconds(1)) != std::future_status::ready &&
         std::chrono::steady_clock::now() < deadline) {
    if (test.sessions[0].held() == 0) continue;
    for (HoldingZkClient::Held& request : test.sessions[0].TakeAtLeast(1)) {
      Answer(request, kLeaves);
    }
  }
  auto tree = test.Finished();
  ASSERT_TRUE(tree.ok()) << tree.error().ToString();
  EXPECT_EQ(tree->entries.size(), static_cast<size_t>(kLeaves + 1));
  EXPECT_EQ(tree->requests_sent_again, 0u);
  EXPECT_EQ(test.sessions[1].held() + test.sessions[2].held(), 0u);
}

// Without spreading, when the first session stalls with the whole level of 20 requests
// unanswered, the level goes again on a helper after a stall, and the walk ends on its answers.
TEST(ZkWalkerTest, WithoutSpreadingAStalledFirstSessionsRequestsGoAgainOnAHelper) {
  constexpr int kLeaves = 300;
  SpreadWalk test(1, std::chrono::milliseconds(20), kNeverSpread);
  auto level = test.AnswerTheRoot(kLeaves, {20, 0});
  auto again = test.sessions[1].TakeAtLeast(20);
  EXPECT_EQ(again.size(), 20u);
  AnswerAll(again, kLeaves, 8, "second");
  auto tree = test.Finished();
  ASSERT_TRUE(tree.ok()) << tree.error().ToString();
  EXPECT_EQ(tree->entries.size(), static_cast<size_t>(kLeaves + 1));
  EXPECT_EQ(tree->requests_sent_again, 20u);
  EXPECT_EQ(tree->entries.back().value, "second" + tree->entries.back().key);
  EXPECT_EQ(tree->point, 8);
  AnswerAll(level[0], kLeaves, 9, "first");
}

// The walk measures the round trip: with the root answered 20 ms after it was sent, and
// spread_from 5 ms, the level is spread over both sessions.
TEST(ZkWalkerTest, ALongRoundTripSpreadsTheWalk) {
  constexpr int kLeaves = 300;
  SpreadWalk test(1, std::chrono::seconds(5), std::chrono::milliseconds(5));
  for (auto& held : test.AnswerTheRoot(kLeaves, {10, 10}, std::chrono::milliseconds(20))) {
    AnswerAll(held, kLeaves, 8);
  }
  auto tree = test.Finished();
  ASSERT_TRUE(tree.ok()) << tree.error().ToString();
  EXPECT_EQ(tree->entries.size(), static_cast<size_t>(kLeaves + 1));
  EXPECT_EQ(tree->requests_sent_again, 0u);
}

// The first session stalls (a held TCP segment) with its half of the level unanswered, while the
// second answers its own half. After a stall the first's half goes again on the second, whose
// answers end the walk; the first session's answers, when they come at last, change nothing (and
// find the walk's state alive: the walk returned long before).
TEST(ZkWalkerTest, RequestsAStalledSessionHoldsGoAgainOnAnother) {
  constexpr int kLeaves = 300;
  SpreadWalk test(1, std::chrono::milliseconds(20));
  auto level = test.AnswerTheRoot(kLeaves, {10, 10});
  AnswerAll(level[1], kLeaves, 8, "second");
  auto again = test.sessions[1].TakeAtLeast(10);
  EXPECT_EQ(again.size(), 10u);
  AnswerAll(again, kLeaves, 8, "second");
  auto tree = test.Finished();
  ASSERT_TRUE(tree.ok()) << tree.error().ToString();
  EXPECT_EQ(tree->requests, static_cast<size_t>(1 + kLeaves / 15));
  EXPECT_EQ(tree->requests_sent_again, 10u);
  ExpectLeavesFrom(*tree, kLeaves, "second");
  AnswerAll(level[0], kLeaves, 9, "first");
  EXPECT_EQ(test.sessions[0].held() + test.sessions[1].held(), 0u);
}

// Answers a held request: every getChildren lists `children` children c0, c1, ...
void AnswerWithChildren(HoldingZkClient::Held& held, int children, int64_t zxid) {
  zk::MultiReadReply reply;
  reply.zxid = zxid;
  for (const zk::ReadOp& op : held.ops) {
    zk::ReadResult result;
    result.kind = op.kind;
    if (op.kind == zk::ReadOp::Kind::kGetChildren) {
      for (int i = 0; i < children; ++i) result.children.push_back("c" + std::to_string(i));
    }
    reply.results.push_back(std::move(result));
  }
  held.done(std::move(reply));
}

// A session is stalled as soon as another answered a request sent after its oldest unanswered
// one, though that other session still has requests waiting: a level of 4 requests goes r0, r2
// to the first session and r1, r3 to the second; the second answers r1 and holds r3, and the
// first session's r0 and r2 go again on the second.
TEST(ZkWalkerTest, ASessionOvertakenByAnotherIsStalledWhileTheOtherStillWaits) {
  constexpr int kLeaves = 60;  // 4 requests of 15
  SpreadWalk test(1, std::chrono::milliseconds(20));
  auto level = test.AnswerTheRoot(kLeaves, {2, 2});
  Answer(level[1].front(), kLeaves, 8);
  auto again = test.sessions[1].TakeAtLeast(2);
  EXPECT_EQ(again.size(), 2u);
  AnswerAll(again, kLeaves, 8);
  Answer(level[1].back(), kLeaves, 8);
  auto tree = test.Finished();
  ASSERT_TRUE(tree.ok()) << tree.error().ToString();
  EXPECT_EQ(tree->entries.size(), static_cast<size_t>(kLeaves + 1));
  EXPECT_EQ(tree->requests_sent_again, 2u);
  AnswerAll(level[0], kLeaves, 9);
}

// A stalled session gets no new request while another can take it: with the first session
// stalled, the children that the second session's answers queue all go to the second.
TEST(ZkWalkerTest, AStalledSessionGetsNoNewRequests) {
  constexpr int kInterfaces = 30;  // 2 requests of 15 (getData and getChildren of each)
  SpreadWalk test(1, std::chrono::milliseconds(20));
  auto level = test.AnswerTheRoot(kInterfaces, {1, 1});
  for (HoldingZkClient::Held& held : level[1]) AnswerWithChildren(held, 0, 8);
  // The first session's request goes again on the second after a stall; its 15 interfaces have
  // 15 providers each: 225 nodes, 15 requests, all on the second session.
  auto again = test.sessions[1].TakeAtLeast(1);
  ASSERT_EQ(again.size(), 1u);
  AnswerWithChildren(again.front(), 15, 8);
  auto providers = test.sessions[1].TakeAtLeast(15);
  EXPECT_EQ(providers.size(), 15u);
  EXPECT_EQ(test.sessions[0].held(), 0u);
  for (HoldingZkClient::Held& held : providers) AnswerWithChildren(held, 0, 9);
  auto tree = test.Finished();
  ASSERT_TRUE(tree.ok()) << tree.error().ToString();
  EXPECT_EQ(tree->entries.size(), static_cast<size_t>(1 + kInterfaces + 15 * 15));
  EXPECT_EQ(tree->requests_sent_again, 1u);
  for (HoldingZkClient::Held& held : level[0]) AnswerWithChildren(held, 0, 9);
}

// An error of a helper ends its use for the walk: what waited on it goes again on the first
// session, and its later answers are not used.
TEST(ZkWalkerTest, AHelperThatFailsIsGivenUp) {
  constexpr int kLeaves = 300;
  SpreadWalk test(1, std::chrono::seconds(5));
  auto level = test.AnswerTheRoot(kLeaves, {10, 10});
  level[1].front().done(
      Unexpected{zk::MakeZkError(zk::ZkErrorCode::kConnectionLoss, "connection lost")});
  level[1].pop_front();
  auto again = test.sessions[0].TakeAtLeast(10);
  EXPECT_EQ(again.size(), 10u);
  AnswerAll(level[1], kLeaves, 8, "given up");
  AnswerAll(level[0], kLeaves, 8, "first");
  AnswerAll(again, kLeaves, 8, "first");
  auto tree = test.Finished();
  ASSERT_TRUE(tree.ok()) << tree.error().ToString();
  ExpectLeavesFrom(*tree, kLeaves, "first");
  EXPECT_EQ(tree->requests_sent_again, 10u);
}

// An answer of a helper read at a zxid below the first session's first answer may predate
// changes that no watch announced (another server, behind): it is not used, the helper is given
// up for the walk, what waited on it goes again on the first session, and the first session's
// answers make the snapshot.
TEST(ZkWalkerTest, AnAnswerOfAHelperOlderThanTheWalkIsNotUsed) {
  constexpr int kLeaves = 300;
  SpreadWalk test(1, std::chrono::seconds(5));
  auto level = test.AnswerTheRoot(kLeaves, {10, 10});
  AnswerAll(level[1], kLeaves, 6, "behind");
  auto again = test.sessions[0].TakeAtLeast(10);
  EXPECT_EQ(again.size(), 10u);
  EXPECT_NE(test.walk.wait_for(std::chrono::milliseconds(50)), std::future_status::ready);
  AnswerAll(level[0], kLeaves, 7, "first");
  AnswerAll(again, kLeaves, 7, "first");
  auto tree = test.Finished();
  ASSERT_TRUE(tree.ok()) << tree.error().ToString();
  ExpectLeavesFrom(*tree, kLeaves, "first");
  EXPECT_EQ(tree->point, 7);
}

using WalkResult = zk2etcd::Result<core::Snapshot, zk::ZkError>;

// Stops the test binary if the walk has not ended within 10 s of the guard's end: a failed
// assertion's early return would otherwise wait for it for ever (the future's destructor).
struct EndsWithin10s {
  std::future<WalkResult>& walk;
  ~EndsWithin10s() {
    if (walk.valid() && walk.wait_for(std::chrono::seconds(10)) != std::future_status::ready) {
      std::cerr << "the walk did not end within 10 s\n";
      std::abort();
    }
  }
};

// Whether a held request reads the root's children (the walk's first request).
bool ReadsTheRoot(const HoldingZkClient::Held& held) {
  for (const zk::ReadOp& op : held.ops) {
    if (op.kind == zk::ReadOp::Kind::kGetChildren && op.path == "/dubbo") return true;
  }
  return false;
}

// A walk given a head (the root's multiRead, sent before it on the same session) sends no root
// request of its own: its first requests are the next level, whether the head was answered
// before the walk started or after; the head counts as one of its requests.
TEST(ZkWalkerTest, AWalkStartsFromItsHeadAnsweredBeforeOrAfterItStarted) {
  constexpr int kLeaves = 30;  // 2 requests of 15
  const core::Scope scope = core::Scope::Create({"/dubbo"}, {}).value();
  for (const bool answered_first : {true, false}) {
    SCOPED_TRACE(answered_first ? "answered before the walk" : "answered during the walk");
    HoldingZkClient client;
    WalkOptions options;
    options.head = WalkHead::Send(client, scope, options.multi_read_batch);
    auto head = client.TakeAtLeast(1);
    ASSERT_EQ(head.size(), 1u);
    ASSERT_TRUE(ReadsTheRoot(head.front()));
    if (answered_first) Answer(head.front(), kLeaves, 7, "head");
    auto walk = std::async(std::launch::async, [&] { return WalkZkTree(client, scope, options); });
    EndsWithin10s guard{walk};
    if (!answered_first) {
      // The walk waits for the head instead of reading the root again.
      EXPECT_NE(walk.wait_for(std::chrono::milliseconds(50)), std::future_status::ready);
      EXPECT_EQ(client.held(), 0u);
      Answer(head.front(), kLeaves, 7, "head");
    }
    auto level = client.TakeAtLeast(kLeaves / 15);
    ASSERT_EQ(level.size(), static_cast<size_t>(kLeaves / 15));
    for (const HoldingZkClient::Held& held : level) EXPECT_FALSE(ReadsTheRoot(held));
    AnswerAll(level, kLeaves, 8, "level");
    ASSERT_EQ(walk.wait_for(std::chrono::seconds(10)), std::future_status::ready);
    auto tree = walk.get();
    ASSERT_TRUE(tree.ok()) << tree.error().ToString();
    ASSERT_EQ(tree->entries.size(), static_cast<size_t>(kLeaves + 1));
    EXPECT_EQ(tree->entries[0].value, "head/dubbo");
    EXPECT_EQ(tree->entries[1].value, "level/dubbo/n0");
    EXPECT_EQ(tree->requests, static_cast<size_t>(1 + kLeaves / 15));
    EXPECT_EQ(tree->point, 8);
  }
}

// A head whose request failed fails the walk with that error, as a failed request of its own
// would (the engine retries the reconciliation).
TEST(ZkWalkerTest, AHeadThatFailedFailsTheWalk) {
  const core::Scope scope = core::Scope::Create({"/dubbo"}, {}).value();
  HoldingZkClient client;
  WalkOptions options;
  options.head = WalkHead::Send(client, scope, options.multi_read_batch);
  auto head = client.TakeAtLeast(1);
  ASSERT_EQ(head.size(), 1u);
  head.front().done(
      Unexpected{zk::MakeZkError(zk::ZkErrorCode::kConnectionLoss, "lost with the head")});
  auto walk = std::async(std::launch::async, [&] { return WalkZkTree(client, scope, options); });
  EndsWithin10s guard{walk};
  ASSERT_EQ(walk.wait_for(std::chrono::seconds(10)), std::future_status::ready);
  auto tree = walk.get();
  ASSERT_FALSE(tree.ok());
  EXPECT_EQ(tree.error().code, zk::ZkErrorCode::kConnectionLoss);
  EXPECT_EQ(client.held(), 0u);  // nothing sent after it
}

// A head is one walk's: a second walk given it, and a walk on another session, read the root
// themselves (the head's answer would not be theirs to use).
TEST(ZkWalkerTest, AHeadServesOneWalkOnItsOwnSession) {
  const core::Scope scope = core::Scope::Create({"/dubbo"}, {}).value();
  HoldingZkClient client, other;
  WalkOptions options;
  options.head = WalkHead::Send(client, scope, options.multi_read_batch);
  auto head = client.TakeAtLeast(1);
  ASSERT_EQ(head.size(), 1u);
  Answer(head.front(), 0);

  auto on_other = std::async(std::launch::async, [&] { return WalkZkTree(other, scope, options); });
  EndsWithin10s other_guard{on_other};
  auto root = other.TakeAtLeast(1);
  ASSERT_EQ(root.size(), 1u);
  EXPECT_TRUE(ReadsTheRoot(root.front()));
  Answer(root.front(), 0);
  ASSERT_EQ(on_other.wait_for(std::chrono::seconds(10)), std::future_status::ready);
  ASSERT_TRUE(on_other.get().ok());

  // The head is answered: the walk sends nothing and ends.
  auto first = std::async(std::launch::async, [&] { return WalkZkTree(client, scope, options); });
  EndsWithin10s first_guard{first};
  if (first.wait_for(std::chrono::seconds(5)) != std::future_status::ready) {
    ADD_FAILURE() << "the walk sent requests of its own";
    auto sent = client.TakeAtLeast(1);
    AnswerAll(sent, 0);
  }
  auto first_tree = first.get();
  ASSERT_TRUE(first_tree.ok()) << first_tree.error().ToString();
  EXPECT_EQ(first_tree->entries.size(), 1u);
  EXPECT_EQ(client.held(), 0u);

  auto second = std::async(std::launch::async, [&] { return WalkZkTree(client, scope, options); });
  EndsWithin10s second_guard{second};
  root = client.TakeAtLeast(1);
  ASSERT_EQ(root.size(), 1u);
  EXPECT_TRUE(ReadsTheRoot(root.front()));
  Answer(root.front(), 0);
  ASSERT_EQ(second.wait_for(std::chrono::seconds(10)), std::future_status::ready);
  ASSERT_TRUE(second.get().ok());
}

// With helpers, a walk that starts from a head spreads the next level at once: the head's answer
// is the first session's first (the helpers' zxid floor), and its round trip, measured on a
// connected session, is the one the walk spreads from. A head sent while the session was still
// connecting measures no round trip (the connection's set-up would count): the level then stays
// on the first session, which answers.
TEST(ZkWalkerTest, AWalkFromAHeadSpreadsTheNextLevelIfTheHeadMeasuredARoundTrip) {
  constexpr int kLeaves = 300;  // 20 requests of 15
  const core::Scope scope = core::Scope::Create({"/dubbo"}, {}).value();
  for (const bool connected : {true, false}) {
    SCOPED_TRACE(connected ? "head sent connected" : "head sent while connecting");
    std::deque<HoldingZkClient> sessions(3);
    WalkOptions options;
    for (size_t i = 1; i < sessions.size(); ++i) options.helpers.push_back(&sessions[i]);
    options.min_stall = std::chrono::seconds(5);
    options.spread_from = std::chrono::microseconds(1);
    sessions[0].connected = connected;
    options.head = WalkHead::Send(sessions[0], scope, options.multi_read_batch);
    sessions[0].connected = true;
    auto head = sessions[0].TakeAtLeast(1);
    ASSERT_EQ(head.size(), 1u);
    Answer(head.front(), kLeaves, 7);
    auto walk =
        std::async(std::launch::async, [&] { return WalkZkTree(sessions[0], scope, options); });
    EndsWithin10s guard{walk};
    const std::vector<size_t> spread =
        connected ? std::vector<size_t>{7, 7, 6} : std::vector<size_t>{20, 0, 0};
    // The whole level is taken before any of it is answered: an answer would make its session
    // the least loaded for the requests still being sent.
    std::vector<std::deque<HoldingZkClient::Held>> level(sessions.size());
    for (size_t i = 0; i < sessions.size(); ++i) {
      if (spread[i] == 0) continue;
      level[i] = sessions[i].TakeAtLeast(spread[i]);
      EXPECT_EQ(level[i].size(), spread[i]) << "session " << i;
    }
    for (auto& held : level) AnswerAll(held, kLeaves, 8);
    auto tree = walk.get();
    ASSERT_TRUE(tree.ok()) << tree.error().ToString();
    EXPECT_EQ(tree->entries.size(), static_cast<size_t>(kLeaves + 1));
    EXPECT_EQ(tree->requests, static_cast<size_t>(1 + kLeaves / 15));
    EXPECT_EQ(tree->requests_sent_again, 0u);
    EXPECT_EQ(sessions[1].held() + sessions[2].held(), 0u);
  }
}

}  // namespace
}  // namespace zk2etcd::connectors

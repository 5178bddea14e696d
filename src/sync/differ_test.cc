// The etcd side of the diff: RangeCursor's pages and what they cost the server, and ComputeDiff's
// listing of a large prefix.
#include "sync/differ.h"

#include <gtest/gtest.h>

#include <chrono>
#include <condition_variable>
#include <cstdio>
#include <mutex>

#include "connectors/etcd/fenced_txn.h"
#include "etcd/fake_etcd_client.h"

namespace zk2etcd::sync {
namespace {

std::string NumberedKey(const std::string& prefix, int i) {
  char suffix[16];
  std::snprintf(suffix, sizeof(suffix), "%06d", i);
  return prefix + suffix;
}

class DifferTest : public ::testing::Test {
 protected:
  // Reads everything the cursor yields.
  std::vector<std::string> ReadAll(RangeCursor& cursor) {
    std::vector<std::string> keys;
    while (true) {
      auto next = cursor.Next();
      EXPECT_TRUE(next.ok());
      if (!next.ok() || !next->has_value()) return keys;
      keys.push_back((*next)->key);
    }
  }

  SystemClock clock_;
  etcd::FakeEtcdClient etcd_{clock_};
};

TEST_F(DifferTest, PagesEndAtTheSplitsSoThatAListingCostsItsKeysNotTheirSquare) {
  constexpr int kKeys = 10000;
  constexpr int kPage = 100;
  std::vector<std::string> expected;
  std::vector<std::string> splits;
  for (int i = 0; i < kKeys; ++i) {
    expected.push_back(NumberedKey("/dubbo/k", i));
    etcd_.store().PutDirect(expected.back(), "v");
    if (i > 0 && i % kPage == 0) splits.push_back(expected.back());
  }
  etcd_.store().PutDirect("/dubbox", "outside");
  const std::vector<KeyRange> ranges = {{"/dubbo", ""}, {"/dubbo/", "/dubbo0"}};

  const int64_t before = etcd_.store().keys_walked();
  RangeCursor split_cursor(etcd_, ranges, 0, kPage, splits);
  EXPECT_EQ(ReadAll(split_cursor), expected);
  const int64_t walked_with_splits = etcd_.store().keys_walked() - before;
  EXPECT_LE(walked_with_splits, 2 * kKeys);
  EXPECT_LE(split_cursor.requests(), static_cast<size_t>(kKeys / kPage + 3));

  // The same listing paged over the whole range walks about keys^2 / (2 * page).
  RangeCursor whole_cursor(etcd_, ranges, 0, kPage);
  EXPECT_EQ(ReadAll(whole_cursor), expected);
  const int64_t walked_whole = etcd_.store().keys_walked() - before - walked_with_splits;
  EXPECT_GT(walked_whole, 20 * kKeys);
}

TEST_F(DifferTest, KeysBetweenTwoSplitsAreReadWholeEvenWhenTheyFillManyPages) {
  // Splits every 100 keys, but 1,000 unexpected keys between the first two, and keys before
  // the first split and after the last.
  std::vector<std::string> expected;
  for (int i = 0; i < 1300; ++i) {
    expected.push_back(NumberedKey("/dubbo/", i));
    etcd_.store().PutDirect(expected.back(), "v");
  }
  const std::vector<std::string> splits = {
      NumberedKey("/dubbo/", 100), NumberedKey("/dubbo/", 1100), NumberedKey("/dubbo/", 1200)};
  RangeCursor cursor(etcd_, {{"/dubbo/", "/dubbo0"}}, 0, 100, splits);
  EXPECT_EQ(ReadAll(cursor), expected);
}

TEST_F(DifferTest, SplitsOutsideARangeAndOpenEndedRangesAreHandled) {
  for (int i = 0; i < 50; ++i) etcd_.store().PutDirect(NumberedKey("/a/", i), "v");
  for (int i = 0; i < 50; ++i) etcd_.store().PutDirect(NumberedKey("/b/", i), "v");
  // Splits in /a/ only; the second range runs to the end of the key space ("\0").
  std::vector<std::string> splits = {NumberedKey("/a/", 10), NumberedKey("/a/", 20)};
  RangeCursor cursor(etcd_, {{"/a/", "/a0"}, {"/b/", std::string(1, '\0')}}, 0, 7, splits);
  const std::vector<std::string> keys = ReadAll(cursor);
  ASSERT_EQ(keys.size(), 100u);
  EXPECT_EQ(keys.front(), NumberedKey("/a/", 0));
  EXPECT_EQ(keys.back(), NumberedKey("/b/", 49));
  EXPECT_TRUE(std::is_sorted(keys.begin(), keys.end()));
}

TEST_F(DifferTest, TheListingIsOneRevisionEvenWhenKeysChangeBetweenPages) {
  for (int i = 0; i < 300; ++i) etcd_.store().PutDirect(NumberedKey("/dubbo/", i), "v");
  RangeCursor cursor(etcd_, {{"/dubbo/", "/dubbo0"}}, 0, 100, {NumberedKey("/dubbo/", 150)});
  auto first = cursor.Next();
  ASSERT_TRUE(first.ok() && first->has_value());
  etcd_.store().PutDirect(NumberedKey("/dubbo/", 299) + "-late", "v");  // after the first page
  etcd_.store().DeleteDirect(NumberedKey("/dubbo/", 200));
  std::vector<std::string> keys = {(*first)->key};
  for (const std::string& key : ReadAll(cursor)) keys.push_back(key);
  EXPECT_EQ(keys.size(), 300u);
  EXPECT_EQ(keys.back(), NumberedKey("/dubbo/", 299));
}

TEST_F(DifferTest, ADiffOfALargePrefixInSyncWalksEachKeyAboutOnce) {
  const core::Scope scope = core::Scope::Create({"/dubbo"}, {}).value();
  const KeyLayout layout = KeyLayout::Create("", "/zk2etcd/meta", scope).value();
  core::Snapshot tree;
  tree.entries.push_back({"/dubbo", "", 1});
  for (int i = 0; i < 20000; ++i) tree.entries.push_back({NumberedKey("/dubbo/n", i), "d", 1});
  for (const core::SourceEntry& node : tree.entries) {
    etcd_.store().PutDirect(layout.KeyFor(node.key), node.value);
    etcd_.store().PutDirect(layout.MetaKeyFor(layout.KeyFor(node.key)), EncodeZxid(1));
  }
  DiffOptions options;
  options.page_size = 500;
  const int64_t before = etcd_.store().keys_walked();
  auto report = ComputeDiff(tree, scope, layout, etcd_, options);
  ASSERT_TRUE(report.ok());
  EXPECT_EQ(report->in_sync, tree.entries.size());
  EXPECT_EQ(report->listed, 0u);
  // Data and meta records: each walked about once (twice at most), not once per page.
  EXPECT_LE(etcd_.store().keys_walked() - before, static_cast<int64_t>(4 * tree.entries.size()));
}

// Holds each etcd call (reported through the observer, on the caller's thread) until `wanted`
// calls are held at once or a second passes, and records the most held at once: calls made one
// after the other never reach two.
class ConcurrencyGate : public OpObserver {
 public:
  explicit ConcurrencyGate(int wanted) : wanted_(wanted) {}
  void OnOp(std::string_view op, std::string_view, std::chrono::nanoseconds) override {
    if (op != "range") return;
    std::unique_lock lock(mutex_);
    ++held_;
    max_held_ = std::max(max_held_, held_);
    changed_.notify_all();
    if (!changed_.wait_for(lock, std::chrono::seconds(1),
                           [this] { return max_held_ >= wanted_; })) {
      ++timeouts_;
    }
    --held_;
  }
  int max_held() {
    std::lock_guard lock(mutex_);
    return max_held_;
  }
  // Calls released by the timeout rather than by enough calls held with them.
  int timeouts() {
    std::lock_guard lock(mutex_);
    return timeouts_;
  }

 private:
  const int wanted_;
  std::mutex mutex_;
  std::condition_variable changed_;
  int held_ = 0;
  int max_held_ = 0;
  int timeouts_ = 0;
};

TEST(RangeCursorPrefetchTest, SplitRangesAreRequestedTogetherAndReadInKeyOrder) {
  SystemClock clock;
  ConcurrencyGate gate(4);
  etcd::FakeEtcdClient etcd(clock, {.observer = &gate});
  std::vector<std::string> expected;
  std::vector<std::string> splits;
  for (int i = 0; i < 1000; ++i) {
    expected.push_back(NumberedKey("/dubbo/", i));
    etcd.store().PutDirect(expected.back(), "v");
    // Every 50th key, but 300 keys (three pages) between the last two splits.
    if (i > 0 && i % 50 == 0 && (i < 600 || i >= 900)) splits.push_back(expected.back());
  }
  const int64_t revision = etcd.store().revision();
  RangeCursor cursor(etcd, {{"/dubbo/", "/dubbo0"}}, revision, 100, splits, /*prefetch=*/4);
  std::vector<std::string> keys;
  while (true) {
    auto next = cursor.Next();
    ASSERT_TRUE(next.ok()) << next.error().ToString();
    if (!next->has_value()) break;
    keys.push_back((*next)->key);
  }
  EXPECT_EQ(keys, expected);
  EXPECT_GE(gate.max_held(), 4);  // 1 + prefetch requests at once
  EXPECT_EQ(cursor.revision(), revision);
}

// With a revision given, the data keys and the meta records are listed at once (the first two
// requests travel together even without prefetch), at that revision: later changes are not
// seen.
TEST(RangeCursorPrefetchTest, AGivenRevisionListsDataAndMetaRecordsAtOnceAtThatRevision) {
  SystemClock clock;
  ConcurrencyGate gate(2);
  etcd::FakeEtcdClient etcd(clock, {.observer = &gate});
  const core::Scope scope = core::Scope::Create({"/dubbo"}, {}).value();
  const KeyLayout layout = KeyLayout::Create("", "/zk2etcd/meta", scope).value();
  core::Snapshot tree;
  tree.entries.push_back({"/dubbo", "", 1});
  for (int i = 0; i < 10; ++i) tree.entries.push_back({NumberedKey("/dubbo/n", i), "d", 1});
  for (const core::SourceEntry& node : tree.entries) {
    etcd.store().PutDirect(layout.KeyFor(node.key), node.value);
    etcd.store().PutDirect(layout.MetaKeyFor(layout.KeyFor(node.key)), EncodeZxid(1));
  }
  const int64_t revision = etcd.store().revision();
  etcd.store().DeleteDirect(layout.KeyFor(NumberedKey("/dubbo/n", 3)));  // after the revision
  DiffOptions options;
  options.prefetch = 0;
  options.revision = revision;
  auto report = ComputeDiff(tree, scope, layout, etcd, options);
  ASSERT_TRUE(report.ok()) << report.error().ToString();
  EXPECT_EQ(report->etcd_revision, revision);
  EXPECT_EQ(report->in_sync, tree.entries.size());  // the deletion came after the revision
  EXPECT_EQ(gate.timeouts(), 0);                    // the first request waited for no other

  // Without one, the newest revision.
  etcd::FakeEtcdClient sequential(clock);
  for (const core::SourceEntry& node : tree.entries) {
    sequential.store().PutDirect(layout.KeyFor(node.key), node.value);
    sequential.store().PutDirect(layout.MetaKeyFor(layout.KeyFor(node.key)), EncodeZxid(1));
  }
  sequential.store().DeleteDirect(layout.KeyFor(NumberedKey("/dubbo/n", 3)));
  options.revision = 0;
  auto newest = ComputeDiff(tree, scope, layout, sequential, options);
  ASSERT_TRUE(newest.ok()) << newest.error().ToString();
  EXPECT_EQ(newest->etcd_revision, sequential.store().revision());
  EXPECT_EQ(newest->in_sync, tree.entries.size() - 1);
}

TEST(RangeCursorPrefetchTest, AnErrorIsReturnedAndTheCursorCanBeDestroyedWithRequestsInFlight) {
  SystemClock clock;
  etcd::FakeEtcdClient etcd(clock);
  std::vector<std::string> splits;
  for (int i = 0; i < 500; ++i) {
    etcd.store().PutDirect(NumberedKey("/dubbo/", i), "v");
    if (i > 0 && i % 10 == 0) splits.push_back(NumberedKey("/dubbo/", i));
  }
  const int64_t revision = etcd.store().revision();
  etcd.InjectFault("range", etcd::ErrorCode::kUnavailable, -1);
  RangeCursor cursor(etcd, {{"/dubbo/", "/dubbo0"}}, revision, 100, splits, /*prefetch=*/8);
  auto first = cursor.Next();
  ASSERT_FALSE(first.ok());
  EXPECT_EQ(first.error().code, etcd::ErrorCode::kUnavailable);
}

}  // namespace
}  // namespace zk2etcd::sync

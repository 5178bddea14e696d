// The zk2etcd job's diff: ComputeDiff over an EtcdSink, what a listing of a large prefix costs
// the etcd server and how its requests travel (the ComputeDiff tests of the old
// sync/differ_test.cc; its RangeCursor tests live in connectors/etcd/range_cursor_test.cc).
#include <gtest/gtest.h>

#include <chrono>
#include <condition_variable>
#include <cstdio>
#include <mutex>

#include "cli/zk2etcd_job_test.h"
#include "sync/differ.h"

namespace zk2etcd::job_test {
namespace {

std::string NumberedKey(const std::string& prefix, int i) {
  char suffix[16];
  std::snprintf(suffix, sizeof(suffix), "%06d", i);
  return prefix + suffix;
}

TEST(DifferTest, ADiffOfALargePrefixInSyncWalksEachKeyAboutOnce) {
  SystemClock clock;
  etcd::FakeEtcdClient etcd(clock);
  const core::Scope scope = core::Scope::Create({"/dubbo"}, {}).value();
  const KeyLayout layout = KeyLayout::Create("", "/zk2etcd/meta", scope).value();
  EtcdSink sink(etcd, layout);
  core::Snapshot tree;
  tree.entries.push_back({"/dubbo", "", 1});
  for (int i = 0; i < 20000; ++i) tree.entries.push_back({NumberedKey("/dubbo/n", i), "d", 1});
  for (const core::SourceEntry& node : tree.entries) {
    etcd.store().PutDirect(layout.KeyFor(node.key), node.value);
    etcd.store().PutDirect(layout.MetaKeyFor(layout.KeyFor(node.key)), EncodeZxid(1));
  }
  sync::DiffOptions options;
  options.page_size = 500;
  const int64_t before = etcd.store().keys_walked();
  auto report = sync::ComputeDiff(tree, scope, sink, options);
  ASSERT_TRUE(report.ok());
  EXPECT_EQ(report->in_sync, tree.entries.size());
  EXPECT_EQ(report->listed, 0u);
  // Data and meta records: each walked about once (twice at most), not once per page.
  EXPECT_LE(etcd.store().keys_walked() - before, static_cast<int64_t>(4 * tree.entries.size()));
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

// With a point given, the data keys and the meta records are listed at once (the first two
// requests travel together even without prefetch), at that revision: later changes are not
// seen.
TEST(RangeCursorPrefetchTest, AGivenRevisionListsDataAndMetaRecordsAtOnceAtThatRevision) {
  SystemClock clock;
  ConcurrencyGate gate(2);
  etcd::FakeEtcdClient etcd(clock, {.observer = &gate});
  const core::Scope scope = core::Scope::Create({"/dubbo"}, {}).value();
  const KeyLayout layout = KeyLayout::Create("", "/zk2etcd/meta", scope).value();
  EtcdSink sink(etcd, layout);
  core::Snapshot tree;
  tree.entries.push_back({"/dubbo", "", 1});
  for (int i = 0; i < 10; ++i) tree.entries.push_back({NumberedKey("/dubbo/n", i), "d", 1});
  for (const core::SourceEntry& node : tree.entries) {
    etcd.store().PutDirect(layout.KeyFor(node.key), node.value);
    etcd.store().PutDirect(layout.MetaKeyFor(layout.KeyFor(node.key)), EncodeZxid(1));
  }
  const int64_t revision = etcd.store().revision();
  etcd.store().DeleteDirect(layout.KeyFor(NumberedKey("/dubbo/n", 3)));  // after the revision
  sync::DiffOptions options;
  options.prefetch = 0;
  options.point = revision;
  auto report = sync::ComputeDiff(tree, scope, sink, options);
  ASSERT_TRUE(report.ok()) << report.error().ToString();
  EXPECT_EQ(report->sink_point, revision);
  EXPECT_EQ(report->in_sync, tree.entries.size());  // the deletion came after the revision
  EXPECT_EQ(gate.timeouts(), 0);                    // the first request waited for no other

  // Without one, the newest revision.
  etcd::FakeEtcdClient sequential(clock);
  EtcdSink sequential_sink(sequential, layout);
  for (const core::SourceEntry& node : tree.entries) {
    sequential.store().PutDirect(layout.KeyFor(node.key), node.value);
    sequential.store().PutDirect(layout.MetaKeyFor(layout.KeyFor(node.key)), EncodeZxid(1));
  }
  sequential.store().DeleteDirect(layout.KeyFor(NumberedKey("/dubbo/n", 3)));
  options.point = 0;
  auto newest = sync::ComputeDiff(tree, scope, sequential_sink, options);
  ASSERT_TRUE(newest.ok()) << newest.error().ToString();
  EXPECT_EQ(newest->sink_point, sequential.store().revision());
  EXPECT_EQ(newest->in_sync, tree.entries.size() - 1);
}

}  // namespace
}  // namespace zk2etcd::job_test

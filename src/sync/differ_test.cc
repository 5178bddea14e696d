// ComputeDiff and Classify against an in-memory sink (core/testing): no ZooKeeper, no etcd.
#include "sync/differ.h"

#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include <algorithm>
#include <string>
#include <utility>
#include <vector>

#include "core/testing/in_memory_sink.h"

namespace zk2etcd::sync {
namespace {

using Kind = Difference::Kind;
using ::testing::ElementsAre;

core::Scope TestScope() { return core::Scope::Create({"/dubbo"}, {"/dubbo/config"}).value(); }

// A snapshot of the given (key, value) pairs, sorted, each at version 10 + its index.
core::Snapshot MakeSnapshot(std::vector<std::pair<std::string, std::string>> entries) {
  std::sort(entries.begin(), entries.end());
  core::Snapshot snapshot;
  int64_t version = 10;
  for (auto& [key, value] : entries) snapshot.entries.push_back({key, value, version++});
  snapshot.point = version;
  return snapshot;
}

std::vector<std::pair<std::string, Kind>> KeysAndKinds(const std::vector<Difference>& list) {
  std::vector<std::pair<std::string, Kind>> result;
  for (const Difference& difference : list) result.emplace_back(difference.path, difference.kind);
  return result;
}

TEST(ClassifyTest, Table) {
  const std::string a = "a";
  const std::string a2 = "a";
  const std::string b = "b";
  // Both present.
  EXPECT_EQ(Classify(&a, &a2, true), std::nullopt);
  EXPECT_EQ(Classify(&a, &a2, false), Kind::kUnclaimed);
  EXPECT_EQ(Classify(&a, &b, true), Kind::kChanged);
  EXPECT_EQ(Classify(&a, &b, false), Kind::kForeign);
  // Source only.
  EXPECT_EQ(Classify(&a, nullptr, true), Kind::kMissing);
  EXPECT_EQ(Classify(&a, nullptr, false), Kind::kMissing);
  // Sink only.
  EXPECT_EQ(Classify(nullptr, &b, true), Kind::kExtra);
  EXPECT_EQ(Classify(nullptr, &b, false), Kind::kForeign);
  // Neither: a leftover record, or nothing at all.
  EXPECT_EQ(Classify(nullptr, nullptr, true), Kind::kOrphanMeta);
  EXPECT_EQ(Classify(nullptr, nullptr, false), std::nullopt);
  // Empty values are values.
  const std::string empty;
  EXPECT_EQ(Classify(&empty, &a, true), Kind::kChanged);
  EXPECT_EQ(Classify(&empty, nullptr, true), Kind::kMissing);
}

TEST(DifferenceKindNameTest, NamesEveryKind) {
  EXPECT_EQ(DifferenceKindName(Kind::kMissing), "missing");
  EXPECT_EQ(DifferenceKindName(Kind::kChanged), "changed");
  EXPECT_EQ(DifferenceKindName(Kind::kExtra), "extra");
  EXPECT_EQ(DifferenceKindName(Kind::kForeign), "foreign");
  EXPECT_EQ(DifferenceKindName(Kind::kConflict), "conflict");
  EXPECT_EQ(DifferenceKindName(Kind::kOrphanMeta), "orphan_meta");
  EXPECT_EQ(DifferenceKindName(Kind::kUnclaimed), "unclaimed");
  EXPECT_EQ(kDifferenceKindCount, 7u);
}

class DifferTest : public ::testing::Test {
 protected:
  core::Scope scope_ = TestScope();
  core::memory::InMemorySink sink_;
};

TEST_F(DifferTest, ReportsEveryKindInKeyOrder) {
  const core::Snapshot snapshot = MakeSnapshot({{"/dubbo/a", "1"},
                                                {"/dubbo/b", "2"},
                                                {"/dubbo/d", "4"},
                                                {"/dubbo/e", "5"},
                                                {"/dubbo/h", "8"}});
  // /dubbo/a: missing.
  sink_.PutOwned("/dubbo/b", "old", 3);    // changed
  sink_.PutOwned("/dubbo/c", "gone", 4);   // extra
  sink_.PutForeign("/dubbo/d", "theirs");  // foreign, differs
  sink_.PutForeign("/dubbo/e", "5");       // unclaimed: equal, no record
  sink_.PutForeign("/dubbo/f", "theirs");  // foreign, absent from the source
  sink_.PutRecord("/dubbo/g", 7);          // orphan record
  sink_.PutOwned("/dubbo/h", "8", 14);     // in sync

  auto report = ComputeDiff(snapshot, scope_, sink_);
  ASSERT_TRUE(report.ok()) << report.error().message;
  EXPECT_THAT(
      KeysAndKinds(report->differences),
      ElementsAre(std::pair{"/dubbo/a", Kind::kMissing}, std::pair{"/dubbo/b", Kind::kChanged},
                  std::pair{"/dubbo/c", Kind::kExtra}, std::pair{"/dubbo/d", Kind::kForeign},
                  std::pair{"/dubbo/f", Kind::kForeign}, std::pair{"/dubbo/g", Kind::kOrphanMeta}));
  EXPECT_EQ(report->listed, 6u);
  EXPECT_EQ(report->source_entries, 5u);
  EXPECT_EQ(report->sink_entries, 6u);  // b, c, d, e, f, h hold values
  EXPECT_EQ(report->in_sync, 2u);       // e (unclaimed) and h
  EXPECT_EQ(report->unclaimed, 1u);
  EXPECT_EQ(report->Count(Kind::kForeign), 2u);

  const Difference& missing = report->differences[0];
  EXPECT_EQ(missing.key, "/sink/dubbo/a");
  ASSERT_TRUE(missing.entry_index.has_value());
  EXPECT_EQ(snapshot.entries[*missing.entry_index].key, "/dubbo/a");
  EXPECT_EQ(missing.source_bytes, 1u);
  EXPECT_FALSE(missing.sink_value.has_value());
  EXPECT_FALSE(missing.owner_version.has_value());

  const Difference& changed = report->differences[1];
  EXPECT_EQ(changed.key, "/sink/dubbo/b");
  EXPECT_EQ(changed.sink_value, "old");
  EXPECT_EQ(changed.sink_version, sink_.Get("/dubbo/b")->version);
  EXPECT_EQ(changed.owner_version, 3);
  EXPECT_EQ(changed.record_version, sink_.Get("/dubbo/b")->owner->record_version);

  const Difference& extra = report->differences[2];
  EXPECT_FALSE(extra.entry_index.has_value());
  EXPECT_EQ(extra.sink_value, "gone");
  EXPECT_EQ(extra.owner_version, 4);

  const Difference& foreign = report->differences[3];
  EXPECT_TRUE(foreign.entry_index.has_value());
  EXPECT_EQ(foreign.sink_value, "theirs");
  EXPECT_FALSE(foreign.owner_version.has_value());

  const Difference& orphan = report->differences[5];
  EXPECT_FALSE(orphan.sink_value.has_value());
  EXPECT_EQ(orphan.owner_version, 7);
}

TEST_F(DifferTest, UnclaimedKeysAreListedOnlyWhenAskedFor) {
  const core::Snapshot snapshot = MakeSnapshot({{"/dubbo/e", "5"}, {"/dubbo/h", "8"}});
  sink_.PutForeign("/dubbo/e", "5");
  sink_.PutOwned("/dubbo/h", "8", 11);

  auto counted = ComputeDiff(snapshot, scope_, sink_);
  ASSERT_TRUE(counted.ok());
  EXPECT_TRUE(counted->differences.empty());
  EXPECT_EQ(counted->unclaimed, 1u);
  EXPECT_EQ(counted->in_sync, 2u);

  DiffOptions options;
  options.list_unclaimed = true;
  auto listed = ComputeDiff(snapshot, scope_, sink_, options);
  ASSERT_TRUE(listed.ok());
  EXPECT_THAT(KeysAndKinds(listed->differences),
              ElementsAre(std::pair{"/dubbo/e", Kind::kUnclaimed}));
  EXPECT_EQ(listed->differences[0].sink_value, "5");
  EXPECT_EQ(listed->unclaimed, 1u);
  EXPECT_EQ(listed->in_sync, 2u);
}

TEST_F(DifferTest, ExcludedAndOutOfScopeKeysAreNeverReported) {
  const core::Snapshot snapshot = MakeSnapshot({{"/dubbo/a", "1"}});
  sink_.PutOwned("/dubbo/a", "1", 10);
  sink_.PutOwned("/dubbo/config/x", "owned below an exclude", 3);
  sink_.PutForeign("/dubbo/config/y", "foreign below an exclude");
  sink_.PutRecord("/dubbo/config/z", 5);
  sink_.PutOwned("/dubbo/config", "the exclude itself", 3);
  sink_.PutOwned("/dubbox/a", "next to the prefix", 3);
  sink_.PutOwned("/other/a", "outside", 3);

  DiffOptions options;
  options.list_unclaimed = true;
  auto report = ComputeDiff(snapshot, scope_, sink_, options);
  ASSERT_TRUE(report.ok());
  EXPECT_TRUE(report->differences.empty());
  EXPECT_EQ(report->listed, 0u);
  EXPECT_EQ(report->sink_entries, 1u);
  EXPECT_EQ(report->source_entries, 1u);
  EXPECT_EQ(report->in_sync, 1u);
}

TEST_F(DifferTest, EveryPrefixIsCompared) {
  const core::Scope scope = core::Scope::Create({"/b", "/a"}, {}).value();
  const core::Snapshot snapshot = MakeSnapshot({{"/a/1", "x"}, {"/b/1", "y"}});
  sink_.PutOwned("/b/2", "z", 1);
  auto report = ComputeDiff(snapshot, scope, sink_);
  ASSERT_TRUE(report.ok());
  EXPECT_THAT(KeysAndKinds(report->differences),
              ElementsAre(std::pair{"/a/1", Kind::kMissing}, std::pair{"/b/1", Kind::kMissing},
                          std::pair{"/b/2", Kind::kExtra}));
}

TEST_F(DifferTest, SmallPagesGiveTheSameResult) {
  std::vector<std::pair<std::string, std::string>> entries;
  for (int i = 0; i < 50; ++i) {
    const std::string key = "/dubbo/k" + std::to_string(100 + i);
    entries.emplace_back(key, "v");
    if (i % 2 == 0) sink_.PutOwned(key, "v", 1);
    if (i % 5 == 0) sink_.PutOwned(key + "x", "extra", 1);
  }
  DiffOptions options;
  options.page_size = 3;
  options.prefetch = 1;
  auto report = ComputeDiff(MakeSnapshot(entries), scope_, sink_, options);
  ASSERT_TRUE(report.ok());
  EXPECT_EQ(report->Count(Kind::kMissing), 25u);
  EXPECT_EQ(report->Count(Kind::kExtra), 10u);
  EXPECT_EQ(report->in_sync, 25u);
  EXPECT_TRUE(
      std::is_sorted(report->differences.begin(), report->differences.end(),
                     [](const Difference& x, const Difference& y) { return x.path < y.path; }));
}

TEST_F(DifferTest, HandsDifferencesOverInChunks) {
  std::vector<std::pair<std::string, std::string>> entries;
  for (int i = 0; i < 10; ++i) entries.emplace_back("/dubbo/k" + std::to_string(i), "v");
  std::vector<size_t> sizes;
  std::vector<std::string> seen;
  DiffOptions options;
  options.chunk = 3;
  options.on_differences = [&](std::vector<Difference>& chunk) {
    sizes.push_back(chunk.size());
    for (const Difference& difference : chunk) seen.push_back(difference.path);
    return true;
  };
  auto report = ComputeDiff(MakeSnapshot(entries), scope_, sink_, options);
  ASSERT_TRUE(report.ok());
  EXPECT_THAT(sizes, ElementsAre(3u, 3u, 3u, 1u));
  EXPECT_EQ(seen.size(), 10u);
  EXPECT_TRUE(std::is_sorted(seen.begin(), seen.end()));
  EXPECT_TRUE(report->differences.empty());
  EXPECT_EQ(report->listed, 10u);
}

TEST_F(DifferTest, AChunkCallbackReturningFalseStopsTheMerge) {
  std::vector<std::pair<std::string, std::string>> entries;
  for (int i = 0; i < 10; ++i) entries.emplace_back("/dubbo/k" + std::to_string(i), "v");
  int calls = 0;
  DiffOptions options;
  options.chunk = 4;
  options.on_differences = [&](std::vector<Difference>& chunk) {
    ++calls;
    EXPECT_EQ(chunk.size(), 4u);
    return false;
  };
  auto report = ComputeDiff(MakeSnapshot(entries), scope_, sink_, options);
  ASSERT_TRUE(report.ok());
  EXPECT_EQ(calls, 1);
  EXPECT_EQ(report->listed, 4u);
  EXPECT_LT(report->source_entries, 10u);
}

TEST_F(DifferTest, ReportsTheSinkPointItListedAt) {
  const core::Snapshot snapshot = MakeSnapshot({{"/dubbo/a", "1"}});
  sink_.PutOwned("/dubbo/a", "1", 10);
  auto now = ComputeDiff(snapshot, scope_, sink_);
  ASSERT_TRUE(now.ok());
  EXPECT_EQ(now->sink_point, sink_.point());
  EXPECT_TRUE(now->differences.empty());

  // A listing at an older point does not see what changed after it.
  const int64_t before = sink_.point();
  sink_.PutOwned("/dubbo/a", "changed later", 20);
  DiffOptions options;
  options.point = before;
  auto old = ComputeDiff(snapshot, scope_, sink_, options);
  ASSERT_TRUE(old.ok());
  EXPECT_EQ(old->sink_point, before);
  EXPECT_TRUE(old->differences.empty());

  auto newest = ComputeDiff(snapshot, scope_, sink_);
  ASSERT_TRUE(newest.ok());
  EXPECT_EQ(newest->sink_point, sink_.point());
  EXPECT_THAT(KeysAndKinds(newest->differences),
              ElementsAre(std::pair{"/dubbo/a", Kind::kChanged}));
}

TEST_F(DifferTest, SinkErrorsAreReturned) {
  const core::Snapshot snapshot = MakeSnapshot({{"/dubbo/a", "1"}});
  sink_.FailNextReads(1, core::SinkError::Code::kUnavailable);
  auto failed = ComputeDiff(snapshot, scope_, sink_);
  ASSERT_FALSE(failed.ok());
  EXPECT_EQ(failed.error().code, core::SinkError::Code::kUnavailable);

  sink_.PutOwned("/dubbo/a", "1", 10);
  const int64_t old = sink_.point() - 1;
  sink_.PutOwned("/dubbo/b", "2", 10);
  sink_.Compact(sink_.point());
  DiffOptions options;
  options.point = old;
  auto compacted = ComputeDiff(snapshot, scope_, sink_, options);
  ASSERT_FALSE(compacted.ok());
  EXPECT_EQ(compacted.error().code, core::SinkError::Code::kCompacted);
}

}  // namespace
}  // namespace zk2etcd::sync

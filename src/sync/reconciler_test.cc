// Reconciler against an in-memory source and sink (core/testing): first and repeated syncs,
// repairs, foreign keys, report-only runs, adoption policies, the external ownership store, and
// failures. No ZooKeeper, no etcd.
#include "sync/reconciler.h"

#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include <atomic>
#include <future>
#include <map>
#include <memory>
#include <mutex>
#include <set>
#include <string>

#include "common/clock.h"
#include "common/wait_for_testing.h"
#include "core/testing/in_memory_sink.h"
#include "core/testing/in_memory_source.h"
#include "ops/log.h"
#include "ownership/fake_ownership_store.h"

namespace zk2etcd::sync {
namespace {

using Kind = Difference::Kind;
using std::chrono::seconds;
using ::testing::ElementsAre;
using ::testing::UnorderedElementsAre;

class NullListener : public core::SourceListener {
 public:
  void OnChange(const std::string&) override {}
  void OnSourceEvent(const core::SourceEvent&) override {}
};

class ReconcilerTest : public ::testing::Test {
 protected:
  ReconcilerTest() {
    writer_options_.initial_backoff = std::chrono::milliseconds(5);
    writer_options_.max_backoff = std::chrono::milliseconds(50);
    writer_ = std::make_unique<FencedWriter>(sink_, writer_options_, clock_);
    EXPECT_TRUE(source_.Open(listener_).ok());
  }
  ~ReconcilerTest() override {
    writer_->Stop();
    source_.Close();
  }

  Result<ReconcileReport, ReconcileError> TryRun(ReconcileOptions options,
                                                 ownership::OwnershipStore* ownership = nullptr,
                                                 bool with_writer = true) {
    Reconciler reconciler(scope_, sink_, with_writer ? writer_.get() : nullptr, ownership, logger_,
                          clock_);
    return reconciler.Run(source_, options);
  }

  ReconcileReport Run(ReconcileOptions options = {},
                      ownership::OwnershipStore* ownership = nullptr) {
    auto report = TryRun(std::move(options), ownership);
    EXPECT_TRUE(report.ok()) << report.error().message;
    return report.ok() ? std::move(report).value() : ReconcileReport{};
  }

  ReconcileReport RunWith(AdoptPolicy adopt, ownership::OwnershipStore* ownership = nullptr) {
    ReconcileOptions options;
    options.adopt = adopt;
    return Run(options, ownership);
  }

  // The source's in-scope entries, as the sink should hold them.
  std::map<std::string, std::string> Expected() const {
    std::map<std::string, std::string> expected;
    for (const std::string& key : source_keys_) {
      if (auto entry = source_.Get(key); entry && scope_.Contains(key)) {
        expected[key] = entry->value;
      }
    }
    return expected;
  }

  int64_t SourcePut(const std::string& key, const std::string& value) {
    source_keys_.insert(key);
    return source_.Put(key, value);
  }

  // Ten keys in scope, one excluded, one outside.
  void FillSource() {
    for (int i = 0; i < 10; ++i) SourcePut("/dubbo/k" + std::to_string(i), "v" + std::to_string(i));
    SourcePut("/dubbo/config/excluded", "x");
    SourcePut("/elsewhere/a", "x");
  }

  SystemClock clock_;
  std::shared_ptr<ops::MemoryLogSink> log_sink_ = std::make_shared<ops::MemoryLogSink>();
  ops::Logger logger_{log_sink_, ops::LogFormat::kJson, ops::LogLevel::kDebug, clock_};
  core::Scope scope_ = core::Scope::Create({"/dubbo"}, {"/dubbo/config"}).value();
  core::memory::InMemorySink sink_;
  core::memory::InMemorySource source_{scope_};
  NullListener listener_;
  std::set<std::string> source_keys_;
  FencedWriterOptions writer_options_;
  std::unique_ptr<FencedWriter> writer_;
};

TEST_F(ReconcilerTest, AFirstSyncWritesEveryInScopeEntryOnce) {
  FillSource();
  const ReconcileReport report = Run();
  EXPECT_EQ(report.source_entries, 10u);
  EXPECT_EQ(report.sink_entries, 0u);
  EXPECT_EQ(report.Count(Kind::kMissing), 10u);
  EXPECT_EQ(report.VisibleDifferences(), 10u);
  EXPECT_EQ(report.fixed_puts, 10u);
  EXPECT_EQ(report.fixed_creates, 10u);
  EXPECT_EQ(report.fixed_deletes, 0u);
  EXPECT_EQ(report.failed, 0u);
  EXPECT_EQ(report.first_pass_differences, 10u);
  EXPECT_EQ(report.differences.size(), 10u);
  EXPECT_EQ(sink_.writes_applied(), 10u);
  EXPECT_EQ(sink_.Values(), Expected());
  for (const auto& [key, value] : Expected()) {
    auto entry = sink_.Get(key);
    ASSERT_TRUE(entry && entry->owner) << key;
    EXPECT_EQ(entry->owner->source_version, source_.Get(key)->version) << key;
  }
  EXPECT_FALSE(sink_.Get("/dubbo/config/excluded").has_value());
  EXPECT_FALSE(sink_.Get("/elsewhere/a").has_value());
}

TEST_F(ReconcilerTest, ASecondRunWritesNothing) {
  FillSource();
  Run();
  const size_t batches = sink_.batches_submitted();
  const int64_t point = sink_.point();
  const ReconcileReport report = Run();
  EXPECT_EQ(report.in_sync, 10u);
  EXPECT_EQ(report.VisibleDifferences(), 0u);
  EXPECT_EQ(report.first_pass_differences, 0u);
  EXPECT_EQ(report.fixed_puts + report.fixed_deletes, 0u);
  EXPECT_EQ(sink_.batches_submitted(), batches);
  EXPECT_EQ(sink_.point(), point);
}

TEST_F(ReconcilerTest, RepairsChangedAndMissingKeysAndRemovesExtrasItOwns) {
  FillSource();
  Run();
  SourcePut("/dubbo/k0", "changed in the source");
  ASSERT_TRUE(source_.Delete("/dubbo/k1"));
  sink_.DeleteValue("/dubbo/k2");  // the record stays
  sink_.PutOwned("/dubbo/k3", "changed in the sink", source_.Get("/dubbo/k3")->version);
  sink_.PutOwned("/dubbo/leftover", "ours", 1);  // extra, ours
  sink_.PutRecord("/dubbo/orphan", 1);           // a record alone
  const ReconcileReport report = Run();
  EXPECT_EQ(report.Count(Kind::kChanged), 2u);
  EXPECT_EQ(report.Count(Kind::kMissing), 1u);
  EXPECT_EQ(report.Count(Kind::kExtra), 2u);
  EXPECT_EQ(report.Count(Kind::kOrphanMeta), 1u);
  EXPECT_EQ(report.fixed_puts, 3u);
  EXPECT_EQ(report.fixed_creates, 1u);  // k2; k0 and k3 were there
  EXPECT_EQ(report.fixed_deletes, 3u);  // k1, the leftover, and the orphan record
  EXPECT_EQ(report.failed, 0u);
  EXPECT_EQ(sink_.Values(), Expected());
  EXPECT_FALSE(sink_.Get("/dubbo/orphan").has_value());
  EXPECT_FALSE(sink_.Get("/dubbo/leftover").has_value());
  EXPECT_EQ(Run().VisibleDifferences(), 0u);
}

// Beside a change stream (ReconcileOptions::may_have_changed), a candidate the walk holds and
// the stream announced nothing of is repaired from the walk: no second read. One absent from the
// walk is read again (its delete needs the point where the absence was seen).
TEST_F(ReconcilerTest, CandidatesTheStreamAnnouncedNothingOfAreRepairedWithoutASecondRead) {
  FillSource();
  sink_.PutOwned("/dubbo/leftover", "ours", 1);
  ReconcileOptions options;
  options.may_have_changed = [](const std::string&) { return false; };
  const size_t reads_before = source_.reads();
  const ReconcileReport report = Run(options);
  EXPECT_EQ(report.reread, 1u);
  EXPECT_EQ(source_.reads() - reads_before, 1u);
  EXPECT_EQ(report.fixed_puts, 10u);
  EXPECT_EQ(report.fixed_deletes, 1u);
  EXPECT_EQ(sink_.Values(), Expected());
  for (const auto& [key, value] : Expected()) {
    EXPECT_EQ(sink_.Get(key)->owner->source_version, source_.Get(key)->version) << key;
  }
  // Without it (diff --fix: no stream beside), every candidate is read again.
  SourcePut("/dubbo/k0", "changed");
  SourcePut("/dubbo/k1", "changed");
  EXPECT_EQ(Run().reread, 2u);
}

// Both keys change after the walk read them; only the one the predicate names is read again, so
// only it is repaired with its newest value. The other is repaired from the walk, at the walk's
// version: its change is the incremental path's, and its newer version wins over the repair.
TEST_F(ReconcilerTest, AKeyThatMayHaveChangedSinceTheWalkIsReadAgain) {
  FillSource();
  source_.SetSnapshotHook([&] {
    SourcePut("/dubbo/k0", "newer");
    SourcePut("/dubbo/k1", "newer");
  });
  const int64_t walked_k1 = source_.Get("/dubbo/k1")->version;
  ReconcileOptions options;
  options.may_have_changed = [](const std::string& path) { return path == "/dubbo/k0"; };
  const ReconcileReport report = Run(options);
  source_.SetSnapshotHook({});
  EXPECT_EQ(report.reread, 1u);
  EXPECT_EQ(sink_.Get("/dubbo/k0")->value, "newer");
  EXPECT_EQ(sink_.Get("/dubbo/k0")->owner->source_version, source_.Get("/dubbo/k0")->version);
  EXPECT_EQ(sink_.Get("/dubbo/k1")->value, "v1");
  EXPECT_EQ(sink_.Get("/dubbo/k1")->owner->source_version, walked_k1);
}

// A sink that fits in a page is listed while the snapshot is read, once; a larger one (page of
// 4 here) is listed as usual after a page-short early try, and not tried early again.
TEST_F(ReconcilerTest, ASmallSinkIsListedOnceWhileTheSnapshotIsRead) {
  FillSource();
  size_t listings = sink_.listings_read();
  const ReconcileReport first = Run();
  EXPECT_EQ(sink_.listings_read() - listings, 1u);
  EXPECT_EQ(sink_.points_read(), 0u);  // the early listing gave the point
  EXPECT_EQ(first.fixed_puts, 10u);
  sink_.PutOwned("/dubbo/leftover", "ours", 1);  // found through the early listing
  listings = sink_.listings_read();
  const ReconcileReport second = Run();
  EXPECT_EQ(sink_.listings_read() - listings, 1u);
  EXPECT_EQ(second.Count(Kind::kExtra), 1u);
  EXPECT_EQ(second.fixed_deletes, 1u);
  EXPECT_EQ(sink_.Values(), Expected());

  SourcePut("/dubbo/k0", "changed");
  ReconcileOptions paged;
  paged.sink_page_size = 4;
  Reconciler reconciler(scope_, sink_, writer_.get(), nullptr, logger_, clock_);
  listings = sink_.listings_read();
  auto third = reconciler.Run(source_, paged);
  ASSERT_TRUE(third.ok()) << third.error().message;
  EXPECT_EQ(sink_.listings_read() - listings, 2u);  // the early try, then the listing
  EXPECT_EQ(third->sink_entries, 10u);
  EXPECT_EQ(third->Count(Kind::kChanged), 1u);
  EXPECT_EQ(sink_.Values(), Expected());
  listings = sink_.listings_read();
  ASSERT_TRUE(reconciler.Run(source_, paged).ok());
  EXPECT_EQ(sink_.listings_read() - listings, 1u);  // known to be larger than a page
}

// An early listing that fails is no failure: the merge lists as it would have without it.
TEST_F(ReconcilerTest, AFailedEarlyListingIsListedAgainAfterTheSnapshot) {
  FillSource();
  sink_.FailNextReads(1);  // the early listing's
  const size_t listings = sink_.listings_read();
  const ReconcileReport report = Run();
  EXPECT_EQ(sink_.listings_read() - listings, 2u);
  EXPECT_EQ(report.fixed_puts, 10u);
  EXPECT_EQ(sink_.Values(), Expected());
}

// A sink whose listing reads everything at once (ZooKeeper) is never listed early: only its
// point is read while the snapshot is.
TEST_F(ReconcilerTest, ASinkThatDoesNotListByPageIsListedOnlyAfterTheSnapshot) {
  core::memory::InMemorySink::Options options;
  options.lists_by_page = false;
  core::memory::InMemorySink whole(options);
  FencedWriter writer(whole, writer_options_, clock_);
  Reconciler reconciler(scope_, whole, &writer, nullptr, logger_, clock_);
  FillSource();
  auto report = reconciler.Run(source_, {});
  ASSERT_TRUE(report.ok()) << report.error().message;
  EXPECT_EQ(whole.points_read(), 1u);    // while the snapshot was read
  EXPECT_EQ(whole.listings_read(), 1u);  // after it
  EXPECT_EQ(report->fixed_puts, 10u);
  EXPECT_EQ(whole.Values(), Expected());
  writer.Stop();
}

TEST_F(ReconcilerTest, EveryRepairIsReportedWithItsOutcome) {
  FillSource();
  Run();
  SourcePut("/dubbo/k0", "changed in the source");
  ASSERT_TRUE(source_.Delete("/dubbo/k1"));
  std::mutex mutex;
  std::map<std::string, std::pair<core::SinkWrite::Type, bool>> repairs;
  ReconcileOptions options;
  options.on_repair = [&](const RepairResult& repair) {
    std::lock_guard lock(mutex);
    repairs[repair.key] = {repair.type,
                           repair.result.ok() && *repair.result == core::WriteOutcome::kApplied};
  };
  const ReconcileReport report = Run(options);
  EXPECT_EQ(report.fixed_puts + report.fixed_deletes, 2u);
  std::lock_guard lock(mutex);
  EXPECT_EQ(repairs.size(), 2u);
  EXPECT_EQ(repairs[sink_.SinkKeyFor("/dubbo/k0")], std::pair(core::SinkWrite::Type::kPut, true));
  EXPECT_EQ(repairs[sink_.SinkKeyFor("/dubbo/k1")],
            std::pair(core::SinkWrite::Type::kDelete, true));
}

TEST_F(ReconcilerTest, ForeignKeysSurviveAndAreReported) {
  FillSource();
  Run();
  sink_.PutForeign("/dubbo/theirs", "another tool's");  // absent from the source
  sink_.PutForeign("/dubbo/k9x", "x");
  const ReconcileReport report = Run();
  EXPECT_EQ(report.Count(Kind::kForeign), 2u);
  EXPECT_THAT(report.foreign_samples, ElementsAre("/sink/dubbo/k9x", "/sink/dubbo/theirs"));
  EXPECT_EQ(report.fixed_deletes, 0u);
  EXPECT_EQ(sink_.Get("/dubbo/theirs")->value, "another tool's");
  EXPECT_EQ(sink_.Get("/dubbo/k9x")->value, "x");
  EXPECT_EQ(report.WouldAdopt(AdoptPolicy::kAll), 2u);
}

TEST_F(ReconcilerTest, AReportOnlyRunChangesNothingAndReports) {
  FillSource();
  sink_.PutOwned("/dubbo/k0", "old", 1);
  sink_.PutOwned("/dubbo/extra", "ours", 1);
  const int64_t point = sink_.point();
  ReconcileOptions options;
  options.fix = false;
  auto report = TryRun(options, nullptr, /*with_writer=*/false);
  ASSERT_TRUE(report.ok()) << report.error().message;
  EXPECT_EQ(report->Count(Kind::kMissing), 9u);
  EXPECT_EQ(report->Count(Kind::kChanged), 1u);
  EXPECT_EQ(report->Count(Kind::kExtra), 1u);
  EXPECT_EQ(report->fixed_puts + report->fixed_deletes, 0u);
  ASSERT_EQ(report->differences.size(), 11u);
  const ConfirmedDifference& changed = report->differences[1];
  EXPECT_EQ(changed.path, "/dubbo/k0");
  EXPECT_EQ(changed.key, "/sink/dubbo/k0");
  EXPECT_EQ(changed.kind, Kind::kChanged);
  EXPECT_TRUE(changed.source.exists);
  EXPECT_EQ(changed.source.value, "v0");
  EXPECT_TRUE(changed.sink_exists);
  EXPECT_EQ(changed.owner_version, 1);
  EXPECT_EQ(sink_.point(), point);
  EXPECT_EQ(sink_.batches_submitted(), 0u);

  // fix=false with a writer changes nothing either.
  auto with_writer = TryRun(options);
  ASSERT_TRUE(with_writer.ok());
  EXPECT_EQ(with_writer->VisibleDifferences(), 11u);
  EXPECT_EQ(sink_.point(), point);

  // Repair() applies a kept report.
  Reconciler reconciler(scope_, sink_, writer_.get(), nullptr, logger_, clock_);
  ReconcileReport kept = *report;
  reconciler.Repair(kept);
  EXPECT_EQ(kept.fixed_puts, 10u);
  EXPECT_EQ(kept.fixed_deletes, 1u);
  EXPECT_EQ(sink_.Values(), Expected());
}

TEST_F(ReconcilerTest, WithoutKeepDifferencesTheReportStillCounts) {
  FillSource();
  sink_.PutForeign("/dubbo/theirs", "x");
  ReconcileOptions options;
  options.keep_differences = false;
  const ReconcileReport report = Run(options);
  EXPECT_TRUE(report.differences.empty());
  EXPECT_EQ(report.Count(Kind::kMissing), 10u);
  EXPECT_EQ(report.Count(Kind::kForeign), 1u);
  EXPECT_THAT(report.foreign_samples, ElementsAre("/sink/dubbo/theirs"));
  EXPECT_EQ(report.fixed_puts, 10u);
  EXPECT_EQ(sink_.Size(), 11u);
}

// Three unowned keys: one equal to the source, one that differs, one the source lacks.
class AdoptionTest : public ReconcilerTest {
 protected:
  void SetUp() override {
    SourcePut("/dubbo/equal", "same");
    SourcePut("/dubbo/differs", "source's");
    SourcePut("/dubbo/mine", "m");
    sink_.PutForeign("/dubbo/equal", "same");
    sink_.PutForeign("/dubbo/differs", "theirs");
    sink_.PutForeign("/dubbo/absent", "theirs");
    equal_version_ = sink_.Get("/dubbo/equal")->version;
  }
  // What each policy would adopt when the source changes the equal key after the snapshot, so
  // that the second read sees it differ: it still counts once (in `unclaimed`).
  void ExpectAKeyChangedAfterTheSnapshotCountsOnce(AdoptPolicy policy) {
    source_.SetSnapshotHook([this] { SourcePut("/dubbo/equal", "changed after the snapshot"); });
    const ReconcileReport report = RunWith(policy);
    source_.SetSnapshotHook(nullptr);
    EXPECT_EQ(report.unclaimed, 1u);
    EXPECT_EQ(report.WouldAdopt(AdoptPolicy::kMatching), 1u);
    EXPECT_EQ(report.WouldAdopt(AdoptPolicy::kAll), 3u);
  }
  int64_t equal_version_ = 0;
};

TEST_F(AdoptionTest, AKeyChangedAfterTheSnapshotCountsOnceWithoutAPolicy) {
  ExpectAKeyChangedAfterTheSnapshotCountsOnce(AdoptPolicy::kNone);
}
TEST_F(AdoptionTest, AKeyChangedAfterTheSnapshotCountsOnceWhenMatching) {
  ExpectAKeyChangedAfterTheSnapshotCountsOnce(AdoptPolicy::kMatching);
  // A faithful copy that fell behind: adopted and brought up to date.
  EXPECT_EQ(sink_.Get("/dubbo/equal")->value, "changed after the snapshot");
}
TEST_F(AdoptionTest, AKeyChangedAfterTheSnapshotCountsOnceWithAll) {
  ExpectAKeyChangedAfterTheSnapshotCountsOnce(AdoptPolicy::kAll);
}

TEST_F(AdoptionTest, NoneLeavesEveryUnownedKeyAlone) {
  const ReconcileReport report = RunWith(AdoptPolicy::kNone);
  EXPECT_EQ(report.unclaimed, 1u);
  EXPECT_EQ(report.adopted, 0u);
  EXPECT_EQ(report.Count(Kind::kForeign), 2u);
  EXPECT_EQ(report.Count(Kind::kConflict), 0u);
  EXPECT_EQ(report.WouldAdopt(AdoptPolicy::kMatching), 1u);
  EXPECT_EQ(report.WouldAdopt(AdoptPolicy::kAll), 3u);
  EXPECT_FALSE(sink_.Get("/dubbo/equal")->owner.has_value());
  EXPECT_EQ(sink_.Get("/dubbo/differs")->value, "theirs");
  EXPECT_EQ(sink_.Get("/dubbo/absent")->value, "theirs");
  EXPECT_EQ(sink_.Get("/dubbo/mine")->value, "m");
}

TEST_F(AdoptionTest, MatchingAdoptsEqualKeysAndLeavesConflictsAlone) {
  const ReconcileReport report = RunWith(AdoptPolicy::kMatching);
  EXPECT_EQ(report.adopted, 1u);
  EXPECT_EQ(report.Count(Kind::kConflict), 1u);
  EXPECT_THAT(report.conflict_samples, ElementsAre("/sink/dubbo/differs"));
  EXPECT_EQ(report.Count(Kind::kForeign), 1u);
  EXPECT_THAT(report.foreign_samples, ElementsAre("/sink/dubbo/absent"));
  EXPECT_EQ(report.fixed_puts, 1u);  // /dubbo/mine
  EXPECT_EQ(report.WouldAdopt(AdoptPolicy::kMatching), 1u);
  EXPECT_EQ(report.WouldAdopt(AdoptPolicy::kAll), 3u);
  // Only the record was written: the value and its version are as they were.
  auto equal = sink_.Get("/dubbo/equal");
  ASSERT_TRUE(equal->owner.has_value());
  EXPECT_EQ(equal->owner->source_version, source_.Get("/dubbo/equal")->version);
  EXPECT_EQ(equal->value, "same");
  EXPECT_EQ(equal->version, equal_version_);
  EXPECT_EQ(sink_.Get("/dubbo/differs")->value, "theirs");
  EXPECT_FALSE(sink_.Get("/dubbo/differs")->owner.has_value());
  EXPECT_EQ(sink_.Get("/dubbo/absent")->value, "theirs");
  // Adopted for good: the next run sees nothing to do there.
  const ReconcileReport again = RunWith(AdoptPolicy::kMatching);
  EXPECT_EQ(again.adopted, 0u);
  EXPECT_EQ(again.unclaimed, 0u);
  EXPECT_EQ(again.Count(Kind::kConflict), 1u);
}

TEST_F(AdoptionTest, AllMakesEveryUnownedKeyOurs) {
  const ReconcileReport report = RunWith(AdoptPolicy::kAll);
  EXPECT_EQ(report.adopted, 1u);
  EXPECT_EQ(report.fixed_puts, 2u);     // differs, mine
  EXPECT_EQ(report.fixed_deletes, 1u);  // absent
  EXPECT_EQ(report.Count(Kind::kConflict), 0u);
  EXPECT_EQ(report.Count(Kind::kForeign), 0u);
  // What each policy would adopt does not depend on the one this run used.
  EXPECT_EQ(report.WouldAdopt(AdoptPolicy::kMatching), 1u);
  EXPECT_EQ(report.WouldAdopt(AdoptPolicy::kAll), 3u);
  EXPECT_EQ(sink_.Values(), Expected());
  for (const std::string key : {"/dubbo/equal", "/dubbo/differs", "/dubbo/mine"}) {
    EXPECT_TRUE(sink_.Get(key)->owner.has_value()) << key;
  }
  EXPECT_FALSE(sink_.Get("/dubbo/absent").has_value());
}

TEST_F(AdoptionTest, AnAdoptionLosesToAConcurrentWriteByAnotherWriter) {
  // The repairs are held at the sink while another writer changes the equal key.
  sink_.PauseApplies();
  auto run = std::async(std::launch::async, [&] {
    ReconcileOptions options;
    options.adopt = AdoptPolicy::kMatching;
    return TryRun(options);
  });
  ASSERT_TRUE(WaitFor([&] { return sink_.batches_submitted() >= 1; }));
  sink_.PutForeign("/dubbo/equal", "another writer's, meanwhile");
  sink_.ResumeApplies();
  ASSERT_EQ(run.wait_for(seconds(10)), std::future_status::ready);
  auto report = run.get();
  ASSERT_TRUE(report.ok()) << report.error().message;
  EXPECT_EQ(report->adopted, 0u);
  EXPECT_EQ(report->failed, 0u);
  auto equal = sink_.Get("/dubbo/equal");
  EXPECT_EQ(equal->value, "another writer's, meanwhile");
  EXPECT_FALSE(equal->owner.has_value());
}

TEST_F(ReconcilerTest, TheOwnershipStoreVouchesForUnownedKeys) {
  ownership::FakeOwnershipStore store;
  SourcePut("/dubbo/a", "new");
  SourcePut("/dubbo/b", "same");
  sink_.PutForeign("/dubbo/a", "old");     // the Go tool wrote it
  sink_.PutForeign("/dubbo/b", "same");    // the Go tool wrote it
  sink_.PutForeign("/dubbo/gone", "old");  // the Go tool wrote it, since deleted
  sink_.PutForeign("/dubbo/theirs", "x");  // not in the store: foreign
  ASSERT_TRUE(
      store
          .Record(
              {{"/sink/dubbo/a", "old"}, {"/sink/dubbo/b", "same"}, {"/sink/dubbo/gone", "old"}})
          .ok());
  const ReconcileReport report = Run({}, &store);
  EXPECT_EQ(report.adopted, 1u);        // b
  EXPECT_EQ(report.fixed_puts, 1u);     // a
  EXPECT_EQ(report.fixed_deletes, 1u);  // gone
  EXPECT_EQ(report.Count(Kind::kForeign), 1u);
  EXPECT_EQ(report.deferred_deletes, 0u);
  EXPECT_EQ(sink_.Get("/dubbo/a")->value, "new");
  EXPECT_TRUE(sink_.Get("/dubbo/a")->owner.has_value());
  EXPECT_TRUE(sink_.Get("/dubbo/b")->owner.has_value());
  EXPECT_FALSE(sink_.Get("/dubbo/gone").has_value());
  EXPECT_EQ(sink_.Get("/dubbo/theirs")->value, "x");
  // The store follows: the repaired key recorded with its new value, the deleted one forgotten.
  const auto records = store.records();
  EXPECT_EQ(records.at("/sink/dubbo/a"), "new");
  EXPECT_EQ(records.count("/sink/dubbo/gone"), 0u);
  EXPECT_EQ(records.count("/sink/dubbo/theirs"), 0u);
}

// While the store does not answer, the keys it would vouch for cannot be told from another
// writer's: they are left alone and counted in ownership_unknown (SyncService reconciles again
// when the store answers); once it answers, they are the tool's again.
TEST_F(ReconcilerTest, UnownedKeysTheStoreCannotBeAskedAboutAreCountedAndLeftAlone) {
  ownership::FakeOwnershipStore store;
  SourcePut("/dubbo/a", "new");
  sink_.PutForeign("/dubbo/a", "old");     // the Go tool wrote it
  sink_.PutForeign("/dubbo/theirs", "x");  // not in the store
  ASSERT_TRUE(store.Record({{"/sink/dubbo/a", "old"}}).ok());
  store.SetAvailable(false);
  const ReconcileReport down = Run({}, &store);
  EXPECT_EQ(down.ownership_unknown, 2u);
  EXPECT_EQ(down.fixed_puts, 0u);
  EXPECT_EQ(sink_.Get("/dubbo/a")->value, "old");
  EXPECT_EQ(sink_.Get("/dubbo/theirs")->value, "x");

  store.SetAvailable(true);
  const ReconcileReport back = Run({}, &store);
  EXPECT_EQ(back.ownership_unknown, 0u);
  EXPECT_EQ(back.fixed_puts, 1u);
  EXPECT_EQ(sink_.Get("/dubbo/a")->value, "new");
  EXPECT_EQ(sink_.Get("/dubbo/theirs")->value, "x");
}

TEST_F(ReconcilerTest, DeletesWaitWhileTheOwnershipStoreIsDown) {
  ownership::FakeOwnershipStore store;
  sink_.PutOwned("/dubbo/extra", "ours", source_.Put("/dubbo/extra", "ours"));
  ASSERT_TRUE(source_.Delete("/dubbo/extra"));
  SourcePut("/dubbo/a", "1");
  store.SetAvailable(false);
  const ReconcileReport down = Run({}, &store);
  EXPECT_EQ(down.fixed_puts, 1u);  // puts go on
  EXPECT_EQ(down.fixed_deletes, 0u);
  EXPECT_EQ(down.deferred_deletes, 1u);
  EXPECT_EQ(sink_.Get("/dubbo/extra")->value, "ours");

  store.SetAvailable(true);
  const ReconcileReport back = Run({}, &store);
  EXPECT_EQ(back.deferred_deletes, 0u);
  EXPECT_EQ(back.fixed_deletes, 1u);
  EXPECT_FALSE(sink_.Get("/dubbo/extra").has_value());
}

// A repair put whose node the incremental path deleted meanwhile (ReconcileOptions::
// deleted_after names a newer delete) is deleted again, fenced by the delete's point; while the
// ownership store is down that delete waits like any other; a node created again since the
// delete (a version at or above its point) keeps its put.
TEST_F(ReconcilerTest, ARepairPutOverANewerDeleteIsDeletedAgainWhenDeletesMayGo) {
  ownership::FakeOwnershipStore store;
  std::map<std::string, int64_t> deleted_at;
  ReconcileOptions options;
  options.deleted_after = [&](const std::string& path, int64_t version) -> std::optional<int64_t> {
    const auto it = deleted_at.find(path);
    if (it == deleted_at.end() || it->second <= version) return std::nullopt;
    return it->second;
  };
  deleted_at["/dubbo/a"] = source_.Put("/dubbo/a", "1") + 1;
  store.SetAvailable(false);
  const ReconcileReport down = Run(options, &store);
  EXPECT_EQ(down.fixed_puts, 1u);
  EXPECT_EQ(down.deleted_again, 0u);
  EXPECT_EQ(down.deferred_deletes, 1u);
  EXPECT_TRUE(sink_.Get("/dubbo/a").has_value());

  store.SetAvailable(true);
  deleted_at["/dubbo/b"] = source_.Put("/dubbo/b", "2") + 1;
  const int64_t c = source_.Put("/dubbo/c", "3");
  deleted_at["/dubbo/c"] = c;  // created again at the delete's point: not older
  const ReconcileReport up = Run(options, &store);
  EXPECT_EQ(up.fixed_puts, 2u);
  EXPECT_EQ(up.deleted_again, 1u);
  EXPECT_FALSE(sink_.Get("/dubbo/b").has_value());
  EXPECT_EQ(sink_.Get("/dubbo/c")->value, "3");
}

TEST_F(ReconcilerTest, ASnapshotFailureIsASourceError) {
  FillSource();
  source_.FailNextReads(1, core::SourceError::Code::kUnavailable);
  auto report = TryRun({});
  ASSERT_FALSE(report.ok());
  EXPECT_EQ(report.error().side, ReconcileError::Side::kSource);
  EXPECT_NE(report.error().message.find("memory source"), std::string::npos)
      << report.error().message;
  EXPECT_EQ(sink_.Size(), 0u);
  // The next run succeeds.
  EXPECT_EQ(Run().fixed_puts, 10u);
}

TEST_F(ReconcilerTest, AListingFailureIsASinkError) {
  FillSource();
  sink_.FailNextReads(2, core::SinkError::Code::kUnavailable);  // the point, then the listing
  auto report = TryRun({});
  ASSERT_FALSE(report.ok());
  EXPECT_EQ(report.error().side, ReconcileError::Side::kSink);
  EXPECT_EQ(sink_.Size(), 0u);
}

TEST_F(ReconcilerTest, ACancelledRunStopsBeforeReading) {
  FillSource();
  std::atomic<bool> cancel{true};
  ReconcileOptions options;
  options.cancel = &cancel;
  auto report = TryRun(options);
  ASSERT_FALSE(report.ok());
  EXPECT_EQ(report.error().side, ReconcileError::Side::kSource);
  EXPECT_EQ(sink_.Size(), 0u);
}

TEST_F(ReconcilerTest, TheMergeWaitsForTheWriterBeyondMaxRepairsInFlight) {
  // Three chunks of differences; at most one chunk of repairs outstanding: while the sink does
  // not answer, the first chunk's repairs are all the writer holds, and the merge waits.
  constexpr size_t kKeys = 3 * kRecheckChunk;
  for (size_t i = 0; i < kKeys; ++i) SourcePut("/dubbo/k" + std::to_string(100000 + i), "v");
  sink_.PauseApplies();
  ReconcileOptions options;
  options.keep_differences = false;
  options.max_repairs_in_flight = kRecheckChunk;
  auto run = std::async(std::launch::async, [&] { return TryRun(options); });
  ASSERT_TRUE(WaitFor([&] { return writer_->pending() == kRecheckChunk; }, seconds(10)));
  // Give the merge time to go past its limit, if it would.
  EXPECT_EQ(run.wait_for(std::chrono::milliseconds(300)), std::future_status::timeout);
  EXPECT_EQ(writer_->pending(), kRecheckChunk);
  sink_.ResumeApplies();
  auto report = run.get();
  ASSERT_TRUE(report.ok()) << report.error().message;
  EXPECT_EQ(report->fixed_puts, kKeys);
  EXPECT_EQ(sink_.Values(), Expected());
}

TEST_F(ReconcilerTest, ACancelDuringTheMergeStopsItWithAnError) {
  // More differences than one chunk of re-reads (2048): the merge stops after the first.
  constexpr int kKeys = 5000;
  for (int i = 0; i < kKeys; ++i) SourcePut("/dubbo/k" + std::to_string(10000 + i), "v");
  std::atomic<bool> cancel{false};
  ReconcileOptions options;
  options.cancel = &cancel;
  options.keep_differences = false;
  options.on_progress = [&](size_t) { cancel.store(true); };
  auto report = TryRun(options);
  EXPECT_LT(sink_.Size(), static_cast<size_t>(kKeys));
  // reconciler.h: "When set and true, the run stops early (between requests) with an error."
  EXPECT_FALSE(report.ok()) << "a cancelled run reported success after "
                            << (report.ok() ? report->fixed_puts : 0) << " of " << kKeys
                            << " repairs";
}

// Repairs that fail the leadership fence (this process was deposed during the run): the run
// submits no more repairs and fails with not_leader, and only the first failure is logged (it was
// a warning per key: 14,511 lines when a first copy lost its lease).
TEST_F(ReconcilerTest, ARepairThatFailsTheFenceEndsTheRunWithOneLine) {
  constexpr size_t kKeys = 4 * kRecheckChunk;
  for (size_t i = 0; i < kKeys; ++i) SourcePut("/dubbo/k" + std::to_string(100000 + i), "v");
  sink_.FailNextApplies(1'000'000, core::SinkError::Code::kNotLeader);
  std::atomic<size_t> answered{0};
  ReconcileOptions options;
  options.keep_differences = false;
  options.max_repairs_in_flight = kRecheckChunk;
  options.on_repair = [&](const RepairResult&) { ++answered; };
  auto report = TryRun(options);
  ASSERT_FALSE(report.ok());
  EXPECT_EQ(report.error().side, ReconcileError::Side::kWriter);
  EXPECT_TRUE(report.error().not_leader);
  EXPECT_NE(report.error().message.find("no longer leads"), std::string::npos)
      << report.error().message;
  EXPECT_GE(answered.load(), kRecheckChunk);
  EXPECT_LE(answered.load(), 2 * kRecheckChunk);  // the chunk in flight, perhaps the next
  EXPECT_EQ(sink_.Size(), 0u);
  size_t refused = 0, per_key = 0;
  for (const std::string& line : log_sink_->Lines()) {
    refused += line.find("repairs refused: this replica no longer leads") != std::string::npos;
    per_key += line.find("repair failed") != std::string::npos;
  }
  EXPECT_EQ(refused, 1u);
  EXPECT_EQ(per_key, 0u);
}

// A stop while the merge waits for room in a writer whose sink answers no batch: the merge gives
// up its wait, the repairs submitted get the grace, then are abandoned, and the run ends.
TEST_F(ReconcilerTest, ACancelWhileTheMergeWaitsForTheWriterEndsTheRunAfterTheGrace) {
  constexpr size_t kKeys = 3 * kRecheckChunk;
  for (size_t i = 0; i < kKeys; ++i) SourcePut("/dubbo/k" + std::to_string(100000 + i), "v");
  sink_.FailNextApplies(1'000'000);  // every batch, for as long as the test runs
  std::atomic<bool> cancel{false};
  std::atomic<int> abandoned{0};
  std::atomic<size_t> answered{0};
  ReconcileOptions options;
  options.keep_differences = false;
  options.max_repairs_in_flight = kRecheckChunk;
  options.cancel = &cancel;
  options.cancel_grace = std::chrono::milliseconds(100);
  options.abandon_repairs = [&] {
    ++abandoned;
    writer_->Stop();  // as SyncService does: the writer completes them with kStopped
  };
  options.on_repair = [&](const RepairResult&) { ++answered; };
  auto run = std::async(std::launch::async, [&] { return TryRun(options); });
  // The first chunk's repairs are all the writer holds; the merge waits for room.
  EXPECT_TRUE(WaitFor([&] { return writer_->pending() == kRecheckChunk; }, seconds(10)));
  cancel.store(true);
  const bool ended = run.wait_for(seconds(10)) == std::future_status::ready;
  if (!ended) sink_.FailNextApplies(0);  // let it end, so that the test fails instead of hanging
  auto report = run.get();
  ASSERT_TRUE(ended) << "the merge still waited for the writer 10 s after the cancel";
  ASSERT_FALSE(report.ok());
  EXPECT_EQ(report.error().side, ReconcileError::Side::kSource);
  EXPECT_EQ(abandoned.load(), 1);
  EXPECT_EQ(answered.load(), kRecheckChunk);  // the first chunk's, each once; no other submitted
  EXPECT_EQ(sink_.Size(), 0u);
  bool warned = false;
  for (const std::string& line : log_sink_->Lines()) {
    warned |= line.find("repairs still unanswered at the stop deadline are abandoned") !=
              std::string::npos;
  }
  EXPECT_TRUE(warned);
}

// Repairs during the walk (reconciler.h): a far sink that was listed whole while the snapshot was
// read gets the creates of the keys it lacks as the source hands its entries over.
class RepairsDuringTheWalkTest : public ReconcilerTest {
 protected:
  // Forwards to the fixture's source; the entries it hands over can be altered (an older read of
  // a key than the snapshot's) and its snapshot made to fail after handing them over.
  class HandingOverSource final : public core::Source {
   public:
    explicit HandingOverSource(core::Source& source) : source_(source) {}
    core::SourceResult<void> Open(core::SourceListener& listener) override {
      return source_.Open(listener);
    }
    void Close() override { source_.Close(); }
    core::SourceResult<core::Snapshot> ReadSnapshot(const core::SnapshotOptions& options) override {
      core::SnapshotOptions inner = options;
      if (options.on_entry) {
        inner.on_entry = [this, &options](const core::SourceEntry& entry) {
          core::SourceEntry copy = entry;
          if (alter) alter(copy);
          options.on_entry(copy);
          if (hand_over_twice) options.on_entry(copy);
        };
      }
      auto snapshot = source_.ReadSnapshot(inner);
      if (fail_after_handing_over) {
        return Unexpected{core::SourceError{core::SourceError::Code::kUnavailable, "walk lost"}};
      }
      return snapshot;
    }
    core::SourceResult<std::vector<core::EntryState>> Reread(
        const std::vector<std::string>& keys, const core::RereadOptions& options) override {
      return source_.Reread(keys, options);
    }
    void ReadAsync(const std::string& key,
                   std::function<void(core::SourceResult<core::EntryState>)> done) override {
      source_.ReadAsync(key, std::move(done));
    }
    core::SourceStatus Status() const override { return source_.Status(); }
    std::string_view Name() const override { return source_.Name(); }

    std::function<void(core::SourceEntry&)> alter;
    bool fail_after_handing_over = false;
    bool hand_over_twice = false;  // as a read answered by two of the walk's sessions

   private:
    core::Source& source_;
  };

  RepairsDuringTheWalkTest() {
    far_writer_ = std::make_unique<FencedWriter>(far_sink_, writer_options_, clock_);
  }
  ~RepairsDuringTheWalkTest() override { far_writer_->Stop(); }

  // Beside a change stream that announced nothing (unless `announced` says so), not keeping the
  // differences: as `sync` runs.
  static ReconcileOptions AsSync(std::function<bool(const std::string&)> announced = {}) {
    ReconcileOptions options;
    options.keep_differences = false;
    options.may_have_changed =
        announced ? std::move(announced) : [](const std::string&) { return false; };
    return options;
  }

  Result<ReconcileReport, ReconcileError> RunFar(const ReconcileOptions& options,
                                                 core::Source& source) {
    Reconciler reconciler(scope_, far_sink_, far_writer_.get(), nullptr, logger_, clock_);
    return reconciler.Run(source, options);
  }

  // Sets `*count`, once the snapshot was read and before it returns, to the writes `sink` has
  // applied by then, after waiting up to `wait` for 256 of them (what the repairs during the walk
  // take at once).
  void CountWritesDuringTheSnapshot(core::memory::InMemorySink& sink,
                                    std::chrono::milliseconds wait, size_t* count) {
    source_.SetSnapshotHook([&sink, wait, count] {
      WaitFor([&] { return sink.writes_applied() >= 256; }, wait);
      *count = sink.writes_applied();
    });
  }

  // More keys than the repairs take at once (256), so that some go before the snapshot returns.
  static constexpr int kKeys = 300;
  void FillManyKeys() {
    for (int i = 0; i < kKeys; ++i) SourcePut("/dubbo/k" + std::to_string(100 + i), "v");
  }

  // A sink that says it is far, and whose listing takes a round trip of 10 ms.
  static core::memory::InMemorySink::Options Far() {
    core::memory::InMemorySink::Options options;
    options.far = true;
    options.list_delay = std::chrono::milliseconds(10);
    return options;
  }

  // A first sync of the kKeys keys into the far sink: each key created once, from the walk's
  // entries, at least the first 256 (taken at once) before the snapshot returned (`during`:
  // CountWritesDuringTheSnapshot); the rest may have been taken after.
  void ExpectEveryKeyCreatedOnceDuringTheWalk(const ReconcileReport& report, size_t during) {
    EXPECT_GE(during, 256u);
    EXPECT_GE(report.repaired_during_walk, 256u);
    EXPECT_LE(report.repaired_during_walk, static_cast<size_t>(kKeys));
    EXPECT_EQ(report.Count(Kind::kMissing), static_cast<size_t>(kKeys));
    EXPECT_EQ(report.fixed_puts, static_cast<size_t>(kKeys));
    EXPECT_EQ(far_sink_.writes_applied(), static_cast<size_t>(kKeys));  // each key once
    EXPECT_EQ(far_sink_.Values(), Expected());
  }

  core::memory::InMemorySink far_sink_{Far()};
  std::unique_ptr<FencedWriter> far_writer_;
};

TEST_F(RepairsDuringTheWalkTest, AFarEmptySinkIsWrittenWhileTheSnapshotIsRead) {
  FillManyKeys();
  SourcePut("/dubbo/config/excluded", "x");
  size_t during = 0;
  CountWritesDuringTheSnapshot(far_sink_, seconds(10), &during);
  auto report = RunFar(AsSync(), source_);
  ASSERT_TRUE(report.ok()) << report.error().message;
  ExpectEveryKeyCreatedOnceDuringTheWalk(*report, during);
  EXPECT_EQ(report->VisibleDifferences(), static_cast<size_t>(kKeys));
  EXPECT_EQ(report->reread, 0u);
  for (const auto& [key, value] : Expected()) {
    auto entry = far_sink_.Get(key);
    ASSERT_TRUE(entry && entry->owner) << key;
    EXPECT_EQ(entry->owner->source_version, source_.Get(key)->version) << key;
  }

  source_.SetSnapshotHook({});
  auto again = RunFar(AsSync(), source_);
  ASSERT_TRUE(again.ok()) << again.error().message;
  EXPECT_EQ(again->repaired_during_walk, 0u);
  EXPECT_EQ(again->in_sync, static_cast<size_t>(kKeys));
  EXPECT_EQ(far_sink_.writes_applied(), static_cast<size_t>(kKeys));
}

TEST_F(RepairsDuringTheWalkTest, KeysTheSinkHoldsOrTheStreamAnnouncedAreLeftToTheMerge) {
  FillManyKeys();
  far_sink_.PutOwned("/dubbo/k100", "older", 1);  // ours, changed
  far_sink_.PutForeign("/dubbo/k101", "theirs");  // another writer's
  far_sink_.PutRecord("/dubbo/k102", 1);          // our record, without a value
  // The first entries taken (256) hold at most these four.
  size_t during = 0;
  source_.SetSnapshotHook([&] {
    WaitFor([&] { return far_sink_.writes_applied() >= 252; }, seconds(10));
    during = far_sink_.writes_applied();
  });
  auto report =
      RunFar(AsSync([](const std::string& path) { return path == "/dubbo/k103"; }), source_);
  ASSERT_TRUE(report.ok()) << report.error().message;
  EXPECT_GE(during, 252u);
  EXPECT_GE(report->repaired_during_walk, 252u);
  EXPECT_EQ(report->Count(Kind::kMissing), static_cast<size_t>(kKeys - 2));
  EXPECT_EQ(report->Count(Kind::kChanged), 1u);
  EXPECT_EQ(report->Count(Kind::kForeign), 1u);
  EXPECT_EQ(report->reread, 1u);  // the announced one
  EXPECT_EQ(report->fixed_puts, static_cast<size_t>(kKeys - 1));
  std::map<std::string, std::string> expected = Expected();
  expected["/dubbo/k101"] = "theirs";
  EXPECT_EQ(far_sink_.Values(), expected);
}

TEST_F(RepairsDuringTheWalkTest, OnlyAFarSinkListedWholeBesideAChangeStreamIsWrittenDuringTheWalk) {
  FillManyKeys();
  // Nothing is written before the snapshot is read (given time to, if it were).
  constexpr auto kTime = std::chrono::milliseconds(200);
  size_t during = 1;
  // A near sink.
  CountWritesDuringTheSnapshot(sink_, kTime, &during);
  auto near = TryRun(AsSync());
  ASSERT_TRUE(near.ok()) << near.error().message;
  EXPECT_EQ(during, 0u);
  EXPECT_EQ(near->repaired_during_walk, 0u);
  EXPECT_EQ(near->fixed_puts, static_cast<size_t>(kKeys));
  // Without a change stream (diff --fix), and keeping the differences (diff).
  ReconcileOptions without_stream = AsSync();
  without_stream.may_have_changed = {};
  ReconcileOptions keeping = AsSync();
  keeping.keep_differences = true;
  // And a sink that says it is far but lists at once (a dial slowed down by a busy machine): a
  // clock that does not move sees the listing take no time, however busy this machine is.
  ReconcileOptions as_sync = AsSync();
  FakeClock still;
  struct Case {
    const ReconcileOptions& options;
    core::memory::InMemorySink::Options sink;
    const Clock& clock;
  };
  for (const Case& run : {Case{without_stream, Far(), clock_}, Case{keeping, Far(), clock_},
                          Case{as_sync, Far(), still}}) {
    core::memory::InMemorySink sink(run.sink);
    FencedWriter writer(sink, writer_options_, clock_);
    Reconciler reconciler(scope_, sink, &writer, nullptr, logger_, run.clock);
    during = 1;
    CountWritesDuringTheSnapshot(sink, kTime, &during);
    auto report = reconciler.Run(source_, run.options);
    writer.Stop();
    ASSERT_TRUE(report.ok()) << report.error().message;
    EXPECT_EQ(during, 0u);
    EXPECT_EQ(report->repaired_during_walk, 0u);
    EXPECT_EQ(report->fixed_puts, static_cast<size_t>(kKeys));
    EXPECT_EQ(sink.Values(), Expected());
  }
  // A sink larger than a page is not listed whole.
  far_sink_.PutOwned("/dubbo/a", "ours", 1);
  far_sink_.PutOwned("/dubbo/b", "ours", 1);
  ReconcileOptions paged = AsSync();
  paged.sink_page_size = 2;
  during = 1;
  const size_t before = far_sink_.writes_applied();
  CountWritesDuringTheSnapshot(far_sink_, kTime, &during);
  auto report = RunFar(paged, source_);
  ASSERT_TRUE(report.ok()) << report.error().message;
  EXPECT_EQ(during, before);
  EXPECT_EQ(report->repaired_during_walk, 0u);
  EXPECT_EQ(report->fixed_puts, static_cast<size_t>(kKeys));
  EXPECT_EQ(far_sink_.Values(), Expected());
}

// A key handed over at one version and held by the snapshot at a newer one (read twice by a walk
// that started again) is repaired by the merge too, so the sink ends with the newer value.
TEST_F(RepairsDuringTheWalkTest, AKeyTheSnapshotHoldsNewerThanHandedOverIsRepairedAgain) {
  FillManyKeys();
  const int64_t older = SourcePut("/dubbo/k100", "older");
  SourcePut("/dubbo/k100", "newer");
  HandingOverSource source(source_);
  source.alter = [older](core::SourceEntry& entry) {
    if (entry.key != "/dubbo/k100") return;
    entry.value = "older";
    entry.version = older;
  };
  auto report = RunFar(AsSync(), source);
  ASSERT_TRUE(report.ok()) << report.error().message;
  EXPECT_EQ(report->fixed_puts, static_cast<size_t>(kKeys + 1));  // k100 twice
  EXPECT_EQ(far_sink_.Values(), Expected());
  EXPECT_EQ(far_sink_.Get("/dubbo/k100")->value, "newer");
}

// A snapshot that fails after handing entries over fails the run, which returns only once their
// repairs were answered (they are genuine reads: they stay written).
TEST_F(RepairsDuringTheWalkTest, ASnapshotThatFailsAfterHandingEntriesOverWaitsForTheirRepairs) {
  FillManyKeys();
  HandingOverSource source(source_);
  source.fail_after_handing_over = true;
  auto report = RunFar(AsSync(), source);
  ASSERT_FALSE(report.ok());
  EXPECT_EQ(report.error().side, ReconcileError::Side::kSource);
  EXPECT_EQ(far_writer_->pending(), 0u);
  EXPECT_EQ(far_sink_.Values(), Expected());
}

// A stop while the repairs during the walk wait for room in a writer whose sink answers no batch:
// the repairing thread gives up its wait and submits nothing more, the snapshot's end does not
// wait for it, and the run ends once the grace is over.
TEST_F(RepairsDuringTheWalkTest, ACancelWhileTheWriterIsFullEndsTheRepairsDuringTheWalk) {
  constexpr int kMany = 600;
  for (int i = 0; i < kMany; ++i) SourcePut("/dubbo/k" + std::to_string(1000 + i), "v");
  far_sink_.FailNextApplies(1'000'000);  // every batch, for as long as the test runs
  HandingOverSource source(source_);
  int handed_over = 0;  // on the snapshot's thread only
  source.alter = [&](core::SourceEntry&) {
    // The first 256 are taken at once and submitted; the rest come once the writer holds them,
    // so that their repairs must wait for room (one repair in flight at most).
    if (++handed_over == 257) {
      EXPECT_TRUE(WaitFor([&] { return far_writer_->pending() >= 256; }, seconds(10)));
    }
  };
  std::atomic<bool> cancel{false};
  source_.SetSnapshotHook([&] { cancel.store(true); });
  std::atomic<int> abandoned{0};
  std::atomic<size_t> answered{0};
  ReconcileOptions options = AsSync();
  options.max_repairs_in_flight = 1;
  options.cancel = &cancel;
  options.cancel_grace = std::chrono::milliseconds(100);
  options.abandon_repairs = [&] {
    ++abandoned;
    far_writer_->Stop();
  };
  options.on_repair = [&](const RepairResult&) { ++answered; };
  auto run = std::async(std::launch::async, [&] { return RunFar(options, source); });
  const bool ended = run.wait_for(seconds(10)) == std::future_status::ready;
  if (!ended) far_sink_.FailNextApplies(0);  // let it end, so that the test fails, not hangs
  auto report = run.get();
  ASSERT_TRUE(ended) << "the run still waited for the writer 10 s after the cancel";
  ASSERT_FALSE(report.ok());
  EXPECT_EQ(report.error().side, ReconcileError::Side::kSource);
  EXPECT_EQ(abandoned.load(), 1);
  EXPECT_EQ(answered.load(), 256u);  // the first 256, each once; nothing else was submitted
  EXPECT_EQ(far_sink_.Size(), 0u);
}

// The walk may hand an entry over twice (a read answered on two of its sessions): the key is
// created and counted once.
TEST_F(RepairsDuringTheWalkTest, AnEntryHandedOverTwiceIsRepairedOnce) {
  FillManyKeys();
  HandingOverSource source(source_);
  source.hand_over_twice = true;
  size_t during = 0;
  CountWritesDuringTheSnapshot(far_sink_, seconds(10), &during);
  auto report = RunFar(AsSync(), source);
  ASSERT_TRUE(report.ok()) << report.error().message;
  ExpectEveryKeyCreatedOnceDuringTheWalk(*report, during);
}

}  // namespace
}  // namespace zk2etcd::sync

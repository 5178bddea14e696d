// The zk2etcd job's reconciliation: ZooKeeperSource over the in-memory ZooKeeper, EtcdSink over
// the in-memory etcd, the Reconciler and the FencedWriter (the old sync/engine_test.cc).
#include <gtest/gtest.h>

#include <atomic>
#include <thread>

#include "cli/zk2etcd_job_test.h"
#include "connectors/zookeeper/zk_walker.h"

namespace zk2etcd::job_test {
namespace {

using EngineTest = JobTest;

TEST_F(EngineTest, AFlatRepairWhoseObservationIsOutdatedFallsBackAndLosesToTheNewerWrite) {
  // An incremental write (nested form) lands after the repair observed the key absent.
  ASSERT_EQ(Write(*writer_, Put("/dubbo/a", "incremental", 30)).value(), WriteOutcome::kApplied);
  SinkWrite repair = Put("/dubbo/a", "repair", 10);
  repair.observed = SinkWrite::Observed{0, 0, 0};
  ASSERT_TRUE(connectors::FlatEligible(sink_.ToFencedWrite(repair)));
  EXPECT_EQ(Write(*writer_, repair).value(), WriteOutcome::kStale);
  EXPECT_EQ(Etcd("/dubbo/a"), "incremental");
  EXPECT_EQ(sink_.flat_fallbacks(), 1u);
  // One that still holds applies flat.
  SinkWrite fresh = Put("/dubbo/b", "repair", 10);
  fresh.observed = SinkWrite::Observed{0, 0, 0};
  EXPECT_EQ(Write(*writer_, fresh).value(), WriteOutcome::kApplied);
  EXPECT_EQ(Etcd("/dubbo/b"), "repair");
  EXPECT_EQ(Etcd("/zk2etcd/meta/dubbo/b"), EncodeZxid(10));
  EXPECT_EQ(sink_.flat_fallbacks(), 1u);
}

TEST_F(EngineTest, AFlatBatchThatFailsWhileTheWriterStopsEndsStoppedAndChangesNothing) {
  SinkWrite incremental = Put("/dubbo/a", "incremental", 30);
  ASSERT_EQ(Write(*writer_, incremental).value(), WriteOutcome::kApplied);
  // A repair that observed the key absent, held in flight at etcd.
  SinkWrite repair = incremental;
  repair.value = "repair";
  repair.version = 10;
  repair.observed = SinkWrite::Observed{0, 0, 0};
  ASSERT_TRUE(connectors::FlatEligible(sink_.ToFencedWrite(repair)));
  etcd_.HoldTxns(true);
  std::promise<WriteResult> repaired;
  writer_->Submit(repair, [&](const WriteResult& result) { repaired.set_value(result); });
  ASSERT_TRUE(WaitFor([&] { return etcd_.TxnsInFlight() == 1; }));
  std::thread stopper([&] { writer_->Stop(); });
  // Stopping has begun once a new write completes at once with kStopped.
  ASSERT_TRUE(WaitFor([&] {
    std::atomic<bool> stopped = false;
    SinkWrite probe = incremental;
    probe.key = "/dubbo/probe";
    writer_->Submit(probe, [&](const WriteResult& result) {
      stopped = !result.ok() && result.error().code == WriteError::Code::kStopped;
    });
    return stopped.load();
  }));
  etcd_.HoldTxns(false);
  stopper.join();
  const WriteResult result = repaired.get_future().get();
  ASSERT_FALSE(result.ok());
  EXPECT_EQ(result.error().code, WriteError::Code::kStopped);
  EXPECT_EQ(sink_.flat_fallbacks(), 1u) << "the flat batch reached etcd and failed there";
  EXPECT_EQ(Etcd("/dubbo/a"), "incremental");
  EXPECT_EQ(Etcd("/zk2etcd/meta/dubbo/a"), EncodeZxid(30));
}

TEST_F(EngineTest, ReadNodesBatchedBySizeReadsEveryNodeInOrder) {
  std::vector<std::string> paths;
  std::vector<size_t> expected;
  for (int i = 0; i < 200; ++i) {
    const std::string path = "/dubbo/n" + std::to_string(i);
    // Every seventh node is missing (read as absent with the reply's zxid); some are large.
    if (i % 7 != 0)
      Create(path, std::string(i % 5 == 0 ? 3000 : 10, static_cast<char>('a' + i % 26)));
    paths.push_back(path);
    expected.push_back(i % 5 == 0 ? 3000 : 10);
  }
  auto zk = zk_server_->NewClient({});
  for (const size_t batch_bytes : {size_t{1}, size_t{4096}, size_t{1} << 20}) {
    connectors::NodeReadOptions options;
    options.window = 3;
    options.expected_bytes = &expected;
    options.batch_bytes = batch_bytes;
    auto nodes = connectors::ReadNodes(*zk, paths, options);
    ASSERT_TRUE(nodes.ok()) << nodes.error().ToString();
    ASSERT_EQ(nodes->size(), paths.size());
    for (int i = 0; i < 200; ++i) {
      const core::EntryState& node = (*nodes)[i];
      EXPECT_EQ(node.exists, i % 7 != 0) << paths[i];
      EXPECT_GT(node.observed_at, 0) << paths[i];
      if (node.exists) {
        EXPECT_EQ(node.value.size(), expected[i]) << paths[i];
        EXPECT_EQ(node.value[0], static_cast<char>('a' + i % 26)) << paths[i];
      }
    }
  }
}

TEST_F(EngineTest, ALargeSyncWithoutKeptDifferencesCountsAndRepairsThemAll) {
  // More differences than several chunks and than the repairs allowed in flight.
  for (int i = 0; i < 12000; ++i) Create("/dubbo/svc/providers/p" + std::to_string(i));
  etcd_.store().PutDirect("/dubbo/svc/providers/foreign", "theirs");
  OpenSource();
  sync::Reconciler reconciler(scope_, sink_, writer_.get(), nullptr, logger_, clock_);
  ReconcileOptions options;
  options.keep_differences = false;
  auto report = reconciler.Run(*source_, options);
  ASSERT_TRUE(report.ok()) << report.error().message;
  EXPECT_TRUE(report->differences.empty());
  EXPECT_EQ(report->Count(Difference::Kind::kMissing), 12003u);  // with /dubbo, svc, providers
  EXPECT_EQ(report->Count(Difference::Kind::kForeign), 1u);
  EXPECT_EQ(report->VisibleDifferences(), 12004u);
  EXPECT_EQ(report->fixed_puts, 12003u);
  EXPECT_EQ(Etcd("/dubbo/svc/providers/p11999"), "");
  EXPECT_EQ(Etcd("/dubbo/svc/providers/foreign"), "theirs");
  EXPECT_EQ(Reconcile().VisibleDifferences(), 1u);  // only the foreign key
}

TEST_F(EngineTest, AFirstSyncIntoAnEmptyEtcdWritesEveryNodeOnceAndCountsThem) {
  for (int i = 0; i < 12000; ++i) Create("/dubbo/svc/providers/p" + std::to_string(i), "d");
  Create("/dubbo/config/excluded", "x");
  OpenSource();
  sync::Reconciler reconciler(scope_, sink_, writer_.get(), nullptr, logger_, clock_);
  ReconcileOptions options;
  options.keep_differences = false;
  std::atomic<size_t> progress_calls = 0;
  options.on_progress = [&](size_t) { ++progress_calls; };
  auto report = reconciler.Run(*source_, options);
  ASSERT_TRUE(report.ok()) << report.error().message;
  EXPECT_EQ(report->source_entries, 12003u);  // with /dubbo, svc, providers; not the excluded
  EXPECT_EQ(report->sink_entries, 0u);
  EXPECT_EQ(report->Count(Difference::Kind::kMissing), 12003u);
  EXPECT_EQ(report->fixed_puts, 12003u);
  EXPECT_EQ(progress_calls.load(), 1u);  // at 10,000 nodes
  EXPECT_EQ(etcd_.store().List("/dubbo").size(), 12003u);
  EXPECT_EQ(etcd_.store().List("/zk2etcd/meta/").size(), 12003u);
  EXPECT_EQ(Etcd("/dubbo/svc/providers/p11999"), "d");
  EXPECT_FALSE(Etcd("/dubbo/config/excluded"));
  // etcd is no longer empty: the next run merges, and finds nothing to do.
  const ReconcileReport again = Reconcile();
  EXPECT_EQ(again.in_sync, 12003u);
  EXPECT_EQ(again.VisibleDifferences(), 0u);
}

TEST_F(EngineTest, AFirstSyncWhoseWalkFailsHalfwayLeavesConsistentKeysAndTheNextRunEndsTheJob) {
  for (int i = 0; i < 6000; ++i) Create("/dubbo/a/providers/p" + std::to_string(i));
  for (int i = 0; i < 6000; ++i) Create("/dubbo/z/providers/p" + std::to_string(i));
  // The walk reads on its first session alone: an error of one of its other sessions only gives
  // that session up (the request goes again on another), and this walk must fail. Which session
  // a request goes to depends on the round trip measured (on a loaded machine the fake's may
  // exceed WalkOptions::spread_from).
  source_ = NewSource(connectors::WatchMode::kAuto, /*walk_sessions=*/1);
  OpenSource();
  zk_server_->InjectError(zk::op_names::kMultiRead, zk::ZkErrorCode::kConnectionLoss, 1,
                          "/dubbo/z/providers/p5");
  sync::Reconciler reconciler(scope_, sink_, writer_.get(), nullptr, logger_, clock_);
  auto failed = reconciler.Run(*source_, ReconcileOptions{});
  ASSERT_FALSE(failed.ok());
  EXPECT_EQ(failed.error().side, sync::ReconcileError::Side::kSource);
  // Whatever was written carries its meta record.
  const auto keys = etcd_.store().List("/dubbo");
  EXPECT_EQ(keys.size(), etcd_.store().List("/zk2etcd/meta/").size());
  EXPECT_LT(keys.size(), 12005u);  // 12,000 providers, /dubbo, a, z and two providers
  const ReconcileReport next = Reconcile();
  EXPECT_EQ(next.fixed_puts + keys.size(), 12005u);
  EXPECT_EQ(etcd_.store().List("/dubbo").size(), 12005u);
  EXPECT_EQ(Reconcile().VisibleDifferences(), 0u);
}

TEST_F(EngineTest, AFirstSyncStopsWhenCancelled) {
  for (int i = 0; i < 12000; ++i) Create("/dubbo/svc/providers/p" + std::to_string(i));
  OpenSource();
  sync::Reconciler reconciler(scope_, sink_, writer_.get(), nullptr, logger_, clock_);
  std::atomic<bool> cancel{true};
  ReconcileOptions options;
  options.cancel = &cancel;
  auto report = reconciler.Run(*source_, options);
  ASSERT_FALSE(report.ok());
  EXPECT_EQ(etcd_.store().List("/dubbo").size(), etcd_.store().List("/zk2etcd/meta/").size());
}

TEST_F(EngineTest, InitialSyncCopiesEveryNodeInScopeWithAncestorsAndExactBytes) {
  Create("/dubbo/svc/providers/p1", std::string("bin\0ary\xff", 8));
  Create("/dubbo/svc/consumers/c1");
  Create("/dubbo/config/dubbo/app.configurators", "cfg");
  Create("/dubbox/other", "x");
  const ReconcileReport report = Reconcile();
  EXPECT_EQ(report.fixed_puts, 6u);  // /dubbo, svc, providers, p1, consumers, c1
  EXPECT_EQ(Etcd("/dubbo"), "");
  EXPECT_EQ(Etcd("/dubbo/svc"), "");
  EXPECT_EQ(Etcd("/dubbo/svc/providers"), "");
  EXPECT_EQ(Etcd("/dubbo/svc/providers/p1"), std::string("bin\0ary\xff", 8));
  EXPECT_EQ(Etcd("/dubbo/svc/consumers/c1"), "");
  EXPECT_EQ(Etcd("/dubbo/config"), std::nullopt) << "excluded";
  EXPECT_EQ(Etcd("/dubbo/config/dubbo/app.configurators"), std::nullopt) << "excluded";
  EXPECT_EQ(Etcd("/dubbox/other"), std::nullopt) << "prefix without path boundary";
  EXPECT_TRUE(Etcd("/zk2etcd/meta/dubbo/svc/providers/p1").has_value());
}

TEST_F(EngineTest, RunWithEverythingInSyncWritesNothing) {
  Create("/dubbo/svc/providers/p1", "a");
  Reconcile();
  const int txns = etcd_.Calls("txn");
  const int64_t revision = etcd_.store().revision();
  const ReconcileReport again = Reconcile();
  EXPECT_EQ(again.VisibleDifferences(), 0u);
  EXPECT_EQ(again.in_sync, 4u);
  EXPECT_EQ(etcd_.Calls("txn"), txns);
  EXPECT_EQ(etcd_.store().revision(), revision);
}

TEST_F(EngineTest, RepairsChangedAndMissingAndRemovesWhatZooKeeperLost) {
  Create("/dubbo/svc/providers/p1", "a");
  Create("/dubbo/svc/providers/p2", "b");
  Reconcile();
  ASSERT_TRUE(zk_server_->SetNodeData("/dubbo/svc/providers/p1", "a2").ok());
  ASSERT_TRUE(zk_server_->DeleteNode("/dubbo/svc/providers/p2").ok());
  Create("/dubbo/svc/providers/p3", "c");
  etcd_.store().DeleteDirect("/dubbo/svc");  // lost in etcd, meta record still there
  const ReconcileReport report = Reconcile();
  EXPECT_EQ(report.Count(Difference::Kind::kChanged), 1u);
  EXPECT_EQ(report.Count(Difference::Kind::kExtra), 1u);
  EXPECT_EQ(report.Count(Difference::Kind::kMissing), 2u);
  EXPECT_EQ(Etcd("/dubbo/svc/providers/p1"), "a2");
  EXPECT_EQ(Etcd("/dubbo/svc/providers/p2"), std::nullopt);
  EXPECT_EQ(Etcd("/zk2etcd/meta/dubbo/svc/providers/p2"), std::nullopt);
  EXPECT_EQ(Etcd("/dubbo/svc/providers/p3"), "c");
  EXPECT_EQ(Etcd("/dubbo/svc"), "");
}

TEST_F(EngineTest, ForeignKeysSurviveAndAreReported) {
  Create("/dubbo/svc/providers/p1", "zk");
  etcd_.store().PutDirect("/dubbo/svc/providers/p1", "other-writer");  // differs, no meta
  etcd_.store().PutDirect("/dubbo/from-replicator", "r");              // extra, no meta
  etcd_.store().PutDirect("/dubbo/config/x", "excluded path: not ours to judge");
  etcd_.store().PutDirect("/dubbox", "outside the prefix");
  const ReconcileReport report = Reconcile();
  EXPECT_EQ(report.Count(Difference::Kind::kForeign), 2u);
  EXPECT_EQ(Etcd("/dubbo/svc/providers/p1"), "other-writer");
  EXPECT_EQ(Etcd("/dubbo/from-replicator"), "r");
  EXPECT_EQ(Etcd("/dubbo/config/x"), "excluded path: not ours to judge");
  EXPECT_EQ(Etcd("/dubbox"), "outside the prefix");
}

TEST_F(EngineTest, ReportOnlyChangesNothing) {
  Create("/dubbo/svc", "a");
  const int64_t revision = etcd_.store().revision();
  const ReconcileReport report = Reconcile(nullptr, /*fix=*/false);
  EXPECT_EQ(report.Count(Difference::Kind::kMissing), 2u);
  EXPECT_EQ(etcd_.store().revision(), revision);
}

TEST_F(EngineTest, RedisOwnedKeysAreRepairedAndAdoptedAndOthersStayForeign) {
  ownership::FakeOwnershipStore store;
  Create("/dubbo/svc/providers/changed", "new");
  Create("/dubbo/svc/providers/same", "same");
  // What the Go tool left: keys without meta records, recorded in Redis.
  for (const char* key : {"/dubbo", "/dubbo/svc", "/dubbo/svc/providers"}) {
    etcd_.store().PutDirect(key, "");
    ASSERT_TRUE(store.Record({{key, ""}}).ok());
  }
  etcd_.store().PutDirect("/dubbo/svc/providers/changed", "old");
  etcd_.store().PutDirect("/dubbo/svc/providers/same", "same");
  etcd_.store().PutDirect("/dubbo/svc/providers/gone", "deleted in zk");
  ASSERT_TRUE(store
                  .Record({{"/dubbo/svc/providers/changed", "old"},
                           {"/dubbo/svc/providers/same", "same"},
                           {"/dubbo/svc/providers/gone", "deleted in zk"}})
                  .ok());
  etcd_.store().PutDirect("/dubbo/svc/providers/unknown", "not in redis");

  const ReconcileReport report = Reconcile(&store);
  EXPECT_EQ(Etcd("/dubbo/svc/providers/changed"), "new");
  EXPECT_EQ(Etcd("/dubbo/svc/providers/gone"), std::nullopt);
  EXPECT_EQ(Etcd("/dubbo/svc/providers/unknown"), "not in redis");
  EXPECT_TRUE(Etcd("/zk2etcd/meta/dubbo/svc/providers/same").has_value()) << "adopted";
  EXPECT_EQ(report.adopted, 4u);  // /dubbo, svc, providers, same
  EXPECT_EQ(report.Count(Difference::Kind::kForeign), 1u);
  EXPECT_EQ(store.records().count("/dubbo/svc/providers/gone"), 0u);
  EXPECT_EQ(store.records().at("/dubbo/svc/providers/changed"), "new");
}

TEST_F(EngineTest, NothingIsDeletedWhileTheOwnershipStoreIsDown) {
  ownership::FakeOwnershipStore store;
  Create("/dubbo/svc/providers/p1", "a");
  Reconcile(&store);
  ASSERT_TRUE(zk_server_->DeleteNode("/dubbo/svc/providers/p1").ok());
  store.SetAvailable(false);
  ReconcileReport report = Reconcile(&store);
  EXPECT_EQ(report.deferred_deletes, 1u);
  EXPECT_EQ(Etcd("/dubbo/svc/providers/p1"), "a");
  store.SetAvailable(true);
  report = Reconcile(&store);
  EXPECT_EQ(report.fixed_deletes, 1u);
  EXPECT_EQ(Etcd("/dubbo/svc/providers/p1"), std::nullopt);
}

// What another tool left: the tree copied by plain puts (no meta record, no Redis record), one
// key with another writer's value where a znode exists, one key with no znode.
class AdoptionTest : public JobTest {
 protected:
  void SetUp() override {
    JobTest::SetUp();
    Create("/dubbo/svc/providers/equal", "e");
    Create("/dubbo/svc/providers/differs", "zk");
    for (const char* key : {"/dubbo", "/dubbo/svc", "/dubbo/svc/providers"}) {
      etcd_.store().PutDirect(key, "");
    }
    etcd_.store().PutDirect("/dubbo/svc/providers/equal", "e");
    etcd_.store().PutDirect("/dubbo/svc/providers/differs", "theirs");
    etcd_.store().PutDirect("/dubbo/svc/providers/no-znode", "r");
    equal_revision_ = etcd_.store().Get("/dubbo/svc/providers/equal")->mod_revision;
  }

  int64_t equal_revision_ = 0;
};

TEST_F(AdoptionTest, MatchingAdoptsEqualKeysByTheirMetaRecordAloneAndReportsConflicts) {
  const ReconcileReport report = Reconcile(nullptr, true, AdoptPolicy::kMatching);
  EXPECT_EQ(report.adopted, 4u);  // /dubbo, svc, providers, equal
  EXPECT_EQ(report.fixed_puts + report.fixed_deletes, 0u);
  EXPECT_EQ(report.Count(Difference::Kind::kConflict), 1u);
  EXPECT_EQ(report.Count(Difference::Kind::kForeign), 1u);
  EXPECT_EQ(report.conflict_samples, std::vector<std::string>{"/dubbo/svc/providers/differs"});
  EXPECT_EQ(report.foreign_samples, std::vector<std::string>{"/dubbo/svc/providers/no-znode"});
  EXPECT_EQ(Etcd("/zk2etcd/meta/dubbo/svc/providers/equal"),
            EncodeZxid(zk_server_->GetNode("/dubbo/svc/providers/equal")->stat.mzxid));
  // Adoption writes the meta record only: the key itself is not written again.
  EXPECT_EQ(etcd_.store().Get("/dubbo/svc/providers/equal")->mod_revision, equal_revision_);
  EXPECT_EQ(Etcd("/dubbo/svc/providers/differs"), "theirs");
  EXPECT_EQ(Etcd("/dubbo/svc/providers/no-znode"), "r");
  EXPECT_EQ(Etcd("/zk2etcd/meta/dubbo/svc/providers/differs"), std::nullopt);

  // From then on the adopted key is ours: changes and deletes reach it.
  ASSERT_TRUE(zk_server_->SetNodeData("/dubbo/svc/providers/equal", "e2").ok());
  Reconcile(nullptr, true, AdoptPolicy::kMatching);
  EXPECT_EQ(Etcd("/dubbo/svc/providers/equal"), "e2");
  ASSERT_TRUE(zk_server_->DeleteNode("/dubbo/svc/providers/equal").ok());
  Reconcile(nullptr, true, AdoptPolicy::kNone);
  EXPECT_EQ(Etcd("/dubbo/svc/providers/equal"), std::nullopt);
  EXPECT_EQ(Etcd("/dubbo/svc/providers/differs"), "theirs");
}

TEST_F(AdoptionTest, AllTakesEveryUnownedKey) {
  const ReconcileReport report = Reconcile(nullptr, true, AdoptPolicy::kAll);
  EXPECT_EQ(report.adopted, 4u);
  EXPECT_EQ(report.fixed_puts, 1u);
  EXPECT_EQ(report.fixed_deletes, 1u);
  EXPECT_EQ(Etcd("/dubbo/svc/providers/differs"), "zk");
  EXPECT_EQ(Etcd("/dubbo/svc/providers/no-znode"), std::nullopt);
  EXPECT_TRUE(Etcd("/zk2etcd/meta/dubbo/svc/providers/differs").has_value());
  EXPECT_EQ(Reconcile(nullptr, false, AdoptPolicy::kNone).VisibleDifferences(), 0u);
}

TEST_F(AdoptionTest, NoneChangesNothingAndReportingOnlyTellsWhatEachPolicyWouldAdopt) {
  const int64_t revision = etcd_.store().revision();
  const ReconcileReport none = Reconcile(nullptr, true, AdoptPolicy::kNone);
  EXPECT_EQ(none.adopted, 0u);
  EXPECT_EQ(none.Count(Difference::Kind::kForeign), 2u);
  EXPECT_EQ(none.Count(Difference::Kind::kConflict), 0u);
  EXPECT_EQ(etcd_.store().revision(), revision);
  const ReconcileReport report = Reconcile(nullptr, false, AdoptPolicy::kMatching);
  EXPECT_EQ(report.WouldAdopt(AdoptPolicy::kNone), 0u);
  EXPECT_EQ(report.WouldAdopt(AdoptPolicy::kMatching), 4u);
  EXPECT_EQ(report.WouldAdopt(AdoptPolicy::kAll), 6u);
  EXPECT_EQ(none.WouldAdopt(AdoptPolicy::kAll), 6u);
  EXPECT_EQ(etcd_.store().revision(), revision);
}

TEST_F(AdoptionTest, AnAdoptionLosesToAConcurrentWriteByAnotherWriter) {
  SinkWrite adopt;
  adopt.type = SinkWrite::Type::kAdopt;
  adopt.key = "/dubbo/svc/providers/equal";
  adopt.version = 7;
  adopt.claim = equal_revision_;
  // Another writer changes the key after the reconciliation read it.
  etcd_.store().PutDirect("/dubbo/svc/providers/equal", "other-writer");
  EXPECT_EQ(Write(*writer_, adopt).value(), WriteOutcome::kForeign);
  EXPECT_EQ(Etcd("/zk2etcd/meta/dubbo/svc/providers/equal"), std::nullopt);
  EXPECT_EQ(Etcd("/dubbo/svc/providers/equal"), "other-writer");
  // Deleted meanwhile: not ours either.
  adopt.claim = etcd_.store().Get("/dubbo/svc/providers/equal")->mod_revision;
  etcd_.store().DeleteDirect("/dubbo/svc/providers/equal");
  EXPECT_EQ(Write(*writer_, adopt).value(), WriteOutcome::kForeign);
  EXPECT_EQ(Etcd("/zk2etcd/meta/dubbo/svc/providers/equal"), std::nullopt);
}

}  // namespace
}  // namespace zk2etcd::job_test

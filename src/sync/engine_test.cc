// The sync engine (reconciler, incremental sync, service) against the in-memory ZooKeeper and
// etcd: the semantics of the brief, §2 and §3.
#include <gtest/gtest.h>

#include <future>
#include <thread>

#include "etcd/fake_etcd_client.h"
#include "ops/log.h"
#include "ownership/fake_ownership_store.h"
#include "sync/incremental_sync.h"
#include "sync/reconciler.h"
#include "sync/sync_service.h"
#include "zk/fake_zk_client.h"

namespace zk2etcd::sync {
namespace {

using std::chrono::milliseconds;
using std::chrono::seconds;

class EngineTest : public ::testing::Test {
 protected:
  EngineTest() {
    writer_options_.initial_backoff = milliseconds(5);
    writer_options_.max_backoff = milliseconds(50);
  }

  void SetUp() override {
    writer_ = std::make_unique<FencedWriter>(etcd_, writer_options_, clock_);
    zk_ = zk_server_->NewClient({});
  }

  void Create(const std::string& path, const std::string& data = "") {
    ASSERT_TRUE(zk_server_->CreateNodeAll(path, data).ok()) << path;
  }

  std::optional<std::string> Etcd(const std::string& key) {
    auto kv = etcd_.store().Get(key);
    if (!kv) return std::nullopt;
    return kv->value;
  }

  ReconcileReport Reconcile(ownership::OwnershipStore* ownership = nullptr, bool fix = true,
                            AdoptPolicy adopt = AdoptPolicy::kNone) {
    Reconciler reconciler(scope_, layout_, etcd_, writer_.get(), ownership, logger_, clock_);
    ReconcileOptions options;
    options.fix = fix;
    options.adopt = adopt;
    auto report = reconciler.Run(*zk_, options);
    EXPECT_TRUE(report.ok()) << report.error().message;
    return report.ok() ? std::move(report).value() : ReconcileReport{};
  }

  SystemClock clock_;
  std::shared_ptr<zk::FakeZkServer> zk_server_ = zk::FakeZkServer::Create(&clock_);
  etcd::FakeEtcdClient etcd_{clock_};
  std::shared_ptr<ops::MemoryLogSink> log_sink_ = std::make_shared<ops::MemoryLogSink>();
  ops::Logger logger_{log_sink_, ops::LogFormat::kJson, ops::LogLevel::kDebug, clock_};
  core::Scope scope_ = core::Scope::Create({"/dubbo"}, {"/dubbo/config"}).value();
  KeyLayout layout_ = KeyLayout::Create("", "/zk2etcd/meta", scope_).value();
  FencedWriterOptions writer_options_;
  std::unique_ptr<FencedWriter> writer_;
  std::unique_ptr<zk::FakeZkClient> zk_;
};

// Polls `condition` every 10 ms for up to 5 s.
bool WaitFor(const std::function<bool()>& condition) {
  for (int i = 0; i < 500; ++i) {
    if (condition()) return true;
    std::this_thread::sleep_for(milliseconds(10));
  }
  return false;
}

// Submits a write and waits for its result.
WriteResult Write(FencedWriter& writer, FencedWrite write) {
  std::promise<WriteResult> done;
  writer.Submit(std::move(write), [&done](const WriteResult& result) { done.set_value(result); });
  return done.get_future().get();
}

TEST_F(EngineTest, AFlatRepairWhoseObservationIsOutdatedFallsBackAndLosesToTheNewerWrite) {
  auto put = [](const std::string& key, const std::string& value, int64_t zxid) {
    FencedWrite write;
    write.key = key;
    write.meta_key = "/zk2etcd/meta" + key;
    write.value = value;
    write.zxid = zxid;
    return write;
  };
  // An incremental write (nested form) lands after the repair observed the key absent.
  ASSERT_EQ(Write(*writer_, put("/dubbo/a", "incremental", 30)).value(), WriteOutcome::kApplied);
  FencedWrite repair = put("/dubbo/a", "repair", 10);
  repair.observed = FencedWrite::Observed{0, 0, 0};
  ASSERT_TRUE(FlatEligible(repair));
  EXPECT_EQ(Write(*writer_, repair).value(), WriteOutcome::kStale);
  EXPECT_EQ(Etcd("/dubbo/a"), "incremental");
  EXPECT_EQ(writer_->flat_fallbacks(), 1u);
  // One that still holds applies flat.
  FencedWrite fresh = put("/dubbo/b", "repair", 10);
  fresh.observed = FencedWrite::Observed{0, 0, 0};
  EXPECT_EQ(Write(*writer_, fresh).value(), WriteOutcome::kApplied);
  EXPECT_EQ(Etcd("/dubbo/b"), "repair");
  EXPECT_EQ(Etcd("/zk2etcd/meta/dubbo/b"), EncodeZxid(10));
  EXPECT_EQ(writer_->flat_fallbacks(), 1u);
}

TEST_F(EngineTest, AFlatBatchThatFailsWhileTheWriterStopsEndsStoppedAndChangesNothing) {
  FencedWrite incremental;
  incremental.key = "/dubbo/a";
  incremental.meta_key = "/zk2etcd/meta/dubbo/a";
  incremental.value = "incremental";
  incremental.zxid = 30;
  ASSERT_EQ(Write(*writer_, incremental).value(), WriteOutcome::kApplied);
  // A repair that observed the key absent, held in flight at etcd.
  FencedWrite repair = incremental;
  repair.value = "repair";
  repair.zxid = 10;
  repair.observed = FencedWrite::Observed{0, 0, 0};
  ASSERT_TRUE(FlatEligible(repair));
  etcd_.HoldTxns(true);
  std::promise<WriteResult> repaired;
  writer_->Submit(repair, [&](const WriteResult& result) { repaired.set_value(result); });
  ASSERT_TRUE(WaitFor([&] { return etcd_.TxnsInFlight() == 1; }));
  std::thread stopper([&] { writer_->Stop(); });
  // Stopping has begun once a new write completes at once with kStopped.
  ASSERT_TRUE(WaitFor([&] {
    bool stopped = false;
    FencedWrite probe = incremental;
    probe.key = probe.meta_key = "/dubbo/probe";
    writer_->Submit(probe, [&](const WriteResult& result) {
      stopped = !result.ok() && result.error().code == WriteError::Code::kStopped;
    });
    return stopped;
  }));
  etcd_.HoldTxns(false);
  stopper.join();
  const WriteResult result = repaired.get_future().get();
  ASSERT_FALSE(result.ok());
  EXPECT_EQ(result.error().code, WriteError::Code::kStopped);
  EXPECT_EQ(writer_->flat_fallbacks(), 1u) << "the flat batch reached etcd and failed there";
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
  for (const size_t batch_bytes : {size_t{1}, size_t{4096}, size_t{1} << 20}) {
    connectors::NodeReadOptions options;
    options.window = 3;
    options.expected_bytes = &expected;
    options.batch_bytes = batch_bytes;
    auto nodes = connectors::ReadNodes(*zk_, paths, options);
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
  Reconciler reconciler(scope_, layout_, etcd_, writer_.get(), nullptr, logger_, clock_);
  ReconcileOptions options;
  options.keep_differences = false;
  auto report = reconciler.Run(*zk_, options);
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
  Reconciler reconciler(scope_, layout_, etcd_, writer_.get(), nullptr, logger_, clock_);
  ReconcileOptions options;
  options.keep_differences = false;
  size_t progress_calls = 0;
  options.on_progress = [&](size_t) { ++progress_calls; };
  auto report = reconciler.Run(*zk_, options);
  ASSERT_TRUE(report.ok()) << report.error().message;
  EXPECT_EQ(report->zk_nodes, 12003u);  // with /dubbo, svc, providers; not the excluded subtree
  EXPECT_EQ(report->etcd_keys, 0u);
  EXPECT_EQ(report->Count(Difference::Kind::kMissing), 12003u);
  EXPECT_EQ(report->fixed_puts, 12003u);
  EXPECT_EQ(progress_calls, 1u);  // at 10,000 nodes
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
  zk_server_->InjectError(zk::op_names::kMultiRead, zk::ZkErrorCode::kConnectionLoss, 1,
                          "/dubbo/z/providers/p5");
  Reconciler reconciler(scope_, layout_, etcd_, writer_.get(), nullptr, logger_, clock_);
  auto failed = reconciler.Run(*zk_, ReconcileOptions{});
  ASSERT_FALSE(failed.ok());
  EXPECT_EQ(failed.error().source, ReconcileError::Source::kZooKeeper);
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
  Reconciler reconciler(scope_, layout_, etcd_, writer_.get(), nullptr, logger_, clock_);
  std::atomic<bool> cancel{true};
  ReconcileOptions options;
  options.cancel = &cancel;
  auto report = reconciler.Run(*zk_, options);
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

// What another tool left: the tree copied by plain puts (no meta record, no Redis record), one
// key with another writer's value where a znode exists, one key with no znode.
class AdoptionTest : public EngineTest {
 protected:
  void SetUp() override {
    EngineTest::SetUp();
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
  FencedWrite adopt;
  adopt.type = FencedWrite::Type::kAdopt;
  adopt.key = "/dubbo/svc/providers/equal";
  adopt.meta_key = "/zk2etcd/meta/dubbo/svc/providers/equal";
  adopt.zxid = 7;
  adopt.claim_mod_revision = equal_revision_;
  // Another writer changes the key after the reconciliation read it.
  etcd_.store().PutDirect("/dubbo/svc/providers/equal", "other-writer");
  EXPECT_EQ(Write(*writer_, adopt).value(), WriteOutcome::kForeign);
  EXPECT_EQ(Etcd("/zk2etcd/meta/dubbo/svc/providers/equal"), std::nullopt);
  EXPECT_EQ(Etcd("/dubbo/svc/providers/equal"), "other-writer");
  // Deleted meanwhile: not ours either.
  adopt.claim_mod_revision = etcd_.store().Get("/dubbo/svc/providers/equal")->mod_revision;
  etcd_.store().DeleteDirect("/dubbo/svc/providers/equal");
  EXPECT_EQ(Write(*writer_, adopt).value(), WriteOutcome::kForeign);
  EXPECT_EQ(Etcd("/zk2etcd/meta/dubbo/svc/providers/equal"), std::nullopt);
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

class IncrementalTest : public EngineTest {
 protected:
  void SetUp() override {
    EngineTest::SetUp();
    IncrementalSyncOptions options;
    options.on_change = [this](const AppliedChange& change) {
      std::lock_guard lock(mutex_);
      changes_.push_back(change);
    };
    incremental_ = std::make_unique<IncrementalSync>(scope_, layout_, *writer_, nullptr, logger_,
                                                     clock_, options);
    zk::ZkEventHandlers handlers;
    handlers.on_watch = [this](const zk::WatchEvent& event) { incremental_->OnWatchEvent(event); };
    watcher_ = zk_server_->NewClient(handlers);
    ASSERT_TRUE(
        zk::blocking::AddWatch(*watcher_, "/dubbo", zk::AddWatchMode::kPersistentRecursive).ok());
    incremental_->SetClient(watcher_.get());
  }
  void TearDown() override {
    incremental_->SetClient(nullptr);
    incremental_->Stop();
  }
  void Settle() {
    // Events are delivered on the client's thread; the writer completes on its own.
    for (int i = 0; i < 200; ++i) {
      if (incremental_->WaitIdle(milliseconds(20)) && writer_->Drain(milliseconds(20)) &&
          incremental_->queue_depth() == 0) {
        std::this_thread::sleep_for(milliseconds(5));
        if (incremental_->queue_depth() == 0) return;
      }
    }
    FAIL() << "incremental sync did not settle";
  }

  std::mutex mutex_;
  std::vector<AppliedChange> changes_;
  std::unique_ptr<zk::FakeZkClient> watcher_;
  std::unique_ptr<IncrementalSync> incremental_;
};

// The Go tool synced only the top of a subtree created at once, and never synced setData.
TEST_F(IncrementalTest, DeepSubtreeDataChangesAndDeletesAreApplied) {
  Create("/dubbo/a/b/c/d", "leaf");
  Settle();
  EXPECT_EQ(Etcd("/dubbo"), "");
  EXPECT_EQ(Etcd("/dubbo/a/b/c"), "");
  EXPECT_EQ(Etcd("/dubbo/a/b/c/d"), "leaf");
  ASSERT_TRUE(zk_server_->SetNodeData("/dubbo/a/b/c/d", "changed").ok());
  Settle();
  EXPECT_EQ(Etcd("/dubbo/a/b/c/d"), "changed");
  ASSERT_TRUE(zk_server_->DeleteNode("/dubbo/a/b/c/d").ok());
  Settle();
  EXPECT_EQ(Etcd("/dubbo/a/b/c/d"), std::nullopt);
  EXPECT_EQ(Etcd("/dubbo/a/b/c"), "");
  Create("/dubbo/config/x", "excluded");
  Settle();
  EXPECT_EQ(Etcd("/dubbo/config/x"), std::nullopt);
}

TEST_F(IncrementalTest, ManyChangesToOneNodeEndWithTheLastValueAndTraceIds) {
  Create("/dubbo/hot", "0");
  for (int i = 1; i <= 200; ++i) {
    ASSERT_TRUE(zk_server_->SetNodeData("/dubbo/hot", std::to_string(i)).ok());
  }
  Settle();
  EXPECT_EQ(Etcd("/dubbo/hot"), "200");
  std::lock_guard lock(mutex_);
  ASSERT_FALSE(changes_.empty());
  EXPECT_LT(changes_.size(), 200u) << "events for a busy path are folded";
  for (const AppliedChange& change : changes_) EXPECT_EQ(change.trace_id.size(), 16u);
}

TEST_F(IncrementalTest, DeleteRacingARecreateLeavesTheNewNode) {
  Create("/dubbo/svc/providers/p", "v1");
  Settle();
  // Delete and re-create before the engine reads: the read sees the new node.
  ASSERT_TRUE(zk_server_->DeleteNode("/dubbo/svc/providers/p").ok());
  Create("/dubbo/svc/providers/p", "v2");
  Settle();
  EXPECT_EQ(Etcd("/dubbo/svc/providers/p"), "v2");
}

TEST_F(IncrementalTest, EtcdOutageDelaysButLosesNothing) {
  etcd_.SetUnavailable(true);
  Create("/dubbo/svc/providers/p", "v1");
  std::this_thread::sleep_for(milliseconds(100));
  EXPECT_EQ(Etcd("/dubbo/svc/providers/p"), std::nullopt);
  EXPECT_TRUE(writer_->retrying());
  etcd_.SetUnavailable(false);
  Settle();
  EXPECT_EQ(Etcd("/dubbo/svc/providers/p"), "v1");
}

class ServiceTest : public EngineTest {
 protected:
  void StartService(WatchMode mode = WatchMode::kAuto) {
    factory_ = zk_server_->NewFactory();
    SyncServiceOptions options;
    options.watch_mode = mode;
    options.fullsync_interval = seconds(0);
    options.retry_initial = milliseconds(10);
    options.retry_max = milliseconds(100);
    options.on_reconcile = [this](const Result<ReconcileReport, ReconcileError>& result) {
      if (result.ok()) ++reconciliations_;
    };
    service_ = std::make_unique<SyncService>(scope_, layout_, *factory_, etcd_, *writer_, nullptr,
                                             logger_, clock_, options);
    thread_ = std::thread([this] { result_ = service_->Run(); });
  }
  void TearDown() override {
    if (service_) service_->Stop();
    if (thread_.joinable()) thread_.join();
  }
  std::unique_ptr<zk::ZkClientFactory> factory_;
  std::unique_ptr<SyncService> service_;
  std::thread thread_;
  Result<void, std::string> result_;
  std::atomic<int> reconciliations_{0};
};

TEST_F(ServiceTest, SyncsAtStartThenFollowsChangesAndStopsCleanly) {
  Create("/dubbo/svc/providers/p1", "a");
  StartService();
  ASSERT_TRUE(WaitFor([&] { return Etcd("/dubbo/svc/providers/p1") == "a"; }));
  EXPECT_TRUE(WaitFor([&] { return service_->Status().first_sync_done; }));
  Create("/dubbo/svc/providers/p2", "b");
  EXPECT_TRUE(WaitFor([&] { return Etcd("/dubbo/svc/providers/p2") == "b"; }));
  service_->Stop();
  thread_.join();
  EXPECT_TRUE(result_.ok());
}

TEST_F(ServiceTest, SessionExpiryOpensANewSessionAndReconciles) {
  Create("/dubbo/svc/providers/p1", "a");
  StartService();
  ASSERT_TRUE(WaitFor([&] { return reconciliations_ >= 1; }));
  const int64_t first_session = service_->Status().session_id;
  zk_server_->ExpireSession(first_session);
  Create("/dubbo/svc/providers/p2", "while-expired");
  ASSERT_TRUE(WaitFor([&] { return Etcd("/dubbo/svc/providers/p2") == "while-expired"; }));
  EXPECT_TRUE(WaitFor([&] { return service_->Status().session_id != first_session; }));
  EXPECT_GE(reconciliations_, 2);
}

// ZooKeeper 3.4/3.5 have no addWatch: the service falls back to one-shot watches on every node.
TEST_F(ServiceTest, ServersWithoutPersistentWatchesGetClassicWatchesWithoutGaps) {
  zk_server_->SetAddWatchSupported(false);
  Create("/dubbo/svc/providers/p1", "a");
  StartService();
  ASSERT_TRUE(WaitFor([&] { return Etcd("/dubbo/svc/providers/p1") == "a"; }));
  EXPECT_TRUE(service_->Status().classic_watches);
  ASSERT_TRUE(zk_server_->SetNodeData("/dubbo/svc/providers/p1", "b").ok());
  EXPECT_TRUE(WaitFor([&] { return Etcd("/dubbo/svc/providers/p1") == "b"; }));
  // Twice: the data watch must have been re-armed by the read that followed the first event.
  ASSERT_TRUE(zk_server_->SetNodeData("/dubbo/svc/providers/p1", "c").ok());
  EXPECT_TRUE(WaitFor([&] { return Etcd("/dubbo/svc/providers/p1") == "c"; }));
  Create("/dubbo/new/a/b/c", "deep");  // under a leaf that had no children before
  EXPECT_TRUE(WaitFor([&] { return Etcd("/dubbo/new/a/b/c") == "deep"; }));
  Create("/dubbo/svc/providers/p1/child", "under a former leaf");
  EXPECT_TRUE(WaitFor([&] { return Etcd("/dubbo/svc/providers/p1/child").has_value(); }));
  ASSERT_TRUE(zk_server_->DeleteTree("/dubbo/new").ok());
  EXPECT_TRUE(WaitFor([&] { return !Etcd("/dubbo/new/a/b/c") && !Etcd("/dubbo/new"); }));
  Create("/dubbo/config/x", "excluded");
  std::this_thread::sleep_for(milliseconds(100));
  EXPECT_EQ(Etcd("/dubbo/config/x"), std::nullopt);
}

TEST_F(ServiceTest, PersistentModeOnAnOldServerIsAClearFatalError) {
  zk_server_->SetAddWatchSupported(false);
  StartService(WatchMode::kPersistent);
  thread_.join();
  ASSERT_FALSE(result_.ok());
  EXPECT_NE(result_.error().find("persistent recursive watches"), std::string::npos);
}

// Two replicas: only the elected one writes; the other takes over when the leader resigns, and a
// deposed leader's writes are refused by the leadership fence.
TEST_F(EngineTest, OnlyTheElectedReplicaWritesAndTheStandbyTakesOver) {
  auto make = [&](const std::string& identity, etcd::FakeEtcdClient& etcd, FencedWriter& writer,
                  zk::ZkClientFactory& factory) {
    SyncServiceOptions options;
    options.fullsync_interval = seconds(0);
    options.retry_initial = milliseconds(10);
    options.retry_max = milliseconds(100);
    options.election = ElectionOptions{"/zk2etcd/election", identity, seconds(5)};
    return std::make_unique<SyncService>(scope_, layout_, factory, etcd, writer, nullptr, logger_,
                                         clock_, options);
  };
  etcd::FakeEtcdClient etcd_b(etcd_.store(), clock_);
  FencedWriter writer_b(etcd_b, writer_options_, clock_);
  auto factory_a = zk_server_->NewFactory();
  auto factory_b = zk_server_->NewFactory();
  Create("/dubbo/svc/providers/p1", "a");

  auto a = make("replica-a", etcd_, *writer_, *factory_a);
  std::thread thread_a([&] { (void)a->Run(); });
  auto wait_for = [](const std::function<bool()>& condition) {
    for (int i = 0; i < 500; ++i) {
      if (condition()) return true;
      std::this_thread::sleep_for(milliseconds(10));
    }
    return false;
  };
  ASSERT_TRUE(wait_for([&] { return a->Status().leader && a->Status().first_sync_done; }));
  auto b = make("replica-b", etcd_b, writer_b, *factory_b);
  std::thread thread_b([&] { (void)b->Run(); });
  ASSERT_TRUE(wait_for([&] { return b->Status().zk_connected; }));
  EXPECT_FALSE(b->Status().leader);
  EXPECT_EQ(Etcd("/dubbo/svc/providers/p1"), "a");

  // The leader stops (and resigns): the standby leads and syncs what changed meanwhile.
  a->Stop();
  thread_a.join();
  Create("/dubbo/svc/providers/p2", "after-handover");
  EXPECT_TRUE(wait_for([&] { return b->Status().leader; }));
  EXPECT_TRUE(wait_for([&] { return Etcd("/dubbo/svc/providers/p2") == "after-handover"; }));

  // A write fenced by the old leadership changes nothing.
  const etcd::LeaderKey old_leader{"/zk2etcd/election", "/zk2etcd/election/gone", 1, 0};
  writer_->SetLeader(old_leader);
  std::optional<WriteResult> outcome;
  writer_->Submit(
      {FencedWrite::Type::kPut, "/dubbo/svc/providers/p2", "/zk2etcd/meta/dubbo/svc/providers/p2",
       "stale leader", 1 << 30, std::nullopt, std::nullopt},
      [&](const WriteResult& result) { outcome = result; });
  ASSERT_TRUE(writer_->Drain(seconds(5)));
  ASSERT_TRUE(outcome.has_value());
  ASSERT_FALSE(outcome->ok());
  EXPECT_EQ(outcome->error().code, WriteError::Code::kNotLeader);
  EXPECT_EQ(Etcd("/dubbo/svc/providers/p2"), "after-handover");
  b->Stop();
  thread_b.join();
}

TEST(DecideTakeoverTest, OnlyAStaleKeyOfThisReplicaIsTakenOverAndOnlyOnce) {
  const etcd::KeyValue mine{"/e/1", "replica-a", 10, 10, 1, 111};
  const etcd::KeyValue other{"/e/2", "replica-b", 11, 11, 1, 222};
  // Nobody leads, or someone else does: wait.
  EXPECT_EQ(DecideTakeover(std::nullopt, "replica-a", 0, true), TakeoverAction::kNone);
  EXPECT_EQ(DecideTakeover(other, "replica-a", 0, true), TakeoverAction::kNone);
  EXPECT_EQ(DecideTakeover(other, "replica-a", 333, false), TakeoverAction::kNone);
  // A restarted process finds its predecessor's key.
  EXPECT_EQ(DecideTakeover(mine, "replica-a", 0, true), TakeoverAction::kTakeOver);
  // Later campaigns never take over a key of the same identity: another live process holds it.
  EXPECT_EQ(DecideTakeover(mine, "replica-a", 0, false), TakeoverAction::kWarnDuplicate);
  EXPECT_EQ(DecideTakeover(mine, "replica-a", 333, false), TakeoverAction::kWarnDuplicate);
  // The key is bound to the lease this process lost: its own, whatever the identity says.
  EXPECT_EQ(DecideTakeover(mine, "replica-a", 111, false), TakeoverAction::kRevokeOwnLease);
  EXPECT_EQ(DecideTakeover(other, "replica-a", 222, false), TakeoverAction::kRevokeOwnLease);
  // No identity, or a key without a lease, is never taken over.
  EXPECT_EQ(DecideTakeover(mine, "", 0, true), TakeoverAction::kNone);
  etcd::KeyValue leaseless = mine;
  leaseless.lease = 0;
  EXPECT_EQ(DecideTakeover(leaseless, "replica-a", 0, true), TakeoverAction::kNone);
}

class TakeoverTest : public EngineTest {
 protected:
  std::unique_ptr<SyncService> Make(const std::string& identity, etcd::EtcdClient& etcd,
                                    FencedWriter& writer, zk::ZkClientFactory& factory) {
    SyncServiceOptions options;
    options.fullsync_interval = seconds(0);
    options.retry_initial = milliseconds(10);
    options.retry_max = milliseconds(100);
    options.election = ElectionOptions{"/zk2etcd/election", identity, seconds(60)};
    return std::make_unique<SyncService>(scope_, layout_, factory, etcd, writer, nullptr, logger_,
                                         clock_, options);
  }
  size_t LogLines(const std::string& text) {
    const auto lines = log_sink_->Lines();
    return std::count_if(lines.begin(), lines.end(), [&](const std::string& line) {
      return line.find(text) != std::string::npos;
    });
  }
};

// A process killed with -9 leaves its leader key behind, alive for the lease (60 s here). Its
// restart (the same identity) takes it over at once and syncs.
TEST_F(TakeoverTest, ARestartedReplicaTakesOverTheKeyItsKilledPredecessorLeft) {
  {
    etcd::FakeEtcdClient dead(etcd_.store(), clock_);
    auto lease = dead.LeaseGrant(seconds(60));
    ASSERT_TRUE(lease.ok());
    ASSERT_TRUE(dead.CampaignAndWait("/zk2etcd/election", lease->id, "replica-a").ok());
  }
  ASSERT_TRUE(etcd_.Leader("/zk2etcd/election").ok());
  Create("/dubbo/svc/providers/p1", "a");
  auto factory = zk_server_->NewFactory();
  auto restarted = Make("replica-a", etcd_, *writer_, *factory);
  std::thread thread([&] { (void)restarted->Run(); });
  EXPECT_TRUE(WaitFor([&] { return Etcd("/dubbo/svc/providers/p1") == "a"; }));
  EXPECT_TRUE(restarted->Status().leader);
  EXPECT_EQ(LogLines("took over the election from a previous process with the same identity"), 1u);
  restarted->Stop();
  thread.join();
}

// A standby of another identity that was already waiting wins when the stale key goes; the
// restarted replica then stands by.
TEST_F(TakeoverTest, AWaitingStandbyOfAnotherIdentityWinsTheTakeoverRace) {
  etcd::FakeEtcdClient dead(etcd_.store(), clock_);
  auto lease = dead.LeaseGrant(seconds(60));
  ASSERT_TRUE(lease.ok());
  ASSERT_TRUE(dead.CampaignAndWait("/zk2etcd/election", lease->id, "replica-a").ok());
  etcd::FakeEtcdClient etcd_b(etcd_.store(), clock_);
  FencedWriter writer_b(etcd_b, writer_options_, clock_);
  auto factory_b = zk_server_->NewFactory();
  auto standby = Make("replica-b", etcd_b, writer_b, *factory_b);
  std::thread thread_b([&] { (void)standby->Run(); });
  ASSERT_TRUE(WaitFor([&] { return standby->Status().campaigning; }));

  auto factory_a = zk_server_->NewFactory();
  auto restarted = Make("replica-a", etcd_, *writer_, *factory_a);
  std::thread thread_a([&] { (void)restarted->Run(); });
  EXPECT_TRUE(WaitFor([&] { return standby->Status().leader; }));
  EXPECT_TRUE(WaitFor([&] { return restarted->Status().campaigning; }));
  EXPECT_FALSE(restarted->Status().leader);
  restarted->Stop();
  thread_a.join();
  standby->Stop();
  thread_b.join();
}

// Two live processes misconfigured with one identity: the second takes over once; then one of
// them leads and the other stands by (warning when it sees its identity lead); neither takes
// the election from the other again.
TEST_F(TakeoverTest, TwoLiveProcessesWithOneIdentityDoNotFlap) {
  Create("/dubbo/svc/providers/p1", "a");
  auto factory_a = zk_server_->NewFactory();
  auto first = Make("same", etcd_, *writer_, *factory_a);
  std::thread thread_a([&] { (void)first->Run(); });
  ASSERT_TRUE(WaitFor([&] { return first->Status().leader && first->Status().first_sync_done; }));

  etcd::FakeEtcdClient etcd_b(etcd_.store(), clock_);
  FencedWriter writer_b(etcd_b, writer_options_, clock_);
  auto factory_b = zk_server_->NewFactory();
  auto second = Make("same", etcd_b, writer_b, *factory_b);
  std::thread thread_b([&] { (void)second->Run(); });
  EXPECT_TRUE(WaitFor([&] { return LogLines("took over the election") == 1; }));
  auto settled = [&] {
    const SyncStatus a = first->Status(), b = second->Status();
    return a.leader != b.leader && (a.campaigning || b.campaigning);
  };
  ASSERT_TRUE(WaitFor(settled));
  const bool second_leads = second->Status().leader;
  if (second_leads) {
    EXPECT_TRUE(WaitFor([&] { return LogLines("another live process leads") >= 1; }));
  }
  // Stable: a while later the same process leads and nobody took over again.
  std::this_thread::sleep_for(milliseconds(500));
  EXPECT_TRUE(settled());
  EXPECT_EQ(second->Status().leader, second_leads);
  EXPECT_EQ(LogLines("took over the election"), 1u);
  Create("/dubbo/svc/providers/p2", "b");
  EXPECT_TRUE(WaitFor([&] { return Etcd("/dubbo/svc/providers/p2") == "b"; }));
  first->Stop();
  thread_a.join();
  second->Stop();
  thread_b.join();
}

}  // namespace
}  // namespace zk2etcd::sync

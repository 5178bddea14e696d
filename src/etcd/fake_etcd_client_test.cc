// FakeEtcdClient must behave like etcd 3.4 where the engine can tell: revisions, versions,
// compares, paged reads at one revision, compaction, watch replay, leases on the injected clock,
// elections, the transaction window, and the faults it offers.
#include "etcd/fake_etcd_client.h"

#include <gtest/gtest.h>

#include <atomic>
#include <future>

#include "etcd/recording_observer.h"

namespace zk2etcd::etcd {
namespace {

using std::chrono::seconds;

class FakeEtcdClientTest : public ::testing::Test {
 protected:
  FakeEtcdClientTest() : client_(clock_, Options()) {}
  FakeEtcdOptions Options() {
    FakeEtcdOptions options;
    options.observer = &observer_;
    return options;
  }

  FakeClock clock_;
  RecordingObserver observer_;
  FakeEtcdClient client_;
};

// Collects watch callbacks.
struct WatchLog {
  std::mutex mutex;
  std::vector<WatchEvent> events;
  std::optional<Error> error;
  EtcdClient::WatchCallback Callback() {
    return [this](EtcdResult<WatchEvents> result) {
      std::lock_guard lock(mutex);
      if (!result.ok()) {
        error = result.error();
        return;
      }
      for (auto& event : result->events) events.push_back(std::move(event));
    };
  }
  std::vector<int64_t> Revisions() {
    std::lock_guard lock(mutex);
    std::vector<int64_t> revisions;
    for (const auto& event : events) revisions.push_back(event.kv.mod_revision);
    return revisions;
  }
};

TEST_F(FakeEtcdClientTest, EachWriteTransactionIsOneRevisionWithVersions) {
  EXPECT_EQ(client_.store().revision(), 1);
  ASSERT_TRUE(client_.Put("/a", "1").ok());
  EXPECT_EQ(client_.store().revision(), 2);
  TxnRequest txn;
  txn.success = {Op::Put("/a", "2"), Op::Put("/b", "1")};
  auto response = client_.Txn(txn);
  ASSERT_TRUE(response.ok()) << response.error().ToString();
  EXPECT_TRUE(response->succeeded);
  EXPECT_EQ(response->revision, 3);
  auto a = client_.store().Get("/a");
  ASSERT_TRUE(a);
  EXPECT_EQ(*a, (KeyValue{"/a", "2", 2, 3, 2, 0}));
  EXPECT_EQ(*client_.store().Get("/b"), (KeyValue{"/b", "1", 3, 3, 1, 0}));

  // A transaction that changes nothing keeps the revision.
  TxnRequest read_only;
  read_only.success = {Op::Range(RangeRequest::Prefix("/")), Op::Delete("/missing")};
  auto read = client_.Txn(read_only);
  ASSERT_TRUE(read.ok());
  EXPECT_EQ(read->revision, 3);
  EXPECT_EQ(read->responses[0].kvs.size(), 2u);
  EXPECT_EQ(read->responses[1].deleted, 0);

  // Deleting and re-creating restarts the version and the create revision.
  auto deleted = client_.Delete("/a");
  ASSERT_TRUE(deleted.ok());
  EXPECT_EQ(deleted->deleted, 1);
  EXPECT_EQ(deleted->revision, 4);
  ASSERT_TRUE(client_.Put("/a", "3").ok());
  EXPECT_EQ(*client_.store().Get("/a"), (KeyValue{"/a", "3", 5, 5, 1, 0}));
}

TEST_F(FakeEtcdClientTest, ComparesFollowEtcd) {
  ASSERT_TRUE(client_.Put("/meta/k", "0000000000000005").ok());  // revision 2
  auto run = [this](Compare compare) {
    TxnRequest txn;
    txn.compares.push_back(std::move(compare));
    auto response = client_.Txn(txn);
    EXPECT_TRUE(response.ok());
    return response.ok() && response->succeeded;
  };
  EXPECT_TRUE(run(Compare::Value("/meta/k", CompareOp::kLess, "0000000000000006")));
  EXPECT_FALSE(run(Compare::Value("/meta/k", CompareOp::kLess, "0000000000000005")));
  EXPECT_TRUE(run(Compare::Value("/meta/k", CompareOp::kEqual, "0000000000000005")));
  EXPECT_TRUE(run(Compare::Value("/meta/k", CompareOp::kNotEqual, "x")));
  EXPECT_TRUE(run(Compare::Value("/meta/k", CompareOp::kGreater, "0000000000000004")));
  EXPECT_TRUE(run(Compare::ModRevision("/meta/k", CompareOp::kEqual, 2)));
  EXPECT_TRUE(run(Compare::ModRevision("/meta/k", CompareOp::kLess, 3)));
  EXPECT_TRUE(run(Compare::CreateRevision("/meta/k", CompareOp::kEqual, 2)));
  EXPECT_TRUE(run(Compare::Version("/meta/k", CompareOp::kEqual, 1)));
  EXPECT_TRUE(run(Compare::Lease("/meta/k", CompareOp::kEqual, 0)));
  // A missing key: numbers are zero, every value compare fails.
  EXPECT_TRUE(run(Compare::Version("/none", CompareOp::kEqual, 0)));
  EXPECT_TRUE(run(Compare::CreateRevision("/none", CompareOp::kEqual, 0)));
  EXPECT_FALSE(run(Compare::Value("/none", CompareOp::kLess, "z")));
  EXPECT_FALSE(run(Compare::Value("/none", CompareOp::kNotEqual, "z")));
  // Over a range: must hold for every key.
  ASSERT_TRUE(client_.Put("/meta/l", "0000000000000009").ok());
  Compare range = Compare::Value("/meta/", CompareOp::kLess, "0000000000000007");
  range.range_end = PrefixEnd("/meta/");
  EXPECT_FALSE(run(range));
}

TEST_F(FakeEtcdClientTest, AFencedPutThatLosesItsCompareChangesNothing) {
  // The engine's fence: write the key and its meta record only if the stored mzxid is older.
  auto fenced = [](const std::string& mzxid, const std::string& value) {
    TxnRequest txn;
    txn.compares.push_back(Compare::Value("/meta/dubbo/a", CompareOp::kLess, mzxid));
    txn.success = {Op::Put("/dubbo/a", value), Op::Put("/meta/dubbo/a", mzxid)};
    return txn;
  };
  ASSERT_TRUE(client_.Put("/dubbo/a", "new").ok());
  ASSERT_TRUE(client_.Put("/meta/dubbo/a", "0000000000000009").ok());
  const int64_t before = client_.store().revision();
  auto stale = client_.Txn(fenced("0000000000000008", "old"));
  ASSERT_TRUE(stale.ok());
  EXPECT_FALSE(stale->succeeded);
  EXPECT_EQ(client_.store().revision(), before);
  EXPECT_EQ(client_.store().Get("/dubbo/a")->value, "new");
  auto fresh = client_.Txn(fenced("0000000000000010", "newer"));
  ASSERT_TRUE(fresh.ok());
  EXPECT_TRUE(fresh->succeeded);
  EXPECT_EQ(client_.store().Get("/dubbo/a")->value, "newer");
}

TEST_F(FakeEtcdClientTest, RefusesWhatEtcdRefuses) {
  TxnRequest too_many;
  for (int i = 0; i < 129; ++i) too_many.success.push_back(Op::Put("/k" + std::to_string(i), ""));
  auto refused = client_.Txn(too_many);
  ASSERT_FALSE(refused.ok());
  EXPECT_EQ(refused.error().code, ErrorCode::kTooManyOps);
  EXPECT_EQ(client_.Calls("txn"), 0) << "refused before sending";
  EXPECT_EQ(client_.store().revision(), 1);
  EXPECT_EQ(observer_.Count("txn", "too_many_ops"), 1);

  TxnRequest duplicate;
  duplicate.success = {Op::Put("/a", "1"), Op::Put("/a", "2")};
  EXPECT_EQ(client_.Txn(duplicate).error().code, ErrorCode::kInvalidArgument);
  TxnRequest put_in_deleted_range;
  put_in_deleted_range.success = {Op::Delete("/a/", "/a0"), Op::Put("/a/x", "2")};
  EXPECT_EQ(client_.Txn(put_in_deleted_range).error().code, ErrorCode::kInvalidArgument);
  TxnRequest unknown_lease;
  unknown_lease.success = {Op::Put("/a", "1", 12345)};
  EXPECT_EQ(client_.Txn(unknown_lease).error().code, ErrorCode::kNotFound);
  EXPECT_EQ(client_.store().revision(), 1);
}

TEST_F(FakeEtcdClientTest, NestedTransactionsDecideOnTheStateBeforeTheTransaction) {
  ASSERT_TRUE(client_.Put("/meta/b", "5").ok());
  TxnRequest for_a;  // a new key: create when absent
  for_a.compares.push_back(Compare::Version("/meta/a", CompareOp::kEqual, 0));
  for_a.success = {Op::Put("/a", "A"), Op::Put("/meta/a", "7")};
  TxnRequest for_b;  // an existing key: only if older
  for_b.compares.push_back(Compare::Value("/meta/b", CompareOp::kLess, "4"));
  for_b.success = {Op::Put("/b", "B"), Op::Put("/meta/b", "4")};
  TxnRequest batch;
  batch.success = {Op::Txn(for_a), Op::Txn(for_b)};
  auto response = client_.Txn(batch);
  ASSERT_TRUE(response.ok()) << response.error().ToString();
  ASSERT_EQ(response->responses.size(), 2u);
  EXPECT_TRUE(response->responses[0].txn->succeeded);
  EXPECT_FALSE(response->responses[1].txn->succeeded);
  EXPECT_EQ(client_.store().Get("/a")->value, "A");
  EXPECT_FALSE(client_.store().Get("/b"));
}

TEST_F(FakeEtcdClientTest, PagesAreReadAtTheFirstPagesRevision) {
  for (int i = 0; i < 25; ++i) {
    ASSERT_TRUE(client_.Put("/p/" + std::string(1, static_cast<char>('a' + i)), "v").ok());
  }
  ASSERT_TRUE(client_.Put("/q", "outside").ok());
  int pages = 0;
  std::vector<std::string> keys;
  int64_t first_revision = 0;
  auto revision = ForEachPage(client_, RangeRequest::Prefix("/p/"), 10, [&](RangeResponse& page) {
    if (pages++ == 0) {
      first_revision = page.revision;
      // Changes after the first page must not show up in later pages.
      EXPECT_TRUE(client_.Put("/p/zz", "late").ok());
      EXPECT_TRUE(client_.Delete("/p/m").ok());
    }
    for (const auto& kv : page.kvs) keys.push_back(kv.key);
    return true;
  });
  ASSERT_TRUE(revision.ok()) << revision.error().ToString();
  EXPECT_EQ(*revision, first_revision);
  EXPECT_EQ(pages, 3);
  ASSERT_EQ(keys.size(), 25u);
  EXPECT_EQ(keys.front(), "/p/a");
  EXPECT_EQ(keys.back(), "/p/y");
  EXPECT_EQ(std::count(keys.begin(), keys.end(), "/p/m"), 1);

  RangeRequest keys_only = RangeRequest::Prefix("/p/");
  keys_only.keys_only = true;
  auto all = RangeAll(client_, keys_only, 7);
  ASSERT_TRUE(all.ok());
  EXPECT_EQ(all->kvs.size(), 25u);  // "/p/zz" added, "/p/m" deleted
  EXPECT_TRUE(all->kvs[0].value.empty());
  auto count = CountRange(client_, RangeRequest::Prefix("/p/"));
  ASSERT_TRUE(count.ok());
  EXPECT_EQ(*count, 25);

  RangeRequest limited = RangeRequest::Prefix("/p/");
  limited.limit = 3;
  auto page = client_.Range(limited);
  ASSERT_TRUE(page.ok());
  EXPECT_EQ(page->kvs.size(), 3u);
  EXPECT_TRUE(page->more);
  EXPECT_EQ(page->count, 25);
}

TEST_F(FakeEtcdClientTest, CompactionEndsOldReadsAndWatches) {
  ASSERT_TRUE(client_.Put("/c", "1").ok());  // 2
  ASSERT_TRUE(client_.Put("/c", "2").ok());  // 3
  ASSERT_TRUE(client_.Put("/c", "3").ok());  // 4
  RangeRequest at_two{"/c", "", 0, 2, false, false};
  EXPECT_EQ(client_.Range(at_two)->kvs.at(0).value, "1");
  client_.store().Compact(3);
  auto old = client_.Range(at_two);
  ASSERT_FALSE(old.ok());
  EXPECT_EQ(old.error().code, ErrorCode::kCompacted);
  EXPECT_EQ(old.error().compact_revision, 3);
  RangeRequest at_three{"/c", "", 0, 3, false, false};
  EXPECT_EQ(client_.Range(at_three)->kvs.at(0).value, "2");

  WatchLog log;
  auto watch = client_.Watch(WatchRequest::Prefix("/c", 2), log.Callback());
  client_.Drain();
  ASSERT_TRUE(log.error);
  EXPECT_EQ(log.error->code, ErrorCode::kCompacted);
  EXPECT_EQ(log.error->compact_revision, 3);
}

TEST_F(FakeEtcdClientTest, WatchReplaysFromARevisionThenFollows) {
  ASSERT_TRUE(client_.Put("/w/a", "1").ok());  // 2
  ASSERT_TRUE(client_.Put("/x", "1").ok());    // 3
  ASSERT_TRUE(client_.Put("/w/b", "1").ok());  // 4
  WatchLog log;
  auto watch = client_.Watch(WatchRequest::Prefix("/w/", 3), log.Callback());
  ASSERT_TRUE(client_.Delete("/w/a").ok());  // 5
  TxnRequest txn;
  txn.success = {Op::Put("/w/c", "1"), Op::Put("/w/d", "1")};
  ASSERT_TRUE(client_.Txn(txn).ok());  // 6
  client_.Drain();
  EXPECT_EQ(log.Revisions(), (std::vector<int64_t>{4, 5, 6, 6}));
  {
    std::lock_guard lock(log.mutex);
    EXPECT_EQ(log.events[1].type, WatchEvent::Type::kDelete);
    EXPECT_EQ(log.events[1].kv.key, "/w/a");
  }
  watch->Cancel();
  ASSERT_TRUE(client_.Put("/w/e", "1").ok());
  client_.Drain();
  EXPECT_EQ(log.Revisions().size(), 4u) << "no events after Cancel";
}

TEST_F(FakeEtcdClientTest, AnUnavailableClientHoldsWatchEventsAndDeliversThemLater) {
  FakeEtcdClient other(client_.store(), clock_);
  WatchLog log;
  auto watch = client_.Watch(WatchRequest::Prefix("/w/", 0), log.Callback());
  ASSERT_TRUE(other.Put("/w/1", "a").ok());
  client_.Drain();
  client_.SetUnavailable(true);
  EXPECT_EQ(client_.Range(RangeRequest::Prefix("/w/")).error().code, ErrorCode::kUnavailable);
  ASSERT_TRUE(other.Put("/w/2", "b").ok());
  client_.Drain();
  EXPECT_EQ(log.Revisions(), (std::vector<int64_t>{2}));
  client_.SetUnavailable(false);
  client_.Drain();
  EXPECT_EQ(log.Revisions(), (std::vector<int64_t>{2, 3}));
}

TEST_F(FakeEtcdClientTest, LeasesExpireOnTheClockUnlessKeptAlive) {
  auto lease = client_.LeaseGrant(seconds(10));
  ASSERT_TRUE(lease.ok());
  ASSERT_TRUE(client_.Put("/eph", "x", lease->id).ok());
  auto kept = client_.LeaseGrant(seconds(10));
  ASSERT_TRUE(client_.Put("/kept", "x", kept->id).ok());
  std::atomic<int> lost{0};
  auto keepalive = client_.LeaseKeepAlive(kept->id, [&lost](const Error&) { ++lost; });

  clock_.Advance(seconds(9));
  client_.Tick();
  EXPECT_TRUE(client_.store().Get("/eph"));
  EXPECT_EQ(client_.LeaseTimeToLive(lease->id)->ttl_seconds, 1);
  clock_.Advance(seconds(1));
  client_.Tick();
  EXPECT_FALSE(client_.store().Get("/eph"));
  EXPECT_EQ(client_.LeaseTimeToLive(lease->id)->ttl_seconds, -1);
  EXPECT_TRUE(client_.store().Get("/kept"));

  // The client loses etcd: its lease runs out one TTL later and it is told so.
  client_.SetUnavailable(true);
  clock_.Advance(seconds(10));
  client_.Tick();
  client_.Drain();
  EXPECT_FALSE(client_.store().Get("/kept"));
  EXPECT_EQ(lost.load(), 1);
  client_.SetUnavailable(false);
  EXPECT_EQ(client_.LeaseRevoke(kept->id).error().code, ErrorCode::kNotFound);
}

TEST_F(FakeEtcdClientTest, TheNextCandidateLeadsWhenTheLeadersLeaseExpires) {
  FakeEtcdClient other(client_.store(), clock_);
  auto first_lease = other.LeaseGrant(seconds(5));
  auto first_keepalive = other.LeaseKeepAlive(first_lease->id, [](const Error&) {});
  auto first = other.CampaignAndWait("/election", first_lease->id, "first");
  ASSERT_TRUE(first.ok()) << first.error().ToString();
  EXPECT_EQ(client_.Leader("/election")->value, "first");

  std::vector<std::string> observed;
  std::mutex observed_mutex;
  auto observer = client_.Observe("/election", [&](EtcdResult<KeyValue> kv) {
    std::lock_guard lock(observed_mutex);
    if (kv.ok()) observed.push_back(kv->value);
  });
  auto second_lease = client_.LeaseGrant(seconds(5));
  auto second_keepalive = client_.LeaseKeepAlive(second_lease->id, [](const Error&) {});
  std::promise<EtcdResult<LeaderKey>> elected;
  auto campaign = client_.Campaign(
      "/election", second_lease->id, "second",
      [&elected](EtcdResult<LeaderKey> leader) { elected.set_value(std::move(leader)); });
  client_.Drain();
  auto future = elected.get_future();
  EXPECT_EQ(future.wait_for(std::chrono::milliseconds(0)), std::future_status::timeout);
  ASSERT_TRUE(other.Proclaim(*first, "first-again").ok());

  other.SetUnavailable(true);  // the leader's process stops renewing
  clock_.Advance(seconds(4));
  client_.Tick();
  client_.Drain();
  EXPECT_EQ(future.wait_for(std::chrono::milliseconds(0)), std::future_status::timeout);
  clock_.Advance(seconds(1));
  client_.Tick();
  auto second = future.get();
  ASSERT_TRUE(second.ok()) << second.error().ToString();
  EXPECT_EQ(client_.Leader("/election")->value, "second");
  EXPECT_EQ(other.Proclaim(*first, "x").error().code, ErrorCode::kUnavailable);
  other.SetUnavailable(false);
  EXPECT_EQ(other.Proclaim(*first, "x").error().code, ErrorCode::kFailedPrecondition);
  client_.Drain();
  {
    std::lock_guard lock(observed_mutex);
    EXPECT_EQ(observed, (std::vector<std::string>{"first", "first-again", "second"}));
  }
  ASSERT_TRUE(client_.Resign(*second).ok());
  EXPECT_EQ(client_.Leader("/election").error().code, ErrorCode::kNotFound);
}

TEST_F(FakeEtcdClientTest, TheWindowBoundsTransactionsInFlight) {
  client_.HoldTxns(true);
  std::atomic<int> completed{0};
  std::vector<int64_t> order;
  std::mutex order_mutex;
  for (int i = 0; i < 10; ++i) {
    TxnRequest txn;
    txn.success.push_back(Op::Put("/t/" + std::to_string(i), "v"));
    client_.TxnAsync(txn, {}, [&, i](EtcdResult<TxnResponse> result) {
      ASSERT_TRUE(result.ok());
      std::lock_guard lock(order_mutex);
      order.push_back(i);
      ++completed;
    });
  }
  EXPECT_EQ(client_.TxnsInFlight(), 4);
  EXPECT_EQ(client_.PendingTxns(), 10u);
  client_.Drain();
  EXPECT_EQ(completed.load(), 0);
  client_.HoldTxns(false);
  while (completed.load() < 10) client_.Drain();
  EXPECT_EQ(client_.MaxTxnsInFlightSeen(), 4);
  EXPECT_EQ(order, (std::vector<int64_t>{0, 1, 2, 3, 4, 5, 6, 7, 8, 9}));
  EXPECT_EQ(client_.store().revision(), 11);
}

TEST_F(FakeEtcdClientTest, DelayedTransactionsCompleteWhenTheClockSaysSo) {
  client_.SetTxnDelay(seconds(2));
  std::atomic<bool> done{false};
  TxnRequest txn;
  txn.success.push_back(Op::Put("/slow", "v"));
  client_.TxnAsync(txn, {}, [&done](EtcdResult<TxnResponse>) { done = true; });
  clock_.Advance(seconds(1));
  client_.Tick();
  client_.Drain();
  EXPECT_FALSE(done.load());
  clock_.Advance(seconds(1));
  client_.Tick();
  client_.Drain();
  EXPECT_TRUE(done.load());
  EXPECT_TRUE(client_.store().Get("/slow"));
}

TEST_F(FakeEtcdClientTest, InjectedFaultsFailBeforeOrAfterApplying) {
  client_.InjectFault("txn", ErrorCode::kUnavailable);
  TxnRequest txn;
  txn.success.push_back(Op::Put("/f", "1"));
  EXPECT_EQ(client_.Txn(txn).error().code, ErrorCode::kUnavailable);
  EXPECT_FALSE(client_.store().Get("/f"));
  EXPECT_TRUE(client_.Txn(txn).ok()) << "one fault only";

  client_.InjectFault("txn", ErrorCode::kDeadlineExceeded, 1, FaultPhase::kAfterApply);
  txn.success[0].value = "2";
  EXPECT_EQ(client_.Txn(txn).error().code, ErrorCode::kDeadlineExceeded);
  EXPECT_EQ(client_.store().Get("/f")->value, "2") << "applied, though the caller saw an error";

  client_.InjectFault("range", ErrorCode::kPermissionDenied, -1);
  EXPECT_EQ(client_.Range(RangeRequest::Prefix("/")).error().code, ErrorCode::kPermissionDenied);
  EXPECT_EQ(client_.Range(RangeRequest::Prefix("/")).error().code, ErrorCode::kPermissionDenied);
  client_.ClearFaults();
  EXPECT_TRUE(client_.Range(RangeRequest::Prefix("/")).ok());
  EXPECT_EQ(client_.Calls("range"), 3);
  EXPECT_EQ(observer_.Count("txn", "unavailable"), 1);
  EXPECT_EQ(observer_.Count("txn", "deadline_exceeded"), 1);
  EXPECT_EQ(observer_.Count("range", "permission_denied"), 2);
  EXPECT_EQ(observer_.Count("range", "success"), 1);
}

TEST_F(FakeEtcdClientTest, SynchronousCallsFromACallbackAreRefused) {
  std::promise<ErrorCode> code;
  TxnRequest txn;
  txn.success.push_back(Op::Put("/cb", "1"));
  client_.TxnAsync(txn, {}, [&](EtcdResult<TxnResponse>) {
    EXPECT_TRUE(client_.OnCallbackThread());
    auto nested = client_.Range(RangeRequest::Prefix("/"));
    code.set_value(nested.ok() ? ErrorCode::kInternal : nested.error().code);
  });
  EXPECT_EQ(code.get_future().get(), ErrorCode::kFailedPrecondition);
  EXPECT_FALSE(client_.OnCallbackThread());
}

TEST_F(FakeEtcdClientTest, DestroyingTheClientCancelsItsWatches) {
  WatchLog log;
  std::unique_ptr<CallHandle> watch;
  {
    FakeEtcdClient short_lived(client_.store(), clock_);
    watch = short_lived.Watch(WatchRequest::Prefix("/d/", 0), log.Callback());
  }
  ASSERT_TRUE(log.error);
  EXPECT_EQ(log.error->code, ErrorCode::kCancelled);
  watch.reset();  // a handle may outlive its client
}

}  // namespace
}  // namespace zk2etcd::etcd

// Fenced writes against the in-memory etcd: the ordering guarantees of the brief, §2.
#include "sync/fenced_txn.h"

#include <gtest/gtest.h>

#include "etcd/fake_etcd_client.h"

namespace zk2etcd::sync {
namespace {

using etcd::FakeEtcdClient;

class FencedTxnTest : public ::testing::Test {
 protected:
  FencedWrite Put(const std::string& key, const std::string& value, int64_t mzxid) {
    return {FencedWrite::Type::kPut, key, "/meta" + key, value, mzxid, std::nullopt, std::nullopt};
  }
  FencedWrite Delete(const std::string& key, int64_t absence_zxid) {
    return {FencedWrite::Type::kDelete,
            key,
            "/meta" + key,
            "",
            absence_zxid,
            std::nullopt,
            std::nullopt};
  }
  WriteOutcome Apply(const FencedWrite& write) {
    auto response = etcd_.Txn(BuildFencedTxn({write}, std::nullopt));
    EXPECT_TRUE(response.ok()) << response.error().ToString();
    return OutcomeOf(*response, 0, write).value();
  }
  std::optional<std::string> Value(const std::string& key) {
    auto kv = etcd_.store().Get(key);
    if (!kv) return std::nullopt;
    return kv->value;
  }

  FakeClock clock_;
  FakeEtcdClient etcd_{clock_};
};

TEST(ZxidEncodingTest, FixedWidthSortsLikeTheNumber) {
  EXPECT_EQ(EncodeZxid(0x1234), "0000000000001234");
  EXPECT_LT(EncodeZxid(9), EncodeZxid(10));
  EXPECT_LT(EncodeZxid(0xff), EncodeZxid(0x100));
  EXPECT_LT(EncodeZxid(0x0000000100000000), EncodeZxid(0x0000000200000001));
  EXPECT_EQ(DecodeZxid(EncodeZxid(0x7fffffffffffffff)), 0x7fffffffffffffff);
  EXPECT_EQ(DecodeZxid("12"), std::nullopt);
  EXPECT_EQ(DecodeZxid("000000000000001G"), std::nullopt);
}

TEST_F(FencedTxnTest, NewKeyIsCreatedWithItsMetaRecord) {
  EXPECT_EQ(Apply(Put("/dubbo/a", "v1", 10)), WriteOutcome::kApplied);
  EXPECT_EQ(Value("/dubbo/a"), "v1");
  EXPECT_EQ(Value("/meta/dubbo/a"), EncodeZxid(10));
}

TEST_F(FencedTxnTest, OlderWriteNeverOverwritesNewer) {
  ASSERT_EQ(Apply(Put("/dubbo/a", "new", 20)), WriteOutcome::kApplied);
  EXPECT_EQ(Apply(Put("/dubbo/a", "old", 10)), WriteOutcome::kStale);
  EXPECT_EQ(Value("/dubbo/a"), "new");
  EXPECT_EQ(Apply(Put("/dubbo/a", "newer", 30)), WriteOutcome::kApplied);
  EXPECT_EQ(Value("/dubbo/a"), "newer");
  // The same zxid again is a harmless repeat (and repairs a value changed behind our back).
  etcd_.store().PutDirect("/dubbo/a", "tampered");
  EXPECT_EQ(Apply(Put("/dubbo/a", "newer", 30)), WriteOutcome::kApplied);
  EXPECT_EQ(Value("/dubbo/a"), "newer");
}

TEST_F(FencedTxnTest, DeleteNeverRemovesANodeCreatedAgain) {
  ASSERT_EQ(Apply(Put("/dubbo/a", "v1", 10)), WriteOutcome::kApplied);
  // Re-created at zxid 30 and already written; a delete observed at zxid 25 must lose.
  ASSERT_EQ(Apply(Put("/dubbo/a", "v2", 30)), WriteOutcome::kApplied);
  EXPECT_EQ(Apply(Delete("/dubbo/a", 25)), WriteOutcome::kStale);
  EXPECT_EQ(Value("/dubbo/a"), "v2");
  // Observed absent after the re-create's zxid: now it goes, meta record included.
  EXPECT_EQ(Apply(Delete("/dubbo/a", 31)), WriteOutcome::kApplied);
  EXPECT_EQ(Value("/dubbo/a"), std::nullopt);
  EXPECT_EQ(Value("/meta/dubbo/a"), std::nullopt);
  EXPECT_EQ(Apply(Delete("/dubbo/a", 40)), WriteOutcome::kAlreadyAbsent);
}

TEST_F(FencedTxnTest, ForeignKeysAreNeverChanged) {
  etcd_.store().PutDirect("/dubbo/foreign", "theirs");
  EXPECT_EQ(Apply(Put("/dubbo/foreign", "ours", 50)), WriteOutcome::kForeign);
  EXPECT_EQ(Apply(Delete("/dubbo/foreign", 50)), WriteOutcome::kForeign);
  EXPECT_EQ(Value("/dubbo/foreign"), "theirs");
  EXPECT_EQ(Value("/meta/dubbo/foreign"), std::nullopt);
}

TEST_F(FencedTxnTest, ClaimAppliesOnlyToTheVouchedVersion) {
  const int64_t revision = etcd_.store().PutDirect("/dubbo/go", "written-by-go-tool");
  FencedWrite claim = Put("/dubbo/go", "ours", 60);
  claim.claim_mod_revision = revision + 1;  // not the version that was vouched for
  EXPECT_EQ(Apply(claim), WriteOutcome::kForeign);
  claim.claim_mod_revision = revision;
  EXPECT_EQ(Apply(claim), WriteOutcome::kApplied);
  EXPECT_EQ(Value("/dubbo/go"), "ours");
  EXPECT_EQ(Value("/meta/dubbo/go"), EncodeZxid(60));
}

TEST_F(FencedTxnTest, LeadershipFenceStopsTheWholeBatch) {
  etcd::LeaderKey leader{"zk2etcd", "/election/zk2etcd/1", 12345, 0};
  auto response = etcd_.Txn(BuildFencedTxn({Put("/dubbo/a", "v", 1)}, leader));
  ASSERT_TRUE(response.ok());
  EXPECT_FALSE(response->succeeded);
  EXPECT_EQ(Value("/dubbo/a"), std::nullopt);
}

TEST_F(FencedTxnTest, AFullBatchFitsEtcdsOperationLimitAndOneMoreDoesNot) {
  std::vector<FencedWrite> writes;
  for (int i = 0; i < MaxKeysPerTxn(); ++i) {
    writes.push_back(Put("/dubbo/k" + std::to_string(i), "v", 5));
  }
  writes.push_back(Delete("/dubbo/gone", 5));
  writes.pop_back();
  etcd::LeaderKey leader{"n", "/l", 0, 0};
  EXPECT_TRUE(etcd::ValidateTxn(BuildFencedTxn(writes, leader)).ok());
  auto response = etcd_.Txn(BuildFencedTxn(writes, std::nullopt));
  ASSERT_TRUE(response.ok()) << response.error().ToString();
  for (size_t i = 0; i < writes.size(); ++i) {
    EXPECT_EQ(OutcomeOf(*response, i, writes[i]), WriteOutcome::kApplied);
  }
  writes.push_back(Put("/dubbo/one-more", "v", 5));
  EXPECT_FALSE(etcd::ValidateTxn(BuildFencedTxn(writes, std::nullopt)).ok());
}

// --- The flat form: a full sync's repairs, checked against what it observed ------------------

FencedWrite Observing(FencedWrite write, int64_t key_mod_revision, int64_t meta_mod_revision,
                      int64_t meta_zxid = 0) {
  write.observed = FencedWrite::Observed{key_mod_revision, meta_mod_revision, meta_zxid};
  return write;
}

TEST_F(FencedTxnTest, FlatOnlyWhereTheZxidRuleAppliesToTheObservedState) {
  EXPECT_FALSE(FlatEligible(Put("/dubbo/a", "v", 10)));                       // nothing observed
  EXPECT_TRUE(FlatEligible(Observing(Put("/dubbo/a", "v", 10), 0, 0)));       // new key
  EXPECT_TRUE(FlatEligible(Observing(Put("/dubbo/a", "v", 10), 7, 8, 10)));   // same zxid
  EXPECT_TRUE(FlatEligible(Observing(Put("/dubbo/a", "v", 10), 7, 8, 9)));    // older
  EXPECT_FALSE(FlatEligible(Observing(Put("/dubbo/a", "v", 10), 7, 8, 11)));  // newer in etcd
  EXPECT_FALSE(FlatEligible(Observing(Put("/dubbo/a", "v", 10), 7, 0)));      // foreign key
  EXPECT_TRUE(FlatEligible(Observing(Delete("/dubbo/a", 10), 7, 8, 9)));
  EXPECT_FALSE(FlatEligible(Observing(Delete("/dubbo/a", 10), 7, 8, 10)));  // not older
  EXPECT_FALSE(FlatEligible(Observing(Delete("/dubbo/a", 10), 7, 0)));      // foreign key
  EXPECT_FALSE(FlatEligible(Observing(Delete("/dubbo/a", 10), 0, 0)));      // nothing to do
  FencedWrite claim = Observing(Put("/dubbo/a", "v", 10), 7, 0);
  claim.claim_mod_revision = 7;
  EXPECT_FALSE(FlatEligible(claim));  // claims keep their own compares
  EXPECT_EQ(FlatCompareCount(Observing(Put("/dubbo/a", "v", 10), 0, 0)), 2);
  EXPECT_EQ(FlatCompareCount(Observing(Put("/dubbo/a", "v", 10), 7, 8, 9)), 1);
}

TEST_F(FencedTxnTest, FlatBatchAppliesWhileTheObservationHolds) {
  ASSERT_EQ(Apply(Put("/dubbo/old", "v1", 10)), WriteOutcome::kApplied);
  ASSERT_EQ(Apply(Put("/dubbo/gone", "v1", 10)), WriteOutcome::kApplied);
  const auto old_key = etcd_.store().Get("/dubbo/old").value();
  const auto old_meta = etcd_.store().Get("/meta/dubbo/old").value();
  const auto gone_meta = etcd_.store().Get("/meta/dubbo/gone").value();
  std::vector<FencedWrite> writes = {
      Observing(Put("/dubbo/new", "n", 20), 0, 0),
      Observing(Put("/dubbo/old", "v2", 20), old_key.mod_revision, old_meta.mod_revision, 10),
      Observing(Delete("/dubbo/gone", 20), 0, gone_meta.mod_revision, 10)};
  auto response = etcd_.Txn(BuildFlatTxn(writes, std::nullopt));
  ASSERT_TRUE(response.ok()) << response.error().ToString();
  EXPECT_TRUE(response->succeeded);
  EXPECT_EQ(Value("/dubbo/new"), "n");
  EXPECT_EQ(Value("/meta/dubbo/new"), EncodeZxid(20));
  EXPECT_EQ(Value("/dubbo/old"), "v2");
  EXPECT_EQ(Value("/meta/dubbo/old"), EncodeZxid(20));
  EXPECT_EQ(Value("/dubbo/gone"), std::nullopt);
  EXPECT_EQ(Value("/meta/dubbo/gone"), std::nullopt);
}

TEST_F(FencedTxnTest, FlatBatchAppliesNothingWhenAnyObservedRecordChanged) {
  // A repair observed /dubbo/a absent; an incremental write created it meanwhile (newer zxid).
  std::vector<FencedWrite> writes = {Observing(Put("/dubbo/b", "repair", 10), 0, 0),
                                     Observing(Put("/dubbo/a", "repair", 10), 0, 0)};
  ASSERT_EQ(Apply(Put("/dubbo/a", "incremental", 30)), WriteOutcome::kApplied);
  auto response = etcd_.Txn(BuildFlatTxn(writes, std::nullopt));
  ASSERT_TRUE(response.ok());
  EXPECT_FALSE(response->succeeded);
  EXPECT_EQ(Value("/dubbo/a"), "incremental");
  EXPECT_EQ(Value("/dubbo/b"), std::nullopt);
  // A foreign key created where the repair saw nothing is not overwritten either.
  etcd_.store().PutDirect("/dubbo/c", "theirs");
  response = etcd_.Txn(BuildFlatTxn({Observing(Put("/dubbo/c", "ours", 10), 0, 0)}, std::nullopt));
  ASSERT_TRUE(response.ok());
  EXPECT_FALSE(response->succeeded);
  EXPECT_EQ(Value("/dubbo/c"), "theirs");
  // And a leadership that is not held stops it.
  etcd::LeaderKey leader{"zk2etcd", "/election/zk2etcd/1", 12345, 0};
  response = etcd_.Txn(BuildFlatTxn({Observing(Put("/dubbo/d", "v", 1), 0, 0)}, leader));
  ASSERT_TRUE(response.ok());
  EXPECT_FALSE(response->succeeded);
  EXPECT_EQ(Value("/dubbo/d"), std::nullopt);
}

TEST_F(FencedTxnTest, FullFlatBatchesFitEtcdsLimits) {
  etcd::LeaderKey leader{"n", "/l", 0, 0};
  std::vector<FencedWrite> creates;  // two compares each
  for (int i = 0; i < 63; ++i) {
    creates.push_back(Observing(Put("/dubbo/k" + std::to_string(i), "v", 5), 0, 0));
  }
  EXPECT_TRUE(etcd::ValidateTxn(BuildFlatTxn(creates, leader)).ok());
  creates.push_back(Observing(Put("/dubbo/one-more", "v", 5), 0, 0));
  EXPECT_FALSE(etcd::ValidateTxn(BuildFlatTxn(creates, leader)).ok());
  std::vector<FencedWrite> updates;  // one compare each
  for (int i = 0; i < 64; ++i) {
    updates.push_back(Observing(Put("/dubbo/k" + std::to_string(i), "v", 5), 1, 2, 3));
  }
  EXPECT_TRUE(etcd::ValidateTxn(BuildFlatTxn(updates, leader)).ok());
}

}  // namespace
}  // namespace zk2etcd::sync

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
    return {FencedWrite::Type::kPut, key, "/meta" + key, value, mzxid, std::nullopt};
  }
  FencedWrite Delete(const std::string& key, int64_t absence_zxid) {
    return {FencedWrite::Type::kDelete, key, "/meta" + key, "", absence_zxid, std::nullopt};
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

}  // namespace
}  // namespace zk2etcd::sync

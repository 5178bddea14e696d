// Fenced writes against the in-memory etcd: the ordering guarantees of the brief, §2.
#include "connectors/etcd/fenced_txn.h"

#include <gtest/gtest.h>

#include "etcd/fake_etcd_client.h"
#include "etcd/grpc_convert.h"

namespace zk2etcd::connectors {
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
  FencedWrite Adopt(const std::string& key, int64_t mzxid, std::optional<int64_t> claim) {
    return {FencedWrite::Type::kAdopt, key, "/meta" + key, "", mzxid, claim, std::nullopt};
  }
  // The reply to `write` sent alone in `form`.
  FencedReply Send(const FencedWrite& write, PutForm form) {
    auto response = etcd_.Txn(BuildFencedTxn({write}, {form}, std::nullopt));
    EXPECT_TRUE(response.ok()) << response.error().ToString();
    return ReplyOf(*response, 0, write, form).value();
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

// --- Large values: forms that carry the value once ----------------------------------------

std::string Bytes(size_t size, char fill = 'x') { return std::string(size, fill); }

TEST_F(FencedTxnTest, EachFormCarriesTheValueOnceExceptTheNestedOneForSmallValues) {
  const std::string key = "/dubbo/com.example.Service/providers/large";
  constexpr size_t kConstant = 1024;  // what a form may add besides its value and keys
  for (const size_t size :
       {size_t{0}, size_t{100}, kNestedPutMaxValueBytes + 1, size_t{1024 * 1024 - 64}}) {
    SCOPED_TRACE(size);
    const FencedWrite put = Put(key, Bytes(size), 7);
    const size_t keys = 8 * (put.key.size() + put.meta_key.size());
    EXPECT_EQ(DefaultPutForm(put),
              size > kNestedPutMaxValueBytes ? PutForm::kZxid : PutForm::kNested);
    for (const PutForm form : {PutForm::kNested, PutForm::kZxid, PutForm::kFresh}) {
      SCOPED_TRACE(static_cast<int>(form));
      const size_t encoded = etcd::EncodedBytes(BuildFencedTxn({put}, {form}, std::nullopt));
      // The writer's accounting never undercounts what goes on the wire.
      EXPECT_LE(encoded, FencedBytes(put, form));
      const size_t copies = form == PutForm::kNested ? 2 : 1;
      EXPECT_GE(encoded, copies * size);
      EXPECT_LE(FencedBytes(put, form), copies * size + keys + kConstant);
    }
    // Every form but nested fits etcd's default --max-request-bytes (1.5 MiB) with any value
    // ZooKeeper's default jute.maxbuffer (1 MiB) lets through.
    EXPECT_LE(FencedBytes(put, DefaultPutForm(put)), 3u * 1024 * 1024 / 2);
    const FencedWrite flat = Observing(put, 0, 0);
    const size_t flat_encoded = etcd::EncodedBytes(BuildFlatTxn({flat}, std::nullopt));
    EXPECT_LE(flat_encoded, FlatBytes(flat));
    EXPECT_GE(flat_encoded, size);
    EXPECT_LE(FlatBytes(flat), size + keys + kConstant);
    FencedWrite claimed = put;
    claimed.claim_mod_revision = 5;
    const size_t claimed_encoded =
        etcd::EncodedBytes(BuildFencedTxn({claimed}, {PutForm::kNested}, std::nullopt));
    EXPECT_LE(claimed_encoded, FencedBytes(claimed, PutForm::kNested));
    EXPECT_LE(FencedBytes(claimed, PutForm::kNested), size + keys + kConstant);
  }
  for (const FencedWrite& other : {Delete(key, 9), Adopt(key, 9, 4)}) {
    const size_t encoded =
        etcd::EncodedBytes(BuildFencedTxn({other}, {PutForm::kNested}, std::nullopt));
    EXPECT_LE(encoded, FencedBytes(other, PutForm::kNested));
    EXPECT_LE(FencedBytes(other, PutForm::kNested),
              8 * (other.key.size() + other.meta_key.size()) + kConstant);
  }
}

TEST_F(FencedTxnTest, TheZxidFormAsksForTheFreshFormWhenNeitherKeyNorMetaRecordExists) {
  const std::string large = Bytes(kNestedPutMaxValueBytes + 1, 'a');
  const FencedWrite create = Put("/dubbo/a", large, 10);
  ASSERT_EQ(DefaultPutForm(create), PutForm::kZxid);
  FencedReply reply = Send(create, PutForm::kZxid);
  EXPECT_EQ(reply.outcome, std::nullopt);
  EXPECT_EQ(reply.resend_as, PutForm::kFresh);
  EXPECT_EQ(Value("/dubbo/a"), std::nullopt) << "the zxid form creates nothing";
  EXPECT_EQ(OutcomeOf(*etcd_.Txn(BuildFencedTxn({create}, std::nullopt)), 0, create), std::nullopt)
      << "a reply that asks for another form is no outcome";
  reply = Send(create, PutForm::kFresh);
  EXPECT_EQ(reply.outcome, WriteOutcome::kApplied);
  EXPECT_EQ(Value("/dubbo/a"), large);
  EXPECT_EQ(Value("/meta/dubbo/a"), EncodeZxid(10));
  // The fresh form finds a meta record now: the zxid decides, in the zxid form.
  const std::string larger = Bytes(kNestedPutMaxValueBytes + 2, 'b');
  reply = Send(Put("/dubbo/a", larger, 20), PutForm::kFresh);
  EXPECT_EQ(reply.resend_as, PutForm::kZxid);
  EXPECT_EQ(Value("/dubbo/a"), large);
  // Newer and the same zxid apply; older is stale.
  EXPECT_EQ(Send(Put("/dubbo/a", larger, 20), PutForm::kZxid).outcome, WriteOutcome::kApplied);
  EXPECT_EQ(Value("/dubbo/a"), larger);
  EXPECT_EQ(Value("/meta/dubbo/a"), EncodeZxid(20));
  EXPECT_EQ(Send(Put("/dubbo/a", larger, 20), PutForm::kZxid).outcome, WriteOutcome::kApplied);
  EXPECT_EQ(Send(Put("/dubbo/a", large, 15), PutForm::kZxid).outcome, WriteOutcome::kStale);
  EXPECT_EQ(Value("/dubbo/a"), larger);
  // Foreign keys are left alone by both forms.
  etcd_.store().PutDirect("/dubbo/foreign", "theirs");
  EXPECT_EQ(Send(Put("/dubbo/foreign", large, 30), PutForm::kZxid).outcome, WriteOutcome::kForeign);
  EXPECT_EQ(Send(Put("/dubbo/foreign", large, 30), PutForm::kFresh).outcome,
            WriteOutcome::kForeign);
  EXPECT_EQ(Value("/dubbo/foreign"), "theirs");
  EXPECT_EQ(Value("/meta/dubbo/foreign"), std::nullopt);
}

TEST_F(FencedTxnTest, TheFreshFormOnlyCreates) {
  // A meta record without its key (left by someone): fresh refuses, the zxid rule decides.
  etcd_.store().PutDirect("/meta/dubbo/b", EncodeZxid(50));
  EXPECT_EQ(Send(Put("/dubbo/b", "v", 40), PutForm::kFresh).resend_as, PutForm::kZxid);
  EXPECT_EQ(Send(Put("/dubbo/b", "v", 40), PutForm::kZxid).outcome, WriteOutcome::kStale);
  EXPECT_EQ(Value("/dubbo/b"), std::nullopt);
  EXPECT_EQ(Send(Put("/dubbo/b", "v", 60), PutForm::kZxid).outcome, WriteOutcome::kApplied);
  EXPECT_EQ(Value("/dubbo/b"), "v");
}

TEST_F(FencedTxnTest, SmallValuesKeepTheOneRoundTripNestedForm) {
  const FencedWrite create = Put("/dubbo/small", Bytes(kNestedPutMaxValueBytes), 10);
  ASSERT_EQ(DefaultPutForm(create), PutForm::kNested);
  EXPECT_EQ(Send(create, PutForm::kNested).outcome, WriteOutcome::kApplied);
  EXPECT_EQ(Value("/dubbo/small"), create.value);
}

// --- Adoption ---------------------------------------------------------------------------------

TEST_F(FencedTxnTest, AdoptionWritesOnlyTheMetaRecordOfTheObservedVersion) {
  const int64_t revision = etcd_.store().PutDirect("/dubbo/adopt", "equal-to-znode");
  EXPECT_FALSE(FlatEligible(Observing(Adopt("/dubbo/adopt", 42, revision), revision, 0)));
  // Another version than the one observed: not ours.
  EXPECT_EQ(Apply(Adopt("/dubbo/adopt", 42, revision + 1)), WriteOutcome::kForeign);
  EXPECT_EQ(Value("/meta/dubbo/adopt"), std::nullopt);
  // Without the required claim it never applies.
  EXPECT_EQ(Apply(Adopt("/dubbo/adopt", 42, std::nullopt)), WriteOutcome::kForeign);
  EXPECT_EQ(Value("/meta/dubbo/adopt"), std::nullopt);
  EXPECT_EQ(Apply(Adopt("/dubbo/adopt", 42, revision)), WriteOutcome::kApplied);
  EXPECT_EQ(Value("/meta/dubbo/adopt"), EncodeZxid(42));
  const auto key = etcd_.store().Get("/dubbo/adopt").value();
  EXPECT_EQ(key.value, "equal-to-znode");
  EXPECT_EQ(key.mod_revision, revision) << "the key itself is not written";
  // A meta record exists now: stale, and it keeps its zxid.
  EXPECT_EQ(Apply(Adopt("/dubbo/adopt", 43, revision)), WriteOutcome::kStale);
  EXPECT_EQ(Value("/meta/dubbo/adopt"), EncodeZxid(42));
}

TEST_F(FencedTxnTest, AConcurrentWriteWinsOverAnAdoption) {
  const int64_t revision = etcd_.store().PutDirect("/dubbo/c", "seen");
  etcd_.store().PutDirect("/dubbo/c", "changed by another writer");
  EXPECT_EQ(Apply(Adopt("/dubbo/c", 5, revision)), WriteOutcome::kForeign);
  const int64_t deleted_at = etcd_.store().PutDirect("/dubbo/d", "seen");
  etcd_.store().DeleteDirect("/dubbo/d");
  EXPECT_EQ(Apply(Adopt("/dubbo/d", 5, deleted_at)), WriteOutcome::kForeign);
  EXPECT_EQ(Value("/meta/dubbo/d"), std::nullopt);
  // A fenced put landed first (meta record and new version): stale.
  const int64_t e_revision = etcd_.store().PutDirect("/dubbo/e", "seen");
  FencedWrite claim = Put("/dubbo/e", "put by a writer that proved ownership", 9);
  claim.claim_mod_revision = e_revision;
  ASSERT_EQ(Apply(claim), WriteOutcome::kApplied);
  EXPECT_EQ(Apply(Adopt("/dubbo/e", 5, e_revision)), WriteOutcome::kStale);
  EXPECT_EQ(Value("/meta/dubbo/e"), EncodeZxid(9));
}

TEST_F(FencedTxnTest, AdoptionsBatchWithOtherWrites) {
  const int64_t revision = etcd_.store().PutDirect("/dubbo/adopt", "v");
  ASSERT_EQ(Apply(Put("/dubbo/old", "v", 3)), WriteOutcome::kApplied);
  std::vector<FencedWrite> writes = {Put("/dubbo/new", "n", 7), Adopt("/dubbo/adopt", 6, revision),
                                     Delete("/dubbo/old", 8)};
  for (int i = 3; i < MaxKeysPerTxn(); ++i) {
    const std::string key = "/dubbo/k" + std::to_string(i);
    writes.push_back(Adopt(key, 6, etcd_.store().PutDirect(key, "v")));
  }
  etcd::LeaderKey leader{"n", "/l", 0, 0};
  EXPECT_TRUE(etcd::ValidateTxn(BuildFencedTxn(writes, leader)).ok());
  auto response = etcd_.Txn(BuildFencedTxn(writes, std::nullopt));
  ASSERT_TRUE(response.ok()) << response.error().ToString();
  for (size_t i = 0; i < writes.size(); ++i) {
    EXPECT_EQ(OutcomeOf(*response, i, writes[i]), WriteOutcome::kApplied) << writes[i].key;
  }
  EXPECT_EQ(Value("/meta/dubbo/adopt"), EncodeZxid(6));
  EXPECT_EQ(Value("/dubbo/new"), "n");
  EXPECT_EQ(Value("/dubbo/old"), std::nullopt);
}

}  // namespace
}  // namespace zk2etcd::connectors

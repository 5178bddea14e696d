// EtcdSink against the in-memory etcd: the listing's join of data keys and meta records, reads,
// the variants and limits of writes, and what each answer of etcd becomes.
#include "connectors/etcd/etcd_sink.h"

#include <gtest/gtest.h>

#include <cstdio>
#include <future>

#include "connectors/etcd/lease_mirror.h"
#include "etcd/fake_etcd_client.h"

namespace zk2etcd::connectors {
namespace {

using core::SinkWrite;
using core::WriteOutcome;

constexpr int kNested = static_cast<int>(EtcdVariant::kNested);
constexpr int kZxid = static_cast<int>(EtcdVariant::kZxid);
constexpr int kFresh = static_cast<int>(EtcdVariant::kFresh);
constexpr int kFlat = static_cast<int>(EtcdVariant::kFlat);

std::string NumberedPath(const std::string& prefix, int i) {
  char suffix[16];
  std::snprintf(suffix, sizeof(suffix), "%06d", i);
  return prefix + suffix;
}

class EtcdSinkTest : public ::testing::Test {
 protected:
  // Writes a key and (when `zxid` is set) its meta record directly.
  void Seed(const std::string& path, std::optional<std::string> value,
            std::optional<int64_t> zxid) {
    if (value) etcd_.store().PutDirect(layout_.KeyFor(path), *value);
    if (zxid) etcd_.store().PutDirect(layout_.MetaKeyFor(layout_.KeyFor(path)), EncodeZxid(*zxid));
  }
  std::optional<std::string> Value(const std::string& path) {
    auto kv = etcd_.store().Get(layout_.KeyFor(path));
    return kv ? std::optional(kv->value) : std::nullopt;
  }
  std::optional<int64_t> MetaZxid(const std::string& path) {
    auto kv = etcd_.store().Get(layout_.MetaKeyFor(layout_.KeyFor(path)));
    return kv ? DecodeZxid(kv->value) : std::nullopt;
  }
  int64_t ModRevision(const std::string& key) {
    auto kv = etcd_.store().Get(key);
    return kv ? kv->mod_revision : 0;
  }

  std::vector<core::SinkEntry> ListAll(const std::string& prefix, core::ListOptions options = {},
                                       int64_t* point = nullptr) {
    std::unique_ptr<core::SinkCursor> cursor = sink_.List(prefix, options);
    cursor->Start();
    std::vector<core::SinkEntry> entries;
    while (true) {
      auto next = cursor->Next();
      EXPECT_TRUE(next.ok()) << next.error().ToString();
      if (!next.ok() || !next->has_value()) break;
      entries.push_back(**next);
    }
    if (point != nullptr) *point = cursor->point();
    return entries;
  }

  core::BatchResult Apply(std::vector<SinkWrite> writes, std::vector<int> variants,
                          std::optional<core::Fence> fence = std::nullopt) {
    std::promise<core::BatchResult> answer;
    sink_.ApplyAsync(std::move(writes), std::move(variants), fence,
                     [&](core::BatchResult result) { answer.set_value(std::move(result)); });
    return answer.get_future().get();
  }
  // One write in its default variant; its outcome (or an empty optional after logging).
  core::WriteAnswer ApplyOne(const SinkWrite& write) {
    auto result = Apply({write}, {sink_.DefaultVariant(write)});
    EXPECT_TRUE(result.ok()) << result.error().ToString();
    if (!result.ok()) return {};
    EXPECT_EQ(result->size(), 1u);
    return result->at(0);
  }

  static SinkWrite Put(const std::string& path, const std::string& value, int64_t zxid) {
    return {SinkWrite::Type::kPut, path, value, zxid, std::nullopt, std::nullopt};
  }
  static SinkWrite Delete(const std::string& path, int64_t zxid) {
    return {SinkWrite::Type::kDelete, path, "", zxid, std::nullopt, std::nullopt};
  }

  SystemClock clock_;
  etcd::FakeEtcdClient etcd_{clock_};
  core::Scope scope_ = core::Scope::Create({"/dubbo"}, {}).value();
  KeyLayout layout_ = KeyLayout::Create("/registry", "/zk2etcd/meta", scope_).value();
  EtcdSink sink_{etcd_, layout_};
};

TEST_F(EtcdSinkTest, AListingJoinsKeysAndMetaRecordsInKeyOrder) {
  Seed("/dubbo", "", 1);
  Seed("/dubbo/a", "foreign", std::nullopt);  // no meta record
  Seed("/dubbo/b", std::nullopt, 7);          // a meta record alone: a leftover
  Seed("/dubbo/c", "ours", 9);
  etcd_.store().PutDirect(layout_.MetaKeyFor(layout_.KeyFor("/dubbo/d")), "not a zxid");
  etcd_.store().PutDirect(layout_.KeyFor("/dubbo/e") + "/", "no path");  // trailing '/'
  Seed("/dubbox", "outside", 1);
  etcd_.store().PutDirect("/elsewhere/dubbo/f", "not under the destination prefix");

  const std::vector<core::SinkEntry> entries = ListAll("/dubbo");
  ASSERT_EQ(entries.size(), 5u);
  EXPECT_EQ(entries[0].key, "/dubbo");
  EXPECT_EQ(entries[0].sink_key, "/registry/dubbo");
  EXPECT_EQ(entries[0].value, "");
  ASSERT_TRUE(entries[0].owner.has_value());
  EXPECT_EQ(entries[0].owner->source_version, 1);

  EXPECT_EQ(entries[1].key, "/dubbo/a");
  EXPECT_EQ(entries[1].value, "foreign");
  EXPECT_EQ(entries[1].version, ModRevision("/registry/dubbo/a"));
  EXPECT_FALSE(entries[1].owner.has_value());

  EXPECT_EQ(entries[2].key, "/dubbo/b");
  EXPECT_FALSE(entries[2].value.has_value());
  ASSERT_TRUE(entries[2].owner.has_value());
  EXPECT_EQ(entries[2].owner->source_version, 7);
  EXPECT_EQ(entries[2].owner->record_version, ModRevision("/zk2etcd/meta/registry/dubbo/b"));

  EXPECT_EQ(entries[3].key, "/dubbo/c");
  EXPECT_EQ(entries[3].value, "ours");
  EXPECT_EQ(entries[3].owner->source_version, 9);

  EXPECT_EQ(entries[4].key, "/dubbo/d");  // a record that holds no zxid: newer than anything
  EXPECT_FALSE(entries[4].value.has_value());
  EXPECT_EQ(entries[4].owner->source_version, INT64_MAX);
}

TEST_F(EtcdSinkTest, SplitsCutTheRequestsWithoutChangingTheListing) {
  std::vector<std::string> paths;
  core::ListOptions options;
  options.page_size = 10;
  for (int i = 0; i < 500; ++i) {
    paths.push_back(NumberedPath("/dubbo/n", i));
    Seed(paths.back(), "v", i + 1);
    if (i > 0 && i % 10 == 0) options.splits.push_back(paths.back());
  }
  const int64_t before = etcd_.store().keys_walked();
  const std::vector<core::SinkEntry> entries = ListAll("/dubbo", options);
  ASSERT_EQ(entries.size(), paths.size());
  for (size_t i = 0; i < paths.size(); ++i) {
    EXPECT_EQ(entries[i].key, paths[i]);
    EXPECT_EQ(entries[i].owner->source_version, static_cast<int64_t>(i + 1));
  }
  // Data and meta records each walked about once, not once per page.
  EXPECT_LE(etcd_.store().keys_walked() - before, 4 * 500);
}

TEST_F(EtcdSinkTest, AGivenPointIsListedAtThatRevisionAndPointZeroAtTheNewest) {
  for (int i = 0; i < 10; ++i) Seed(NumberedPath("/dubbo/n", i), "v", 1);
  const int64_t revision = etcd_.store().revision();
  etcd_.store().DeleteDirect(layout_.KeyFor(NumberedPath("/dubbo/n", 3)));

  core::ListOptions at_point;
  at_point.point = revision;
  at_point.prefetch = 0;
  int64_t point = 0;
  std::vector<core::SinkEntry> entries = ListAll("/dubbo", at_point, &point);
  EXPECT_EQ(point, revision);
  ASSERT_EQ(entries.size(), 10u);
  EXPECT_TRUE(entries[3].value.has_value());

  entries = ListAll("/dubbo", {}, &point);
  EXPECT_EQ(point, etcd_.store().revision());
  ASSERT_EQ(entries.size(), 10u);
  EXPECT_FALSE(entries[3].value.has_value());  // its meta record is left
  EXPECT_TRUE(entries[3].owner.has_value());
}

TEST_F(EtcdSinkTest, ListingErrorsAreSinkErrors) {
  Seed("/dubbo/a", "v", 1);
  const int64_t revision = etcd_.store().revision();
  Seed("/dubbo/b", "v", 2);
  etcd_.store().Compact(etcd_.store().revision());
  core::ListOptions options;
  options.point = revision;
  auto cursor = sink_.List("/dubbo", options);
  cursor->Start();
  auto next = cursor->Next();
  ASSERT_FALSE(next.ok());
  EXPECT_EQ(next.error().code, core::SinkError::Code::kCompacted);
  EXPECT_EQ(next.error().label, "compacted");

  etcd_.InjectFault("range", etcd::ErrorCode::kUnavailable, -1);
  auto unavailable = sink_.List("/dubbo", {});
  next = unavailable->Next();
  ASSERT_FALSE(next.ok());
  EXPECT_EQ(next.error().code, core::SinkError::Code::kUnavailable);
  EXPECT_TRUE(next.error().Retryable());
  EXPECT_EQ(next.error().label, "unavailable");
  EXPECT_EQ(next.error().message.rfind("listing etcd: ", 0), 0u) << next.error().message;
  auto point = sink_.CurrentPoint();
  ASSERT_FALSE(point.ok());
  EXPECT_EQ(point.error().code, core::SinkError::Code::kUnavailable);
}

TEST_F(EtcdSinkTest, CurrentPointIsTheNewestRevision) {
  Seed("/dubbo/a", "v", 1);
  auto point = sink_.CurrentPoint();
  ASSERT_TRUE(point.ok()) << point.error().ToString();
  EXPECT_EQ(*point, etcd_.store().revision());
}

TEST_F(EtcdSinkTest, ReadReturnsEveryKeyInOrderOverSeveralTransactions) {
  std::vector<std::string> paths;
  for (int i = 0; i < 150; ++i) {
    paths.push_back(NumberedPath("/dubbo/n", 149 - i));  // not sorted
    if (i % 3 == 0) Seed(paths.back(), "v" + std::to_string(i), i + 1);
    if (i % 3 == 1) Seed(paths.back(), std::nullopt, i + 1);
  }
  const int txns = etcd_.Calls("txn");
  auto entries = sink_.Read(paths);
  ASSERT_TRUE(entries.ok()) << entries.error().ToString();
  EXPECT_EQ(etcd_.Calls("txn") - txns, 3);  // 64 keys per transaction
  ASSERT_EQ(entries->size(), paths.size());
  for (int i = 0; i < 150; ++i) {
    const core::SinkEntry& entry = (*entries)[i];
    EXPECT_EQ(entry.key, paths[i]);
    EXPECT_EQ(entry.sink_key, layout_.KeyFor(paths[i]));
    if (i % 3 == 0) {
      EXPECT_EQ(entry.value, "v" + std::to_string(i));
      EXPECT_EQ(entry.version, ModRevision(entry.sink_key));
    } else {
      EXPECT_FALSE(entry.value.has_value());
    }
    EXPECT_EQ(entry.owner.has_value(), i % 3 != 2);
    if (entry.owner) {
      EXPECT_EQ(entry.owner->source_version, i + 1);
    }
  }
  EXPECT_TRUE(sink_.Read({})->empty());

  etcd_.InjectFault("txn", etcd::ErrorCode::kPermissionDenied);
  auto refused = sink_.Read(paths);
  ASSERT_FALSE(refused.ok());
  EXPECT_EQ(refused.error().code, core::SinkError::Code::kRefused);
  EXPECT_EQ(refused.error().label, "permission_denied");
}

TEST_F(EtcdSinkTest, NestedPutsAndDeletesFollowTheZxidRule) {
  EXPECT_EQ(sink_.SinkKeyFor("/dubbo/a"), "/registry/dubbo/a");
  EXPECT_EQ(sink_.DefaultVariant(Put("/dubbo/a", "v1", 10)), kNested);
  EXPECT_EQ(ApplyOne(Put("/dubbo/a", "v1", 10)).outcome, WriteOutcome::kApplied);
  EXPECT_EQ(Value("/dubbo/a"), "v1");
  EXPECT_EQ(MetaZxid("/dubbo/a"), 10);
  EXPECT_EQ(ApplyOne(Put("/dubbo/a", "older", 9)).outcome, WriteOutcome::kStale);
  EXPECT_EQ(Value("/dubbo/a"), "v1");
  EXPECT_EQ(ApplyOne(Delete("/dubbo/a", 10)).outcome, WriteOutcome::kStale);
  EXPECT_EQ(ApplyOne(Delete("/dubbo/a", 11)).outcome, WriteOutcome::kApplied);
  EXPECT_EQ(Value("/dubbo/a"), std::nullopt);
  EXPECT_EQ(MetaZxid("/dubbo/a"), std::nullopt);
  EXPECT_EQ(ApplyOne(Delete("/dubbo/a", 12)).outcome, WriteOutcome::kAlreadyAbsent);

  // Several writes in one transaction, each answered.
  auto batch = Apply({Put("/dubbo/b", "b", 5), Put("/dubbo/c", "c", 6)}, {kNested, kNested});
  ASSERT_TRUE(batch.ok());
  ASSERT_EQ(batch->size(), 2u);
  EXPECT_EQ((*batch)[0].outcome, WriteOutcome::kApplied);
  EXPECT_EQ((*batch)[1].outcome, WriteOutcome::kApplied);
}

TEST_F(EtcdSinkTest, ForeignKeysAreLeftAloneUnlessClaimedOrAdopted) {
  Seed("/dubbo/f", "theirs", std::nullopt);
  EXPECT_EQ(ApplyOne(Put("/dubbo/f", "mine", 10)).outcome, WriteOutcome::kForeign);
  EXPECT_EQ(Value("/dubbo/f"), "theirs");

  SinkWrite claimed = Put("/dubbo/f", "mine", 10);
  claimed.claim = ModRevision("/registry/dubbo/f");
  EXPECT_EQ(sink_.DefaultVariant(claimed), kNested);
  EXPECT_EQ(ApplyOne(claimed).outcome, WriteOutcome::kApplied);
  EXPECT_EQ(Value("/dubbo/f"), "mine");
  EXPECT_EQ(MetaZxid("/dubbo/f"), 10);

  Seed("/dubbo/g", "same", std::nullopt);
  SinkWrite adopt{SinkWrite::Type::kAdopt,          "/dubbo/g",  "", 20,
                  ModRevision("/registry/dubbo/g"), std::nullopt};
  EXPECT_EQ(ApplyOne(adopt).outcome, WriteOutcome::kApplied);
  EXPECT_EQ(Value("/dubbo/g"), "same");
  EXPECT_EQ(MetaZxid("/dubbo/g"), 20);
  EXPECT_EQ(ApplyOne(adopt).outcome, WriteOutcome::kStale);  // a meta record exists now
}

TEST_F(EtcdSinkTest, ObservedWritesGoFlatAndAFailedFlatBatchAsksForTheNestedForm) {
  Seed("/dubbo/a", "old", 5);
  const std::vector<core::SinkEntry> listed = ListAll("/dubbo");
  ASSERT_EQ(listed.size(), 1u);
  auto observed = [&](const std::string& path, const std::string& value, int64_t zxid) {
    SinkWrite write = Put(path, value, zxid);
    write.observed = SinkWrite::Observed{};
    if (path == "/dubbo/a") {
      write.observed = SinkWrite::Observed{listed[0].version, listed[0].owner->record_version,
                                           listed[0].owner->source_version};
    }
    return write;
  };
  const SinkWrite a = observed("/dubbo/a", "new", 6);
  const SinkWrite b = observed("/dubbo/b", "created", 7);
  EXPECT_EQ(sink_.DefaultVariant(a), kFlat);
  EXPECT_EQ(sink_.BatchClass(kFlat), 1);
  EXPECT_EQ(sink_.BatchClass(kNested), 0);
  EXPECT_EQ(sink_.BatchClass(kZxid), 0);
  EXPECT_EQ(sink_.Cost(a, kFlat).ops, FlatCompareCount(sink_.ToFencedWrite(a)));
  EXPECT_EQ(sink_.Cost(b, kFlat).bytes, FlatBytes(sink_.ToFencedWrite(b)));

  auto applied = Apply({a, b}, {kFlat, kFlat});
  ASSERT_TRUE(applied.ok());
  ASSERT_EQ(applied->size(), 2u);
  EXPECT_EQ((*applied)[0].outcome, WriteOutcome::kApplied);
  EXPECT_EQ((*applied)[1].outcome, WriteOutcome::kApplied);
  EXPECT_EQ(Value("/dubbo/a"), "new");
  EXPECT_EQ(MetaZxid("/dubbo/b"), 7);
  EXPECT_EQ(sink_.flat_fallbacks(), 0u);

  // The same observations no longer hold: nothing applies, both go again nested.
  const SinkWrite again = observed("/dubbo/a", "newer", 8);
  const SinkWrite c = observed("/dubbo/c", "c", 9);
  auto fallback = Apply({again, c}, {kFlat, kFlat});
  ASSERT_TRUE(fallback.ok());
  ASSERT_EQ(fallback->size(), 2u);
  for (const core::WriteAnswer& answer : *fallback) {
    EXPECT_FALSE(answer.outcome.has_value());
    EXPECT_EQ(answer.resend_variant, kNested);
  }
  EXPECT_EQ(Value("/dubbo/a"), "new");
  EXPECT_EQ(Value("/dubbo/c"), std::nullopt);
  EXPECT_EQ(sink_.flat_fallbacks(), 1u);
  EXPECT_EQ(Apply({again}, {kNested})->at(0).outcome, WriteOutcome::kApplied);
}

TEST_F(EtcdSinkTest, ALargeNewValueGoesZxidThenFresh) {
  const std::string large(kNestedPutMaxValueBytes + 1, 'x');
  const SinkWrite put = Put("/dubbo/large", large, 10);
  EXPECT_EQ(sink_.DefaultVariant(put), kZxid);
  EXPECT_LT(sink_.Cost(put, kZxid).bytes, sink_.Cost(put, kNested).bytes);
  EXPECT_EQ(sink_.Cost(put, kZxid).ops, 0);
  const core::WriteAnswer first = ApplyOne(put);
  EXPECT_FALSE(first.outcome.has_value());
  EXPECT_EQ(first.resend_variant, kFresh);
  EXPECT_EQ(sink_.form_resends(), 1u);
  auto second = Apply({put}, {kFresh});
  ASSERT_TRUE(second.ok());
  EXPECT_EQ(second->at(0).outcome, WriteOutcome::kApplied);
  EXPECT_EQ(Value("/dubbo/large"), large);
  // Now that it exists, the zxid form decides at once.
  EXPECT_EQ(ApplyOne(Put("/dubbo/large", large + "y", 11)).outcome, WriteOutcome::kApplied);
}

TEST_F(EtcdSinkTest, AFencedBatchAppliesOnlyWhileTheFenceHolds) {
  etcd_.store().PutDirect("/election/leader", "me");
  const int64_t created = etcd_.store().Get("/election/leader")->create_revision;
  auto held = Apply({Put("/dubbo/a", "a", 1)}, {kNested}, core::Fence{"/election/leader", created});
  ASSERT_TRUE(held.ok());
  EXPECT_EQ(held->at(0).outcome, WriteOutcome::kApplied);

  auto lost =
      Apply({Put("/dubbo/b", "b", 2)}, {kNested}, core::Fence{"/election/leader", created + 1});
  ASSERT_FALSE(lost.ok());
  EXPECT_EQ(lost.error().code, core::SinkError::Code::kNotLeader);
  EXPECT_EQ(Value("/dubbo/b"), std::nullopt);
}

TEST_F(EtcdSinkTest, EtcdErrorsOfABatchAreMapped) {
  etcd_.InjectFault("txn", etcd::ErrorCode::kDeadlineExceeded);
  auto retryable = Apply({Put("/dubbo/a", "a", 1)}, {kNested});
  ASSERT_FALSE(retryable.ok());
  EXPECT_EQ(retryable.error().code, core::SinkError::Code::kUnavailable);
  EXPECT_EQ(retryable.error().label, "deadline_exceeded");

  etcd_.InjectFault("txn", etcd::ErrorCode::kPermissionDenied);
  auto refused = Apply({Put("/dubbo/a", "a", 1)}, {kNested});
  ASSERT_FALSE(refused.ok());
  EXPECT_EQ(refused.error().code, core::SinkError::Code::kRefused);
  EXPECT_FALSE(refused.error().Retryable());

  etcd_.InjectFault("txn", etcd::ErrorCode::kCancelled);
  auto cancelled = Apply({Put("/dubbo/a", "a", 1)}, {kNested});
  ASSERT_FALSE(cancelled.ok());
  EXPECT_EQ(cancelled.error().code, core::SinkError::Code::kCancelled);
}

TEST_F(EtcdSinkTest, LimitsFollowTheTransactionForm) {
  const core::BatchLimits nested = sink_.Limits(0);
  EXPECT_EQ(nested.max_writes, static_cast<size_t>(MaxKeysPerTxn()));
  EXPECT_EQ(nested.max_bytes, size_t{1} << 20);
  EXPECT_EQ(nested.overhead_bytes, 1024u);
  EXPECT_EQ(nested.max_ops, 0);
  const core::BatchLimits flat = sink_.Limits(1);
  EXPECT_EQ(flat.max_writes, static_cast<size_t>(etcd::kDefaultMaxTxnOps / 2));
  EXPECT_EQ(flat.max_ops, etcd::kDefaultMaxTxnOps);
  EXPECT_EQ(flat.fence_ops, 1);
  EXPECT_EQ(flat.max_bytes, size_t{1} << 20);

  EtcdSink small(etcd_, layout_, {.max_txn_bytes = 4096, .max_keys_per_txn = 8});
  EXPECT_EQ(small.Limits(0).max_writes, 8u);
  EXPECT_EQ(small.Limits(1).max_writes, 8u);
  EXPECT_EQ(small.Limits(1).max_bytes, 4096u);

  // A far etcd: batches within the 64 KiB that etcd's gRPC server first lets a stream and a
  // connection send, but never above max_txn_bytes.
  etcd::FakeEtcdClient far_etcd(clock_, {.far = true});
  EtcdSink far(far_etcd, layout_);
  EXPECT_EQ(far.Limits(0).max_bytes, size_t{56} << 10);
  EXPECT_EQ(far.Limits(1).max_bytes, size_t{56} << 10);
  EtcdSink far_and_small(far_etcd, layout_, {.max_txn_bytes = 4096});
  EXPECT_EQ(far_and_small.Limits(1).max_bytes, 4096u);
}

// Source leases that a test makes fail (--copy-leases): `failure` for the next lookups.
class ScriptedLeases final : public LeaseMapper {
 public:
  Result<int64_t, core::SinkError> DestinationLease(int64_t /*source_lease*/) override {
    if (failures > 0) {
      --failures;
      return Unexpected{failure};
    }
    return int64_t{0};
  }
  int failures = 0;
  core::SinkError failure;
};

// A source lease lookup that a retry can fix fails the whole batch as retryable, so that the
// writer sends it again; one that cannot succeed fails its write alone. (Answered for the write
// alone, a source that did not answer read as a refusal, and the change was left behind.)
TEST_F(EtcdSinkTest, ALeaseLookupThatMaySucceedLaterFailsTheBatchForARetry) {
  ScriptedLeases leases;
  EtcdSink sink(etcd_, layout_, {.leases = &leases});
  auto apply = [&](std::vector<SinkWrite> writes) {
    std::vector<int> variants;
    for (const SinkWrite& write : writes) variants.push_back(sink.DefaultVariant(write));
    std::promise<core::BatchResult> answer;
    sink.ApplyAsync(std::move(writes), std::move(variants), std::nullopt,
                    [&](core::BatchResult result) { answer.set_value(std::move(result)); });
    return answer.get_future().get();
  };
  SinkWrite leased = Put("/dubbo/leased", "v", 10);
  leased.lease = 7;
  const SinkWrite plain = Put("/dubbo/plain", "p", 10);

  leases.failures = 1;
  leases.failure = {core::SinkError::Code::kUnavailable, "source etcd: unavailable", "unavailable"};
  const core::BatchResult retry = apply({leased, plain});
  ASSERT_FALSE(retry.ok());
  EXPECT_TRUE(retry.error().Retryable()) << retry.error().ToString();
  EXPECT_EQ(Value("/dubbo/plain"), std::nullopt);  // the batch went whole or not at all
  const core::BatchResult again = apply({leased, plain});
  ASSERT_TRUE(again.ok()) << again.error().ToString();
  EXPECT_EQ(again->at(0).outcome, WriteOutcome::kApplied);
  EXPECT_EQ(Value("/dubbo/leased"), "v");

  leases.failures = 1;
  leases.failure = {core::SinkError::Code::kRefused, "source etcd: permission denied",
                    "permission_denied"};
  SinkWrite refused = Put("/dubbo/refused", "r", 11);
  refused.lease = 8;
  const core::BatchResult alone = apply({refused, Put("/dubbo/beside", "b", 11)});
  ASSERT_TRUE(alone.ok()) << alone.error().ToString();
  EXPECT_FALSE(alone->at(0).outcome.has_value());
  EXPECT_NE(alone->at(0).error.find("permission"), std::string::npos) << alone->at(0).error;
  EXPECT_EQ(alone->at(1).outcome, WriteOutcome::kApplied);
}

// A mirror's sink: key-prefix layout, checkpoints.
class CheckpointedEtcdSinkTest : public ::testing::Test {
 protected:
  core::BatchResult ApplyAtomic(std::vector<SinkWrite> writes, int64_t checkpoint,
                                std::optional<core::Fence> fence = std::nullopt) {
    std::promise<core::BatchResult> answer;
    sink_.ApplyAtomicAsync(std::move(writes), checkpoint, fence,
                           [&](core::BatchResult result) { answer.set_value(std::move(result)); });
    return answer.get_future().get();
  }
  std::optional<std::string> Value(const std::string& key) {
    auto kv = etcd_.store().Get(layout_.KeyFor(key));
    return kv ? std::optional(kv->value) : std::nullopt;
  }
  std::optional<int64_t> Checkpoint() {
    auto kv = etcd_.store().Get(keys_.checkpoint_key);
    return kv ? DecodeZxid(kv->value) : std::nullopt;
  }
  static SinkWrite Put(const std::string& key, const std::string& value, int64_t version) {
    return {SinkWrite::Type::kPut, key, value, version, std::nullopt, std::nullopt};
  }
  static SinkWrite Delete(const std::string& key, int64_t version) {
    return {SinkWrite::Type::kDelete, key, "", version, std::nullopt, std::nullopt};
  }

  SystemClock clock_;
  etcd::FakeEtcdClient etcd_{clock_};
  MirrorKeys keys_ = MirrorKeysFor(kDefaultMirrorMetaRoot, "m");
  KeyLayout layout_ =
      KeyLayout::ForMirror("/registry", std::string("/copy"), keys_.records_prefix).value();
  EtcdSink sink_{etcd_, layout_, {.checkpoint_key = keys_.checkpoint_key}};
};

// The same against a far etcd, where batches of independent writes are cut small.
class FarCheckpointedEtcdSinkTest : public CheckpointedEtcdSinkTest {
 protected:
  etcd::FakeEtcdClient far_etcd_{clock_, {.far = true}};
  EtcdSink far_sink_{far_etcd_, layout_, {.checkpoint_key = keys_.checkpoint_key}};
};

TEST_F(CheckpointedEtcdSinkTest, ReadCheckpointIsNoneUntilOneIsRecorded) {
  auto none = sink_.ReadCheckpoint();
  ASSERT_TRUE(none.ok()) << none.error().ToString();
  EXPECT_EQ(*none, std::nullopt);

  etcd_.store().PutDirect(keys_.checkpoint_key, EncodeZxid(0x1234));
  auto some = sink_.ReadCheckpoint();
  ASSERT_TRUE(some.ok());
  EXPECT_EQ(*some, std::optional<int64_t>(0x1234));

  etcd_.store().PutDirect(keys_.checkpoint_key, "garbage");
  auto bad = sink_.ReadCheckpoint();
  ASSERT_FALSE(bad.ok());
  EXPECT_EQ(bad.error().code, core::SinkError::Code::kOther);

  EtcdSink plain(etcd_, layout_);
  auto refused = plain.ReadCheckpoint();
  ASSERT_FALSE(refused.ok());
  EXPECT_EQ(refused.error().code, core::SinkError::Code::kRefused);
  std::promise<core::BatchResult> answer;
  plain.ApplyAtomicAsync({Put("/registry/a", "a", 5)}, 5, std::nullopt,
                         [&](core::BatchResult result) { answer.set_value(std::move(result)); });
  auto atomic = answer.get_future().get();
  ASSERT_FALSE(atomic.ok());
  EXPECT_EQ(atomic.error().code, core::SinkError::Code::kRefused);
  EXPECT_EQ(Value("/registry/a"), std::nullopt);
}

TEST_F(CheckpointedEtcdSinkTest, TheCheckpointIsWrittenInTheSameRevisionAsTheData) {
  const int64_t before = etcd_.store().revision();
  auto result = ApplyAtomic({Put("/registry/a", "a", 7), Put("/registry2", "b", 8)}, 8);
  ASSERT_TRUE(result.ok()) << result.error().ToString();
  ASSERT_EQ(result->size(), 2u);
  EXPECT_EQ(result->at(0).outcome, WriteOutcome::kApplied);
  EXPECT_EQ(result->at(1).outcome, WriteOutcome::kApplied);
  EXPECT_EQ(etcd_.store().revision(), before + 1);
  const int64_t revision = etcd_.store().revision();
  EXPECT_EQ(etcd_.store().Get("/copy/a")->mod_revision, revision);
  EXPECT_EQ(etcd_.store().Get("/copy2")->mod_revision, revision);
  EXPECT_EQ(etcd_.store().Get(keys_.records_prefix + "/copy/a")->mod_revision, revision);
  EXPECT_EQ(etcd_.store().Get(keys_.checkpoint_key)->mod_revision, revision);
  EXPECT_EQ(Checkpoint(), std::optional<int64_t>(8));
  EXPECT_EQ(*sink_.ReadCheckpoint(), std::optional<int64_t>(8));
}

TEST_F(CheckpointedEtcdSinkTest, ALostFenceWritesNothing) {
  ASSERT_TRUE(ApplyAtomic({}, 3).ok());
  etcd_.store().PutDirect("/election/leader", "me");
  const int64_t created = etcd_.store().Get("/election/leader")->create_revision;
  auto held =
      ApplyAtomic({Put("/registry/a", "a", 4)}, 4, core::Fence{"/election/leader", created});
  ASSERT_TRUE(held.ok());
  EXPECT_EQ(Checkpoint(), std::optional<int64_t>(4));

  const int64_t before = etcd_.store().revision();
  auto lost = ApplyAtomic({Put("/registry/b", "b", 9), Delete("/registry/a", 9)}, 9,
                          core::Fence{"/election/leader", created + 1});
  ASSERT_FALSE(lost.ok());
  EXPECT_EQ(lost.error().code, core::SinkError::Code::kNotLeader);
  EXPECT_EQ(etcd_.store().revision(), before);
  EXPECT_EQ(Value("/registry/b"), std::nullopt);
  EXPECT_EQ(Value("/registry/a"), "a");
  EXPECT_EQ(Checkpoint(), std::optional<int64_t>(4));
}

TEST_F(CheckpointedEtcdSinkTest, EachWriteOfAnAtomicBatchHasItsOutcome) {
  // Ours at version 10; foreign; ours at 20 (newer than the write below); absent.
  ASSERT_TRUE(
      ApplyAtomic({Put("/registry/ours", "old", 10), Put("/registry/newer", "new", 20)}, 20).ok());
  etcd_.store().PutDirect("/copy/foreign", "theirs");

  auto result = ApplyAtomic({Put("/registry/ours", "v", 11), Put("/registry/foreign", "v", 11),
                             Put("/registry/newer", "v", 11), Delete("/registry/absent", 11),
                             Put("/registry/fresh", "v", 11)},
                            21);
  ASSERT_TRUE(result.ok()) << result.error().ToString();
  ASSERT_EQ(result->size(), 5u);
  EXPECT_EQ(result->at(0).outcome, WriteOutcome::kApplied);
  EXPECT_EQ(result->at(1).outcome, WriteOutcome::kForeign);
  EXPECT_EQ(result->at(2).outcome, WriteOutcome::kStale);
  EXPECT_EQ(result->at(3).outcome, WriteOutcome::kAlreadyAbsent);
  EXPECT_EQ(result->at(4).outcome, WriteOutcome::kApplied);
  for (const core::WriteAnswer& answer : *result) EXPECT_FALSE(answer.resend_variant);
  EXPECT_EQ(Value("/registry/ours"), "v");
  EXPECT_EQ(Value("/registry/foreign"), "theirs");
  EXPECT_EQ(Value("/registry/newer"), "new");
  EXPECT_EQ(Checkpoint(), std::optional<int64_t>(21));

  // A large value goes nested as well (no resend), and a delete applies.
  auto large = ApplyAtomic(
      {Put("/registry/large", std::string(100 * 1024, 'x'), 30), Delete("/registry/ours", 30)}, 30);
  ASSERT_TRUE(large.ok()) << large.error().ToString();
  EXPECT_EQ(large->at(0).outcome, WriteOutcome::kApplied);
  EXPECT_EQ(large->at(1).outcome, WriteOutcome::kApplied);
  EXPECT_EQ(Value("/registry/ours"), std::nullopt);
}

TEST_F(CheckpointedEtcdSinkTest, AnEmptyBatchRecordsOnlyTheCheckpoint) {
  const int64_t before = etcd_.store().revision();
  auto result = ApplyAtomic({}, 42);
  ASSERT_TRUE(result.ok());
  EXPECT_TRUE(result->empty());
  EXPECT_EQ(etcd_.store().revision(), before + 1);
  EXPECT_EQ(Checkpoint(), std::optional<int64_t>(42));
  EXPECT_TRUE(etcd_.store().List("/copy").empty());
}

// A source transaction is cut by etcd's own limit on a request, not by the smaller size that
// batches of independent writes are cut at when etcd is far (EtcdSinkOptions::far_batch_bytes).
TEST_F(FarCheckpointedEtcdSinkTest,
       AnAtomicBatchLargerThanABatchOfIndependentWritesIsOneTransaction) {
  const core::BatchLimits limits = far_sink_.AtomicLimits();
  EXPECT_EQ(limits.max_bytes, size_t{1} << 20);
  std::vector<SinkWrite> writes;
  size_t bytes = limits.overhead_bytes;
  for (int i = 0; i < 8; ++i) {
    writes.push_back(Put(NumberedPath("/registry/large", i), std::string(40 << 10, 'v'), 7));
    bytes += far_sink_.AtomicCost(writes.back()).bytes;
  }
  ASSERT_GT(bytes, far_sink_.Limits(0).max_bytes);
  ASSERT_LE(bytes, limits.max_bytes);
  const int64_t before = far_etcd_.store().revision();
  std::promise<core::BatchResult> answer;
  far_sink_.ApplyAtomicAsync(std::move(writes), 7, std::nullopt, [&](core::BatchResult result) {
    answer.set_value(std::move(result));
  });
  auto result = answer.get_future().get();
  ASSERT_TRUE(result.ok()) << result.error().ToString();
  EXPECT_EQ(far_etcd_.store().revision(), before + 1);
  auto large = far_etcd_.store().Get(layout_.KeyFor(NumberedPath("/registry/large", 7)));
  ASSERT_TRUE(large.has_value());
  EXPECT_EQ(large->value, std::string(40 << 10, 'v'));
}

TEST_F(CheckpointedEtcdSinkTest, AFullAtomicBatchFitsEtcdsLimitsAndErrorsAreMapped) {
  const core::BatchLimits limits = sink_.AtomicLimits();
  EXPECT_EQ(limits.max_writes, static_cast<size_t>(MaxKeysPerTxn() - 1));
  EXPECT_GT(limits.overhead_bytes, sink_.Limits(0).overhead_bytes);
  std::vector<SinkWrite> writes;
  for (size_t i = 0; i < limits.max_writes; ++i) {
    writes.push_back(Put(NumberedPath("/registry/k", static_cast<int>(i)), "v", 5));
  }
  auto result = ApplyAtomic(std::move(writes), 5);
  ASSERT_TRUE(result.ok()) << result.error().ToString();
  EXPECT_EQ(result->size(), limits.max_writes);
  EXPECT_EQ(Checkpoint(), std::optional<int64_t>(5));

  etcd_.InjectFault("txn", etcd::ErrorCode::kUnavailable);
  auto unavailable = ApplyAtomic({Put("/registry/x", "x", 6)}, 6);
  ASSERT_FALSE(unavailable.ok());
  EXPECT_TRUE(unavailable.error().Retryable());
  EXPECT_EQ(Checkpoint(), std::optional<int64_t>(5));
}

TEST_F(CheckpointedEtcdSinkTest, AMirrorListingUsesStringPrefixes) {
  ASSERT_TRUE(ApplyAtomic({Put("/registry/a", "a", 1), Put("/registry2", "b", 2)}, 2).ok());
  etcd_.store().PutDirect("/copx", "outside");
  std::unique_ptr<core::SinkCursor> cursor = sink_.List("/registry", {});
  cursor->Start();
  std::vector<std::string> keys;
  while (true) {
    auto next = cursor->Next();
    ASSERT_TRUE(next.ok()) << next.error().ToString();
    if (!next->has_value()) break;
    keys.push_back((*next)->key);
    EXPECT_TRUE((*next)->owner.has_value());
  }
  EXPECT_EQ(keys, (std::vector<std::string>{"/registry/a", "/registry2"}));
}

}  // namespace
}  // namespace zk2etcd::connectors

// LeaseMirror against two in-memory etcds on one fake clock: the destination lease of a source
// lease (same TTL, stored mapping reused after a restart), its keep-alive while the source lease
// lives, and EtcdSink binding copies to it.
#include "connectors/etcd/lease_mirror.h"

#include <gtest/gtest.h>

#include <future>

#include "connectors/etcd/etcd_sink.h"
#include "connectors/etcd/fenced_txn.h"
#include "connectors/etcd/key_layout.h"
#include "etcd/fake_etcd_client.h"

namespace zk2etcd::connectors {
namespace {

using core::SinkWrite;
using core::WriteOutcome;
using std::chrono::seconds;

class LeaseMirrorTest : public ::testing::Test {
 protected:
  std::unique_ptr<LeaseMirror> MakeMirror() {
    return std::make_unique<LeaseMirror>(source_, destination_, keys_.leases_prefix, clock_,
                                         logger_, LeaseMirrorOptions{.background = false});
  }
  int64_t SourceLease(int64_t ttl) { return source_.LeaseGrant(seconds(ttl)).value().id; }
  // Advances the clock and lets both stores look at it.
  void Advance(seconds by) {
    clock_.Advance(by);
    source_.Tick();
    destination_.Tick();
  }
  int64_t DestinationTtl(int64_t lease) {
    return destination_.LeaseTimeToLive(lease).value().granted_ttl_seconds;
  }
  bool DestinationLeaseLives(int64_t lease) {
    return destination_.LeaseTimeToLive(lease).value().ttl_seconds > 0;
  }

  FakeClock clock_;
  ops::Logger logger_{std::make_shared<ops::MemoryLogSink>(), ops::LogFormat::kText,
                      ops::LogLevel::kDebug, clock_};
  etcd::FakeEtcdClient source_{clock_};
  etcd::FakeEtcdClient destination_{clock_};
  MirrorKeys keys_ = MirrorKeysFor(kDefaultMirrorMetaRoot, "m");
};

TEST_F(LeaseMirrorTest, GrantsADestinationLeaseOfTheSameTtlOnceAndStoresTheMapping) {
  auto mirror = MakeMirror();
  const int64_t source = SourceLease(30);
  auto destination = mirror->DestinationLease(source);
  ASSERT_TRUE(destination.ok()) << destination.error().ToString();
  EXPECT_EQ(DestinationTtl(*destination), 30);
  auto stored = destination_.store().Get(mirror->MappingKey(source));
  ASSERT_TRUE(stored.has_value());
  EXPECT_EQ(stored->key, keys_.leases_prefix + EncodeZxid(source));
  EXPECT_EQ(DecodeZxid(stored->value), std::optional<int64_t>(*destination));

  const int grants = destination_.Calls("lease_grant");
  EXPECT_EQ(mirror->DestinationLease(source).value(), *destination);
  EXPECT_EQ(destination_.Calls("lease_grant"), grants);
  EXPECT_EQ(mirror->mirrored(), 1u);

  // A second source lease gets its own.
  const int64_t other = SourceLease(7);
  auto second = mirror->DestinationLease(other);
  ASSERT_TRUE(second.ok());
  EXPECT_NE(*second, *destination);
  EXPECT_EQ(DestinationTtl(*second), 7);
}

TEST_F(LeaseMirrorTest, AGoneSourceLeaseIsLeaseExpired) {
  auto mirror = MakeMirror();
  auto missing = mirror->DestinationLease(0x1234);
  ASSERT_FALSE(missing.ok());
  EXPECT_EQ(missing.error().code, core::SinkError::Code::kRefused);
  EXPECT_EQ(missing.error().label, kLeaseExpiredLabel);
  EXPECT_EQ(destination_.Calls("lease_grant"), 0);

  source_.InjectFault("lease_ttl", etcd::ErrorCode::kUnavailable);
  auto unavailable = mirror->DestinationLease(SourceLease(10));
  ASSERT_FALSE(unavailable.ok());
  EXPECT_TRUE(unavailable.error().Retryable());
}

TEST_F(LeaseMirrorTest, TheDestinationLeaseLivesWhileTheSourceLeaseDoesThenExpires) {
  auto mirror = MakeMirror();
  const int64_t source = SourceLease(10);
  auto keeper = source_.LeaseKeepAlive(source, [](const etcd::Error&) {});
  const int64_t destination = mirror->DestinationLease(source).value();
  destination_.store().PutDirect("/copy/a", "a", destination);

  // Kept alive far beyond the TTL while the source lease is.
  for (int i = 0; i < 5; ++i) {
    Advance(seconds(8));
    mirror->CheckSourceLeases();
  }
  EXPECT_TRUE(DestinationLeaseLives(destination));
  EXPECT_TRUE(destination_.store().Get("/copy/a").has_value());
  EXPECT_EQ(mirror->mirrored(), 1u);

  // The source lease ends: the mirror lets the destination lease go, which expires one TTL
  // later, with its keys.
  keeper.reset();
  Advance(seconds(11));
  mirror->CheckSourceLeases();
  EXPECT_EQ(mirror->mirrored(), 0u);
  EXPECT_FALSE(destination_.store().Get(mirror->MappingKey(source)).has_value());
  EXPECT_TRUE(destination_.store().Get("/copy/a").has_value());  // not yet
  Advance(seconds(11));
  EXPECT_FALSE(destination_.store().Get("/copy/a").has_value());
  EXPECT_FALSE(DestinationLeaseLives(destination));
  EXPECT_EQ(mirror->destination_leases_lost(), 0u);
}

TEST_F(LeaseMirrorTest, ARestartReusesTheStoredMappingWhileTheDestinationLeaseLives) {
  const int64_t source = SourceLease(20);
  auto keeper = source_.LeaseKeepAlive(source, [](const etcd::Error&) {});
  int64_t destination = 0;
  {
    auto first = MakeMirror();
    destination = first->DestinationLease(source).value();
  }  // stopped: nobody keeps the destination lease alive now
  Advance(seconds(5));

  auto second = MakeMirror();
  auto recovered = second->Recover();
  ASSERT_TRUE(recovered.ok()) << recovered.error().ToString();
  EXPECT_EQ(recovered->adopted, 1u);
  EXPECT_FALSE(recovered->needs_reconcile());
  const int grants = destination_.Calls("lease_grant");
  EXPECT_EQ(second->DestinationLease(source).value(), destination);
  EXPECT_EQ(destination_.Calls("lease_grant"), grants);
  // Adopted: kept alive again.
  Advance(seconds(30));
  EXPECT_TRUE(DestinationLeaseLives(destination));

  // Without Recover, a lookup reuses it as well.
  second.reset();
  auto third = MakeMirror();
  EXPECT_EQ(third->DestinationLease(source).value(), destination);
  EXPECT_EQ(destination_.Calls("lease_grant"), grants);
}

TEST_F(LeaseMirrorTest, RecoverFindsCopiesThatExpiredWhileTheMirrorWasDown) {
  const int64_t lives = SourceLease(10);
  auto keeper = source_.LeaseKeepAlive(lives, [](const etcd::Error&) {});
  const int64_t ends = SourceLease(10);
  int64_t old_destination = 0;
  {
    auto first = MakeMirror();
    old_destination = first->DestinationLease(lives).value();
    ASSERT_TRUE(first->DestinationLease(ends).ok());
  }
  Advance(seconds(15));  // both destination leases and the unrenewed source lease expire

  auto second = MakeMirror();
  auto recovered = second->Recover();
  ASSERT_TRUE(recovered.ok()) << recovered.error().ToString();
  EXPECT_EQ(recovered->adopted, 0u);
  EXPECT_EQ(recovered->expired, 1u);
  EXPECT_EQ(recovered->released, 1u);
  EXPECT_TRUE(recovered->needs_reconcile());
  EXPECT_TRUE(destination_.store().List(keys_.leases_prefix).empty());

  const int64_t fresh = second->DestinationLease(lives).value();
  EXPECT_NE(fresh, old_destination);
  EXPECT_TRUE(DestinationLeaseLives(fresh));
}

TEST_F(LeaseMirrorTest, ALostDestinationLeaseIsCountedAndReplaced) {
  auto mirror = MakeMirror();
  const int64_t source = SourceLease(10);
  auto keeper = source_.LeaseKeepAlive(source, [](const etcd::Error&) {});
  const int64_t destination = mirror->DestinationLease(source).value();
  destination_.SetUnavailable(true);
  Advance(seconds(11));
  destination_.SetUnavailable(false);
  destination_.Tick();
  destination_.Drain();
  EXPECT_EQ(mirror->destination_leases_lost(), 1u);
  const int64_t replaced = mirror->DestinationLease(source).value();
  EXPECT_NE(replaced, destination);
  EXPECT_TRUE(DestinationLeaseLives(replaced));
}

class LeaseCopyingSinkTest : public LeaseMirrorTest {
 protected:
  core::BatchResult Apply(std::vector<SinkWrite> writes) {
    std::vector<int> variants;
    for (const SinkWrite& write : writes) variants.push_back(sink_.DefaultVariant(write));
    std::promise<core::BatchResult> answer;
    sink_.ApplyAsync(std::move(writes), std::move(variants), std::nullopt,
                     [&](core::BatchResult result) { answer.set_value(std::move(result)); });
    return answer.get_future().get();
  }
  core::BatchResult ApplyAtomic(std::vector<SinkWrite> writes, int64_t checkpoint) {
    std::promise<core::BatchResult> answer;
    sink_.ApplyAtomicAsync(std::move(writes), checkpoint, std::nullopt,
                           [&](core::BatchResult result) { answer.set_value(std::move(result)); });
    return answer.get_future().get();
  }
  static SinkWrite Put(const std::string& key, int64_t version, int64_t lease) {
    SinkWrite write{SinkWrite::Type::kPut, key, "v", version, std::nullopt, std::nullopt};
    write.lease = lease;
    return write;
  }
  int64_t LeaseOf(const std::string& key) {
    auto kv = destination_.store().Get(key);
    return kv ? kv->lease : -1;
  }

  std::unique_ptr<LeaseMirror> mirror_ = MakeMirror();
  KeyLayout layout_ = KeyLayout::ForMirror("/registry", std::nullopt, keys_.records_prefix).value();
  EtcdSink sink_{destination_, layout_,
                 EtcdSinkOptions{.checkpoint_key = keys_.checkpoint_key, .leases = mirror_.get()}};
};

TEST_F(LeaseCopyingSinkTest, PutsBindTheKeyAndItsMetaRecordToTheDestinationLease) {
  SourceLease(30);  // so that the two stores' lease ids differ
  const int64_t source = SourceLease(30);
  auto result = Apply({Put("/registry/a", 5, source), Put("/registry/b", 5, 0)});
  ASSERT_TRUE(result.ok()) << result.error().ToString();
  EXPECT_EQ(result->at(0).outcome, WriteOutcome::kApplied);
  EXPECT_EQ(result->at(1).outcome, WriteOutcome::kApplied);
  const int64_t destination = mirror_->DestinationLease(source).value();
  EXPECT_NE(destination, source);
  EXPECT_EQ(LeaseOf("/registry/a"), destination);
  EXPECT_EQ(LeaseOf(keys_.records_prefix + "/registry/a"), destination);
  EXPECT_EQ(LeaseOf("/registry/b"), 0);
  EXPECT_EQ(LeaseOf(keys_.records_prefix + "/registry/b"), 0);

  // A later put without a lease detaches it, as on the source.
  ASSERT_TRUE(Apply({Put("/registry/a", 6, 0)}).ok());
  EXPECT_EQ(LeaseOf("/registry/a"), 0);

  // The atomic form binds too.
  auto atomic = ApplyAtomic({Put("/registry/c", 7, source)}, 7);
  ASSERT_TRUE(atomic.ok()) << atomic.error().ToString();
  EXPECT_EQ(atomic->at(0).outcome, WriteOutcome::kApplied);
  EXPECT_EQ(LeaseOf("/registry/c"), destination);
  EXPECT_EQ(LeaseOf(keys_.records_prefix + "/registry/c"), destination);

  // The lease costs bytes.
  EXPECT_GT(sink_.Cost(Put("/registry/a", 5, source), 0).bytes,
            sink_.Cost(Put("/registry/a", 5, 0), 0).bytes);
}

TEST_F(LeaseCopyingSinkTest, AFailedLeaseLookupFailsThatWriteAlone) {
  const int64_t source = SourceLease(30);
  auto result = Apply({Put("/registry/a", 5, 0x777), Put("/registry/b", 5, source)});
  ASSERT_TRUE(result.ok()) << result.error().ToString();
  ASSERT_EQ(result->size(), 2u);
  EXPECT_FALSE(result->at(0).outcome);
  EXPECT_FALSE(result->at(0).resend_variant);
  EXPECT_TRUE(result->at(0).error.starts_with("lease_expired")) << result->at(0).error;
  EXPECT_TRUE(result->at(0).skipped);
  EXPECT_EQ(result->at(1).outcome, WriteOutcome::kApplied);
  EXPECT_FALSE(result->at(1).skipped);
  EXPECT_FALSE(destination_.store().Get("/registry/a").has_value());

  // Atomic: an expired source lease leaves its write out, the rest and the checkpoint apply.
  auto atomic = ApplyAtomic({Put("/registry/c", 6, 0x777), Put("/registry/d", 6, source)}, 6);
  ASSERT_TRUE(atomic.ok()) << atomic.error().ToString();
  EXPECT_TRUE(atomic->at(0).error.starts_with("lease_expired"));
  EXPECT_TRUE(atomic->at(0).skipped);
  EXPECT_EQ(atomic->at(1).outcome, WriteOutcome::kApplied);
  EXPECT_FALSE(destination_.store().Get("/registry/c").has_value());
  EXPECT_EQ(sink_.ReadCheckpoint().value(), std::optional<int64_t>(6));

  // Atomic: any other lookup failure fails the whole batch.
  const int64_t other = SourceLease(30);
  source_.InjectFault("lease_ttl", etcd::ErrorCode::kUnavailable);
  auto failed = ApplyAtomic({Put("/registry/e", 7, other), Put("/registry/f", 7, 0)}, 7);
  ASSERT_FALSE(failed.ok());
  EXPECT_TRUE(failed.error().Retryable());
  EXPECT_FALSE(destination_.store().Get("/registry/f").has_value());
  EXPECT_EQ(sink_.ReadCheckpoint().value(), std::optional<int64_t>(6));
}

}  // namespace
}  // namespace zk2etcd::connectors

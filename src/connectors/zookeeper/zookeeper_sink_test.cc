// ZooKeeperSink against the in-memory ZooKeeper: records, fences, ownership, parents, sequential
// counters, node types and ACLs, deletes with children, the owned set.
#include "connectors/zookeeper/zookeeper_sink.h"

#include <gtest/gtest.h>

#include <future>

#include "zk/fake_zk_client.h"

namespace zk2etcd::connectors {
namespace {

using core::SinkWrite;
using core::WriteOutcome;

constexpr char kMeta[] = "/zk2zk/test";

SinkWrite Put(std::string key, std::string value, int64_t version) {
  SinkWrite write;
  write.type = SinkWrite::Type::kPut;
  write.key = std::move(key);
  write.value = std::move(value);
  write.version = version;
  return write;
}

SinkWrite Delete(std::string key, int64_t at) {
  SinkWrite write;
  write.type = SinkWrite::Type::kDelete;
  write.key = std::move(key);
  write.version = at;
  return write;
}

class ZooKeeperSinkTest : public ::testing::Test {
 protected:
  std::unique_ptr<ZooKeeperSink> MakeSink(ZooKeeperSinkOptions options = {}) {
    options.meta_root = kMeta;
    return std::make_unique<ZooKeeperSink>(*factory_, scope_, logger_, std::move(options));
  }

  core::BatchResult Apply(ZooKeeperSink& sink, std::vector<SinkWrite> writes,
                          std::optional<core::Fence> fence = std::nullopt) {
    std::promise<core::BatchResult> answered;
    std::vector<int> variants(writes.size(), 0);
    sink.ApplyAsync(
        std::move(writes), std::move(variants), fence,
        [&answered](core::BatchResult result) { answered.set_value(std::move(result)); });
    return answered.get_future().get();
  }

  // The single answer's outcome (fails the test if there is none).
  WriteOutcome ApplyOne(ZooKeeperSink& sink, SinkWrite write) {
    auto result = Apply(sink, {std::move(write)});
    EXPECT_TRUE(result.ok()) << (result.ok() ? "" : result.error().message);
    if (!result.ok() || result->size() != 1 || !(*result)[0].outcome) {
      ADD_FAILURE() << "no outcome"
                    << (result.ok() && !result->empty() ? ": " + (*result)[0].error : "");
      return WriteOutcome::kForeign;
    }
    return *(*result)[0].outcome;
  }

  std::string DataOf(std::string_view path) {
    auto node = server_->GetNode(path);
    return node ? node->data : "<absent>";
  }

  SystemClock clock_;
  std::shared_ptr<zk::FakeZkServer> server_ = zk::FakeZkServer::Create(&clock_);
  std::unique_ptr<zk::ZkClientFactory> factory_ = server_->NewFactory();
  core::Scope scope_ = core::Scope::Create({"/app"}, {}).value();
  std::shared_ptr<ops::MemoryLogSink> log_sink_ = std::make_shared<ops::MemoryLogSink>();
  ops::Logger logger_{log_sink_, ops::LogFormat::kJson, ops::LogLevel::kDebug, clock_};
};

TEST_F(ZooKeeperSinkTest, PutCreatesTheNodeAndItsRecordInOneMulti) {
  auto sink = MakeSink();
  ASSERT_TRUE(server_->CreateNodeAll("/app", "").ok());
  EXPECT_EQ(ApplyOne(*sink, Put("/app/a", "v1", 100)), WriteOutcome::kApplied);
  EXPECT_EQ(DataOf("/app/a"), "v1");
  EXPECT_EQ(DataOf(std::string(kMeta) + "/owned/app/a"), "100");
  EXPECT_TRUE(sink->Owns("/app/a"));

  auto read = sink->Read({"/app/a", "/app/b"});
  ASSERT_TRUE(read.ok());
  ASSERT_TRUE((*read)[0].value.has_value());
  EXPECT_EQ(*(*read)[0].value, "v1");
  ASSERT_TRUE((*read)[0].owner.has_value());
  EXPECT_EQ((*read)[0].owner->source_version, 100);
  EXPECT_FALSE((*read)[1].value.has_value());
  EXPECT_FALSE((*read)[1].owner.has_value());
}

TEST_F(ZooKeeperSinkTest, ALateWriteNeverOverwritesANewerOne) {
  auto sink = MakeSink();
  ASSERT_TRUE(server_->CreateNodeAll("/app", "").ok());
  EXPECT_EQ(ApplyOne(*sink, Put("/app/a", "new", 200)), WriteOutcome::kApplied);
  EXPECT_EQ(ApplyOne(*sink, Put("/app/a", "old", 150)), WriteOutcome::kStale);
  EXPECT_EQ(ApplyOne(*sink, Delete("/app/a", 180)), WriteOutcome::kStale);
  EXPECT_EQ(DataOf("/app/a"), "new");
  EXPECT_EQ(ApplyOne(*sink, Put("/app/a", "newer", 300)), WriteOutcome::kApplied);
  EXPECT_EQ(DataOf("/app/a"), "newer");
  EXPECT_EQ(ApplyOne(*sink, Delete("/app/a", 400)), WriteOutcome::kApplied);
  EXPECT_EQ(DataOf("/app/a"), "<absent>");
  EXPECT_EQ(DataOf(std::string(kMeta) + "/owned/app/a"), "<absent>");
  EXPECT_FALSE(sink->Owns("/app/a"));
  EXPECT_EQ(ApplyOne(*sink, Delete("/app/a", 500)), WriteOutcome::kAlreadyAbsent);
}

// A copy changed or deleted on the target (by a client, an operator) is written again from the
// version its record holds; one that is as written is left alone.
TEST_F(ZooKeeperSinkTest, ACopyChangedOrDeletedOnTheTargetIsRestoredAtTheSameVersion) {
  auto sink = MakeSink();
  ASSERT_TRUE(server_->CreateNodeAll("/app", "").ok());
  EXPECT_EQ(ApplyOne(*sink, Put("/app/a", "v1", 100)), WriteOutcome::kApplied);
  EXPECT_EQ(ApplyOne(*sink, Put("/app/b", "v1", 100)), WriteOutcome::kApplied);
  const int64_t untouched_mzxid = server_->GetNode("/app/a")->stat.mzxid;
  EXPECT_EQ(ApplyOne(*sink, Put("/app/a", "v1", 100)), WriteOutcome::kStale);  // as written
  EXPECT_EQ(server_->GetNode("/app/a")->stat.mzxid, untouched_mzxid);
  ASSERT_TRUE(server_->SetNodeData("/app/a", "tampered").ok());
  ASSERT_TRUE(server_->DeleteNode("/app/b").ok());
  EXPECT_EQ(ApplyOne(*sink, Put("/app/a", "v1", 100)), WriteOutcome::kApplied);
  EXPECT_EQ(ApplyOne(*sink, Put("/app/b", "v1", 100)), WriteOutcome::kApplied);
  EXPECT_EQ(DataOf("/app/a"), "v1");
  EXPECT_EQ(DataOf("/app/b"), "v1");
  EXPECT_EQ(DataOf(std::string(kMeta) + "/owned/app/b"), "100");
  // An older version still never overwrites.
  ASSERT_TRUE(server_->SetNodeData("/app/a", "tampered").ok());
  EXPECT_EQ(ApplyOne(*sink, Put("/app/a", "v0", 50)), WriteOutcome::kStale);
  EXPECT_EQ(DataOf("/app/a"), "tampered");
}

TEST_F(ZooKeeperSinkTest, ANodeItDidNotWriteIsLeftAloneUnlessClaimedExactly) {
  auto sink = MakeSink();
  ASSERT_TRUE(server_->CreateNodeAll("/app/client", "theirs").ok());
  EXPECT_EQ(ApplyOne(*sink, Put("/app/client", "ours", 100)), WriteOutcome::kForeign);
  EXPECT_EQ(ApplyOne(*sink, Delete("/app/client", 100)), WriteOutcome::kForeign);
  EXPECT_EQ(DataOf("/app/client"), "theirs");

  const int64_t mzxid = server_->GetNode("/app/client")->stat.mzxid;
  SinkWrite wrong_claim = Put("/app/client", "ours", 100);
  wrong_claim.claim = mzxid - 1;
  EXPECT_EQ(ApplyOne(*sink, wrong_claim), WriteOutcome::kForeign);
  SinkWrite adopt;
  adopt.type = SinkWrite::Type::kAdopt;
  adopt.key = "/app/client";
  adopt.version = 100;
  adopt.claim = mzxid;
  EXPECT_EQ(ApplyOne(*sink, adopt), WriteOutcome::kApplied);
  EXPECT_EQ(DataOf("/app/client"), "theirs");
  EXPECT_EQ(DataOf(std::string(kMeta) + "/owned/app/client"), "100");
  EXPECT_EQ(ApplyOne(*sink, Put("/app/client", "ours", 101)), WriteOutcome::kApplied);
  EXPECT_EQ(DataOf("/app/client"), "ours");
}

TEST_F(ZooKeeperSinkTest, EphemeralNodesAreNeverTaken) {
  auto sink = MakeSink();
  ASSERT_TRUE(server_->CreateNodeAll("/app", "").ok());
  auto holder = server_->NewClient({});
  ASSERT_TRUE(zk::blocking::Create(*holder, "/app/e", "x", zk::CreateMode::kEphemeral).ok());
  SinkWrite adopt;
  adopt.type = SinkWrite::Type::kAdopt;
  adopt.key = "/app/e";
  adopt.version = 100;
  adopt.claim = server_->GetNode("/app/e")->stat.mzxid;
  EXPECT_EQ(ApplyOne(*sink, adopt), WriteOutcome::kForeign);
  EXPECT_EQ(DataOf(std::string(kMeta) + "/owned/app/e"), "<absent>");
}

TEST_F(ZooKeeperSinkTest, MissingParentsAreCreatedAndTheirOwnWriteStillApplies) {
  auto sink = MakeSink();
  // The child comes first (its parent's write is late): the parent is made with a record of
  // source version 0, which its own write then replaces.
  EXPECT_EQ(ApplyOne(*sink, Put("/app/svc/providers/p1", "url", 100)), WriteOutcome::kApplied);
  EXPECT_EQ(DataOf("/app/svc/providers/p1"), "url");
  EXPECT_EQ(DataOf(std::string(kMeta) + "/owned/app/svc/providers"), "0");
  EXPECT_EQ(ApplyOne(*sink, Put("/app/svc/providers", "parent", 50)), WriteOutcome::kApplied);
  EXPECT_EQ(DataOf("/app/svc/providers"), "parent");
  EXPECT_EQ(DataOf(std::string(kMeta) + "/owned/app/svc/providers"), "50");
}

TEST_F(ZooKeeperSinkTest, ParentsOfTheReverseDirectionArePlainNodes) {
  ZooKeeperSinkOptions options;
  options.own_created_parents = false;
  auto sink = MakeSink(options);
  EXPECT_EQ(ApplyOne(*sink, Put("/app/svc/providers/p1", "url", 100)), WriteOutcome::kApplied);
  EXPECT_EQ(DataOf("/app/svc/providers"), "");
  // Its record node is a placeholder (the ancestor of p1's record), not a record.
  EXPECT_EQ(DataOf(std::string(kMeta) + "/owned/app/svc/providers"), "");
  EXPECT_FALSE(sink->Owns("/app/svc/providers"));
}

TEST_F(ZooKeeperSinkTest, OneBatchCreatesParentsFirstAndDeletesChildrenFirst) {
  auto sink = MakeSink();
  auto created =
      Apply(*sink, {Put("/app/s/a/b", "b", 12), Put("/app/s", "s", 10), Put("/app/s/a", "a", 11)});
  ASSERT_TRUE(created.ok());
  for (const auto& answer : *created) EXPECT_EQ(answer.outcome, WriteOutcome::kApplied);
  EXPECT_EQ(DataOf(std::string(kMeta) + "/owned/app/s"), "10");
  auto deleted =
      Apply(*sink, {Delete("/app/s", 20), Delete("/app/s/a/b", 20), Delete("/app/s/a", 20)});
  ASSERT_TRUE(deleted.ok());
  for (const auto& answer : *deleted) EXPECT_EQ(answer.outcome, WriteOutcome::kApplied);
  EXPECT_EQ(DataOf("/app/s"), "<absent>");
  EXPECT_EQ(DataOf(std::string(kMeta) + "/owned/app/s"), "<absent>");
}

TEST_F(ZooKeeperSinkTest, ADeleteOfANodeWithChildrenIsSentAgainThenReported) {
  ZooKeeperSinkOptions options;
  options.max_delete_resends = 2;
  auto sink = MakeSink(options);
  EXPECT_EQ(ApplyOne(*sink, Put("/app/p", "p", 10)), WriteOutcome::kApplied);
  ASSERT_TRUE(server_->CreateNode("/app/p/client-child", "c").ok());
  for (int attempt = 0; attempt < 2; ++attempt) {
    auto result = Apply(*sink, {Delete("/app/p", 20)});
    ASSERT_TRUE(result.ok());
    EXPECT_EQ((*result)[0].resend_variant, 0);
  }
  auto result = Apply(*sink, {Delete("/app/p", 20)});
  ASSERT_TRUE(result.ok());
  EXPECT_FALSE((*result)[0].outcome.has_value());
  EXPECT_NE((*result)[0].error.find("children"), std::string::npos) << (*result)[0].error;
  EXPECT_EQ(DataOf("/app/p"), "p");
}

TEST_F(ZooKeeperSinkTest, ACopiedSequentialNameMovesItsParentsCounterPastIt) {
  auto sink = MakeSink();
  ASSERT_TRUE(server_->CreateNodeAll("/app/locks", "").ok());
  EXPECT_EQ(ApplyOne(*sink, Put("/app/locks/lock-0000000041", "a", 100)), WriteOutcome::kApplied);
  EXPECT_GE(server_->GetNode("/app/locks")->stat.cversion, 42);
  auto client = server_->NewClient({});
  auto next =
      zk::blocking::Create(*client, "/app/locks/lock-", "", zk::CreateMode::kPersistentSequential);
  ASSERT_TRUE(next.ok());
  EXPECT_GT(next->path, "/app/locks/lock-0000000041");
  // No bump node is left behind.
  EXPECT_EQ(server_->Children("/app/locks").size(), 2u);
}

TEST_F(ZooKeeperSinkTest, OnlyExactlyTenTrailingDigitsAreASequentialName) {
  ZooKeeperSinkOptions options;
  options.max_counter_gap = 500;
  auto sink = MakeSink(options);
  ASSERT_TRUE(server_->CreateNodeAll("/app/providers", "").ok());
  // A Dubbo provider's URL ends in a 13-digit millisecond timestamp: not a sequence number.
  EXPECT_EQ(
      ApplyOne(*sink, Put("/app/providers/dubbo%3A%2F%2Fh%3Fpid%3D9%26timestamp%3D1700000000123",
                          "", 100)),
      WriteOutcome::kApplied);
  // Ten digits past max_counter_gap: copied, the counter left alone (with a warning).
  EXPECT_EQ(ApplyOne(*sink, Put("/app/providers/job-0000009999", "", 101)), WriteOutcome::kApplied);
  EXPECT_LT(server_->GetNode("/app/providers")->stat.cversion, 10);
  EXPECT_TRUE(ZooKeeperSink::IsTransientNode("/app/p/zk2zk-sequence-bump-0000000001"));
  EXPECT_FALSE(ZooKeeperSink::IsTransientNode("/app/p/lock-0000000001"));
}

TEST_F(ZooKeeperSinkTest, LargeCounterGapsGoInMultisOfTheirOwn) {
  ZooKeeperSinkOptions options;
  options.max_counter_ops = 10;
  auto sink = MakeSink(options);
  ASSERT_TRUE(server_->CreateNodeAll("/app/q", "").ok());
  EXPECT_EQ(ApplyOne(*sink, Put("/app/q/item-0000000100", "a", 100)), WriteOutcome::kApplied);
  EXPECT_GE(server_->GetNode("/app/q")->stat.cversion, 101);
}

TEST_F(ZooKeeperSinkTest, CreatesCopyTheSourcesAclAndEphemeralsBecomePersistent) {
  ZooKeeperSinkOptions options;
  std::vector<zk::Acl> acl = {zk::Acl{zk::kPermRead, "world", "anyone"},
                              zk::Acl{zk::kPermAll, "digest", "u:hash"}};
  options.source_info = [&acl](const std::string& path, auto done) {
    SourceNodeInfo info;
    info.acl = acl;
    if (path == "/app/container") info.stat.ephemeral_owner = INT64_MIN;
    if (path == "/app/ephemeral") info.stat.ephemeral_owner = 0x1234;
    if (path == "/app/gone") return done(std::optional<SourceNodeInfo>());
    done(std::optional<SourceNodeInfo>(info));
  };
  auto sink = MakeSink(options);
  ASSERT_TRUE(server_->CreateNodeAll("/app", "").ok());
  // ZooKeeper shows no client a container's kind (its Stat says persistent), so only the create
  // succeeding can be checked here.
  EXPECT_EQ(ApplyOne(*sink, Put("/app/container", "c", 10)), WriteOutcome::kApplied);
  EXPECT_EQ(DataOf("/app/container"), "c");
  EXPECT_EQ(ApplyOne(*sink, Put("/app/ephemeral", "e", 10)), WriteOutcome::kApplied);
  EXPECT_EQ(zk::NodeKindOf(server_->GetNode("/app/ephemeral")->stat), zk::NodeKind::kPersistent);
  auto client = server_->NewClient({});
  auto copied_acl = zk::blocking::GetAcl(*client, "/app/ephemeral");
  ASSERT_TRUE(copied_acl.ok());
  EXPECT_EQ(copied_acl->acl, acl);

  auto gone = Apply(*sink, {Put("/app/gone", "g", 10)});
  ASSERT_TRUE(gone.ok());
  EXPECT_TRUE((*gone)[0].skipped);
  EXPECT_EQ(DataOf("/app/gone"), "<absent>");
  EXPECT_FALSE(sink->Owns("/app/gone"));
}

TEST_F(ZooKeeperSinkTest, TtlNodesBecomePersistentWhereTheTargetRefusesThem) {
  ZooKeeperSinkOptions options;
  options.source_info = [](const std::string&, auto done) {
    SourceNodeInfo info;
    info.stat.ephemeral_owner = static_cast<int64_t>(0xFF00000000000000ULL | 5000);
    done(std::optional<SourceNodeInfo>(info));
  };
  auto sink = MakeSink(options);
  ASSERT_TRUE(server_->CreateNodeAll("/app", "").ok());
  EXPECT_EQ(ApplyOne(*sink, Put("/app/ttl", "t", 10)), WriteOutcome::kApplied);
  EXPECT_EQ(DataOf("/app/ttl"), "t");
  EXPECT_EQ(zk::NodeKindOf(server_->GetNode("/app/ttl")->stat), zk::NodeKind::kPersistent);
}

TEST_F(ZooKeeperSinkTest, TheElectionsLockNodeFencesEveryWrite) {
  auto sink = MakeSink();
  ASSERT_TRUE(server_->CreateNodeAll("/app", "").ok());
  ASSERT_TRUE(server_->CreateNodeAll("/zk2zk/test/election/lock-0000000001", "me").ok());
  const core::Fence fence{"/zk2zk/test/election/lock-0000000001", 7};
  auto applied = Apply(*sink, {Put("/app/a", "v", 10)}, fence);
  ASSERT_TRUE(applied.ok());
  ASSERT_TRUE(server_->DeleteNode(fence.key).ok());
  auto refused = Apply(*sink, {Put("/app/a", "v2", 20)}, fence);
  ASSERT_FALSE(refused.ok());
  EXPECT_EQ(refused.error().code, core::SinkError::Code::kNotLeader);
  EXPECT_EQ(DataOf("/app/a"), "v");
}

TEST_F(ZooKeeperSinkTest, ATokenFencesADeposedLeaderOnAnotherEnsemble) {
  ZooKeeperSinkOptions options;
  options.fence_mode = FenceMode::kToken;
  auto old_leader = MakeSink(options);
  auto new_leader = MakeSink(options);
  ASSERT_TRUE(server_->CreateNodeAll("/app", "").ok());
  const core::Fence first{"/elsewhere/lock-0000000001", 1};
  const core::Fence second{"/elsewhere/lock-0000000002", 2};
  EXPECT_TRUE(Apply(*old_leader, {Put("/app/a", "v1", 10)}, first).ok());
  EXPECT_TRUE(Apply(*new_leader, {Put("/app/a", "v2", 20)}, second).ok());
  auto refused = Apply(*old_leader, {Put("/app/b", "late", 30)}, first);
  ASSERT_FALSE(refused.ok());
  EXPECT_EQ(refused.error().code, core::SinkError::Code::kNotLeader);
  EXPECT_EQ(DataOf("/app/b"), "<absent>");
}

TEST_F(ZooKeeperSinkTest, ListingJoinsNodesWithRecordsAndCompletesTheOwnedSet) {
  auto writer = MakeSink();
  ASSERT_TRUE(server_->CreateNodeAll("/app/foreign", "f").ok());
  EXPECT_EQ(ApplyOne(*writer, Put("/app/ours", "o", 10)), WriteOutcome::kApplied);
  EXPECT_EQ(ApplyOne(*writer, Put("/app/gone", "g", 11)), WriteOutcome::kApplied);
  ASSERT_TRUE(server_->DeleteNode("/app/gone").ok());  // its record stays behind

  auto sink = MakeSink();
  EXPECT_FALSE(sink->Owns("/app/ours"));
  auto cursor = sink->List("/app", {});
  std::vector<core::SinkEntry> entries;
  while (true) {
    auto next = cursor->Next();
    ASSERT_TRUE(next.ok()) << next.error().message;
    if (!next->has_value()) break;
    entries.push_back(std::move(**next));
  }
  ASSERT_EQ(entries.size(), 4u);  // /app, /app/foreign, /app/gone (record only), /app/ours
  EXPECT_EQ(entries[0].key, "/app");
  EXPECT_FALSE(entries[0].owner.has_value());
  EXPECT_EQ(entries[1].key, "/app/foreign");
  EXPECT_FALSE(entries[1].owner.has_value());
  EXPECT_EQ(entries[2].key, "/app/gone");
  EXPECT_FALSE(entries[2].value.has_value());
  ASSERT_TRUE(entries[2].owner.has_value());
  EXPECT_EQ(entries[2].owner->source_version, 11);
  EXPECT_EQ(entries[3].key, "/app/ours");
  EXPECT_EQ(*entries[3].value, "o");
  EXPECT_GT(cursor->point(), 0);
  EXPECT_TRUE(sink->Owns("/app/ours"));
  EXPECT_TRUE(sink->Owns("/app/gone"));
  EXPECT_FALSE(sink->Owns("/app/foreign"));

  // Complete now: a delete of a key it does not own needs no request.
  EXPECT_EQ(ApplyOne(*sink, Delete("/app/foreign", 100)), WriteOutcome::kAlreadyAbsent);
  EXPECT_EQ(DataOf("/app/foreign"), "f");
}

TEST_F(ZooKeeperSinkTest, UnownBeforeDeleteTellsItsOwnDeletesFromAClients) {
  ZooKeeperSinkOptions options;
  options.unown_before_delete = true;
  auto sink = MakeSink(options);
  ASSERT_TRUE(server_->CreateNodeAll("/app", "").ok());
  EXPECT_EQ(ApplyOne(*sink, Put("/app/p", "copy", 10)), WriteOutcome::kApplied);
  EXPECT_FALSE(sink->DeletedRecently("/app/p"));
  EXPECT_EQ(ApplyOne(*sink, Delete("/app/p", 20)), WriteOutcome::kApplied);
  EXPECT_FALSE(sink->Owns("/app/p"));
  EXPECT_TRUE(sink->DeletedRecently("/app/p"));
  sink->ForgetDeleted("/app/p");  // a client's node is there now
  EXPECT_FALSE(sink->DeletedRecently("/app/p"));

  // A delete that does not apply leaves the key owned.
  EXPECT_EQ(ApplyOne(*sink, Put("/app/q", "copy", 30)), WriteOutcome::kApplied);
  ASSERT_TRUE(server_->CreateNode("/app/q/child", "").ok());
  ZooKeeperSinkOptions no_resend = options;
  no_resend.max_delete_resends = 0;
  auto strict = MakeSink(no_resend);
  ASSERT_TRUE(strict->LoadOwned().ok());
  auto kept = Apply(*strict, {Delete("/app/q", 40)});
  ASSERT_TRUE(kept.ok());
  EXPECT_FALSE((*kept)[0].outcome.has_value());
  EXPECT_TRUE(strict->Owns("/app/q"));
}

TEST_F(ZooKeeperSinkTest, LoadOwnedReadsEveryRecordOfTheScope) {
  auto writer = MakeSink();
  ASSERT_TRUE(server_->CreateNodeAll("/app", "").ok());
  EXPECT_EQ(ApplyOne(*writer, Put("/app/x", "x", 10)), WriteOutcome::kApplied);
  auto sink = MakeSink();
  ASSERT_TRUE(sink->LoadOwned().ok());
  EXPECT_TRUE(sink->Owns("/app/x"));
  EXPECT_EQ(sink->owned_count(), 1u);
}

TEST_F(ZooKeeperSinkTest, ReadNodeInfoGivesAclAndStatOrNothingForAMissingNode) {
  auto sink = MakeSink();
  ASSERT_TRUE(server_->CreateNodeAll("/app/n", "n").ok());
  std::promise<Result<std::optional<SourceNodeInfo>, std::string>> found;
  sink->ReadNodeInfo("/app/n", [&found](auto info) { found.set_value(std::move(info)); });
  auto info = found.get_future().get();
  ASSERT_TRUE(info.ok());
  ASSERT_TRUE(info->has_value());
  EXPECT_EQ((*info)->acl, zk::OpenAclUnsafe());
  std::promise<Result<std::optional<SourceNodeInfo>, std::string>> missing;
  sink->ReadNodeInfo("/app/none",
                     [&missing](auto answer) { missing.set_value(std::move(answer)); });
  auto none = missing.get_future().get();
  ASSERT_TRUE(none.ok());
  EXPECT_FALSE(none->has_value());
}

}  // namespace
}  // namespace zk2etcd::connectors

#include "zk/zk_types.h"

#include <gtest/gtest.h>

namespace zk2etcd::zk {
namespace {

Stat WithOwner(int64_t ephemeral_owner) {
  Stat stat;
  stat.ephemeral_owner = ephemeral_owner;
  return stat;
}

TEST(ZkTypesTest, CreateModePredicates) {
  EXPECT_TRUE(IsTtl(CreateMode::kPersistentWithTtl));
  EXPECT_TRUE(IsTtl(CreateMode::kPersistentSequentialWithTtl));
  EXPECT_FALSE(IsTtl(CreateMode::kContainer));
  EXPECT_TRUE(IsSequential(CreateMode::kPersistentSequentialWithTtl));
  EXPECT_FALSE(IsSequential(CreateMode::kPersistentWithTtl));
  EXPECT_FALSE(IsEphemeral(CreateMode::kPersistentWithTtl));
  EXPECT_FALSE(IsEphemeral(CreateMode::kPersistentSequentialWithTtl));
  EXPECT_EQ(MultiOp::Create("/a", "").ttl_ms, 0);
}

TEST(ZkTypesTest, NodeKindFollowsZooKeepersEphemeralOwnerEncoding) {
  EXPECT_EQ(NodeKindOf(WithOwner(0)), NodeKind::kPersistent);
  EXPECT_EQ(NodeKindOf(WithOwner(0x1000000000000001)), NodeKind::kEphemeral);
  EXPECT_EQ(NodeKindOf(WithOwner(0x0100018a2b3c0000)), NodeKind::kEphemeral);
  EXPECT_EQ(NodeKindOf(WithOwner(INT64_MIN)), NodeKind::kContainer);
  EXPECT_EQ(kContainerEphemeralOwner, static_cast<int64_t>(0x8000000000000000));

  // TTL: high byte 0xff, two zero bytes naming the TTL feature, the TTL in the low 40 bits.
  EXPECT_EQ(TtlEphemeralOwner(1), static_cast<int64_t>(0xff00000000000001));
  EXPECT_EQ(TtlEphemeralOwner(kMaxTtlMs), static_cast<int64_t>(0xff0000ffffffffff));
  EXPECT_EQ(NodeKindOf(WithOwner(TtlEphemeralOwner(1))), NodeKind::kTtl);
  EXPECT_EQ(TtlOf(WithOwner(TtlEphemeralOwner(1))), 1);
  EXPECT_EQ(TtlOf(WithOwner(TtlEphemeralOwner(3600000))), 3600000);
  EXPECT_EQ(TtlOf(WithOwner(TtlEphemeralOwner(kMaxTtlMs))), kMaxTtlMs);
  EXPECT_EQ(kMaxTtlMs, 0xffffffffff);

  // Another extended feature than TTL is none of ours: not a TTL.
  EXPECT_EQ(NodeKindOf(WithOwner(static_cast<int64_t>(0xff00010000000005))), NodeKind::kEphemeral);
  EXPECT_EQ(TtlOf(WithOwner(static_cast<int64_t>(0xff00010000000005))), 0);
  EXPECT_EQ(TtlOf(WithOwner(0)), 0);
  EXPECT_EQ(TtlOf(WithOwner(INT64_MIN)), 0);
  EXPECT_EQ(TtlOf(WithOwner(0x1000000000000001)), 0);
}

}  // namespace
}  // namespace zk2etcd::zk

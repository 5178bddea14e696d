#include "zk/reply_decoders.h"

#include <gtest/gtest.h>

namespace zk2etcd::zk::detail {
namespace {

using proto::ReplyHeader;

constexpr int32_t kErrorType = -1;

void WriteMultiHeader(JuteWriter& w, int32_t type, bool done, int32_t err) {
  w.WriteInt32(type);
  w.WriteBool(done);
  w.WriteInt32(err);
}

// A refused multi's reply body: one error result per code, then the end marker.
std::string RefusedMultiBody(const std::vector<int32_t>& errors) {
  std::string body;
  JuteWriter w(body);
  for (int32_t err : errors) {
    WriteMultiHeader(w, kErrorType, false, err);
    w.WriteInt32(err);
  }
  WriteMultiHeader(w, -1, true, -1);
  return body;
}

DecodeInfo MultiInfo(std::vector<std::string> whats) {
  DecodeInfo info;
  info.what = "multi of " + std::to_string(whats.size()) + " operations";
  info.multi_whats = std::move(whats);
  return info;
}

TEST(ReplyDecodersTest, RefusedMultiNamesTheFirstRealFailure) {
  constexpr int32_t kOk = 0, kRuntimeInconsistency = -2, kNoNode = -101, kBadVersion = -103;
  const DecodeInfo info = MultiInfo({"create /a", "delete /b", "set /c", "check /d"});
  // ZooKeeper: the operations before the failing one read Ok, those after RuntimeInconsistency.
  const std::string body =
      RefusedMultiBody({kOk, kNoNode, kRuntimeInconsistency, kRuntimeInconsistency});
  JuteReader r(body);
  std::optional<ZkResult<MultiReply>> out;
  EXPECT_EQ(DecodeMulti(ReplyHeader{1, 42, 0}, r, info, &out), ReplyOutcome::kError);
  ASSERT_TRUE(out.has_value() && !out->ok());
  EXPECT_EQ(out->error().code, ZkErrorCode::kNoNode);
  EXPECT_EQ(out->error().failed_op, 1);
  EXPECT_EQ(out->error().zxid, 42);
  EXPECT_EQ(out->error().message, "multi of 4 operations: operation 1 (delete /b): no node");

  const std::string later = RefusedMultiBody(
      {kRuntimeInconsistency, kRuntimeInconsistency, kBadVersion, kRuntimeInconsistency});
  JuteReader r2(later);
  out.reset();
  DecodeMulti(ReplyHeader{2, 43, 0}, r2, info, &out);
  ASSERT_TRUE(out.has_value() && !out->ok());
  EXPECT_EQ(out->error().code, ZkErrorCode::kBadVersion);
  EXPECT_EQ(out->error().failed_op, 2);
}

TEST(ReplyDecodersTest, MultiErrorsWithoutAFailedOperationHaveNoIndex) {
  const DecodeInfo info = MultiInfo({"create /a", "create /b"});
  // Only RuntimeInconsistency: no operation to blame.
  const std::string body = RefusedMultiBody({-2, -2});
  JuteReader r(body);
  std::optional<ZkResult<MultiReply>> out;
  EXPECT_EQ(DecodeMulti(ReplyHeader{1, 7, 0}, r, info, &out), ReplyOutcome::kError);
  ASSERT_TRUE(out.has_value() && !out->ok());
  EXPECT_EQ(out->error().code, ZkErrorCode::kRuntimeInconsistency);
  EXPECT_EQ(out->error().failed_op, -1);

  // An error in the reply header: the multi failed as a whole.
  JuteReader empty("");
  out.reset();
  EXPECT_EQ(DecodeMulti(ReplyHeader{1, 7, -6}, empty, info, &out), ReplyOutcome::kError);
  ASSERT_TRUE(out.has_value() && !out->ok());
  EXPECT_EQ(out->error().code, ZkErrorCode::kUnimplemented);
  EXPECT_EQ(out->error().failed_op, -1);
}

TEST(ReplyDecodersTest, GetAclReplyAndErrors) {
  DecodeInfo info;
  info.what = "get_acl /a";
  const std::vector<Acl> acl = {Acl{kPermRead, "world", "anyone"},
                                Acl{kPermAll, "digest", "alice:hash="}};
  Stat stat;
  stat.aversion = 2;
  stat.czxid = 9;
  std::string body;
  JuteWriter w(body);
  proto::WriteGetAclResponse(w, acl, stat);
  JuteReader r(body);
  std::optional<ZkResult<GetAclReply>> out;
  EXPECT_EQ(DecodeGetAcl(ReplyHeader{1, 11, 0}, r, info, &out), ReplyOutcome::kSuccess);
  ASSERT_TRUE(out.has_value() && out->ok());
  EXPECT_EQ((*out)->acl, acl);
  EXPECT_EQ((*out)->stat, stat);
  EXPECT_EQ((*out)->zxid, 11);

  JuteReader none("");
  out.reset();
  EXPECT_EQ(DecodeGetAcl(ReplyHeader{1, 12, -101}, none, info, &out), ReplyOutcome::kNoNode);
  ASSERT_TRUE(out.has_value() && !out->ok());
  EXPECT_EQ(out->error().code, ZkErrorCode::kNoNode);
  EXPECT_EQ(out->error().zxid, 12);
  EXPECT_EQ(out->error().failed_op, -1);

  JuteReader truncated(std::string_view(body).substr(0, body.size() - 1));
  out.reset();
  EXPECT_EQ(DecodeGetAcl(ReplyHeader{1, 13, 0}, truncated, info, &out), ReplyOutcome::kMalformed);
}

}  // namespace
}  // namespace zk2etcd::zk::detail

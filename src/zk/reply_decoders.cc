#include "zk/reply_decoders.h"

#include <string>
#include <utility>

#include "zk/connect_string.h"
#include "zk/zk_error.h"

namespace zk2etcd::zk::detail {

namespace {

constexpr int32_t kServerNoNode = -101;

template <typename T>
ReplyOutcome ServerError(const proto::ReplyHeader& h, const DecodeInfo& info,
                         std::optional<ZkResult<T>>* out) {
  out->emplace(Unexpected{MakeZkError(ZkErrorCodeFromServer(h.err), info.what, h.zxid)});
  return h.err == kServerNoNode ? ReplyOutcome::kNoNode : ReplyOutcome::kError;
}

}  // namespace

ReplyOutcome DecodeGetData(const proto::ReplyHeader& h, JuteReader& r, const DecodeInfo& info,
                           std::optional<ZkResult<GetDataReply>>* out) {
  if (h.err != 0) return ServerError(h, info, out);
  GetDataReply reply;
  reply.zxid = h.zxid;
  if (!proto::ReadGetDataResponse(r, &reply.data, &reply.stat)) return ReplyOutcome::kMalformed;
  out->emplace(std::move(reply));
  return ReplyOutcome::kSuccess;
}

ReplyOutcome DecodeChildren(const proto::ReplyHeader& h, JuteReader& r, const DecodeInfo& info,
                            std::optional<ZkResult<ChildrenReply>>* out) {
  if (h.err != 0) return ServerError(h, info, out);
  ChildrenReply reply;
  reply.zxid = h.zxid;
  if (!proto::ReadGetChildren2Response(r, &reply.children, &reply.stat)) {
    return ReplyOutcome::kMalformed;
  }
  out->emplace(std::move(reply));
  return ReplyOutcome::kSuccess;
}

ReplyOutcome DecodeExists(const proto::ReplyHeader& h, JuteReader& r, const DecodeInfo& info,
                          std::optional<ZkResult<ExistsReply>>* out) {
  if (h.err == kServerNoNode) {
    out->emplace(ExistsReply{std::nullopt, h.zxid});
    return ReplyOutcome::kNoNode;
  }
  if (h.err != 0) return ServerError(h, info, out);
  Stat stat;
  if (!proto::ReadStat(r, &stat)) return ReplyOutcome::kMalformed;
  out->emplace(ExistsReply{stat, h.zxid});
  return ReplyOutcome::kSuccess;
}

ReplyOutcome DecodeCreate(const proto::ReplyHeader& h, JuteReader& r, const DecodeInfo& info,
                          std::optional<ZkResult<CreateReply>>* out) {
  if (h.err != 0) return ServerError(h, info, out);
  CreateReply reply;
  reply.zxid = h.zxid;
  std::string path;
  if (!proto::ReadCreate2Response(r, &path, &reply.stat)) return ReplyOutcome::kMalformed;
  reply.path = ClientPath(info.chroot, path);
  out->emplace(std::move(reply));
  return ReplyOutcome::kSuccess;
}

ReplyOutcome DecodeSetData(const proto::ReplyHeader& h, JuteReader& r, const DecodeInfo& info,
                           std::optional<ZkResult<SetDataReply>>* out) {
  if (h.err != 0) return ServerError(h, info, out);
  SetDataReply reply;
  reply.zxid = h.zxid;
  if (!proto::ReadStat(r, &reply.stat)) return ReplyOutcome::kMalformed;
  out->emplace(reply);
  return ReplyOutcome::kSuccess;
}

ReplyOutcome DecodeGetAcl(const proto::ReplyHeader& h, JuteReader& r, const DecodeInfo& info,
                          std::optional<ZkResult<GetAclReply>>* out) {
  if (h.err != 0) return ServerError(h, info, out);
  GetAclReply reply;
  reply.zxid = h.zxid;
  if (!proto::ReadGetAclResponse(r, &reply.acl, &reply.stat)) return ReplyOutcome::kMalformed;
  out->emplace(std::move(reply));
  return ReplyOutcome::kSuccess;
}

ReplyOutcome DecodeSync(const proto::ReplyHeader& h, JuteReader& r, const DecodeInfo& info,
                        std::optional<ZkResult<SyncReply>>* out) {
  if (h.err != 0) return ServerError(h, info, out);
  SyncReply reply;
  reply.zxid = h.zxid;
  std::string path;
  if (!r.ReadBuffer(&path)) return ReplyOutcome::kMalformed;
  reply.path = ClientPath(info.chroot, path);
  out->emplace(std::move(reply));
  return ReplyOutcome::kSuccess;
}

ReplyOutcome DecodeAck(const proto::ReplyHeader& h, JuteReader& /*r*/, const DecodeInfo& info,
                       std::optional<ZkResult<Ack>>* out) {
  if (h.err != 0) return ServerError(h, info, out);
  out->emplace(Ack{h.zxid});
  return ReplyOutcome::kSuccess;
}

// ZooKeeper before 3.9 has no watcher types 4 and 5 and answers a marshalling error.
ReplyOutcome DecodeRemoveWatches(const proto::ReplyHeader& h, JuteReader& r, const DecodeInfo& info,
                                 std::optional<ZkResult<Ack>>* out) {
  constexpr int32_t kServerMarshalling = -5;
  if (h.err == kServerMarshalling && info.removing_persistent) {
    out->emplace(Unexpected{ZkError{
        ZkErrorCode::kUnimplemented,
        info.what + ": the server cannot remove persistent watches by type (ZooKeeper 3.9+); "
                    "WatcherType::kAny removes every watch on the path",
        h.zxid}});
    return ReplyOutcome::kError;
  }
  return DecodeAck(h, r, info, out);
}

ReplyOutcome DecodeMulti(const proto::ReplyHeader& h, JuteReader& r, const DecodeInfo& info,
                         std::optional<ZkResult<MultiReply>>* out) {
  if (h.err != 0) return ServerError(h, info, out);
  MultiReply reply;
  reply.zxid = h.zxid;
  const size_t expected = info.multi_whats.size();
  if (!proto::ReadMultiResponse(r, expected, &reply.results)) return ReplyOutcome::kMalformed;
  if (reply.results.size() != expected) {
    r.Fail("multi reply has " + std::to_string(reply.results.size()) + " results for " +
           std::to_string(expected) + " operations");
    return ReplyOutcome::kMalformed;
  }
  for (size_t i = 0; i < expected; ++i) {
    const ZkErrorCode code = reply.results[i].error;
    if (code != ZkErrorCode::kOk && code != ZkErrorCode::kRuntimeInconsistency) {
      ZkError error = MakeZkError(
          code, info.what + ": operation " + std::to_string(i) + " (" + info.multi_whats[i] + ")",
          h.zxid);
      error.failed_op = static_cast<int32_t>(i);
      out->emplace(Unexpected{std::move(error)});
      return ReplyOutcome::kError;
    }
  }
  for (auto& result : reply.results) {
    if (result.error != ZkErrorCode::kOk) {
      out->emplace(Unexpected{MakeZkError(result.error, info.what, h.zxid)});
      return ReplyOutcome::kError;
    }
    if (!result.path.empty()) result.path = ClientPath(info.chroot, result.path);
  }
  out->emplace(std::move(reply));
  return ReplyOutcome::kSuccess;
}

ReplyOutcome DecodeMultiRead(const proto::ReplyHeader& h, JuteReader& r, const DecodeInfo& info,
                             std::optional<ZkResult<MultiReadReply>>* out) {
  if (h.err != 0) return ServerError(h, info, out);
  MultiReadReply reply;
  reply.zxid = h.zxid;
  const size_t expected = info.read_kinds.size();
  if (!proto::ReadMultiReadResponse(r, expected, &reply.results)) return ReplyOutcome::kMalformed;
  if (reply.results.size() != expected) {
    r.Fail("multi-read reply has " + std::to_string(reply.results.size()) + " results for " +
           std::to_string(expected) + " reads");
    return ReplyOutcome::kMalformed;
  }
  for (size_t i = 0; i < expected; ++i) {
    ReadResult& result = reply.results[i];
    result.zxid = h.zxid;
    if (result.error != ZkErrorCode::kOk) {
      result.kind = info.read_kinds[i];
    } else if (result.kind != info.read_kinds[i]) {
      r.Fail("multi-read result " + std::to_string(i) + " is of another kind than its read");
      return ReplyOutcome::kMalformed;
    }
  }
  out->emplace(std::move(reply));
  return ReplyOutcome::kSuccess;
}

}  // namespace zk2etcd::zk::detail

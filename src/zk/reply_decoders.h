// The decoders of AsioZkClient's replies, one per kind of request (the DecodeFn of a
// TypedRequest): each reads the reply body after its header into a result (the reply, or the
// server's error), and says whether the reply was a success, a missing node, another error, or
// malformed (which closes the connection). Internal to AsioZkClient.
//
// Thread-safety: pure functions, thread-safe.
#pragma once

#include <optional>

#include "zk/jute.h"
#include "zk/protocol.h"
#include "zk/request.h"
#include "zk/zk_client.h"

namespace zk2etcd::zk::detail {

ReplyOutcome DecodeGetData(const proto::ReplyHeader& h, JuteReader& r, const DecodeInfo& info,
                           std::optional<ZkResult<GetDataReply>>* out);

ReplyOutcome DecodeChildren(const proto::ReplyHeader& h, JuteReader& r, const DecodeInfo& info,
                            std::optional<ZkResult<ChildrenReply>>* out);

ReplyOutcome DecodeExists(const proto::ReplyHeader& h, JuteReader& r, const DecodeInfo& info,
                          std::optional<ZkResult<ExistsReply>>* out);

ReplyOutcome DecodeCreate(const proto::ReplyHeader& h, JuteReader& r, const DecodeInfo& info,
                          std::optional<ZkResult<CreateReply>>* out);

ReplyOutcome DecodeSetData(const proto::ReplyHeader& h, JuteReader& r, const DecodeInfo& info,
                           std::optional<ZkResult<SetDataReply>>* out);

ReplyOutcome DecodeGetAcl(const proto::ReplyHeader& h, JuteReader& r, const DecodeInfo& info,
                          std::optional<ZkResult<GetAclReply>>* out);

ReplyOutcome DecodeSync(const proto::ReplyHeader& h, JuteReader& r, const DecodeInfo& info,
                        std::optional<ZkResult<SyncReply>>* out);

ReplyOutcome DecodeAck(const proto::ReplyHeader& h, JuteReader& /*r*/, const DecodeInfo& info,
                       std::optional<ZkResult<Ack>>* out);

ReplyOutcome DecodeRemoveWatches(const proto::ReplyHeader& h, JuteReader& r, const DecodeInfo& info,
                                 std::optional<ZkResult<Ack>>* out);

// A refused multi's error names its first failing operation and sets ZkError::failed_op.
ReplyOutcome DecodeMulti(const proto::ReplyHeader& h, JuteReader& r, const DecodeInfo& info,
                         std::optional<ZkResult<MultiReply>>* out);

ReplyOutcome DecodeMultiRead(const proto::ReplyHeader& h, JuteReader& r, const DecodeInfo& info,
                             std::optional<ZkResult<MultiReadReply>>* out);

}  // namespace zk2etcd::zk::detail

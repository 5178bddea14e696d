// ZkError: the error value of every ZooKeeper client operation, so callers switch on a small enum
// and metrics get a fixed label per class, never free text.
//
// The codes cover ZooKeeper's own answers (NoNode, NodeExists, BadVersion, ...) and the client's
// conditions (ConnectionLoss, SessionExpired, Closed, Marshalling, ...). `zxid` is the zxid of the
// reply header when the server answered (so a NoNode carries the zxid at which the absence was
// observed, which the sync engine uses to fence deletes), and -1 when no reply was involved.
// Plain value types and pure functions; thread-safe.
#pragma once

#include <cstdint>
#include <string>
#include <string_view>

namespace zk2etcd::zk {

enum class ZkErrorCode : uint8_t {
  kOk = 0,  // only in per-operation results of a multi; a ZkError never carries it
  kNoNode,
  kNodeExists,
  kNotEmpty,
  kBadVersion,
  kNoAuth,
  kNoChildrenForEphemerals,
  kInvalidAcl,
  kNoWatcher,
  kRuntimeInconsistency,  // a multi's operations after the one that failed
  kConnectionLoss,
  kSessionExpired,
  kSessionMoved,
  kUnimplemented,
  kAuthFailed,
  kTimeout,
  kThrottled,
  kMarshalling,
  kInvalidArgument,
  kClosed,
  kSystemError,  // any other server error code
};

struct ZkError {
  ZkErrorCode code = ZkErrorCode::kSystemError;
  std::string message;  // names the operation and path, e.g. "get /dubbo/a: no node"
  int64_t zxid = -1;    // the reply header's zxid, -1 when the server did not answer
  // For a multi the server refused: the index of the first operation whose result is an error
  // other than RuntimeInconsistency (the one the message names). -1 for every other error,
  // including a multi that failed as a whole (connection loss, invalid path, ...).
  int32_t failed_op = -1;

  std::string ToString() const;
};

// A fixed metric label per code: "no_node", "connection_loss", ...; "success" for kOk.
std::string_view ZkErrorLabel(ZkErrorCode code);

// ZooKeeper's numeric error (ReplyHeader.err, e.g. -101) as a code; unknown values are
// kSystemError.
ZkErrorCode ZkErrorCodeFromServer(int32_t err);

// The server's numeric value of a code; for codes the server never sends (kClosed, kTimeout as
// a client timeout, ...), ZooKeeper's nearest equivalent.
int32_t ZkErrorCodeToServer(ZkErrorCode code);

// "<what>: <label text>", e.g. MakeZkError(kNoNode, "get /a", zxid) -> "get /a: no node".
ZkError MakeZkError(ZkErrorCode code, std::string_view what, int64_t zxid = -1);

// True for the errors after which the session may still be fine and the operation can be retried
// (ConnectionLoss, Timeout, Throttled).
bool IsRetryable(ZkErrorCode code);

}  // namespace zk2etcd::zk

#include "zk/zk_error.h"

namespace zk2etcd::zk {

namespace {

// ZooKeeper's error numbers (KeeperException.Code), for the codes we distinguish.
constexpr int32_t kServerOk = 0;
constexpr int32_t kServerSystemError = -1;
constexpr int32_t kServerRuntimeInconsistency = -2;
constexpr int32_t kServerConnectionLoss = -4;
constexpr int32_t kServerMarshalling = -5;
constexpr int32_t kServerUnimplemented = -6;
constexpr int32_t kServerOperationTimeout = -7;
constexpr int32_t kServerBadArguments = -8;
constexpr int32_t kServerNoNode = -101;
constexpr int32_t kServerNoAuth = -102;
constexpr int32_t kServerBadVersion = -103;
constexpr int32_t kServerNoChildrenForEphemerals = -108;
constexpr int32_t kServerNodeExists = -110;
constexpr int32_t kServerNotEmpty = -111;
constexpr int32_t kServerSessionExpired = -112;
constexpr int32_t kServerInvalidAcl = -114;
constexpr int32_t kServerAuthFailed = -115;
constexpr int32_t kServerClosing = -116;
constexpr int32_t kServerSessionMoved = -118;
constexpr int32_t kServerNoWatcher = -121;
constexpr int32_t kServerThrottled = -127;

std::string_view Description(ZkErrorCode code) {
  switch (code) {
    case ZkErrorCode::kOk:
      return "ok";
    case ZkErrorCode::kNoNode:
      return "no node";
    case ZkErrorCode::kNodeExists:
      return "node exists";
    case ZkErrorCode::kNotEmpty:
      return "node has children";
    case ZkErrorCode::kBadVersion:
      return "bad version";
    case ZkErrorCode::kNoAuth:
      return "not authenticated";
    case ZkErrorCode::kNoChildrenForEphemerals:
      return "ephemeral nodes may not have children";
    case ZkErrorCode::kInvalidAcl:
      return "invalid ACL";
    case ZkErrorCode::kNoWatcher:
      return "no such watch";
    case ZkErrorCode::kRuntimeInconsistency:
      return "not applied (an earlier operation failed)";
    case ZkErrorCode::kConnectionLoss:
      return "connection lost";
    case ZkErrorCode::kSessionExpired:
      return "session expired";
    case ZkErrorCode::kSessionMoved:
      return "session moved";
    case ZkErrorCode::kUnimplemented:
      return "not implemented by the server";
    case ZkErrorCode::kAuthFailed:
      return "authentication failed";
    case ZkErrorCode::kTimeout:
      return "timed out";
    case ZkErrorCode::kThrottled:
      return "throttled by the server";
    case ZkErrorCode::kMarshalling:
      return "malformed data";
    case ZkErrorCode::kInvalidArgument:
      return "invalid argument";
    case ZkErrorCode::kClosed:
      return "client closed";
    case ZkErrorCode::kSystemError:
      return "server error";
  }
  return "server error";
}

}  // namespace

std::string ZkError::ToString() const {
  std::string out = message;
  if (zxid >= 0) out += " (zxid " + std::to_string(zxid) + ")";
  return out;
}

std::string_view ZkErrorLabel(ZkErrorCode code) {
  switch (code) {
    case ZkErrorCode::kOk:
      return "success";
    case ZkErrorCode::kNoNode:
      return "no_node";
    case ZkErrorCode::kNodeExists:
      return "node_exists";
    case ZkErrorCode::kNotEmpty:
      return "not_empty";
    case ZkErrorCode::kBadVersion:
      return "bad_version";
    case ZkErrorCode::kNoAuth:
      return "no_auth";
    case ZkErrorCode::kNoChildrenForEphemerals:
      return "no_children_for_ephemerals";
    case ZkErrorCode::kInvalidAcl:
      return "invalid_acl";
    case ZkErrorCode::kNoWatcher:
      return "no_watcher";
    case ZkErrorCode::kRuntimeInconsistency:
      return "runtime_inconsistency";
    case ZkErrorCode::kConnectionLoss:
      return "connection_loss";
    case ZkErrorCode::kSessionExpired:
      return "session_expired";
    case ZkErrorCode::kSessionMoved:
      return "session_moved";
    case ZkErrorCode::kUnimplemented:
      return "unimplemented";
    case ZkErrorCode::kAuthFailed:
      return "auth_failed";
    case ZkErrorCode::kTimeout:
      return "timeout";
    case ZkErrorCode::kThrottled:
      return "throttled";
    case ZkErrorCode::kMarshalling:
      return "marshalling";
    case ZkErrorCode::kInvalidArgument:
      return "invalid_argument";
    case ZkErrorCode::kClosed:
      return "closed";
    case ZkErrorCode::kSystemError:
      return "system_error";
  }
  return "system_error";
}

ZkErrorCode ZkErrorCodeFromServer(int32_t err) {
  switch (err) {
    case kServerOk:
      return ZkErrorCode::kOk;
    case kServerRuntimeInconsistency:
      return ZkErrorCode::kRuntimeInconsistency;
    case kServerConnectionLoss:
      return ZkErrorCode::kConnectionLoss;
    case kServerMarshalling:
      return ZkErrorCode::kMarshalling;
    case kServerUnimplemented:
      return ZkErrorCode::kUnimplemented;
    case kServerOperationTimeout:
      return ZkErrorCode::kTimeout;
    case kServerBadArguments:
      return ZkErrorCode::kInvalidArgument;
    case kServerNoNode:
      return ZkErrorCode::kNoNode;
    case kServerNoAuth:
      return ZkErrorCode::kNoAuth;
    case kServerBadVersion:
      return ZkErrorCode::kBadVersion;
    case kServerNoChildrenForEphemerals:
      return ZkErrorCode::kNoChildrenForEphemerals;
    case kServerNodeExists:
      return ZkErrorCode::kNodeExists;
    case kServerNotEmpty:
      return ZkErrorCode::kNotEmpty;
    case kServerSessionExpired:
      return ZkErrorCode::kSessionExpired;
    case kServerInvalidAcl:
      return ZkErrorCode::kInvalidAcl;
    case kServerAuthFailed:
      return ZkErrorCode::kAuthFailed;
    case kServerClosing:
      return ZkErrorCode::kClosed;
    case kServerSessionMoved:
      return ZkErrorCode::kSessionMoved;
    case kServerNoWatcher:
      return ZkErrorCode::kNoWatcher;
    case kServerThrottled:
      return ZkErrorCode::kThrottled;
    default:
      return ZkErrorCode::kSystemError;
  }
}

int32_t ZkErrorCodeToServer(ZkErrorCode code) {
  switch (code) {
    case ZkErrorCode::kOk:
      return kServerOk;
    case ZkErrorCode::kNoNode:
      return kServerNoNode;
    case ZkErrorCode::kNodeExists:
      return kServerNodeExists;
    case ZkErrorCode::kNotEmpty:
      return kServerNotEmpty;
    case ZkErrorCode::kBadVersion:
      return kServerBadVersion;
    case ZkErrorCode::kNoAuth:
      return kServerNoAuth;
    case ZkErrorCode::kNoChildrenForEphemerals:
      return kServerNoChildrenForEphemerals;
    case ZkErrorCode::kInvalidAcl:
      return kServerInvalidAcl;
    case ZkErrorCode::kNoWatcher:
      return kServerNoWatcher;
    case ZkErrorCode::kRuntimeInconsistency:
      return kServerRuntimeInconsistency;
    case ZkErrorCode::kConnectionLoss:
      return kServerConnectionLoss;
    case ZkErrorCode::kSessionExpired:
      return kServerSessionExpired;
    case ZkErrorCode::kSessionMoved:
      return kServerSessionMoved;
    case ZkErrorCode::kUnimplemented:
      return kServerUnimplemented;
    case ZkErrorCode::kAuthFailed:
      return kServerAuthFailed;
    case ZkErrorCode::kTimeout:
      return kServerOperationTimeout;
    case ZkErrorCode::kThrottled:
      return kServerThrottled;
    case ZkErrorCode::kMarshalling:
      return kServerMarshalling;
    case ZkErrorCode::kInvalidArgument:
      return kServerBadArguments;
    case ZkErrorCode::kClosed:
      return kServerClosing;
    case ZkErrorCode::kSystemError:
      return kServerSystemError;
  }
  return kServerSystemError;
}

ZkError MakeZkError(ZkErrorCode code, std::string_view what, int64_t zxid) {
  std::string message(what);
  message += ": ";
  message += Description(code);
  return ZkError{code, std::move(message), zxid};
}

bool IsRetryable(ZkErrorCode code) {
  return code == ZkErrorCode::kConnectionLoss || code == ZkErrorCode::kTimeout ||
         code == ZkErrorCode::kThrottled;
}

}  // namespace zk2etcd::zk

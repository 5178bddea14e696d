#include "zk/zk_types.h"

namespace zk2etcd::zk {

bool IsEphemeral(CreateMode mode) {
  return mode == CreateMode::kEphemeral || mode == CreateMode::kEphemeralSequential;
}

bool IsSequential(CreateMode mode) {
  return mode == CreateMode::kPersistentSequential || mode == CreateMode::kEphemeralSequential ||
         mode == CreateMode::kPersistentSequentialWithTtl;
}

bool IsTtl(CreateMode mode) {
  return mode == CreateMode::kPersistentWithTtl || mode == CreateMode::kPersistentSequentialWithTtl;
}

namespace {

// ZooKeeper's extended ephemeralOwner: the high byte set, then two bytes naming the feature (0
// is TTL), then five bytes of the feature's value.
constexpr uint64_t kExtendedMask = 0xff00000000000000;
constexpr uint64_t kExtendedFeatureMask = 0x00ffff0000000000;
constexpr uint64_t kExtendedValueMask = ~(kExtendedMask | kExtendedFeatureMask);

}  // namespace

NodeKind NodeKindOf(const Stat& stat) {
  if (stat.ephemeral_owner == 0) return NodeKind::kPersistent;
  if (stat.ephemeral_owner == kContainerEphemeralOwner) return NodeKind::kContainer;
  const auto owner = static_cast<uint64_t>(stat.ephemeral_owner);
  if ((owner & kExtendedMask) == kExtendedMask && (owner & kExtendedFeatureMask) == 0) {
    return NodeKind::kTtl;
  }
  return NodeKind::kEphemeral;
}

int64_t TtlOf(const Stat& stat) {
  if (NodeKindOf(stat) != NodeKind::kTtl) return 0;
  return static_cast<int64_t>(static_cast<uint64_t>(stat.ephemeral_owner) & kExtendedValueMask);
}

int64_t TtlEphemeralOwner(int64_t ttl_ms) {
  return static_cast<int64_t>(kExtendedMask | (static_cast<uint64_t>(ttl_ms) & kExtendedValueMask));
}

std::vector<Acl> OpenAclUnsafe() { return {Acl{kPermAll, "world", "anyone"}}; }

std::vector<Acl> CreatorAllAcl() { return {Acl{kPermAll, "auth", ""}}; }

std::string_view WatchEventTypeName(WatchEventType type) {
  switch (type) {
    case WatchEventType::kNone:
      return "None";
    case WatchEventType::kNodeCreated:
      return "NodeCreated";
    case WatchEventType::kNodeDeleted:
      return "NodeDeleted";
    case WatchEventType::kNodeDataChanged:
      return "NodeDataChanged";
    case WatchEventType::kNodeChildrenChanged:
      return "NodeChildrenChanged";
    case WatchEventType::kDataWatchRemoved:
      return "DataWatchRemoved";
    case WatchEventType::kChildWatchRemoved:
      return "ChildWatchRemoved";
    case WatchEventType::kPersistentWatchRemoved:
      return "PersistentWatchRemoved";
  }
  return "Unknown";
}

std::string_view SessionEventTypeName(SessionEventType type) {
  switch (type) {
    case SessionEventType::kConnected:
      return "connected";
    case SessionEventType::kDisconnected:
      return "disconnected";
    case SessionEventType::kReconnected:
      return "reconnected";
    case SessionEventType::kExpired:
      return "expired";
    case SessionEventType::kAuthFailed:
      return "auth_failed";
    case SessionEventType::kClosed:
      return "closed";
  }
  return "unknown";
}

MultiOp MultiOp::Create(std::string path, std::string data, CreateMode mode) {
  MultiOp op;
  op.kind = Kind::kCreate;
  op.path = std::move(path);
  op.data = std::move(data);
  op.mode = mode;
  return op;
}

MultiOp MultiOp::Delete(std::string path, int32_t version) {
  MultiOp op;
  op.kind = Kind::kDelete;
  op.path = std::move(path);
  op.version = version;
  return op;
}

MultiOp MultiOp::SetData(std::string path, std::string data, int32_t version) {
  MultiOp op;
  op.kind = Kind::kSetData;
  op.path = std::move(path);
  op.data = std::move(data);
  op.version = version;
  return op;
}

MultiOp MultiOp::Check(std::string path, int32_t version) {
  MultiOp op;
  op.kind = Kind::kCheck;
  op.path = std::move(path);
  op.version = version;
  return op;
}

std::string_view MultiOpName(MultiOp::Kind kind) {
  switch (kind) {
    case MultiOp::Kind::kCreate:
      return "create";
    case MultiOp::Kind::kDelete:
      return "delete";
    case MultiOp::Kind::kSetData:
      return "set";
    case MultiOp::Kind::kCheck:
      return "check";
  }
  return "op";
}

std::string Describe(std::string_view op, std::string_view path) {
  std::string what;
  what.reserve(op.size() + 1 + path.size());
  what.append(op);
  what.push_back(' ');
  what.append(path);
  return what;
}

}  // namespace zk2etcd::zk

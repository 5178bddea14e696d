// The values that cross the ZooKeeper client interface: node metadata (Stat), create modes, ACLs,
// watch and session events, the operations of a multi or multi-read, and one reply type per
// operation. Every reply carries the zxid of its reply header.
//
// Paths in requests, replies and events are relative to the client's chroot. Plain value types;
// not synchronised.
#pragma once

#include <chrono>
#include <cstdint>
#include <optional>
#include <string>
#include <vector>

#include "zk/zk_error.h"

namespace zk2etcd::zk {

// A znode's metadata, as ZooKeeper's Stat record.
struct Stat {
  int64_t czxid = 0;  // zxid of the create
  int64_t mzxid = 0;  // zxid of the last data change (the create's zxid until then)
  int64_t ctime = 0;  // milliseconds since the epoch
  int64_t mtime = 0;
  int32_t version = 0;          // number of data changes
  int32_t cversion = 0;         // number of child changes
  int32_t aversion = 0;         // number of ACL changes
  int64_t ephemeral_owner = 0;  // an ephemeral's session id, 0, or a marker: see NodeKindOf
  int32_t data_length = 0;
  int32_t num_children = 0;
  int64_t pzxid = 0;  // zxid of the last child change (the create's zxid until then)

  bool operator==(const Stat&) const = default;
};

// How a node is created. The server's create flags are, in order: 0, 1, 2, 3, 4, 5, 6.
enum class CreateMode {
  kPersistent,
  kEphemeral,
  kPersistentSequential,
  kEphemeralSequential,
  kContainer,  // deleted by the server some time after its last child goes
  // TTL nodes: persistent nodes that the server deletes once they have had no children and no
  // change for MultiOp::ttl_ms. Only through ZkClient::Multi (Create fails with
  // kInvalidArgument), and only on servers started with zookeeper.extendedTypesEnabled=true;
  // ZooKeeper 3.8 without it refuses the operation with kUnimplemented.
  kPersistentWithTtl,
  kPersistentSequentialWithTtl,
};
bool IsEphemeral(CreateMode mode);
bool IsSequential(CreateMode mode);
bool IsTtl(CreateMode mode);

// What kind of node an ephemeralOwner value denotes. ZooKeeper stores the kind in it: 0 for a
// persistent node, INT64_MIN (only the top bit) for a container, the high byte 0xff and the next
// two bytes 0 for a TTL node (the TTL in milliseconds in the low 40 bits), and otherwise the
// session id of an ephemeral's owner. (A session id never starts with 0xff on a server with
// extended types, whose server ids are at most 254.)
//
// But the server hides the container and TTL markers from clients: every Stat it sends (create,
// exists, getData, setData, multi, ...) has ephemeralOwner 0 for them (ZooKeeper 3.8, verified by
// the integration test; DataNode.copyStat). So on a Stat from a server NodeKindOf tells only
// ephemerals (kEphemeral) from the rest (kPersistent); kContainer and kTtl come only from raw
// ephemeralOwner values (snapshots, transaction logs). A client cannot learn from a node's Stat
// that it is a container or a TTL node, nor its TTL.
enum class NodeKind { kPersistent, kEphemeral, kContainer, kTtl };
NodeKind NodeKindOf(const Stat& stat);
// The TTL in milliseconds of a kTtl node; 0 for every other kind.
int64_t TtlOf(const Stat& stat);

// The ephemeralOwner the server stores for a container (and never sends to clients).
inline constexpr int64_t kContainerEphemeralOwner = INT64_MIN;
// The largest TTL the server accepts (2^40 - 1 ms, about 34 years); it refuses 0 and negatives.
inline constexpr int64_t kMaxTtlMs = (int64_t{1} << 40) - 1;
// The ephemeralOwner the server stores for a TTL node (and never sends to clients).
// REQUIRES: 0 < ttl_ms <= kMaxTtlMs.
int64_t TtlEphemeralOwner(int64_t ttl_ms);

// Permission bits of an ACL entry.
inline constexpr int32_t kPermRead = 1;
inline constexpr int32_t kPermWrite = 2;
inline constexpr int32_t kPermCreate = 4;
inline constexpr int32_t kPermDelete = 8;
inline constexpr int32_t kPermAdmin = 16;
inline constexpr int32_t kPermAll = 31;

struct Acl {
  int32_t perms = kPermAll;
  std::string scheme;  // "world", "digest", "auth", "ip", ...
  std::string id;      // "anyone", "user:base64(sha1(user:password))", ...
  bool operator==(const Acl&) const = default;
};
// world:anyone may do everything (ZooKeeper's OPEN_ACL_UNSAFE); the default for creates.
std::vector<Acl> OpenAclUnsafe();
// Everything for the identities the session authenticated as (ZooKeeper's CREATOR_ALL_ACL).
std::vector<Acl> CreatorAllAcl();

// Watch event types; the values are ZooKeeper's.
enum class WatchEventType : int32_t {
  kNone = -1,
  kNodeCreated = 1,
  kNodeDeleted = 2,
  kNodeDataChanged = 3,
  kNodeChildrenChanged = 4,
  kDataWatchRemoved = 5,
  kChildWatchRemoved = 6,
  kPersistentWatchRemoved = 7,
};
std::string_view WatchEventTypeName(WatchEventType type);

// Keeper states carried by watch events; the values are ZooKeeper's.
enum class KeeperState : int32_t {
  kDisconnected = 0,
  kSyncConnected = 3,
  kAuthFailed = 4,
  kConnectedReadOnly = 5,
  kClosed = 7,
  kExpired = -112,
};

// A change to a watched node, as the server reported it. One event per server notification,
// however many of the session's watches it matched.
struct WatchEvent {
  WatchEventType type = WatchEventType::kNone;
  KeeperState state = KeeperState::kSyncConnected;
  std::string path;
  bool operator==(const WatchEvent&) const = default;
};

// What the owner of a client may have to act on.
enum class SessionEventType {
  kConnected,     // a new session is established (the first connection)
  kDisconnected,  // the connection is lost; the client is trying the servers; the session may live
  kReconnected,   // connected again with the same session: watches were re-registered, but
                  // persistent watches missed what changed meanwhile, so reconcile
  kExpired,       // the session is gone (ephemerals and watches with it): open a new client
  kAuthFailed,    // the server rejected the credentials; the client stops
  kClosed,        // Close() finished; nothing more will be delivered
};
std::string_view SessionEventTypeName(SessionEventType type);

struct SessionEvent {
  SessionEventType type = SessionEventType::kConnected;
  int64_t session_id = 0;
  std::string server;  // "host:port" of the connection the event is about, if any
  std::chrono::milliseconds negotiated_timeout{0};
  std::string reason;  // why a connection ended or a session expired, for logs
};

enum class AddWatchMode : int32_t { kPersistent = 0, kPersistentRecursive = 1 };

// Which watches removeWatches removes; the values are ZooKeeper's WatcherType.
// kPersistent and kPersistentRecursive need ZooKeeper 3.9+; older servers answer kUnimplemented,
// and kAny (every watch of the session on the path, persistent ones included) works on all.
enum class WatcherType : int32_t {
  kChildren = 1,
  kData = 2,  // data and exist watches
  kAny = 3,
  kPersistent = 4,
  kPersistentRecursive = 5,
};

// --- Replies -------------------------------------------------------------------------------

struct GetDataReply {
  std::string data;
  Stat stat;
  int64_t zxid = 0;
};

struct ChildrenReply {
  std::vector<std::string> children;  // names, not paths; in the server's order
  Stat stat;
  int64_t zxid = 0;
};

struct ExistsReply {
  std::optional<Stat> stat;  // nullopt: the node does not exist at `zxid`
  int64_t zxid = 0;
};

struct CreateReply {
  std::string path;  // the created path (with the sequence suffix for sequential nodes)
  Stat stat;
  int64_t zxid = 0;
};

struct SetDataReply {
  Stat stat;
  int64_t zxid = 0;
};

struct GetAclReply {
  std::vector<Acl> acl;  // as the server stores it ("auth" entries became the session's ids)
  Stat stat;
  int64_t zxid = 0;
};

struct SyncReply {
  std::string path;
  int64_t zxid = 0;
};

// The reply of operations that return nothing but success: delete, addWatch, removeWatches,
// auth, close.
struct Ack {
  int64_t zxid = 0;
};

// --- multi (atomic writes) ----------------------------------------------------------------

struct MultiOp {
  enum class Kind { kCreate, kDelete, kSetData, kCheck };
  Kind kind = Kind::kCheck;
  std::string path;
  std::string data;                           // kCreate, kSetData
  CreateMode mode = CreateMode::kPersistent;  // kCreate
  std::vector<Acl> acl = OpenAclUnsafe();     // kCreate
  int32_t version = -1;                       // kDelete, kSetData, kCheck; -1 matches any
  // kCreate with a TTL mode only (ignored otherwise): the TTL in milliseconds, in
  // (0, kMaxTtlMs]; the server refuses others with kInvalidArgument.
  int64_t ttl_ms = 0;

  static MultiOp Create(std::string path, std::string data,
                        CreateMode mode = CreateMode::kPersistent);
  static MultiOp Delete(std::string path, int32_t version = -1);
  static MultiOp SetData(std::string path, std::string data, int32_t version = -1);
  static MultiOp Check(std::string path, int32_t version);
};

// "create", "delete", "set", "check": an operation's name in error messages.
std::string_view MultiOpName(MultiOp::Kind kind);
// "<op> <path>", the prefix of error messages about an operation on a path.
std::string Describe(std::string_view op, std::string_view path);

struct MultiOpResult {
  ZkErrorCode error = ZkErrorCode::kOk;
  std::string path;  // kCreate: the created path
  Stat stat;         // kSetData, and kCreate when the server returned one
};

// A multi that the server applied. A multi that failed is an error whose code is the first
// failing operation's, whose message names it and whose failed_op is its index.
struct MultiReply {
  std::vector<MultiOpResult> results;
  int64_t zxid = 0;
};

// --- multi-read (several reads in one request, ZooKeeper 3.6+) ----------------------------

// The server sets no watches for reads inside a multi-read (it drops the flag), so there is none.
struct ReadOp {
  enum class Kind { kGetData, kGetChildren };
  Kind kind = Kind::kGetData;
  std::string path;

  static ReadOp GetData(std::string path) { return ReadOp{Kind::kGetData, std::move(path)}; }
  static ReadOp GetChildren(std::string path) {
    return ReadOp{Kind::kGetChildren, std::move(path)};
  }
};

// Each read succeeds or fails on its own (a NoNode in one does not fail the others).
struct ReadResult {
  ReadOp::Kind kind = ReadOp::Kind::kGetData;
  ZkErrorCode error = ZkErrorCode::kOk;
  std::string data;                   // kGetData
  Stat stat;                          // kGetData (the server returns no Stat for children)
  std::vector<std::string> children;  // kGetChildren
  int64_t zxid = 0;                   // the zxid at which this read was answered (errors included)
};

struct MultiReadReply {
  std::vector<ReadResult> results;  // one per ReadOp, in order
  // The smallest zxid of the results: with multiRead all were read at this zxid; pipelined
  // (fallback) reads each carry their own.
  int64_t zxid = 0;
};

}  // namespace zk2etcd::zk

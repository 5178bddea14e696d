// ZkClient: the asynchronous ZooKeeper client that the sync engine uses, as an interface, so the
// engine runs against the real protocol client (AsioZkClient, asio_zk_client.h) in production
// and against an in-memory tree (FakeZkClient, fake_zk_client.h) in its unit tests.
//
// Every operation takes a callback that receives Result<Reply, ZkError>. Each reply and each
// error the server answered carries the zxid of its reply header; in particular a NoNode error
// carries the zxid at which the absence was observed. Paths are relative to the chroot of the
// connection string.
//
// Ordering: callbacks, watch events and session events are delivered one at a time on one
// delivery thread of the client (never the socket thread), in the order the server answered.
// Every callback is called exactly once: with the reply, or with ConnectionLoss (the outcome of
// a request whose connection broke is unknown), SessionExpired, AuthFailed or Closed.
//
// Watches: `watch = true` on GetData/Exists sets a one-shot data watch (Exists on a missing node:
// an exist watch), on GetChildren a one-shot child watch; AddWatch sets persistent and
// persistent recursive watches, which are never re-armed. The client re-registers all of them
// after a reconnect. Events go to the WatchHandler: one event per server notification.
//
// Sessions: the SessionHandler sees kConnected, then kDisconnected / kReconnected as
// connections come and go, and finally one of kExpired, kAuthFailed or kClosed, after which the
// client is finished (operations fail at once) and the owner creates a new client through its
// ZkClientFactory and reconciles.
//
// Thread-safety: all methods may be called from any thread, including from the client's own
// callbacks, except the blocking:: helpers (they would wait for themselves there). A client must
// not be destroyed from one of its own callbacks.
#pragma once

#include <chrono>
#include <cstdint>
#include <functional>
#include <memory>
#include <string>
#include <string_view>
#include <vector>

#include "common/result.h"
#include "zk/zk_error.h"
#include "zk/zk_types.h"

namespace zk2etcd::zk {

template <typename T>
using ZkResult = Result<T, ZkError>;
template <typename T>
using ZkCallback = std::function<void(ZkResult<T>)>;

using WatchHandler = std::function<void(const WatchEvent&)>;
using SessionHandler = std::function<void(const SessionEvent&)>;

// Where a client delivers events. Either may be empty (events are then dropped).
struct ZkEventHandlers {
  WatchHandler on_watch;
  SessionHandler on_session;
};

enum class SessionState { kConnecting, kConnected, kExpired, kAuthFailed, kClosed };
std::string_view SessionStateName(SessionState state);

struct SessionInfo {
  SessionState state = SessionState::kConnecting;
  int64_t session_id = 0;  // 0 before the first session is established
  std::chrono::milliseconds negotiated_timeout{0};
  std::string server;      // "host:port" when connected
  std::string last_error;  // why the last connection or connection attempt ended, if one did
};

class ZkClient {
 public:
  virtual ~ZkClient() = default;

  // Data and Stat of a node. Fails with kNoNode (no watch is set then; use Exists for that).
  virtual void GetData(std::string_view path, bool watch, ZkCallback<GetDataReply> done) = 0;
  // Children names and the Stat of a node (getChildren2).
  virtual void GetChildren(std::string_view path, bool watch, ZkCallback<ChildrenReply> done) = 0;
  // The Stat of a node, or no Stat if it does not exist (that is a success).
  virtual void Exists(std::string_view path, bool watch, ZkCallback<ExistsReply> done) = 0;
  // Creates a node. For sequential modes the reply's path has the sequence suffix. TTL modes
  // fail at once with kInvalidArgument (the server's plain create carries no TTL): create TTL
  // nodes with Multi and MultiOp::ttl_ms.
  virtual void Create(std::string_view path, std::string_view data, CreateMode mode,
                      const std::vector<Acl>& acl, ZkCallback<CreateReply> done) = 0;
  // Deletes a node if its version matches (-1: any version).
  virtual void Delete(std::string_view path, int32_t version, ZkCallback<Ack> done) = 0;
  virtual void SetData(std::string_view path, std::string_view data, int32_t version,
                       ZkCallback<SetDataReply> done) = 0;
  // Applies all operations atomically, or none: then the error is the first failing operation's
  // code, with a message naming it and its index in ZkError::failed_op. A create with a TTL mode
  // is sent as ZooKeeper's createTTL with MultiOp::ttl_ms.
  virtual void Multi(std::vector<MultiOp> ops, ZkCallback<MultiReply> done) = 0;
  // Several reads in one request (ZooKeeper 3.6+ multiRead); each read has its own result. On a
  // server without multiRead (or when disabled) the reads are pipelined one by one instead, and
  // each result then carries its own zxid.
  virtual void MultiRead(std::vector<ReadOp> ops, ZkCallback<MultiReadReply> done) = 0;
  // The ACL and Stat of a node. Fails with kNoNode as the other reads, and with kNoAuth when the
  // session may neither read nor administer the node.
  virtual void GetAcl(std::string_view path, ZkCallback<GetAclReply> done) = 0;
  // Makes the connected server catch up with the leader before later reads.
  virtual void Sync(std::string_view path, ZkCallback<SyncReply> done) = 0;
  // A persistent or persistent recursive watch (ZooKeeper 3.6+; older servers: kUnimplemented).
  virtual void AddWatch(std::string_view path, AddWatchMode mode, ZkCallback<Ack> done) = 0;
  // Removes this session's watches of `type` on `path`; kNoWatcher if there were none.
  virtual void RemoveWatches(std::string_view path, WatcherType type, ZkCallback<Ack> done) = 0;
  // Adds credentials ("digest", "user:password") to the session; they are sent again after
  // every reconnect. A rejection ends the client with kAuthFailed.
  virtual void AddAuth(std::string_view scheme, std::string_view credential,
                       ZkCallback<Ack> done) = 0;
  // Closes the session (its ephemeral nodes go), fails what is still pending with kClosed and
  // delivers kClosed; returns when nothing more will be delivered (when called from a callback:
  // once everything left is queued behind that callback). Idempotent. Operations issued after
  // Close() fail at once with kClosed.
  virtual void Close() = 0;

  virtual SessionInfo session() const = 0;
};

// Makes clients: production code passes an AsioZkClient factory, tests a fake one. The engine
// asks for a new client after kExpired.
class ZkClientFactory {
 public:
  virtual ~ZkClientFactory() = default;
  virtual ZkResult<std::unique_ptr<ZkClient>> NewClient(ZkEventHandlers handlers) = 0;
  // A client of one given server of the ensemble ("host:port", as SessionInfo::server names
  // it), with the same chroot, credentials and timeouts: another session beside one that
  // NewClient made (the walk's helper sessions, connectors/zookeeper/zk_walker.h), whose
  // connection lines are debug lines (that session logs the same outage). kUnimplemented by
  // default: a factory that cannot choose the server makes none.
  virtual ZkResult<std::unique_ptr<ZkClient>> NewClientOf(const std::string& server,
                                                          ZkEventHandlers handlers) {
    (void)server;
    (void)handlers;
    return Unexpected{ZkError{ZkErrorCode::kUnimplemented, "no client of a chosen server", -1}};
  }
};

// The fixed op names reported to an OpObserver: "get", "children", "exists", "create", "delete",
// "set", "multi", "multi_read", "get_acl", "sync", "add_watch", "remove_watches", "auth",
// "close".
namespace op_names {
inline constexpr std::string_view kGet = "get";
inline constexpr std::string_view kChildren = "children";
inline constexpr std::string_view kExists = "exists";
inline constexpr std::string_view kCreate = "create";
inline constexpr std::string_view kDelete = "delete";
inline constexpr std::string_view kSet = "set";
inline constexpr std::string_view kMulti = "multi";
inline constexpr std::string_view kMultiRead = "multi_read";
inline constexpr std::string_view kGetAcl = "get_acl";
inline constexpr std::string_view kSync = "sync";
inline constexpr std::string_view kAddWatch = "add_watch";
inline constexpr std::string_view kRemoveWatches = "remove_watches";
inline constexpr std::string_view kAuth = "auth";
inline constexpr std::string_view kClose = "close";
}  // namespace op_names

// Blocking wrappers for tests and tools: each issues the operation and waits for its callback.
// REQUIRES: not called from one of the client's callbacks.
namespace blocking {
ZkResult<GetDataReply> GetData(ZkClient& client, std::string_view path, bool watch = false);
ZkResult<ChildrenReply> GetChildren(ZkClient& client, std::string_view path, bool watch = false);
ZkResult<ExistsReply> Exists(ZkClient& client, std::string_view path, bool watch = false);
ZkResult<CreateReply> Create(ZkClient& client, std::string_view path, std::string_view data,
                             CreateMode mode = CreateMode::kPersistent,
                             const std::vector<Acl>& acl = OpenAclUnsafe());
// Creates `path` and its missing ancestors (with empty data); an existing node is fine.
ZkResult<Ack> CreateAll(ZkClient& client, std::string_view path, std::string_view data = {});
ZkResult<Ack> Delete(ZkClient& client, std::string_view path, int32_t version = -1);
ZkResult<SetDataReply> SetData(ZkClient& client, std::string_view path, std::string_view data,
                               int32_t version = -1);
ZkResult<MultiReply> Multi(ZkClient& client, std::vector<MultiOp> ops);
ZkResult<MultiReadReply> MultiRead(ZkClient& client, std::vector<ReadOp> ops);
ZkResult<GetAclReply> GetAcl(ZkClient& client, std::string_view path);
ZkResult<SyncReply> Sync(ZkClient& client, std::string_view path);
ZkResult<Ack> AddWatch(ZkClient& client, std::string_view path, AddWatchMode mode);
ZkResult<Ack> RemoveWatches(ZkClient& client, std::string_view path, WatcherType type);
ZkResult<Ack> AddAuth(ZkClient& client, std::string_view scheme, std::string_view credential);
}  // namespace blocking

}  // namespace zk2etcd::zk

// FakeZkServer and FakeZkClient: an in-memory ZooKeeper for the sync engine's unit tests, with
// the semantics the engine relies on, so that its tests need no server and no sleeps.
//
// FakeZkServer is the tree shared by sessions: every write takes the next zxid (a multi takes
// one), Stat has czxid/mzxid/pzxid/version/cversion/numChildren/ephemeralOwner as ZooKeeper
// keeps them, reads and errors carry the current zxid (NoNode included), sequential nodes get the
// parent's cversion as a 10-digit suffix, ephemerals go with their session. Watches follow the
// server's rules: one-shot data/exist/child watches fire once; persistent watches see their node's
// NodeCreated/NodeDeleted/NodeDataChanged/NodeChildrenChanged; persistent recursive watches see
// NodeCreated/NodeDeleted/NodeDataChanged of the whole subtree, in order; a session gets one event
// per change however many of its watches match. Containers and TTL nodes are never reaped, and
// their Stat has ephemeralOwner 0, as ZooKeeper sends it to clients (see NodeKindOf). ACLs are
// stored as given at create and returned by GetAcl ("auth" entries as given, where ZooKeeper
// substitutes the session's ids; direct creates get world:anyone), but enforced only as "readable
// and writable with these digest credentials" (ProtectNode, or the "auth" scheme). TTL creates, as
// on ZooKeeper 3.8 by default, fail with kUnimplemented unless SetExtendedTypesEnabled(true); then
// a TTL outside (0, kMaxTtlMs] fails with kInvalidArgument. Create with a TTL mode fails with
// kInvalidArgument at once, as with AsioZkClient.
//
// FakeZkClient is one session implementing ZkClient. Operations are applied at once, in call
// order; callbacks and events are queued and delivered in that order, either by a delivery
// thread of the client (the default, like the real client) or, with manual_delivery, only when
// the test calls RunPending() (deterministic single-threaded tests).
//
// Test hooks: direct changes on the server (as another session would make them), per-operation
// error injection, connection loss (Disconnect/Reconnect: one-shot watches whose nodes changed
// meanwhile fire once after kReconnected, persistent watches miss what happened, as with a real
// server), session expiry, and servers without addWatch or multiRead.
//
// Thread-safe: any thread may use the server and the clients. The server must outlive its
// clients (they hold a shared_ptr to it).
#pragma once

#include <chrono>
#include <condition_variable>
#include <cstdint>
#include <deque>
#include <functional>
#include <map>
#include <memory>
#include <mutex>
#include <optional>
#include <set>
#include <string>
#include <string_view>
#include <thread>
#include <unordered_map>
#include <unordered_set>
#include <vector>

#include "common/clock.h"
#include "common/op_observer.h"
#include "zk/zk_client.h"

namespace zk2etcd::zk {

class FakeZkClient;

struct FakeZkClientOptions {
  std::string chroot;  // "" or e.g. "/app"
  std::chrono::milliseconds session_timeout{10000};
  bool manual_delivery = false;  // deliver only in RunPending()
  OpObserver* observer = nullptr;
};

class FakeZkServer : public std::enable_shared_from_this<FakeZkServer> {
 public:
  // `clock` (default: the system clock) stamps ctime/mtime; it must outlive the server.
  static std::shared_ptr<FakeZkServer> Create(const Clock* clock = nullptr);
  ~FakeZkServer();

  // A new session. Its first delivered event is kConnected.
  std::unique_ptr<FakeZkClient> NewClient(ZkEventHandlers handlers,
                                          FakeZkClientOptions options = {});
  // A factory of sessions on this server (the engine's view).
  std::unique_ptr<ZkClientFactory> NewFactory(FakeZkClientOptions options = {});

  // --- Direct access, as an anonymous session would have (full paths, no chroot) -----------
  int64_t zxid() const;
  ZkResult<CreateReply> CreateNode(std::string_view path, std::string_view data = {},
                                   CreateMode mode = CreateMode::kPersistent);
  // Creates missing ancestors with empty data.
  ZkResult<CreateReply> CreateNodeAll(std::string_view path, std::string_view data);
  ZkResult<SetDataReply> SetNodeData(std::string_view path, std::string_view data);
  ZkResult<Ack> DeleteNode(std::string_view path);
  // Deletes `path` and everything below it, deepest first.
  ZkResult<Ack> DeleteTree(std::string_view path);
  std::optional<GetDataReply> GetNode(std::string_view path) const;
  std::vector<std::string> Children(std::string_view path) const;  // sorted names
  size_t NodeCount() const;                                        // "/" and "/zookeeper" included

  // --- Fault injection ---------------------------------------------------------------------
  // The next `times` operations named `op` (op_names::kGet, ...) whose path starts with
  // `path_prefix` fail with `code` and change nothing. Server error codes carry the current
  // zxid; connection-level ones (ConnectionLoss, Timeout, ...) carry -1.
  void InjectError(std::string_view op, ZkErrorCode code, int times = 1,
                   std::string_view path_prefix = "");
  // Ends session `session_id` as the server's expiry would: ephemerals deleted, the client gets
  // kExpired.
  void ExpireSession(int64_t session_id);
  // A 3.5-style server: AddWatch fails with kUnimplemented.
  void SetAddWatchSupported(bool supported);
  // A server started with zookeeper.extendedTypesEnabled=true: TTL creates work (off by default,
  // as on ZooKeeper, where they fail with kUnimplemented).
  void SetExtendedTypesEnabled(bool enabled);
  // Only sessions that added digest credentials `credential` ("user:password") may read or
  // change `path` (exists still works, as on ZooKeeper).
  void ProtectNode(std::string_view path, std::string_view credential);

  // Watches a session holds (full paths), for assertions.
  size_t WatchCount(int64_t session_id) const;

 private:
  friend class FakeZkClient;
  struct Node {
    std::string data;
    Stat stat;
    std::set<std::string> children;
    std::vector<Acl> acl;
    std::string protected_by;  // digest credential required, "" for open
  };
  struct Session;
  using Tree = std::map<std::string, Node, std::less<>>;
  struct Change {
    WatchEventType type;
    std::string path;
  };
  struct Injection {
    std::string op;
    ZkErrorCode code;
    int times;
    std::string path_prefix;
  };

  explicit FakeZkServer(const Clock* clock);

  // All REQUIRE mutex_ held.
  int64_t NowMs() const;
  std::optional<ZkError> TakeInjection(std::string_view op, std::string_view path,
                                       std::string_view what);
  bool Allowed(const Session* session, const Node& node) const;
  ZkErrorCode ApplyCreate(Tree& tree, const Session* session, std::string_view path,
                          std::string_view data, CreateMode mode, const std::vector<Acl>& acl,
                          int64_t ttl_ms, int64_t zxid, std::string* created,
                          std::vector<Change>* changes);
  ZkErrorCode ApplyDelete(Tree& tree, const Session* session, std::string_view path,
                          int32_t version, int64_t zxid, std::vector<Change>* changes);
  ZkErrorCode ApplySetData(Tree& tree, const Session* session, std::string_view path,
                           std::string_view data, int32_t version, int64_t zxid,
                           std::vector<Change>* changes);
  ZkErrorCode ApplyCheck(const Tree& tree, const Session* session, std::string_view path,
                         int32_t version);
  void Trigger(const std::vector<Change>& changes);
  void EndSession(Session* session, SessionEventType event, ZkErrorCode code);

  mutable std::mutex mutex_;
  const Clock& clock_;
  SystemClock system_clock_;
  Tree tree_;
  int64_t zxid_ = 0;
  int64_t next_session_id_ = 0x1000000000000001;
  std::unordered_map<int64_t, std::unique_ptr<Session>> sessions_;
  std::vector<Injection> injections_;
  bool add_watch_supported_ = true;
  bool extended_types_enabled_ = false;
};

class FakeZkClient final : public ZkClient {
 public:
  ~FakeZkClient() override;

  void GetData(std::string_view path, bool watch, ZkCallback<GetDataReply> done) override;
  void GetChildren(std::string_view path, bool watch, ZkCallback<ChildrenReply> done) override;
  void Exists(std::string_view path, bool watch, ZkCallback<ExistsReply> done) override;
  void Create(std::string_view path, std::string_view data, CreateMode mode,
              const std::vector<Acl>& acl, ZkCallback<CreateReply> done) override;
  void Delete(std::string_view path, int32_t version, ZkCallback<Ack> done) override;
  void SetData(std::string_view path, std::string_view data, int32_t version,
               ZkCallback<SetDataReply> done) override;
  void Multi(std::vector<MultiOp> ops, ZkCallback<MultiReply> done) override;
  void MultiRead(std::vector<ReadOp> ops, ZkCallback<MultiReadReply> done) override;
  void GetAcl(std::string_view path, ZkCallback<GetAclReply> done) override;
  void Sync(std::string_view path, ZkCallback<SyncReply> done) override;
  void AddWatch(std::string_view path, AddWatchMode mode, ZkCallback<Ack> done) override;
  void RemoveWatches(std::string_view path, WatcherType type, ZkCallback<Ack> done) override;
  void AddAuth(std::string_view scheme, std::string_view credential, ZkCallback<Ack> done) override;
  void Close() override;
  SessionInfo session() const override;

  // --- Test hooks ----------------------------------------------------------------------------
  int64_t session_id() const { return session_id_; }
  // The connection drops: kDisconnected; operations fail with kConnectionLoss and watch events
  // are lost until Reconnect().
  void Disconnect();
  // Connected again to the same session: kReconnected, then one event per one-shot watch whose
  // node changed while disconnected (persistent watches get nothing for that time).
  void Reconnect();
  // Disconnect() then Reconnect().
  void InjectConnectionLoss();
  // The server expires this session.
  void ExpireSession();

  // Manual delivery: runs queued callbacks and events (and those they queue) until none is
  // left; returns how many ran. In thread mode: waits until the delivery thread is idle.
  size_t RunPending();

 private:
  friend class FakeZkServer;
  FakeZkClient(std::shared_ptr<FakeZkServer> server, ZkEventHandlers handlers,
               FakeZkClientOptions options, int64_t session_id);

  // Queues `fn` for delivery. REQUIRES: may hold the server's mutex (never the other way round).
  void Enqueue(std::function<void()> fn);
  void DeliveryLoop();
  std::string ServerPathOf(std::string_view path) const;
  std::string ClientPathOf(std::string_view path) const;
  template <typename T>
  void Reply(std::string_view op, ZkCallback<T> done, ZkResult<T> result);
  // Checks the session and injected faults; returns the error to fail with, if any.
  // REQUIRES: server mutex held.
  std::optional<ZkError> Precheck(std::string_view op, std::string_view path, std::string_view what,
                                  bool sequential = false);

  std::shared_ptr<FakeZkServer> server_;
  const ZkEventHandlers handlers_;
  const FakeZkClientOptions options_;
  const int64_t session_id_;

  mutable std::mutex queue_mutex_;
  std::condition_variable queue_cv_;
  std::deque<std::function<void()>> queue_;
  bool running_ = false;  // a delivery is in progress (thread mode)
  bool stop_ = false;
  std::thread thread_;
  std::mutex close_mutex_;
  bool closed_ = false;
};

}  // namespace zk2etcd::zk

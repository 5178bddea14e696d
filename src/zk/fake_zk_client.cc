#include "zk/fake_zk_client.h"

#include <algorithm>
#include <cstdio>

#include "zk/connect_string.h"

namespace zk2etcd::zk {

namespace {

bool IsConnectionLevel(ZkErrorCode code) {
  return code == ZkErrorCode::kConnectionLoss || code == ZkErrorCode::kTimeout ||
         code == ZkErrorCode::kSessionExpired || code == ZkErrorCode::kClosed ||
         code == ZkErrorCode::kAuthFailed;
}

}  // namespace

struct FakeZkServer::Session {
  int64_t id = 0;
  FakeZkClient* client = nullptr;
  std::string chroot;
  std::chrono::milliseconds timeout{0};
  SessionState state = SessionState::kConnected;
  bool connected = true;
  int64_t disconnect_zxid = 0;
  std::vector<std::string> digests;
  std::unordered_set<std::string> data, exist, child, persistent, recursive;

  bool live() const { return state == SessionState::kConnected; }
  size_t watch_count() const {
    return data.size() + exist.size() + child.size() + persistent.size() + recursive.size();
  }
};

// --- FakeZkServer ---------------------------------------------------------------------------

std::shared_ptr<FakeZkServer> FakeZkServer::Create(const Clock* clock) {
  return std::shared_ptr<FakeZkServer>(new FakeZkServer(clock));
}

FakeZkServer::FakeZkServer(const Clock* clock) : clock_(clock != nullptr ? *clock : system_clock_) {
  tree_["/"] = Node{};
  tree_["/"].acl = OpenAclUnsafe();
  std::vector<Change> ignored;
  for (const char* path : {"/zookeeper", "/zookeeper/quota", "/zookeeper/config"}) {
    ApplyCreate(tree_, nullptr, path, "", CreateMode::kPersistent, {}, 0, 0, nullptr, &ignored);
  }
}

FakeZkServer::~FakeZkServer() = default;

int64_t FakeZkServer::NowMs() const {
  return std::chrono::duration_cast<std::chrono::milliseconds>(clock_.WallNow().time_since_epoch())
      .count();
}

std::unique_ptr<FakeZkClient> FakeZkServer::NewClient(ZkEventHandlers handlers,
                                                      FakeZkClientOptions options) {
  std::lock_guard lock(mutex_);
  const int64_t id = next_session_id_++;
  auto session = std::make_unique<Session>();
  session->id = id;
  session->chroot = options.chroot == "/" ? "" : options.chroot;
  session->timeout = options.session_timeout;
  std::unique_ptr<FakeZkClient> client(
      new FakeZkClient(shared_from_this(), std::move(handlers), options, id));
  session->client = client.get();
  sessions_[id] = std::move(session);
  SessionEvent event;
  event.type = SessionEventType::kConnected;
  event.session_id = id;
  event.server = "fake";
  event.negotiated_timeout = options.session_timeout;
  FakeZkClient* raw = client.get();
  raw->Enqueue([raw, event] {
    if (raw->handlers_.on_session) raw->handlers_.on_session(event);
  });
  return client;
}

namespace {

class FakeFactory final : public ZkClientFactory {
 public:
  FakeFactory(std::shared_ptr<FakeZkServer> server, FakeZkClientOptions options)
      : server_(std::move(server)), options_(std::move(options)) {}
  ZkResult<std::unique_ptr<ZkClient>> NewClient(ZkEventHandlers handlers) override {
    return std::unique_ptr<ZkClient>(server_->NewClient(std::move(handlers), options_));
  }
  // One server: any name is this one.
  ZkResult<std::unique_ptr<ZkClient>> NewClientOf(const std::string& /*server*/,
                                                  ZkEventHandlers handlers) override {
    return NewClient(std::move(handlers));
  }

 private:
  std::shared_ptr<FakeZkServer> server_;
  FakeZkClientOptions options_;
};

}  // namespace

std::unique_ptr<ZkClientFactory> FakeZkServer::NewFactory(FakeZkClientOptions options) {
  return std::make_unique<FakeFactory>(shared_from_this(), std::move(options));
}

int64_t FakeZkServer::zxid() const {
  std::lock_guard lock(mutex_);
  return zxid_;
}

bool FakeZkServer::Allowed(const Session* session, const Node& node) const {
  if (node.protected_by.empty() || session == nullptr) return true;
  return std::find(session->digests.begin(), session->digests.end(), node.protected_by) !=
         session->digests.end();
}

ZkErrorCode FakeZkServer::ApplyCreate(Tree& tree, const Session* session, std::string_view path,
                                      std::string_view data, CreateMode mode,
                                      const std::vector<Acl>& acl, int64_t ttl_ms, int64_t zxid,
                                      std::string* created, std::vector<Change>* changes) {
  // ZooKeeper checks these before the path.
  if (IsTtl(mode)) {
    if (!extended_types_enabled_) return ZkErrorCode::kUnimplemented;
    if (ttl_ms <= 0 || ttl_ms > kMaxTtlMs) return ZkErrorCode::kInvalidArgument;
  }
  std::string full(path);
  // A sequential "/a/" names a child of "/a"; "/a/b" (sequential or not) a child of "/a".
  std::string parent;
  if (IsSequential(mode) && full.back() == '/') {
    parent = full.size() == 1 ? "/" : full.substr(0, full.size() - 1);
  } else {
    parent = std::string(ParentPath(full));
  }
  auto parent_it = tree.find(parent);
  if (parent_it == tree.end()) return ZkErrorCode::kNoNode;
  Node& parent_node = parent_it->second;
  if (!Allowed(session, parent_node)) return ZkErrorCode::kNoAuth;
  if (NodeKindOf(parent_node.stat) == NodeKind::kEphemeral) {
    return ZkErrorCode::kNoChildrenForEphemerals;
  }
  if (IsSequential(mode)) {
    char suffix[16];
    std::snprintf(suffix, sizeof(suffix), "%010d", parent_node.stat.cversion);
    full += suffix;
  }
  if (tree.find(full) != tree.end()) return ZkErrorCode::kNodeExists;
  Node node;
  for (const auto& entry : acl) {
    if (entry.scheme == "auth") {
      if (session == nullptr || session->digests.empty()) return ZkErrorCode::kInvalidAcl;
      node.protected_by = session->digests.front();
    }
  }
  node.acl = acl.empty() ? OpenAclUnsafe() : acl;
  node.data = std::string(data);
  node.stat.czxid = node.stat.mzxid = node.stat.pzxid = zxid;
  node.stat.ctime = node.stat.mtime = NowMs();
  node.stat.data_length = static_cast<int32_t>(data.size());
  // ZooKeeper stores markers for containers and TTL nodes in ephemeralOwner but sends clients 0
  // for them, as this does.
  if (IsEphemeral(mode)) node.stat.ephemeral_owner = session != nullptr ? session->id : 0;
  parent_node.children.insert(std::string(BaseName(full)));
  parent_node.stat.cversion++;
  parent_node.stat.pzxid = zxid;
  parent_node.stat.num_children = static_cast<int32_t>(parent_node.children.size());
  tree.emplace(full, std::move(node));
  changes->push_back(Change{WatchEventType::kNodeCreated, full});
  changes->push_back(Change{WatchEventType::kNodeChildrenChanged, parent});
  if (created != nullptr) *created = std::move(full);
  return ZkErrorCode::kOk;
}

ZkErrorCode FakeZkServer::ApplyDelete(Tree& tree, const Session* session, std::string_view path,
                                      int32_t version, int64_t zxid, std::vector<Change>* changes) {
  auto it = tree.find(path);
  if (it == tree.end()) return ZkErrorCode::kNoNode;
  if (path == "/" || path == "/zookeeper") return ZkErrorCode::kInvalidArgument;
  const std::string parent(ParentPath(path));
  Node& parent_node = tree.find(parent)->second;
  if (!Allowed(session, parent_node)) return ZkErrorCode::kNoAuth;
  if (version != -1 && it->second.stat.version != version) return ZkErrorCode::kBadVersion;
  if (!it->second.children.empty()) return ZkErrorCode::kNotEmpty;
  parent_node.children.erase(std::string(BaseName(path)));
  parent_node.stat.cversion++;
  parent_node.stat.pzxid = zxid;
  parent_node.stat.num_children = static_cast<int32_t>(parent_node.children.size());
  tree.erase(it);
  changes->push_back(Change{WatchEventType::kNodeDeleted, std::string(path)});
  changes->push_back(Change{WatchEventType::kNodeChildrenChanged, parent});
  return ZkErrorCode::kOk;
}

ZkErrorCode FakeZkServer::ApplySetData(Tree& tree, const Session* session, std::string_view path,
                                       std::string_view data, int32_t version, int64_t zxid,
                                       std::vector<Change>* changes) {
  auto it = tree.find(path);
  if (it == tree.end()) return ZkErrorCode::kNoNode;
  Node& node = it->second;
  if (!Allowed(session, node)) return ZkErrorCode::kNoAuth;
  if (version != -1 && node.stat.version != version) return ZkErrorCode::kBadVersion;
  node.data = std::string(data);
  node.stat.version++;
  node.stat.mzxid = zxid;
  node.stat.mtime = NowMs();
  node.stat.data_length = static_cast<int32_t>(data.size());
  changes->push_back(Change{WatchEventType::kNodeDataChanged, std::string(path)});
  return ZkErrorCode::kOk;
}

ZkErrorCode FakeZkServer::ApplyCheck(const Tree& tree, const Session* session,
                                     std::string_view path, int32_t version) {
  auto it = tree.find(path);
  if (it == tree.end()) return ZkErrorCode::kNoNode;
  if (!Allowed(session, it->second)) return ZkErrorCode::kNoAuth;
  if (version != -1 && it->second.stat.version != version) return ZkErrorCode::kBadVersion;
  return ZkErrorCode::kOk;
}

void FakeZkServer::Trigger(const std::vector<Change>& changes) {
  for (const Change& change : changes) {
    for (auto& [id, session_ptr] : sessions_) {
      Session& s = *session_ptr;
      if (!s.live() || !s.connected) continue;
      bool fire = false;
      const std::string& path = change.path;
      switch (change.type) {
        case WatchEventType::kNodeCreated:
        case WatchEventType::kNodeDataChanged:
          fire |= s.data.erase(path) > 0;
          fire |= s.exist.erase(path) > 0;
          break;
        case WatchEventType::kNodeDeleted:
          fire |= s.data.erase(path) > 0;
          fire |= s.exist.erase(path) > 0;
          fire |= s.child.erase(path) > 0;
          break;
        case WatchEventType::kNodeChildrenChanged:
          fire |= s.child.erase(path) > 0;
          break;
        default:
          break;
      }
      fire |= s.persistent.contains(path);
      if (change.type != WatchEventType::kNodeChildrenChanged) {
        for (std::string_view a = path; !a.empty() && !fire; a = ParentPath(a)) {
          fire |= s.recursive.contains(std::string(a));
        }
      }
      if (!fire) continue;
      FakeZkClient* client = s.client;
      WatchEvent event{change.type, KeeperState::kSyncConnected, client->ClientPathOf(path)};
      client->Enqueue([client, event] {
        if (client->handlers_.on_watch) client->handlers_.on_watch(event);
      });
    }
  }
}

void FakeZkServer::EndSession(Session* session, SessionEventType type, ZkErrorCode /*code*/) {
  if (!session->live()) return;
  session->state = type == SessionEventType::kExpired      ? SessionState::kExpired
                   : type == SessionEventType::kAuthFailed ? SessionState::kAuthFailed
                                                           : SessionState::kClosed;
  // Its ephemerals go in one transaction.
  std::vector<std::string> ephemerals;
  for (const auto& [path, node] : tree_) {
    if (node.stat.ephemeral_owner == session->id) ephemerals.push_back(path);
  }
  if (!ephemerals.empty()) {
    const int64_t zxid = ++zxid_;
    std::vector<Change> changes;
    for (auto it = ephemerals.rbegin(); it != ephemerals.rend(); ++it) {
      ApplyDelete(tree_, nullptr, *it, -1, zxid, &changes);
    }
    Trigger(changes);
  }
  session->data.clear();
  session->exist.clear();
  session->child.clear();
  session->persistent.clear();
  session->recursive.clear();
  SessionEvent event;
  event.type = type;
  event.session_id = session->id;
  event.negotiated_timeout = session->timeout;
  FakeZkClient* client = session->client;
  client->Enqueue([client, event] {
    if (client->handlers_.on_session) client->handlers_.on_session(event);
  });
}

std::optional<ZkError> FakeZkServer::TakeInjection(std::string_view op, std::string_view path,
                                                   std::string_view what) {
  for (auto it = injections_.begin(); it != injections_.end(); ++it) {
    if (it->op != op || path.substr(0, it->path_prefix.size()) != it->path_prefix) continue;
    ZkError error = MakeZkError(it->code, what, IsConnectionLevel(it->code) ? -1 : zxid_);
    error.message += " (injected)";
    if (--it->times <= 0) injections_.erase(it);
    return error;
  }
  return std::nullopt;
}

ZkResult<CreateReply> FakeZkServer::CreateNode(std::string_view path, std::string_view data,
                                               CreateMode mode) {
  std::lock_guard lock(mutex_);
  if (auto reason = InvalidPathReason(path, IsSequential(mode))) {
    return Unexpected{ZkError{ZkErrorCode::kInvalidArgument, *reason}};
  }
  std::vector<Change> changes;
  std::string created;
  const ZkErrorCode code =
      ApplyCreate(tree_, nullptr, path, data, mode, {}, 0, zxid_ + 1, &created, &changes);
  if (code != ZkErrorCode::kOk)
    return Unexpected{MakeZkError(code, Describe("create", path), zxid_)};
  ++zxid_;
  Trigger(changes);
  return CreateReply{created, tree_.find(created)->second.stat, zxid_};
}

ZkResult<CreateReply> FakeZkServer::CreateNodeAll(std::string_view path, std::string_view data) {
  if (auto reason = InvalidPathReason(path)) {
    return Unexpected{ZkError{ZkErrorCode::kInvalidArgument, *reason}};
  }
  for (size_t end = path.find('/', 1); end != std::string_view::npos;
       end = path.find('/', end + 1)) {
    auto created = CreateNode(path.substr(0, end), "");
    if (!created.ok() && created.error().code != ZkErrorCode::kNodeExists) return created;
  }
  return CreateNode(path, data);
}

ZkResult<SetDataReply> FakeZkServer::SetNodeData(std::string_view path, std::string_view data) {
  std::lock_guard lock(mutex_);
  std::vector<Change> changes;
  const ZkErrorCode code = ApplySetData(tree_, nullptr, path, data, -1, zxid_ + 1, &changes);
  if (code != ZkErrorCode::kOk) return Unexpected{MakeZkError(code, Describe("set", path), zxid_)};
  ++zxid_;
  Trigger(changes);
  return SetDataReply{tree_.find(path)->second.stat, zxid_};
}

ZkResult<Ack> FakeZkServer::DeleteNode(std::string_view path) {
  std::lock_guard lock(mutex_);
  std::vector<Change> changes;
  const ZkErrorCode code = ApplyDelete(tree_, nullptr, path, -1, zxid_ + 1, &changes);
  if (code != ZkErrorCode::kOk) {
    return Unexpected{MakeZkError(code, Describe("delete", path), zxid_)};
  }
  ++zxid_;
  Trigger(changes);
  return Ack{zxid_};
}

ZkResult<Ack> FakeZkServer::DeleteTree(std::string_view path) {
  std::vector<std::string> paths;
  {
    std::lock_guard lock(mutex_);
    const std::string prefix = std::string(path) + "/";
    for (auto it = tree_.find(path); it != tree_.end(); ++it) {
      if (it->first != path && it->first.compare(0, prefix.size(), prefix) != 0) break;
      paths.push_back(it->first);
    }
  }
  if (paths.empty())
    return Unexpected{MakeZkError(ZkErrorCode::kNoNode, Describe("delete", path), zxid())};
  // Sorted order puts "/a" before "/a/b" and "/a/b" before "/a/c": reverse deletes leaves first.
  Ack ack;
  for (auto it = paths.rbegin(); it != paths.rend(); ++it) {
    auto deleted = DeleteNode(*it);
    if (!deleted.ok()) return deleted;
    ack = *deleted;
  }
  return ack;
}

std::optional<GetDataReply> FakeZkServer::GetNode(std::string_view path) const {
  std::lock_guard lock(mutex_);
  auto it = tree_.find(path);
  if (it == tree_.end()) return std::nullopt;
  return GetDataReply{it->second.data, it->second.stat, zxid_};
}

std::vector<std::string> FakeZkServer::Children(std::string_view path) const {
  std::lock_guard lock(mutex_);
  auto it = tree_.find(path);
  if (it == tree_.end()) return {};
  return std::vector<std::string>(it->second.children.begin(), it->second.children.end());
}

size_t FakeZkServer::NodeCount() const {
  std::lock_guard lock(mutex_);
  return tree_.size();
}

void FakeZkServer::InjectError(std::string_view op, ZkErrorCode code, int times,
                               std::string_view path_prefix) {
  std::lock_guard lock(mutex_);
  injections_.push_back(Injection{std::string(op), code, times, std::string(path_prefix)});
}

void FakeZkServer::ExpireSession(int64_t session_id) {
  std::lock_guard lock(mutex_);
  auto it = sessions_.find(session_id);
  if (it == sessions_.end()) return;
  EndSession(it->second.get(), SessionEventType::kExpired, ZkErrorCode::kSessionExpired);
}

void FakeZkServer::SetAddWatchSupported(bool supported) {
  std::lock_guard lock(mutex_);
  add_watch_supported_ = supported;
}

void FakeZkServer::SetExtendedTypesEnabled(bool enabled) {
  std::lock_guard lock(mutex_);
  extended_types_enabled_ = enabled;
}

void FakeZkServer::ProtectNode(std::string_view path, std::string_view credential) {
  std::lock_guard lock(mutex_);
  auto it = tree_.find(path);
  if (it != tree_.end()) it->second.protected_by = std::string(credential);
}

size_t FakeZkServer::WatchCount(int64_t session_id) const {
  std::lock_guard lock(mutex_);
  auto it = sessions_.find(session_id);
  return it == sessions_.end() ? 0 : it->second->watch_count();
}

// --- FakeZkClient ---------------------------------------------------------------------------

FakeZkClient::FakeZkClient(std::shared_ptr<FakeZkServer> server, ZkEventHandlers handlers,
                           FakeZkClientOptions options, int64_t session_id)
    : server_(std::move(server)),
      handlers_(std::move(handlers)),
      options_(std::move(options)),
      session_id_(session_id) {
  if (!options_.manual_delivery) thread_ = std::thread([this] { DeliveryLoop(); });
}

FakeZkClient::~FakeZkClient() {
  Close();
  {
    std::lock_guard lock(server_->mutex_);
    server_->sessions_.erase(session_id_);
  }
  {
    std::lock_guard lock(queue_mutex_);
    stop_ = true;
  }
  queue_cv_.notify_all();
  if (thread_.joinable()) thread_.join();
}

void FakeZkClient::Enqueue(std::function<void()> fn) {
  {
    std::lock_guard lock(queue_mutex_);
    queue_.push_back(std::move(fn));
  }
  queue_cv_.notify_all();
}

void FakeZkClient::DeliveryLoop() {
  while (true) {
    std::function<void()> fn;
    {
      std::unique_lock lock(queue_mutex_);
      queue_cv_.wait(lock, [this] { return stop_ || !queue_.empty(); });
      if (queue_.empty()) return;
      fn = std::move(queue_.front());
      queue_.pop_front();
      running_ = true;
    }
    fn();
    {
      std::lock_guard lock(queue_mutex_);
      running_ = false;
    }
    queue_cv_.notify_all();
  }
}

size_t FakeZkClient::RunPending() {
  size_t ran = 0;
  if (options_.manual_delivery) {
    while (true) {
      std::function<void()> fn;
      {
        std::lock_guard lock(queue_mutex_);
        if (queue_.empty()) return ran;
        fn = std::move(queue_.front());
        queue_.pop_front();
      }
      fn();
      ++ran;
    }
  }
  if (std::this_thread::get_id() == thread_.get_id()) return 0;
  std::unique_lock lock(queue_mutex_);
  queue_cv_.wait(lock, [this] { return queue_.empty() && !running_; });
  return ran;
}

std::string FakeZkClient::ServerPathOf(std::string_view path) const {
  return ServerPath(options_.chroot == "/" ? "" : options_.chroot, path);
}

std::string FakeZkClient::ClientPathOf(std::string_view path) const {
  return ClientPath(options_.chroot == "/" ? "" : options_.chroot, path);
}

template <typename T>
void FakeZkClient::Reply(std::string_view op, ZkCallback<T> done, ZkResult<T> result) {
  OpObserver* observer = options_.observer;
  Enqueue([op, observer, done = std::move(done), result = std::move(result)]() mutable {
    if (observer != nullptr) {
      observer->OnOp(op, result.ok() ? "success" : ZkErrorLabel(result.error().code),
                     std::chrono::nanoseconds(0));
    }
    if (done) done(std::move(result));
  });
}

std::optional<ZkError> FakeZkClient::Precheck(std::string_view op, std::string_view path,
                                              std::string_view what, bool sequential) {
  auto it = server_->sessions_.find(session_id_);
  const FakeZkServer::Session* s = it == server_->sessions_.end() ? nullptr : it->second.get();
  if (s == nullptr || s->state == SessionState::kClosed) {
    return MakeZkError(ZkErrorCode::kClosed, what);
  }
  if (s->state == SessionState::kExpired) return MakeZkError(ZkErrorCode::kSessionExpired, what);
  if (s->state == SessionState::kAuthFailed) return MakeZkError(ZkErrorCode::kAuthFailed, what);
  if (!s->connected) return MakeZkError(ZkErrorCode::kConnectionLoss, what);
  if (auto reason = InvalidPathReason(path, sequential)) {
    return ZkError{ZkErrorCode::kInvalidArgument,
                   std::string(what) + ": invalid path \"" + std::string(path) + "\": " + *reason,
                   -1};
  }
  return server_->TakeInjection(op, ServerPathOf(path), what);
}

void FakeZkClient::GetData(std::string_view path, bool watch, ZkCallback<GetDataReply> done) {
  const std::string what = Describe(op_names::kGet, path);
  std::lock_guard lock(server_->mutex_);
  ZkResult<GetDataReply> result = [&]() -> ZkResult<GetDataReply> {
    if (auto error = Precheck(op_names::kGet, path, what)) return Unexpected{*error};
    auto& session = *server_->sessions_[session_id_];
    const std::string full = ServerPathOf(path);
    auto it = server_->tree_.find(full);
    if (it == server_->tree_.end()) {
      return Unexpected{MakeZkError(ZkErrorCode::kNoNode, what, server_->zxid_)};
    }
    if (!server_->Allowed(&session, it->second)) {
      return Unexpected{MakeZkError(ZkErrorCode::kNoAuth, what, server_->zxid_)};
    }
    if (watch) session.data.insert(full);
    return GetDataReply{it->second.data, it->second.stat, server_->zxid_};
  }();
  Reply(op_names::kGet, std::move(done), std::move(result));
}

void FakeZkClient::GetChildren(std::string_view path, bool watch, ZkCallback<ChildrenReply> done) {
  const std::string what = Describe(op_names::kChildren, path);
  std::lock_guard lock(server_->mutex_);
  ZkResult<ChildrenReply> result = [&]() -> ZkResult<ChildrenReply> {
    if (auto error = Precheck(op_names::kChildren, path, what)) return Unexpected{*error};
    auto& session = *server_->sessions_[session_id_];
    const std::string full = ServerPathOf(path);
    auto it = server_->tree_.find(full);
    if (it == server_->tree_.end()) {
      return Unexpected{MakeZkError(ZkErrorCode::kNoNode, what, server_->zxid_)};
    }
    if (!server_->Allowed(&session, it->second)) {
      return Unexpected{MakeZkError(ZkErrorCode::kNoAuth, what, server_->zxid_)};
    }
    if (watch) session.child.insert(full);
    return ChildrenReply{
        std::vector<std::string>(it->second.children.begin(), it->second.children.end()),
        it->second.stat, server_->zxid_};
  }();
  Reply(op_names::kChildren, std::move(done), std::move(result));
}

void FakeZkClient::Exists(std::string_view path, bool watch, ZkCallback<ExistsReply> done) {
  const std::string what = Describe(op_names::kExists, path);
  std::lock_guard lock(server_->mutex_);
  ZkResult<ExistsReply> result = [&]() -> ZkResult<ExistsReply> {
    if (auto error = Precheck(op_names::kExists, path, what)) return Unexpected{*error};
    auto& session = *server_->sessions_[session_id_];
    const std::string full = ServerPathOf(path);
    auto it = server_->tree_.find(full);
    if (it == server_->tree_.end()) {
      if (watch) session.exist.insert(full);
      return ExistsReply{std::nullopt, server_->zxid_};
    }
    if (watch) session.data.insert(full);
    return ExistsReply{it->second.stat, server_->zxid_};
  }();
  Reply(op_names::kExists, std::move(done), std::move(result));
}

void FakeZkClient::Create(std::string_view path, std::string_view data, CreateMode mode,
                          const std::vector<Acl>& acl, ZkCallback<CreateReply> done) {
  const std::string what = Describe(op_names::kCreate, path);
  std::lock_guard lock(server_->mutex_);
  ZkResult<CreateReply> result = [&]() -> ZkResult<CreateReply> {
    if (IsTtl(mode)) {
      return Unexpected{ZkError{ZkErrorCode::kInvalidArgument,
                                what + ": a TTL node must be created with Multi", -1}};
    }
    if (auto error = Precheck(op_names::kCreate, path, what, IsSequential(mode))) {
      return Unexpected{*error};
    }
    auto& session = *server_->sessions_[session_id_];
    std::vector<FakeZkServer::Change> changes;
    std::string created;
    const ZkErrorCode code =
        server_->ApplyCreate(server_->tree_, &session, ServerPathOf(path), data, mode, acl, 0,
                             server_->zxid_ + 1, &created, &changes);
    if (code != ZkErrorCode::kOk) {
      return Unexpected{MakeZkError(code, what, server_->zxid_)};
    }
    ++server_->zxid_;
    server_->Trigger(changes);
    return CreateReply{ClientPathOf(created), server_->tree_.find(created)->second.stat,
                       server_->zxid_};
  }();
  Reply(op_names::kCreate, std::move(done), std::move(result));
}

void FakeZkClient::Delete(std::string_view path, int32_t version, ZkCallback<Ack> done) {
  const std::string what = Describe(op_names::kDelete, path);
  std::lock_guard lock(server_->mutex_);
  ZkResult<Ack> result = [&]() -> ZkResult<Ack> {
    if (auto error = Precheck(op_names::kDelete, path, what)) return Unexpected{*error};
    auto& session = *server_->sessions_[session_id_];
    std::vector<FakeZkServer::Change> changes;
    const ZkErrorCode code = server_->ApplyDelete(server_->tree_, &session, ServerPathOf(path),
                                                  version, server_->zxid_ + 1, &changes);
    if (code != ZkErrorCode::kOk) return Unexpected{MakeZkError(code, what, server_->zxid_)};
    ++server_->zxid_;
    server_->Trigger(changes);
    return Ack{server_->zxid_};
  }();
  Reply(op_names::kDelete, std::move(done), std::move(result));
}

void FakeZkClient::SetData(std::string_view path, std::string_view data, int32_t version,
                           ZkCallback<SetDataReply> done) {
  const std::string what = Describe(op_names::kSet, path);
  std::lock_guard lock(server_->mutex_);
  ZkResult<SetDataReply> result = [&]() -> ZkResult<SetDataReply> {
    if (auto error = Precheck(op_names::kSet, path, what)) return Unexpected{*error};
    auto& session = *server_->sessions_[session_id_];
    const std::string full = ServerPathOf(path);
    std::vector<FakeZkServer::Change> changes;
    const ZkErrorCode code = server_->ApplySetData(server_->tree_, &session, full, data, version,
                                                   server_->zxid_ + 1, &changes);
    if (code != ZkErrorCode::kOk) return Unexpected{MakeZkError(code, what, server_->zxid_)};
    ++server_->zxid_;
    server_->Trigger(changes);
    return SetDataReply{server_->tree_.find(full)->second.stat, server_->zxid_};
  }();
  Reply(op_names::kSet, std::move(done), std::move(result));
}

void FakeZkClient::Multi(std::vector<MultiOp> ops, ZkCallback<MultiReply> done) {
  const std::string what = "multi of " + std::to_string(ops.size()) + " operations";
  std::lock_guard lock(server_->mutex_);
  ZkResult<MultiReply> result = [&]() -> ZkResult<MultiReply> {
    for (const auto& op : ops) {
      const bool sequential = op.kind == MultiOp::Kind::kCreate && IsSequential(op.mode);
      if (auto error = Precheck(op_names::kMulti, op.path, what, sequential)) {
        return Unexpected{*error};
      }
    }
    auto& session = *server_->sessions_[session_id_];
    // Applied to a copy, which replaces the tree only if every operation succeeds.
    FakeZkServer::Tree tree = server_->tree_;
    const int64_t zxid = server_->zxid_ + 1;
    std::vector<FakeZkServer::Change> changes;
    MultiReply reply;
    for (size_t i = 0; i < ops.size(); ++i) {
      const MultiOp& op = ops[i];
      const std::string full = ServerPathOf(op.path);
      MultiOpResult op_result;
      ZkErrorCode code = ZkErrorCode::kOk;
      switch (op.kind) {
        case MultiOp::Kind::kCreate: {
          std::string created;
          code = server_->ApplyCreate(tree, &session, full, op.data, op.mode, op.acl, op.ttl_ms,
                                      zxid, &created, &changes);
          if (code == ZkErrorCode::kOk) {
            op_result.stat = tree.find(created)->second.stat;
            op_result.path = ClientPathOf(created);
          }
          break;
        }
        case MultiOp::Kind::kDelete:
          code = server_->ApplyDelete(tree, &session, full, op.version, zxid, &changes);
          break;
        case MultiOp::Kind::kSetData:
          code = server_->ApplySetData(tree, &session, full, op.data, op.version, zxid, &changes);
          if (code == ZkErrorCode::kOk) op_result.stat = tree.find(full)->second.stat;
          break;
        case MultiOp::Kind::kCheck:
          code = server_->ApplyCheck(tree, &session, full, op.version);
          break;
      }
      if (code != ZkErrorCode::kOk) {
        ZkError error = MakeZkError(code,
                                    what + ": operation " + std::to_string(i) + " (" +
                                        Describe(MultiOpName(op.kind), op.path) + ")",
                                    server_->zxid_);
        error.failed_op = static_cast<int32_t>(i);
        return Unexpected{std::move(error)};
      }
      reply.results.push_back(std::move(op_result));
    }
    server_->tree_ = std::move(tree);
    server_->zxid_ = zxid;
    server_->Trigger(changes);
    reply.zxid = zxid;
    return reply;
  }();
  Reply(op_names::kMulti, std::move(done), std::move(result));
}

void FakeZkClient::MultiRead(std::vector<ReadOp> ops, ZkCallback<MultiReadReply> done) {
  const std::string what = "multi-read of " + std::to_string(ops.size()) + " reads";
  std::lock_guard lock(server_->mutex_);
  ZkResult<MultiReadReply> result = [&]() -> ZkResult<MultiReadReply> {
    for (const auto& op : ops) {
      if (auto error = Precheck(op_names::kMultiRead, op.path, what)) return Unexpected{*error};
    }
    auto& session = *server_->sessions_[session_id_];
    MultiReadReply reply;
    reply.zxid = server_->zxid_;
    for (const auto& op : ops) {
      ReadResult r;
      r.kind = op.kind;
      r.zxid = server_->zxid_;
      auto it = server_->tree_.find(ServerPathOf(op.path));
      if (it == server_->tree_.end()) {
        r.error = ZkErrorCode::kNoNode;
      } else if (!server_->Allowed(&session, it->second)) {
        r.error = ZkErrorCode::kNoAuth;
      } else if (op.kind == ReadOp::Kind::kGetData) {
        r.data = it->second.data;
        r.stat = it->second.stat;
      } else {
        r.children.assign(it->second.children.begin(), it->second.children.end());
      }
      reply.results.push_back(std::move(r));
    }
    return reply;
  }();
  Reply(op_names::kMultiRead, std::move(done), std::move(result));
}

void FakeZkClient::GetAcl(std::string_view path, ZkCallback<GetAclReply> done) {
  const std::string what = Describe(op_names::kGetAcl, path);
  std::lock_guard lock(server_->mutex_);
  ZkResult<GetAclReply> result = [&]() -> ZkResult<GetAclReply> {
    if (auto error = Precheck(op_names::kGetAcl, path, what)) return Unexpected{*error};
    auto& session = *server_->sessions_[session_id_];
    auto it = server_->tree_.find(ServerPathOf(path));
    if (it == server_->tree_.end()) {
      return Unexpected{MakeZkError(ZkErrorCode::kNoNode, what, server_->zxid_)};
    }
    if (!server_->Allowed(&session, it->second)) {
      return Unexpected{MakeZkError(ZkErrorCode::kNoAuth, what, server_->zxid_)};
    }
    return GetAclReply{it->second.acl, it->second.stat, server_->zxid_};
  }();
  Reply(op_names::kGetAcl, std::move(done), std::move(result));
}

void FakeZkClient::Sync(std::string_view path, ZkCallback<SyncReply> done) {
  const std::string what = Describe(op_names::kSync, path);
  std::lock_guard lock(server_->mutex_);
  ZkResult<SyncReply> result = [&]() -> ZkResult<SyncReply> {
    if (auto error = Precheck(op_names::kSync, path, what)) return Unexpected{*error};
    return SyncReply{std::string(path), server_->zxid_};
  }();
  Reply(op_names::kSync, std::move(done), std::move(result));
}

void FakeZkClient::AddWatch(std::string_view path, AddWatchMode mode, ZkCallback<Ack> done) {
  const std::string what = Describe(op_names::kAddWatch, path);
  std::lock_guard lock(server_->mutex_);
  ZkResult<Ack> result = [&]() -> ZkResult<Ack> {
    if (auto error = Precheck(op_names::kAddWatch, path, what)) return Unexpected{*error};
    if (!server_->add_watch_supported_) {
      return Unexpected{MakeZkError(ZkErrorCode::kUnimplemented, what, server_->zxid_)};
    }
    auto& session = *server_->sessions_[session_id_];
    const std::string full = ServerPathOf(path);
    if (mode == AddWatchMode::kPersistent) {
      session.persistent.insert(full);
    } else {
      session.recursive.insert(full);
    }
    return Ack{server_->zxid_};
  }();
  Reply(op_names::kAddWatch, std::move(done), std::move(result));
}

void FakeZkClient::RemoveWatches(std::string_view path, WatcherType type, ZkCallback<Ack> done) {
  const std::string what = Describe(op_names::kRemoveWatches, path);
  std::lock_guard lock(server_->mutex_);
  ZkResult<Ack> result = [&]() -> ZkResult<Ack> {
    if (auto error = Precheck(op_names::kRemoveWatches, path, what)) return Unexpected{*error};
    auto& s = *server_->sessions_[session_id_];
    const std::string full = ServerPathOf(path);
    size_t removed = 0;
    switch (type) {
      case WatcherType::kChildren:
        removed = s.child.erase(full);
        break;
      case WatcherType::kData:
        removed = s.data.erase(full) + s.exist.erase(full);
        break;
      case WatcherType::kAny:
        removed = s.child.erase(full) + s.data.erase(full) + s.exist.erase(full) +
                  s.persistent.erase(full) + s.recursive.erase(full);
        break;
      case WatcherType::kPersistent:
        removed = s.persistent.erase(full);
        break;
      case WatcherType::kPersistentRecursive:
        removed = s.recursive.erase(full);
        break;
    }
    if (removed == 0) {
      return Unexpected{MakeZkError(ZkErrorCode::kNoWatcher, what, server_->zxid_)};
    }
    return Ack{server_->zxid_};
  }();
  Reply(op_names::kRemoveWatches, std::move(done), std::move(result));
}

void FakeZkClient::AddAuth(std::string_view scheme, std::string_view credential,
                           ZkCallback<Ack> done) {
  std::lock_guard lock(server_->mutex_);
  ZkResult<Ack> result = [&]() -> ZkResult<Ack> {
    if (auto error = Precheck(op_names::kAuth, "/", "auth")) return Unexpected{*error};
    auto& session = *server_->sessions_[session_id_];
    if (scheme == "digest" && credential.find(':') == std::string_view::npos) {
      server_->EndSession(&session, SessionEventType::kAuthFailed, ZkErrorCode::kAuthFailed);
      return Unexpected{MakeZkError(ZkErrorCode::kAuthFailed, "auth")};
    }
    if (scheme == "digest") session.digests.emplace_back(credential);
    return Ack{server_->zxid_};
  }();
  Reply(op_names::kAuth, std::move(done), std::move(result));
}

void FakeZkClient::Close() {
  {
    std::lock_guard close_lock(close_mutex_);
    if (closed_) return;
    closed_ = true;
    std::lock_guard lock(server_->mutex_);
    auto it = server_->sessions_.find(session_id_);
    if (it != server_->sessions_.end()) {
      FakeZkServer::Session& session = *it->second;
      if (session.live()) {
        server_->EndSession(&session, SessionEventType::kClosed, ZkErrorCode::kClosed);
      } else {
        session.state = SessionState::kClosed;
        SessionEvent event;
        event.type = SessionEventType::kClosed;
        event.session_id = session_id_;
        Enqueue([this, event] {
          if (handlers_.on_session) handlers_.on_session(event);
        });
      }
    }
  }
  if (!options_.manual_delivery) RunPending();
}

SessionInfo FakeZkClient::session() const {
  std::lock_guard lock(server_->mutex_);
  SessionInfo info;
  info.session_id = session_id_;
  info.negotiated_timeout = options_.session_timeout;
  auto it = server_->sessions_.find(session_id_);
  if (it == server_->sessions_.end()) {
    info.state = SessionState::kClosed;
    return info;
  }
  info.state = it->second->state;
  if (info.state == SessionState::kConnected && !it->second->connected) {
    info.state = SessionState::kConnecting;
  }
  if (info.state == SessionState::kConnected) info.server = "fake";
  return info;
}

void FakeZkClient::Disconnect() {
  std::lock_guard lock(server_->mutex_);
  auto& session = *server_->sessions_[session_id_];
  if (!session.live() || !session.connected) return;
  session.connected = false;
  session.disconnect_zxid = server_->zxid_;
  SessionEvent event;
  event.type = SessionEventType::kDisconnected;
  event.session_id = session_id_;
  event.reason = "injected connection loss";
  Enqueue([this, event] {
    if (handlers_.on_session) handlers_.on_session(event);
  });
}

void FakeZkClient::Reconnect() {
  std::lock_guard lock(server_->mutex_);
  auto& s = *server_->sessions_[session_id_];
  if (!s.live() || s.connected) return;
  s.connected = true;
  SessionEvent event;
  event.type = SessionEventType::kReconnected;
  event.session_id = session_id_;
  event.server = "fake";
  event.negotiated_timeout = options_.session_timeout;
  Enqueue([this, event] {
    if (handlers_.on_session) handlers_.on_session(event);
  });
  // What SetWatches does on the server: one-shot watches whose nodes changed after the last
  // zxid the client saw fire now; the others stay.
  std::vector<WatchEvent> fired;
  auto fire = [&](WatchEventType type, const std::string& path) {
    fired.push_back(WatchEvent{type, KeeperState::kSyncConnected, ClientPathOf(path)});
  };
  const auto& tree = server_->tree_;
  for (auto it = s.data.begin(); it != s.data.end();) {
    auto node = tree.find(*it);
    if (node == tree.end()) {
      fire(WatchEventType::kNodeDeleted, *it);
    } else if (node->second.stat.mzxid > s.disconnect_zxid) {
      fire(WatchEventType::kNodeDataChanged, *it);
    } else {
      ++it;
      continue;
    }
    it = s.data.erase(it);
  }
  for (auto it = s.exist.begin(); it != s.exist.end();) {
    if (tree.find(*it) != tree.end()) {
      fire(WatchEventType::kNodeCreated, *it);
      it = s.exist.erase(it);
    } else {
      ++it;
    }
  }
  for (auto it = s.child.begin(); it != s.child.end();) {
    auto node = tree.find(*it);
    if (node == tree.end()) {
      fire(WatchEventType::kNodeDeleted, *it);
    } else if (node->second.stat.pzxid > s.disconnect_zxid) {
      fire(WatchEventType::kNodeChildrenChanged, *it);
    } else {
      ++it;
      continue;
    }
    it = s.child.erase(it);
  }
  for (auto& event_to_fire : fired) {
    Enqueue([this, event_to_fire] {
      if (handlers_.on_watch) handlers_.on_watch(event_to_fire);
    });
  }
}

void FakeZkClient::InjectConnectionLoss() {
  Disconnect();
  Reconnect();
}

void FakeZkClient::ExpireSession() { server_->ExpireSession(session_id_); }

}  // namespace zk2etcd::zk

#include "connectors/zookeeper/zookeeper_source.h"

#include <condition_variable>
#include <deque>
#include <future>
#include <system_error>
#include <thread>
#include <utility>

#include "connectors/zookeeper/zk_walker.h"

namespace zk2etcd::connectors {

namespace {

using core::SourceError;

// The source whose ReadAsync is handing a read to the client on this thread: a callback that
// finds itself here was called inline.
thread_local const void* issuing_read = nullptr;

// The events the change stream announces (child lists are the classic watcher's business).
bool IsNodeChange(zk::WatchEventType type) {
  return type == zk::WatchEventType::kNodeCreated || type == zk::WatchEventType::kNodeDeleted ||
         type == zk::WatchEventType::kNodeDataChanged;
}

SourceError SourceErrorOf(const zk::ZkError& error) {
  SourceError::Code code = SourceError::Code::kOther;
  switch (error.code) {
    case zk::ZkErrorCode::kConnectionLoss:
    case zk::ZkErrorCode::kSessionExpired:
    case zk::ZkErrorCode::kSessionMoved:
    case zk::ZkErrorCode::kTimeout:
    case zk::ZkErrorCode::kThrottled:
      code = SourceError::Code::kUnavailable;
      break;
    case zk::ZkErrorCode::kClosed:
      code = SourceError::Code::kClosed;
      break;
    case zk::ZkErrorCode::kAuthFailed:
      code = SourceError::Code::kAuthFailed;
      break;
    default:
      break;
  }
  return SourceError{code, error.ToString()};
}

SourceError Closed() { return SourceError{SourceError::Code::kClosed, "ZooKeeper source closed"}; }

}  // namespace

Result<WatchMode, std::string> ParseWatchMode(std::string_view name) {
  if (name == "auto") return WatchMode::kAuto;
  if (name == "persistent") return WatchMode::kPersistent;
  if (name == "classic") return WatchMode::kClassic;
  return Unexpected{"unknown watch mode \"" + std::string(name) +
                    "\" (use auto, persistent or classic)"};
}

// One thread, started on first use, that runs posted functions in order; the destructor runs
// what is left, then joins.
ZooKeeperSource::ZooKeeperSource(zk::ZkClientFactory& factory, const core::Scope& scope,
                                 ops::Logger& logger, ZooKeeperSourceOptions options)
    : factory_(factory),
      scope_(scope),
      logger_(logger),
      options_(options),
      classic_(
          scope, [this](const std::string& path) { Announce(path, zk::WatchEventType::kNone); },
          logger),
      callbacks_(std::make_unique<CallbackThread>()) {}

ZooKeeperSource::~ZooKeeperSource() {
  Close();
  callbacks_.reset();  // runs the callbacks still owed
}

void ZooKeeperSource::OpenAhead() {
  uint64_t epoch;
  {
    std::lock_guard lock(mutex_);
    if (listener_ != nullptr || ahead_ != nullptr || client_ != nullptr) return;
    epoch = epoch_;
    ahead_ended_ = false;
    ahead_events_.clear();
    connected_ = false;
  }
  auto started = StartOpening(epoch);
  if (!started.ok()) return;  // Open() starts afresh and reports
  std::lock_guard lock(mutex_);
  // Else a Close() came meanwhile and closed its client.
  if (epoch_ == epoch) ahead_ = std::make_unique<Opening>(std::move(started).value());
}

std::unique_ptr<ZooKeeperSource::Opening> ZooKeeperSource::TakeOpeningAhead(
    core::SourceListener& listener) {
  std::unique_ptr<Opening> opening;
  bool drop = false;
  {
    std::lock_guard delivering(session_events_mutex_);
    std::vector<core::SourceEvent> events;
    {
      std::lock_guard lock(mutex_);
      opening = std::move(ahead_);
      // It serves unless a Close() came, or its session ended (expired, credentials refused).
      if (opening != nullptr && (opening->epoch != epoch_ || ahead_ended_)) {
        drop = opening->epoch == epoch_;
        opening = nullptr;
      }
      // Set under the lock the event handlers read it under, which they hold through a
      // delivery: the session's events so far reach the listener first, in order, then the
      // later ones; changes from here on.
      if (opening != nullptr) {
        listener_ = &listener;
        events.swap(ahead_events_);
      }
      ahead_events_.clear();
    }
    for (const core::SourceEvent& event : events) listener.OnSourceEvent(event);
  }
  if (drop) Close();  // its session, and the helpers it made
  return opening;
}

core::SourceResult<void> ZooKeeperSource::Open(core::SourceListener& listener) {
  std::unique_ptr<Opening> opening = TakeOpeningAhead(listener);
  if (opening != nullptr) {
    auto finished = FinishOpening(*opening);
    // Its requests may have failed long before (ZooKeeper out of reach for a session timeout
    // while etcd was dialled): one opening afresh now rather than after the caller's backoff.
    if (finished.ok() || finished.error().code != SourceError::Code::kUnavailable) {
      return finished;
    }
  }
  uint64_t epoch;
  {
    std::lock_guard lock(mutex_);
    epoch = epoch_;
    listener_ = &listener;
    open_ = false;
    connected_ = false;
  }
  auto started = StartOpening(epoch);
  if (!started.ok()) return Unexpected{started.error()};
  return FinishOpening(*started);
}

core::SourceResult<ZooKeeperSource::Opening> ZooKeeperSource::StartOpening(uint64_t epoch) {
  classic_mode_.store(false);
  classic_.Clear();  // a new session holds none of the old one's watches
  zk::ZkEventHandlers handlers;
  handlers.on_watch = [this](const zk::WatchEvent& event) { OnWatch(event); };
  handlers.on_session = [this, epoch](const zk::SessionEvent& event) { OnSession(event, epoch); };
  auto created = factory_.NewClient(std::move(handlers));
  if (!created.ok()) {
    logger_.Warn("cannot create a ZooKeeper client", {{"error", created.error().ToString()}});
    Close();
    return Unexpected{SourceError{SourceError::Code::kUnavailable, created.error().ToString()}};
  }
  Opening opening;
  opening.epoch = epoch;
  opening.client = std::move(created).value();
  zk::ZkClient& client = *opening.client;
  {
    std::lock_guard lock(mutex_);
    if (epoch_ == epoch) client_ = opening.client;
  }
  if (ClosedSince(epoch)) {
    client.Close();
    return Unexpected{Closed()};
  }
  // Watches first, then the walk: nothing can change unseen in between. In classic mode the
  // walk itself sets the watches, each in the read that sees the node. Every watch is asked for
  // at once, and the walk's first requests go right behind them (WalkHead): the session answers
  // in order, so they read after the watches are in place, and the walk that follows starts a
  // round trip further on. A new session sends both behind its handshake (asio_zk_client.h).
  // When the session is already connected (sync preconnects it), the walk's other sessions
  // connect meanwhile, unless this server was found without persistent watches before.
  // "/" is the chroot when the connect string has one: a chroot that does not exist would read
  // as an empty tree, and every key the job wrote would go (asked first, behind the handshake).
  auto root = std::make_shared<std::promise<zk::ZkResult<zk::ExistsReply>>>();
  opening.root = root->get_future();
  client.Exists("/", /*watch=*/false, [root](zk::ZkResult<zk::ExistsReply> result) {
    root->set_value(std::move(result));
  });
  const bool persistent = options_.change_stream && !ClassicAsked();
  opening.head_mark = head_invalidations_.load();
  for (size_t i = 0; persistent && i < scope_.prefixes().size(); ++i) {
    auto added = std::make_shared<std::promise<zk::ZkResult<zk::Ack>>>();
    opening.watches.push_back(added->get_future());
    client.AddWatch(scope_.prefixes()[i], zk::AddWatchMode::kPersistentRecursive,
                    [added](zk::ZkResult<zk::Ack> result) { added->set_value(std::move(result)); });
  }
  if (persistent && options_.multi_read_batch > 1 && !scope_.prefixes().empty()) {
    opening.head = WalkHead::Send(client, scope_, options_.multi_read_batch);
  }
  if (persistent && !client.session().server.empty() && !lacks_persistent_watches_.load()) {
    OpenHelpers(client, epoch);
  }
  return opening;
}

core::SourceResult<void> ZooKeeperSource::FinishOpening(Opening& opening) {
  const uint64_t epoch = opening.epoch;
  std::shared_ptr<zk::ZkClient> client = opening.client;
  // No opening without an answer on the chroot: in classic mode nothing else here would fail,
  // and a session that resumed would read a missing chroot as an empty tree.
  auto root = opening.root.get();
  if (!root.ok()) {
    SourceError error = ErrorOf(root.error(), epoch);
    if (error.code == SourceError::Code::kOther) error.code = SourceError::Code::kUnavailable;
    Close();
    return Unexpected{std::move(error)};
  }
  if (!root->stat) {
    Close();
    return Unexpected{SourceError{
        SourceError::Code::kUnsupported,
        "ZooKeeper: the chroot " +
            (options_.chroot.empty() ? std::string() : options_.chroot + " ") +
            "of the connect string does not exist on the ensemble (create it, or fix the "
            "connect string)"}};
  }
  bool classic = ClassicAsked();
  for (size_t i = 0; i < opening.watches.size(); ++i) {
    const std::string& prefix = scope_.prefixes()[i];
    auto added = opening.watches[i].get();
    if (added.ok()) continue;
    SourceError error = ErrorOf(added.error(), epoch);
    if (added.error().code == zk::ZkErrorCode::kUnimplemented) {
      if (options_.watch_mode == WatchMode::kAuto) {
        logger_.Warn(
            "the ZooKeeper server has no persistent watches (older than 3.6): using "
            "one-shot watches on every node");
        classic = true;
        break;
      }
      error = SourceError{SourceError::Code::kUnsupported,
                          "the ZooKeeper server does not support persistent recursive watches "
                          "(3.6+); use --zookeeper-watch-mode=classic or auto"};
    } else {
      if (error.code == SourceError::Code::kOther) error.code = SourceError::Code::kUnavailable;
      if (error.code != SourceError::Code::kClosed && !error.Fatal()) {
        logger_.Warn("cannot register the persistent recursive watch; retrying",
                     {{"prefix", prefix}, {"error", added.error().ToString()}});
      }
    }
    Close();
    return Unexpected{std::move(error)};
  }
  classic_mode_.store(classic);
  // What this server said, for the next opening (which may find another server of the ensemble,
  // or this one upgraded, and then learns again).
  if (options_.watch_mode == WatchMode::kAuto) lacks_persistent_watches_.store(classic);
  std::shared_ptr<WalkHead> head = std::move(opening.head);
  if (classic) {
    classic_.SetClient(client.get());
    CloseHelpers(epoch);  // made in vain: the server has no persistent watches
    head = nullptr;       // read without watches in place
  } else {
    OpenHelpers(*client, epoch);  // unless made above
  }
  const zk::SessionInfo session = client->session();
  {
    std::lock_guard lock(mutex_);
    if (epoch_ == epoch) {
      open_ = true;
      session_id_ = session.session_id;
      // Held first, then checked: a change counted meanwhile either finds it held (and drops
      // it) or is seen here.
      head_held_.store(head != nullptr);
      if (head_invalidations_.load() == opening.head_mark) head_ = std::move(head);
      head_mark_ = opening.head_mark;
    }
  }
  if (ClosedSince(epoch)) {
    // A Close() came meanwhile, perhaps before the watcher had the client: `client` is still
    // alive here, and the watcher lets go of it now.
    classic_.SetClient(nullptr);
    return Unexpected{Closed()};
  }
  logger_.Info("zookeeper session open, watches registered",
               {{"session_id", session.session_id},
                {"server", session.server},
                {"prefixes", scope_.prefixes().size()}});
  return {};
}

void ZooKeeperSource::OpenHelpers(zk::ZkClient& client, uint64_t epoch) {
  const zk::SessionInfo session = client.session();
  {
    std::lock_guard lock(mutex_);
    if (epoch_ != epoch || helpers_opened_) return;
    helpers_opened_ = true;
  }
  // The walk's other sessions, to the same server. They connect while the walk starts (what is
  // sent to them meanwhile waits in them).
  std::vector<std::shared_ptr<zk::ZkClient>> helpers;
  for (size_t i = 1;
       options_.multi_read_batch > 1 && !session.server.empty() && i < options_.walk_sessions;
       ++i) {
    auto made = factory_.NewClientOf(session.server, {});
    if (!made.ok()) {
      if (made.error().code != zk::ZkErrorCode::kUnimplemented) {
        logger_.Debug("no more ZooKeeper sessions for the walk",
                      {{"sessions", i}, {"error", made.error().ToString()}});
      }
      break;
    }
    helpers.push_back(std::move(made).value());
  }
  {
    std::lock_guard lock(mutex_);
    if (epoch_ == epoch) {
      helpers_ = std::move(helpers);
      helpers.clear();
    }
  }
  CloseAtOnce(helpers);  // a Close() came meanwhile
}

void ZooKeeperSource::CloseHelpers(uint64_t epoch) {
  std::vector<std::shared_ptr<zk::ZkClient>> helpers;
  {
    std::lock_guard lock(mutex_);
    if (epoch_ != epoch) return;  // Close() took them
    helpers = std::move(helpers_);
    helpers_.clear();
  }
  CloseAtOnce(helpers);
}

void ZooKeeperSource::InvalidateHead() {
  head_invalidations_.fetch_add(1);
  if (!head_held_.exchange(false)) return;
  std::lock_guard lock(mutex_);
  head_ = nullptr;  // its answer may be large (a prefix's children): not kept for nothing
}

void ZooKeeperSource::Close() {
  // One Close at a time, each returning only when its client delivers nothing more: a Close that
  // finds the client taken (Stop's, on another thread) waits for that one to finish, so that the
  // source may be destroyed as soon as any Close returns.
  std::lock_guard close_lock(close_mutex_);
  std::shared_ptr<zk::ZkClient> client;
  std::vector<std::shared_ptr<zk::ZkClient>> helpers;
  {
    // After any delivery under way (a session event, or Open() handing over an opening started
    // ahead): once Close() returns, the listener hears nothing more.
    std::lock_guard delivering(session_events_mutex_);
    std::lock_guard lock(mutex_);
    ++epoch_;
    client = std::move(client_);
    helpers = std::move(helpers_);
    helpers_.clear();
    helpers_opened_ = false;
    head_ = nullptr;
    head_held_.store(false);
    ahead_ = nullptr;  // its client is client_
    listener_ = nullptr;
    open_ = false;
    connected_ = false;
  }
  classic_.SetClient(nullptr);
  // Fails what is pending (blocking reads, owed callbacks) and waits until nothing more is
  // delivered. Not under mutex_: the delivery thread may be waiting for it.
  if (client != nullptr) helpers.insert(helpers.begin(), std::move(client));
  CloseAtOnce(helpers);
}

void ZooKeeperSource::CloseAtOnce(std::vector<std::shared_ptr<zk::ZkClient>>& clients) {
  // The first on this thread, the others each on a thread of its own. Each waits up to 2 s for a
  // server that does not answer its close: one after the other, four would keep a stopping process
  // 8 s.
  std::vector<std::future<void>> closing;
  for (size_t i = 1; i < clients.size(); ++i) {
    try {
      closing.push_back(std::async(std::launch::async, [client = clients[i]] { client->Close(); }));
    } catch (const std::system_error&) {
      clients[i]->Close();  // no thread to spare: closed here
    }
  }
  if (!clients.empty()) clients[0]->Close();
  for (auto& closed : closing) closed.wait();
}

std::shared_ptr<zk::ZkClient> ZooKeeperSource::CurrentClient(uint64_t* epoch) const {
  std::lock_guard lock(mutex_);
  *epoch = epoch_;
  return client_;
}

bool ZooKeeperSource::ClosedSince(uint64_t epoch) const {
  std::lock_guard lock(mutex_);
  return epoch_ != epoch;
}

SourceError ZooKeeperSource::ErrorOf(const zk::ZkError& error, uint64_t epoch) const {
  SourceError result = SourceErrorOf(error);
  if (ClosedSince(epoch)) result.code = SourceError::Code::kClosed;
  return result;
}

void ZooKeeperSource::OnWatch(const zk::WatchEvent& event) {
  // Any change in scope after the walk's head was sent makes it unusable: counted before the
  // change is announced, so that a walk that starts after the announcement never uses a head
  // that missed it. (Only the prefixes' data and children lists come from the head, but with no
  // change at all between the head and the walk, the head's zxid is as good a floor for the
  // helper sessions as the walk's own first answer: WalkOptions::helpers.)
  if (IsNodeChange(event.type) && scope_.Contains(event.path)) InvalidateHead();
  if (classic_mode_.load()) classic_.OnWatchEvent(event);
  if (IsNodeChange(event.type)) Announce(event.path, event.type);
}

void ZooKeeperSource::Announce(const std::string& path, zk::WatchEventType type) {
  if (!scope_.Contains(path)) return;
  if (options_.announce && !options_.announce(path, type)) return;
  core::SourceListener* listener;
  {
    std::lock_guard lock(mutex_);
    listener = listener_;
  }
  if (listener != nullptr) listener->OnChange(path);
}

void ZooKeeperSource::OnSession(const zk::SessionEvent& event, uint64_t epoch) {
  core::SourceEvent out;
  bool connected = false;
  switch (event.type) {
    case zk::SessionEventType::kConnected:
      out = {core::SourceEventType::kConnected, "connected to ZooKeeper at " + event.server};
      connected = true;
      break;
    case zk::SessionEventType::kDisconnected:
      out = {core::SourceEventType::kDisconnected, "ZooKeeper connection lost: " + event.reason};
      break;
    case zk::SessionEventType::kReconnected:
      out = {core::SourceEventType::kReconnected,
             "reconnected to ZooKeeper at " + event.server +
                 " with the same session; changes made meanwhile were not announced"};
      connected = true;
      break;
    case zk::SessionEventType::kAuthFailed:
      out = {core::SourceEventType::kFatal,
             "ZooKeeper refused the credentials (--zookeeper-digest): " + event.reason};
      break;
    case zk::SessionEventType::kExpired:
    case zk::SessionEventType::kClosed:
      out = {core::SourceEventType::kLost, "ZooKeeper session ended: " + event.reason};
      break;
  }
  // Held through the delivery: Open() hands an opening started ahead to its listener under it,
  // so that an event either came before (and is handed over in order) or reaches it after.
  std::lock_guard delivering(session_events_mutex_);
  core::SourceListener* listener;
  {
    std::lock_guard lock(mutex_);
    if (epoch != epoch_) return;  // an old session's, or one that Close() is ending
    // Anything but the first connection may have let changes go unannounced.
    if (event.type != zk::SessionEventType::kConnected) {
      head_invalidations_.fetch_add(1);
      head_held_.store(false);
      head_ = nullptr;
    }
    if (listener_ == nullptr) {  // an opening started ahead: for Open() to hand over
      ahead_events_.push_back(out);
      if (out.type == core::SourceEventType::kLost || out.type == core::SourceEventType::kFatal) {
        ahead_ended_ = true;
      }
    }
    connected_ = connected;
    listener = listener_;
  }
  switch (event.type) {
    case zk::SessionEventType::kDisconnected:
      // The client's own "zookeeper connection lost" warning says it for the operator.
      logger_.Debug("zookeeper connection lost; reconnecting",
                    {{"server", event.server}, {"reason", event.reason}});
      break;
    case zk::SessionEventType::kReconnected:
      logger_.Info(
          "zookeeper reconnected with the same session; reconciling what the watches "
          "could not see",
          {{"server", event.server}});
      break;
    case zk::SessionEventType::kExpired:
    case zk::SessionEventType::kClosed:
      logger_.Warn("zookeeper session ended; opening a new one and reconciling everything",
                   {{"session_id", event.session_id}, {"reason", event.reason}});
      break;
    default:
      break;
  }
  if (listener != nullptr) listener->OnSourceEvent(out);
}

core::SourceResult<core::Snapshot> ZooKeeperSource::ReadSnapshot(
    const core::SnapshotOptions& options) {
  uint64_t epoch;
  const std::shared_ptr<zk::ZkClient> client = CurrentClient(&epoch);
  if (client == nullptr) return Unexpected{Closed()};
  std::vector<std::shared_ptr<zk::ZkClient>> helpers;
  std::shared_ptr<WalkHead> head;
  uint64_t head_mark = 0;
  {
    std::lock_guard lock(mutex_);
    if (epoch_ == epoch) {
      helpers = helpers_;
      head = std::move(head_);
      head_ = nullptr;
      head_mark = head_mark_;
    }
  }
  WalkOptions walk;
  // The head is only good if nothing in scope changed since it was sent (the engine started
  // noting announced changes before this call: a change announced later is read again).
  if (head != nullptr && head_invalidations_.load() == head_mark) walk.head = std::move(head);
  head = nullptr;  // unused: not kept through the walk
  for (const auto& helper : helpers) {
    const zk::SessionState state = helper->session().state;
    // One that ended is left out; the next opening makes new ones.
    if (state == zk::SessionState::kConnecting || state == zk::SessionState::kConnected) {
      walk.helpers.push_back(helper.get());
    }
  }
  walk.window = options.window;
  walk.multi_read_batch = options_.multi_read_batch;
  walk.on_progress = options.on_progress;
  walk.on_entry = options.on_entry;
  walk.cancel = options.cancel;
  walk.include = options_.include;
  if (classic_mode_.load()) {
    walk.set_watches = true;
    walk.on_children = [this](const std::string& path, const std::vector<std::string>& names) {
      classic_.NoteChildren(path, names);
    };
  }
  auto snapshot = WalkZkTree(*client, scope_, walk);
  if (!snapshot.ok()) return Unexpected{ErrorOf(snapshot.error(), epoch)};
  if (snapshot->requests_sent_again > 0) {
    logger_.Info("the walk sent late requests again on another session",
                 {{"requests", snapshot->requests},
                  {"sent_again", snapshot->requests_sent_again},
                  {"server", client->session().server}});
  }
  return std::move(snapshot).value();
}

core::SourceResult<std::vector<core::EntryState>> ZooKeeperSource::Reread(
    const std::vector<std::string>& keys, const core::RereadOptions& options) {
  uint64_t epoch;
  const std::shared_ptr<zk::ZkClient> client = CurrentClient(&epoch);
  if (client == nullptr) return Unexpected{Closed()};
  NodeReadOptions reads;
  reads.window = options.window;
  reads.multi_read_batch = options_.multi_read_batch;
  reads.expected_bytes = options.expected_bytes;
  reads.include = options_.include;
  auto states = ReadNodes(*client, keys, reads);
  if (!states.ok()) return Unexpected{ErrorOf(states.error(), epoch)};
  return std::move(states).value();
}

void ZooKeeperSource::ReadAsync(const std::string& key,
                                std::function<void(core::SourceResult<core::EntryState>)> done) {
  using Callback = std::function<void(core::SourceResult<core::EntryState>)>;
  std::unique_lock lock(mutex_);
  if (client_ == nullptr) {
    lock.unlock();
    callbacks_->Post([done = std::move(done)] {
      done(Unexpected{SourceError{SourceError::Code::kUnavailable, "not connected to ZooKeeper"}});
    });
    return;
  }
  // Under mutex_, so that once Close() took the client no read is issued to it.
  issuing_read = this;
  client_->GetData(
      key, classic_mode_.load(),
      [this, key, done = std::move(done)](zk::ZkResult<zk::GetDataReply> reply) mutable {
        auto state = EntryStateOf(std::move(reply), key, options_.include);
        core::SourceResult<core::EntryState> result = core::EntryState{};
        if (state.ok()) {
          result = std::move(state).value();
        } else {
          // A closed client's callbacks are reads still owed: kUnavailable, as without a client.
          SourceError error = SourceErrorOf(state.error());
          if (error.code == SourceError::Code::kClosed) {
            error.code = SourceError::Code::kUnavailable;
          }
          result = Unexpected{std::move(error)};
        }
        if (issuing_read == this) {  // called inline: run it on the source's own thread
          callbacks_->Post([done = Callback(std::move(done)),
                            result = std::move(result)]() mutable { done(std::move(result)); });
          return;
        }
        done(std::move(result));
      });
  issuing_read = nullptr;
}

core::SourceStatus ZooKeeperSource::Status() const {
  core::SourceStatus status;
  {
    std::lock_guard lock(mutex_);
    status.connected = open_ && connected_;
    status.session_id = session_id_;
    status.classic_watches = open_ && classic_mode_.load();
  }
  if (status.connected) {
    status.watches = status.classic_watches ? classic_.watched_parents() : scope_.prefixes().size();
  }
  return status;
}

}  // namespace zk2etcd::connectors

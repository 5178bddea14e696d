#include "connectors/zookeeper/zookeeper_election.h"

#include <algorithm>
#include <iterator>
#include <utility>

namespace zk2etcd::connectors {

namespace {

constexpr char kLockPrefix[] = "lock-";
constexpr size_t kLockPrefixSize = sizeof(kLockPrefix) - 1;
constexpr size_t kSequenceDigits = 10;
// Sessions remembered as this process's own (a few campaigns back is plenty: a session whose close
// did not reach the ensemble expires within its timeout anyway).
constexpr size_t kPastSessions = 8;

std::string ChildPath(const std::string& parent, const std::string& name) {
  return parent == "/" ? "/" + name : parent + "/" + name;
}

std::string NameOf(const std::string& path) {
  const size_t slash = path.rfind('/');
  return slash == std::string::npos ? path : path.substr(slash + 1);
}

// Errors after which the campaign waits: for the connection to come back (the children are
// listed again then) or for the session's end, which its own event reports.
bool WaitsForSession(zk::ZkErrorCode code) {
  return zk::IsRetryable(code) || code == zk::ZkErrorCode::kSessionExpired ||
         code == zk::ZkErrorCode::kClosed || code == zk::ZkErrorCode::kAuthFailed;
}

}  // namespace

LockTakeoverAction DecideLockTakeover(const std::string& data, int64_t ephemeral_owner,
                                      const std::string& identity, int64_t session_id,
                                      const std::vector<int64_t>& own_past_sessions,
                                      bool first_campaign) {
  if (ephemeral_owner == 0 || ephemeral_owner == session_id) return LockTakeoverAction::kNone;
  if (std::find(own_past_sessions.begin(), own_past_sessions.end(), ephemeral_owner) !=
      own_past_sessions.end()) {
    return LockTakeoverAction::kDeleteOwnStale;
  }
  if (identity.empty() || data != identity) return LockTakeoverAction::kNone;
  return first_campaign ? LockTakeoverAction::kTakeOver : LockTakeoverAction::kWarnDuplicate;
}

int64_t LockSequence(const std::string& name) {
  if (name.size() != kLockPrefixSize + kSequenceDigits ||
      name.compare(0, kLockPrefixSize, kLockPrefix) != 0) {
    return -1;
  }
  int64_t sequence = 0;
  for (size_t i = kLockPrefixSize; i < name.size(); ++i) {
    if (name[i] < '0' || name[i] > '9') return -1;
    sequence = sequence * 10 + (name[i] - '0');
  }
  return sequence;
}

ZooKeeperElection::ZooKeeperElection(zk::ZkClientFactory& factory, ops::Logger& logger,
                                     ZooKeeperElectionOptions options)
    : factory_(factory), logger_(logger), options_(std::move(options)) {}

ZooKeeperElection::~ZooKeeperElection() {
  std::lock_guard calls(calls_mutex_);
  StopLocked();
}

Result<uint64_t, std::string> ZooKeeperElection::Campaign(
    std::function<void(const core::ElectionEvent&)> on_event) {
  std::lock_guard calls(calls_mutex_);
  StopLocked();  // REQUIRES says none is in progress; never two at once
  uint64_t campaign = 0;
  {
    std::lock_guard lock(mutex_);
    campaign = ++campaigns_;
    connected_ = false;
    session_over_ = false;
    session_end_.clear();
    node_.clear();
    node_czxid_ = 0;
    predecessor_.clear();
  }
  zk::ZkEventHandlers handlers;
  handlers.on_watch = [this, campaign](const zk::WatchEvent& event) { OnWatch(campaign, event); };
  handlers.on_session = [this, campaign](const zk::SessionEvent& event) {
    OnSession(campaign, event);
  };
  auto created = factory_.NewClient(std::move(handlers));
  if (!created.ok()) {
    return Unexpected{"cannot create a ZooKeeper client: " + created.error().ToString()};
  }
  client_ = std::move(created).value();

  int64_t session_id = 0;
  bool started = false;
  {
    std::unique_lock lock(mutex_);
    session_changed_.wait_for(lock, options_.start_timeout,
                              [&] { return connected_ || session_over_; });
    started = connected_ && !session_over_;
    session_id = session_id_;
  }
  if (!started) {
    std::string why;
    {
      std::lock_guard lock(mutex_);
      why = session_over_ ? "the session ended before the campaign started: " + session_end_
                          : "no ZooKeeper session within " +
                                std::to_string(options_.start_timeout.count()) + " ms";
    }
    StopLocked();
    return Unexpected{"cannot campaign for " + options_.lock_path + ": " + why};
  }
  past_sessions_.push_back(session_id);
  if (past_sessions_.size() > kPastSessions) past_sessions_.pop_front();

  std::string node;
  auto stat = SetUp(*client_, session_id, &node);
  if (!stat.ok()) {
    StopLocked();  // a node the failed create may have left goes with the session
    return Unexpected{std::move(stat).error()};
  }
  std::string ended;
  {
    std::lock_guard lock(mutex_);
    if (session_over_) {
      // Its end was delivered to no one: it is the campaign's failure.
      ended = session_end_;
    } else {
      live_ = client_.get();
      node_ = node;
      node_czxid_ = stat->czxid;
      on_event_ = std::move(on_event);
      elected_ = false;
      delivering_ = true;
      // The node's deletion ends the campaign; the children decide who leads. Both answers come
      // on the delivery thread, so no event is delivered inline.
      WatchOwnLocked();
      CheckLocked();
    }
  }
  if (!ended.empty()) {
    StopLocked();
    return Unexpected{"cannot campaign for " + options_.lock_path +
                      ": the session ended while campaigning: " + ended};
  }
  logger_.Info("campaigning for leadership; standing by until elected",
               {{"election", options_.lock_path},
                {"identity", options_.identity},
                {"lock_node", node},
                {"session_id", session_id}});
  return campaign;
}

Result<zk::Stat, std::string> ZooKeeperElection::SetUp(zk::ZkClient& client, int64_t session_id,
                                                       std::string* node) {
  if (auto made = zk::blocking::CreateAll(client, options_.lock_path); !made.ok()) {
    return Unexpected{"cannot create the election's lock path " + options_.lock_path + ": " +
                      made.error().ToString()};
  }
  ClearStaleNodes(client, session_id);
  auto created = zk::blocking::Create(client, ChildPath(options_.lock_path, kLockPrefix),
                                      options_.identity, zk::CreateMode::kEphemeralSequential);
  if (!created.ok()) {
    return Unexpected{"cannot create the election's lock node under " + options_.lock_path + ": " +
                      created.error().ToString()};
  }
  *node = created->path;
  zk::Stat stat = created->stat;
  if (stat.czxid == 0) stat.czxid = created->zxid;  // create2 answers with the Stat; be safe
  return stat;
}

void ZooKeeperElection::ClearStaleNodes(zk::ZkClient& client, int64_t session_id) {
  auto children = zk::blocking::GetChildren(client, options_.lock_path);
  if (!children.ok()) {
    // The create that follows fails the same way, or the campaign waits in line.
    logger_.Debug("cannot list the election's lock nodes",
                  {{"election", options_.lock_path}, {"error", children.error().ToString()}});
    return;
  }
  const bool first_campaign = !lock_checked_;
  lock_checked_ = true;
  const std::vector<int64_t> own(past_sessions_.begin(), past_sessions_.end());
  for (const std::string& name : children->children) {
    if (LockSequence(name) < 0) continue;
    const std::string path = ChildPath(options_.lock_path, name);
    auto read = zk::blocking::GetData(client, path);
    if (!read.ok()) continue;  // gone meanwhile, or unreadable: wait in line
    const LockTakeoverAction action = DecideLockTakeover(
        read->data, read->stat.ephemeral_owner, options_.identity, session_id, own, first_campaign);
    if (action == LockTakeoverAction::kNone) continue;
    if (action == LockTakeoverAction::kWarnDuplicate) {
      if (warned_duplicate_ == path) continue;
      warned_duplicate_ = path;
      logger_.Warn(
          "another live process campaigns with this replica's election identity; standing "
          "by. Give every replica its own identity",
          {{"identity", options_.identity},
           {"lock_node", path},
           {"owner_session", read->stat.ephemeral_owner}});
      continue;
    }
    auto deleted = zk::blocking::Delete(client, path, read->stat.version);
    if (!deleted.ok() && deleted.error().code != zk::ZkErrorCode::kNoNode) {
      logger_.Warn("cannot delete a stale election lock node; waiting for its session to expire",
                   {{"lock_node", path}, {"error", deleted.error().ToString()}});
      continue;
    }
    if (action == LockTakeoverAction::kTakeOver) {
      logger_.Info("took over the election from a previous process with the same identity",
                   {{"identity", options_.identity},
                    {"lock_node", path},
                    {"owner_session", read->stat.ephemeral_owner}});
    } else {
      logger_.Info("deleted this process's own stale election lock node",
                   {{"lock_node", path}, {"owner_session", read->stat.ephemeral_owner}});
    }
  }
}

bool ZooKeeperElection::StopLocked() {
  bool was_elected = false;
  {
    std::lock_guard lock(mutex_);
    was_elected = delivering_ && elected_;
    delivering_ = false;
    elected_ = false;
    live_ = nullptr;
    on_event_ = nullptr;
  }
  // Not under mutex_: Close waits for the delivery thread, whose callbacks take it. Once Close
  // returns nothing more is delivered, so the client may go.
  std::unique_ptr<zk::ZkClient> client = std::move(client_);
  if (client != nullptr) client->Close();
  return was_elected;
}

void ZooKeeperElection::Abandon() {
  std::lock_guard calls(calls_mutex_);
  StopLocked();
}

void ZooKeeperElection::Resign() {
  std::lock_guard calls(calls_mutex_);
  std::string node;
  {
    std::lock_guard lock(mutex_);
    node = node_;
  }
  if (StopLocked()) logger_.Info("resigned leadership", {{"lock_node", node}});
}

std::string ZooKeeperElection::Describe() const {
  return "zookeeper lock " + options_.lock_path + " as " + options_.identity;
}

bool ZooKeeperElection::DeliveringLocked(uint64_t campaign) const {
  return delivering_ && campaign == campaigns_ && live_ != nullptr;
}

void ZooKeeperElection::OnSession(uint64_t campaign, const zk::SessionEvent& event) {
  std::lock_guard lock(mutex_);
  if (campaign != campaigns_) return;
  switch (event.type) {
    case zk::SessionEventType::kConnected:
      connected_ = true;
      session_id_ = event.session_id;
      session_changed_.notify_all();
      break;
    case zk::SessionEventType::kDisconnected:
      if (delivering_) {
        logger_.Info("election session disconnected; it may survive (writes stay fenced)",
                     {{"lock_node", node_}, {"reason", event.reason}});
      }
      break;
    case zk::SessionEventType::kReconnected:
      // Watches were re-registered, but an answer lost with the connection is not: look again.
      if (DeliveringLocked(campaign)) {
        WatchOwnLocked();
        CheckLocked();
      }
      break;
    case zk::SessionEventType::kExpired:
    case zk::SessionEventType::kAuthFailed:
    case zk::SessionEventType::kClosed: {
      session_over_ = true;
      session_end_ = "zookeeper session " + std::string(zk::SessionEventTypeName(event.type));
      if (!event.reason.empty()) session_end_ += ": " + event.reason;
      session_changed_.notify_all();
      if (DeliveringLocked(campaign)) EndLocked(session_end_);
      break;
    }
  }
}

void ZooKeeperElection::OnWatch(uint64_t campaign, const zk::WatchEvent& event) {
  std::lock_guard lock(mutex_);
  if (!DeliveringLocked(campaign)) return;
  if (event.path == node_) {
    if (event.type == zk::WatchEventType::kNodeDeleted) {
      EndLocked("the election's lock node " + node_ + " was deleted");
    } else {
      WatchOwnLocked();  // one-shot: set it again
    }
  } else if (event.path == predecessor_) {
    CheckLocked();
  }
}

void ZooKeeperElection::WatchOwnLocked() {
  live_->Exists(node_, true, [this, campaign = campaigns_](zk::ZkResult<zk::ExistsReply> result) {
    OnOwnNode(campaign, std::move(result));
  });
}

void ZooKeeperElection::OnOwnNode(uint64_t campaign, zk::ZkResult<zk::ExistsReply> result) {
  std::lock_guard lock(mutex_);
  if (!DeliveringLocked(campaign)) return;
  if (result.ok()) {
    if (!result->stat) EndLocked("the election's lock node " + node_ + " was deleted");
    return;
  }
  if (!WaitsForSession(result.error().code)) {
    EndLocked("cannot watch the election's lock node: " + result.error().ToString());
  }
}

void ZooKeeperElection::CheckLocked() {
  live_->GetChildren(options_.lock_path, false,
                     [this, campaign = campaigns_](zk::ZkResult<zk::ChildrenReply> result) {
                       OnChildren(campaign, std::move(result));
                     });
}

void ZooKeeperElection::OnChildren(uint64_t campaign, zk::ZkResult<zk::ChildrenReply> result) {
  std::lock_guard lock(mutex_);
  if (!DeliveringLocked(campaign) || elected_) return;
  if (!result.ok()) {
    if (result.error().code == zk::ZkErrorCode::kNoNode) {
      EndLocked("the election's lock path " + options_.lock_path + " was deleted");
    } else if (!WaitsForSession(result.error().code)) {
      EndLocked("cannot list the election's lock nodes: " + result.error().ToString());
    }
    return;
  }
  std::vector<std::pair<int64_t, std::string>> line;
  for (std::string& name : result->children) {
    const int64_t sequence = LockSequence(name);
    if (sequence >= 0) line.emplace_back(sequence, std::move(name));
  }
  std::sort(line.begin(), line.end());
  const std::string own = NameOf(node_);
  auto it = std::find_if(line.begin(), line.end(),
                         [&](const auto& entry) { return entry.second == own; });
  if (it == line.end()) {
    EndLocked("the election's lock node " + node_ + " was deleted");
    return;
  }
  if (it == line.begin()) {
    elected_ = true;
    predecessor_.clear();
    core::ElectionEvent event;
    event.type = core::ElectionEvent::Type::kElected;
    event.campaign = campaigns_;
    event.fence = core::Fence{node_, node_czxid_};
    Emit(std::move(event));
    return;
  }
  const std::string predecessor = ChildPath(options_.lock_path, std::prev(it)->second);
  if (predecessor != predecessor_) {
    logger_.Debug("standing by: watching the election's next lock node ahead",
                  {{"lock_node", node_}, {"predecessor", predecessor}});
  }
  predecessor_ = predecessor;
  live_->Exists(predecessor_, true,
                [this, campaign, predecessor](zk::ZkResult<zk::ExistsReply> exists) {
                  OnPredecessor(campaign, predecessor, std::move(exists));
                });
}

void ZooKeeperElection::OnPredecessor(uint64_t campaign, const std::string& path,
                                      zk::ZkResult<zk::ExistsReply> result) {
  std::lock_guard lock(mutex_);
  if (!DeliveringLocked(campaign) || elected_ || path != predecessor_) return;
  // Gone before the watch was set: list again. Otherwise its watch event does; an error waits
  // for the reconnection (which lists again) or the session's end.
  if (result.ok() && !result->stat) CheckLocked();
}

void ZooKeeperElection::EndLocked(std::string reason) {
  delivering_ = false;  // kEnded is the campaign's last event
  elected_ = false;
  core::ElectionEvent event;
  event.type = core::ElectionEvent::Type::kEnded;
  event.campaign = campaigns_;
  event.reason = std::move(reason);
  Emit(std::move(event));
}

void ZooKeeperElection::Emit(core::ElectionEvent event) {
  if (on_event_) on_event_(event);
}

}  // namespace zk2etcd::connectors

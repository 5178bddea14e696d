// AsioZkClient: what runs on the network thread (see asio_zk_client_internal.h).
#include <asio.hpp>
#include <chrono>
#include <limits>
#include <string>
#include <utility>

#include "ops/log.h"
#include "zk/asio_zk_client_internal.h"
#include "zk/connect_string.h"
#include "zk/reply_decoders.h"

namespace zk2etcd::zk::detail {

namespace {

using std::chrono::duration_cast;
using std::chrono::milliseconds;

constexpr size_t kReadChunk = 64 * 1024;
constexpr size_t kMaxWriteBatch = 256 * 1024;
constexpr auto kMaxCloseWait = std::chrono::seconds(2);
constexpr int32_t kServerAuthFailed = -115;

int64_t Millis(std::chrono::steady_clock::duration d) {
  return duration_cast<milliseconds>(d).count();
}

}  // namespace

void AsioZkClient::DeliverSessionEvent(SessionEvent event) {
  if (!handlers_.on_session) return;
  Deliver(MakeCompletion(
      [handler = &handlers_.on_session, event = std::move(event)] { (*handler)(event); }));
}

void AsioZkClient::PublishSession() {
  std::lock_guard lock(mutex_);
  switch (session_.phase()) {
    case SessionMachine::Phase::kConnecting:
      info_.state = SessionState::kConnecting;
      break;
    case SessionMachine::Phase::kConnected:
      info_.state = SessionState::kConnected;
      break;
    case SessionMachine::Phase::kExpired:
      info_.state = SessionState::kExpired;
      break;
    case SessionMachine::Phase::kAuthFailed:
      info_.state = SessionState::kAuthFailed;
      break;
    case SessionMachine::Phase::kClosed:
      info_.state = SessionState::kClosed;
      break;
  }
  info_.session_id = session_.session_id();
  info_.negotiated_timeout = session_.has_session() ? session_.timeout() : milliseconds(0);
  info_.server = link_ == Link::kConnected ? current_server_ : std::string();
  info_.last_error = last_error_;
}

void AsioZkClient::DrainSubmissions() {
  std::vector<std::unique_ptr<Request>> batch;
  {
    std::lock_guard lock(mutex_);
    batch.swap(submissions_);
    drain_posted_ = false;
  }
  for (auto& request : batch) pending_.push_back(std::move(request));
  // While a new session's handshake is under way, its reads go behind it (Flush).
  if (link_ == Link::kConnected || link_ == Link::kHandshaking) Flush();
  if (link_ != Link::kConnected && link_ != Link::kDone && link_ != Link::kClosing) {
    ExpireUnsent(clock_.Now());
    ArmTimer();
  }
  FlushDeliveries();
}

void AsioZkClient::ExpireUnsent(SteadyTime now) {
  if (pending_.empty() || now - disconnected_since_ < session_.timeout()) return;
  const std::string why =
      " (no ZooKeeper connection for " + std::to_string(Millis(now - disconnected_since_)) + " ms)";
  while (!pending_.empty()) {
    auto request = std::move(pending_.front());
    pending_.pop_front();
    ZkError error = MakeZkError(ZkErrorCode::kConnectionLoss, request->info.what);
    error.message += why;
    FinishRequest(std::move(request), std::move(error), now);
  }
}

void AsioZkClient::FinishRequest(std::unique_ptr<Request> request, ZkError error, SteadyTime now) {
  request->Fail(std::move(error));
  request->duration = now - request->enqueued;
  Deliver(std::move(request));
}

void AsioZkClient::StartAttempt() {
  if (link_ != Link::kIdle || session_.terminal()) return;
  const ServerAddress& server = hosts_.Next();
  current_server_ = server.ToString();
  link_ = Link::kConnecting;
  const uint64_t generation = ++generation_;
  connect_frame_ = proto::EncodeConnectRequest(session_.BeginAttempt(clock_.Now()));
  if (options_.logger != nullptr) {
    options_.logger->Debug("connecting to zookeeper", {{"server", current_server_}});
  }
  ArmTimer();
  resolver_.async_resolve(
      server.host, std::to_string(server.port),
      [this, generation](const std::error_code& ec, asio::ip::tcp::resolver::results_type results) {
        if (generation != generation_) return;
        if (ec) {
          ConnectionFailed("cannot resolve " + current_server_ + ": " + ec.message());
          FlushDeliveries();
          return;
        }
        asio::async_connect(
            socket_, results,
            [this, generation](const std::error_code& connect_ec, const asio::ip::tcp::endpoint&) {
              if (generation != generation_) return;
              if (connect_ec) {
                ConnectionFailed("cannot connect to " + current_server_ + ": " +
                                 connect_ec.message());
              } else {
                OnTcpConnected();
              }
              FlushDeliveries();
            });
      });
}

void AsioZkClient::OnTcpConnected() {
  std::error_code ignored;
  socket_.set_option(asio::ip::tcp::no_delay(true), ignored);
  link_ = Link::kHandshaking;
  frames_.Reset();
  write_buffer_ = connect_frame_;
  // A new session's reads go in the same segment: the server takes them once the session is set
  // up and answers them right behind the handshake, a round trip sooner.
  if (PipelinesHandshake()) AppendRequests(/*behind_handshake=*/true);
  writing_ = true;
  const uint64_t generation = generation_;
  asio::async_write(
      socket_, asio::buffer(write_buffer_),
      [this, generation](const std::error_code& ec, size_t) { OnWritten(generation, ec); });
  StartRead();
}

void AsioZkClient::StartRead() {
  const std::span<char> space = frames_.Writable(kReadChunk);
  const uint64_t generation = generation_;
  socket_.async_read_some(asio::buffer(space.data(), space.size()),
                          [this, generation](const std::error_code& ec, size_t bytes) {
                            OnRead(generation, ec, bytes);
                          });
}

void AsioZkClient::OnRead(uint64_t generation, const std::error_code& ec, size_t bytes) {
  if (generation != generation_) return;
  if (ec) {
    ConnectionFailed(ec == asio::error::eof
                         ? "server " + current_server_ + " closed the connection"
                         : "read from " + current_server_ + " failed: " + ec.message());
    FlushDeliveries();
    return;
  }
  frames_.Commit(bytes);
  session_.OnReceive(clock_.Now());
  while (generation == generation_) {
    auto next = frames_.Next();
    if (!next.ok()) {
      ConnectionFailed("bad frame from " + current_server_ + ": " + next.error());
      break;
    }
    if (!next->has_value()) break;
    HandleFrame(**next);
  }
  if (generation == generation_) {
    StartRead();
    Flush();
  }
  FlushDeliveries();
}

void AsioZkClient::HandleFrame(std::string_view frame) {
  if (link_ == Link::kHandshaking) {
    HandleHandshake(frame);
  } else {
    HandleReply(frame);
  }
}

void AsioZkClient::HandleHandshake(std::string_view frame) {
  auto response = proto::DecodeConnectResponse(frame);
  if (!response.ok()) {
    ConnectionFailed("bad handshake from " + current_server_ + ": " + response.error());
    return;
  }
  SessionEvent event = session_.OnConnectResponse(*response, clock_.Now(), current_server_);
  if (event.type == SessionEventType::kExpired) {
    if (options_.logger != nullptr) {
      options_.logger->Log(ConnectionLevel(ops::LogLevel::kWarn), "zookeeper session expired",
                           {{"reason", event.reason}});
    }
    Terminate(ZkErrorCode::kSessionExpired, std::move(event));
    return;
  }
  link_ = Link::kConnected;
  hosts_.OnConnected();
  // What went behind the handshake is answered on this connection: no resend, no frame to keep.
  for (auto& request : in_flight_) std::string().swap(request->frame);
  if (options_.logger != nullptr) {
    options_.logger->Log(ConnectionLevel(ops::LogLevel::kInfo),
                         event.type == SessionEventType::kConnected
                             ? "zookeeper session established"
                             : "zookeeper session reconnected",
                         {{"server", current_server_},
                          {"session_id", FormatSessionId(session_.session_id())},
                          {"timeout_ms", static_cast<int64_t>(session_.timeout().count())},
                          {"failed_attempts", failed_attempts_}});
  }
  if (options_.outage_warned) options_.outage_warned->store(false);
  failed_attempts_ = 0;
  const bool reconnected = event.type == SessionEventType::kReconnected;
  DeliverSessionEvent(std::move(event));
  // Credentials first, then the watches, then the waiting requests.
  for (auto& entry : auth_) SendAuth(entry);
  if (reconnected && !watches_.empty()) {
    const auto chunks = proto::ChunkSetWatches(watches_.Snapshot(session_.last_zxid()),
                                               options_.set_watches_max_bytes);
    for (const auto& chunk : chunks) {
      proto::RequestFrame request(proto::kSetWatchesXid, proto::OpCode::kSetWatches2);
      proto::WriteSetWatches2(request.writer(), chunk);
      control_out_.push_back(std::move(request).Finish());
    }
    if (options_.logger != nullptr) {
      options_.logger->Info("re-registering zookeeper watches",
                            {{"watches", watches_.size()}, {"frames", chunks.size()}});
    }
  }
  PublishSession();
  ArmTimer();
}

void AsioZkClient::HandleReply(std::string_view frame) {
  JuteReader reader(frame);
  proto::ReplyHeader header;
  if (!proto::ReadReplyHeader(reader, &header)) {
    ConnectionFailed("malformed reply header from " + current_server_ + ": " + reader.error());
    return;
  }
  switch (header.xid) {
    case proto::kNotificationXid:
      HandleNotification(reader);
      return;
    case proto::kPingXid:
      return;
    case proto::kAuthXid:
      HandleAuthReply(header);
      return;
    case proto::kSetWatchesXid:
      if (header.err != 0 && options_.logger != nullptr) {
        options_.logger->Warn("zookeeper rejected re-registering watches",
                              {{"error", ZkErrorLabel(ZkErrorCodeFromServer(header.err))}});
      }
      return;
    default:
      break;
  }
  if (in_flight_.empty() || in_flight_.front()->xid != header.xid) {
    ConnectionFailed("reply with xid " + std::to_string(header.xid) + " from " + current_server_ +
                     " does not match the oldest request (" +
                     (in_flight_.empty() ? std::string("none")
                                         : "xid " + std::to_string(in_flight_.front()->xid)) +
                     ")");
    return;
  }
  std::unique_ptr<Request> request = std::move(in_flight_.front());
  in_flight_.pop_front();
  if (request->counts_in_window) --window_used_;
  if (header.zxid > 0) session_.OnZxid(header.zxid);
  const SteadyTime now = clock_.Now();
  const ReplyOutcome outcome = request->Decode(header, reader);
  if (outcome == ReplyOutcome::kMalformed) {
    const std::string why = "malformed reply to " + request->info.what + " from " +
                            current_server_ + ": " + reader.error();
    FinishRequest(std::move(request), ZkError{ZkErrorCode::kMarshalling, why, header.zxid}, now);
    ConnectionFailed(why);
    return;
  }
  if (outcome == ReplyOutcome::kSuccess) {
    if (request->watch_on_success != WatchKind::kNone) {
      watches_.Add(request->watch_on_success, request->server_path);
    }
    if (request->remove_on_success) {
      watches_.Remove(*request->remove_on_success, request->server_path);
    }
  } else if (outcome == ReplyOutcome::kNoNode && request->watch_on_no_node != WatchKind::kNone) {
    watches_.Add(request->watch_on_no_node, request->server_path);
  }
  request->duration = now - request->enqueued;
  const bool is_close = request->is_close;
  Deliver(std::move(request));
  if (is_close) FinishClose();
}

void AsioZkClient::HandleNotification(JuteReader& reader) {
  proto::WatcherEventRecord record;
  if (!proto::ReadWatcherEvent(reader, &record)) {
    ConnectionFailed("malformed watch event from " + current_server_ + ": " + reader.error());
    return;
  }
  if (record.type < static_cast<int32_t>(WatchEventType::kNodeCreated) ||
      record.type > static_cast<int32_t>(WatchEventType::kNodeChildrenChanged)) {
    if (options_.logger != nullptr) {
      options_.logger->Debug("ignoring zookeeper notification", {{"type", record.type}});
    }
    return;
  }
  const auto type = static_cast<WatchEventType>(record.type);
  watches_.OnEvent(type, record.path);
  if (!handlers_.on_watch) return;
  WatchEvent event{type, static_cast<KeeperState>(record.state),
                   ClientPath(connect_.chroot, record.path)};
  Deliver(MakeCompletion(
      [handler = &handlers_.on_watch, event = std::move(event)] { (*handler)(event); }));
}

void AsioZkClient::QueueAuth(std::string scheme, std::string credential, ZkCallback<Ack> done) {
  if (link_ == Link::kDone || link_ == Link::kClosing) {
    const ZkErrorCode code = terminal_code_value_;
    Deliver(MakeCompletion(
        [done = std::move(done), code] { done(Unexpected{MakeZkError(code, "auth")}); }));
    return;
  }
  AuthEntry* entry = nullptr;
  for (auto& existing : auth_) {
    if (existing.scheme == scheme && existing.credential == credential) entry = &existing;
  }
  if (entry == nullptr) {
    auth_.push_back(AuthEntry{std::move(scheme), std::move(credential), {}});
    entry = &auth_.back();
  }
  entry->waiting.push_back(std::move(done));
  if (link_ == Link::kConnected) SendAuth(*entry);
}

void AsioZkClient::SendAuth(AuthEntry& entry) {
  proto::RequestFrame frame(proto::kAuthXid, proto::OpCode::kAuth);
  proto::WriteAuthPacket(frame.writer(), entry.scheme, entry.credential);
  control_out_.push_back(std::move(frame).Finish());
  auth_in_flight_.push_back(std::move(entry.waiting));
  entry.waiting.clear();
}

void AsioZkClient::HandleAuthReply(const proto::ReplyHeader& header) {
  std::vector<ZkCallback<Ack>> callbacks;
  if (!auth_in_flight_.empty()) {
    callbacks = std::move(auth_in_flight_.front());
    auth_in_flight_.pop_front();
  }
  if (header.err == kServerAuthFailed) {
    for (auto& done : callbacks) {
      Deliver(MakeCompletion([done = std::move(done)] {
        done(Unexpected{MakeZkError(ZkErrorCode::kAuthFailed, "auth")});
      }));
    }
    SessionEvent event;
    event.type = SessionEventType::kAuthFailed;
    event.session_id = session_.session_id();
    event.server = current_server_;
    event.reason = "server " + current_server_ + " rejected the credentials";
    if (options_.logger != nullptr) {
      options_.logger->Error("zookeeper authentication failed", {{"server", current_server_}});
    }
    session_.MarkAuthFailed();
    Terminate(ZkErrorCode::kAuthFailed, std::move(event));
    return;
  }
  for (auto& done : callbacks) {
    ZkResult<Ack> result = header.err == 0
                               ? ZkResult<Ack>(Ack{header.zxid})
                               : ZkResult<Ack>(Unexpected{MakeZkError(
                                     ZkErrorCodeFromServer(header.err), "auth", header.zxid)});
    Deliver(MakeCompletion([done = std::move(done), result = std::move(result)]() mutable {
      done(std::move(result));
    }));
  }
}

void AsioZkClient::SendPing() {
  proto::RequestFrame frame(proto::kPingXid, proto::OpCode::kPing);
  control_out_.push_back(std::move(frame).Finish());
  session_.OnPingSent(clock_.Now());
}

int32_t AsioZkClient::NextXid() {
  const int32_t xid = next_xid_;
  next_xid_ = next_xid_ == std::numeric_limits<int32_t>::max() ? 1 : next_xid_ + 1;
  return xid;
}

bool AsioZkClient::PipelinesHandshake() const {
  return !session_.has_session() && auth_.empty() && !credentials_added_.load();
}

void AsioZkClient::Flush() {
  if (writing_) return;
  // Behind a new session's unanswered handshake, only replayable requests go (a server that
  // ends the connection before answering it may or may not have run them).
  const bool behind_handshake = link_ == Link::kHandshaking && PipelinesHandshake();
  if (link_ != Link::kConnected && link_ != Link::kClosing && !behind_handshake) return;
  write_buffer_.clear();
  while (!control_out_.empty()) {
    write_buffer_ += control_out_.front();
    control_out_.pop_front();
  }
  AppendRequests(behind_handshake);
  if (write_buffer_.empty()) return;
  writing_ = true;
  session_.OnSend(clock_.Now());
  const uint64_t generation = generation_;
  asio::async_write(
      socket_, asio::buffer(write_buffer_),
      [this, generation](const std::error_code& ec, size_t) { OnWritten(generation, ec); });
}

void AsioZkClient::AppendRequests(bool behind_handshake) {
  while (!pending_.empty() && write_buffer_.size() < kMaxWriteBatch) {
    Request& request = *pending_.front();
    if (request.counts_in_window && window_used_ >= options_.max_in_flight) break;
    if (behind_handshake && !request.replayable) break;  // it and what follows wait: order holds
    request.xid = NextXid();
    proto::PatchXid(request.frame, request.xid);
    write_buffer_ += request.frame;
    // Kept until the handshake is answered: it goes again if the connection ends before.
    if (!behind_handshake) std::string().swap(request.frame);
    if (request.counts_in_window) ++window_used_;
    in_flight_.push_back(std::move(pending_.front()));
    pending_.pop_front();
  }
}

void AsioZkClient::RequeueUnanswered() {
  while (!in_flight_.empty()) {
    std::unique_ptr<Request> request = std::move(in_flight_.back());
    in_flight_.pop_back();
    if (request->counts_in_window) --window_used_;
    pending_.push_front(std::move(request));
  }
}

void AsioZkClient::OnWritten(uint64_t generation, const std::error_code& ec) {
  if (generation != generation_) return;
  writing_ = false;
  if (ec) {
    ConnectionFailed("write to " + current_server_ + " failed: " + ec.message());
  } else {
    Flush();
  }
  FlushDeliveries();
}

void AsioZkClient::TearDownConnection() {
  ++generation_;
  std::error_code ignored;
  resolver_.cancel();
  socket_.close(ignored);
  writing_ = false;
  write_buffer_.clear();
  control_out_.clear();
  frames_.Reset();
}

void AsioZkClient::FailInFlight(ZkErrorCode code, const std::string& suffix, SteadyTime now) {
  while (!in_flight_.empty()) {
    auto request = std::move(in_flight_.front());
    in_flight_.pop_front();
    if (request->counts_in_window) --window_used_;
    ZkError error = MakeZkError(code, request->info.what);
    error.message += suffix;
    FinishRequest(std::move(request), std::move(error), now);
  }
  for (auto& callbacks : auth_in_flight_) {
    for (auto& done : callbacks) {
      Deliver(MakeCompletion(
          [done = std::move(done), code] { done(Unexpected{MakeZkError(code, "auth")}); }));
    }
  }
  auth_in_flight_.clear();
}

void AsioZkClient::ConnectionFailed(std::string reason, bool timed_out) {
  if (link_ == Link::kDone) return;
  if (link_ == Link::kClosing) {
    FinishClose();
    return;
  }
  const SteadyTime now = clock_.Now();
  const bool was_connected = link_ == Link::kConnected;
  // Before a handshake is answered, only replayable requests were sent (Flush).
  if (link_ == Link::kHandshaking) RequeueUnanswered();
  TearDownConnection();
  last_error_ = reason;
  FailInFlight(ZkErrorCode::kConnectionLoss, " (" + reason + ")", now);
  if (was_connected) {
    disconnected_since_ = now;
    if (options_.logger != nullptr) {
      options_.logger->Log(ConnectionLevel(ops::LogLevel::kWarn), "zookeeper connection lost",
                           {{"server", current_server_}, {"reason", reason}});
    }
    DeliverSessionEvent(session_.OnConnectionLost(now, current_server_, reason));
  } else {
    ++failed_attempts_;
    if (options_.logger != nullptr) {
      // The first of an outage; the next ones (the servers tried in turn, with backoff) are debug
      // lines until a handshake succeeds ("failed_attempts" on its line). The first is a debug
      // line too when another session of the ensemble has warned of this outage.
      ops::LogLevel level = ops::LogLevel::kDebug;
      if (failed_attempts_ == 1) {
        level = ConnectionLevel(ops::LogLevel::kWarn);
        if (level == ops::LogLevel::kWarn && options_.outage_warned &&
            options_.outage_warned->exchange(true)) {
          level = ops::LogLevel::kDebug;
        }
      }
      options_.logger->Log(
          level,
          failed_attempts_ == 1 ? "zookeeper connection attempt failed"
                                : "zookeeper connection attempt failed again",
          {{"server", current_server_}, {"reason", reason}, {"attempt", failed_attempts_}});
    }
    session_.OnAttemptFailed(timed_out);
    hosts_.OnAttemptFailed();
  }
  link_ = Link::kIdle;
  PublishSession();
  ScheduleRetry();
  ArmTimer();
}

void AsioZkClient::ScheduleRetry() {
  milliseconds delay(0);
  if (hosts_.RoundFailed() && options_.max_reconnect_delay.count() > 0) {
    delay = milliseconds(static_cast<int64_t>(
        random_() % static_cast<uint64_t>(options_.max_reconnect_delay.count())));
  }
  retry_timer_.expires_after(delay);
  const uint64_t generation = generation_;
  retry_timer_.async_wait([this, generation](const std::error_code& ec) {
    if (ec || generation != generation_) return;
    StartAttempt();
    FlushDeliveries();
  });
}

void AsioZkClient::ArmTimer() {
  if (link_ == Link::kDone) return;
  const SteadyTime now = clock_.Now();
  SteadyTime deadline = session_.NextDeadline(now);
  if (link_ != Link::kConnected && !pending_.empty()) {
    deadline = std::min(deadline, disconnected_since_ + session_.timeout());
  }
  session_timer_.expires_after(
      std::max(deadline - now, std::chrono::steady_clock::duration(std::chrono::milliseconds(1))));
  session_timer_.async_wait([this](const std::error_code& ec) {
    if (ec) return;
    OnTimer();
    FlushDeliveries();
  });
}

void AsioZkClient::OnTimer() {
  if (link_ == Link::kDone) return;
  const SteadyTime now = clock_.Now();
  switch (session_.Poll(now)) {
    case SessionMachine::Action::kNone:
      break;
    case SessionMachine::Action::kSendPing:
      if (link_ == Link::kConnected) {
        SendPing();
        Flush();
      }
      break;
    case SessionMachine::Action::kConnectionDead:
      ConnectionFailed("no answer from " + current_server_ + " for " +
                       std::to_string(Millis(session_.read_timeout())) +
                       " ms (two thirds of the session timeout)");
      break;
    case SessionMachine::Action::kConnectTimeout:
      ConnectionFailed("connection attempt to " + current_server_ + " timed out after " +
                           std::to_string(Millis(session_.connect_timeout())) + " ms",
                       /*timed_out=*/true);
      break;
    case SessionMachine::Action::kExpire: {
      SessionEvent event =
          session_.Expire("no ZooKeeper server answered for the session timeout of " +
                          std::to_string(session_.timeout().count()) + " ms");
      if (options_.logger != nullptr) {
        options_.logger->Log(ConnectionLevel(ops::LogLevel::kWarn), "zookeeper session expired",
                             {{"reason", event.reason}});
      }
      Terminate(ZkErrorCode::kSessionExpired, std::move(event));
      return;
    }
  }
  if (link_ != Link::kConnected && link_ != Link::kDone && link_ != Link::kClosing) {
    ExpireUnsent(now);
  }
  ArmTimer();
}

void AsioZkClient::Terminate(ZkErrorCode code, SessionEvent event) {
  if (link_ == Link::kDone) return;
  const SteadyTime now = clock_.Now();
  TearDownConnection();
  link_ = Link::kDone;
  terminal_code_value_ = code;
  std::error_code ignored;
  session_timer_.cancel();
  retry_timer_.cancel();
  close_timer_.cancel();
  std::vector<std::unique_ptr<Request>> submitted;
  {
    std::lock_guard lock(mutex_);
    terminal_code_ = code;
    submitted.swap(submissions_);
  }
  if (!event.reason.empty()) last_error_ = event.reason;
  FailInFlight(code, "", now);
  for (auto& request : submitted) pending_.push_back(std::move(request));
  while (!pending_.empty()) {
    auto request = std::move(pending_.front());
    pending_.pop_front();
    ZkError error = MakeZkError(code, request->info.what);
    FinishRequest(std::move(request), std::move(error), now);
  }
  for (auto& entry : auth_) {
    for (auto& done : entry.waiting) {
      Deliver(MakeCompletion(
          [done = std::move(done), code] { done(Unexpected{MakeZkError(code, "auth")}); }));
    }
    entry.waiting.clear();
  }
  DeliverSessionEvent(std::move(event));
  PublishSession();
}

void AsioZkClient::BeginClose(std::shared_ptr<std::promise<void>> promise) {
  close_promise_ = std::move(promise);
  if (link_ != Link::kConnected) {
    FinishClose();
    FlushDeliveries();
    return;
  }
  // Unsent requests fail; those in flight get their answers before the close's.
  const SteadyTime now = clock_.Now();
  {
    std::lock_guard lock(mutex_);
    terminal_code_ = ZkErrorCode::kClosed;
    for (auto& request : submissions_) pending_.push_back(std::move(request));
    submissions_.clear();
  }
  terminal_code_value_ = ZkErrorCode::kClosed;
  while (!pending_.empty()) {
    auto request = std::move(pending_.front());
    pending_.pop_front();
    ZkError error = MakeZkError(ZkErrorCode::kClosed, request->info.what);
    FinishRequest(std::move(request), std::move(error), now);
  }
  auto request = NewRequest<Ack>(DecodeAck, nullptr, op_names::kClose, "session");
  Encode(*request, proto::OpCode::kCloseSession, [](JuteWriter&) {});
  request->is_close = true;
  request->counts_in_window = false;
  pending_.push_back(std::move(request));
  link_ = Link::kClosing;
  Flush();
  close_timer_.expires_after(
      std::min<std::chrono::steady_clock::duration>(kMaxCloseWait, session_.read_timeout()));
  close_timer_.async_wait([this](const std::error_code& ec) {
    if (ec) return;
    FinishClose();
    FlushDeliveries();
  });
  FlushDeliveries();
}

void AsioZkClient::FinishClose() {
  if (link_ != Link::kDone) {
    session_.MarkClosed();
    SessionEvent event;
    event.type = SessionEventType::kClosed;
    event.session_id = session_.session_id();
    Terminate(ZkErrorCode::kClosed, std::move(event));
  } else if (!closed_event_sent_ && close_promise_) {
    // Finished earlier (expired, auth failed): Close still ends with kClosed.
    SessionEvent event;
    event.type = SessionEventType::kClosed;
    event.session_id = session_.session_id();
    session_.MarkClosed();
    PublishSession();
    DeliverSessionEvent(std::move(event));
  }
  if (!close_promise_) return;
  closed_event_sent_ = true;
  {
    std::lock_guard lock(mutex_);
    terminal_code_ = ZkErrorCode::kClosed;
    info_.state = SessionState::kClosed;
  }
  FlushDeliveries();
  work_.reset();
  close_promise_->set_value();
  close_promise_.reset();
}

}  // namespace zk2etcd::zk::detail

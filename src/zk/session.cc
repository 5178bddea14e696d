#include "zk/session.h"

#include <algorithm>
#include <cstdio>

#include "common/backoff.h"

namespace zk2etcd::zk {

std::string FormatSessionId(int64_t session_id) {
  char hex[24];
  std::snprintf(hex, sizeof(hex), "0x%llx", static_cast<unsigned long long>(session_id));
  return hex;
}

HostList::HostList(std::vector<ServerAddress> servers, const std::function<uint64_t()>& random)
    : servers_(std::move(servers)) {
  // Forward Fisher-Yates: position i takes one of the remaining servers, so a source of zeros
  // keeps the order (tests use that to choose which server is tried first).
  for (size_t i = 0; i + 1 < servers_.size(); ++i) {
    const size_t j = i + static_cast<size_t>(random() % (servers_.size() - i));
    std::swap(servers_[i], servers_[j]);
  }
}

const ServerAddress& HostList::Next() {
  const ServerAddress& server = servers_[next_];
  next_ = (next_ + 1) % servers_.size();
  return server;
}

SessionMachine::SessionMachine(Config config) : config_(config) {
  if (config_.server_count == 0) config_.server_count = 1;
}

std::chrono::milliseconds SessionMachine::timeout() const {
  return has_session() ? negotiated_timeout_ : config_.requested_timeout;
}

SessionMachine::Duration SessionMachine::connect_timeout() const {
  if (config_.connect_timeout.count() > 0) return config_.connect_timeout;
  // Whole milliseconds, as the timeout is.
  const std::chrono::milliseconds cap =
      std::min(timeout() / static_cast<int64_t>(config_.server_count),
               std::chrono::duration_cast<std::chrono::milliseconds>(read_timeout()));
  const std::chrono::milliseconds first =
      std::min<std::chrono::milliseconds>(std::chrono::seconds(2), timeout() / 3);
  // Doubles after each attempt that timed out, without jitter.
  const BackoffOptions backoff{.initial = first, .max = std::max(cap, first), .multiplier = 2.0};
  return BackoffDelay(backoff, timed_out_attempts_ + 1, 0.0);
}

proto::ConnectRequest SessionMachine::BeginAttempt(TimePoint now) {
  attempt_active_ = true;
  attempt_started_ = now;
  proto::ConnectRequest request;
  request.protocol_version = 0;
  request.last_zxid_seen = last_zxid_;
  request.timeout_ms = static_cast<int32_t>(config_.requested_timeout.count());
  request.session_id = session_id_;
  request.password = password_.empty() ? std::string(16, '\0') : password_;
  return request;
}

void SessionMachine::OnAttemptFailed(bool timed_out) {
  attempt_active_ = false;
  if (timed_out) ++timed_out_attempts_;
}

SessionEvent SessionMachine::OnConnectResponse(const proto::ConnectResponse& response,
                                               TimePoint now, const std::string& server) {
  attempt_active_ = false;
  SessionEvent event;
  event.server = server;
  if (response.timeout_ms <= 0) {
    event = Expire("server " + server + " reports that session " + FormatSessionId(session_id_) +
                   " has expired");
    event.server = server;
    return event;
  }
  if (has_session() && response.session_id != session_id_) {
    event = Expire("server " + server + " answered with another session id");
    event.server = server;
    return event;
  }
  const bool reconnect = has_session();
  timed_out_attempts_ = 0;
  session_id_ = response.session_id;
  password_ = response.password;
  negotiated_timeout_ = std::chrono::milliseconds(response.timeout_ms);
  phase_ = Phase::kConnected;
  last_send_ = last_receive_ = last_ping_ = now;
  event.type = reconnect ? SessionEventType::kReconnected : SessionEventType::kConnected;
  event.session_id = session_id_;
  event.negotiated_timeout = negotiated_timeout_;
  return event;
}

SessionEvent SessionMachine::OnConnectionLost(TimePoint /*now*/, const std::string& server,
                                              std::string reason) {
  phase_ = Phase::kConnecting;
  attempt_active_ = false;
  SessionEvent event;
  event.type = SessionEventType::kDisconnected;
  event.session_id = session_id_;
  event.server = server;
  event.negotiated_timeout = negotiated_timeout_;
  event.reason = std::move(reason);
  return event;
}

SessionEvent SessionMachine::Expire(std::string reason) {
  phase_ = Phase::kExpired;
  attempt_active_ = false;
  SessionEvent event;
  event.type = SessionEventType::kExpired;
  event.session_id = session_id_;
  event.negotiated_timeout = negotiated_timeout_;
  event.reason = std::move(reason);
  return event;
}

SessionMachine::Action SessionMachine::Poll(TimePoint now) const {
  switch (phase_) {
    case Phase::kConnected: {
      if (now - last_receive_ >= read_timeout()) return Action::kConnectionDead;
      const Duration interval = ping_interval();
      if (now - last_send_ >= interval ||
          (now - last_receive_ >= interval && now - last_ping_ >= interval)) {
        return Action::kSendPing;
      }
      return Action::kNone;
    }
    case Phase::kConnecting:
      if (config_.local_expiry && has_session() && now - last_receive_ >= negotiated_timeout_) {
        return Action::kExpire;
      }
      if (attempt_active_ && now - attempt_started_ >= connect_timeout()) {
        return Action::kConnectTimeout;
      }
      return Action::kNone;
    default:
      return Action::kNone;
  }
}

SessionMachine::TimePoint SessionMachine::NextDeadline(TimePoint now) const {
  TimePoint deadline = now + std::chrono::hours(1);
  switch (phase_) {
    case Phase::kConnected: {
      deadline = std::min(deadline, last_receive_ + read_timeout());
      deadline = std::min(deadline, last_send_ + ping_interval());
      deadline = std::min(deadline, std::max(last_receive_, last_ping_) + ping_interval());
      break;
    }
    case Phase::kConnecting:
      if (config_.local_expiry && has_session()) {
        deadline = std::min(deadline, last_receive_ + negotiated_timeout_);
      }
      if (attempt_active_) deadline = std::min(deadline, attempt_started_ + connect_timeout());
      break;
    default:
      break;
  }
  return std::max(deadline, now);
}

}  // namespace zk2etcd::zk

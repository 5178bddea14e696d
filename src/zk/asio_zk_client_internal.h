// AsioZkClient, the ZkClient behind NewAsioZkClient (see asio_zk_client.h for what it does),
// declared here for its two implementation files: asio_zk_client.cc (construction and the calls
// made on any thread) and asio_zk_client_network.cc (what runs on the network thread: the
// connection, frames and replies, the session's timers, authentication, closing). Internal to the
// ZooKeeper client.
//
// Thread-safety: thread-safe (see ZkClient): the public methods may be called on any thread; the
// members marked "Network thread only" are used on the io_context's thread only, those under
// mutex_ are shared with callers.
#pragma once

#include <asio.hpp>
#include <atomic>
#include <cstdint>
#include <deque>
#include <functional>
#include <future>
#include <memory>
#include <mutex>
#include <optional>
#include <string>
#include <string_view>
#include <thread>
#include <vector>

#include "common/clock.h"
#include "zk/asio_zk_client.h"
#include "zk/connect_string.h"
#include "zk/delivery_queue.h"
#include "zk/jute.h"
#include "zk/protocol.h"
#include "zk/request.h"
#include "zk/session.h"
#include "zk/watch_registry.h"
#include "zk/zk_client.h"

namespace zk2etcd::zk::detail {

// The production ZkClient (see asio_zk_client.h).
class AsioZkClient final : public ZkClient {
 public:
  AsioZkClient(ZkClientOptions options, ConnectString connect, ZkEventHandlers handlers);
  ~AsioZkClient() override { Close(); }

  void Start();

  // --- ZkClient -----------------------------------------------------------------------------

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

 private:
  struct AuthEntry {
    std::string scheme;
    std::string credential;
    std::vector<ZkCallback<Ack>> waiting;  // AddAuth callbacks for the next send
  };
  enum class Link { kIdle, kConnecting, kHandshaking, kConnected, kClosing, kDone };

  static std::function<uint64_t()> DefaultRandom();

  // --- Any thread ---------------------------------------------------------------------------

  template <typename T>
  std::unique_ptr<TypedRequest<T>> NewRequest(DecodeFn<T> decode, ZkCallback<T> done,
                                              std::string_view op_name, std::string_view path) {
    auto request =
        std::make_unique<TypedRequest<T>>(decode, std::move(done), op_name, options_.observer);
    request->info.what = Describe(op_name, path);
    request->info.chroot = connect_.chroot;
    request->enqueued = clock_.Now();
    return request;
  }

  template <typename Body>
  void Encode(Request& request, proto::OpCode op, Body&& body) {
    proto::RequestFrame frame(0, op);
    body(frame.writer());
    request.frame = std::move(frame).Finish();
    request.replayable = proto::ReplayableOp(op);
  }

  static void SetWatch(Request& request, const std::string& server_path, WatchKind on_success,
                       WatchKind on_no_node);

  // Fails `request` (through the delivery thread, taking it) when `path` is invalid.
  template <typename R>
  bool CheckPath(std::unique_ptr<R>& request, std::string_view path, bool sequential) {
    auto reason = InvalidPathReason(path, sequential);
    if (!reason) return true;
    request->Fail(ZkError{
        ZkErrorCode::kInvalidArgument,
        request->info.what + ": invalid path \"" + std::string(path) + "\": " + *reason, -1});
    DeliverFromCaller(std::move(request));
    return false;
  }

  void Submit(std::unique_ptr<Request> request);
  void DeliverFromCaller(std::unique_ptr<Completion> completion);
  void FallbackMultiRead(std::vector<ReadOp> ops, ZkCallback<MultiReadReply> done);

  // --- Network thread -----------------------------------------------------------------------

  void Deliver(std::unique_ptr<Completion> completion) {
    deliveries_.push_back(std::move(completion));
  }

  void FlushDeliveries() {
    if (!deliveries_.empty()) delivery_.PushAll(deliveries_);
  }

  void DeliverSessionEvent(SessionEvent event);
  void PublishSession();
  // The level of a connection line: `level`, or debug for a session beside another
  // (ZkClientOptions::beside_another_session).
  ops::LogLevel ConnectionLevel(ops::LogLevel level) const {
    return options_.beside_another_session ? ops::LogLevel::kDebug : level;
  }
  void DrainSubmissions();

  // Requests that wait for a connection fail once no server was reachable for a whole session
  // timeout: the caller learns of the outage instead of waiting without end.
  void ExpireUnsent(SteadyTime now);

  void FinishRequest(std::unique_ptr<Request> request, ZkError error, SteadyTime now);
  void StartAttempt();
  void OnTcpConnected();
  void StartRead();
  void OnRead(uint64_t generation, const std::error_code& ec, size_t bytes);
  void HandleFrame(std::string_view frame);
  void HandleHandshake(std::string_view frame);
  void HandleReply(std::string_view frame);
  void HandleNotification(JuteReader& reader);
  void QueueAuth(std::string scheme, std::string credential, ZkCallback<Ack> done);
  void SendAuth(AuthEntry& entry);
  void HandleAuthReply(const proto::ReplyHeader& header);
  void SendPing();
  int32_t NextXid();
  // Whether requests may go behind this connection's ConnectRequest: a new session (no session
  // to resume) without credentials (they must precede every request asked for after them).
  bool PipelinesHandshake() const;
  void Flush();
  // Moves what may be sent now from pending_ to in_flight_, appending it to write_buffer_.
  void AppendRequests(bool behind_handshake);
  // The requests sent behind a ConnectRequest that was never answered go back to the front of
  // pending_, in order, for the next connection.
  void RequeueUnanswered();
  void OnWritten(uint64_t generation, const std::error_code& ec);
  void TearDownConnection();
  void FailInFlight(ZkErrorCode code, const std::string& suffix, SteadyTime now);

  // The current connection or connection attempt ended; try the next server.
  void ConnectionFailed(std::string reason, bool timed_out = false);

  void ScheduleRetry();
  void ArmTimer();
  void OnTimer();

  // The client is finished: fail everything with `code` and deliver `event`.
  void Terminate(ZkErrorCode code, SessionEvent event);

  void BeginClose(std::shared_ptr<std::promise<void>> promise);
  void FinishClose();

  // Configuration and injected dependencies.
  ZkClientOptions options_;
  SystemClock system_clock_;
  const Clock& clock_;
  std::function<uint64_t()> random_;
  const ConnectString connect_;
  const ZkEventHandlers handlers_;
  std::atomic<bool> multi_read_unsupported_{false};
  std::atomic<bool> credentials_added_{false};  // AddAuth was called

  // Shared with callers, under mutex_.
  mutable std::mutex mutex_;
  std::vector<std::unique_ptr<Request>> submissions_;
  bool drain_posted_ = false;
  std::optional<ZkErrorCode> terminal_code_;
  SessionInfo info_;
  std::shared_future<void> close_future_;
  std::mutex join_mutex_;

  // Network thread only.
  asio::io_context io_{1};
  asio::executor_work_guard<asio::io_context::executor_type> work_;
  asio::ip::tcp::resolver resolver_;
  asio::ip::tcp::socket socket_;
  asio::steady_timer session_timer_;
  asio::steady_timer retry_timer_;
  asio::steady_timer close_timer_;
  HostList hosts_;
  SessionMachine session_;
  WatchRegistry watches_;
  proto::FrameReader frames_;
  Link link_ = Link::kIdle;
  uint64_t generation_ = 0;
  std::string current_server_;
  std::string last_error_;
  std::string connect_frame_;
  SteadyTime disconnected_since_{};
  // Connection attempts that failed since the last handshake: the first is a warning, the rest
  // debug lines, so that an outage is not a warning every few hundred milliseconds.
  int64_t failed_attempts_ = 0;
  std::deque<std::unique_ptr<Request>> pending_;    // waiting to be sent, in order
  std::deque<std::unique_ptr<Request>> in_flight_;  // sent, answered in this order
  size_t window_used_ = 0;
  std::vector<AuthEntry> auth_;
  std::deque<std::vector<ZkCallback<Ack>>> auth_in_flight_;
  std::deque<std::string> control_out_;  // auth, SetWatches2, ping: sent before requests
  std::string write_buffer_;
  bool writing_ = false;
  int32_t next_xid_ = 1;
  ZkErrorCode terminal_code_value_ = ZkErrorCode::kClosed;
  std::vector<std::unique_ptr<Completion>> deliveries_;
  std::shared_ptr<std::promise<void>> close_promise_;
  bool closed_event_sent_ = false;

  // Threads last: they start after everything above exists and stop before it goes.
  DeliveryQueue delivery_;
  std::thread io_thread_;
};

}  // namespace zk2etcd::zk::detail

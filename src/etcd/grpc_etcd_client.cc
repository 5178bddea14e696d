#include "etcd/grpc_etcd_client.h"

#include <grpcpp/grpcpp.h>

#include <algorithm>
#include <climits>
#include <fstream>
#include <future>
#include <sstream>
#include <system_error>
#include <thread>

#include "etcd/etcdserver/api/v3election/v3electionpb/v3election.grpc.pb.h"
#include "etcd/etcdserver/etcdserverpb/rpc.grpc.pb.h"
#include "etcd/grpc_convert.h"
#include "etcd/grpc_etcd_client_internal.h"
#include "etcd/keep_alive_stream.h"
#include "etcd/observe_stream.h"
#include "etcd/unary_call.h"
#include "etcd/watch_stream.h"
#include "ops/log.h"

namespace zk2etcd::etcd {
namespace detail {
namespace {

Result<std::string, std::string> ReadWholeFile(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  if (!in) return Unexpected<std::string>{"cannot read " + path};
  std::stringstream buffer;
  buffer << in.rdbuf();
  return buffer.str();
}

ArenaTxnRequest NewArenaTxnRequest() {
  google::protobuf::ArenaOptions options;
  options.start_block_size = 16 * 1024;
  options.max_block_size = 256 * 1024;
  ArenaTxnRequest request;
  request.arena = std::make_unique<google::protobuf::Arena>(options);
  request.message = google::protobuf::Arena::CreateMessage<pb::TxnRequest>(request.arena.get());
  return request;
}

}  // namespace

void PostedTask::Proceed(bool /*ok*/) {
  task_();
  client_->Unregister(this);
  delete this;
}

// ---------------------------------------------------------------------------------------------
// GrpcEtcdClient

EtcdResult<void> GrpcEtcdClient::Init() {
  if (options_.endpoints.empty()) {
    return MakeError(ErrorCode::kInvalidArgument, "no etcd endpoints given");
  }
  bool any_https = false;
  bool any_http = false;
  std::vector<std::string> targets;
  for (const std::string& endpoint : options_.endpoints) {
    std::string target = endpoint;
    if (target.rfind("https://", 0) == 0) {
      any_https = true;
      target.erase(0, 8);
    } else if (target.rfind("http://", 0) == 0) {
      any_http = true;
      target.erase(0, 7);
    }
    while (!target.empty() && target.back() == '/') target.pop_back();
    if (target.empty()) {
      return MakeError(ErrorCode::kInvalidArgument, "empty etcd endpoint in the list");
    }
    targets.push_back(std::move(target));
  }
  if (any_https && any_http) {
    return MakeError(ErrorCode::kInvalidArgument,
                     "etcd endpoints mix http:// and https://; use one scheme");
  }
  std::shared_ptr<grpc::ChannelCredentials> credentials;
  grpc::ChannelArguments arguments;
  if (options_.tls || any_https) {
    grpc::SslCredentialsOptions ssl;
    const TlsOptions tls = options_.tls.value_or(TlsOptions{});
    if (tls.cert_file.empty() != tls.key_file.empty()) {
      return MakeError(ErrorCode::kInvalidArgument,
                       "a TLS client certificate needs its key, and a key its certificate");
    }
    for (auto [path, field] : {std::pair{&tls.ca_file, &ssl.pem_root_certs},
                               std::pair{&tls.cert_file, &ssl.pem_cert_chain},
                               std::pair{&tls.key_file, &ssl.pem_private_key}}) {
      if (path->empty()) continue;
      auto contents = ReadWholeFile(*path);
      if (!contents.ok()) return MakeError(ErrorCode::kInvalidArgument, contents.error());
      *field = std::move(contents).value();
    }
    credentials = grpc::SslCredentials(ssl);
    tls_ = true;
    if (!tls.server_name_override.empty()) {
      arguments.SetSslTargetNameOverride(tls.server_name_override);
    }
  } else {
    credentials = grpc::InsecureChannelCredentials();
  }
  arguments.SetMaxReceiveMessageSize(INT_MAX);
  arguments.SetInt(GRPC_ARG_KEEPALIVE_TIME_MS, static_cast<int>(options_.keepalive_time.count()));
  arguments.SetInt(GRPC_ARG_KEEPALIVE_TIMEOUT_MS,
                   static_cast<int>(options_.keepalive_timeout.count()));
  arguments.SetInt(GRPC_ARG_KEEPALIVE_PERMIT_WITHOUT_CALLS, 0);
  arguments.SetInt(GRPC_ARG_HTTP2_MAX_PINGS_WITHOUT_DATA, 0);
  // Reconnect quickly after an etcd restart; the client's own backoff paces the calls.
  arguments.SetInt(GRPC_ARG_INITIAL_RECONNECT_BACKOFF_MS, 100);
  // At most half a second between connection attempts, so that calls find etcd within that of
  // its return (a failed attempt to a loopback or LAN address costs next to nothing).
  arguments.SetInt(GRPC_ARG_MAX_RECONNECT_BACKOFF_MS,
                   static_cast<int>(std::clamp<int64_t>(options_.backoff.max.count(), 100, 500)));
  // Connections of this client are its own (not shared with other clients in the process).
  arguments.SetInt(GRPC_ARG_USE_LOCAL_SUBCHANNEL_POOL, 1);

  // Despite its name, gRPC takes GRPC_ARG_MIN_RECONNECT_BACKOFF_MS as the time a connection
  // attempt is given (TCP's, TLS's and HTTP/2's handshakes) before it is abandoned. At 100 ms an
  // etcd a few hundred milliseconds of round trips away (another continent, TLS) was abandoned,
  // attempt after attempt, before its HTTP/2 settings came back: it never connected. The main
  // channels get the dial timeout ("one attempt to reach etcd"); the transaction connections,
  // made once the dial has measured the distance to their endpoint, three times the dial (Dial).
  grpc::ChannelArguments main_arguments = arguments;
  main_arguments.SetInt(
      GRPC_ARG_MIN_RECONNECT_BACKOFF_MS,
      static_cast<int>(std::clamp<int64_t>(
          options_.dial_timeout.count() > 0 ? options_.dial_timeout.count() : 5000, 1000, 60'000)));
  for (size_t i = 0; i < targets.size(); ++i) {
    Endpoint endpoint;
    endpoint.name = options_.endpoints[i];
    endpoint.channel = grpc::CreateCustomChannel(targets[i], credentials, main_arguments);
    endpoint.kv = pb::KV::NewStub(endpoint.channel);
    endpoint.watch = pb::Watch::NewStub(endpoint.channel);
    endpoint.lease = pb::Lease::NewStub(endpoint.channel);
    endpoint.maintenance = pb::Maintenance::NewStub(endpoint.channel);
    endpoint.auth = pb::Auth::NewStub(endpoint.channel);
    endpoint.election = epb::Election::NewStub(endpoint.channel);
    endpoint.txn_kv.push_back(pb::KV::NewStub(endpoint.channel));
    endpoints_.push_back(std::move(endpoint));
  }
  targets_ = std::move(targets);
  credentials_ = std::move(credentials);
  arguments_ = std::move(arguments);
  // Without a dial the transaction connections are made now, with the main channels' attempt
  // time; else the dial makes them once it has measured the distance.
  main_arguments_ = main_arguments;
  if (options_.dial_timeout.count() <= 0) {
    for (size_t i = 0; i < endpoints_.size(); ++i) {
      AddTxnConnections(i, options_.txn_connections, main_arguments_);
    }
  }
  thread_ = std::thread([this] { Run(); });
  return {};
}

void GrpcEtcdClient::AddTxnConnections(size_t index, int count,
                                       const grpc::ChannelArguments& arguments) {
  Endpoint& endpoint = endpoints_[index];
  while (static_cast<int>(endpoint.txn_kv.size()) < count) {
    // A local subchannel pool (Init) gives every channel a connection of its own.
    endpoint.txn_channels.push_back(
        grpc::CreateCustomChannel(targets_[index], credentials_, arguments));
    endpoint.txn_kv.push_back(pb::KV::NewStub(endpoint.txn_channels.back()));
  }
}

void GrpcEtcdClient::ConnectInBackground(std::vector<std::shared_ptr<grpc::Channel>> channels) {
  if (connecting_.joinable()) connecting_.join();  // a dial asks once; this is for safety
  try {
    connecting_ = std::thread([channels] {
      for (const auto& channel : channels) channel->GetState(true);
    });
  } catch (const std::system_error&) {
    for (const auto& channel : channels) channel->GetState(true);  // no thread to spare
  }
}

void GrpcEtcdClient::Run() {
  thread_id_.store(std::this_thread::get_id());
  void* tag = nullptr;
  bool ok = false;
  while (cq_.Next(&tag, &ok)) static_cast<Tag*>(tag)->Proceed(ok);
}

EtcdResult<void> GrpcEtcdClient::Dial() {
  if (options_.dial_timeout.count() > 0) {
    const SteadyTime started = std::chrono::steady_clock::now();
    const SteadyTime deadline = started + options_.dial_timeout;
    bool connected = false;
    // Endpoints that failed a connection attempt (refused, reset, a TLS handshake refused). When
    // every one has, the dial ends at once: the caller's retries (cli::ConnectRetry) say so and
    // pace the next attempt, instead of a silent wait of dial_timeout. A dial whose first
    // endpoint failed an attempt (etcd not started yet, or restarting) measured the wait, not
    // the distance.
    std::vector<bool> failed(endpoints_.size(), false);
    size_t failed_count = 0;
    while (!connected) {
      grpc_connectivity_state first_state = GRPC_CHANNEL_IDLE;
      for (size_t i = 0; i < endpoints_.size(); ++i) {
        const grpc_connectivity_state state = endpoints_[i].channel->GetState(true);
        if (i == 0) first_state = state;
        if (state == GRPC_CHANNEL_TRANSIENT_FAILURE && !failed[i]) {
          failed[i] = true;
          ++failed_count;
        }
        if (state == GRPC_CHANNEL_READY) {
          preferred_.store(static_cast<int>(i));
          const auto took = std::chrono::steady_clock::now() - started;
          // Only the first endpoint's readiness is seen as it comes (the others are looked at
          // every 10 ms below), so only its dial measures the distance, when it did not fail.
          far_ = i == 0 && !failed[0] && took >= options_.far_dial;
          // A transaction connection to this endpoint is given three times what its dial took
          // (at least 100 ms, at most the dial timeout): a held or lost handshake segment is
          // given up and tried again within a few round trips, as gRPC's 100 ms did near etcd,
          // while an etcd a second away still connects. A dial that waited through failed
          // attempts, and the other endpoints, whose distance is not known, keep the dial
          // timeout.
          grpc::ChannelArguments measured = failed[0] ? main_arguments_ : arguments_;
          if (!failed[0]) {
            measured.SetInt(GRPC_ARG_MIN_RECONNECT_BACKOFF_MS,
                            static_cast<int>(std::clamp<int64_t>(
                                3 * std::chrono::duration_cast<milliseconds>(took).count(), 100,
                                std::max<int64_t>(1000, options_.dial_timeout.count()))));
          }
          const bool more = far_ && options_.far_txn_connections > options_.txn_connections;
          for (size_t j = 0; j < endpoints_.size(); ++j) {
            AddTxnConnections(j, more ? options_.far_txn_connections : options_.txn_connections,
                              j == i ? measured : main_arguments_);
          }
          if (more) {
            Log(ops::LogLevel::kInfo, "etcd is far: transactions spread over more connections",
                {{"endpoint", endpoints_[i].name},
                 {"dial_ms", std::chrono::duration<double, std::milli>(took).count()},
                 {"connections", options_.far_txn_connections}});
          }
          // The transaction connections connect in the background meanwhile. Asking each to
          // connect costs a few hundred microseconds of this thread's time (the channel's
          // resolver, balancer and subchannel are set up then), so another thread asks.
          ConnectInBackground(endpoints_[i].txn_channels);
          connected = true;
          break;
        }
      }
      if (connected || failed_count == endpoints_.size() ||
          std::chrono::steady_clock::now() >= deadline) {
        break;
      }
      if (options_.cancel_dial != nullptr && options_.cancel_dial->load()) {
        return Unexpected{Error{ErrorCode::kCancelled, "connecting to etcd was cancelled", 0}};
      }
      // Wakes as soon as the first endpoint's state changes (the usual single endpoint is READY
      // then, not up to 10 ms later), and at least every 10 ms to look at the others and at
      // the cancel flag.
      const auto wait = std::min<std::chrono::steady_clock::duration>(
          milliseconds(10), deadline - std::chrono::steady_clock::now());
      endpoints_[0].channel->WaitForStateChange(first_state,
                                                std::chrono::system_clock::now() + wait);
    }
    if (!connected) {
      // A call carries gRPC's reason for the failed connections (refused, TLS, ...).
      auto status = Status();
      if (!status.ok()) {
        std::string names;
        for (const auto& endpoint : endpoints_) {
          names += (names.empty() ? "" : ", ") + endpoint.name;
        }
        Error error = status.error();
        error.message = "could not connect to etcd (" + names + ")" +
                        (failed_count == endpoints_.size()
                             ? std::string()
                             : " within " + std::to_string(options_.dial_timeout.count()) + " ms") +
                        ": " + error.message;
        return Unexpected{std::move(error)};
      }
      // Connected after all (the call waited for it): transaction connections as without a
      // measured distance.
      for (size_t j = 0; j < endpoints_.size(); ++j) {
        AddTxnConnections(j, options_.txn_connections, main_arguments_);
      }
    }
    if (has_credentials()) {
      std::promise<EtcdResult<void>> done;
      RenewToken(0, [&done](EtcdResult<void> result) { done.set_value(result); });
      auto result = done.get_future().get();
      if (!result.ok()) return result;
    }
  }
  return {};
}

int GrpcEtcdClient::PickEndpoint() {
  const int count = static_cast<int>(endpoints_.size());
  if (count == 1) return 0;
  int preferred = preferred_.load();
  for (int i = 0; i < count; ++i) {
    const int index = (preferred + i) % count;
    if (endpoints_[static_cast<size_t>(index)].channel->GetState(true) !=
        GRPC_CHANNEL_TRANSIENT_FAILURE) {
      if (i != 0 && preferred_.compare_exchange_strong(preferred, index)) {
        Log(ops::LogLevel::kInfo, "etcd endpoint unreachable; using another",
            {{"from", endpoints_[static_cast<size_t>(preferred)].name},
             {"to", endpoints_[static_cast<size_t>(index)].name}});
      }
      return index;
    }
  }
  return preferred;
}

void GrpcEtcdClient::OnEndpointFailure(int index, const Error& error) {
  const int count = static_cast<int>(endpoints_.size());
  if (count == 1 || !IsEndpointFailure(error.code)) return;
  int expected = index;
  const int next = (index + 1) % count;
  if (preferred_.compare_exchange_strong(expected, next)) {
    Log(ops::LogLevel::kWarn, "etcd endpoint failed; switching",
        {{"from", endpoints_[static_cast<size_t>(index)].name},
         {"to", endpoints_[static_cast<size_t>(next)].name},
         {"error", error.message}});
  }
}

int GrpcEtcdClient::AttachToken(grpc::ClientContext* context) {
  std::lock_guard lock(auth_mutex_);
  if (!token_.empty()) context->AddMetadata(kTokenMetadata, token_);
  return token_generation_;
}

void GrpcEtcdClient::RenewToken(int failed_generation, std::function<void(EtcdResult<void>)> then) {
  {
    std::lock_guard lock(auth_mutex_);
    if (token_generation_ != failed_generation) {
      // Renewed meanwhile by another call.
    } else {
      auth_waiters_.push_back(std::move(then));
      if (auth_in_flight_) return;
      auth_in_flight_ = true;
      then = nullptr;
    }
  }
  if (then) {
    then({});
    return;
  }
  pb::AuthenticateRequest request;
  request.set_name(options_.user);
  request.set_password(options_.password);
  CallSpec spec{kOpAuthenticate, RetryClass::kIdempotent, options_.call_timeout,
                /*use_token=*/false, options_.max_attempts};
  UnaryCall<pb::AuthenticateRequest, pb::AuthenticateResponse>::Launch(
      this, spec, std::move(request),
      [](Endpoint& e, grpc::ClientContext* c, const pb::AuthenticateRequest& r,
         grpc::CompletionQueue* cq) { return e.auth->PrepareAsyncAuthenticate(c, r, cq); },
      [this](EtcdResult<pb::AuthenticateResponse*> result, int) {
        OnAuthenticated(std::move(result));
      });
}

void GrpcEtcdClient::OnAuthenticated(EtcdResult<pb::AuthenticateResponse*> result) {
  EtcdResult<void> outcome;
  std::vector<std::function<void(EtcdResult<void>)>> waiters;
  {
    std::lock_guard lock(auth_mutex_);
    auth_in_flight_ = false;
    if (result.ok()) {
      token_ = (*result)->token();
      ++token_generation_;
    } else if (result.error().code == ErrorCode::kFailedPrecondition &&
               result.error().message.find("authentication is not enabled") != std::string::npos) {
      // etcd without auth: go on without a token.
      token_.clear();
      ++token_generation_;
    } else {
      Error error = result.error();
      if (error.code == ErrorCode::kInvalidArgument) error.code = ErrorCode::kAuthFailed;
      error.message =
          "etcd authentication as user '" + options_.user + "' failed: " + error.message;
      outcome = Unexpected{std::move(error)};
    }
    waiters.swap(auth_waiters_);
  }
  if (!result.ok() && outcome.ok()) {
    Log(ops::LogLevel::kWarn, "etcd has authentication disabled; sending no token");
  } else if (!outcome.ok()) {
    Log(ops::LogLevel::kError, "etcd authentication failed",
        {{"user", options_.user}, {"error", outcome.error().message}});
  } else {
    Log(ops::LogLevel::kDebug, "etcd auth token obtained", {{"user", options_.user}});
  }
  for (auto& waiter : waiters) waiter(outcome);
}

template <typename Request, typename Response, typename Convert>
auto GrpcEtcdClient::CallSync(const CallSpec& spec, Request request,
                              Starter<Request, Response> starter, Convert convert)
    -> decltype(convert(std::declval<Response&>(), 0)) {
  using Out = decltype(convert(std::declval<Response&>(), 0));
  if (OnCallbackThread()) {
    return MakeError(ErrorCode::kFailedPrecondition, std::string("synchronous etcd call '") +
                                                         std::string(spec.op) +
                                                         "' made on the client's callback thread");
  }
  std::promise<Out> promise;
  auto future = promise.get_future();
  UnaryCall<Request, Response>::Launch(
      this, spec, std::move(request), std::move(starter),
      [&promise, &convert](EtcdResult<Response*> result, int endpoint) {
        if (!result.ok()) {
          promise.set_value(Unexpected{std::move(result).error()});
        } else {
          promise.set_value(convert(**result, endpoint));
        }
      });
  return future.get();
}

EtcdResult<RangeResponse> GrpcEtcdClient::Range(const RangeRequest& request,
                                                const CallOptions& options) {
  pb::RangeRequest proto;
  ToProto(request, &proto);
  return CallSync<pb::RangeRequest, pb::RangeResponse>(
      Spec(kOpRange, RetryClass::kIdempotent, options.timeout), std::move(proto),
      [](Endpoint& e, grpc::ClientContext* c, const pb::RangeRequest& r,
         grpc::CompletionQueue* cq) { return e.kv->PrepareAsyncRange(c, r, cq); },
      [](pb::RangeResponse& response, int) -> EtcdResult<RangeResponse> {
        return TakeRangeResponse(&response);
      });
}

void GrpcEtcdClient::TxnAsync(TxnRequest request, const CallOptions& options, TxnCallback done) {
  if (auto valid = ValidateTxn(request, options_.max_txn_ops); !valid.ok()) {
    Report(kOpTxn, ErrorLabel(valid.error().code), nanoseconds(0));
    Post([done = std::move(done), error = valid.error()] { done(Unexpected{error}); });
    return;
  }
  QueuedTxn txn{NewArenaTxnRequest(), options, std::move(done)};
  ToProto(std::move(request), txn.request.message);
  {
    std::lock_guard lock(txn_mutex_);
    if (txns_in_flight_ >= options_.max_txns_in_flight) {
      txn_queue_.push_back(std::move(txn));
      return;
    }
    ++txns_in_flight_;
  }
  SendTxn(std::move(txn));
}

void GrpcEtcdClient::SendTxn(QueuedTxn txn) {
  UnaryCall<ArenaTxnRequest, pb::TxnResponse>::Launch(
      this,
      Spec(kOpTxn, txn.options.safe_to_retry ? RetryClass::kIdempotent : RetryClass::kUnsafe,
           txn.options.timeout),
      std::move(txn.request),
      [this](Endpoint& e, grpc::ClientContext* c, const ArenaTxnRequest& r,
             grpc::CompletionQueue* cq) {
        const size_t turn = next_txn_connection_.fetch_add(1, std::memory_order_relaxed);
        return e.txn_kv[turn % e.txn_kv.size()]->PrepareAsyncTxn(c, *r.message, cq);
      },
      [this, done = std::move(txn.done)](EtcdResult<pb::TxnResponse*> result, int) {
        ReleaseTxnSlot();
        if (result.ok()) {
          done(TakeTxnResponse(*result));
        } else {
          done(Unexpected{std::move(result).error()});
        }
      });
}

void GrpcEtcdClient::ReleaseTxnSlot() {
  std::optional<QueuedTxn> next;
  {
    std::lock_guard lock(txn_mutex_);
    if (!txn_queue_.empty() && !shutting_down_.load()) {
      next = std::move(txn_queue_.front());
      txn_queue_.pop_front();
    } else {
      --txns_in_flight_;
    }
  }
  if (next) SendTxn(std::move(*next));
}

EtcdResult<PutResponse> GrpcEtcdClient::Put(const std::string& key, const std::string& value,
                                            int64_t lease, const CallOptions& options) {
  pb::PutRequest proto;
  proto.set_key(key);
  proto.set_value(value);
  proto.set_lease(lease);
  proto.set_prev_kv(true);
  return CallSync<pb::PutRequest, pb::PutResponse>(
      Spec(kOpPut, options.safe_to_retry ? RetryClass::kIdempotent : RetryClass::kUnsafe,
           options.timeout),
      std::move(proto),
      [](Endpoint& e, grpc::ClientContext* c, const pb::PutRequest& r, grpc::CompletionQueue* cq) {
        return e.kv->PrepareAsyncPut(c, r, cq);
      },
      [](pb::PutResponse& response, int) -> EtcdResult<PutResponse> {
        PutResponse out;
        out.revision = response.header().revision();
        if (response.has_prev_kv()) out.prev_kv = TakeKeyValue(response.mutable_prev_kv());
        return out;
      });
}

EtcdResult<DeleteResponse> GrpcEtcdClient::Delete(const std::string& key,
                                                  const std::string& range_end,
                                                  const CallOptions& options) {
  pb::DeleteRangeRequest proto;
  proto.set_key(key);
  if (!range_end.empty()) proto.set_range_end(range_end);
  proto.set_prev_kv(true);
  return CallSync<pb::DeleteRangeRequest, pb::DeleteRangeResponse>(
      Spec(kOpDelete, options.safe_to_retry ? RetryClass::kIdempotent : RetryClass::kUnsafe,
           options.timeout),
      std::move(proto),
      [](Endpoint& e, grpc::ClientContext* c, const pb::DeleteRangeRequest& r,
         grpc::CompletionQueue* cq) { return e.kv->PrepareAsyncDeleteRange(c, r, cq); },
      [](pb::DeleteRangeResponse& response, int) -> EtcdResult<DeleteResponse> {
        DeleteResponse out;
        out.revision = response.header().revision();
        out.deleted = response.deleted();
        for (auto& kv : *response.mutable_prev_kvs()) out.prev_kvs.push_back(TakeKeyValue(&kv));
        return out;
      });
}

std::unique_ptr<CallHandle> GrpcEtcdClient::Watch(const WatchRequest& request,
                                                  WatchCallback callback) {
  auto control = std::make_shared<Control>();
  auto* stream = new WatchStream(this, request, callback, control);
  return StartStream(this, stream, control, [&callback] {
    callback(MakeError(ErrorCode::kCancelled, "the etcd client is being destroyed"));
  });
}

EtcdResult<LeaseGrantResponse> GrpcEtcdClient::LeaseGrant(std::chrono::seconds ttl, int64_t id) {
  pb::LeaseGrantRequest proto;
  proto.set_ttl(ttl.count());
  proto.set_id(id);
  return CallSync<pb::LeaseGrantRequest, pb::LeaseGrantResponse>(
      Spec(kOpLeaseGrant, RetryClass::kUnsafe), std::move(proto),
      [](Endpoint& e, grpc::ClientContext* c, const pb::LeaseGrantRequest& r,
         grpc::CompletionQueue* cq) { return e.lease->PrepareAsyncLeaseGrant(c, r, cq); },
      [](pb::LeaseGrantResponse& response, int) -> EtcdResult<LeaseGrantResponse> {
        if (!response.error().empty()) {
          return MakeError(ErrorCode::kInternal, "lease grant failed: " + response.error());
        }
        return LeaseGrantResponse{response.id(), response.ttl()};
      });
}

namespace {

Starter<pb::LeaseRevokeRequest, pb::LeaseRevokeResponse> LeaseRevokeStarter() {
  return [](Endpoint& e, grpc::ClientContext* c, const pb::LeaseRevokeRequest& r,
            grpc::CompletionQueue* cq) { return e.lease->PrepareAsyncLeaseRevoke(c, r, cq); };
}

}  // namespace

EtcdResult<void> GrpcEtcdClient::LeaseRevoke(int64_t id) {
  pb::LeaseRevokeRequest proto;
  proto.set_id(id);
  return CallSync<pb::LeaseRevokeRequest, pb::LeaseRevokeResponse>(
      Spec(kOpLeaseRevoke, RetryClass::kIdempotent), std::move(proto), LeaseRevokeStarter(),
      [](pb::LeaseRevokeResponse&, int) -> EtcdResult<void> { return {}; });
}

void GrpcEtcdClient::LeaseRevokeAsync(int64_t id, LeaseRevokeCallback done) {
  pb::LeaseRevokeRequest proto;
  proto.set_id(id);
  UnaryCall<pb::LeaseRevokeRequest, pb::LeaseRevokeResponse>::Launch(
      this, Spec(kOpLeaseRevoke, RetryClass::kIdempotent), std::move(proto), LeaseRevokeStarter(),
      [done = std::move(done)](EtcdResult<pb::LeaseRevokeResponse*> result, int /*endpoint*/) {
        if (!result.ok()) {
          done(Unexpected{std::move(result).error()});
        } else {
          done({});
        }
      });
}

EtcdResult<LeaseTimeToLiveResponse> GrpcEtcdClient::LeaseTimeToLive(int64_t id) {
  pb::LeaseTimeToLiveRequest proto;
  proto.set_id(id);
  proto.set_keys(true);
  return CallSync<pb::LeaseTimeToLiveRequest, pb::LeaseTimeToLiveResponse>(
      Spec(kOpLeaseTimeToLive, RetryClass::kIdempotent), std::move(proto),
      [](Endpoint& e, grpc::ClientContext* c, const pb::LeaseTimeToLiveRequest& r,
         grpc::CompletionQueue* cq) { return e.lease->PrepareAsyncLeaseTimeToLive(c, r, cq); },
      [](pb::LeaseTimeToLiveResponse& response, int) -> EtcdResult<LeaseTimeToLiveResponse> {
        LeaseTimeToLiveResponse out;
        out.id = response.id();
        out.ttl_seconds = response.ttl();
        out.granted_ttl_seconds = response.grantedttl();
        for (auto& key : *response.mutable_keys()) out.keys.push_back(std::move(key));
        return out;
      });
}

std::unique_ptr<CallHandle> GrpcEtcdClient::LeaseKeepAlive(int64_t id, LeaseLostCallback on_lost) {
  auto control = std::make_shared<Control>();
  auto* stream = new KeepAliveStream(this, id, on_lost, control);
  return StartStream(this, stream, control, [&on_lost] {
    on_lost(Error{ErrorCode::kCancelled, "the etcd client is being destroyed", 0});
  });
}

std::unique_ptr<CallHandle> GrpcEtcdClient::Campaign(const std::string& name, int64_t lease,
                                                     const std::string& value,
                                                     CampaignCallback done) {
  auto control = std::make_shared<Control>();
  epb::CampaignRequest proto;
  proto.set_name(name);
  proto.set_lease(lease);
  proto.set_value(value);
  // No deadline: a campaign waits for the leader to go. Campaigning again with the same lease
  // reuses the same key, so retries are safe.
  CallSpec spec{kOpCampaign, RetryClass::kIdempotent, milliseconds(0), true, options_.max_attempts};
  UnaryCall<epb::CampaignRequest, epb::CampaignResponse>::Launch(
      this, spec, std::move(proto),
      [](Endpoint& e, grpc::ClientContext* c, const epb::CampaignRequest& r,
         grpc::CompletionQueue* cq) { return e.election->PrepareAsyncCampaign(c, r, cq); },
      [done = std::move(done)](EtcdResult<epb::CampaignResponse*> result, int) {
        if (!result.ok()) {
          done(Unexpected{std::move(result).error()});
        } else {
          done(TakeLeaderKey((*result)->mutable_leader()));
        }
      },
      control);
  return std::make_unique<Handle>(control);
}

EtcdResult<void> GrpcEtcdClient::Proclaim(const LeaderKey& leader, const std::string& value) {
  epb::ProclaimRequest proto;
  ToProto(leader, proto.mutable_leader());
  proto.set_value(value);
  return CallSync<epb::ProclaimRequest, epb::ProclaimResponse>(
      Spec(kOpProclaim, RetryClass::kIdempotent), std::move(proto),
      [](Endpoint& e, grpc::ClientContext* c, const epb::ProclaimRequest& r,
         grpc::CompletionQueue* cq) { return e.election->PrepareAsyncProclaim(c, r, cq); },
      [](epb::ProclaimResponse&, int) -> EtcdResult<void> { return {}; });
}

EtcdResult<void> GrpcEtcdClient::Resign(const LeaderKey& leader) {
  epb::ResignRequest proto;
  ToProto(leader, proto.mutable_leader());
  return CallSync<epb::ResignRequest, epb::ResignResponse>(
      Spec(kOpResign, RetryClass::kIdempotent), std::move(proto),
      [](Endpoint& e, grpc::ClientContext* c, const epb::ResignRequest& r,
         grpc::CompletionQueue* cq) { return e.election->PrepareAsyncResign(c, r, cq); },
      [](epb::ResignResponse&, int) -> EtcdResult<void> { return {}; });
}

EtcdResult<KeyValue> GrpcEtcdClient::Leader(const std::string& name) {
  epb::LeaderRequest proto;
  proto.set_name(name);
  return CallSync<epb::LeaderRequest, epb::LeaderResponse>(
      Spec(kOpLeader, RetryClass::kIdempotent), std::move(proto),
      [](Endpoint& e, grpc::ClientContext* c, const epb::LeaderRequest& r,
         grpc::CompletionQueue* cq) { return e.election->PrepareAsyncLeader(c, r, cq); },
      [](epb::LeaderResponse& response, int) -> EtcdResult<KeyValue> {
        if (!response.has_kv()) return MakeError(ErrorCode::kNotFound, "election: no leader");
        return TakeKeyValue(response.mutable_kv());
      });
}

std::unique_ptr<CallHandle> GrpcEtcdClient::Observe(const std::string& name,
                                                    ObserveCallback callback) {
  auto control = std::make_shared<Control>();
  auto* stream = new ObserveStream(this, name, callback, control);
  return StartStream(this, stream, control, [&callback] {
    callback(MakeError(ErrorCode::kCancelled, "the etcd client is being destroyed"));
  });
}

namespace {

Starter<pb::StatusRequest, pb::StatusResponse> StatusStarter() {
  return [](Endpoint& e, grpc::ClientContext* c, const pb::StatusRequest& r,
            grpc::CompletionQueue* cq) { return e.maintenance->PrepareAsyncStatus(c, r, cq); };
}

}  // namespace

StatusResponse GrpcEtcdClient::StatusOf(const pb::StatusResponse& response, int endpoint) const {
  StatusResponse out;
  out.endpoint = endpoints_[static_cast<size_t>(endpoint)].name;
  out.version = response.version();
  out.db_size = response.dbsize();
  out.member_id = response.header().member_id();
  out.leader = response.leader();
  out.revision = response.header().revision();
  out.raft_term = response.raftterm();
  for (const auto& error : response.errors()) out.errors.push_back(error);
  return out;
}

EtcdResult<StatusResponse> GrpcEtcdClient::Status() {
  return CallSync<pb::StatusRequest, pb::StatusResponse>(
      Spec(kOpStatus, RetryClass::kIdempotent), pb::StatusRequest(), StatusStarter(),
      [this](pb::StatusResponse& response, int endpoint) -> EtcdResult<StatusResponse> {
        return StatusOf(response, endpoint);
      });
}

void GrpcEtcdClient::StatusAsync(StatusCallback done) {
  UnaryCall<pb::StatusRequest, pb::StatusResponse>::Launch(
      this, Spec(kOpStatus, RetryClass::kIdempotent), pb::StatusRequest(), StatusStarter(),
      [this, done = std::move(done)](EtcdResult<pb::StatusResponse*> result, int endpoint) {
        if (!result.ok()) {
          done(Unexpected{std::move(result).error()});
        } else {
          done(StatusOf(**result, endpoint));
        }
      });
}

}  // namespace detail

Result<std::unique_ptr<EtcdClient>, Error> NewGrpcEtcdClient(GrpcEtcdClientOptions options,
                                                             const Clock& clock) {
  auto client = std::make_unique<detail::GrpcEtcdClient>(std::move(options), clock);
  if (auto initialized = client->Init(); !initialized.ok()) {
    return Unexpected{initialized.error()};
  }
  if (auto dialed = client->Dial(); !dialed.ok()) return Unexpected{dialed.error()};
  return std::unique_ptr<EtcdClient>(std::move(client));
}

}  // namespace zk2etcd::etcd

#include "etcd/grpc_convert.h"

#include <algorithm>
#include <cctype>
#include <type_traits>

namespace zk2etcd::etcd {

namespace pb = etcdserverpb;

namespace {

pb::Compare::CompareResult CompareResultOf(CompareOp op) {
  switch (op) {
    case CompareOp::kEqual:
      return pb::Compare::EQUAL;
    case CompareOp::kNotEqual:
      return pb::Compare::NOT_EQUAL;
    case CompareOp::kLess:
      return pb::Compare::LESS;
    case CompareOp::kGreater:
      return pb::Compare::GREATER;
  }
  return pb::Compare::EQUAL;
}

// Moves strings out of `value` when kMove, copies otherwise.
template <bool kMove>
decltype(auto) Pass(std::conditional_t<kMove, std::string&, const std::string&> value) {
  if constexpr (kMove) {
    return std::move(value);
  } else {
    return (value);
  }
}

template <bool kMove>
using TxnRef = std::conditional_t<kMove, TxnRequest&, const TxnRequest&>;
template <bool kMove>
using OpRef = std::conditional_t<kMove, Op&, const Op&>;
template <bool kMove>
using CompareRef = std::conditional_t<kMove, Compare&, const Compare&>;

template <bool kMove>
void FillTxn(TxnRef<kMove> request, pb::TxnRequest* proto);

template <bool kMove>
void FillCompare(CompareRef<kMove> compare, pb::Compare* out) {
  out->set_key(Pass<kMove>(compare.key));
  if (!compare.range_end.empty()) out->set_range_end(Pass<kMove>(compare.range_end));
  out->set_result(CompareResultOf(compare.op));
  switch (compare.target) {
    case CompareTarget::kVersion:
      out->set_target(pb::Compare::VERSION);
      out->set_version(compare.number);
      break;
    case CompareTarget::kCreateRevision:
      out->set_target(pb::Compare::CREATE);
      out->set_create_revision(compare.number);
      break;
    case CompareTarget::kModRevision:
      out->set_target(pb::Compare::MOD);
      out->set_mod_revision(compare.number);
      break;
    case CompareTarget::kValue:
      out->set_target(pb::Compare::VALUE);
      out->set_value(Pass<kMove>(compare.value));
      break;
    case CompareTarget::kLease:
      out->set_target(pb::Compare::LEASE);
      out->set_lease(compare.number);
      break;
  }
}

template <bool kMove>
void FillOp(OpRef<kMove> op, pb::RequestOp* out) {
  switch (op.type) {
    case Op::Type::kPut: {
      pb::PutRequest* put = out->mutable_request_put();
      put->set_key(Pass<kMove>(op.key));
      put->set_value(Pass<kMove>(op.value));
      put->set_lease(op.lease);
      put->set_prev_kv(op.prev_kv);
      break;
    }
    case Op::Type::kDelete: {
      pb::DeleteRangeRequest* del = out->mutable_request_delete_range();
      del->set_key(Pass<kMove>(op.key));
      if (!op.range_end.empty()) del->set_range_end(Pass<kMove>(op.range_end));
      del->set_prev_kv(op.prev_kv);
      break;
    }
    case Op::Type::kRange: {
      pb::RangeRequest* range = out->mutable_request_range();
      range->set_key(Pass<kMove>(op.range.key));
      if (!op.range.range_end.empty()) range->set_range_end(Pass<kMove>(op.range.range_end));
      range->set_limit(op.range.limit);
      range->set_revision(op.range.revision);
      range->set_keys_only(op.range.keys_only);
      range->set_count_only(op.range.count_only);
      break;
    }
    case Op::Type::kTxn:
      if (op.txn == nullptr) break;
      if constexpr (kMove) {
        // Nobody else can see the nested request: take its strings.
        if (op.txn.use_count() == 1) {
          FillTxn<true>(*op.txn, out->mutable_request_txn());
          break;
        }
      }
      FillTxn<false>(*op.txn, out->mutable_request_txn());
      break;
  }
}

template <bool kMove>
void FillTxn(TxnRef<kMove> request, pb::TxnRequest* proto) {
  proto->mutable_compare()->Reserve(static_cast<int>(request.compares.size()));
  for (auto& compare : request.compares) FillCompare<kMove>(compare, proto->add_compare());
  proto->mutable_success()->Reserve(static_cast<int>(request.success.size()));
  for (auto& op : request.success) FillOp<kMove>(op, proto->add_success());
  proto->mutable_failure()->Reserve(static_cast<int>(request.failure.size()));
  for (auto& op : request.failure) FillOp<kMove>(op, proto->add_failure());
}

std::vector<KeyValue> TakeKeyValues(google::protobuf::RepeatedPtrField<mvccpb::KeyValue>* kvs) {
  std::vector<KeyValue> out;
  out.reserve(static_cast<size_t>(kvs->size()));
  for (auto& kv : *kvs) out.push_back(TakeKeyValue(&kv));
  return out;
}

OpResponse TakeOpResponse(pb::ResponseOp* proto) {
  OpResponse out;
  switch (proto->response_case()) {
    case pb::ResponseOp::kResponseRange: {
      out.type = Op::Type::kRange;
      pb::RangeResponse* range = proto->mutable_response_range();
      out.kvs = TakeKeyValues(range->mutable_kvs());
      out.more = range->more();
      out.count = range->count();
      break;
    }
    case pb::ResponseOp::kResponsePut: {
      out.type = Op::Type::kPut;
      pb::PutResponse* put = proto->mutable_response_put();
      if (put->has_prev_kv()) out.kvs.push_back(TakeKeyValue(put->mutable_prev_kv()));
      break;
    }
    case pb::ResponseOp::kResponseDeleteRange: {
      out.type = Op::Type::kDelete;
      pb::DeleteRangeResponse* del = proto->mutable_response_delete_range();
      out.deleted = del->deleted();
      out.kvs = TakeKeyValues(del->mutable_prev_kvs());
      break;
    }
    case pb::ResponseOp::kResponseTxn:
      out.type = Op::Type::kTxn;
      out.txn = std::make_shared<const TxnResponse>(TakeTxnResponse(proto->mutable_response_txn()));
      break;
    case pb::ResponseOp::RESPONSE_NOT_SET:
      break;
  }
  return out;
}

bool Contains(std::string_view text, std::string_view part) {
  return text.find(part) != std::string_view::npos;
}

bool ContainsIgnoringCase(std::string_view text, std::string_view part) {
  auto it = std::search(text.begin(), text.end(), part.begin(), part.end(), [](char a, char b) {
    return std::tolower(static_cast<unsigned char>(a)) ==
           std::tolower(static_cast<unsigned char>(b));
  });
  return it != text.end();
}

// gRPC reports TLS failures as UNAVAILABLE with OpenSSL's text ("Ssl handshake failed:
// SSL_ERROR_SSL: ... certificate verify failed"). Plain "handshake" is not enough: gRPC's own
// connection handshakers use the word for plain-text connections too.
bool LooksLikeTls(std::string_view message) {
  return ContainsIgnoringCase(message, "ssl") || ContainsIgnoringCase(message, "certificate");
}

}  // namespace

void ToProto(const RangeRequest& request, pb::RangeRequest* proto) {
  proto->set_key(request.key);
  if (!request.range_end.empty()) proto->set_range_end(request.range_end);
  proto->set_limit(request.limit);
  proto->set_revision(request.revision);
  proto->set_keys_only(request.keys_only);
  proto->set_count_only(request.count_only);
}

void ToProto(TxnRequest&& request, pb::TxnRequest* proto) { FillTxn<true>(request, proto); }

size_t EncodedBytes(const TxnRequest& request) {
  pb::TxnRequest proto;
  TxnRequest copy = request;
  FillTxn<true>(copy, &proto);
  return proto.ByteSizeLong();
}

void ToProto(const WatchRequest& request, int64_t start_revision, pb::WatchCreateRequest* proto) {
  proto->set_key(request.key);
  if (!request.range_end.empty()) proto->set_range_end(request.range_end);
  proto->set_start_revision(start_revision);
  proto->set_prev_kv(request.prev_kv);
}

void ToProto(const LeaderKey& leader, v3electionpb::LeaderKey* proto) {
  proto->set_name(leader.name);
  proto->set_key(leader.key);
  proto->set_rev(leader.revision);
  proto->set_lease(leader.lease);
}

KeyValue TakeKeyValue(mvccpb::KeyValue* proto) {
  KeyValue kv;
  kv.key = std::move(*proto->mutable_key());
  kv.value = std::move(*proto->mutable_value());
  kv.create_revision = proto->create_revision();
  kv.mod_revision = proto->mod_revision();
  kv.version = proto->version();
  kv.lease = proto->lease();
  return kv;
}

RangeResponse TakeRangeResponse(pb::RangeResponse* proto) {
  RangeResponse out;
  out.revision = proto->header().revision();
  out.kvs = TakeKeyValues(proto->mutable_kvs());
  out.more = proto->more();
  out.count = proto->count();
  return out;
}

TxnResponse TakeTxnResponse(pb::TxnResponse* proto) {
  TxnResponse out;
  out.succeeded = proto->succeeded();
  out.revision = proto->header().revision();
  out.responses.reserve(static_cast<size_t>(proto->responses_size()));
  for (auto& response : *proto->mutable_responses()) {
    out.responses.push_back(TakeOpResponse(&response));
  }
  return out;
}

WatchEvents TakeWatchEvents(pb::WatchResponse* proto) {
  WatchEvents out;
  out.header_revision = proto->header().revision();
  out.events.reserve(static_cast<size_t>(proto->events_size()));
  for (auto& event : *proto->mutable_events()) {
    WatchEvent converted;
    converted.type =
        event.type() == mvccpb::Event::DELETE ? WatchEvent::Type::kDelete : WatchEvent::Type::kPut;
    converted.kv = TakeKeyValue(event.mutable_kv());
    if (event.has_prev_kv()) converted.prev_kv = TakeKeyValue(event.mutable_prev_kv());
    out.events.push_back(std::move(converted));
  }
  return out;
}

LeaderKey TakeLeaderKey(v3electionpb::LeaderKey* proto) {
  LeaderKey leader;
  leader.name = std::move(*proto->mutable_name());
  leader.key = std::move(*proto->mutable_key());
  leader.revision = proto->rev();
  leader.lease = proto->lease();
  return leader;
}

Error ErrorFromStatus(const grpc::Status& status, bool tls) {
  const std::string& text = status.error_message();
  auto make = [&text](ErrorCode code) { return Error{code, text, 0}; };
  switch (status.error_code()) {
    case grpc::StatusCode::OK:
      return Error{ErrorCode::kInternal, "no error (OK status mapped as an error)", 0};
    case grpc::StatusCode::CANCELLED:
      return make(ErrorCode::kCancelled);
    case grpc::StatusCode::DEADLINE_EXCEEDED:
      return make(ErrorCode::kDeadlineExceeded);
    case grpc::StatusCode::UNAVAILABLE:
      if (tls && LooksLikeTls(text)) {
        return Error{ErrorCode::kTlsFailed,
                     "TLS handshake failed (check the CA certificate, the client certificate and "
                     "key, and the server name): " +
                         text,
                     0};
      }
      return make(ErrorCode::kUnavailable);
    case grpc::StatusCode::UNAUTHENTICATED:
      return make(ErrorCode::kAuthFailed);
    case grpc::StatusCode::PERMISSION_DENIED:
      return make(ErrorCode::kPermissionDenied);
    case grpc::StatusCode::INVALID_ARGUMENT:
      if (Contains(text, "too many operations in txn")) return make(ErrorCode::kTooManyOps);
      if (Contains(text, "authentication failed") || Contains(text, "user name is empty") ||
          Contains(text, "revision of auth store is old")) {
        return make(ErrorCode::kAuthFailed);
      }
      return make(ErrorCode::kInvalidArgument);
    case grpc::StatusCode::OUT_OF_RANGE:
      if (Contains(text, "compacted")) return make(ErrorCode::kCompacted);
      return make(ErrorCode::kInvalidArgument);
    case grpc::StatusCode::NOT_FOUND:
      return make(ErrorCode::kNotFound);
    case grpc::StatusCode::FAILED_PRECONDITION:
      return make(ErrorCode::kFailedPrecondition);
    case grpc::StatusCode::RESOURCE_EXHAUSTED:
      // gRPC's message size limit (etcd's is --max-request-bytes plus 512 KiB): the same
      // request will be refused again, unlike a full quota or too many requests.
      if (Contains(text, "message larger than max")) return make(ErrorCode::kInvalidArgument);
      return make(ErrorCode::kResourceExhausted);
    case grpc::StatusCode::UNKNOWN:
      // The election service returns its errors without a code.
      if (Contains(text, "election: not leader")) return make(ErrorCode::kFailedPrecondition);
      if (Contains(text, "election: no leader")) return make(ErrorCode::kNotFound);
      if (Contains(text, "requested lease not found")) return make(ErrorCode::kNotFound);
      if (Contains(text, "permission denied")) return make(ErrorCode::kPermissionDenied);
      return make(ErrorCode::kInternal);
    default:
      return make(ErrorCode::kInternal);
  }
}

bool IsInvalidTokenStatus(const grpc::Status& status) {
  const std::string& text = status.error_message();
  // "user name is empty": the request carried no token at all (auth enabled after we dialled).
  return (status.error_code() == grpc::StatusCode::UNAUTHENTICATED &&
          Contains(text, "invalid auth token")) ||
         (status.error_code() == grpc::StatusCode::INVALID_ARGUMENT &&
          (Contains(text, "revision of auth store is old") ||
           Contains(text, "user name is empty")));
}

bool IsNeverAppliedStatus(const grpc::Status& status) {
  const std::string& text = status.error_message();
  switch (status.error_code()) {
    case grpc::StatusCode::UNAVAILABLE:
      // gRPC's load balancer found no connected address: nothing was sent.
      return Contains(text, "failed to connect to all addresses") || LooksLikeTls(text);
    case grpc::StatusCode::RESOURCE_EXHAUSTED:
      return Contains(text, "etcdserver: too many requests");
    default:
      return IsInvalidTokenStatus(status);
  }
}

Error ErrorFromWatchCancel(const std::string& reason) {
  // etcd 3.4 sends gRPC errors as text: "rpc error: code = Unauthenticated desc = ...".
  if (Contains(reason, "permission denied")) {
    return Error{ErrorCode::kPermissionDenied, reason, 0};
  }
  if (Contains(reason, "invalid auth token")) return Error{ErrorCode::kAuthFailed, reason, 0};
  if (Contains(reason, "compacted")) return Error{ErrorCode::kCompacted, reason, 0};
  if (Contains(reason, "no leader") || Contains(reason, "code = Unavailable")) {
    return Error{ErrorCode::kUnavailable, reason, 0};
  }
  if (reason.empty()) return Error{ErrorCode::kCancelled, "watch cancelled by etcd", 0};
  return Error{ErrorCode::kInternal, reason, 0};
}

}  // namespace zk2etcd::etcd

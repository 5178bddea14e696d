#include "etcd/etcd_client.h"

#include <algorithm>
#include <future>

namespace zk2etcd::etcd {

std::string_view ErrorLabel(ErrorCode code) {
  switch (code) {
    case ErrorCode::kUnavailable:
      return "unavailable";
    case ErrorCode::kDeadlineExceeded:
      return "deadline_exceeded";
    case ErrorCode::kCompacted:
      return "compacted";
    case ErrorCode::kTooManyOps:
      return "too_many_ops";
    case ErrorCode::kPermissionDenied:
      return "permission_denied";
    case ErrorCode::kAuthFailed:
      return "auth_failed";
    case ErrorCode::kInvalidArgument:
      return "invalid_argument";
    case ErrorCode::kFailedPrecondition:
      return "failed_precondition";
    case ErrorCode::kNotFound:
      return "not_found";
    case ErrorCode::kResourceExhausted:
      return "resource_exhausted";
    case ErrorCode::kTlsFailed:
      return "tls_failed";
    case ErrorCode::kCancelled:
      return "cancelled";
    case ErrorCode::kInternal:
      return "internal";
  }
  return "internal";
}

std::string Error::ToString() const {
  std::string text(ErrorLabel(code));
  if (!message.empty()) {
    text += ": ";
    text += message;
  }
  return text;
}

std::string PrefixEnd(std::string_view prefix) {
  std::string end(prefix);
  while (!end.empty()) {
    auto last = static_cast<unsigned char>(end.back());
    if (last < 0xff) {
      end.back() = static_cast<char>(last + 1);
      return end;
    }
    end.pop_back();
  }
  return std::string(1, '\0');
}

RangeRequest RangeRequest::Prefix(std::string prefix) {
  RangeRequest request;
  request.range_end = PrefixEnd(prefix);
  request.key = std::move(prefix);
  if (request.key.empty()) request.key.assign(1, '\0');
  return request;
}

WatchRequest WatchRequest::Prefix(std::string prefix, int64_t start_revision) {
  WatchRequest request;
  request.range_end = PrefixEnd(prefix);
  request.key = std::move(prefix);
  if (request.key.empty()) request.key.assign(1, '\0');
  request.start_revision = start_revision;
  return request;
}

namespace {

Compare MakeCompare(std::string key, CompareTarget target, CompareOp op, int64_t number,
                    std::string value) {
  Compare compare;
  compare.key = std::move(key);
  compare.target = target;
  compare.op = op;
  compare.number = number;
  compare.value = std::move(value);
  return compare;
}

}  // namespace

Compare Compare::Version(std::string key, CompareOp op, int64_t version) {
  return MakeCompare(std::move(key), CompareTarget::kVersion, op, version, {});
}
Compare Compare::CreateRevision(std::string key, CompareOp op, int64_t revision) {
  return MakeCompare(std::move(key), CompareTarget::kCreateRevision, op, revision, {});
}
Compare Compare::ModRevision(std::string key, CompareOp op, int64_t revision) {
  return MakeCompare(std::move(key), CompareTarget::kModRevision, op, revision, {});
}
Compare Compare::Value(std::string key, CompareOp op, std::string value) {
  return MakeCompare(std::move(key), CompareTarget::kValue, op, 0, std::move(value));
}
Compare Compare::Lease(std::string key, CompareOp op, int64_t lease) {
  return MakeCompare(std::move(key), CompareTarget::kLease, op, lease, {});
}

Op Op::Put(std::string key, std::string value, int64_t lease) {
  Op op;
  op.type = Type::kPut;
  op.key = std::move(key);
  op.value = std::move(value);
  op.lease = lease;
  return op;
}

Op Op::Delete(std::string key, std::string range_end) {
  Op op;
  op.type = Type::kDelete;
  op.key = std::move(key);
  op.range_end = std::move(range_end);
  return op;
}

Op Op::Range(RangeRequest request) {
  Op op;
  op.type = Type::kRange;
  op.range = std::move(request);
  return op;
}

Op Op::Txn(TxnRequest request) {
  Op op;
  op.type = Type::kTxn;
  op.txn = std::make_shared<TxnRequest>(std::move(request));
  return op;
}

namespace {

EtcdResult<void> ValidateTxnWithLimit(const TxnRequest& request, int limit, int max_ops,
                                      bool nested) {
  const size_t largest =
      std::max({request.compares.size(), request.success.size(), request.failure.size()});
  if (largest > static_cast<size_t>(std::max(limit, 0))) {
    std::string message = std::string(nested ? "a nested transaction" : "the transaction") +
                          " has " + std::to_string(request.compares.size()) + " compares, " +
                          std::to_string(request.success.size()) + " success and " +
                          std::to_string(request.failure.size()) +
                          " failure operations; etcd allows at most " + std::to_string(limit) +
                          " per list here (--max-txn-ops " + std::to_string(max_ops) +
                          "): split it";
    return MakeError(ErrorCode::kTooManyOps, std::move(message));
  }
  for (const Compare& compare : request.compares) {
    if (compare.key.empty()) {
      return MakeError(ErrorCode::kInvalidArgument, "a transaction compare has an empty key");
    }
  }
  const int inner_limit = limit - static_cast<int>(largest);
  for (const auto* branch : {&request.success, &request.failure}) {
    for (const Op& op : *branch) {
      if (op.type == Op::Type::kTxn) {
        if (op.txn == nullptr) {
          return MakeError(ErrorCode::kInvalidArgument, "a nested transaction is missing");
        }
        if (auto nested_ok = ValidateTxnWithLimit(*op.txn, inner_limit, max_ops, true);
            !nested_ok.ok()) {
          return nested_ok;
        }
      } else if ((op.type == Op::Type::kRange ? op.range.key : op.key).empty()) {
        return MakeError(ErrorCode::kInvalidArgument, "a transaction operation has an empty key");
      }
    }
  }
  return {};
}

}  // namespace

EtcdResult<void> ValidateTxn(const TxnRequest& request, int max_ops) {
  return ValidateTxnWithLimit(request, max_ops, max_ops, false);
}

EtcdResult<TxnResponse> EtcdClient::Txn(TxnRequest request, const CallOptions& options) {
  if (OnCallbackThread()) {
    return MakeError(ErrorCode::kFailedPrecondition,
                     "synchronous Txn called on the etcd client's callback thread");
  }
  std::promise<EtcdResult<TxnResponse>> promise;
  auto future = promise.get_future();
  TxnAsync(std::move(request), options,
           [&promise](EtcdResult<TxnResponse> result) { promise.set_value(std::move(result)); });
  return future.get();
}

EtcdResult<LeaderKey> EtcdClient::CampaignAndWait(const std::string& name, int64_t lease,
                                                  const std::string& value) {
  if (OnCallbackThread()) {
    return MakeError(ErrorCode::kFailedPrecondition,
                     "synchronous Campaign called on the etcd client's callback thread");
  }
  std::promise<EtcdResult<LeaderKey>> promise;
  auto future = promise.get_future();
  auto handle = Campaign(name, lease, value, [&promise](EtcdResult<LeaderKey> result) {
    promise.set_value(std::move(result));
  });
  return future.get();
}

EtcdResult<int64_t> ForEachPage(EtcdClient& client, const RangeRequest& request, int64_t page_size,
                                const std::function<bool(RangeResponse&)>& on_page) {
  if (page_size <= 0) {
    return MakeError(ErrorCode::kInvalidArgument, "page size must be positive");
  }
  RangeRequest page = request;
  page.limit = page_size;
  page.count_only = false;
  int64_t revision = request.revision;
  while (true) {
    page.revision = revision;
    auto response = client.Range(page);
    if (!response.ok()) return Unexpected{std::move(response).error()};
    if (revision == 0) revision = response->revision;
    const bool more = response->more && !response->kvs.empty();
    std::string next_key;
    if (more) next_key = response->kvs.back().key + '\0';
    if (!on_page(*response)) break;
    // A single key (empty range_end) has no next page.
    if (!more || request.range_end.empty()) break;
    page.key = std::move(next_key);
  }
  return revision;
}

EtcdResult<RangeResponse> RangeAll(EtcdClient& client, const RangeRequest& request,
                                   int64_t page_size) {
  RangeResponse all;
  auto revision = ForEachPage(client, request, page_size, [&all](RangeResponse& page) {
    if (all.kvs.empty()) {
      all.kvs = std::move(page.kvs);
    } else {
      all.kvs.insert(all.kvs.end(), std::make_move_iterator(page.kvs.begin()),
                     std::make_move_iterator(page.kvs.end()));
    }
    return true;
  });
  if (!revision.ok()) return Unexpected{std::move(revision).error()};
  all.revision = *revision;
  all.count = static_cast<int64_t>(all.kvs.size());
  return all;
}

EtcdResult<int64_t> CountRange(EtcdClient& client, const RangeRequest& request) {
  RangeRequest count = request;
  count.count_only = true;
  count.limit = 0;
  auto response = client.Range(count);
  if (!response.ok()) return Unexpected{std::move(response).error()};
  return response->count;
}

}  // namespace zk2etcd::etcd

// Unit tests of the client-independent parts: error labels, prefix ranges, transaction
// validation, backoff, the gRPC status mapping and conversions, and the gRPC client's checks that
// need no server.
#include "etcd/etcd_client.h"

#include <gtest/gtest.h>

#include <atomic>
#include <future>
#include <set>
#include <thread>

#include "common/backoff.h"
#include "etcd/grpc_convert.h"
#include "etcd/grpc_etcd_client.h"

namespace zk2etcd::etcd {
namespace {

using std::chrono::milliseconds;

constexpr ErrorCode kAllCodes[] = {
    ErrorCode::kUnavailable,       ErrorCode::kDeadlineExceeded,   ErrorCode::kCompacted,
    ErrorCode::kTooManyOps,        ErrorCode::kPermissionDenied,   ErrorCode::kAuthFailed,
    ErrorCode::kInvalidArgument,   ErrorCode::kFailedPrecondition, ErrorCode::kNotFound,
    ErrorCode::kResourceExhausted, ErrorCode::kTlsFailed,          ErrorCode::kCancelled,
    ErrorCode::kInternal};

TEST(ErrorLabelTest, EveryCodeHasADistinctFixedSnakeCaseLabel) {
  std::set<std::string_view> labels;
  for (ErrorCode code : kAllCodes) {
    std::string_view label = ErrorLabel(code);
    EXPECT_FALSE(label.empty());
    for (char c : label) EXPECT_TRUE((c >= 'a' && c <= 'z') || c == '_') << label;
    labels.insert(label);
  }
  EXPECT_EQ(labels.size(), std::size(kAllCodes));
  EXPECT_EQ(labels.count(kSuccessLabel), 0u);
  EXPECT_EQ(ErrorLabel(ErrorCode::kUnavailable), "unavailable");
  EXPECT_EQ(ErrorLabel(ErrorCode::kTooManyOps), "too_many_ops");
  EXPECT_EQ(ErrorLabel(ErrorCode::kCompacted), "compacted");
  EXPECT_EQ(ErrorLabel(ErrorCode::kPermissionDenied), "permission_denied");
  EXPECT_EQ((Error{ErrorCode::kAuthFailed, "bad password", 0}).ToString(),
            "auth_failed: bad password");
}

TEST(PrefixEndTest, IncrementsTheLastByteThatCanBe) {
  EXPECT_EQ(PrefixEnd("/dubbo"), "/dubbp");
  EXPECT_EQ(PrefixEnd("/dubbo/"), "/dubbo0");
  EXPECT_EQ(PrefixEnd(std::string("a\xff\xff", 3)), "b");
  EXPECT_EQ(PrefixEnd(""), std::string(1, '\0'));
  EXPECT_EQ(PrefixEnd(std::string("\xff", 1)), std::string(1, '\0'));
  RangeRequest all = RangeRequest::Prefix("");
  EXPECT_EQ(all.key, std::string(1, '\0'));
  EXPECT_EQ(all.range_end, std::string(1, '\0'));
  RangeRequest dubbo = RangeRequest::Prefix("/dubbo/");
  EXPECT_EQ(dubbo.key, "/dubbo/");
  EXPECT_EQ(dubbo.range_end, "/dubbo0");
}

TxnRequest PutsTxn(int puts, int compares = 0) {
  TxnRequest txn;
  for (int i = 0; i < compares; ++i) {
    txn.compares.push_back(Compare::Version("/k" + std::to_string(i), CompareOp::kEqual, 0));
  }
  for (int i = 0; i < puts; ++i) txn.success.push_back(Op::Put("/k" + std::to_string(i), "v"));
  return txn;
}

TEST(ValidateTxnTest, AllowsUpTo128PerListAndRefusesMore) {
  EXPECT_TRUE(ValidateTxn(PutsTxn(128, 128)).ok());
  auto refused = ValidateTxn(PutsTxn(129));
  ASSERT_FALSE(refused.ok());
  EXPECT_EQ(refused.error().code, ErrorCode::kTooManyOps);
  EXPECT_NE(refused.error().message.find("129"), std::string::npos) << refused.error().message;
  EXPECT_NE(refused.error().message.find("128"), std::string::npos) << refused.error().message;
  EXPECT_EQ(ValidateTxn(PutsTxn(1, 129)).error().code, ErrorCode::kTooManyOps);
  TxnRequest failure_heavy;
  for (int i = 0; i < 129; ++i) failure_heavy.failure.push_back(Op::Delete("/x"));
  EXPECT_EQ(ValidateTxn(failure_heavy).error().code, ErrorCode::kTooManyOps);
  // The limit is an option.
  EXPECT_TRUE(ValidateTxn(PutsTxn(129), 200).ok());
  EXPECT_EQ(ValidateTxn(PutsTxn(11), 10).error().code, ErrorCode::kTooManyOps);
}

TEST(ValidateTxnTest, NestedTransactionsGetWhatTheOuterOneLeaves) {
  // etcd: a nested transaction may hold max_ops minus the outer's largest list.
  TxnRequest outer = PutsTxn(100);
  outer.success.push_back(Op::Txn(PutsTxn(27)));  // outer now has 101 ops: 27 left
  EXPECT_TRUE(ValidateTxn(outer).ok());
  outer.success.back() = Op::Txn(PutsTxn(28));
  EXPECT_EQ(ValidateTxn(outer).error().code, ErrorCode::kTooManyOps);
}

TEST(ValidateTxnTest, RefusesEmptyKeys) {
  TxnRequest txn;
  txn.success.push_back(Op::Put("", "v"));
  EXPECT_EQ(ValidateTxn(txn).error().code, ErrorCode::kInvalidArgument);
  TxnRequest compare;
  compare.compares.push_back(Compare::Value("", CompareOp::kEqual, "x"));
  EXPECT_EQ(ValidateTxn(compare).error().code, ErrorCode::kInvalidArgument);
}

TEST(BackoffTest, GrowsExponentiallyUpToTheCapWithJitterFromTheSource) {
  BackoffOptions policy{milliseconds(50), milliseconds(1000), 2.0, 0.5};
  EXPECT_EQ(BackoffDelay(policy, 1, 0.0), milliseconds(50));
  EXPECT_EQ(BackoffDelay(policy, 2, 0.0), milliseconds(100));
  EXPECT_EQ(BackoffDelay(policy, 3, 0.0), milliseconds(200));
  EXPECT_EQ(BackoffDelay(policy, 10, 0.0), milliseconds(1000));
  EXPECT_EQ(BackoffDelay(policy, 1000, 0.0), milliseconds(1000));
  // Jitter takes up to half off.
  EXPECT_EQ(BackoffDelay(policy, 2, 0.5), milliseconds(75));
  EXPECT_EQ(BackoffDelay(policy, 10, 0.999), milliseconds(500));
  auto random = DefaultRandomSource();
  for (int i = 0; i < 100; ++i) {
    double r = random();
    EXPECT_GE(r, 0.0);
    EXPECT_LT(r, 1.0);
  }
}

struct StatusCase {
  grpc::StatusCode code;
  std::string message;
  ErrorCode expected;
};

TEST(ErrorFromStatusTest, MapsEtcdAndGrpcErrorsToCodes) {
  const StatusCase cases[] = {
      {grpc::StatusCode::UNAVAILABLE, "etcdserver: no leader", ErrorCode::kUnavailable},
      {grpc::StatusCode::UNAVAILABLE,
       "failed to connect to all addresses; last error: UNKNOWN: ipv4:127.0.0.1:1: Failed to "
       "connect to remote host: Connection refused",
       ErrorCode::kUnavailable},
      {grpc::StatusCode::UNAVAILABLE,
       "failed to connect to all addresses; last error: UNKNOWN: ipv4:127.0.0.1:2379: Ssl "
       "handshake failed: SSL_ERROR_SSL: error:0A000086:SSL routines::certificate verify failed",
       ErrorCode::kTlsFailed},
      {grpc::StatusCode::DEADLINE_EXCEEDED, "Deadline Exceeded", ErrorCode::kDeadlineExceeded},
      {grpc::StatusCode::OUT_OF_RANGE, "etcdserver: mvcc: required revision has been compacted",
       ErrorCode::kCompacted},
      {grpc::StatusCode::OUT_OF_RANGE, "etcdserver: mvcc: required revision is a future revision",
       ErrorCode::kInvalidArgument},
      {grpc::StatusCode::INVALID_ARGUMENT, "etcdserver: too many operations in txn request",
       ErrorCode::kTooManyOps},
      {grpc::StatusCode::INVALID_ARGUMENT, "etcdserver: duplicate key given in txn request",
       ErrorCode::kInvalidArgument},
      {grpc::StatusCode::INVALID_ARGUMENT,
       "etcdserver: authentication failed, invalid user ID or password", ErrorCode::kAuthFailed},
      {grpc::StatusCode::PERMISSION_DENIED, "etcdserver: permission denied",
       ErrorCode::kPermissionDenied},
      {grpc::StatusCode::UNAUTHENTICATED, "etcdserver: invalid auth token", ErrorCode::kAuthFailed},
      {grpc::StatusCode::NOT_FOUND, "etcdserver: requested lease not found", ErrorCode::kNotFound},
      {grpc::StatusCode::FAILED_PRECONDITION, "etcdserver: authentication is not enabled",
       ErrorCode::kFailedPrecondition},
      {grpc::StatusCode::RESOURCE_EXHAUSTED, "etcdserver: mvcc: database space exceeded",
       ErrorCode::kResourceExhausted},
      {grpc::StatusCode::INVALID_ARGUMENT, "etcdserver: request is too large",
       ErrorCode::kInvalidArgument},
      {grpc::StatusCode::RESOURCE_EXHAUSTED,
       "grpc: received message larger than max (2621540 vs. 2097152)", ErrorCode::kInvalidArgument},
      {grpc::StatusCode::UNKNOWN, "election: not leader", ErrorCode::kFailedPrecondition},
      {grpc::StatusCode::UNKNOWN, "election: no leader", ErrorCode::kNotFound},
      {grpc::StatusCode::UNKNOWN, "something odd", ErrorCode::kInternal},
      {grpc::StatusCode::CANCELLED, "Cancelled", ErrorCode::kCancelled},
      {grpc::StatusCode::UNIMPLEMENTED, "", ErrorCode::kInternal},
  };
  for (const StatusCase& c : cases) {
    Error error = ErrorFromStatus(grpc::Status(c.code, c.message));
    EXPECT_EQ(error.code, c.expected) << c.message;
    EXPECT_NE(error.message.find(c.message), std::string::npos) << c.message;
  }
  EXPECT_NE(ErrorFromStatus(grpc::Status(grpc::StatusCode::UNAVAILABLE, "Ssl handshake failed"))
                .message.find("TLS"),
            std::string::npos);
  // Plain-text channels: gRPC's connection handshakers also speak of "handshake".
  EXPECT_EQ(ErrorFromStatus(grpc::Status(grpc::StatusCode::UNAVAILABLE,
                                         "failed to connect to all addresses; last error: "
                                         "UNKNOWN: ipv4:127.0.0.1:1: handshaker shutdown"))
                .code,
            ErrorCode::kUnavailable);
  EXPECT_EQ(ErrorFromStatus(grpc::Status(grpc::StatusCode::UNAVAILABLE, "Ssl handshake failed"),
                            /*tls=*/false)
                .code,
            ErrorCode::kUnavailable);
}

TEST(ErrorFromStatusTest, ClassifiesTokenAndNeverAppliedFailures) {
  EXPECT_TRUE(IsInvalidTokenStatus(
      grpc::Status(grpc::StatusCode::UNAUTHENTICATED, "etcdserver: invalid auth token")));
  EXPECT_TRUE(IsInvalidTokenStatus(
      grpc::Status(grpc::StatusCode::INVALID_ARGUMENT, "etcdserver: user name is empty")));
  EXPECT_TRUE(IsInvalidTokenStatus(grpc::Status(grpc::StatusCode::INVALID_ARGUMENT,
                                                "etcdserver: revision of auth store is old")));
  EXPECT_FALSE(IsInvalidTokenStatus(
      grpc::Status(grpc::StatusCode::PERMISSION_DENIED, "etcdserver: permission denied")));

  EXPECT_TRUE(IsNeverAppliedStatus(grpc::Status(
      grpc::StatusCode::UNAVAILABLE, "failed to connect to all addresses; last error: ...")));
  EXPECT_TRUE(IsNeverAppliedStatus(
      grpc::Status(grpc::StatusCode::UNAUTHENTICATED, "etcdserver: invalid auth token")));
  EXPECT_TRUE(IsNeverAppliedStatus(
      grpc::Status(grpc::StatusCode::RESOURCE_EXHAUSTED, "etcdserver: too many requests")));
  // Lost after sending: the outcome is unknown.
  EXPECT_FALSE(IsNeverAppliedStatus(grpc::Status(grpc::StatusCode::UNAVAILABLE, "Socket closed")));
  EXPECT_FALSE(IsNeverAppliedStatus(
      grpc::Status(grpc::StatusCode::UNAVAILABLE, "etcdserver: request timed out")));
  EXPECT_FALSE(IsNeverAppliedStatus(grpc::Status(grpc::StatusCode::DEADLINE_EXCEEDED, "")));

  EXPECT_EQ(ErrorFromWatchCancel("etcdserver: permission denied").code,
            ErrorCode::kPermissionDenied);
  EXPECT_EQ(ErrorFromWatchCancel(
                "rpc error: code = Unauthenticated desc = etcdserver: invalid auth token")
                .code,
            ErrorCode::kAuthFailed);
  EXPECT_EQ(ErrorFromWatchCancel("rpc error: code = Unavailable desc = etcdserver: no leader").code,
            ErrorCode::kUnavailable);
  EXPECT_EQ(ErrorFromWatchCancel("").code, ErrorCode::kCancelled);
}

TEST(ConvertTest, TxnRequestBecomesTheEtcdMessage) {
  TxnRequest txn;
  txn.compares.push_back(Compare::ModRevision("/meta/a", CompareOp::kLess, 42));
  txn.compares.push_back(Compare::Value("/meta/b", CompareOp::kNotEqual, "x"));
  txn.compares.push_back(Compare::Version("/c", CompareOp::kGreater, 3));
  txn.compares.push_back(Compare::CreateRevision("/d", CompareOp::kEqual, 0));
  txn.success.push_back(Op::Put("/a", "1", 7));
  txn.success.push_back(Op::Delete("/p/", "/p0"));
  txn.failure.push_back(Op::Range(RangeRequest::Prefix("/q/")));
  TxnRequest nested;
  nested.success.push_back(Op::Put("/n", "2"));
  txn.failure.push_back(Op::Txn(nested));

  etcdserverpb::TxnRequest proto;
  ToProto(std::move(txn), &proto);
  ASSERT_EQ(proto.compare_size(), 4);
  EXPECT_EQ(proto.compare(0).target(), etcdserverpb::Compare::MOD);
  EXPECT_EQ(proto.compare(0).result(), etcdserverpb::Compare::LESS);
  EXPECT_EQ(proto.compare(0).mod_revision(), 42);
  EXPECT_EQ(proto.compare(1).target(), etcdserverpb::Compare::VALUE);
  EXPECT_EQ(proto.compare(1).result(), etcdserverpb::Compare::NOT_EQUAL);
  EXPECT_EQ(proto.compare(1).value(), "x");
  EXPECT_EQ(proto.compare(2).target(), etcdserverpb::Compare::VERSION);
  EXPECT_EQ(proto.compare(2).result(), etcdserverpb::Compare::GREATER);
  EXPECT_EQ(proto.compare(2).version(), 3);
  EXPECT_EQ(proto.compare(3).target(), etcdserverpb::Compare::CREATE);
  ASSERT_EQ(proto.success_size(), 2);
  EXPECT_EQ(proto.success(0).request_put().key(), "/a");
  EXPECT_EQ(proto.success(0).request_put().value(), "1");
  EXPECT_EQ(proto.success(0).request_put().lease(), 7);
  EXPECT_EQ(proto.success(1).request_delete_range().range_end(), "/p0");
  ASSERT_EQ(proto.failure_size(), 2);
  EXPECT_EQ(proto.failure(0).request_range().key(), "/q/");
  EXPECT_EQ(proto.failure(0).request_range().range_end(), "/q0");
  EXPECT_EQ(proto.failure(1).request_txn().success(0).request_put().key(), "/n");
}

TEST(ConvertTest, TxnResponseComesBackWithEveryOpResult) {
  etcdserverpb::TxnResponse proto;
  proto.mutable_header()->set_revision(99);
  proto.set_succeeded(true);
  auto* range = proto.add_responses()->mutable_response_range();
  auto* kv = range->add_kvs();
  kv->set_key("/a");
  kv->set_value("1");
  kv->set_create_revision(5);
  kv->set_mod_revision(9);
  kv->set_version(3);
  kv->set_lease(11);
  range->set_count(4);
  range->set_more(true);
  proto.add_responses()->mutable_response_delete_range()->set_deleted(2);
  proto.add_responses()->mutable_response_put();
  TxnResponse response = TakeTxnResponse(&proto);
  EXPECT_TRUE(response.succeeded);
  EXPECT_EQ(response.revision, 99);
  ASSERT_EQ(response.responses.size(), 3u);
  EXPECT_EQ(response.responses[0].type, Op::Type::kRange);
  EXPECT_EQ(response.responses[0].kvs.at(0), (KeyValue{"/a", "1", 5, 9, 3, 11}));
  EXPECT_EQ(response.responses[0].count, 4);
  EXPECT_TRUE(response.responses[0].more);
  EXPECT_EQ(response.responses[1].type, Op::Type::kDelete);
  EXPECT_EQ(response.responses[1].deleted, 2);
  EXPECT_EQ(response.responses[2].type, Op::Type::kPut);
}

TEST(GrpcEtcdClientTest, RefusesBadOptions) {
  SystemClock clock;
  GrpcEtcdClientOptions none;
  auto no_endpoints = NewGrpcEtcdClient(none, clock);
  ASSERT_FALSE(no_endpoints.ok());
  EXPECT_EQ(no_endpoints.error().code, ErrorCode::kInvalidArgument);

  GrpcEtcdClientOptions mixed;
  mixed.endpoints = {"http://127.0.0.1:1", "https://127.0.0.1:2"};
  EXPECT_EQ(NewGrpcEtcdClient(mixed, clock).error().code, ErrorCode::kInvalidArgument);

  GrpcEtcdClientOptions missing_ca;
  missing_ca.endpoints = {"127.0.0.1:1"};
  missing_ca.tls = TlsOptions{"/nonexistent/ca.pem", "", "", ""};
  auto unreadable = NewGrpcEtcdClient(missing_ca, clock);
  ASSERT_FALSE(unreadable.ok());
  EXPECT_EQ(unreadable.error().code, ErrorCode::kInvalidArgument);
  EXPECT_NE(unreadable.error().message.find("/nonexistent/ca.pem"), std::string::npos);

  GrpcEtcdClientOptions cert_without_key;
  cert_without_key.endpoints = {"127.0.0.1:1"};
  cert_without_key.tls = TlsOptions{"", "/tmp/cert.pem", "", ""};
  EXPECT_EQ(NewGrpcEtcdClient(cert_without_key, clock).error().code, ErrorCode::kInvalidArgument);
}

// Port 1 on loopback refuses connections: nothing listens there.
TEST(GrpcEtcdClientTest, DialFailsClearlyWhenNothingListens) {
  SystemClock clock;
  GrpcEtcdClientOptions options;
  options.endpoints = {"127.0.0.1:1"};
  options.dial_timeout = milliseconds(300);
  options.backoff = BackoffOptions{milliseconds(1), milliseconds(5), 2.0, 0.0};
  auto client = NewGrpcEtcdClient(options, clock);
  ASSERT_FALSE(client.ok());
  EXPECT_EQ(client.error().code, ErrorCode::kUnavailable) << client.error().ToString();
  EXPECT_NE(client.error().message.find("127.0.0.1:1"), std::string::npos)
      << client.error().message;
}

TEST(GrpcEtcdClientTest, RefusesAnOversizedTransactionBeforeSending) {
  SystemClock clock;
  GrpcEtcdClientOptions options;
  options.endpoints = {"127.0.0.1:1"};  // never reached: the refusal comes first
  options.dial_timeout = milliseconds(0);
  auto client = NewGrpcEtcdClient(options, clock);
  ASSERT_TRUE(client.ok()) << client.error().ToString();
  std::promise<EtcdResult<TxnResponse>> done;
  (*client)->TxnAsync(PutsTxn(129), {}, [&done](EtcdResult<TxnResponse> result) {
    done.set_value(std::move(result));
  });
  auto result = done.get_future().get();
  ASSERT_FALSE(result.ok());
  EXPECT_EQ(result.error().code, ErrorCode::kTooManyOps) << result.error().ToString();
  auto sync = (*client)->Txn(PutsTxn(200));
  EXPECT_EQ(sync.error().code, ErrorCode::kTooManyOps);
  EXPECT_EQ((*client)->PendingTxns(), 0u);
}

}  // namespace
}  // namespace zk2etcd::etcd

// GrpcEtcdClient against real etcd 3.4 servers (testing/ fixtures): TLS, authentication and
// token renewal, the transaction limit and fencing, paged reads, watches across kill -9, leases,
// elections with a leader process that dies, and failover between endpoints.
#include <grpcpp/grpcpp.h>
#include <gtest/gtest.h>

#include <atomic>
#include <future>
#include <mutex>
#include <thread>

#include "etcd/etcdserver/etcdserverpb/rpc.grpc.pb.h"
#include "etcd/grpc_convert.h"
#include "etcd/grpc_etcd_client.h"
#include "etcd/recording_observer.h"
#include "ops/log.h"
#include "testing/delaying_proxy.h"
#include "testing/loopback.h"
#include "testing/process.h"
#include "testing/server_support.h"
#include "testing/shared_servers.h"
#include "testing/temp_dir.h"

namespace zk2etcd::etcd {
namespace {

using std::chrono::milliseconds;
using std::chrono::seconds;
using testing::EtcdOptions;
using testing::EtcdServer;
using testing::FixtureResult;
using testing::SharedEtcd;
using testing::UniquePath;
using SteadyClock = std::chrono::steady_clock;

// Polls `done` every 10 ms until it holds or `timeout` passes.
bool WaitFor(const std::function<bool()>& done, milliseconds timeout) {
  const auto deadline = SteadyClock::now() + timeout;
  while (!done()) {
    if (SteadyClock::now() > deadline) return false;
    std::this_thread::sleep_for(milliseconds(10));
  }
  return true;
}

GrpcEtcdClientOptions OptionsFor(std::vector<std::string> endpoints, OpObserver* observer) {
  GrpcEtcdClientOptions options;
  options.endpoints = std::move(endpoints);
  options.observer = observer;
  options.dial_timeout = seconds(10);
  options.call_timeout = seconds(10);
  return options;
}

std::unique_ptr<EtcdClient> Connect(GrpcEtcdClientOptions options) {
  static SystemClock clock;
  auto client = NewGrpcEtcdClient(std::move(options), clock);
  EXPECT_TRUE(client.ok()) << client.error().ToString();
  return client.ok() ? std::move(client).value() : nullptr;
}

// Collects watch events; thread-safe.
struct WatchLog {
  std::mutex mutex;
  std::vector<WatchEvent> events;
  std::optional<Error> error;
  EtcdClient::WatchCallback Callback() {
    return [this](EtcdResult<WatchEvents> result) {
      std::lock_guard lock(mutex);
      if (!result.ok()) {
        error = result.error();
        return;
      }
      for (auto& event : result->events) events.push_back(std::move(event));
    };
  }
  size_t size() {
    std::lock_guard lock(mutex);
    return events.size();
  }
  bool HasError() {
    std::lock_guard lock(mutex);
    return error.has_value();
  }
  std::vector<int64_t> Revisions() {
    std::lock_guard lock(mutex);
    std::vector<int64_t> revisions;
    for (const auto& event : events) revisions.push_back(event.kv.mod_revision);
    return revisions;
  }
};

std::vector<int64_t> Consecutive(int64_t first, int64_t count) {
  std::vector<int64_t> revisions;
  for (int64_t i = 0; i < count; ++i) revisions.push_back(first + i);
  return revisions;
}

TxnRequest Puts(const std::string& prefix, int first, int count) {
  TxnRequest txn;
  for (int i = first; i < first + count; ++i) {
    char name[16];
    std::snprintf(name, sizeof(name), "%06d", i);
    txn.success.push_back(Op::Put(prefix + "/" + name, "value-" + std::to_string(i)));
  }
  return txn;
}

// ---------------------------------------------------------------------------------------------
// 1. TLS

TEST(GrpcEtcdClientIntegrationTest, TlsWithClientCertificatesAndRefusalOfAnotherCa) {
  EtcdOptions server_options;
  server_options.tls = true;
  std::unique_ptr<EtcdServer> server;
  ASSERT_FIXTURE_OK_AND_ASSIGN(server, EtcdServer::Start(server_options));
  const auto& files = server->tls();

  GrpcEtcdClientOptions good = OptionsFor({server->client_url()}, nullptr);
  good.tls =
      TlsOptions{files.ca_file, files.client_cert_file, files.client_key_file, files.server_name};
  auto client = Connect(good);
  ASSERT_NE(client, nullptr);
  ASSERT_TRUE(client->Put("/tls/key", "secret").ok());
  auto read = client->Range(RangeRequest{"/tls/key", "", 0, 0, false, false});
  ASSERT_TRUE(read.ok()) << read.error().ToString();
  ASSERT_EQ(read->kvs.size(), 1u);
  EXPECT_EQ(read->kvs[0].value, "secret");

  SystemClock clock;
  GrpcEtcdClientOptions wrong_ca = good;
  wrong_ca.tls->ca_file = files.other_ca_file;
  wrong_ca.dial_timeout = seconds(1);
  auto refused = NewGrpcEtcdClient(wrong_ca, clock);
  ASSERT_FALSE(refused.ok());
  EXPECT_EQ(refused.error().code, ErrorCode::kTlsFailed) << refused.error().ToString();
  EXPECT_NE(refused.error().message.find("TLS"), std::string::npos) << refused.error().message;
  EXPECT_NE(refused.error().message.find("certificate"), std::string::npos)
      << refused.error().message;
  std::printf("wrong CA: %s\n", refused.error().ToString().c_str());

  GrpcEtcdClientOptions wrong_name = good;
  wrong_name.tls->server_name_override = "not-the-server.example";
  wrong_name.dial_timeout = seconds(1);
  auto misnamed = NewGrpcEtcdClient(wrong_name, clock);
  ASSERT_FALSE(misnamed.ok());
  EXPECT_EQ(misnamed.error().code, ErrorCode::kTlsFailed) << misnamed.error().ToString();

  GrpcEtcdClientOptions plain = OptionsFor({server->endpoint()}, nullptr);
  plain.dial_timeout = seconds(1);
  auto plaintext = NewGrpcEtcdClient(plain, clock);
  ASSERT_FALSE(plaintext.ok()) << "plain text must not reach a TLS server";
  std::printf("plain text to TLS: %s\n", plaintext.error().ToString().c_str());
}

// ---------------------------------------------------------------------------------------------
// 2. Authentication

TEST(GrpcEtcdClientIntegrationTest, AuthLimitsTheUserToItsPrefixAndRenewsTheToken) {
  EtcdOptions server_options;
  server_options.auth = testing::EtcdAuthOptions{};
  server_options.auth->prefix = "/dubbo";
  std::unique_ptr<EtcdServer> server;
  ASSERT_FIXTURE_OK_AND_ASSIGN(server, EtcdServer::Start(server_options));

  SystemClock clock;
  GrpcEtcdClientOptions bad = OptionsFor({server->endpoint()}, nullptr);
  bad.user = server_options.auth->user;
  bad.password = "wrong";
  auto refused = NewGrpcEtcdClient(bad, clock);
  ASSERT_FALSE(refused.ok());
  EXPECT_EQ(refused.error().code, ErrorCode::kAuthFailed) << refused.error().ToString();

  RecordingObserver observer;
  GrpcEtcdClientOptions options = OptionsFor({server->endpoint()}, &observer);
  ops::Logger logger(std::make_shared<ops::StderrLogSink>(), ops::LogFormat::kText,
                     ops::LogLevel::kInfo, clock);
  options.logger = &logger;
  options.user = server_options.auth->user;
  options.password = server_options.auth->password;
  auto client = Connect(options);
  ASSERT_NE(client, nullptr);
  EXPECT_EQ(observer.Count("authenticate", "success"), 1);

  EXPECT_TRUE(client->Put("/dubbo/inside", "1").ok());
  auto outside = client->Put("/elsewhere", "1");
  ASSERT_FALSE(outside.ok());
  EXPECT_EQ(outside.error().code, ErrorCode::kPermissionDenied) << outside.error().ToString();
  EXPECT_EQ(client->Range(RangeRequest::Prefix("/elsewhere")).error().code,
            ErrorCode::kPermissionDenied);
  TxnRequest mixed;
  mixed.success = {Op::Put("/dubbo/a", "1"), Op::Put("/other/b", "1")};
  EXPECT_EQ(client->Txn(mixed).error().code, ErrorCode::kPermissionDenied);
  EXPECT_TRUE(client->Range(RangeRequest::Prefix("/dubbo/")).ok());
  WatchLog denied;
  auto watch = client->Watch(WatchRequest::Prefix("/elsewhere/", 0), denied.Callback());
  ASSERT_TRUE(WaitFor([&] { return denied.HasError(); }, seconds(10)));
  EXPECT_EQ(denied.error->code, ErrorCode::kPermissionDenied);

  // etcd refuses a watch with an expired token as "permission denied", so the client renewed
  // the token once before giving up on that watch.
  EXPECT_EQ(observer.Count("authenticate", "success"), 2);

  // Disabling and re-enabling auth drops every token: the next call must authenticate again
  // and succeed.
  ASSERT_TRUE(server->Etcdctl({"auth", "disable"}).ok());
  ASSERT_TRUE(server->Etcdctl({"auth", "enable"}).ok());
  auto after_reenable = client->Put("/dubbo/after-reenable", "2");
  ASSERT_TRUE(after_reenable.ok()) << after_reenable.error().ToString();
  EXPECT_EQ(observer.Count("authenticate", "success"), 3);

  // A watch whose stream must be re-created after the token was invalidated: etcd answers the
  // new stream "permission denied", the client authenticates again and resumes the watch. (A
  // restart alone does not invalidate tokens: etcd replays them from its log.)
  WatchLog log;
  auto range = client->Range(RangeRequest::Prefix("/dubbo/"));
  ASSERT_TRUE(range.ok());
  auto inside_watch =
      client->Watch(WatchRequest::Prefix("/dubbo/w/", range->revision + 1), log.Callback());
  ASSERT_TRUE(client->Put("/dubbo/w/1", "a").ok());
  ASSERT_TRUE(WaitFor([&] { return log.size() == 1; }, seconds(10)));
  ASSERT_TRUE(server->Etcdctl({"auth", "disable"}).ok());
  ASSERT_TRUE(server->Etcdctl({"auth", "enable"}).ok());
  server->Kill9();
  ASSERT_FIXTURE_OK(server->Restart());
  ASSERT_TRUE(WaitFor([&] { return observer.Count("authenticate", "success") == 4; }, seconds(20)))
      << "the watch renews the token when it reconnects";
  CallOptions retry;
  retry.safe_to_retry = true;
  auto after_restart = client->Put("/dubbo/w/2", "b", 0, retry);
  ASSERT_TRUE(after_restart.ok()) << after_restart.error().ToString();
  ASSERT_TRUE(WaitFor([&] { return log.size() == 2; }, seconds(20)));
  EXPECT_FALSE(log.HasError()) << log.error->ToString();
  EXPECT_EQ(log.Revisions()[1], after_restart->revision);
  EXPECT_EQ(observer.Count("authenticate", "success"), 4);
}

// ---------------------------------------------------------------------------------------------
// 3. The transaction limit and fencing

TEST(GrpcEtcdClientIntegrationTest, OversizedTransactionsAreRefusedBeforeSending) {
  EtcdServer* server = nullptr;
  ASSERT_FIXTURE_OK_AND_ASSIGN(server, SharedEtcd());
  RecordingObserver observer;
  auto client = Connect(OptionsFor({server->endpoint()}, &observer));
  ASSERT_NE(client, nullptr);
  const std::string prefix = UniquePath("limit");
  const int64_t before = client->Status()->revision;

  auto refused = client->Txn(Puts(prefix, 0, 129));
  ASSERT_FALSE(refused.ok());
  EXPECT_EQ(refused.error().code, ErrorCode::kTooManyOps);
  EXPECT_EQ(observer.Count("txn", "too_many_ops"), 1);
  EXPECT_EQ(client->Status()->revision, before) << "nothing reached etcd";
  EXPECT_EQ(*CountRange(*client, RangeRequest::Prefix(prefix + "/")), 0);

  // Exactly the limit passes, compares included.
  TxnRequest full = Puts(prefix, 0, 128);
  for (int i = 0; i < 128; ++i) {
    full.compares.push_back(
        Compare::Version(prefix + "/meta" + std::to_string(i), CompareOp::kEqual, 0));
  }
  auto accepted = client->Txn(full);
  ASSERT_TRUE(accepted.ok()) << accepted.error().ToString();
  EXPECT_TRUE(accepted->succeeded);
  EXPECT_EQ(accepted->revision, before + 1);

  // etcd itself refuses 129, so the constant is right.
  auto raw = etcdserverpb::KV::NewStub(
      grpc::CreateChannel(server->endpoint(), grpc::InsecureChannelCredentials()));
  etcdserverpb::TxnRequest too_many;
  for (int i = 0; i < 129; ++i) {
    auto* put = too_many.add_success()->mutable_request_put();
    put->set_key(prefix + "/raw" + std::to_string(i));
  }
  etcdserverpb::TxnResponse ignored;
  grpc::ClientContext context;
  context.set_deadline(std::chrono::system_clock::now() + seconds(10));
  grpc::Status status = raw->Txn(&context, too_many, &ignored);
  EXPECT_EQ(status.error_code(), grpc::StatusCode::INVALID_ARGUMENT);
  EXPECT_EQ(ErrorFromStatus(status).code, ErrorCode::kTooManyOps) << status.error_message();
}

TEST(GrpcEtcdClientIntegrationTest, AFencedPutThatLosesItsCompareChangesNothing) {
  EtcdServer* server = nullptr;
  ASSERT_FIXTURE_OK_AND_ASSIGN(server, SharedEtcd());
  auto client = Connect(OptionsFor({server->endpoint()}, nullptr));
  ASSERT_NE(client, nullptr);
  const std::string key = UniquePath("fenced");
  const std::string meta = "/zk2etcd/meta" + key;
  auto fenced = [&](const std::string& mzxid, const std::string& value) {
    TxnRequest txn;
    txn.compares.push_back(Compare::Value(meta, CompareOp::kLess, mzxid));
    txn.success = {Op::Put(key, value), Op::Put(meta, mzxid)};
    CallOptions options;
    options.safe_to_retry = true;  // fenced: a repeat cannot do harm
    return client->Txn(txn, options);
  };
  TxnRequest create;
  create.success = {Op::Put(key, "v9"), Op::Put(meta, "0000000000000009")};
  auto created = client->Txn(create);
  ASSERT_TRUE(created.ok());

  auto stale = fenced("0000000000000008", "v8");
  ASSERT_TRUE(stale.ok()) << stale.error().ToString();
  EXPECT_FALSE(stale->succeeded);
  EXPECT_EQ(stale->revision, created->revision) << "a lost compare writes nothing";
  auto value = client->Range(RangeRequest{key, "", 0, 0, false, false});
  ASSERT_TRUE(value.ok());
  EXPECT_EQ(value->kvs.at(0).value, "v9");
  EXPECT_EQ(value->kvs.at(0).mod_revision, created->revision);

  auto newer = fenced("0000000000000010", "v10");
  ASSERT_TRUE(newer.ok());
  EXPECT_TRUE(newer->succeeded);
  EXPECT_EQ(client->Range(RangeRequest{key, "", 0, 0, false, false})->kvs.at(0).value, "v10");

  // A fence on mod_revision: only if nobody wrote the key since we read it.
  TxnRequest by_revision;
  by_revision.compares.push_back(Compare::ModRevision(key, CompareOp::kEqual, created->revision));
  by_revision.success = {Op::Put(key, "lost")};
  auto lost = client->Txn(by_revision);
  ASSERT_TRUE(lost.ok());
  EXPECT_FALSE(lost->succeeded);
}

// ---------------------------------------------------------------------------------------------
// Reads, windows, compaction, leases

TEST(GrpcEtcdClientIntegrationTest, PagedReadsAndManyTransactionsInFlight) {
  EtcdServer* server = nullptr;
  ASSERT_FIXTURE_OK_AND_ASSIGN(server, SharedEtcd());
  RecordingObserver observer;
  GrpcEtcdClientOptions options = OptionsFor({server->endpoint()}, &observer);
  options.max_txns_in_flight = 3;
  auto client = Connect(options);
  ASSERT_NE(client, nullptr);
  const std::string prefix = UniquePath("paged");

  // 2,500 keys as 20 transactions of 125, all submitted at once.
  constexpr int kKeys = 2500;
  std::atomic<int> done{0};
  std::atomic<int> failed{0};
  std::atomic<size_t> max_pending{0};
  for (int first = 0; first < kKeys; first += 125) {
    client->TxnAsync(Puts(prefix, first, 125), {}, [&](EtcdResult<TxnResponse> result) {
      if (!result.ok() || !result->succeeded) ++failed;
      ++done;
    });
    max_pending = std::max(max_pending.load(), client->PendingTxns());
  }
  ASSERT_TRUE(WaitFor([&] { return done.load() == kKeys / 125; }, seconds(60)));
  EXPECT_EQ(failed.load(), 0);
  EXPECT_GT(max_pending.load(), 3u);
  EXPECT_EQ(client->PendingTxns(), 0u);
  EXPECT_EQ(observer.Count("txn", "success"), kKeys / 125);

  int pages = 0;
  std::vector<std::string> keys;
  auto revision =
      ForEachPage(*client, RangeRequest::Prefix(prefix + "/"), 1000, [&](RangeResponse& page) {
        if (pages++ == 0) {
          // Not visible to the next pages: they read at the first's
          // revision.
          EXPECT_TRUE(client->Put(prefix + "/zzz-late", "x").ok());
          EXPECT_TRUE(client->Delete(prefix + "/002000").ok());
        }
        for (auto& kv : page.kvs) keys.push_back(kv.key);
        return true;
      });
  ASSERT_TRUE(revision.ok()) << revision.error().ToString();
  EXPECT_EQ(pages, 3);
  ASSERT_EQ(keys.size(), static_cast<size_t>(kKeys));
  EXPECT_TRUE(std::is_sorted(keys.begin(), keys.end()));
  EXPECT_EQ(keys.back(), prefix + "/002499");

  RangeRequest keys_only = RangeRequest::Prefix(prefix + "/");
  keys_only.keys_only = true;
  auto now = RangeAll(*client, keys_only, 700);
  ASSERT_TRUE(now.ok());
  EXPECT_EQ(now->kvs.size(), static_cast<size_t>(kKeys));  // one added, one deleted
  EXPECT_TRUE(now->kvs.front().value.empty());
  EXPECT_EQ(*CountRange(*client, RangeRequest::Prefix(prefix + "/")), kKeys);
}

// A proxy in front of `server` that delays every chunk by `one_way` and holds none.
auto StartDelayingProxy(EtcdServer& server, milliseconds one_way) {
  testing::DelayingProxyOptions options;
  options.one_way_delay = one_way;
  options.hold_fraction = 0;
  return testing::DelayingTcpProxy::Start(server.client_port(), options);
}

// Sends 12 transactions of 10 puts each at once under a new prefix named after `name`, and
// checks that all of them applied.
void SendTwelveTransactions(EtcdClient& client, const std::string& name) {
  const std::string prefix = UniquePath(name);
  constexpr int kTxns = 12;
  std::atomic<int> done{0};
  std::atomic<int> failed{0};
  for (int txn = 0; txn < kTxns; ++txn) {
    client.TxnAsync(Puts(prefix, txn * 10, 10), {}, [&](EtcdResult<TxnResponse> result) {
      if (!result.ok() || !result->succeeded) ++failed;
      ++done;
    });
  }
  ASSERT_TRUE(WaitFor([&] { return done.load() == kTxns; }, seconds(30)));
  EXPECT_EQ(failed.load(), 0);
  EXPECT_EQ(*CountRange(client, RangeRequest::Prefix(prefix + "/")), kTxns * 10);
}

// Transactions are spread over txn_connections connections to the endpoint (a proxy in
// front of etcd counts them); every other call uses the first.
TEST(GrpcEtcdClientIntegrationTest, TransactionsAreSpreadOverTheConfiguredConnections) {
  EtcdServer* server = nullptr;
  ASSERT_FIXTURE_OK_AND_ASSIGN(server, SharedEtcd());
  for (const int connections : {1, 3}) {
    SCOPED_TRACE(connections);
    std::unique_ptr<testing::DelayingTcpProxy> proxy;
    ASSERT_FIXTURE_OK_AND_ASSIGN(proxy, StartDelayingProxy(*server, milliseconds(0)));
    GrpcEtcdClientOptions options = OptionsFor({proxy->address()}, nullptr);
    options.txn_connections = connections;
    options.far_txn_connections = connections;  // however long the dial takes on a busy machine
    options.max_txns_in_flight = 6;
    auto client = Connect(options);
    ASSERT_NE(client, nullptr);
    SendTwelveTransactions(*client, "spread");
    EXPECT_EQ(proxy->stats().connections, static_cast<uint64_t>(connections));
  }
}

// A dial that takes far_dial or longer (here at least the proxy's 20 ms round trip) opens
// far_txn_connections for transactions; a shorter one keeps txn_connections. Either way they
// connect before any transaction is sent (in the background, off the dialling thread).
TEST(GrpcEtcdClientIntegrationTest, AFarEtcdGetsMoreConnectionsForTransactions) {
  EtcdServer* server = nullptr;
  ASSERT_FIXTURE_OK_AND_ASSIGN(server, SharedEtcd());
  for (const auto& [far_dial, expected] :
       {std::pair{milliseconds(5), 6}, std::pair{milliseconds(60'000), 2}}) {
    SCOPED_TRACE(far_dial.count());
    std::unique_ptr<testing::DelayingTcpProxy> proxy;
    ASSERT_FIXTURE_OK_AND_ASSIGN(proxy, StartDelayingProxy(*server, milliseconds(10)));
    GrpcEtcdClientOptions options = OptionsFor({proxy->address()}, nullptr);
    options.txn_connections = 2;
    options.far_txn_connections = 6;
    options.far_dial = far_dial;
    options.max_txns_in_flight = 12;
    auto client = Connect(options);
    ASSERT_NE(client, nullptr);
    EXPECT_EQ(client->Far(), expected == 6);
    // The dial's connection, which carries the first share of transactions, and the others.
    EXPECT_TRUE(WaitFor(
        [&] { return proxy->stats().connections >= static_cast<uint64_t>(expected); }, seconds(10)))
        << proxy->stats().connections;
    SendTwelveTransactions(*client, "far");
    EXPECT_EQ(proxy->stats().connections, static_cast<uint64_t>(expected));
  }
}

TEST(GrpcEtcdClientIntegrationTest, CompactedRevisionsAreReportedWithTheCompactRevision) {
  EtcdServer* server = nullptr;
  ASSERT_FIXTURE_OK_AND_ASSIGN(server, SharedEtcd());
  auto client = Connect(OptionsFor({server->endpoint()}, nullptr));
  ASSERT_NE(client, nullptr);
  const std::string key = UniquePath("compacted");
  auto first = client->Put(key, "1");
  auto second = client->Put(key, "2");
  ASSERT_TRUE(first.ok() && second.ok());

  auto raw = etcdserverpb::KV::NewStub(
      grpc::CreateChannel(server->endpoint(), grpc::InsecureChannelCredentials()));
  etcdserverpb::CompactionRequest compact;
  compact.set_revision(second->revision);
  compact.set_physical(true);
  etcdserverpb::CompactionResponse compacted;
  grpc::ClientContext context;
  ASSERT_TRUE(raw->Compact(&context, compact, &compacted).ok());

  auto old = client->Range(RangeRequest{key, "", 0, first->revision, false, false});
  ASSERT_FALSE(old.ok());
  EXPECT_EQ(old.error().code, ErrorCode::kCompacted) << old.error().ToString();

  WatchLog log;
  auto watch = client->Watch(WatchRequest::Prefix(key, first->revision), log.Callback());
  ASSERT_TRUE(WaitFor([&] { return log.HasError(); }, seconds(10)));
  EXPECT_EQ(log.error->code, ErrorCode::kCompacted);
  EXPECT_EQ(log.error->compact_revision, second->revision);
}

TEST(GrpcEtcdClientIntegrationTest, LeasesAreKeptAliveUntilRevoked) {
  EtcdServer* server = nullptr;
  ASSERT_FIXTURE_OK_AND_ASSIGN(server, SharedEtcd());
  RecordingObserver observer;
  auto client = Connect(OptionsFor({server->endpoint()}, &observer));
  ASSERT_NE(client, nullptr);
  const std::string key = UniquePath("lease");
  auto lease = client->LeaseGrant(seconds(2));
  ASSERT_TRUE(lease.ok()) << lease.error().ToString();
  EXPECT_EQ(lease->ttl_seconds, 2);
  ASSERT_TRUE(client->Put(key, "ephemeral", lease->id).ok());
  std::promise<Error> lost;
  auto keepalive =
      client->LeaseKeepAlive(lease->id, [&lost](const Error& e) { lost.set_value(e); });
  std::this_thread::sleep_for(milliseconds(3500));  // longer than the TTL
  auto ttl = client->LeaseTimeToLive(lease->id);
  ASSERT_TRUE(ttl.ok());
  EXPECT_GT(ttl->ttl_seconds, 0);
  EXPECT_EQ(ttl->keys, std::vector<std::string>{key});
  EXPECT_GE(observer.Count("lease_keepalive", "success"), 3);

  ASSERT_TRUE(client->LeaseRevoke(lease->id).ok());
  EXPECT_EQ(*CountRange(*client, RangeRequest{key, "", 0, 0, false, false}), 0);
  auto future = lost.get_future();
  ASSERT_EQ(future.wait_for(seconds(5)), std::future_status::ready);
  EXPECT_EQ(future.get().code, ErrorCode::kNotFound);
  EXPECT_EQ(client->LeaseTimeToLive(lease->id)->ttl_seconds, -1);
  EXPECT_EQ(client->LeaseRevoke(lease->id).error().code, ErrorCode::kNotFound);
}

// ---------------------------------------------------------------------------------------------
// 4. A watch across kill -9 and restart

TEST(GrpcEtcdClientIntegrationTest, WatchResumesAcrossKill9WithoutLossOrRepeat) {
  std::unique_ptr<EtcdServer> server;
  ASSERT_FIXTURE_OK_AND_ASSIGN(server, EtcdServer::Start());
  RecordingObserver observer;
  GrpcEtcdClientOptions options = OptionsFor({server->endpoint()}, &observer);
  options.backoff.max = milliseconds(500);
  auto client = Connect(options);
  ASSERT_NE(client, nullptr);
  const int64_t start = client->Status()->revision + 1;
  WatchLog log;
  auto watch = client->Watch(WatchRequest::Prefix("/w/", start), log.Callback());

  constexpr int kBefore = 30;
  constexpr int kAfter = 30;
  for (int i = 0; i < kBefore; ++i) {
    ASSERT_TRUE(client->Put("/w/before-" + std::to_string(i), "x").ok());
  }
  ASSERT_TRUE(WaitFor([&] { return log.size() == kBefore; }, seconds(10)));

  server->Kill9();
  std::this_thread::sleep_for(milliseconds(700));  // the watch notices and starts retrying
  ASSERT_FIXTURE_OK(server->Restart());
  CallOptions retry;
  retry.safe_to_retry = true;
  for (int i = 0; i < kAfter; ++i) {
    auto put = client->Put("/w/after-" + std::to_string(i), "y", 0, retry);
    ASSERT_TRUE(put.ok()) << put.error().ToString();
  }
  ASSERT_TRUE(WaitFor([&] { return log.size() >= kBefore + kAfter; }, seconds(30))) << log.size();
  std::this_thread::sleep_for(milliseconds(200));  // would a repeat show up?
  EXPECT_EQ(log.Revisions(), Consecutive(start, kBefore + kAfter));
  EXPECT_FALSE(log.error);
  EXPECT_GE(observer.Count("watch", "success"), 2) << "the stream was re-created";
  EXPECT_GE(observer.Count("watch", "unavailable"), 1);
}

// ---------------------------------------------------------------------------------------------
// 5. Election with a leader process that dies

TEST(GrpcEtcdClientIntegrationTest, TheOtherCandidateLeadsWithinTheTtlWhenTheLeaderDies) {
  EtcdServer* server = nullptr;
  ASSERT_FIXTURE_OK_AND_ASSIGN(server, SharedEtcd());
  auto client = Connect(OptionsFor({server->endpoint()}, nullptr));
  ASSERT_NE(client, nullptr);
  const std::string election = UniquePath("election");
  constexpr int kTtlSeconds = 3;

  testing::TempDir dir = std::move(testing::TempDir::Create("candidate")).value();
  testing::ChildProcess candidate;
  ASSERT_FIXTURE_OK(candidate.Start({ZK2ETCD_ELECTION_CANDIDATE, server->endpoint(), election,
                                     std::to_string(kTtlSeconds), "the-child"},
                                    dir.File("candidate.log")));
  ASSERT_TRUE(WaitFor(
      [&] {
        auto leader = client->Leader(election);
        return leader.ok() && leader->value == "the-child";
      },
      seconds(30)))
      << testing::TailOfFile(dir.File("candidate.log"));

  std::vector<std::string> observed;
  std::mutex observed_mutex;
  auto observe = client->Observe(election, [&](EtcdResult<KeyValue> kv) {
    std::lock_guard lock(observed_mutex);
    observed.push_back(kv.ok() ? kv->value : "error: " + kv.error().ToString());
  });

  auto lease = client->LeaseGrant(seconds(kTtlSeconds));
  ASSERT_TRUE(lease.ok());
  auto keepalive = client->LeaseKeepAlive(lease->id, [](const Error&) {});
  std::promise<EtcdResult<LeaderKey>> elected;
  auto campaign = client->Campaign(
      election, lease->id, "the-test",
      [&elected](EtcdResult<LeaderKey> leader) { elected.set_value(std::move(leader)); });
  auto future = elected.get_future();
  EXPECT_EQ(future.wait_for(milliseconds(1000)), std::future_status::timeout)
      << "the child still leads";

  const auto killed_at = SteadyClock::now();
  candidate.Kill9();
  ASSERT_EQ(future.wait_for(seconds(kTtlSeconds + 5)), std::future_status::ready);
  const auto took = SteadyClock::now() - killed_at;
  auto leader = future.get();
  ASSERT_TRUE(leader.ok()) << leader.error().ToString();
  EXPECT_LE(took, seconds(kTtlSeconds + 1))
      << std::chrono::duration_cast<milliseconds>(took).count() << " ms";
  std::printf("leadership passed %lld ms after kill -9 (lease TTL %d s)\n",
              static_cast<long long>(std::chrono::duration_cast<milliseconds>(took).count()),
              kTtlSeconds);
  EXPECT_EQ(client->Leader(election)->value, "the-test");

  ASSERT_TRUE(client->Proclaim(*leader, "proclaimed").ok());
  ASSERT_TRUE(WaitFor(
      [&] {
        std::lock_guard lock(observed_mutex);
        return observed.size() >= 3;
      },
      seconds(10)));
  {
    std::lock_guard lock(observed_mutex);
    EXPECT_EQ(observed, (std::vector<std::string>{"the-child", "the-test", "proclaimed"}));
  }
  ASSERT_TRUE(client->Resign(*leader).ok());
  EXPECT_EQ(client->Leader(election).error().code, ErrorCode::kNotFound);
  EXPECT_TRUE(client->LeaseRevoke(lease->id).ok());
}

// ---------------------------------------------------------------------------------------------
// 6. Failover

// A port on loopback where nothing listens.
int DeadPort() {
  auto port = testing::PickFreePort();
  return port.ok() ? *port : 1;
}

// An etcd a long way off (another continent, 0.8 s round trips here) connects, and its calls and
// transactions answer: a connection attempt is given long enough for its handshakes. (gRPC's
// "min reconnect backoff" is also the least time it gives an attempt, and at 100 ms an attempt to
// an etcd more than 100-500 ms away was abandoned before etcd's HTTP/2 settings came back, again
// and again.)
TEST(GrpcEtcdClientIntegrationTest, AnEtcdOfLongRoundTripsConnects) {
  EtcdServer* server = nullptr;
  ASSERT_FIXTURE_OK_AND_ASSIGN(server, SharedEtcd());
  std::unique_ptr<testing::DelayingTcpProxy> proxy;
  ASSERT_FIXTURE_OK_AND_ASSIGN(proxy, StartDelayingProxy(*server, milliseconds(400)));
  GrpcEtcdClientOptions options = OptionsFor({proxy->address()}, nullptr);
  options.txn_connections = 2;
  options.far_txn_connections = 2;
  options.max_txns_in_flight = 12;
  auto client = Connect(options);
  ASSERT_NE(client, nullptr);
  EXPECT_TRUE(client->Far());
  auto status = client->Status();
  ASSERT_TRUE(status.ok()) << status.error().ToString();
  SendTwelveTransactions(*client, "long-round-trips");
  // The transaction connection connected too (a transaction that failed on it would have gone
  // again on the main one): the main channel and one more.
  EXPECT_EQ(proxy->stats().connections, 2u);
}

// A dial that settles on an endpoint other than the first measures no distance (only the first
// endpoint's readiness is seen as it comes; the others are looked at every 10 ms): the client is
// not far and keeps txn_connections, however long the dial took.
TEST(GrpcEtcdClientIntegrationTest, ADialThatSettlesOnAnotherEndpointKeepsTheNearConnections) {
  EtcdServer* server = nullptr;
  ASSERT_FIXTURE_OK_AND_ASSIGN(server, SharedEtcd());
  std::unique_ptr<testing::DelayingTcpProxy> proxy;
  ASSERT_FIXTURE_OK_AND_ASSIGN(proxy, StartDelayingProxy(*server, milliseconds(10)));
  GrpcEtcdClientOptions options =
      OptionsFor({"127.0.0.1:" + std::to_string(DeadPort()), proxy->address()}, nullptr);
  options.txn_connections = 2;
  options.far_txn_connections = 6;
  options.far_dial = milliseconds(5);
  options.max_txns_in_flight = 12;
  auto client = Connect(options);
  ASSERT_NE(client, nullptr);
  EXPECT_FALSE(client->Far());
  SendTwelveTransactions(*client, "settled");
  EXPECT_EQ(proxy->stats().connections, 2u);
}

// A dial that waited for its first endpoint to come up (its first attempts refused, while the
// second endpoint was still connecting) measured the wait, not the distance: the client is not
// far and keeps txn_connections. (It was judged far, and opened far_txn_connections on loopback,
// when etcd started after the process.)
TEST(GrpcEtcdClientIntegrationTest, ADialThatWaitedForEtcdToStartKeepsTheNearConnections) {
  EtcdServer* server = nullptr;
  ASSERT_FIXTURE_OK_AND_ASSIGN(server, SharedEtcd());
  const int port = DeadPort();
  // The second endpoint answers its HTTP/2 handshake only after 3 s: the dial goes on waiting
  // while the first is refused (a dial ends at once only when every endpoint has failed).
  std::unique_ptr<testing::DelayingTcpProxy> slow;
  ASSERT_FIXTURE_OK_AND_ASSIGN(slow, StartDelayingProxy(*server, milliseconds(1500)));
  GrpcEtcdClientOptions options =
      OptionsFor({"127.0.0.1:" + std::to_string(port), slow->address()}, nullptr);
  options.txn_connections = 2;
  options.far_txn_connections = 6;
  options.far_dial = milliseconds(300);
  options.max_txns_in_flight = 12;
  std::unique_ptr<testing::DelayingTcpProxy> proxy;
  auto dialled = std::async(std::launch::async, [&options] { return Connect(options); });
  // The first endpoint's first attempts are refused; it answers 600 ms in.
  std::this_thread::sleep_for(milliseconds(600));
  testing::DelayingProxyOptions proxy_options;
  proxy_options.one_way_delay = milliseconds(0);
  proxy_options.hold_fraction = 0;
  proxy_options.listen_port = port;
  ASSERT_FIXTURE_OK_AND_ASSIGN(
      proxy, testing::DelayingTcpProxy::Start(server->client_port(), proxy_options));
  auto client = dialled.get();
  ASSERT_NE(client, nullptr);
  EXPECT_FALSE(client->Far());
  SendTwelveTransactions(*client, "waited");
  EXPECT_EQ(proxy->stats().connections, 2u);
}

// A dial with `options` that is expected to fail: its error and how long it took.
struct FailedDial {
  Error error;
  milliseconds took{0};
};
FailedDial DialExpectingFailure(const GrpcEtcdClientOptions& options) {
  SystemClock clock;
  const auto started = SteadyClock::now();
  auto client = NewGrpcEtcdClient(options, clock);
  const auto took = std::chrono::duration_cast<milliseconds>(SteadyClock::now() - started);
  EXPECT_FALSE(client.ok());
  return {client.ok() ? Error{} : client.error(), took};
}

// A SIGTERM while etcd does not answer (it takes the connection and says nothing): the dial stops
// waiting once asked, not at its timeout.
TEST(GrpcEtcdClientIntegrationTest, ACancelledDialStopsWaitingAtOnce) {
  std::unique_ptr<testing::SilentListener> silent;
  ASSERT_FIXTURE_OK_AND_ASSIGN(silent, testing::SilentListener::Start());
  GrpcEtcdClientOptions options = OptionsFor({silent->address()}, nullptr);
  options.dial_timeout = milliseconds(20000);
  std::atomic<bool> cancel{false};
  options.cancel_dial = &cancel;
  std::thread canceller([&cancel] {
    std::this_thread::sleep_for(milliseconds(200));
    cancel.store(true);
  });
  const FailedDial dial = DialExpectingFailure(options);
  canceller.join();
  EXPECT_EQ(dial.error.code, ErrorCode::kCancelled) << dial.error.ToString();
  EXPECT_LT(dial.took, milliseconds(5000));
}

// A dial that an etcd which never answers times out ends at its timeout, with a reason, however
// long a connection attempt may take (the attempt's own limit is the dial timeout).
TEST(GrpcEtcdClientIntegrationTest, ADialThatNothingAnswersEndsAtItsTimeout) {
  std::unique_ptr<testing::SilentListener> silent;
  ASSERT_FIXTURE_OK_AND_ASSIGN(silent, testing::SilentListener::Start());
  GrpcEtcdClientOptions options = OptionsFor({silent->address()}, nullptr);
  options.dial_timeout = milliseconds(1500);
  const FailedDial dial = DialExpectingFailure(options);
  EXPECT_EQ(dial.error.code, ErrorCode::kUnavailable) << dial.error.ToString();
  // gRPC's reason ("timed out before receiving SETTINGS frame") or the dial's ("within 1500 ms").
  EXPECT_NE(dial.error.message.find(silent->address()), std::string::npos) << dial.error.message;
  EXPECT_TRUE(dial.error.message.find("timed out") != std::string::npos ||
              dial.error.message.find("within 1500 ms") != std::string::npos)
      << dial.error.message;
  EXPECT_GE(dial.took, milliseconds(1000)) << dial.error.ToString();
  EXPECT_LT(dial.took, milliseconds(4000)) << dial.error.ToString();
}

// A dial whose every endpoint refuses its connection ends at once with gRPC's reason, not after
// dial_timeout: the caller's retries log it and pace the next attempt (cli::ConnectRetry).
TEST(GrpcEtcdClientIntegrationTest, ADialThatEveryEndpointRefusesEndsAtOnce) {
  GrpcEtcdClientOptions options = OptionsFor(
      {"127.0.0.1:" + std::to_string(DeadPort()), "127.0.0.1:" + std::to_string(DeadPort())},
      nullptr);
  options.dial_timeout = seconds(5);
  const FailedDial dial = DialExpectingFailure(options);
  EXPECT_EQ(dial.error.code, ErrorCode::kUnavailable) << dial.error.ToString();
  EXPECT_LT(dial.took, seconds(2)) << dial.error.ToString();
  EXPECT_EQ(dial.error.message.find("within"), std::string::npos) << dial.error.message;
  EXPECT_NE(dial.error.message.find(options.endpoints[1]), std::string::npos) << dial.error.message;
  std::printf("refused dial ended after %lld ms: %s\n", static_cast<long long>(dial.took.count()),
              dial.error.ToString().c_str());
}

// StatusAsync answers as Status does, on the client's callback thread; a client destroyed with
// one outstanding answers it with kCancelled.
TEST(GrpcEtcdClientIntegrationTest, StatusAsyncAnswersOnTheCallbackThreadLikeStatus) {
  EtcdServer* server = nullptr;
  ASSERT_FIXTURE_OK_AND_ASSIGN(server, SharedEtcd());
  auto client = Connect(OptionsFor({server->endpoint()}, nullptr));
  ASSERT_NE(client, nullptr);
  std::promise<std::pair<EtcdResult<StatusResponse>, bool>> answered;
  client->StatusAsync([&](EtcdResult<StatusResponse> status) {
    answered.set_value({std::move(status), client->OnCallbackThread()});
  });
  auto future = answered.get_future();
  ASSERT_EQ(future.wait_for(seconds(10)), std::future_status::ready);
  auto [status, on_callback_thread] = future.get();
  ASSERT_TRUE(status.ok()) << status.error().ToString();
  EXPECT_TRUE(on_callback_thread);
  const auto direct = client->Status();
  ASSERT_TRUE(direct.ok());
  EXPECT_EQ(status->endpoint, direct->endpoint);
  EXPECT_EQ(status->version, direct->version);
  EXPECT_LE(status->revision, direct->revision);
  EXPECT_FALSE(status->version.empty());

  // Towards a port nobody listens on, without dialling: still outstanding at the destruction.
  GrpcEtcdClientOptions lazy = OptionsFor({"127.0.0.1:" + std::to_string(DeadPort())}, nullptr);
  lazy.dial_timeout = milliseconds(0);
  lazy.backoff = BackoffOptions{seconds(5), seconds(5), 2.0, 0.0};
  auto doomed = Connect(lazy);
  ASSERT_NE(doomed, nullptr);
  std::atomic<int> answers{0};
  std::atomic<bool> cancelled{false};
  doomed->StatusAsync([&](EtcdResult<StatusResponse> result) {
    ++answers;
    cancelled = !result.ok() && result.error().code == ErrorCode::kCancelled;
  });
  doomed.reset();
  EXPECT_EQ(answers.load(), 1);
  EXPECT_TRUE(cancelled.load());
}

TEST(GrpcEtcdClientIntegrationTest, FailsOverFromADeadFirstEndpoint) {
  EtcdServer* server = nullptr;
  ASSERT_FIXTURE_OK_AND_ASSIGN(server, SharedEtcd());
  const std::string dead = "127.0.0.1:" + std::to_string(DeadPort());
  const std::string key = UniquePath("failover");

  // Dialling skips the dead endpoint.
  auto dialled = Connect(OptionsFor({dead, server->endpoint()}, nullptr));
  ASSERT_NE(dialled, nullptr);
  EXPECT_EQ(dialled->Status()->endpoint, server->endpoint());

  // Without dialling, the first calls meet the dead endpoint and move on; even a write that is
  // not safe to repeat goes through, because the refused connection proves it was never sent.
  RecordingObserver observer;
  GrpcEtcdClientOptions lazy = OptionsFor({dead, server->endpoint()}, &observer);
  lazy.dial_timeout = milliseconds(0);
  auto client = Connect(lazy);
  ASSERT_NE(client, nullptr);
  TxnRequest txn;
  txn.success = {Op::Put(key, "via-second")};
  auto written = client->Txn(txn);
  ASSERT_TRUE(written.ok()) << written.error().ToString();
  auto read = client->Range(RangeRequest{key, "", 0, 0, false, false});
  ASSERT_TRUE(read.ok()) << read.error().ToString();
  EXPECT_EQ(read->kvs.at(0).value, "via-second");
  EXPECT_EQ(client->Status()->endpoint, server->endpoint());
  EXPECT_EQ(observer.Count("txn", "success"), 1);

  // Every endpoint dead: a clear error, after the configured attempts.
  GrpcEtcdClientOptions all_dead =
      OptionsFor({dead, "127.0.0.1:" + std::to_string(DeadPort())}, nullptr);
  all_dead.dial_timeout = milliseconds(0);
  all_dead.backoff = BackoffOptions{milliseconds(10), milliseconds(50), 2.0, 0.5};
  auto doomed = Connect(all_dead);
  ASSERT_NE(doomed, nullptr);
  auto failed = doomed->Range(RangeRequest::Prefix("/"));
  ASSERT_FALSE(failed.ok());
  EXPECT_EQ(failed.error().code, ErrorCode::kUnavailable) << failed.error().ToString();
}

// A three-member cluster on loopback, for failover between members of one cluster (the fixture
// starts single-member servers, and two of those are two different clusters).
class EtcdCluster {
 public:
  static FixtureResult<std::unique_ptr<EtcdCluster>> Start(int size) {
    auto dir = testing::TempDir::Create("etcd-cluster");
    if (!dir.ok()) return Unexpected{dir.error()};
    std::unique_ptr<EtcdCluster> cluster(new EtcdCluster(std::move(dir).value()));
    std::string initial;
    for (int i = 0; i < size; ++i) {
      auto member = std::make_unique<Member>();
      auto client = testing::PickFreePort();
      auto peer = testing::PickFreePort();
      if (!client.ok() || !peer.ok()) return Unexpected{testing::FixtureError{"no free port"}};
      member->name = "m" + std::to_string(i);
      member->client_port = *client;
      member->peer_port = *peer;
      initial += (i == 0 ? "" : ",") + member->name + "=" + member->PeerUrl();
      cluster->members_.push_back(std::move(member));
    }
    for (auto& member : cluster->members_) {
      const std::string log = cluster->dir_.File(member->name + ".log");
      auto started = member->process.Start(
          {"etcd", "--name=" + member->name, "--data-dir=" + cluster->dir_.File(member->name),
           "--listen-client-urls=" + member->ClientUrl(),
           "--advertise-client-urls=" + member->ClientUrl(),
           "--listen-peer-urls=" + member->PeerUrl(),
           "--initial-advertise-peer-urls=" + member->PeerUrl(), "--initial-cluster=" + initial,
           "--initial-cluster-state=new", "--initial-cluster-token=zk2etcd-failover",
           "--logger=zap", "--log-outputs=stderr"},
          log);
      if (!started.ok()) return Unexpected{started.error()};
    }
    for (auto& member : cluster->members_) {
      const int port = member->client_port;
      auto ready = testing::WaitUntilReady(
          member->process, "etcd member " + member->name, cluster->dir_.File(member->name + ".log"),
          [port] {
            auto reply = testing::TcpExchange(
                port, "GET /health HTTP/1.0\r\nHost: 127.0.0.1\r\n\r\n", milliseconds(1000));
            return reply.ok() && reply->find("\"health\":\"true\"") != std::string::npos;
          },
          seconds(60));
      if (!ready.ok()) return Unexpected{ready.error()};
    }
    return cluster;
  }

  std::vector<std::string> endpoints() const {
    std::vector<std::string> endpoints;
    for (const auto& member : members_) endpoints.push_back(member->Endpoint());
    return endpoints;
  }
  void Kill9(const std::string& endpoint) {
    for (auto& member : members_) {
      if (member->Endpoint() == endpoint) member->process.Kill9();
    }
  }

 private:
  struct Member {
    std::string name;
    int client_port = 0;
    int peer_port = 0;
    testing::ChildProcess process;
    std::string Endpoint() const { return "127.0.0.1:" + std::to_string(client_port); }
    std::string ClientUrl() const { return "http://" + Endpoint(); }
    std::string PeerUrl() const { return "http://127.0.0.1:" + std::to_string(peer_port); }
  };
  explicit EtcdCluster(testing::TempDir dir) : dir_(std::move(dir)) {}
  testing::TempDir dir_;
  std::vector<std::unique_ptr<Member>> members_;
};

TEST(GrpcEtcdClientIntegrationTest, CallsAndWatchesMoveToAnotherMemberWhenOneIsKilled) {
  std::unique_ptr<EtcdCluster> cluster;
  ASSERT_FIXTURE_OK_AND_ASSIGN(cluster, EtcdCluster::Start(3));
  RecordingObserver observer;
  GrpcEtcdClientOptions options = OptionsFor(cluster->endpoints(), &observer);
  options.max_attempts = 10;
  options.backoff.max = milliseconds(500);
  auto client = Connect(options);
  ASSERT_NE(client, nullptr);

  auto status = client->Status();
  ASSERT_TRUE(status.ok());
  const std::string first_endpoint = status->endpoint;
  const int64_t start = status->revision + 1;
  WatchLog log;
  auto watch = client->Watch(WatchRequest::Prefix("/f/", start), log.Callback());
  CallOptions retry;
  retry.safe_to_retry = true;
  for (int i = 0; i < 20; ++i) ASSERT_TRUE(client->Put("/f/a" + std::to_string(i), "1").ok());
  ASSERT_TRUE(WaitFor([&] { return log.size() == 20; }, seconds(10)));

  cluster->Kill9(first_endpoint);
  for (int i = 0; i < 20; ++i) {
    auto put = client->Put("/f/b" + std::to_string(i), "2", 0, retry);
    ASSERT_TRUE(put.ok()) << put.error().ToString();
  }
  auto after = client->Status();
  ASSERT_TRUE(after.ok()) << after.error().ToString();
  EXPECT_NE(after->endpoint, first_endpoint);
  auto read = RangeAll(*client, RangeRequest::Prefix("/f/"));
  ASSERT_TRUE(read.ok()) << read.error().ToString();
  EXPECT_EQ(read->kvs.size(), 40u);
  ASSERT_TRUE(WaitFor([&] { return log.size() >= 40; }, seconds(30))) << log.size();
  std::this_thread::sleep_for(milliseconds(200));
  EXPECT_EQ(log.Revisions(), Consecutive(start, 40));
  EXPECT_FALSE(log.error);
}

}  // namespace
}  // namespace zk2etcd::etcd

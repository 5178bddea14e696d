// LeaseMirror and EtcdSink against a real pair of etcd 3.4 servers: a key bound to a source
// lease is copied bound to a destination lease of the same TTL, which lives while the source
// lease does (beyond its TTL), is adopted again after a restart, and expires after the source
// lease ends, taking the copy with it.
#include <gtest/gtest.h>

#include <chrono>
#include <functional>
#include <future>
#include <thread>

#include "connectors/etcd/etcd_sink.h"
#include "connectors/etcd/key_layout.h"
#include "connectors/etcd/lease_mirror.h"
#include "etcd/grpc_etcd_client.h"
#include "ops/log.h"
#include "testing/server_support.h"
#include "testing/shared_servers.h"

namespace zk2etcd::connectors {
namespace {

using std::chrono::milliseconds;
using std::chrono::seconds;
using testing::EtcdServer;
using testing::FixtureResult;

bool WaitFor(const std::function<bool()>& done, milliseconds timeout) {
  const auto deadline = std::chrono::steady_clock::now() + timeout;
  while (!done()) {
    if (std::chrono::steady_clock::now() > deadline) return false;
    std::this_thread::sleep_for(milliseconds(50));
  }
  return true;
}

// The destination: a second server, started once per binary.
FixtureResult<EtcdServer*> DestinationEtcd() {
  static FixtureResult<std::unique_ptr<EtcdServer>> server = EtcdServer::Start();
  if (!server.ok()) return Unexpected{server.error()};
  return server->get();
}

etcd::RangeRequest One(std::string key) {
  etcd::RangeRequest request;
  request.key = std::move(key);
  return request;
}

std::unique_ptr<etcd::EtcdClient> Connect(const EtcdServer& server, const Clock& clock) {
  etcd::GrpcEtcdClientOptions options;
  options.endpoints = {server.endpoint()};
  options.dial_timeout = seconds(10);
  options.call_timeout = seconds(10);
  auto client = etcd::NewGrpcEtcdClient(std::move(options), clock);
  EXPECT_TRUE(client.ok()) << client.error().ToString();
  return client.ok() ? std::move(client).value() : nullptr;
}

TEST(LeaseMirrorIntegrationTest, CopiesLiveWhileTheSourceLeaseDoesAndExpireAfterIt) {
  EtcdServer* source_server = nullptr;
  ASSERT_FIXTURE_OK_AND_ASSIGN(source_server, testing::SharedEtcd());
  EtcdServer* destination_server = nullptr;
  ASSERT_FIXTURE_OK_AND_ASSIGN(destination_server, DestinationEtcd());
  SystemClock clock;
  ops::Logger logger(std::make_shared<ops::StderrLogSink>(), ops::LogFormat::kText,
                     ops::LogLevel::kInfo, clock);
  auto source = Connect(*source_server, clock);
  auto destination = Connect(*destination_server, clock);
  ASSERT_NE(source, nullptr);
  ASSERT_NE(destination, nullptr);

  const std::string prefix = testing::UniquePath("leases");
  const MirrorKeys keys = MirrorKeysFor(kDefaultMirrorMetaRoot, prefix.substr(1));
  const KeyLayout layout = KeyLayout::ForMirror(prefix, std::nullopt, keys.records_prefix).value();
  constexpr int64_t kTtl = 3;
  auto granted = source->LeaseGrant(seconds(kTtl));
  ASSERT_TRUE(granted.ok()) << granted.error().ToString();
  const int64_t source_lease = granted->id;
  auto source_keeper = source->LeaseKeepAlive(source_lease, [](const etcd::Error&) {});
  ASSERT_TRUE(source->Put(prefix + "/a", "a", source_lease).ok());

  LeaseMirrorOptions options;
  options.wake_interval = milliseconds(100);
  auto mirror = std::make_unique<LeaseMirror>(*source, *destination, keys.leases_prefix, clock,
                                              logger, options);
  int64_t destination_lease = 0;
  {
    EtcdSink sink(*destination, layout,
                  EtcdSinkOptions{.checkpoint_key = keys.checkpoint_key, .leases = mirror.get()});
    core::SinkWrite write{
        core::SinkWrite::Type::kPut, prefix + "/a", "a", 7, std::nullopt, std::nullopt};
    write.lease = source_lease;
    std::promise<core::BatchResult> answer;
    sink.ApplyAtomicAsync({write}, 7, std::nullopt,
                          [&](core::BatchResult result) { answer.set_value(std::move(result)); });
    auto result = answer.get_future().get();
    ASSERT_TRUE(result.ok()) << result.error().ToString();
    ASSERT_EQ(result->at(0).outcome, core::WriteOutcome::kApplied) << result->at(0).error;
    auto copy = destination->Range(One(prefix + "/a"));
    ASSERT_TRUE(copy.ok());
    ASSERT_EQ(copy->kvs.size(), 1u);
    destination_lease = copy->kvs[0].lease;
    ASSERT_NE(destination_lease, 0);
    auto ttl = destination->LeaseTimeToLive(destination_lease);
    ASSERT_TRUE(ttl.ok());
    EXPECT_EQ(ttl->granted_ttl_seconds, kTtl);
    EXPECT_EQ(ttl->keys.size(), 2u);  // the copy and its meta record
  }

  // Beyond the TTL, the copy lives.
  std::this_thread::sleep_for(seconds(kTtl + 2));
  EXPECT_EQ(destination->Range(One(prefix + "/a"))->kvs.size(), 1u);

  // A restart within the TTL adopts the destination lease again.
  mirror.reset();
  mirror = std::make_unique<LeaseMirror>(*source, *destination, keys.leases_prefix, clock, logger,
                                         options);
  auto recovered = mirror->Recover();
  ASSERT_TRUE(recovered.ok()) << recovered.error().ToString();
  EXPECT_EQ(recovered->adopted, 1u);
  EXPECT_FALSE(recovered->needs_reconcile());
  EXPECT_EQ(mirror->DestinationLease(source_lease).value(), destination_lease);
  std::this_thread::sleep_for(seconds(kTtl + 1));
  EXPECT_EQ(destination->Range(One(prefix + "/a"))->kvs.size(), 1u);

  // The source lease ends: the copy expires on the destination too.
  source_keeper.reset();
  ASSERT_TRUE(source->LeaseRevoke(source_lease).ok());
  EXPECT_TRUE(WaitFor(
      [&] {
        auto copy = destination->Range(One(prefix + "/a"));
        return copy.ok() && copy->kvs.empty();
      },
      seconds(4 * kTtl + 5)));
  EXPECT_EQ(mirror->mirrored(), 0u);
  EXPECT_TRUE(destination->Range(One(keys.leases_prefix + EncodeZxid(source_lease)))->kvs.empty());
  mirror->Stop();
}

}  // namespace
}  // namespace zk2etcd::connectors

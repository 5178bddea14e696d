// Micro-benchmarks of zk2etcd's hot paths (Google Benchmark). They print figures; they are not
// tests. Build in Release and run:
//   build/release/bench/micro/zk2etcd_micro_benchmark
#include <benchmark/benchmark.h>

#include "connectors/etcd/etcd_sink.h"
#include "connectors/etcd/fenced_txn.h"
#include "connectors/etcd/key_layout.h"
#include "core/scope.h"
#include "etcd/fake_etcd_client.h"
#include "sync/differ.h"
#include "zk/jute.h"
#include "zk/protocol.h"

namespace zk2etcd {
namespace {

const std::string kLeaf =
    "/dubbo/org.example.service7.Demo1234Service/providers/"
    "dubbo%3A%2F%2F10.0.0.7%3A20880%2Forg.example.service7.Demo1234Service%3Fapplication%3Ddemo"
    "-provider%26dubbo%3D2.0.2%26interface%3Dorg.example.service7.Demo1234Service%26methods%3Ds"
    "ayHello%26pid%3D1234%26side%3Dprovider%26timestamp%3D1700000000000";

// A getData reply as the server frames it: header, data, stat.
std::string GetDataReplyFrame(size_t data_bytes) {
  std::string frame;
  zk::JuteWriter writer(frame);
  const size_t start = writer.BeginFrame();
  writer.WriteInt32(7);                 // xid
  writer.WriteInt64(0x100000000 + 42);  // zxid
  writer.WriteInt32(0);                 // err
  writer.WriteBuffer(std::string(data_bytes, 'x'));
  for (int64_t field : {1, 2, 3, 4}) writer.WriteInt64(field);  // czxid mzxid ctime mtime
  for (int32_t field : {1, 0, 0}) writer.WriteInt32(field);     // version cversion aversion
  writer.WriteInt64(0);                                         // ephemeralOwner
  writer.WriteInt32(static_cast<int32_t>(data_bytes));          // dataLength
  writer.WriteInt32(0);                                         // numChildren
  writer.WriteInt64(5);                                         // pzxid
  writer.EndFrame(start);
  return frame;
}

void BM_JuteDecodeGetDataReply(benchmark::State& state) {
  const std::string frame = GetDataReplyFrame(static_cast<size_t>(state.range(0)));
  for (auto _ : state) {
    zk::JuteReader reader(std::string_view(frame).substr(4));
    zk::proto::ReplyHeader header;
    std::string data;
    zk::Stat stat;
    const bool ok = zk::proto::ReadReplyHeader(reader, &header) &&
                    zk::proto::ReadGetDataResponse(reader, &data, &stat);
    benchmark::DoNotOptimize(ok);
    benchmark::DoNotOptimize(data);
  }
  state.SetItemsProcessed(state.iterations());
  state.SetBytesProcessed(state.iterations() * static_cast<int64_t>(frame.size()));
}
BENCHMARK(BM_JuteDecodeGetDataReply)->Arg(0)->Arg(120)->Arg(4096);

void BM_JuteDecodeChildren(benchmark::State& state) {
  std::string frame;
  zk::JuteWriter writer(frame);
  std::vector<std::string> children(static_cast<size_t>(state.range(0)), kLeaf.substr(55));
  writer.WriteInt32(7);
  writer.WriteInt64(42);
  writer.WriteInt32(0);
  writer.WriteStringVector(children);
  for (int i = 0; i < 11; ++i) writer.WriteInt64(0);
  for (auto _ : state) {
    zk::JuteReader reader(frame);
    zk::proto::ReplyHeader header;
    std::vector<std::string> names;
    zk::Stat stat;
    benchmark::DoNotOptimize(zk::proto::ReadReplyHeader(reader, &header) &&
                             zk::proto::ReadGetChildren2Response(reader, &names, &stat));
  }
  state.SetItemsProcessed(state.iterations() * state.range(0));
}
BENCHMARK(BM_JuteDecodeChildren)->Arg(10)->Arg(1000);

void BM_JuteEncodeGetDataRequest(benchmark::State& state) {
  std::string frame;
  for (auto _ : state) {
    frame.clear();
    zk::JuteWriter writer(frame);
    const size_t start = writer.BeginFrame();
    writer.WriteInt32(7);  // xid
    writer.WriteInt32(4);  // getData
    zk::proto::WritePathWatchRequest(writer, kLeaf, false);
    writer.EndFrame(start);
    benchmark::DoNotOptimize(frame);
  }
  state.SetItemsProcessed(state.iterations());
}
BENCHMARK(BM_JuteEncodeGetDataRequest);

void BM_ScopeContains(benchmark::State& state) {
  const core::Scope scope =
      core::Scope::Create({"/dubbo", "/roc", "/app/registry"}, {"/dubbo/config", "/roc/test"})
          .value();
  for (auto _ : state) benchmark::DoNotOptimize(scope.Contains(kLeaf));
  state.SetItemsProcessed(state.iterations());
}
BENCHMARK(BM_ScopeContains);

void BM_KeyMapping(benchmark::State& state) {
  const core::Scope scope = core::Scope::Create({"/dubbo"}, {"/dubbo/config"}).value();
  const connectors::KeyLayout layout =
      connectors::KeyLayout::Create("/registry", "/zk2etcd/meta", scope).value();
  for (auto _ : state) {
    std::string key = layout.KeyFor(kLeaf);
    std::string meta = layout.MetaKeyFor(key);
    benchmark::DoNotOptimize(layout.PathFor(key));
    benchmark::DoNotOptimize(meta);
  }
  state.SetItemsProcessed(state.iterations());
}
BENCHMARK(BM_KeyMapping);

void BM_BuildFencedBatch(benchmark::State& state) {
  std::vector<connectors::FencedWrite> writes;
  for (int i = 0; i < connectors::MaxKeysPerTxn(); ++i) {
    const std::string key = kLeaf + std::to_string(i);
    writes.push_back({connectors::FencedWrite::Type::kPut, key, "/zk2etcd/meta" + key, "", 1000 + i,
                      std::nullopt, std::nullopt});
  }
  for (auto _ : state) benchmark::DoNotOptimize(connectors::BuildFencedTxn(writes, std::nullopt));
  state.SetItemsProcessed(state.iterations() * static_cast<int64_t>(writes.size()));
}
BENCHMARK(BM_BuildFencedBatch);

// The streaming diff of an in-sync tree: ZooKeeper nodes against etcd keys and meta records
// (served by the in-memory etcd, so this measures the merge and the client plumbing).
void BM_DiffInSyncTree(benchmark::State& state) {
  const size_t nodes = static_cast<size_t>(state.range(0));
  SystemClock clock;
  etcd::FakeEtcdClient etcd(clock);
  core::Snapshot tree;
  const core::Scope scope = core::Scope::Create({"/dubbo"}, {}).value();
  const connectors::KeyLayout layout =
      connectors::KeyLayout::Create("", "/zk2etcd/meta", scope).value();
  for (size_t i = 0; i < nodes; ++i) {
    const std::string path =
        "/dubbo/svc" + std::to_string(i / 100) + "/providers/p" + std::to_string(i % 100);
    tree.entries.push_back({path, "", static_cast<int64_t>(i + 1)});
    etcd.store().PutDirect(layout.KeyFor(path), "");
    etcd.store().PutDirect(layout.MetaKeyFor(layout.KeyFor(path)),
                           connectors::EncodeZxid(static_cast<int64_t>(i + 1)));
  }
  std::sort(tree.entries.begin(), tree.entries.end(),
            [](const core::SourceEntry& a, const core::SourceEntry& b) { return a.key < b.key; });
  connectors::EtcdSink sink(etcd, layout);
  for (auto _ : state) {
    auto report = sync::ComputeDiff(tree, scope, sink);
    benchmark::DoNotOptimize(report);
  }
  state.SetItemsProcessed(state.iterations() * static_cast<int64_t>(nodes));
}
BENCHMARK(BM_DiffInSyncTree)->Arg(10000)->Unit(benchmark::kMillisecond);

}  // namespace
}  // namespace zk2etcd

BENCHMARK_MAIN();

// etcd write benchmark (not a test): fenced 128-operation transactions through GrpcEtcdClient
// against a minimal raw gRPC loop (async stub, one completion queue, same batches), with 1, 2, 4
// and 8 transactions in flight, alternating the two, on an etcd 3.4 that the benchmark starts
// itself (testing/ fixtures). Prints keys/s and the ratio ours/raw.
//
// Shapes of a transaction (all but `ingest` write a key and its meta record per ZooKeeper node):
//   ingest         128 keys: 128 plain puts, no meta record, no compare (the sync benchmark's
//                  "etcd ingest" limit);
//   flat           64 keys: 64 compares (mod_revision of the meta key) + 128 puts;
//   nested         124 keys: one nested transaction per key as the sync engine builds them for
//                  events (meta value older than the new mzxid -> put key and meta; else a nested
//                  "fresh" transaction with two version compares, put key and meta, else two
//                  probe reads);
//   create-flat    63 keys into an empty range: 2 compares per key (key and meta mod_revision
//                  0, what the engine's repairs check for keys it saw absent) + 126 puts;
//   create-nested  124 keys into an empty range in the nested shape (the "fresh" branch runs).
// The overwrite shapes rewrite the same keys (a warm-up run creates them); the create shapes
// start from an empty range each run. The history is compacted after each run so that the runs
// see the same database. Besides keys/s, each run prints the CPU time the client process and the
// etcd server spent per key: on a 2-core machine the server's CPU is what bounds the rate.
//
// Usage: etcd_txn_benchmark [--keys=200000] [--rounds=2] [--windows=1,2,4,8]
//                           [--shapes=flat,nested] [--impls=ours,raw]
#include <grpcpp/grpcpp.h>
#include <sys/resource.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <chrono>
#include <condition_variable>
#include <cstdio>
#include <cstring>
#include <map>
#include <mutex>
#include <string>
#include <vector>

#include "common/clock.h"
#include "common/strings.h"
#include "etcd/etcdserver/etcdserverpb/rpc.grpc.pb.h"
#include "etcd/grpc_etcd_client.h"
#include "testing/etcd_server.h"

namespace zk2etcd::etcd {
namespace {

namespace pb = etcdserverpb;
using SteadyClock = std::chrono::steady_clock;

struct Config {
  int keys = 200000;
  int rounds = 2;
  std::vector<int> windows = {1, 2, 4, 8};
  std::vector<std::string> shapes = {"flat", "nested"};
  bool run_ours = true;
  bool run_raw = true;
};

// ~96-byte key and ~24-byte value, like a Dubbo provider URL and its data.
std::string KeyOf(int i) {
  char key[160];
  std::snprintf(key, sizeof(key),
                "/dubbo/com.example.demo.api.DemoService%03d/providers/"
                "dubbo%%3A%%2F%%2F10.%d.%d.%d%%3A20880%%2F%08d",
                i % 1000, (i >> 16) & 255, (i >> 8) & 255, i & 255, i);
  return key;
}
std::string ValueOf(int i, int round) {
  char value[64];
  std::snprintf(value, sizeof(value), "application=demo-%04d-%08d", round % 10000, i);
  return value;
}
std::string MetaOf(const std::string& key) { return "/zk2etcd/meta" + key; }
std::string Mzxid(int64_t zxid) {
  char text[17];
  std::snprintf(text, sizeof(text), "%016llx", static_cast<unsigned long long>(zxid));
  return text;
}
constexpr int64_t kAlways = int64_t{1} << 62;  // a mod_revision bound every key is below

int KeysPerTxn(const std::string& shape) {
  if (shape == "ingest") return 128;
  if (shape == "flat") return 64;
  if (shape == "create-flat") return 63;
  return 124;  // nested, create-nested
}
bool IsNested(const std::string& shape) { return shape.find("nested") != std::string::npos; }
bool IsCreate(const std::string& shape) { return shape.rfind("create-", 0) == 0; }

// --- Our client's batches --------------------------------------------------------------------

// Built the way a careful caller does: strings moved in at their last use, no initializer
// lists (they copy their elements).
TxnRequest OurBatch(const std::string& shape, int first, int count, int round) {
  TxnRequest txn;
  txn.compares.reserve(2 * count);
  txn.success.reserve(2 * count);
  for (int i = first; i < first + count; ++i) {
    std::string key = KeyOf(i);
    std::string meta = MetaOf(key);
    std::string value = ValueOf(i, round);
    std::string zxid = Mzxid(int64_t{round} << 32 | i);
    if (shape == "ingest") {
      txn.success.push_back(Op::Put(std::move(key), std::move(value)));
      continue;
    }
    if (shape == "flat" || shape == "create-flat") {
      if (shape == "flat") {
        txn.compares.push_back(Compare::ModRevision(meta, CompareOp::kLess, kAlways));
      } else {
        txn.compares.push_back(Compare::ModRevision(meta, CompareOp::kEqual, 0));
        txn.compares.push_back(Compare::ModRevision(key, CompareOp::kEqual, 0));
      }
      txn.success.push_back(Op::Put(std::move(key), std::move(value)));
      txn.success.push_back(Op::Put(std::move(meta), std::move(zxid)));
      continue;
    }
    TxnRequest fresh;
    fresh.compares.reserve(2);
    fresh.compares.push_back(Compare::Version(meta, CompareOp::kEqual, 0));
    fresh.compares.push_back(Compare::Version(key, CompareOp::kEqual, 0));
    fresh.success.reserve(2);
    fresh.success.push_back(Op::Put(key, value));
    fresh.success.push_back(Op::Put(meta, zxid));
    RangeRequest probe_meta;
    probe_meta.key = meta;
    RangeRequest probe_key;
    probe_key.key = key;
    probe_key.count_only = true;
    fresh.failure.reserve(2);
    fresh.failure.push_back(Op::Range(std::move(probe_meta)));
    fresh.failure.push_back(Op::Range(std::move(probe_key)));
    TxnRequest fenced;
    fenced.compares.push_back(
        Compare::Value(meta, CompareOp::kLess, Mzxid((int64_t{round} << 32 | i) + 1)));
    fenced.success.reserve(2);
    fenced.success.push_back(Op::Put(std::move(key), std::move(value)));
    fenced.success.push_back(Op::Put(std::move(meta), std::move(zxid)));
    fenced.failure.push_back(Op::Txn(std::move(fresh)));
    txn.success.push_back(Op::Txn(std::move(fenced)));
  }
  return txn;
}

// --- The raw reference: the same batches written straight into protobuf --------------------

void SetPut(pb::RequestOp* op, const std::string& key, const std::string& value) {
  auto* put = op->mutable_request_put();
  put->set_key(key);
  put->set_value(value);
}

void RawBatch(const std::string& shape, int first, int count, int round, pb::TxnRequest* txn) {
  for (int i = first; i < first + count; ++i) {
    const std::string key = KeyOf(i);
    const std::string meta = MetaOf(key);
    const std::string value = ValueOf(i, round);
    const std::string zxid = Mzxid(int64_t{round} << 32 | i);
    if (shape == "ingest") {
      SetPut(txn->add_success(), key, value);
      continue;
    }
    if (shape == "flat" || shape == "create-flat") {
      for (const std::string* compared : {&meta, &key}) {
        if (shape == "flat" && compared == &key) break;
        auto* compare = txn->add_compare();
        compare->set_key(*compared);
        compare->set_target(pb::Compare::MOD);
        compare->set_result(shape == "flat" ? pb::Compare::LESS : pb::Compare::EQUAL);
        compare->set_mod_revision(shape == "flat" ? kAlways : 0);
      }
      SetPut(txn->add_success(), key, value);
      SetPut(txn->add_success(), meta, zxid);
      continue;
    }
    auto* fenced = txn->add_success()->mutable_request_txn();
    auto* newer = fenced->add_compare();
    newer->set_key(meta);
    newer->set_target(pb::Compare::VALUE);
    newer->set_result(pb::Compare::LESS);
    newer->set_value(Mzxid((int64_t{round} << 32 | i) + 1));
    SetPut(fenced->add_success(), key, value);
    SetPut(fenced->add_success(), meta, zxid);
    auto* fresh = fenced->add_failure()->mutable_request_txn();
    for (const std::string* k : {&meta, &key}) {
      auto* absent = fresh->add_compare();
      absent->set_key(*k);
      absent->set_target(pb::Compare::VERSION);
      absent->set_result(pb::Compare::EQUAL);
      absent->set_version(0);
    }
    SetPut(fresh->add_success(), key, value);
    SetPut(fresh->add_success(), meta, zxid);
    fresh->add_failure()->mutable_request_range()->set_key(meta);
    auto* probe = fresh->add_failure()->mutable_request_range();
    probe->set_key(key);
    probe->set_count_only(true);
  }
}

struct RunResult {
  double keys_per_second = 0;
  double cpu_us_per_key = 0;  // CPU time of this process (client side), per key
  int failed = 0;             // errors or transactions whose compares did not hold
};

// User + system CPU time of process `pid` so far (from /proc), 0 if unreadable.
double ServerCpuSeconds(pid_t pid) {
  std::FILE* file = std::fopen(("/proc/" + std::to_string(pid) + "/stat").c_str(), "r");
  if (file == nullptr) return 0;
  char buffer[4096];
  const size_t size = std::fread(buffer, 1, sizeof(buffer) - 1, file);
  std::fclose(file);
  buffer[size] = '\0';
  // Fields after the command name (which may hold spaces) start after the last ')'.
  const char* rest = std::strrchr(buffer, ')');
  if (rest == nullptr) return 0;
  unsigned long long utime = 0;
  unsigned long long stime = 0;
  if (std::sscanf(rest + 2, "%*c %*d %*d %*d %*d %*d %*u %*u %*u %*u %*u %llu %llu", &utime,
                  &stime) != 2) {
    return 0;
  }
  return static_cast<double>(utime + stime) / static_cast<double>(sysconf(_SC_CLK_TCK));
}

// Removes the keys the create shapes write, so that each of their runs starts empty.
void DeleteWrittenKeys(const std::string& endpoint) {
  auto stub = pb::KV::NewStub(grpc::CreateChannel(endpoint, grpc::InsecureChannelCredentials()));
  for (const std::string prefix : {"/dubbo/", "/zk2etcd/meta/"}) {
    pb::DeleteRangeRequest request;
    request.set_key(prefix);
    request.set_range_end(PrefixEnd(prefix));
    pb::DeleteRangeResponse ignored;
    grpc::ClientContext context;
    (void)stub->DeleteRange(&context, request, &ignored);
  }
}

// User + system CPU time of this process so far.
double ProcessCpuSeconds() {
  rusage usage{};
  getrusage(RUSAGE_SELF, &usage);
  return static_cast<double>(usage.ru_utime.tv_sec + usage.ru_stime.tv_sec) +
         static_cast<double>(usage.ru_utime.tv_usec + usage.ru_stime.tv_usec) / 1e6;
}

RunResult RunRaw(const std::string& endpoint, const Config& config, const std::string& shape,
                 int window, int round) {
  grpc::ChannelArguments arguments;
  arguments.SetMaxReceiveMessageSize(INT32_MAX);
  arguments.SetInt(GRPC_ARG_USE_LOCAL_SUBCHANNEL_POOL, 1);
  auto channel = grpc::CreateCustomChannel(endpoint, grpc::InsecureChannelCredentials(), arguments);
  channel->WaitForConnected(std::chrono::system_clock::now() + std::chrono::seconds(10));
  auto stub = pb::KV::NewStub(channel);
  grpc::CompletionQueue cq;
  struct Call {
    grpc::ClientContext context;
    pb::TxnRequest request;
    pb::TxnResponse response;
    grpc::Status status;
    std::unique_ptr<grpc::ClientAsyncResponseReader<pb::TxnResponse>> reader;
  };
  const int per_txn = KeysPerTxn(shape);
  int next = 0;
  int in_flight = 0;
  RunResult result;
  auto send = [&] {
    auto* call = new Call;
    const int count = std::min(per_txn, config.keys - next);
    RawBatch(shape, next, count, round, &call->request);
    next += count;
    call->context.set_deadline(std::chrono::system_clock::now() + std::chrono::seconds(60));
    call->reader = stub->PrepareAsyncTxn(&call->context, call->request, &cq);
    call->reader->StartCall();
    call->reader->Finish(&call->response, &call->status, call);
    ++in_flight;
  };
  const auto start = SteadyClock::now();
  const double cpu_start = ProcessCpuSeconds();
  while (next < config.keys && in_flight < window) send();
  void* tag = nullptr;
  bool ok = false;
  while (in_flight > 0 && cq.Next(&tag, &ok)) {
    auto* call = static_cast<Call*>(tag);
    bool applied = call->status.ok() && call->response.succeeded();
    if (applied && IsNested(shape)) {
      for (const auto& response : call->response.responses()) {
        const pb::TxnResponse& per_key = response.response_txn();
        applied =
            applied && (per_key.succeeded() || (per_key.responses_size() == 1 &&
                                                per_key.responses(0).response_txn().succeeded()));
      }
    }
    if (!applied) ++result.failed;
    delete call;
    --in_flight;
    if (next < config.keys) send();
  }
  const double seconds = std::chrono::duration<double>(SteadyClock::now() - start).count();
  result.cpu_us_per_key = (ProcessCpuSeconds() - cpu_start) * 1e6 / config.keys;
  cq.Shutdown();
  while (cq.Next(&tag, &ok)) {
  }
  result.keys_per_second = config.keys / seconds;
  return result;
}

RunResult RunOurs(const std::string& endpoint, const Config& config, const std::string& shape,
                  int window, int round) {
  SystemClock clock;
  GrpcEtcdClientOptions options;
  options.endpoints = {endpoint};
  options.max_txns_in_flight = window;
  options.call_timeout = std::chrono::seconds(60);
  auto client = NewGrpcEtcdClient(options, clock);
  if (!client.ok()) {
    std::fprintf(stderr, "client: %s\n", client.error().ToString().c_str());
    std::exit(1);
  }
  const int per_txn = KeysPerTxn(shape);
  std::mutex mutex;
  std::condition_variable changed;
  int outstanding = 0;
  std::atomic<int> failed{0};
  CallOptions call;
  call.safe_to_retry = true;  // fenced
  const auto start = SteadyClock::now();
  const double cpu_start = ProcessCpuSeconds();
  // Like the engine: keep the window full and at most one more window queued in the client.
  for (int next = 0; next < config.keys;) {
    const int count = std::min(per_txn, config.keys - next);
    TxnRequest txn = OurBatch(shape, next, count, round);
    next += count;
    {
      std::unique_lock lock(mutex);
      changed.wait(lock, [&] { return outstanding < 2 * window; });
      ++outstanding;
    }
    (*client)->TxnAsync(std::move(txn), call, [&](EtcdResult<TxnResponse> result) {
      bool applied = result.ok() && result->succeeded;
      if (applied && IsNested(shape)) {
        for (const auto& response : result->responses) {
          const TxnResponse* per_key = response.txn.get();
          applied = applied && per_key != nullptr &&
                    (per_key->succeeded ||
                     (per_key->responses.size() == 1 && per_key->responses[0].txn != nullptr &&
                      per_key->responses[0].txn->succeeded));
        }
      }
      if (!applied) ++failed;
      std::lock_guard lock(mutex);
      --outstanding;
      changed.notify_all();
    });
  }
  {
    std::unique_lock lock(mutex);
    changed.wait(lock, [&] { return outstanding == 0; });
  }
  const double seconds = std::chrono::duration<double>(SteadyClock::now() - start).count();
  return RunResult{config.keys / seconds, (ProcessCpuSeconds() - cpu_start) * 1e6 / config.keys,
                   failed.load()};
}

void Compact(const std::string& endpoint) {
  auto stub = pb::KV::NewStub(grpc::CreateChannel(endpoint, grpc::InsecureChannelCredentials()));
  pb::RangeRequest probe;
  probe.set_key("/");
  probe.set_count_only(true);
  pb::RangeResponse response;
  grpc::ClientContext range_context;
  if (!stub->Range(&range_context, probe, &response).ok()) return;
  pb::CompactionRequest compact;
  compact.set_revision(response.header().revision());
  compact.set_physical(true);
  pb::CompactionResponse ignored;
  grpc::ClientContext compact_context;
  (void)stub->Compact(&compact_context, compact, &ignored);
}

Config ParseArguments(int argc, char** argv) {
  Config config;
  for (int i = 1; i < argc; ++i) {
    std::string argument = argv[i];
    auto value = [&](const char* name) -> std::optional<std::string> {
      const std::string prefix = std::string("--") + name + "=";
      if (argument.rfind(prefix, 0) != 0) return std::nullopt;
      return argument.substr(prefix.size());
    };
    if (auto v = value("keys")) {
      config.keys = std::stoi(*v);
    } else if (auto r = value("rounds")) {
      config.rounds = std::stoi(*r);
    } else if (auto w = value("windows")) {
      config.windows.clear();
      for (const auto& part : SplitCommaList(*w)) config.windows.push_back(std::stoi(part));
    } else if (auto s = value("shapes")) {
      config.shapes = SplitCommaList(*s);
    } else if (auto impls = value("impls")) {  // for profiling one side: ours or raw
      config.run_ours = impls->find("ours") != std::string::npos;
      config.run_raw = impls->find("raw") != std::string::npos;
    } else {
      std::fprintf(stderr, "unknown argument %s\n", argument.c_str());
      std::exit(2);
    }
  }
  return config;
}

int Main(int argc, char** argv) {
  const Config config = ParseArguments(argc, argv);
  auto server = testing::EtcdServer::Start();
  if (!server.ok()) {
    std::fprintf(stderr, "etcd: %s\n", server.error().message.c_str());
    return 1;
  }
  const std::string endpoint = (*server)->endpoint();
  std::printf("etcd %s, %d keys per run, %d rounds, key %zu B, value %zu B, meta value 16 B\n",
              endpoint.c_str(), config.keys, config.rounds, KeyOf(123456).size(),
              ValueOf(123456, 1).size());
  int failures = 0;
  // Every run writes newer mzxids than the one before, across shapes, so that every fence holds.
  int round_number = 1;
  for (const std::string& shape : config.shapes) {
    std::printf("\nshape %s: %d keys per transaction\n", shape.c_str(), KeysPerTxn(shape));
    // Warm-up: creates the keys (the first time), so that every measured overwrite run
    // overwrites them; the create shapes empty the range before each run instead.
    RunOurs(endpoint, config, shape, 4, round_number++);
    auto reset = [&] {
      if (IsCreate(shape)) DeleteWrittenKeys(endpoint);
      Compact(endpoint);
    };
    reset();
    std::map<int, std::vector<double>> ours;
    std::map<int, std::vector<double>> raw;
    for (int round = 0; round < config.rounds; ++round) {
      for (int window : config.windows) {
        // Alternate which goes first.
        for (int turn = 0; turn < 2; ++turn) {
          const bool ours_turn = (turn == 0) == (round % 2 == 0);
          if (!(ours_turn ? config.run_ours : config.run_raw)) continue;
          const double server_cpu_start = ServerCpuSeconds((*server)->pid());
          RunResult result = ours_turn ? RunOurs(endpoint, config, shape, window, round_number)
                                       : RunRaw(endpoint, config, shape, window, round_number);
          const double server_cpu_us_per_key =
              (ServerCpuSeconds((*server)->pid()) - server_cpu_start) * 1e6 / config.keys;
          ++round_number;
          reset();
          failures += result.failed;
          (ours_turn ? ours : raw)[window].push_back(result.keys_per_second);
          std::printf(
              "  round %d window %d %-4s %8.0f keys/s  CPU per key: client %.1f us, etcd %.1f "
              "us%s\n",
              round + 1, window, ours_turn ? "ours" : "raw", result.keys_per_second,
              result.cpu_us_per_key, server_cpu_us_per_key,
              result.failed ? " (FAILED TRANSACTIONS)" : "");
          std::fflush(stdout);
        }
      }
    }
    double best_raw = 0;
    double best_ours = 0;
    std::printf("\n| in flight | ours keys/s (best) | raw keys/s (best) | ours/raw |\n");
    std::printf("|---:|---:|---:|---:|\n");
    for (int window : config.windows) {
      if (ours[window].empty() || raw[window].empty()) continue;
      const double o = *std::max_element(ours[window].begin(), ours[window].end());
      const double r = *std::max_element(raw[window].begin(), raw[window].end());
      best_raw = std::max(best_raw, r);
      best_ours = std::max(best_ours, o);
      std::printf("| %d | %.0f | %.0f | %.2f |\n", window, o, r, o / r);
    }
    std::printf("best ours %.0f keys/s, best raw %.0f keys/s: %.1f%% of the best raw rate\n",
                best_ours, best_raw, 100.0 * best_ours / best_raw);
  }
  if (failures > 0) {
    std::printf("%d transactions failed\n", failures);
    return 1;
  }
  return 0;
}

}  // namespace
}  // namespace zk2etcd::etcd

int main(int argc, char** argv) { return zk2etcd::etcd::Main(argc, argv); }

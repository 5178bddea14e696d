// zk2etcd_sync_benchmark: the numbers an operator chooses a sync tool on, measured in one run on
// this machine, next to the servers' own limits.
//
// It starts ZooKeeper 3.8 and etcd 3.4 on loopback (testing/ fixtures), builds a Dubbo-shaped tree
// of --nodes nodes with `zk2etcd genzk`, and measures:
//   limits     the fastest pipelined read of the whole tree with zk2etcd's client (the engine's
//              walk) and with the official C client's async calls, and etcd's ingest rate of
//              batched 128-put transactions with 4 in flight
//   zk2etcd    initial sync into an empty etcd; a diff with nothing to fix (next to the raw read
//              of both sides); the delay from a ZooKeeper write to the etcd key at fixed rates
//              (p50/p99/max); the highest change rate sustained without the lag growing; peak
//              resident memory and CPU seconds of the zk2etcd process, against the memory goal
//              (2 x the bytes of paths and data + 64 MiB)
//   --zk2etcd-args="..."  extra arguments for zk2etcd sync; --log-dir=DIR keeps the tools' logs;
//   --no-c-client skips the C client's read (minutes on a million nodes); --no-sustained skips
//   the search for the highest sustained rate
//   servers    with no tool running, at the same rates: ZooKeeper setData until a persistent
//              recursive watch reports it, and an etcd put until a watch delivers it (the part
//              of a change's delay that no sync tool can remove)
//   --weak-network  instead of all the above: the same full sync of a ~2,000-provider tree on
//              loopback and through a delaying proxy in front of each server (15 ms each way,
//              0.5% of chunks held 200 ms longer; --weak-delay-ms, --weak-hold-fraction,
//              --weak-hold-ms, --weak-leaves, --weak-runs), alternating, with the ratio
//   --compare  any other tool, given as a command template with {zk} and {etcd}, through the same
//              initial-sync and delay scenarios, with ratios to zk2etcd
// Prints a table and writes JSON (--json). A benchmark, not a test: build it in Release.
//
//   zk2etcd_sync_benchmark --zk2etcd=build/release/src/zk2etcd --nodes=100000
//       --rates=100,1000 --json=bench.json [--compare='go-zk2etcd=zk2etcd-go sync ...']
#include <sys/resource.h>
#include <sys/wait.h>
#include <unistd.h>
#include <zookeeper/zookeeper.h>

#include <algorithm>
#include <atomic>
#include <cmath>
#include <condition_variable>
#include <cstdio>
#include <deque>
#include <filesystem>
#include <fstream>
#include <iostream>
#include <map>
#include <mutex>
#include <random>
#include <sstream>
#include <thread>

#include "bench/common/runner_support.h"
#include "common/clock.h"
#include "connectors/zookeeper/zk_walker.h"
#include "core/scope.h"
#include "etcd/grpc_etcd_client.h"
#include "testing/delaying_proxy.h"
#include "testing/etcd_server.h"
#include "testing/process.h"
#include "testing/zookeeper_c_client.h"
#include "testing/zookeeper_server.h"
#include "zk/asio_zk_client.h"

namespace zk2etcd::bench {
namespace {

using Clock = std::chrono::steady_clock;
using std::chrono::milliseconds;
using std::chrono::seconds;

struct Options {
  std::string zk2etcd = "build/release/src/zk2etcd";
  size_t nodes = 100000;
  std::vector<int> rates = {100, 1000};
  int rate_seconds = 10;
  bool sustained = true;
  bool c_client = true;  // also time the official C client's read (slow on big trees)
  std::string json;
  std::vector<std::pair<std::string, std::string>> compare;  // name, command template
  std::vector<std::string> zk2etcd_args;                     // extra arguments for `zk2etcd sync`
  std::string log_dir;                                       // keep the tools' logs here
  // --weak-network: only the weak-network scenario (see WeakNetworkScenario).
  bool weak_network = false;
  int weak_delay_ms = 15;
  double weak_hold_fraction = 0.005;
  int weak_hold_ms = 200;
  size_t weak_leaves = 2000;
  int weak_runs = 5;
};

// --- Limits -----------------------------------------------------------------------------------

// The official C client: getChildren2 + getData per node, breadth-first, up to `window` nodes in
// flight. Returns nodes/s.
struct CRead {
  std::mutex mutex;
  std::condition_variable done;
  std::vector<std::string> queue;
  size_t in_flight = 0;
  size_t nodes = 0;
  zhandle_t* handle = nullptr;
};
struct CNode {
  CRead* read;
  std::string path;
  int pending = 2;
};
void CIssue(CRead& read, std::string path);
void CFinish(CNode* node) {
  CRead& read = *node->read;
  std::unique_lock lock(read.mutex);
  if (--node->pending > 0) return;
  ++read.nodes;
  --read.in_flight;
  delete node;
  std::vector<std::string> next;
  while (!read.queue.empty() && read.in_flight < 200) {
    next.push_back(std::move(read.queue.back()));
    read.queue.pop_back();
    ++read.in_flight;
  }
  if (read.in_flight == 0 && read.queue.empty()) read.done.notify_all();
  lock.unlock();
  for (std::string& path : next) CIssue(read, std::move(path));
}
void CChildren(int rc, const String_vector* children, const ::Stat*, const void* data) {
  auto* node = static_cast<CNode*>(const_cast<void*>(data));
  if (rc == ZOK) {
    std::lock_guard lock(node->read->mutex);
    for (int32_t i = 0; i < children->count; ++i) {
      node->read->queue.push_back((node->path == "/" ? "" : node->path) + "/" + children->data[i]);
    }
  }
  CFinish(node);
}
void CData(int, const char*, int, const ::Stat*, const void* data) {
  CFinish(static_cast<CNode*>(const_cast<void*>(data)));
}
void CIssue(CRead& read, std::string path) {
  auto* node = new CNode{&read, std::move(path)};
  zoo_aget_children2(read.handle, node->path.c_str(), 0, CChildren, node);
  zoo_aget(read.handle, node->path.c_str(), 0, CData, node);
}
double ReadWithCClient(const std::string& address, const std::string& root) {
  auto client = testing::ZooKeeperCClient::Connect(address, seconds(30));
  if (!client.ok()) return 0;
  CRead read;
  read.handle = (*client)->handle();
  const auto start = Clock::now();
  {
    std::lock_guard lock(read.mutex);
    read.in_flight = 1;
  }
  CIssue(read, root);
  std::unique_lock lock(read.mutex);
  read.done.wait(lock, [&] { return read.in_flight == 0 && read.queue.empty(); });
  return static_cast<double>(read.nodes) / Since(start);
}

// zk2etcd's client through the engine's own walk (getData on every node, getChildren where the
// Stat shows children), as a full sync reads. Returns nodes/s and the node count.
struct TreeRead {
  double nodes_per_s = 0;
  size_t nodes = 0;
  size_t path_and_data_bytes = 0;  // what the memory goal is measured against
};

TreeRead ReadWithOurClient(const std::string& address, const std::string& root) {
  zk::ZkClientOptions options;
  options.connect_string = address;
  auto client = zk::NewAsioZkClient(options, {});
  if (!client.ok() || !zk::blocking::Exists(**client, "/").ok()) return {};
  const core::Scope scope = core::Scope::Create({root}, {}).value();
  connectors::WalkOptions walk;
  walk.window = 200;
  const auto start = Clock::now();
  auto tree = connectors::WalkZkTree(**client, scope, walk);
  const double elapsed = Since(start);
  (*client)->Close();
  if (!tree.ok()) return {};
  TreeRead read{static_cast<double>(tree->entries.size()) / elapsed, tree->entries.size(), 0};
  for (const core::SourceEntry& node : tree->entries) {
    read.path_and_data_bytes += node.key.size() + node.value.size();
  }
  return read;
}

std::unique_ptr<etcd::EtcdClient> EtcdClientFor(const std::string& endpoint, const Clock::duration&,
                                                const zk2etcd::Clock& clock) {
  etcd::GrpcEtcdClientOptions options;
  options.endpoints = {endpoint};
  options.max_txns_in_flight = 4;
  auto client = etcd::NewGrpcEtcdClient(options, clock);
  return client.ok() ? std::move(client).value() : nullptr;
}

// etcd ingest: `keys` keys of ~150 bytes with ~100-byte values in 128-put transactions, 4 in
// flight. Returns keys/s.
// A Dubbo-shaped tree under /dubbo built by `zk2etcd genzk`: `parents` interfaces of `children`
// providers, every 10th with 100 bytes of data.
testing::FixtureResult<std::string> BuildDubboTree(const std::string& zk2etcd,
                                                   const std::string& zk_address, size_t parents,
                                                   size_t children,
                                                   std::chrono::milliseconds timeout) {
  return testing::RunCommand(
      {zk2etcd, "genzk", "--zookeeper-servers=" + zk_address, "--path=/dubbo",
       "--parent-count=" + std::to_string(parents), "--children-count=" + std::to_string(children),
       "--data-every=10", "--data-bytes=100", "--concurrent=1000"},
      timeout);
}

double EtcdIngest(etcd::EtcdClient& etcd, size_t keys) {
  std::mutex mutex;
  std::condition_variable done;
  size_t outstanding = 0;
  const auto start = Clock::now();
  for (size_t first = 0; first < keys; first += 128) {
    etcd::TxnRequest txn;
    for (size_t i = first; i < std::min(keys, first + 128); ++i) {
      txn.success.push_back(
          etcd::Op::Put("/ingest/org.example.service/providers/dubbo%3A%2F%2F10."
                        "0.0.1%3A20880%2Forg.example.DemoService%3Fpid%3D" +
                            std::to_string(i),
                        std::string(100, 'v')));
    }
    {
      std::lock_guard lock(mutex);
      ++outstanding;
    }
    etcd.TxnAsync(std::move(txn), {}, [&](etcd::EtcdResult<etcd::TxnResponse>) {
      std::lock_guard lock(mutex);
      if (--outstanding == 0) done.notify_all();
    });
  }
  std::unique_lock lock(mutex);
  done.wait(lock, [&] { return outstanding == 0; });
  const double rate = static_cast<double>(keys) / Since(start);
  lock.unlock();
  (void)etcd.Delete("/ingest/", etcd::PrefixEnd("/ingest/"));
  return rate;
}

int64_t EtcdRevision(etcd::EtcdClient& etcd) {
  etcd::RangeRequest probe = etcd::RangeRequest::Prefix("/");
  probe.limit = 1;
  auto response = etcd.Range(probe);
  return response.ok() ? response->revision : 0;
}

// Deletes every key, then compacts and defragments, so that what the limits or an earlier tool
// wrote costs the next one nothing.
void EmptyEtcd(etcd::EtcdClient& etcd, const testing::EtcdServer& server) {
  (void)etcd.Delete("/", std::string(1, '\0'));
  (void)server.Etcdctl({"compact", std::to_string(EtcdRevision(etcd)), "--physical"});
  (void)server.Etcdctl({"defrag"});
}

// Reads every key under `prefix` in one request, the cheapest read for etcd (paging a prefix
// costs etcd 3.4 quadratic time, see connectors::RangeCursor); returns the seconds it took.
double EtcdReadAll(etcd::EtcdClient& etcd, const std::string& prefix) {
  const auto start = Clock::now();
  (void)etcd.Range(etcd::RangeRequest::Prefix(prefix));
  return Since(start);
}

int64_t EtcdCount(etcd::EtcdClient& etcd, const std::string& prefix) {
  auto count = etcd::CountRange(etcd, etcd::RangeRequest::Prefix(prefix));
  return count.ok() ? *count : -1;
}

// Writes `rate` setData per second for `duration` to random leaves, each value carrying its send
// time, and watches etcd for them.
DelayResult MeasureDelay(const std::string& zk_address, etcd::EtcdClient& etcd,
                         const std::vector<std::string>& leaves, int rate, int duration_s) {
  DelayResult result;
  result.rate = rate;
  std::mutex mutex;
  std::vector<double> delays;
  const auto origin = Clock::now();
  auto watch = etcd.Watch(
      etcd::WatchRequest::Prefix("/dubbo/", 0), [&](etcd::EtcdResult<etcd::WatchEvents> events) {
        if (!events.ok()) return;
        const double now = Since(origin);
        std::lock_guard lock(mutex);
        for (const auto& event : events->events) {
          const std::string& value = event.kv.value;
          if (event.type != etcd::WatchEvent::Type::kPut || value.rfind("bench:", 0) != 0) {
            continue;
          }
          delays.push_back((now - std::stod(value.substr(6))) * 1000);
        }
      });
  std::this_thread::sleep_for(milliseconds(200));
  zk::ZkClientOptions options;
  options.connect_string = zk_address;
  auto client = zk::NewAsioZkClient(options, {});
  if (!client.ok()) return result;
  std::mt19937_64 random(42);
  result.written = SendAtRate(rate, duration_s, [&](size_t) {
    char value[48];
    std::snprintf(value, sizeof(value), "bench:%.9f", Since(origin));
    (*client)->SetData(leaves[random() % leaves.size()], value, -1,
                       [](zk::ZkResult<zk::SetDataReply>) {});
  });
  // Let the last changes arrive (a growing backlog shows as missing observations).
  std::this_thread::sleep_for(seconds(2));
  watch.reset();
  (*client)->Close();
  std::lock_guard lock(mutex);
  Summarize(delays, result);
  return result;
}

// The servers' own share of a change's delay, at `rate` changes/s for `duration_s` s, with no
// sync tool running: a ZooKeeper setData on random leaves until a persistent recursive watch on
// /dubbo reports it (one event per change, so each path's events answer its writes in order).
DelayResult ZooKeeperEventDelay(const std::string& zk_address,
                                const std::vector<std::string>& leaves, int rate, int duration_s) {
  DelayResult result;
  result.rate = rate;
  std::mutex mutex;
  std::map<std::string, std::deque<Clock::time_point>> sent;
  std::vector<double> delays;
  zk::ZkEventHandlers handlers;
  handlers.on_watch = [&](const zk::WatchEvent& event) {
    if (event.type != zk::WatchEventType::kNodeDataChanged) return;
    const auto now = Clock::now();
    std::lock_guard lock(mutex);
    auto it = sent.find(event.path);
    if (it == sent.end() || it->second.empty()) return;
    delays.push_back(std::chrono::duration<double, std::milli>(now - it->second.front()).count());
    it->second.pop_front();
  };
  zk::ZkClientOptions options;
  options.connect_string = zk_address;
  auto watcher = zk::NewAsioZkClient(options, handlers);
  auto writer = zk::NewAsioZkClient(options, {});
  if (!watcher.ok() || !writer.ok() ||
      !zk::blocking::AddWatch(**watcher, "/dubbo", zk::AddWatchMode::kPersistentRecursive).ok()) {
    return result;
  }
  std::mt19937_64 random(7);
  result.written = SendAtRate(rate, duration_s, [&](size_t) {
    const std::string& path = leaves[random() % leaves.size()];
    {
      std::lock_guard lock(mutex);
      sent[path].push_back(Clock::now());
    }
    (*writer)->SetData(path, "floor", -1, [](zk::ZkResult<zk::SetDataReply>) {});
  });
  std::this_thread::sleep_for(seconds(2));
  (*writer)->Close();
  (*watcher)->Close();
  std::lock_guard lock(mutex);
  Summarize(delays, result);
  return result;
}

// The same for etcd: single-put transactions at `rate`, each value carrying its send time,
// until an etcd watch delivers them.
DelayResult EtcdWatchDelay(etcd::EtcdClient& etcd, int rate, int duration_s) {
  DelayResult result;
  result.rate = rate;
  std::mutex mutex;
  std::vector<double> delays;
  const auto origin = Clock::now();
  auto watch = etcd.Watch(etcd::WatchRequest::Prefix("/bench-floor/", 0),
                          [&](etcd::EtcdResult<etcd::WatchEvents> events) {
                            if (!events.ok()) return;
                            const double now = Since(origin);
                            std::lock_guard lock(mutex);
                            for (const auto& event : events->events) {
                              if (event.type != etcd::WatchEvent::Type::kPut) continue;
                              delays.push_back((now - std::stod(event.kv.value)) * 1000);
                            }
                          });
  std::this_thread::sleep_for(milliseconds(200));
  result.written = SendAtRate(rate, duration_s, [&](size_t i) {
    char value[32];
    std::snprintf(value, sizeof(value), "%.9f", Since(origin));
    etcd::TxnRequest txn;
    txn.success.push_back(etcd::Op::Put("/bench-floor/k" + std::to_string(i % 1000), value));
    etcd.TxnAsync(std::move(txn), {}, [](etcd::EtcdResult<etcd::TxnResponse>) {});
  });
  std::this_thread::sleep_for(seconds(2));
  watch.reset();
  (void)etcd.Delete("/bench-floor/", etcd::PrefixEnd("/bench-floor/"));
  std::lock_guard lock(mutex);
  Summarize(delays, result);
  return result;
}

std::string Replace(std::string text, const std::string& from, const std::string& to) {
  for (size_t at = text.find(from); at != std::string::npos; at = text.find(from, at + to.size())) {
    text.replace(at, from.size(), to);
  }
  return text;
}

std::vector<std::string> SplitWords(const std::string& command) {
  std::istringstream in(command);
  std::vector<std::string> words;
  for (std::string word; in >> word;) words.push_back(word);
  return words;
}

struct ToolResult {
  std::string name;
  double initial_sync_s = 0;
  double diff_s = -1;
  std::vector<DelayResult> delays;
  int sustained_rate = 0;
  double peak_rss_mib = 0;
  double cpu_seconds = 0;
};

// Starts `tool` and returns the seconds until etcd holds `expected_keys` keys created under
// /dubbo since the call, or -1 if the tool does not start, exits, or takes over 30 minutes. The
// keys are counted from a watch, which costs etcd far less than polling a count of up to a
// million keys (a count walks etcd's whole index: polling it every 20 ms slowed a 100,000-key
// sync by about half).
double StartAndTimeInitialSync(ToolProcess& tool, etcd::EtcdClient& etcd, size_t expected_keys) {
  std::mutex mutex;
  std::condition_variable created_all;
  size_t created = 0;
  const int64_t from_revision = EtcdRevision(etcd) + 1;
  auto watch = etcd.Watch(etcd::WatchRequest::Prefix("/dubbo", from_revision),
                          [&](etcd::EtcdResult<etcd::WatchEvents> events) {
                            if (!events.ok()) return;
                            std::lock_guard lock(mutex);
                            for (const auto& event : events->events) {
                              created += event.type == etcd::WatchEvent::Type::kPut &&
                                         event.kv.create_revision == event.kv.mod_revision;
                            }
                            if (created >= expected_keys) created_all.notify_all();
                          });
  const auto start = Clock::now();
  if (!tool.Start()) return -1;
  std::unique_lock lock(mutex);
  bool running = true;
  while (created < expected_keys && Since(start) < 1800 && running) {
    created_all.wait_for(lock, milliseconds(100));
    lock.unlock();
    tool.Sample();
    running = tool.Running();
    lock.lock();
  }
  if (!running) {
    std::cerr << tool.name() << ": exited during the initial sync (see " << tool.log() << ")\n";
    return -1;
  }
  if (created < expected_keys) return -1;
  const double seconds = Since(start);
  lock.unlock();
  watch.reset();
  return seconds;
}

// Runs one tool through the scenarios against a fresh etcd prefix.
ToolResult RunTool(const std::string& name, std::vector<std::string> argv,
                   const testing::ZooKeeperServer& zookeeper, const testing::EtcdServer& server,
                   etcd::EtcdClient& etcd, size_t expected_keys,
                   const std::vector<std::string>& leaves, const Options& options,
                   const std::string& log_dir) {
  ToolResult result;
  result.name = name;
  EmptyEtcd(etcd, server);
  ToolProcess tool(name, std::move(argv), log_dir + "/" + name + ".log");
  result.initial_sync_s = StartAndTimeInitialSync(tool, etcd, expected_keys);
  if (result.initial_sync_s < 0) {
    result.initial_sync_s = 0;
    return result;
  }
  std::cerr << name << ": initial sync " << result.initial_sync_s << " s, peak "
            << tool.peak_rss_mib() << " MiB so far\n";
  if (EtcdCount(etcd, "/dubbo") < static_cast<int64_t>(expected_keys)) {
    std::cerr << name << ": etcd does not hold every key after the initial sync\n";
  }
  for (int rate : options.rates) {
    result.delays.push_back(
        MeasureDelay(zookeeper.address(), etcd, leaves, rate, options.rate_seconds));
    tool.Sample();
  }
  if (options.sustained) {
    for (int rate = 2000; rate <= 64000; rate *= 2) {
      const DelayResult run = MeasureDelay(zookeeper.address(), etcd, leaves, rate, 5);
      tool.Sample();
      // Sustained: (nearly) every change arrived within the 2 s grace, and p99 stayed < 1 s.
      if (run.observed < run.written * 95 / 100 || run.p99_ms > 1000) break;
      result.sustained_rate = rate;
    }
  }
  tool.Stop();
  result.peak_rss_mib = tool.peak_rss_mib();
  result.cpu_seconds = tool.cpu_seconds();
  (void)server;
  return result;
}

// `zk2etcd sync` from `zk_address` to `etcd_endpoint`, without leader election or periodic full
// syncs, logging at `log_level`, with --zk2etcd-args after.
std::vector<std::string> SyncArgv(const Options& options, const std::string& zk_address,
                                  const std::string& etcd_endpoint, const std::string& log_level) {
  std::vector<std::string> argv = {options.zk2etcd,
                                   "sync",
                                   "--zookeeper-servers=" + zk_address,
                                   "--etcd-servers=" + etcd_endpoint,
                                   "--leader-elect=false",
                                   "--fullsync-interval=0",
                                   "--http-addr=127.0.0.1:0",
                                   "--log-level=" + log_level};
  argv.insert(argv.end(), options.zk2etcd_args.begin(), options.zk2etcd_args.end());
  return argv;
}

// --- The weak-network scenario --------------------------------------------------------------

// The phases of the first reconciliation, from the "reconciliation done" line of a JSON log.
struct ReconcilePhases {
  double walk_s = -1, diff_s = -1, recheck_s = -1, repair_s = -1, seconds = -1;
};

ReconcilePhases ReadPhases(const std::string& log_path) {
  ReconcilePhases phases;
  std::ifstream log(log_path);
  for (std::string line; std::getline(log, line);) {
    if (line.find("reconciliation done") == std::string::npos) continue;
    auto field = [&](const std::string& name) {
      const size_t at = line.find("\"" + name + "\":");
      return at == std::string::npos ? -1.0 : std::stod(line.substr(at + name.size() + 3));
    };
    phases = {field("walk_s"), field("diff_s"), field("recheck_s"), field("repair_s"),
              field("seconds")};
    break;
  }
  return phases;
}

double Median(std::vector<double> values) { return Percentile(std::move(values), 0.5); }

// The same full sync (`zk2etcd sync` into an empty etcd, until etcd holds every node) of a
// Dubbo-shaped tree of about --weak-leaves providers, alternately on loopback and through a
// DelayingTcpProxy in front of each server (--weak-delay-ms each way, --weak-hold-fraction of
// chunks held --weak-hold-ms longer), --weak-runs times each. Prints every run with the phases of
// its reconciliation, the medians and their ratio.
int WeakNetworkScenario(const Options& options, const testing::ZooKeeperServer& zookeeper,
                        const testing::EtcdServer& server, etcd::EtcdClient& etcd,
                        const std::string& log_dir) {
  const size_t children = 40;
  const size_t parents = std::max<size_t>(1, options.weak_leaves / children);
  std::cerr << "building a Dubbo tree of " << parents << " interfaces x " << children
            << " providers...\n";
  auto built = BuildDubboTree(options.zk2etcd, zookeeper.address(), parents, children,
                              std::chrono::minutes(10));
  if (!built.ok()) {
    std::cerr << built.error().message << "\n";
    return 1;
  }
  const size_t tree_nodes = ReadWithOurClient(zookeeper.address(), "/dubbo").nodes;
  if (tree_nodes == 0) return 1;
  testing::DelayingProxyOptions proxy_options;
  proxy_options.one_way_delay = std::chrono::milliseconds(options.weak_delay_ms);
  proxy_options.hold_fraction = options.weak_hold_fraction;
  proxy_options.hold = std::chrono::milliseconds(options.weak_hold_ms);
  const int zk_port = std::stoi(zookeeper.address().substr(zookeeper.address().rfind(':') + 1));
  const int etcd_port = std::stoi(server.endpoint().substr(server.endpoint().rfind(':') + 1));

  std::printf(
      "\nweak network: %zu nodes (%zu providers); %d ms each way, %.3f of chunks held %d ms "
      "longer; %d alternating runs\n",
      tree_nodes, parents * children, options.weak_delay_ms, options.weak_hold_fraction,
      options.weak_hold_ms, options.weak_runs);
  std::printf("%-4s %-9s %9s %8s %8s %9s %9s %18s\n", "run", "network", "sync s", "walk_s",
              "diff_s", "recheck_s", "repair_s", "held: zk    etcd");
  std::vector<double> loopback_times, weak_times;
  for (int run = 0; run < options.weak_runs; ++run) {
    for (const bool weak : {false, true}) {
      std::unique_ptr<testing::DelayingTcpProxy> zk_proxy, etcd_proxy;
      std::string zk_address = zookeeper.address(), etcd_endpoint = server.endpoint();
      if (weak) {
        proxy_options.seed = 2 * static_cast<uint64_t>(run) + 1;
        auto a = testing::DelayingTcpProxy::Start(zk_port, proxy_options);
        proxy_options.seed += 1000;
        auto b = testing::DelayingTcpProxy::Start(etcd_port, proxy_options);
        if (!a.ok() || !b.ok()) {
          std::cerr << "cannot start the delaying proxies\n";
          return 1;
        }
        zk_proxy = std::move(a).value();
        etcd_proxy = std::move(b).value();
        zk_address = zk_proxy->address();
        etcd_endpoint = etcd_proxy->address();
      }
      EmptyEtcd(etcd, server);
      const std::vector<std::string> argv = SyncArgv(options, zk_address, etcd_endpoint, "info");
      const std::string name = std::string(weak ? "weak" : "loopback") + "-" + std::to_string(run);
      const std::string log_path = log_dir + "/" + name + ".log";
      // The tool appends to its log: a log left by an earlier runner would give its phases.
      std::filesystem::remove(log_path);
      ToolProcess tool(name, argv, log_path);
      const double seconds = StartAndTimeInitialSync(tool, etcd, tree_nodes);
      tool.Stop();
      if (seconds < 0) return 1;
      (weak ? weak_times : loopback_times).push_back(seconds);
      const ReconcilePhases phases = ReadPhases(log_path);
      std::string held = "-";
      if (weak) {
        const auto zs = zk_proxy->stats(), es = etcd_proxy->stats();
        // ZooKeeper's and etcd's: a held chunk stalls a different part of the sync.
        held = std::to_string(zs.held_chunks) + "/" + std::to_string(zs.chunks) + " " +
               std::to_string(es.held_chunks) + "/" + std::to_string(es.chunks);
      }
      std::printf("%-4d %-9s %9.3f %8.3f %8.3f %9.3f %9.3f %18s\n", run, weak ? "weak" : "loopback",
                  seconds, phases.walk_s, phases.diff_s, phases.recheck_s, phases.repair_s,
                  held.c_str());
      std::fflush(stdout);
    }
  }
  const double loopback = Median(loopback_times), weak = Median(weak_times);
  std::printf("median full sync: loopback %.3f s, weak network %.3f s; ratio %.2f\n", loopback,
              weak, weak / loopback);
  return 0;
}

int Main(int argc, char** argv) {
  Options options;
  const bool parsed =
      Flags()
          .String("zk2etcd", &options.zk2etcd)
          .Size("nodes", &options.nodes)
          .IntList("rates", &options.rates)
          .Int("rate-seconds", &options.rate_seconds)
          .Custom("zk2etcd-args",
                  [&](const std::string& value) {
                    for (std::string& word : SplitWords(value)) {
                      options.zk2etcd_args.push_back(std::move(word));
                    }
                    return true;
                  })
          .String("log-dir", &options.log_dir)
          .Switch("no-c-client", &options.c_client, false)
          .Switch("weak-network", &options.weak_network, true)
          .Int("weak-delay-ms", &options.weak_delay_ms)
          .Double("weak-hold-fraction", &options.weak_hold_fraction)
          .Int("weak-hold-ms", &options.weak_hold_ms)
          .Size("weak-leaves", &options.weak_leaves)
          .Int("weak-runs", &options.weak_runs)
          .Switch("no-sustained", &options.sustained, false)
          .String("json", &options.json)
          .Custom("compare",
                  [&](const std::string& value) {
                    const size_t equals = value.find('=');
                    if (equals == std::string::npos) {
                      std::cerr << "--compare takes NAME=COMMAND\n";
                      return false;
                    }
                    options.compare.emplace_back(value.substr(0, equals), value.substr(equals + 1));
                    return true;
                  })
          .Parse(argc, argv);
  if (!parsed) return 2;
  if (!Zk2etcdBinaryExists(options.zk2etcd)) return 2;
  SystemClock clock;
  std::cerr << "starting ZooKeeper and etcd...\n";
  testing::ZooKeeperOptions zookeeper_options;
  // About 4 KiB of heap per node, at least 1 GiB: below that, a million-node tree keeps the
  // server collecting garbage and every figure measures that instead.
  zookeeper_options.max_heap =
      std::to_string(std::max<size_t>(1024, options.nodes * 4 / 1024)) + "m";
  auto zookeeper = testing::ZooKeeperServer::Start(zookeeper_options);
  auto server = testing::EtcdServer::Start();
  if (!zookeeper.ok() || !server.ok()) {
    std::cerr << "cannot start the servers\n";
    return 1;
  }
  auto dir = testing::TempDir::Create("bench");
  const std::string zk_address = (*zookeeper)->address();
  const std::string etcd_endpoint = (*server)->endpoint();
  std::error_code ignored;
  if (!options.log_dir.empty()) std::filesystem::create_directories(options.log_dir, ignored);

  if (options.weak_network) {
    auto etcd = EtcdClientFor(etcd_endpoint, {}, clock);
    if (!etcd) return 1;
    return WeakNetworkScenario(options, **zookeeper, **server, *etcd,
                               options.log_dir.empty() ? dir->path() : options.log_dir);
  }

  // The tree: parents x (1 + 4 categories + children) nodes.
  const size_t children = 45;
  const size_t parents = std::max<size_t>(1, options.nodes / (children + 5));
  std::cerr << "building a Dubbo tree of about " << parents * (children + 5) << " nodes...\n";
  const auto build_start = Clock::now();
  auto built =
      BuildDubboTree(options.zk2etcd, zk_address, parents, children, std::chrono::minutes(60));
  if (!built.ok()) {
    std::cerr << built.error().message << "\n";
    return 1;
  }
  const double build_s = Since(build_start);
  auto etcd = EtcdClientFor(etcd_endpoint, {}, clock);
  if (!etcd) return 1;

  // Limits, alternating the two readers twice.
  std::cerr << "measuring the limits...\n";
  double ours = 0, c_client = 0;
  size_t tree_nodes = 0;
  size_t tree_bytes = 0;
  for (int round = 0; round < 2; ++round) {
    const TreeRead read = ReadWithOurClient(zk_address, "/dubbo");
    ours = std::max(ours, read.nodes_per_s);
    tree_nodes = read.nodes;
    tree_bytes = read.path_and_data_bytes;
    if (options.c_client) c_client = std::max(c_client, ReadWithCClient(zk_address, "/dubbo"));
  }
  std::cerr << "  read: " << tree_nodes << " nodes in " << static_cast<double>(tree_nodes) / ours
            << " s (ours)\n";
  const double ingest = std::max(EtcdIngest(*etcd, tree_nodes), EtcdIngest(*etcd, tree_nodes));
  std::cerr << "  etcd ingest: " << ingest << " keys/s\n";
  const double zk_read_s = static_cast<double>(tree_nodes) / std::max(ours, c_client);
  const double etcd_ingest_s = static_cast<double>(tree_nodes) / ingest;

  // Leaves for the delay scenarios: providers of the first interfaces.
  std::vector<std::string> leaves;
  {
    auto client = testing::ZooKeeperCClient::Connect(zk_address, seconds(30));
    auto services = (*client)->Children("/dubbo");
    for (size_t i = 0; services.ok() && i < services->size() && leaves.size() < 2000; ++i) {
      const std::string providers = "/dubbo/" + (*services)[i] + "/providers";
      auto names = (*client)->Children(providers);
      for (size_t j = 0; names.ok() && j < names->size(); ++j) {
        leaves.push_back(providers + "/" + (*names)[j]);
      }
    }
  }

  std::vector<ToolResult> results;
  std::cerr << "zk2etcd: initial sync, delays, sustained rate...\n";
  const std::string log_dir = options.log_dir.empty() ? dir->path() : options.log_dir;
  results.push_back(RunTool("zk2etcd", SyncArgv(options, zk_address, etcd_endpoint, "warn"),
                            **zookeeper, **server, *etcd, tree_nodes, leaves, options, log_dir));
  // diff with nothing to fix (zk2etcd left etcd in sync), next to the raw read of both sides.
  {
    const auto start = Clock::now();
    auto diff = testing::RunCommand({options.zk2etcd, "diff", "--zookeeper-servers=" + zk_address,
                                     "--etcd-servers=" + etcd_endpoint, "--log-level=warn"},
                                    std::chrono::minutes(30));
    results[0].diff_s = diff.ok() ? Since(start) : -1;
    std::cerr << "zk2etcd: diff " << results[0].diff_s << " s\n";
  }
  const double raw_read_s = static_cast<double>(tree_nodes) / ours + EtcdReadAll(*etcd, "/dubbo") +
                            EtcdReadAll(*etcd, "/zk2etcd/meta/dubbo");
  // The servers' share of the delay, with the synced tree in place and no tool running.
  std::vector<std::pair<DelayResult, DelayResult>> floors;
  for (int rate : options.rates) {
    floors.emplace_back(ZooKeeperEventDelay(zk_address, leaves, rate, options.rate_seconds),
                        EtcdWatchDelay(*etcd, rate, options.rate_seconds));
  }
  for (const auto& [name, command] : options.compare) {
    std::cerr << name << ": initial sync, delays, sustained rate...\n";
    const std::string expanded =
        Replace(Replace(command, "{zk}", zk_address), "{etcd}", etcd_endpoint);
    results.push_back(RunTool(name, SplitWords(expanded), **zookeeper, **server, *etcd, tree_nodes,
                              leaves, options, log_dir));
  }

  // Report.
  char line[512];
  std::printf("\nmachine: %ld cores; tree: %zu nodes (built in %.1f s by genzk)\n",
              sysconf(_SC_NPROCESSORS_ONLN), tree_nodes, build_s);
  std::printf("\nlimits\n");
  std::printf("  ZooKeeper read, zk2etcd client   %10.0f nodes/s  (%.2f s)\n", ours,
              static_cast<double>(tree_nodes) / ours);
  if (options.c_client) {
    std::printf("  ZooKeeper read, C client async   %10.0f nodes/s  (%.2f s)  ours/C = %.2f\n",
                c_client, static_cast<double>(tree_nodes) / c_client, ours / c_client);
  }
  std::printf("  etcd ingest, 128-put txns x4     %10.0f keys/s   (%.2f s)\n", ingest,
              etcd_ingest_s);
  const double slower_limit = std::max(zk_read_s, etcd_ingest_s);
  std::printf("\n%-14s %12s %9s %10s", "tool", "initial sync", "x limit", "diff");
  for (int rate : options.rates) std::printf("  delay@%-5d p50/p99/max ms", rate);
  std::printf(" %10s %9s %8s\n", "sustained/s", "peak MiB", "CPU s");
  for (const ToolResult& r : results) {
    std::snprintf(line, sizeof(line), "%-14s %10.2f s %9.2f %10s", r.name.c_str(), r.initial_sync_s,
                  r.initial_sync_s / slower_limit,
                  r.diff_s >= 0 ? (std::to_string(r.diff_s).substr(0, 5) + " s").c_str() : "-");
    std::printf("%s", line);
    for (const DelayResult& d : r.delays) std::printf("  %s", DelayText(d, 7).c_str());
    std::printf(" %11d %9.1f %8.2f\n", r.sustained_rate, r.peak_rss_mib, r.cpu_seconds);
  }
  std::printf("\ndiff with nothing to fix: %.2f s; raw read of both sides: %.2f s; ratio %.2f\n",
              results[0].diff_s, raw_read_s, results[0].diff_s / raw_read_s);
  std::printf("\nthe servers' own delay (no tool running), p50 / p99 / max ms:\n");
  for (const auto& [zookeeper_delay, etcd_delay] : floors) {
    std::printf("  %5d/s  ZooKeeper setData -> watch event %s   etcd put -> watch %s\n",
                zookeeper_delay.rate, DelayText(zookeeper_delay, 6).c_str(),
                DelayText(etcd_delay, 6).c_str());
  }
  const double tree_mib = static_cast<double>(tree_bytes) / (1024 * 1024);
  std::printf(
      "memory: paths and data %.1f MiB; goal 2 x that + 64 MiB = %.1f MiB; zk2etcd peak "
      "%.1f MiB (%.2f of the goal)\n",
      tree_mib, 2 * tree_mib + 64, results[0].peak_rss_mib,
      results[0].peak_rss_mib / (2 * tree_mib + 64));
  for (size_t i = 1; i < results.size(); ++i) {
    std::printf("%s / zk2etcd initial sync time: %.2f\n", results[i].name.c_str(),
                results[i].initial_sync_s / results[0].initial_sync_s);
  }

  if (!options.json.empty()) {
    std::ofstream json(options.json);
    json << "{\"nodes\":" << tree_nodes << ",\"path_and_data_bytes\":" << tree_bytes
         << ",\"limits\":{\"zk_read_ours_nodes_per_s\":" << ours
         << ",\"zk_read_c_client_nodes_per_s\":" << c_client
         << ",\"etcd_ingest_keys_per_s\":" << ingest << "},\"raw_read_both_sides_s\":" << raw_read_s
         << ",\"tools\":[";
    for (size_t i = 0; i < results.size(); ++i) {
      const ToolResult& r = results[i];
      json << (i ? "," : "") << "{\"name\":\"" << r.name
           << "\",\"initial_sync_s\":" << r.initial_sync_s << ",\"diff_s\":" << r.diff_s
           << ",\"sustained_rate\":" << r.sustained_rate << ",\"peak_rss_mib\":" << r.peak_rss_mib
           << ",\"cpu_seconds\":" << r.cpu_seconds << ",\"delays\":[";
      for (size_t j = 0; j < r.delays.size(); ++j) {
        const DelayResult& d = r.delays[j];
        json << (j ? "," : "") << "{\"rate\":" << d.rate << ",\"written\":" << d.written
             << ",\"observed\":" << d.observed << ",\"p50_ms\":" << d.p50_ms
             << ",\"p99_ms\":" << d.p99_ms << ",\"max_ms\":" << d.max_ms << "}";
      }
      json << "]}";
    }
    json << "],\"server_delays\":[";
    for (size_t i = 0; i < floors.size(); ++i) {
      const auto& [zookeeper_delay, etcd_delay] = floors[i];
      json << (i ? "," : "") << "{\"rate\":" << zookeeper_delay.rate
           << ",\"zookeeper_p50_ms\":" << zookeeper_delay.p50_ms
           << ",\"zookeeper_p99_ms\":" << zookeeper_delay.p99_ms
           << ",\"etcd_p50_ms\":" << etcd_delay.p50_ms << ",\"etcd_p99_ms\":" << etcd_delay.p99_ms
           << "}";
    }
    json << "]}\n";
  }
  return 0;
}

}  // namespace
}  // namespace zk2etcd::bench

int main(int argc, char** argv) { return zk2etcd::bench::Main(argc, argv); }

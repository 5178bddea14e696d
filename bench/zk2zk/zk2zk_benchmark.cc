// zk2etcd_zk2zk_benchmark: `zk2etcd zk2zk sync` between two ZooKeeper 3.8 servers on loopback,
// next to the servers' own limits measured in the same run.
//
// It starts a source and a target ZooKeeper (testing/ fixtures), writes --nodes nodes under
// /bench into the source (100 directories of --nodes/100 leaves, --value-bytes each), and
// measures:
//   raw read     the source tree walked with the client's multiRead walk (what the tool reads)
//   raw create   the same nodes created on the target by this runner (pipelined creates, a
//                window of 1,000), then deleted again: the target's create rate
//   initial copy from the tool's start until a watch on the target saw every node created
//   delay        creates of new nodes in the source at each of --rates for --rate-seconds; a
//                persistent recursive watch on the target sees each arrive: p50/p99/max
//   churn        --churn/2 creates of new nodes sent as fast as the source takes them, and once
//                the target saw them all, as many deletes; changes per second until the target
//                saw the last one of each phase
//   restart      kill -9 of the tool, --restart-changes data changes in the source, restart;
//                time until the target saw every change
//   memory, CPU  VmHWM and utime+stime of the tool, from /proc
// Prints a markdown table. A benchmark, not a test: build it in Release.
//
//   zk2etcd_zk2zk_benchmark --zk2etcd=build/release/src/zk2etcd --nodes=100000
//       --rates=100,1000 --rate-seconds=10 [--log-dir=DIR] [--tool-flag=--concurrent=100 ...]
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <condition_variable>
#include <cstdio>
#include <filesystem>
#include <iostream>
#include <map>
#include <mutex>
#include <set>
#include <thread>
#include <unordered_map>

#include "bench/common/runner_support.h"
#include "common/clock.h"
#include "connectors/zookeeper/zk_walker.h"
#include "testing/loopback.h"
#include "testing/temp_dir.h"
#include "testing/zookeeper_server.h"
#include "zk/asio_zk_client.h"

namespace zk2etcd::bench {
namespace {

using Clock = std::chrono::steady_clock;
using std::chrono::milliseconds;
using std::chrono::seconds;

const std::string kRoot = "/bench";

struct Options {
  std::string zk2etcd = "build/release/src/zk2etcd";
  size_t nodes = 100000;
  size_t value_bytes = 100;
  std::vector<int> rates = {100, 1000};
  int rate_seconds = 10;
  size_t churn = 20000;
  size_t restart_changes = 500;
  int copy_timeout_s = 900;
  std::string log_dir;
  std::vector<std::string> tool_flags;  // --tool-flag=--x=y, repeatable: more flags for the tool
};

std::string Fixed(double value, int digits) {
  char text[64];
  std::snprintf(text, sizeof(text), "%.*f", digits, value);
  return text;
}

std::unique_ptr<zk::ZkClient> Connect(const std::string& address,
                                      zk::ZkEventHandlers handlers = {}) {
  zk::ZkClientOptions options;
  options.connect_string = address;
  options.session_timeout = seconds(30);
  options.max_in_flight = 4096;
  auto client = zk::NewAsioZkClient(options, std::move(handlers));
  if (!client.ok()) {
    std::cerr << "cannot connect to " << address << ": " << client.error().ToString() << "\n";
    return nullptr;
  }
  // Wait for the session (the first request waits for it anyway).
  auto synced = zk::blocking::Exists(**client, "/");
  if (!synced.ok()) return nullptr;
  return std::move(client).value();
}

// Issues `count` operations with at most `window` in flight; op(i, done) must call done once.
// Returns false if any failed.
bool Pipelined(size_t count, size_t window,
               const std::function<void(size_t i, std::function<void(bool ok)> done)>& op) {
  std::mutex mutex;
  std::condition_variable changed;
  size_t in_flight = 0, finished = 0;
  bool failed = false;
  for (size_t i = 0; i < count; ++i) {
    {
      std::unique_lock lock(mutex);
      changed.wait(lock, [&] { return in_flight < window; });
      ++in_flight;
    }
    op(i, [&](bool ok) {
      std::lock_guard lock(mutex);
      --in_flight;
      ++finished;
      if (!ok) failed = true;
      changed.notify_all();
    });
  }
  std::unique_lock lock(mutex);
  changed.wait(lock, [&] { return finished == count; });
  return !failed;
}

// The tree: kRoot, 100 directories, and their leaves (parents first).
std::vector<std::string> TreePaths(const std::string& root, size_t nodes) {
  std::vector<std::string> paths = {root};
  const size_t dirs = 100;
  const size_t leaves = nodes > dirs + 1 ? (nodes - dirs - 1) / dirs : 1;
  for (size_t d = 0; d < dirs; ++d) paths.push_back(root + "/d" + std::to_string(d));
  for (size_t d = 0; d < dirs; ++d) {
    for (size_t l = 0; l < leaves; ++l) {
      paths.push_back(root + "/d" + std::to_string(d) + "/n" + std::to_string(l));
    }
  }
  return paths;
}

bool CreatePaths(zk::ZkClient& client, const std::vector<std::string>& paths, size_t value_bytes) {
  const std::string value(value_bytes, 'v');
  return Pipelined(paths.size(), 1000, [&](size_t i, std::function<void(bool)> done) {
    client.Create(paths[i], value, zk::CreateMode::kPersistent, zk::OpenAclUnsafe(),
                  [done](zk::ZkResult<zk::CreateReply> reply) { done(reply.ok()); });
  });
}

bool DeletePaths(zk::ZkClient& client, std::vector<std::string> paths) {
  std::reverse(paths.begin(), paths.end());  // children first
  return Pipelined(paths.size(), 1000, [&](size_t i, std::function<void(bool)> done) {
    client.Delete(paths[i], -1, [done](zk::ZkResult<zk::Ack> reply) { done(reply.ok()); });
  });
}

// Every event a persistent recursive watch on the target sees, with its time.
class TargetWatch {
 public:
  bool Start(const std::string& address) {
    zk::ZkEventHandlers handlers;
    handlers.on_watch = [this](const zk::WatchEvent& event) { OnEvent(event); };
    client_ = Connect(address, std::move(handlers));
    if (client_ == nullptr) return false;
    return zk::blocking::AddWatch(*client_, kRoot, zk::AddWatchMode::kPersistentRecursive).ok();
  }
  // Waits until `predicate` (called under the lock) holds, or `timeout`.
  bool WaitFor(const std::function<bool()>& predicate, Clock::duration timeout) {
    std::unique_lock lock(mutex_);
    return changed_.wait_for(lock, timeout, predicate);
  }
  // Guarded by mutex(): creates, data changes and deletes seen, by path (the first time).
  std::unordered_map<std::string, Clock::time_point> created, changed, deleted;
  std::mutex& mutex() { return mutex_; }

 private:
  void OnEvent(const zk::WatchEvent& event) {
    const auto now = Clock::now();
    std::lock_guard lock(mutex_);
    switch (event.type) {
      case zk::WatchEventType::kNodeCreated:
        created.emplace(event.path, now);
        break;
      case zk::WatchEventType::kNodeDataChanged:
        changed.emplace(event.path, now);
        break;
      case zk::WatchEventType::kNodeDeleted:
        deleted.emplace(event.path, now);
        break;
      default:
        break;
    }
    changed_.notify_all();
  }
  std::mutex mutex_;
  std::condition_variable changed_;
  std::unique_ptr<zk::ZkClient> client_;
};

int Main(int argc, char** argv) {
  Options options;
  const bool parsed = Flags()
                          .String("zk2etcd", &options.zk2etcd)
                          .Size("nodes", &options.nodes)
                          .Size("value-bytes", &options.value_bytes)
                          .IntList("rates", &options.rates)
                          .Int("rate-seconds", &options.rate_seconds)
                          .Size("churn", &options.churn)
                          .Size("restart-changes", &options.restart_changes)
                          .Int("copy-timeout", &options.copy_timeout_s)
                          .String("log-dir", &options.log_dir)
                          .Custom("tool-flag",
                                  [&options](const std::string& value) {
                                    options.tool_flags.push_back(value);
                                    return true;
                                  })
                          .Parse(argc, argv);
  if (!parsed) return 2;
  if (!Zk2etcdBinaryExists(options.zk2etcd)) return 2;
  auto dir = testing::TempDir::Create("zk2zk-bench");
  if (!dir.ok()) return 1;
  const std::string log_dir = options.log_dir.empty() ? dir->path() : options.log_dir;
  std::error_code ignored;
  std::filesystem::create_directories(log_dir, ignored);

  testing::ZooKeeperOptions server_options;
  server_options.max_heap = "2g";
  auto source_server = testing::ZooKeeperServer::Start(server_options);
  auto target_server = testing::ZooKeeperServer::Start(server_options);
  if (!source_server.ok() || !target_server.ok()) {
    std::cerr << "cannot start ZooKeeper\n";
    return 1;
  }
  const std::string source_address = (*source_server)->address();
  const std::string target_address = (*target_server)->address();
  auto source = Connect(source_address);
  auto target = Connect(target_address);
  if (source == nullptr || target == nullptr) return 1;

  const std::vector<std::string> tree = TreePaths(kRoot, options.nodes);
  const size_t n = tree.size();
  std::cerr << "writing " << n << " nodes into the source...\n";
  auto start = Clock::now();
  if (!CreatePaths(*source, tree, options.value_bytes)) return 1;
  const double load_s = Since(start);

  // Raw read of the source: the walk the tool does.
  auto scope = core::Scope::Create({kRoot}, {});
  connectors::WalkOptions walk;
  walk.window = connectors::kMinMultiReadWindow;
  start = Clock::now();
  auto walked = connectors::WalkZkTree(*source, *scope, walk);
  const double raw_read_s = Since(start);
  if (!walked.ok() || walked->entries.size() != n) {
    std::cerr << "the raw read saw " << (walked.ok() ? walked->entries.size() : 0) << " nodes\n";
    return 1;
  }
  // Raw create rate of the target (the same nodes, elsewhere), then gone again.
  const std::vector<std::string> raw_tree = TreePaths("/raw", options.nodes);
  start = Clock::now();
  if (!CreatePaths(*target, raw_tree, options.value_bytes)) return 1;
  const double raw_create_s = Since(start);
  if (!DeletePaths(*target, raw_tree)) return 1;
  std::cerr << "raw read " << raw_read_s << " s, raw create " << raw_create_s << " s\n";

  // The tool.
  TargetWatch watch;
  if (!watch.Start(target_address)) return 1;
  auto http_port = testing::PickFreePort();
  std::vector<std::string> tool_argv = {
      options.zk2etcd,
      "zk2zk",
      "sync",
      "--source-servers=" + source_address,
      "--target-servers=" + target_address,
      "--path=" + kRoot,
      "--name=bench",
      "--leader-elect=false",
      "--progress-interval=0s",
      "--http-addr=127.0.0.1:" + std::to_string(http_port.ok() ? *http_port : 0),
      "--log-level=info"};
  tool_argv.insert(tool_argv.end(), options.tool_flags.begin(), options.tool_flags.end());
  ToolProcess tool("zk2etcd", tool_argv, log_dir + "/zk2zk.log");
  std::cerr << "initial copy...\n";
  start = Clock::now();
  if (!tool.Start()) return 1;
  const bool copied =
      watch.WaitFor([&] { return watch.created.size() >= n; }, seconds(options.copy_timeout_s));
  const double copy_s = Since(start);
  size_t copied_nodes;
  {
    std::lock_guard lock(watch.mutex());
    copied_nodes = watch.created.size();
  }
  std::cerr << "copied " << copied_nodes << " of " << n << " in " << copy_s << " s\n";
  if (!copied) return 1;

  // Delays: creates of new nodes at fixed rates.
  std::vector<DelayResult> delays;
  for (int rate : options.rates) {
    const std::string dir_path = kRoot + "/delay-" + std::to_string(rate);
    if (!zk::blocking::Create(*source, dir_path, "").ok()) return 1;
    std::vector<Clock::time_point> sent(static_cast<size_t>(rate) * options.rate_seconds);
    std::atomic<size_t> failed{0};
    const size_t count = SendAtRate(rate, options.rate_seconds, [&](size_t i) {
      sent[i] = Clock::now();
      source->Create(dir_path + "/c" + std::to_string(i), "x", zk::CreateMode::kPersistent,
                     zk::OpenAclUnsafe(), [&failed](zk::ZkResult<zk::CreateReply> reply) {
                       if (!reply.ok()) ++failed;
                     });
    });
    auto arrived = [&] {
      size_t seen = 0;
      for (size_t i = 0; i < count; ++i) {
        seen += watch.created.count(dir_path + "/c" + std::to_string(i));
      }
      return seen == count;
    };
    watch.WaitFor(arrived, seconds(30));
    std::vector<double> ms;
    {
      std::lock_guard lock(watch.mutex());
      for (size_t i = 0; i < count; ++i) {
        auto it = watch.created.find(dir_path + "/c" + std::to_string(i));
        if (it != watch.created.end()) {
          ms.push_back(std::chrono::duration<double, std::milli>(it->second - sent[i]).count());
        }
      }
    }
    DelayResult result;
    result.rate = rate;
    result.written = count - failed.load();
    Summarize(ms, result);
    delays.push_back(result);
    std::cerr << "delay at " << rate << "/s: " << DelayText(result) << "\n";
  }

  // Churn: creates then deletes of new nodes, as fast as the source takes them.
  const std::string churn_dir = kRoot + "/churn";
  if (!zk::blocking::Create(*source, churn_dir, "").ok()) return 1;
  std::vector<std::string> churn_paths;
  for (size_t i = 0; i < options.churn / 2; ++i)
    churn_paths.push_back(churn_dir + "/c" + std::to_string(i));
  // Phase one creates them all, phase two (once the target has every one) deletes them all, so
  // that no create and delete of one node fold into nothing.
  auto all_seen = [&](const std::unordered_map<std::string, Clock::time_point>& seen) {
    return [&] {
      for (const std::string& path : churn_paths) {
        if (seen.count(path) == 0) return false;
      }
      return true;
    };
  };
  start = Clock::now();
  if (!CreatePaths(*source, churn_paths, options.value_bytes)) return 1;
  bool churned = watch.WaitFor(all_seen(watch.created), seconds(120));
  const double churn_create_s = Since(start);
  const auto deletes_start = Clock::now();
  if (!DeletePaths(*source, churn_paths)) return 1;
  churned = watch.WaitFor(all_seen(watch.deleted), seconds(120)) && churned;
  const double churn_delete_s = Since(deletes_start);
  const double churn_s = churn_create_s + churn_delete_s;
  std::cerr << "churn: " << churn_paths.size() << " creates on the target after " << churn_create_s
            << " s, as many deletes after " << churn_delete_s << " s\n";

  // Restart: kill -9, changes while down, restart.
  tool.Kill9();
  std::vector<std::string> changed_paths;
  for (size_t i = 0; i < options.restart_changes; ++i) {
    changed_paths.push_back(tree[101 + (i * 7919) % (n - 101)]);
  }
  std::sort(changed_paths.begin(), changed_paths.end());
  changed_paths.erase(std::unique(changed_paths.begin(), changed_paths.end()), changed_paths.end());
  {
    std::lock_guard lock(watch.mutex());
    watch.changed.clear();
  }
  if (!Pipelined(changed_paths.size(), 500, [&](size_t i, std::function<void(bool)> done) {
        source->SetData(changed_paths[i], "changed while down", -1,
                        [done](zk::ZkResult<zk::SetDataReply> reply) { done(reply.ok()); });
      })) {
    return 1;
  }
  start = Clock::now();
  if (!tool.Start()) return 1;
  const bool restarted = watch.WaitFor(
      [&] {
        for (const std::string& path : changed_paths) {
          if (watch.changed.count(path) == 0) return false;
        }
        return true;
      },
      seconds(120));
  const double restart_s = Since(start);
  tool.Sample();
  tool.Stop();

  // Verify: the target equals the source under kRoot.
  auto source_tree = connectors::WalkZkTree(*source, *scope, walk);
  auto target_tree = connectors::WalkZkTree(*target, *scope, walk);
  size_t differences = 0;
  if (source_tree.ok() && target_tree.ok()) {
    std::map<std::string, std::string> expected;
    for (auto& entry : source_tree->entries) expected[entry.key] = entry.value;
    for (auto& entry : target_tree->entries) {
      auto it = expected.find(entry.key);
      if (it == expected.end() || it->second != entry.value) ++differences;
      if (it != expected.end()) expected.erase(it);
    }
    differences += expected.size();
  }

  std::printf("\n%zu nodes of %zu bytes under %s; %ld cores; source loaded in %.2f s\n\n", n,
              options.value_bytes, kRoot.c_str(), sysconf(_SC_NPROCESSORS_ONLN), load_s);
  std::printf("| measure | zk2etcd zk2zk | reference |\n|---|---|---|\n");
  std::printf(
      "| initial copy | %s s (%s nodes/s) | raw read %s s, raw create %s s (%s nodes/s); "
      "copy / slower = %s |\n",
      Fixed(copy_s, 2).c_str(), Fixed(n / copy_s, 0).c_str(), Fixed(raw_read_s, 2).c_str(),
      Fixed(raw_create_s, 2).c_str(), Fixed(n / raw_create_s, 0).c_str(),
      Fixed(copy_s / std::max(raw_read_s, raw_create_s), 2).c_str());
  for (const DelayResult& delay : delays) {
    std::printf("| delay at %d/s (p50 / p99 / max ms) | %s | |\n", delay.rate,
                DelayText(delay).c_str());
  }
  std::printf(
      "| churn (%zu creates, then as many deletes) | %s changes/s (creates %s s, "
      "deletes %s s)%s | zk2zk publishes 280/s |\n",
      churn_paths.size(), Fixed(2.0 * churn_paths.size() / churn_s, 0).c_str(),
      Fixed(churn_create_s, 2).c_str(), Fixed(churn_delete_s, 2).c_str(),
      churned ? "" : " NOT ALL ARRIVED");
  std::printf("| restart after kill -9, %zu changes while down | %s s%s | |\n",
              changed_paths.size(), Fixed(restart_s, 2).c_str(),
              restarted ? "" : " NOT ALL ARRIVED");
  std::printf("| peak memory, CPU | %s MiB, %s s | |\n", Fixed(tool.peak_rss_mib(), 1).c_str(),
              Fixed(tool.cpu_seconds(), 1).c_str());
  std::printf("| target == source at the end | %s |\n",
              differences == 0 ? "yes" : (std::to_string(differences) + " differences").c_str());
  std::printf("\nlog: %s\n", tool.log().c_str());
  return differences == 0 && churned && restarted ? 0 : 1;
}

}  // namespace
}  // namespace zk2etcd::bench

int main(int argc, char** argv) { return zk2etcd::bench::Main(argc, argv); }

// Full-tree read rate of zk2etcd's ZooKeeper client against the official C client (libzookeeper-mt
// 3.8), on one ZooKeeper 3.8 server that the benchmark starts itself (testing/ fixtures).
//
// The tree is Dubbo-shaped: /dubbo/<interface>/{providers,consumers,configurators,routers}/<URL-
// encoded dubbo URL>, about 100,000 nodes, built with pipelined multi creates. Each run reads the
// whole tree breadth-first (children + data of every node) with a bounded number of requests in
// flight:
//   c-client        zoo_aget_children2 + zoo_aget per node, pipelined (the reference)
//   ours-pipelined  GetChildren (getChildren2) + GetData per node, pipelined: the same requests
//   ours-multiread  multiRead requests, each carrying getChildren + getData of `batch` nodes
// Runs alternate between the clients (the order flips each round) and the table shows every run
// and the median rate of each client. Not a test: it prints figures; build it in Release.
//
// Usage: zk_read_benchmark [--rounds=3] [--window=1000] [--batch=64] [--interfaces=2439]
#include <zookeeper/zookeeper.h>

#include <algorithm>
#include <atomic>
#include <chrono>
#include <condition_variable>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <deque>
#include <functional>
#include <map>
#include <memory>
#include <mutex>
#include <string>
#include <vector>

#include "testing/zookeeper_c_client.h"
#include "testing/zookeeper_server.h"
#include "zk/asio_zk_client.h"

namespace {

using Clock = std::chrono::steady_clock;
using zk2etcd::zk::ZkResult;

struct Config {
  int rounds = 3;
  size_t window = 1000;  // requests in flight
  size_t batch = 64;     // nodes per multi-read request
  int interfaces = 2439;
  std::string clients = "c-client,ours-pipelined,ours-multiread";
};

struct RunResult {
  size_t nodes = 0;
  size_t data_bytes = 0;
  double seconds = 0;
  double rate() const { return seconds > 0 ? static_cast<double>(nodes) / seconds : 0; }
};

// --- The tree --------------------------------------------------------------------------------

std::string UrlEncode(const std::string& text) {
  static const char* kHex = "0123456789ABCDEF";
  std::string out;
  for (unsigned char c : text) {
    if (std::isalnum(c) || c == '.' || c == '-' || c == '_') {
      out.push_back(static_cast<char>(c));
    } else {
      out.push_back('%');
      out.push_back(kHex[c >> 4]);
      out.push_back(kHex[c & 15]);
    }
  }
  return out;
}

struct Tree {
  std::vector<std::vector<std::pair<std::string, std::string>>> levels;  // (path, data) by depth
  size_t size() const {
    size_t n = 0;
    for (const auto& level : levels) n += level.size();
    return n;
  }
  size_t data_bytes() const {
    size_t n = 0;
    for (const auto& level : levels) {
      for (const auto& node : level) n += node.second.size();
    }
    return n;
  }
};

Tree DubboTree(int interfaces) {
  // 36 leaves per interface: 20 providers, 12 consumers, 2 configurators, 2 routers.
  const std::pair<const char*, int> categories[] = {
      {"providers", 20}, {"consumers", 12}, {"configurators", 2}, {"routers", 2}};
  Tree tree;
  tree.levels.resize(4);
  tree.levels[0].push_back({"/dubbo", ""});
  for (int i = 0; i < interfaces; ++i) {
    char service[64];
    std::snprintf(service, sizeof(service), "com.example.svc%02d.DemoService%05d", i % 37, i);
    const std::string interface_path = std::string("/dubbo/") + service;
    tree.levels[1].push_back({interface_path, ""});
    for (const auto& [category, leaves] : categories) {
      const std::string category_path = interface_path + "/" + category;
      tree.levels[2].push_back({category_path, ""});
      for (int leaf = 0; leaf < leaves; ++leaf) {
        const std::string host =
            "10." + std::to_string(i % 250) + "." + std::to_string(leaf) + ".7";
        const std::string url =
            std::string(category == std::string("consumers") ? "consumer" : "dubbo") + "://" +
            host + ":20880/" + service +
            "?anyhost=true&application=demo&methods=a,b&pid=" + std::to_string(1000 + leaf);
        tree.levels[3].push_back({category_path + "/" + UrlEncode(url), host});
      }
    }
  }
  return tree;
}

// Builds the tree with pipelined multis of `batch` creates, level by level.
bool BuildTree(zk2etcd::zk::ZkClient& client, const Tree& tree) {
  constexpr size_t kCreatesPerMulti = 500;
  constexpr size_t kMultisInFlight = 8;
  std::mutex mutex;
  std::condition_variable cv;
  size_t in_flight = 0;
  bool failed = false;
  for (const auto& level : tree.levels) {
    for (size_t i = 0; i < level.size(); i += kCreatesPerMulti) {
      std::vector<zk2etcd::zk::MultiOp> ops;
      for (size_t j = i; j < std::min(level.size(), i + kCreatesPerMulti); ++j) {
        ops.push_back(zk2etcd::zk::MultiOp::Create(level[j].first, level[j].second));
      }
      std::unique_lock lock(mutex);
      cv.wait(lock, [&] { return in_flight < kMultisInFlight; });
      ++in_flight;
      lock.unlock();
      client.Multi(std::move(ops), [&](ZkResult<zk2etcd::zk::MultiReply> r) {
        std::lock_guard guard(mutex);
        if (!r.ok()) {
          std::fprintf(stderr, "create failed: %s\n", r.error().message.c_str());
          failed = true;
        }
        --in_flight;
        cv.notify_all();
      });
    }
    std::unique_lock lock(mutex);
    cv.wait(lock, [&] { return in_flight == 0; });  // parents before children
  }
  return !failed;
}

// --- Breadth-first reader, shared by all clients -----------------------------------------------

// Keeps up to `window` requests in flight; `issue(path)` starts the reads of one node and each
// completion calls Done(). Thread-safe: completions come from the clients' threads.
class Walker {
 public:
  Walker(size_t window, size_t requests_per_node,
         std::function<void(std::vector<std::string>)> issue, size_t nodes_per_issue = 1)
      : window_(window),
        requests_per_node_(requests_per_node),
        nodes_per_issue_(nodes_per_issue),
        issue_(std::move(issue)) {}

  RunResult Run(const std::string& root) {
    const auto start = Clock::now();
    {
      std::lock_guard lock(mutex_);
      queue_.push_back(root);
    }
    Pump();
    std::unique_lock lock(mutex_);
    done_cv_.wait(lock, [&] { return in_flight_ == 0 && queue_.empty(); });
    result_.seconds = std::chrono::duration<double>(Clock::now() - start).count();
    return result_;
  }

  // One node read: its children join the queue.
  void NodeRead(const std::string& path, const std::vector<std::string>& children,
                size_t data_bytes) {
    std::lock_guard lock(mutex_);
    ++result_.nodes;
    result_.data_bytes += data_bytes;
    for (const auto& child : children) queue_.push_back(path + "/" + child);
  }

  // `requests` of the in-flight ones finished.
  void Done(size_t requests) {
    {
      std::lock_guard lock(mutex_);
      in_flight_ -= requests;
    }
    Pump();
  }

  void Fail(const std::string& what) {
    std::fprintf(stderr, "read failed: %s\n", what.c_str());
    std::abort();
  }

 private:
  void Pump() {
    while (true) {
      std::vector<std::string> paths;
      {
        std::lock_guard lock(mutex_);
        const size_t cost = requests_per_node_ * nodes_per_issue_;
        if (queue_.empty() || in_flight_ + cost > window_) {
          if (in_flight_ == 0 && queue_.empty()) done_cv_.notify_all();
          return;
        }
        while (!queue_.empty() && paths.size() < nodes_per_issue_) {
          paths.push_back(std::move(queue_.front()));
          queue_.pop_front();
        }
        in_flight_ += requests_per_node_ * paths.size();
      }
      issue_(std::move(paths));
    }
  }

  const size_t window_;
  const size_t requests_per_node_;
  const size_t nodes_per_issue_;
  std::function<void(std::vector<std::string>)> issue_;
  std::mutex mutex_;
  std::condition_variable done_cv_;
  std::deque<std::string> queue_;
  size_t in_flight_ = 0;
  RunResult result_;
};

// ours-pipelined: one node = GetChildren + GetData; the node counts when both are back.
RunResult ReadOursPipelined(zk2etcd::zk::ZkClient& client, const Config& config) {
  struct Pending {
    std::string path;
    std::vector<std::string> children;
    size_t data_bytes = 0;
    std::atomic<int> left{2};
  };
  Walker* walker_ptr = nullptr;
  Walker walker(config.window, 2, [&](std::vector<std::string> paths) {
    for (auto& path : paths) {
      auto pending = std::make_shared<Pending>();
      pending->path = std::move(path);
      auto finish = [pending, &walker_ptr] {
        if (--pending->left == 0) {
          walker_ptr->NodeRead(pending->path, pending->children, pending->data_bytes);
          walker_ptr->Done(2);
        }
      };
      client.GetChildren(pending->path, false,
                         [pending, finish, &walker_ptr](ZkResult<zk2etcd::zk::ChildrenReply> r) {
                           if (!r.ok()) walker_ptr->Fail(r.error().message);
                           pending->children = std::move(r->children);
                           finish();
                         });
      client.GetData(pending->path, false,
                     [pending, finish, &walker_ptr](ZkResult<zk2etcd::zk::GetDataReply> r) {
                       if (!r.ok()) walker_ptr->Fail(r.error().message);
                       pending->data_bytes = r->data.size();
                       finish();
                     });
    }
  });
  walker_ptr = &walker;
  return walker.Run("/dubbo");
}

// ours-multiread: `batch` nodes per multiRead (getChildren + getData each).
RunResult ReadOursMultiRead(zk2etcd::zk::ZkClient& client, const Config& config) {
  Walker* walker_ptr = nullptr;
  Walker walker(
      config.window, 2,
      [&](std::vector<std::string> paths) {
        std::vector<zk2etcd::zk::ReadOp> ops;
        ops.reserve(paths.size() * 2);
        for (const auto& path : paths) {
          ops.push_back(zk2etcd::zk::ReadOp::GetChildren(path));
          ops.push_back(zk2etcd::zk::ReadOp::GetData(path));
        }
        client.MultiRead(std::move(ops), [paths = std::move(paths),
                                          &walker_ptr](ZkResult<zk2etcd::zk::MultiReadReply> r) {
          if (!r.ok()) walker_ptr->Fail(r.error().message);
          for (size_t i = 0; i < paths.size(); ++i) {
            const auto& children = r->results[2 * i];
            const auto& data = r->results[2 * i + 1];
            if (children.error != zk2etcd::zk::ZkErrorCode::kOk ||
                data.error != zk2etcd::zk::ZkErrorCode::kOk) {
              walker_ptr->Fail("multi-read result for " + paths[i]);
            }
            walker_ptr->NodeRead(paths[i], children.children, data.data.size());
          }
          walker_ptr->Done(2 * paths.size());
        });
      },
      config.batch);
  walker_ptr = &walker;
  return walker.Run("/dubbo");
}

// c-client: zoo_aget_children2 + zoo_aget per node, pipelined.
struct CNode {
  Walker* walker;
  std::string path;
  std::vector<std::string> children;
  size_t data_bytes = 0;
  std::atomic<int> left{2};
  void Finish() {
    if (--left == 0) {
      walker->NodeRead(path, children, data_bytes);
      Walker* w = walker;
      delete this;
      w->Done(2);
    }
  }
};

void CChildrenDone(int rc, const String_vector* strings, const ::Stat*, const void* data) {
  auto* node = static_cast<CNode*>(const_cast<void*>(data));
  if (rc != ZOK) node->walker->Fail("zoo_aget_children2 " + node->path + ": " + zerror(rc));
  for (int i = 0; i < strings->count; ++i) node->children.emplace_back(strings->data[i]);
  node->Finish();
}

void CDataDone(int rc, const char* value, int value_len, const ::Stat*, const void* data) {
  auto* node = static_cast<CNode*>(const_cast<void*>(data));
  if (rc != ZOK) node->walker->Fail("zoo_aget " + node->path + ": " + zerror(rc));
  (void)value;
  node->data_bytes = value_len > 0 ? static_cast<size_t>(value_len) : 0;
  node->Finish();
}

RunResult ReadCClient(zhandle_t* handle, const Config& config) {
  Walker* walker_ptr = nullptr;
  Walker walker(config.window, 2, [&](std::vector<std::string> paths) {
    for (auto& path : paths) {
      auto* node = new CNode;
      node->walker = walker_ptr;
      node->path = std::move(path);
      if (zoo_aget_children2(handle, node->path.c_str(), 0, CChildrenDone, node) != ZOK ||
          zoo_aget(handle, node->path.c_str(), 0, CDataDone, node) != ZOK) {
        walker_ptr->Fail("zoo_aget submit " + node->path);
      }
    }
  });
  walker_ptr = &walker;
  return walker.Run("/dubbo");
}

double Median(std::vector<double> values) {
  std::sort(values.begin(), values.end());
  return values[values.size() / 2];
}

}  // namespace

int main(int argc, char** argv) {
  Config config;
  for (int i = 1; i < argc; ++i) {
    const std::string arg = argv[i];
    auto value = [&](const char* name) -> const char* {
      const std::string prefix = std::string("--") + name + "=";
      return arg.rfind(prefix, 0) == 0 ? arg.c_str() + prefix.size() : nullptr;
    };
    if (const char* v = value("rounds")) {
      config.rounds = std::atoi(v);
    } else if (const char* v2 = value("window")) {
      config.window = static_cast<size_t>(std::atol(v2));
    } else if (const char* v3 = value("batch")) {
      config.batch = static_cast<size_t>(std::atol(v3));
    } else if (const char* v4 = value("interfaces")) {
      config.interfaces = std::atoi(v4);
    } else if (const char* v5 = value("clients")) {
      config.clients = v5;
    } else {
      std::fprintf(stderr,
                   "usage: %s [--rounds=3] [--window=1000] [--batch=64] [--interfaces=2439]\n"
                   "          [--clients=c-client,ours-pipelined,ours-multiread]\n",
                   argv[0]);
      return 2;
    }
  }
  if (config.rounds < 1 || config.window < 2 * config.batch || config.batch < 1 ||
      config.interfaces < 1) {
    std::fprintf(stderr, "bad arguments: need rounds >= 1, batch >= 1, window >= 2 * batch\n");
    return 2;
  }

  auto server = zk2etcd::testing::ZooKeeperServer::Start();
  if (!server.ok()) {
    std::fprintf(stderr, "cannot start ZooKeeper: %s\n", server.error().message.c_str());
    return 1;
  }
  const std::string address = (*server)->address();

  zk2etcd::zk::ZkClientOptions options;
  options.connect_string = address;
  options.session_timeout = std::chrono::seconds(30);
  options.max_in_flight = config.window;
  auto ours = zk2etcd::zk::NewAsioZkClient(options, {});
  if (!ours.ok()) {
    std::fprintf(stderr, "client: %s\n", ours.error().message.c_str());
    return 1;
  }
  zoo_set_debug_level(ZOO_LOG_LEVEL_ERROR);
  auto c_client = zk2etcd::testing::ZooKeeperCClient::Connect(address, std::chrono::seconds(30));
  if (!c_client.ok()) {
    std::fprintf(stderr, "C client: %s\n", c_client.error().message.c_str());
    return 1;
  }

  const Tree tree = DubboTree(config.interfaces);
  const auto build_start = Clock::now();
  if (!BuildTree(**ours, tree)) return 1;
  const double build_seconds = std::chrono::duration<double>(Clock::now() - build_start).count();
  std::printf("tree: %zu nodes, built in %.2f s (%.0f creates/s, pipelined multis of 500)\n",
              tree.size(), build_seconds, static_cast<double>(tree.size()) / build_seconds);
  std::printf("window %zu requests in flight; multi-read batch %zu nodes (%zu reads)\n\n",
              config.window, config.batch, 2 * config.batch);

  using Reader = std::function<RunResult()>;
  const std::vector<std::pair<std::string, Reader>> all_readers = {
      {"c-client", [&] { return ReadCClient((*c_client)->handle(), config); }},
      {"ours-pipelined", [&] { return ReadOursPipelined(**ours, config); }},
      {"ours-multiread", [&] { return ReadOursMultiRead(**ours, config); }},
  };
  std::vector<std::pair<std::string, Reader>> readers;
  for (const auto& reader : all_readers) {
    if (("," + config.clients + ",").find("," + reader.first + ",") != std::string::npos) {
      readers.push_back(reader);
    }
  }
  if (readers.empty()) {
    std::fprintf(stderr, "no client selected by --clients=%s\n", config.clients.c_str());
    return 2;
  }
  // One untimed pass each warms the server's JIT and caches.
  for (const auto& [name, read] : readers) read();

  std::map<std::string, std::vector<double>> rates;
  std::printf("%-5s %-16s %8s %9s %10s\n", "run", "client", "nodes", "seconds", "nodes/s");
  int run = 0;
  for (int round = 0; round < config.rounds; ++round) {
    std::vector<size_t> order(readers.size());
    for (size_t i = 0; i < order.size(); ++i) order[i] = i;
    if (round % 2 == 1) std::reverse(order.begin(), order.end());
    for (size_t index : order) {
      const auto& [name, read] = readers[index];
      const RunResult result = read();
      if (result.nodes != tree.size() || result.data_bytes != tree.data_bytes()) {
        std::fprintf(stderr, "%s read %zu nodes and %zu data bytes, expected %zu and %zu\n",
                     name.c_str(), result.nodes, result.data_bytes, tree.size(), tree.data_bytes());
        return 1;
      }
      rates[name].push_back(result.rate());
      std::printf("%-5d %-16s %8zu %9.3f %10.0f\n", ++run, name.c_str(), result.nodes,
                  result.seconds, result.rate());
      std::fflush(stdout);
    }
  }
  const double reference = rates.count("c-client") ? Median(rates["c-client"]) : 0;
  std::printf("\nmedian nodes/s over %d rounds:\n", config.rounds);
  for (const auto& [name, read] : readers) {
    const double median = Median(rates[name]);
    if (reference > 0) {
      std::printf("  %-16s %8.0f   %.2fx the C client\n", name.c_str(), median, median / reference);
    } else {
      std::printf("  %-16s %8.0f\n", name.c_str(), median);
    }
  }
  (*ours)->Close();
  return 0;
}

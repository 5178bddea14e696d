// zk2etcd-devenv: a throw-away local environment for trying zk2etcd by hand.
//
// Starts a ZooKeeper 3.8 and an etcd 3.4 on free loopback ports in temporary directories, fills
// ZooKeeper with a small Dubbo-shaped tree, runs the given command with ZK2ETCD_ZOOKEEPER_SERVERS
// and ZK2ETCD_ETCD_SERVERS set (and "{zk}" / "{etcd}" in its arguments replaced by the
// addresses), then shows what etcd holds under /dubbo and stops both servers. Ctrl-C stops the
// command first.
//
// With --demo, once the command runs, it waits for the initial sync to reach etcd, then adds and
// removes a provider in ZooKeeper and reports how soon etcd followed; when standard input is not
// a terminal it then stops the command (so scripts end), otherwise it keeps it running.
//
//   zk2etcd-devenv [--interfaces N] [--hold] [--demo] -- zk2etcd sync
#include <signal.h>
#include <unistd.h>
#include <sys/wait.h>

#include <atomic>
#include <functional>
#include <optional>
#include <cstdlib>
#include <iostream>
#include <string>
#include <thread>
#include <vector>

#include "testing/dubbo_tree.h"
#include "testing/etcd_server.h"
#include "testing/zookeeper_c_client.h"
#include "testing/zookeeper_server.h"

namespace zk2etcd::testing {
namespace {

std::atomic<int> g_signal{0};  // set by the signal handler only

void OnSignal(int signal) { g_signal.store(signal); }

int Usage(const std::string& error) {
  std::cerr << "zk2etcd-devenv: " << error << "\n"
            << "usage: zk2etcd-devenv [--interfaces N] [--hold] [--demo] -- COMMAND [ARGS...]\n";
  return 2;
}

std::string Replace(std::string text, const std::string& from, const std::string& to) {
  for (size_t at = text.find(from); at != std::string::npos; at = text.find(from, at + to.size())) {
    text.replace(at, from.size(), to);
  }
  return text;
}

size_t CountKeys(const EtcdServer& etcd, const std::string& prefix) {
  auto keys = etcd.Etcdctl({"get", "--prefix", prefix, "--keys-only"});
  if (!keys.ok()) return 0;
  size_t lines = 0;
  for (const char c : *keys) lines += c == '\n' ? 1 : 0;
  // Each key prints as a line and a blank line; zk2etcd's meta records live elsewhere.
  return lines / 2;
}

// Times how long `condition` takes to hold, polling; nullopt after `limit`.
std::optional<double> SecondsUntil(const std::function<bool()>& condition, double limit) {
  const auto start = std::chrono::steady_clock::now();
  while (true) {
    const bool holds = condition();
    const double elapsed =
        std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
    if (holds) return elapsed;
    if (elapsed > limit || g_signal.load() != 0) return std::nullopt;
    std::this_thread::sleep_for(std::chrono::milliseconds(20));
  }
}

void RunDemo(const EtcdServer& etcd, const std::string& zk_address, const std::string& root,
             size_t expected_keys, ChildProcess& child) {
  auto initial = SecondsUntil([&] { return CountKeys(etcd, root) >= expected_keys; }, 60);
  if (!initial) {
    std::cerr << "devenv: demo: etcd did not reach " << expected_keys << " keys within 60 s\n";
    return;
  }
  std::cerr << "devenv: demo: initial sync done: " << expected_keys << " keys in etcd after "
            << *initial << " s\n";
  auto client = ZooKeeperCClient::Connect(zk_address, std::chrono::seconds(10));
  if (!client.ok()) return;
  const std::string provider =
      root + "/org.example.DemoService/providers/" +
      UrlEncode("dubbo://10.9.9.9:20880/org.example.DemoService?side=provider");
  if (!(*client)->CreateRecursive(provider, "new provider").ok()) return;
  const std::string check_key = provider;
  auto created = SecondsUntil(
      [&] {
        auto value = etcd.Etcdctl({"get", check_key, "--print-value-only"});
        return value.ok() && *value == "new provider\n";
      },
      30);
  std::cerr << "devenv: demo: added a provider in ZooKeeper; etcd had it after "
            << (created ? std::to_string(*created) + " s" : std::string("(not within 30 s)"))
            << " at most (polled with etcdctl)\n";
  if (!(*client)->Delete(provider).ok()) return;
  auto deleted = SecondsUntil(
      [&] {
        auto value = etcd.Etcdctl({"get", check_key, "--print-value-only"});
        return value.ok() && value->empty();
      },
      30);
  std::cerr << "devenv: demo: removed it; etcd dropped it after "
            << (deleted ? std::to_string(*deleted) + " s" : std::string("(not within 30 s)"))
            << " at most\n";
  if (isatty(STDIN_FILENO) == 0) {
    std::cerr << "devenv: demo: not on a terminal: stopping the command\n";
    kill(child.pid(), SIGTERM);
  } else {
    std::cerr << "devenv: demo: still syncing; change ZooKeeper at " << zk_address
              << " and watch etcd; Ctrl-C stops\n";
  }
}

int Main(int argc, char** argv) {
  DubboTreeShape shape;
  bool hold = false;
  bool demo = false;
  std::vector<std::string> command;
  for (int i = 1; i < argc; ++i) {
    const std::string arg = argv[i];
    if (arg == "--") {
      command.assign(argv + i + 1, argv + argc);
      break;
    }
    if (arg == "--interfaces" && i + 1 < argc) {
      shape.interfaces = std::atoi(argv[++i]);
    } else if (arg == "--hold") {
      hold = true;
    } else if (arg == "--demo") {
      demo = true;
    } else {
      return Usage("unknown argument " + arg);
    }
  }
  if (command.empty() && !hold) return Usage("no command given");

  std::cerr << "devenv: starting ZooKeeper and etcd on loopback...\n";
  auto zookeeper = ZooKeeperServer::Start();
  if (!zookeeper.ok()) return Usage("ZooKeeper: " + zookeeper.error().message);
  auto etcd = EtcdServer::Start();
  if (!etcd.ok()) return Usage("etcd: " + etcd.error().message);
  const std::string zk_address = (*zookeeper)->address();
  size_t expected_keys = 0;
  const std::string etcd_address = (*etcd)->endpoint();

  {
    auto client = ZooKeeperCClient::Connect(zk_address, std::chrono::seconds(10));
    if (!client.ok()) return Usage(client.error().message);
    const std::vector<ZNode> tree = MakeDubboTree(shape);
    for (const ZNode& node : tree) {
      if (auto created = (*client)->Create(node.path, node.data); !created.ok()) {
        return Usage(created.error().message);
      }
    }
    expected_keys = 0;
    for (const ZNode& node : tree) {
      expected_keys += node.path.rfind(shape.root + "/config", 0) == 0 ? 0 : 1;
    }
    std::cerr << "devenv: ZooKeeper " << zk_address << " holds a Dubbo tree of " << tree.size()
              << " nodes under " << shape.root << " (" << shape.root << "/config included)\n"
              << "devenv: etcd      " << etcd_address << " is empty\n";
  }

  setenv("ZK2ETCD_ZOOKEEPER_SERVERS", zk_address.c_str(), 1);
  setenv("ZK2ETCD_ETCD_SERVERS", etcd_address.c_str(), 1);
  struct sigaction action {};
  action.sa_handler = OnSignal;
  sigaction(SIGINT, &action, nullptr);
  sigaction(SIGTERM, &action, nullptr);

  int exit_status = 0;
  if (!command.empty()) {
    for (std::string& arg : command) {
      arg = Replace(Replace(arg, "{zk}", zk_address), "{etcd}", etcd_address);
    }
    std::string shown;
    for (const std::string& arg : command) shown += " " + arg;
    std::cerr << "devenv: running" << shown << "\n"
              << "devenv: (ZK2ETCD_ZOOKEEPER_SERVERS and ZK2ETCD_ETCD_SERVERS are set; Ctrl-C "
                 "stops it)\n";
    ChildProcess child;
    if (auto started = child.Start(command, ""); !started.ok()) {
      return Usage(started.error().message);
    }
    if (demo) RunDemo(**etcd, zk_address, shape.root, expected_keys, child);
    int status = -1;
    bool forwarded = false;
    while ((status = child.WaitFor(std::chrono::milliseconds(100))) == -1) {
      if (g_signal.load() != 0 && !forwarded) {
        kill(child.pid(), SIGTERM);
        forwarded = true;
      }
    }
    exit_status = WIFEXITED(status) ? WEXITSTATUS(status) : 128 + WTERMSIG(status);
    std::cerr << "devenv: command exited with status " << exit_status << "\n";
  } else {
    std::cerr << "devenv: holding the servers until Ctrl-C\n";
    while (g_signal.load() == 0) std::this_thread::sleep_for(std::chrono::milliseconds(100));
  }

  std::cerr << "devenv: etcd now holds " << CountKeys(**etcd, shape.root) << " keys under "
            << shape.root << "\n";
  std::cerr << "devenv: stopping the servers\n";
  return exit_status;
}

}  // namespace
}  // namespace zk2etcd::testing

int main(int argc, char** argv) { return zk2etcd::testing::Main(argc, argv); }

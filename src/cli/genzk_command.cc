// `zk2etcd genzk`: builds a Dubbo-shaped test tree in ZooKeeper, fast: every create is pipelined
// on one session (ZooKeeper applies a session's requests in order, so a parent sent before its
// children exists when they arrive), with up to --concurrent requests in flight.
//
//   <path>/<interface>/{providers,consumers,configurators,routers}/<URL-encoded Dubbo URL>
//
// The Go tool's flags keep their meaning: --parent-count parents (interfaces) under --path, each
// with --children-count children (leaves: providers and consumers), named after --keyPrefix.
#include <chrono>
#include <condition_variable>
#include <cstdio>
#include <mutex>

#include "cli/cli.h"
#include "cli/subcommand.h"
#include "common/strings.h"
#include "core/scope.h"
#include "zk/asio_zk_client.h"

namespace zk2etcd::cli {

namespace {

struct GenzkFlags {
  std::string zookeeper_servers;
  std::string path;
  uint64_t parent_count = 0;
  uint64_t children_count = 0;
  std::string key_prefix;
  uint64_t concurrent = 0;
  uint64_t data_bytes = 0;
  uint64_t data_every = 0;
  std::string zookeeper_digest;
};

// Sends creates with a bounded window and counts the outcomes. Callbacks come from the client's
// delivery thread.
class Creator {
 public:
  Creator(zk::ZkClient& client, size_t window) : client_(client), window_(window) {}

  void Create(std::string path, std::string data) {
    {
      std::unique_lock lock(mutex_);
      room_.wait(lock, [this] { return in_flight_ < window_; });
      ++in_flight_;
    }
    client_.Create(path, data, zk::CreateMode::kPersistent, zk::OpenAclUnsafe(),
                   [this, path](zk::ZkResult<zk::CreateReply> reply) {
                     std::lock_guard lock(mutex_);
                     --in_flight_;
                     if (reply.ok()) {
                       ++created_;
                     } else if (reply.error().code == zk::ZkErrorCode::kNodeExists) {
                       ++existing_;
                     } else if (!first_error_) {
                       first_error_ = reply.error().ToString();
                     }
                     room_.notify_all();
                   });
  }

  void Wait() {
    std::unique_lock lock(mutex_);
    room_.wait(lock, [this] { return in_flight_ == 0; });
  }

  size_t created() const {
    std::lock_guard lock(mutex_);
    return created_;
  }
  size_t existing() const {
    std::lock_guard lock(mutex_);
    return existing_;
  }
  std::optional<std::string> first_error() const {
    std::lock_guard lock(mutex_);
    return first_error_;
  }

 private:
  zk::ZkClient& client_;
  const size_t window_;
  mutable std::mutex mutex_;
  std::condition_variable room_;
  size_t in_flight_ = 0;
  size_t created_ = 0;
  size_t existing_ = 0;
  std::optional<std::string> first_error_;
};

int RunGenzk(const GenzkFlags& flags, std::ostream& out, std::ostream& err) {
  if (SplitCommaList(flags.zookeeper_servers).empty()) {
    err << "zk2etcd genzk: --zookeeper-servers is empty\n";
    return kExitUsage;
  }
  if (auto valid = core::ValidateZkPath(flags.path, "--path"); !valid.ok()) {
    err << "zk2etcd genzk: " << valid.error() << "\n";
    return kExitUsage;
  }
  if (flags.concurrent == 0 || flags.key_prefix.find('/') != std::string::npos) {
    err << "zk2etcd genzk: --concurrent must be positive and --keyPrefix must not contain '/'\n";
    return kExitUsage;
  }
  zk::ZkClientOptions options;
  options.connect_string = flags.zookeeper_servers;
  options.max_in_flight = flags.concurrent;
  if (!flags.zookeeper_digest.empty()) options.auth = {{"digest", flags.zookeeper_digest}};
  auto client = zk::NewAsioZkClient(options, {});
  if (!client.ok()) {
    err << "zk2etcd genzk: " << client.error().ToString() << "\n";
    return kExitUsage;
  }
  if (auto connected = zk::blocking::Exists(**client, "/"); !connected.ok()) {
    err << "zk2etcd genzk: cannot reach ZooKeeper: " << connected.error().ToString() << "\n";
    return kExitUsage;
  }
  if (auto root = zk::blocking::CreateAll(**client, flags.path); !root.ok()) {
    err << "zk2etcd genzk: cannot create " << flags.path << ": " << root.error().ToString() << "\n";
    return kExitFailure;
  }

  const auto start = std::chrono::steady_clock::now();
  auto last_report = start;
  Creator creator(**client, flags.concurrent);
  const std::string data(flags.data_bytes, 'd');
  uint64_t leaf = 0;
  const uint64_t providers = (flags.children_count + 1) / 2;
  for (uint64_t i = 0; i < flags.parent_count; ++i) {
    const std::string service = "org.example." + flags.key_prefix + std::to_string(i) +
                                ".DemoService";
    const std::string base = (flags.path == "/" ? "" : flags.path) + "/" + service;
    creator.Create(base, "");
    for (const char* category : {"providers", "consumers", "configurators", "routers"}) {
      creator.Create(base + "/" + category, "");
    }
    for (uint64_t c = 0; c < flags.children_count; ++c) {
      const bool provider = c < providers;
      const std::string host = "10." + std::to_string(i / 65536 % 256) + "." +
                               std::to_string(i / 256 % 256) + "." + std::to_string(i % 256);
      const std::string url =
          (provider ? "dubbo://" : "consumer://") + host + ":" + std::to_string(20000 + c) +
          "/" + service + "?anyhost=true&application=" + flags.key_prefix +
          "-app&dubbo=2.0.2&interface=" + service + "&methods=sayHello,sayGoodbye&pid=" +
          std::to_string(1000 + c) + "&side=" + (provider ? "provider" : "consumer") +
          "&timestamp=1700000000000";
      ++leaf;
      const bool with_data = flags.data_every > 0 && leaf % flags.data_every == 0;
      creator.Create(base + (provider ? "/providers/" : "/consumers/") + UrlEncode(url),
                     with_data ? data : "");
    }
    const auto now = std::chrono::steady_clock::now();
    if (now - last_report >= std::chrono::seconds(1)) {
      out << "written key count: " << creator.created() << "\n" << std::flush;
      last_report = now;
    }
  }
  creator.Wait();
  const double seconds =
      std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
  (*client)->Close();
  const size_t total = creator.created() + creator.existing();
  char rate[64];
  std::snprintf(rate, sizeof(rate), "%.0f", seconds > 0 ? static_cast<double>(total) / seconds : 0);
  out << "created " << creator.created() << " nodes (" << creator.existing()
      << " existed already) under " << flags.path << " in " << seconds << " s (" << rate
      << " nodes/s)\n";
  if (auto error = creator.first_error()) {
    err << "zk2etcd genzk: some creates failed; first: " << *error << "\n";
    return kExitFailure;
  }
  return kExitOk;
}

}  // namespace

Subcommand GenzkCommand() {
  return {"genzk", "generate a Dubbo-shaped zookeeper tree for tests and benchmarks",
          [](FlagSet& flags) -> CommandRunner {
            auto v = std::make_shared<GenzkFlags>();
            flags.AddString("zookeeper-servers", &v->zookeeper_servers, "",
                            "comma-separated list of zookeeper servers address");
            flags.AddString("path", &v->path, "/dubbo", "root path for test keys to be written");
            flags.AddUint("parent-count", &v->parent_count, 200,
                          "how many parents (Dubbo interfaces)");
            flags.AddUint("children-count", &v->children_count, 200,
                          "how many children (providers and consumers) of each parent");
            flags.AddString("keyPrefix", &v->key_prefix, "test",
                            "name prefix of the generated interfaces and applications");
            flags.AddUint("concurrent", &v->concurrent, 200, "creates in flight");
            flags.AddUint("data-bytes", &v->data_bytes, 0, "bytes of data on leaves that get data");
            flags.AddUint("data-every", &v->data_every, 0,
                          "give data to every n-th leaf (0: none)");
            flags.AddSecret("zookeeper-digest", &v->zookeeper_digest,
                            "digest credentials user:password");
            return [v](std::ostream& out, std::ostream& err) { return RunGenzk(*v, out, err); };
          }};
}

}  // namespace zk2etcd::cli

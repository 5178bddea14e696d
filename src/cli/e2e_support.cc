#include "cli/e2e_support.h"

#include <grpcpp/grpcpp.h>
#include <signal.h>
#include <sys/wait.h>
#include <zookeeper/zookeeper.h>

#include <atomic>
#include <condition_variable>
#include <cstdlib>
#include <fstream>
#include <mutex>
#include <regex>
#include <sstream>
#include <thread>

#include "etcd/etcdserver/etcdserverpb/rpc.grpc.pb.h"
#include "testing/server_support.h"
#include "testing/shared_servers.h"
#include "testing/zookeeper_c_client.h"

namespace zk2etcd::e2e {

Zk2etcdProcess::Zk2etcdProcess(std::vector<std::string> args) : args_(std::move(args)) {}

Zk2etcdProcess::~Zk2etcdProcess() { process_.Kill9(); }

testing::FixtureResult<void> Zk2etcdProcess::Start() {
  if (!dir_) {
    auto dir = testing::TempDir::Create("zk2etcd");
    if (!dir.ok()) return Unexpected{dir.error()};
    dir_ = std::make_unique<testing::TempDir>(std::move(dir).value());
    log_path_ = dir_->File("zk2etcd.log");
  }
  // ZK2ETCD_E2E_BINARY runs the tests against another build (e.g. an older one, to show that a
  // test fails there).
  const char* binary = std::getenv("ZK2ETCD_E2E_BINARY");
  std::vector<std::string> argv = {binary != nullptr && *binary != '\0' ? binary : ZK2ETCD_BINARY};
  argv.insert(argv.end(), args_.begin(), args_.end());
  return process_.Start(argv, log_path_);
}

int Zk2etcdProcess::RunToCompletion(std::chrono::milliseconds timeout) {
  if (!Start().ok()) return -1;
  const int status = process_.WaitFor(timeout);
  if (status == -1) {
    process_.Kill9();
    return -1;
  }
  return WIFEXITED(status) ? WEXITSTATUS(status) : 128 + WTERMSIG(status);
}

void Zk2etcdProcess::Kill9() { process_.Kill9(); }

int Zk2etcdProcess::Terminate(std::chrono::milliseconds timeout) {
  if (!process_.running()) return -1;
  kill(process_.pid(), SIGTERM);
  const int status = process_.WaitFor(timeout);
  if (status == -1) return -1;
  return WIFEXITED(status) ? WEXITSTATUS(status) : 128 + WTERMSIG(status);
}

void Zk2etcdProcess::Pause() { process_.Pause(); }
void Zk2etcdProcess::Resume() { process_.Resume(); }

std::string Zk2etcdProcess::Log() const {
  std::ifstream in(log_path_);
  std::stringstream buffer;
  buffer << in.rdbuf();
  return buffer.str();
}

size_t Zk2etcdProcess::CountLines(const std::string& text) const {
  std::istringstream log(Log());
  size_t count = 0;
  for (std::string line; std::getline(log, line);) count += line.find(text) != std::string::npos;
  return count;
}

bool Zk2etcdProcess::WaitForLog(const std::string& text, size_t count,
                                std::chrono::milliseconds timeout) const {
  return Eventually([&] { return CountLines(text) >= count; }, timeout);
}

struct EtcdView::Stub {
  std::unique_ptr<etcdserverpb::KV::Stub> kv;
};

EtcdView::EtcdView(const std::string& endpoint) : stub_(std::make_unique<Stub>()) {
  stub_->kv =
      etcdserverpb::KV::NewStub(grpc::CreateChannel(endpoint, grpc::InsecureChannelCredentials()));
}

EtcdView::~EtcdView() = default;

std::map<std::string, std::string> EtcdView::List(const std::string& prefix) {
  std::map<std::string, std::string> result;
  for (auto& [key, kv] : ListKeyValues(prefix)) result[key] = std::move(kv.value);
  return result;
}

std::map<std::string, int64_t> EtcdView::ModRevisions(const std::string& prefix) {
  std::map<std::string, int64_t> result;
  for (const auto& [key, kv] : ListKeyValues(prefix)) result[key] = kv.mod_revision;
  return result;
}

std::map<std::string, EtcdView::ValueAndRevision> EtcdView::ListKeyValues(
    const std::string& prefix) {
  std::map<std::string, ValueAndRevision> result;
  std::string start = prefix;
  std::string end = prefix;
  end.back() = static_cast<char>(end.back() + 1);
  while (true) {
    etcdserverpb::RangeRequest request;
    request.set_key(start);
    request.set_range_end(end);
    request.set_limit(5000);
    etcdserverpb::RangeResponse response;
    grpc::ClientContext context;
    context.set_deadline(std::chrono::system_clock::now() + std::chrono::seconds(10));
    if (!stub_->kv->Range(&context, request, &response).ok()) return result;
    for (const auto& kv : response.kvs()) {
      result[kv.key()] = ValueAndRevision{kv.value(), kv.mod_revision()};
    }
    if (!response.more() || response.kvs_size() == 0) break;
    start = response.kvs(response.kvs_size() - 1).key() + std::string(1, '\0');
  }
  return result;
}

std::optional<EtcdView::ValueAndRevision> EtcdView::GetKeyValue(const std::string& key) {
  etcdserverpb::RangeRequest request;
  request.set_key(key);
  etcdserverpb::RangeResponse response;
  grpc::ClientContext context;
  context.set_deadline(std::chrono::system_clock::now() + std::chrono::seconds(10));
  if (!stub_->kv->Range(&context, request, &response).ok() || response.kvs_size() == 0) {
    return std::nullopt;
  }
  return ValueAndRevision{response.kvs(0).value(), response.kvs(0).mod_revision()};
}

std::optional<std::string> EtcdView::Get(const std::string& key) {
  auto kv = GetKeyValue(key);
  if (!kv) return std::nullopt;
  return std::move(kv->value);
}

int64_t EtcdView::ModRevision(const std::string& key) {
  auto kv = GetKeyValue(key);
  return kv ? kv->mod_revision : 0;
}

void EtcdView::Put(const std::string& key, const std::string& value) {
  etcdserverpb::PutRequest request;
  request.set_key(key);
  request.set_value(value);
  etcdserverpb::PutResponse response;
  grpc::ClientContext context;
  context.set_deadline(std::chrono::system_clock::now() + std::chrono::seconds(10));
  stub_->kv->Put(&context, request, &response);
}

void EtcdView::Delete(const std::string& key) {
  etcdserverpb::DeleteRangeRequest request;
  request.set_key(key);
  etcdserverpb::DeleteRangeResponse response;
  grpc::ClientContext context;
  context.set_deadline(std::chrono::system_clock::now() + std::chrono::seconds(10));
  stub_->kv->DeleteRange(&context, request, &response);
}

int64_t EtcdView::Revision() {
  etcdserverpb::RangeRequest request;
  // Any key will do (the header carries the store's revision), but not the empty one, which etcd
  // refuses: "\0" as a C string was empty, so this returned 0 whatever the revision.
  request.set_key(std::string(1, '\0'));
  request.set_count_only(true);
  etcdserverpb::RangeResponse response;
  grpc::ClientContext context;
  context.set_deadline(std::chrono::system_clock::now() + std::chrono::seconds(10));
  if (!stub_->kv->Range(&context, request, &response).ok()) return 0;
  return response.header().revision();
}

namespace {

struct CreateBatch {
  std::mutex mutex;
  std::condition_variable done;
  size_t pending = 0;
  int first_error = ZOK;
};

void OnCreated(int rc, const char* /*path*/, const void* data) {
  auto* batch = static_cast<CreateBatch*>(const_cast<void*>(data));
  std::lock_guard lock(batch->mutex);
  if (rc != ZOK && rc != ZNODEEXISTS && batch->first_error == ZOK) batch->first_error = rc;
  if (--batch->pending == 0) batch->done.notify_all();
}

}  // namespace

testing::FixtureResult<void> CreateNodes(const std::string& zk_address,
                                         const std::vector<testing::ZNode>& nodes) {
  auto client = testing::ZooKeeperCClient::Connect(zk_address, std::chrono::seconds(15));
  if (!client.ok()) return Unexpected{client.error()};
  // Creates are pipelined by depth: all nodes of one depth, then the next, so parents exist.
  std::map<size_t, std::vector<const testing::ZNode*>> by_depth;
  for (const testing::ZNode& node : nodes) {
    by_depth[static_cast<size_t>(std::count(node.path.begin(), node.path.end(), '/'))].push_back(
        &node);
  }
  for (const auto& [depth, level] : by_depth) {
    CreateBatch batch;
    batch.pending = level.size();
    for (const testing::ZNode* node : level) {
      const int rc = zoo_acreate((*client)->handle(), node->path.c_str(), node->data.data(),
                                 static_cast<int>(node->data.size()), &ZOO_OPEN_ACL_UNSAFE, 0,
                                 OnCreated, &batch);
      if (rc != ZOK) {
        std::lock_guard lock(batch.mutex);
        batch.pending -= 1;
        if (batch.first_error == ZOK) batch.first_error = rc;
      }
    }
    std::unique_lock lock(batch.mutex);
    if (!batch.done.wait_for(lock, std::chrono::seconds(120), [&] { return batch.pending == 0; })) {
      return Unexpected{testing::FixtureError{"creating nodes timed out"}};
    }
    if (batch.first_error != ZOK) {
      return Unexpected{
          testing::FixtureError{std::string("create failed: ") + zerror(batch.first_error)}};
    }
  }
  return {};
}

bool Eventually(const std::function<bool()>& condition, std::chrono::milliseconds timeout) {
  const auto deadline = std::chrono::steady_clock::now() + timeout;
  while (std::chrono::steady_clock::now() < deadline) {
    if (condition()) return true;
    std::this_thread::sleep_for(std::chrono::milliseconds(50));
  }
  return condition();
}

std::map<std::string, std::string> ReadZkTree(testing::ZooKeeperCClient& zk,
                                              const std::string& root, const std::string& exclude) {
  std::map<std::string, std::string> tree;
  std::vector<std::string> stack = {root};
  while (!stack.empty()) {
    const std::string path = stack.back();
    stack.pop_back();
    if (path == exclude) continue;
    auto data = zk.Get(path);
    if (!data.ok() || !data->has_value()) continue;
    tree[path] = **data;
    auto children = zk.Children(path);
    if (!children.ok()) continue;
    for (const std::string& child : *children) {
      stack.push_back(path == "/" ? "/" + child : path + "/" + child);
    }
  }
  return tree;
}

std::map<std::string, std::string> Expected(const std::vector<testing::ZNode>& nodes,
                                            const std::string& prefix, const std::string& exclude) {
  std::map<std::string, std::string> expected;
  for (const testing::ZNode& node : nodes) {
    auto below = [](const std::string& path, const std::string& ancestor) {
      return path == ancestor || path.rfind(ancestor + "/", 0) == 0;
    };
    if (!below(node.path, prefix)) continue;
    if (!exclude.empty() && below(node.path, exclude)) continue;
    expected[node.path] = node.data;
  }
  return expected;
}

void SharedServersTest::SetUp() {
  ASSERT_FIXTURE_OK_AND_ASSIGN(zookeeper_, testing::SharedZooKeeper());
  ASSERT_FIXTURE_OK_AND_ASSIGN(etcd_, testing::SharedEtcd());
  ASSERT_FIXTURE_OK_AND_ASSIGN(
      zk_, testing::ZooKeeperCClient::Connect(zookeeper_->address(), std::chrono::seconds(20)));
  view_ = std::make_unique<EtcdView>(etcd_->endpoint());
}

HttpResult Http(int port, const std::string& path, const std::string& post_form) {
  std::vector<std::string> argv = {"curl", "-s", "-m", "10", "-w", "\n%{http_code}"};
  if (!post_form.empty()) argv.insert(argv.end(), {"--data", post_form});
  argv.push_back("http://127.0.0.1:" + std::to_string(port) + path);
  auto output = testing::RunCommand(argv, std::chrono::seconds(15));
  if (!output.ok()) return {};
  const size_t newline = output->rfind('\n');
  return {std::atoi(output->c_str() + newline + 1), output->substr(0, newline)};
}

int HttpPort(const Zk2etcdProcess& process) {
  std::smatch match;
  const std::string log = process.Log();
  static const std::regex kPort("http server listening.* port=([0-9]+)");
  if (!std::regex_search(log, match, kPort)) return 0;
  return std::stoi(match[1]);
}

}  // namespace zk2etcd::e2e

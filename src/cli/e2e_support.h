// Support for end-to-end tests that run the built zk2etcd binary against real servers, as an
// operator would: a process wrapper that reads its log, and independent views of ZooKeeper (the
// official C client) and etcd (raw gRPC stubs). Not thread-safe; one test thread.
#pragma once

#include <gtest/gtest.h>

#include <chrono>
#include <functional>
#include <map>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "testing/dubbo_tree.h"
#include "testing/etcd_server.h"
#include "testing/process.h"
#include "testing/temp_dir.h"
#include "testing/zookeeper_c_client.h"
#include "testing/zookeeper_server.h"

namespace zk2etcd::e2e {

// The zk2etcd binary under test (the build's, or $ZK2ETCD_E2E_BINARY when set), started with
// arguments; its output goes to a log file.
class Zk2etcdProcess {
 public:
  explicit Zk2etcdProcess(std::vector<std::string> args);
  ~Zk2etcdProcess();

  testing::FixtureResult<void> Start();
  // Runs to completion (for diff) and returns the exit status, or -1 on timeout.
  int RunToCompletion(std::chrono::milliseconds timeout);
  void Kill9();
  // SIGTERM; returns the exit status, or -1 if it did not exit within `timeout`.
  int Terminate(std::chrono::milliseconds timeout);
  void Pause();
  void Resume();
  bool running() { return process_.running() && !process_.HasExited(); }
  pid_t pid() const { return process_.pid(); }

  std::string Log() const;
  // Number of log lines containing `text`.
  size_t CountLines(const std::string& text) const;
  // Waits until the log has at least `count` lines containing `text`.
  bool WaitForLog(const std::string& text, size_t count, std::chrono::milliseconds timeout) const;
  const std::string& log_path() const { return log_path_; }

 private:
  std::vector<std::string> args_;
  std::unique_ptr<testing::TempDir> dir_;
  std::string log_path_;
  testing::ChildProcess process_;
};

// etcd as seen through raw gRPC stubs, independent of zk2etcd's client.
class EtcdView {
 public:
  explicit EtcdView(const std::string& endpoint);
  ~EtcdView();
  // Every key-value with `prefix`, sorted.
  std::map<std::string, std::string> List(const std::string& prefix);
  // Every key with `prefix` and its mod_revision.
  std::map<std::string, int64_t> ModRevisions(const std::string& prefix);
  std::optional<std::string> Get(const std::string& key);
  // The key's mod_revision (0 when absent or when etcd does not answer).
  int64_t ModRevision(const std::string& key);
  void Put(const std::string& key, const std::string& value);
  void Delete(const std::string& key);
  // The store's current revision (0 if etcd does not answer).
  int64_t Revision();

 private:
  struct ValueAndRevision {
    std::string value;
    int64_t mod_revision = 0;
  };
  std::optional<ValueAndRevision> GetKeyValue(const std::string& key);
  std::map<std::string, ValueAndRevision> ListKeyValues(const std::string& prefix);

  struct Stub;
  std::unique_ptr<Stub> stub_;
};

// Creates nodes fast (pipelined asynchronous creates through the official C client), parents
// before children as MakeDubboTree orders them.
testing::FixtureResult<void> CreateNodes(const std::string& zk_address,
                                         const std::vector<testing::ZNode>& nodes);

// Polls `condition` every 50 ms until it holds or `timeout` passes.
bool Eventually(const std::function<bool()>& condition, std::chrono::milliseconds timeout);

// Every node under `root` (itself included) with its data, read through `zk`, minus the subtree
// `exclude` (empty: none): what etcd must hold once zk2etcd has caught up.
std::map<std::string, std::string> ReadZkTree(testing::ZooKeeperCClient& zk,
                                              const std::string& root, const std::string& exclude);

// The etcd keys (and values) zk2etcd should produce for `nodes` under `prefix`, minus `exclude`.
std::map<std::string, std::string> Expected(const std::vector<testing::ZNode>& nodes,
                                            const std::string& prefix, const std::string& exclude);

// An HTTP request to the tested process's --http-addr on 127.0.0.1 (curl, 10 s): GET, or POST of
// `post_form` when it is not empty. Status 0 when curl failed.
struct HttpResult {
  int status = 0;
  std::string body;
};
HttpResult Http(int port, const std::string& path, const std::string& post_form = "");
// The port the process logged ("http server listening ... port=N"), 0 before it did.
int HttpPort(const Zk2etcdProcess& process);

// A test on the ZooKeeper and etcd servers that every test of the binary shares
// (testing/shared_servers.h: started once, on first use), with a ZooKeeper client and an etcd
// view on them. Each test works under paths of its own.
class SharedServersTest : public ::testing::Test {
 protected:
  void SetUp() override;

  testing::ZooKeeperServer* zookeeper_ = nullptr;
  testing::EtcdServer* etcd_ = nullptr;
  std::unique_ptr<testing::ZooKeeperCClient> zk_;
  std::unique_ptr<EtcdView> view_;
};

}  // namespace zk2etcd::e2e

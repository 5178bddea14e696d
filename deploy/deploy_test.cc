// Checks of the deployment files: the alert rules pass `promtool check rules` and their unit
// tests, every dashboard query is valid PromQL over metrics zk2etcd really exposes, and the
// Kubernetes manifest wires probes, ports and leader election consistently.
#include <gtest/gtest.h>
#include <yaml-cpp/yaml.h>

#include <fstream>
#include <regex>
#include <set>
#include <sstream>

#include "ops/metrics.h"
#include "ops/metrics_catalog.h"
#include "testing/process.h"
#include "testing/temp_dir.h"

namespace zk2etcd {
namespace {

using std::chrono::seconds;

const std::string kDeploy = ZK2ETCD_DEPLOY_DIR;

std::string Read(const std::string& path) {
  std::ifstream in(path);
  std::stringstream buffer;
  buffer << in.rdbuf();
  return buffer.str();
}

void RequirePromtool() {
  if (!testing::ProgramExists("promtool")) {
    if (testing::InCi()) FAIL() << "promtool is not installed (scripts/install-deps.sh)";
    GTEST_SKIP() << "promtool is not installed";
  }
}

TEST(DeployTest, AlertRulesPassPromtoolAndTheirUnitTests) {
  RequirePromtool();
  auto checked = testing::RunCommand(
      {"promtool", "check", "rules", kDeploy + "/prometheus/zk2etcd-alerts.yaml"}, seconds(60));
  EXPECT_TRUE(checked.ok()) << checked.error().message;
  auto tested = testing::RunCommand(
      {"promtool", "test", "rules", kDeploy + "/prometheus/zk2etcd-alerts-test.yaml"},
      seconds(60));
  EXPECT_TRUE(tested.ok()) << tested.error().message;
}

// The metric names zk2etcd exposes (from the catalog), with the series suffixes of histograms.
std::set<std::string> ExposedNames() {
  std::set<std::string> names;
#define ZK2ETCD_TEST_NAME(member, name, labels, help) names.insert(name);
#define ZK2ETCD_TEST_HISTOGRAM_NAME(member, name, labels, buckets, help) \
  for (const char* suffix : {"_bucket", "_sum", "_count"}) names.insert(std::string(name) + suffix);
  ZK2ETCD_METRICS(ZK2ETCD_TEST_NAME, ZK2ETCD_TEST_NAME, ZK2ETCD_TEST_HISTOGRAM_NAME)
#undef ZK2ETCD_TEST_NAME
#undef ZK2ETCD_TEST_HISTOGRAM_NAME
  return names;
}

TEST(DeployTest, DashboardQueriesAreValidPromqlOverExposedMetrics) {
  RequirePromtool();
  const std::string dashboard = Read(kDeploy + "/grafana/zk2etcd-dashboard.json");
  ASSERT_FALSE(dashboard.empty());
  const std::set<std::string> exposed = ExposedNames();
  std::string rules = "groups:\n  - name: dashboard\n    rules:\n";
  int count = 0;
  const std::regex expr_field("\"expr\": \"((?:[^\"\\\\]|\\\\.)*)\"");
  for (auto it = std::sregex_iterator(dashboard.begin(), dashboard.end(), expr_field);
       it != std::sregex_iterator(); ++it) {
    std::string expr = std::regex_replace((*it)[1].str(), std::regex("\\\\(.)"), "$1");
    const std::regex metric("zk2etcd_[a-z_]+");
    for (auto m = std::sregex_iterator(expr.begin(), expr.end(), metric);
         m != std::sregex_iterator(); ++m) {
      EXPECT_TRUE(exposed.count(m->str())) << "dashboard uses unknown metric " << m->str();
    }
    std::string quoted;
    for (char c : expr) quoted += c == '\'' ? std::string("''") : std::string(1, c);
    rules += "      - record: dashboard:query" + std::to_string(++count) + "\n        expr: '" +
             quoted + "'\n";
  }
  ASSERT_GT(count, 10);
  auto dir = testing::TempDir::Create("dashboard");
  ASSERT_TRUE(dir.ok());
  ASSERT_TRUE(testing::WriteFile(dir->File("rules.yaml"), rules).ok());
  auto checked = testing::RunCommand({"promtool", "check", "rules", dir->File("rules.yaml")},
                                     seconds(60));
  EXPECT_TRUE(checked.ok()) << checked.error().message << rules;
}

TEST(DeployTest, KubernetesManifestIsConsistent) {
  const std::vector<YAML::Node> documents =
      YAML::LoadAllFromFile(kDeploy + "/kubernetes/zk2etcd.yaml");
  YAML::Node deployment, service;
  std::set<std::string> kinds;
  for (const YAML::Node& document : documents) {
    const std::string kind = document["kind"].as<std::string>();
    kinds.insert(kind);
    if (kind == "Deployment") deployment = document;
    if (kind == "Service") service = document;
  }
  EXPECT_EQ(kinds, (std::set<std::string>{"Secret", "ConfigMap", "Deployment", "Service"}));
  ASSERT_TRUE(deployment);
  EXPECT_EQ(deployment["spec"]["replicas"].as<int>(), 2);
  const YAML::Node container = deployment["spec"]["template"]["spec"]["containers"][0];
  std::set<std::string> args;
  for (const auto& arg : container["args"]) args.insert(arg.as<std::string>());
  EXPECT_TRUE(args.count("sync"));
  EXPECT_TRUE(args.count("--leader-elect=true"));
  EXPECT_TRUE(args.count("--http-addr=:8080"));
  EXPECT_EQ(container["ports"][0]["containerPort"].as<int>(), 8080);
  EXPECT_EQ(container["livenessProbe"]["httpGet"]["path"].as<std::string>(), "/healthz");
  EXPECT_EQ(container["readinessProbe"]["httpGet"]["path"].as<std::string>(), "/readyz");
  EXPECT_TRUE(deployment["spec"]["template"]["spec"]["securityContext"]["runAsNonRoot"].as<bool>());
  EXPECT_EQ(service["spec"]["ports"][0]["targetPort"].as<std::string>(), "http");
}

}  // namespace
}  // namespace zk2etcd

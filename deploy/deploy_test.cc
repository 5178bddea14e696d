// Checks of the deployment files of each long-running job (`sync`, `etcd2etcd sync`, `zk2zk
// sync`): the alert rules pass `promtool check rules` and their unit tests and use only metrics
// the job exposes; every dashboard query is valid PromQL over those metrics; the Kubernetes
// manifest wires probes, ports and leader election consistently, and every flag it passes (on the
// command line or in its --config file) is one the built binary accepts for that command.
#include <gtest/gtest.h>
#include <yaml-cpp/yaml.h>

#include <fstream>
#include <ostream>
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

#define ZK2ETCD_TEST_NAME(member, name, labels, help) names.insert(name);
#define ZK2ETCD_TEST_HISTOGRAM_NAME(member, name, labels, buckets, help) \
  for (const char* suffix : {"_bucket", "_sum", "_count"}) names.insert(std::string(name) + suffix);

// The metric names each job exposes (from the catalog), with the series suffixes of histograms.
std::set<std::string> SyncNames() {
  std::set<std::string> names;
  ZK2ETCD_METRICS(ZK2ETCD_TEST_NAME, ZK2ETCD_TEST_NAME, ZK2ETCD_TEST_HISTOGRAM_NAME)
  return names;
}
std::set<std::string> MirrorNames() {
  std::set<std::string> names;
  ZK2ETCD_MIRROR_METRICS(ZK2ETCD_TEST_NAME, ZK2ETCD_TEST_NAME, ZK2ETCD_TEST_HISTOGRAM_NAME)
  return names;
}
std::set<std::string> Zk2ZkNames() {
  std::set<std::string> names;
  ZK2ETCD_ZK2ZK_METRICS(ZK2ETCD_TEST_NAME, ZK2ETCD_TEST_NAME, ZK2ETCD_TEST_HISTOGRAM_NAME)
  return names;
}
#undef ZK2ETCD_TEST_NAME
#undef ZK2ETCD_TEST_HISTOGRAM_NAME

// One job's deployment files, named `<file_stem>-alerts.yaml`, `<file_stem>-alerts-test.yaml`,
// `<file_stem>-dashboard.json` and `<file_stem>.yaml`.
struct DeployedJob {
  std::string file_stem;
  std::vector<std::string> command;  // the binary's arguments before the flags
  std::set<std::string> (*exposed)();
};

void PrintTo(const DeployedJob& job, std::ostream* out) { *out << job.file_stem; }

std::string PrintJob(const ::testing::TestParamInfo<DeployedJob>& info) {
  return info.param.file_stem;
}

class DeployTest : public ::testing::TestWithParam<DeployedJob> {
 protected:
  std::string AlertsPath() const {
    return kDeploy + "/prometheus/" + GetParam().file_stem + "-alerts.yaml";
  }
  std::string DashboardPath() const {
    return kDeploy + "/grafana/" + GetParam().file_stem + "-dashboard.json";
  }
  std::string ManifestPath() const {
    return kDeploy + "/kubernetes/" + GetParam().file_stem + ".yaml";
  }
};

// Every zk2etcd metric named in `text` is one the job exposes.
void ExpectOnlyExposedMetrics(const std::string& text, const std::set<std::string>& exposed,
                              const std::string& where) {
  const std::regex metric("zk2etcd_[a-z0-9_]+");
  for (auto m = std::sregex_iterator(text.begin(), text.end(), metric); m != std::sregex_iterator();
       ++m) {
    EXPECT_TRUE(exposed.count(m->str())) << where << " uses unknown metric " << m->str();
  }
}

TEST_P(DeployTest, AlertRulesPassPromtoolAndTheirUnitTests) {
  RequirePromtool();
  auto checked = testing::RunCommand({"promtool", "check", "rules", AlertsPath()}, seconds(60));
  EXPECT_TRUE(checked.ok()) << checked.error().message;
  auto tested =
      testing::RunCommand({"promtool", "test", "rules",
                           kDeploy + "/prometheus/" + GetParam().file_stem + "-alerts-test.yaml"},
                          seconds(60));
  EXPECT_TRUE(tested.ok()) << tested.error().message;
}

TEST_P(DeployTest, AlertRulesUseOnlyExposedMetrics) {
  const YAML::Node rules = YAML::LoadFile(AlertsPath());
  int alerts = 0;
  for (const YAML::Node& group : rules["groups"]) {
    for (const YAML::Node& rule : group["rules"]) {
      ASSERT_TRUE(rule["alert"]) << "only alerts belong in " << AlertsPath();
      ++alerts;
      ExpectOnlyExposedMetrics(rule["expr"].as<std::string>(), GetParam().exposed(),
                               rule["alert"].as<std::string>());
      EXPECT_TRUE(rule["labels"]["severity"]) << rule["alert"].as<std::string>();
      EXPECT_TRUE(rule["annotations"]["summary"]) << rule["alert"].as<std::string>();
      EXPECT_TRUE(rule["annotations"]["description"]) << rule["alert"].as<std::string>();
    }
  }
  EXPECT_GE(alerts, 5);
}

TEST_P(DeployTest, DashboardQueriesAreValidPromqlOverExposedMetrics) {
  RequirePromtool();
  const std::string dashboard = Read(DashboardPath());
  ASSERT_FALSE(dashboard.empty()) << DashboardPath();
  std::string rules = "groups:\n  - name: dashboard\n    rules:\n";
  int count = 0;
  const std::regex expr_field("\"expr\": \"((?:[^\"\\\\]|\\\\.)*)\"");
  for (auto it = std::sregex_iterator(dashboard.begin(), dashboard.end(), expr_field);
       it != std::sregex_iterator(); ++it) {
    std::string expr = std::regex_replace((*it)[1].str(), std::regex("\\\\(.)"), "$1");
    ExpectOnlyExposedMetrics(expr, GetParam().exposed(), "the dashboard");
    std::string quoted;
    for (char c : expr) quoted += c == '\'' ? std::string("''") : std::string(1, c);
    rules += "      - record: dashboard:query" + std::to_string(++count) + "\n        expr: '" +
             quoted + "'\n";
  }
  ASSERT_GT(count, 10);
  auto dir = testing::TempDir::Create("dashboard");
  ASSERT_TRUE(dir.ok());
  ASSERT_TRUE(testing::WriteFile(dir->File("rules.yaml"), rules).ok());
  auto checked =
      testing::RunCommand({"promtool", "check", "rules", dir->File("rules.yaml")}, seconds(60));
  EXPECT_TRUE(checked.ok()) << checked.error().message << rules;
}

struct Manifest {
  std::set<std::string> kinds;
  YAML::Node deployment, service, config_map;
};

Manifest LoadManifest(const std::string& path) {
  Manifest manifest;
  for (const YAML::Node& document : YAML::LoadAllFromFile(path)) {
    const std::string kind = document["kind"].as<std::string>();
    manifest.kinds.insert(kind);
    if (kind == "Deployment") manifest.deployment = document;
    if (kind == "Service") manifest.service = document;
    if (kind == "ConfigMap") manifest.config_map = document;
  }
  return manifest;
}

TEST_P(DeployTest, KubernetesManifestIsConsistent) {
  const Manifest manifest = LoadManifest(ManifestPath());
  EXPECT_EQ(manifest.kinds,
            (std::set<std::string>{"Secret", "ConfigMap", "Deployment", "Service"}));
  const YAML::Node& deployment = manifest.deployment;
  ASSERT_TRUE(deployment);
  EXPECT_EQ(deployment["spec"]["replicas"].as<int>(), 2);
  const YAML::Node pod = deployment["spec"]["template"]["spec"];
  const YAML::Node container = pod["containers"][0];
  std::vector<std::string> args;
  for (const auto& arg : container["args"]) args.push_back(arg.as<std::string>());
  const std::vector<std::string>& command = GetParam().command;
  ASSERT_GE(args.size(), command.size());
  EXPECT_EQ(std::vector<std::string>(args.begin(), args.begin() + command.size()), command);
  const std::set<std::string> arg_set(args.begin(), args.end());
  EXPECT_TRUE(arg_set.count("--leader-elect=true"));
  EXPECT_TRUE(arg_set.count("--http-addr=:8080"));
  EXPECT_EQ(container["ports"][0]["name"].as<std::string>(), "http");
  EXPECT_EQ(container["ports"][0]["containerPort"].as<int>(), 8080);
  EXPECT_EQ(container["livenessProbe"]["httpGet"]["path"].as<std::string>(), "/healthz");
  EXPECT_EQ(container["readinessProbe"]["httpGet"]["path"].as<std::string>(), "/readyz");
  EXPECT_TRUE(pod["securityContext"]["runAsNonRoot"].as<bool>());
  ASSERT_TRUE(manifest.service);
  EXPECT_EQ(manifest.service["spec"]["ports"][0]["targetPort"].as<std::string>(), "http");

  // --config names a file of the ConfigMap where a volume mounts it.
  std::string config_path;
  for (const std::string& arg : args) {
    if (arg.rfind("--config=", 0) == 0) config_path = arg.substr(9);
  }
  ASSERT_FALSE(config_path.empty());
  const std::string config_map_name = manifest.config_map["metadata"]["name"].as<std::string>();
  std::set<std::string> mounted_files;
  for (const YAML::Node& volume : pod["volumes"]) {
    if (!volume["configMap"] || volume["configMap"]["name"].as<std::string>() != config_map_name) {
      continue;
    }
    for (const YAML::Node& mount : container["volumeMounts"]) {
      if (mount["name"].as<std::string>() != volume["name"].as<std::string>()) continue;
      for (const auto& file : manifest.config_map["data"]) {
        mounted_files.insert(mount["mountPath"].as<std::string>() + "/" +
                             file.first.as<std::string>());
      }
    }
  }
  EXPECT_TRUE(mounted_files.count(config_path)) << config_path << " is not mounted";
}

// The flags `zk2etcd <command> --help` lists.
std::set<std::string> HelpFlags(const std::vector<std::string>& command) {
  std::vector<std::string> argv{ZK2ETCD_BINARY};
  argv.insert(argv.end(), command.begin(), command.end());
  argv.push_back("--help");
  auto help = testing::RunCommand(argv, seconds(30));
  EXPECT_TRUE(help.ok()) << (help.ok() ? "" : help.error().message);
  std::set<std::string> flags;
  if (!help.ok()) return flags;
  const std::string text = *help;
  const std::regex flag("--([a-z][a-z0-9-]*)");
  for (auto m = std::sregex_iterator(text.begin(), text.end(), flag); m != std::sregex_iterator();
       ++m) {
    flags.insert((*m)[1].str());
  }
  return flags;
}

TEST_P(DeployTest, ManifestPassesOnlyFlagsTheCommandAccepts) {
  const std::set<std::string> accepted = HelpFlags(GetParam().command);
  ASSERT_GT(accepted.size(), 10u);
  const Manifest manifest = LoadManifest(ManifestPath());
  const YAML::Node container = manifest.deployment["spec"]["template"]["spec"]["containers"][0];
  int flags = 0;
  for (const auto& arg : container["args"]) {
    const std::string text = arg.as<std::string>();
    if (text.rfind("--", 0) != 0) continue;
    ++flags;
    const std::string name = text.substr(2, text.find('=') - 2);
    EXPECT_TRUE(accepted.count(name)) << "--" << name;
  }
  EXPECT_GT(flags, 3);
  // Each file of the ConfigMap is a --config file: its keys are flag names.
  for (const auto& file : manifest.config_map["data"]) {
    const YAML::Node settings = YAML::Load(file.second.as<std::string>());
    ASSERT_TRUE(settings.IsMap()) << file.first.as<std::string>();
    for (const auto& setting : settings) {
      EXPECT_TRUE(accepted.count(setting.first.as<std::string>()))
          << file.first.as<std::string>() << ": " << setting.first.as<std::string>();
    }
  }
}

INSTANTIATE_TEST_SUITE_P(Jobs, DeployTest,
                         ::testing::Values(DeployedJob{"zk2etcd", {"sync"}, &SyncNames},
                                           DeployedJob{
                                               "etcd2etcd", {"etcd2etcd", "sync"}, &MirrorNames},
                                           DeployedJob{"zk2zk", {"zk2zk", "sync"}, &Zk2ZkNames}),
                         PrintJob);

}  // namespace
}  // namespace zk2etcd

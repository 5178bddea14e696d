#include "cli/zk2zk_config.h"

#include <gtest/gtest.h>

#include <map>

namespace zk2etcd::cli {
namespace {

using std::chrono::milliseconds;
using std::chrono::seconds;

// Parses `args` as `zk2etcd zk2zk <command>` would, with `env` as the environment, and validates
// them.
Result<Zk2ZkConfig, std::string> Validate(std::vector<std::string> args,
                                          Zk2ZkCommandKind command = Zk2ZkCommandKind::kSync,
                                          std::map<std::string, std::string> env = {},
                                          std::string_view hostname = "host-a") {
  FlagSet flags(command == Zk2ZkCommandKind::kSync ? "zk2etcd zk2zk sync" : "zk2etcd zk2zk diff");
  Zk2ZkFlags values;
  AddZk2ZkFlags(flags, &values, command);
  auto parsed = flags.Parse(args, [&](const std::string& name) -> std::optional<std::string> {
    auto it = env.find(name);
    if (it == env.end()) return std::nullopt;
    return it->second;
  });
  if (!parsed.ok()) return Unexpected{parsed.error()};
  return ValidateZk2ZkFlags(values, command, hostname);
}

// A valid command line between two ensembles, plus `extra` (a later flag wins).
std::vector<std::string> Args(std::vector<std::string> extra = {}) {
  std::vector<std::string> args = {"--source-servers=10.0.0.1:2181,10.0.0.2:2181",
                                   "--target-servers=10.1.0.1:2181"};
  args.insert(args.end(), extra.begin(), extra.end());
  return args;
}

// The one-line error of `args`.
std::string ErrorOf(std::vector<std::string> args,
                    Zk2ZkCommandKind command = Zk2ZkCommandKind::kSync) {
  auto config = Validate(std::move(args), command);
  if (config.ok()) return "<valid>";
  EXPECT_EQ(config.error().find('\n'), std::string::npos) << config.error();
  return config.error();
}

TEST(Zk2ZkConfigTest, DefaultsOfAValidCommandLine) {
  auto config = Validate(Args());
  ASSERT_TRUE(config.ok()) << config.error();
  EXPECT_EQ(config->source.connect_string, "10.0.0.1:2181,10.0.0.2:2181");
  EXPECT_EQ(config->target.connect_string, "10.1.0.1:2181");
  EXPECT_EQ(config->source.session_timeout, seconds(10));
  EXPECT_EQ(config->target.session_timeout, seconds(10));
  EXPECT_TRUE(config->source.auth.empty());
  EXPECT_EQ(config->paths, (std::vector<std::string>{"/dubbo"}));
  EXPECT_EQ(config->scope.prefixes(), (std::vector<std::string>{"/dubbo"}));
  EXPECT_TRUE(config->scope.excludes().empty());
  EXPECT_EQ(config->meta_path, "/zk2zk");
  EXPECT_EQ(config->name, "default");
  EXPECT_EQ(config->MetaRoot(), "/zk2zk/default");
  EXPECT_EQ(config->ElectionPath(), "/zk2zk/default/election");
  EXPECT_TRUE(config->reverse_ephemerals);
  EXPECT_TRUE(config->copy_acl);
  EXPECT_TRUE(config->advance_sequence_counters);
  EXPECT_EQ(config->adopt, sync::AdoptPolicy::kNone);
  EXPECT_EQ(config->watch_mode, connectors::WatchMode::kAuto);
  EXPECT_EQ(config->concurrent, 50u);
  EXPECT_EQ(config->fullsync_interval, std::chrono::minutes(5));
  EXPECT_TRUE(config->leader_elect);
  EXPECT_EQ(config->identity, "host-a");
  EXPECT_EQ(config->http_addr, ":80");
  EXPECT_EQ(config->shutdown_timeout, seconds(10));
  EXPECT_EQ(config->audit_log, "");
  EXPECT_EQ(config->progress_interval, seconds(30));
  EXPECT_EQ(config->log.level, ops::LogLevel::kInfo);
  EXPECT_EQ(config->log.format, ops::LogFormat::kJson);
}

TEST(Zk2ZkConfigTest, EveryFlagTakesItsValue) {
  auto config = Validate(Args({"--source-servers=zk-a:2181/chroot",
                               "--source-digest=u:p",
                               "--source-session-timeout=4s",
                               "--target-digest=v:q",
                               "--target-session-timeout=6s",
                               "--path=/roc,/dubbo",
                               "--exclude=/dubbo/config",
                               "--meta-path=/tools/migration",
                               "--name=east",
                               "--reverse-ephemerals=false",
                               "--copy-acl=false",
                               "--advance-sequence-counters=false",
                               "--adopt=matching",
                               "--watch-mode=classic",
                               "--concurrent=8",
                               "--fullsync-interval=0s",
                               "--leader-elect-identity= replica-1 ",
                               "--http-addr=127.0.0.1:0",
                               "--shutdown-timeout=2s",
                               "--audit-log=/var/log/zk2zk-audit.log",
                               "--progress-interval=5s",
                               "--log-format=text",
                               "--log-level=debug"}));
  ASSERT_TRUE(config.ok()) << config.error();
  EXPECT_EQ(config->source.connect_string, "zk-a:2181/chroot");
  EXPECT_EQ(config->source.session_timeout, seconds(4));
  EXPECT_EQ(config->target.session_timeout, seconds(6));
  ASSERT_EQ(config->source.auth.size(), 1u);
  EXPECT_EQ(config->source.auth[0], (std::pair<std::string, std::string>{"digest", "u:p"}));
  ASSERT_EQ(config->target.auth.size(), 1u);
  EXPECT_EQ(config->target.auth[0].second, "v:q");
  EXPECT_EQ(config->paths, (std::vector<std::string>{"/dubbo", "/roc"}));
  EXPECT_EQ(config->scope.excludes(), (std::vector<std::string>{"/dubbo/config"}));
  EXPECT_FALSE(config->scope.Contains("/dubbo/config/x"));
  EXPECT_TRUE(config->scope.Contains("/roc/x"));
  EXPECT_EQ(config->MetaRoot(), "/tools/migration/east");
  EXPECT_FALSE(config->reverse_ephemerals);
  EXPECT_FALSE(config->copy_acl);
  EXPECT_FALSE(config->advance_sequence_counters);
  EXPECT_EQ(config->adopt, sync::AdoptPolicy::kMatching);
  EXPECT_EQ(config->watch_mode, connectors::WatchMode::kClassic);
  EXPECT_EQ(config->concurrent, 8u);
  EXPECT_EQ(config->fullsync_interval.count(), 0);
  EXPECT_EQ(config->identity, "replica-1");
  EXPECT_EQ(config->http_addr, "127.0.0.1:0");
  EXPECT_EQ(config->shutdown_timeout, seconds(2));
  EXPECT_EQ(config->audit_log, "/var/log/zk2zk-audit.log");
  EXPECT_EQ(config->progress_interval, seconds(5));
  EXPECT_EQ(config->log.format, ops::LogFormat::kText);
  EXPECT_EQ(config->log.level, ops::LogLevel::kDebug);
}

TEST(Zk2ZkConfigTest, FlagsComeFromTheEnvironmentToo) {
  auto config = Validate({"--name=west"}, Zk2ZkCommandKind::kSync,
                         {{"ZK2ETCD_SOURCE_SERVERS", "a:1"},
                          {"ZK2ETCD_TARGET_SERVERS", "b:2"},
                          {"ZK2ETCD_PATH", "/services"},
                          {"ZK2ETCD_NAME", "ignored: the flag wins"},
                          {"ZK2ETCD_TARGET_DIGEST", "user:secret"},
                          {"ZK2ETCD_LEADER_ELECT_IDENTITY", "pod-7"}});
  ASSERT_TRUE(config.ok()) << config.error();
  EXPECT_EQ(config->name, "west");
  EXPECT_EQ(config->source.connect_string, "a:1");
  EXPECT_EQ(config->paths, (std::vector<std::string>{"/services"}));
  ASSERT_EQ(config->target.auth.size(), 1u);
  EXPECT_EQ(config->target.auth[0].second, "user:secret");
  EXPECT_EQ(config->identity, "pod-7");
}

TEST(Zk2ZkConfigTest, TheMetaRootIsOutsideTheScope) {
  auto config = Validate(Args({"--path=/a,/b", "--meta-path=/tools", "--name=job"}));
  ASSERT_TRUE(config.ok()) << config.error();
  EXPECT_EQ(config->MetaRoot(), "/tools/job");
  EXPECT_FALSE(config->scope.Contains("/tools/job"));
  EXPECT_FALSE(config->scope.Contains("/zookeeper"));
  // "/" lies above every path.
  EXPECT_NE(ErrorOf(Args({"--meta-path=/"})).find("--meta-path \"/\" overlaps --path \"/dubbo\""),
            std::string::npos);
}

TEST(Zk2ZkConfigTest, DiffTakesItsOwnFlags) {
  auto config =
      Validate(Args({"--fix", "--output=json", "--connect-timeout=3s"}), Zk2ZkCommandKind::kDiff);
  ASSERT_TRUE(config.ok()) << config.error();
  EXPECT_TRUE(config->fix);
  EXPECT_TRUE(config->json);
  EXPECT_EQ(config->connect_timeout, seconds(3));
  // sync's flags are not diff's.
  EXPECT_NE(ErrorOf(Args({"--leader-elect=false"}), Zk2ZkCommandKind::kDiff).find("leader-elect"),
            std::string::npos);
  EXPECT_NE(ErrorOf(Args({"--fix"})).find("fix"), std::string::npos);
}

TEST(Zk2ZkConfigTest, BadInputIsOneLineNamingTheFlag) {
  const std::vector<std::pair<std::vector<std::string>, std::string>> cases = {
      {{"--target-servers=10.1.0.1:2181"}, "--source-servers is empty"},
      {{"--source-servers=10.0.0.1:2181"}, "--target-servers is empty"},
      {Args({"--source-servers=zk-a"}), "--source-servers: \"zk-a\" is not host:port"},
      {Args({"--source-servers=zk-a:99999"}),
       "--source-servers: \"zk-a:99999\": port 99999 is out of range (1-65535)"},
      {Args({"--source-servers=zk-a:0"}), "port 0 is out of range"},
      {Args({"--target-servers=10.1.0.1:2181/bad/"}), "--target-servers chroot"},
      // The same ensemble: a server in both lists, however the loopback is spelt.
      {Args({"--source-servers=10.0.0.1:2181,10.9.9.9:2181", "--target-servers=10.9.9.9:2181"}),
       "share a server: source and target must be different ensembles"},
      {Args({"--source-servers=localhost:2181", "--target-servers=127.0.0.1:2181/other"}),
       "share a server"},
      {Args({"--source-servers=ZK-A:2181", "--target-servers=zk-a:2181"}), "share a server"},
      // --path.
      {Args({"--path=dubbo"}),
       "--path \"dubbo\" is not a valid ZooKeeper path: it must start "
       "with '/'"},
      {Args({"--path=/dubbo,/dubbo/config"}),
       "--path \"/dubbo/config\" lies below --path \"/dubbo\""},
      {Args({"--path=/dubbo,/roc,/dubbo"}), "--path \"/dubbo\" is given twice"},
      {Args({"--path=/", "--meta-path=/zk2zk"}), "--meta-path \"/zk2zk\" overlaps --path \"/\""},
      {Args({"--path=,"}), "--path is empty"},
      {Args({"--path=/zookeeper/quota"}), "lies in ZooKeeper's own /zookeeper tree"},
      {Args({"--exclude=config"}), "--exclude \"config\" is not a valid ZooKeeper path"},
      {Args({"--exclude=/dubbo"}), "--exclude \"/dubbo\" removes the whole --path \"/dubbo\""},
      // --meta-path inside or above a --path.
      {Args({"--meta-path=/dubbo/zk2zk"}),
       "--meta-path \"/dubbo/zk2zk\" overlaps --path \"/dubbo\": the job's records must lie "
       "outside the nodes it copies"},
      {Args({"--path=/a/b", "--meta-path=/a"}), "--meta-path \"/a\" overlaps --path \"/a/b\""},
      {Args({"--meta-path=/dubbo"}), "--meta-path \"/dubbo\" overlaps --path \"/dubbo\""},
      {Args({"--meta-path=zk2zk"}), "--meta-path \"zk2zk\" is not a valid ZooKeeper path"},
      {Args({"--name="}), "--name is empty"},
      {Args({"--name=a/b"}), "--name \"a/b\" must be one path component"},
      {Args({"--name=.."}), "--name \"..\" must be one path component"},
      {Args({"--source-digest=nocolon"}), "--source-digest must be user:password"},
      {Args({"--target-session-timeout=0s"}), "--target-session-timeout must be positive"},
      {Args({"--adopt=some"}), "--adopt"},
      {Args({"--watch-mode=sometimes"}), "--watch-mode"},
      {Args({"--concurrent=0"}), "--concurrent must be between 1 and 10000"},
      {Args({"--progress-interval=-1s"}), "--progress-interval must be zero or positive"},
      {Args({"--fullsync-interval=-1s"}), "--fullsync-interval must be zero or positive"},
      {Args({"--shutdown-timeout=0s"}), "--shutdown-timeout must be positive"},
      {Args({"--log-level=loud"}), "--log-level"},
  };
  for (const auto& [args, message] : cases) {
    const std::string error = ErrorOf(args);
    EXPECT_NE(error.find(message), std::string::npos)
        << "wanted: " << message << "\ngot: " << error;
  }
  EXPECT_NE(ErrorOf(Args({"--output=yaml"}), Zk2ZkCommandKind::kDiff)
                .find("--output must be text or "
                      "json"),
            std::string::npos);
}

TEST(Zk2ZkConfigTest, AnEmptyIdentityNeedsAHostname) {
  auto config = Validate(Args(), Zk2ZkCommandKind::kSync, {}, "");
  ASSERT_FALSE(config.ok());
  EXPECT_NE(config.error().find("--leader-elect-identity is empty"), std::string::npos);
  auto without_election = Validate(Args({"--leader-elect=false"}), Zk2ZkCommandKind::kSync, {}, "");
  EXPECT_TRUE(without_election.ok()) << without_election.error();
}

}  // namespace
}  // namespace zk2etcd::cli

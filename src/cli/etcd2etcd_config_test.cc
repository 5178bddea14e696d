#include "cli/etcd2etcd_config.h"

#include <gtest/gtest.h>
#include <stdlib.h>

#include <filesystem>
#include <fstream>
#include <map>

namespace zk2etcd::cli {
namespace {

using std::chrono::seconds;

// Parses `args` as `zk2etcd etcd2etcd <command>` would, with `env` as the environment, and
// validates them.
Result<Etcd2EtcdConfig, std::string> Validate(std::vector<std::string> args,
                                              MirrorCommand command = MirrorCommand::kSync,
                                              std::map<std::string, std::string> env = {},
                                              std::string_view hostname = "host-a") {
  FlagSet flags(command == MirrorCommand::kSync ? "zk2etcd etcd2etcd sync"
                                                : "zk2etcd etcd2etcd diff");
  Etcd2EtcdFlags values;
  AddEtcd2EtcdFlags(flags, &values, command);
  auto parsed = flags.Parse(args, [&](const std::string& name) -> std::optional<std::string> {
    auto it = env.find(name);
    if (it == env.end()) return std::nullopt;
    return it->second;
  });
  if (!parsed.ok()) return Unexpected{parsed.error()};
  return ValidateEtcd2EtcdFlags(values, command, hostname);
}

// A valid command line between two clusters, plus `extra` (a later flag wins).
std::vector<std::string> Args(std::vector<std::string> extra = {}) {
  std::vector<std::string> args = {"--source-endpoints=10.0.0.1:2379,10.0.0.2:2379",
                                   "--dest-endpoints=10.1.0.1:2379", "--prefix=/registry",
                                   "--name=east"};
  args.insert(args.end(), extra.begin(), extra.end());
  return args;
}

// The one-line error of `args`.
std::string ErrorOf(std::vector<std::string> args, MirrorCommand command = MirrorCommand::kSync) {
  auto config = Validate(std::move(args), command);
  if (config.ok()) return "<valid>";
  EXPECT_EQ(config.error().find('\n'), std::string::npos) << config.error();
  return config.error();
}

TEST(Etcd2EtcdConfigTest, DefaultsOfAValidCommandLine) {
  auto config = Validate(Args());
  ASSERT_TRUE(config.ok()) << config.error();
  EXPECT_EQ(config->source.endpoints, (std::vector<std::string>{"10.0.0.1:2379", "10.0.0.2:2379"}));
  EXPECT_EQ(config->dest.endpoints, (std::vector<std::string>{"10.1.0.1:2379"}));
  EXPECT_FALSE(config->source.tls);
  EXPECT_EQ(config->prefix, "/registry");
  EXPECT_FALSE(config->dest_prefix);
  EXPECT_EQ(config->DestinationRange(), "/registry");
  EXPECT_EQ(config->name, "east");
  EXPECT_EQ(config->meta_prefix, "/etcd2etcd");
  EXPECT_FALSE(config->copy_leases);
  EXPECT_EQ(config->adopt, sync::AdoptPolicy::kMatching);
  EXPECT_EQ(config->concurrent, 50u);
  EXPECT_EQ(config->max_write_rate, 0);
  EXPECT_TRUE(config->leader_elect);
  EXPECT_EQ(config->lease_duration, seconds(5));
  EXPECT_EQ(config->identity, "host-a");
  EXPECT_EQ(config->reconcile_interval.count(), 0);
  EXPECT_EQ(config->http_addr, ":80");
  EXPECT_EQ(config->shutdown_timeout, seconds(10));
  EXPECT_EQ(config->source.dial_timeout, seconds(5));
  EXPECT_EQ(config->dest.call_timeout, seconds(10));
}

TEST(Etcd2EtcdConfigTest, EveryFlagTakesItsValue) {
  auto config = Validate(Args(
      {"--dest-prefix=/copy", "--meta-prefix=/mirrors", "--copy-leases", "--adopt=all",
       "--concurrent=8", "--max-write-rate=250.5", "--leader-elect-lease-duration=3s",
       "--leader-elect-identity= replica-1 ", "--reconcile-interval=10m", "--http-addr=127.0.0.1:0",
       "--shutdown-timeout=2s", "--source-user=u", "--source-password=p",
       "--dest-endpoints=https://10.1.0.1:2379", "--dest-server-name=etcd.example",
       "--dest-dial-timeout=1s", "--log-format=text", "--log-level=debug"}));
  ASSERT_TRUE(config.ok()) << config.error();
  EXPECT_EQ(config->dest_prefix, "/copy");
  EXPECT_EQ(config->DestinationRange(), "/copy");
  EXPECT_EQ(config->meta_prefix, "/mirrors");
  EXPECT_TRUE(config->copy_leases);
  EXPECT_EQ(config->adopt, sync::AdoptPolicy::kAll);
  EXPECT_EQ(config->concurrent, 8u);
  EXPECT_EQ(config->source.max_txns_in_flight, 8);
  EXPECT_EQ(config->max_write_rate, 250.5);
  EXPECT_EQ(config->lease_duration, seconds(3));
  EXPECT_EQ(config->identity, "replica-1");
  EXPECT_EQ(config->reconcile_interval, std::chrono::minutes(10));
  EXPECT_EQ(config->http_addr, "127.0.0.1:0");
  EXPECT_EQ(config->shutdown_timeout, seconds(2));
  EXPECT_EQ(config->source.user, "u");
  EXPECT_EQ(config->source.password, "p");
  ASSERT_TRUE(config->dest.tls);
  EXPECT_EQ(config->dest.tls->server_name_override, "etcd.example");
  EXPECT_EQ(config->dest.dial_timeout, seconds(1));
  EXPECT_EQ(config->log_format, ops::LogFormat::kText);
  EXPECT_EQ(config->log_level, ops::LogLevel::kDebug);
}

TEST(Etcd2EtcdConfigTest, FlagsComeFromTheEnvironmentToo) {
  auto config = Validate({"--name=west"}, MirrorCommand::kSync,
                         {{"ZK2ETCD_SOURCE_ENDPOINTS", "a:1"},
                          {"ZK2ETCD_DEST_ENDPOINTS", "b:2"},
                          {"ZK2ETCD_PREFIX", "/registry"},
                          {"ZK2ETCD_NAME", "ignored: the flag wins"},
                          {"ZK2ETCD_DEST_PASSWORD", "secret"},
                          {"ZK2ETCD_DEST_USER", "mirror"}});
  ASSERT_TRUE(config.ok()) << config.error();
  EXPECT_EQ(config->name, "west");
  EXPECT_EQ(config->source.endpoints, (std::vector<std::string>{"a:1"}));
  EXPECT_EQ(config->dest.user, "mirror");
  EXPECT_EQ(config->dest.password, "secret");
}

TEST(Etcd2EtcdConfigTest, EmptyEndpointListsAreRefused) {
  EXPECT_EQ(ErrorOf(Args({"--source-endpoints="})),
            "--source-endpoints is empty: give host:port[,host:port...] (or "
            "ZK2ETCD_SOURCE_ENDPOINTS)");
  EXPECT_EQ(ErrorOf(Args({"--dest-endpoints= , "})),
            "--dest-endpoints is empty: give host:port[,host:port...] (or "
            "ZK2ETCD_DEST_ENDPOINTS)");
  EXPECT_EQ(ErrorOf(Args({"--dest-endpoints="}), MirrorCommand::kDiff),
            "--dest-endpoints is empty: give host:port[,host:port...] (or "
            "ZK2ETCD_DEST_ENDPOINTS)");
  EXPECT_EQ(ErrorOf(Args({"--source-endpoints=etcd-0"})),
            "--source-endpoints: \"etcd-0\" is not host:port");
}

TEST(Etcd2EtcdConfigTest, AMirrorIntoItselfIsRefused) {
  // Same cluster (one shared server, another spelling of the loopback), no --dest-prefix.
  EXPECT_EQ(ErrorOf(Args({"--source-endpoints=127.0.0.1:2379",
                          "--dest-endpoints=http://localhost:2379,10.9.9.9:2379"})),
            "--source-endpoints and --dest-endpoints name the same etcd cluster and no "
            "--dest-prefix is given: the mirror would copy --prefix \"/registry\" into itself");
  // Same cluster, a destination range overlapping the source range either way.
  for (const char* dest_prefix : {"/registry/copy", "/reg", "/registry"}) {
    EXPECT_EQ(ErrorOf(Args(
                  {"--dest-endpoints=10.0.0.2:2379", std::string("--dest-prefix=") + dest_prefix})),
              std::string("--dest-prefix \"") + dest_prefix +
                  "\" overlaps --prefix \"/registry\" on the same etcd cluster "
                  "(--source-endpoints and --dest-endpoints share a server): the mirror would "
                  "copy into itself")
        << dest_prefix;
  }
  // Same cluster, the mirror's records inside the source range: every checkpoint would be a
  // change to mirror.
  EXPECT_EQ(ErrorOf(Args({"--dest-endpoints=10.0.0.1:2379", "--prefix=/", "--dest-prefix=-copy",
                          "--meta-prefix=/mirrors"})),
            "--meta-prefix \"/mirrors\" overlaps --prefix \"/\" on the same etcd cluster: the "
            "mirror would copy its own records");
  // Same cluster, disjoint ranges: fine.
  EXPECT_EQ(ErrorOf(Args({"--dest-endpoints=10.0.0.1:2379", "--dest-prefix=/copy"})), "<valid>");
  // Another cluster, the same keys: fine.
  EXPECT_EQ(ErrorOf(Args()), "<valid>");
}

TEST(Etcd2EtcdConfigTest, RecordsInsideTheCopiedKeysAreRefused) {
  EXPECT_EQ(ErrorOf(Args({"--prefix=/"})),
            "--meta-prefix \"/etcd2etcd\" overlaps the destination keys \"/\" (--prefix): the "
            "mirror's records must lie outside the keys it copies");
  EXPECT_EQ(ErrorOf(Args({"--dest-prefix=/etcd2etcd/copy"})),
            "--meta-prefix \"/etcd2etcd\" overlaps the destination keys \"/etcd2etcd/copy\" "
            "(--dest-prefix): the mirror's records must lie outside the keys it copies");
  EXPECT_EQ(ErrorOf(Args({"--meta-prefix="})),
            "--meta-prefix is empty: give a key prefix outside the copied keys, e.g. /etcd2etcd");
}

TEST(Etcd2EtcdConfigTest, NameMustBeOneNonEmptyComponent) {
  EXPECT_EQ(ErrorOf({"--source-endpoints=a:1", "--dest-endpoints=b:1", "--prefix=/r"}),
            "--name is empty: name the mirror (its checkpoint, ownership records and election "
            "live under --meta-prefix/NAME)");
  EXPECT_EQ(ErrorOf(Args({"--name=east/1"})), "--name \"east/1\" must not contain '/'");
  EXPECT_EQ(ErrorOf(Args({"--name=/"}), MirrorCommand::kDiff), "--name \"/\" must not contain '/'");
}

TEST(Etcd2EtcdConfigTest, PrefixIsRequired) {
  EXPECT_EQ(ErrorOf(Args({"--prefix="})),
            "--prefix is empty: give the etcd key prefix to mirror, e.g. --prefix=/registry (or "
            "ZK2ETCD_PREFIX)");
}

TEST(Etcd2EtcdConfigTest, UnreadableCertificateFilesAreRefused) {
  std::string dir_template =
      (std::filesystem::temp_directory_path() / "etcd2etcd-config-XXXXXX").string();
  ASSERT_NE(mkdtemp(dir_template.data()), nullptr);
  const std::string dir = dir_template;
  const std::string readable = dir + "/ca.pem";
  std::ofstream(readable) << "not checked here\n";
  const std::string missing = dir + "/missing.pem";
  EXPECT_EQ(
      ErrorOf(Args({"--source-cacert=" + missing})),
      "--source-cacert \"" + missing + "\": cannot read the file (No such file or directory)");
  EXPECT_EQ(ErrorOf(Args({"--dest-cert=" + readable, "--dest-key=" + missing})),
            "--dest-key \"" + missing + "\": cannot read the file (No such file or directory)");
  // A directory opens, but is no file to read.
  EXPECT_EQ(ErrorOf(Args({"--dest-cacert=" + dir}), MirrorCommand::kDiff)
                .find("--dest-cacert \"" + dir + "\": cannot read the file ("),
            0u);
  EXPECT_EQ(ErrorOf(Args({"--dest-cert=" + readable})),
            "--dest-cert and --dest-key go together: give both or neither");
  auto config = Validate(Args({"--source-cacert=" + readable}));
  ASSERT_TRUE(config.ok()) << config.error();
  ASSERT_TRUE(config->source.tls);
  EXPECT_EQ(config->source.tls->ca_file, readable);
  std::filesystem::remove_all(dir);
}

TEST(Etcd2EtcdConfigTest, CredentialsGoWithAUser) {
  EXPECT_EQ(ErrorOf(Args({"--source-password=p"})), "--source-password needs --source-user");
  EXPECT_EQ(ErrorOf(Args({"--dest-password=p"})), "--dest-password needs --dest-user");
}

TEST(Etcd2EtcdConfigTest, NegativeOrInvalidWriteRateIsRefused) {
  EXPECT_EQ(ErrorOf(Args({"--max-write-rate=-5"})),
            "--max-write-rate must be zero (unlimited) or a positive number of keys per second, "
            "got -5");
  EXPECT_EQ(ErrorOf(Args({"--max-write-rate=fast"})),
            "invalid value \"fast\" for --max-write-rate: expected a number");
}

TEST(Etcd2EtcdConfigTest, OtherValuesAreChecked) {
  EXPECT_EQ(ErrorOf(Args({"--concurrent=0"})), "--concurrent must be between 1 and 10000, got 0");
  EXPECT_EQ(ErrorOf(Args({"--adopt=some"})).find("--adopt: "), 0u);
  EXPECT_EQ(ErrorOf(Args({"--log-level=loud"})).find("--log-level: "), 0u);
  EXPECT_EQ(ErrorOf(Args({"--source-dial-timeout=0s"})),
            "--source-dial-timeout must be positive, got 0s");
  EXPECT_EQ(ErrorOf(Args({"--dest-request-timeout=-1s"})),
            "--dest-request-timeout must be positive, got -1s");
  EXPECT_EQ(ErrorOf(Args({"--reconcile-interval=-1m"})),
            "--reconcile-interval must be zero or positive, got -1m0s");
  EXPECT_EQ(ErrorOf(Args({"--leader-elect-lease-duration=1s"})),
            "--leader-elect-lease-duration must be at least 2s, got 1s");
  EXPECT_EQ(ErrorOf(Args({"--leader-elect=false", "--leader-elect-lease-duration=1s"})), "<valid>");
  EXPECT_EQ(ErrorOf(Args({"--output=xml"}), MirrorCommand::kDiff),
            "--output must be text or json, got \"xml\"");
  EXPECT_EQ(ErrorOf(Args({"--connect-timeout=0s"}), MirrorCommand::kDiff),
            "--connect-timeout must be positive, got 0s");
  // Flags of the other subcommand are unknown.
  EXPECT_EQ(ErrorOf(Args({"--fix"})).find("unknown flag --fix"), 0u);
  EXPECT_EQ(
      ErrorOf(Args({"--leader-elect"}), MirrorCommand::kDiff).find("unknown flag --leader-elect"),
      0u);
}

TEST(Etcd2EtcdConfigTest, ElectionIdentityNeedsAHostnameOrAFlag) {
  auto config = Validate(Args(), MirrorCommand::kSync, {}, "");
  ASSERT_FALSE(config.ok());
  EXPECT_EQ(config.error(),
            "--leader-elect-identity is empty and the hostname is unknown; set a stable "
            "identity");
  EXPECT_TRUE(Validate(Args({"--leader-elect=false"}), MirrorCommand::kSync, {}, "").ok());
}

TEST(Etcd2EtcdConfigTest, DiffTakesItsOwnFlags) {
  auto config =
      Validate(Args({"--fix", "--output=json", "--connect-timeout=5s"}), MirrorCommand::kDiff);
  ASSERT_TRUE(config.ok()) << config.error();
  EXPECT_TRUE(config->fix);
  EXPECT_TRUE(config->json);
  EXPECT_EQ(config->connect_timeout, seconds(5));
}

TEST(Etcd2EtcdConfigTest, OverlapAndServers) {
  EXPECT_TRUE(KeyPrefixesOverlap("/registry", "/registry2"));
  EXPECT_TRUE(KeyPrefixesOverlap("/reg", "/registry"));
  EXPECT_FALSE(KeyPrefixesOverlap("/registry", "/copy"));
  EXPECT_TRUE(ShareAServer({"https://LOCALHOST:2379"}, {"127.0.0.1:2379"}));
  // Every spelling of this machine: the loopback network and the wildcard addresses.
  for (const char* spelling : {"0.0.0.0:2379", "127.0.0.2:2379", "[::]:2379", "[::1]:2379",
                               "[::ffff:127.0.0.1]:2379", "http://0.0.0.0:2379"}) {
    EXPECT_TRUE(ShareAServer({spelling}, {"localhost:2379"})) << spelling;
  }
  EXPECT_FALSE(ShareAServer({"0.0.0.0:2379"}, {"127.0.0.1:2380"}));
  EXPECT_FALSE(ShareAServer({"127.0.0.1.example.com:2379"}, {"127.0.0.1:2379"}));
  EXPECT_FALSE(ShareAServer({"10.0.0.1:2379"}, {"127.0.0.1:2379"}));
  EXPECT_TRUE(ShareAServer({"a:1", "b:2"}, {"c:3", "b:2"}));
  EXPECT_FALSE(ShareAServer({"a:1"}, {"a:2"}));
}

}  // namespace
}  // namespace zk2etcd::cli

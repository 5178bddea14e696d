#include "cli/cli.h"

#include <gtest/gtest.h>
#include <unistd.h>

#include <filesystem>
#include <fstream>
#include <limits>
#include <sstream>

#include "cli/config.h"
#include "cli/runtime.h"

namespace zk2etcd::cli {
namespace {

struct Outcome {
  int status;
  std::string out;
  std::string err;
};

Outcome RunCli(std::vector<std::string> args) {
  args.insert(args.begin(), "zk2etcd");
  std::ostringstream out, err;
  const int status = Run(
      args, [](const std::string&) { return std::optional<std::string>(); }, out, err);
  return {status, out.str(), err.str()};
}

int CountLines(const std::string& text) {
  return static_cast<int>(std::count(text.begin(), text.end(), '\n'));
}

TEST(CliTest, VersionPrintsBuildIdentityAndLibraries) {
  const Outcome outcome = RunCli({"version"});
  EXPECT_EQ(outcome.status, kExitOk);
  EXPECT_TRUE(outcome.err.empty());
  for (const char* expected : {"zk2etcd ", "git commit:", "build date:", "compiler:", "gRPC",
                               "protobuf", "asio", "hiredis", "OpenSSL", "etcd API"}) {
    EXPECT_NE(outcome.out.find(expected), std::string::npos) << expected << "\n" << outcome.out;
  }
}

TEST(CliTest, HelpListsSubcommands) {
  for (auto args : {std::vector<std::string>{"--help"}, std::vector<std::string>{"help"},
                    std::vector<std::string>{}}) {
    const Outcome outcome = RunCli(args);
    EXPECT_EQ(outcome.status, kExitOk);
    EXPECT_NE(outcome.out.find("version"), std::string::npos);
    EXPECT_NE(outcome.out.find("Usage:"), std::string::npos);
  }
}

TEST(CliTest, SubcommandHelp) {
  const Outcome outcome = RunCli({"version", "--help"});
  EXPECT_EQ(outcome.status, kExitOk);
  EXPECT_NE(outcome.out.find("zk2etcd version [flags]"), std::string::npos);
}

TEST(CliTest, UnknownSubcommandIsOneLineAndExitTwo) {
  const Outcome outcome = RunCli({"frobnicate"});
  EXPECT_EQ(outcome.status, kExitUsage);
  EXPECT_EQ(CountLines(outcome.err), 1);
  EXPECT_NE(outcome.err.find("unknown command \"frobnicate\""), std::string::npos);
  EXPECT_TRUE(outcome.out.empty());
}

TEST(CliTest, UnknownFlagIsOneLineAndExitTwo) {
  const Outcome outcome = RunCli({"version", "--bogus"});
  EXPECT_EQ(outcome.status, kExitUsage);
  EXPECT_EQ(CountLines(outcome.err), 1);
  EXPECT_NE(outcome.err.find("unknown flag --bogus"), std::string::npos);

  const Outcome before = RunCli({"--bogus"});
  EXPECT_EQ(before.status, kExitUsage);
  EXPECT_EQ(CountLines(before.err), 1);
}

TEST(CliTest, AnUnknownAdoptionPolicyIsOneLineAndExitTwoBeforeAnyConnection) {
  for (const char* command : {"sync", "diff"}) {
    // Servers that do not exist: the value must be refused before they are tried.
    const Outcome outcome = RunCli({command, "--zookeeper-servers=127.0.0.1:1",
                                    "--etcd-servers=127.0.0.1:1", "--adopt=everything"});
    EXPECT_EQ(outcome.status, kExitUsage) << command;
    EXPECT_EQ(CountLines(outcome.err), 1) << outcome.err;
    EXPECT_NE(outcome.err.find("--adopt: unknown adoption policy \"everything\" (use matching, "
                               "none or all)"),
              std::string::npos)
        << outcome.err;
  }
}

// An etcd certificate file that cannot be read is a usage error, found before any connection
// (it was found only when etcd was dialled: `sync` exited 1 after trying ZooKeeper).
TEST(CliTest, AnUnreadableEtcdCertificateIsOneLineAndExitTwoBeforeAnyConnection) {
  for (const char* command : {"sync", "diff"}) {
    // A certificate and its key go together: the other one of the pair is a readable file.
    for (const auto& [flag, other] :
         {std::pair{"--etcd-cacert", ""}, std::pair{"--etcd-cert", "--etcd-key=/proc/version"},
          std::pair{"--etcd-key", "--etcd-cert=/proc/version"}}) {
      std::vector<std::string> args = {command, "--zookeeper-servers=127.0.0.1:1",
                                       "--etcd-servers=127.0.0.1:1",
                                       std::string(flag) + "=/nonexistent/file.pem"};
      if (*other != '\0') args.push_back(other);
      const Outcome outcome = RunCli(args);
      EXPECT_EQ(outcome.status, kExitUsage) << command << " " << flag << ": " << outcome.err;
      EXPECT_EQ(CountLines(outcome.err), 1) << outcome.err;
      EXPECT_NE(outcome.err.find(std::string(flag) +
                                 " \"/nonexistent/file.pem\": cannot read the file (No such "
                                 "file or directory)"),
                std::string::npos)
          << outcome.err;
    }
  }
}

TEST(CliTest, ElectionIdentityIsTheFlagElseTheHostnameAndNeverEmpty) {
  EXPECT_EQ(ElectionIdentity("", "pod-7f9c").value(), "pod-7f9c");
  EXPECT_EQ(ElectionIdentity("  replica-a ", "pod-7f9c").value(), "replica-a");
  EXPECT_FALSE(ElectionIdentity(" ", "").ok());
}

TEST(CliTest, AnExcludeOutsideEveryPrefixIsWarnedAboutUnlessNotChosen) {
  auto sink = std::make_shared<ops::MemoryLogSink>();
  FakeClock clock;
  ops::Logger logger(sink, ops::LogFormat::kText, ops::LogLevel::kInfo, clock);
  CommonFlags defaults;
  defaults.zookeeper_prefix = "/services";
  defaults.zookeeper_exclude_prefix = std::string(kDefaultExcludePrefix);
  auto scope = core::Scope::Create({"/services"}, {"/dubbo/config", "/servicez", "/services/x"});
  ASSERT_TRUE(scope.ok());

  WarnAboutIgnoredExcludes(*scope, {}, ExcludesNotChosen(defaults), logger);
  const std::vector<std::string> lines = sink->Lines();
  ASSERT_EQ(lines.size(), 1u) << ::testing::PrintToString(lines);
  EXPECT_NE(lines[0].find("--zookeeper-exclude-prefix lies outside every --zookeeper-prefix and "
                          "excludes nothing"),
            std::string::npos)
      << lines[0];
  EXPECT_NE(lines[0].find("/servicez"), std::string::npos) << lines[0];

  CommonFlags chosen = defaults;
  chosen.zookeeper_exclude_prefix = "/dubbo/config,/servicez";
  EXPECT_TRUE(ExcludesNotChosen(chosen).empty());
}

// An ownership store that answers Ping with a fixed error (other calls are not made).
class FailingOwnershipStore final : public ownership::OwnershipStore {
 public:
  explicit FailingOwnershipStore(ownership::OwnershipErrorCode code) : code_(code) {}
  ownership::OwnershipResult<std::vector<bool>> Lookup(const std::vector<std::string>&) override {
    return Unexpected{Error()};
  }
  ownership::OwnershipResult<void> Record(
      const std::vector<std::pair<std::string, std::string>>&) override {
    return Unexpected{Error()};
  }
  ownership::OwnershipResult<void> Forget(const std::vector<std::string>&) override {
    return Unexpected{Error()};
  }
  ownership::OwnershipResult<void> Ping() override {
    if (++pings > failed_pings_before_answer) return {};
    return Unexpected{Error()};
  }
  int pings = 0;
  int failed_pings_before_answer = std::numeric_limits<int>::max();

 private:
  ownership::OwnershipError Error() const { return {code_, "no"}; }
  ownership::OwnershipErrorCode code_;
};

TEST(CliTest, WaitingForRedisEndsAtOnceOnRefusedCredentialsAndAtTheDeadlineOtherwise) {
  auto sink = std::make_shared<ops::MemoryLogSink>();
  FakeClock clock;
  ops::Logger logger(sink, ops::LogFormat::kText, ops::LogLevel::kDebug, clock);
  const std::atomic<bool> never_stop{false};
  const auto soon = std::chrono::steady_clock::now() + std::chrono::milliseconds(1500);

  FailingOwnershipStore refused(ownership::OwnershipErrorCode::kAuthFailed);
  auto auth = WaitForOwnershipStore(refused, "redis:6379", logger, soon, never_stop);
  ASSERT_FALSE(auth.ok());
  EXPECT_EQ(auth.error(), "redis: no");
  EXPECT_EQ(refused.pings, 1);
  EXPECT_TRUE(sink->Lines().empty());

  // An attempt, 500 ms, another, then a last one 100 ms before the deadline (the next wait, 1 s,
  // is cut to about 0.9 s): three attempts; the first is logged as a warning, the second (a minute
  // has not passed) as a debug line, and the last not at all (the caller says why it gives up).
  FailingOwnershipStore down(ownership::OwnershipErrorCode::kUnavailable);
  auto unreachable = WaitForOwnershipStore(down, "redis:6379", logger, soon, never_stop);
  ASSERT_FALSE(unreachable.ok());
  EXPECT_EQ(unreachable.error(), "redis unreachable: no");
  EXPECT_EQ(down.pings, 3);
  ASSERT_EQ(sink->Lines().size(), 2u) << ::testing::PrintToString(sink->Lines());
  EXPECT_NE(sink->Lines()[0].find("WARN redis unreachable; retrying attempt=1"), std::string::npos)
      << sink->Lines()[0];
  EXPECT_NE(sink->Lines()[1].find("DEBUG redis unreachable; retrying attempt=2"), std::string::npos)
      << sink->Lines()[1];

  // A store that answers at the second attempt: a warning, then "redis reachable" with its address.
  FailingOwnershipStore back(ownership::OwnershipErrorCode::kUnavailable);
  back.failed_pings_before_answer = 1;
  auto back_sink = std::make_shared<ops::MemoryLogSink>();
  ops::Logger back_logger(back_sink, ops::LogFormat::kText, ops::LogLevel::kDebug, clock);
  auto answered = WaitForOwnershipStore(back, "redis:6379", back_logger, std::nullopt, never_stop);
  ASSERT_TRUE(answered.ok()) << answered.error();
  EXPECT_EQ(back.pings, 2);
  const std::vector<std::string> lines = back_sink->Lines();
  ASSERT_EQ(lines.size(), 2u) << ::testing::PrintToString(lines);
  EXPECT_NE(lines[0].find("WARN redis unreachable; retrying attempt=1"), std::string::npos)
      << lines[0];
  EXPECT_NE(lines[1].find("INFO redis reachable address=redis:6379"), std::string::npos)
      << lines[1];
}

// A long run of failed attempts: a warning at the first, debug lines after, and a "still
// unreachable" warning once a minute has passed on the logger's clock. (A set `stop` ends each
// wait at once.)
TEST(CliTest, ConnectRetryWarnsAgainAfterAMinuteOfFailures) {
  auto sink = std::make_shared<ops::MemoryLogSink>();
  FakeClock clock;
  ops::Logger logger(sink, ops::LogFormat::kText, ops::LogLevel::kDebug, clock);
  const std::atomic<bool> stop{true};
  ConnectRetry retry(logger, "etcd");
  EXPECT_FALSE(retry.AfterFailure("refused", std::nullopt, stop));
  clock.Advance(std::chrono::seconds(30));
  EXPECT_FALSE(retry.AfterFailure("refused", std::nullopt, stop));
  clock.Advance(std::chrono::seconds(31));
  EXPECT_FALSE(retry.AfterFailure("refused", std::nullopt, stop));
  ASSERT_EQ(sink->Lines().size(), 3u) << ::testing::PrintToString(sink->Lines());
  EXPECT_NE(sink->Lines()[0].find("WARN etcd unreachable; retrying attempt=1"), std::string::npos)
      << sink->Lines()[0];
  EXPECT_NE(sink->Lines()[1].find("DEBUG etcd unreachable; retrying attempt=2"), std::string::npos)
      << sink->Lines()[1];
  EXPECT_NE(sink->Lines()[2].find("WARN etcd still unreachable; retrying attempt=3"),
            std::string::npos)
      << sink->Lines()[2];
  EXPECT_NE(sink->Lines()[2].find("unreachable_s=61"), std::string::npos) << sink->Lines()[2];
}

TEST(CliTest, SyncHelpShowsTheIdentityFlagItsVariableAndTheFiveSecondLease) {
  const Outcome outcome = RunCli({"sync", "--help"});
  EXPECT_EQ(outcome.status, 0);
  EXPECT_NE(outcome.out.find("--leader-elect-identity"), std::string::npos) << outcome.out;
  EXPECT_NE(outcome.out.find("ZK2ETCD_LEADER_ELECT_IDENTITY"), std::string::npos) << outcome.out;
  const size_t lease = outcome.out.find("--leader-elect-lease-duration");
  ASSERT_NE(lease, std::string::npos);
  const std::string line = outcome.out.substr(lease, outcome.out.find('\n', lease) - lease);
  EXPECT_NE(line.find("(default 5s)"), std::string::npos) << line;
}

TEST(CliTest, Etcd2EtcdHelpListsSyncAndDiff) {
  for (auto args :
       {std::vector<std::string>{"etcd2etcd", "--help"}, std::vector<std::string>{"etcd2etcd"},
        std::vector<std::string>{"help", "etcd2etcd"}}) {
    const Outcome outcome = RunCli(args);
    EXPECT_EQ(outcome.status, kExitOk);
    EXPECT_NE(outcome.out.find("zk2etcd etcd2etcd <command> [flags]"), std::string::npos)
        << outcome.out;
    EXPECT_NE(outcome.out.find("  sync "), std::string::npos) << outcome.out;
    EXPECT_NE(outcome.out.find("  diff "), std::string::npos) << outcome.out;
  }
  EXPECT_NE(RunCli({"--help"}).out.find("  etcd2etcd "), std::string::npos);
}

TEST(CliTest, Etcd2EtcdSubcommandHelpShowsItsFlags) {
  for (auto args : {std::vector<std::string>{"etcd2etcd", "sync", "--help"},
                    std::vector<std::string>{"help", "etcd2etcd", "sync"}}) {
    const Outcome outcome = RunCli(args);
    EXPECT_EQ(outcome.status, kExitOk);
    EXPECT_NE(outcome.out.find("zk2etcd etcd2etcd sync [flags]"), std::string::npos);
    for (const char* flag :
         {"--source-endpoints", "--dest-endpoints", "--prefix", "--dest-prefix", "--name",
          "--copy-leases", "--max-write-rate", "--leader-elect-lease-duration", "--adopt",
          "--reconcile-interval", "--meta-prefix", "--source-cacert", "--dest-password",
          "ZK2ETCD_DEST_ENDPOINTS"}) {
      EXPECT_NE(outcome.out.find(flag), std::string::npos) << flag;
    }
  }
  const Outcome diff = RunCli({"etcd2etcd", "diff", "--help"});
  EXPECT_EQ(diff.status, kExitOk);
  EXPECT_NE(diff.out.find("--fix"), std::string::npos);
  EXPECT_NE(diff.out.find("--output"), std::string::npos);
  EXPECT_EQ(diff.out.find("--leader-elect"), std::string::npos);
}

TEST(CliTest, Etcd2EtcdUnknownSubcommandOrBadValueIsOneLineAndExitTwo) {
  Outcome outcome = RunCli({"etcd2etcd", "copy"});
  EXPECT_EQ(outcome.status, kExitUsage);
  EXPECT_EQ(outcome.err,
            "zk2etcd etcd2etcd: unknown command \"copy\" (see 'zk2etcd etcd2etcd "
            "--help')\n");
  // Servers that do not exist: refused before any is tried.
  for (const char* command : {"sync", "diff"}) {
    outcome = RunCli({"etcd2etcd", command, "--source-endpoints=127.0.0.1:1",
                      "--dest-endpoints=127.0.0.1:1", "--prefix=/registry", "--name=a"});
    EXPECT_EQ(outcome.status, kExitUsage);
    EXPECT_EQ(outcome.err, std::string("zk2etcd etcd2etcd ") + command +
                               ": --source-endpoints and --dest-endpoints name the same etcd "
                               "cluster and no --dest-prefix is given: the mirror would copy "
                               "--prefix \"/registry\" into itself\n");
  }
  outcome = RunCli({"etcd2etcd", "sync", "--bogus"});
  EXPECT_EQ(outcome.status, kExitUsage);
  EXPECT_EQ(CountLines(outcome.err), 1);
  EXPECT_NE(outcome.err.find("zk2etcd etcd2etcd sync: unknown flag --bogus"), std::string::npos);
}

TEST(CliTest, Zk2ZkHelpListsSyncAndDiffWithTheirFlags) {
  for (auto args :
       {std::vector<std::string>{"zk2zk", "--help"}, std::vector<std::string>{"help", "zk2zk"}}) {
    const Outcome outcome = RunCli(args);
    EXPECT_EQ(outcome.status, kExitOk);
    EXPECT_NE(outcome.out.find("zk2etcd zk2zk <command> [flags]"), std::string::npos)
        << outcome.out;
    EXPECT_NE(outcome.out.find("  sync "), std::string::npos) << outcome.out;
    EXPECT_NE(outcome.out.find("  diff "), std::string::npos) << outcome.out;
  }
  EXPECT_NE(RunCli({"--help"}).out.find("  zk2zk "), std::string::npos);
  const Outcome sync = RunCli({"zk2zk", "sync", "--help"});
  EXPECT_EQ(sync.status, kExitOk);
  for (const char* flag :
       {"--source-servers", "--target-servers", "--source-digest", "--target-session-timeout",
        "--path", "--exclude", "--meta-path", "--name", "--reverse-ephemerals", "--copy-acl",
        "--advance-sequence-counters", "--leader-elect-identity", "--audit-log",
        "--progress-interval", "--fullsync-interval", "ZK2ETCD_TARGET_SERVERS"}) {
    EXPECT_NE(sync.out.find(flag), std::string::npos) << flag;
  }
  const Outcome diff = RunCli({"zk2zk", "diff", "--help"});
  EXPECT_EQ(diff.status, kExitOk);
  EXPECT_NE(diff.out.find("--fix"), std::string::npos);
  EXPECT_EQ(diff.out.find("--leader-elect"), std::string::npos);
}

TEST(CliTest, Zk2ZkIntoItselfIsOneLineAndExitTwo) {
  for (const char* command : {"sync", "diff"}) {
    const Outcome outcome =
        RunCli({"zk2zk", command, "--source-servers=127.0.0.1:1", "--target-servers=localhost:1"});
    EXPECT_EQ(outcome.status, kExitUsage);
    EXPECT_EQ(outcome.err, std::string("zk2etcd zk2zk ") + command +
                               ": --source-servers \"127.0.0.1:1\" and --target-servers "
                               "\"localhost:1\" share a server: source and target must be "
                               "different ensembles\n");
  }
}

// One --config file serves `sync` and `diff` of a job: each command skips the other's own
// settings, and still refuses a name neither has (a typo, another job's setting).
TEST(CliTest, OneConfigFileServesSyncAndDiffOfAJob) {
  struct Job {
    std::vector<std::string> group;  // before "sync"/"diff"
    std::string settings;            // one setting only sync has, one only diff has
    std::string foreign;             // a setting of another job
    std::vector<std::string> flags;  // enough to pass validation up to --adopt
  };
  const std::vector<Job> jobs = {
      {{},
       "fullsync-interval: 5m\noutput: json\n",
       "reconcile-interval: 1h\n",
       {"--zookeeper-servers=127.0.0.1:1", "--etcd-servers=127.0.0.1:2"}},
      {{"etcd2etcd"},
       "reconcile-interval: 1h\nmax-write-rate: 0\noutput: json\n",
       "fullsync-interval: 5m\n",
       {"--source-endpoints=127.0.0.1:1", "--dest-endpoints=127.0.0.1:2", "--prefix=/a",
        "--name=m"}},
      {{"zk2zk"},
       "fullsync-interval: 5m\nprogress-interval: 30s\noutput: json\n",
       "reconcile-interval: 1h\n",
       {"--source-servers=127.0.0.1:1", "--target-servers=127.0.0.1:2", "--path=/a"}},
  };
  const std::string path = (std::filesystem::temp_directory_path() /
                            ("zk2etcd-cli-test-" + std::to_string(::getpid()) + ".yaml"))
                               .string();
  auto run = [&](const Job& job, const std::string& command, const std::string& settings) {
    std::ofstream(path) << settings;
    std::vector<std::string> args = job.group;
    args.push_back(command);
    args.push_back("--config=" + path);
    args.insert(args.end(), job.flags.begin(), job.flags.end());
    // A bad value on the command line: the run stops at its check, after the file was read,
    // before any connection.
    args.push_back("--adopt=everything");
    return RunCli(args);
  };
  for (const Job& job : jobs) {
    for (const std::string command : {"sync", "diff"}) {
      const std::string name = "zk2etcd " + (job.group.empty() ? "" : job.group[0] + " ") + command;
      const Outcome shared = run(job, command, job.settings);
      EXPECT_EQ(shared.status, kExitUsage) << name;
      EXPECT_EQ(shared.err, name +
                                ": --adopt: unknown adoption policy \"everything\" (use "
                                "matching, none or all)\n");

      const Outcome foreign = run(job, command, job.settings + job.foreign);
      EXPECT_EQ(foreign.status, kExitUsage) << name;
      EXPECT_NE(
          foreign.err.find("unknown setting \"" + job.foreign.substr(0, job.foreign.find(':'))),
          std::string::npos)
          << foreign.err;
      const std::string sibling = command == "sync" ? "diff" : "sync";
      EXPECT_NE(
          foreign.err.find(" or '" + name.substr(0, name.rfind(' ') + 1) + sibling + " --help'"),
          std::string::npos)
          << foreign.err;

      // A setting given twice is refused (the second silently won before).
      const Outcome twice = run(job, command, job.settings + "log-level: info\nlog-level: debug\n");
      EXPECT_EQ(twice.status, kExitUsage) << name;
      EXPECT_NE(twice.err.find("\"log-level\" is set twice"), std::string::npos) << twice.err;
    }
  }
  std::filesystem::remove(path);
}

}  // namespace
}  // namespace zk2etcd::cli

#include "cli/flags.h"

#include <gtest/gtest.h>

#include <map>

namespace zk2etcd::cli {
namespace {

using std::chrono::minutes;
using std::chrono::seconds;

class FlagSetTest : public ::testing::Test {
 protected:
  FlagSetTest() : flags_("zk2etcd sync") {
    flags_.AddString("zookeeper-prefix", &prefix_, "/dubbo", "prefixes to sync");
    flags_.AddSecret("etcd-password", &password_, "etcd password");
    flags_.AddBool("fix", &fix_, false, "repair");
    flags_.AddUint("concurrent", &concurrent_, 50, "requests in flight");
    flags_.AddDuration("fullsync-interval", &interval_, minutes(5), "period");
  }

  Result<void, std::string> Parse(std::vector<std::string> args) {
    return flags_.Parse(args, [this](const std::string& name) -> std::optional<std::string> {
      auto it = env_.find(name);
      if (it == env_.end()) return std::nullopt;
      return it->second;
    });
  }

  FlagSet flags_;
  std::map<std::string, std::string> env_;
  std::string prefix_, password_;
  bool fix_ = true;
  uint64_t concurrent_ = 0;
  std::chrono::nanoseconds interval_{};
};

TEST_F(FlagSetTest, DefaultsApplyWhenNothingIsGiven) {
  ASSERT_TRUE(Parse({}).ok());
  EXPECT_EQ(prefix_, "/dubbo");
  EXPECT_FALSE(fix_);
  EXPECT_EQ(concurrent_, 50u);
  EXPECT_EQ(interval_, minutes(5));
  EXPECT_FALSE(flags_.WasSet("concurrent"));
}

// /debug/config: each flag as the program uses it, defaults unquoted, unset switches false, a
// value derived at run time where the flag was left empty, secrets never.
TEST_F(FlagSetTest, DumpShowsTheValuesInUse) {
  std::string identity;
  flags_.AddString("leader-elect-identity", &identity, "", "identity");
  ASSERT_TRUE(Parse({"--etcd-password=s3cret"}).ok());
  flags_.SetDerived("leader-elect-identity", "host-1");
  const std::vector<std::string> dump = flags_.Dump();
  const std::vector<std::string> expected = {
      "zookeeper-prefix=/dubbo", "etcd-password=<redacted>", "fix=false",
      "concurrent=50",           "fullsync-interval=5m0s",   "leader-elect-identity=host-1"};
  EXPECT_EQ(dump, expected);
  ASSERT_TRUE(Parse({"--leader-elect-identity=pod-7", "--zookeeper-prefix=/a", "--fix"}).ok());
  const std::vector<std::string> given = flags_.Dump();
  EXPECT_EQ(given[0], "zookeeper-prefix=/a");
  EXPECT_EQ(given[2], "fix=true");
  EXPECT_EQ(given[5], "leader-elect-identity=pod-7");
}

TEST_F(FlagSetTest, AcceptsEqualsAndSeparateValueForms) {
  ASSERT_TRUE(Parse({"--zookeeper-prefix=/a,/b", "--concurrent", "8", "--fix",
                     "--fullsync-interval=0"})
                  .ok());
  EXPECT_EQ(prefix_, "/a,/b");
  EXPECT_EQ(concurrent_, 8u);
  EXPECT_TRUE(fix_);
  EXPECT_EQ(interval_.count(), 0);
  EXPECT_TRUE(flags_.WasSet("concurrent"));
}

TEST_F(FlagSetTest, BoolTakesExplicitValueOnlyWithEquals) {
  ASSERT_TRUE(Parse({"--fix=false"}).ok());
  EXPECT_FALSE(fix_);
  auto positional = Parse({"--fix", "false"});
  ASSERT_FALSE(positional.ok());
  EXPECT_NE(positional.error().find("unexpected argument \"false\""), std::string::npos);
}

TEST_F(FlagSetTest, EnvironmentFillsUnsetFlagsAndCommandLineWins) {
  env_["ZK2ETCD_CONCURRENT"] = "7";
  env_["ZK2ETCD_ZOOKEEPER_PREFIX"] = "/env";
  ASSERT_TRUE(Parse({"--zookeeper-prefix=/cli"}).ok());
  EXPECT_EQ(concurrent_, 7u);
  EXPECT_EQ(prefix_, "/cli");
}

TEST_F(FlagSetTest, ErrorsNameTheFlagAndValue) {
  auto unknown = Parse({"--zookeeper-prefixx=/a"});
  ASSERT_FALSE(unknown.ok());
  EXPECT_EQ(unknown.error(), "unknown flag --zookeeper-prefixx (see 'zk2etcd sync --help')");

  auto bad_number = Parse({"--concurrent=-1"});
  ASSERT_FALSE(bad_number.ok());
  EXPECT_NE(bad_number.error().find("\"-1\" for --concurrent"), std::string::npos);

  auto bad_duration = Parse({"--fullsync-interval", "5 minutes"});
  ASSERT_FALSE(bad_duration.ok());
  EXPECT_NE(bad_duration.error().find("--fullsync-interval"), std::string::npos);

  auto missing = Parse({"--concurrent"});
  ASSERT_FALSE(missing.ok());
  EXPECT_NE(missing.error().find("needs a value"), std::string::npos);

  auto shorthand = Parse({"-x"});
  ASSERT_FALSE(shorthand.ok());
}

TEST_F(FlagSetTest, AFlagFollowedByAnotherFlagHasNoValue) {
  auto followed = Parse({"--zookeeper-prefix", "--concurrent=3"});
  ASSERT_FALSE(followed.ok());
  EXPECT_EQ(followed.error(),
            "flag --zookeeper-prefix needs a value, and --concurrent that follows it is a flag "
            "(write --zookeeper-prefix=VALUE) (see 'zk2etcd sync --help')");
  EXPECT_FALSE(Parse({"--zookeeper-prefix", "--fix"}).ok());
  EXPECT_FALSE(Parse({"--zookeeper-prefix", "--help"}).ok());
  EXPECT_FALSE(Parse({"--zookeeper-prefix", "-h"}).ok());
  // The next flag's value is not repeated: it may be a secret.
  auto secret = Parse({"--zookeeper-prefix", "--etcd-password=s3cret"});
  ASSERT_FALSE(secret.ok());
  EXPECT_EQ(secret.error().find("s3cret"), std::string::npos) << secret.error();

  // A value that only looks like a flag is still a value.
  ASSERT_TRUE(Parse({"--zookeeper-prefix", "--not-a-flag"}).ok());
  EXPECT_EQ(prefix_, "--not-a-flag");
  ASSERT_TRUE(Parse({"--zookeeper-prefix=--fix"}).ok());
  EXPECT_EQ(prefix_, "--fix");
}

TEST_F(FlagSetTest, BadEnvironmentValueNamesTheVariable) {
  env_["ZK2ETCD_FIX"] = "maybe";
  auto parsed = Parse({});
  ASSERT_FALSE(parsed.ok());
  EXPECT_NE(parsed.error().find("ZK2ETCD_FIX"), std::string::npos);
}

TEST_F(FlagSetTest, HelpIsRecognisedAnywhere) {
  ASSERT_TRUE(Parse({"--fix", "-h"}).ok());
  EXPECT_TRUE(flags_.help_requested());
}

TEST_F(FlagSetTest, UsageListsEveryFlagWithDefaultAndVariableButNoSecret) {
  password_ = "hunter2";
  const std::string usage = flags_.FlagUsage();
  EXPECT_NE(usage.find("--zookeeper-prefix string"), std::string::npos);
  EXPECT_NE(usage.find("(default \"/dubbo\")"), std::string::npos);
  EXPECT_NE(usage.find("(default 5m0s)"), std::string::npos);
  EXPECT_NE(usage.find("[$ZK2ETCD_FULLSYNC_INTERVAL]"), std::string::npos);
  EXPECT_EQ(usage.find("hunter2"), std::string::npos);
}

TEST_F(FlagSetTest, SecretValuesAreNotEchoedInErrors) {
  FlagSet flags("zk2etcd sync");
  std::string secret;
  flags.AddSecret("etcd-password", &secret, "etcd password");
  ASSERT_TRUE(flags.Parse({"--etcd-password=s3cret"}, [](const std::string&) {
                     return std::optional<std::string>();
                   }).ok());
  EXPECT_EQ(secret, "s3cret");
}

TEST(FloatFlagTest, ParsesDecimalsAndNegativesAndRefusesText) {
  FlagSet flags("zk2etcd etcd2etcd sync");
  double rate = 7;
  flags.AddFloat("max-write-rate", &rate, 0, "keys per second");
  const EnvLookup no_env = [](const std::string&) { return std::optional<std::string>(); };
  ASSERT_TRUE(flags.Parse({}, no_env).ok());
  EXPECT_EQ(rate, 0);
  ASSERT_TRUE(flags.Parse({"--max-write-rate=2.5"}, no_env).ok());
  EXPECT_EQ(rate, 2.5);
  ASSERT_TRUE(flags.Parse({"--max-write-rate", "-3"}, no_env).ok());
  EXPECT_EQ(rate, -3);
  for (const char* bad : {"--max-write-rate=fast", "--max-write-rate=", "--max-write-rate=1x",
                          "--max-write-rate=inf"}) {
    auto parsed = flags.Parse({bad}, no_env);
    ASSERT_FALSE(parsed.ok()) << bad;
    EXPECT_NE(parsed.error().find("expected a number"), std::string::npos) << parsed.error();
  }
  EXPECT_NE(flags.FlagUsage().find("--max-write-rate float"), std::string::npos);
}

TEST(EnvVarNameTest, UpperCaseWithUnderscores) {
  EXPECT_EQ(FlagSet::EnvVarName("etcd-servers"), "ZK2ETCD_ETCD_SERVERS");
}

}  // namespace
}  // namespace zk2etcd::cli

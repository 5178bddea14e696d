#include "ops/log.h"

#include <gtest/gtest.h>
#include <unistd.h>

#include <filesystem>
#include <fstream>
#include <sstream>
#include <thread>

namespace zk2etcd::ops {
namespace {

class LoggerTest : public ::testing::Test {
 protected:
  FakeClock clock_;
  std::shared_ptr<MemoryLogSink> sink_ = std::make_shared<MemoryLogSink>();
};

TEST_F(LoggerTest, JsonLineHasLevelTimeMessageAndFields) {
  Logger logger(sink_, LogFormat::kJson, LogLevel::kInfo, clock_);
  logger.Info("synced", {{"key", "/dubbo/a"}, {"count", 3}, {"ok", true}, {"zxid", uint64_t{7}}});
  ASSERT_EQ(sink_->Lines().size(), 1u);
  EXPECT_EQ(sink_->Lines()[0],
            "{\"level\":\"info\",\"ts\":\"2027-01-15T08:00:00.000Z\",\"msg\":\"synced\","
            "\"key\":\"/dubbo/a\",\"count\":3,\"ok\":true,\"zxid\":7}");
}

TEST_F(LoggerTest, TextLineQuotesOnlyWhenNeeded) {
  Logger logger(sink_, LogFormat::kText, LogLevel::kDebug, clock_);
  logger.Warn("slow write", {{"key", "/a b"}, {"ms", 12}});
  EXPECT_EQ(sink_->Lines().at(0), "2027-01-15T08:00:00.000Z WARN slow write key=\"/a b\" ms=12");
}

TEST_F(LoggerTest, LevelFiltersAndChangesAtRunTime) {
  Logger logger(sink_, LogFormat::kJson, LogLevel::kWarn, clock_);
  logger.Info("hidden");
  logger.SetLevel(LogLevel::kDebug);
  logger.Debug("shown");
  ASSERT_EQ(sink_->Lines().size(), 1u);
  EXPECT_NE(sink_->Lines()[0].find("\"shown\""), std::string::npos);
}

TEST(LogEscapeTest, ControlCharactersQuotesAndInvalidUtf8AreEscaped) {
  std::string out;
  AppendJsonEscaped(out, "a\"b\\c\nd\x01\xff\xc3\xa9");
  EXPECT_EQ(out, "a\\\"b\\\\c\\nd\\u0001\\u00ff\xc3\xa9");
}

TEST(ParseLogLevelTest, AcceptsGoNamesAndRejectsOthers) {
  EXPECT_EQ(ParseLogLevel("debug").value(), LogLevel::kDebug);
  EXPECT_EQ(ParseLogLevel("warning").value(), LogLevel::kWarn);
  EXPECT_EQ(ParseLogLevel("fatal").value(), LogLevel::kFatal);
  auto bad = ParseLogLevel("verbose");
  ASSERT_FALSE(bad.ok());
  EXPECT_NE(bad.error().find("\"verbose\""), std::string::npos);
}

// ---- log files ----

class RotatingFileLogSinkTest : public ::testing::Test {
 protected:
  void SetUp() override {
    std::string pattern =
        (std::filesystem::temp_directory_path() / "zk2etcd_log_test_XXXXXX").string();
    ASSERT_NE(::mkdtemp(pattern.data()), nullptr);
    dir_ = pattern;
    path_ = (dir_ / "zk2etcd.log").string();
  }
  void TearDown() override { std::filesystem::remove_all(dir_); }

  static std::string Read(const std::string& path) {
    std::ifstream in(path, std::ios::binary);
    std::stringstream text;
    text << in.rdbuf();
    return text.str();
  }
  bool Exists(const std::string& path) const { return std::filesystem::exists(path); }

  std::filesystem::path dir_;
  std::string path_;
};

TEST_F(RotatingFileLogSinkTest, AppendsLinesToAnExistingFile) {
  { std::ofstream(path_) << "old\n"; }
  auto sink = RotatingFileLogSink::Open(path_, 1000, 3);
  ASSERT_TRUE(sink.ok()) << sink.error();
  (*sink)->WriteLine("one");
  (*sink)->WriteLine("two");
  EXPECT_EQ(Read(path_), "old\none\ntwo\n");
  EXPECT_FALSE(Exists(path_ + ".1"));
}

TEST_F(RotatingFileLogSinkTest, RotatesBeforeExceedingMaxBytesAndKeepsMaxFiles) {
  auto sink = RotatingFileLogSink::Open(path_, 20, 2);
  ASSERT_TRUE(sink.ok()) << sink.error();
  // Each line is 10 bytes with its newline: two fit in 20 bytes.
  for (const char* line : {"line-0001", "line-0002", "line-0003", "line-0004", "line-0005",
                           "line-0006", "line-0007"}) {
    (*sink)->WriteLine(line);
  }
  EXPECT_EQ(Read(path_), "line-0007\n");
  EXPECT_EQ(Read(path_ + ".1"), "line-0005\nline-0006\n");
  EXPECT_EQ(Read(path_ + ".2"), "line-0003\nline-0004\n");
  EXPECT_FALSE(Exists(path_ + ".3"));  // line-0001 and line-0002 were dropped with the oldest
}

TEST_F(RotatingFileLogSinkTest, CountsTheExistingFileAndPutsLongLinesAlone) {
  {
    std::ofstream(path_) << "0123456789012345\n";  // 17 bytes already
  }
  auto sink = RotatingFileLogSink::Open(path_, 20, 1);
  ASSERT_TRUE(sink.ok()) << sink.error();
  (*sink)->WriteLine("abcd");  // 17 + 5 > 20: rotates first
  const std::string long_line(50, 'x');
  (*sink)->WriteLine(long_line);  // longer than max_bytes: a file of its own
  (*sink)->WriteLine("z");
  EXPECT_EQ(Read(path_), "z\n");
  EXPECT_EQ(Read(path_ + ".1"), long_line + "\n");
  EXPECT_FALSE(Exists(path_ + ".2"));
}

TEST_F(RotatingFileLogSinkTest, ZeroOldFilesTruncatesAndZeroMaxBytesNeverRotates) {
  auto truncating = RotatingFileLogSink::Open(path_, 10, 0);
  ASSERT_TRUE(truncating.ok());
  (*truncating)->WriteLine("aaaaaaaa");
  (*truncating)->WriteLine("bbbbbbbb");
  EXPECT_EQ(Read(path_), "bbbbbbbb\n");
  EXPECT_FALSE(Exists(path_ + ".1"));

  const std::string other = (dir_ / "unbounded.log").string();
  auto unbounded = RotatingFileLogSink::Open(other, 0, 3);
  ASSERT_TRUE(unbounded.ok());
  for (int i = 0; i < 100; ++i) (*unbounded)->WriteLine("some line");
  EXPECT_EQ(Read(other).size(), 1000u);
  EXPECT_FALSE(Exists(other + ".1"));
}

TEST_F(RotatingFileLogSinkTest, OpenErrorNamesThePathAndTheReason) {
  const std::string missing = (dir_ / "no" / "such" / "dir.log").string();
  auto sink = RotatingFileLogSink::Open(missing, 100, 1);
  ASSERT_FALSE(sink.ok());
  EXPECT_EQ(sink.error(), "cannot open log file \"" + missing + "\": No such file or directory");
  EXPECT_FALSE(RotatingFileLogSink::Open(path_, 100, -1).ok());
}

TEST_F(RotatingFileLogSinkTest, LoggerThreadsLoseNoLinesAcrossRotations) {
  auto sink = RotatingFileLogSink::Open(path_, 4096, 100);
  ASSERT_TRUE(sink.ok());
  FakeClock clock;
  Logger logger(*sink, LogFormat::kJson, LogLevel::kInfo, clock);
  constexpr int kThreads = 4;
  constexpr int kLines = 500;
  std::vector<std::thread> threads;
  for (int t = 0; t < kThreads; ++t) {
    threads.emplace_back([&, t] {
      for (int i = 0; i < kLines; ++i) logger.Info("tick", {{"thread", t}, {"i", i}});
    });
  }
  for (std::thread& thread : threads) thread.join();
  size_t lines = 0;
  size_t files = 0;
  for (const auto& entry : std::filesystem::directory_iterator(dir_)) {
    const std::string text = Read(entry.path().string());
    EXPECT_LE(text.size(), 4096u) << entry.path();
    EXPECT_TRUE(text.empty() || text.back() == '\n');
    lines += static_cast<size_t>(std::count(text.begin(), text.end(), '\n'));
    ++files;
  }
  EXPECT_EQ(lines, size_t{kThreads} * kLines);
  EXPECT_GT(files, 2u);
}

TEST(TeeLogSinkTest, WritesEveryLineToEverySink) {
  auto a = std::make_shared<MemoryLogSink>();
  auto b = std::make_shared<MemoryLogSink>();
  TeeLogSink tee({a, b});
  tee.WriteLine("x");
  tee.WriteLine("y");
  EXPECT_EQ(a->Lines(), (std::vector<std::string>{"x", "y"}));
  EXPECT_EQ(b->Lines(), a->Lines());
}

}  // namespace
}  // namespace zk2etcd::ops

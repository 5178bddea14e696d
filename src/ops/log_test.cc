#include "ops/log.h"

#include <gtest/gtest.h>

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

}  // namespace
}  // namespace zk2etcd::ops

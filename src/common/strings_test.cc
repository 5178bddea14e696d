#include "common/strings.h"

#include <gtest/gtest.h>

namespace zk2etcd {
namespace {

using std::chrono::hours;
using std::chrono::milliseconds;
using std::chrono::minutes;
using std::chrono::nanoseconds;
using std::chrono::seconds;

TEST(SplitCommaListTest, TrimsAndDropsEmptyEntries) {
  EXPECT_EQ(SplitCommaList("/a, /b,,/c ,"), (std::vector<std::string>{"/a", "/b", "/c"}));
  EXPECT_TRUE(SplitCommaList("").empty());
  EXPECT_TRUE(SplitCommaList(" , ,").empty());
  EXPECT_EQ(SplitCommaList("one"), (std::vector<std::string>{"one"}));
}

TEST(JoinCommaListTest, JoinsWithoutSpacesAndSplitsBack) {
  EXPECT_EQ(JoinCommaList({}), "");
  EXPECT_EQ(JoinCommaList({"a"}), "a");
  EXPECT_EQ(JoinCommaList({"127.0.0.1:2379", "b:2379"}), "127.0.0.1:2379,b:2379");
  EXPECT_EQ(SplitCommaList(JoinCommaList({"/a", "/b"})), (std::vector<std::string>{"/a", "/b"}));
}

TEST(ParseGoDurationTest, AcceptsGoForms) {
  EXPECT_EQ(ParseGoDuration("5m").value(), minutes(5));
  EXPECT_EQ(ParseGoDuration("0").value(), nanoseconds(0));
  EXPECT_EQ(ParseGoDuration("0s").value(), nanoseconds(0));
  EXPECT_EQ(ParseGoDuration("1h30m").value(), minutes(90));
  EXPECT_EQ(ParseGoDuration("500ms").value(), milliseconds(500));
  EXPECT_EQ(ParseGoDuration("1.5s").value(), milliseconds(1500));
  EXPECT_EQ(ParseGoDuration("2h45m10s").value(), hours(2) + minutes(45) + seconds(10));
  EXPECT_EQ(ParseGoDuration("-3s").value(), seconds(-3));
  EXPECT_EQ(ParseGoDuration("10us").value(), nanoseconds(10000));
}

TEST(ParseGoDurationTest, RejectsWithTheOffendingText) {
  for (const char* bad : {"", "5", "5x", "m", "1h-5m", "abc", "5 m", "1e3s"}) {
    auto parsed = ParseGoDuration(bad);
    ASSERT_FALSE(parsed.ok()) << bad;
    EXPECT_NE(parsed.error().find(std::string("\"") + bad + "\""), std::string::npos)
        << parsed.error();
  }
  EXPECT_FALSE(ParseGoDuration("99999999999h").ok());
}

TEST(FormatGoDurationTest, MatchesGoOutput) {
  EXPECT_EQ(FormatGoDuration(minutes(5)), "5m0s");
  EXPECT_EQ(FormatGoDuration(nanoseconds(0)), "0s");
  EXPECT_EQ(FormatGoDuration(milliseconds(1500)), "1.5s");
  EXPECT_EQ(FormatGoDuration(milliseconds(300)), "300ms");
  EXPECT_EQ(FormatGoDuration(hours(1) + seconds(2)), "1h0m2s");
  EXPECT_EQ(FormatGoDuration(seconds(-30)), "-30s");
}

TEST(FormatGoDurationTest, RoundTripsThroughParse) {
  for (nanoseconds d : {nanoseconds(7), nanoseconds(1500), nanoseconds(milliseconds(12)),
                        nanoseconds(seconds(61)), nanoseconds(hours(25))}) {
    EXPECT_EQ(ParseGoDuration(FormatGoDuration(d)).value(), d) << FormatGoDuration(d);
  }
}

TEST(UrlEncodeTest, KeepsUnreservedAndEncodesTheRest) {
  EXPECT_EQ(UrlEncode("a-b_c.d~e"), "a-b_c.d~e");
  EXPECT_EQ(UrlEncode("dubbo://h:1/s?a=b&c"), "dubbo%3A%2F%2Fh%3A1%2Fs%3Fa%3Db%26c");
  EXPECT_EQ(UrlEncode(std::string_view("\xff ", 2)), "%FF%20");
}

TEST(QuotedTest, PutsDoubleQuotesAround) {
  EXPECT_EQ(Quoted("/registry"), "\"/registry\"");
  EXPECT_EQ(Quoted(""), "\"\"");
}

}  // namespace
}  // namespace zk2etcd

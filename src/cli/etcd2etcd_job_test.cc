// OtherMirrorOwningKeysInRange on the in-memory etcd: the skip from one mirror name to the next
// under --meta-prefix, and which records count as covering this mirror's destination range.
#include "cli/etcd2etcd_job.h"

#include <gtest/gtest.h>

#include <string>

#include "common/clock.h"
#include "etcd/fake_etcd_client.h"
#include "ops/log.h"

namespace zk2etcd::cli {
namespace {

class OtherMirrorTest : public ::testing::Test {
 protected:
  OtherMirrorTest() {
    config_.prefix = "/reg/";
    config_.name = "m";
    config_.meta_prefix = "/etcd2etcd";
    config_.adopt = sync::AdoptPolicy::kMatching;
  }
  void Put(const std::string& key) { ASSERT_TRUE(etcd_.Put(key, "x").ok()) << key; }
  std::optional<std::string> Other() {
    auto other = OtherMirrorOwningKeysInRange(etcd_, config_);
    EXPECT_TRUE(other.ok()) << (other.ok() ? "" : other.error().ToString());
    return other.ok() ? *other : std::optional<std::string>("<error>");
  }

  SystemClock clock_;
  etcd::FakeEtcdClient etcd_{clock_};
  Etcd2EtcdConfig config_;
};

TEST_F(OtherMirrorTest, NoOtherMirrorOrOnlyThisOnesRecords) {
  EXPECT_EQ(Other(), std::nullopt);
  Put("/etcd2etcd/m/records/reg/a");
  Put("/etcd2etcd/m/checkpoint");
  EXPECT_EQ(Other(), std::nullopt);
}

TEST_F(OtherMirrorTest, NamesAroundThisOneAreAllVisited) {
  // "m-x" sorts before "m/", "m0" after it, and a key with no '/' is no mirror's record.
  Put("/etcd2etcd/m");
  Put("/etcd2etcd/m-x/checkpoint");
  Put("/etcd2etcd/m-x/records/elsewhere/a");  // outside /reg/
  Put("/etcd2etcd/m/records/reg/a");
  Put("/etcd2etcd/m0/election/1");
  EXPECT_EQ(Other(), std::nullopt);
  Put("/etcd2etcd/m0/records/reg/b");
  EXPECT_EQ(Other(), "m0");
  // The first found in key order: "m-x", right after the key without '/'.
  Put("/etcd2etcd/m-x/records/reg/c");
  EXPECT_EQ(Other(), "m-x");
}

TEST_F(OtherMirrorTest, ARecordCountsWhereverItsMirrorsRangeOverlapsThisOne) {
  // Another mirror's range that is wider, or narrower, than this one's.
  Put("/etcd2etcd/wide/records/reg/deep/a");
  EXPECT_EQ(Other(), "wide");

  config_.dest_prefix = "/copy/";  // this mirror writes /copy/..., which nobody else owns
  EXPECT_EQ(Other(), std::nullopt);
  Put("/etcd2etcd/narrow/records/copy/sub/x");
  EXPECT_EQ(Other(), "narrow");

  // Another --meta-prefix is another set of mirrors.
  config_.meta_prefix = "/elsewhere/";
  EXPECT_EQ(Other(), std::nullopt);
}

// A user whose role does not cover the whole --meta-prefix: the check is skipped with a warning;
// any other error is the caller's (sync retries it, diff exits 2).
TEST_F(OtherMirrorTest, OnlyAForbiddenListingIsAnsweredAsNoOtherMirror) {
  auto sink = std::make_shared<ops::MemoryLogSink>();
  ops::Logger logger(sink, ops::LogFormat::kText, ops::LogLevel::kInfo, clock_);
  Put("/etcd2etcd/other/records/reg/a");

  etcd_.InjectFault("range", etcd::ErrorCode::kPermissionDenied);
  auto forbidden = OtherMirrorUnlessForbidden(etcd_, config_, logger);
  ASSERT_TRUE(forbidden.ok());
  EXPECT_EQ(*forbidden, std::nullopt);
  ASSERT_EQ(sink->Lines().size(), 1u);
  EXPECT_NE(sink->Lines()[0].find("cannot look for other mirrors' records"), std::string::npos);

  etcd_.InjectFault("range", etcd::ErrorCode::kUnavailable);
  auto unavailable = OtherMirrorUnlessForbidden(etcd_, config_, logger);
  ASSERT_FALSE(unavailable.ok());
  EXPECT_EQ(unavailable.error().code, etcd::ErrorCode::kUnavailable);

  auto found = OtherMirrorUnlessForbidden(etcd_, config_, logger);
  ASSERT_TRUE(found.ok());
  EXPECT_EQ(*found, "other");
  EXPECT_EQ(sink->Lines().size(), 1u);
}

}  // namespace
}  // namespace zk2etcd::cli

#include "zk/jute.h"

#include <gtest/gtest.h>

#include <limits>

namespace zk2etcd::zk {
namespace {

TEST(JuteTest, ScalarsRoundTripBigEndian) {
  std::string bytes;
  JuteWriter w(bytes);
  w.WriteInt32(0x01020304);
  w.WriteInt32(-2);
  w.WriteInt64(0x0102030405060708);
  w.WriteInt64(std::numeric_limits<int64_t>::min());
  w.WriteBool(true);
  w.WriteBool(false);
  ASSERT_EQ(bytes.size(), 4u + 4 + 8 + 8 + 1 + 1);
  EXPECT_EQ(bytes.substr(0, 4), std::string("\x01\x02\x03\x04", 4));
  EXPECT_EQ(bytes.substr(4, 4), std::string("\xff\xff\xff\xfe", 4));

  JuteReader r(bytes);
  int32_t i = 0;
  int64_t l = 0;
  bool b = false;
  ASSERT_TRUE(r.ReadInt32(&i));
  EXPECT_EQ(i, 0x01020304);
  ASSERT_TRUE(r.ReadInt32(&i));
  EXPECT_EQ(i, -2);
  ASSERT_TRUE(r.ReadInt64(&l));
  EXPECT_EQ(l, 0x0102030405060708);
  ASSERT_TRUE(r.ReadInt64(&l));
  EXPECT_EQ(l, std::numeric_limits<int64_t>::min());
  ASSERT_TRUE(r.ReadBool(&b));
  EXPECT_TRUE(b);
  ASSERT_TRUE(r.ReadBool(&b));
  EXPECT_FALSE(b);
  EXPECT_TRUE(r.AtEnd());
  EXPECT_TRUE(r.ok());
}

TEST(JuteTest, BuffersAndVectorsRoundTrip) {
  std::string bytes;
  JuteWriter w(bytes);
  w.WriteBuffer(std::string("a\0b", 3));
  w.WriteBuffer("");
  w.WriteNullBuffer();
  w.WriteStringVector({"x", "", "yz"});
  JuteReader r(bytes);
  std::string s = "junk";
  ASSERT_TRUE(r.ReadBuffer(&s));
  EXPECT_EQ(s, std::string("a\0b", 3));
  ASSERT_TRUE(r.ReadBuffer(&s));
  EXPECT_EQ(s, "");
  s = "junk";
  ASSERT_TRUE(r.ReadBuffer(&s));
  EXPECT_EQ(s, "") << "null reads as empty";
  std::vector<std::string> v;
  ASSERT_TRUE(r.ReadStringVector(&v));
  EXPECT_EQ(v, (std::vector<std::string>{"x", "", "yz"}));
  EXPECT_TRUE(r.AtEnd());
}

TEST(JuteTest, FramePrefixIsFilledIn) {
  std::string bytes;
  JuteWriter w(bytes);
  const size_t at = w.BeginFrame();
  w.WriteInt64(7);
  w.EndFrame(at);
  ASSERT_EQ(bytes.size(), 12u);
  EXPECT_EQ(bytes.substr(0, 4), std::string("\0\0\0\x08", 4));
}

TEST(JuteTest, TruncatedInputFailsAndStaysFailed) {
  const std::string bytes("\x00\x00\x01", 3);
  JuteReader r(bytes);
  int32_t i = 0;
  EXPECT_FALSE(r.ReadInt32(&i));
  EXPECT_FALSE(r.ok());
  EXPECT_NE(r.error().find("truncated int"), std::string::npos) << r.error();
  bool b = false;
  EXPECT_FALSE(r.ReadBool(&b)) << "failure is sticky";
}

TEST(JuteTest, BufferLengthBeyondInputFailsWithoutAllocating) {
  // A length of 2 GiB - 1 with 3 bytes behind it: must fail before any allocation.
  const std::string bytes(
      "\x7f\xff\xff\xff"
      "abc",
      7);
  JuteReader r(bytes);
  std::string s;
  EXPECT_FALSE(r.ReadBuffer(&s));
  EXPECT_NE(r.error().find("exceeds"), std::string::npos) << r.error();
  EXPECT_EQ(s.capacity() < 1024, true);
}

TEST(JuteTest, NegativeBufferLengthOtherThanNullFails) {
  const std::string bytes("\xff\xff\xff\xfe", 4);
  JuteReader r(bytes);
  std::string s;
  EXPECT_FALSE(r.ReadBuffer(&s));
  EXPECT_NE(r.error().find("negative"), std::string::npos) << r.error();
}

TEST(JuteTest, VectorCountBeyondInputFailsBeforeReserving) {
  const std::string bytes(
      "\x10\x00\x00\x00"
      "\x00\x00\x00\x00",
      8);  // 268M elements, 4 bytes
  JuteReader r(bytes);
  std::vector<std::string> v;
  EXPECT_FALSE(r.ReadStringVector(&v));
  EXPECT_NE(r.error().find("vector count"), std::string::npos) << r.error();
  EXPECT_EQ(v.capacity(), 0u);
}

TEST(JuteTest, VectorWithTruncatedElementFails) {
  std::string bytes;
  JuteWriter w(bytes);
  w.WriteInt32(2);
  w.WriteBuffer("ok");
  w.WriteInt32(10);  // second element claims 10 bytes, none follow
  JuteReader r(bytes);
  std::vector<std::string> v;
  EXPECT_FALSE(r.ReadStringVector(&v));
}

}  // namespace
}  // namespace zk2etcd::zk

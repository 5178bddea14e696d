#include "common/result.h"

#include <gtest/gtest.h>

#include <memory>
#include <string>

namespace zk2etcd {
namespace {

Result<int, std::string> Half(int n) {
  if (n % 2 != 0) return Unexpected{std::string("odd")};
  return n / 2;
}

TEST(ResultTest, HoldsValueOrError) {
  auto good = Half(4);
  ASSERT_TRUE(good.ok());
  EXPECT_EQ(*good, 2);
  auto bad = Half(3);
  ASSERT_FALSE(bad.ok());
  EXPECT_EQ(bad.error(), "odd");
}

TEST(ResultTest, SameTypeForValueAndErrorIsUnambiguous) {
  Result<std::string, std::string> value(std::string("v"));
  Result<std::string, std::string> error(Unexpected{std::string("e")});
  EXPECT_TRUE(value.ok());
  EXPECT_FALSE(error.ok());
  EXPECT_EQ(error.error(), "e");
}

TEST(ResultTest, MovesOutMoveOnlyValues) {
  Result<std::unique_ptr<int>, std::string> r(std::make_unique<int>(7));
  std::unique_ptr<int> p = std::move(r).value();
  EXPECT_EQ(*p, 7);
}

TEST(ResultTest, VoidResult) {
  Result<void, std::string> ok;
  EXPECT_TRUE(ok.ok());
  Result<void, std::string> failed(Unexpected{std::string("boom")});
  EXPECT_FALSE(failed.ok());
  EXPECT_EQ(failed.error(), "boom");
}

}  // namespace
}  // namespace zk2etcd

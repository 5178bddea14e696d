#include "sync/recent_deletes.h"

#include <gtest/gtest.h>

namespace zk2etcd::sync {
namespace {

TEST(RecentDeletesTest, OnlyDeletesNotedDuringAReconciliationAndNewerThanTheWriteCount) {
  RecentDeletes deletes;
  deletes.Note("/a", 50);  // no reconciliation under way: no repair can land late
  deletes.Begin();
  EXPECT_EQ(deletes.DeletedAfter("/a", 10), std::nullopt);
  deletes.Note("/a", 20);
  deletes.Note("/a", 15);  // an older point does not hide the newer one
  EXPECT_EQ(deletes.DeletedAfter("/a", 10), 20);
  EXPECT_EQ(deletes.DeletedAfter("/a", 20), std::nullopt);  // the write is as new as the delete
  EXPECT_EQ(deletes.DeletedAfter("/a", 30), std::nullopt);  // created again after it
  EXPECT_EQ(deletes.DeletedAfter("/b", 10), std::nullopt);
  deletes.End();
  EXPECT_EQ(deletes.DeletedAfter("/a", 10), std::nullopt);
  deletes.Begin();
  EXPECT_EQ(deletes.DeletedAfter("/a", 10), std::nullopt);  // each reconciliation starts empty
}

}  // namespace
}  // namespace zk2etcd::sync

#include "sync/announced_changes.h"

#include <gtest/gtest.h>

namespace zk2etcd::sync {
namespace {

TEST(AnnouncedChangesTest, OnlyKeysAnnouncedDuringAReconciliationMayHaveChanged) {
  AnnouncedChanges changes;
  EXPECT_TRUE(changes.MayHaveChanged("/a"));  // no reconciliation under way: nothing is known
  changes.Note("/a");
  changes.Begin();
  EXPECT_FALSE(changes.MayHaveChanged("/a"));  // announced before the reconciliation began
  changes.Note("/b");
  EXPECT_TRUE(changes.MayHaveChanged("/b"));
  EXPECT_FALSE(changes.MayHaveChanged("/a"));
  EXPECT_FALSE(changes.MayHaveChanged("/b/c"));  // a key, not a subtree
  changes.End();
  EXPECT_TRUE(changes.MayHaveChanged("/a"));
  changes.Begin();
  EXPECT_FALSE(changes.MayHaveChanged("/b"));  // each reconciliation starts empty
}

TEST(AnnouncedChangesTest, AfterAGapEveryKeyMayHaveChangedUntilTheNextReconciliation) {
  AnnouncedChanges changes;
  changes.NoteGap();  // outside a reconciliation: the next one starts without it
  changes.Begin();
  EXPECT_FALSE(changes.MayHaveChanged("/a"));
  changes.NoteGap();
  EXPECT_TRUE(changes.MayHaveChanged("/a"));
  changes.Note("/b");
  EXPECT_TRUE(changes.MayHaveChanged("/c"));
  changes.End();
  changes.Begin();
  EXPECT_FALSE(changes.MayHaveChanged("/a"));
}

}  // namespace
}  // namespace zk2etcd::sync

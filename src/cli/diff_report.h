// What the two diff commands (`zk2etcd diff` and `zk2etcd etcd2etcd diff`) share once a
// reconciliation has compared a source with a sink: the verdict (RemainingDifferences), the report
// (PrintDiffText, PrintDiffJson, byte for byte the format each command has always printed, told
// apart only by DiffReportNames), the progress line on a terminal, and the listener of a source
// opened without a change stream.
//
// Thread-safety: the functions are pure but for the stream they write; a DiffProgress is used by
// one reconciliation at a time (its callback runs on the reconciler's calling thread).
#pragma once

#include <chrono>
#include <cstddef>
#include <functional>
#include <ostream>
#include <string>
#include <string_view>

#include "core/source.h"
#include "sync/reconciler.h"

namespace zk2etcd::cli {

// The names that tell one command's report from the other's.
struct DiffReportNames {
  // Text labels of the entry counts, e.g. "zookeeper nodes" and "etcd keys". Every label of the
  // text report is padded to the longest of these two plus ": ".
  std::string_view source_label;
  std::string_view sink_label;
  // JSON fields of the entry counts and of the sink's revision, e.g. "zk_nodes", "etcd_keys",
  // "etcd_revision".
  std::string_view source_field;
  std::string_view sink_field;
  std::string_view revision_field;
  // What the entries are called in the text report's lists ("missing keys:", "missing nodes:").
  std::string_view entries = "keys";
  // Whether a --fix report counts the deletes deferred by an unreachable ownership store.
  bool deferred_deletes = false;
};

// The differences that keep the exit status at 1: after a repair (`fixed`), what failed or was
// deferred, and the conflicts (left alone, so still different); otherwise every reported
// difference but foreign keys (another writer's).
size_t RemainingDifferences(const sync::ReconcileReport& report, bool fixed);

// The human-readable report: the counts, then the keys of each kind of difference.
void PrintDiffText(const sync::ReconcileReport& report, bool fixed, const DiffReportNames& names,
                   std::ostream& out);
// The same as one JSON object on one line; "consistent" is `in_sync`.
void PrintDiffJson(const sync::ReconcileReport& report, bool fixed, bool in_sync,
                   const DiffReportNames& names, std::ostream& out);

// A progress line on stderr while a reconciliation reads the source, only when stderr is a
// terminal: "\r<verb> <n> <noun> (<rate> <unit>/s)".
class DiffProgress {
 public:
  DiffProgress(std::string_view verb, std::string_view noun, std::string_view unit);
  // The callback of sync::ReconcileOptions::on_progress; empty when stderr is no terminal.
  std::function<void(size_t)> Callback() const;
  // Erases the line (after each reconciliation).
  void Clear() const;

 private:
  const bool enabled_;
  const std::string verb_;
  const std::string noun_;
  const std::string unit_;
  const std::chrono::steady_clock::time_point started_;
};

// The listener of a source opened for one comparison: it follows no change.
class NoChanges : public core::SourceListener {
 public:
  void OnChange(const std::string& /*key*/) override {}
  void OnSourceEvent(const core::SourceEvent& /*event*/) override {}
};

}  // namespace zk2etcd::cli

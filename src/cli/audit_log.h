// AuditLog: zk2zk's record of every write it made (--audit-log): one JSON line per write that
// the target of its direction answered, appended to a file (or standard output), e.g.
//
//   {"ts":"2026-11-21T08:39:53.123Z","direction":"forward","op":"put",
//    "path":"/dubbo/a/providers/p1","outcome":"applied","version":4294967302,
//    "cause":"change","trace_id":"5f0c3a9e12d4b7a1"}
//
// direction: forward (source to target) or reverse (the target's ephemerals to the source); op:
// put (a create or a data change), delete or adopt (only the ownership record); outcome:
// applied, stale, foreign, already_absent, failed or not_leader; version: the source version
// written (a delete: the point at which the absence was seen); cause: change (a watch event;
// the trace id ties it to the debug log lines of that change) or reconcile (a full sync's
// repair, with a trace id of its own). Each line is one write(2) to a file opened with O_APPEND,
// so lines from several processes never interleave and a killed process loses none it wrote.
//
// Thread-safe.
#pragma once

#include <cstdint>
#include <memory>
#include <mutex>
#include <optional>
#include <random>
#include <string>
#include <string_view>

#include "common/clock.h"
#include "common/result.h"
#include "core/sink.h"
#include "ops/log.h"
#include "sync/incremental_sync.h"
#include "sync/reconciler.h"

namespace zk2etcd::cli {

class AuditLog {
 public:
  // Opens `path` for appending (created if missing), or standard output for "-". The error names
  // the flag and the file. A write that fails later is logged to `logger` once.
  static Result<std::unique_ptr<AuditLog>, std::string> Open(const std::string& path,
                                                             const Clock& clock,
                                                             ops::Logger& logger);
  ~AuditLog();
  AuditLog(const AuditLog&) = delete;
  AuditLog& operator=(const AuditLog&) = delete;

  // A write of a watched change (SyncServiceOptions::on_change).
  void OnChange(std::string_view direction, const sync::AppliedChange& change);
  // A repair of a full sync (SyncServiceOptions::on_repair).
  void OnRepair(std::string_view direction, const sync::RepairResult& repair);

  // The line Write would append, without its newline (for tests).
  static std::string Format(std::chrono::system_clock::time_point time, std::string_view direction,
                            core::SinkWrite::Type type, std::string_view path,
                            std::string_view outcome, int64_t version, std::string_view cause,
                            std::string_view trace_id);

 private:
  AuditLog(int fd, bool owned, const Clock& clock, ops::Logger& logger);
  void Write(std::string_view direction, core::SinkWrite::Type type, std::string_view path,
             std::string_view outcome, int64_t version, std::string_view cause,
             std::string_view trace_id);
  std::string NewTraceId();

  const int fd_;
  const bool owned_;  // closed by the destructor (not standard output)
  const Clock& clock_;
  ops::Logger& logger_;
  std::mutex mutex_;
  std::mt19937_64 random_;  // guarded by mutex_
  bool warned_ = false;     // a failed write was logged once
};

// The outcome label of a write's result: the WriteOutcome's name, "not_leader" or "failed".
std::string_view WriteResultLabel(const sync::WriteResult& result);

}  // namespace zk2etcd::cli

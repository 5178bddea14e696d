// FailureLog: when to log a run of failures of something that is retried (a sink's writes), so
// that an outage is a few lines, not one per attempt:
//   - the first failure of a run: a warning, "<what> failing; retrying", with the error;
//   - while the run lasts: at most one warning each `period`, "<what> still failing; retrying";
//   - the first success after a warned run: an info line, "<what> applied again".
// (Another wording can be given: connection attempts at start say "unreachable".)
// Each line carries how long the run has lasted (failing_s) and its failures so far. The period
// holds across runs: a run that starts within `period` of the last warning is not warned about,
// and then neither is its end.
//
// Decides only; the caller logs the line it is given (outside its own locks, if it likes). Not
// thread-safe: call it under the caller's lock.
#pragma once

#include <chrono>
#include <cstdint>
#include <optional>
#include <string>
#include <string_view>

#include "ops/log.h"

namespace zk2etcd::ops {

class FailureLog {
 public:
  using TimePoint = std::chrono::steady_clock::time_point;
  struct Line {
    LogLevel level = LogLevel::kWarn;
    std::string message;
    std::string error;  // empty on the "applied again" line
    double failing_s = 0;
    uint64_t failures = 0;

    // Logs the line: `error` (if any), failing_s, and the failures under `count_field`.
    void LogTo(Logger& logger, std::string_view count_field) const;
  };

  // The three lines' messages.
  struct Wording {
    std::string failing;        // the first warning of a run
    std::string still_failing;  // the warnings while it lasts
    std::string again;          // its end
  };

  // `what` names the failing thing in the lines ("etcd writes").
  FailureLog(std::string_view what, std::chrono::seconds period);
  FailureLog(Wording wording, std::chrono::seconds period);

  // A failure at `now`: the line due, if any.
  std::optional<Line> OnFailure(TimePoint now, std::string_view error);
  // A success at `now`: the line due (when the failures were warned about), if any.
  std::optional<Line> OnSuccess(TimePoint now);

 private:
  const Wording wording_;
  const std::chrono::seconds period_;
  std::optional<TimePoint> failing_since_;
  uint64_t failures_ = 0;
  bool warned_ = false;  // a warning was logged in the current run
  std::optional<TimePoint> warned_at_;
};

}  // namespace zk2etcd::ops

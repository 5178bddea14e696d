#include "ops/failure_log.h"

#include <utility>

namespace zk2etcd::ops {

namespace {

double SecondsSince(FailureLog::TimePoint then, FailureLog::TimePoint now) {
  return std::chrono::duration<double>(now - then).count();
}

}  // namespace

void FailureLog::Line::LogTo(Logger& logger, std::string_view count_field) const {
  if (error.empty()) {
    logger.Log(level, message, {{"failing_s", failing_s}, {count_field, failures}});
  } else {
    logger.Log(level, message,
               {{"error", error}, {"failing_s", failing_s}, {count_field, failures}});
  }
}

FailureLog::FailureLog(std::string_view what, std::chrono::seconds period)
    : FailureLog(Wording{std::string(what) + " failing; retrying",
                         std::string(what) + " still failing; retrying",
                         std::string(what) + " applied again"},
                 period) {}

FailureLog::FailureLog(Wording wording, std::chrono::seconds period)
    : wording_(std::move(wording)), period_(period) {}

std::optional<FailureLog::Line> FailureLog::OnFailure(TimePoint now, std::string_view error) {
  ++failures_;
  if (!failing_since_) failing_since_ = now;
  if (warned_at_ && now - *warned_at_ < period_) return std::nullopt;
  Line line{LogLevel::kWarn, warned_ ? wording_.still_failing : wording_.failing,
            std::string(error), SecondsSince(*failing_since_, now), failures_};
  warned_ = true;
  warned_at_ = now;
  return line;
}

std::optional<FailureLog::Line> FailureLog::OnSuccess(TimePoint now) {
  if (!failing_since_) return std::nullopt;
  std::optional<Line> line;
  if (warned_) {
    line = Line{LogLevel::kInfo, wording_.again, "", SecondsSince(*failing_since_, now), failures_};
  }
  failing_since_.reset();
  failures_ = 0;
  warned_ = false;
  return line;
}

}  // namespace zk2etcd::ops

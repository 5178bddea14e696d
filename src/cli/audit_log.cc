#include "cli/audit_log.h"

#include <fcntl.h>
#include <unistd.h>

#include <cerrno>
#include <cstdio>
#include <cstring>

#include "common/strings.h"
#include "ops/log.h"

namespace zk2etcd::cli {

namespace {

std::string_view TypeName(core::SinkWrite::Type type) {
  switch (type) {
    case core::SinkWrite::Type::kPut:
      return "put";
    case core::SinkWrite::Type::kDelete:
      return "delete";
    case core::SinkWrite::Type::kAdopt:
      return "adopt";
  }
  return "unknown";
}

void AppendField(std::string& line, std::string_view name, std::string_view value) {
  line += ",\"";
  line += name;
  line += "\":\"";
  ops::AppendJsonEscaped(line, value);
  line += '"';
}

}  // namespace

std::string_view WriteResultLabel(const sync::WriteResult& result) {
  if (result.ok()) return core::WriteOutcomeName(*result);
  return result.error().code == sync::WriteError::Code::kNotLeader ? "not_leader" : "failed";
}

Result<std::unique_ptr<AuditLog>, std::string> AuditLog::Open(const std::string& path,
                                                              const Clock& clock,
                                                              ops::Logger& logger) {
  if (path == "-") {
    return std::unique_ptr<AuditLog>(new AuditLog(STDOUT_FILENO, false, clock, logger));
  }
  const int fd = ::open(path.c_str(), O_WRONLY | O_CREAT | O_APPEND | O_CLOEXEC, 0644);
  if (fd < 0) {
    return Unexpected{"--audit-log " + Quoted(path) + ": cannot open the file (" +
                      std::strerror(errno) + ")"};
  }
  return std::unique_ptr<AuditLog>(new AuditLog(fd, true, clock, logger));
}

AuditLog::AuditLog(int fd, bool owned, const Clock& clock, ops::Logger& logger)
    : fd_(fd), owned_(owned), clock_(clock), logger_(logger), random_(std::random_device{}()) {}

AuditLog::~AuditLog() {
  if (owned_) ::close(fd_);
}

std::string AuditLog::Format(std::chrono::system_clock::time_point time, std::string_view direction,
                             core::SinkWrite::Type type, std::string_view path,
                             std::string_view outcome, int64_t version, std::string_view cause,
                             std::string_view trace_id) {
  std::string line = "{\"ts\":\"" + ops::FormatTimestamp(time) + "\"";
  AppendField(line, "direction", direction);
  AppendField(line, "op", TypeName(type));
  AppendField(line, "path", path);
  AppendField(line, "outcome", outcome);
  line += ",\"version\":" + std::to_string(version);
  AppendField(line, "cause", cause);
  AppendField(line, "trace_id", trace_id);
  line += '}';
  return line;
}

void AuditLog::OnChange(std::string_view direction, const sync::AppliedChange& change) {
  const std::string_view outcome = change.outcome      ? core::WriteOutcomeName(*change.outcome)
                                   : change.not_leader ? std::string_view("not_leader")
                                                       : std::string_view("failed");
  Write(direction, change.type, change.key, outcome, change.version, "change", change.trace_id);
}

void AuditLog::OnRepair(std::string_view direction, const sync::RepairResult& repair) {
  std::string trace_id;
  {
    std::lock_guard lock(mutex_);
    trace_id = NewTraceId();
  }
  Write(direction, repair.type, repair.key, WriteResultLabel(repair.result), repair.version,
        "reconcile", trace_id);
}

std::string AuditLog::NewTraceId() {
  char buffer[17];
  std::snprintf(buffer, sizeof(buffer), "%016llx", static_cast<unsigned long long>(random_()));
  return buffer;
}

void AuditLog::Write(std::string_view direction, core::SinkWrite::Type type, std::string_view path,
                     std::string_view outcome, int64_t version, std::string_view cause,
                     std::string_view trace_id) {
  std::string line =
      Format(clock_.WallNow(), direction, type, path, outcome, version, cause, trace_id) + "\n";
  std::lock_guard lock(mutex_);
  size_t written = 0;
  while (written < line.size()) {
    const ssize_t n = ::write(fd_, line.data() + written, line.size() - written);
    if (n < 0 && errno == EINTR) continue;
    if (n <= 0) {
      const std::string error = std::strerror(errno);
      if (!warned_) {
        warned_ = true;
        logger_.Error("audit log write failed; later failures are not logged",
                      {{"error", error}, {"path", path}});
      }
      return;
    }
    written += static_cast<size_t>(n);
  }
}

}  // namespace zk2etcd::cli

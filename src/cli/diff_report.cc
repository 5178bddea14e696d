#include "cli/diff_report.h"

#include <unistd.h>

#include <algorithm>
#include <cstdio>

#include "ops/log.h"

namespace zk2etcd::cli {

namespace {

using sync::Difference;

constexpr Difference::Kind kReportedKinds[] = {
    Difference::Kind::kMissing, Difference::Kind::kExtra, Difference::Kind::kChanged,
    Difference::Kind::kConflict, Difference::Kind::kForeign};

std::string JsonString(std::string_view text) {
  std::string out = "\"";
  ops::AppendJsonEscaped(out, text);
  return out + "\"";
}

}  // namespace

size_t RemainingDifferences(const sync::ReconcileReport& report, bool fixed) {
  // A conflict is never repaired (the policy left another writer's value alone), so it remains.
  if (fixed)
    return report.failed + report.deferred_deletes + report.Count(Difference::Kind::kConflict);
  size_t remaining = 0;
  for (const auto& difference : report.differences) {
    if (difference.kind == Difference::Kind::kUnclaimed ||
        difference.kind == Difference::Kind::kOrphanMeta ||
        difference.kind == Difference::Kind::kForeign) {
      continue;
    }
    ++remaining;
  }
  return remaining;
}

void PrintDiffText(const sync::ReconcileReport& report, bool fixed, const DiffReportNames& names,
                   std::ostream& out) {
  const size_t width = std::max(names.source_label.size(), names.sink_label.size()) + 2;
  auto label = [width](std::string_view name) {
    std::string text = std::string(name) + ":";
    return text + std::string(width - text.size(), ' ');
  };
  out << label(names.source_label) << report.source_entries << "\n"
      << label(names.sink_label) << report.sink_entries << "\n"
      << label("in sync") << report.in_sync << "\n";
  for (Difference::Kind kind : kReportedKinds) {
    out << label(sync::DifferenceKindName(kind)) << report.Count(kind) << "\n";
  }
  if (fixed) {
    out << label("fixed") << "put=" << report.fixed_puts << " delete=" << report.fixed_deletes;
    if (report.adopted > 0) out << " adopted=" << report.adopted;
    if (names.deferred_deletes && report.deferred_deletes > 0) {
      out << " deferred_deletes=" << report.deferred_deletes;
    }
    if (report.failed > 0) out << " failed=" << report.failed;
    out << "\n";
  } else {
    out << label("would adopt") << "matching=" << report.WouldAdopt(sync::AdoptPolicy::kMatching)
        << " all=" << report.WouldAdopt(sync::AdoptPolicy::kAll) << "\n";
  }
  for (Difference::Kind kind : kReportedKinds) {
    bool header = false;
    for (const sync::ConfirmedDifference& difference : report.differences) {
      if (difference.kind != kind) continue;
      if (!header) {
        out << "\n" << sync::DifferenceKindName(kind) << " " << names.entries << ":\n";
        header = true;
      }
      out << "  " << difference.key << "\n";
    }
  }
}

void PrintDiffJson(const sync::ReconcileReport& report, bool fixed, bool in_sync,
                   const DiffReportNames& names, std::ostream& out) {
  out << "{\"" << names.source_field << "\":" << report.source_entries << ",\"" << names.sink_field
      << "\":" << report.sink_entries << ",\"in_sync\":" << report.in_sync << ",\""
      << names.revision_field << "\":" << report.sink_point;
  for (Difference::Kind kind : kReportedKinds) {
    out << ",\"" << sync::DifferenceKindName(kind) << "\":[";
    bool first = true;
    for (const sync::ConfirmedDifference& difference : report.differences) {
      if (difference.kind != kind) continue;
      out << (first ? "" : ",") << JsonString(difference.key);
      first = false;
    }
    out << "]";
  }
  if (fixed) {
    out << ",\"fixed\":{\"put\":" << report.fixed_puts << ",\"delete\":" << report.fixed_deletes
        << ",\"adopted\":" << report.adopted;
    if (names.deferred_deletes) out << ",\"deferred_deletes\":" << report.deferred_deletes;
    out << ",\"failed\":" << report.failed << "}";
  } else {
    out << ",\"would_adopt\":{\"matching\":" << report.WouldAdopt(sync::AdoptPolicy::kMatching)
        << ",\"all\":" << report.WouldAdopt(sync::AdoptPolicy::kAll) << "}";
  }
  out << ",\"consistent\":" << (in_sync ? "true" : "false") << "}\n";
}

DiffProgress::DiffProgress(std::string_view verb, std::string_view noun, std::string_view unit)
    : enabled_(isatty(STDERR_FILENO) != 0),
      verb_(verb),
      noun_(noun),
      unit_(unit),
      started_(std::chrono::steady_clock::now()) {}

std::function<void(size_t)> DiffProgress::Callback() const {
  if (!enabled_) return {};
  return [this](size_t entries) {
    const double seconds =
        std::chrono::duration<double>(std::chrono::steady_clock::now() - started_).count();
    std::fprintf(stderr, "\r%s %zu %s (%.0f %s/s)", verb_.c_str(), entries, noun_.c_str(),
                 seconds > 0 ? static_cast<double>(entries) / seconds : 0.0, unit_.c_str());
    std::fflush(stderr);
  };
}

void DiffProgress::Clear() const {
  if (enabled_) std::fputs("\r\033[K", stderr);
}

}  // namespace zk2etcd::cli

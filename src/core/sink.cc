#include "core/sink.h"

namespace zk2etcd::core {

std::string_view WriteOutcomeName(WriteOutcome outcome) {
  switch (outcome) {
    case WriteOutcome::kApplied:
      return "applied";
    case WriteOutcome::kStale:
      return "stale";
    case WriteOutcome::kForeign:
      return "foreign";
    case WriteOutcome::kAlreadyAbsent:
      return "already_absent";
  }
  return "unknown";
}

}  // namespace zk2etcd::core

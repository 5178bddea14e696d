// OwnershipStore: an external record of which etcd keys zk2etcd (or the Go zk2etcd before it)
// wrote, for the keys that carry no meta record in etcd.
//
// zk2etcd's own proof of ownership is the meta record it writes in the same etcd transaction as
// each key (see sync/fenced_writer.h); that needs no store. With --redis-server, the Go tool's
// Redis layout is kept as well: one Redis string per etcd key, named by the key, holding the
// value. Keys recorded there by the Go tool therefore count as owned, and a deployment can switch
// from the Go tool in place. When the store cannot be reached, callers must not delete anything
// (the error says so); they retry later.
//
// Implementations are thread-safe.
#pragma once

#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include "common/result.h"

namespace zk2etcd::ownership {

enum class OwnershipErrorCode { kUnavailable, kAuthFailed, kInternal };

struct OwnershipError {
  OwnershipErrorCode code = OwnershipErrorCode::kInternal;
  std::string message;
};

// "unavailable", "auth_failed", "internal": fixed labels for metrics.
std::string_view OwnershipErrorLabel(OwnershipErrorCode code);

template <typename T>
using OwnershipResult = Result<T, OwnershipError>;

class OwnershipStore {
 public:
  virtual ~OwnershipStore() = default;

  // For each key, whether the store records it as written by zk2etcd; same order as `keys`.
  virtual OwnershipResult<std::vector<bool>> Lookup(const std::vector<std::string>& keys) = 0;
  // Records keys as written, with their values (the Go tool's layout).
  virtual OwnershipResult<void> Record(
      const std::vector<std::pair<std::string, std::string>>& key_values) = 0;
  // Forgets keys (after they were deleted from etcd).
  virtual OwnershipResult<void> Forget(const std::vector<std::string>& keys) = 0;
  // Whether the store answers now (a cheap round trip).
  virtual OwnershipResult<void> Ping() = 0;
};

}  // namespace zk2etcd::ownership

#include "sync/fenced_txn.h"

#include <cstdio>

namespace zk2etcd::sync {

namespace {

using etcd::Compare;
using etcd::CompareOp;
using etcd::Op;
using etcd::OpResponse;
using etcd::RangeRequest;
using etcd::TxnRequest;

// Reads that tell a refused write's reason: the meta record, and whether the key exists.
// (Built with push_back rather than initializer lists, which would copy every string again.)
std::vector<Op> Probes(const FencedWrite& write) {
  RangeRequest meta;
  meta.key = write.meta_key;
  RangeRequest key;
  key.key = write.key;
  key.count_only = true;
  std::vector<Op> ops;
  ops.reserve(2);
  ops.push_back(Op::Range(std::move(meta)));
  ops.push_back(Op::Range(std::move(key)));
  return ops;
}

std::vector<Op> ApplyOps(const FencedWrite& write) {
  std::vector<Op> ops;
  ops.reserve(2);
  if (write.type == FencedWrite::Type::kPut) {
    ops.push_back(Op::Put(write.key, write.value));
    ops.push_back(Op::Put(write.meta_key, EncodeZxid(write.zxid)));
  } else {
    ops.push_back(Op::Delete(write.key));
    ops.push_back(Op::Delete(write.meta_key));
  }
  return ops;
}

// The reason a write was refused, from the two probe responses.
std::optional<WriteOutcome> FromProbes(const std::vector<OpResponse>& probes,
                                       const FencedWrite& write) {
  if (probes.size() != 2) return std::nullopt;
  const bool has_meta = !probes[0].kvs.empty();
  const bool has_key = probes[1].count > 0;
  if (has_meta) return WriteOutcome::kStale;
  if (has_key || write.type == FencedWrite::Type::kAdopt) return WriteOutcome::kForeign;
  // Put: a fresh key is always created, so no probe answer reaches here; delete: nothing to do.
  return write.type == FencedWrite::Type::kDelete ? WriteOutcome::kAlreadyAbsent
                                                  : WriteOutcome::kStale;
}

}  // namespace

std::string EncodeZxid(int64_t zxid) {
  char buffer[17];
  std::snprintf(buffer, sizeof(buffer), "%016llx", static_cast<unsigned long long>(zxid));
  return buffer;
}

std::optional<int64_t> DecodeZxid(std::string_view value) {
  if (value.size() != 16) return std::nullopt;
  uint64_t zxid = 0;
  for (const char c : value) {
    int digit;
    if (c >= '0' && c <= '9') {
      digit = c - '0';
    } else if (c >= 'a' && c <= 'f') {
      digit = c - 'a' + 10;
    } else {
      return std::nullopt;
    }
    zxid = zxid * 16 + static_cast<uint64_t>(digit);
  }
  if (zxid > static_cast<uint64_t>(INT64_MAX)) return std::nullopt;
  return static_cast<int64_t>(zxid);
}

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

etcd::Op FencedOp(const FencedWrite& write) {
  TxnRequest txn;
  if (write.type == FencedWrite::Type::kAdopt) {
    txn.compares = {
        Compare::Version(write.meta_key, CompareOp::kEqual, 0),
        Compare::ModRevision(write.key, CompareOp::kEqual, write.claim_mod_revision.value_or(0))};
    txn.success.push_back(Op::Put(write.meta_key, EncodeZxid(write.zxid)));
    txn.failure = Probes(write);
    return Op::Txn(std::move(txn));
  }
  if (write.claim_mod_revision) {
    // Owned according to the external store: apply only to the version that was vouched for,
    // and only while nobody has given it a meta record meanwhile.
    txn.compares = {Compare::Version(write.meta_key, CompareOp::kEqual, 0),
                    Compare::ModRevision(write.key, CompareOp::kEqual, *write.claim_mod_revision)};
    txn.success = ApplyOps(write);
    txn.failure = Probes(write);
    return Op::Txn(std::move(txn));
  }
  if (write.type == FencedWrite::Type::kPut) {
    // Stored mzxid <= Z, i.e. < Z + 1.
    txn.compares = {Compare::Value(write.meta_key, CompareOp::kLess, EncodeZxid(write.zxid + 1))};
    txn.success = ApplyOps(write);
    TxnRequest fresh;
    fresh.compares = {Compare::Version(write.meta_key, CompareOp::kEqual, 0),
                      Compare::Version(write.key, CompareOp::kEqual, 0)};
    fresh.success = ApplyOps(write);
    fresh.failure = Probes(write);
    txn.failure = {Op::Txn(std::move(fresh))};
    return Op::Txn(std::move(txn));
  }
  txn.compares = {Compare::Value(write.meta_key, CompareOp::kLess, EncodeZxid(write.zxid))};
  txn.success = ApplyOps(write);
  txn.failure = Probes(write);
  return Op::Txn(std::move(txn));
}

int MaxKeysPerTxn(int max_txn_ops) {
  // Outer: n nested ops. Per key: at most 2 ops per list, limit max - n. Its nested "fresh"
  // transaction: at most 2 ops per list, limit max - n - 2. So n <= max - 4.
  return max_txn_ops - 4;
}

etcd::TxnRequest BuildFencedTxn(const std::vector<FencedWrite>& writes,
                                const std::optional<etcd::LeaderKey>& leader) {
  TxnRequest txn;
  if (leader) {
    txn.compares.push_back(
        Compare::CreateRevision(leader->key, CompareOp::kEqual, leader->revision));
  }
  txn.success.reserve(writes.size());
  for (const FencedWrite& write : writes) txn.success.push_back(FencedOp(write));
  return txn;
}

bool FlatEligible(const FencedWrite& write) {
  if (!write.observed || write.claim_mod_revision) return false;
  const FencedWrite::Observed& observed = *write.observed;
  const bool has_meta = observed.meta_mod_revision != 0;
  if (write.type == FencedWrite::Type::kPut) {
    return has_meta ? observed.meta_zxid <= write.zxid : observed.key_mod_revision == 0;
  }
  return has_meta && observed.meta_zxid < write.zxid;
}

int FlatCompareCount(const FencedWrite& write) {
  return write.observed && write.observed->meta_mod_revision != 0 ? 1 : 2;
}

etcd::TxnRequest BuildFlatTxn(const std::vector<FencedWrite>& writes,
                              const std::optional<etcd::LeaderKey>& leader) {
  TxnRequest txn;
  txn.compares.reserve(2 * writes.size() + 1);
  txn.success.reserve(2 * writes.size());
  if (leader) {
    txn.compares.push_back(
        Compare::CreateRevision(leader->key, CompareOp::kEqual, leader->revision));
  }
  for (const FencedWrite& write : writes) {
    const FencedWrite::Observed& observed = *write.observed;
    txn.compares.push_back(
        Compare::ModRevision(write.meta_key, CompareOp::kEqual, observed.meta_mod_revision));
    if (observed.meta_mod_revision == 0) {
      txn.compares.push_back(
          Compare::ModRevision(write.key, CompareOp::kEqual, observed.key_mod_revision));
    }
    for (Op& op : ApplyOps(write)) txn.success.push_back(std::move(op));
  }
  return txn;
}

std::optional<WriteOutcome> OutcomeOf(const etcd::TxnResponse& response, size_t index,
                                      const FencedWrite& write) {
  if (!response.succeeded || index >= response.responses.size()) return std::nullopt;
  const OpResponse& op = response.responses[index];
  if (!op.txn) return std::nullopt;
  const etcd::TxnResponse& per_key = *op.txn;
  if (per_key.succeeded) return WriteOutcome::kApplied;
  if (write.type == FencedWrite::Type::kPut && !write.claim_mod_revision) {
    if (per_key.responses.size() != 1 || !per_key.responses[0].txn) return std::nullopt;
    const etcd::TxnResponse& fresh = *per_key.responses[0].txn;
    if (fresh.succeeded) return WriteOutcome::kApplied;
    return FromProbes(fresh.responses, write);
  }
  return FromProbes(per_key.responses, write);
}

}  // namespace zk2etcd::sync

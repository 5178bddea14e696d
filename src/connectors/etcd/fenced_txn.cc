#include "connectors/etcd/fenced_txn.h"

#include <cstdio>

namespace zk2etcd::connectors {

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
  switch (write.type) {
    case FencedWrite::Type::kPut:
      ops.push_back(Op::Put(write.key, write.value, write.lease));
      ops.push_back(Op::Put(write.meta_key, EncodeZxid(write.zxid), write.lease));
      break;
    case FencedWrite::Type::kDelete:
      ops.push_back(Op::Delete(write.key));
      ops.push_back(Op::Delete(write.meta_key));
      break;
    case FencedWrite::Type::kAdopt:
      ops.push_back(Op::Put(write.meta_key, EncodeZxid(write.zxid), write.lease));
      break;
  }
  return ops;
}

// Whether the form of a put matters: a put without a claim.
bool HasPutForm(const FencedWrite& write) {
  return write.type == FencedWrite::Type::kPut && !write.claim_mod_revision;
}

// The reason a write was refused, from the two probe responses, sent in `form`.
std::optional<FencedReply> FromProbes(const std::vector<OpResponse>& probes,
                                      const FencedWrite& write, PutForm form) {
  if (probes.size() != 2) return std::nullopt;
  const bool has_meta = !probes[0].kvs.empty();
  const bool has_key = probes[1].count > 0;
  FencedReply reply;
  if (write.type == FencedWrite::Type::kAdopt) {
    // A meta record appeared (someone wrote the key through the fence), or the key is not the
    // version that was observed: either way not ours to adopt now.
    reply.outcome = has_meta ? WriteOutcome::kStale : WriteOutcome::kForeign;
    return reply;
  }
  if (HasPutForm(write) && form == PutForm::kFresh && has_meta) {
    // A meta record appeared since the kZxid attempt: its zxid decides.
    reply.resend_as = PutForm::kZxid;
    return reply;
  }
  if (has_meta) {
    reply.outcome = WriteOutcome::kStale;
  } else if (has_key) {
    reply.outcome = WriteOutcome::kForeign;
  } else if (write.type == FencedWrite::Type::kDelete) {
    reply.outcome = WriteOutcome::kAlreadyAbsent;
  } else if (HasPutForm(write) && form != PutForm::kNested) {
    // Neither exists: a new key, which the fresh compares create.
    reply.resend_as = PutForm::kFresh;
  } else {
    // A claimed put whose key vanished; a nested put never gets here (it creates a fresh key).
    reply.outcome = WriteOutcome::kStale;
  }
  return reply;
}

// Upper bounds of protobuf encoding overheads (tag, length varint of up to 5 bytes, revisions).
constexpr size_t kStringFieldBytes = 8;           // one key or value field: its bytes + this
constexpr size_t kOpBytes = 2 * 6 + 12;           // RequestOp + request_* wrappers, flags, lease
constexpr size_t kCompareBytes = 6 + 2 + 2 + 11;  // Compare wrapper, result, target, a revision
constexpr size_t kTxnBytes = 2 * 6;               // RequestOp + request_txn wrappers
constexpr size_t kZxidBytes = 16;
// A put's lease field beyond what kOpBytes allows for: tag and a varint of up to 10 bytes.
constexpr size_t kLeaseBytes = 11;

size_t CompareBytes(size_t key, size_t value = 0) {
  return kCompareBytes + key + kStringFieldBytes + (value > 0 ? value + kStringFieldBytes : 0);
}
size_t OpBytes(size_t key, size_t value = 0) {
  return kOpBytes + key + kStringFieldBytes + value + kStringFieldBytes;
}
// The success branch of a write (ApplyOps).
size_t ApplyBytes(const FencedWrite& write) {
  const size_t lease = write.lease != 0 ? kLeaseBytes : 0;
  switch (write.type) {
    case FencedWrite::Type::kPut:
      return OpBytes(write.key.size(), write.value.size()) +
             OpBytes(write.meta_key.size(), kZxidBytes) + 2 * lease;
    case FencedWrite::Type::kDelete:
      return OpBytes(write.key.size()) + OpBytes(write.meta_key.size());
    case FencedWrite::Type::kAdopt:
      return OpBytes(write.meta_key.size(), kZxidBytes) + lease;
  }
  return 0;
}
size_t ProbeBytes(const FencedWrite& write) {
  return OpBytes(write.meta_key.size()) + OpBytes(write.key.size());
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

PutForm DefaultPutForm(const FencedWrite& write) {
  return write.value.size() > kNestedPutMaxValueBytes ? PutForm::kZxid : PutForm::kNested;
}

etcd::Op FencedOp(const FencedWrite& write) { return FencedOp(write, DefaultPutForm(write)); }

etcd::Op FencedOp(const FencedWrite& write, PutForm form) {
  TxnRequest txn;
  if (write.claim_mod_revision || write.type == FencedWrite::Type::kAdopt) {
    // Owned according to the external store (or, for an adoption, equal to the znode): apply
    // only to the version that was vouched for, and only while nobody has given it a meta
    // record meanwhile. (An adoption without its required claim compares with revision -1,
    // which no key has: it never applies.)
    txn.compares = {
        Compare::Version(write.meta_key, CompareOp::kEqual, 0),
        Compare::ModRevision(write.key, CompareOp::kEqual, write.claim_mod_revision.value_or(-1))};
    txn.success = ApplyOps(write);
    txn.failure = Probes(write);
    return Op::Txn(std::move(txn));
  }
  if (write.type == FencedWrite::Type::kPut) {
    if (form == PutForm::kFresh) {
      txn.compares = {Compare::Version(write.meta_key, CompareOp::kEqual, 0),
                      Compare::Version(write.key, CompareOp::kEqual, 0)};
      txn.success = ApplyOps(write);
      txn.failure = Probes(write);
      return Op::Txn(std::move(txn));
    }
    // Stored mzxid <= Z, i.e. < Z + 1.
    txn.compares = {Compare::Value(write.meta_key, CompareOp::kLess, EncodeZxid(write.zxid + 1))};
    txn.success = ApplyOps(write);
    if (form == PutForm::kZxid) {
      txn.failure = Probes(write);
      return Op::Txn(std::move(txn));
    }
    TxnRequest fresh;
    fresh.compares = {Compare::Version(write.meta_key, CompareOp::kEqual, 0),
                      Compare::Version(write.key, CompareOp::kEqual, 0)};
    fresh.success = ApplyOps(write);
    fresh.failure = Probes(write);
    txn.failure = {Op::Txn(std::move(fresh))};
    return Op::Txn(std::move(txn));
  }
  // kDelete.
  txn.compares = {Compare::Value(write.meta_key, CompareOp::kLess, EncodeZxid(write.zxid))};
  txn.success = ApplyOps(write);
  txn.failure = Probes(write);
  return Op::Txn(std::move(txn));
}

size_t FencedBytes(const FencedWrite& write, PutForm form) {
  const size_t key = write.key.size();
  const size_t meta = write.meta_key.size();
  if (write.claim_mod_revision || write.type == FencedWrite::Type::kAdopt) {
    return kTxnBytes + CompareBytes(meta) + CompareBytes(key) + ApplyBytes(write) +
           ProbeBytes(write);
  }
  if (write.type == FencedWrite::Type::kPut && form == PutForm::kFresh) {
    return kTxnBytes + CompareBytes(meta) + CompareBytes(key) + ApplyBytes(write) +
           ProbeBytes(write);
  }
  const size_t zxid_branch = kTxnBytes + CompareBytes(meta, kZxidBytes) + ApplyBytes(write);
  if (write.type == FencedWrite::Type::kPut && form == PutForm::kNested) {
    return zxid_branch + FencedBytes(write, PutForm::kFresh);
  }
  return zxid_branch + ProbeBytes(write);
}

size_t FlatBytes(const FencedWrite& write) {
  return CompareBytes(write.meta_key.size()) + CompareBytes(write.key.size()) + ApplyBytes(write);
}

int MaxKeysPerTxn(int max_txn_ops) {
  // Outer: n nested ops. Per key: at most 2 ops per list, limit max - n. Its nested "fresh"
  // transaction: at most 2 ops per list, limit max - n - 2. So n <= max - 4.
  return max_txn_ops - 4;
}

etcd::TxnRequest BuildFencedTxn(const std::vector<FencedWrite>& writes,
                                const std::optional<etcd::LeaderKey>& leader) {
  std::vector<PutForm> forms;
  forms.reserve(writes.size());
  for (const FencedWrite& write : writes) forms.push_back(DefaultPutForm(write));
  return BuildFencedTxn(writes, forms, leader);
}

etcd::TxnRequest BuildFencedTxn(const std::vector<FencedWrite>& writes,
                                const std::vector<PutForm>& forms,
                                const std::optional<etcd::LeaderKey>& leader) {
  TxnRequest txn;
  if (leader) {
    txn.compares.push_back(
        Compare::CreateRevision(leader->key, CompareOp::kEqual, leader->revision));
  }
  txn.success.reserve(writes.size());
  for (size_t i = 0; i < writes.size(); ++i) txn.success.push_back(FencedOp(writes[i], forms[i]));
  return txn;
}

bool FlatEligible(const FencedWrite& write) {
  if (!write.observed || write.claim_mod_revision || write.type == FencedWrite::Type::kAdopt) {
    return false;
  }
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

std::optional<FencedReply> ReplyOf(const etcd::TxnResponse& response, size_t index,
                                   const FencedWrite& write, PutForm form) {
  if (!response.succeeded || index >= response.responses.size()) return std::nullopt;
  const OpResponse& op = response.responses[index];
  if (!op.txn) return std::nullopt;
  const etcd::TxnResponse& per_key = *op.txn;
  if (per_key.succeeded) return FencedReply{WriteOutcome::kApplied, std::nullopt};
  if (HasPutForm(write) && form == PutForm::kNested) {
    if (per_key.responses.size() != 1 || !per_key.responses[0].txn) return std::nullopt;
    const etcd::TxnResponse& fresh = *per_key.responses[0].txn;
    if (fresh.succeeded) return FencedReply{WriteOutcome::kApplied, std::nullopt};
    return FromProbes(fresh.responses, write, form);
  }
  return FromProbes(per_key.responses, write, form);
}

std::optional<WriteOutcome> OutcomeOf(const etcd::TxnResponse& response, size_t index,
                                      const FencedWrite& write) {
  const std::optional<FencedReply> reply = ReplyOf(response, index, write, DefaultPutForm(write));
  if (!reply) return std::nullopt;
  return reply->outcome;
}

}  // namespace zk2etcd::connectors

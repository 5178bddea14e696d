// Fenced writes: how one znode change becomes an etcd transaction that cannot go backwards.
//
// Every key zk2etcd writes has a meta record (KeyLayout::MetaKeyFor) holding the znode's mzxid as
// 16 lower-case hex digits, so that etcd's byte-wise value comparison orders it like the number.
// The meta record is written and deleted in the same transaction as the key, so ownership and
// data never disagree.
//
//   put(key, value, mzxid Z)      applies if the meta record holds a zxid <= Z, or if neither the
//                                 key nor its meta record exists (a new key);
//   delete(key, absence zxid A)   applies if the meta record holds a zxid < A (the node we wrote
//                                 is older than the observation that it is gone).
//
// A key without a meta record is foreign and never changed, unless the caller proves ownership
// from the external store (Redis) and passes the key's mod_revision as observed then (`claim`):
// the write then applies only if the key is still exactly as observed.
//
// Per key this is one nested transaction, so one etcd transaction carries a whole batch
// (up to MaxKeysPerTxn keys), optionally guarded by a leadership compare.
//
// A full sync knows more: it read the key and its meta record at one revision before deciding
// on the write. When that observed state lets the write apply, the write can go in a flat
// transaction that compares the two mod_revisions with what was observed (unchanged since the
// read, the zxid rule holds exactly as it did then) and applies the whole batch or none of it.
// etcd spends about 30% less CPU per key on the flat form (bench/etcd/etcd_txn_benchmark:
// create-flat against create-nested). A flat batch that fails (something changed, or the
// leadership was lost) carries no per-key answer: its writes must be sent again in the nested
// form, which decides key by key. Pure functions; thread-safe.
#pragma once

#include <cstdint>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "etcd/etcd_client.h"

namespace zk2etcd::sync {

// 16 lower-case hex digits: sorts byte-wise like the number. REQUIRES: zxid >= 0.
std::string EncodeZxid(int64_t zxid);
// The zxid of a meta record's value, or nullopt if it is not one.
std::optional<int64_t> DecodeZxid(std::string_view value);

struct FencedWrite {
  // kAdopt: the key exists without a meta record and equals the znode; only the meta record is
  // written (zxid: the znode's mzxid), and only while the key is exactly at
  // claim_mod_revision and still has no meta record. REQUIRES claim_mod_revision.
  enum class Type { kPut, kDelete, kAdopt };
  Type type = Type::kPut;
  std::string key;       // the data key
  std::string meta_key;  // its meta record
  std::string value;     // kPut
  // kPut: the znode's mzxid. kDelete: the zxid at which the znode was observed absent.
  int64_t zxid = 0;
  // The key's mod_revision when an external ownership store vouched for it while it had no meta
  // record; the write then applies only to that exact version of the key.
  std::optional<int64_t> claim_mod_revision;

  // What the caller read in etcd before choosing this write (mod_revision 0: absent).
  struct Observed {
    int64_t key_mod_revision = 0;
    int64_t meta_mod_revision = 0;
    int64_t meta_zxid = 0;  // when the meta record exists; INT64_MAX if it holds no zxid
  };
  std::optional<Observed> observed;
};

enum class WriteOutcome {
  kApplied,        // the key (and meta record) now reflect the write
  kStale,          // etcd already holds a newer (put) or the same-or-newer (delete) version
  kForeign,        // the key exists without a meta record: not ours, left alone
  kAlreadyAbsent,  // delete: neither the key nor its meta record exists
};
std::string_view WriteOutcomeName(WriteOutcome outcome);

// The nested transaction of one write (an Op of type kTxn for an outer transaction).
etcd::Op FencedOp(const FencedWrite& write);

// How many fenced writes fit in one transaction under etcd's operation limit, given that each
// nests two levels deep (etcd lowers the limit for nested transactions by the size of the
// enclosing one).
int MaxKeysPerTxn(int max_txn_ops = etcd::kDefaultMaxTxnOps);

// One transaction for a batch of writes with distinct keys. With `leader`, the batch applies only
// while that leadership is held (compare on the election key's create revision).
// REQUIRES: writes.size() <= MaxKeysPerTxn(); keys distinct.
etcd::TxnRequest BuildFencedTxn(const std::vector<FencedWrite>& writes,
                                const std::optional<etcd::LeaderKey>& leader);

// Whether `write` may go in a flat transaction: it has an observed state, no claim, and the
// zxid rule applies it to that state (a put over an older or absent meta record with the key
// absent too; a delete of a meta record older than the absence).
bool FlatEligible(const FencedWrite& write);
// The compares a flat transaction spends on `write`: the meta record's mod_revision, and the
// key's when the meta record was absent. REQUIRES: FlatEligible(write).
int FlatCompareCount(const FencedWrite& write);
// One flat transaction: every write applies if every observed mod_revision still holds (and
// the leadership, with `leader`); otherwise nothing applies and `succeeded` is false.
// REQUIRES: every write FlatEligible; keys distinct; at most max_txn_ops / 2 writes and
// (leader ? 1 : 0) + sum of FlatCompareCount <= max_txn_ops.
etcd::TxnRequest BuildFlatTxn(const std::vector<FencedWrite>& writes,
                              const std::optional<etcd::LeaderKey>& leader);

// Reads the outcome of writes[i] from the response of BuildFencedTxn's transaction.
// Returns nullopt when the response does not have the expected shape.
std::optional<WriteOutcome> OutcomeOf(const etcd::TxnResponse& response, size_t index,
                                      const FencedWrite& write);

}  // namespace zk2etcd::sync

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
// etcd fails a Value compare on a missing key, so "stored mzxid <= Z, or neither exists" needs
// two branches, and each branch carries the put. A put goes in one of three forms (PutForm):
// kNested tries the zxid compare, then the "fresh" compares (version(meta) == 0 and version(key)
// == 0), in one round trip but with the value twice; kZxid has the zxid compare only and kFresh
// the fresh compares only, each with the value once. Small values go nested, so a create takes
// one round trip; a value over kNestedPutMaxValueBytes goes kZxid first, and when its probes show
// that neither the key nor its meta record exists, the reply asks for the write again as kFresh
// (and a kFresh reply that finds a meta record asks for kZxid again). The semantics are the same:
// each form applies the put exactly when the zxid rule allows it at that moment. So every value
// ZooKeeper accepts (jute.maxbuffer, 1 MiB by default) fits etcd's --max-request-bytes (1.5 MiB by
// default): a form carries the value once plus a small constant (FencedBytes).
//
// Adoption (Type::kAdopt): a key that exists without a meta record and equals the znode becomes
// ours by writing only its meta record, in a transaction that compares version(meta) == 0 and
// the key's mod_revision with the one observed (claim_mod_revision), so that any concurrent write
// wins: kApplied (the meta record is written), kStale (a meta record exists now), kForeign (the
// key changed or was deleted meanwhile). Nested form only.
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

#include <cstddef>
#include <cstdint>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "core/sink.h"
#include "etcd/etcd_client.h"

namespace zk2etcd::connectors {

// 16 lower-case hex digits: sorts byte-wise like the number. REQUIRES: zxid >= 0.
std::string EncodeZxid(int64_t zxid);
// The zxid of a meta record's value, or nullopt if it is not one.
std::optional<int64_t> DecodeZxid(std::string_view value);

struct FencedWrite {
  // kAdopt: write only the meta record (EncodeZxid(zxid), zxid = the znode's mzxid) of a key that
  // exists without one. REQUIRES claim_mod_revision (the key's mod_revision as observed).
  enum class Type { kPut, kDelete, kAdopt };
  Type type = Type::kPut;
  std::string key;       // the data key
  std::string meta_key;  // its meta record
  std::string value;     // kPut
  // kPut, kAdopt: the znode's mzxid. kDelete: the zxid at which the znode was observed absent.
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
  // The lease every put of the write binds its key (kPut) and its meta record (kPut, kAdopt) to,
  // in every form; 0: none (a put then detaches any lease the key had, as etcd's put does).
  int64_t lease = 0;
};

// A write's outcome: the sink's (core/sink.h), of which this is the etcd encoding.
using core::WriteOutcome;
using core::WriteOutcomeName;

// How a put without a claim goes to etcd (see the top of this file). Ignored for other writes.
enum class PutForm {
  kNested,  // zxid compare, else a nested "fresh" transaction: one round trip, the value twice
  kZxid,    // zxid compare only; a reply may ask for kFresh
  kFresh,   // version(meta) == 0 and version(key) == 0 only; a reply may ask for kZxid
};
// Puts with values larger than this start in the kZxid form.
inline constexpr size_t kNestedPutMaxValueBytes = 64 * 1024;
// kNested for a value of at most kNestedPutMaxValueBytes, kZxid above.
PutForm DefaultPutForm(const FencedWrite& write);

// The nested transaction of one write (an Op of type kTxn for an outer transaction), in `form`
// (a put's DefaultPutForm when not given).
etcd::Op FencedOp(const FencedWrite& write);
etcd::Op FencedOp(const FencedWrite& write, PutForm form);

// Upper bounds of the bytes `write` adds to the protobuf encoding of a transaction, in the nested
// form FencedOp(write, form) builds, and in a flat transaction (BuildFlatTxn). Each is the sizes
// of the value, keys and meta keys as many times as the form carries them, plus a constant for
// field tags, lengths and revisions (under 1 KiB), and the lease of each put when it has one; the
// value counts twice only in kNested.
size_t FencedBytes(const FencedWrite& write, PutForm form);
size_t FlatBytes(const FencedWrite& write);

// How many fenced writes fit in one transaction under etcd's operation limit, given that each
// nests two levels deep (etcd lowers the limit for nested transactions by the size of the
// enclosing one).
int MaxKeysPerTxn(int max_txn_ops = etcd::kDefaultMaxTxnOps);

// One transaction for a batch of writes with distinct keys. With `leader`, the batch applies only
// while that leadership is held (compare on the election key's create revision). `forms`: the
// form of each write (DefaultPutForm when not given).
// REQUIRES: writes.size() <= MaxKeysPerTxn(); keys distinct; forms.size() == writes.size().
etcd::TxnRequest BuildFencedTxn(const std::vector<FencedWrite>& writes,
                                const std::optional<etcd::LeaderKey>& leader);
etcd::TxnRequest BuildFencedTxn(const std::vector<FencedWrite>& writes,
                                const std::vector<PutForm>& forms,
                                const std::optional<etcd::LeaderKey>& leader);

// Whether `write` may go in a flat transaction: it has an observed state, no claim, and the
// zxid rule applies it to that state (a put over an older or absent meta record with the key
// absent too; a delete of a meta record older than the absence). Never an adoption.
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

// What the response of BuildFencedTxn's transaction says about writes[i], sent in `form`: its
// outcome, or (kZxid and kFresh puts only) that it must be sent again in another form.
struct FencedReply {
  std::optional<WriteOutcome> outcome;  // set unless resend_as is
  std::optional<PutForm> resend_as;
};
// Returns nullopt when the response does not have the expected shape.
std::optional<FencedReply> ReplyOf(const etcd::TxnResponse& response, size_t index,
                                   const FencedWrite& write, PutForm form);
// The outcome of writes[i] sent in its DefaultPutForm. Returns nullopt when the response does
// not have the expected shape, or asks for the write again in another form.
std::optional<WriteOutcome> OutcomeOf(const etcd::TxnResponse& response, size_t index,
                                      const FencedWrite& write);

}  // namespace zk2etcd::connectors

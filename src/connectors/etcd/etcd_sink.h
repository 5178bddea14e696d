// EtcdSink: etcd as a job's sink (core::Sink). Each source key lands at KeyLayout::KeyFor(key)
// and its ownership record is the key's meta record (KeyLayout::MetaKeyFor), holding the source
// version as EncodeZxid; writes are the fenced transactions of fenced_txn.h.
//
//   - List: the data keys and the meta records of a prefix, each with a RangeCursor, at one
//     revision, joined in key order;
//   - Read: read-only transactions of a key and its meta record (64 keys each), sent at once;
//   - writes: a write goes nested (one nested transaction per write, 124 per transaction) in one
//     of three put forms, or, when it carries an observation that lets it apply, flat (up to 64
//     writes that apply together or not at all). A failed flat batch asks for every write again
//     in its nested form; a kZxid or kFresh put whose probes call for the other form asks for it;
//   - checkpoints (core::CheckpointedSink, with EtcdSinkOptions::checkpoint_key): an atomic batch
//     is one transaction of the writes, each in the nested form, and a put of the checkpoint key
//     (EncodeZxid of the point), fenced as ApplyAsync's batches;
//   - leases (EtcdSinkOptions::leases): a put whose SinkWrite::lease is set binds its key and its
//     meta record to the mapped destination lease (LeaseMapper, lease_mirror.h), looked up on the
//     caller's thread of ApplyAsync / ApplyAtomicAsync.
//
// Thread-safety: every method is thread-safe. ApplyAsync's callback runs on the etcd client's
// callback thread. With leases, ApplyAsync and ApplyAtomicAsync may block on a lease lookup
// (only for a source lease not mapped yet): never call them on an etcd client's callback thread.
// REQUIRES: the client, the layout and the lease mapper outlive the sink, and the sink outlives
// every ApplyAsync callback it still owes (the client's destruction completes them).
#pragma once

#include <atomic>
#include <cstddef>
#include <cstdint>
#include <functional>
#include <memory>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "connectors/etcd/fenced_txn.h"
#include "connectors/etcd/key_layout.h"
#include "connectors/etcd/lease_mirror.h"
#include "core/sink.h"
#include "etcd/etcd_client.h"

namespace zk2etcd::connectors {

// The forms an etcd write goes in (core::Sink's variants). The nested family has PutForm's
// numbers; kFlat is a write of a flat transaction (BuildFlatTxn).
enum class EtcdVariant : int { kNested = 0, kZxid = 1, kFresh = 2, kFlat = 3 };
// The batch classes: nested writes, and flat ones.
enum class EtcdBatchClass : int { kNested = 0, kFlat = 1 };

struct EtcdSinkOptions {
  // The most bytes of one transaction (etcd's --max-request-bytes is 1.5 MiB by default): a
  // batch of independent writes near etcd, and an atomic batch (AtomicLimits) wherever etcd is.
  size_t max_txn_bytes = 1 << 20;
  // Where a batch of independent writes (Limits) is cut when etcd is far (EtcdClient::Far); a
  // larger write goes alone. etcd's gRPC server opens each stream and each connection with an
  // HTTP/2 receive window of 64 KiB, which grows only a round trip later: a larger transaction
  // waits for that round trip. Through a 30 ms round trip, 2,251 Dubbo-shaped repairs (3 MB, 84
  // KB per transaction of 64 writes) took repair_s 0.10 s on 32 connections in 1 MiB batches and
  // 0.08 s in 56 KiB ones; on loopback the smaller batches cost 10 ms more (docs/BENCHMARKS.md,
  // "Transactions that fit etcd's first window").
  size_t far_batch_bytes = 56 << 10;
  int max_keys_per_txn = MaxKeysPerTxn();
  // Where checkpoints are recorded (MirrorKeys::checkpoint_key); empty: none (ReadCheckpoint and
  // ApplyAtomicAsync fail with kRefused).
  std::string checkpoint_key{};
  // Copies source leases (not owned; nullptr: SinkWrite::lease is ignored and keys are written
  // without a lease).
  LeaseMapper* leases = nullptr;
};

// The sink's error for an etcd error: kUnavailable for what a repeat may fix (unreachable, a
// deadline, too many requests, an auth token to renew, TLS, internal), kCompacted, kCancelled,
// kRefused otherwise. The message is `what` + ": " + the etcd error (the etcd error alone when
// `what` is empty); the label is etcd::ErrorLabel of its code.
core::SinkError SinkErrorOf(const etcd::Error& error, std::string_view what = {});

class EtcdSink final : public core::Sink, public core::CheckpointedSink {
 public:
  EtcdSink(etcd::EtcdClient& etcd, const KeyLayout& layout, EtcdSinkOptions options = {});

  bool ListsByPage() const override { return true; }
  bool Far() const override { return etcd_.Far(); }
  std::unique_ptr<core::SinkCursor> List(const std::string& source_prefix,
                                         const core::ListOptions& options) override;
  core::SinkResult<int64_t> CurrentPoint() override;
  // REQUIRES: not on the etcd client's callback thread.
  core::SinkResult<std::vector<core::SinkEntry>> Read(
      const std::vector<std::string>& keys) override;
  std::string SinkKeyFor(std::string_view key) const override;
  std::string_view Name() const override { return "etcd"; }

  int DefaultVariant(const core::SinkWrite& write) const override;
  int BatchClass(int variant) const override;
  core::BatchLimits Limits(int batch_class) const override;
  core::WriteCost Cost(const core::SinkWrite& write, int variant) const override;
  void ApplyAsync(std::vector<core::SinkWrite> writes, std::vector<int> variants,
                  const std::optional<core::Fence>& fence,
                  std::function<void(core::BatchResult)> done) override;

  // core::CheckpointedSink. ReadCheckpoint: the checkpoint key's value, EncodeZxid of the point
  // (kOther when it holds anything else). AtomicLimits: the nested batch class's, one write less
  // (the checkpoint's put takes its place), up to max_txn_bytes however far etcd is.
  // ApplyAtomicAsync: one transaction; a lost fence answers kNotLeader for the whole batch and
  // nothing (checkpoint included) is written.
  // With leases: a put whose source lease is already gone (kLeaseExpiredLabel) is left out of the
  // transaction and answered with an error that starts with "lease_expired": the source deleted
  // that key at a later revision, which the change stream delivers after this batch. Any other
  // lease lookup failure fails the whole batch with that error (nothing is written).
  core::SinkResult<std::optional<int64_t>> ReadCheckpoint() override;
  core::BatchLimits AtomicLimits() const override;
  // The nested form's (the value twice when small, kNestedPutMaxValueBytes and below).
  core::WriteCost AtomicCost(const core::SinkWrite& write) const override {
    return Cost(write, static_cast<int>(EtcdVariant::kNested));
  }
  void ApplyAtomicAsync(std::vector<core::SinkWrite> writes, int64_t checkpoint,
                        const std::optional<core::Fence>& fence,
                        std::function<void(core::BatchResult)> done) override;

  // The fenced write a sink write becomes (without a lease: ApplyAsync binds it).
  FencedWrite ToFencedWrite(const core::SinkWrite& write) const;
  FencedWrite ToFencedWrite(core::SinkWrite&& write) const;

  // Flat batches that failed and were answered with a resend in the nested form.
  uint64_t flat_fallbacks() const { return flat_fallbacks_.load(); }
  // kZxid and kFresh puts answered with a resend in the other form.
  uint64_t form_resends() const { return form_resends_.load(); }

 private:
  core::BatchResult AnswerOf(const std::vector<FencedWrite>& writes,
                             const std::vector<PutForm>& forms, bool flat,
                             const etcd::EtcdResult<etcd::TxnResponse>& result);
  // The destination lease of a write that needs one (0 when it needs none), or the error of its
  // lookup.
  core::SinkResult<int64_t> LeaseFor(const core::SinkWrite& write) const;
  // A batch's writes as fenced writes bound to their destination leases. A write whose lease
  // lookup failed stays out of `fenced` and is answered with `unsent[i]` (an error, `skipped` for
  // an expired source lease; `unsent` stays empty when no lookup failed), unless
  // `only_expired_alone` and the lookup failed for another reason than an expired source lease,
  // or whenever it failed for a reason a retry can fix (SinkError::Retryable): then the whole
  // batch fails with that error.
  struct LeasedWrites {
    std::vector<FencedWrite> fenced;
    std::vector<size_t> sent;  // the index in the batch of each of `fenced`
    std::vector<core::WriteAnswer> unsent;
  };
  core::SinkResult<LeasedWrites> WithLeases(std::vector<core::SinkWrite>& writes,
                                            bool only_expired_alone) const;
  // Calls `done` with `error` on the etcd client's callback thread (never inline).
  void FailAsync(core::SinkError error, std::function<void(core::BatchResult)> done);

  etcd::EtcdClient& etcd_;
  const KeyLayout& layout_;
  const EtcdSinkOptions options_;
  std::atomic<uint64_t> flat_fallbacks_{0};
  std::atomic<uint64_t> form_resends_{0};
};

}  // namespace zk2etcd::connectors

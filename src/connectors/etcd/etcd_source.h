// EtcdSource: an etcd key prefix as a core::Source, for jobs that read etcd (etcd2etcd).
//
// The scope is every key that starts with `prefix`, byte for byte (core::Scope::ForKeyPrefix:
// "/registry" covers "/registry2", never "/regist"). etcd keeps a history, so the source offers
// the ordered change stream:
//
//   - OpenAfter(listener, point) first checks, with a Range at revision `point`, that the history
//     after `point` is still there (kCompacted when it is not), then watches
//     [prefix, PrefixEnd(prefix)) from point + 1. The watch's events are grouped by revision into
//     core::ChangeSets (one per revision, in revision order: a multi-key transaction or a
//     DeleteRange is one ChangeSet) and handed to listener.OnChangeSet, each exactly once. The
//     client's watch survives lost connections by itself, resuming after the last revision it
//     delivered; the listener hears of it (kDisconnected when the watch is interrupted, once per
//     interruption, and kReconnected when it watches again: nothing was missed). When the watch
//     ends for good the listener gets one SourceEvent and nothing
//     more: kCompacted (the watch fell behind a compaction while reconnecting: reconcile, then
//     OpenAfter the snapshot's point), kFatal (credentials or permissions refused) or kLost
//     (anything else: Close, then open again). Open(listener) is OpenAfter(CurrentPoint()).
//     With change_stream false, Open and OpenAfter only check that etcd answers;
//   - ReadSnapshot: every key of the prefix, paged (page_size keys per Range, each page starting
//     after the previous page's last key), all at the first page's revision: an exact snapshot
//     (Snapshot::exact) whose point is that revision. A compaction of that revision while paging
//     fails with kCompacted;
//   - Reread: read-only transactions of reread_batch single-key Ranges each, up to
//     RereadOptions::window in flight; ReadAsync: one such transaction of one key. An entry's
//     version is its mod_revision, observed_at the transaction's revision.
//
// Errors: etcd unreachable, a deadline, too many requests, TLS or an internal error are
// kUnavailable; a compacted revision kCompacted; refused credentials or permissions kAuthFailed;
// a cancelled call, or Close() during a blocking call, kClosed; anything else kOther. Messages
// start with "etcd" and say what failed (SourceErrorOf).
//
// Threads: the listener is called on a thread of the source (one, in order), never inline in
// Open/OpenAfter: first kConnected, then the ChangeSets. ReadAsync's callback runs on the etcd
// client's callback thread (or, for a read Close() fails, on the source's thread).
//
// Thread-safety: every method is thread-safe. Close() may run while another thread blocks in
// Open, OpenAfter, ReadSnapshot or Reread: those then fail with kClosed (ReadSnapshot between
// two pages, the others at once). The blocking calls must not be made from the listener or a
// ReadAsync callback. REQUIRES: the client outlives the source; it may be shared with others.
#pragma once

#include <cstddef>
#include <cstdint>
#include <functional>
#include <memory>
#include <mutex>
#include <string>
#include <string_view>
#include <vector>

#include "core/source.h"
#include "etcd/etcd_client.h"

namespace zk2etcd::connectors {

struct EtcdSourceOptions {
  // Keys per Range request of a snapshot. etcd 3.4 walks the rest of the prefix's index for
  // every page, so a snapshot of N keys costs the server about N^2 / (2 * page_size) index
  // steps. At 100,000 keys of 120 bytes (etcd 3.4 on loopback, an ASan build of the client,
  // three runs each), etcd spent 1.4 s of CPU with pages of 1,000, 0.85 s with 2,000, 0.4 s
  // with 5,000, 0.25 s with 10,000 and 0.22 s with 20,000, and the snapshot took 2.1-3.7 s,
  // 1.7 s, 0.9-1.7 s, 0.6-1.2 s and 0.7-1.0 s. A page holds page_size values in memory at once
  // (on the server and here): lower it for large values.
  int64_t page_size = 10000;
  // False: Open/OpenAfter start no watch and announce nothing (a snapshot-only source, `diff`).
  bool change_stream = true;
  // Keys per read-only transaction of Reread (at most etcd::kDefaultMaxTxnOps).
  size_t reread_batch = 64;
};

// The source's error for an etcd error (see the header comment for the codes). The message is
// "etcd: " + `what` + ": " + the etcd error.
core::SourceError SourceErrorOf(const etcd::Error& error, std::string_view what);

class EtcdSource final : public core::Source {
 public:
  // `client` (the source cluster) must outlive the source. `prefix`: the etcd key prefix (empty:
  // every key).
  EtcdSource(etcd::EtcdClient& client, std::string prefix, EtcdSourceOptions options = {});
  // Closes.
  ~EtcdSource() override;
  EtcdSource(const EtcdSource&) = delete;
  EtcdSource& operator=(const EtcdSource&) = delete;

  // OpenAfter(listener, CurrentPoint()).
  core::SourceResult<void> Open(core::SourceListener& listener) override;
  // Fails with kCompacted when revision `point` is compacted or lies ahead of the cluster's
  // revision (a restored or different cluster: its history is not this one), kUnavailable when etcd does not answer, kAuthFailed, or kClosed (Close() meanwhile).
  // `point` 0: from now on.
  core::SourceResult<void> OpenAfter(core::SourceListener& listener, int64_t point) override;
  // The cluster's current revision (the header of a one-key, count-only Range of the prefix).
  core::SourceResult<int64_t> CurrentPoint() override;
  void Close() override;

  core::SourceResult<core::Snapshot> ReadSnapshot(const core::SnapshotOptions& options) override;
  core::SourceResult<std::vector<core::EntryState>> Reread(
      const std::vector<std::string>& keys, const core::RereadOptions& options) override;
  void ReadAsync(const std::string& key,
                 std::function<void(core::SourceResult<core::EntryState>)> done) override;

  // connected: open and (with a change stream) the watch has not ended; watches: 1 while the
  // watch runs.
  core::SourceStatus Status() const override;
  std::string_view Name() const override { return "etcd"; }

  const std::string& prefix() const { return prefix_; }

 private:
  class DeliveryThread;
  struct ReadRegistry;

  // On the client's callback thread: hands the result to the delivery thread.
  void OnWatchResult(uint64_t epoch, etcd::EtcdResult<etcd::WatchEvents> result);
  // On the delivery thread: the ChangeSets of `events`, or the event of a watch's end.
  void Deliver(uint64_t epoch, etcd::EtcdResult<etcd::WatchEvents> result);
  void DeliverEvent(uint64_t epoch, core::SourceEvent event);
  // The listener of the current open, or null when `epoch` is not the current one or the
  // stream has ended.
  core::SourceListener* ListenerFor(uint64_t epoch) const;
  uint64_t CurrentEpoch() const;
  // kClosed when Close() came after `epoch`, else the etcd error mapped.
  core::SourceError ErrorOf(const etcd::Error& error, std::string_view what, uint64_t epoch) const;
  core::SourceError ClosedError(std::string_view what) const;

  etcd::EtcdClient& client_;
  const std::string prefix_;
  const EtcdSourceOptions options_;

  mutable std::mutex mutex_;
  std::mutex close_mutex_;                    // held through a whole Close()
  core::SourceListener* listener_ = nullptr;  // from OpenAfter to Close
  std::unique_ptr<etcd::CallHandle> watch_;   // the running watch
  uint64_t epoch_ = 0;                        // Close() calls so far
  bool open_ = false;                         // OpenAfter succeeded and no Close since
  bool stream_ended_ = false;                 // the watch ended with an error
  int64_t next_point_ = 0;                    // the next revision the stream may deliver

  // Pending ReadAsync callbacks, shared with the client's callbacks, which may outlive the
  // source.
  std::shared_ptr<ReadRegistry> reads_;
  std::unique_ptr<DeliveryThread> delivery_;
};

}  // namespace zk2etcd::connectors

// ZooKeeperSource: ZooKeeper as a core::Source, for jobs that read a ZooKeeper scope (zk2etcd,
// zk2zk).
//
// Open() creates a client (one session) through the factory and, before returning, registers one
// persistent recursive watch per scope prefix, so that the change stream runs before any snapshot
// is read. NodeCreated, NodeDeleted and NodeDataChanged events of in-scope paths are announced to
// the listener by path. On a server without persistent watches (ZooKeeper 3.4/3.5) the stream
// works from one-shot watches instead (classic mode, classic_watcher.h): the snapshot's walk and
// every ReadAsync set them, each in the read that sees the node. Session events become
// SourceEvents: kConnected, kDisconnected, kReconnected (persistent watches do not replay what
// changed meanwhile), kFatal (credentials refused), kLost (the session expired or ended: Close,
// then Open a new one). Open() also checks that the session's "/" exists: a connect string's
// chroot that does not exist is kUnsupported (its tree would read as empty).
//
// ReadSnapshot is the multiRead walk (zk_walker.h), Reread the batched second read, ReadAsync one
// getData. Open() asks for every watch at once and sends the walk's first requests right behind
// them (WalkHead), so that the walk that follows the opening starts a round trip further on; any
// change in scope, or a session event, after that send makes the next walk read them again. With
// multiRead, unless in classic mode, Open() also opens more sessions to the same server
// (walk_sessions - 1, when the factory can: ZkClientFactory::NewClientOf), which the walk reads
// with besides the first (WalkOptions::helpers): when the round trip is long it spreads its
// requests over all of them, so that a held TCP segment, which stalls every answer behind it,
// stalls only the requests of one connection, and what a stalled session holds goes again on
// another; everything else reads on the first, whose order with the watch events the engine relies
// on. Errors: connection trouble is kUnavailable, a closed source or a cancelled walk kClosed,
// refused credentials kAuthFailed, anything else kOther; messages are the bare ZooKeeper error text
// (the engine says what it was doing).
//
// `sync` starts the first opening before it dials etcd (OpenAhead), so that the watches and the
// walk's first requests go behind the session's handshake; Open() then completes it.
//
// Thread-safety: every method is thread-safe (OpenAhead: see there). Close() may run while another
// thread blocks in Open, ReadSnapshot or Reread: those then fail at once with kClosed. The blocking
// calls must not be made from the listener or a ReadAsync callback (they run on the client's
// delivery thread).
#pragma once

#include <atomic>
#include <cstddef>
#include <cstdint>
#include <functional>
#include <future>
#include <memory>
#include <mutex>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "common/result.h"
#include "connectors/zookeeper/callback_thread.h"
#include "connectors/zookeeper/classic_watcher.h"
#include "connectors/zookeeper/zk_walker.h"
#include "core/scope.h"
#include "core/source.h"
#include "ops/log.h"
#include "zk/zk_client.h"

namespace zk2etcd::connectors {

enum class WatchMode {
  kAuto,        // persistent recursive watches; classic ones if the server lacks them
  kPersistent,  // persistent recursive watches only (a server without them is an error)
  kClassic,     // one-shot data and child watches on every node (ZooKeeper 3.4/3.5)
};
Result<WatchMode, std::string> ParseWatchMode(std::string_view name);

struct ZooKeeperSourceOptions {
  WatchMode watch_mode = WatchMode::kAuto;
  // The connect string's chroot ("" for none), only to name it when it does not exist.
  std::string chroot;
  // Nodes per multiRead request of ReadSnapshot and Reread (WalkOptions::multi_read_batch;
  // 0 or 1: no multiRead).
  size_t multi_read_batch = 15;
  // Sessions the walk reads with (with multiRead, unless in classic mode): the first, and
  // walk_sessions - 1 more to the same server, opened by Open() and kept until Close() (closed
  // at once if the server turns out to have no persistent watches; zk_walker.h,
  // WalkOptions::helpers). Through 15 ms each way with 0.5% of TCP chunks held
  // 200 ms, a 22,501-node walk took 0.55-0.58 s (medians) with 4, against 0.86-0.93 s when the
  // second of two sessions only took a stalled first one's requests; a first version with 8 took
  // 0.41-0.56 s, for the same full sync (docs/BENCHMARKS.md, "The walk spread over four
  // sessions"). 1: the first alone.
  size_t walk_sessions = 4;
  // False: Open() registers no watch and the source announces no change (a snapshot-only source,
  // for `diff`).
  bool change_stream = true;
  // Which in-scope nodes the source holds (zk_walker.h): a node left out is absent to every read
  // (zk2zk: only ephemeral nodes for the reverse direction; none of the nodes the reverse
  // direction wrote for the forward one). Changes are still announced by path; the read decides.
  NodeFilter include;
  // Which in-scope changes are announced, by path, when the event comes; empty: all. For changes
  // a job knows to be its own echo (zk2zk's reverse direction skips the forward copies it sees
  // created, changed and deleted on the target), so that they cost no read. Called on the
  // client's delivery thread; must be thread-safe and quick.
  // `type` is the event's (kNone in classic mode, where events are not typed).
  std::function<bool(const std::string& path, zk::WatchEventType type)> announce;
};

class ZooKeeperSource final : public core::Source {
 public:
  // `factory`, `scope` and `logger` must outlive the source.
  ZooKeeperSource(zk::ZkClientFactory& factory, const core::Scope& scope, ops::Logger& logger,
                  ZooKeeperSourceOptions options = {});
  // Closes.
  ~ZooKeeperSource() override;
  ZooKeeperSource(const ZooKeeperSource&) = delete;
  ZooKeeperSource& operator=(const ZooKeeperSource&) = delete;

  // Fails with kUnavailable (no client, or a watch could not be registered), kUnsupported
  // (WatchMode::kPersistent on a server without persistent watches), kAuthFailed, or kClosed
  // (Close() was called meanwhile).
  core::SourceResult<void> Open(core::SourceListener& listener) override;
  // Starts the first opening now, before there is a listener to give Open(): the session is
  // asked for (a new one sends the watches and the walk's first requests behind its handshake,
  // asio_zk_client.h), and the next Open() completes this opening instead of starting another,
  // a round trip sooner when the caller had something else to wait for meanwhile (`sync` dials
  // etcd). Open() hands its listener the session's events so far, in order (on the thread that
  // calls Open). Changes before Open() are not announced; the walk after it reads them (and they
  // make it read the prefixes again). If a Close() came, or the session ended (expired,
  // credentials refused), Open() starts afresh, and once more if the opening's watches failed.
  // Does nothing once opened or started; a failure is Open()'s to report. Not concurrently with
  // Open() or another OpenAhead() (call it before the thread that opens starts).
  void OpenAhead();
  void Close() override;
  core::SourceResult<core::Snapshot> ReadSnapshot(const core::SnapshotOptions& options) override;
  core::SourceResult<std::vector<core::EntryState>> Reread(
      const std::vector<std::string>& keys, const core::RereadOptions& options) override;
  // An absent key: exists false, observed_at the zxid at which the absence was seen. In classic
  // mode the read re-arms the node's data watch.
  void ReadAsync(const std::string& key,
                 std::function<void(core::SourceResult<core::EntryState>)> done) override;
  // session_id: the last session Open() opened (kept after Close, until the next Open).
  core::SourceStatus Status() const override;
  std::string_view Name() const override { return "ZooKeeper"; }

 private:
  // Opens the walk's other sessions to the server `client` is connected to, once per opening
  // (nothing if Close() came after `epoch`). CloseHelpers closes them.
  void OpenHelpers(zk::ZkClient& client, uint64_t epoch);
  // An opening whose watches and head are sent: StartOpening sends them, FinishOpening waits for
  // the watches and makes the source open (or closes it and fails).
  struct Opening {
    uint64_t epoch = 0;
    std::shared_ptr<zk::ZkClient> client;
    // "/" of the session: the connect string's chroot, which must exist.
    std::future<zk::ZkResult<zk::ExistsReply>> root;
    std::vector<std::future<zk::ZkResult<zk::Ack>>> watches;
    std::shared_ptr<WalkHead> head;
    uint64_t head_mark = 0;
  };
  // WatchMode::kClassic asked for, with a change stream.
  bool ClassicAsked() const {
    return options_.change_stream && options_.watch_mode == WatchMode::kClassic;
  }
  core::SourceResult<Opening> StartOpening(uint64_t epoch);
  core::SourceResult<void> FinishOpening(Opening& opening);
  // OpenAhead's opening for `listener`, which is handed its session's events so far; null when
  // there is none, or a Close() came, or its session ended (then it is closed).
  std::unique_ptr<Opening> TakeOpeningAhead(core::SourceListener& listener);
  void CloseHelpers(uint64_t epoch);
  // Makes the walk's head unusable (a change or a session event came after it was sent).
  void InvalidateHead();
  // Closes `clients` in parallel; returns when every one is closed.
  static void CloseAtOnce(std::vector<std::shared_ptr<zk::ZkClient>>& clients);
  void OnWatch(const zk::WatchEvent& event);
  void OnSession(const zk::SessionEvent& event, uint64_t epoch);
  // Hands an in-scope path to the listener, if one is set.
  void Announce(const std::string& path, zk::WatchEventType type);
  // The current client, or null when closed; `epoch` receives the current epoch.
  std::shared_ptr<zk::ZkClient> CurrentClient(uint64_t* epoch) const;
  bool ClosedSince(uint64_t epoch) const;
  // kClosed when Close() came after `epoch`, else the error's own code.
  core::SourceError ErrorOf(const zk::ZkError& error, uint64_t epoch) const;

  zk::ZkClientFactory& factory_;
  const core::Scope& scope_;
  ops::Logger& logger_;
  const ZooKeeperSourceOptions options_;
  ClassicWatcher classic_;
  std::atomic<bool> classic_mode_{false};  // set by Open before any read sets a watch

  mutable std::mutex mutex_;
  // Set by Open, taken by Close; shared with blocking reads in progress, so that Close can end
  // them at once without destroying the client under them. Reads are issued under mutex_.
  std::shared_ptr<zk::ZkClient> client_;
  std::vector<std::shared_ptr<zk::ZkClient>> helpers_;  // the walk's other sessions
  std::mutex close_mutex_;                              // held through a whole Close()
  core::SourceListener* listener_ = nullptr;            // from Open to Close
  uint64_t epoch_ = 0;                                  // Close() calls so far
  bool open_ = false;                                   // Open succeeded and no Close since
  bool connected_ = false;                              // as the current session's last event said
  int64_t session_id_ = 0;
  bool helpers_opened_ = false;  // this opening made its helpers
  // OpenAhead's opening, until Open() takes it or Close() drops it, with what its session said
  // before there was a listener.
  std::unique_ptr<Opening> ahead_;
  bool ahead_ended_ = false;                     // its session expired or was refused
  std::vector<core::SourceEvent> ahead_events_;  // its session's events, for the listener
  // Held by OnSession through a delivery, by Open() while it hands an opening started ahead to
  // its listener, and by Close() while it lets go of the listener (taken before mutex_).
  std::mutex session_events_mutex_;
  // The first requests of the next walk, sent by Open() behind the watches (WalkHead); taken by
  // ReadSnapshot, which uses it only if head_invalidations_ is still head_mark_: no change in
  // scope, and no session event, came after it was sent. head_held_: head_ may be set.
  std::shared_ptr<WalkHead> head_;
  uint64_t head_mark_ = 0;
  std::atomic<uint64_t> head_invalidations_{0};
  std::atomic<bool> head_held_{false};
  // An opening in WatchMode::kAuto found no persistent watches: later openings make the walk's
  // other sessions only once the watches are answered (none, in classic mode).
  std::atomic<bool> lacks_persistent_watches_{false};

  // Runs the ReadAsync callbacks that no client thread can run (no client, or one that would
  // call back inline).
  std::unique_ptr<CallbackThread> callbacks_;
};

}  // namespace zk2etcd::connectors

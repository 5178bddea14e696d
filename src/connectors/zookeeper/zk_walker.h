// WalkZkTree: reads every in-scope znode under the scope's prefixes into a core::Snapshot (key:
// path, value: data, version: mzxid; point: the highest reply zxid), as fast as the server
// answers. ReadNodes: reads given znodes into core::EntryStates (the second look of a
// reconciliation).
//
// Reads are batched with multiRead (ZooKeeper 3.6+; one request carries getData + getChildren of
// up to `multi_read_batch` nodes, which measured 14 to 42 times faster than one request per read
// on this machine, see docs/BENCHMARKS.md), with up to `window` requests in flight. With
// multi_read_batch <= 1, or when watches must be set (multiRead sets none), each node costs a
// pipelined getData, plus a getChildren where its Stat shows children. Excluded subtrees are not
// entered. A node that disappears during the walk is skipped (the watch or the next
// reconciliation handles it). Blocking: returns when the walk is complete or failed.
// Thread-safe (uses only the client's thread-safe calls).
#pragma once

#include <atomic>
#include <chrono>
#include <cstdint>
#include <functional>
#include <memory>
#include <mutex>
#include <optional>
#include <string>
#include <vector>

#include "common/result.h"
#include "core/entry.h"
#include "core/scope.h"
#include "zk/zk_client.h"

namespace zk2etcd::connectors {

// Requests in flight when reads are batched with multiRead: at least this many, whatever
// `window` says. A long round trip needs a window as wide as a level of the tree to read that
// level in one round trip (a 2,000-leaf level is 134 requests of 15), and a multiRead costs the
// server one queue entry whatever it carries; the ZooKeeper client bounds what it sends anyway
// (AsioZkClientOptions::max_in_flight). Through a 30 ms round trip a 2,251-node walk took 0.205 s
// with 50 and 0.15 s with 200 (docs/BENCHMARKS.md, "A weak network").
inline constexpr size_t kMinMultiReadWindow = 256;

// Which in-scope nodes a reader reports, given the node's Stat as read (e.g. only ephemeral
// ones, or none that another job of this process wrote). A node left out reads as absent at the
// reply's zxid; a walk still descends into its children. Empty: every in-scope node. Called on
// the client's delivery thread; must be thread-safe and quick.
using NodeFilter = std::function<bool(const std::string& path, const zk::Stat& stat)>;

// The first requests of a walk, the multiRead of the scope's prefixes, sent ahead of it. The
// ZooKeeper source sends them right behind its watch registrations (a session answers in the
// order it was asked, so they read after the watches are in place), and the walk that follows on
// the same session finds the top of the tree read: a round trip less at every opening (30 ms
// through 15 ms each way). Whoever passes a head to a walk must know that nothing changed unseen
// since it was sent (ZooKeeperSource drops a head once a change in scope or a session event came
// after it). Used by one walk at most. Thread-safe.
class WalkHead {
 public:
  using Answer = std::function<void(zk::ZkResult<zk::MultiReadReply> reply,
                                    std::chrono::steady_clock::time_point answered_at)>;

  // Sends the prefixes' multiRead on `client`, batched as a walk with `multi_read_batch` (> 1)
  // batches them. `client` and `scope` must outlive the head's requests. The head's zxid becomes
  // the walk's floor for its helper sessions (WalkOptions::helpers): whoever passes the head to
  // a walk must know that nothing in scope changed since it was sent, or that such a change is
  // read again.
  static std::shared_ptr<WalkHead> Send(zk::ZkClient& client, const core::Scope& scope,
                                        size_t multi_read_batch);

  const zk::ZkClient* client() const { return client_; }
  size_t multi_read_batch() const { return multi_read_batch_; }
  std::chrono::steady_clock::time_point sent_at() const { return sent_at_; }
  // Whether its answer times measure a round trip: false when it was sent before the session
  // had connected (the connection's set-up would count).
  bool measures_round_trip() const { return measures_round_trip_; }
  // The prefixes of each request, in the order sent.
  const std::vector<std::vector<std::string>>& batches() const { return batches_; }
  // True for the first caller only: the head is that caller's.
  bool Claim() { return !claimed_.exchange(true); }
  // Hands request `batch`'s reply to `answer`: at once on this thread if it came, else on the
  // client's delivery thread when it comes. Once per batch.
  void OnAnswer(size_t batch, Answer answer);

 private:
  struct Slot {
    std::optional<zk::ZkResult<zk::MultiReadReply>> reply;
    std::chrono::steady_clock::time_point answered_at;
    Answer answer;
  };
  WalkHead() = default;
  void Answered(size_t batch, zk::ZkResult<zk::MultiReadReply> reply);

  const zk::ZkClient* client_ = nullptr;
  size_t multi_read_batch_ = 0;
  std::chrono::steady_clock::time_point sent_at_;
  bool measures_round_trip_ = false;
  std::vector<std::vector<std::string>> batches_;
  std::atomic<bool> claimed_{false};
  std::mutex mutex_;
  std::vector<Slot> slots_;
};

struct WalkOptions {
  // Requests in flight (with multiRead, at least kMinMultiReadWindow).
  size_t window = 50;
  // Nodes per multiRead request; the default keeps a reply under 16 MiB even if every node held
  // ZooKeeper's largest data (1 MiB by default). 0 or 1: no multiRead.
  size_t multi_read_batch = 15;
  // Called now and then with the number of nodes read so far (from the client's thread).
  std::function<void(size_t nodes_read)> on_progress;
  // Called with each entry the snapshot takes, as it takes it (core::SnapshotOptions::on_entry):
  // on whichever thread handles the answer (a session's delivery thread, or the caller's for a
  // head answered before the walk began), under the walk's lock, once per entry, never after the
  // walk returned. Must only copy or enqueue.
  std::function<void(const core::SourceEntry& entry)> on_entry;
  // When set and true, no more requests are sent and the walk ends with kClosed.
  const std::atomic<bool>* cancel = nullptr;
  // Classic watch mode (servers without persistent watches): every read also sets a one-shot
  // watch (data watches on every node, child watches on every node that may have in-scope
  // descendants, leaves included), and `on_children` receives each child list.
  bool set_watches = false;
  std::function<void(const std::string& path, const std::vector<std::string>& children)>
      on_children;
  NodeFilter include;
  // More sessions to read with (null ones are skipped), so that a held or lost TCP segment, which
  // stalls every answer behind it on its connection, stalls only the requests sent on that one.
  // Only with multiRead, and only once `client` has answered a request of this walk: new requests
  // then go to the session with the fewest unanswered ones if the walk's shortest answer time is
  // at least `spread_from`, else to `client` (unless it is stalled). A session is stalled when
  // it has answered nothing for the walk's shortest answer time (at least min_stall / 2) although
  // another session answered a request sent after its oldest unanswered one (one server answers
  // in arrival order; a slow server slows every session alike and stalls none), or, when no other
  // session has requests waiting, after a stall without an answer (twice the shortest answer
  // time, at least `min_stall`). A stalled session gets no new request while another can take
  // it, what waits on stalled sessions alone is sent again on one that is not, and the first
  // answer of each request counts; a session is no longer stalled when it answers. A held
  // segment then costs the walk a stall and a round trip on part of its requests instead of the
  // whole hold on all of them. An answer of a helper counts only if its zxid is at least that of
  // `client`'s first answer (the head's, when the walk starts from a WalkHead), so that it sees
  // every change made before the walk (the watches
  // registered before it announce the rest), whichever server the helper reads from; an answer
  // below it, or an error of a helper, ends that helper's use for the walk. Empty: `client`
  // alone.
  std::vector<zk::ZkClient*> helpers;
  std::chrono::milliseconds min_stall{50};
  // Below this round trip every request goes to `client` while it answers: on loopback, spreading
  // a 110,000-node walk over four sessions made `diff` slower (medians of 10: 1.74 s against
  // 1.66 s; docs/BENCHMARKS.md, "The walk spread over four sessions").
  std::chrono::microseconds spread_from{5000};
  // The walk's first requests, already sent (WalkHead). Used when sent on `client` with this
  // multi_read_batch and not yet claimed; else the walk sends its own.
  std::shared_ptr<WalkHead> head;
};

// The snapshot's entries are sorted by path (byte order); its point is the highest reply zxid
// seen: every change up to it that the walk could see is in the entries.
Result<core::Snapshot, zk::ZkError> WalkZkTree(zk::ZkClient& client, const core::Scope& scope,
                                               const WalkOptions& options);

// A node as one getData reply shows it: the data and mzxid, observed at the reply's zxid; NoNode
// is an absent node observed at the zxid of the error reply (so is a node `include` leaves out);
// any other error stays an error.
Result<core::EntryState, zk::ZkError> EntryStateOf(zk::ZkResult<zk::GetDataReply> reply,
                                                   const std::string& path = {},
                                                   const NodeFilter& include = {});

// How ReadNodes batches its getData requests.
struct NodeReadOptions {
  size_t window = 50;  // requests in flight (with multiRead, at least kMinMultiReadWindow)
  // Nodes per multiRead request (0 or 1: one pipelined getData per node), ...
  size_t multi_read_batch = 15;
  // ... unless `expected_bytes` (one entry per path: the data size seen earlier) is given: then a
  // batch holds up to `max_multi_read_batch` nodes whose expected data sum stays within
  // `batch_bytes`, so that replies stay far below the client's frame limit (16 MiB) unless the
  // nodes grew meanwhile by megabytes (the reply is then refused and the caller's next attempt
  // sees the new sizes). Fewer, larger requests cost the server less CPU: 64 nodes per request
  // made a 100,000-node second read about 1.5 times faster than 15 (measured, see
  // docs/BENCHMARKS.md).
  const std::vector<size_t>* expected_bytes = nullptr;
  size_t max_multi_read_batch = 64;
  size_t batch_bytes = 1 << 20;
  NodeFilter include;
};

// Reads the given nodes, in the order given, batched as `options` says (an absent node: exists
// false, observed_at the zxid at which the absence was seen). Fails on the first error other than
// NoNode.
Result<std::vector<core::EntryState>, zk::ZkError> ReadNodes(zk::ZkClient& client,
                                                             const std::vector<std::string>& paths,
                                                             const NodeReadOptions& options);

}  // namespace zk2etcd::connectors

// ZooKeeperSink: a ZooKeeper ensemble as a core::Sink, for zk2zk (the target of the forward
// direction, and the source ensemble for the reverse one).
//
// A node keeps its source path (a chroot in the connection string moves both). Ownership records
// live in a meta subtree of the same ensemble, mirroring the paths they are about:
//
//   <meta_root>/owned<path>   data: the source version (mzxid) the node was written from, in
//                             decimal; empty data is a placeholder (an ancestor of records, no
//                             record itself)
//   <meta_root>/fence         the fencing token of FenceMode::kToken
//
// Every write is one `multi`: the leadership fence, the node's create/setData/delete, and the
// record's, each conditioned on the versions the sink read just before (a pre-read of node and
// record per write, one multiRead per batch), so that a write applies only if the record still
// holds an older source version than the write's (or the same one, for a put whose node was
// changed or deleted on the target since: it is restored), or, for a node without a record, only
// with a claim of its exact mzxid (adoption). A multi that fails on one write (a concurrent change)
// applies nothing: that write is read and decided again, the others go again at once. Writes of
// one batch go in one multi: puts in path order (parents first), deletes in reverse path order
// (children first).
//
// What else a write does:
//   - a create whose target parent is missing creates the missing ancestors first: those in
//     scope with a placeholder record of source version 0 when `own_created_parents` (their own
//     write, which follows, then applies), plain otherwise; missing meta ancestors as
//     placeholders;
//   - a create takes the source node's ACL (`copy_acl`) and type from `source_info`: a container
//     stays a container, a TTL node keeps its TTL where the target allows TTL nodes (else it is
//     created persistent and a warning says so once), an ephemeral becomes a persistent copy;
//   - a created node whose name ends in exactly ten digits (a sequential name; at most
//     `max_counter_gap`) moves its parent's
//     sequence counter past that number, so that a client's next sequential create on this
//     ensemble sorts after the copies: after the write's multi, sequential creates of
//     `<parent>/zk2zk-sequence-bump-` (as many as the gap, in multis of up to `max_counter_ops`),
//     then their deletes. The counter is read from those creates' names, not from the parent's
//     cversion, which can lag behind the server's counter after a multi;
//   - a delete of a node that still has children is sent again (they are usually being deleted
//     by writes in flight) up to `max_delete_resends` times, then reported as failed; a record
//     that has records below it becomes a placeholder instead of being deleted;
//   - kAdopt and claimed puts never take an ephemeral node: kForeign.
//
// Fences: FenceMode::kNodeExists checks that the fence's key exists on this ensemble (a
// ZooKeeper lock node: it goes with the leader's session); FenceMode::kToken, for an ensemble the
// election does not run on, writes the fence into <meta_root>/fence when a leadership is first
// seen and checks that node's version in every multi, so a deposed leader's writes fail once the
// new leader wrote anything.
//
// The sink keeps the set of source keys it owns (Owns()), complete after a full listing of the
// scope or LoadOwned() (with kToken, one made after the token was last taken: a deposed leader
// may write until then; with kNodeExists a deposed leader's writes fail before a new one is
// elected), and kept up to date by its own writes. While it is complete, a delete of
// a key it does not own is answered without a request (kAlreadyAbsent). zk2zk's forward source
// uses the reverse sink's set to leave out the copies the reverse direction made.
//
// Session: one client from the factory, replaced after its session ends. Connection loss fails a
// batch with kUnavailable (the writer sends it again; a multi that did apply then reads as
// stale).
//
// Thread-safety: every method is thread-safe; ApplyAsync's callback runs on the client's
// delivery thread (never inline).
#pragma once

#include <atomic>
#include <cstdint>
#include <functional>
#include <map>
#include <memory>
#include <mutex>
#include <optional>
#include <set>
#include <string>
#include <string_view>
#include <unordered_set>
#include <vector>

#include "common/result.h"
#include "connectors/zookeeper/callback_thread.h"
#include "core/scope.h"
#include "core/sink.h"
#include "ops/log.h"
#include "zk/zk_client.h"

namespace zk2etcd::connectors {

// What a create copies from the source node besides its data.
struct SourceNodeInfo {
  std::vector<zk::Acl> acl;
  zk::Stat stat;  // its ephemeral_owner tells the node's type (zk::NodeKindOf)
};
// Reads a source node's ACL and Stat; `done` runs once, on any thread. nullopt: the node is gone
// (the write is then skipped: its delete follows).
using SourceInfoReader = std::function<void(
    const std::string& path,
    std::function<void(Result<std::optional<SourceNodeInfo>, std::string>)> done)>;

enum class FenceMode {
  kNodeExists,  // the fence key is a node of this ensemble (the election's lock node)
  kToken,       // the election runs elsewhere: a fencing token in <meta_root>/fence
};

struct ZooKeeperSinkOptions {
  std::string meta_root;  // e.g. "/zk2zk/default"; must lie outside the scope
  FenceMode fence_mode = FenceMode::kNodeExists;
  bool copy_acl = true;
  // Null: creates use the open ACL and the persistent type.
  SourceInfoReader source_info;
  // Ancestors in scope that a create has to make first get a record (forward); false: they are
  // plain nodes, as a client registering there would have made them (reverse).
  bool own_created_parents = true;
  bool advance_sequence_counters = true;
  // List only the nodes it holds records for (reverse: the source ensemble's own nodes never
  // concern it, and its listing then walks the meta subtree alone).
  bool list_owned_only = false;
  // Not owned from the moment a delete is sent (owned again if it does not apply), so that a
  // reader of Owns() that skips this sink's own changes (zk2zk's reverse source skips the
  // forward copies) never skips a node a client creates where a copy was just deleted. Not for
  // a sink whose Owns() keeps a node out of another job (zk2zk's reverse sink: the forward
  // source must not copy a copy that is being deleted).
  bool unown_before_delete = false;
  size_t max_batch_writes = 64;
  size_t max_batch_bytes = 900 * 1024;  // below ZooKeeper's default jute.maxbuffer (1 MiB)
  int max_counter_ops = 2000;           // sequence counter bumps per multi
  // A copied sequential number beyond this is left alone (with a warning): moving a counter
  // costs one create and one delete per step.
  int64_t max_counter_gap = 1000000;
  int max_delete_resends = 200;
  int max_conflict_retries = 5;  // a write whose multi keeps failing on it is then reported
};

class ZooKeeperSink final : public core::Sink {
 public:
  // `factory`, `scope` and `logger` must outlive the sink.
  ZooKeeperSink(zk::ZkClientFactory& factory, const core::Scope& scope, ops::Logger& logger,
                ZooKeeperSinkOptions options);
  ~ZooKeeperSink() override;
  ZooKeeperSink(const ZooKeeperSink&) = delete;
  ZooKeeperSink& operator=(const ZooKeeperSink&) = delete;

  std::unique_ptr<core::SinkCursor> List(const std::string& source_prefix,
                                         const core::ListOptions& options) override;
  core::SinkResult<int64_t> CurrentPoint() override;
  core::SinkResult<std::vector<core::SinkEntry>> Read(
      const std::vector<std::string>& keys) override;
  std::string SinkKeyFor(std::string_view key) const override { return std::string(key); }
  std::string_view Name() const override { return "ZooKeeper"; }

  int DefaultVariant(const core::SinkWrite& write) const override;
  int BatchClass(int variant) const override;
  core::BatchLimits Limits(int batch_class) const override;
  core::WriteCost Cost(const core::SinkWrite& write, int variant) const override;
  void ApplyAsync(std::vector<core::SinkWrite> writes, std::vector<int> variants,
                  const std::optional<core::Fence>& fence,
                  std::function<void(core::BatchResult)> done) override;

  // Lists the whole scope, so that Owns() is complete. Blocking.
  core::SinkResult<void> LoadOwned();
  // Whether this sink wrote `key` (it holds a record for it), as far as it knows. Thread-safe,
  // cheap (the forward source calls it for every node it reads).
  bool Owns(const std::string& key) const;
  size_t owned_count() const;
  // With unown_before_delete: whether this sink sent a delete of `key` (the last of its writes
  // of it, as far as it remembers: at most 100,000 keys), so that the delete's event can be told
  // from a client's. ForgetDeleted: a client's node is there now.
  bool DeletedRecently(const std::string& key) const;
  void ForgetDeleted(const std::string& key);

  // A SourceInfoReader over this sink's ensemble (zk2zk: the forward sink's creates read the
  // source ensemble through the reverse sink, and the other way round): one getACL.
  void ReadNodeInfo(const std::string& path,
                    std::function<void(Result<std::optional<SourceNodeInfo>, std::string>)> done);

  // Whether `path` is a node the sink makes for a moment (a sequence counter's bump), which no
  // job copies.
  static bool IsTransientNode(std::string_view path);

  // The record node of `key`.
  std::string RecordPath(std::string_view key) const;

 private:
  class Batch;
  class Cursor;
  friend class Batch;
  friend class Cursor;

  struct Listing {
    std::vector<core::SinkEntry> entries;
    int64_t point = 0;
  };
  // Walks the nodes and the records below `prefix` and joins them (Cursor's whole work).
  core::SinkResult<Listing> ListAll(const std::string& prefix);
  // The source key a record node is about.
  std::string KeyOfRecord(const std::string& record_path) const;
  // The scope's excludes and the meta subtree.
  std::vector<std::string> Excludes() const;
  core::SinkError Unavailable(std::string message) const;
  // The current client, creating one if there is none or its session ended; null if the factory
  // fails.
  std::shared_ptr<zk::ZkClient> Client();
  void OnSession(const zk::SessionEvent& event, uint64_t generation);
  // FenceMode::kToken: the token's version for `fence`, writing the token first when `fence` is
  // a leadership not seen before, and then reading the records again (the previous leader may
  // have written until then). Blocking (once per leadership).
  core::SinkResult<int32_t> TokenVersion(zk::ZkClient& client, const core::Fence& fence);
  uint64_t CurrentFenceGeneration() const;
  // Records `key` as owned or not: before a create that may apply (so that a reader of Owns()
  // never sees the copy without it), and after a write applied.
  void NoteOwned(const std::string& key, bool owned);
  // A listing of `prefix` begins / ends with `keys` (the owned keys it found): the owned set
  // below `prefix` becomes `keys`, except for keys written while the listing ran.
  void NoteDeleting(const std::string& key);  // unown_before_delete: a delete is sent
  void BeginListing();
  void AbandonListing();  // a listing that failed
  void ReplaceOwned(const std::string& prefix, const std::set<std::string>& keys,
                    uint64_t fence_generation);
  bool OwnedSetComplete() const;
  int CountDeleteResend(const std::string& key);
  void ForgetDeleteResends(const std::string& key);
  void WarnTtl(const std::string& key);

  zk::ZkClientFactory& factory_;
  const core::Scope& scope_;
  ops::Logger& logger_;
  const ZooKeeperSinkOptions options_;
  const std::string owned_root_;  // <meta_root>/owned
  const std::string fence_path_;  // <meta_root>/fence

  std::mutex create_mutex_;  // one client created at a time
  std::mutex token_mutex_;   // one token written at a time
  std::atomic<bool> ttl_refused_{false};

  mutable std::mutex mutex_;
  std::shared_ptr<zk::ZkClient> client_;
  uint64_t client_generation_ = 0;
  bool client_ended_ = false;
  // Replaced clients, closed by the destructor: a batch may still hold one, and must never hold
  // the last reference (a client must not be destroyed from its own callback).
  std::vector<std::shared_ptr<zk::ZkClient>> retired_;
  std::set<std::string> owned_;
  size_t listings_ = 0;                      // in progress
  std::set<std::string> touched_;            // keys NoteOwned saw while a listing ran
  std::set<std::string> complete_prefixes_;  // fully listed since the token was last taken
  uint64_t fence_generation_ = 0;            // times the token was taken
  std::optional<core::Fence> token_fence_;
  std::optional<int32_t> token_version_;
  bool ttl_warned_ = false;
  std::map<std::string, int> delete_resends_;
  std::unordered_set<std::string> deleted_recently_;
  // Answers that need no request (last member: destroyed first, running what is queued).
  CallbackThread callbacks_;
};

}  // namespace zk2etcd::connectors

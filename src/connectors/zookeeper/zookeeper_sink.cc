#include "connectors/zookeeper/zookeeper_sink.h"

#include <algorithm>
#include <charconv>
#include <climits>
#include <condition_variable>
#include <map>
#include <set>
#include <thread>
#include <utility>

#include "connectors/zookeeper/zk_walker.h"

namespace zk2etcd::connectors {

namespace {

using core::SinkError;
using core::SinkWrite;
using core::WriteAnswer;
using core::WriteOutcome;

constexpr std::string_view kSequenceBump = "zk2zk-sequence-bump";
constexpr size_t kSequenceDigits = 10;
// Each op of a multi costs about this much besides its path and data (header, ACL, version).
constexpr size_t kOpOverheadBytes = 64;

std::string ParentOf(std::string_view path) {
  const size_t slash = path.rfind('/');
  if (slash == 0 || slash == std::string_view::npos) return "/";
  return std::string(path.substr(0, slash));
}

bool IsDigit(char c) { return c >= '0' && c <= '9'; }

// The sequence number of a sequential name, if the name has one: ZooKeeper appends exactly ten
// digits of a 32-bit counter, so a longer run of digits (a Dubbo URL's millisecond timestamp
// ends in 13) or a value past INT32_MAX is not one.
std::optional<int64_t> SequenceOf(std::string_view path) {
  const size_t slash = path.rfind('/');
  const std::string_view name = path.substr(slash == std::string_view::npos ? 0 : slash + 1);
  if (name.size() < kSequenceDigits) return std::nullopt;
  const size_t first = name.size() - kSequenceDigits;
  if (first > 0 && IsDigit(name[first - 1])) return std::nullopt;
  int64_t value = 0;
  for (char c : name.substr(first)) {
    if (!IsDigit(c)) return std::nullopt;
    value = value * 10 + (c - '0');
  }
  if (value > INT32_MAX) return std::nullopt;
  return value;
}

// A record's source version; nullopt for a placeholder (empty) or unreadable data.
std::optional<int64_t> RecordVersion(std::string_view data) {
  if (data.empty()) return std::nullopt;
  int64_t value = 0;
  auto [end, error] = std::from_chars(data.data(), data.data() + data.size(), value);
  if (error != std::errc() || end != data.data() + data.size()) return std::nullopt;
  return value;
}

bool IsConnectionError(zk::ZkErrorCode code) {
  switch (code) {
    case zk::ZkErrorCode::kConnectionLoss:
    case zk::ZkErrorCode::kSessionExpired:
    case zk::ZkErrorCode::kSessionMoved:
    case zk::ZkErrorCode::kTimeout:
    case zk::ZkErrorCode::kClosed:
      return true;
    default:
      return zk::IsRetryable(code);
  }
}

SinkError SinkErrorOf(const zk::ZkError& error) {
  SinkError sink_error;
  sink_error.code =
      IsConnectionError(error.code) ? SinkError::Code::kUnavailable : SinkError::Code::kOther;
  if (error.code == zk::ZkErrorCode::kClosed) sink_error.code = SinkError::Code::kUnavailable;
  sink_error.message = "ZooKeeper: " + error.ToString();
  sink_error.label = std::string(zk::ZkErrorLabel(error.code));
  return sink_error;
}

bool IsEphemeralNode(const zk::Stat& stat) {
  return zk::NodeKindOf(stat) == zk::NodeKind::kEphemeral;
}

// One node as a pre-read saw it.
struct NodeRead {
  bool exists = false;
  std::string data;
  zk::Stat stat;
};

NodeRead NodeReadOf(zk::ReadResult& result) {
  NodeRead read;
  if (result.error == zk::ZkErrorCode::kOk) {
    read.exists = true;
    read.data = std::move(result.data);
    read.stat = result.stat;
  }
  return read;
}

}  // namespace

// --- Batch: one ApplyAsync, from pre-read to answers -------------------------------------------

class ZooKeeperSink::Batch : public std::enable_shared_from_this<ZooKeeperSink::Batch> {
 public:
  Batch(ZooKeeperSink& sink, std::shared_ptr<zk::ZkClient> client, std::vector<SinkWrite> writes,
        std::optional<zk::MultiOp> fence_op, std::function<void(core::BatchResult)> done)
      : sink_(sink),
        client_(std::move(client)),
        writes_(std::move(writes)),
        fence_op_(std::move(fence_op)),
        done_(std::move(done)),
        answers_(writes_.size()),
        retries_(writes_.size(), 0) {}

  void Start() {
    std::vector<size_t> pending;
    const bool complete = sink_.OwnedSetComplete();
    for (size_t i = 0; i < writes_.size(); ++i) {
      const SinkWrite& write = writes_[i];
      if (complete && write.type == SinkWrite::Type::kDelete && !sink_.Owns(write.key)) {
        answers_[i].outcome = WriteOutcome::kAlreadyAbsent;  // no record: nothing of ours there
        continue;
      }
      pending.push_back(i);
    }
    if (pending.empty()) {
      // Answer from the client's thread, never inline.
      auto self = shared_from_this();
      sink_.callbacks_.Post([self] { self->Finish(); });
      return;
    }
    PreRead(std::move(pending));
  }

 private:
  // A decided write: the ops it adds to the multi.
  struct Plan {
    size_t write = 0;
    std::vector<zk::MultiOp> ops;
    bool needs_info = false;  // a create waiting for the source node's ACL and type
    bool owned_after = false;
    bool creates = false;  // the node itself is created (not updated)
    zk::NodeKind kind = zk::NodeKind::kPersistent;
  };

  void PreRead(std::vector<size_t> pending) {
    pending_ = std::move(pending);
    std::vector<zk::ReadOp> reads;
    for (size_t i : pending_) {
      reads.push_back(zk::ReadOp::GetData(writes_[i].key));
      reads.push_back(zk::ReadOp::GetData(sink_.RecordPath(writes_[i].key)));
    }
    auto self = shared_from_this();
    client_->MultiRead(std::move(reads), [self](zk::ZkResult<zk::MultiReadReply> reply) {
      self->OnPreRead(std::move(reply));
    });
  }

  void OnPreRead(zk::ZkResult<zk::MultiReadReply> reply) {
    if (!reply.ok()) return Fail(SinkErrorOf(reply.error()));
    std::vector<zk::ReadResult>& results = reply->results;
    for (const zk::ReadResult& result : results) {
      if (result.error != zk::ZkErrorCode::kOk && result.error != zk::ZkErrorCode::kNoNode) {
        if (IsConnectionError(result.error)) {
          return Fail(SinkErrorOf(zk::MakeZkError(result.error, "multiRead")));
        }
      }
    }
    nodes_.clear();
    records_.clear();
    for (size_t n = 0; n < pending_.size(); ++n) {
      nodes_[pending_[n]] = NodeReadOf(results[2 * n]);
      records_[pending_[n]] = NodeReadOf(results[2 * n + 1]);
    }
    Decide();
  }

  // Decides every pending write from the pre-read: an answer now, or ops for the multi.
  void Decide() {
    plans_.clear();
    std::vector<size_t> puts;
    std::vector<size_t> deletes;
    for (size_t i : pending_) {
      (writes_[i].type == SinkWrite::Type::kDelete ? deletes : puts).push_back(i);
    }
    auto by_key = [this](size_t a, size_t b) { return writes_[a].key < writes_[b].key; };
    std::sort(puts.begin(), puts.end(), by_key);
    std::sort(deletes.begin(), deletes.end(), by_key);
    std::reverse(deletes.begin(), deletes.end());  // children first
    for (size_t i : puts) DecidePut(i);
    deleted_children_.clear();
    deleted_child_records_.clear();
    for (size_t i : deletes) DecideDelete(i);
    FetchInfo();
  }

  void DecidePut(size_t i) {
    const SinkWrite& write = writes_[i];
    const NodeRead& node = nodes_[i];
    const NodeRead& record = records_[i];
    const std::optional<int64_t> owned_version =
        record.exists ? RecordVersion(record.data) : std::nullopt;
    const std::string record_path = sink_.RecordPath(write.key);
    const std::string version_text = std::to_string(write.version);
    Plan plan;
    plan.write = i;
    plan.owned_after = true;
    auto record_op = [&]() {
      return record.exists ? zk::MultiOp::SetData(record_path, version_text, record.stat.version)
                           : zk::MultiOp::Create(record_path, version_text);
    };
    if (owned_version) {
      // The version the record holds: the node was written from it, but may have been changed
      // or deleted on the target since (by a client, an operator): written again unless it is
      // as written. An older one: written. A newer one: stale.
      if (*owned_version > write.version) return Answer(i, WriteOutcome::kStale);
      if (*owned_version == write.version &&
          (write.type == SinkWrite::Type::kAdopt || (node.exists && node.data == write.value))) {
        return Answer(i, WriteOutcome::kStale);
      }
      if (node.exists && IsEphemeralNode(node.stat)) return Answer(i, WriteOutcome::kForeign);
      if (write.type == SinkWrite::Type::kAdopt) return Answer(i, WriteOutcome::kStale);
      if (node.exists) {
        plan.ops.push_back(zk::MultiOp::SetData(write.key, write.value, node.stat.version));
      } else {
        plan.needs_info = plan.creates = true;  // its create op waits for the source's ACL
      }
      plan.ops.push_back(record_op());
      plans_.push_back(std::move(plan));
      return;
    }
    if (node.exists) {
      const bool claimed = write.claim && *write.claim == node.stat.mzxid;
      if (!claimed || IsEphemeralNode(node.stat)) return Answer(i, WriteOutcome::kForeign);
      if (write.type == SinkWrite::Type::kAdopt) {
        plan.ops.push_back(zk::MultiOp::Check(write.key, node.stat.version));
      } else {
        plan.ops.push_back(zk::MultiOp::SetData(write.key, write.value, node.stat.version));
      }
      plan.ops.push_back(record_op());
      plans_.push_back(std::move(plan));
      return;
    }
    if (write.type == SinkWrite::Type::kAdopt) return Answer(i, WriteOutcome::kForeign);
    plan.needs_info = plan.creates = true;
    plan.ops.push_back(record_op());
    plans_.push_back(std::move(plan));
  }

  void DecideDelete(size_t i) {
    const SinkWrite& write = writes_[i];
    const NodeRead& node = nodes_[i];
    const NodeRead& record = records_[i];
    const std::optional<int64_t> owned_version =
        record.exists ? RecordVersion(record.data) : std::nullopt;
    if (!owned_version) {
      return Answer(i, node.exists ? WriteOutcome::kForeign : WriteOutcome::kAlreadyAbsent);
    }
    if (*owned_version >= write.version) return Answer(i, WriteOutcome::kStale);
    const std::string parent = ParentOf(write.key);
    Plan plan;
    plan.write = i;
    plan.owned_after = false;
    if (node.exists && !IsEphemeralNode(node.stat)) {
      const int children = node.stat.num_children - deleted_children_[write.key];
      if (children > 0) {
        // Its children's deletes are usually in flight: send it again after them, a bounded
        // number of times.
        if (sink_.CountDeleteResend(write.key) <= sink_.options_.max_delete_resends) {
          answers_[i].resend_variant = 0;
          return;
        }
        answers_[i].error = "not deleted: " + write.key + " still has " + std::to_string(children) +
                            " children on the target";
        return;
      }
      plan.ops.push_back(zk::MultiOp::Delete(write.key, node.stat.version));
      ++deleted_children_[parent];
    }
    const std::string record_path = sink_.RecordPath(write.key);
    if (record.stat.num_children - deleted_child_records_[record_path] > 0) {
      plan.ops.push_back(zk::MultiOp::SetData(record_path, "", record.stat.version));
    } else {
      plan.ops.push_back(zk::MultiOp::Delete(record_path, record.stat.version));
      ++deleted_child_records_[ParentOf(record_path)];
    }
    plans_.push_back(std::move(plan));
  }

  // Fetches the source node's ACL and type for every create, then builds the multi.
  void FetchInfo() {
    size_t wanted = 0;
    for (const Plan& plan : plans_) wanted += plan.needs_info ? 1 : 0;
    if (wanted == 0 || !sink_.options_.source_info) {
      for (Plan& plan : plans_) {
        if (plan.needs_info) {
          const SinkWrite& write = writes_[plan.write];
          plan.ops.insert(plan.ops.begin(), zk::MultiOp::Create(write.key, write.value));
          plan.needs_info = false;
        }
      }
      return Send();
    }
    // The plans to ask for, chosen before the first answer can change them (answers come on
    // another session's thread, or inline).
    std::vector<size_t> asked;
    for (size_t p = 0; p < plans_.size(); ++p) {
      if (plans_[p].needs_info) asked.push_back(p);
    }
    infos_outstanding_ = asked.size();
    auto self = shared_from_this();
    for (size_t p : asked) {
      sink_.options_.source_info(
          writes_[plans_[p].write].key,
          [self, p](Result<std::optional<SourceNodeInfo>, std::string> info) {
            self->OnInfo(p, std::move(info));
          });
    }
  }

  void OnInfo(size_t p, Result<std::optional<SourceNodeInfo>, std::string> info) {
    bool last = false;
    {
      std::lock_guard lock(info_mutex_);
      Plan& plan = plans_[p];
      const SinkWrite& write = writes_[plan.write];
      if (!info.ok()) {
        answers_[plan.write].error =
            "cannot read the source's ACL of " + write.key + ": " + info.error();
        plan.ops.clear();
      } else if (!info->has_value()) {
        answers_[plan.write].error = write.key + " is gone from the source: not copied";
        answers_[plan.write].skipped = true;
        plan.ops.clear();
      } else {
        const SourceNodeInfo& node = **info;
        zk::MultiOp create = zk::MultiOp::Create(write.key, write.value);
        if (sink_.options_.copy_acl && !node.acl.empty()) create.acl = node.acl;
        plan.kind = zk::NodeKindOf(node.stat);
        if (plan.kind == zk::NodeKind::kContainer) {
          create.mode = zk::CreateMode::kContainer;
        } else if (plan.kind == zk::NodeKind::kTtl && !sink_.ttl_refused_.load()) {
          create.mode = zk::CreateMode::kPersistentWithTtl;
          create.ttl_ms = zk::TtlOf(node.stat);
        } else if (plan.kind == zk::NodeKind::kTtl) {
          sink_.WarnTtl(write.key);
        }
        plan.ops.insert(plan.ops.begin(), std::move(create));
      }
      plan.needs_info = false;
      last = --infos_outstanding_ == 0;
    }
    if (last) Send();
  }

  // Builds one multi of every plan (and the counter bumps), or finishes when nothing is left.
  void Send() {
    std::vector<zk::MultiOp> ops;
    op_plan_.clear();
    sent_.clear();
    if (fence_op_) {
      ops.push_back(*fence_op_);
      op_plan_.push_back(kFenceOp);
      sent_.push_back({fence_op_->kind, fence_op_->path, fence_op_->mode});
    }
    for (size_t p = 0; p < plans_.size(); ++p) {
      for (zk::MultiOp& op : plans_[p].ops) {
        sent_.push_back({op.kind, op.path, op.mode});
        ops.push_back(std::move(op));
        op_plan_.push_back(p);
      }
    }
    if (op_plan_.size() == (fence_op_ ? 1u : 0u)) return AdvanceCounters();
    // Owned before the multi can apply, so that no reader of Owns() sees the copy without it.
    for (const Plan& plan : plans_) {
      const std::string& key = writes_[plan.write].key;
      if (plan.owned_after && answers_[plan.write].error.empty() && !sink_.Owns(key)) {
        sink_.NoteOwned(key, true);
        prenoted_.insert(plan.write);
      } else if (!plan.owned_after && sink_.options_.unown_before_delete &&
                 prenoted_.count(plan.write) == 0) {
        sink_.NoteOwned(key, false);
        sink_.NoteDeleting(key);
        preunowned_.insert(plan.write);
      }
    }
    auto self = shared_from_this();
    client_->Multi(std::move(ops),
                   [self](zk::ZkResult<zk::MultiReply> reply) { self->OnMulti(std::move(reply)); });
  }

  void OnMulti(zk::ZkResult<zk::MultiReply> reply) {
    if (reply.ok()) {
      for (const Plan& plan : plans_) {
        if (!answers_[plan.write].error.empty()) continue;  // left out (see OnInfo)
        answers_[plan.write].outcome = WriteOutcome::kApplied;
        sink_.NoteOwned(writes_[plan.write].key, plan.owned_after);
        if (writes_[plan.write].type == SinkWrite::Type::kDelete) {
          sink_.ForgetDeleteResends(writes_[plan.write].key);
        }
      }
      return AdvanceCounters();
    }
    const zk::ZkError& error = reply.error();
    if (IsConnectionError(error.code)) return Fail(SinkErrorOf(error));
    const int op = error.failed_op;
    if (op < 0 || static_cast<size_t>(op) >= op_plan_.size()) return Fail(SinkErrorOf(error));
    const size_t owner = op_plan_[op];
    if (owner == kFenceOp) {
      SinkError lost{SinkError::Code::kNotLeader,
                     "ZooKeeper: the leadership fence failed: " + error.ToString(), "not_leader"};
      return Fail(std::move(lost));
    }
    const Plan& plan = plans_[owner];
    const size_t failed = plan.write;
    const SentOp& failed_op = sent_[op];
    switch (error.code) {
      case zk::ZkErrorCode::kNoNode:
        if (failed_op.kind == zk::MultiOp::Kind::kCreate) {
          // A missing parent (of the node or of its record): make the ancestors, then again.
          ancestors_wanted_.push_back(failed_op.path);
        }
        break;
      case zk::ZkErrorCode::kNodeExists:
      case zk::ZkErrorCode::kBadVersion:
      case zk::ZkErrorCode::kNotEmpty:
        break;  // changed since the pre-read: decide again
      case zk::ZkErrorCode::kUnimplemented:
      case zk::ZkErrorCode::kInvalidArgument:
        if (failed_op.kind == zk::MultiOp::Kind::kCreate &&
            failed_op.mode == zk::CreateMode::kPersistentWithTtl) {
          sink_.ttl_refused_.store(true);
          sink_.WarnTtl(failed_op.path);
          break;
        }
        [[fallthrough]];
      default:
        answers_[failed].error =
            "ZooKeeper refused the write of " + writes_[failed].key + ": " + error.ToString();
        return Retry(failed);
    }
    if (++retries_[failed] > sink_.options_.max_conflict_retries) {
      answers_[failed].error = "the write of " + writes_[failed].key +
                               " kept conflicting with other changes: " + error.ToString();
      return Retry(failed);
    }
    Retry({});
  }

  // Goes again with every write still undecided, except `settled` (answered already).
  void Retry(std::optional<size_t> settled) {
    std::vector<size_t> pending;
    for (const Plan& plan : plans_) {
      if (settled && plan.write == *settled) continue;
      if (answers_[plan.write].outcome || !answers_[plan.write].error.empty()) continue;
      pending.push_back(plan.write);
    }
    if (pending.empty()) return AdvanceCounters();
    if (!ancestors_wanted_.empty()) return MakeAncestors(std::move(pending));
    PreRead(std::move(pending));
  }

  // Creates the missing ancestors of every path in ancestors_wanted_ (nodes or records), then
  // pre-reads `pending` again: first the record's ancestors in the meta subtree (placeholders),
  // then the node's, top down; an ancestor in scope gets a record of source version 0 when
  // own_created_parents, so that its own write, when it comes, applies. Requests on one session
  // are processed in order, so waiting for the last answer waits for all; an ancestor that exists
  // already fails its create and is left as it is.
  void MakeAncestors(std::vector<size_t> pending) {
    std::vector<std::string> meta_chain;
    std::vector<std::string> data_chain;
    std::set<std::string> seen;
    auto add_chain = [&seen](const std::string& path, std::vector<std::string>* chain) {
      std::vector<std::string> ancestors;
      for (std::string parent = ParentOf(path); parent != "/"; parent = ParentOf(parent)) {
        ancestors.push_back(parent);
      }
      for (auto it = ancestors.rbegin(); it != ancestors.rend(); ++it) {
        if (seen.insert(*it).second) chain->push_back(*it);
      }
    };
    for (const std::string& wanted : ancestors_wanted_) {
      const std::string key =
          core::IsSameOrBelow(wanted, sink_.owned_root_) ? sink_.KeyOfRecord(wanted) : wanted;
      add_chain(sink_.RecordPath(key), &meta_chain);
      add_chain(key, &data_chain);
    }
    ancestors_wanted_.clear();
    const size_t requests = meta_chain.size() + data_chain.size();
    if (requests == 0) return PreRead(std::move(pending));
    auto self = shared_from_this();
    auto remaining = std::make_shared<std::atomic<size_t>>(requests);
    auto pending_shared = std::make_shared<std::vector<size_t>>(std::move(pending));
    auto next = [self, remaining, pending_shared]() {
      if (remaining->fetch_sub(1) == 1) self->PreRead(std::move(*pending_shared));
    };
    for (const std::string& path : meta_chain) {
      client_->Create(path, "", zk::CreateMode::kPersistent, zk::OpenAclUnsafe(),
                      [next](zk::ZkResult<zk::CreateReply>) { next(); });
    }
    for (const std::string& path : data_chain) {
      if (sink_.options_.own_created_parents && sink_.scope_.Contains(path)) {
        std::vector<zk::MultiOp> ops;
        if (fence_op_) ops.push_back(*fence_op_);
        ops.push_back(zk::MultiOp::Create(path, ""));
        ops.push_back(zk::MultiOp::SetData(sink_.RecordPath(path), "0"));  // its placeholder
        client_->Multi(std::move(ops), [next](zk::ZkResult<zk::MultiReply>) { next(); });
      } else {
        client_->Create(path, "", zk::CreateMode::kPersistent, zk::OpenAclUnsafe(),
                        [next](zk::ZkResult<zk::CreateReply>) { next(); });
      }
    }
  }

  // Moves the sequence counter of every parent that received a copy with a sequential name past
  // that number. The counter that names a client's next sequential node is the server's own
  // (PrepRequestProcessor's), which a parent's cversion does not always show (after a multi of
  // creates and deletes it may lag behind it), so it is read where it is used: by sequential
  // creates of `<parent>/zk2zk-sequence-bump-`, as many as the gap needs, then deleted.
  void AdvanceCounters() {
    if (!sink_.options_.advance_sequence_counters) return Finish();
    for (const Plan& plan : plans_) {
      const SinkWrite& write = writes_[plan.write];
      if (answers_[plan.write].outcome != WriteOutcome::kApplied) continue;
      if (write.type != SinkWrite::Type::kPut || !plan.creates) continue;
      if (auto sequence = SequenceOf(write.key)) {
        int64_t& wanted = counters_[ParentOf(write.key)];
        wanted = std::max(wanted, *sequence + 1);
      }
    }
    NextCounter();
  }

  void NextCounter() {
    if (counters_.empty()) return Finish();
    const auto [parent, wanted] = *counters_.begin();
    counters_.erase(counters_.begin());
    if (wanted > sink_.options_.max_counter_gap) {
      sink_.logger_.Warn(
          "a copied sequential name lies too far ahead to move its parent's counter past it",
          {{"parent", parent},
           {"sequence", wanted - 1},
           {"max_counter_gap", sink_.options_.max_counter_gap}});
      return NextCounter();
    }
    BumpCounter(parent, wanted, 1, std::make_shared<std::vector<std::string>>());
  }

  // Creates `count` sequential bump nodes under `parent`; when the last one's number reaches
  // `wanted`, deletes them all, else creates as many again as are missing.
  void BumpCounter(const std::string& parent, int64_t wanted, int64_t count,
                   std::shared_ptr<std::vector<std::string>> made) {
    const std::string bump = (parent == "/" ? "" : parent) + "/" + std::string(kSequenceBump);
    std::vector<zk::MultiOp> ops;
    if (fence_op_) ops.push_back(*fence_op_);
    const int64_t chunk = std::min<int64_t>(count, sink_.options_.max_counter_ops);
    for (int64_t n = 0; n < chunk; ++n) {
      ops.push_back(zk::MultiOp::Create(bump, "", zk::CreateMode::kPersistentSequential));
    }
    auto self = shared_from_this();
    client_->Multi(
        std::move(ops), [self, parent, wanted, made](zk::ZkResult<zk::MultiReply> reply) {
          if (!reply.ok()) {
            self->sink_.logger_.Warn("cannot move a parent's sequence counter",
                                     {{"parent", parent}, {"error", reply.error().ToString()}});
            return self->DeleteBumps(made);
          }
          int64_t reached = 0;
          for (const zk::MultiOpResult& result : reply->results) {
            if (result.path.empty() || result.path.find(kSequenceBump) == std::string::npos)
              continue;
            made->push_back(result.path);
            reached = std::max(reached, SequenceOf(result.path).value_or(0) + 1);
          }
          if (reached >= wanted || made->empty()) return self->DeleteBumps(made);
          self->BumpCounter(parent, wanted, wanted - reached, made);
        });
  }

  void DeleteBumps(std::shared_ptr<std::vector<std::string>> made) {
    if (made->empty()) return NextCounter();
    std::vector<zk::MultiOp> ops;
    const size_t chunk = std::min<size_t>(made->size(), sink_.options_.max_counter_ops);
    for (size_t n = 0; n < chunk; ++n) {
      ops.push_back(zk::MultiOp::Delete(made->back()));
      made->pop_back();
    }
    auto self = shared_from_this();
    client_->Multi(std::move(ops), [self, made](zk::ZkResult<zk::MultiReply> reply) {
      if (!reply.ok()) {
        self->sink_.logger_.Warn("cannot delete the sequence counter's bump nodes",
                                 {{"error", reply.error().ToString()}});
      }
      self->DeleteBumps(made);
    });
  }

  void Answer(size_t i, WriteOutcome outcome) { answers_[i].outcome = outcome; }

  void Fail(SinkError error) {
    RestoreUnapplied();
    auto done = std::move(done_);
    done(Unexpected{std::move(error)});
  }

  // Owns() as it was for the writes noted before their multi that did not apply (or may not
  // have: a connection lost).
  void RestoreUnapplied() {
    for (size_t i = 0; i < answers_.size(); ++i) {
      if (answers_[i].outcome == WriteOutcome::kApplied) continue;
      if (prenoted_.count(i) > 0) sink_.NoteOwned(writes_[i].key, false);
      if (preunowned_.count(i) > 0) sink_.NoteOwned(writes_[i].key, true);
    }
  }

  void Finish() {
    RestoreUnapplied();
    for (size_t i = 0; i < answers_.size(); ++i) {
      WriteAnswer& answer = answers_[i];
      if (!answer.outcome && !answer.resend_variant && answer.error.empty()) {
        answer.error = "no answer for " + writes_[i].key;
      }
    }
    auto done = std::move(done_);
    done(std::move(answers_));
  }

  static constexpr size_t kFenceOp = static_cast<size_t>(-1);

  ZooKeeperSink& sink_;
  const std::shared_ptr<zk::ZkClient> client_;
  const std::vector<SinkWrite> writes_;
  const std::optional<zk::MultiOp> fence_op_;
  std::function<void(core::BatchResult)> done_;
  std::vector<WriteAnswer> answers_;
  std::vector<int> retries_;

  // One pass (pre-read, decide, multi); the callbacks of one pass run one after another.
  std::vector<size_t> pending_;
  std::map<size_t, NodeRead> nodes_;
  std::map<size_t, NodeRead> records_;
  std::vector<Plan> plans_;
  std::map<std::string, int> deleted_children_;       // per parent path, in this pass
  std::map<std::string, int> deleted_child_records_;  // per parent record path, in this pass
  std::mutex info_mutex_;
  size_t infos_outstanding_ = 0;
  // What each op of the multi sent was, for its error.
  struct SentOp {
    zk::MultiOp::Kind kind = zk::MultiOp::Kind::kCheck;
    std::string path;
    zk::CreateMode mode = zk::CreateMode::kPersistent;
  };
  std::vector<size_t> op_plan_;  // per op of the multi: its plan or kFenceOp
  std::vector<SentOp> sent_;
  std::set<size_t> prenoted_;    // writes noted as owned before their multi
  std::set<size_t> preunowned_;  // deletes noted as not owned before their multi
  std::vector<std::string> ancestors_wanted_;
  std::map<std::string, int64_t> counters_;  // parent -> the sequence number to reach
};

// --- Cursor: a listing, read whole at the first Next ------------------------------------------

class ZooKeeperSink::Cursor : public core::SinkCursor {
 public:
  Cursor(ZooKeeperSink& sink, std::string prefix) : sink_(sink), prefix_(std::move(prefix)) {}

  void Start() override {}

  core::SinkResult<std::optional<core::SinkEntry>> Next() override {
    if (!read_) {
      auto listed = sink_.ListAll(prefix_);
      if (!listed.ok()) return Unexpected{listed.error()};
      entries_ = std::move(listed->entries);
      point_ = listed->point;
      read_ = true;
    }
    if (next_ == entries_.size()) return std::optional<core::SinkEntry>();
    return std::optional<core::SinkEntry>(std::move(entries_[next_++]));
  }

  int64_t point() const override { return point_; }

 private:
  ZooKeeperSink& sink_;
  const std::string prefix_;
  bool read_ = false;
  std::vector<core::SinkEntry> entries_;
  size_t next_ = 0;
  int64_t point_ = 0;
};

// --- ZooKeeperSink ------------------------------------------------------------------------------

ZooKeeperSink::ZooKeeperSink(zk::ZkClientFactory& factory, const core::Scope& scope,
                             ops::Logger& logger, ZooKeeperSinkOptions options)
    : factory_(factory),
      scope_(scope),
      logger_(logger),
      options_(std::move(options)),
      owned_root_(options_.meta_root + "/owned"),
      fence_path_(options_.meta_root + "/fence") {}

ZooKeeperSink::~ZooKeeperSink() {
  std::vector<std::shared_ptr<zk::ZkClient>> clients;
  {
    std::lock_guard lock(mutex_);
    clients = std::move(retired_);
    if (client_ != nullptr) clients.push_back(std::move(client_));
  }
  for (auto& client : clients) client->Close();
}

std::string ZooKeeperSink::RecordPath(std::string_view key) const {
  if (key == "/") return owned_root_;
  return owned_root_ + std::string(key);
}

std::shared_ptr<zk::ZkClient> ZooKeeperSink::Client() {
  std::lock_guard create_lock(create_mutex_);
  uint64_t generation;
  {
    std::lock_guard lock(mutex_);
    if (client_ != nullptr && !client_ended_) return client_;
    if (client_ != nullptr) retired_.push_back(std::move(client_));
    generation = ++client_generation_;
    client_ended_ = false;
  }
  zk::ZkEventHandlers handlers;
  handlers.on_session = [this, generation](const zk::SessionEvent& event) {
    OnSession(event, generation);
  };
  auto created = factory_.NewClient(std::move(handlers));
  if (!created.ok()) {
    logger_.Warn("cannot create a ZooKeeper client for the sink",
                 {{"error", created.error().ToString()}});
    return nullptr;
  }
  std::shared_ptr<zk::ZkClient> client = std::move(created).value();
  std::lock_guard lock(mutex_);
  if (client_generation_ == generation) client_ = client;
  return client;
}

void ZooKeeperSink::OnSession(const zk::SessionEvent& event, uint64_t generation) {
  switch (event.type) {
    case zk::SessionEventType::kExpired:
    case zk::SessionEventType::kAuthFailed:
    case zk::SessionEventType::kClosed: {
      std::lock_guard lock(mutex_);
      if (generation == client_generation_) client_ended_ = true;
      break;
    }
    default:
      break;
  }
}

core::SinkResult<ZooKeeperSink::Listing> ZooKeeperSink::ListAll(const std::string& prefix) {
  std::shared_ptr<zk::ZkClient> client = Client();
  if (client == nullptr) return Unexpected{Unavailable("no ZooKeeper client")};
  const uint64_t generation = CurrentFenceGeneration();
  BeginListing();
  bool replaced = false;
  struct EndListing {
    ZooKeeperSink& sink;
    const std::string& prefix;
    bool& replaced;
    ~EndListing() {
      if (!replaced) sink.AbandonListing();
    }
  } end_listing{*this, prefix, replaced};
  WalkOptions walk;
  walk.window = kMinMultiReadWindow;
  auto record_scope = core::Scope::Create({RecordPath(prefix)}, {});
  if (!record_scope.ok()) {
    return Unexpected{SinkError{SinkError::Code::kOther, record_scope.error(), "bad_scope"}};
  }
  auto records = WalkZkTree(*client, *record_scope, walk);
  if (!records.ok()) return Unexpected{SinkErrorOf(records.error())};
  core::Snapshot data;
  if (options_.list_owned_only) {
    std::vector<std::string> keys;
    for (const core::SourceEntry& record : records->entries) {
      std::string key = KeyOfRecord(record.key);
      if (RecordVersion(record.value) && scope_.Contains(key)) keys.push_back(std::move(key));
    }
    auto nodes = ReadNodes(*client, keys, {});
    if (!nodes.ok()) return Unexpected{SinkErrorOf(nodes.error())};
    for (size_t i = 0; i < keys.size(); ++i) {
      core::EntryState& state = (*nodes)[i];
      data.point = std::max(data.point, state.observed_at);
      if (state.exists) data.entries.push_back({keys[i], std::move(state.value), state.version});
    }
  } else {
    auto data_scope = core::Scope::Create({prefix}, Excludes());
    if (!data_scope.ok()) {
      return Unexpected{SinkError{SinkError::Code::kOther, data_scope.error(), "bad_scope"}};
    }
    auto walked = WalkZkTree(*client, *data_scope, walk);
    if (!walked.ok()) return Unexpected{SinkErrorOf(walked.error())};
    data = std::move(walked).value();
  }

  Listing listing;
  listing.point = std::max(data.point, records->point);
  std::set<std::string> owned;
  std::map<std::string, core::SinkEntry> merged;
  for (core::SourceEntry& entry : data.entries) {
    core::SinkEntry& sink_entry = merged[entry.key];
    sink_entry.key = entry.key;
    sink_entry.sink_key = entry.key;
    sink_entry.value = std::move(entry.value);
    sink_entry.version = entry.version;
  }
  for (core::SourceEntry& record : records->entries) {
    const std::optional<int64_t> version = RecordVersion(record.value);
    if (!version) continue;  // a placeholder
    std::string key = KeyOfRecord(record.key);
    if (!scope_.Contains(key)) continue;
    owned.insert(key);
    core::SinkEntry& sink_entry = merged[key];
    sink_entry.key = key;
    sink_entry.sink_key = key;
    sink_entry.owner = core::OwnerRecord{*version, record.version};
  }
  listing.entries.reserve(merged.size());
  for (auto& [key, entry] : merged) listing.entries.push_back(std::move(entry));
  ReplaceOwned(prefix, owned, generation);
  replaced = true;
  return listing;
}

std::string ZooKeeperSink::KeyOfRecord(const std::string& record_path) const {
  if (record_path.size() == owned_root_.size()) return "/";
  return record_path.substr(owned_root_.size());
}

std::vector<std::string> ZooKeeperSink::Excludes() const {
  std::vector<std::string> excludes = scope_.excludes();
  excludes.push_back(options_.meta_root);
  return excludes;
}

SinkError ZooKeeperSink::Unavailable(std::string message) const {
  return SinkError{SinkError::Code::kUnavailable, "ZooKeeper: " + std::move(message),
                   "unavailable"};
}

std::unique_ptr<core::SinkCursor> ZooKeeperSink::List(const std::string& source_prefix,
                                                      const core::ListOptions& /*options*/) {
  return std::make_unique<Cursor>(*this, source_prefix);
}

core::SinkResult<int64_t> ZooKeeperSink::CurrentPoint() {
  std::shared_ptr<zk::ZkClient> client = Client();
  if (client == nullptr) return Unexpected{Unavailable("no ZooKeeper client")};
  auto exists = zk::blocking::Exists(*client, "/");
  if (!exists.ok()) return Unexpected{SinkErrorOf(exists.error())};
  return exists->zxid;
}

core::SinkResult<std::vector<core::SinkEntry>> ZooKeeperSink::Read(
    const std::vector<std::string>& keys) {
  std::shared_ptr<zk::ZkClient> client = Client();
  if (client == nullptr) return Unexpected{Unavailable("no ZooKeeper client")};
  std::vector<std::string> record_paths;
  record_paths.reserve(keys.size());
  for (const std::string& key : keys) record_paths.push_back(RecordPath(key));
  auto nodes = ReadNodes(*client, keys, {});
  if (!nodes.ok()) return Unexpected{SinkErrorOf(nodes.error())};
  auto records = ReadNodes(*client, record_paths, {});
  if (!records.ok()) return Unexpected{SinkErrorOf(records.error())};
  std::vector<core::SinkEntry> entries(keys.size());
  for (size_t i = 0; i < keys.size(); ++i) {
    core::SinkEntry& entry = entries[i];
    entry.key = keys[i];
    entry.sink_key = keys[i];
    if ((*nodes)[i].exists) {
      entry.value = std::move((*nodes)[i].value);
      entry.version = (*nodes)[i].version;
    }
    if ((*records)[i].exists) {
      if (auto version = RecordVersion((*records)[i].value)) {
        entry.owner = core::OwnerRecord{*version, (*records)[i].version};
      }
    }
  }
  return entries;
}

bool ZooKeeperSink::IsTransientNode(std::string_view path) {
  const size_t slash = path.rfind('/');
  return path.substr(slash == std::string_view::npos ? 0 : slash + 1).starts_with(kSequenceBump);
}

int ZooKeeperSink::DefaultVariant(const core::SinkWrite& /*write*/) const { return 0; }
int ZooKeeperSink::BatchClass(int /*variant*/) const { return 0; }

core::BatchLimits ZooKeeperSink::Limits(int /*batch_class*/) const {
  core::BatchLimits limits;
  limits.max_writes = options_.max_batch_writes;
  limits.max_bytes = options_.max_batch_bytes;
  limits.overhead_bytes = kOpOverheadBytes + options_.meta_root.size();
  return limits;
}

core::WriteCost ZooKeeperSink::Cost(const core::SinkWrite& write, int /*variant*/) const {
  // The node's op and its record's, each with its path; a create also carries an ACL.
  return core::WriteCost{
      write.value.size() + 2 * write.key.size() + owned_root_.size() + 2 * kOpOverheadBytes, 2};
}

void ZooKeeperSink::ApplyAsync(std::vector<core::SinkWrite> writes, std::vector<int> /*variants*/,
                               const std::optional<core::Fence>& fence,
                               std::function<void(core::BatchResult)> done) {
  std::shared_ptr<zk::ZkClient> client = Client();
  if (client == nullptr) {
    // Never inline: answer from a thread of our own.
    callbacks_.Post([done = std::move(done), error = Unavailable("no ZooKeeper client")]() mutable {
      done(Unexpected{std::move(error)});
    });
    return;
  }
  std::optional<zk::MultiOp> fence_op;
  if (fence) {
    if (options_.fence_mode == FenceMode::kNodeExists) {
      fence_op = zk::MultiOp::Check(fence->key, -1);
    } else {
      auto version = TokenVersion(*client, *fence);
      if (!version.ok()) {
        callbacks_.Post([done = std::move(done), error = version.error()]() mutable {
          done(Unexpected{std::move(error)});
        });
        return;
      }
      fence_op = zk::MultiOp::Check(fence_path_, *version);
    }
  }
  auto batch = std::make_shared<Batch>(*this, std::move(client), std::move(writes),
                                       std::move(fence_op), std::move(done));
  batch->Start();
}

core::SinkResult<int32_t> ZooKeeperSink::TokenVersion(zk::ZkClient& client,
                                                      const core::Fence& fence) {
  std::lock_guard token_lock(token_mutex_);
  {
    std::lock_guard lock(mutex_);
    if (token_fence_ && token_fence_->key == fence.key &&
        token_fence_->revision == fence.revision && token_version_) {
      return *token_version_;
    }
  }
  // A new leadership: write the fence into the token node, so that the previous leader's
  // multis, which check the token's old version, fail from now on.
  const std::string value = fence.key + " " + std::to_string(fence.revision);
  auto set = zk::blocking::SetData(client, fence_path_, value, -1);
  int32_t version = 0;
  if (!set.ok() && set.error().code == zk::ZkErrorCode::kNoNode) {
    auto made = zk::blocking::CreateAll(client, options_.meta_root);
    if (!made.ok()) return Unexpected{SinkErrorOf(made.error())};
    auto created = zk::blocking::Create(client, fence_path_, value);
    if (!created.ok() && created.error().code != zk::ZkErrorCode::kNodeExists) {
      return Unexpected{SinkErrorOf(created.error())};
    }
    set = zk::blocking::SetData(client, fence_path_, value, -1);
  }
  if (!set.ok()) return Unexpected{SinkErrorOf(set.error())};
  version = set->stat.version;
  {
    std::lock_guard lock(mutex_);
    token_fence_ = fence;
    token_version_ = version;
    // The previous leader may have written here until this moment: what the owned set holds is
    // known complete again only after the records are read anew.
    ++fence_generation_;
    complete_prefixes_.clear();
  }
  logger_.Info("took the fencing token of this ensemble",
               {{"path", fence_path_}, {"version", version}, {"leader", fence.key}});
  if (auto loaded = LoadOwned(); !loaded.ok()) {
    logger_.Warn("cannot read the records after taking the fencing token; deletes read first",
                 {{"error", loaded.error().message}});
  }
  return version;
}

uint64_t ZooKeeperSink::CurrentFenceGeneration() const {
  std::lock_guard lock(mutex_);
  return fence_generation_;
}

void ZooKeeperSink::ReadNodeInfo(
    const std::string& path,
    std::function<void(Result<std::optional<SourceNodeInfo>, std::string>)> done) {
  std::shared_ptr<zk::ZkClient> client = Client();
  if (client == nullptr) {
    done(Unexpected{std::string("no ZooKeeper client")});
    return;
  }
  client->GetAcl(path, [done = std::move(done)](zk::ZkResult<zk::GetAclReply> reply) {
    if (reply.ok()) {
      done(std::optional<SourceNodeInfo>(SourceNodeInfo{std::move(reply->acl), reply->stat}));
    } else if (reply.error().code == zk::ZkErrorCode::kNoNode) {
      done(std::optional<SourceNodeInfo>());
    } else {
      done(Unexpected{reply.error().ToString()});
    }
  });
}

core::SinkResult<void> ZooKeeperSink::LoadOwned() {
  for (const std::string& prefix : scope_.prefixes()) {
    auto listed = ListAll(prefix);
    if (!listed.ok()) return Unexpected{listed.error()};
  }
  return {};
}

bool ZooKeeperSink::Owns(const std::string& key) const {
  std::lock_guard lock(mutex_);
  return owned_.count(key) > 0;
}

void ZooKeeperSink::NoteDeleting(const std::string& key) {
  constexpr size_t kMaxDeletedRecently = 100000;
  std::lock_guard lock(mutex_);
  if (deleted_recently_.size() >= kMaxDeletedRecently) deleted_recently_.clear();
  deleted_recently_.insert(key);
}

bool ZooKeeperSink::DeletedRecently(const std::string& key) const {
  std::lock_guard lock(mutex_);
  return deleted_recently_.count(key) > 0;
}

void ZooKeeperSink::ForgetDeleted(const std::string& key) {
  std::lock_guard lock(mutex_);
  deleted_recently_.erase(key);
}

size_t ZooKeeperSink::owned_count() const {
  std::lock_guard lock(mutex_);
  return owned_.size();
}

void ZooKeeperSink::NoteOwned(const std::string& key, bool owned) {
  std::lock_guard lock(mutex_);
  if (owned) deleted_recently_.erase(key);
  if (listings_ > 0) touched_.insert(key);
  if (owned) {
    owned_.insert(key);
  } else {
    owned_.erase(key);
  }
}

void ZooKeeperSink::ReplaceOwned(const std::string& prefix, const std::set<std::string>& keys,
                                 uint64_t fence_generation) {
  std::lock_guard lock(mutex_);
  // Keys written while the listing ran keep what their write said.
  for (auto it = owned_.lower_bound(prefix);
       it != owned_.end() && core::IsSameOrBelow(*it, prefix);) {
    it = keys.count(*it) > 0 || touched_.count(*it) > 0 ? std::next(it) : owned_.erase(it);
  }
  for (const std::string& key : keys) {
    if (touched_.count(key) == 0) owned_.insert(key);
  }
  if (fence_generation == fence_generation_) complete_prefixes_.insert(prefix);
  if (listings_ > 0 && --listings_ == 0) touched_.clear();
}

void ZooKeeperSink::BeginListing() {
  std::lock_guard lock(mutex_);
  ++listings_;
}

void ZooKeeperSink::AbandonListing() {
  std::lock_guard lock(mutex_);
  if (listings_ > 0 && --listings_ == 0) touched_.clear();
}

bool ZooKeeperSink::OwnedSetComplete() const {
  std::lock_guard lock(mutex_);
  for (const std::string& prefix : scope_.prefixes()) {
    if (complete_prefixes_.count(prefix) == 0) return false;
  }
  return true;
}

int ZooKeeperSink::CountDeleteResend(const std::string& key) {
  std::lock_guard lock(mutex_);
  return ++delete_resends_[key];
}

void ZooKeeperSink::ForgetDeleteResends(const std::string& key) {
  std::lock_guard lock(mutex_);
  delete_resends_.erase(key);
}

void ZooKeeperSink::WarnTtl(const std::string& key) {
  std::lock_guard lock(mutex_);
  if (ttl_warned_) return;
  ttl_warned_ = true;
  logger_.Warn(
      "the target does not allow TTL nodes (zookeeper.extendedTypesEnabled): TTL nodes are "
      "copied as persistent nodes",
      {{"first_key", key}});
}

}  // namespace zk2etcd::connectors

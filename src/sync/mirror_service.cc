#include "sync/mirror_service.h"

#include <algorithm>
#include <future>
#include <map>
#include <thread>
#include <utility>

#include "common/strings.h"

namespace zk2etcd::sync {

std::string_view ReconcileCauseName(ReconcileCause cause) {
  switch (cause) {
    case ReconcileCause::kStart:
      return "start";
    case ReconcileCause::kCompaction:
      return "compaction";
    case ReconcileCause::kPeriodic:
      return "periodic";
    case ReconcileCause::kRequested:
      return "requested";
  }
  return "unknown";
}

class MirrorService::Listener : public core::SourceListener {
 public:
  explicit Listener(MirrorService& service) : service_(service) {}

  // An ordered stream announces sets, never bare keys.
  void OnChange(const std::string& /*key*/) override {}

  void OnChangeSet(core::ChangeSet set) override {
    Queued queued;
    queued.point = set.point;
    queued.writes.reserve(set.changes.size());
    queued.costs.reserve(set.changes.size());
    for (core::SourceChange& change : set.changes) {
      core::SinkWrite write;
      write.type = change.exists ? core::SinkWrite::Type::kPut : core::SinkWrite::Type::kDelete;
      write.key = std::move(change.key);
      write.value = std::move(change.value);
      write.version = change.version;
      write.lease = change.lease;
      queued.costs.push_back(service_.checkpoints_.AtomicCost(write).bytes);
      queued.writes.push_back(std::move(write));
    }
    queued.arrived = service_.clock_.Now();
    std::lock_guard lock(service_.mutex_);
    service_.status_.latest_point = std::max(service_.status_.latest_point, queued.point);
    service_.queue_.push_back(std::move(queued));
    service_.wake_.notify_all();
  }

  void OnSourceEvent(const core::SourceEvent& event) override {
    std::lock_guard lock(service_.mutex_);
    service_.source_events_.push_back(event);
    service_.wake_.notify_all();
  }

 private:
  MirrorService& service_;
};

MirrorService::MirrorService(const core::Scope& scope, core::Source& source, core::Sink& sink,
                             core::CheckpointedSink& checkpoints, FencedWriter& writer,
                             core::LeaderElection* election, ops::Logger& logger,
                             const Clock& clock, MirrorServiceOptions options)
    : scope_(scope),
      source_(source),
      sink_(sink),
      checkpoints_(checkpoints),
      writer_(writer),
      election_(election),
      logger_(logger),
      clock_(clock),
      options_(std::move(options)),
      apply_failures_(
          (options_.sink_name.empty() ? std::string(sink.Name()) : options_.sink_name) + " writes",
          std::chrono::seconds(60)),
      reconciler_(scope, sink, &writer, /*ownership=*/nullptr, logger, clock),
      listener_(std::make_unique<Listener>(*this)),
      retry_backoff_(
          {.initial = options_.retry_initial, .max = options_.retry_max, .multiplier = 2.0}),
      election_driver_(election, logger, clock, mutex_, wake_,
                       {.elected_message = "elected leader: mirroring",
                        .retry = {.initial = options_.retry_initial,
                                  .max = options_.election_retry_max,
                                  .multiplier = 2.0}},
                       ElectionHooks()) {
  status_.leader = election_ == nullptr;
}

MirrorService::~MirrorService() {
  EndStopWatchdog();
  CloseSource();
}

void MirrorService::EndStopWatchdog() {
  std::thread watchdog;
  {
    std::lock_guard lock(mutex_);
    run_done_ = true;
    watchdog = std::move(stop_watchdog_);
  }
  wake_.notify_all();
  if (watchdog.joinable()) watchdog.join();
}

void MirrorService::Stop() {
  std::lock_guard lock(mutex_);
  if (!stop_) stop_at_ = clock_.Now();
  stop_ = true;
  cancel_.store(true);
  wake_.notify_all();
  if (options_.abandon_calls && !run_done_ && !stop_watchdog_.joinable()) {
    // The Run thread may wait for a batch's answer (ApplyQueued), for writes through the writer
    // (a refused batch key by key) or for a reconciliation's repairs when the stop comes, and
    // then drains: past drain_timeout the calls are abandoned and the writer stopped (its writes
    // complete), so that a destination that does not answer holds the exit up no longer (its
    // request timeouts and their retries: 51 s).
    stop_watchdog_ = std::thread([this] {
      std::unique_lock watch(mutex_);
      if (!wake_.wait_for(watch, options_.drain_timeout, [this] { return run_done_; })) {
        watch.unlock();
        options_.abandon_calls();
        writer_.Stop();
      }
    });
  }
}

bool MirrorService::Stopping() const {
  std::lock_guard lock(mutex_);
  return stop_;
}

void MirrorService::RequestReconcile() {
  std::lock_guard lock(mutex_);
  reconcile_requested_ = true;
  wake_.notify_all();
}

MirrorStatus MirrorService::Status() const {
  std::lock_guard lock(mutex_);
  MirrorStatus status = status_;
  // A lease that ended while the Run thread waits for a batch's answer (a destination that
  // stopped answering) is not leadership any more, though the step-down comes later.
  if (status.leader && election_driver_.EndingLocked()) status.leader = false;
  status.queued_change_sets = queue_.size();
  const auto now = clock_.Now();
  if (!queue_.empty()) status.oldest_queued_age = now - queue_.front().arrived;
  if (applying_since_) {
    status.oldest_queued_age =
        std::max<std::chrono::nanoseconds>(status.oldest_queued_age, now - applying_oldest_);
    status.unanswered_for = now - *applying_since_;
  }
  return status;
}

bool MirrorService::OpenSource() {
  auto checkpoint = checkpoints_.ReadCheckpoint();
  if (!checkpoint.ok()) {
    logger_.Warn("cannot read the checkpoint; retrying",
                 {{"sink", sink_.Name()}, {"error", checkpoint.error().message}});
    return false;
  }
  auto fail = [&](const core::SourceError& error, std::string_view what) {
    if (error.Fatal()) {
      fatal_ = std::string(what) + ": " + error.message;
    } else {
      logger_.Warn(std::string(what) + "; retrying", {{"error", error.message}});
    }
    return false;
  };
  std::optional<ReconcileCause> cause;
  {
    std::lock_guard lock(mutex_);
    queue_.clear();  // what a failed batch put back belongs to the closed stream
  }
  // Only the process's first opening reconciles instead of resuming (reconcile_on_resume); it
  // opens at the source's current point, as a first copy does, rather than replay into memory
  // every change since the checkpoint that the reconciliation covers anyway.
  const bool reconcile_instead = options_.reconcile_on_resume && !opened_before_;
  if (*checkpoint && reconcile_instead) {
    logger_.Info("reconciling at start instead of resuming from the checkpoint",
                 {{"checkpoint", **checkpoint}});
    cause = ReconcileCause::kStart;
  } else if (*checkpoint) {
    auto opened = source_.OpenAfter(*listener_, **checkpoint);
    if (opened.ok()) {
      logger_.Info("resuming from the checkpoint", {{"checkpoint", **checkpoint}});
      applied_point_ = **checkpoint;
      source_open_ = true;
      opened_before_ = true;
      std::lock_guard lock(mutex_);
      status_.checkpoint = applied_point_;
      status_.source_connected = true;
      return true;
    }
    if (opened.error().code != core::SourceError::Code::kCompacted) {
      return fail(opened.error(), "cannot open the source's change stream");
    }
    logger_.Warn(
        "the checkpoint's revision is compacted in the source: reconciling, then following "
        "from the snapshot",
        {{"checkpoint", **checkpoint}, {"error", opened.error().message}});
    cause = ReconcileCause::kCompaction;
  } else {
    logger_.Info("no checkpoint: initial copy");
    cause = ReconcileCause::kStart;
  }
  {
    std::lock_guard lock(mutex_);
    queue_.clear();
  }
  auto current = source_.CurrentPoint();
  if (!current.ok()) return fail(current.error(), "cannot read the source's revision");
  auto opened = source_.OpenAfter(*listener_, *current);
  if (!opened.ok()) return fail(opened.error(), "cannot open the source's change stream");
  source_open_ = true;
  opened_before_ = true;
  reconcile_needed_ = cause;
  std::lock_guard lock(mutex_);
  status_.source_connected = true;
  return true;
}

void MirrorService::CloseSource() {
  source_.Close();
  source_open_ = false;
  std::lock_guard lock(mutex_);
  queue_.clear();  // a new opening starts from the checkpoint again
  source_events_.clear();
  status_.source_connected = false;
}

void MirrorService::HandleSourceEvents() {
  std::deque<core::SourceEvent> events;
  {
    std::lock_guard lock(mutex_);
    events.swap(source_events_);
  }
  for (const core::SourceEvent& event : events) {
    switch (event.type) {
      case core::SourceEventType::kConnected:
        break;
      case core::SourceEventType::kDisconnected: {
        logger_.Warn(options_.source_name + " unreachable; retrying", {{"reason", event.reason}});
        std::lock_guard lock(mutex_);
        status_.source_connected = false;
        break;
      }
      case core::SourceEventType::kReconnected: {
        // An ordered stream resumes where it was: nothing to do but say so.
        logger_.Info(options_.source_name + " answers again", {{"reason", event.reason}});
        std::lock_guard lock(mutex_);
        status_.source_connected = true;
        break;
      }
      case core::SourceEventType::kFatal:
        fatal_ = event.reason;
        return;
      case core::SourceEventType::kCompacted:
        logger_.Warn(
            "the source's change stream fell behind its compaction: reconciling, then "
            "following from the snapshot",
            {{"reason", event.reason}, {"checkpoint", applied_point_}});
        // What already arrived is dropped: the reconciliation's snapshot holds it.
        CloseSource();
        return;  // events after this one belong to the closed stream
      case core::SourceEventType::kLost:
        logger_.Warn("the source's change stream ended; opening it again",
                     {{"reason", event.reason}});
        CloseSource();
        return;
    }
  }
}

bool MirrorService::Reconcile(ReconcileCause cause) {
  ReconcileOptions options;
  options.fix = true;
  options.cancel = &cancel_;
  options.source_window = options_.concurrent;
  options.sink_page_size = options_.sink_page_size;
  options.keep_differences = false;
  options.adopt = options_.adopt;
  options.on_progress = [this](size_t entries) {
    logger_.Info("reconciliation progress", {{"keys_read", entries}});
  };
  logger_.Info("reconciliation started", {{"cause", ReconcileCauseName(cause)}});
  auto result = reconciler_.Run(source_, options);
  bool ok = result.ok();
  if (ok) {
    const ReconcileReport& report = *result;
    // The snapshot's state is in the sink: record its point, so the stream goes on after it.
    std::promise<core::BatchResult> answered;
    checkpoints_.ApplyAtomicAsync({}, report.source_point, election_driver_.leader(),
                                  [&answered](core::BatchResult r) { answered.set_value(r); });
    core::BatchResult recorded = answered.get_future().get();
    if (!recorded.ok()) {
      logger_.Warn("cannot record the checkpoint after the reconciliation; retrying",
                   {{"error", recorded.error().message}});
      if (recorded.error().code == core::SinkError::Code::kNotLeader) {
        election_driver_.StepDown("the leadership fence failed");
      }
      ok = false;
    } else {
      applied_point_ = report.source_point;
      size_t dropped = 0;
      {
        std::lock_guard lock(mutex_);
        while (!queue_.empty() && queue_.front().point <= applied_point_) {
          queue_.pop_front();
          ++dropped;
        }
        ++status_.reconciliations;
        status_.checkpoint = applied_point_;
        status_.sink_failing = false;  // the checkpoint was written
        status_.last_reconcile_success = clock_.WallNow();
      }
      const size_t differences = report.VisibleDifferences();
      logger_.Info(
          "reconciliation done",
          {{"cause", ReconcileCauseName(cause)},
           {"source_keys", report.source_entries},
           {"sink_keys", report.sink_entries},
           {"in_sync", report.in_sync},
           {"differences", differences},
           {"put", report.fixed_puts},
           {"deleted", report.fixed_deletes},
           {"adopted", report.adopted},
           {"foreign", report.Count(Difference::Kind::kForeign)},
           {"conflict", report.Count(Difference::Kind::kConflict)},
           {"failed", report.failed},
           {"checkpoint", applied_point_},
           {"changes_covered", dropped},
           {"duration_ms", std::chrono::duration<double, std::milli>(report.duration).count()}});
      if (!report.foreign_samples.empty()) {
        logger_.Warn("keys without this mirror's ownership record are left alone (foreign)",
                     {{"keys", report.Count(Difference::Kind::kForeign)},
                      {"first", JoinCommaList(report.foreign_samples)}});
      }
      if (!report.conflict_samples.empty()) {
        logger_.Warn(
            "keys without this mirror's ownership record differ from the source: left "
            "alone (--adopt=all would overwrite them)",
            {{"keys", report.Count(Difference::Kind::kConflict)},
             {"first", JoinCommaList(report.conflict_samples)}});
      }
      if (report.unclaimed > 0 && options_.adopt == AdoptPolicy::kNone) {
        logger_.Warn(
            "keys equal to the source but without this mirror's ownership record are "
            "left alone and will not follow the source (--adopt=matching adopts them)",
            {{"keys", report.unclaimed}});
      }
      if (options_.reconcile_interval.count() > 0) {
        next_periodic_ = clock_.Now() + options_.reconcile_interval;
      }
    }
  } else if (result.error().not_leader) {
    // Its repairs failed the leadership fence (the reconciler stopped at the first): step down;
    // the next leadership reconciles.
    logger_.Info("reconciliation stopped: this replica no longer leads",
                 {{"cause", ReconcileCauseName(cause)}});
    election_driver_.StepDown("the leadership fence failed");
  } else if (!cancel_.load()) {
    logger_.Warn("reconciliation failed; retrying",
                 {{"cause", ReconcileCauseName(cause)}, {"error", result.error().message}});
  }
  if (options_.on_reconcile) options_.on_reconcile(cause, result);
  return ok;
}

void MirrorService::WaitForRate(size_t writes) {
  if (options_.rate_limiter == nullptr || writes == 0) return;
  const auto wait = options_.rate_limiter->Take(writes);
  if (wait.count() <= 0) return;
  std::unique_lock lock(mutex_);
  wake_.wait_for(lock, wait, [this] { return stop_; });
}

bool MirrorService::ApplyQueued() {
  const core::BatchLimits limits = checkpoints_.AtomicLimits();
  // Takes consecutive change sets: whole ones while they fit; a set larger than a batch alone is
  // split, only its last part carrying its point. The sets stay whole in `taken` until their
  // batch is answered, so that a failed one goes again whole (fenced writes: harmless).
  std::vector<Queued> taken;
  {
    std::lock_guard lock(mutex_);
    while (!queue_.empty() && queue_.front().point <= applied_point_) queue_.pop_front();
    if (queue_.empty()) return true;
  }
  std::map<std::string, core::SinkWrite> writes;  // by key: the last change wins
  size_t bytes = limits.overhead_bytes;
  std::map<std::string, core::SinkWrite> oversized;  // each too large for any atomic batch
  int64_t checkpoint = applied_point_;
  std::chrono::steady_clock::time_point oldest{};
  auto put_back = [&] {
    std::lock_guard lock(mutex_);
    for (auto it = taken.rbegin(); it != taken.rend(); ++it) queue_.push_front(std::move(*it));
  };
  for (;;) {
    {
      std::lock_guard lock(mutex_);
      if (queue_.empty()) break;
      // Does the whole next set fit beside what is taken?
      const Queued& next = queue_.front();
      size_t extra_writes = 0;
      size_t extra_bytes = 0;
      for (size_t i = 0; i < next.writes.size(); ++i) {
        if (writes.count(next.writes[i].key) == 0) ++extra_writes;
        extra_bytes += next.costs[i];
      }
      const bool fits = writes.size() + extra_writes <= limits.max_writes &&
                        bytes + extra_bytes <= limits.max_bytes;
      if (!fits && !taken.empty()) break;
      taken.push_back(std::move(queue_.front()));
      queue_.pop_front();
    }
    const Queued& next = taken.back();
    if (taken.size() == 1) oldest = next.arrived;
    for (size_t i = 0; i < next.writes.size(); ++i) {
      const core::SinkWrite& write = next.writes[i];
      const size_t cost = next.costs[i];
      if (cost > limits.max_bytes) {
        writes.erase(write.key);
        oversized[write.key] = write;
        continue;
      }
      oversized.erase(write.key);
      if (writes.count(write.key) == 0 &&
          (writes.size() + 1 > limits.max_writes || bytes + cost > limits.max_bytes)) {
        // This set alone overflows a batch (it is the only one taken): send what is taken now,
        // without this set's point.
        std::vector<core::SinkWrite> part;
        for (auto& [key, taken_write] : writes) part.push_back(std::move(taken_write));
        writes.clear();
        bytes = limits.overhead_bytes;
        const BatchOutcome outcome = ApplyBatch(std::move(part), checkpoint, 0, oldest);
        if (outcome == BatchOutcome::kRefused && ApplyKeyByKey(taken, oldest)) return true;
        if (outcome != BatchOutcome::kApplied) {
          put_back();
          return false;
        }
      }
      bytes += cost;
      writes[write.key] = write;
    }
    checkpoint = next.point;
  }
  if (taken.empty()) return true;
  if (!oversized.empty()) {
    std::vector<core::SinkWrite> alone;
    for (auto& [key, write] : oversized) alone.push_back(std::move(write));
    if (!ApplyThroughWriter(std::move(alone))) {
      put_back();
      return false;
    }
  }
  std::vector<core::SinkWrite> batch;
  batch.reserve(writes.size());
  for (auto& [key, write] : writes) batch.push_back(std::move(write));
  const BatchOutcome outcome = ApplyBatch(std::move(batch), checkpoint, taken.size(), oldest);
  if (outcome == BatchOutcome::kRefused && ApplyKeyByKey(taken, oldest)) return true;
  if (outcome != BatchOutcome::kApplied) {
    put_back();
    return false;
  }
  return true;
}

bool MirrorService::ApplyKeyByKey(const std::vector<Queued>& taken,
                                  std::chrono::steady_clock::time_point oldest) {
  std::map<std::string, core::SinkWrite> last;  // by key: the last change wins
  for (const Queued& set : taken) {
    for (const core::SinkWrite& write : set.writes) last[write.key] = write;
  }
  logger_.Warn("changes the destination refuses as one transaction are applied key by key",
               {{"change_sets", taken.size()}, {"keys", last.size()}, {"error", refusal_}});
  std::vector<core::SinkWrite> writes;
  writes.reserve(last.size());
  for (auto& [key, write] : last) writes.push_back(std::move(write));
  if (!ApplyThroughWriter(std::move(writes))) return false;
  // The checkpoint alone: the changes above are applied (or refused for good, and logged).
  return ApplyBatch({}, taken.back().point, taken.size(), oldest) == BatchOutcome::kApplied;
}

MirrorService::BatchOutcome MirrorService::ApplyBatch(
    std::vector<core::SinkWrite> writes, int64_t checkpoint, size_t change_sets,
    std::chrono::steady_clock::time_point oldest) {
  WaitForRate(writes.size());
  AppliedBatch batch;
  batch.change_sets = change_sets;
  batch.writes = writes.size();
  batch.checkpoint = checkpoint;
  std::vector<std::string> keys;
  keys.reserve(writes.size());
  for (const core::SinkWrite& write : writes) keys.push_back(write.key);
  const auto started = clock_.Now();
  std::promise<core::BatchResult> answered;
  {
    std::lock_guard lock(mutex_);
    applying_since_ = started;
    applying_oldest_ = oldest;
  }
  checkpoints_.ApplyAtomicAsync(std::move(writes), checkpoint, election_driver_.leader(),
                                [&answered](core::BatchResult r) { answered.set_value(r); });
  core::BatchResult result = answered.get_future().get();
  {
    std::lock_guard lock(mutex_);
    applying_since_.reset();
  }
  const auto now = clock_.Now();
  batch.duration = now - started;
  batch.delay = now - oldest;
  if (!result.ok()) {
    const core::SinkError& error = result.error();
    if (error.code == core::SinkError::Code::kNotLeader) {
      election_driver_.StepDown("the leadership fence failed");
      return BatchOutcome::kRetry;
    }
    if (error.code == core::SinkError::Code::kCancelled) {
      return BatchOutcome::kRetry;  // abandoned at a stop: nothing failed, the stop says so
    }
    if (error.code == core::SinkError::Code::kRefused && !keys.empty()) {
      // E.g. the destination's --max-request-bytes is below this batch: sent again, it would be
      // refused again, forever (ApplyKeyByKey).
      refusal_ = error.message;
      return BatchOutcome::kRefused;
    }
    // Logged when the failures start, at most once a minute while they last, and when a batch
    // applies again (ops::FailureLog): not at every retry.
    if (auto line = apply_failures_.OnFailure(now, error.message)) {
      line->LogTo(logger_, "failed_batches");
    }
    // Not counted as failed writes: the batch goes again (its writes are counted then).
    std::lock_guard lock(mutex_);
    status_.sink_failing = true;
    return BatchOutcome::kRetry;
  }
  for (size_t i = 0; i < result->size(); ++i) {
    const core::WriteAnswer& answer = (*result)[i];
    if (!answer.outcome && answer.skipped) {
      // E.g. the source's lease ended: the source deletes the key at a later point, which
      // follows.
      ++batch.absent;
      logger_.Debug("change bound to an expired lease skipped", {{"key", keys[i]}});
      continue;
    }
    if (!answer.outcome) {
      ++batch.failed;
      logger_.Error("a change could not be applied; the next reconciliation repairs it",
                    {{"key", keys[i]}, {"error", answer.error}});
      continue;
    }
    CountOutcome(*answer.outcome, batch);
    if (*answer.outcome == core::WriteOutcome::kForeign) {
      logger_.Debug("change of a foreign key left alone", {{"key", keys[i]}});
    }
  }
  if (auto line = apply_failures_.OnSuccess(now)) line->LogTo(logger_, "failed_batches");
  applied_point_ = std::max(applied_point_, checkpoint);
  retry_backoff_.Reset();
  {
    std::lock_guard lock(mutex_);
    status_.checkpoint = applied_point_;
    status_.changes_applied += batch.applied;
    status_.sink_failing = false;
  }
  if (options_.on_applied) options_.on_applied(batch);
  return BatchOutcome::kApplied;
}

bool MirrorService::ApplyThroughWriter(std::vector<core::SinkWrite> writes) {
  // The writer takes these writes from the rate limiter itself.
  AppliedBatch batch;
  batch.writes = writes.size();
  batch.checkpoint = applied_point_;  // unchanged: the next atomic batch carries it on
  const auto started = clock_.Now();
  std::vector<std::promise<WriteResult>> answers(writes.size());
  std::vector<std::string> keys;
  for (size_t i = 0; i < writes.size(); ++i) {
    keys.push_back(writes[i].key);
    writer_.Submit(std::move(writes[i]),
                   [&answer = answers[i]](const WriteResult& r) { answer.set_value(r); });
  }
  bool ok = true;
  bool not_leader = false;
  for (size_t i = 0; i < answers.size(); ++i) {
    WriteResult result = answers[i].get_future().get();
    if (result.ok()) {
      CountOutcome(*result, batch);
      continue;
    }
    if (result.error().code == WriteError::Code::kRefused) {
      ++batch.failed;
      logger_.Error("a change the sink refuses could not be applied",
                    {{"key", keys[i]}, {"error", result.error().message}});
      continue;
    }
    not_leader = not_leader || result.error().code == WriteError::Code::kNotLeader;
    ok = false;
  }
  batch.duration = clock_.Now() - started;
  if (not_leader) election_driver_.StepDown("the leadership fence failed");
  if (ok && options_.on_applied) options_.on_applied(batch);
  return ok;
}

void MirrorService::CountOutcome(core::WriteOutcome outcome, AppliedBatch& batch) {
  switch (outcome) {
    case core::WriteOutcome::kApplied:
      ++batch.applied;
      break;
    case core::WriteOutcome::kStale:
      ++batch.stale;
      break;
    case core::WriteOutcome::kForeign:
      ++batch.foreign;
      break;
    case core::WriteOutcome::kAlreadyAbsent:
      ++batch.absent;
      break;
  }
}

ElectionDriverHooks MirrorService::ElectionHooks() {
  return {.on_campaigning =
              [this] {
                std::lock_guard lock(mutex_);
                status_.campaigning = true;
              },
          .on_elected =
              [this](const core::Fence& fence, std::chrono::nanoseconds campaign_time) {
                writer_.SetLeader(fence);
                if (options_.on_elected) options_.on_elected(campaign_time);
                std::lock_guard lock(mutex_);
                status_.leader = true;
                status_.campaigning = false;
              },
          .on_deposed =
              [this] {
                // The new leader resumes from the checkpoint; so will this process if it leads
                // again.
                if (source_open_) CloseSource();
                reconcile_needed_.reset();
                std::lock_guard lock(mutex_);
                status_.sink_failing = false;  // the next leadership's writes will say
                status_.leader = false;
                status_.campaigning = false;
                status_.first_sync_done = false;
              }};
}

Result<void, std::string> MirrorService::Run() {
  if (options_.reconcile_interval.count() > 0) {
    next_periodic_ = clock_.Now() + options_.reconcile_interval;
  }
  while (!Stopping()) {
    HandleSourceEvents();
    election_driver_.Poll();
    if (fatal_) break;
    const auto now = clock_.Now();
    bool worked = false;
    if (Active() && now >= retry_at_) {
      bool ok = true;
      if (!source_open_) {
        ok = OpenSource();
        worked = true;
      }
      if (ok && source_open_) {
        {
          std::lock_guard lock(mutex_);
          if (reconcile_requested_) {
            reconcile_requested_ = false;
            if (!reconcile_needed_) reconcile_needed_ = ReconcileCause::kRequested;
          }
        }
        if (!reconcile_needed_ && options_.reconcile_interval.count() > 0 &&
            now >= next_periodic_) {
          reconcile_needed_ = ReconcileCause::kPeriodic;
        }
        if (reconcile_needed_) {
          ok = Reconcile(*reconcile_needed_);
          if (ok) reconcile_needed_.reset();
          worked = true;
        }
        if (ok && Active() && source_open_ && !reconcile_needed_) {
          bool queued = false;
          {
            std::lock_guard lock(mutex_);
            queued = !queue_.empty();
          }
          if (queued) {
            ok = ApplyQueued();
            worked = true;
          }
          if (ok) {
            std::lock_guard lock(mutex_);
            if (queue_.empty()) status_.first_sync_done = true;
          }
        }
      }
      if (fatal_) break;
      if (!ok && !Stopping()) retry_at_ = clock_.Now() + retry_backoff_.Next();
    }
    if (worked) continue;
    auto wake_at = now + std::chrono::seconds(1);
    if (clock_.Now() < retry_at_) wake_at = std::min(wake_at, retry_at_);
    if (const auto campaign_at = election_driver_.NextCampaignAt()) {
      wake_at = std::min(wake_at, std::max(now, *campaign_at));
    }
    // Only a leader with its source open reconciles: a standby would spin on a past deadline.
    if (options_.reconcile_interval.count() > 0 && Active() && source_open_) {
      wake_at = std::min(wake_at, std::max(now, next_periodic_));
    }
    std::unique_lock lock(mutex_);
    const bool can_apply = Active() && source_open_ && clock_.Now() >= retry_at_;
    wake_.wait_for(lock, wake_at - now, [&] {
      return stop_ || !source_events_.empty() || election_driver_.HasEventsLocked() ||
             reconcile_requested_ || (can_apply && !queue_.empty());
    });
  }

  // Stopping: apply what has arrived, within the drain timeout, then hand leadership over.
  if (!fatal_ && Active() && source_open_ && !reconcile_needed_) {
    // From the stop, not from now: the Run thread may have waited for a batch's answer since.
    const auto deadline = stop_at_ + options_.drain_timeout;
    for (;;) {
      {
        std::lock_guard lock(mutex_);
        if (queue_.empty()) break;
      }
      if (clock_.Now() >= deadline || !ApplyQueued()) {
        logger_.Warn(
            "changes still queued at the drain deadline; the next start resumes from "
            "the checkpoint",
            {{"checkpoint", applied_point_}});
        break;
      }
    }
  }
  EndStopWatchdog();
  if (options_.abandon_calls) options_.abandon_calls();
  if (election_ != nullptr) election_->Resign();
  CloseSource();
  if (fatal_) return Unexpected{*fatal_};
  return {};
}

}  // namespace zk2etcd::sync

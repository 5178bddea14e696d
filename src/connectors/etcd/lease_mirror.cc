#include "connectors/etcd/lease_mirror.h"

#include <algorithm>
#include <utility>
#include <vector>

#include "connectors/etcd/etcd_sink.h"
#include "connectors/etcd/fenced_txn.h"

namespace zk2etcd::connectors {

namespace {

// Whether a LeaseTimeToLive answer says the lease lives (an error that says it does not exist
// says it does not; other errors are returned as they are).
Result<bool, etcd::Error> Lives(const etcd::EtcdResult<etcd::LeaseTimeToLiveResponse>& ttl) {
  if (!ttl.ok()) {
    if (ttl.error().code == etcd::ErrorCode::kNotFound) return false;
    return Unexpected{ttl.error()};
  }
  return ttl->ttl_seconds > 0;
}

core::SinkError Expired(int64_t source_lease) {
  return core::SinkError{core::SinkError::Code::kRefused,
                         "the source lease " + EncodeZxid(source_lease) + " has expired",
                         std::string(kLeaseExpiredLabel)};
}

}  // namespace

LeaseMirror::LeaseMirror(etcd::EtcdClient& source, etcd::EtcdClient& destination,
                         std::string leases_prefix, const Clock& clock, ops::Logger& logger,
                         LeaseMirrorOptions options)
    : source_(source),
      destination_(destination),
      leases_prefix_(std::move(leases_prefix)),
      clock_(clock),
      logger_(logger),
      options_(options) {
  if (options_.background) thread_ = std::thread([this] { Run(); });
}

LeaseMirror::~LeaseMirror() { Stop(); }

std::string LeaseMirror::MappingKey(int64_t source_lease) const {
  return leases_prefix_ + EncodeZxid(source_lease);
}

std::chrono::seconds LeaseMirror::PollInterval(int64_t ttl_seconds) const {
  return std::max(options_.min_poll_interval, std::chrono::seconds(ttl_seconds / 3));
}

Result<int64_t, core::SinkError> LeaseMirror::DestinationLease(int64_t source_lease) {
  {
    std::lock_guard lock(mutex_);
    auto it = mirrored_.find(source_lease);
    if (it != mirrored_.end() && !it->second.lost) return it->second.destination;
  }
  std::lock_guard slow(slow_mutex_);
  {
    std::lock_guard lock(mutex_);
    if (stopping_) {
      return Unexpected{core::SinkError{core::SinkError::Code::kCancelled,
                                        "the lease mirror has stopped", "cancelled"}};
    }
    auto it = mirrored_.find(source_lease);
    if (it != mirrored_.end() && !it->second.lost) return it->second.destination;
  }
  // A lost destination lease is no use any more, nor is its stored mapping.
  Release(source_lease, /*delete_mapping=*/true);

  const std::string hex = EncodeZxid(source_lease);
  auto source_ttl = source_.LeaseTimeToLive(source_lease);
  auto source_lives = Lives(source_ttl);
  if (!source_lives.ok()) {
    return Unexpected{SinkErrorOf(source_lives.error(), "reading the source lease " + hex)};
  }
  if (!*source_lives) return Unexpected{Expired(source_lease)};
  const int64_t ttl = source_ttl->granted_ttl_seconds > 0 ? source_ttl->granted_ttl_seconds
                                                          : source_ttl->ttl_seconds;

  const std::string mapping_key = MappingKey(source_lease);
  etcd::RangeRequest read;
  read.key = mapping_key;
  auto stored = destination_.Range(read);
  if (!stored.ok()) {
    return Unexpected{SinkErrorOf(stored.error(), "reading the lease mapping " + mapping_key)};
  }
  if (!stored->kvs.empty()) {
    if (const std::optional<int64_t> previous = DecodeZxid(stored->kvs.front().value)) {
      auto previous_lives = Lives(destination_.LeaseTimeToLive(*previous));
      if (!previous_lives.ok()) {
        return Unexpected{SinkErrorOf(previous_lives.error(),
                                      "reading the destination lease " + EncodeZxid(*previous))};
      }
      if (*previous_lives) {
        Track(source_lease, *previous, ttl);
        return *previous;
      }
    }
  }

  auto granted = destination_.LeaseGrant(std::chrono::seconds(ttl));
  if (!granted.ok()) {
    return Unexpected{
        SinkErrorOf(granted.error(), "granting a destination lease for the source lease " + hex)};
  }
  etcd::CallOptions call;
  call.safe_to_retry = true;  // the same value again
  auto put = destination_.Put(mapping_key, EncodeZxid(granted->id), 0, call);
  if (!put.ok()) {
    (void)destination_.LeaseRevoke(granted->id);  // best effort; it expires anyway
    return Unexpected{SinkErrorOf(put.error(), "storing the lease mapping " + mapping_key)};
  }
  Track(source_lease, granted->id, ttl);
  logger_.Debug("mirroring a source lease", {{"source_lease", hex},
                                             {"destination_lease", EncodeZxid(granted->id)},
                                             {"ttl_seconds", ttl}});
  return granted->id;
}

void LeaseMirror::Track(int64_t source, int64_t destination, int64_t ttl_seconds) {
  std::unique_ptr<etcd::CallHandle> keep_alive = destination_.LeaseKeepAlive(
      destination, [this, source, destination](const etcd::Error& error) {
        // On the destination client's callback thread: only mark it. (kCancelled: the client is
        // being destroyed, not a lease that ran out.)
        if (error.code == etcd::ErrorCode::kCancelled) return;
        std::lock_guard lock(mutex_);
        auto it = mirrored_.find(source);
        if (it == mirrored_.end() || it->second.destination != destination || it->second.lost) {
          return;
        }
        it->second.lost = true;
        ++lost_;
        logger_.Warn("a destination lease was lost; its copies are gone until reconciled",
                     {{"source_lease", EncodeZxid(source)},
                      {"destination_lease", EncodeZxid(destination)},
                      {"error", error.ToString()}});
        wake_.notify_all();
      });
  std::unique_ptr<etcd::CallHandle> replaced;
  {
    std::lock_guard lock(mutex_);
    Mirrored& entry = mirrored_[source];
    replaced = std::move(entry.keep_alive);
    entry.destination = destination;
    entry.ttl_seconds = ttl_seconds;
    entry.next_check = clock_.Now() + PollInterval(ttl_seconds);
    entry.keep_alive = std::move(keep_alive);
    entry.lost = false;
  }
  if (replaced) replaced->Cancel();
}

void LeaseMirror::Release(int64_t source, bool delete_mapping) {
  std::unique_ptr<etcd::CallHandle> keep_alive;
  {
    std::lock_guard lock(mutex_);
    auto it = mirrored_.find(source);
    if (it == mirrored_.end()) return;
    keep_alive = std::move(it->second.keep_alive);
    mirrored_.erase(it);
  }
  // Outside mutex_: Cancel waits for a running callback, which takes mutex_.
  if (keep_alive) keep_alive->Cancel();
  if (delete_mapping) {
    etcd::CallOptions call;
    call.safe_to_retry = true;
    auto deleted = destination_.Delete(MappingKey(source), {}, call);
    if (!deleted.ok()) {
      logger_.Warn("cannot delete a lease mapping; the next start cleans it up",
                   {{"key", MappingKey(source)}, {"error", deleted.error().ToString()}});
    }
  }
}

void LeaseMirror::CheckSourceLeases() {
  struct Due {
    int64_t source;
    int64_t destination;
    bool lost;
  };
  std::vector<Due> due;
  {
    std::lock_guard lock(mutex_);
    const auto now = clock_.Now();
    for (auto& [source, entry] : mirrored_) {
      if (entry.lost || now >= entry.next_check) {
        due.push_back({source, entry.destination, entry.lost});
        entry.next_check = now + PollInterval(entry.ttl_seconds);
      }
    }
  }
  for (const Due& lease : due) {
    bool release = lease.lost;
    if (!release) {
      auto lives = Lives(source_.LeaseTimeToLive(lease.source));
      if (!lives.ok()) {
        logger_.Warn(
            "cannot read a source lease; its copy is kept alive meanwhile",
            {{"source_lease", EncodeZxid(lease.source)}, {"error", lives.error().ToString()}});
        continue;
      }
      release = !*lives;
    }
    if (!release) continue;
    std::lock_guard slow(slow_mutex_);
    {
      std::lock_guard lock(mutex_);
      auto it = mirrored_.find(lease.source);
      // Replaced meanwhile (a new destination lease): not this one to release.
      if (it == mirrored_.end() || it->second.destination != lease.destination) continue;
    }
    logger_.Debug("a source lease ended; its destination lease expires by itself",
                  {{"source_lease", EncodeZxid(lease.source)},
                   {"destination_lease", EncodeZxid(lease.destination)}});
    Release(lease.source, /*delete_mapping=*/true);
  }
}

Result<LeaseRecovery, core::SinkError> LeaseMirror::Recover() {
  std::lock_guard slow(slow_mutex_);
  LeaseRecovery recovery;
  auto stored = etcd::RangeAll(destination_, etcd::RangeRequest::Prefix(leases_prefix_));
  if (!stored.ok()) {
    return Unexpected{SinkErrorOf(stored.error(), "listing the lease mappings " + leases_prefix_)};
  }
  etcd::CallOptions call;
  call.safe_to_retry = true;
  for (const etcd::KeyValue& kv : stored->kvs) {
    const std::optional<int64_t> source =
        DecodeZxid(std::string_view(kv.key).substr(leases_prefix_.size()));
    const std::optional<int64_t> destination = DecodeZxid(kv.value);
    if (!source || !destination) {
      logger_.Warn("ignoring a key that is no lease mapping", {{"key", kv.key}});
      continue;
    }
    {
      std::lock_guard lock(mutex_);
      if (mirrored_.count(*source) != 0) continue;
    }
    auto source_ttl = source_.LeaseTimeToLive(*source);
    auto source_lives = Lives(source_ttl);
    if (!source_lives.ok()) {
      return Unexpected{
          SinkErrorOf(source_lives.error(), "reading the source lease " + EncodeZxid(*source))};
    }
    bool drop = false;
    if (!*source_lives) {
      ++recovery.released;
      drop = true;
    } else {
      auto destination_lives = Lives(destination_.LeaseTimeToLive(*destination));
      if (!destination_lives.ok()) {
        return Unexpected{SinkErrorOf(destination_lives.error(),
                                      "reading the destination lease " + EncodeZxid(*destination))};
      }
      if (*destination_lives) {
        const int64_t ttl = source_ttl->granted_ttl_seconds > 0 ? source_ttl->granted_ttl_seconds
                                                                : source_ttl->ttl_seconds;
        Track(*source, *destination, ttl);
        ++recovery.adopted;
      } else {
        ++recovery.expired;
        drop = true;
      }
    }
    if (drop) {
      auto deleted = destination_.Delete(kv.key, {}, call);
      if (!deleted.ok()) {
        return Unexpected{SinkErrorOf(deleted.error(), "deleting the lease mapping " + kv.key)};
      }
    }
  }
  if (recovery.adopted + recovery.expired + recovery.released > 0) {
    logger_.Info("recovered the lease mappings of a previous run",
                 {{"adopted", recovery.adopted},
                  {"expired", recovery.expired},
                  {"released", recovery.released}});
  }
  return recovery;
}

void LeaseMirror::Stop() {
  {
    std::lock_guard lock(mutex_);
    stopping_ = true;
  }
  wake_.notify_all();
  if (thread_.joinable()) thread_.join();
  std::vector<std::unique_ptr<etcd::CallHandle>> keep_alives;
  {
    std::lock_guard lock(mutex_);
    for (auto& [source, entry] : mirrored_) {
      if (entry.keep_alive) keep_alives.push_back(std::move(entry.keep_alive));
    }
  }
  for (auto& keep_alive : keep_alives) keep_alive->Cancel();
}

size_t LeaseMirror::mirrored() const {
  std::lock_guard lock(mutex_);
  return mirrored_.size();
}

uint64_t LeaseMirror::destination_leases_lost() const {
  std::lock_guard lock(mutex_);
  return lost_;
}

void LeaseMirror::Run() {
  std::unique_lock lock(mutex_);
  while (!stopping_) {
    lock.unlock();
    CheckSourceLeases();
    lock.lock();
    wake_.wait_for(lock, options_.wake_interval, [this] {
      return stopping_ || std::any_of(mirrored_.begin(), mirrored_.end(),
                                      [](const auto& entry) { return entry.second.lost; });
    });
  }
}

}  // namespace zk2etcd::connectors

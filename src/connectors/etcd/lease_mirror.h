// LeaseMirror: copies of a source etcd's leases on a destination etcd (etcd2etcd --copy-leases).
//
// A source key bound to a source lease is written on the destination bound to a destination
// lease of the same granted TTL, which this process keeps alive while the source lease lives. So
// the copies expire on the destination too when the source lease ends, and also when the mirror
// dies (nobody keeps the destination lease alive any more).
//
//   - DestinationLease(source): the destination lease of a source lease. Cached; otherwise a
//     mapping stored by a previous run (the key leases_prefix + 16 hex digits of the source lease,
//     value: 16 hex digits of the destination lease, no lease of its own) is reused while its
//     destination lease lives; otherwise a destination lease is granted with the source lease's
//     granted TTL and the mapping stored. Either way the destination lease is then kept alive.
//   - A background thread asks the source every max(1 s, TTL / 3) (on the Clock) whether each
//     source lease still lives. When it is gone, the keep-alive stops (the destination lease
//     expires by itself, one TTL later), the mapping is forgotten and its stored key deleted.
//   - Recover(), at start: the mappings a previous run stored. A pair whose two leases live is
//     adopted (kept alive again); a destination lease that expired while its source lease lives
//     means copies vanished while the mirror was down: counted, so the job reconciles.
//
// Thread-safety: every method is thread-safe. DestinationLease and Recover make blocking etcd
// calls (never on an etcd client's callback thread); DestinationLease's cached path takes one
// lock. REQUIRES: both clients, the clock and the logger outlive the LeaseMirror.
#pragma once

#include <chrono>
#include <condition_variable>
#include <cstddef>
#include <cstdint>
#include <map>
#include <memory>
#include <mutex>
#include <optional>
#include <string>
#include <string_view>
#include <thread>

#include "common/clock.h"
#include "common/result.h"
#include "core/sink.h"
#include "etcd/etcd_client.h"
#include "ops/log.h"

namespace zk2etcd::connectors {

// The label of the SinkError DestinationLease returns when the source lease no longer exists:
// the source has deleted, or is about to delete, the keys bound to it.
inline constexpr std::string_view kLeaseExpiredLabel = "lease_expired";

// Maps a source lease to the destination lease that copies of its keys are bound to.
// Thread-safe.
class LeaseMapper {
 public:
  virtual ~LeaseMapper() = default;
  // The destination lease for `source_lease` (!= 0). Errors: kRefused with label
  // kLeaseExpiredLabel when the source lease is gone; SinkErrorOf of an etcd error otherwise.
  virtual Result<int64_t, core::SinkError> DestinationLease(int64_t source_lease) = 0;
};

// What Recover found among the mappings stored by a previous run.
struct LeaseRecovery {
  size_t adopted = 0;   // both leases live: the destination lease is kept alive again
  size_t expired = 0;   // the destination lease expired while the source lease lives
  size_t released = 0;  // the source lease is gone: the mapping was deleted
  // Copies of live source keys vanished from the destination: the job should reconcile.
  bool needs_reconcile() const { return expired > 0; }
};

struct LeaseMirrorOptions {
  // The longest the background thread sleeps (real time) before it looks at the Clock again.
  std::chrono::milliseconds wake_interval{500};
  // The shortest interval between two looks at one source lease (on the Clock).
  std::chrono::seconds min_poll_interval{1};
  // false: no background thread; only calls of CheckSourceLeases look at the source (tests).
  bool background = true;
};

class LeaseMirror final : public LeaseMapper {
 public:
  // Starts the background thread (options.background). `leases_prefix`:
  // MirrorKeysFor(...).leases_prefix.
  LeaseMirror(etcd::EtcdClient& source, etcd::EtcdClient& destination, std::string leases_prefix,
              const Clock& clock, ops::Logger& logger, LeaseMirrorOptions options = {});
  // Stop().
  ~LeaseMirror() override;
  LeaseMirror(const LeaseMirror&) = delete;
  LeaseMirror& operator=(const LeaseMirror&) = delete;

  Result<int64_t, core::SinkError> DestinationLease(int64_t source_lease) override;

  // Looks at every stored mapping (see the top of this file). Errors: SinkErrorOf of the first
  // etcd error (the mappings looked at before it keep what was done to them).
  Result<LeaseRecovery, core::SinkError> Recover();

  // Asks the source about every lease whose look is due on the Clock, and stops mirroring the
  // ones that are gone. The background thread calls it; tests with a FakeClock call it directly.
  void CheckSourceLeases();

  // Joins the background thread and stops every keep-alive (the destination leases then expire
  // by themselves). Idempotent. Afterwards DestinationLease answers from the cache only (kCancelled
  // otherwise).
  void Stop();

  // Source leases mirrored now.
  size_t mirrored() const;
  // Destination leases lost while mirrored (not renewed within their TTL, e.g. the destination
  // was unreachable): their copies vanished, so the job should reconcile. Never decreases.
  uint64_t destination_leases_lost() const;

  // The stored mapping's key for `source_lease`.
  std::string MappingKey(int64_t source_lease) const;

 private:
  struct Mirrored {
    int64_t destination = 0;
    int64_t ttl_seconds = 0;  // the granted TTL
    std::chrono::steady_clock::time_point next_check;
    std::unique_ptr<etcd::CallHandle> keep_alive;
    bool lost = false;  // the destination lease was not renewed: not to be handed out again
  };

  // Starts the keep-alive of `destination` and caches the pair. REQUIRES: slow_mutex_ held.
  void Track(int64_t source, int64_t destination, int64_t ttl_seconds);
  // Forgets `source` (cancels its keep-alive outside mutex_) and deletes its stored mapping.
  void Release(int64_t source, bool delete_mapping);
  std::chrono::seconds PollInterval(int64_t ttl_seconds) const;
  void Run();

  etcd::EtcdClient& source_;
  etcd::EtcdClient& destination_;
  const std::string leases_prefix_;
  const Clock& clock_;
  ops::Logger& logger_;
  const LeaseMirrorOptions options_;

  // Serialises the slow paths (lookups, grants, releases), so that a lease is granted once.
  std::mutex slow_mutex_;
  mutable std::mutex mutex_;
  std::condition_variable wake_;
  std::map<int64_t, Mirrored> mirrored_;  // GUARDED_BY(mutex_), by source lease
  uint64_t lost_ = 0;                     // GUARDED_BY(mutex_)
  bool stopping_ = false;                 // GUARDED_BY(mutex_)
  std::thread thread_;
};

}  // namespace zk2etcd::connectors

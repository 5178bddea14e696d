// The etcd2etcd job's wiring: an etcd source (EtcdSource over --prefix), an etcd sink on the
// destination with the mirror's key layout and checkpoint (EtcdSink, KeyLayout::ForMirror), with
// --copy-leases a LeaseMirror, and with --leader-elect an election on the destination, all named
// by MirrorKeysFor(--meta-prefix, --name), built from a validated Etcd2EtcdConfig. The
// `etcd2etcd sync` command runs sync::MirrorService on it, `etcd2etcd diff` sync::Reconciler.
//
// Not thread-safe to build; the objects it returns are thread-safe as their headers say. The two
// clients, the logger and the clock passed in must outlive the job. Members are destroyed in
// reverse order: the election, the sink, then the lease mirror it maps through.
#pragma once

#include <memory>
#include <optional>
#include <string>

#include "cli/etcd2etcd_config.h"
#include "common/clock.h"
#include "common/result.h"
#include "connectors/etcd/etcd_election.h"
#include "connectors/etcd/etcd_sink.h"
#include "connectors/etcd/etcd_source.h"
#include "connectors/etcd/key_layout.h"
#include "connectors/etcd/lease_mirror.h"
#include "core/scope.h"
#include "etcd/etcd_client.h"
#include "ops/log.h"

namespace zk2etcd::cli {

struct Etcd2EtcdJobOptions {
  // False: a snapshot-only source (diff): no watch.
  bool change_stream = true;
  // Build the election (sync with --leader-elect).
  bool election = true;
};

struct Etcd2EtcdJob {
  std::unique_ptr<core::Scope> scope;  // every key starting with --prefix
  connectors::MirrorKeys keys;         // the mirror's own keys on the destination
  std::unique_ptr<connectors::KeyLayout> layout;
  std::unique_ptr<connectors::EtcdSource> source;
  std::unique_ptr<connectors::LeaseMirror> leases;  // null without --copy-leases
  std::unique_ptr<connectors::EtcdSink> sink;
  std::unique_ptr<connectors::EtcdElection> election;  // null without an election
};

// Fails (one line) only when the layout refuses the prefixes, which validation already checks.
Result<Etcd2EtcdJob, std::string> MakeEtcd2EtcdJob(const Etcd2EtcdConfig& config,
                                                   etcd::EtcdClient& source,
                                                   etcd::EtcdClient& destination,
                                                   ops::Logger& logger, const Clock& clock,
                                                   const Etcd2EtcdJobOptions& options);

// Another mirror (another --name under the same --meta-prefix) whose ownership records cover keys
// of this mirror's destination range: adopting there would take that mirror's keys, so `sync`
// and `diff --fix` refuse to adopt while one does. The mirrors are found by skipping from one
// name to the next (a request each, keys only); one more request each looks for a record.
// Returns the first such mirror's name, nullopt when none, or the error of a request
// (kPermissionDenied when the destination user may not read the whole --meta-prefix). Each
// request walks the rest of --meta-prefix in etcd's index (etcd counts the range even with a
// limit): a cost paid at start, never on the change path.
Result<std::optional<std::string>, etcd::Error> OtherMirrorOwningKeysInRange(
    etcd::EtcdClient& destination, const Etcd2EtcdConfig& config);
// OtherMirrorOwningKeysInRange for a mirror about to adopt: a destination user whose role does
// not cover the whole --meta-prefix cannot list the other mirrors, which is logged (the check did
// not run) and answered as none; other errors are returned.
Result<std::optional<std::string>, etcd::Error> OtherMirrorUnlessForbidden(
    etcd::EtcdClient& destination, const Etcd2EtcdConfig& config, ops::Logger& logger);
// The refusal for OtherMirrorOwningKeysInRange's `other`: what the overlap is, and the ways out.
std::string OtherMirrorMessage(const Etcd2EtcdConfig& config, const std::string& other);

}  // namespace zk2etcd::cli

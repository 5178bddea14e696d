// A candidate in an etcd election, run as its own process by the integration test that kills the
// leader with SIGKILL (gRPC and fork do not mix, so the test starts this program instead of
// forking itself). It grants a lease, keeps it alive, campaigns, prints "LEADER <key>" once
// elected and then waits to be killed.
//
// Usage: zk2etcd_etcd_election_candidate <endpoint> <election name> <lease TTL s> <value>
#include <unistd.h>

#include <cstdio>
#include <cstdlib>
#include <string>

#include "common/clock.h"
#include "etcd/grpc_etcd_client.h"

int main(int argc, char** argv) {
  using zk2etcd::etcd::Error;
  if (argc != 5) {
    std::fprintf(stderr, "usage: %s <endpoint> <election name> <lease TTL s> <value>\n", argv[0]);
    return 2;
  }
  zk2etcd::SystemClock clock;
  zk2etcd::etcd::GrpcEtcdClientOptions options;
  options.endpoints = {argv[1]};
  auto client = zk2etcd::etcd::NewGrpcEtcdClient(options, clock);
  if (!client.ok()) {
    std::fprintf(stderr, "connect: %s\n", client.error().ToString().c_str());
    return 1;
  }
  auto lease = (*client)->LeaseGrant(std::chrono::seconds(std::atoi(argv[3])));
  if (!lease.ok()) {
    std::fprintf(stderr, "lease: %s\n", lease.error().ToString().c_str());
    return 1;
  }
  auto keepalive = (*client)->LeaseKeepAlive(lease->id, [](const Error& error) {
    std::fprintf(stderr, "lease lost: %s\n", error.ToString().c_str());
    std::_Exit(3);
  });
  auto leader = (*client)->CampaignAndWait(argv[2], lease->id, argv[4]);
  if (!leader.ok()) {
    std::fprintf(stderr, "campaign: %s\n", leader.error().ToString().c_str());
    return 1;
  }
  std::printf("LEADER %s\n", leader->key.c_str());
  std::fflush(stdout);
  while (true) pause();
}

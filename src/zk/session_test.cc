// The session state machine driven by a fake clock: no sockets, no sleeping.
#include "zk/session.h"

#include <gtest/gtest.h>

#include "common/clock.h"

namespace zk2etcd::zk {
namespace {

using std::chrono::milliseconds;
using Action = SessionMachine::Action;

std::vector<ServerAddress> Servers(int n) {
  std::vector<ServerAddress> servers;
  for (int i = 0; i < n; ++i) servers.push_back(ServerAddress{"h" + std::to_string(i), 2181});
  return servers;
}

TEST(HostListTest, ZeroRandomnessKeepsOrderAndCycles) {
  HostList hosts(Servers(3), [] { return uint64_t{0}; });
  EXPECT_EQ(hosts.Next().host, "h0");
  EXPECT_EQ(hosts.Next().host, "h1");
  EXPECT_EQ(hosts.Next().host, "h2");
  EXPECT_EQ(hosts.Next().host, "h0");
}

TEST(HostListTest, ShuffleIsAPermutationDrivenByTheSource) {
  uint64_t state = 12345;
  auto random = [&state] {
    state = state * 6364136223846793005ULL + 1442695040888963407ULL;
    return state >> 11;
  };
  bool some_order_changed = false;
  for (int round = 0; round < 20; ++round) {
    HostList hosts(Servers(5), random);
    std::vector<std::string> seen;
    for (int i = 0; i < 5; ++i) seen.push_back(hosts.Next().host);
    if (seen != std::vector<std::string>{"h0", "h1", "h2", "h3", "h4"}) some_order_changed = true;
    std::sort(seen.begin(), seen.end());
    EXPECT_EQ(seen, (std::vector<std::string>{"h0", "h1", "h2", "h3", "h4"}));
  }
  EXPECT_TRUE(some_order_changed);
}

TEST(HostListTest, RoundFailedAfterEveryServerFailed) {
  HostList hosts(Servers(2), [] { return uint64_t{0}; });
  EXPECT_FALSE(hosts.RoundFailed());
  hosts.OnAttemptFailed();
  EXPECT_FALSE(hosts.RoundFailed());
  hosts.OnAttemptFailed();
  EXPECT_TRUE(hosts.RoundFailed());
  hosts.OnConnected();
  EXPECT_FALSE(hosts.RoundFailed());
}

class SessionMachineTest : public ::testing::Test {
 protected:
  SessionMachine Machine(milliseconds timeout = milliseconds(9000), size_t servers = 1,
                         bool local_expiry = true) {
    return SessionMachine(SessionMachine::Config{timeout, servers, local_expiry});
  }
  proto::ConnectResponse Response(int64_t session_id, int32_t timeout_ms) {
    return proto::ConnectResponse{0, timeout_ms, session_id, std::string(16, 's'), false};
  }
  FakeClock clock_;
};

TEST_F(SessionMachineTest, FirstHandshakeConnectsWithTheNegotiatedTimeout) {
  SessionMachine session = Machine();
  const auto request = session.BeginAttempt(clock_.Now());
  EXPECT_EQ(request.session_id, 0);
  EXPECT_EQ(request.timeout_ms, 9000);
  EXPECT_EQ(request.password.size(), 16u);
  const SessionEvent event = session.OnConnectResponse(Response(0x42, 6000), clock_.Now(), "h:1");
  EXPECT_EQ(event.type, SessionEventType::kConnected);
  EXPECT_EQ(event.session_id, 0x42);
  EXPECT_EQ(event.negotiated_timeout, milliseconds(6000));
  EXPECT_EQ(session.phase(), SessionMachine::Phase::kConnected);
  EXPECT_EQ(session.ping_interval(), milliseconds(2000));
  EXPECT_EQ(session.read_timeout(), milliseconds(4000));
}

TEST_F(SessionMachineTest, PingsAtAThirdAndDeclaresDeadAtTwoThirds) {
  SessionMachine session = Machine();
  session.BeginAttempt(clock_.Now());
  session.OnConnectResponse(Response(1, 6000), clock_.Now(), "h:1");
  EXPECT_EQ(session.Poll(clock_.Now()), Action::kNone);
  EXPECT_EQ(session.NextDeadline(clock_.Now()), clock_.Now() + milliseconds(2000));
  clock_.Advance(milliseconds(1999));
  EXPECT_EQ(session.Poll(clock_.Now()), Action::kNone);
  clock_.Advance(milliseconds(1));
  EXPECT_EQ(session.Poll(clock_.Now()), Action::kSendPing);
  session.OnPingSent(clock_.Now());
  EXPECT_EQ(session.Poll(clock_.Now()), Action::kNone) << "one ping per interval";
  // The server answers nothing: dead at two thirds of the timeout after the last receive.
  clock_.Advance(milliseconds(1999));
  EXPECT_EQ(session.Poll(clock_.Now()), Action::kNone);
  clock_.Advance(milliseconds(1));
  EXPECT_EQ(session.Poll(clock_.Now()), Action::kConnectionDead);
}

TEST_F(SessionMachineTest, TrafficPostponesPings) {
  SessionMachine session = Machine();
  session.BeginAttempt(clock_.Now());
  session.OnConnectResponse(Response(1, 6000), clock_.Now(), "h:1");
  for (int i = 0; i < 10; ++i) {
    clock_.Advance(milliseconds(1000));
    session.OnSend(clock_.Now());
    session.OnReceive(clock_.Now());
    EXPECT_EQ(session.Poll(clock_.Now()), Action::kNone);
  }
}

TEST_F(SessionMachineTest, ReconnectKeepsTheSessionAndSendsItsCredentials) {
  SessionMachine session = Machine();
  session.BeginAttempt(clock_.Now());
  session.OnConnectResponse(Response(0x42, 6000), clock_.Now(), "h:1");
  session.OnZxid(0x100000007);
  session.OnZxid(0x100000003);  // never goes back
  const SessionEvent lost = session.OnConnectionLost(clock_.Now(), "h:1", "reset");
  EXPECT_EQ(lost.type, SessionEventType::kDisconnected);
  EXPECT_EQ(lost.reason, "reset");
  const auto request = session.BeginAttempt(clock_.Now());
  EXPECT_EQ(request.session_id, 0x42);
  EXPECT_EQ(request.password, std::string(16, 's'));
  EXPECT_EQ(request.last_zxid_seen, 0x100000007);
  const SessionEvent again = session.OnConnectResponse(Response(0x42, 6000), clock_.Now(), "h:2");
  EXPECT_EQ(again.type, SessionEventType::kReconnected);
  EXPECT_EQ(again.server, "h:2");
}

TEST_F(SessionMachineTest, ServerSaysExpired) {
  SessionMachine session = Machine();
  session.BeginAttempt(clock_.Now());
  session.OnConnectResponse(Response(0x42, 6000), clock_.Now(), "h:1");
  session.OnConnectionLost(clock_.Now(), "h:1", "reset");
  session.BeginAttempt(clock_.Now());
  const SessionEvent event = session.OnConnectResponse(Response(0, 0), clock_.Now(), "h:1");
  EXPECT_EQ(event.type, SessionEventType::kExpired);
  EXPECT_EQ(event.session_id, 0x42);
  EXPECT_NE(event.reason.find("0x42"), std::string::npos) << event.reason;
  EXPECT_TRUE(session.terminal());
  EXPECT_EQ(session.Poll(clock_.Now()), Action::kNone);
}

TEST_F(SessionMachineTest, UnreachableForTheWholeTimeoutExpiresLocally) {
  SessionMachine session = Machine(milliseconds(9000), 2);
  session.BeginAttempt(clock_.Now());
  session.OnConnectResponse(Response(7, 3000), clock_.Now(), "h:1");
  clock_.Advance(milliseconds(2000));
  session.OnConnectionLost(clock_.Now(), "h:1", "dead");
  session.BeginAttempt(clock_.Now());
  // The first attempt gets a third of the timeout (less than 2 s here).
  EXPECT_EQ(session.connect_timeout(), milliseconds(1000));
  EXPECT_EQ(session.NextDeadline(clock_.Now()), clock_.Now() + milliseconds(1000))
      << "expiry is due 3000 ms after the last receive";
  clock_.Advance(milliseconds(999));
  EXPECT_EQ(session.Poll(clock_.Now()), Action::kNone);
  clock_.Advance(milliseconds(1));
  EXPECT_EQ(session.Poll(clock_.Now()), Action::kExpire);
  const SessionEvent event = session.Expire("gone");
  EXPECT_EQ(event.type, SessionEventType::kExpired);
  EXPECT_EQ(event.session_id, 7);
}

TEST_F(SessionMachineTest, WithoutLocalExpiryOnlyTheAttemptTimesOut) {
  SessionMachine session = Machine(milliseconds(9000), 1, /*local_expiry=*/false);
  session.BeginAttempt(clock_.Now());
  session.OnConnectResponse(Response(7, 3000), clock_.Now(), "h:1");
  session.OnConnectionLost(clock_.Now(), "h:1", "dead");
  session.BeginAttempt(clock_.Now());
  clock_.Advance(milliseconds(999));
  EXPECT_EQ(session.Poll(clock_.Now()), Action::kNone);
  clock_.Advance(milliseconds(1));  // min(2 s, 3000 / 3)
  EXPECT_EQ(session.Poll(clock_.Now()), Action::kConnectTimeout);
  session.OnAttemptFailed();
  clock_.Advance(milliseconds(60000));
  EXPECT_EQ(session.Poll(clock_.Now()), Action::kNone);
}

TEST_F(SessionMachineTest, FirstConnectionNeverExpiresButAttemptsTimeOut) {
  SessionMachine session = Machine(milliseconds(3000), 3);
  session.BeginAttempt(clock_.Now());
  EXPECT_EQ(session.connect_timeout(), milliseconds(1000));
  clock_.Advance(milliseconds(1000));
  EXPECT_EQ(session.Poll(clock_.Now()), Action::kConnectTimeout);
  session.OnAttemptFailed();
  clock_.Advance(milliseconds(100000));
  EXPECT_EQ(session.Poll(clock_.Now()), Action::kNone) << "no session yet, nothing to expire";
}

TEST_F(SessionMachineTest, ConnectTimeoutStartsShortAndDoublesAfterTimeouts) {
  SessionMachine session = Machine(milliseconds(30000), 1);
  std::vector<int64_t> timeouts;
  for (int i = 0; i < 6; ++i) {
    session.BeginAttempt(clock_.Now());
    timeouts.push_back(std::chrono::duration_cast<milliseconds>(session.connect_timeout()).count());
    session.OnAttemptFailed(/*timed_out=*/true);
  }
  // Up to min(30000 / 1 server, 2/3 of 30000).
  EXPECT_EQ(timeouts, (std::vector<int64_t>{2000, 4000, 8000, 16000, 20000, 20000}));
  session.OnAttemptFailed(/*timed_out=*/false);  // a refusal does not change it
  EXPECT_EQ(session.connect_timeout(), milliseconds(20000));
  session.BeginAttempt(clock_.Now());
  session.OnConnectResponse(Response(5, 30000), clock_.Now(), "h:1");
  EXPECT_EQ(session.connect_timeout(), milliseconds(2000)) << "a handshake resets it";

  SessionMachine many = Machine(milliseconds(30000), 10);
  EXPECT_EQ(many.connect_timeout(), milliseconds(2000));
  many.OnAttemptFailed(true);
  EXPECT_EQ(many.connect_timeout(), milliseconds(3000)) << "30000 / 10 servers";

  SessionMachine fixed(SessionMachine::Config{milliseconds(30000), 1, true, milliseconds(700)});
  fixed.OnAttemptFailed(true);
  EXPECT_EQ(fixed.connect_timeout(), milliseconds(700));
}

TEST(FormatSessionIdTest, Hex) { EXPECT_EQ(FormatSessionId(0x1000a2b3c), "0x1000a2b3c"); }

}  // namespace
}  // namespace zk2etcd::zk

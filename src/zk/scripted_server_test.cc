// AsioZkClient against scripted loopback servers: the protocol situations a real server produces
// only rarely (garbage, expiry answers, silence, old servers without multiRead), made exact.
#include <gtest/gtest.h>

#include <deque>
#include <future>
#include <mutex>

#include "common/wait_for_testing.h"
#include "ops/log.h"
#include "zk/asio_zk_client.h"
#include "zk/event_recorder_for_test.h"
#include "zk/scripted_server_for_test.h"

namespace zk2etcd::zk {
namespace {

using std::chrono::milliseconds;
using std::chrono::seconds;
using testing::EventRecorder;
using testing::HeaderOf;
using testing::ScriptedConnection;
using testing::ScriptedServer;

constexpr int32_t kNoNode = -101;

std::string GetDataBody(std::string_view data, int64_t mzxid = 5) {
  std::string body;
  JuteWriter w(body);
  w.WriteBuffer(data);
  Stat stat;
  stat.czxid = 1;
  stat.mzxid = mzxid;
  stat.data_length = static_cast<int32_t>(data.size());
  proto::WriteStat(w, stat);
  return body;
}

std::string Children2Body(const std::vector<std::string>& children) {
  std::string body;
  JuteWriter w(body);
  w.WriteStringVector(children);
  proto::WriteStat(w, Stat{});
  return body;
}

// Answers requests until the connection ends: getData -> "data:<path>", getChildren2 -> two
// children, exists -> NoNode, ping -> pong, close -> ok; `zxid` grows with each answer.
void ServeBasics(ScriptedConnection& c, int64_t* zxid,
                 const std::function<bool(const proto::RequestHeader&, JuteReader&)>& custom = {}) {
  while (auto frame = c.ReadFrame(seconds(30))) {
    JuteReader body("");
    const proto::RequestHeader header = HeaderOf(*frame, &body);
    if (custom && custom(header, body)) continue;
    std::string path;
    switch (static_cast<proto::OpCode>(header.type)) {
      case proto::OpCode::kPing:
        c.Reply(proto::kPingXid, *zxid, 0);
        break;
      case proto::OpCode::kGetData:
        body.ReadBuffer(&path);
        c.Reply(header.xid, ++*zxid, 0, GetDataBody("data:" + path));
        break;
      case proto::OpCode::kGetChildren2:
        c.Reply(header.xid, ++*zxid, 0, Children2Body({"x", "y"}));
        break;
      case proto::OpCode::kExists:
        c.Reply(header.xid, ++*zxid, kNoNode);
        break;
      case proto::OpCode::kAuth:
        c.Reply(proto::kAuthXid, 0, 0);
        break;
      case proto::OpCode::kSetWatches2:
        c.Reply(proto::kSetWatchesXid, *zxid, 0);
        break;
      case proto::OpCode::kCloseSession:
        c.Reply(header.xid, *zxid, 0);
        return;
      default:
        c.Reply(header.xid, *zxid, -6);  // unimplemented
        break;
    }
  }
}

ZkClientOptions Options(std::string connect_string, milliseconds timeout = milliseconds(6000)) {
  ZkClientOptions options;
  options.connect_string = std::move(connect_string);
  options.session_timeout = timeout;
  options.random = [] { return uint64_t{0}; };  // servers in the given order, no retry jitter
  options.max_reconnect_delay = milliseconds(50);
  return options;
}

std::unique_ptr<ZkClient> Connect(ZkClientOptions options, EventRecorder& recorder) {
  auto client = NewAsioZkClient(std::move(options), recorder.Handlers());
  EXPECT_TRUE(client.ok());
  return client.ok() ? std::move(client).value() : nullptr;
}

TEST(ScriptedServerTest, GarbageHandshakeIsAClearErrorAndTheNextServerIsTried) {
  std::atomic<bool> closed_by_client{false};
  ScriptedServer garbage([&](ScriptedConnection& c, int) {
    c.ReadFrame();
    c.Write(
        std::string("\x7f\xff\xff\xff"
                    "garbage",
                    11));  // a 2 GiB frame
    closed_by_client = c.WaitForClose(seconds(10));
  });
  int64_t zxid = 100;
  ScriptedServer good([&](ScriptedConnection& c, int) {
    if (!c.Handshake(0x51, 6000)) return;
    ServeBasics(c, &zxid);
  });
  auto sink = std::make_shared<ops::MemoryLogSink>();
  SystemClock clock;
  ops::Logger logger(sink, ops::LogFormat::kJson, ops::LogLevel::kDebug, clock);
  ZkClientOptions options = Options(garbage.address() + "," + good.address());
  options.logger = &logger;
  EventRecorder recorder;
  auto client = Connect(options, recorder);
  ASSERT_TRUE(recorder.WaitForSession(SessionEventType::kConnected, seconds(20)));
  EXPECT_EQ(recorder.LastSession(SessionEventType::kConnected).server, good.address());
  const SessionInfo info = client->session();
  EXPECT_EQ(info.session_id, 0x51);
  EXPECT_NE(info.last_error.find("frame length 2147483647 exceeds the limit"), std::string::npos)
      << info.last_error;
  EXPECT_NE(info.last_error.find(garbage.address()), std::string::npos) << info.last_error;
  auto reply = blocking::GetData(*client, "/a");
  ASSERT_TRUE(reply.ok()) << reply.error().message;
  EXPECT_EQ(reply->data, "data:/a");
  // The server's thread sees the close on its own time (it polls every 50 ms): wait for it, and
  // before Close(), so that only the client's own handling of the garbage can have closed it.
  EXPECT_TRUE(WaitFor([&] { return closed_by_client.load(); }, seconds(10)))
      << "the client must close the connection that sent garbage";
  client->Close();
  bool logged = false;
  for (const auto& line : sink->Lines()) {
    logged |= line.find("exceeds the limit") != std::string::npos;
  }
  EXPECT_TRUE(logged);
}

TEST(ScriptedServerTest, MalformedReplyFailsTheRequestAndTheSessionResumesElsewhere) {
  std::mutex mutex;
  std::vector<proto::ConnectRequest> handshakes;
  int64_t zxid = 10;
  ScriptedServer server([&](ScriptedConnection& c, int index) {
    auto request = c.Handshake(0x77, 6000, std::string(16, 'k'));
    if (!request) return;
    {
      std::lock_guard lock(mutex);
      handshakes.push_back(*request);
    }
    if (index == 0) {
      auto frame = c.ReadFrame();
      if (!frame) return;
      const auto header = HeaderOf(*frame);
      std::string body;
      JuteWriter w(body);
      w.WriteInt32(1 << 30);  // a data buffer that claims 1 GiB inside a small frame
      c.Reply(header.xid, 11, 0, body);
      c.WaitForClose(seconds(10));
      return;
    }
    ServeBasics(c, &zxid);
  });
  EventRecorder recorder;
  auto client = Connect(Options(server.address()), recorder);
  auto bad = blocking::GetData(*client, "/a");
  ASSERT_FALSE(bad.ok());
  EXPECT_EQ(bad.error().code, ZkErrorCode::kMarshalling);
  EXPECT_NE(bad.error().message.find("malformed reply to get /a"), std::string::npos)
      << bad.error().message;
  ASSERT_TRUE(recorder.WaitForSession(SessionEventType::kReconnected, seconds(20)));
  const SessionEvent lost = recorder.LastSession(SessionEventType::kDisconnected);
  EXPECT_NE(lost.reason.find("exceeds"), std::string::npos) << lost.reason;
  auto good = blocking::GetData(*client, "/b");
  ASSERT_TRUE(good.ok()) << good.error().message;
  EXPECT_EQ(good->data, "data:/b");
  client->Close();
  std::lock_guard lock(mutex);
  ASSERT_EQ(handshakes.size(), 2u);
  EXPECT_EQ(handshakes[0].session_id, 0);
  EXPECT_EQ(handshakes[1].session_id, 0x77) << "the same session is resumed";
  EXPECT_EQ(handshakes[1].password, std::string(16, 'k'));
  EXPECT_EQ(handshakes[1].last_zxid_seen, 11);
}

TEST(ScriptedServerTest, ServerSayingExpiredEndsTheClient) {
  ScriptedServer server([&](ScriptedConnection& c, int index) {
    if (index == 0) {
      c.Handshake(0x99, 6000);
      return;  // drop the connection right away
    }
    c.Handshake(0, 0);  // "expired"
    c.WaitForClose(seconds(5));
  });
  EventRecorder recorder;
  auto client = Connect(Options(server.address()), recorder);
  ASSERT_TRUE(recorder.WaitForSession(SessionEventType::kExpired, seconds(20)));
  const SessionEvent expired = recorder.LastSession(SessionEventType::kExpired);
  EXPECT_EQ(expired.session_id, 0x99);
  EXPECT_NE(expired.reason.find("expired"), std::string::npos) << expired.reason;
  EXPECT_EQ(client->session().state, SessionState::kExpired);
  auto after = blocking::GetData(*client, "/a");
  ASSERT_FALSE(after.ok());
  EXPECT_EQ(after.error().code, ZkErrorCode::kSessionExpired);
  client->Close();
  const auto sessions = recorder.sessions();
  ASSERT_FALSE(sessions.empty());
  EXPECT_EQ(sessions.back().type, SessionEventType::kClosed);
}

TEST(ScriptedServerTest, WindowBoundsTheRequestsInFlight) {
  std::atomic<size_t> max_outstanding{0};
  std::atomic<size_t> answered{0};
  ScriptedServer server([&](ScriptedConnection& c, int) {
    if (!c.Handshake(1, 6000)) return;
    std::deque<int32_t> outstanding;
    while (true) {
      // Take everything the client has sent, then answer the oldest request.
      auto frame = c.ReadFrame(outstanding.empty() ? seconds(10) : milliseconds(20));
      if (frame) {
        const auto header = HeaderOf(*frame);
        if (header.type == static_cast<int32_t>(proto::OpCode::kCloseSession)) {
          c.Reply(header.xid, 1, 0);
          return;
        }
        if (header.xid >= 0) outstanding.push_back(header.xid);
        max_outstanding = std::max<size_t>(max_outstanding, outstanding.size());
        continue;
      }
      if (outstanding.empty()) return;
      c.Reply(outstanding.front(), 1, 0, GetDataBody("v"));
      outstanding.pop_front();
      ++answered;
    }
  });
  ZkClientOptions options = Options(server.address());
  options.max_in_flight = 8;
  EventRecorder recorder;
  auto client = Connect(options, recorder);
  std::mutex mutex;
  std::condition_variable cv;
  int done = 0;
  std::vector<int> order;
  for (int i = 0; i < 40; ++i) {
    client->GetData("/n" + std::to_string(i), false, [&, i](ZkResult<GetDataReply> r) {
      std::lock_guard lock(mutex);
      EXPECT_TRUE(r.ok());
      order.push_back(i);
      ++done;
      cv.notify_all();
    });
  }
  {
    std::unique_lock lock(mutex);
    ASSERT_TRUE(cv.wait_for(lock, seconds(30), [&] { return done == 40; }));
    for (int i = 0; i < 40; ++i) EXPECT_EQ(order[static_cast<size_t>(i)], i) << "in order";
  }
  EXPECT_LE(max_outstanding.load(), 8u);
  EXPECT_GE(max_outstanding.load(), 2u) << "requests are pipelined";
  client->Close();
}

TEST(ScriptedServerTest, WatchesAreReRegisteredInChunkedSetWatches2Frames) {
  constexpr int kWatches = 3000;
  std::mutex mutex;
  std::vector<size_t> frame_sizes;
  proto::SetWatches2 received;
  std::atomic<bool> got_all{false};
  ScriptedServer server([&](ScriptedConnection& c, int index) {
    if (!c.Handshake(0x5e7, 6000)) return;
    int64_t zxid = 1000;
    if (index == 0) {
      // Answer the exists() calls (NoNode: exist watches), then drop the connection.
      int answered = 0;
      while (answered < kWatches) {
        auto frame = c.ReadFrame();
        if (!frame) return;
        const auto header = HeaderOf(*frame);
        if (header.type == static_cast<int32_t>(proto::OpCode::kPing)) continue;
        c.Reply(header.xid, ++zxid, kNoNode);
        ++answered;
      }
      return;
    }
    ServeBasics(c, &zxid, [&](const proto::RequestHeader& header, JuteReader& body) {
      if (header.type != static_cast<int32_t>(proto::OpCode::kSetWatches2)) return false;
      proto::SetWatches2 chunk;
      EXPECT_TRUE(proto::ReadSetWatches2(body, &chunk));
      EXPECT_EQ(header.xid, proto::kSetWatchesXid);
      std::lock_guard lock(mutex);
      frame_sizes.push_back(proto::SetWatches2FrameBytes(chunk));
      EXPECT_EQ(chunk.relative_zxid, 1000 + kWatches) << "the last zxid the client saw";
      received.exist_watches.insert(received.exist_watches.end(), chunk.exist_watches.begin(),
                                    chunk.exist_watches.end());
      if (received.exist_watches.size() >= kWatches) got_all = true;
      c.Reply(proto::kSetWatchesXid, zxid, 0);
      return true;
    });
  });
  EventRecorder recorder;
  auto client = Connect(Options(server.address()), recorder);
  const std::string padding(90, 'p');
  std::atomic<int> done{0};
  for (int i = 0; i < kWatches; ++i) {
    client->Exists("/" + padding + "/w" + std::to_string(i), true, [&](ZkResult<ExistsReply> r) {
      EXPECT_TRUE(r.ok());
      EXPECT_FALSE(r->stat.has_value());
      ++done;
    });
  }
  ASSERT_TRUE(recorder.WaitForSession(SessionEventType::kReconnected, seconds(30)));
  // The server answers in order: once this read is answered, every SetWatches2 frame was read.
  ASSERT_TRUE(blocking::GetData(*client, "/after").ok());
  EXPECT_TRUE(got_all.load());
  EXPECT_EQ(done.load(), kWatches);
  client->Close();
  std::lock_guard lock(mutex);
  EXPECT_EQ(received.exist_watches.size(), static_cast<size_t>(kWatches));
  EXPECT_GE(frame_sizes.size(), 3u) << "about 300 KB of paths need several frames";
  for (size_t size : frame_sizes) EXPECT_LE(size, 128u * 1024);
}

TEST(ScriptedServerTest, PingsWhenIdleAndDetectsASilentServer) {
  std::atomic<int> pings{0};
  std::atomic<bool> silent{false};
  ScriptedServer server([&](ScriptedConnection& c, int index) {
    if (!c.Handshake(3, 900)) return;  // pings every 300 ms, dead after 600 ms
    if (index > 0) {
      c.WaitForClose(seconds(10));
      return;
    }
    while (auto frame = c.ReadFrame(seconds(5))) {
      const auto header = HeaderOf(*frame);
      if (header.type != static_cast<int32_t>(proto::OpCode::kPing)) continue;
      if (++pings < 3) {
        c.Reply(proto::kPingXid, 1, 0);
      } else {
        silent = true;  // stop answering
      }
    }
  });
  EventRecorder recorder;
  auto client = Connect(Options(server.address(), milliseconds(900)), recorder);
  ASSERT_TRUE(recorder.WaitForSession(SessionEventType::kDisconnected, seconds(20)));
  EXPECT_TRUE(silent.load());
  EXPECT_GE(pings.load(), 3);
  const SessionEvent lost = recorder.LastSession(SessionEventType::kDisconnected);
  EXPECT_NE(lost.reason.find("no answer"), std::string::npos) << lost.reason;
  client->Close();
}

TEST(ScriptedServerTest, MultiReadFallsBackToPipelinedReadsOnAnOldServer) {
  std::atomic<int> multi_reads{0};
  std::atomic<int> plain_reads{0};
  ScriptedServer server([&](ScriptedConnection& c, int) {
    if (!c.Handshake(4, 6000)) return;
    int64_t zxid = 20;
    ServeBasics(c, &zxid, [&](const proto::RequestHeader& header, JuteReader&) {
      if (header.type == static_cast<int32_t>(proto::OpCode::kMultiRead)) {
        ++multi_reads;
        c.Reply(header.xid, zxid, -6);  // what a 3.5 server answers (it then drops the link)
        return true;
      }
      if (header.type == static_cast<int32_t>(proto::OpCode::kGetData) ||
          header.type == static_cast<int32_t>(proto::OpCode::kGetChildren2)) {
        ++plain_reads;
      }
      return false;
    });
  });
  EventRecorder recorder;
  auto client = Connect(Options(server.address()), recorder);
  auto reply = blocking::MultiRead(*client, {ReadOp::GetData("/a"), ReadOp::GetChildren("/a")});
  ASSERT_TRUE(reply.ok()) << reply.error().message;
  ASSERT_EQ(reply->results.size(), 2u);
  EXPECT_EQ(reply->results[0].data, "data:/a");
  EXPECT_EQ(reply->results[1].children, (std::vector<std::string>{"x", "y"}));
  EXPECT_GT(reply->zxid, 20);
  auto again = blocking::MultiRead(*client, {ReadOp::GetData("/b")});
  ASSERT_TRUE(again.ok());
  EXPECT_EQ(multi_reads.load(), 1) << "after one Unimplemented the client stops trying";
  EXPECT_EQ(plain_reads.load(), 3);
  client->Close();
}

constexpr auto Op(proto::OpCode op) { return static_cast<int32_t>(op); }

TEST(ScriptedServerTest, ANewSessionsReadsGoBehindItsHandshakeAndItsWritesWaitForTheAnswer) {
  std::mutex mutex;
  std::vector<int32_t> before_answer, after_answer;
  std::promise<void> asked;
  std::shared_future<void> all_asked = asked.get_future().share();
  ScriptedServer server([&](ScriptedConnection& c, int) {
    if (!c.ReadFrame()) return;       // the ConnectRequest
    all_asked.wait_for(seconds(10));  // bounded: a test that failed early does not hang
    const std::vector<proto::RequestHeader> early = c.ReadArriving();
    if (!c.AnswerHandshake(0x31, 6000)) return;
    int64_t zxid = 40;
    for (const auto& header : early) {
      if (header.type == Op(proto::OpCode::kGetData)) {
        c.Reply(header.xid, ++zxid, 0, GetDataBody("early"));
      } else {
        c.Reply(header.xid, ++zxid, 0);  // addWatch
      }
    }
    {
      std::lock_guard lock(mutex);
      before_answer = testing::TypesOf(early);
    }
    ServeBasics(c, &zxid, [&](const proto::RequestHeader& header, JuteReader&) {
      {
        std::lock_guard lock(mutex);
        after_answer.push_back(header.type);
      }
      if (header.type != Op(proto::OpCode::kDelete)) return false;
      c.Reply(header.xid, ++zxid, 0);
      return true;
    });
  });
  EventRecorder recorder;
  auto client = Connect(Options(server.address()), recorder);
  // Asked for before the connection is up: two reads, a write, a read.
  std::promise<ZkResult<GetDataReply>> first, last;
  std::promise<ZkResult<Ack>> watch;
  std::promise<ZkResult<Ack>> deleted;
  client->GetData("/a", false, [&](ZkResult<GetDataReply> r) { first.set_value(std::move(r)); });
  client->AddWatch("/a", AddWatchMode::kPersistentRecursive,
                   [&](ZkResult<Ack> r) { watch.set_value(std::move(r)); });
  client->Delete("/b", -1, [&](ZkResult<Ack> r) { deleted.set_value(std::move(r)); });
  client->GetData("/c", false, [&](ZkResult<GetDataReply> r) { last.set_value(std::move(r)); });
  asked.set_value();
  auto first_reply = first.get_future().get();
  ASSERT_TRUE(first_reply.ok()) << first_reply.error().message;
  EXPECT_EQ(first_reply->data, "early");
  EXPECT_TRUE(watch.get_future().get().ok());
  EXPECT_TRUE(deleted.get_future().get().ok());
  auto last_reply = last.get_future().get();
  ASSERT_TRUE(last_reply.ok()) << last_reply.error().message;
  EXPECT_EQ(last_reply->data, "data:/c") << "answered after the handshake, in order";
  client->Close();
  std::lock_guard lock(mutex);
  EXPECT_EQ(before_answer,
            (std::vector<int32_t>{Op(proto::OpCode::kGetData), Op(proto::OpCode::kAddWatch)}))
      << "the reads went with the ConnectRequest; the write, and what follows it, did not";
  ASSERT_GE(after_answer.size(), 2u);
  EXPECT_EQ(after_answer[0], Op(proto::OpCode::kDelete));
  EXPECT_EQ(after_answer[1], Op(proto::OpCode::kGetData));
}

TEST(ScriptedServerTest, ReadsBehindAHandshakeThatWasNeverAnsweredGoAgainOnTheNextConnection) {
  std::mutex mutex;
  std::vector<std::vector<int32_t>> early_by_connection;
  std::vector<int64_t> session_ids_asked;
  std::promise<void> asked;
  std::shared_future<void> all_asked = asked.get_future().share();
  ScriptedServer server([&](ScriptedConnection& c, int index) {
    if (index == 0) {
      // Takes the ConnectRequest and the read behind it, then ends the connection unanswered.
      if (!c.ReadFrame()) return;
      all_asked.wait_for(seconds(10));  // bounded: a test that failed early does not hang
      const auto early = c.ReadArriving();
      std::lock_guard lock(mutex);
      early_by_connection.push_back(testing::TypesOf(early));
      return;
    }
    auto request = c.Handshake(0x32, 6000);
    if (!request) return;
    {
      std::lock_guard lock(mutex);
      session_ids_asked.push_back(request->session_id);
    }
    int64_t zxid = 50;
    ServeBasics(c, &zxid);
  });
  EventRecorder recorder;
  auto client = Connect(Options(server.address()), recorder);
  std::atomic<int> answers{0};
  std::promise<ZkResult<GetDataReply>> reply;
  client->GetData("/a", false, [&](ZkResult<GetDataReply> r) {
    if (++answers == 1) reply.set_value(std::move(r));
  });
  asked.set_value();
  auto got = reply.get_future().get();
  ASSERT_TRUE(got.ok()) << got.error().message;
  EXPECT_EQ(got->data, "data:/a");
  client->Close();
  EXPECT_EQ(answers.load(), 1) << "one answer, from the connection that was answered";
  std::lock_guard lock(mutex);
  ASSERT_EQ(early_by_connection.size(), 1u);
  EXPECT_EQ(early_by_connection[0], (std::vector<int32_t>{Op(proto::OpCode::kGetData)}));
  EXPECT_EQ(session_ids_asked, (std::vector<int64_t>{0})) << "still a new session";
}

// Credentials must precede what is asked for after them, and they are sent once the handshake
// is answered: with credentials configured, or added before a request, nothing goes behind it.
TEST(ScriptedServerTest, WithCredentialsNothingGoesBehindTheHandshake) {
  for (const bool configured : {true, false}) {
    SCOPED_TRACE(configured ? "configured" : "added after the client was made");
    std::mutex mutex;
    std::vector<int32_t> before_answer, after_answer;
    std::promise<void> asked;
    std::shared_future<void> all_asked = asked.get_future().share();
    ScriptedServer server([&](ScriptedConnection& c, int) {
      if (!c.ReadFrame()) return;
      all_asked.wait_for(seconds(10));  // bounded: a test that failed early does not hang
      const auto early = c.ReadArriving();
      {
        std::lock_guard lock(mutex);
        before_answer = testing::TypesOf(early);
      }
      if (!c.AnswerHandshake(0x33, 6000)) return;
      int64_t zxid = 60;
      ServeBasics(c, &zxid, [&](const proto::RequestHeader& header, JuteReader&) {
        std::lock_guard lock(mutex);
        after_answer.push_back(header.type);
        return false;
      });
    });
    ZkClientOptions options = Options(server.address());
    if (configured) options.auth = {{"digest", "alice:pw"}};
    EventRecorder recorder;
    auto client = Connect(options, recorder);
    std::promise<ZkResult<Ack>> added;
    if (!configured) {
      client->AddAuth("digest", "alice:pw", [&](ZkResult<Ack> r) { added.set_value(r); });
    }
    std::promise<ZkResult<GetDataReply>> read;
    client->GetData("/a", false, [&](ZkResult<GetDataReply> r) { read.set_value(std::move(r)); });
    asked.set_value();
    auto reply = read.get_future().get();
    ASSERT_TRUE(reply.ok()) << reply.error().message;
    if (!configured) {
      EXPECT_TRUE(added.get_future().get().ok());
    }
    client->Close();
    std::lock_guard lock(mutex);
    EXPECT_TRUE(before_answer.empty()) << before_answer.size() << " frames before the answer";
    ASSERT_GE(after_answer.size(), 2u);
    EXPECT_EQ(after_answer[0], Op(proto::OpCode::kAuth)) << "the credentials first";
    EXPECT_EQ(after_answer[1], Op(proto::OpCode::kGetData));
  }
}

TEST(ScriptedServerTest, CredentialsGoFirstOnEveryConnection) {
  std::mutex mutex;
  std::vector<std::string> first_frames;
  ScriptedServer server([&](ScriptedConnection& c, int index) {
    if (!c.Handshake(6, 6000)) return;
    auto frame = c.ReadFrame();
    if (!frame) return;
    JuteReader body("");
    const auto header = HeaderOf(*frame, &body);
    int32_t type = 0;
    std::string scheme, auth;
    body.ReadInt32(&type);
    body.ReadBuffer(&scheme);
    body.ReadBuffer(&auth);
    {
      std::lock_guard lock(mutex);
      first_frames.push_back(std::to_string(header.xid) + " " + std::to_string(header.type) + " " +
                             scheme + " " + auth);
    }
    c.Reply(proto::kAuthXid, 0, 0);
    if (index == 0) return;  // drop: the client must send the credentials again
    int64_t zxid = 1;
    ServeBasics(c, &zxid);
  });
  ZkClientOptions options = Options(server.address());
  options.auth = {{"digest", "alice:pw"}};
  EventRecorder recorder;
  auto client = Connect(options, recorder);
  ASSERT_TRUE(recorder.WaitForSession(SessionEventType::kReconnected, seconds(20)));
  ASSERT_TRUE(blocking::GetData(*client, "/a").ok());
  client->Close();
  std::lock_guard lock(mutex);
  ASSERT_EQ(first_frames.size(), 2u);
  for (const auto& f : first_frames) EXPECT_EQ(f, "-4 100 digest alice:pw");
}

TEST(ScriptedServerTest, RejectedCredentialsEndTheClient) {
  ScriptedServer server([&](ScriptedConnection& c, int) {
    if (!c.Handshake(7, 6000)) return;
    if (c.ReadFrame()) c.Reply(proto::kAuthXid, 0, -115);
    c.WaitForClose(seconds(5));
  });
  EventRecorder recorder;
  auto client = Connect(Options(server.address()), recorder);
  auto auth = blocking::AddAuth(*client, "digest", "mallory:x");
  ASSERT_FALSE(auth.ok());
  EXPECT_EQ(auth.error().code, ZkErrorCode::kAuthFailed);
  ASSERT_TRUE(recorder.WaitForSession(SessionEventType::kAuthFailed, seconds(10)));
  EXPECT_EQ(blocking::GetData(*client, "/a").error().code, ZkErrorCode::kAuthFailed);
  client->Close();
}

TEST(ScriptedServerTest, RepliesAndEventsArriveInServerOrderWithChrootStripped) {
  ScriptedServer server([&](ScriptedConnection& c, int) {
    if (!c.Handshake(8, 6000)) return;
    std::vector<int32_t> xids;
    while (xids.size() < 2) {
      auto frame = c.ReadFrame();
      if (!frame) return;
      const auto header = HeaderOf(*frame);
      if (header.xid > 0) xids.push_back(header.xid);
    }
    std::string event;
    JuteWriter w(event);
    proto::WriteWatcherEvent(w, proto::WatcherEventRecord{3, 3, "/app/changed"});
    std::string stream = proto::EncodeReplyFrame({xids[0], 5, 0}, GetDataBody("one"));
    stream += proto::EncodeReplyFrame({proto::kNotificationXid, -1, 0}, event);
    stream += proto::EncodeReplyFrame({xids[1], 6, 0}, GetDataBody("two"));
    c.Write(stream);  // in one write: the client must keep the order within a read
    int64_t zxid = 6;
    ServeBasics(c, &zxid);
  });
  std::mutex mutex;
  std::vector<std::string> order;
  ZkClientOptions options = Options(server.address() + "/app");
  auto client_or = NewAsioZkClient(options, ZkEventHandlers{[&](const WatchEvent& e) {
                                                              std::lock_guard lock(mutex);
                                                              order.push_back("event " + e.path);
                                                            },
                                                            nullptr});
  ASSERT_TRUE(client_or.ok());
  auto client = std::move(client_or).value();
  auto record = [&](ZkResult<GetDataReply> r) {
    std::lock_guard lock(mutex);
    order.push_back(r.ok() ? "reply " + r->data : "error");
  };
  client->GetData("/a", false, record);
  auto second = blocking::GetData(*client, "/b");
  ASSERT_TRUE(second.ok());
  client->Close();
  std::lock_guard lock(mutex);
  EXPECT_EQ(order, (std::vector<std::string>{"reply one", "event /changed"}));
  EXPECT_EQ(second->data, "two");
}

TEST(ScriptedServerTest, ReplyWithAnUnexpectedXidClosesTheConnection) {
  ScriptedServer server([&](ScriptedConnection& c, int index) {
    if (!c.Handshake(9, 6000)) return;
    if (index == 0) {
      auto frame = c.ReadFrame();
      if (!frame) return;
      c.Reply(HeaderOf(*frame).xid + 1000, 1, 0, GetDataBody("x"));
      c.WaitForClose(seconds(10));
      return;
    }
    int64_t zxid = 1;
    ServeBasics(c, &zxid);
  });
  EventRecorder recorder;
  auto client = Connect(Options(server.address()), recorder);
  auto lost = blocking::GetData(*client, "/a");
  ASSERT_FALSE(lost.ok());
  EXPECT_EQ(lost.error().code, ZkErrorCode::kConnectionLoss);
  EXPECT_NE(lost.error().message.find("does not match"), std::string::npos) << lost.error().message;
  ASSERT_TRUE(recorder.WaitForSession(SessionEventType::kReconnected, seconds(20)));
  EXPECT_TRUE(blocking::GetData(*client, "/a").ok());
  client->Close();
}

TEST(ScriptedServerTest, CloseEndsTheSessionOnTheServer) {
  std::atomic<bool> close_seen{false};
  ScriptedServer server([&](ScriptedConnection& c, int) {
    if (!c.Handshake(10, 6000)) return;
    int64_t zxid = 1;
    ServeBasics(c, &zxid, [&](const proto::RequestHeader& header, JuteReader&) {
      if (header.type == static_cast<int32_t>(proto::OpCode::kCloseSession)) close_seen = true;
      return false;
    });
  });
  EventRecorder recorder;
  auto client = Connect(Options(server.address()), recorder);
  ASSERT_TRUE(blocking::GetData(*client, "/a").ok());
  client->Close();
  EXPECT_TRUE(close_seen.load());
  const auto sessions = recorder.sessions();
  ASSERT_EQ(sessions.size(), 2u);
  EXPECT_EQ(sessions[0].type, SessionEventType::kConnected);
  EXPECT_EQ(sessions[1].type, SessionEventType::kClosed);
  EXPECT_EQ(blocking::GetData(*client, "/a").error().code, ZkErrorCode::kClosed);
}

TEST(ScriptedServerTest, RequestsFailWhenNoServerIsReachableForTheSessionTimeout) {
  // A server that accepts the TCP connection and never answers the handshake.
  ScriptedServer mute([&](ScriptedConnection& c, int) { c.WaitForClose(seconds(10)); });
  EventRecorder recorder;
  auto client = Connect(Options(mute.address(), milliseconds(1500)), recorder);
  const auto start = std::chrono::steady_clock::now();
  auto reply = blocking::GetData(*client, "/a");
  const auto waited = std::chrono::steady_clock::now() - start;
  ASSERT_FALSE(reply.ok());
  EXPECT_EQ(reply.error().code, ZkErrorCode::kConnectionLoss);
  EXPECT_LT(waited, seconds(10));
  EXPECT_GE(mute.connections(), 1);
  client->Close();
}

TEST(ScriptedServerTest, InvalidArgumentsFailWithoutTheNetwork) {
  ScriptedServer server([&](ScriptedConnection& c, int) {
    if (!c.Handshake(11, 6000)) return;
    int64_t zxid = 1;
    ServeBasics(c, &zxid);
  });
  EventRecorder recorder;
  ZkClientOptions options = Options(server.address());
  options.max_request_bytes = 1000;
  auto client = Connect(options, recorder);
  EXPECT_EQ(blocking::GetData(*client, "no-slash").error().code, ZkErrorCode::kInvalidArgument);
  auto big = blocking::SetData(*client, "/a", std::string(2000, 'x'));
  ASSERT_FALSE(big.ok());
  EXPECT_EQ(big.error().code, ZkErrorCode::kInvalidArgument);
  EXPECT_NE(big.error().message.find("exceeds"), std::string::npos);
  EXPECT_FALSE(NewAsioZkClient(Options(""), {}).ok());
  client->Close();
}

}  // namespace
}  // namespace zk2etcd::zk

namespace zk2etcd::zk {
namespace {

TEST(ScriptedServerTest, CloseFromACallbackAndDestructionWithoutClose) {
  ScriptedServer server([&](ScriptedConnection& c, int) {
    if (!c.Handshake(12, 6000)) return;
    int64_t zxid = 1;
    ServeBasics(c, &zxid);
  });
  EventRecorder recorder;
  auto client = Connect(Options(server.address()), recorder);
  std::atomic<bool> closed_in_callback{false};
  client->GetData("/a", false, [&](ZkResult<GetDataReply> r) {
    EXPECT_TRUE(r.ok());
    client->Close();  // on the delivery thread: must not wait for itself
    closed_in_callback = true;
  });
  ASSERT_TRUE(recorder.WaitForSession(SessionEventType::kClosed, seconds(10)));
  EXPECT_TRUE(closed_in_callback.load());
  client.reset();

  // A client destroyed while requests are pending fails them (kClosed) and says so.
  EventRecorder second_recorder;
  auto second = Connect(Options(server.address()), second_recorder);
  std::atomic<int> answered{0};
  std::atomic<int> failed{0};
  for (int i = 0; i < 100; ++i) {
    second->GetData("/b", false, [&](ZkResult<GetDataReply> r) {
      ++answered;
      if (!r.ok()) {
        EXPECT_EQ(r.error().code, ZkErrorCode::kClosed);
        ++failed;
      }
    });
  }
  second.reset();
  EXPECT_EQ(answered.load(), 100) << "every callback runs exactly once, even on destruction";
  const auto sessions = second_recorder.sessions();
  ASSERT_FALSE(sessions.empty());
  EXPECT_EQ(sessions.back().type, SessionEventType::kClosed);
}

}  // namespace
}  // namespace zk2etcd::zk

#include "zk/protocol.h"

#include <gtest/gtest.h>

namespace zk2etcd::zk::proto {
namespace {

Stat SampleStat() {
  Stat s;
  s.czxid = 0x100000001;
  s.mzxid = 0x100000002;
  s.ctime = 1700000000000;
  s.mtime = 1700000000001;
  s.version = 3;
  s.cversion = 4;
  s.aversion = 5;
  s.ephemeral_owner = 0x1234;
  s.data_length = 6;
  s.num_children = 7;
  s.pzxid = 0x100000003;
  return s;
}

void WriteMultiHeader(JuteWriter& w, int32_t type, bool done, int32_t err) {
  w.WriteInt32(type);
  w.WriteBool(done);
  w.WriteInt32(err);
}

TEST(ProtocolTest, GetDataRequestHasTheDocumentedLayout) {
  RequestFrame frame(7, OpCode::kGetData);
  WritePathWatchRequest(frame.writer(), "/a", true);
  const std::string bytes = std::move(frame).Finish();
  const std::string expected(
      "\0\0\0\x0f"    // length 15
      "\0\0\0\x07"    // xid
      "\0\0\0\x04"    // getData
      "\0\0\0\x02/a"  // path
      "\x01",         // watch
      19);
  EXPECT_EQ(bytes, expected);
}

TEST(ProtocolTest, PatchXidRewritesOnlyTheXid) {
  RequestFrame frame(0, OpCode::kExists);
  WritePathWatchRequest(frame.writer(), "/x", false);
  std::string bytes = std::move(frame).Finish();
  PatchXid(bytes, 0x01020304);
  JuteReader r(std::string_view(bytes).substr(4));
  RequestHeader header;
  ASSERT_TRUE(ReadRequestHeader(r, &header));
  EXPECT_EQ(header.xid, 0x01020304);
  EXPECT_EQ(header.type, static_cast<int32_t>(OpCode::kExists));
}

TEST(ProtocolTest, ConnectRequestAndResponseRoundTrip) {
  ConnectRequest request;
  request.last_zxid_seen = 0x200000005;
  request.timeout_ms = 30000;
  request.session_id = 0x1000abc;
  request.password = std::string(16, '\x07');
  const std::string frame = EncodeConnectRequest(request);
  auto decoded = DecodeConnectRequest(std::string_view(frame).substr(4));
  ASSERT_TRUE(decoded.ok()) << decoded.error();
  EXPECT_EQ(decoded->last_zxid_seen, request.last_zxid_seen);
  EXPECT_EQ(decoded->timeout_ms, 30000);
  EXPECT_EQ(decoded->session_id, request.session_id);
  EXPECT_EQ(decoded->password, request.password);

  ConnectResponse response{0, 20000, 0x77, std::string(16, 'p'), false};
  const std::string reply = EncodeConnectResponse(response);
  auto back = DecodeConnectResponse(std::string_view(reply).substr(4));
  ASSERT_TRUE(back.ok()) << back.error();
  EXPECT_EQ(back->timeout_ms, 20000);
  EXPECT_EQ(back->session_id, 0x77);
  EXPECT_EQ(back->password, std::string(16, 'p'));
}

TEST(ProtocolTest, ConnectResponseWithoutReadOnlyFlagIsAccepted) {
  std::string reply = EncodeConnectResponse(ConnectResponse{0, 5000, 1, std::string(16, 'x')});
  reply.pop_back();  // an old server omits the trailing boolean
  auto decoded = DecodeConnectResponse(std::string_view(reply).substr(4));
  ASSERT_TRUE(decoded.ok()) << decoded.error();
  EXPECT_EQ(decoded->timeout_ms, 5000);
}

TEST(ProtocolTest, TruncatedConnectResponseIsAnError) {
  const std::string reply = EncodeConnectResponse(ConnectResponse{0, 5000, 1, "abc"});
  auto decoded = DecodeConnectResponse(std::string_view(reply).substr(4, 10));
  ASSERT_FALSE(decoded.ok());
  EXPECT_NE(decoded.error().find("malformed ConnectResponse"), std::string::npos);
}

TEST(ProtocolTest, StatAndGetDataResponseRoundTrip) {
  std::string body;
  JuteWriter w(body);
  w.WriteBuffer("value");
  WriteStat(w, SampleStat());
  const std::string frame = EncodeReplyFrame(ReplyHeader{9, 0x100000009, 0}, body);
  JuteReader r(std::string_view(frame).substr(4));
  ReplyHeader header;
  ASSERT_TRUE(ReadReplyHeader(r, &header));
  EXPECT_EQ(header.xid, 9);
  EXPECT_EQ(header.zxid, 0x100000009);
  std::string data;
  Stat stat;
  ASSERT_TRUE(ReadGetDataResponse(r, &data, &stat));
  EXPECT_EQ(data, "value");
  EXPECT_EQ(stat, SampleStat());
  EXPECT_TRUE(r.AtEnd());
}

TEST(ProtocolTest, Children2AndCreate2Responses) {
  std::string body;
  JuteWriter w(body);
  w.WriteStringVector({"a", "b"});
  WriteStat(w, SampleStat());
  w.WriteBuffer("/created0000000001");
  WriteStat(w, SampleStat());
  JuteReader r(body);
  std::vector<std::string> children;
  Stat stat;
  ASSERT_TRUE(ReadGetChildren2Response(r, &children, &stat));
  EXPECT_EQ(children, (std::vector<std::string>{"a", "b"}));
  std::string path;
  ASSERT_TRUE(ReadCreate2Response(r, &path, &stat));
  EXPECT_EQ(path, "/created0000000001");
}

TEST(ProtocolTest, MultiRequestEncodesHeadersAndEndMarker) {
  std::string bytes;
  JuteWriter w(bytes);
  WriteMultiRequest(
      w, {MultiOp::Create("/a", "x"), MultiOp::Delete("/b", 3), MultiOp::SetData("/c", "y", 1),
          MultiOp::Check("/d", 2), MultiOp::Create("/e", "", CreateMode::kContainer)});
  JuteReader r(bytes);
  int32_t type = 0, err = 0;
  bool done = false;
  std::string s;
  std::vector<int32_t> types;
  while (true) {
    ASSERT_TRUE(r.ReadInt32(&type) && r.ReadBool(&done) && r.ReadInt32(&err));
    if (done) break;
    types.push_back(type);
    switch (static_cast<OpCode>(type)) {
      case OpCode::kCreate:
      case OpCode::kCreateContainer: {
        int32_t acl_count = 0, perms = 0, flags = 0;
        ASSERT_TRUE(r.ReadBuffer(&s) && r.ReadBuffer(&s) && r.ReadInt32(&acl_count));
        for (int i = 0; i < acl_count; ++i) {
          ASSERT_TRUE(r.ReadInt32(&perms) && r.ReadBuffer(&s) && r.ReadBuffer(&s));
        }
        ASSERT_TRUE(r.ReadInt32(&flags));
        break;
      }
      case OpCode::kDelete:
      case OpCode::kCheck: {
        int32_t version = 0;
        ASSERT_TRUE(r.ReadBuffer(&s) && r.ReadInt32(&version));
        break;
      }
      case OpCode::kSetData: {
        int32_t version = 0;
        ASSERT_TRUE(r.ReadBuffer(&s) && r.ReadBuffer(&s) && r.ReadInt32(&version));
        break;
      }
      default:
        FAIL() << "unexpected type " << type;
    }
  }
  EXPECT_EQ(type, -1);
  EXPECT_EQ(err, -1);
  EXPECT_TRUE(r.AtEnd());
  EXPECT_EQ(types, (std::vector<int32_t>{1, 2, 5, 13, 19}));
}

TEST(ProtocolTest, CreateFlagsAreZooKeepersCreateModes) {
  EXPECT_EQ(CreateFlags(CreateMode::kPersistent), 0);
  EXPECT_EQ(CreateFlags(CreateMode::kEphemeral), 1);
  EXPECT_EQ(CreateFlags(CreateMode::kPersistentSequential), 2);
  EXPECT_EQ(CreateFlags(CreateMode::kEphemeralSequential), 3);
  EXPECT_EQ(CreateFlags(CreateMode::kContainer), 4);
  EXPECT_EQ(CreateFlags(CreateMode::kPersistentWithTtl), 5);
  EXPECT_EQ(CreateFlags(CreateMode::kPersistentSequentialWithTtl), 6);
}

TEST(ProtocolTest, MultiCreateWithATtlModeIsACreateTtl) {
  MultiOp ttl = MultiOp::Create("/t", "d", CreateMode::kPersistentSequentialWithTtl);
  ttl.ttl_ms = 0x123456789;
  ttl.acl = {Acl{kPermRead, "world", "anyone"}};
  std::string bytes;
  JuteWriter w(bytes);
  WriteMultiRequest(w, {ttl});

  // CreateTTLRequest {path, data, acl, flags, ttl} after a multi header of type 21.
  std::string expected;
  JuteWriter e(expected);
  WriteMultiHeader(e, 21, false, -1);
  e.WriteBuffer("/t");
  e.WriteBuffer("d");
  e.WriteInt32(1);
  e.WriteInt32(kPermRead);
  e.WriteBuffer("world");
  e.WriteBuffer("anyone");
  e.WriteInt32(6);
  e.WriteInt64(0x123456789);
  WriteMultiHeader(e, -1, true, -1);
  EXPECT_EQ(bytes, expected);

  // The TTL of other modes is not sent.
  MultiOp plain = MultiOp::Create("/p", "");
  plain.ttl_ms = 5;
  std::string plain_bytes;
  JuteWriter pw(plain_bytes);
  WriteMultiRequest(pw, {plain});
  JuteReader r(plain_bytes);
  int32_t type = 0;
  ASSERT_TRUE(r.ReadInt32(&type));
  EXPECT_EQ(type, 1);
}

TEST(ProtocolTest, GetAclRequestAndResponse) {
  RequestFrame frame(7, OpCode::kGetAcl);
  WritePathRequest(frame.writer(), "/a");
  const std::string bytes = std::move(frame).Finish();
  JuteReader fr(std::string_view(bytes).substr(4));
  RequestHeader header;
  std::string path;
  ASSERT_TRUE(ReadRequestHeader(fr, &header) && fr.ReadBuffer(&path));
  EXPECT_EQ(header.type, 6);
  EXPECT_EQ(path, "/a");
  EXPECT_TRUE(fr.AtEnd());

  const std::vector<Acl> acl = {Acl{kPermAll, "digest", "alice:x"}, Acl{kPermRead, "ip", "::1"}};
  std::string body;
  JuteWriter w(body);
  WriteGetAclResponse(w, acl, SampleStat());
  JuteReader r(body);
  std::vector<Acl> read;
  Stat stat;
  ASSERT_TRUE(ReadGetAclResponse(r, &read, &stat)) << r.error();
  EXPECT_EQ(read, acl);
  EXPECT_EQ(stat, SampleStat());
  EXPECT_TRUE(r.AtEnd());

  for (size_t cut = 0; cut < body.size(); ++cut) {
    JuteReader truncated(std::string_view(body).substr(0, cut));
    EXPECT_FALSE(ReadGetAclResponse(truncated, &read, &stat)) << "cut at " << cut;
  }
}

TEST(ProtocolTest, HostileAclCountFailsBeforeAllocating) {
  std::string body;
  JuteWriter w(body);
  w.WriteInt32(0x7fffffff);
  WriteStat(w, SampleStat());
  JuteReader r(body);
  std::vector<Acl> acl;
  Stat stat;
  EXPECT_FALSE(ReadGetAclResponse(r, &acl, &stat));
  EXPECT_NE(r.error().find("ACL count"), std::string::npos) << r.error();
}

TEST(ProtocolTest, MultiResponseDecodesResultsAndErrors) {
  std::string body;
  JuteWriter w(body);
  WriteMultiHeader(w, 1, false, 0);
  w.WriteBuffer("/a");
  WriteMultiHeader(w, 19, false, 0);
  w.WriteBuffer("/c");
  WriteStat(w, SampleStat());
  WriteMultiHeader(w, 2, false, 0);
  WriteMultiHeader(w, 5, false, 0);
  WriteStat(w, SampleStat());
  WriteMultiHeader(w, -1, false, -101);
  w.WriteInt32(-101);
  WriteMultiHeader(w, -1, true, -1);
  JuteReader r(body);
  std::vector<MultiOpResult> results;
  ASSERT_TRUE(ReadMultiResponse(r, 5, &results)) << r.error();
  ASSERT_EQ(results.size(), 5u);
  EXPECT_EQ(results[0].path, "/a");
  EXPECT_EQ(results[1].path, "/c");
  EXPECT_EQ(results[1].stat, SampleStat());
  EXPECT_EQ(results[3].stat, SampleStat());
  EXPECT_EQ(results[4].error, ZkErrorCode::kNoNode);

  JuteReader too_many(body);
  EXPECT_FALSE(ReadMultiResponse(too_many, 4, &results));
  EXPECT_NE(too_many.error().find("more than"), std::string::npos) << too_many.error();
}

TEST(ProtocolTest, MultiReadRequestAndResponse) {
  std::string request;
  JuteWriter rw(request);
  WriteMultiReadRequest(rw, {ReadOp::GetData("/a"), ReadOp::GetChildren("/b")});
  JuteReader rr(request);
  int32_t type = 0, err = 0;
  bool done = false, watch = true;
  std::string path;
  ASSERT_TRUE(rr.ReadInt32(&type) && rr.ReadBool(&done) && rr.ReadInt32(&err));
  EXPECT_EQ(type, 4);
  ASSERT_TRUE(rr.ReadBuffer(&path) && rr.ReadBool(&watch));
  EXPECT_EQ(path, "/a");
  ASSERT_TRUE(rr.ReadInt32(&type) && rr.ReadBool(&done) && rr.ReadInt32(&err));
  EXPECT_EQ(type, 8);

  std::string body;
  JuteWriter w(body);
  WriteMultiHeader(w, 4, false, 0);
  w.WriteBuffer("data");
  WriteStat(w, SampleStat());
  WriteMultiHeader(w, 8, false, 0);
  w.WriteStringVector({"x", "y"});
  WriteMultiHeader(w, -1, false, -102);
  w.WriteInt32(-102);
  WriteMultiHeader(w, -1, true, -1);
  JuteReader r(body);
  std::vector<ReadResult> results;
  ASSERT_TRUE(ReadMultiReadResponse(r, 3, &results)) << r.error();
  ASSERT_EQ(results.size(), 3u);
  EXPECT_EQ(results[0].data, "data");
  EXPECT_EQ(results[0].stat, SampleStat());
  EXPECT_EQ(results[1].children, (std::vector<std::string>{"x", "y"}));
  EXPECT_EQ(results[2].error, ZkErrorCode::kNoAuth);
}

TEST(ProtocolTest, MultiResponseWithUnknownTypeIsMalformed) {
  std::string body;
  JuteWriter w(body);
  WriteMultiHeader(w, 77, false, 0);
  JuteReader r(body);
  std::vector<MultiOpResult> results;
  EXPECT_FALSE(ReadMultiResponse(r, 10, &results));
  EXPECT_NE(r.error().find("unexpected operation type 77"), std::string::npos);
}

TEST(ProtocolTest, SetWatches2RoundTripAndChunking) {
  SetWatches2 all;
  all.relative_zxid = 0x500000001;
  for (int i = 0; i < 5000; ++i) {
    const std::string path = "/some/rather/long/path/to/a/node/number-" + std::to_string(i);
    switch (i % 5) {
      case 0:
        all.data_watches.push_back(path);
        break;
      case 1:
        all.exist_watches.push_back(path);
        break;
      case 2:
        all.child_watches.push_back(path);
        break;
      case 3:
        all.persistent_watches.push_back(path);
        break;
      default:
        all.persistent_recursive_watches.push_back(path);
        break;
    }
  }
  const size_t limit = 16 * 1024;
  ASSERT_GT(SetWatches2FrameBytes(all), 10 * limit);
  const auto chunks = ChunkSetWatches(all, limit);
  ASSERT_GT(chunks.size(), 10u);
  SetWatches2 merged;
  for (const auto& chunk : chunks) {
    EXPECT_EQ(chunk.relative_zxid, all.relative_zxid);
    RequestFrame frame(kSetWatchesXid, OpCode::kSetWatches2);
    WriteSetWatches2(frame.writer(), chunk);
    const std::string bytes = std::move(frame).Finish();
    EXPECT_LE(bytes.size(), limit);
    EXPECT_EQ(bytes.size(), SetWatches2FrameBytes(chunk));
    JuteReader r(std::string_view(bytes).substr(kRequestFramePrefix));
    SetWatches2 decoded;
    ASSERT_TRUE(ReadSetWatches2(r, &decoded)) << r.error();
    EXPECT_TRUE(r.AtEnd());
    auto append = [](auto& to, const auto& from) { to.insert(to.end(), from.begin(), from.end()); };
    append(merged.data_watches, decoded.data_watches);
    append(merged.exist_watches, decoded.exist_watches);
    append(merged.child_watches, decoded.child_watches);
    append(merged.persistent_watches, decoded.persistent_watches);
    append(merged.persistent_recursive_watches, decoded.persistent_recursive_watches);
  }
  EXPECT_EQ(merged.data_watches, all.data_watches);
  EXPECT_EQ(merged.exist_watches, all.exist_watches);
  EXPECT_EQ(merged.child_watches, all.child_watches);
  EXPECT_EQ(merged.persistent_watches, all.persistent_watches);
  EXPECT_EQ(merged.persistent_recursive_watches, all.persistent_recursive_watches);
}

TEST(ProtocolTest, ChunkingKeepsAnOversizedPathInAChunkOfItsOwn) {
  SetWatches2 all;
  all.data_watches = {"/a", "/" + std::string(500, 'x'), "/b"};
  const auto chunks = ChunkSetWatches(all, 100);
  ASSERT_EQ(chunks.size(), 3u);
  EXPECT_EQ(chunks[1].data_watches.size(), 1u);
  EXPECT_TRUE(ChunkSetWatches(SetWatches2{}, 100).empty());
}

TEST(ProtocolTest, WatcherEventRoundTrip) {
  std::string body;
  JuteWriter w(body);
  WriteWatcherEvent(w, WatcherEventRecord{3, 3, "/changed"});
  JuteReader r(body);
  WatcherEventRecord event;
  ASSERT_TRUE(ReadWatcherEvent(r, &event));
  EXPECT_EQ(event.type, 3);
  EXPECT_EQ(event.path, "/changed");
}

// --- FrameReader ---------------------------------------------------------------------------

void Feed(FrameReader& reader, std::string_view bytes) {
  auto space = reader.Writable(bytes.size());
  std::copy(bytes.begin(), bytes.end(), space.begin());
  reader.Commit(bytes.size());
}

TEST(FrameReaderTest, CutsFramesAcrossArbitraryChunks) {
  std::string stream;
  for (int i = 0; i < 50; ++i) {
    stream += EncodeReplyFrame(ReplyHeader{i, i, 0}, std::string(static_cast<size_t>(i * 37), 'z'));
  }
  for (size_t chunk : {1u, 3u, 7u, 64u, 1000u}) {
    FrameReader reader(1 << 20);
    std::vector<int32_t> xids;
    for (size_t at = 0; at < stream.size(); at += chunk) {
      Feed(reader, std::string_view(stream).substr(at, chunk));
      while (true) {
        auto next = reader.Next();
        ASSERT_TRUE(next.ok()) << next.error();
        if (!next->has_value()) break;
        JuteReader r(**next);
        ReplyHeader header;
        ASSERT_TRUE(ReadReplyHeader(r, &header));
        EXPECT_EQ(r.remaining(), static_cast<size_t>(header.xid * 37));
        xids.push_back(header.xid);
      }
    }
    ASSERT_EQ(xids.size(), 50u) << "chunk " << chunk;
    for (int i = 0; i < 50; ++i) EXPECT_EQ(xids[static_cast<size_t>(i)], i);
    EXPECT_EQ(reader.buffered(), 0u);
  }
}

TEST(FrameReaderTest, OversizedLengthIsAnErrorBeforeBuffering) {
  FrameReader reader(16 * 1024 * 1024);
  Feed(reader, std::string("\x7f\xff\xff\xff", 4));
  auto next = reader.Next();
  ASSERT_FALSE(next.ok());
  EXPECT_NE(next.error().find("exceeds the limit"), std::string::npos) << next.error();
}

TEST(FrameReaderTest, NegativeLengthIsAnError) {
  FrameReader reader(1024);
  Feed(reader, std::string("\xff\xff\xff\xf0", 4));
  auto next = reader.Next();
  ASSERT_FALSE(next.ok());
  EXPECT_NE(next.error().find("negative"), std::string::npos);
}

TEST(FrameReaderTest, IncompleteFrameWaitsForMoreBytes) {
  FrameReader reader(1024);
  Feed(reader, std::string("\0\0\0\x05"
                           "ab",
                           6));
  auto next = reader.Next();
  ASSERT_TRUE(next.ok());
  EXPECT_FALSE(next->has_value());
  Feed(reader, "cde");
  next = reader.Next();
  ASSERT_TRUE(next.ok());
  ASSERT_TRUE(next->has_value());
  EXPECT_EQ(**next, "abcde");
}

TEST(ProtocolTest, TruncatedBodiesFailCleanly) {
  std::string body;
  JuteWriter w(body);
  w.WriteBuffer("value");
  WriteStat(w, SampleStat());
  for (size_t cut = 0; cut < body.size(); ++cut) {
    JuteReader r(std::string_view(body).substr(0, cut));
    std::string data;
    Stat stat;
    EXPECT_FALSE(ReadGetDataResponse(r, &data, &stat)) << "cut at " << cut;
    EXPECT_FALSE(r.error().empty());
  }
}

}  // namespace
}  // namespace zk2etcd::zk::proto

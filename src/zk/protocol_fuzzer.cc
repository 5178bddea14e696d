// libFuzzer target for the ZooKeeper frame and record decoders: every byte string must be either
// decoded or rejected with a message, without a crash, an out-of-bounds read, undefined behaviour
// or an allocation beyond the frame limit. Built only with -DZK2ETCD_FUZZ=ON and clang; run by
// scripts/run-fuzzers.sh.
//
// Input layout: byte 0 picks the chunk size in which the rest is fed to the FrameReader and the
// record a frame body is decoded as; byte 1 bounds the results of multi replies; the rest is the
// byte stream from the "server".
#include <cstddef>
#include <cstdint>
#include <cstdlib>
#include <string>
#include <string_view>
#include <vector>

#include "zk/jute.h"
#include "zk/protocol.h"

namespace {

using namespace zk2etcd::zk;  // NOLINT: a fuzz entry point

constexpr size_t kMaxFrame = 1 << 20;

void Check(bool condition) {
  if (!condition) std::abort();
}

// Decodes `payload` as a reply frame to request type `kind`.
void DecodeReply(std::string_view payload, uint8_t kind, size_t max_results) {
  JuteReader r(payload);
  proto::ReplyHeader header;
  if (!proto::ReadReplyHeader(r, &header)) {
    Check(!r.error().empty());
    return;
  }
  std::string s;
  Stat stat;
  std::vector<std::string> strings;
  int32_t err = 0;
  switch (kind % 11) {
    case 0: {
      proto::WatcherEventRecord event;
      proto::ReadWatcherEvent(r, &event);
      break;
    }
    case 1:
      proto::ReadGetDataResponse(r, &s, &stat);
      break;
    case 2:
      proto::ReadGetChildren2Response(r, &strings, &stat);
      break;
    case 3:
      proto::ReadCreateResponse(r, &s);
      break;
    case 4:
      proto::ReadCreate2Response(r, &s, &stat);
      break;
    case 5:
      proto::ReadErrorResponse(r, &err);
      break;
    case 6: {
      std::vector<MultiOpResult> results;
      if (proto::ReadMultiResponse(r, max_results, &results)) {
        Check(results.size() <= max_results);
      }
      break;
    }
    case 7: {
      std::vector<ReadResult> results;
      if (proto::ReadMultiReadResponse(r, max_results, &results)) {
        Check(results.size() <= max_results);
      }
      break;
    }
    case 8: {
      proto::SetWatches2 watches;
      proto::ReadSetWatches2(r, &watches);
      break;
    }
    case 9: {
      std::vector<Acl> acl;
      proto::ReadGetAclResponse(r, &acl, &stat);
      break;
    }
    default:
      proto::ReadStat(r, &stat);
      break;
  }
  // A failed read always says why; a successful one never reads past the end.
  Check(r.ok() || !r.error().empty());
  Check(r.position() <= payload.size());
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  if (size < 2) return 0;
  const uint8_t selector = data[0];
  const size_t max_results = data[1];
  const std::string_view stream(reinterpret_cast<const char*>(data + 2), size - 2);

  // Whole-input decoders.
  (void)proto::DecodeConnectResponse(stream);
  (void)proto::DecodeConnectRequest(stream);

  // The stream cut into frames, fed in chunks as a socket would deliver it.
  proto::FrameReader frames(kMaxFrame);
  const size_t chunk = static_cast<size_t>(selector % 17) + 1;
  bool first = true;
  for (size_t at = 0; at < stream.size(); at += chunk) {
    const std::string_view piece = stream.substr(at, chunk);
    auto space = frames.Writable(piece.size());
    Check(space.size() >= piece.size());
    std::copy(piece.begin(), piece.end(), space.begin());
    frames.Commit(piece.size());
    Check(frames.buffered() <= kMaxFrame + 4 + 64);
    while (true) {
      auto next = frames.Next();
      if (!next.ok()) {
        Check(!next.error().empty());
        return 0;  // the client closes the connection here
      }
      if (!next->has_value()) break;
      const std::string_view payload = **next;
      Check(payload.size() <= kMaxFrame);
      if (first) {
        (void)proto::DecodeConnectResponse(payload);
        first = false;
      } else {
        DecodeReply(payload, selector / 17, max_results);
      }
    }
  }
  return 0;
}

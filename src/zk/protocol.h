// ZooKeeper's client wire protocol: length-prefixed frames of jute records, as defined by
// zookeeper.jute and the server's OpCode table.
//
// A client frame is [int length][RequestHeader{xid, type}][request record] (the first frame of a
// connection is a bare ConnectRequest); a server frame is [int length][ReplyHeader{xid, zxid,
// err}][response record] (the first is a bare ConnectResponse). Replies to normal requests come
// back in request order; special xids mark notifications (-1), pings (-2), auth (-4) and
// SetWatches (-8).
//
// This file holds encoders for requests, decoders for replies, the reverse of both (for tests,
// fakes and the fuzzer) and FrameReader, which cuts a byte stream into frames. Decoders take
// untrusted input and fail with a message instead of crashing or over-allocating. No I/O, no
// threads: pure functions and single-threaded objects.
#pragma once

#include <cstddef>
#include <cstdint>
#include <optional>
#include <span>
#include <string>
#include <string_view>
#include <vector>

#include "common/result.h"
#include "zk/jute.h"
#include "zk/zk_types.h"

namespace zk2etcd::zk::proto {

enum class OpCode : int32_t {
  kNotification = 0,
  kCreate = 1,
  kDelete = 2,
  kExists = 3,
  kGetData = 4,
  kSetData = 5,
  kGetAcl = 6,
  kSetAcl = 7,
  kGetChildren = 8,
  kSync = 9,
  kPing = 11,
  kGetChildren2 = 12,
  kCheck = 13,
  kMulti = 14,
  kCreate2 = 15,
  kReconfig = 16,
  kCheckWatches = 17,
  kRemoveWatches = 18,
  kCreateContainer = 19,
  kDeleteContainer = 20,
  kCreateTtl = 21,
  kMultiRead = 22,
  kAuth = 100,
  kSetWatches = 101,
  kSasl = 102,
  kGetEphemerals = 103,
  kGetAllChildrenNumber = 104,
  kSetWatches2 = 105,
  kAddWatch = 106,
  kWhoAmI = 107,
  kCreateSession = -10,
  kCloseSession = -11,
  kError = -1,
};

inline constexpr int32_t kNotificationXid = -1;
inline constexpr int32_t kPingXid = -2;
inline constexpr int32_t kAuthXid = -4;
inline constexpr int32_t kSetWatchesXid = -8;

// Whether running a request of `op` twice has the same outcome as running it once: reads and
// watch registrations, not writes (a create would fail the second time, a setData would bump the
// version again) nor watch removals.
bool ReplayableOp(OpCode op);

// The server's default jute.maxbuffer is 1 MiB - 1: no request frame may be larger.
inline constexpr size_t kServerMaxRequestBytes = 0xfffff;
// Bytes before the record in a request frame: length, xid, type.
inline constexpr size_t kRequestFramePrefix = 12;
// Bytes of a ReplyHeader.
inline constexpr size_t kReplyHeaderBytes = 16;

// Flags of a create request for a mode (0 to 6, as ZooKeeper's CreateMode).
int32_t CreateFlags(CreateMode mode);

struct ConnectRequest {
  int32_t protocol_version = 0;
  int64_t last_zxid_seen = 0;
  int32_t timeout_ms = 0;
  int64_t session_id = 0;
  std::string password;  // 16 bytes from the server; empty for a new session
  bool read_only = false;
};

struct ConnectResponse {
  int32_t protocol_version = 0;
  int32_t timeout_ms = 0;  // <= 0: the session is expired (or unknown to the server)
  int64_t session_id = 0;
  std::string password;
  bool read_only = false;
};

struct RequestHeader {
  int32_t xid = 0;
  int32_t type = 0;
};

struct ReplyHeader {
  int32_t xid = 0;
  int64_t zxid = 0;
  int32_t err = 0;
};

struct WatcherEventRecord {
  int32_t type = 0;
  int32_t state = 0;
  std::string path;
};

struct SetWatches2 {
  int64_t relative_zxid = 0;
  std::vector<std::string> data_watches;
  std::vector<std::string> exist_watches;
  std::vector<std::string> child_watches;
  std::vector<std::string> persistent_watches;
  std::vector<std::string> persistent_recursive_watches;

  size_t size() const {
    return data_watches.size() + exist_watches.size() + child_watches.size() +
           persistent_watches.size() + persistent_recursive_watches.size();
  }
};

// --- Request encoding (client side) -------------------------------------------------------

// A complete ConnectRequest frame.
std::string EncodeConnectRequest(const ConnectRequest& request);

// Starts a request frame with a header; finish the record with `writer()` and call Finish().
class RequestFrame {
 public:
  RequestFrame(int32_t xid, OpCode op);
  JuteWriter& writer() { return writer_; }
  std::string Finish() &&;

 private:
  std::string bytes_;
  JuteWriter writer_;
  size_t frame_start_;
};

// Overwrites the xid of an encoded request frame (the client assigns xids when it sends).
// REQUIRES: frame.size() >= kRequestFramePrefix.
void PatchXid(std::string& frame, int32_t xid);

// Records (written after the header). GetData, GetChildren, GetChildren2 and Exists requests
// share one layout: a path and a watch flag.
void WritePathWatchRequest(JuteWriter& w, std::string_view path, bool watch);
void WriteCreateRequest(JuteWriter& w, std::string_view path, std::string_view data,
                        const std::vector<Acl>& acl, int32_t flags);
// CreateTTLRequest: a create request followed by the TTL in milliseconds.
void WriteCreateTtlRequest(JuteWriter& w, std::string_view path, std::string_view data,
                           const std::vector<Acl>& acl, int32_t flags, int64_t ttl_ms);
void WriteDeleteRequest(JuteWriter& w, std::string_view path, int32_t version);
void WriteSetDataRequest(JuteWriter& w, std::string_view path, std::string_view data,
                         int32_t version);
void WriteCheckVersionRequest(JuteWriter& w, std::string_view path, int32_t version);
void WritePathRequest(JuteWriter& w, std::string_view path);  // sync, getACL
void WriteAddWatchRequest(JuteWriter& w, std::string_view path, AddWatchMode mode);
void WriteRemoveWatchesRequest(JuteWriter& w, std::string_view path, WatcherType type);
void WriteAuthPacket(JuteWriter& w, std::string_view scheme, std::string_view auth);
void WriteSetWatches2(JuteWriter& w, const SetWatches2& watches);
// A multi of writes: creates with a TTL mode as createTTL, containers as createContainer, other
// creates as create. Paths must already carry the chroot.
void WriteMultiRequest(JuteWriter& w, const std::vector<MultiOp>& ops);
// A multi-read: getData and getChildren operations.
void WriteMultiReadRequest(JuteWriter& w, const std::vector<ReadOp>& ops);

// Splits watches into SetWatches2 records whose request frames are at most `max_frame_bytes`
// each (the C client sends one frame, which a large watch set makes bigger than the server's
// jute.maxbuffer). Every record carries `watches.relative_zxid`. A single path longer than the
// limit still gets a record of its own.
std::vector<SetWatches2> ChunkSetWatches(const SetWatches2& watches, size_t max_frame_bytes);
// The size of the request frame that would carry `watches`.
size_t SetWatches2FrameBytes(const SetWatches2& watches);

// --- Reply decoding (client side) ---------------------------------------------------------
// Each reads one record from `r`; on failure `r` says why.

bool ReadStat(JuteReader& r, Stat* stat);
bool ReadReplyHeader(JuteReader& r, ReplyHeader* header);
bool ReadWatcherEvent(JuteReader& r, WatcherEventRecord* event);
bool ReadGetDataResponse(JuteReader& r, std::string* data, Stat* stat);
bool ReadGetChildren2Response(JuteReader& r, std::vector<std::string>* children, Stat* stat);
bool ReadCreateResponse(JuteReader& r, std::string* path);               // create
bool ReadCreate2Response(JuteReader& r, std::string* path, Stat* stat);  // create2, container
bool ReadErrorResponse(JuteReader& r, int32_t* err);
bool ReadGetAclResponse(JuteReader& r, std::vector<Acl>* acl, Stat* stat);

// A multi's results; fails when there are more than `max_results` (the number of operations
// sent), so a hostile reply cannot make the client build an unbounded list.
bool ReadMultiResponse(JuteReader& r, size_t max_results, std::vector<MultiOpResult>* results);
bool ReadMultiReadResponse(JuteReader& r, size_t max_results, std::vector<ReadResult>* results);

// A whole ConnectResponse frame (payload without the length prefix). The trailing read-only
// flag is optional, as old servers omit it.
Result<ConnectResponse, std::string> DecodeConnectResponse(std::string_view payload);

// --- The server's side (tests, fakes, fuzzing) --------------------------------------------

Result<ConnectRequest, std::string> DecodeConnectRequest(std::string_view payload);
bool ReadRequestHeader(JuteReader& r, RequestHeader* header);
bool ReadSetWatches2(JuteReader& r, SetWatches2* watches);
std::string EncodeConnectResponse(const ConnectResponse& response);
void WriteStat(JuteWriter& w, const Stat& stat);
void WriteGetAclResponse(JuteWriter& w, const std::vector<Acl>& acl, const Stat& stat);
void WriteReplyHeader(JuteWriter& w, const ReplyHeader& header);
void WriteWatcherEvent(JuteWriter& w, const WatcherEventRecord& event);
// A complete reply frame: header, then `body` bytes (already jute-encoded, may be empty).
std::string EncodeReplyFrame(const ReplyHeader& header, std::string_view body);

// --- Framing ------------------------------------------------------------------------------

// Cuts a received byte stream into frames. A frame whose length is negative or larger than the
// limit is an error (the connection must be closed); the buffer grows only as far as a frame
// that passed that check needs, so memory stays bounded by the limit.
class FrameReader {
 public:
  explicit FrameReader(size_t max_frame_bytes) : max_frame_bytes_(max_frame_bytes) {}

  // Space for at least `min_bytes` more received bytes; invalidates frames returned before.
  std::span<char> Writable(size_t min_bytes);
  // Marks `bytes` of the writable space as received.
  void Commit(size_t bytes);
  // The next complete frame's payload (without its length prefix), or nullopt if more bytes are
  // needed. The view stays valid until the next Writable() call.
  Result<std::optional<std::string_view>, std::string> Next();
  // Bytes received but not yet returned as frames.
  size_t buffered() const { return end_ - begin_; }
  void Reset();

 private:
  size_t max_frame_bytes_;
  std::vector<char> buffer_;
  size_t begin_ = 0;
  size_t end_ = 0;
};

}  // namespace zk2etcd::zk::proto

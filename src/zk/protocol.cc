#include "zk/protocol.h"

#include <cstring>

namespace zk2etcd::zk::proto {

namespace {

void WriteAclVector(JuteWriter& w, const std::vector<Acl>& acl) {
  w.WriteInt32(static_cast<int32_t>(acl.size()));
  for (const auto& entry : acl) {
    w.WriteInt32(entry.perms);
    w.WriteBuffer(entry.scheme);
    w.WriteBuffer(entry.id);
  }
}

void WriteMultiHeader(JuteWriter& w, int32_t type, bool done, int32_t err) {
  w.WriteInt32(type);
  w.WriteBool(done);
  w.WriteInt32(err);
}

// Every entry takes at least 12 bytes (perms and two lengths), which bounds the count by the
// bytes that remain before anything is reserved.
bool ReadAclVector(JuteReader& r, std::vector<Acl>* acl) {
  constexpr size_t kMinEntryBytes = 12;
  const size_t at = r.position();
  int32_t count = 0;
  if (!r.ReadInt32(&count)) return false;
  acl->clear();
  if (count == -1) return true;
  if (count < 0 || static_cast<size_t>(count) > r.remaining() / kMinEntryBytes) {
    return r.Fail("ACL count " + std::to_string(count) + " at offset " + std::to_string(at) +
                  " does not fit the " + std::to_string(r.remaining()) + " bytes that remain");
  }
  acl->reserve(static_cast<size_t>(count));
  for (int32_t i = 0; i < count; ++i) {
    Acl entry;
    if (!r.ReadInt32(&entry.perms) || !r.ReadBuffer(&entry.scheme) || !r.ReadBuffer(&entry.id)) {
      return false;
    }
    acl->push_back(std::move(entry));
  }
  return true;
}

bool ReadMultiHeader(JuteReader& r, int32_t* type, bool* done, int32_t* err) {
  return r.ReadInt32(type) && r.ReadBool(done) && r.ReadInt32(err);
}

size_t VectorBytes(const std::vector<std::string>& strings) {
  size_t bytes = 4;
  for (const auto& s : strings) bytes += 4 + s.size();
  return bytes;
}

}  // namespace

int32_t CreateFlags(CreateMode mode) {
  switch (mode) {
    case CreateMode::kPersistent:
      return 0;
    case CreateMode::kEphemeral:
      return 1;
    case CreateMode::kPersistentSequential:
      return 2;
    case CreateMode::kEphemeralSequential:
      return 3;
    case CreateMode::kContainer:
      return 4;
    case CreateMode::kPersistentWithTtl:
      return 5;
    case CreateMode::kPersistentSequentialWithTtl:
      return 6;
  }
  return 0;
}

std::string EncodeConnectRequest(const ConnectRequest& request) {
  std::string bytes;
  JuteWriter w(bytes);
  const size_t frame = w.BeginFrame();
  w.WriteInt32(request.protocol_version);
  w.WriteInt64(request.last_zxid_seen);
  w.WriteInt32(request.timeout_ms);
  w.WriteInt64(request.session_id);
  w.WriteBuffer(request.password);
  w.WriteBool(request.read_only);
  w.EndFrame(frame);
  return bytes;
}

RequestFrame::RequestFrame(int32_t xid, OpCode op) : writer_(bytes_) {
  frame_start_ = writer_.BeginFrame();
  writer_.WriteInt32(xid);
  writer_.WriteInt32(static_cast<int32_t>(op));
}

std::string RequestFrame::Finish() && {
  writer_.EndFrame(frame_start_);
  return std::move(bytes_);
}

bool ReplayableOp(OpCode op) {
  switch (op) {
    case OpCode::kExists:
    case OpCode::kGetData:
    case OpCode::kGetAcl:
    case OpCode::kGetChildren:
    case OpCode::kGetChildren2:
    case OpCode::kSync:
    case OpCode::kMultiRead:
    case OpCode::kGetEphemerals:
    case OpCode::kGetAllChildrenNumber:
    case OpCode::kAddWatch:
    case OpCode::kWhoAmI:
      return true;
    default:
      return false;
  }
}

void PatchXid(std::string& frame, int32_t xid) {
  const auto bits = static_cast<uint32_t>(xid);
  frame[4] = static_cast<char>(bits >> 24);
  frame[5] = static_cast<char>(bits >> 16);
  frame[6] = static_cast<char>(bits >> 8);
  frame[7] = static_cast<char>(bits);
}

void WritePathWatchRequest(JuteWriter& w, std::string_view path, bool watch) {
  w.WriteBuffer(path);
  w.WriteBool(watch);
}

void WriteCreateRequest(JuteWriter& w, std::string_view path, std::string_view data,
                        const std::vector<Acl>& acl, int32_t flags) {
  w.WriteBuffer(path);
  w.WriteBuffer(data);
  WriteAclVector(w, acl);
  w.WriteInt32(flags);
}

void WriteCreateTtlRequest(JuteWriter& w, std::string_view path, std::string_view data,
                           const std::vector<Acl>& acl, int32_t flags, int64_t ttl_ms) {
  WriteCreateRequest(w, path, data, acl, flags);
  w.WriteInt64(ttl_ms);
}

void WriteDeleteRequest(JuteWriter& w, std::string_view path, int32_t version) {
  w.WriteBuffer(path);
  w.WriteInt32(version);
}

void WriteSetDataRequest(JuteWriter& w, std::string_view path, std::string_view data,
                         int32_t version) {
  w.WriteBuffer(path);
  w.WriteBuffer(data);
  w.WriteInt32(version);
}

void WriteCheckVersionRequest(JuteWriter& w, std::string_view path, int32_t version) {
  w.WriteBuffer(path);
  w.WriteInt32(version);
}

void WritePathRequest(JuteWriter& w, std::string_view path) { w.WriteBuffer(path); }

void WriteAddWatchRequest(JuteWriter& w, std::string_view path, AddWatchMode mode) {
  w.WriteBuffer(path);
  w.WriteInt32(static_cast<int32_t>(mode));
}

void WriteRemoveWatchesRequest(JuteWriter& w, std::string_view path, WatcherType type) {
  w.WriteBuffer(path);
  w.WriteInt32(static_cast<int32_t>(type));
}

void WriteAuthPacket(JuteWriter& w, std::string_view scheme, std::string_view auth) {
  w.WriteInt32(0);  // type, unused by the server
  w.WriteBuffer(scheme);
  w.WriteBuffer(auth);
}

void WriteSetWatches2(JuteWriter& w, const SetWatches2& watches) {
  w.WriteInt64(watches.relative_zxid);
  w.WriteStringVector(watches.data_watches);
  w.WriteStringVector(watches.exist_watches);
  w.WriteStringVector(watches.child_watches);
  w.WriteStringVector(watches.persistent_watches);
  w.WriteStringVector(watches.persistent_recursive_watches);
}

void WriteMultiRequest(JuteWriter& w, const std::vector<MultiOp>& ops) {
  for (const auto& op : ops) {
    switch (op.kind) {
      case MultiOp::Kind::kCreate:
        if (IsTtl(op.mode)) {
          WriteMultiHeader(w, static_cast<int32_t>(OpCode::kCreateTtl), false, -1);
          WriteCreateTtlRequest(w, op.path, op.data, op.acl, CreateFlags(op.mode), op.ttl_ms);
          break;
        }
        WriteMultiHeader(
            w,
            static_cast<int32_t>(op.mode == CreateMode::kContainer ? OpCode::kCreateContainer
                                                                   : OpCode::kCreate),
            false, -1);
        WriteCreateRequest(w, op.path, op.data, op.acl, CreateFlags(op.mode));
        break;
      case MultiOp::Kind::kDelete:
        WriteMultiHeader(w, static_cast<int32_t>(OpCode::kDelete), false, -1);
        WriteDeleteRequest(w, op.path, op.version);
        break;
      case MultiOp::Kind::kSetData:
        WriteMultiHeader(w, static_cast<int32_t>(OpCode::kSetData), false, -1);
        WriteSetDataRequest(w, op.path, op.data, op.version);
        break;
      case MultiOp::Kind::kCheck:
        WriteMultiHeader(w, static_cast<int32_t>(OpCode::kCheck), false, -1);
        WriteCheckVersionRequest(w, op.path, op.version);
        break;
    }
  }
  WriteMultiHeader(w, -1, true, -1);
}

void WriteMultiReadRequest(JuteWriter& w, const std::vector<ReadOp>& ops) {
  for (const auto& op : ops) {
    const OpCode code = op.kind == ReadOp::Kind::kGetData ? OpCode::kGetData : OpCode::kGetChildren;
    WriteMultiHeader(w, static_cast<int32_t>(code), false, -1);
    // The server ignores the watch flag of reads inside a multi-read.
    WritePathWatchRequest(w, op.path, false);
  }
  WriteMultiHeader(w, -1, true, -1);
}

size_t SetWatches2FrameBytes(const SetWatches2& watches) {
  return kRequestFramePrefix + 8 + VectorBytes(watches.data_watches) +
         VectorBytes(watches.exist_watches) + VectorBytes(watches.child_watches) +
         VectorBytes(watches.persistent_watches) +
         VectorBytes(watches.persistent_recursive_watches);
}

std::vector<SetWatches2> ChunkSetWatches(const SetWatches2& watches, size_t max_frame_bytes) {
  std::vector<SetWatches2> chunks;
  SetWatches2 current;
  current.relative_zxid = watches.relative_zxid;
  const size_t empty_bytes = SetWatches2FrameBytes(current);
  size_t current_bytes = empty_bytes;
  auto add = [&](const std::vector<std::string>& from, std::vector<std::string> SetWatches2::*to) {
    for (const auto& path : from) {
      const size_t bytes = 4 + path.size();
      if (current_bytes + bytes > max_frame_bytes && current.size() > 0) {
        chunks.push_back(std::move(current));
        current = SetWatches2{};
        current.relative_zxid = watches.relative_zxid;
        current_bytes = empty_bytes;
      }
      (current.*to).push_back(path);
      current_bytes += bytes;
    }
  };
  add(watches.data_watches, &SetWatches2::data_watches);
  add(watches.exist_watches, &SetWatches2::exist_watches);
  add(watches.child_watches, &SetWatches2::child_watches);
  add(watches.persistent_watches, &SetWatches2::persistent_watches);
  add(watches.persistent_recursive_watches, &SetWatches2::persistent_recursive_watches);
  if (current.size() > 0) chunks.push_back(std::move(current));
  return chunks;
}

bool ReadStat(JuteReader& r, Stat* stat) {
  return r.ReadInt64(&stat->czxid) && r.ReadInt64(&stat->mzxid) && r.ReadInt64(&stat->ctime) &&
         r.ReadInt64(&stat->mtime) && r.ReadInt32(&stat->version) && r.ReadInt32(&stat->cversion) &&
         r.ReadInt32(&stat->aversion) && r.ReadInt64(&stat->ephemeral_owner) &&
         r.ReadInt32(&stat->data_length) && r.ReadInt32(&stat->num_children) &&
         r.ReadInt64(&stat->pzxid);
}

bool ReadReplyHeader(JuteReader& r, ReplyHeader* header) {
  return r.ReadInt32(&header->xid) && r.ReadInt64(&header->zxid) && r.ReadInt32(&header->err);
}

bool ReadWatcherEvent(JuteReader& r, WatcherEventRecord* event) {
  return r.ReadInt32(&event->type) && r.ReadInt32(&event->state) && r.ReadBuffer(&event->path);
}

bool ReadGetDataResponse(JuteReader& r, std::string* data, Stat* stat) {
  return r.ReadBuffer(data) && ReadStat(r, stat);
}

bool ReadGetChildren2Response(JuteReader& r, std::vector<std::string>* children, Stat* stat) {
  return r.ReadStringVector(children) && ReadStat(r, stat);
}

bool ReadCreateResponse(JuteReader& r, std::string* path) { return r.ReadBuffer(path); }

bool ReadCreate2Response(JuteReader& r, std::string* path, Stat* stat) {
  return r.ReadBuffer(path) && ReadStat(r, stat);
}

bool ReadErrorResponse(JuteReader& r, int32_t* err) { return r.ReadInt32(err); }

bool ReadGetAclResponse(JuteReader& r, std::vector<Acl>* acl, Stat* stat) {
  return ReadAclVector(r, acl) && ReadStat(r, stat);
}

bool ReadMultiResponse(JuteReader& r, size_t max_results, std::vector<MultiOpResult>* results) {
  results->clear();
  while (true) {
    int32_t type = 0;
    bool done = false;
    int32_t err = 0;
    if (!ReadMultiHeader(r, &type, &done, &err)) return false;
    if (done) return true;
    if (results->size() >= max_results) {
      return r.Fail("multi reply has more than the " + std::to_string(max_results) +
                    " results requested");
    }
    MultiOpResult result;
    switch (static_cast<OpCode>(type)) {
      case OpCode::kCreate:
        if (!ReadCreateResponse(r, &result.path)) return false;
        break;
      case OpCode::kCreate2:
      case OpCode::kCreateContainer:
      case OpCode::kCreateTtl:
        if (!ReadCreate2Response(r, &result.path, &result.stat)) return false;
        break;
      case OpCode::kDelete:
      case OpCode::kDeleteContainer:
      case OpCode::kCheck:
        break;
      case OpCode::kSetData:
        if (!ReadStat(r, &result.stat)) return false;
        break;
      case OpCode::kError: {
        int32_t op_err = 0;
        if (!ReadErrorResponse(r, &op_err)) return false;
        result.error = ZkErrorCodeFromServer(op_err);
        break;
      }
      default:
        return r.Fail("unexpected operation type " + std::to_string(type) + " in a multi reply");
    }
    results->push_back(std::move(result));
  }
}

bool ReadMultiReadResponse(JuteReader& r, size_t max_results, std::vector<ReadResult>* results) {
  results->clear();
  while (true) {
    int32_t type = 0;
    bool done = false;
    int32_t err = 0;
    if (!ReadMultiHeader(r, &type, &done, &err)) return false;
    if (done) return true;
    if (results->size() >= max_results) {
      return r.Fail("multi-read reply has more than the " + std::to_string(max_results) +
                    " results requested");
    }
    ReadResult result;
    switch (static_cast<OpCode>(type)) {
      case OpCode::kGetData:
        result.kind = ReadOp::Kind::kGetData;
        if (!ReadGetDataResponse(r, &result.data, &result.stat)) return false;
        break;
      case OpCode::kGetChildren:
        result.kind = ReadOp::Kind::kGetChildren;
        if (!r.ReadStringVector(&result.children)) return false;
        break;
      case OpCode::kError: {
        int32_t op_err = 0;
        if (!ReadErrorResponse(r, &op_err)) return false;
        result.error = ZkErrorCodeFromServer(op_err);
        if (result.error == ZkErrorCode::kOk) {
          return r.Fail("multi-read error result without an error code");
        }
        break;
      }
      default:
        return r.Fail("unexpected operation type " + std::to_string(type) +
                      " in a multi-read reply");
    }
    results->push_back(std::move(result));
  }
}

Result<ConnectResponse, std::string> DecodeConnectResponse(std::string_view payload) {
  JuteReader r(payload);
  ConnectResponse response;
  if (!r.ReadInt32(&response.protocol_version) || !r.ReadInt32(&response.timeout_ms) ||
      !r.ReadInt64(&response.session_id) || !r.ReadBuffer(&response.password)) {
    return Unexpected{"malformed ConnectResponse: " + r.error()};
  }
  if (r.remaining() >= 1) r.ReadBool(&response.read_only);
  return response;
}

Result<ConnectRequest, std::string> DecodeConnectRequest(std::string_view payload) {
  JuteReader r(payload);
  ConnectRequest request;
  if (!r.ReadInt32(&request.protocol_version) || !r.ReadInt64(&request.last_zxid_seen) ||
      !r.ReadInt32(&request.timeout_ms) || !r.ReadInt64(&request.session_id) ||
      !r.ReadBuffer(&request.password)) {
    return Unexpected{"malformed ConnectRequest: " + r.error()};
  }
  if (r.remaining() >= 1) r.ReadBool(&request.read_only);
  return request;
}

bool ReadRequestHeader(JuteReader& r, RequestHeader* header) {
  return r.ReadInt32(&header->xid) && r.ReadInt32(&header->type);
}

bool ReadSetWatches2(JuteReader& r, SetWatches2* watches) {
  return r.ReadInt64(&watches->relative_zxid) && r.ReadStringVector(&watches->data_watches) &&
         r.ReadStringVector(&watches->exist_watches) &&
         r.ReadStringVector(&watches->child_watches) &&
         r.ReadStringVector(&watches->persistent_watches) &&
         r.ReadStringVector(&watches->persistent_recursive_watches);
}

std::string EncodeConnectResponse(const ConnectResponse& response) {
  std::string bytes;
  JuteWriter w(bytes);
  const size_t frame = w.BeginFrame();
  w.WriteInt32(response.protocol_version);
  w.WriteInt32(response.timeout_ms);
  w.WriteInt64(response.session_id);
  w.WriteBuffer(response.password);
  w.WriteBool(response.read_only);
  w.EndFrame(frame);
  return bytes;
}

void WriteStat(JuteWriter& w, const Stat& stat) {
  w.WriteInt64(stat.czxid);
  w.WriteInt64(stat.mzxid);
  w.WriteInt64(stat.ctime);
  w.WriteInt64(stat.mtime);
  w.WriteInt32(stat.version);
  w.WriteInt32(stat.cversion);
  w.WriteInt32(stat.aversion);
  w.WriteInt64(stat.ephemeral_owner);
  w.WriteInt32(stat.data_length);
  w.WriteInt32(stat.num_children);
  w.WriteInt64(stat.pzxid);
}

void WriteGetAclResponse(JuteWriter& w, const std::vector<Acl>& acl, const Stat& stat) {
  WriteAclVector(w, acl);
  WriteStat(w, stat);
}

void WriteReplyHeader(JuteWriter& w, const ReplyHeader& header) {
  w.WriteInt32(header.xid);
  w.WriteInt64(header.zxid);
  w.WriteInt32(header.err);
}

void WriteWatcherEvent(JuteWriter& w, const WatcherEventRecord& event) {
  w.WriteInt32(event.type);
  w.WriteInt32(event.state);
  w.WriteBuffer(event.path);
}

std::string EncodeReplyFrame(const ReplyHeader& header, std::string_view body) {
  std::string bytes;
  JuteWriter w(bytes);
  const size_t frame = w.BeginFrame();
  WriteReplyHeader(w, header);
  bytes.append(body);
  w.EndFrame(frame);
  return bytes;
}

std::span<char> FrameReader::Writable(size_t min_bytes) {
  if (begin_ == end_) {
    begin_ = end_ = 0;
  } else if (begin_ > 0 && buffer_.size() - end_ < min_bytes) {
    std::memmove(buffer_.data(), buffer_.data() + begin_, end_ - begin_);
    end_ -= begin_;
    begin_ = 0;
  }
  if (buffer_.size() - end_ < min_bytes) buffer_.resize(end_ + min_bytes);
  return std::span<char>(buffer_.data() + end_, buffer_.size() - end_);
}

void FrameReader::Commit(size_t bytes) { end_ += bytes; }

Result<std::optional<std::string_view>, std::string> FrameReader::Next() {
  const size_t available = end_ - begin_;
  if (available < 4) return std::optional<std::string_view>();
  const auto* p = reinterpret_cast<const unsigned char*>(buffer_.data() + begin_);
  const auto length = static_cast<int32_t>((uint32_t{p[0]} << 24) | (uint32_t{p[1]} << 16) |
                                           (uint32_t{p[2]} << 8) | uint32_t{p[3]});
  if (length < 0) {
    return Unexpected{"negative frame length " + std::to_string(length)};
  }
  if (static_cast<size_t>(length) > max_frame_bytes_) {
    return Unexpected{"frame length " + std::to_string(length) + " exceeds the limit of " +
                      std::to_string(max_frame_bytes_) + " bytes"};
  }
  if (available - 4 < static_cast<size_t>(length)) return std::optional<std::string_view>();
  std::string_view frame(buffer_.data() + begin_ + 4, static_cast<size_t>(length));
  begin_ += 4 + static_cast<size_t>(length);
  return std::optional<std::string_view>(frame);
}

void FrameReader::Reset() {
  begin_ = end_ = 0;
  buffer_.clear();
  buffer_.shrink_to_fit();
}

}  // namespace zk2etcd::zk::proto

#include "zk/jute.h"

#include <limits>

namespace zk2etcd::zk {

namespace {

void AppendBigEndian32(std::string& out, uint32_t value) {
  const char bytes[4] = {static_cast<char>(value >> 24), static_cast<char>(value >> 16),
                         static_cast<char>(value >> 8), static_cast<char>(value)};
  out.append(bytes, 4);
}

}  // namespace

void JuteWriter::WriteInt32(int32_t value) {
  AppendBigEndian32(out_, static_cast<uint32_t>(value));
}

void JuteWriter::WriteInt64(int64_t value) {
  const auto bits = static_cast<uint64_t>(value);
  AppendBigEndian32(out_, static_cast<uint32_t>(bits >> 32));
  AppendBigEndian32(out_, static_cast<uint32_t>(bits));
}

void JuteWriter::WriteBool(bool value) { out_.push_back(value ? '\1' : '\0'); }

void JuteWriter::WriteBuffer(std::string_view bytes) {
  WriteInt32(static_cast<int32_t>(bytes.size()));
  out_.append(bytes);
}

void JuteWriter::WriteNullBuffer() { WriteInt32(-1); }

void JuteWriter::WriteStringVector(const std::vector<std::string>& strings) {
  WriteInt32(static_cast<int32_t>(strings.size()));
  for (const auto& s : strings) WriteBuffer(s);
}

size_t JuteWriter::BeginFrame() {
  const size_t offset = out_.size();
  WriteInt32(0);
  return offset;
}

void JuteWriter::EndFrame(size_t offset) {
  const auto length = static_cast<uint32_t>(out_.size() - offset - 4);
  out_[offset] = static_cast<char>(length >> 24);
  out_[offset + 1] = static_cast<char>(length >> 16);
  out_[offset + 2] = static_cast<char>(length >> 8);
  out_[offset + 3] = static_cast<char>(length);
}

bool JuteReader::Fail(std::string what) {
  if (error_.empty()) error_ = std::move(what);
  return false;
}

bool JuteReader::Need(size_t bytes, const char* what) {
  if (!ok()) return false;
  if (remaining() < bytes) {
    return Fail(std::string("truncated ") + what + " at offset " + std::to_string(position_) +
                ": need " + std::to_string(bytes) + " bytes, " + std::to_string(remaining()) +
                " remain");
  }
  return true;
}

uint32_t JuteReader::TakeUint32() {
  const auto* p = reinterpret_cast<const unsigned char*>(data_.data() + position_);
  position_ += 4;
  return (uint32_t{p[0]} << 24) | (uint32_t{p[1]} << 16) | (uint32_t{p[2]} << 8) | uint32_t{p[3]};
}

bool JuteReader::ReadInt32(int32_t* value) {
  if (!Need(4, "int")) return false;
  *value = static_cast<int32_t>(TakeUint32());
  return true;
}

bool JuteReader::ReadInt64(int64_t* value) {
  if (!Need(8, "long")) return false;
  const uint64_t high = TakeUint32();
  const uint64_t low = TakeUint32();
  *value = static_cast<int64_t>((high << 32) | low);
  return true;
}

bool JuteReader::ReadBool(bool* value) {
  if (!Need(1, "boolean")) return false;
  *value = data_[position_++] != 0;
  return true;
}

bool JuteReader::ReadBuffer(std::string* bytes) {
  const size_t at = position_;
  int32_t length = 0;
  if (!ReadInt32(&length)) return false;
  if (length == -1) {
    bytes->clear();
    return true;
  }
  if (length < 0) {
    return Fail("negative buffer length " + std::to_string(length) + " at offset " +
                std::to_string(at));
  }
  if (static_cast<size_t>(length) > remaining()) {
    return Fail("buffer length " + std::to_string(length) + " at offset " + std::to_string(at) +
                " exceeds the " + std::to_string(remaining()) + " bytes that remain");
  }
  bytes->assign(data_.data() + position_, static_cast<size_t>(length));
  position_ += static_cast<size_t>(length);
  return true;
}

bool JuteReader::SkipBuffer() {
  const size_t at = position_;
  int32_t length = 0;
  if (!ReadInt32(&length)) return false;
  if (length == -1) return true;
  if (length < 0 || static_cast<size_t>(length) > remaining()) {
    return Fail("bad buffer length " + std::to_string(length) + " at offset " + std::to_string(at));
  }
  position_ += static_cast<size_t>(length);
  return true;
}

bool JuteReader::ReadStringVector(std::vector<std::string>* strings) {
  const size_t at = position_;
  int32_t count = 0;
  if (!ReadInt32(&count)) return false;
  strings->clear();
  if (count == -1) return true;
  // Every element takes at least its 4-byte length, which bounds the count by the frame's size
  // before anything is reserved.
  if (count < 0 || static_cast<size_t>(count) > remaining() / 4) {
    return Fail("vector count " + std::to_string(count) + " at offset " + std::to_string(at) +
                " does not fit the " + std::to_string(remaining()) + " bytes that remain");
  }
  strings->reserve(static_cast<size_t>(count));
  for (int32_t i = 0; i < count; ++i) {
    std::string s;
    if (!ReadBuffer(&s)) return false;
    strings->push_back(std::move(s));
  }
  return true;
}

}  // namespace zk2etcd::zk

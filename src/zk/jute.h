// Jute, ZooKeeper's record serialisation: big-endian int (4 bytes), long (8), boolean (1),
// buffer and ustring (int length, -1 for null, then the bytes) and vector (int count, -1 for null,
// then the elements).
//
// JuteReader reads untrusted bytes from the network: every length and count is checked against
// the bytes that remain before anything is allocated, so a hostile frame can neither crash the
// reader nor make it allocate more than the frame's size. The first failure is sticky: later reads
// return false and error() says what was wrong and where.
//
// Not thread-safe; use one reader or writer per thread.
#pragma once

#include <cstddef>
#include <cstdint>
#include <string>
#include <string_view>
#include <vector>

namespace zk2etcd::zk {

class JuteWriter {
 public:
  // Appends to `out`, which must outlive the writer.
  explicit JuteWriter(std::string& out) : out_(out) {}

  void WriteInt32(int32_t value);
  void WriteInt64(int64_t value);
  void WriteBool(bool value);
  void WriteBuffer(std::string_view bytes);  // also a ustring
  void WriteNullBuffer();
  void WriteStringVector(const std::vector<std::string>& strings);

  // A length-prefixed frame: BeginFrame() reserves the 4-byte length and returns its offset;
  // EndFrame(offset) fills it with the number of bytes written since.
  size_t BeginFrame();
  void EndFrame(size_t offset);

  size_t size() const { return out_.size(); }

 private:
  std::string& out_;
};

class JuteReader {
 public:
  explicit JuteReader(std::string_view data) : data_(data) {}

  bool ReadInt32(int32_t* value);
  bool ReadInt64(int64_t* value);
  bool ReadBool(bool* value);
  // A buffer or ustring; null (-1) reads as empty.
  bool ReadBuffer(std::string* bytes);
  // Skips a buffer without copying it.
  bool SkipBuffer();
  // A vector of ustrings; null (-1) reads as empty.
  bool ReadStringVector(std::vector<std::string>* strings);

  // Marks the reader failed with `what` (for record-level checks by callers).
  bool Fail(std::string what);

  bool ok() const { return error_.empty(); }
  const std::string& error() const { return error_; }
  size_t remaining() const { return data_.size() - position_; }
  size_t position() const { return position_; }
  bool AtEnd() const { return position_ == data_.size(); }

 private:
  bool Need(size_t bytes, const char* what);
  uint32_t TakeUint32();

  std::string_view data_;
  size_t position_ = 0;
  std::string error_;
};

}  // namespace zk2etcd::zk

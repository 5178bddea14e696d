// RangeCursor: the keys of some etcd ranges in key order, a page at a time, all at one revision,
// with requests cut at given split keys and sent ahead (the listing of EtcdSink). Not
// thread-safe: one thread uses a cursor (its requests run on short-lived threads of its own).
#pragma once

#include <cstddef>
#include <cstdint>
#include <deque>
#include <future>
#include <optional>
#include <string>
#include <vector>

#include "connectors/etcd/key_layout.h"
#include "etcd/etcd_client.h"

namespace zk2etcd::connectors {

// Reads the keys of some ranges in key order, a page at a time, all at one revision.
//
// etcd 3.4 walks the whole index of a request's range before it applies the limit, so paging
// [key, end) with a limit costs the keys from `key` to `end` per page: quadratic in the size of
// the range (a million keys in pages of 1,000 kept etcd busy for minutes). Each request
// therefore ends at the next of the sorted `splits` (keys expected to be about a page apart,
// such as every page_size-th ZooKeeper key), and a page costs what lies before that split.
//
// The split ranges do not depend on each other, so the first page of each of the next
// `prefetch` of them is requested at once (each on its own short-lived thread, the client's
// Range being blocking and thread-safe): over a network with a round trip of R, listing S
// split ranges takes about S x R / prefetch instead of S x R. Only a split range with more
// than a page (etcd holds more than ZooKeeper there) is paged on sequentially. Memory: up to
// 1 + prefetch pages. Destroying a cursor waits for the requests it has in flight.
class RangeCursor {
 public:
  // `revision` 0 reads the first page at the newest revision and the rest at that one.
  // `splits`: strictly increasing keys where requests may end (none: each range is paged whole).
  // `prefetch`: split ranges requested ahead of the one being read (0: one request at a time).
  RangeCursor(etcd::EtcdClient& etcd, std::vector<KeyRange> ranges, int64_t revision,
              int64_t page_size, std::vector<std::string> splits = {}, size_t prefetch = 0);
  ~RangeCursor();
  RangeCursor(const RangeCursor&) = delete;
  RangeCursor& operator=(const RangeCursor&) = delete;
  // With a revision given: sends the first 1 + prefetch requests now, so that they travel
  // while the caller does something else (such as starting another cursor). Otherwise, and
  // when called again, does nothing: Next() sends what it needs.
  void Start();
  // The next key-value, or nullopt after the last one.
  etcd::EtcdResult<std::optional<etcd::KeyValue>> Next();
  // The revision read at (0 until the first page).
  int64_t revision() const { return revision_; }
  size_t keys_read() const { return keys_read_; }
  size_t requests() const { return requests_; }

 private:
  etcd::EtcdResult<void> FetchPage();
  // Starts requests for the next segments while fewer than 1 + prefetch are in flight.
  void TopUp();

  etcd::EtcdClient& etcd_;
  // Every request's first page, in key order: a range cut at the splits inside it.
  std::vector<etcd::RangeRequest> segments_;
  size_t next_segment_ = 0;  // the first not yet requested
  std::deque<std::future<etcd::EtcdResult<etcd::RangeResponse>>> in_flight_;
  std::deque<etcd::RangeRequest> in_flight_requests_;  // beside in_flight_
  // The rest of a segment that had more than a page, read before the segments after it.
  std::optional<etcd::RangeRequest> continuation_;
  int64_t revision_;
  const int64_t page_size_;
  const size_t prefetch_;
  size_t requests_ = 0;
  std::vector<etcd::KeyValue> page_;
  size_t page_position_ = 0;
  size_t keys_read_ = 0;
};

}  // namespace zk2etcd::connectors

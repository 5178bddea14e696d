#include "connectors/etcd/range_cursor.h"

#include <algorithm>

namespace zk2etcd::connectors {

RangeCursor::RangeCursor(etcd::EtcdClient& etcd, std::vector<KeyRange> ranges, int64_t revision,
                         int64_t page_size, std::vector<std::string> splits, size_t prefetch)
    : etcd_(etcd), revision_(revision), page_size_(page_size), prefetch_(prefetch) {
  for (const KeyRange& range : ranges) {
    etcd::RangeRequest request;
    request.key = range.key;
    request.range_end = range.range_end;
    if (range.range_end.empty()) {  // a single key: no limit, no splits
      segments_.push_back(std::move(request));
      continue;
    }
    request.limit = page_size_;
    const bool to_the_end = range.range_end == std::string(1, '\0');
    for (auto split = std::upper_bound(splits.begin(), splits.end(), range.key);
         split != splits.end() && (to_the_end || *split < range.range_end); ++split) {
      request.range_end = *split;
      segments_.push_back(request);
      request.key = *split;
    }
    request.range_end = range.range_end;
    segments_.push_back(std::move(request));
  }
}

RangeCursor::~RangeCursor() {
  for (auto& future : in_flight_) future.wait();
}

void RangeCursor::TopUp() {
  while (next_segment_ < segments_.size() && in_flight_.size() < 1 + prefetch_) {
    etcd::RangeRequest request = segments_[next_segment_++];
    request.revision = revision_;
    ++requests_;
    in_flight_requests_.push_back(request);
    in_flight_.push_back(
        std::async(std::launch::async, [this, request] { return etcd_.Range(request); }));
  }
}

void RangeCursor::Start() {
  if (revision_ != 0 && requests_ == 0) TopUp();
}

etcd::EtcdResult<void> RangeCursor::FetchPage() {
  page_.clear();
  page_position_ = 0;
  while (page_.empty()) {
    etcd::RangeRequest request;
    etcd::EtcdResult<etcd::RangeResponse> response = Unexpected{etcd::Error{}};
    if (continuation_) {
      request = *std::move(continuation_);
      continuation_.reset();
      request.revision = revision_;
      ++requests_;
      response = etcd_.Range(request);
    } else if (revision_ == 0 && next_segment_ < segments_.size()) {
      // The first request fixes the revision every other one reads at.
      request = segments_[next_segment_++];
      ++requests_;
      response = etcd_.Range(request);
    } else {
      TopUp();
      if (in_flight_.empty()) return {};  // every segment read
      request = std::move(in_flight_requests_.front());
      in_flight_requests_.pop_front();
      response = in_flight_.front().get();
      in_flight_.pop_front();
    }
    if (!response.ok()) return Unexpected{response.error()};
    if (revision_ == 0) revision_ = response->revision;
    page_ = std::move(response->kvs);
    if (request.limit > 0 && response->more && !page_.empty()) {
      request.key = page_.back().key + std::string(1, '\0');
      continuation_ = std::move(request);
    }
    TopUp();  // the next segments travel while this page is merged
  }
  return {};
}

etcd::EtcdResult<std::optional<etcd::KeyValue>> RangeCursor::Next() {
  if (page_position_ >= page_.size()) {
    if (auto fetched = FetchPage(); !fetched.ok()) return Unexpected{fetched.error()};
    if (page_.empty()) return std::optional<etcd::KeyValue>();
  }
  ++keys_read_;
  return std::optional<etcd::KeyValue>(std::move(page_[page_position_++]));
}

}  // namespace zk2etcd::connectors

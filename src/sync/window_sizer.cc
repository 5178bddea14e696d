#include "sync/window_sizer.h"

#include <algorithm>
#include <cmath>

namespace zk2etcd::sync {

WindowSizer::WindowSizer(WindowSizerOptions options) : options_(options) {
  options_.min_window = std::max<size_t>(1, options_.min_window);
  options_.max_window = std::max(options_.max_window, options_.min_window);
  options_.initial_window =
      std::clamp(options_.initial_window, options_.min_window, options_.max_window);
  window_ = options_.initial_window;
}

WindowSizer::Ticket WindowSizer::OnTxnStarted(TimePoint now) const { return {now, completed_}; }

size_t WindowSizer::OnTxnDone(const Ticket& ticket, TimePoint now) {
  ++completed_;
  const double latency = std::max(1e-6, std::chrono::duration<double>(now - ticket.sent).count());
  const double rate = static_cast<double>(completed_ - ticket.completed_before) / latency;
  min_latency_s_ = completed_ == 1 ? latency : std::min(min_latency_s_, latency);
  // Windowed maximum of the rate: a monotonic queue whose front is the highest of the period.
  while (!rates_.empty() && rates_.back().value <= rate) rates_.pop_back();
  rates_.push_back({now, rate});
  while (rates_.front().at < now - options_.rate_period) rates_.pop_front();

  const double product = options_.gain * rates_.front().value * min_latency_s_;
  const double bounded = std::clamp(std::ceil(product), static_cast<double>(options_.min_window),
                                    static_cast<double>(options_.max_window));
  window_ = static_cast<size_t>(bounded);
  if (completed_ < options_.initial_window) window_ = std::max(window_, options_.initial_window);
  return window_;
}

std::chrono::steady_clock::duration WindowSizer::min_latency() const {
  return std::chrono::duration_cast<std::chrono::steady_clock::duration>(
      std::chrono::duration<double>(min_latency_s_));
}

double WindowSizer::txns_per_second() const { return rates_.empty() ? 0 : rates_.front().value; }

}  // namespace zk2etcd::sync

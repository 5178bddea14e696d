// Metrics: a small Prometheus registry (counters, gauges, histograms with fixed label names) and
// its text exposition format 0.0.4, served at /metrics. No client library: zk2etcd needs little,
// and owning the code keeps the hot path (one atomic add) and the output under our control.
//
// A family is a metric name with help text and a fixed list of label names; its children are the
// series, one per list of label values, created on first use and never removed. Callers on hot
// paths look a child up once and keep the reference (valid as long as the Registry lives): Inc,
// Set and Observe on a child are lock-free atomics. WithLabels() takes a shared lock and does not
// allocate when the child exists.
//
// Durations are observed in SECONDS as doubles (ObserveDuration() converts), and the default
// buckets resolve sub-millisecond to ten-second operations.
//
// Thread-safe: every method of every class here may be called from any thread.
#pragma once

#include <algorithm>
#include <atomic>
#include <chrono>
#include <cstdint>
#include <functional>
#include <initializer_list>
#include <map>
#include <memory>
#include <mutex>
#include <optional>
#include <shared_mutex>
#include <span>
#include <string>
#include <string_view>
#include <vector>

#include "common/op_observer.h"
#include "common/result.h"

namespace zk2etcd::ops {

// Upper bounds in seconds for operation latencies: 100 µs to 10 s.
inline constexpr double kDefaultDurationBuckets[] = {0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005,
                                                     0.01,   0.025,   0.05,   0.1,   0.25,   0.5,
                                                     1,      2.5,     5,      10};
std::vector<double> DefaultDurationBuckets();

enum class MetricType { kCounter, kGauge, kHistogram };

// The content type of Registry::Expose()'s output.
inline constexpr std::string_view kPrometheusTextContentType =
    "text/plain; version=0.0.4; charset=utf-8";

// A monotonically increasing value.
class Counter {
 public:
  // Negative and NaN amounts are ignored: a counter never goes down.
  void Inc(double amount = 1.0);
  double Value() const { return value_.load(std::memory_order_relaxed); }

 private:
  std::atomic<double> value_{0.0};
};

// A value that goes up and down.
class Gauge {
 public:
  void Set(double value) { value_.store(value, std::memory_order_relaxed); }
  void Add(double amount) { value_.fetch_add(amount, std::memory_order_relaxed); }
  void Inc() { Add(1.0); }
  void Dec() { Add(-1.0); }
  double Value() const { return value_.load(std::memory_order_relaxed); }

 private:
  std::atomic<double> value_{0.0};
};

// Counts observations into buckets by upper bound ("le", inclusive), plus their sum and count.
class Histogram {
 public:
  // `bounds` is strictly increasing and finite, owned by the family and outliving this child.
  explicit Histogram(std::span<const double> bounds);

  // NaN goes to the +Inf bucket only.
  void Observe(double value);
  void ObserveDuration(std::chrono::nanoseconds duration) {
    Observe(std::chrono::duration<double>(duration).count());
  }

  struct Snapshot {
    std::vector<uint64_t> cumulative;  // per bound, then +Inf; the last equals count
    double sum = 0;
    uint64_t count = 0;
  };
  // Counts are read one by one while others may observe: each is exact, the set is not an
  // atomic cut. count is the sum of the buckets, so the exposition is always self-consistent.
  Snapshot Read() const;

 private:
  std::span<const double> bounds_;
  std::unique_ptr<std::atomic<uint64_t>[]> counts_;  // bounds_.size() + 1 (the last is +Inf)
  std::atomic<double> sum_{0.0};
};

// What every family has. Created only by Registry.
class MetricFamily {
 public:
  MetricFamily(const MetricFamily&) = delete;
  MetricFamily& operator=(const MetricFamily&) = delete;
  virtual ~MetricFamily() = default;

  const std::string& name() const { return name_; }
  const std::string& help() const { return help_; }
  MetricType type() const { return type_; }
  const std::vector<std::string>& label_names() const { return label_names_; }

  // Appends this family's HELP, TYPE and sample lines; nothing if it has no series.
  virtual void AppendExposition(std::string& out) const = 0;

 protected:
  MetricFamily(std::string name, std::string help, MetricType type,
               std::vector<std::string> label_names);

 private:
  const std::string name_;
  const std::string help_;
  const MetricType type_;
  const std::vector<std::string> label_names_;
};

// Orders label-value lists; transparent so that lookups by string_views do not allocate.
struct LabelValuesLess {
  using is_transparent = void;
  template <typename A, typename B>
  bool operator()(const A& a, const B& b) const {
    return std::lexicographical_compare(
        a.begin(), a.end(), b.begin(), b.end(),
        [](std::string_view x, std::string_view y) { return x < y; });
  }
};

// The children of a family, keyed by label values. Child is Counter, Gauge or Histogram.
template <typename Child>
class FamilyOf : public MetricFamily {
 public:
  // The child for these label values (in the order of label_names()), created on first use. The
  // reference stays valid for the registry's lifetime; keep it on hot paths.
  // REQUIRES: values.size() == label_names().size(). In release builds a mismatched call gets a
  // child that is never exported (debug builds assert).
  Child& WithLabels(std::span<const std::string_view> values);
  Child& WithLabels(std::initializer_list<std::string_view> values) {
    return WithLabels(std::span<const std::string_view>(values.begin(), values.size()));
  }
  // REQUIRES: label_names().empty()
  Child& Get() { return WithLabels(std::span<const std::string_view>()); }

 protected:
  using MetricFamily::MetricFamily;
  virtual std::unique_ptr<Child> NewChild() const = 0;
  // Calls f(label values, child) for every child in label-value order, under the shared lock.
  void ForEachChild(
      const std::function<void(const std::vector<std::string>&, const Child&)>& f) const;

 private:
  mutable std::shared_mutex mutex_;
  std::map<std::vector<std::string>, std::unique_ptr<Child>, LabelValuesLess> children_;
  std::unique_ptr<Child> detached_;  // for calls with the wrong number of values
};

class CounterFamily final : public FamilyOf<Counter> {
 public:
  CounterFamily(std::string name, std::string help, std::vector<std::string> label_names);
  void AppendExposition(std::string& out) const override;

 private:
  std::unique_ptr<Counter> NewChild() const override;
};

class GaugeFamily final : public FamilyOf<Gauge> {
 public:
  GaugeFamily(std::string name, std::string help, std::vector<std::string> label_names);
  void AppendExposition(std::string& out) const override;

  // Makes the series with these label values report fn() at each scrape instead of a stored
  // value; replaces an earlier callback for the same values. fn runs on the scraping thread
  // under this family's callback lock: it must be cheap, thread-safe and must not call
  // SetCallback/ClearCallback of this family.
  // REQUIRES: values.size() == label_names().size() (otherwise ignored)
  void SetCallback(std::initializer_list<std::string_view> values, std::function<double()> fn);
  // Removes the callback; when this returns, fn is not running and will not run again, so the
  // objects it refers to may be destroyed. Call it without holding locks that fn takes.
  void ClearCallback(std::initializer_list<std::string_view> values);

 private:
  std::unique_ptr<Gauge> NewChild() const override;

  mutable std::mutex callback_mutex_;  // held while callbacks run
  std::map<std::vector<std::string>, std::function<double()>, LabelValuesLess> callbacks_;
};

class HistogramFamily final : public FamilyOf<Histogram> {
 public:
  HistogramFamily(std::string name, std::string help, std::vector<std::string> label_names,
                  std::vector<double> bounds);
  void AppendExposition(std::string& out) const override;
  const std::vector<double>& bounds() const { return bounds_; }

 private:
  std::unique_ptr<Histogram> NewChild() const override;
  const std::vector<double> bounds_;
};

extern template class FamilyOf<Counter>;
extern template class FamilyOf<Gauge>;
extern template class FamilyOf<Histogram>;

// Owns families and renders them. Families are never removed; pointers returned by Add* stay
// valid for the registry's lifetime.
class Registry {
 public:
  Registry() = default;
  Registry(const Registry&) = delete;
  Registry& operator=(const Registry&) = delete;

  // Errors: an invalid metric or label name (Prometheus' rules; "le" is reserved for
  // histograms, names starting "__" for Prometheus), a name already registered, buckets not
  // strictly increasing or not finite (a trailing +Inf is accepted and dropped), no buckets.
  Result<CounterFamily*, std::string> AddCounter(std::string name, std::string help,
                                                 std::vector<std::string> label_names = {});
  Result<GaugeFamily*, std::string> AddGauge(std::string name, std::string help,
                                             std::vector<std::string> label_names = {});
  Result<HistogramFamily*, std::string> AddHistogram(
      std::string name, std::string help, std::vector<std::string> label_names = {},
      std::vector<double> bounds = DefaultDurationBuckets());

  // The text exposition format 0.0.4 (kPrometheusTextContentType), families sorted by name,
  // series by label values.
  std::string Expose() const;

 private:
  Result<void, std::string> CheckNewFamily(const std::string& name,
                                           const std::vector<std::string>& label_names,
                                           bool histogram) const;  // REQUIRES: mutex_ held

  mutable std::mutex mutex_;
  std::vector<std::unique_ptr<MetricFamily>> families_;
};

// Records every operation a client reports into a counter family and a histogram family whose
// label names are (op, status): e.g. zk2etcd_zk_op_total and zk2etcd_zk_op_duration_seconds.
// Thread-safe; the families must outlive it.
class MetricsOpObserver final : public OpObserver {
 public:
  // REQUIRES: both families have exactly the label names {"op", "status"}, in that order.
  MetricsOpObserver(CounterFamily& total, HistogramFamily& duration);
  // Families with a first label before them, whose value is `first` (e.g. side="source"):
  // label names {<any>, "op", "status"}.
  MetricsOpObserver(CounterFamily& total, HistogramFamily& duration, std::string first);
  void OnOp(std::string_view op, std::string_view status,
            std::chrono::nanoseconds duration) override;

 private:
  CounterFamily& total_;
  HistogramFamily& duration_;
  std::optional<std::string> first_;
};

// Formats a sample value as Prometheus' Go client does (strconv 'g', shortest): "1", "0.25",
// "1e-05", "1.5e+06", "+Inf", "-Inf", "NaN". Used for values and for "le".
std::string FormatMetricValue(double value);
// Escapes a label value (\\, \", \n) or help text (\\, \n) for the text format.
void AppendEscapedLabelValue(std::string& out, std::string_view value);
void AppendEscapedHelp(std::string& out, std::string_view help);

}  // namespace zk2etcd::ops

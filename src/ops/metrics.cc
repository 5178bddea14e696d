#include "ops/metrics.h"

#include <cassert>
#include <charconv>
#include <cmath>
#include <system_error>

namespace zk2etcd::ops {

namespace {

bool IsMetricNameChar(char c, bool first) {
  if ((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || c == '_' || c == ':') return true;
  return !first && c >= '0' && c <= '9';
}

bool IsValidMetricName(std::string_view name) {
  if (name.empty()) return false;
  for (size_t i = 0; i < name.size(); ++i) {
    if (!IsMetricNameChar(name[i], i == 0)) return false;
  }
  return true;
}

bool IsValidLabelName(std::string_view name) {
  if (name.empty() || name.starts_with("__")) return false;
  for (size_t i = 0; i < name.size(); ++i) {
    if (name[i] == ':' || !IsMetricNameChar(name[i], i == 0)) return false;
  }
  return true;
}

// The names a family writes: its own, and for a histogram the three derived ones.
std::vector<std::string> ExposedNames(const std::string& name, bool histogram) {
  if (!histogram) return {name};
  return {name, name + "_bucket", name + "_sum", name + "_count"};
}

std::string_view TypeName(MetricType type) {
  switch (type) {
    case MetricType::kCounter:
      return "counter";
    case MetricType::kGauge:
      return "gauge";
    case MetricType::kHistogram:
      return "histogram";
  }
  return "untyped";
}

void AppendHeader(std::string& out, const MetricFamily& family) {
  out += "# HELP ";
  out += family.name();
  out += ' ';
  AppendEscapedHelp(out, family.help());
  out += "\n# TYPE ";
  out += family.name();
  out += ' ';
  out += TypeName(family.type());
  out += '\n';
}

// Appends `{a="x",b="y"}`, with `extra_name="extra_value"` last when given (for "le"); nothing
// when there are no labels at all.
void AppendLabels(std::string& out, const std::vector<std::string>& names,
                  const std::vector<std::string>& values, std::string_view extra_name = {},
                  std::string_view extra_value = {}) {
  if (names.empty() && extra_name.empty()) return;
  out += '{';
  bool first = true;
  for (size_t i = 0; i < names.size(); ++i) {
    if (!first) out += ',';
    first = false;
    out += names[i];
    out += "=\"";
    AppendEscapedLabelValue(out, values[i]);
    out += '"';
  }
  if (!extra_name.empty()) {
    if (!first) out += ',';
    out += extra_name;
    out += "=\"";
    AppendEscapedLabelValue(out, extra_value);
    out += '"';
  }
  out += '}';
}

void AppendSample(std::string& out, std::string_view name, const std::vector<std::string>& names,
                  const std::vector<std::string>& values, std::string_view value) {
  out += name;
  AppendLabels(out, names, values);
  out += ' ';
  out += value;
  out += '\n';
}

}  // namespace

std::vector<double> DefaultDurationBuckets() {
  return {std::begin(kDefaultDurationBuckets), std::end(kDefaultDurationBuckets)};
}

std::string FormatMetricValue(double value) {
  if (std::isnan(value)) return "NaN";
  if (std::isinf(value)) return value > 0 ? "+Inf" : "-Inf";
  // Go's strconv.FormatFloat(v, 'g', -1, 64): the shortest digits that round-trip, in
  // exponent form when the decimal exponent is < -4 or >= 6 ("shortest" fixes the precision
  // used for that decision at 6), otherwise plain.
  char buffer[64];
  auto [end, ec] =
      std::to_chars(buffer, buffer + sizeof(buffer), value, std::chars_format::scientific);
  assert(ec == std::errc());
  const std::string_view scientific(buffer, static_cast<size_t>(end - buffer));
  const size_t e = scientific.find('e');
  int exponent = 0;
  std::from_chars(scientific.data() + e + (scientific[e + 1] == '+' ? 2 : 1),
                  scientific.data() + scientific.size(), exponent);
  if (exponent < -4 || exponent >= 6) return std::string(scientific);
  const std::to_chars_result fixed =
      std::to_chars(buffer, buffer + sizeof(buffer), value, std::chars_format::fixed);
  assert(fixed.ec == std::errc());
  return std::string(buffer, static_cast<size_t>(fixed.ptr - buffer));
}

void AppendEscapedLabelValue(std::string& out, std::string_view value) {
  for (char c : value) {
    switch (c) {
      case '\\':
        out += "\\\\";
        break;
      case '"':
        out += "\\\"";
        break;
      case '\n':
        out += "\\n";
        break;
      default:
        out += c;
    }
  }
}

void AppendEscapedHelp(std::string& out, std::string_view help) {
  for (char c : help) {
    switch (c) {
      case '\\':
        out += "\\\\";
        break;
      case '\n':
        out += "\\n";
        break;
      default:
        out += c;
    }
  }
}

// ---- children ----

void Counter::Inc(double amount) {
  if (!(amount >= 0)) return;  // also rejects NaN
  value_.fetch_add(amount, std::memory_order_relaxed);
}

Histogram::Histogram(std::span<const double> bounds)
    : bounds_(bounds), counts_(new std::atomic<uint64_t>[bounds.size() + 1]) {
  for (size_t i = 0; i <= bounds_.size(); ++i) counts_[i].store(0, std::memory_order_relaxed);
}

void Histogram::Observe(double value) {
  // First bound >= value: buckets are "less than or equal". NaN compares false everywhere and
  // would land in the first bucket, so it is sent to +Inf explicitly.
  size_t index = bounds_.size();
  if (!std::isnan(value)) {
    index = static_cast<size_t>(std::lower_bound(bounds_.begin(), bounds_.end(), value) -
                                bounds_.begin());
  }
  counts_[index].fetch_add(1, std::memory_order_relaxed);
  sum_.fetch_add(value, std::memory_order_relaxed);
}

Histogram::Snapshot Histogram::Read() const {
  Snapshot snapshot;
  snapshot.cumulative.reserve(bounds_.size() + 1);
  uint64_t running = 0;
  for (size_t i = 0; i <= bounds_.size(); ++i) {
    running += counts_[i].load(std::memory_order_relaxed);
    snapshot.cumulative.push_back(running);
  }
  snapshot.count = running;
  snapshot.sum = sum_.load(std::memory_order_relaxed);
  return snapshot;
}

// ---- families ----

MetricFamily::MetricFamily(std::string name, std::string help, MetricType type,
                           std::vector<std::string> label_names)
    : name_(std::move(name)),
      help_(std::move(help)),
      type_(type),
      label_names_(std::move(label_names)) {}

template <typename Child>
Child& FamilyOf<Child>::WithLabels(std::span<const std::string_view> values) {
  if (values.size() != label_names().size()) {
    assert(false && "WithLabels: wrong number of label values");
    std::unique_lock lock(mutex_);
    if (detached_ == nullptr) detached_ = NewChild();
    return *detached_;
  }
  {
    std::shared_lock lock(mutex_);
    auto it = children_.find(values);
    if (it != children_.end()) return *it->second;
  }
  std::unique_lock lock(mutex_);
  auto it = children_.find(values);
  if (it == children_.end()) {
    it =
        children_.emplace(std::vector<std::string>(values.begin(), values.end()), NewChild()).first;
  }
  return *it->second;
}

template <typename Child>
void FamilyOf<Child>::ForEachChild(
    const std::function<void(const std::vector<std::string>&, const Child&)>& f) const {
  std::shared_lock lock(mutex_);
  for (const auto& [values, child] : children_) f(values, *child);
}

template class FamilyOf<Counter>;
template class FamilyOf<Gauge>;
template class FamilyOf<Histogram>;

CounterFamily::CounterFamily(std::string name, std::string help,
                             std::vector<std::string> label_names)
    : FamilyOf(std::move(name), std::move(help), MetricType::kCounter, std::move(label_names)) {
  if (this->label_names().empty()) Get();  // an unlabelled series exists from the start, at 0
}

std::unique_ptr<Counter> CounterFamily::NewChild() const { return std::make_unique<Counter>(); }

void CounterFamily::AppendExposition(std::string& out) const {
  std::string samples;
  ForEachChild([&](const std::vector<std::string>& values, const Counter& counter) {
    AppendSample(samples, name(), label_names(), values, FormatMetricValue(counter.Value()));
  });
  if (samples.empty()) return;
  AppendHeader(out, *this);
  out += samples;
}

GaugeFamily::GaugeFamily(std::string name, std::string help, std::vector<std::string> label_names)
    : FamilyOf(std::move(name), std::move(help), MetricType::kGauge, std::move(label_names)) {
  if (this->label_names().empty()) Get();
}

std::unique_ptr<Gauge> GaugeFamily::NewChild() const { return std::make_unique<Gauge>(); }

void GaugeFamily::SetCallback(std::initializer_list<std::string_view> values,
                              std::function<double()> fn) {
  assert(values.size() == label_names().size());
  if (values.size() != label_names().size()) return;
  std::lock_guard lock(callback_mutex_);
  callbacks_.insert_or_assign(std::vector<std::string>(values.begin(), values.end()),
                              std::move(fn));
}

void GaugeFamily::ClearCallback(std::initializer_list<std::string_view> values) {
  std::lock_guard lock(callback_mutex_);
  auto it = callbacks_.find(values);
  if (it != callbacks_.end()) callbacks_.erase(it);
}

void GaugeFamily::AppendExposition(std::string& out) const {
  // A series with a callback reports the callback's value, even if it also has a stored one.
  std::map<std::vector<std::string>, double, LabelValuesLess> values;
  ForEachChild([&](const std::vector<std::string>& labels, const Gauge& gauge) {
    values.emplace(labels, gauge.Value());
  });
  {
    std::lock_guard lock(callback_mutex_);
    for (const auto& [labels, fn] : callbacks_) values.insert_or_assign(labels, fn());
  }
  if (values.empty()) return;
  AppendHeader(out, *this);
  for (const auto& [labels, value] : values) {
    AppendSample(out, name(), label_names(), labels, FormatMetricValue(value));
  }
}

HistogramFamily::HistogramFamily(std::string name, std::string help,
                                 std::vector<std::string> label_names, std::vector<double> bounds)
    : FamilyOf(std::move(name), std::move(help), MetricType::kHistogram, std::move(label_names)),
      bounds_(std::move(bounds)) {
  if (this->label_names().empty()) Get();
}

std::unique_ptr<Histogram> HistogramFamily::NewChild() const {
  return std::make_unique<Histogram>(bounds_);
}

void HistogramFamily::AppendExposition(std::string& out) const {
  std::vector<std::string> bound_texts;
  bound_texts.reserve(bounds_.size() + 1);
  for (double bound : bounds_) bound_texts.push_back(FormatMetricValue(bound));
  bound_texts.push_back("+Inf");
  const std::string bucket_name = name() + "_bucket";
  const std::string sum_name = name() + "_sum";
  const std::string count_name = name() + "_count";

  std::string samples;
  ForEachChild([&](const std::vector<std::string>& values, const Histogram& histogram) {
    const Histogram::Snapshot snapshot = histogram.Read();
    for (size_t i = 0; i < bound_texts.size(); ++i) {
      samples += bucket_name;
      AppendLabels(samples, label_names(), values, "le", bound_texts[i]);
      samples += ' ';
      samples += std::to_string(snapshot.cumulative[i]);
      samples += '\n';
    }
    AppendSample(samples, sum_name, label_names(), values, FormatMetricValue(snapshot.sum));
    AppendSample(samples, count_name, label_names(), values, std::to_string(snapshot.count));
  });
  if (samples.empty()) return;
  AppendHeader(out, *this);
  out += samples;
}

// ---- registry ----

Result<void, std::string> Registry::CheckNewFamily(const std::string& name,
                                                   const std::vector<std::string>& label_names,
                                                   bool histogram) const {
  if (!IsValidMetricName(name)) {
    return Unexpected{"invalid metric name \"" + name + "\""};
  }
  for (size_t i = 0; i < label_names.size(); ++i) {
    const std::string& label = label_names[i];
    if (!IsValidLabelName(label) || (histogram && label == "le")) {
      return Unexpected{"metric " + name + ": invalid label name \"" + label + "\""};
    }
    for (size_t j = 0; j < i; ++j) {
      if (label_names[j] == label) {
        return Unexpected{"metric " + name + ": duplicate label name \"" + label + "\""};
      }
    }
  }
  const std::vector<std::string> new_names = ExposedNames(name, histogram);
  for (const auto& family : families_) {
    for (const std::string& existing :
         ExposedNames(family->name(), family->type() == MetricType::kHistogram)) {
      for (const std::string& candidate : new_names) {
        if (existing == candidate) {
          return Unexpected{"metric " + name + ": name " + candidate + " is already registered"};
        }
      }
    }
  }
  return {};
}

Result<CounterFamily*, std::string> Registry::AddCounter(std::string name, std::string help,
                                                         std::vector<std::string> label_names) {
  std::lock_guard lock(mutex_);
  if (auto check = CheckNewFamily(name, label_names, false); !check.ok()) {
    return Unexpected{check.error()};
  }
  auto family =
      std::make_unique<CounterFamily>(std::move(name), std::move(help), std::move(label_names));
  CounterFamily* pointer = family.get();
  families_.push_back(std::move(family));
  return pointer;
}

Result<GaugeFamily*, std::string> Registry::AddGauge(std::string name, std::string help,
                                                     std::vector<std::string> label_names) {
  std::lock_guard lock(mutex_);
  if (auto check = CheckNewFamily(name, label_names, false); !check.ok()) {
    return Unexpected{check.error()};
  }
  auto family =
      std::make_unique<GaugeFamily>(std::move(name), std::move(help), std::move(label_names));
  GaugeFamily* pointer = family.get();
  families_.push_back(std::move(family));
  return pointer;
}

Result<HistogramFamily*, std::string> Registry::AddHistogram(std::string name, std::string help,
                                                             std::vector<std::string> label_names,
                                                             std::vector<double> bounds) {
  if (!bounds.empty() && std::isinf(bounds.back()) && bounds.back() > 0) bounds.pop_back();
  if (bounds.empty()) return Unexpected{"metric " + name + ": histogram without buckets"};
  for (size_t i = 0; i < bounds.size(); ++i) {
    if (!std::isfinite(bounds[i]) || (i > 0 && !(bounds[i] > bounds[i - 1]))) {
      return Unexpected{"metric " + name + ": buckets must be finite and strictly increasing"};
    }
  }
  std::lock_guard lock(mutex_);
  if (auto check = CheckNewFamily(name, label_names, true); !check.ok()) {
    return Unexpected{check.error()};
  }
  auto family = std::make_unique<HistogramFamily>(std::move(name), std::move(help),
                                                  std::move(label_names), std::move(bounds));
  HistogramFamily* pointer = family.get();
  families_.push_back(std::move(family));
  return pointer;
}

std::string Registry::Expose() const {
  std::vector<const MetricFamily*> families;
  {
    std::lock_guard lock(mutex_);
    families.reserve(families_.size());
    for (const auto& family : families_) families.push_back(family.get());
  }
  // Rendered outside the registry's lock: gauge callbacks may take their owners' locks, and
  // those owners may be registering families.
  std::sort(families.begin(), families.end(),
            [](const MetricFamily* a, const MetricFamily* b) { return a->name() < b->name(); });
  std::string out;
  for (const MetricFamily* family : families) family->AppendExposition(out);
  return out;
}

// ---- OpObserver adapter ----

MetricsOpObserver::MetricsOpObserver(CounterFamily& total, HistogramFamily& duration)
    : total_(total), duration_(duration) {
  assert((total.label_names() == std::vector<std::string>{"op", "status"}));
  assert((duration.label_names() == std::vector<std::string>{"op", "status"}));
}

MetricsOpObserver::MetricsOpObserver(CounterFamily& total, HistogramFamily& duration,
                                     std::string first)
    : total_(total), duration_(duration), first_(std::move(first)) {
  assert(total.label_names().size() == 3 && total.label_names()[1] == "op");
  assert(duration.label_names().size() == 3 && duration.label_names()[2] == "status");
}

void MetricsOpObserver::OnOp(std::string_view op, std::string_view status,
                             std::chrono::nanoseconds duration) {
  if (first_) {
    total_.WithLabels({*first_, op, status}).Inc();
    duration_.WithLabels({*first_, op, status}).ObserveDuration(duration);
    return;
  }
  total_.WithLabels({op, status}).Inc();
  duration_.WithLabels({op, status}).ObserveDuration(duration);
}

}  // namespace zk2etcd::ops

#include "ops/metrics.h"

#include <gtest/gtest.h>
#include <unistd.h>

#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <limits>
#include <string>
#include <thread>
#include <vector>

#include "ops/metrics_catalog.h"

namespace zk2etcd::ops {
namespace {

using std::chrono::microseconds;
using std::chrono::milliseconds;
using std::chrono::seconds;

bool Contains(const std::string& text, std::string_view part) {
  return text.find(part) != std::string::npos;
}

TEST(MetricsExpositionTest, SmallRegistryRendersExactText) {
  Registry registry;
  CounterFamily* requests =
      registry
          .AddCounter("test_requests_total", "Requests served.\nBy \\ method.", {"method", "code"})
          .value();
  GaugeFamily* temperature = registry.AddGauge("test_temperature_celsius", "Temperature.").value();
  HistogramFamily* latency =
      registry.AddHistogram("test_latency_seconds", "Latency.", {"op"}, {0.1, 0.5, 1, 100000, 1e6})
          .value();
  registry.AddCounter("test_unused_total", "No series yet, so not shown.", {"x"}).value();

  requests->WithLabels({"get", "200"}).Inc(3);
  requests->WithLabels({"post", "a\"b\\c\nd"}).Inc();
  temperature->Get().Set(-1.5);
  Histogram& read = latency->WithLabels({"read"});
  read.Observe(0.25);
  read.Observe(0.5);  // "le" is inclusive
  read.Observe(2);

  EXPECT_EQ(registry.Expose(),
            "# HELP test_latency_seconds Latency.\n"
            "# TYPE test_latency_seconds histogram\n"
            "test_latency_seconds_bucket{op=\"read\",le=\"0.1\"} 0\n"
            "test_latency_seconds_bucket{op=\"read\",le=\"0.5\"} 2\n"
            "test_latency_seconds_bucket{op=\"read\",le=\"1\"} 2\n"
            "test_latency_seconds_bucket{op=\"read\",le=\"100000\"} 3\n"
            "test_latency_seconds_bucket{op=\"read\",le=\"1e+06\"} 3\n"
            "test_latency_seconds_bucket{op=\"read\",le=\"+Inf\"} 3\n"
            "test_latency_seconds_sum{op=\"read\"} 2.75\n"
            "test_latency_seconds_count{op=\"read\"} 3\n"
            "# HELP test_requests_total Requests served.\\nBy \\\\ method.\n"
            "# TYPE test_requests_total counter\n"
            "test_requests_total{method=\"get\",code=\"200\"} 3\n"
            "test_requests_total{method=\"post\",code=\"a\\\"b\\\\c\\nd\"} 1\n"
            "# HELP test_temperature_celsius Temperature.\n"
            "# TYPE test_temperature_celsius gauge\n"
            "test_temperature_celsius -1.5\n");
}

TEST(MetricsExpositionTest, UnlabelledFamiliesShowZeroFromTheStart) {
  Registry registry;
  registry.AddCounter("a_total", "A.").value();
  registry.AddHistogram("b_seconds", "B.", {}, {1}).value();
  EXPECT_EQ(registry.Expose(),
            "# HELP a_total A.\n# TYPE a_total counter\na_total 0\n"
            "# HELP b_seconds B.\n# TYPE b_seconds histogram\n"
            "b_seconds_bucket{le=\"1\"} 0\nb_seconds_bucket{le=\"+Inf\"} 0\n"
            "b_seconds_sum 0\nb_seconds_count 0\n");
}

TEST(MetricsExpositionTest, ValuesAreFormattedAsPrometheusGoClientDoes) {
  EXPECT_EQ(FormatMetricValue(0), "0");
  EXPECT_EQ(FormatMetricValue(1), "1");
  EXPECT_EQ(FormatMetricValue(-1.5), "-1.5");
  EXPECT_EQ(FormatMetricValue(0.0001), "0.0001");
  EXPECT_EQ(FormatMetricValue(0.00025), "0.00025");
  EXPECT_EQ(FormatMetricValue(0.00001), "1e-05");
  EXPECT_EQ(FormatMetricValue(100000), "100000");
  EXPECT_EQ(FormatMetricValue(1e6), "1e+06");
  EXPECT_EQ(FormatMetricValue(1234567), "1.234567e+06");
  EXPECT_EQ(FormatMetricValue(1.7e9), "1.7e+09");
  EXPECT_EQ(FormatMetricValue(0.1 + 0.2), "0.30000000000000004");
  EXPECT_EQ(FormatMetricValue(std::numeric_limits<double>::infinity()), "+Inf");
  EXPECT_EQ(FormatMetricValue(-std::numeric_limits<double>::infinity()), "-Inf");
  EXPECT_EQ(FormatMetricValue(std::nan("")), "NaN");
}

TEST(MetricsHistogramTest, DefaultBucketsSeparateSubMillisecondAndSeconds) {
  Registry registry;
  CounterFamily* total = registry.AddCounter("x_op_total", "X.", {"op", "status"}).value();
  HistogramFamily* duration =
      registry.AddHistogram("x_op_duration_seconds", "X.", {"op", "status"}).value();
  MetricsOpObserver observer(*total, *duration);
  observer.OnOp("get", "success", microseconds(300));
  observer.OnOp("set", "success", seconds(3));

  const Histogram::Snapshot fast = duration->WithLabels({"get", "success"}).Read();
  const Histogram::Snapshot slow = duration->WithLabels({"set", "success"}).Read();
  const std::vector<double>& bounds = duration->bounds();
  ASSERT_EQ(bounds, DefaultDurationBuckets());
  for (size_t i = 0; i < bounds.size(); ++i) {
    EXPECT_EQ(fast.cumulative[i], bounds[i] >= 0.0003 ? 1u : 0u) << "le=" << bounds[i];
    EXPECT_EQ(slow.cumulative[i], bounds[i] >= 3 ? 1u : 0u) << "le=" << bounds[i];
  }
  EXPECT_DOUBLE_EQ(fast.sum, 0.0003);
  EXPECT_DOUBLE_EQ(slow.sum, 3);

  const std::string text = registry.Expose();
  EXPECT_TRUE(Contains(text,
                       "x_op_duration_seconds_bucket{op=\"get\",status=\"success\","
                       "le=\"0.00025\"} 0\n"));
  EXPECT_TRUE(Contains(text,
                       "x_op_duration_seconds_bucket{op=\"get\",status=\"success\","
                       "le=\"0.0005\"} 1\n"));
  EXPECT_TRUE(Contains(text,
                       "x_op_duration_seconds_bucket{op=\"set\",status=\"success\","
                       "le=\"2.5\"} 0\n"));
  EXPECT_TRUE(Contains(text,
                       "x_op_duration_seconds_bucket{op=\"set\",status=\"success\","
                       "le=\"5\"} 1\n"));
  EXPECT_TRUE(Contains(text, "x_op_total{op=\"get\",status=\"success\"} 1\n"));
  EXPECT_TRUE(Contains(text, "x_op_total{op=\"set\",status=\"success\"} 1\n"));
}

TEST(MetricsHistogramTest, BoundIsInclusiveAndNanGoesToInfOnly) {
  Registry registry;
  Histogram& h = registry.AddHistogram("h_seconds", "H.", {}, {0.001, 1}).value()->Get();
  h.Observe(0.001);
  h.Observe(std::nan(""));
  h.Observe(-5);
  const Histogram::Snapshot s = h.Read();
  EXPECT_EQ(s.cumulative, (std::vector<uint64_t>{2, 2, 3}));
  EXPECT_EQ(s.count, 3u);
}

TEST(MetricsGaugeTest, SetAddAndCallbacks) {
  Registry registry;
  GaugeFamily* depth = registry.AddGauge("q_depth", "Q.", {"queue"}).value();
  depth->WithLabels({"events"}).Set(4);
  depth->WithLabels({"events"}).Add(2);
  depth->WithLabels({"events"}).Dec();
  int writes = 7;
  depth->SetCallback({"writes"}, [&] { return static_cast<double>(writes); });
  EXPECT_TRUE(
      Contains(registry.Expose(), "q_depth{queue=\"events\"} 5\nq_depth{queue=\"writes\"} 7\n"));
  writes = 9;
  EXPECT_TRUE(Contains(registry.Expose(), "q_depth{queue=\"writes\"} 9\n"));
  depth->ClearCallback({"writes"});
  EXPECT_FALSE(Contains(registry.Expose(), "writes"));
}

TEST(MetricsCounterTest, NegativeIncrementsAreIgnored) {
  Registry registry;
  Counter& c = registry.AddCounter("c_total", "C.").value()->Get();
  c.Inc(2.5);
  c.Inc(-1);
  c.Inc(std::nan(""));
  EXPECT_EQ(c.Value(), 2.5);
}

TEST(MetricsRegistryTest, RejectsBadNamesDuplicatesAndBadBuckets) {
  Registry registry;
  ASSERT_TRUE(registry.AddHistogram("lat_seconds", "L.").ok());
  EXPECT_FALSE(registry.AddCounter("1abc", "x").ok());
  EXPECT_FALSE(registry.AddCounter("a-b", "x").ok());
  EXPECT_FALSE(registry.AddCounter("ok_total", "x", {"bad-label"}).ok());
  EXPECT_FALSE(registry.AddCounter("ok_total", "x", {"__reserved"}).ok());
  EXPECT_FALSE(registry.AddCounter("ok_total", "x", {"a", "a"}).ok());
  EXPECT_FALSE(registry.AddHistogram("h_seconds", "x", {"le"}).ok());
  EXPECT_FALSE(registry.AddHistogram("h_seconds", "x", {}, {1, 1}).ok());
  EXPECT_FALSE(registry.AddHistogram("h_seconds", "x", {}, {}).ok());
  EXPECT_TRUE(
      registry.AddHistogram("h2_seconds", "x", {}, {1, std::numeric_limits<double>::infinity()})
          .ok());
  auto duplicate = registry.AddGauge("lat_seconds", "x");
  ASSERT_FALSE(duplicate.ok());
  EXPECT_TRUE(Contains(duplicate.error(), "lat_seconds"));
  EXPECT_FALSE(registry.AddCounter("lat_seconds_count", "x").ok());  // the histogram's own
  ASSERT_TRUE(registry.AddGauge("g_sum", "x").ok());
  EXPECT_FALSE(registry.AddHistogram("g", "x").ok());  // would write g_sum
}

TEST(MetricsConcurrencyTest, ManyThreadsCountExactly) {
  Registry registry;
  CounterFamily* total = registry.AddCounter("t_total", "T.", {"worker", "kind"}).value();
  HistogramFamily* latency = registry.AddHistogram("t_seconds", "T.", {"kind"}).value();
  GaugeFamily* level = registry.AddGauge("t_level", "T.").value();
  Counter& shared = total->WithLabels({"all", "kept"});

  constexpr int kThreads = 8;
  constexpr int kIterations = 20000;
  std::atomic<bool> done{false};
  std::thread scraper([&] {
    while (!done.load()) EXPECT_FALSE(registry.Expose().empty());
  });
  std::vector<std::thread> threads;
  for (int t = 0; t < kThreads; ++t) {
    threads.emplace_back([&, t] {
      const std::string worker = std::to_string(t % 4);
      for (int i = 0; i < kIterations; ++i) {
        shared.Inc();
        total->WithLabels({"all", "looked_up"}).Inc();
        total->WithLabels({worker, "per_worker"}).Inc(0.5);
        latency->WithLabels({i % 2 == 0 ? "even" : "odd"}).Observe(0.001 * (i % 7));
        level->Get().Add(1);
      }
    });
  }
  for (std::thread& thread : threads) thread.join();
  done = true;
  scraper.join();

  EXPECT_EQ(shared.Value(), kThreads * kIterations);
  EXPECT_EQ(total->WithLabels({"all", "looked_up"}).Value(), kThreads * kIterations);
  for (int w = 0; w < 4; ++w) {
    EXPECT_EQ(total->WithLabels({std::to_string(w), "per_worker"}).Value(),
              kThreads / 4 * kIterations * 0.5);
  }
  EXPECT_EQ(latency->WithLabels({"even"}).Read().count + latency->WithLabels({"odd"}).Read().count,
            uint64_t{kThreads} * kIterations);
  EXPECT_EQ(level->Get().Value(), kThreads * kIterations);
}

// ---- promtool ----

std::string FindProgram(const char* name) {
  const char* path = std::getenv("PATH");
  std::string_view dirs = path != nullptr ? path : "/usr/local/bin:/usr/bin:/bin";
  while (!dirs.empty()) {
    const size_t colon = dirs.find(':');
    const std::string_view dir = dirs.substr(0, colon);
    dirs = colon == std::string_view::npos ? std::string_view() : dirs.substr(colon + 1);
    if (dir.empty()) continue;
    std::string candidate = std::string(dir) + "/" + name;
    if (::access(candidate.c_str(), X_OK) == 0) return candidate;
  }
  return "";
}

// A registry as zk2etcd fills it while running: every family of the catalog with the series it
// has in production.
std::string RealisticExposition() {
  Registry registry;
  Zk2etcdMetrics m = RegisterZk2etcdMetrics(registry, "0.1.0", "0123abc").value();
  MetricsOpObserver zk(*m.zk_op_total, *m.zk_op_duration_seconds);
  zk.OnOp("get", "success", microseconds(350));
  zk.OnOp("children", "success", milliseconds(2));
  zk.OnOp("get", "no_node", microseconds(120));
  zk.OnOp("exists", "connection_loss", seconds(4));
  MetricsOpObserver etcd(*m.etcd_op_total, *m.etcd_op_duration_seconds);
  etcd.OnOp("range", "success", milliseconds(3));
  etcd.OnOp("txn", "success", milliseconds(12));
  etcd.OnOp("txn", "unavailable", seconds(5));
  m.fixed_total->WithLabels({"put"}).Inc(3);
  m.fixed_total->WithLabels({"delete"}).Inc();
  m.sync_delay_seconds->Get().Observe(0.004);
  m.sync_delay_seconds->Get().Observe(42);
  m.reconcile_duration_seconds->Get().Observe(17.5);
  m.reconcile_total->WithLabels({"success"}).Inc();
  m.reconcile_total->WithLabels({"failure"}).Inc();
  m.reconcile_last_success_timestamp_seconds->Get().Set(1.8e9 + 0.25);
  for (const char* kind : {"missing", "changed", "extra", "foreign", "orphan_meta"}) {
    m.differences->WithLabels({kind}).Set(0);
  }
  m.differences->WithLabels({"missing"}).Set(12);
  m.watches->SetCallback({}, [] { return 1.0; });
  m.zk_session_connected->Get().Set(1);
  m.leader->Get().Set(1);
  m.queue_depth->WithLabels({"events"}).Set(3);
  m.queue_depth->SetCallback({"writes"}, [] { return 0.0; });
  return registry.Expose();
}

TEST(MetricsCatalogTest, RegistersEveryFamilyOnceWithBuildInfo) {
  Registry registry;
  auto metrics = RegisterZk2etcdMetrics(registry, "1.2.3", "abc\"def");
  ASSERT_TRUE(metrics.ok()) << metrics.error();
  EXPECT_EQ(metrics->zk_op_total->label_names(), (std::vector<std::string>{"op", "status"}));
  EXPECT_EQ(metrics->etcd_op_duration_seconds->bounds(), DefaultDurationBuckets());
  EXPECT_TRUE(Contains(registry.Expose(),
                       "zk2etcd_build_info{version=\"1.2.3\",commit=\"abc\\\"def\"} 1\n"));
  auto again = RegisterZk2etcdMetrics(registry, "1.2.3", "abc");
  ASSERT_FALSE(again.ok());
  EXPECT_TRUE(Contains(again.error(), "already registered"));
}

// Runs `promtool check metrics` on `text`; skips when promtool is missing (fails under CI).
void ExpectPromtoolAccepts(const std::string& text) {
  const std::string promtool = FindProgram("promtool");
  if (promtool.empty()) {
    const char* ci = std::getenv("CI");
    if (ci != nullptr && std::string_view(ci) == "true") {
      FAIL() << "promtool not found in PATH (required when CI=true)";
    }
    GTEST_SKIP() << "promtool not found in PATH";
  }
  const std::filesystem::path file =
      std::filesystem::temp_directory_path() /
      ("zk2etcd_metrics_test_" + std::to_string(::getpid()) + ".prom");
  {
    std::ofstream out(file, std::ios::binary);
    out << text;
  }
  const std::string command = "'" + promtool + "' check metrics < '" + file.string() + "' 2>&1";
  FILE* pipe = ::popen(command.c_str(), "r");
  ASSERT_NE(pipe, nullptr);
  std::string output;
  char buffer[4096];
  size_t n;
  while ((n = std::fread(buffer, 1, sizeof(buffer), pipe)) > 0) output.append(buffer, n);
  const int status = ::pclose(pipe);
  std::filesystem::remove(file);
  std::printf("promtool check metrics (exit status %d):\n%s", WEXITSTATUS(status), output.c_str());
  EXPECT_TRUE(WIFEXITED(status) && WEXITSTATUS(status) == 0) << output << "\n" << text;
  EXPECT_EQ(output, "") << text;
}

TEST(MetricsPromtoolTest, RealisticRegistryPassesPromtoolCheckMetrics) {
  const std::string text = RealisticExposition();
  for (const char* name :
       {"zk2etcd_zk_op_total{", "zk2etcd_zk_op_duration_seconds_bucket{", "zk2etcd_etcd_op_total{",
        "zk2etcd_etcd_op_duration_seconds_bucket{", "zk2etcd_fixed_total{",
        "zk2etcd_sync_delay_seconds_bucket{", "zk2etcd_reconcile_duration_seconds_bucket{",
        "zk2etcd_reconcile_total{", "zk2etcd_reconcile_last_success_timestamp_seconds ",
        "zk2etcd_differences{", "zk2etcd_watches ", "zk2etcd_zk_session_connected ",
        "zk2etcd_leader ", "zk2etcd_queue_depth{", "zk2etcd_build_info{"}) {
    EXPECT_TRUE(Contains(text, name)) << name;
  }
  ExpectPromtoolAccepts(text);
}

TEST(MirrorMetricsCatalogTest, RegistersEveryFamilyOnceAndPassesPromtool) {
  Registry registry;
  auto registered = RegisterMirrorMetrics(registry, "1.2.3", "abc");
  ASSERT_TRUE(registered.ok()) << registered.error();
  MirrorMetrics& m = *registered;
  EXPECT_EQ(m.etcd_op_total->label_names(), (std::vector<std::string>{"side", "op", "status"}));
  MetricsOpObserver source(*m.etcd_op_total, *m.etcd_op_duration_seconds, "source");
  source.OnOp("watch", "success", milliseconds(1));
  MetricsOpObserver dest(*m.etcd_op_total, *m.etcd_op_duration_seconds, "dest");
  dest.OnOp("txn", "unavailable", seconds(5));
  for (const char* outcome : {"applied", "stale", "foreign", "absent", "failed"}) {
    m.events_applied_total->WithLabels({outcome}).Inc();
  }
  m.change_sets_applied_total->Get().Inc(3);
  m.apply_delay_seconds->Get().Observe(0.002);
  m.lag_revisions->Get().Set(4);
  m.lag_seconds->SetCallback({}, [] { return 0.5; });
  m.checkpoint_revision->Get().Set(1234);
  m.reconciliations_total->WithLabels({"start", "success"}).Inc();
  m.reconciliations_total->WithLabels({"compaction", "failure"}).Inc();
  m.reconcile_duration_seconds->Get().Observe(1.5);
  m.reconcile_last_success_timestamp_seconds->Get().Set(1.8e9);
  m.fixed_total->WithLabels({"put"}).Inc(2);
  m.differences->WithLabels({"missing"}).Set(2);
  m.source_connected->Get().Set(1);
  m.leader->Get().Set(1);
  m.election_seconds->Get().Set(0.2);
  m.queued_change_sets->Get().Set(0);
  const std::string text = registry.Expose();
  EXPECT_TRUE(Contains(text, "zk2etcd_build_info{version=\"1.2.3\",commit=\"abc\"} 1\n"));
  EXPECT_TRUE(Contains(
      text, "zk2etcd_mirror_etcd_op_total{side=\"dest\",op=\"txn\",status=\"unavailable\"} 1\n"));
  EXPECT_TRUE(Contains(text, "zk2etcd_mirror_checkpoint_revision 1234\n"));
  auto again = RegisterMirrorMetrics(registry, "1.2.3", "abc");
  ASSERT_FALSE(again.ok());
  ExpectPromtoolAccepts(text);
}

TEST(Zk2ZkMetricsCatalogTest, RegistersEveryFamilyOnceAndPassesPromtool) {
  Registry registry;
  auto registered = RegisterZk2ZkMetrics(registry, "1.2.3", "abc");
  ASSERT_TRUE(registered.ok()) << registered.error();
  Zk2ZkMetrics& m = *registered;
  EXPECT_EQ(m.zk_op_total->label_names(), (std::vector<std::string>{"side", "op", "status"}));
  MetricsOpObserver source(*m.zk_op_total, *m.zk_op_duration_seconds, "source");
  source.OnOp("get", "success", milliseconds(1));
  MetricsOpObserver target(*m.zk_op_total, *m.zk_op_duration_seconds, "target");
  target.OnOp("multi", "connection_loss", seconds(5));
  for (const char* direction : {"forward", "reverse"}) {
    for (const char* outcome :
         {"applied", "stale", "foreign", "already_absent", "failed", "not_leader"}) {
      m.writes_total->WithLabels({direction, "put", outcome}).Inc();
    }
    m.refused_writes_total->WithLabels({direction, "no_auth"}).Inc();
    m.sync_delay_seconds->WithLabels({direction}).Observe(0.002);
    m.reconcile_total->WithLabels({direction, "success"}).Inc();
    m.reconcile_duration_seconds->WithLabels({direction}).Observe(1.5);
    m.reconcile_last_success_timestamp_seconds->WithLabels({direction}).Set(1.8e9);
    m.fixed_total->WithLabels({direction, "put"}).Inc(2);
    m.differences->WithLabels({direction, "missing"}).Set(2);
    m.owned_nodes->WithLabels({direction}).Set(10);
    m.session_connected->WithLabels({direction}).Set(1);
    m.queue_depth->WithLabels({direction, "dirty_paths"}).Set(0);
  }
  m.nodes->WithLabels({"source"}).Set(100);
  m.nodes->WithLabels({"target"}).Set(104);
  m.leader->SetCallback({}, [] { return 1.0; });
  const std::string text = registry.Expose();
  EXPECT_TRUE(Contains(text, "zk2etcd_build_info{version=\"1.2.3\",commit=\"abc\"} 1\n"));
  EXPECT_TRUE(Contains(
      text,
      "zk2etcd_zk2zk_zk_op_total{side=\"target\",op=\"multi\",status=\"connection_loss\"} 1\n"));
  EXPECT_TRUE(Contains(
      text,
      "zk2etcd_zk2zk_writes_total{direction=\"reverse\",type=\"put\",outcome=\"applied\"} 1\n"));
  EXPECT_TRUE(Contains(text, "zk2etcd_zk2zk_nodes{side=\"target\"} 104\n"));
  EXPECT_TRUE(Contains(text, "zk2etcd_zk2zk_leader 1\n"));
  m.leader->ClearCallback({});
  auto again = RegisterZk2ZkMetrics(registry, "1.2.3", "abc");
  ASSERT_FALSE(again.ok());
  ExpectPromtoolAccepts(text);
}

}  // namespace
}  // namespace zk2etcd::ops

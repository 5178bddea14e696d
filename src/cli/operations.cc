#include "cli/operations.h"

#include "common/build_values.h"
#include "etcd/etcd_client.h"

namespace zk2etcd::cli {

OperationsServer::OperationsServer(ops::Logger& logger, const ops::Registry& registry,
                                   std::function<ops::HttpResponse()> ready)
    : logger_(logger), registry_(registry), ready_(std::move(ready)) {}

OperationsServer::~OperationsServer() { Stop(); }

void OperationsServer::SetConfigDump(std::vector<std::string> lines) {
  std::lock_guard lock(mutex_);
  config_dump_ = std::move(lines);
}

void OperationsServer::SetConfigValue(std::string_view name, std::string_view value) {
  const std::string prefix = std::string(name) + "=";
  std::lock_guard lock(mutex_);
  for (std::string& line : config_dump_) {
    if (line.starts_with(prefix)) line = prefix + std::string(value);
  }
}

void OperationsServer::SetStarting(std::string what) {
  std::lock_guard lock(mutex_);
  starting_ = std::move(what);
}

ops::HttpResponse OperationsServer::StartingResponse() const {
  std::lock_guard lock(mutex_);
  return ops::HttpResponse::Text(
      503, starting_.empty() ? "starting\n" : "starting: " + starting_ + "\n");
}

void OperationsServer::Handle(std::string method, std::string path, ops::HttpHandler handler) {
  extra_.emplace_back(std::move(method), std::move(path), std::move(handler));
}

Result<void, std::string> OperationsServer::Serve(const std::string& listen_address) {
  ops::HttpServerOptions options;
  options.listen_address = listen_address;
  http_ = std::make_unique<ops::HttpServer>(options);
  http_->Handle("GET", "/metrics", [this](const ops::HttpRequest&) {
    ops::HttpResponse response;
    response.content_type = std::string(ops::kPrometheusTextContentType);
    response.body = registry_.Expose();
    return response;
  });
  http_->Handle("GET", "/healthz",
                [](const ops::HttpRequest&) { return ops::HttpResponse::Text(200, "ok\n"); });
  http_->Handle("GET", "/readyz", [this](const ops::HttpRequest&) { return ready_(); });
  http_->Handle("POST", "/log", [this](const ops::HttpRequest& request) {
    const std::optional<std::string_view> level = request.Param("level");
    if (!level) return ops::HttpResponse::Text(400, "missing parameter: level\n");
    auto parsed = ops::ParseLogLevel(*level);
    if (!parsed.ok()) return ops::HttpResponse::Text(400, parsed.error() + "\n");
    logger_.SetLevel(*parsed);
    logger_.Warn("log level changed through /log", {{"level", ops::LogLevelName(*parsed)}});
    return ops::HttpResponse::Text(200, "success");
  });
  http_->Handle("GET", "/log", [this](const ops::HttpRequest&) {
    return ops::HttpResponse::Text(200, std::string(ops::LogLevelName(logger_.level())) + "\n");
  });
  http_->Handle("GET", "/debug/config", [this](const ops::HttpRequest&) {
    std::string body;
    std::lock_guard lock(mutex_);
    for (const std::string& line : config_dump_) {
      body += (line.starts_with("log-level=")
                   ? "log-level=" + std::string(ops::LogLevelName(logger_.level()))
                   : line) +
              "\n";
    }
    return ops::HttpResponse::Text(200, body);
  });
  for (auto& [method, path, handler] : extra_) http_->Handle(method, path, handler);
  auto started = http_->Start();
  if (!started.ok()) return Unexpected{started.error().message};
  return {};
}

uint16_t OperationsServer::port() const { return http_ ? http_->port() : 0; }

void OperationsServer::Stop() {
  if (http_) http_->Stop();
}

ops::HttpResponse ReadyResponse(bool leader, const std::vector<std::string>& missing) {
  if (missing.empty()) {
    return ops::HttpResponse::Text(200, leader ? "ready: leader\n" : "ready: standby\n");
  }
  std::string body = "not ready:";
  for (const std::string& reason : missing) body += " " + reason + ";";
  return ops::HttpResponse::Text(503, body + "\n");
}

SyncOperations::SyncOperations(ops::Logger& logger)
    : server_(logger, registry_, [this] { return Ready(); }) {}

Result<std::unique_ptr<SyncOperations>, std::string> SyncOperations::Create(ops::Logger& logger) {
  std::unique_ptr<SyncOperations> operations(new SyncOperations(logger));
  auto metrics = ops::RegisterZk2etcdMetrics(operations->registry_, build_values::kVersion,
                                             build_values::kGitCommit);
  if (!metrics.ok()) return Unexpected{metrics.error()};
  operations->metrics_ = *metrics;
  operations->zk_observer_ = std::make_unique<ops::MetricsOpObserver>(
      *metrics->zk_op_total, *metrics->zk_op_duration_seconds);
  operations->etcd_observer_ = std::make_unique<ops::MetricsOpObserver>(
      *metrics->etcd_op_total, *metrics->etcd_op_duration_seconds);
  return operations;
}

SyncOperations::~SyncOperations() { Stop(); }

void SyncOperations::OnChange(const sync::AppliedChange& change) {
  const std::string_view op = change.type == core::SinkWrite::Type::kPut ? "put" : "delete";
  std::string_view status = "failure";
  if (change.outcome) {
    status = *change.outcome == core::WriteOutcome::kApplied
                 ? std::string_view("success")
                 : core::WriteOutcomeName(*change.outcome);
  } else if (change.not_leader) {
    status = "not_leader";
  }
  metrics_.etcd_op_total->WithLabels({op, status}).Inc();
  if (change.outcome) metrics_.sync_delay_seconds->Get().ObserveDuration(change.delay);
}

void SyncOperations::OnRefusedWrite(const core::SinkError& error) {
  metrics_.etcd_refused_writes_total->WithLabels({error.label}).Inc();
}

void SyncOperations::OnReconcile(const Result<sync::ReconcileReport, sync::ReconcileError>& result,
                                 std::chrono::system_clock::time_point now) {
  if (!result.ok()) {
    metrics_.reconcile_total->WithLabels({"failure"}).Inc();
    return;
  }
  const sync::ReconcileReport& report = *result;
  metrics_.reconcile_total->WithLabels({"success"}).Inc();
  RecordReconcileSuccess(metrics_, report, now);
  metrics_.etcd_op_total->WithLabels({"put", "success"})
      .Inc(static_cast<double>(report.fixed_puts));
  metrics_.etcd_op_total->WithLabels({"delete", "success"})
      .Inc(static_cast<double>(report.fixed_deletes));
}

void SyncOperations::Attach(const sync::SyncService* service, const sync::FencedWriter* writer) {
  writer_.store(writer);
  service_.store(service);
  metrics_.zk_session_connected->SetCallback(
      {}, [service] { return service->Status().source_connected ? 1.0 : 0.0; });
  metrics_.leader->SetCallback({}, [service] { return service->Status().leader ? 1.0 : 0.0; });
  metrics_.watches->SetCallback(
      {}, [service] { return static_cast<double>(service->Status().watches); });
  metrics_.queue_depth->SetCallback(
      {"dirty_paths"}, [service] { return static_cast<double>(service->Status().queue_depth); });
  metrics_.queue_depth->SetCallback({"pending_writes"},
                                    [writer] { return static_cast<double>(writer->pending()); });
  metrics_.queue_depth->SetCallback({"deferred_deletes"}, [service] {
    return static_cast<double>(service->Status().deferred_deletes);
  });
  metrics_.queue_depth->SetCallback({"ownership_updates"}, [service] {
    return static_cast<double>(service->Status().ownership_updates);
  });
}

void SyncOperations::SetConfigDump(std::vector<std::string> lines) {
  server_.SetConfigDump(std::move(lines));
}

void SyncOperations::SetConfigValue(std::string_view name, std::string_view value) {
  server_.SetConfigValue(name, value);
}

ops::HttpResponse SyncOperations::Ready() const {
  const sync::SyncService* service = service_.load();
  const sync::FencedWriter* writer = writer_.load();
  if (service == nullptr) return server_.StartingResponse();
  const sync::SyncStatus status = service->Status();
  std::vector<std::string> missing;
  if (!status.source_connected) missing.push_back("zookeeper not connected");
  if (writer != nullptr && writer->retrying()) missing.push_back("etcd not answering");
  if (status.leader && !status.first_sync_done) missing.push_back("first full sync not done");
  if (!status.leader && !status.campaigning) missing.push_back("neither leading nor campaigning");
  return ReadyResponse(status.leader, missing);
}

Result<void, std::string> SyncOperations::Serve(const std::string& listen_address) {
  return server_.Serve(listen_address);
}

uint16_t SyncOperations::port() const { return server_.port(); }

void SyncOperations::Stop() {
  server_.Stop();
  if (service_.load() != nullptr) {
    metrics_.zk_session_connected->ClearCallback({});
    metrics_.leader->ClearCallback({});
    metrics_.watches->ClearCallback({});
    metrics_.queue_depth->ClearCallback({"dirty_paths"});
    metrics_.queue_depth->ClearCallback({"pending_writes"});
    metrics_.queue_depth->ClearCallback({"deferred_deletes"});
    metrics_.queue_depth->ClearCallback({"ownership_updates"});
    service_.store(nullptr);
  }
}

}  // namespace zk2etcd::cli

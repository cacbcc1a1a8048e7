#include "serve/serve_app.h"

#include <arpa/inet.h>
#include <spdlog/spdlog.h>

#include "pipeline/metrics_server.h"
#include "serve/dashboard_files.h"

namespace fanflow {

Result<std::pair<std::string, int>> ParseListen(const std::string& listen) {
  const auto colon = listen.rfind(':');
  const std::string host = colon == std::string::npos ? "" : listen.substr(0, colon);
  const std::string port = colon == std::string::npos ? "" : listen.substr(colon + 1);
  in_addr parsed{};
  char* end = nullptr;
  const long p = std::strtol(port.c_str(), &end, 10);
  if (inet_pton(AF_INET, host.c_str(), &parsed) != 1 || port.empty() || *end != '\0' || p < 0 ||
      p > 65535)
    return InvalidArgument("--listen '" + listen + "': expected IPV4:PORT, e.g. 127.0.0.1:8080");
  return std::make_pair(host, static_cast<int>(p));
}

Result<std::unique_ptr<ServeApp>> ServeApp::Start(std::unique_ptr<EventBus> bus,
                                                  ServeConfig config) {
  auto listen = ParseListen(config.listen);
  if (!listen.ok()) return listen.status();
  std::unique_ptr<ServeApp> app(new ServeApp(std::move(bus), std::move(config)));
  EventBus& b = *app->bus_;
  if (auto& e = app->config_.embedded) {
    // The aggregator first: it makes the ledger the service reads.
    auto aggregator = Aggregator::Start(b, e->aggregator);
    if (!aggregator.ok()) return aggregator.status();
    app->aggregator_ = std::move(aggregator).value();
    auto workers = Worker::Start(b, e->processor, e->worker);
    if (!workers.ok()) return workers.status();
    app->workers_ = std::move(workers).value();
    auto ventilator = Ventilator::Start(b, {1, app->config_.batches.files, ""});
    if (!ventilator.ok()) return ventilator.status();
    app->ventilator_ = std::move(ventilator).value();
    app->config_.batches.ledger_path = e->aggregator.state_path;
  }
  auto service = BatchService::Start(b, app->config_.batches);
  if (!service.ok()) return service.status();
  app->batches_ = std::move(service).value();
  HttpServerOptions o;
  o.bind_address = listen->first;
  o.port = listen->second;
  o.token = app->config_.token;
  // /healthz for probes; the page and its scripts hold no data (the data
  // endpoints they call do need the token).
  o.open_paths = {"/healthz"};
  for (const EmbeddedFile& f : DashboardFiles()) o.open_paths.push_back(f.url);
  auto http = HttpServer::Start(o, app->Routes());
  if (!http.ok())
    return Unavailable("--listen " + app->config_.listen + ": " + http.status().message());
  app->http_ = std::move(http).value();
  return app;
}

std::vector<HttpRoute> ServeApp::Routes() {
  BatchService* s = batches_.get();
  std::vector<HttpRoute> routes = {
      {"POST", "/v1/batches", [s](const HttpRequest& r) { return s->Submit(r); }},
      {"GET", "/v1/batches", [s](const HttpRequest& r) { return s->List(r); }},
      {"GET", "/v1/batches/(.+)", [s](const HttpRequest& r) { return s->Describe(r); }},
      {"POST", "/v1/batches/(.+)/cancel", [s](const HttpRequest& r) { return s->Cancel(r); }},
      {"GET", "/v1/dashboard", [s](const HttpRequest& r) { return s->Dashboard(r); }},
      {"GET", "/metrics",
       [s](const HttpRequest&) {
         HttpResponse r;
         r.content_type = kPrometheusContentType;
         r.body = s->RenderMetrics();
         return r;
       }},
      {"GET", "/healthz",
       [](const HttpRequest&) {
         HttpResponse r;
         r.body = R"({"status":"ok"})";
         return r;
       }},
  };
  for (const EmbeddedFile& f : DashboardFiles())
    routes.push_back({"GET", f.url, [&f](const HttpRequest&) {
                        HttpResponse r;
                        r.content_type = f.content_type;
                        r.body = std::string(f.bytes);
                        r.headers["Cache-Control"] = "no-cache";
                        return r;
                      }});
  return routes;
}

void ServeApp::RunInBackground(std::function<void(std::stop_token)> task) {
  background_.emplace_back(std::move(task));
}

ServeApp::~ServeApp() {
  background_.clear();
  // The HTTP server stops once its requests are answered: no POST may wait on.
  if (batches_) batches_->StopWaiting();
  http_.reset();
  batches_.reset();
  ventilator_.reset();
  if (workers_) workers_->Interrupt();
  workers_.reset();
  aggregator_.reset();
}

}  // namespace fanflow

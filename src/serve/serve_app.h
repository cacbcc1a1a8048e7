// `fanflow serve`: the HTTP front door of a fanflow deployment. It owns the
// bus, the BatchService behind the JSON API, the HTTP server and, on
// inproc:// (one process, nothing else on the bus), the aggregator, workers
// and ventilator themselves. Routes() lists every endpoint, so adding one is
// a line there; RunInBackground takes tasks that live as long as serve (e.g.
// a schedule). Destruction stops, in order: background tasks, HTTP, the
// service, the ventilator, workers, aggregator, then the bus.
#pragma once

#include <functional>
#include <memory>
#include <optional>
#include <stop_token>
#include <string>
#include <thread>
#include <vector>

#include "http/http_server.h"
#include "pipeline/aggregator.h"
#include "pipeline/processor.h"
#include "pipeline/ventilator.h"
#include "pipeline/worker.h"
#include "serve/batch_service.h"

namespace fanflow {

struct ServeConfig {
  std::string listen = "127.0.0.1:8080";  // IPv4:PORT (port 0: any free one)
  std::string token;                      // "" no Authorization needed
  BatchServiceOptions batches;            // on inproc:// its ledger is the embedded aggregator's
  // inproc:// only: the roles serve runs in its own process.
  struct Embedded {
    AggregatorOptions aggregator;
    std::shared_ptr<Processor> processor;
    WorkerOptions worker;
  };
  std::optional<Embedded> embedded;
};

class ServeApp {
 public:
  [[nodiscard]] static Result<std::unique_ptr<ServeApp>> Start(std::unique_ptr<EventBus> bus,
                                                               ServeConfig config);
  ~ServeApp();

  int port() const { return http_->port(); }
  EventBus& bus() { return *bus_; }
  BatchService& batches() { return *batches_; }
  // Runs `task` on a thread of its own until serve stops, which requests its stop first.
  void RunInBackground(std::function<void(std::stop_token)> task);

 private:
  ServeApp(std::unique_ptr<EventBus> bus, ServeConfig config)
      : bus_(std::move(bus)), config_(std::move(config)) {}
  // Every endpoint of the API and the dashboard.
  std::vector<HttpRoute> Routes();

  std::unique_ptr<EventBus> bus_;
  ServeConfig config_;
  std::unique_ptr<Aggregator> aggregator_;  // the embedded roles, inproc:// only
  std::unique_ptr<Worker> workers_;
  std::unique_ptr<Ventilator> ventilator_;
  std::unique_ptr<BatchService> batches_;
  std::unique_ptr<HttpServer> http_;
  std::vector<std::jthread> background_;  // last: stopped first
};

// "HOST:PORT" as an IPv4 address and a port; the error names --listen.
[[nodiscard]] Result<std::pair<std::string, int>> ParseListen(const std::string& listen);

}  // namespace fanflow

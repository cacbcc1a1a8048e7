// The Prometheus scrape endpoint of `fanflow monitor --metrics-port`: GET (or
// HEAD) /metrics only, on 127.0.0.1 unless told otherwise, served by the
// bounded HttpServer (short timeouts, a few threads, no request body).
// Owns its server; the destructor stops it.
#pragma once

#include <functional>
#include <memory>
#include <string>

#include "core/status.h"

namespace fanflow {

class HttpServer;

class MetricsServer {
 public:
  // Listens on bind_address:port (port 0: any free port, see port()) and
  // answers GET /metrics with render() as text/plain; version=0.0.4.
  [[nodiscard]] static Result<std::unique_ptr<MetricsServer>> Start(
      const std::string& bind_address, int port, std::function<std::string()> render);
  ~MetricsServer();
  MetricsServer(const MetricsServer&) = delete;
  MetricsServer& operator=(const MetricsServer&) = delete;

  int port() const;

 private:
  explicit MetricsServer(std::unique_ptr<HttpServer> server);
  std::unique_ptr<HttpServer> server_;
};

// The content type of the Prometheus text format.
inline constexpr char kPrometheusContentType[] = "text/plain; version=0.0.4; charset=utf-8";

}  // namespace fanflow

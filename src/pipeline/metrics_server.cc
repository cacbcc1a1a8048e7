#include "pipeline/metrics_server.h"

#include <arpa/inet.h>

#include "http/http_server.h"

namespace fanflow {

Result<std::unique_ptr<MetricsServer>> MetricsServer::Start(const std::string& bind_address,
                                                            int port,
                                                            std::function<std::string()> render) {
  if (port < 0 || port > 65535) return InvalidArgument("--metrics-port must be in 0..65535");
  in_addr parsed{};
  if (inet_pton(AF_INET, bind_address.c_str(), &parsed) != 1)
    return InvalidArgument("--metrics-bind '" + bind_address + "' is not an IPv4 address");
  HttpServerOptions o;
  o.bind_address = bind_address;
  o.port = port;
  o.max_body_bytes = 0;
  o.threads = 2;
  std::vector<HttpRoute> routes = {{"GET", "/metrics", [render](const HttpRequest&) {
                                      HttpResponse r;
                                      r.content_type = kPrometheusContentType;
                                      r.body = render();
                                      return r;
                                    }}};
  auto server = HttpServer::Start(o, std::move(routes));
  if (!server.ok()) return Unavailable("metrics: " + server.status().message());
  return std::unique_ptr<MetricsServer>(new MetricsServer(std::move(server).value()));
}

MetricsServer::MetricsServer(std::unique_ptr<HttpServer> server) : server_(std::move(server)) {}
MetricsServer::~MetricsServer() = default;

int MetricsServer::port() const { return server_->port(); }

}  // namespace fanflow

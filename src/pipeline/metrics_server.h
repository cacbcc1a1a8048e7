// A minimal HTTP/1.0 server for Prometheus scrapes: GET /metrics only, on
// 127.0.0.1 unless told otherwise. One thread serves one connection at a time
// with short socket timeouts, so a slow or hostile client can delay a scrape
// by a few seconds but never pile up threads or memory.
// Owns its socket and thread; the destructor stops both.
#pragma once

#include <functional>
#include <memory>
#include <string>
#include <thread>

#include "core/status.h"

namespace fanflow {

class MetricsServer {
 public:
  // Listens on bind_address:port (port 0: any free port, see port()) and
  // answers GET /metrics with render() as text/plain; version=0.0.4.
  [[nodiscard]] static Result<std::unique_ptr<MetricsServer>> Start(
      const std::string& bind_address, int port, std::function<std::string()> render);
  ~MetricsServer();
  MetricsServer(const MetricsServer&) = delete;
  MetricsServer& operator=(const MetricsServer&) = delete;

  int port() const { return port_; }

 private:
  MetricsServer(int listen_fd, int port, std::function<std::string()> render);
  void Serve();
  void HandleConnection(int fd);

  const int listen_fd_;
  const int port_;
  const std::function<std::string()> render_;
  int wake_[2] = {-1, -1};  // a byte on wake_[1] stops Serve()
  std::thread thread_;
};

}  // namespace fanflow

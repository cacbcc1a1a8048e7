#include "pipeline/metrics_server.h"

#include <arpa/inet.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <poll.h>
#include <sys/socket.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>

namespace fanflow {
namespace {

constexpr size_t kMaxRequestBytes = 8192;
constexpr int kSocketTimeoutSeconds = 2;

void SendAll(int fd, const std::string& data) {
  size_t sent = 0;
  while (sent < data.size()) {
    ssize_t n = send(fd, data.data() + sent, data.size() - sent, MSG_NOSIGNAL);
    if (n <= 0) return;  // the client went away or timed out: nothing to do
    sent += static_cast<size_t>(n);
  }
}

std::string Response(const std::string& status, const std::string& content_type,
                     const std::string& body) {
  return "HTTP/1.0 " + status + "\r\nContent-Type: " + content_type +
         "\r\nContent-Length: " + std::to_string(body.size()) + "\r\nConnection: close\r\n\r\n" +
         body;
}

}  // namespace

Result<std::unique_ptr<MetricsServer>> MetricsServer::Start(const std::string& bind_address,
                                                            int port,
                                                            std::function<std::string()> render) {
  if (port < 0 || port > 65535) return InvalidArgument("--metrics-port must be in 0..65535");
  sockaddr_in addr{};
  addr.sin_family = AF_INET;
  addr.sin_port = htons(static_cast<uint16_t>(port));
  if (inet_pton(AF_INET, bind_address.c_str(), &addr.sin_addr) != 1)
    return InvalidArgument("--metrics-bind '" + bind_address + "' is not an IPv4 address");
  int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
  if (fd < 0) return Internal(std::string("metrics: socket: ") + std::strerror(errno));
  int one = 1;
  setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one);
  if (bind(fd, reinterpret_cast<sockaddr*>(&addr), sizeof addr) != 0 || listen(fd, 16) != 0) {
    std::string why = std::strerror(errno);
    close(fd);
    return Unavailable("metrics: cannot listen on " + bind_address + ":" + std::to_string(port) +
                       ": " + why);
  }
  socklen_t len = sizeof addr;
  getsockname(fd, reinterpret_cast<sockaddr*>(&addr), &len);
  std::unique_ptr<MetricsServer> server(
      new MetricsServer(fd, ntohs(addr.sin_port), std::move(render)));
  if (pipe2(server->wake_, O_CLOEXEC) != 0) return Internal("metrics: cannot create a pipe");
  server->thread_ = std::thread([s = server.get()] { s->Serve(); });
  return server;
}

MetricsServer::MetricsServer(int listen_fd, int port, std::function<std::string()> render)
    : listen_fd_(listen_fd), port_(port), render_(std::move(render)) {}

MetricsServer::~MetricsServer() {
  if (thread_.joinable()) {
    const char b = 0;
    [[maybe_unused]] ssize_t n = write(wake_[1], &b, 1);  // an empty pipe takes one byte
    thread_.join();
  }
  for (int fd : {wake_[0], wake_[1], listen_fd_})
    if (fd >= 0) close(fd);
}

void MetricsServer::Serve() {
  while (true) {
    pollfd fds[2] = {{listen_fd_, POLLIN, 0}, {wake_[0], POLLIN, 0}};
    if (poll(fds, 2, -1) < 0) {
      if (errno == EINTR) continue;
      return;
    }
    if (fds[1].revents) return;
    if (!(fds[0].revents & POLLIN)) continue;
    int fd = accept4(listen_fd_, nullptr, nullptr, SOCK_CLOEXEC);
    if (fd < 0) continue;
    HandleConnection(fd);
    close(fd);
  }
}

void MetricsServer::HandleConnection(int fd) {
  timeval tv{kSocketTimeoutSeconds, 0};
  setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof tv);
  setsockopt(fd, SOL_SOCKET, SO_SNDTIMEO, &tv, sizeof tv);
  std::string request;
  char buf[1024];
  while (request.find("\r\n\r\n") == std::string::npos &&
         request.find("\n\n") == std::string::npos) {
    if (request.size() > kMaxRequestBytes)
      return SendAll(fd,
                     Response("431 Request Header Fields Too Large", "text/plain", "too large\n"));
    ssize_t n = recv(fd, buf, sizeof buf, 0);
    if (n <= 0) return;  // closed, or silent past the timeout
    request.append(buf, static_cast<size_t>(n));
  }
  const std::string line = request.substr(0, request.find_first_of("\r\n"));
  const auto sp1 = line.find(' '), sp2 = line.find(' ', sp1 + 1);
  const std::string method = line.substr(0, sp1);
  std::string path = sp1 == std::string::npos ? "" : line.substr(sp1 + 1, sp2 - sp1 - 1);
  path = path.substr(0, path.find('?'));
  if (method != "GET" && method != "HEAD")
    return SendAll(fd, Response("405 Method Not Allowed", "text/plain", "only GET /metrics\n"));
  if (path != "/metrics")
    return SendAll(fd, Response("404 Not Found", "text/plain", "try /metrics\n"));
  std::string reply = Response("200 OK", "text/plain; version=0.0.4; charset=utf-8", render_());
  if (method == "HEAD") reply = reply.substr(0, reply.find("\r\n\r\n") + 4);
  SendAll(fd, reply);
}

}  // namespace fanflow

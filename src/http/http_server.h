// A small HTTP/1.1 server on cpp-httplib (Debian's libcpp-httplib, the only
// file that includes httplib.h is http_server.cc): routes by method and path
// regex, an optional bearer token, and bounds on what a client may send or
// hold (body size, header and idle timeouts, threads). Every request is from a
// stranger: a handler gets the decoded path, its regex captures, the query and
// the body, and an exception it throws becomes a 500 with no detail.
// Owns its listening socket and threads; the destructor stops both, after the
// requests in flight are answered.
#pragma once

#include <chrono>
#include <functional>
#include <map>
#include <memory>
#include <string>
#include <vector>

#include "core/status.h"

namespace fanflow {

struct HttpRequest {
  std::string method;
  std::string path;                   // percent-decoded
  std::vector<std::string> captures;  // the route regex's groups
  std::multimap<std::string, std::string> query;
  std::string body;

  // The first value of query parameter `key`, or nullptr.
  const std::string* Param(const std::string& key) const;
};

struct HttpResponse {
  int status = 200;
  std::string content_type = "application/json";
  std::string body;
  std::map<std::string, std::string> headers;
};

using HttpHandler = std::function<HttpResponse(const HttpRequest&)>;

struct HttpRoute {
  std::string method;   // GET, POST, ...
  std::string pattern;  // ECMAScript regex matched against the whole path
  HttpHandler handler;
};

struct HttpServerOptions {
  std::string bind_address = "127.0.0.1";
  int port = 0;  // 0: any free port, see HttpServer::port()
  // Non-empty: every route but those in `open_paths` needs
  // `Authorization: Bearer <token>` (compared in constant time), else 401.
  std::string token;
  std::vector<std::string> open_paths;
  size_t max_body_bytes = 64 * 1024;
  int threads = 16;  // requests served at once; a kept-alive connection holds one
  std::chrono::seconds read_timeout{5};
  std::chrono::seconds write_timeout{5};
  std::chrono::seconds keep_alive_timeout{2};
};

class HttpServer {
 public:
  // Binds (the error names bind_address:port) and starts serving `routes`.
  [[nodiscard]] static Result<std::unique_ptr<HttpServer>> Start(const HttpServerOptions& options,
                                                                 std::vector<HttpRoute> routes);
  ~HttpServer();
  HttpServer(const HttpServer&) = delete;
  HttpServer& operator=(const HttpServer&) = delete;

  int port() const { return port_; }

 private:
  struct Impl;
  explicit HttpServer(std::unique_ptr<Impl> impl, int port);
  std::unique_ptr<Impl> impl_;
  const int port_;
};

// {"error": message} as a response with `status`.
HttpResponse JsonError(int status, const std::string& message);

// True when the two strings are equal; the time taken depends only on the
// length of `expected`.
bool ConstantTimeEquals(const std::string& got, const std::string& expected);

}  // namespace fanflow

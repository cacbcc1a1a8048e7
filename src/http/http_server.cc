#include "http/http_server.h"

#include <httplib.h>
#include <spdlog/spdlog.h>

#include <condition_variable>
#include <deque>
#include <mutex>
#include <nlohmann/json.hpp>
#include <regex>
#include <thread>

namespace fanflow {

struct HttpServer::Impl {
  httplib::Server server;
  std::thread thread;
};

const std::string* HttpRequest::Param(const std::string& key) const {
  auto it = query.find(key);
  return it == query.end() ? nullptr : &it->second;
}

HttpResponse JsonError(int status, const std::string& message) {
  HttpResponse r;
  r.status = status;
  r.body = nlohmann::json{{"error", message}}.dump(-1, ' ', false,
                                                   nlohmann::json::error_handler_t::replace);
  return r;
}

bool ConstantTimeEquals(const std::string& got, const std::string& expected) {
  unsigned char diff = got.size() == expected.size() ? 0 : 1;
  for (size_t i = 0; i < expected.size(); ++i)
    diff |= static_cast<unsigned char>(expected[i] ^ (i < got.size() ? got[i] : 0));
  return diff == 0;
}

namespace {

// httplib's ThreadPool queues every accepted connection without a limit: a
// flood of idle connections would pile up sockets and memory. This one makes
// the accept loop wait while `max_queued` connections wait for a thread, so
// the rest stay in the kernel's listen backlog (and are refused past it).
class BoundedPool : public httplib::TaskQueue {
 public:
  BoundedPool(size_t threads, size_t max_queued) : max_queued_(max_queued) {
    for (size_t i = 0; i < threads; ++i) threads_.emplace_back([this] { Work(); });
  }
  void enqueue(std::function<void()> fn) override {
    std::unique_lock<std::mutex> lock(mu_);
    room_.wait(lock, [this] { return jobs_.size() < max_queued_ || shutdown_; });
    jobs_.push_back(std::move(fn));
    ready_.notify_one();
  }
  void shutdown() override {
    {
      std::lock_guard<std::mutex> lock(mu_);
      shutdown_ = true;
    }
    ready_.notify_all();
    room_.notify_all();
    for (std::thread& t : threads_) t.join();
  }

 private:
  void Work() {
    while (true) {
      std::function<void()> fn;
      {
        std::unique_lock<std::mutex> lock(mu_);
        ready_.wait(lock, [this] { return !jobs_.empty() || shutdown_; });
        if (jobs_.empty()) return;  // shut down, nothing left to answer
        fn = std::move(jobs_.front());
        jobs_.pop_front();
        room_.notify_one();
      }
      fn();
    }
  }

  const size_t max_queued_;
  std::mutex mu_;
  std::condition_variable ready_, room_;
  std::deque<std::function<void()>> jobs_;  // guarded by mu_
  bool shutdown_ = false;                   // guarded by mu_
  std::vector<std::thread> threads_;
};

void Write(const HttpResponse& from, httplib::Response& to) {
  to.status = from.status;
  for (const auto& [k, v] : from.headers) to.set_header(k, v);
  to.set_content(from.body, from.content_type.c_str());
}

}  // namespace

Result<std::unique_ptr<HttpServer>> HttpServer::Start(const HttpServerOptions& o,
                                                      std::vector<HttpRoute> routes) {
  auto impl = std::make_unique<Impl>();
  httplib::Server& s = impl->server;
  const int threads = o.threads;
  s.new_task_queue = [threads] {
    return new BoundedPool(static_cast<size_t>(threads), 4 * threads);
  };
  s.set_payload_max_length(o.max_body_bytes);
  s.set_read_timeout(o.read_timeout);
  s.set_write_timeout(o.write_timeout);
  s.set_keep_alive_timeout(o.keep_alive_timeout.count());
  s.set_keep_alive_max_count(20);
  // httplib's default adds SO_REUSEPORT, which lets a second server bind the
  // same port and silently take half its connections: address reuse only.
  s.set_socket_options([](int sock) {
    int one = 1;
    setsockopt(sock, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one);
  });
  s.set_pre_routing_handler([o](const httplib::Request& req, httplib::Response& res) {
    if (o.token.empty() ||
        std::find(o.open_paths.begin(), o.open_paths.end(), req.path) != o.open_paths.end())
      return httplib::Server::HandlerResponse::Unhandled;
    if (ConstantTimeEquals(req.get_header_value("Authorization"), "Bearer " + o.token))
      return httplib::Server::HandlerResponse::Unhandled;
    HttpResponse denied = JsonError(401, "Authorization: a valid 'Bearer <token>' is required");
    denied.headers["WWW-Authenticate"] = "Bearer";
    Write(denied, res);
    return httplib::Server::HandlerResponse::Handled;
  });
  s.set_exception_handler(
      [](const httplib::Request& req, httplib::Response& res, std::exception_ptr) {
        spdlog::error("http: {} {} failed with an exception", req.method, req.path.substr(0, 200));
        Write(JsonError(500, "internal error"), res);
      });
  // httplib answers unmatched paths with an empty 404 (and oversized bodies with 413): a JSON
  // reason instead.
  s.set_error_handler([](const httplib::Request&, httplib::Response& res) {
    if (!res.body.empty()) return;
    const int status = res.status;
    Write(JsonError(status, status == 404   ? "no such resource"
                            : status == 413 ? "request body too large"
                                            : "request refused"),
          res);
  });
  for (HttpRoute& r : routes) {
    auto handler = [h = std::move(r.handler)](const httplib::Request& req, httplib::Response& res) {
      HttpRequest in;
      in.method = req.method;
      in.path = req.path;
      for (size_t i = 1; i < req.matches.size(); ++i) in.captures.push_back(req.matches[i].str());
      in.query.insert(req.params.begin(), req.params.end());
      in.body = req.body;
      Write(h(in), res);
    };
    if (r.method == "GET")
      s.Get(r.pattern, std::move(handler));
    else if (r.method == "POST")
      s.Post(r.pattern, std::move(handler));
    else if (r.method == "DELETE")
      s.Delete(r.pattern, std::move(handler));
    else
      return InvalidArgument("http: unsupported method " + r.method);
  }
  const int port = o.port == 0 ? s.bind_to_any_port(o.bind_address)
                               : (s.bind_to_port(o.bind_address, o.port) ? o.port : -1);
  if (port < 0)
    return Unavailable("http: cannot listen on " + o.bind_address + ":" + std::to_string(o.port));
  impl->thread = std::thread([&s] { s.listen_after_bind(); });
  // stop() does nothing until the loop runs: a server stopped before that would never end.
  for (int i = 0; !s.is_running(); ++i) {
    if (i == 5000 || !impl->thread.joinable()) return Internal("http: the server did not start");
    std::this_thread::sleep_for(std::chrono::milliseconds(1));
  }
  return std::unique_ptr<HttpServer>(new HttpServer(std::move(impl), port));
}

HttpServer::HttpServer(std::unique_ptr<Impl> impl, int port)
    : impl_(std::move(impl)), port_(port) {}

HttpServer::~HttpServer() {
  impl_->server.stop();
  if (impl_->thread.joinable()) impl_->thread.join();
}

}  // namespace fanflow

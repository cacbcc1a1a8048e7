// What the AMQP tests share: the RabbitMQ they run against (from the
// environment scripts/rabbitmq-start.sh exports: eval "$(scripts/rabbitmq-start.sh)"),
// unique names, bounded waits and a log capture. Without FANFLOW_TEST_AMQP_URL
// every test of a binary linking this is skipped, or fails when CI=true.
#pragma once

#include <chrono>
#include <memory>
#include <mutex>
#include <set>
#include <string>
#include <thread>

#include "core/bus.h"
#include "tests/support/require_env.h"

namespace fanflow::amqp::testing {

using namespace std::chrono_literals;

// FANFLOW_TEST_AMQP_URL, or "amqp://unset" (the tests are skipped then).
std::string AmqpUrl();
// `url` with query parameters appended ("a=1&b=2").
std::string WithQuery(const std::string& url, const std::string& query);
// AmqpUrl() with query parameters appended.
std::string AmqpUrlWith(const std::string& query);
// An environment variable, or "" when unset.
std::string Env(const char* name);
// Runs `$FANFLOW_TEST_RABBITMQCTL args` against the test node; its exit code
// (-1 when the variable is unset).
int RabbitmqCtl(const std::string& args);
// At the top of a test that drives the node with rabbitmqctl.
#define FANFLOW_REQUIRE_RABBITMQCTL()                                                   \
  FANFLOW_REQUIRE_OR_SKIP(!::fanflow::amqp::testing::Env("FANFLOW_TEST_RABBITMQCTL").empty(), \
                          "FANFLOW_TEST_RABBITMQCTL is unset (scripts/rabbitmq-start.sh sets it)")
// A vhost of its own on the test node, for guest, deleted with it.
class ScratchVhost {
 public:
  explicit ScratchVhost(const std::string& stem);
  ~ScratchVhost();
  ScratchVhost(const ScratchVhost&) = delete;
  ScratchVhost& operator=(const ScratchVhost&) = delete;
  const std::string& url() const { return url_; }

 private:
  const std::string name_;
  std::string url_;
};

// A name no other run uses, e.g. Unique("g") -> "g_123456789".
std::string Unique(const std::string& stem);
// A CloudEvents-style type of its own: "fanflow.<stem>_N.v1".
std::string UniqueType(const std::string& stem);

std::unique_ptr<EventBus> MustOpen(const std::string& url);

// Polls `done` every 10 ms until it holds or `limit` passes.
template <typename Pred>
bool WaitFor(Pred done, std::chrono::milliseconds limit = 30s) {
  auto deadline = std::chrono::steady_clock::now() + limit;
  while (!done()) {
    if (std::chrono::steady_clock::now() > deadline) return false;
    std::this_thread::sleep_for(10ms);
  }
  return true;
}

// Ids delivered to a handler (duplicates counted apart), thread-safely.
class Received {
 public:
  Handler Acking();
  size_t unique();
  size_t total();

 private:
  std::mutex mu_;
  std::set<std::string> ids_;
  size_t total_ = 0;
};

// The last 20,000 lines spdlog writes (any level) while it lives.
class LogCapture {
 public:
  LogCapture();
  ~LogCapture();
  std::string text();

 private:
  struct Sinks;
  std::unique_ptr<Sinks> sinks_;
};

}  // namespace fanflow::amqp::testing

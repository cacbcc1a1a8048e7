#include "tests/amqp/amqp_test_env.h"

#include <gtest/gtest.h>
#include <spdlog/sinks/ringbuffer_sink.h>
#include <spdlog/spdlog.h>

#include <cstdlib>
#include <random>

namespace fanflow::amqp::testing {
namespace {

// Skips (or, in CI, fails) every test when no broker was provided.
class RequireBroker : public ::testing::Environment {
 public:
  void SetUp() override {
    FANFLOW_REQUIRE_OR_SKIP(!Env("FANFLOW_TEST_AMQP_URL").empty(),
                            "FANFLOW_TEST_AMQP_URL is unset: start a test node with "
                            "eval \"$(scripts/rabbitmq-start.sh)\"");
  }
};

const auto* const kRegistered = ::testing::AddGlobalTestEnvironment(new RequireBroker);

}  // namespace

std::string Env(const char* name) { return ::fanflow::testing::EnvOr(name); }

std::string AmqpUrl() {
  std::string url = Env("FANFLOW_TEST_AMQP_URL");
  return url.empty() ? "amqp://unset" : url;
}

std::string WithQuery(const std::string& url, const std::string& query) {
  return url + (url.find('?') == std::string::npos ? "?" : "&") + query;
}

std::string AmqpUrlWith(const std::string& query) { return WithQuery(AmqpUrl(), query); }

int RabbitmqCtl(const std::string& args) {
  std::string ctl = Env("FANFLOW_TEST_RABBITMQCTL");
  if (ctl.empty()) return -1;
  int rc = std::system((ctl + " " + args + " >/dev/null 2>&1").c_str());
  return WIFEXITED(rc) ? WEXITSTATUS(rc) : -1;
}

ScratchVhost::ScratchVhost(const std::string& stem) : name_(Unique(stem)) {
  EXPECT_EQ(RabbitmqCtl("add_vhost " + name_), 0);
  EXPECT_EQ(RabbitmqCtl("set_permissions -p " + name_ + " guest '.*' '.*' '.*'"), 0);
  std::string base = AmqpUrl();
  url_ = base.substr(0, base.find('/', base.find("://") + 3)) + "/" + name_;  // scheme://host:port/vhost
}

ScratchVhost::~ScratchVhost() { RabbitmqCtl("delete_vhost " + name_); }

std::string Unique(const std::string& stem) {
  static std::mutex mu;
  static std::mt19937_64 rng(std::random_device{}());
  std::lock_guard<std::mutex> lock(mu);
  return stem + "_" + std::to_string(rng() % 1000000000);
}

std::string UniqueType(const std::string& stem) { return "fanflow." + Unique(stem) + ".v1"; }

std::unique_ptr<EventBus> MustOpen(const std::string& url) {
  auto bus = OpenBus(url);
  EXPECT_TRUE(bus.ok()) << bus.status().ToString();
  return bus.ok() ? std::move(bus).value() : nullptr;
}

Handler Received::Acking() {
  return [this](const Delivery& d) {
    std::lock_guard<std::mutex> lock(mu_);
    ids_.insert(d.message.id);
    ++total_;
    return Verdict::Ack();
  };
}

size_t Received::unique() {
  std::lock_guard<std::mutex> lock(mu_);
  return ids_.size();
}

size_t Received::total() {
  std::lock_guard<std::mutex> lock(mu_);
  return total_;
}

struct LogCapture::Sinks {
  std::shared_ptr<spdlog::logger> previous;
  std::shared_ptr<spdlog::sinks::ringbuffer_sink_mt> ring;
};

LogCapture::LogCapture() : sinks_(new Sinks{spdlog::default_logger(), nullptr}) {
  sinks_->ring = std::make_shared<spdlog::sinks::ringbuffer_sink_mt>(20000);
  auto logger = std::make_shared<spdlog::logger>("capture", sinks_->ring);
  logger->set_level(spdlog::level::trace);
  spdlog::set_default_logger(logger);
}

LogCapture::~LogCapture() { spdlog::set_default_logger(sinks_->previous); }

std::string LogCapture::text() {
  std::string all;
  for (const auto& line : sinks_->ring->last_formatted()) all += line;
  return all;
}

}  // namespace fanflow::amqp::testing

// Runs one test on every bus: inproc:// always, RabbitMQ and Mosquitto when
// scripts/test.sh started them (FANFLOW_TEST_AMQP_URL / FANFLOW_TEST_MQTT_URL).
// Without a broker its tests skip, except under CI=true, where that fails.
//   class MyTest : public testing::EveryBus {};
//   TEST_P(MyTest, Works) { auto bus = OpenBus(); ... }
//   FANFLOW_ON_EVERY_BUS(MyTest);
#pragma once

#include <gtest/gtest.h>

#include <chrono>
#include <cstdlib>
#include <functional>
#include <mutex>
#include <random>
#include <string>
#include <thread>
#include <vector>

#include "core/bus.h"
#include "core/event.h"
#include "tests/support/require_env.h"

namespace fanflow::testing {

// A name no other test or run uses (groups, types, batch ids).
inline std::string Unique(const std::string& stem) {
  static std::mt19937_64 rng(std::random_device{}());
  return stem + std::to_string(rng() % 1000000000);
}

class EveryBus : public ::testing::TestWithParam<std::string> {
 protected:
  void SetUp() override {
    const std::string& p = GetParam();
    if (p == "inproc") {
      url_ = "inproc://" + Unique("ops");
      return;
    }
    url_ = EnvOr(p.c_str());
    FANFLOW_REQUIRE_OR_SKIP(!url_.empty(), p << " is unset: start the broker (scripts/test.sh does) to run this");
  }

  bool inproc() const { return GetParam() == "inproc"; }
  const std::string& url() const { return url_; }

  std::unique_ptr<EventBus> Open(const std::string& suffix = "") {
    auto bus = ::fanflow::OpenBus(url_ + suffix);
    EXPECT_TRUE(bus.ok()) << bus.status().ToString();
    return bus.ok() ? std::move(bus).value() : nullptr;
  }

  std::string url_;
};

// Collects the events of `type` that `keep` accepts, through a private
// ephemeral group, so a shared broker's other traffic is left alone.
class EventCollector {
 public:
  EventCollector(EventBus& bus, const std::string& type, std::function<bool(const Event&)> keep)
      : keep_(std::move(keep)) {
    SubscribeOptions o;
    o.group = Unique("collect");
    o.event_types = {type};
    o.ephemeral = true;
    auto sub = bus.Subscribe(o, [this](const Delivery& d) {
      auto e = DecodeEvent(d.message.body);
      std::lock_guard<std::mutex> l(mu_);
      if (e.ok() && keep_(e.value())) events_.push_back(e.value());
      return Verdict::Ack();
    });
    EXPECT_TRUE(sub.ok()) << sub.status().ToString();
    if (sub.ok()) sub_ = std::move(sub).value();
  }
  std::vector<Event> events() {
    std::lock_guard<std::mutex> l(mu_);
    return events_;
  }
  size_t size() { return events().size(); }
  // Waits (bounded) until at least `n` events are in.
  bool WaitFor(size_t n, std::chrono::seconds limit = std::chrono::seconds(30)) {
    const auto deadline = std::chrono::steady_clock::now() + limit;
    while (size() < n) {
      if (std::chrono::steady_clock::now() > deadline) return false;
      std::this_thread::sleep_for(std::chrono::milliseconds(10));
    }
    return true;
  }

 private:
  const std::function<bool(const Event&)> keep_;
  std::mutex mu_;
  std::vector<Event> events_;
  std::unique_ptr<Subscription> sub_;  // last: stops before the state goes
};

inline std::string BusName(const ::testing::TestParamInfo<std::string>& info) {
  if (info.param == "inproc") return "Inproc";
  return info.param == "FANFLOW_TEST_AMQP_URL" ? "Amqp" : "Mqtt";
}

}  // namespace fanflow::testing

#define FANFLOW_ON_EVERY_BUS(Suite)                                                              \
  INSTANTIATE_TEST_SUITE_P(                                                                      \
      Bus, Suite, ::testing::Values("inproc", "FANFLOW_TEST_AMQP_URL", "FANFLOW_TEST_MQTT_URL"), \
      ::fanflow::testing::BusName)

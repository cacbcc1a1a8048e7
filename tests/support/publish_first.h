// What the broker adapter tests check of Verdict::AckAfterPublishing when the
// publish fails: the delivery is handled once more, after the bus's backoff.
#pragma once

#include <gtest/gtest.h>

#include <chrono>
#include <mutex>
#include <optional>
#include <thread>
#include <vector>

#include "core/bus.h"

namespace fanflow::test {

struct SecondHandling {
  std::chrono::steady_clock::duration after;  // since the first handling
  bool redelivered = false;
};

// Subscribes `group` to `type` with a handler that answers its first delivery
// with AckAfterPublishing({refused}) and acks any later one, publishes one
// event, and returns the second handling of it; nullopt (and a test failure)
// if it does not come within 20 s, or comes more than once.
inline std::optional<SecondHandling> HandledAgainAfterAFailedPublish(EventBus& bus, const std::string& group,
                                                                     const std::string& type, Message refused) {
  using Clock = std::chrono::steady_clock;
  std::mutex mu;
  std::vector<std::pair<Clock::time_point, bool>> seen;  // when, redelivered
  auto sub = bus.Subscribe({group, {type}, 1}, [&](const Delivery& d) {
    std::lock_guard<std::mutex> l(mu);
    seen.emplace_back(Clock::now(), d.redelivered);
    return seen.size() == 1 ? Verdict::AckAfterPublishing({refused}) : Verdict::Ack();
  });
  EXPECT_TRUE(sub.ok()) << sub.status().ToString();
  if (!sub.ok()) return std::nullopt;
  Status published = bus.Publish(Message{type, "asks", "{}"});
  EXPECT_TRUE(published.ok()) << published.ToString();
  const auto deadline = Clock::now() + std::chrono::seconds(20);
  auto handled = [&] {
    std::lock_guard<std::mutex> l(mu);
    return seen.size();
  };
  while (handled() < 2 && Clock::now() < deadline) std::this_thread::sleep_for(std::chrono::milliseconds(10));
  std::this_thread::sleep_for(std::chrono::milliseconds(300));  // nothing more may come
  sub.value().reset();
  EXPECT_EQ(seen.size(), 2u) << "the delivery whose publish failed should be handled exactly once more";
  if (seen.size() != 2) return std::nullopt;
  return SecondHandling{seen[1].first - seen[0].first, seen[1].second};
}

}  // namespace fanflow::test

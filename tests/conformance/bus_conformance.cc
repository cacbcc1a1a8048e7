#include "tests/conformance/bus_conformance.h"

#include <algorithm>
#include <atomic>
#include <chrono>
#include <map>
#include <mutex>
#include <optional>
#include <random>
#include <set>
#include <stdexcept>
#include <thread>

#include "core/bus.h"

namespace fanflow {
namespace {

using namespace std::chrono_literals;

// A name no other test run uses: event types and groups are per test.
std::string Unique(const std::string& stem) {
  static std::mt19937_64 rng(std::random_device{}());
  return stem + "_" + std::to_string(rng() % 1000000000);
}

std::string TestType(const std::string& stem) { return "fanflow." + Unique(stem) + ".v1"; }

std::unique_ptr<EventBus> Open(const std::string& url) {
  auto bus = OpenBus(url);
  EXPECT_TRUE(bus.ok()) << bus.status().ToString();
  return bus.ok() ? std::move(bus).value() : nullptr;
}

std::vector<Message> Numbered(const std::string& type, int n) {
  std::vector<Message> out;
  for (int i = 0; i < n; ++i)
    out.push_back(Message{type, type + "-" + std::to_string(i), "{\"n\":" + std::to_string(i) + "}"});
  return out;
}

// Polls `done` until it is true or `limit` passes; returns its last value.
template <typename Pred>
bool WaitFor(Pred done, std::chrono::milliseconds limit = 20s) {
  auto deadline = std::chrono::steady_clock::now() + limit;
  while (!done()) {
    if (std::chrono::steady_clock::now() > deadline) return false;
    std::this_thread::sleep_for(10ms);
  }
  return true;
}

// Collects bodies delivered to a handler, thread-safely.
struct Received {
  std::mutex mu;
  std::multiset<std::string> bodies;
  size_t size() {
    std::lock_guard<std::mutex> l(mu);
    return bodies.size();
  }
  Handler Acking() {
    return [this](const Delivery& d) {
      std::lock_guard<std::mutex> l(mu);
      bodies.insert(d.message.body);
      return Verdict::Ack();
    };
  }
};

TEST_P(BusConformance, DeliversEveryPublishedEventBodyUnchanged) {
  auto bus = Open(GetParam());
  ASSERT_TRUE(bus);
  const std::string type = TestType("deliver"), group = Unique("g");
  Received got;
  auto sub = bus->Subscribe({group, {type}, 4}, got.Acking());
  ASSERT_TRUE(sub.ok()) << sub.status().ToString();
  auto msgs = Numbered(type, 200);
  msgs.push_back(Message{type, "", "not json at all {"});  // bytes are not the bus's business
  ASSERT_TRUE(bus->Publish(msgs).ok());
  ASSERT_TRUE(WaitFor([&] { return got.size() >= msgs.size(); }));
  std::this_thread::sleep_for(200ms);  // would-be duplicates arrive now
  std::multiset<std::string> want;
  for (auto& m : msgs) want.insert(m.body);
  std::lock_guard<std::mutex> l(got.mu);
  EXPECT_EQ(got.bodies, want);
}

TEST_P(BusConformance, EveryGroupGetsEveryEvent) {
  auto bus = Open(GetParam());
  ASSERT_TRUE(bus);
  const std::string type = TestType("groups");
  Received a, b;
  auto sa = bus->Subscribe({Unique("ga"), {type}, 2}, a.Acking());
  auto sb = bus->Subscribe({Unique("gb"), {type}, 2}, b.Acking());
  ASSERT_TRUE(sa.ok() && sb.ok());
  ASSERT_TRUE(bus->Publish(Numbered(type, 50)).ok());
  EXPECT_TRUE(WaitFor([&] { return a.size() == 50 && b.size() == 50; }))
      << a.size() << " / " << b.size();
}

TEST_P(BusConformance, CompetingConsumersInAGroupShareTheWorkWithoutDuplicates) {
  auto bus = Open(GetParam());
  auto bus2 = Open(GetParam());  // a second process would have its own connection
  ASSERT_TRUE(bus && bus2);
  const std::string type = TestType("compete"), group = Unique("g");
  Received got;
  auto s1 = bus->Subscribe({group, {type}, 2}, got.Acking());
  auto s2 = bus2->Subscribe({group, {type}, 2}, got.Acking());
  ASSERT_TRUE(s1.ok() && s2.ok());
  ASSERT_TRUE(bus->Publish(Numbered(type, 300)).ok());
  ASSERT_TRUE(WaitFor([&] { return got.size() >= 300; }));
  std::this_thread::sleep_for(300ms);
  std::lock_guard<std::mutex> l(got.mu);
  EXPECT_EQ(got.bodies.size(), 300u);
  EXPECT_EQ(std::set<std::string>(got.bodies.begin(), got.bodies.end()).size(), 300u);
}

TEST_P(BusConformance, NeverRunsMoreHandlersThanTheConcurrencyCap) {
  auto bus = Open(GetParam());
  ASSERT_TRUE(bus);
  const std::string type = TestType("cap");
  std::atomic<int> running{0}, peak{0}, done{0};
  auto sub = bus->Subscribe({Unique("g"), {type}, 3}, [&](const Delivery&) {
    int now = ++running;
    int seen = peak.load();
    while (now > seen && !peak.compare_exchange_weak(seen, now)) {
    }
    std::this_thread::sleep_for(15ms);
    --running;
    ++done;
    return Verdict::Ack();
  });
  ASSERT_TRUE(sub.ok());
  ASSERT_TRUE(bus->Publish(Numbered(type, 40)).ok());
  ASSERT_TRUE(WaitFor([&] { return done.load() == 40; }));
  EXPECT_LE(peak.load(), 3);
  EXPECT_GE(peak.load(), 2) << "the cap should allow parallel handlers";
}

// A burst handler gets the deliveries that wait in the process together (the
// aggregator commits them in one transaction), never more than max_burst, and
// each verdict of a burst settles its own delivery.
TEST_P(BusConformance, ABurstHandlerTakesWhatWaitsAndEachVerdictSettlesItsOwnDelivery) {
  auto bus = Open(GetParam());
  ASSERT_TRUE(bus);
  const std::string type = TestType("burst"), group = Unique("g");
  constexpr int kMessages = 12, kMaxBurst = 5;
  std::mutex mu;
  std::vector<size_t> bursts;
  std::map<std::string, std::vector<int>> attempts;  // message id -> attempts seen
  SubscribeOptions options{group, {type}, 1};
  options.prefetch = 2 * kMessages;
  auto sub = bus->SubscribeBursts(options, kMaxBurst, [&](std::span<const Delivery> d, std::span<Verdict> v) {
    {
      std::lock_guard<std::mutex> l(mu);
      bursts.push_back(d.size());
      for (size_t i = 0; i < d.size(); ++i) {
        attempts[d[i].message.id].push_back(d[i].attempt);
        if (d[i].message.id == type + "-3") v[i] = Verdict::DeadLetter("burst: poison 3");
        if (d[i].message.id == type + "-5" && d[i].attempt == 1) v[i] = Verdict::Retry(10ms, "burst: once more");
      }
    }
    // The first call holds the only handler, so the rest arrive and wait.
    if (bursts.size() == 1) std::this_thread::sleep_for(500ms);
  });
  ASSERT_TRUE(sub.ok()) << sub.status().ToString();
  ASSERT_TRUE(bus->Publish(Numbered(type, kMessages)).ok());
  ASSERT_TRUE(WaitFor([&] {
    std::lock_guard<std::mutex> l(mu);
    return attempts.size() == kMessages && attempts[type + "-5"].size() == 2;
  }));
  std::vector<DeadLetter> dead;
  ASSERT_TRUE(WaitFor([&] {
    auto list = bus->ListDeadLetters(group);
    if (list.ok()) dead = list.value();
    return dead.size() == 1;
  }));
  EXPECT_EQ(dead[0].id, type + "-3");
  EXPECT_EQ(dead[0].reason, "burst: poison 3");
  std::this_thread::sleep_for(300ms);  // nothing acked may come back
  std::lock_guard<std::mutex> l(mu);
  for (const auto& [id, seen] : attempts) {
    const std::vector<int> expected = id == type + "-5" ? std::vector<int>{1, 2} : std::vector<int>{1};
    EXPECT_EQ(seen, expected) << id;
  }
  size_t largest = 0;
  for (size_t n : bursts) largest = std::max(largest, n);
  EXPECT_GT(largest, 1u) << "deliveries that waited came one at a time";
  EXPECT_LE(largest, static_cast<size_t>(kMaxBurst));
}

TEST_P(BusConformance, RetryRedeliversWithTheAttemptCountRaised) {
  auto bus = Open(GetParam());
  ASSERT_TRUE(bus);
  const std::string type = TestType("retry");
  std::mutex mu;
  std::vector<int> attempts;
  auto sub = bus->Subscribe({Unique("g"), {type}, 1}, [&](const Delivery& d) {
    std::lock_guard<std::mutex> l(mu);
    attempts.push_back(d.attempt);
    return d.attempt < 3 ? Verdict::Retry(50ms, "try again") : Verdict::Ack();
  });
  ASSERT_TRUE(sub.ok());
  ASSERT_TRUE(bus->Publish(Message{type, "r1", "{}"}).ok());
  ASSERT_TRUE(WaitFor([&] {
    std::lock_guard<std::mutex> l(mu);
    return attempts.size() >= 3;
  }));
  std::this_thread::sleep_for(300ms);
  std::lock_guard<std::mutex> l(mu);
  EXPECT_EQ(attempts, (std::vector<int>{1, 2, 3}));
}

TEST_P(BusConformance, DeadLetterKeepsBodyAndReasonAndReplaySendsItBack) {
  auto bus = Open(GetParam());
  ASSERT_TRUE(bus);
  const std::string type = TestType("dlq"), group = Unique("g");
  std::atomic<int> deliveries{0};
  auto sub = bus->Subscribe({group, {type}, 1}, [&](const Delivery&) {
    // First delivery is poison, the replayed one is accepted.
    return ++deliveries == 1 ? Verdict::DeadLetter("schema: data.x is required") : Verdict::Ack();
  });
  ASSERT_TRUE(sub.ok());
  ASSERT_TRUE(bus->Publish(Message{type, "poison-1", "{\"x\":null}"}).ok());
  std::vector<DeadLetter> dead;
  ASSERT_TRUE(WaitFor([&] {
    auto list = bus->ListDeadLetters(group);
    if (list.ok()) dead = list.value();
    return dead.size() == 1;
  }));
  EXPECT_EQ(dead[0].body, "{\"x\":null}");
  EXPECT_EQ(dead[0].reason, "schema: data.x is required");
  EXPECT_EQ(dead[0].group, group);
  EXPECT_EQ(dead[0].type, type);
  EXPECT_GE(dead[0].attempts, 1);
  EXPECT_FALSE(dead[0].time.empty());

  auto replayed = bus->ReplayDeadLetters(group, "");
  ASSERT_TRUE(replayed.ok()) << replayed.status().ToString();
  EXPECT_EQ(replayed.value(), 1);
  EXPECT_TRUE(WaitFor([&] { return deliveries.load() == 2; }));
  EXPECT_TRUE(WaitFor([&] {
    auto list = bus->ListDeadLetters(group);
    return list.ok() && list->empty();
  }));
}

// A handler that throws means "dead-letter with the reason" on every bus: never
// retried forever, never the end of the process, and the group keeps going.
TEST_P(BusConformance, AThrowingHandlerDeadLettersTheMessageAndLaterOnesAreStillDelivered) {
  auto bus = Open(GetParam());
  ASSERT_TRUE(bus);
  const std::string type = TestType("throws"), group = Unique("g");
  std::atomic<int> std_throws{0}, other_throws{0};
  Received got;
  Handler ack = got.Acking();
  auto sub = bus->Subscribe({group, {type}, 2}, [&](const Delivery& d) {
    if (d.message.body == "std") {
      ++std_throws;
      throw std::runtime_error("boom\nforged line");
    }
    if (d.message.body == "other") {
      ++other_throws;
      throw 42;
    }
    return ack(d);
  });
  ASSERT_TRUE(sub.ok()) << sub.status().ToString();
  std::vector<Message> msgs = {Message{type, "throws-std", "std"}, Message{type, "throws-other", "other"}};
  for (Message& m : Numbered(type, 20)) msgs.push_back(std::move(m));
  ASSERT_TRUE(bus->Publish(msgs).ok());
  std::vector<DeadLetter> dead;
  ASSERT_TRUE(WaitFor([&] {
    auto list = bus->ListDeadLetters(group);
    if (list.ok()) dead = list.value();
    return dead.size() == 2 && got.size() == 20;
  })) << dead.size() << " dead letters, " << got.size() << " delivered";
  std::map<std::string, DeadLetter> by_id;
  for (DeadLetter& d : dead) by_id[d.id] = d;
  ASSERT_EQ(by_id.count("throws-std"), 1u);
  ASSERT_EQ(by_id.count("throws-other"), 1u);
  // Escaped: the reason is one line, whatever the exception said.
  EXPECT_EQ(by_id["throws-std"].reason, "handler threw: boom\\nforged line");
  EXPECT_EQ(by_id["throws-std"].body, "std");
  EXPECT_EQ(by_id["throws-other"].reason, "handler threw a non-std exception");
  std::this_thread::sleep_for(1500ms);  // a retry would come back by now
  EXPECT_EQ(std_throws.load(), 1);
  EXPECT_EQ(other_throws.load(), 1);
}

// On MQTT a zero-length retained publish deletes; the dead letter of an empty
// body must still be stored and listed, and replay gives back the empty body.
TEST_P(BusConformance, TheDeadLetterOfAnEmptyBodyIsListedAndReplayedEmpty) {
  auto bus = Open(GetParam());
  ASSERT_TRUE(bus);
  const std::string type = TestType("empty"), group = Unique("g");
  std::atomic<int> deliveries{0};
  std::mutex mu;
  std::vector<std::string> bodies;
  auto sub = bus->Subscribe({group, {type}, 1}, [&](const Delivery& d) {
    std::lock_guard<std::mutex> l(mu);
    bodies.push_back(d.message.body);
    return ++deliveries == 1 ? Verdict::DeadLetter("malformed JSON: empty body") : Verdict::Ack();
  });
  ASSERT_TRUE(sub.ok());
  ASSERT_TRUE(bus->Publish(Message{type, "empty-1", ""}).ok());
  std::vector<DeadLetter> dead;
  ASSERT_TRUE(WaitFor([&] {
    auto list = bus->ListDeadLetters(group);
    if (list.ok()) dead = list.value();
    return dead.size() == 1;
  }));
  EXPECT_EQ(dead[0].body, "");
  EXPECT_EQ(dead[0].reason, "malformed JSON: empty body");
  auto replayed = bus->ReplayDeadLetters(group, "");
  ASSERT_TRUE(replayed.ok()) << replayed.status().ToString();
  EXPECT_EQ(replayed.value(), 1);
  ASSERT_TRUE(WaitFor([&] { return deliveries.load() == 2; }));
  std::lock_guard<std::mutex> l(mu);
  EXPECT_EQ(bodies, (std::vector<std::string>{"", ""}));
}

// A group name becomes a queue name and an MQTT topic level.
TEST_P(BusConformance, RefusesGroupNamesOutsideTheSafeCharset) {
  auto bus = Open(GetParam());
  ASSERT_TRUE(bus);
  const std::string type = TestType("badgroup");
  for (const std::string& bad : {std::string("a/b"), std::string("g#"), std::string("g+"),
                                std::string("g\nx"), std::string("$share"), std::string("")}) {
    SCOPED_TRACE(bad);
    auto sub = bus->Subscribe({bad, {type}, 1}, [](const Delivery&) { return Verdict::Ack(); });
    ASSERT_FALSE(sub.ok());
    EXPECT_EQ(sub.status().code(), StatusCode::kInvalidArgument);
    EXPECT_EQ(sub.status().message().rfind("group", 0), 0u) << sub.status().message();
    EXPECT_FALSE(bus->DeclareGroup(bad, {type}).ok());
  }
}

TEST_P(BusConformance, PurgeEmptiesTheDeadLetters) {
  auto bus = Open(GetParam());
  ASSERT_TRUE(bus);
  const std::string type = TestType("purge"), group = Unique("g");
  auto sub = bus->Subscribe({group, {type}, 1},
                            [](const Delivery&) { return Verdict::DeadLetter("always"); });
  ASSERT_TRUE(sub.ok());
  ASSERT_TRUE(bus->Publish(Numbered(type, 3)).ok());
  ASSERT_TRUE(WaitFor([&] {
    auto list = bus->ListDeadLetters(group);
    return list.ok() && list->size() == 3;
  }));
  auto purged = bus->PurgeDeadLetters(group);
  ASSERT_TRUE(purged.ok());
  EXPECT_EQ(purged.value(), 3);
  auto list = bus->ListDeadLetters(group);
  ASSERT_TRUE(list.ok());
  EXPECT_TRUE(list->empty());
}

TEST_P(BusConformance, DeclaredGroupKeepsEventsPublishedBeforeItsConsumersStart) {
  auto bus = Open(GetParam());
  ASSERT_TRUE(bus);
  const std::string type = TestType("declared"), group = Unique("g");
  ASSERT_TRUE(bus->DeclareGroup(group, {type}).ok());
  ASSERT_TRUE(bus->Publish(Numbered(type, 5)).ok());

  int64_t depth = -1;
  EXPECT_TRUE(WaitFor([&] {
    auto stats = bus->Stats(group);
    if (!stats.ok() || stats->empty()) return false;
    for (auto& s : stats.value())
      if (s.type == type) depth = s.depth;
    return depth == 5;
  })) << "depth seen: " << depth;

  Received got;
  auto sub = bus->Subscribe({group, {type}, 1}, got.Acking());
  ASSERT_TRUE(sub.ok());
  EXPECT_TRUE(WaitFor([&] { return got.size() == 5; }));
}

TEST_P(BusConformance, StatsCountConsumersAndDeadLetters) {
  auto bus = Open(GetParam());
  ASSERT_TRUE(bus);
  const std::string type = TestType("stats"), group = Unique("g");
  auto sub = bus->Subscribe({group, {type}, 2},
                            [](const Delivery&) { return Verdict::DeadLetter("nope"); });
  ASSERT_TRUE(sub.ok());
  ASSERT_TRUE(bus->Publish(Numbered(type, 4)).ok());
  QueueStats seen;
  EXPECT_TRUE(WaitFor([&] {
    auto stats = bus->Stats(group);
    if (!stats.ok()) return false;
    for (auto& s : stats.value())
      if (s.type == type) seen = s;
    return seen.dead_letters == 4 && seen.depth == 0;
  })) << "dead letters " << seen.dead_letters << ", depth " << seen.depth;
  EXPECT_GE(seen.consumers, 1);
  EXPECT_EQ(seen.group, group);
  EXPECT_FALSE(seen.queue.empty());
}

TEST_P(BusConformance, UnacknowledgedEventsSurviveTheirConsumer) {
  auto bus = Open(GetParam());
  ASSERT_TRUE(bus);
  const std::string type = TestType("survive"), group = Unique("g");
  ASSERT_TRUE(bus->DeclareGroup(group, {type}).ok());
  std::atomic<int> started{0};
  std::atomic<bool> release{false};
  {
    // A consumer that stops while holding a delivery: it retries it, as a worker
    // that is shut down mid-chunk hands its chunk back.
    auto sub = bus->Subscribe({group, {type}, 1}, [&](const Delivery&) {
      ++started;
      while (!release) std::this_thread::sleep_for(5ms);
      return Verdict::Retry(0ms, "shutting down");
    });
    ASSERT_TRUE(sub.ok());
    ASSERT_TRUE(bus->Publish(Numbered(type, 3)).ok());
    ASSERT_TRUE(WaitFor([&] { return started.load() >= 1; }));
    release = true;
  }
  Received got;
  auto sub = bus->Subscribe({group, {type}, 1}, got.Acking());
  ASSERT_TRUE(sub.ok());
  EXPECT_TRUE(WaitFor([&] { return got.size() == 3; })) << got.size();
}

// What Capabilities() says is what the adapter does: with delayed_retry a
// delivery waiting out its retry delay leaves its handler slot to the next one.
TEST_P(BusConformance, ARetryDelayHoldsTheHandlerSlotOnlyWithoutDelayedRetry) {
  auto bus = Open(GetParam());
  ASSERT_TRUE(bus);
  const std::string type = TestType("delay"), group = Unique("g");
  ASSERT_TRUE(bus->DeclareGroup(group, {type}).ok());
  using Clock = std::chrono::steady_clock;
  std::mutex mu;
  std::optional<Clock::time_point> second_at;
  auto sub = bus->Subscribe({group, {type}, 1}, [&](const Delivery& d) {
    if (d.message.id == "first" && d.attempt == 1) return Verdict::Retry(1500ms, "later");
    std::lock_guard<std::mutex> l(mu);
    if (d.message.id == "second" && !second_at) second_at = Clock::now();
    return Verdict::Ack();
  });
  ASSERT_TRUE(sub.ok());
  const auto published = Clock::now();
  ASSERT_TRUE(bus->Publish({Message{type, "first", "{}"}, Message{type, "second", "{}"}}).ok());
  ASSERT_TRUE(WaitFor([&] {
    std::lock_guard<std::mutex> l(mu);
    return second_at.has_value();
  }));
  const auto waited = *second_at - published;
  if (bus->Capabilities().delayed_retry)
    EXPECT_LT(waited, 1000ms) << "the delay held the only handler slot";
  else
    EXPECT_GE(waited, 1400ms) << "the bus says a delay holds the slot, but the next one ran";
}

// With counts_all_consumers, Stats sees the consumers of another connection
// (another process); without, it must not pretend to.
TEST_P(BusConformance, StatsCountOtherConnectionsConsumersOnlyWhereTheBusSaysSo) {
  auto bus = Open(GetParam());
  auto other = Open(GetParam());
  ASSERT_TRUE(bus && other);
  const std::string type = TestType("consumers"), group = Unique("g");
  ASSERT_TRUE(bus->DeclareGroup(group, {type}).ok());
  Received got;
  auto sub = other->Subscribe({group, {type}, 1}, got.Acking());
  ASSERT_TRUE(sub.ok());
  auto consumers = [&] {
    auto stats = bus->Stats(group);
    if (!stats.ok()) return int64_t{-1};
    for (auto& s : stats.value())
      if (s.type == type) return s.consumers;
    return int64_t{-1};
  };
  if (bus->Capabilities().counts_all_consumers) {
    EXPECT_TRUE(WaitFor([&] { return consumers() == 1; }, 10s)) << consumers();
  } else {
    std::this_thread::sleep_for(1s);
    EXPECT_EQ(consumers(), 0);
  }
}

}  // namespace
}  // namespace fanflow

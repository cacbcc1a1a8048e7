// The MQTT adapter against real Mosquitto brokers: backlogs, the publish window,
// broker restarts, Mosquitto's queue limit and the consumer sessions.
#include <gtest/gtest.h>

#include <atomic>
#include <chrono>
#include <filesystem>
#include <fstream>
#include <iostream>
#include <mutex>
#include <random>
#include <set>
#include <thread>

#include <netinet/in.h>
#include <netinet/tcp.h>
#include <sys/socket.h>
#include <sys/syscall.h>

#include "adapters/mqtt/mqtt_paho_threads.h"
#include "adapters/mqtt/mqtt_sockets.h"
#include "core/bus.h"
#include "core/bus_url.h"
#include "tests/mqtt/mqtt_test_env.h"
#include "tests/mqtt/scratch_broker.h"
#include "tests/support/publish_first.h"

namespace fanflow {
namespace {

using namespace std::chrono_literals;
using mqtt::test::ScratchBroker;

std::string Unique(const std::string& stem) {
  static std::mt19937_64 rng(std::random_device{}());
  return stem + "_" + std::to_string(rng() % 1000000000);
}

std::unique_ptr<EventBus> Open(const std::string& url) {
  auto bus = OpenBus(url);
  EXPECT_TRUE(bus.ok()) << bus.status().ToString();
  return bus.ok() ? std::move(bus).value() : nullptr;
}

std::vector<Message> Batch(const std::string& type, int from, int n) {
  std::vector<Message> out;
  for (int i = from; i < from + n; ++i)
    out.push_back(Message{type, std::to_string(i), "{\"n\":" + std::to_string(i) + "}"});
  return out;
}

template <typename Pred>
bool WaitFor(Pred done, std::chrono::milliseconds limit) {
  auto deadline = std::chrono::steady_clock::now() + limit;
  while (!done()) {
    if (std::chrono::steady_clock::now() > deadline) return false;
    std::this_thread::sleep_for(20ms);
  }
  return true;
}

// Distinct message ids a handler saw, plus the total number of deliveries.
struct Seen {
  std::mutex mu;
  std::set<std::string> ids;
  int64_t deliveries = 0;
  size_t distinct() {
    std::lock_guard<std::mutex> l(mu);
    return ids.size();
  }
  Handler Acking(std::chrono::microseconds work = 0us) {
    return [this, work](const Delivery& d) {
      if (work.count()) std::this_thread::sleep_for(work);
      std::lock_guard<std::mutex> l(mu);
      ids.insert(d.message.id);
      ++deliveries;
      return Verdict::Ack();
    };
  }
};

QueueStats StatsOf(EventBus& bus, const std::string& group, const std::string& type) {
  auto stats = bus.Stats(group);
  EXPECT_TRUE(stats.ok()) << stats.status().ToString();
  if (stats.ok())
    for (auto& s : stats.value())
      if (s.type == type) return s;
  return {};
}

// Publishes `total` messages in batches while a consumer with `work` per
// message drains them; returns the largest backlog Stats showed on the way.
int64_t RunBacklog(EventBus& bus, const std::string& type, const std::string& group, int total,
                   std::chrono::microseconds work, Seen& seen) {
  auto sub = bus.Subscribe({group, {type}, 2}, seen.Acking(work));
  EXPECT_TRUE(sub.ok()) << sub.status().ToString();
  int64_t peak = 0;
  for (int i = 0; i < total; i += 1000) {
    EXPECT_TRUE(bus.Publish(Batch(type, i, 1000)).ok());
    peak = std::max(peak, StatsOf(bus, group, type).depth);
  }
  EXPECT_TRUE(WaitFor([&] { return seen.distinct() == static_cast<size_t>(total); }, 180s))
      << seen.distinct() << " of " << total;
  std::cout << "largest backlog seen: " << peak << " of " << total << " messages, " << seen.deliveries
            << " deliveries\n";
  return peak;
}

TEST(MqttBus, ABacklogOf20000WaitingForASlowConsumerLosesNone) {
  FANFLOW_REQUIRE_ENV("FANFLOW_TEST_MQTT_URL", url);
  auto bus = Open(url);
  ASSERT_TRUE(bus);
  const std::string type = "fanflow." + Unique("backlog") + ".v1", group = Unique("slow");
  const int64_t dropped_before = StatsOf(*bus, group, type).dropped;
  Seen seen;
  int64_t peak = RunBacklog(*bus, type, group, 20000, 1000us, seen);
  EXPECT_GT(peak, 1000) << "the consumer was not slower than the producer: no backlog to test";
  EXPECT_EQ(StatsOf(*bus, group, type).dropped, dropped_before);
}

// Verdict::AckAfterPublishing on MQTT: the handler returns at once, what it
// names is published once, and the delivery is not handled again.
TEST(MqttBus, AckAfterPublishingPublishesOnceWithoutHandlingTheDeliveryAgain) {
  FANFLOW_REQUIRE_ENV("FANFLOW_TEST_MQTT_URL", url);
  auto bus = Open(url);
  ASSERT_TRUE(bus);
  ASSERT_TRUE(bus->Capabilities().publish_then_ack);
  const std::string in = "fanflow." + Unique("in") + ".v1", out = "fanflow." + Unique("out") + ".v1";
  Seen answers;
  auto listener = bus->Subscribe({Unique("answers"), {out}, 1}, answers.Acking());
  ASSERT_TRUE(listener.ok()) << listener.status().ToString();
  std::atomic<int> handled{0};
  auto sub = bus->Subscribe({Unique("g"), {in}, 2}, [&](const Delivery& d) {
    ++handled;
    return Verdict::AckAfterPublishing({Message{out, d.message.id + "/answer", d.message.body}});
  });
  ASSERT_TRUE(sub.ok()) << sub.status().ToString();
  ASSERT_TRUE(bus->Publish(Batch(in, 0, 50)).ok());
  EXPECT_TRUE(WaitFor([&] { return answers.distinct() == 50; }, 20s)) << answers.distinct();
  std::this_thread::sleep_for(300ms);  // nothing may be handled or published twice
  EXPECT_EQ(handled.load(), 50);
  std::lock_guard<std::mutex> l(answers.mu);
  EXPECT_EQ(answers.deliveries, 50);
}

// What a delivery publishes first cannot be published (a topic with a wildcard,
// which paho refuses): paho acked the delivery on receipt, so the subscription
// hands it to a handler again, after the settle backoff.
TEST(MqttBus, AckAfterPublishingHandlesTheDeliveryAgainWhenThePublishFails) {
  FANFLOW_REQUIRE_ENV("FANFLOW_TEST_MQTT_URL", url);
  auto bus = Open(url);
  ASSERT_TRUE(bus);
  auto again = test::HandledAgainAfterAFailedPublish(*bus, Unique("g"), "fanflow." + Unique("in") + ".v1",
                                                     Message{"fanflow.bad#topic.v1", "refused", "{}"});
  ASSERT_TRUE(again);
  EXPECT_GE(again->after, 900ms);
  EXPECT_LT(again->after, 3s) << "the second handling waited past its backoff";
}

TEST(MqttBus, ABacklogOf20000QueuedBeforeTheConsumerStartsLosesNone) {
  FANFLOW_REQUIRE_ENV("FANFLOW_TEST_MQTT_URL", url);
  auto bus = Open(url);
  ASSERT_TRUE(bus);
  const std::string type = "fanflow." + Unique("queued") + ".v1", group = Unique("late");
  ASSERT_TRUE(bus->DeclareGroup(group, {type}).ok());
  for (int i = 0; i < 20000; i += 1000) ASSERT_TRUE(bus->Publish(Batch(type, i, 1000)).ok());
  EXPECT_EQ(StatsOf(*bus, group, type).depth, 20000);
  Seen seen;
  auto sub = bus->Subscribe({group, {type}, 4}, seen.Acking());
  ASSERT_TRUE(sub.ok());
  EXPECT_TRUE(WaitFor([&] { return seen.distinct() == 20000; }, 120s)) << seen.distinct();
}

// Mosquitto drops QoS 1 messages past max_queued_messages (1000 by default). A
// live consumer takes messages off the broker as they come, so nothing queues
// there even when the handlers are far behind.
TEST(MqttBus, ALiveSlowConsumerLosesNothingUnderMosquittosDefaultQueueLimit) {
  FANFLOW_REQUIRE_ENV("FANFLOW_TEST_MQTT_URL", shared_url);
  ScratchBroker broker("max_queued_messages 1000");
  ASSERT_TRUE(broker.Start());
  auto bus = Open(broker.url());
  ASSERT_TRUE(bus);
  const std::string type = "fanflow." + Unique("limit") + ".v1", group = Unique("slow");
  Seen seen;
  int64_t peak = RunBacklog(*bus, type, group, 20000, 1000us, seen);
  EXPECT_GT(peak, 1000) << "no backlog beyond the broker's limit was built";
  EXPECT_EQ(StatsOf(*bus, group, type).dropped, 0);
}

TEST(MqttBus, MessagesTheBrokerDropsShowInStats) {
  FANFLOW_REQUIRE_ENV("FANFLOW_TEST_MQTT_URL", shared_url);
  // $SYS every second (the stock sys_interval is 10 s).
  ScratchBroker broker("max_queued_messages 100", mqtt::test::BrokerConfig::kTuned);
  ASSERT_TRUE(broker.Start());
  auto bus = Open(broker.url());
  ASSERT_TRUE(bus);
  const std::string type = "fanflow." + Unique("drop") + ".v1", group = Unique("offline");
  ASSERT_TRUE(bus->DeclareGroup(group, {type}).ok());  // a session nobody reads yet
  ASSERT_TRUE(bus->Publish(Batch(type, 0, 300)).ok());
  QueueStats s;
  EXPECT_TRUE(WaitFor([&] { return (s = StatsOf(*bus, group, type)).dropped >= 200; }, 10s))
      << "dropped " << s.dropped;  // $SYS is refreshed every second
  EXPECT_LE(s.depth, 100);
}

TEST(MqttBus, PublishKeepsABoundedWindowUnderLoad) {
  FANFLOW_REQUIRE_ENV("FANFLOW_TEST_MQTT_URL", url);
  // A window of 50 gives paho a buffer of 200: eight publishers of 5000 at once
  // would overflow it (error -12) without the window.
  auto bus = Open(url + "?window=50");
  ASSERT_TRUE(bus);
  const std::string type = "fanflow." + Unique("window") + ".v1", group = Unique("g");
  Seen seen;
  auto sub = bus->Subscribe({group, {type}, 4}, seen.Acking());
  ASSERT_TRUE(sub.ok());
  std::vector<std::thread> publishers;
  std::atomic<int> failures{0};
  for (int t = 0; t < 8; ++t)
    publishers.emplace_back([&, t] {
      Status s = bus->Publish(Batch(type, t * 5000, 5000));
      if (!s.ok()) {
        ++failures;
        ADD_FAILURE() << s.ToString();
      }
    });
  for (auto& t : publishers) t.join();
  EXPECT_EQ(failures.load(), 0);
  EXPECT_TRUE(WaitFor([&] { return seen.distinct() == 40000; }, 120s)) << seen.distinct();
}

// A broker with Nagle's algorithm on (Mosquitto's stock set_tcp_nodelay false)
// stalls QoS 1 round trips unless the client acknowledges at once and sends
// its own PUBACKs at once (adapters/mqtt/mqtt_sockets.h): every connection the
// bus opens, the publisher's and each consumer's, has TCP_NODELAY set.
TEST(MqttBus, EveryConnectionTheBusOpensSendsWithoutNagleDelay) {
  FANFLOW_REQUIRE_ENV("FANFLOW_TEST_MQTT_URL", url);
  auto parsed = ParseBusUrl(url);
  ASSERT_TRUE(parsed.ok());
  const auto before = mqtt::SocketsTo(parsed->host, parsed->port);
  auto bus = Open(url);
  ASSERT_TRUE(bus);
  Seen seen;
  auto sub = bus->Subscribe({Unique("g"), {"fanflow." + Unique("nodelay") + ".v1"}, 1}, seen.Acking());
  ASSERT_TRUE(sub.ok()) << sub.status().ToString();
  const auto opened = mqtt::SocketsAddedTo(parsed->host, parsed->port, before);
  EXPECT_GE(opened.size(), 2u) << "the publisher's and the consumer's connection";
  for (const auto& [fd, inode] : opened) {
    int on = 0;
    socklen_t len = sizeof on;
    ASSERT_EQ(getsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &on, &len), 0);
    EXPECT_EQ(on, 1) << "socket " << fd;
  }
}

// The threads of this process whose name starts with `prefix` (paho names
// its network threads MQTTAsync_send and MQTTAsync_rcv).
int ThreadsNamed(const std::string& prefix) {
  int n = 0;
  for (const auto& task : std::filesystem::directory_iterator("/proc/self/task")) {
    std::ifstream comm(task.path() / "comm");
    std::string name;
    if (std::getline(comm, name) && name.rfind(prefix, 0) == 0) ++n;
  }
  return n;
}

// paho stops its network threads when the last client of a process goes,
// sleeping in steps of 100 ms until they are gone, and the next connection
// waits out a fresh receive thread's idle sleep: a `submit --wait` spent 200 ms
// of its 300 ms on that. The bus keeps them running for the life of the process.
TEST(MqttBus, ClosingTheLastBusLeavesPahosNetworkThreadsRunning) {
  FANFLOW_REQUIRE_ENV("FANFLOW_TEST_MQTT_URL", url);
  for (int round = 0; round < 2; ++round) {
    auto bus = Open(url);
    ASSERT_TRUE(bus);
    Seen seen;
    auto sub = bus->Subscribe({Unique("g"), {"fanflow." + Unique("threads") + ".v1"}, 1}, seen.Acking());
    ASSERT_TRUE(sub.ok()) << sub.status().ToString();
    sub.value().reset();
    bus.reset();
    EXPECT_EQ(ThreadsNamed("MQTTAsync_rcv"), 1) << "round " << round;
    EXPECT_EQ(ThreadsNamed("MQTTAsync_send"), 1) << "round " << round;
  }
}

// The /proc/self/task directory of paho's receive thread ("" when none).
std::string ReceiveThreadTask() {
  for (const auto& task : std::filesystem::directory_iterator("/proc/self/task")) {
    std::ifstream comm(task.path() / "comm");
    std::string name;
    if (std::getline(comm, name) && name == "MQTTAsync_rcv") return task.path().string();
  }
  return "";
}

// A number from the thread's status file ("voluntary_ctxt_switches:" say).
long StatusField(const std::string& task, const std::string& field) {
  std::ifstream status(task + "/status");
  for (std::string line; std::getline(status, line);)
    if (line.rfind(field, 0) == 0) return std::stol(line.substr(field.size()));
  return -1;
}

bool InSleepCall(const std::string& task) {
  std::ifstream call(task + "/syscall");
  long number = -1;
  return (call >> number) && (number == SYS_clock_nanosleep || number == SYS_nanosleep);
}

// With no connection, paho's receive thread sleeps 100 ms a turn, and the
// first connect of a process waited out the turn just begun: 100 ms of a
// 145 ms `fanflow submit`. Each wake ends a sleep, so the thread goes back to
// sleep (a voluntary context switch) once per wake, not once per 100 ms.
TEST(MqttBus, AWakeEndsThePahoReceiveThreadsIdleSleep) {
  FANFLOW_REQUIRE_ENV("FANFLOW_TEST_MQTT_URL", url);
  {
    auto bus = Open(url);  // starts paho's threads; closing leaves them with no socket
    ASSERT_TRUE(bus);
  }
  const std::string task = ReceiveThreadTask();
  ASSERT_FALSE(task.empty());
  const long before = StatusField(task, "voluntary_ctxt_switches:");
  int wakes = 0;
  for (int i = 0; i < 20; ++i) {
    for (int spin = 0; spin < 200 && !InSleepCall(task); ++spin) std::this_thread::sleep_for(1ms);
    wakes += InSleepCall(task);
    fanflow::mqtt::WakeSleepingReceiveThread();
    std::this_thread::sleep_for(2ms);
  }
  const long switches = StatusField(task, "voluntary_ctxt_switches:") - before;
  EXPECT_GE(wakes, 15) << "the receive thread was not asleep between wakes";
  // About 60 ms: sleeping out its turns would give at most 1 or 2.
  EXPECT_GE(switches, 10) << wakes << " wakes";
}

// Two losses this found: messages published after the restart but before the
// consumer had subscribed again (Mosquitto 2.0.11 forgets shared subscriptions,
// so it dropped them: RestoreParked now gives every registered group a
// subscriber first), and a publisher that resumed its session and was then cut
// off for a protocol error on every reconnect (it now starts clean).
TEST(MqttBus, AMosquittoRestartMidStreamLosesNothing) {
  FANFLOW_REQUIRE_ENV("FANFLOW_TEST_MQTT_URL", shared_url);
  ScratchBroker broker("", mqtt::test::BrokerConfig::kTuned);  // a restart keeps only what persistence saved
  ASSERT_TRUE(broker.Start());
  auto bus = Open(broker.url() + "?publish_timeout=60");
  ASSERT_TRUE(bus);
  const std::string type = "fanflow." + Unique("restart") + ".v1", group = Unique("g");
  Seen seen;
  auto sub = bus->Subscribe({group, {type}, 4}, seen.Acking(100us));
  ASSERT_TRUE(sub.ok());
  const int total = 20000;
  std::atomic<int> failures{0};
  std::thread producer([&] {
    for (int i = 0; i < total; i += 200)
      if (Status s = bus->Publish(Batch(type, i, 200)); !s.ok()) {
        ++failures;
        ADD_FAILURE() << s.ToString();
      }
  });
  ASSERT_TRUE(WaitFor([&] { return seen.distinct() >= 4000; }, 60s));
  broker.Stop();
  std::this_thread::sleep_for(1s);
  ASSERT_TRUE(broker.Start());
  producer.join();
  EXPECT_EQ(failures.load(), 0);
  EXPECT_TRUE(WaitFor([&] { return seen.distinct() == total; }, 120s)) << seen.distinct() << " of " << total;
}

// Mosquitto 2.0 forgets shared subscriptions over a restart (not the sessions):
// a live bus subscribes a declared group's parked session again before it
// publishes.
TEST(MqttBus, ADeclaredGroupKeepsEventsPublishedAfterABrokerRestart) {
  FANFLOW_REQUIRE_ENV("FANFLOW_TEST_MQTT_URL", shared_url);
  ScratchBroker broker("", mqtt::test::BrokerConfig::kTuned);  // a restart keeps only what persistence saved
  ASSERT_TRUE(broker.Start());
  const std::string type = "fanflow." + Unique("declared") + ".v1", group = Unique("g");
  auto bus = Open(broker.url());
  ASSERT_TRUE(bus);
  ASSERT_TRUE(bus->DeclareGroup(group, {type}).ok());
  broker.Stop();
  ASSERT_TRUE(broker.Start());
  ASSERT_TRUE(bus->Publish(Batch(type, 0, 5)).ok());  // waits for the reconnect
  Seen seen;
  auto sub = bus->Subscribe({group, {type}, 1}, seen.Acking());
  ASSERT_TRUE(sub.ok());
  EXPECT_TRUE(WaitFor([&] { return seen.distinct() == 5; }, 10s)) << seen.distinct();
}

// Mosquitto keeps giving a stopped member of a shared subscription its share;
// the consumer that takes its place (same instance name, free slot) gets it.
TEST(MqttBus, ARestartedConsumerResumesTheMessagesQueuedForIt) {
  FANFLOW_REQUIRE_ENV("FANFLOW_TEST_MQTT_URL", url);
  auto a = Open(url + "?client_id=restart-test");
  ASSERT_TRUE(a);
  const std::string type = "fanflow." + Unique("resume") + ".v1", group = Unique("g");
  Seen seen;
  auto sa = a->Subscribe({group, {type}, 1}, seen.Acking());
  ASSERT_TRUE(sa.ok());
  {
    auto b = Open(url + "?client_id=restart-test");
    ASSERT_TRUE(b);
    auto sb = b->Subscribe({group, {type}, 1}, seen.Acking());
    ASSERT_TRUE(sb.ok());
  }  // b stops: its session stays and keeps getting every other message
  ASSERT_TRUE(a->Publish(Batch(type, 0, 100)).ok());
  EXPECT_TRUE(WaitFor([&] { return seen.distinct() >= 50; }, 10s));
  std::this_thread::sleep_for(300ms);
  EXPECT_LT(seen.distinct(), 100u) << "the stopped session got no share";
  auto b2 = Open(url + "?client_id=restart-test");
  ASSERT_TRUE(b2);
  auto sb2 = b2->Subscribe({group, {type}, 1}, seen.Acking());
  ASSERT_TRUE(sb2.ok());
  EXPECT_TRUE(WaitFor([&] { return seen.distinct() == 100; }, 10s)) << seen.distinct();
}

TEST(MqttBus, BadUrlsAndUnreachableBrokersAreReportedNotThrown) {
  EXPECT_EQ(OpenBus("mqtt://127.0.0.1:1?bogus=1").status().code(), StatusCode::kInvalidArgument);
  EXPECT_EQ(OpenBus("mqtt://127.0.0.1:1?window=0").status().code(), StatusCode::kInvalidArgument);
  EXPECT_EQ(OpenBus("mqtt://127.0.0.1:1?cacert=/x").status().code(), StatusCode::kInvalidArgument);
  auto start = std::chrono::steady_clock::now();
  auto bus = OpenBus("mqtt://127.0.0.1:1?connect_timeout=2");  // nothing listens on port 1
  EXPECT_EQ(bus.status().code(), StatusCode::kUnavailable) << bus.status().ToString();
  EXPECT_LT(std::chrono::steady_clock::now() - start, 10s);
}

TEST(MqttBus, GroupNamesThatWouldBreakTopicsAreRefused) {
  FANFLOW_REQUIRE_ENV("FANFLOW_TEST_MQTT_URL", url);
  auto bus = Open(url);
  ASSERT_TRUE(bus);
  for (std::string bad : {"a/b", "a+", "#", ""}) {
    auto sub = bus->Subscribe({bad, {"fanflow.x.v1"}, 1}, [](const Delivery&) { return Verdict::Ack(); });
    EXPECT_EQ(sub.status().code(), StatusCode::kInvalidArgument) << bad;
  }
}

}  // namespace
}  // namespace fanflow

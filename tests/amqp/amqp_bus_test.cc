// What the RabbitMQ adapter promises beyond the conformance suite: the confirm
// window under load, broker refusals surfacing as errors, queue settings
// (mismatch, retention, expiry, quorum, ephemeral), stats, TLS.
#include <arpa/inet.h>
#include <gtest/gtest.h>
#include <netinet/in.h>
#include <sys/socket.h>
#include <unistd.h>

#include <atomic>

#include "core/routes.h"
#include "tests/amqp/amqp_test_env.h"
#include "tests/support/publish_first.h"

namespace fanflow::amqp::testing {
namespace {

std::vector<Message> Numbered(const std::string& type, int n, int from = 0) {
  std::vector<Message> out;
  for (int i = from; i < from + n; ++i)
    out.push_back(
        Message{type, type + "-" + std::to_string(i), "{\"n\":" + std::to_string(i) + "}"});
  return out;
}

std::optional<QueueStats> StatsOf(EventBus& bus, const std::string& group,
                                  const std::string& type) {
  auto stats = bus.Stats(group);
  if (!stats.ok()) return std::nullopt;
  for (auto& s : stats.value())
    if (s.type == type) return s;
  return std::nullopt;
}

TEST(AmqpBusTest, PublishesTwentyThousandThroughTheConfirmWindowAndDeliversEveryOne) {
  auto bus = MustOpen(AmqpUrl());
  ASSERT_TRUE(bus);
  const std::string type = UniqueType("load"), group = Unique("g");
  Received got;
  auto sub = bus->Subscribe({group, {type}, 8}, got.Acking());
  ASSERT_TRUE(sub.ok()) << sub.status().ToString();
  // Two concurrent publishers share the window.
  auto started = std::chrono::steady_clock::now();
  std::thread other([&] { EXPECT_TRUE(bus->Publish(Numbered(type, 10000, 10000)).ok()); });
  Status s = bus->Publish(Numbered(type, 10000));
  other.join();
  ASSERT_TRUE(s.ok()) << s.ToString();
  double publish_s =
      std::chrono::duration<double>(std::chrono::steady_clock::now() - started).count();
  EXPECT_TRUE(WaitFor([&] { return got.unique() == 20000; }, 120s)) << got.unique();
  double all_s = std::chrono::duration<double>(std::chrono::steady_clock::now() - started).count();
  RecordProperty("publish_msgs_per_s", static_cast<int>(20000 / publish_s));
  RecordProperty("end_to_end_msgs_per_s", static_cast<int>(20000 / all_s));
  std::printf(
      "20000 persistent messages: confirmed in %.2f s (%.0f msg/s), all consumed after %.2f s\n",
      publish_s, 20000 / publish_s, all_s);
}

TEST(AmqpBusTest, AFullQueueWithRejectPublishMakesPublishFail) {
  const std::string type = UniqueType("full"), group = Unique("g");
  auto bus = MustOpen(AmqpUrlWith(group + ".max_length=2"));  // a per-group override
  ASSERT_TRUE(bus);
  ASSERT_TRUE(bus->DeclareGroup(group, {type}).ok());
  ASSERT_TRUE(bus->Publish(Numbered(type, 2)).ok());
  Status s = bus->Publish(Message{type, "one-too-many", "{}"});
  EXPECT_EQ(s.code(), StatusCode::kRejected) << s.ToString();
  EXPECT_NE(s.message().find("one-too-many"), std::string::npos) << s.message();
  auto st = StatsOf(*bus, group, type);
  ASSERT_TRUE(st);
  EXPECT_EQ(st->depth, 2);
}

// Verdict::AckAfterPublishing: the handler returns at once; the delivery is
// acknowledged once what it publishes is confirmed, so nothing comes back.
TEST(AmqpBusTest, AckAfterPublishingDeliversTheMessageAndAcksTheDeliveryOnce) {
  auto bus = MustOpen(AmqpUrl());
  ASSERT_TRUE(bus);
  ASSERT_TRUE(bus->Capabilities().publish_then_ack);
  const std::string in = UniqueType("in"), out = UniqueType("out"), group = Unique("g");
  Received answers;
  auto listener = bus->Subscribe({Unique("answers"), {out}, 1}, answers.Acking());
  ASSERT_TRUE(listener.ok()) << listener.status().ToString();
  std::atomic<int> handled{0};
  auto sub = bus->Subscribe({group, {in}, 2}, [&](const Delivery& d) {
    ++handled;
    return Verdict::AckAfterPublishing({Message{out, d.message.id + "/answer", d.message.body}});
  });
  ASSERT_TRUE(sub.ok()) << sub.status().ToString();
  ASSERT_TRUE(bus->Publish(Numbered(in, 50)).ok());
  EXPECT_TRUE(WaitFor([&] { return answers.unique() == 50; })) << answers.unique();
  // Closing hands back what was not acknowledged: nothing may be left.
  sub.value().reset();
  auto st = StatsOf(*bus, group, in);
  ASSERT_TRUE(st);
  EXPECT_EQ(st->depth, 0) << "deliveries were not acknowledged after their publish was confirmed";
  EXPECT_EQ(handled.load(), 50);
  EXPECT_EQ(answers.total(), 50u);
}

// What a delivery publishes first is refused (a full queue): the delivery is
// not acknowledged but handed out again, no sooner than the republish backoff.
TEST(AmqpBusTest, AckAfterPublishingHandsTheDeliveryOutAgainWhenThePublishIsRefused) {
  const std::string in = UniqueType("in"), out = UniqueType("out"), full = Unique("full");
  auto bus = MustOpen(AmqpUrlWith(full + ".max_length=1"));
  ASSERT_TRUE(bus);
  ASSERT_TRUE(bus->DeclareGroup(full, {out}).ok());
  ASSERT_TRUE(bus->Publish(Message{out, "filler", "{}"}).ok());
  auto again = test::HandledAgainAfterAFailedPublish(*bus, Unique("g"), in, Message{out, "refused", "{}"});
  ASSERT_TRUE(again);
  EXPECT_TRUE(again->redelivered) << "the second delivery should be a redelivery";
  EXPECT_GE(again->after, 900ms);
  EXPECT_LT(again->after, 3s) << "the requeue waited past its backoff";
  auto st = StatsOf(*bus, full, out);
  ASSERT_TRUE(st);
  EXPECT_EQ(st->depth, 1) << "the refused message must not be in the full queue";
}

TEST(AmqpBusTest, AMessageNobodyIsBoundForIsAcceptedAndDropped) {
  auto bus = MustOpen(AmqpUrl());
  ASSERT_TRUE(bus);
  EXPECT_TRUE(bus->Publish(Numbered(UniqueType("nobody"), 10)).ok());
}

TEST(AmqpBusTest, AQueueDeclaredWithOtherArgumentsGivesAClearError) {
  const std::string type = UniqueType("mismatch"), group = Unique("g");
  auto first = MustOpen(AmqpUrlWith("message_ttl_ms=60000"));
  auto second = MustOpen(AmqpUrlWith("message_ttl_ms=120000"));
  ASSERT_TRUE(first && second);
  ASSERT_TRUE(first->DeclareGroup(group, {type}).ok());
  Status s = second->DeclareGroup(group, {type});
  EXPECT_EQ(s.code(), StatusCode::kInvalidArgument) << s.ToString();
  EXPECT_NE(s.message().find("'" + routes::AmqpQueue(group, type) + "'"), std::string::npos)
      << s.message();
  EXPECT_NE(s.message().find("x-message-ttl"), std::string::npos) << s.message();
  EXPECT_NE(s.message().find("message_ttl_ms"), std::string::npos) << s.message();
  auto sub = second->Subscribe({group, {type}, 1}, [](const Delivery&) { return Verdict::Ack(); });
  EXPECT_EQ(sub.status().code(), StatusCode::kInvalidArgument) << sub.status().ToString();
  // The same settings again are fine: declaring is idempotent.
  EXPECT_TRUE(first->DeclareGroup(group, {type}).ok());
}

TEST(AmqpBusTest, RefusesDeadLetterRetentionShorterThanTheQueues) {
  auto shorter = OpenBus(AmqpUrlWith("message_ttl_ms=60000&dlq_ttl_ms=30000"));
  EXPECT_EQ(shorter.status().code(), StatusCode::kInvalidArgument);
  EXPECT_NE(shorter.status().message().find("dlq_ttl_ms=30000: dead-letter retention 30 s is not "
                                            "longer than the source queue's retention 60 s"),
            std::string::npos)
      << shorter.status().message();
  auto forever = OpenBus(AmqpUrlWith("dlq_ttl_ms=30000"));
  EXPECT_EQ(forever.status().code(), StatusCode::kInvalidArgument) << forever.status().ToString();
  auto per_group = OpenBus(AmqpUrlWith("message_ttl_ms=60000&workers.dlq_ttl_ms=1000"));
  EXPECT_NE(per_group.status().message().find("group 'workers'"), std::string::npos)
      << per_group.status().ToString();
  EXPECT_TRUE(OpenBus(AmqpUrlWith("message_ttl_ms=60000&dlq_ttl_ms=120000")).ok());
  auto typo = OpenBus(AmqpUrlWith("queue_tyep=quorum"));
  EXPECT_NE(typo.status().message().find("unknown parameter 'queue_tyep'"), std::string::npos)
      << typo.status().ToString();
}

TEST(AmqpBusTest, RetryWaitsAtLeastItsDelay) {
  auto bus = MustOpen(AmqpUrl());
  ASSERT_TRUE(bus);
  const std::string type = UniqueType("delay");
  std::mutex mu;
  std::vector<std::chrono::steady_clock::time_point> seen;
  auto sub = bus->Subscribe({Unique("g"), {type}, 2}, [&](const Delivery& d) {
    std::lock_guard<std::mutex> lock(mu);
    seen.push_back(std::chrono::steady_clock::now());
    return d.attempt == 1 ? Verdict::Retry(400ms, "later") : Verdict::Ack();
  });
  ASSERT_TRUE(sub.ok());
  ASSERT_TRUE(bus->Publish(Message{type, "d1", "{}"}).ok());
  ASSERT_TRUE(WaitFor([&] {
    std::lock_guard<std::mutex> lock(mu);
    return seen.size() == 2;
  }));
  EXPECT_GE(seen[1] - seen[0], 400ms);
}

// Quorum queues too: BusCapabilities::message_ttl holds for both (RabbitMQ 3.10
// quorum queues take x-message-ttl), and a cluster URL makes queues quorum.
TEST(AmqpBusTest, ExpiredMessagesLandInTheDeadLetterQueueWithTheBrokersReason) {
  for (const std::string queue_type : {"classic", "quorum"}) {
    SCOPED_TRACE(queue_type);
    const std::string type = UniqueType("expire"), group = Unique("g");
    auto bus = MustOpen(AmqpUrlWith(group + ".message_ttl_ms=100&" + group +
                                    ".dlq_ttl_ms=600000&queue_type=" + queue_type));
    ASSERT_TRUE(bus);
    ASSERT_TRUE(bus->DeclareGroup(group, {type}).ok());
    ASSERT_TRUE(bus->Publish(Numbered(type, 2)).ok());
    std::vector<DeadLetter> dead;
    ASSERT_TRUE(WaitFor([&] {
      auto list = bus->ListDeadLetters(group);
      if (list.ok()) dead = list.value();
      return dead.size() == 2;
    })) << dead.size();
    for (const auto& d : dead) {
      EXPECT_NE(d.reason.find("expired"), std::string::npos) << d.reason;
      EXPECT_NE(d.reason.find(routes::AmqpQueue(group, type)), std::string::npos) << d.reason;
      EXPECT_EQ(d.attempts, 1);
      EXPECT_FALSE(d.time.empty());
      EXPECT_EQ(d.id.rfind(type + "-", 0), 0u) << d.id;
    }
  }
}

TEST(AmqpBusTest, ReplayByIdSendsBackOnlyThatOne) {
  auto bus = MustOpen(AmqpUrl());
  ASSERT_TRUE(bus);
  const std::string type = UniqueType("replay"), group = Unique("g");
  std::atomic<bool> accept{false};
  Received after;
  Handler acking = after.Acking();
  auto sub = bus->Subscribe({group, {type}, 1}, [&](const Delivery& d) {
    return accept ? acking(d) : Verdict::DeadLetter("not yet");
  });
  ASSERT_TRUE(sub.ok());
  ASSERT_TRUE(bus->Publish(Numbered(type, 3)).ok());
  ASSERT_TRUE(WaitFor([&] {
    auto list = bus->ListDeadLetters(group);
    return list.ok() && list->size() == 3;
  }));
  accept = true;
  auto replayed = bus->ReplayDeadLetters(group, type + "-1");
  ASSERT_TRUE(replayed.ok()) << replayed.status().ToString();
  EXPECT_EQ(replayed.value(), 1);
  EXPECT_TRUE(WaitFor([&] { return after.unique() == 1; }));
  auto left = bus->ListDeadLetters(group);
  ASSERT_TRUE(left.ok());
  ASSERT_EQ(left->size(), 2u);
  for (const auto& d : left.value()) EXPECT_NE(d.id, type + "-1");
}

TEST(AmqpBusTest, StatsReportTheAgeOfTheOldestWaitingMessage) {
  auto bus = MustOpen(AmqpUrl());
  ASSERT_TRUE(bus);
  const std::string type = UniqueType("age"), group = Unique("g");
  ASSERT_TRUE(bus->DeclareGroup(group, {type}).ok());
  ASSERT_TRUE(bus->Publish(Numbered(type, 3)).ok());
  std::this_thread::sleep_for(2100ms);  // timestamps have one-second resolution
  auto st = StatsOf(*bus, group, type);
  ASSERT_TRUE(st);
  EXPECT_EQ(st->queue, routes::AmqpQueue(group, type));
  EXPECT_EQ(st->depth, 3);
  EXPECT_EQ(st->in_flight, -1) << "passive declare cannot count unacked messages";
  EXPECT_EQ(st->consumers, 0);
  ASSERT_TRUE(st->oldest_age_seconds);
  EXPECT_GE(*st->oldest_age_seconds, 1.0);
  EXPECT_LT(*st->oldest_age_seconds, 60.0);
  // The peek handed the message back: all three are still delivered.
  Received got;
  auto sub = bus->Subscribe({group, {type}, 1}, got.Acking());
  ASSERT_TRUE(sub.ok());
  EXPECT_TRUE(WaitFor([&] { return got.unique() == 3; }));
}

TEST(AmqpBusTest, ASubscriptionHoldsItsPrefetchAheadOfItsHandlers) {
  // Default: two deliveries per handler; else SubscribeOptions::prefetch.
  for (const int prefetch : {0, 5}) {
    SCOPED_TRACE("prefetch " + std::to_string(prefetch));
    auto bus = MustOpen(AmqpUrl());
    ASSERT_TRUE(bus);
    const std::string type = UniqueType("prefetch"), group = Unique("g");
    ASSERT_TRUE(bus->DeclareGroup(group, {type}).ok());
    ASSERT_TRUE(bus->Publish(Numbered(type, 10)).ok());
    std::atomic<bool> release{false};
    std::atomic<int> started{0};
    SubscribeOptions options{group, {type}, 1};
    options.prefetch = prefetch;
    auto sub = bus->Subscribe(options, [&](const Delivery&) {
      ++started;
      WaitFor([&] { return release.load(); }, 30s);
      return Verdict::Ack();
    });
    ASSERT_TRUE(sub.ok()) << sub.status().ToString();
    const int64_t held = prefetch ? prefetch : 2;
    auto depth = [&] {
      auto st = StatsOf(*bus, group, type);
      return st ? st->depth : -1;
    };
    EXPECT_TRUE(WaitFor([&] { return depth() == 10 - held; })) << depth();
    std::this_thread::sleep_for(300ms);
    EXPECT_EQ(depth(), 10 - held) << "the broker hands out no more than the prefetch";
    EXPECT_EQ(started.load(), 1) << "the held deliveries wait for the one handler";
    release = true;
    sub.value().reset();
  }
}

TEST(AmqpBusTest, QuorumQueuesDeliverAndDeadLetter) {
  const std::string type = UniqueType("quorum"), group = Unique("g");
  auto bus = MustOpen(AmqpUrlWith("queue_type=quorum"));
  ASSERT_TRUE(bus);
  Received got;
  Handler acking = got.Acking();
  auto sub = bus->Subscribe({group, {type}, 4}, [&](const Delivery& d) {
    return d.message.id == type + "-0" ? Verdict::DeadLetter("poison") : acking(d);
  });
  ASSERT_TRUE(sub.ok()) << sub.status().ToString();
  ASSERT_TRUE(bus->Publish(Numbered(type, 50)).ok());
  EXPECT_TRUE(WaitFor([&] { return got.unique() == 49; }));
  EXPECT_TRUE(WaitFor([&] {
    auto list = bus->ListDeadLetters(group);
    return list.ok() && list->size() == 1 && list->front().reason == "poison";
  }));
  // A classic declaration of the same group is refused, naming the setting.
  auto classic = MustOpen(AmqpUrl());
  Status s = classic->DeclareGroup(group, {type});
  EXPECT_NE(s.message().find("queue_type"), std::string::npos) << s.ToString();
}

// A port nothing listens on: bound, then closed.
int ClosedPort() {
  int fd = socket(AF_INET, SOCK_STREAM, 0);
  sockaddr_in addr{};
  addr.sin_family = AF_INET;
  addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  socklen_t len = sizeof addr;
  bind(fd, reinterpret_cast<sockaddr*>(&addr), len);
  getsockname(fd, reinterpret_cast<sockaddr*>(&addr), &len);
  close(fd);
  return ntohs(addr.sin_port);
}

// A node list whose first node does not answer: every connection goes on to
// the next, and with several nodes the queues are quorum queues.
TEST(AmqpBusTest, ANodeListSkipsANodeThatDoesNotAnswerAndDeclaresQuorumQueues) {
  const std::string url = AmqpUrl();
  ASSERT_EQ(url.rfind("amqp://", 0), 0u) << url;
  const std::string listed =
      "amqp://127.0.0.1:" + std::to_string(ClosedPort()) + "," + url.substr(7);
  const std::string type = UniqueType("nodes"), group = Unique("g");
  auto bus = MustOpen(listed);
  ASSERT_TRUE(bus);
  Received got;
  auto sub = bus->Subscribe({group, {type}, 4}, got.Acking());
  ASSERT_TRUE(sub.ok()) << sub.status().ToString();
  ASSERT_TRUE(bus->Publish(Numbered(type, 20)).ok());
  EXPECT_TRUE(WaitFor([&] { return got.unique() == 20; })) << got.unique();
  Status classic = MustOpen(AmqpUrl())->DeclareGroup(group, {type});
  EXPECT_NE(classic.message().find("queue_type"), std::string::npos) << classic.ToString();
}

TEST(AmqpBusTest, EphemeralGroupQueuesVanishOnceUnused) {
  auto bus = MustOpen(AmqpUrlWith("ephemeral_expires_ms=1000"));
  ASSERT_TRUE(bus);
  const std::string type = UniqueType("ephemeral"), group = Unique("g");
  {
    SubscribeOptions o{group, {type}, 1};
    o.ephemeral = true;
    Received got;
    auto sub = bus->Subscribe(o, got.Acking());
    ASSERT_TRUE(sub.ok()) << sub.status().ToString();
    ASSERT_TRUE(bus->Publish(Numbered(type, 5)).ok());
    EXPECT_TRUE(WaitFor([&] { return got.unique() == 5; }));
    auto st = StatsOf(*bus, group, type);
    ASSERT_TRUE(st);
    EXPECT_EQ(st->consumers, 1);
  }
  // Polled slowly: a passive declare counts as a use and renews the lease.
  bool gone = false;
  for (int i = 0; i < 10 && !gone; ++i) {
    std::this_thread::sleep_for(1500ms);
    auto stats = bus->Stats(group);
    gone = stats.ok() && stats->empty();
  }
  EXPECT_TRUE(gone) << "the queue should expire about 1 s after its consumer left";
}

TEST(AmqpBusTest, ConnectsOverTlsWithTheTestCa) {
  const std::string amqps = Env("FANFLOW_TEST_AMQPS_URL"), ca = Env("FANFLOW_TEST_AMQP_CACERT");
  FANFLOW_REQUIRE_OR_SKIP(!amqps.empty() && !ca.empty(),
                          "FANFLOW_TEST_AMQPS_URL / FANFLOW_TEST_AMQP_CACERT unset");
  const std::string cert = Env("FANFLOW_TEST_AMQP_CLIENT_CERT"),
                    key = Env("FANFLOW_TEST_AMQP_CLIENT_KEY");
  for (const std::string& query :
       {"cacert=" + ca, "cacert=" + ca + "&cert=" + cert + "&key=" + key}) {
    SCOPED_TRACE(query);
    auto bus = MustOpen(WithQuery(amqps, query));
    ASSERT_TRUE(bus);
    const std::string type = UniqueType("tls");
    Received got;
    auto sub = bus->Subscribe({Unique("g"), {type}, 2}, got.Acking());
    ASSERT_TRUE(sub.ok()) << sub.status().ToString();
    ASSERT_TRUE(bus->Publish(Numbered(type, 100)).ok());
    EXPECT_TRUE(WaitFor([&] { return got.unique() == 100; }));
  }
  auto no_ca = OpenBus(amqps);
  EXPECT_NE(no_ca.status().message().find("cacert"), std::string::npos)
      << no_ca.status().ToString();
  // A CA that did not sign the broker's certificate: the handshake fails.
  auto wrong_ca = OpenBus(WithQuery(amqps, "cacert=" + cert));
  EXPECT_FALSE(wrong_ca.ok());
  EXPECT_EQ(wrong_ca.status().code(), StatusCode::kUnavailable) << wrong_ca.status().ToString();
}

}  // namespace
}  // namespace fanflow::amqp::testing

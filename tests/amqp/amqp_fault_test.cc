// The RabbitMQ adapter under broker faults: every connection force-closed, the
// broker app restarted, the broker frozen (heartbeats), and credentials kept
// out of every log line and error on the way. These tests act on the whole
// test node, so CMake runs them serially (RUN_SERIAL).
#include <gtest/gtest.h>
#include <signal.h>

#include <atomic>
#include <fstream>

#include "tests/amqp/amqp_test_env.h"

namespace fanflow::amqp::testing {
namespace {

// Publishes `batches` x `per_batch` messages from a thread, pausing between
// batches, and records every id it got a confirm for.
class SteadyPublisher {
 public:
  SteadyPublisher(EventBus& bus, std::string type, int batches, int per_batch)
      : thread_([this, &bus, type, batches, per_batch] {
          for (int b = 0; b < batches; ++b) {
            std::vector<Message> msgs;
            for (int i = 0; i < per_batch; ++i) {
              std::string id = type + "-" + std::to_string(b * per_batch + i);
              msgs.push_back(Message{type, id, "{}"});
            }
            Status s = bus.Publish(msgs);
            if (!s.ok()) {
              ADD_FAILURE() << "batch " << b << ": " << s.ToString();
              continue;
            }
            confirmed_ += per_batch;
            std::this_thread::sleep_for(50ms);
          }
          done_ = true;
        }) {}
  ~SteadyPublisher() { thread_.join(); }
  int confirmed() const { return confirmed_; }
  bool done() const { return done_; }

 private:
  std::atomic<int> confirmed_{0};
  std::atomic<bool> done_{false};
  std::thread thread_;
};

TEST(AmqpFaultTest, NothingIsLostWhenTheBrokerClosesEveryConnection) {
  FANFLOW_REQUIRE_RABBITMQCTL();
  LogCapture logs;
  auto bus = MustOpen(AmqpUrl());
  ASSERT_TRUE(bus);
  const std::string type = UniqueType("forced"), group = Unique("g");
  Received got;
  auto sub = bus->Subscribe({group, {type}, 4}, got.Acking());
  ASSERT_TRUE(sub.ok()) << sub.status().ToString();
  {
    SteadyPublisher pub(*bus, type, 40, 250);
    ASSERT_TRUE(WaitFor([&] { return pub.confirmed() >= 2500; }));
    ASSERT_EQ(RabbitmqCtl("close_all_connections 'fanflow fault test'"), 0);
    ASSERT_TRUE(WaitFor([&] { return pub.done(); }, 120s));
    EXPECT_EQ(pub.confirmed(), 10000);
  }
  EXPECT_TRUE(WaitFor([&] { return got.unique() == 10000; }, 120s)) << got.unique() << " of 10000";
  EXPECT_NE(logs.text().find("reconnecting"), std::string::npos) << "the loss should be noticed";
  // The admin connection was closed too: stats work again on a fresh one.
  EXPECT_TRUE(bus->Stats(group).ok());
}

TEST(AmqpFaultTest, ResumesAfterTheBrokerRestartsWithNothingLost) {
  FANFLOW_REQUIRE_RABBITMQCTL();
  auto bus = MustOpen(AmqpUrl());
  ASSERT_TRUE(bus);
  const std::string type = UniqueType("restart"), group = Unique("g");
  Received got;
  auto sub = bus->Subscribe({group, {type}, 4}, got.Acking());
  ASSERT_TRUE(sub.ok()) << sub.status().ToString();
  {
    SteadyPublisher pub(*bus, type, 30, 200);
    ASSERT_TRUE(WaitFor([&] { return pub.confirmed() >= 1000; }));
    ASSERT_EQ(RabbitmqCtl("stop_app"), 0);
    std::this_thread::sleep_for(2s);  // publishes block meanwhile, then complete
    ASSERT_EQ(RabbitmqCtl("start_app"), 0);
    ASSERT_TRUE(WaitFor([&] { return pub.done(); }, 120s));
    EXPECT_EQ(pub.confirmed(), 6000);
  }
  EXPECT_TRUE(WaitFor([&] { return got.unique() == 6000; }, 120s)) << got.unique() << " of 6000";
  // The broker's consumer count may lag a moment behind.
  EXPECT_TRUE(WaitFor([&] {
    auto stats = bus->Stats(group);
    return stats.ok() && stats->size() == 1 && stats->front().consumers == 1;
  })) << "the subscription consumes again; the admin connection works again";
}

// SIGSTOPs the broker for a while (and always SIGCONTs it).
class FrozenBroker {
 public:
  explicit FrozenBroker(pid_t pid) : pid_(pid) { kill(pid_, SIGSTOP); }
  ~FrozenBroker() { kill(pid_, SIGCONT); }

 private:
  pid_t pid_;
};

TEST(AmqpFaultTest, NoticesASilentBrokerByItsMissingHeartbeats) {
  FANFLOW_REQUIRE_RABBITMQCTL();
  std::ifstream pid_file(Env("FANFLOW_TEST_RABBITMQ_PID_FILE"));
  pid_t pid = 0;
  FANFLOW_REQUIRE_OR_SKIP((pid_file >> pid) && pid > 1,
                          "FANFLOW_TEST_RABBITMQ_PID_FILE unset or unreadable");
  LogCapture logs;
  auto bus = MustOpen(AmqpUrlWith("heartbeat=1&rpc_timeout_ms=2000&connect_timeout_ms=2000"));
  ASSERT_TRUE(bus);
  const std::string type = UniqueType("frozen"), group = Unique("g");
  Received got;
  auto sub = bus->Subscribe({group, {type}, 2}, got.Acking());
  ASSERT_TRUE(sub.ok()) << sub.status().ToString();
  ASSERT_TRUE(bus->Publish(Message{type, "before", "{}"}).ok());
  ASSERT_TRUE(WaitFor([&] { return got.unique() == 1; }));
  {
    FrozenBroker frozen(pid);
    EXPECT_TRUE(
        WaitFor([&] { return logs.text().find("heartbeat timeout") != std::string::npos; }, 15s))
        << logs.text();
  }
  ASSERT_TRUE(bus->Publish(Message{type, "after", "{}"}).ok());
  EXPECT_TRUE(WaitFor([&] { return got.unique() == 2; }, 60s));
}

TEST(AmqpFaultTest, CredentialsNeverAppearInLogsOrErrors) {
  FANFLOW_REQUIRE_RABBITMQCTL();
  const std::string user = Unique("fanflow-user"), password = "pw-" + Unique("S3cret");
  ASSERT_EQ(RabbitmqCtl("add_user " + user + " " + password), 0);
  ASSERT_EQ(RabbitmqCtl("set_permissions -p / " + user + " '.*' '.*' '.*'"), 0);
  LogCapture logs;
  std::string errors;
  std::string url = AmqpUrl();
  url.insert(url.find("://") + 3, user + ":" + password + "@");
  {
    auto bus = MustOpen(url);
    ASSERT_TRUE(bus);
    errors += bus->Describe();
    const std::string type = UniqueType("creds"), group = Unique("g");
    Received got;
    auto sub = bus->Subscribe({group, {type}, 1}, [&](const Delivery& d) {
      return d.message.id == "poison" ? Verdict::DeadLetter("bad") : got.Acking()(d);
    });
    ASSERT_TRUE(sub.ok());
    ASSERT_TRUE(bus->Publish(Message{type, "one", "{}"}).ok());
    ASSERT_EQ(RabbitmqCtl("close_all_connections 'credentials test'"),
              0);  // reconnects log the URL
    ASSERT_TRUE(bus->Publish(Message{type, "poison", "{}"}).ok());
    ASSERT_TRUE(bus->Publish(Message{type, "two", "{}"}).ok());
    EXPECT_TRUE(WaitFor([&] { return got.unique() == 2; }, 60s));
  }
  std::string wrong = url;
  wrong.replace(wrong.find(password), password.size(), password + "-wrong");
  auto refused = OpenBus(wrong);
  ASSERT_FALSE(refused.ok());
  errors += refused.status().ToString();
  // Credentials from the environment work the same and stay as hidden.
  setenv("FANFLOW_AMQP_USER", user.c_str(), 1);
  setenv("FANFLOW_AMQP_PASSWORD", password.c_str(), 1);
  auto from_env = OpenBus(AmqpUrl());
  unsetenv("FANFLOW_AMQP_USER");
  unsetenv("FANFLOW_AMQP_PASSWORD");
  ASSERT_TRUE(from_env.ok()) << from_env.status().ToString();
  errors += from_env.value()->Describe();
  RabbitmqCtl("delete_user " + user);

  const std::string all = logs.text() + errors;
  EXPECT_NE(all.find("reconnecting"), std::string::npos) << "the reconnect should have been logged";
  EXPECT_NE(all.find("login as '" + user + "'"), std::string::npos) << "the refusal names the user";
  EXPECT_EQ(all.find(password), std::string::npos) << all;
}

}  // namespace
}  // namespace fanflow::amqp::testing

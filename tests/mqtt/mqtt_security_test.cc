// TLS with a self-made CA, and credentials that never show in logs or errors.
#include <gtest/gtest.h>
#include <spdlog/sinks/ostream_sink.h>
#include <spdlog/spdlog.h>

#include <atomic>
#include <chrono>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <sstream>
#include <thread>

#include "core/bus.h"
#include "tests/mqtt/mqtt_test_env.h"
#include "tests/mqtt/scratch_broker.h"

namespace fanflow {
namespace {

using namespace std::chrono_literals;

// Every log line the process writes while it lives.
class LogCapture {
 public:
  LogCapture() : sink_(std::make_shared<spdlog::sinks::ostream_sink_mt>(out_)) {
    spdlog::default_logger()->sinks().push_back(sink_);
    previous_ = spdlog::get_level();
    spdlog::set_level(spdlog::level::trace);
  }
  ~LogCapture() {
    auto& sinks = spdlog::default_logger()->sinks();
    sinks.erase(std::remove(sinks.begin(), sinks.end(), sink_), sinks.end());
    spdlog::set_level(previous_);
  }
  std::string text() {
    spdlog::default_logger()->flush();
    return out_.str();
  }

 private:
  std::ostringstream out_;
  std::shared_ptr<spdlog::sinks::ostream_sink_mt> sink_;
  spdlog::level::level_enum previous_;
};

// Publishes `n` events and waits until a subscriber of a fresh group got them.
void RoundTrip(EventBus& bus, int n) {
  const std::string type = "fanflow.roundtrip.v1";
  std::atomic<int> got{0};
  auto sub = bus.Subscribe({"rt" + std::to_string(std::rand()), {type}, 2, true}, [&](const Delivery&) {
    ++got;
    return Verdict::Ack();
  });
  ASSERT_TRUE(sub.ok()) << sub.status().ToString();
  std::vector<Message> msgs;
  for (int i = 0; i < n; ++i) msgs.push_back({type, "id" + std::to_string(i), "{}"});
  ASSERT_TRUE(bus.Publish(msgs).ok());
  auto deadline = std::chrono::steady_clock::now() + 10s;
  while (got < n && std::chrono::steady_clock::now() < deadline) std::this_thread::sleep_for(10ms);
  EXPECT_EQ(got.load(), n);
}

TEST(MqttSecurity, TlsWithASelfMadeCaCarriesEvents) {
  FANFLOW_REQUIRE_ENV("FANFLOW_TEST_MQTTS_URL", url);
  auto bus = OpenBus(url);
  ASSERT_TRUE(bus.ok()) << bus.status().ToString();
  RoundTrip(**bus, 20);
}

TEST(MqttSecurity, TlsRefusesABrokerThatTheGivenCaDidNotSign) {
  FANFLOW_REQUIRE_ENV("FANFLOW_TEST_MQTTS_URL", url);
  auto dir = std::filesystem::temp_directory_path() / ("fanflow-other-ca-" + std::to_string(getpid()));
  std::filesystem::create_directories(dir);
  const std::string ca = (dir / "ca.crt").string();
  ASSERT_EQ(std::system(("openssl req -x509 -newkey rsa:2048 -nodes -days 1 -subj '/CN=other CA' -keyout " +
                         (dir / "ca.key").string() + " -out " + ca + " 2>/dev/null")
                            .c_str()),
            0);
  std::string other = url.substr(0, url.find('?')) + "?connect_timeout=3&cacert=" + ca;
  auto bus = OpenBus(other);
  EXPECT_EQ(bus.status().code(), StatusCode::kUnavailable) << bus.status().ToString();
  std::filesystem::remove_all(dir);
}

TEST(MqttSecurity, CredentialsNeverShowInLogsErrorsOrDescriptions) {
  FANFLOW_REQUIRE_ENV("FANFLOW_TEST_MQTT_URL", shared_url);
  mqtt::test::ScratchBroker broker;
  ASSERT_TRUE(broker.Start());
  const std::string password = broker.password();
  ASSERT_GE(password.size(), 8u);
  LogCapture logs;
  {
    auto bus = OpenBus(broker.auth_url());
    ASSERT_TRUE(bus.ok()) << bus.status().ToString();
    EXPECT_EQ((*bus)->Describe().find(password), std::string::npos);
    EXPECT_NE((*bus)->Describe().find("fanflow:***@"), std::string::npos) << (*bus)->Describe();
    std::atomic<int> got{0};
    auto sub = (*bus)->Subscribe({"creds", {"fanflow.creds.v1"}, 1}, [&](const Delivery&) {
      ++got;
      return Verdict::Ack();
    });
    ASSERT_TRUE(sub.ok());
    // A broker restart makes the adapter log the lost link and the reconnect.
    broker.Stop();
    ASSERT_TRUE(broker.Start());
    ASSERT_TRUE((*bus)->Publish(Message{"fanflow.creds.v1", "c1", "{}"}).ok());
    for (int i = 0; i < 500 && got == 0; ++i) std::this_thread::sleep_for(10ms);
    EXPECT_EQ(got.load(), 1);
  }
  const std::string wrong = "Wr0ngSecretValue";
  auto refused = OpenBus("mqtt://fanflow:" + wrong + "@" + broker.auth_url().substr(broker.auth_url().find('@') + 1));
  ASSERT_FALSE(refused.ok());
  EXPECT_EQ(refused.status().message().find(wrong), std::string::npos) << refused.status().ToString();

  const std::string text = logs.text();
  EXPECT_NE(text.find("reconnected"), std::string::npos) << "the reconnect was not logged:\n" << text;
  EXPECT_EQ(text.find(password), std::string::npos) << text;
  EXPECT_EQ(text.find(wrong), std::string::npos) << text;
  std::ifstream broker_log(broker.log_path());
  std::string broker_text((std::istreambuf_iterator<char>(broker_log)), std::istreambuf_iterator<char>());
  EXPECT_EQ(broker_text.find(password), std::string::npos);
}

}  // namespace
}  // namespace fanflow

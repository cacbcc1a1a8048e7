// topics/routes.json is the route map other clients read; src/core/routes.h is
// what fanflow itself uses. These tests keep every name in the two equal.
#include "core/routes.h"

#include <gtest/gtest.h>

#include <algorithm>
#include <filesystem>
#include <fstream>

#include "core/event.h"

namespace fanflow::routes {
namespace {

namespace fs = std::filesystem;
using nlohmann::json;

const fs::path kTopics = fs::path(FANFLOW_SOURCE_DIR) / "topics";

json LoadRoutes() {
  std::ifstream in(kTopics / "routes.json");
  return json::parse(in, nullptr, /*allow_exceptions=*/false);
}

// Fills "{group}" and "{short}" in a routes.json pattern.
std::string Expand(std::string pattern, const std::string& group, const std::string& type) {
  for (const auto& [key, value] : {std::pair{"{group}", group}, {"{short}", ShortName(type)}})
    for (auto at = pattern.find(key); at != std::string::npos; at = pattern.find(key, at))
      pattern.replace(at, std::string(key).size(), value);
  return pattern;
}

// {group: name(group, type)} for the standard groups of `type`.
template <typename NameFn>
json PerDefaultGroup(const std::string& type, NameFn name) {
  json out = json::object();
  for (const std::string& group : DefaultGroups(type)) out[group] = name(group, type);
  return out;
}

class RoutesJson : public ::testing::Test {
 protected:
  void SetUp() override {
    routes_ = LoadRoutes();
    ASSERT_TRUE(routes_.is_object()) << "topics/routes.json is missing or not a JSON object";
    ASSERT_TRUE(routes_.contains("events") && routes_["events"].is_object());
  }
  json routes_;
};

TEST_F(RoutesJson, BrokerWideNamesEqualTheCode) {
  EXPECT_EQ(routes_["version"], 1);
  EXPECT_EQ(routes_["amqp"]["exchange"], kAmqpExchange);
  EXPECT_EQ(routes_["amqp"]["exchange_type"], "topic");
  EXPECT_EQ(routes_["amqp"]["dead_letter_exchange"], kAmqpDeadLetterExchange);
}

// The patterns must build the same names as the code for any group, not only the
// standard ones: a user's own group (e.g. "billing" waiting for batch_complete) too.
TEST_F(RoutesJson, PatternsExpandToTheNamesTheCodeBuilds) {
  const json& amqp = routes_["amqp"];
  const json& mqtt = routes_["mqtt"];
  for (const std::string& type : KnownEventTypes()) {
    SCOPED_TRACE(type);
    EXPECT_EQ(Expand(mqtt.value("topic_pattern", ""), "", type), MqttTopic(type));
    auto groups = DefaultGroups(type);
    groups.push_back("billing");
    for (const std::string& group : groups) {
      SCOPED_TRACE(group);
      EXPECT_EQ(Expand(amqp.value("queue_pattern", ""), group, type), AmqpQueue(group, type));
      EXPECT_EQ(Expand(amqp.value("dead_letter_queue_pattern", ""), group, type),
                AmqpDeadLetterQueue(group, type));
      EXPECT_EQ(Expand(mqtt.value("shared_subscription_pattern", ""), group, type),
                MqttSharedSubscription(group, type));
      EXPECT_EQ(Expand(mqtt.value("dead_letter_topic_pattern", ""), group, type),
                MqttDeadLetterTopic(group, type));
    }
  }
}

TEST_F(RoutesJson, EveryKnownTypeIsListedWithTheNamesTheCodeBuilds) {
  const json& events = routes_["events"];
  for (const std::string& type : KnownEventTypes()) {
    SCOPED_TRACE(type);
    ASSERT_TRUE(events.contains(type)) << "routes.json does not list " << type;
    const json& e = events[type];
    EXPECT_EQ(e["short"], ShortName(type));
    EXPECT_EQ(e["schema"], ShortName(type) + ".schema.json");
    EXPECT_TRUE(fs::is_regular_file(kTopics / e.value("schema", "")));
    EXPECT_EQ(e["default_groups"], json(DefaultGroups(type)));
    EXPECT_EQ(e["amqp"]["routing_key"], AmqpRoutingKey(type));
    EXPECT_EQ(e["amqp"]["queues"], PerDefaultGroup(type, AmqpQueue));
    EXPECT_EQ(e["amqp"]["dead_letter_queues"], PerDefaultGroup(type, AmqpDeadLetterQueue));
    EXPECT_EQ(e["mqtt"]["topic"], MqttTopic(type));
    EXPECT_EQ(e["mqtt"]["shared_subscriptions"], PerDefaultGroup(type, MqttSharedSubscription));
    EXPECT_EQ(e["mqtt"]["dead_letter_topics"], PerDefaultGroup(type, MqttDeadLetterTopic));
  }
}

TEST_F(RoutesJson, ListsNoTypeTheCodeDoesNotKnow) {
  const auto& known = KnownEventTypes();
  for (const auto& [type, entry] : routes_["events"].items())
    EXPECT_NE(std::find(known.begin(), known.end(), type), known.end())
        << "routes.json lists " << type << ", which KnownEventTypes() does not";
  EXPECT_EQ(routes_["events"].size(), known.size());
}

}  // namespace
}  // namespace fanflow::routes

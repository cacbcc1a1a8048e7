// Where each event type travels on each bus. topics/routes.json publishes the
// same map for other clients; tests/core/routes_test.cc keeps the two equal.
#pragma once

#include <string>
#include <vector>

namespace fanflow::routes {

// "fanflow.start_fanout.v1" -> "start_fanout".
std::string ShortName(const std::string& type);

// The consumer groups fanflow's own services use.
inline constexpr char kVentilatorGroup[] = "ventilator";
inline constexpr char kWorkerGroup[] = "workers";
inline constexpr char kAggregatorGroup[] = "aggregator";

// The groups that consume `type` in a standard deployment (may be empty: e.g.
// batch_complete is read by whoever subscribes, each with a group of its own).
std::vector<std::string> DefaultGroups(const std::string& type);

// AMQP 0-9-1: one topic exchange; one durable queue per (group, type) bound with
// the short name; each queue dead-letters to its own queue via one DLX.
inline constexpr char kAmqpExchange[] = "fanflow";
inline constexpr char kAmqpDeadLetterExchange[] = "fanflow.dlx";
std::string AmqpRoutingKey(const std::string& type);
std::string AmqpQueue(const std::string& group, const std::string& type);
std::string AmqpDeadLetterQueue(const std::string& group, const std::string& type);

// MQTT 5: one topic per type; a group is a shared subscription on it; dead
// letters of a group go to their own topic.
std::string MqttTopic(const std::string& type);
std::string MqttSharedSubscription(const std::string& group, const std::string& type);
std::string MqttDeadLetterTopic(const std::string& group, const std::string& type);

}  // namespace fanflow::routes

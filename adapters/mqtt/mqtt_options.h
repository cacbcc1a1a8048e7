// What the MQTT adapter reads from a bus URL, and the names it puts on the wire
// beyond core/routes.h (documented for other clients in topics/README-mqtt.md).
// Plain data: immutable once parsed, shared freely between threads.
#pragma once

#include <chrono>
#include <cstdint>
#include <string>

#include "core/bus_url.h"
#include "core/status.h"

namespace fanflow::mqtt {

struct MqttOptions {
  std::string server_uri;  // tcp://host:port or ssl://host:port (paho's form)
  std::string host;
  int port = 0;
  std::string described;   // the URL without credentials, for logs
  bool tls = false;
  std::string cacert, cert, key;
  std::string user, password;
  std::string instance;  // the stable part of consumer client ids
  uint32_t session_expiry_s = 86400;
  // Session Expiry of the members of elastic groups (SubscribeOptions::elastic):
  // a member lost for good leaves the shared subscription this soon, so a
  // redrive after the aggregator's lease meets only live members.
  uint32_t elastic_session_expiry_s = 2;
  std::chrono::seconds connect_timeout{10};
  std::chrono::seconds publish_timeout{30};
  int receive_maximum = 0;  // 0: 8 per handler thread of the subscription
  int window = 100;  // paho slows down with more in flight (measured: 100 beats 300 and 1000)
};

[[nodiscard]] Result<MqttOptions> ParseOptions(const BusUrl& url);

// Groups become topic levels and client ids: no MQTT wildcards or separators.
[[nodiscard]] Status ValidateGroup(const std::string& group);

// Retries of one group: only that group's shared subscription reads them.
std::string RetryTopic(const std::string& group, const std::string& type);
// The two shared subscriptions a consumer of (group, type) holds.
std::string SharedMain(const std::string& group, const std::string& type);
std::string SharedRetry(const std::string& group, const std::string& type);
// One retained message per dead letter, under routes::MqttDeadLetterTopic.
std::string DeadLetterEntryTopic(const std::string& group, const std::string& type,
                                 const std::string& key);
std::string DeadLetterFilter(const std::string& group);  // "" = every group
// Retained (group, type) registry, so a fresh process knows what to report.
std::string RegistryTopic(const std::string& group, const std::string& type);
std::string RegistryFilter(const std::string& group);

// The session that holds a declared (group, type) until a consumer takes over.
std::string ParkedClientId(const std::string& group, const std::string& type);
std::string ConsumerClientId(const std::string& group, const std::string& instance, int slot);
// A unique id for short-lived connections (publisher, admin, ephemeral groups).
std::string UniqueClientId(const std::string& role);

// Makes an id safe as one topic level (percent-encodes / + # % and NUL).
std::string EncodeTopicLevel(const std::string& s);

// MQTT 5 user properties fanflow sets.
inline constexpr char kPropType[] = "fanflow-type";
inline constexpr char kPropId[] = "fanflow-id";
inline constexpr char kPropAttempt[] = "fanflow-attempt";
inline constexpr char kPropNotBefore[] = "fanflow-not-before";  // ms since the epoch
inline constexpr char kPropPublishedAt[] = "fanflow-published-at";  // ms since the epoch
inline constexpr char kPropGroup[] = "fanflow-group";
inline constexpr char kPropReason[] = "fanflow-reason";
inline constexpr char kPropDeadAt[] = "fanflow-dead-at";  // RFC 3339
// Dead letter of an empty body: a zero-length retained publish would delete the
// entry, so it is stored with a placeholder payload and this property.
inline constexpr char kPropEmptyBody[] = "fanflow-empty-body";
inline constexpr char kPropParked[] = "fanflow-parked";    // registry: "1" while a parked session holds it
inline constexpr char kContentType[] = "application/cloudevents+json";

inline constexpr char kSysDropped[] = "$SYS/broker/publish/messages/dropped";
inline constexpr char kSysStored[] = "$SYS/broker/store/messages/count";

int64_t NowMillis();

}  // namespace fanflow::mqtt

#include "adapters/mqtt/mqtt_envelope.h"

#include <nlohmann/json.hpp>

#include <charconv>
#include <random>

#include "core/bounded_json.h"
#include "core/event.h"
#include "core/printable.h"
#include "core/routes.h"

namespace fanflow::mqtt {
namespace {

constexpr size_t kMaxReasonBytes = 4096;

// A reason may quote a processor's stderr: a control character in a property
// makes Mosquitto drop the connection, so such a reason is escaped.
std::string SafeReason(const std::string& reason) {
  if (reason.size() <= kMaxReasonBytes && IsCleanText(reason)) return reason;
  return EscapeForLog(reason, kMaxReasonBytes);
}

int64_t PropNumber(const Incoming& in, const char* name, int64_t fallback) {
  const std::string* v = in.Prop(name);
  int64_t out = 0;
  if (!v || std::from_chars(v->data(), v->data() + v->size(), out).ec != std::errc()) return fallback;
  return out;
}

// The id becomes a property and a topic level of the dead letter: an id that
// Mosquitto would refuse (control characters) is not taken.
std::string IdFromBody(const std::string& body) {
  auto j = ParseBoundedJson(body, "body");
  if (!j.ok() || !j->is_object()) return "";
  auto id = j->find("id");
  if (id == j->end() || !id->is_string() || !CheckName(id->get_ref<const std::string&>(), "id", kMaxIdLength).ok())
    return "";
  return id->get<std::string>();
}

std::string BusMadeId() {
  static thread_local std::mt19937_64 rng(std::random_device{}());
  char buf[40];
  std::snprintf(buf, sizeof buf, "mqtt-%llx", static_cast<unsigned long long>(rng()));
  return buf;
}

}  // namespace

Envelope FromIncoming(const Incoming& in, const std::string& type) {
  Envelope e;
  e.message.type = type;
  e.message.body = in.payload;
  const std::string* id = in.Prop(kPropId);
  e.message.id = id ? *id : IdFromBody(in.payload);
  e.attempt = static_cast<int>(std::max<int64_t>(1, PropNumber(in, kPropAttempt, 1)));
  e.not_before_ms = PropNumber(in, kPropNotBefore, 0);
  e.since_ms = PropNumber(in, kPropPublishedAt, NowMillis());
  e.redelivered = in.duplicate || e.attempt > 1;
  return e;
}

// Properties cost paho an allocation each way (bench/mqtt_pipeline_bench: four
// of them take a third of the throughput): a first publish carries the content
// type, the id and the publish time (the age Stats and alarms report); the
// topic names the type.
OutMessage ToMain(const Message& m) {
  OutMessage out{routes::MqttTopic(m.type), m.body, {}};
  if (!m.id.empty()) out.props.emplace_back(kPropId, m.id);
  out.props.emplace_back(kPropPublishedAt, std::to_string(NowMillis()));
  return out;
}

OutMessage ToRetry(const std::string& group, const Envelope& e) {
  OutMessage out{RetryTopic(group, e.message.type), e.message.body, {{kPropType, e.message.type}}};
  if (!e.message.id.empty()) out.props.emplace_back(kPropId, e.message.id);
  out.props.emplace_back(kPropAttempt, std::to_string(e.attempt));
  if (e.not_before_ms) out.props.emplace_back(kPropNotBefore, std::to_string(e.not_before_ms));
  out.props.emplace_back(kPropPublishedAt, std::to_string(e.since_ms ? e.since_ms : NowMillis()));
  return out;
}

OutMessage ToDeadLetter(const std::string& group, const Envelope& e, const std::string& reason) {
  // Keyed by event id, so a redelivered poison event is listed once.
  std::string key = e.message.id.empty() ? BusMadeId() : e.message.id;
  OutMessage out{DeadLetterEntryTopic(group, e.message.type, key), e.message.body,
                 {{kPropType, e.message.type},
                  {kPropId, key},
                  {kPropGroup, group},
                  {kPropReason, SafeReason(reason)},
                  {kPropAttempt, std::to_string(e.attempt)},
                  {kPropDeadAt, NowRfc3339()}}};
  if (out.payload.empty()) {
    out.payload.push_back('-');
    out.props.emplace_back(kPropEmptyBody, "1");
  }
  out.retained = true;
  return out;
}

std::optional<StoredDeadLetter> FromRetained(const Incoming& in) {
  if (in.payload.empty()) return std::nullopt;
  StoredDeadLetter s;
  s.topic = in.topic;
  DeadLetter& d = s.letter;
  d.body = in.Prop(kPropEmptyBody) ? std::string() : in.payload;
  auto prop = [&](const char* name) {
    const std::string* v = in.Prop(name);
    return v ? *v : std::string();
  };
  d.group = prop(kPropGroup);
  d.type = prop(kPropType);
  d.id = prop(kPropId);
  d.reason = prop(kPropReason);
  d.time = prop(kPropDeadAt);
  d.attempts = static_cast<int>(PropNumber(in, kPropAttempt, 0));
  if (d.group.empty() || d.type.empty()) return std::nullopt;  // not written by fanflow
  return s;
}

}  // namespace fanflow::mqtt

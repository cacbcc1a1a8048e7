#include "adapters/amqp/amqp_message.h"

#include <cstdio>
#include <ctime>
#include <nlohmann/json.hpp>
#include <vector>

#include "core/bounded_json.h"
#include "core/routes.h"

namespace fanflow::amqp {
namespace {

amqp_bytes_t View(const std::string& s) {
  return amqp_bytes_t{s.size(), const_cast<char*>(s.data())};
}

amqp_table_entry_t Entry(const char* key, const std::string& value) {
  amqp_table_entry_t e;
  e.key = amqp_cstring_bytes(key);
  e.value.kind = AMQP_FIELD_KIND_UTF8;
  e.value.value.bytes = View(value);
  return e;
}

amqp_table_entry_t Entry(const char* key, int64_t value) {
  amqp_table_entry_t e;
  e.key = amqp_cstring_bytes(key);
  e.value.kind = AMQP_FIELD_KIND_I64;
  e.value.value.i64 = value;
  return e;
}

bool KeyIs(const amqp_table_entry_t& e, const char* key) { return ToString(e.key) == key; }

std::optional<int64_t> AsInt(const amqp_field_value_t& v) {
  switch (v.kind) {
    case AMQP_FIELD_KIND_I8:
      return v.value.i8;
    case AMQP_FIELD_KIND_U8:
      return v.value.u8;
    case AMQP_FIELD_KIND_I16:
      return v.value.i16;
    case AMQP_FIELD_KIND_U16:
      return v.value.u16;
    case AMQP_FIELD_KIND_I32:
      return v.value.i32;
    case AMQP_FIELD_KIND_U32:
      return v.value.u32;
    case AMQP_FIELD_KIND_I64:
      return v.value.i64;
    case AMQP_FIELD_KIND_U64:
    case AMQP_FIELD_KIND_TIMESTAMP:
      return static_cast<int64_t>(v.value.u64);
    case AMQP_FIELD_KIND_UTF8:
    case AMQP_FIELD_KIND_BYTES: {
      // Foreign publishers (amqp-publish -H) can only send strings.
      std::string s = ToString(v.value.bytes);
      if (s.empty() || s.size() > 18 || s.find_first_not_of("0123456789") != std::string::npos)
        return {};
      return std::stoll(s);
    }
    default:
      return {};
  }
}

std::string AsString(const amqp_field_value_t& v) {
  if (v.kind == AMQP_FIELD_KIND_UTF8 || v.kind == AMQP_FIELD_KIND_BYTES)
    return ToString(v.value.bytes);
  if (auto n = AsInt(v)) return std::to_string(*n);
  return "";
}

std::string Rfc3339FromSeconds(int64_t s) {
  std::time_t t = static_cast<std::time_t>(s);
  std::tm tm{};
  gmtime_r(&t, &tm);
  char buf[64];
  std::snprintf(buf, sizeof buf, "%04d-%02d-%02dT%02d:%02d:%02dZ", tm.tm_year + 1900, tm.tm_mon + 1,
                tm.tm_mday, tm.tm_hour, tm.tm_min, tm.tm_sec);
  return buf;
}

// The newest x-death entry: RabbitMQ's record of a broker-side dead-lettering.
void ReadXDeath(const amqp_array_t& deaths, Incoming& in) {
  if (deaths.num_entries < 1 || deaths.entries[0].kind != AMQP_FIELD_KIND_TABLE) return;
  const amqp_table_t& t = deaths.entries[0].value.table;
  std::string reason, queue;
  for (int i = 0; i < t.num_entries; ++i) {
    const amqp_table_entry_t& e = t.entries[i];
    if (KeyIs(e, "reason")) reason = AsString(e.value);
    if (KeyIs(e, "queue")) queue = AsString(e.value);
    if (KeyIs(e, "time"))
      if (auto s = AsInt(e.value)) in.dead_lettered_at = Rfc3339FromSeconds(*s);
  }
  in.reason = "broker: " + reason + (queue.empty() ? "" : " in queue " + queue);
  in.attempts = in.attempt;
}

}  // namespace

std::string ToString(amqp_bytes_t b) {
  return b.len ? std::string(static_cast<const char*>(b.bytes), b.len) : std::string();
}

Outgoing ToEventsExchange(Message message) {
  std::string key = routes::AmqpRoutingKey(message.type);
  return Outgoing{routes::kAmqpExchange, std::move(key), std::move(message), 1, std::nullopt};
}

int PublishOne(amqp_connection_state_t conn, amqp_channel_t channel, const Outgoing& out) {
  static const std::string kContentType = "application/cloudevents+json";
  amqp_basic_properties_t props{};
  props._flags = AMQP_BASIC_CONTENT_TYPE_FLAG | AMQP_BASIC_DELIVERY_MODE_FLAG |
                 AMQP_BASIC_TIMESTAMP_FLAG | AMQP_BASIC_TYPE_FLAG;
  props.content_type = View(kContentType);
  props.delivery_mode = 2;
  props.timestamp = static_cast<uint64_t>(std::time(nullptr));
  props.type = View(out.message.type);
  if (!out.message.id.empty()) {
    props._flags |= AMQP_BASIC_MESSAGE_ID_FLAG;
    props.message_id = View(out.message.id);
  }
  std::vector<amqp_table_entry_t> headers;
  if (out.attempt > 1) headers.push_back(Entry(kAttemptHeader, out.attempt));
  if (out.dead) {
    headers.push_back(Entry(kReasonHeader, out.dead->reason));
    headers.push_back(Entry(kAttemptsHeader, out.dead->attempts));
    headers.push_back(Entry(kDeadLetteredAtHeader, out.dead->time));
    headers.push_back(Entry(kGroupHeader, out.dead->group));
    headers.push_back(Entry(kTypeHeader, out.dead->type));
  }
  if (!headers.empty()) {
    props._flags |= AMQP_BASIC_HEADERS_FLAG;
    props.headers = amqp_table_t{static_cast<int>(headers.size()), headers.data()};
  }
  return amqp_basic_publish(conn, channel, View(out.exchange), View(out.routing_key),
                            /*mandatory=*/0,
                            /*immediate=*/0, &props, View(out.message.body));
}

Incoming ReadIncoming(const amqp_basic_properties_t& props) {
  Incoming in;
  if (props._flags & AMQP_BASIC_MESSAGE_ID_FLAG) in.message_id = ToString(props.message_id);
  if (props._flags & AMQP_BASIC_TIMESTAMP_FLAG)
    in.timestamp_s = static_cast<int64_t>(props.timestamp);
  if (!(props._flags & AMQP_BASIC_HEADERS_FLAG)) return in;
  const amqp_array_t* deaths = nullptr;
  for (int i = 0; i < props.headers.num_entries; ++i) {
    const amqp_table_entry_t& e = props.headers.entries[i];
    if (KeyIs(e, kAttemptHeader)) {
      if (auto n = AsInt(e.value); n && *n >= 1 && *n < (1 << 30))
        in.attempt = static_cast<int>(*n);
    } else if (KeyIs(e, kReasonHeader)) {
      in.reason = AsString(e.value);
    } else if (KeyIs(e, kAttemptsHeader)) {
      if (auto n = AsInt(e.value)) in.attempts = static_cast<int>(*n);
    } else if (KeyIs(e, kDeadLetteredAtHeader)) {
      in.dead_lettered_at = AsString(e.value);
    } else if (KeyIs(e, "x-death") && e.value.kind == AMQP_FIELD_KIND_ARRAY) {
      deaths = &e.value.value.array;
    }
  }
  if (in.reason.empty() && deaths) ReadXDeath(*deaths, in);
  return in;
}

std::string DeadLetterId(const Incoming& in, std::string_view body) {
  if (!in.message_id.empty()) return in.message_id;
  auto doc = ParseBoundedJson(body, "body");
  if (doc.ok() && doc->is_object() && doc->contains("id") && (*doc)["id"].is_string() &&
      !(*doc)["id"].get_ref<const std::string&>().empty())
    return (*doc)["id"].get<std::string>();
  uint64_t h = 1469598103934665603ULL;  // FNV-1a: stable across runs and builds
  for (unsigned char c : body) h = (h ^ c) * 1099511628211ULL;
  char buf[24];
  std::snprintf(buf, sizeof buf, "amqp-%016llx", static_cast<unsigned long long>(h));
  return buf;
}

}  // namespace fanflow::amqp

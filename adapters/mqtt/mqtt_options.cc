#include "adapters/mqtt/mqtt_options.h"

#include <unistd.h>

#include <atomic>
#include <climits>
#include <cstdio>
#include <random>

#include "core/printable.h"
#include "core/routes.h"

namespace fanflow::mqtt {
namespace {

Result<long> ParseWhole(const BusUrl& url, const std::string& key, long min, long max) {
  const std::string& v = url.query.at(key);
  if (v.empty() || v.size() > 9 || v.find_first_not_of("0123456789") != std::string::npos ||
      std::stol(v) < min || std::stol(v) > max)
    return InvalidArgument(url.Redacted() + ": " + key + " must be a whole number in " +
                           std::to_string(min) + ".." + std::to_string(max) + ", got '" + v + "'");
  return std::stol(v);
}

std::string HostName() {
  char buf[HOST_NAME_MAX + 1] = {};
  if (gethostname(buf, sizeof buf - 1) != 0 || buf[0] == '\0') return "host";
  return buf;
}

}  // namespace

Result<MqttOptions> ParseOptions(const BusUrl& url) {
  MqttOptions o;
  if (url.scheme != "mqtt" && url.scheme != "mqtts")
    return InvalidArgument("not an MQTT URL: " + url.Redacted());
  if (url.host.empty()) return InvalidArgument(url.Redacted() + ": a broker host is required");
  o.tls = url.scheme == "mqtts";
  o.host = url.host;
  o.port = url.port ? url.port : (o.tls ? 8883 : 1883);
  o.server_uri = std::string(o.tls ? "ssl://" : "tcp://") + o.host + ":" + std::to_string(o.port);
  o.user = url.user;
  o.password = url.password;
  o.instance = HostName();
  for (const auto& [key, value] : url.query) {
    if (key == "client_id") {
      if (value.empty() || value.find_first_of("/+#:") != std::string::npos)
        return InvalidArgument(url.Redacted() + ": client_id must be non-empty, without / + # :");
      o.instance = value;
    } else if (key == "cacert") {
      o.cacert = value;
    } else if (key == "cert") {
      o.cert = value;
    } else if (key == "key") {
      o.key = value;
    } else if (key == "session_expiry") {
      auto v = ParseWhole(url, key, 0, 100000000);
      if (!v.ok()) return v.status();
      o.session_expiry_s = static_cast<uint32_t>(*v);
    } else if (key == "elastic_session_expiry") {
      auto v = ParseWhole(url, key, 0, 100000000);
      if (!v.ok()) return v.status();
      o.elastic_session_expiry_s = static_cast<uint32_t>(*v);
    } else if (key == "connect_timeout") {
      auto v = ParseWhole(url, key, 1, 3600);
      if (!v.ok()) return v.status();
      o.connect_timeout = std::chrono::seconds(*v);
    } else if (key == "publish_timeout") {
      auto v = ParseWhole(url, key, 1, 86400);
      if (!v.ok()) return v.status();
      o.publish_timeout = std::chrono::seconds(*v);
    } else if (key == "receive_maximum") {
      auto v = ParseWhole(url, key, 1, 65535);
      if (!v.ok()) return v.status();
      o.receive_maximum = static_cast<int>(*v);
    } else if (key == "window") {
      auto v = ParseWhole(url, key, 1, 100000);
      if (!v.ok()) return v.status();
      o.window = static_cast<int>(*v);
    } else {
      return InvalidArgument(url.Redacted() + ": unknown option '" + key +
                             "' (known: client_id, cacert, cert, key, session_expiry, "
                             "elastic_session_expiry, connect_timeout, publish_timeout, receive_maximum, window)");
    }
  }
  if (!o.tls && (!o.cacert.empty() || !o.cert.empty()))
    return InvalidArgument(url.Redacted() + ": cacert/cert need mqtts://");
  if (o.cert.empty() != o.key.empty())
    return InvalidArgument(url.Redacted() + ": cert and key go together");
  o.described = url.Redacted();
  return o;
}

// Core's charset has none of / + # : $, so the name is one MQTT topic level.
Status ValidateGroup(const std::string& group) { return CheckGroupName(group); }

std::string RetryTopic(const std::string& group, const std::string& type) {
  return "fanflow/retry/" + group + "/" + routes::ShortName(type);
}

std::string SharedMain(const std::string& group, const std::string& type) {
  return routes::MqttSharedSubscription(group, type);
}

std::string SharedRetry(const std::string& group, const std::string& type) {
  return "$share/" + group + "/" + RetryTopic(group, type);
}

std::string DeadLetterEntryTopic(const std::string& group, const std::string& type,
                                 const std::string& key) {
  return routes::MqttDeadLetterTopic(group, type) + "/" + EncodeTopicLevel(key);
}

std::string DeadLetterFilter(const std::string& group) {
  return group.empty() ? "fanflow/dlq/#" : "fanflow/dlq/" + group + "/#";
}

std::string RegistryTopic(const std::string& group, const std::string& type) {
  return "fanflow/groups/" + group + "/" + routes::ShortName(type);
}

std::string RegistryFilter(const std::string& group) {
  return group.empty() ? "fanflow/groups/#" : "fanflow/groups/" + group + "/#";
}

std::string ParkedClientId(const std::string& group, const std::string& type) {
  return "fanflow:" + group + ":" + routes::ShortName(type) + ":declared";
}

std::string ConsumerClientId(const std::string& group, const std::string& instance, int slot) {
  return "fanflow:" + group + ":" + instance + "." + std::to_string(slot);
}

std::string UniqueClientId(const std::string& role) {
  static std::atomic<uint64_t> seq{0};
  static const uint32_t salt = std::random_device{}();
  char buf[96];
  std::snprintf(buf, sizeof buf, "fanflow-%s-%d-%08x-%llu", role.c_str(), static_cast<int>(getpid()),
                salt, static_cast<unsigned long long>(++seq));
  return buf;
}

std::string EncodeTopicLevel(const std::string& s) {
  static const char kHex[] = "0123456789ABCDEF";
  std::string out;
  for (unsigned char c : s) {
    if (c == '/' || c == '+' || c == '#' || c == '%' || c == '\0') {
      out += '%';
      out += kHex[c >> 4];
      out += kHex[c & 15];
    } else {
      out += static_cast<char>(c);
    }
  }
  return out;
}

int64_t NowMillis() {
  return std::chrono::duration_cast<std::chrono::milliseconds>(
             std::chrono::system_clock::now().time_since_epoch())
      .count();
}

}  // namespace fanflow::mqtt

#include "adapters/amqp/amqp_config.h"

#include <cstdlib>
#include <set>

#include "core/retention.h"

namespace fanflow::amqp {
namespace {

const std::set<std::string>& QueueParams() {
  static const std::set<std::string> k = {"queue_type", "message_ttl_ms", "max_length", "overflow",
                                          "dlq_ttl_ms"};
  return k;
}

const std::set<std::string>& ConnectionParams() {
  static const std::set<std::string> k = {"heartbeat",
                                          "rpc_timeout_ms",
                                          "connect_timeout_ms",
                                          "confirm_window",
                                          "publish_timeout_ms",
                                          "prefetch",
                                          "ephemeral_expires_ms",
                                          "cacert",
                                          "cert",
                                          "key",
                                          "verify_hostname"};
  return k;
}

std::string KnownParams() {
  std::string s;
  for (const auto* set : {&QueueParams(), &ConnectionParams()})
    for (const auto& p : *set) s += (s.empty() ? "" : ", ") + p;
  return s + " (queue parameters also as GROUP.param)";
}

Result<int64_t> ParseCount(const std::string& name, const std::string& v, int64_t min,
                           int64_t max) {
  if (v.empty() || v.size() > 15 || v.find_first_not_of("0123456789") != std::string::npos)
    return InvalidArgument("amqp URL: " + name + " must be a whole number, got '" + v + "'");
  int64_t n = std::stoll(v);
  if (n < min || n > max)
    return InvalidArgument("amqp URL: " + name + " must be in " + std::to_string(min) + ".." +
                           std::to_string(max) + ", got " + v);
  return n;
}

Status SetQueueParam(QueueOptions& q, const std::string& param, const std::string& name,
                     const std::string& v) {
  if (param == "queue_type") {
    if (v != "classic" && v != "quorum")
      return InvalidArgument("amqp URL: " + name + " must be classic or quorum, got '" + v + "'");
    q.queue_type = v;
    return Status::Ok();
  }
  if (param == "overflow") {
    if (v != "drop-head" && v != "reject-publish" && v != "reject-publish-dlx")
      return InvalidArgument("amqp URL: " + name +
                             " must be drop-head, reject-publish or reject-publish-dlx, got '" + v +
                             "'");
    q.overflow = v;
    return Status::Ok();
  }
  // The rest are counts; RabbitMQ takes TTLs up to 2^32-1 ms.
  auto n = ParseCount(name, v, 1, param == "max_length" ? (int64_t{1} << 40) : 4294967295LL);
  if (!n.ok()) return n.status();
  if (param == "message_ttl_ms") q.message_ttl_ms = *n;
  if (param == "max_length") q.max_length = *n;
  if (param == "dlq_ttl_ms") q.dlq_ttl_ms = *n;
  return Status::Ok();
}

// Dead letters must outlive what they came from (core/retention.h), or a
// message that expired into its DLQ could vanish from there first.
Status ValidateQueueOptions(QueueOptions& q, const std::string& group) {
  const std::string where = group.empty() ? "amqp URL" : "amqp URL (group '" + group + "')";
  auto ms = [](const std::optional<int64_t>& v) {
    return v ? std::optional<std::chrono::milliseconds>(*v) : std::nullopt;
  };
  if (Status s =
          ValidateRetention(ms(q.message_ttl_ms), ms(q.dlq_ttl_ms),
                            where + ": dlq_ttl_ms=" + std::to_string(q.dlq_ttl_ms.value_or(0)));
      !s.ok())
    return s;
  if (!q.overflow.empty() && !q.max_length)
    return InvalidArgument(where + ": overflow=" + q.overflow + " needs max_length");
  if (q.max_length && q.overflow.empty())
    q.overflow = "reject-publish";  // the publisher hears of it
  if (q.queue_type == "quorum" && q.overflow == "reject-publish-dlx")
    return InvalidArgument(where + ": quorum queues do not support overflow=reject-publish-dlx");
  return Status::Ok();
}

}  // namespace

const QueueOptions& AmqpConfig::ForGroup(const std::string& group) const {
  auto it = per_group.find(group);
  return it == per_group.end() ? defaults : it->second;
}

std::string AmqpConfig::NodeName(size_t i) const {
  return nodes[i].host + ":" + std::to_string(nodes[i].port);
}

Result<AmqpConfig> ParseAmqpConfig(const BusUrl& url) {
  AmqpConfig c;
  c.redacted_url = url.Redacted();
  c.tls = url.scheme == "amqps";
  for (BusNode n : url.nodes) {
    if (n.host.empty()) n.host = "localhost";
    if (!n.port) n.port = c.tls ? 5671 : 5672;
    c.nodes.push_back(n);
  }
  if (c.nodes.empty()) c.nodes.push_back(BusNode{"localhost", c.tls ? 5671 : 5672});
  // Classic queues live on one node: on a cluster only quorum queues survive
  // the loss of a node. `queue_type=classic` still asks for them.
  if (c.cluster()) c.defaults.queue_type = "quorum";
  c.vhost = url.path.empty() ? "/" : url.path;
  const char* env_user = std::getenv("FANFLOW_AMQP_USER");
  const char* env_pass = std::getenv("FANFLOW_AMQP_PASSWORD");
  c.user = !url.user.empty() ? url.user : env_user ? env_user : "guest";
  c.password = !url.password.empty() ? url.password : env_pass ? env_pass : "guest";

  // Queue parameters: global ones first, then GROUP.param overrides on top.
  std::map<std::string, std::map<std::string, std::string>> group_params;
  for (const auto& [k, v] : url.query) {
    if (QueueParams().count(k)) {
      if (auto s = SetQueueParam(c.defaults, k, k, v); !s.ok()) return s;
      continue;
    }
    auto dot = k.rfind('.');
    if (dot != std::string::npos && dot > 0 && QueueParams().count(k.substr(dot + 1))) {
      group_params[k.substr(0, dot)][k.substr(dot + 1)] = v;
      continue;
    }
    if (!ConnectionParams().count(k))
      return InvalidArgument("amqp URL: unknown parameter '" + k + "'; known: " + KnownParams());
    if (k == "cacert")
      c.cacert = v;
    else if (k == "cert")
      c.cert = v;
    else if (k == "key")
      c.key = v;
    else if (k == "verify_hostname") {
      if (v != "true" && v != "false")
        return InvalidArgument("amqp URL: verify_hostname must be true or false, got '" + v + "'");
      c.verify_hostname = v == "true";
    } else if (k == "ephemeral_expires_ms") {
      auto n = ParseCount(k, v, 1000, 4294967295LL);
      if (!n.ok()) return n.status();
      c.ephemeral_expires_ms = *n;
    } else {
      auto n = ParseCount(k, v, 1, k == "prefetch" ? 65535 : (k == "heartbeat" ? 3600 : 3600000));
      if (!n.ok()) return n.status();
      int* field = k == "heartbeat"            ? &c.heartbeat_s
                   : k == "rpc_timeout_ms"     ? &c.rpc_timeout_ms
                   : k == "connect_timeout_ms" ? &c.connect_timeout_ms
                   : k == "confirm_window"     ? &c.confirm_window
                   : k == "publish_timeout_ms" ? &c.publish_timeout_ms
                                               : &c.prefetch;
      *field = static_cast<int>(*n);
    }
  }
  for (const auto& [group, params] : group_params) {
    QueueOptions q = c.defaults;
    for (const auto& [p, v] : params)
      if (auto s = SetQueueParam(q, p, group + "." + p, v); !s.ok()) return s;
    if (auto s = ValidateQueueOptions(q, group); !s.ok()) return s;
    c.per_group[group] = q;
  }
  if (auto s = ValidateQueueOptions(c.defaults, ""); !s.ok()) return s;

  if (c.tls && c.cacert.empty())
    return InvalidArgument(
        "amqps URL needs ?cacert=PATH (rabbitmq-c 0.11 does not load the system CA store)");
  if (!c.tls && !(c.cacert.empty() && c.cert.empty() && c.key.empty()))
    return InvalidArgument("amqp URL: cacert/cert/key are for amqps:// only");
  if (c.cert.empty() != c.key.empty())
    return InvalidArgument("amqps URL: a client certificate needs both cert= and key=");
  return c;
}

}  // namespace fanflow::amqp

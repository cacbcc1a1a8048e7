// The AMQP adapter's settings, read from the bus URL:
//   amqp[s]://USER:PASS@HOST:PORT[,HOST:PORT...]/VHOST?param=value&GROUP.param=value...
// Several nodes name one cluster: quorum queues are then the default.
// Credentials missing from the URL come from FANFLOW_AMQP_USER /
// FANFLOW_AMQP_PASSWORD (else guest/guest). No broker type here.
#pragma once

#include <cstdint>
#include <map>
#include <optional>
#include <string>
#include <vector>

#include "core/bus_url.h"
#include "core/status.h"

namespace fanflow::amqp {

// How the queues of one consumer group are declared. Settable for all groups
// (`?message_ttl_ms=...`) and per group (`?workers.message_ttl_ms=...`).
struct QueueOptions {
  std::string queue_type = "classic";     // classic | quorum (the default on a cluster)
  std::optional<int64_t> message_ttl_ms;  // retention of the source queue
  std::optional<int64_t> max_length;      // messages; with `overflow`
  std::string overflow;                   // drop-head | reject-publish | reject-publish-dlx
  std::optional<int64_t> dlq_ttl_ms;      // retention of the dead-letter queue
};

struct AmqpConfig {
  std::string redacted_url;  // for logs and Describe(): no password
  bool tls = false;
  std::vector<BusNode> nodes;  // at least one, ports filled in; tried in this order
  std::string vhost = "/";
  std::string user;
  std::string password;
  std::string cacert, cert, key;  // TLS: CA bundle, optional client cert + key
  bool verify_hostname = true;

  int heartbeat_s = 10;
  int rpc_timeout_ms = 10000;
  int connect_timeout_ms = 5000;
  int confirm_window = 1000;             // unconfirmed publishes in flight per connection
  int publish_timeout_ms = 60000;        // Publish() gives up after this
  int prefetch = 0;                      // 0: the subscription's concurrency
  int64_t ephemeral_expires_ms = 60000;  // unused ephemeral queues vanish after this

  QueueOptions defaults;
  std::map<std::string, QueueOptions> per_group;

  const QueueOptions& ForGroup(const std::string& group) const;
  // The URL names several nodes of one cluster.
  bool cluster() const { return nodes.size() > 1; }
  // "host:port" of nodes[i], for logs.
  std::string NodeName(size_t i) const;
};

// Parses and validates; the error names the offending parameter.
[[nodiscard]] Result<AmqpConfig> ParseAmqpConfig(const BusUrl& url);

}  // namespace fanflow::amqp

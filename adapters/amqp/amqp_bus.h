// The RabbitMQ (AMQP 0-9-1) bus, over rabbitmq-c. No broker type appears here:
// librabbitmq is linked PRIVATE to fanflow::amqp.
//
//   amqp://USER:PASS@HOST:PORT/VHOST[?param=value&...]
//   amqps://USER:PASS@HOST:PORT/VHOST?cacert=PATH[&cert=PATH&key=PATH][&verify_hostname=false]
//   amqp://USER:PASS@HOST1:PORT1,HOST2:PORT2,HOST3:PORT3/VHOST   (a cluster; amqps too)
//
// On a cluster each connection takes the first node that answers, in the
// URL's order, and one that loses its node reconnects from the next node on,
// redeclares and resumes: unconfirmed publishes are sent again, unacked
// deliveries come again from the broker (at-least-once). Queues are then quorum
// queues (replicated) unless queue_type=classic asks otherwise.
//
// Credentials missing from the URL come from FANFLOW_AMQP_USER /
// FANFLOW_AMQP_PASSWORD, else guest/guest; they never appear in logs or errors.
// Queue parameters (all groups, or one group as GROUP.param):
//   queue_type=classic|quorum (classic; quorum when the URL names several nodes)
//   message_ttl_ms=N   max_length=N
//   overflow=drop-head|reject-publish|reject-publish-dlx (reject-publish when
//   max_length is set)   dlq_ttl_ms=N (must exceed message_ttl_ms)
// Connection parameters: heartbeat=S (10), rpc_timeout_ms (10000),
//   connect_timeout_ms (5000), confirm_window (1000), publish_timeout_ms (60000),
//   prefetch (the subscription's concurrency), ephemeral_expires_ms (60000).
// The exchanges, queues and headers are described in topics/README-amqp.md.
#pragma once

#include <memory>

#include "core/bus.h"
#include "core/bus_url.h"

namespace fanflow::amqp {

// Parses the URL, connects once (so a bad URL, unreachable broker or refused
// login fails here) and declares the exchanges.
[[nodiscard]] Result<std::unique_ptr<EventBus>> NewAmqpBus(const BusUrl& url);

}  // namespace fanflow::amqp

// RAII over one rabbitmq-c connection (TCP or TLS), plus the error mapping and
// the readiness wait every owner loop uses. Internal to the adapter.
#pragma once

#include <amqp.h>

#include <atomic>
#include <chrono>
#include <memory>
#include <string>

#include "adapters/amqp/amqp_config.h"
#include "core/status.h"

namespace fanflow::amqp {

// An eventfd another thread rings to wake an owner blocked in WaitReadable.
// Ring is thread-safe and makes a syscall only when the owner has not been
// rung since its last Drain: the owner must look at its work after each
// Drain (every owner loop does: drain in WaitReadable, then take the work).
class Waker {
 public:
  Waker();
  ~Waker();
  Waker(const Waker&) = delete;
  Waker& operator=(const Waker&) = delete;
  void Ring();
  void Drain();
  int fd() const { return fd_; }

 private:
  int fd_;
  std::atomic<bool> rung_{false};  // a write is pending that Drain has not consumed
};

// One logged-in connection. Not thread-safe: it belongs to one thread at a
// time (an owner loop, or whoever holds the mutex guarding it). The destructor
// closes politely if the link is still up, then frees everything.
class Connection {
 public:
  // Connects, logs in and negotiates `heartbeat_s` (0: none, for connections
  // used only in short synchronous calls). `name` shows in rabbitmqctl
  // list_connections. On a cluster the nodes are tried in turn from
  // config.nodes[first_node % n] until one takes the login; a refused login
  // or a bad TLS file ends the round at once (the next node would say the
  // same). Errors never contain the password.
  static Result<std::unique_ptr<Connection>> Open(const AmqpConfig& config, const std::string& name,
                                                  int heartbeat_s, size_t first_node = 0);
  ~Connection();
  Connection(const Connection&) = delete;
  Connection& operator=(const Connection&) = delete;

  amqp_connection_state_t get() const { return conn_; }
  // The index in config.nodes of the node this connection reached; an owner
  // that lost it reconnects from the next one.
  size_t node() const { return node_; }
  // False once the link failed or the server closed the connection.
  bool alive() const { return alive_; }

  [[nodiscard]] Status OpenChannel(amqp_channel_t channel);

  // Turns an RPC reply into a Status naming `what`. A server channel.close is
  // acknowledged (the channel must then be reopened); a connection-level
  // failure marks the connection dead.
  [[nodiscard]] Status Check(const amqp_rpc_reply_t& reply, amqp_channel_t channel,
                             const std::string& what);
  // The same for calls that return an int status (publish, ack, ...).
  [[nodiscard]] Status CheckCode(int code, const std::string& what);
  // For a non-delivery frame an owner loop read: handles channel.close and
  // connection.close (returning their error); other frames give Ok.
  [[nodiscard]] Status HandleFrame(const amqp_frame_t& frame);

  // Blocks until the socket may have data (true), `waker` rang or `timeout`
  // passed (false). The owner then calls the library, which also sends our
  // heartbeats and notices a broker silent for two heartbeat intervals.
  [[nodiscard]] Result<bool> WaitReadable(Waker& waker, std::chrono::milliseconds timeout);

  // How long an owner loop may sleep and still send heartbeats on time.
  std::chrono::milliseconds PollInterval() const;

 private:
  Connection() = default;
  static Result<std::unique_ptr<Connection>> OpenNode(const AmqpConfig& config, size_t node,
                                                      const std::string& name, int heartbeat_s);
  Status ServerClose(const amqp_method_t& method, amqp_channel_t channel, const std::string& what);

  amqp_connection_state_t conn_ = nullptr;
  bool alive_ = false;
  int heartbeat_s_ = 0;
  size_t node_ = 0;
};

}  // namespace fanflow::amqp

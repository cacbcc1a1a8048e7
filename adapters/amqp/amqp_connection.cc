#include "adapters/amqp/amqp_connection.h"

#include <amqp_ssl_socket.h>
#include <amqp_tcp_socket.h>
#include <poll.h>
#include <sys/eventfd.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstring>

namespace fanflow::amqp {
namespace {

std::string Bytes(amqp_bytes_t b) { return std::string(static_cast<const char*>(b.bytes), b.len); }

timeval ToTimeval(std::chrono::milliseconds ms) {
  timeval tv;
  tv.tv_sec = static_cast<time_t>(ms.count() / 1000);
  tv.tv_usec = static_cast<suseconds_t>((ms.count() % 1000) * 1000);
  return tv;
}

Status FromCode(int code, const std::string& what) {
  std::string text = what + ": " + amqp_error_string2(code);
  return code == AMQP_STATUS_TIMEOUT ? Timeout(text) : Unavailable(text);
}

// "PRECONDITION_FAILED - ... (406)" from a server close method.
std::string ServerCloseText(const amqp_method_t& method) {
  if (method.id == AMQP_CHANNEL_CLOSE_METHOD) {
    auto* m = static_cast<amqp_channel_close_t*>(method.decoded);
    return Bytes(m->reply_text) + " (" + std::to_string(m->reply_code) + ")";
  }
  if (method.id == AMQP_CONNECTION_CLOSE_METHOD) {
    auto* m = static_cast<amqp_connection_close_t*>(method.decoded);
    return Bytes(m->reply_text) + " (" + std::to_string(m->reply_code) + ")";
  }
  return "unexpected method " + std::to_string(method.id);
}

}  // namespace

// Without an eventfd (fd exhaustion) poll ignores fd -1 and owners fall back
// to waking every PollInterval().
Waker::Waker() : fd_(eventfd(0, EFD_NONBLOCK | EFD_CLOEXEC)) {}

Waker::~Waker() {
  if (fd_ >= 0) close(fd_);
}

void Waker::Ring() {
  if (rung_.exchange(true, std::memory_order_acq_rel)) return;  // the owner will look anyway
  uint64_t one = 1;
  [[maybe_unused]] ssize_t n = write(fd_, &one, sizeof one);  // EAGAIN: already ringing
}

void Waker::Drain() {
  uint64_t v;
  [[maybe_unused]] ssize_t n = read(fd_, &v, sizeof v);
  // Cleared after the read, so a ring that skipped its write is one whose work
  // the owner takes after this Drain. The exchange orders that work before it.
  rung_.exchange(false, std::memory_order_acq_rel);
}

Result<std::unique_ptr<Connection>> Connection::Open(const AmqpConfig& config,
                                                     const std::string& name, int heartbeat_s,
                                                     size_t first_node) {
  const size_t n = config.nodes.size();
  if (n == 1) return OpenNode(config, 0, name, heartbeat_s);
  std::string errors;
  for (size_t i = 0; i < n; ++i) {
    const size_t node = (first_node + i) % n;
    auto c = OpenNode(config, node, name, heartbeat_s);
    if (c.ok() || c.status().code() == StatusCode::kInvalidArgument) return c;
    errors += (errors.empty() ? "" : "; ") + c.status().message();
  }
  return Unavailable("amqp " + config.redacted_url + ": no node of the " + std::to_string(n) +
                     " answered: " + errors);
}

Result<std::unique_ptr<Connection>> Connection::OpenNode(const AmqpConfig& config, size_t node,
                                                         const std::string& name, int heartbeat_s) {
  std::unique_ptr<Connection> c(new Connection());
  c->conn_ = amqp_new_connection();
  if (!c->conn_) return Internal("amqp: out of memory creating a connection");
  c->heartbeat_s_ = heartbeat_s;
  c->node_ = node;
  const BusNode& target = config.nodes[node];
  const std::string where =
      "amqp " + (config.cluster() ? "node " + config.NodeName(node) : config.redacted_url);

  amqp_socket_t* socket = nullptr;
  if (config.tls) {
    socket = amqp_ssl_socket_new(c->conn_);
    if (!socket) return Internal(where + ": cannot create a TLS socket");
    if (amqp_ssl_socket_set_cacert(socket, config.cacert.c_str()) != AMQP_STATUS_OK)
      return InvalidArgument(where + ": cannot load CA file '" + config.cacert + "'");
    if (!config.cert.empty() &&
        amqp_ssl_socket_set_key(socket, config.cert.c_str(), config.key.c_str()) != AMQP_STATUS_OK)
      return InvalidArgument(where + ": cannot load client certificate '" + config.cert +
                             "' / key '" + config.key + "'");
    amqp_ssl_socket_set_verify_peer(socket, 1);
    amqp_ssl_socket_set_verify_hostname(socket, config.verify_hostname ? 1 : 0);
  } else {
    socket = amqp_tcp_socket_new(c->conn_);
    if (!socket) return Internal(where + ": cannot create a TCP socket");
  }
  timeval connect_tv = ToTimeval(std::chrono::milliseconds(config.connect_timeout_ms));
  if (int rc = amqp_socket_open_noblock(socket, target.host.c_str(), target.port, &connect_tv);
      rc != AMQP_STATUS_OK) {
    if (rc == AMQP_STATUS_SSL_HOSTNAME_VERIFY_FAILED)
      return FromCode(
          rc, where +
                  ": cannot connect (rabbitmq-c 0.11 matches DNS names only, not IP "
                  "addresses: connect by a name in the certificate, or set verify_hostname=false)");
    return FromCode(rc, where + ": cannot connect");
  }
  timeval rpc_tv = ToTimeval(std::chrono::milliseconds(config.rpc_timeout_ms));
  amqp_set_handshake_timeout(c->conn_, &rpc_tv);
  amqp_set_rpc_timeout(c->conn_, &rpc_tv);

  amqp_table_entry_t props[2];
  props[0].key = amqp_cstring_bytes("connection_name");
  props[0].value.kind = AMQP_FIELD_KIND_UTF8;
  props[0].value.value.bytes = amqp_cstring_bytes(name.c_str());
  props[1].key = amqp_cstring_bytes("product");
  props[1].value.kind = AMQP_FIELD_KIND_UTF8;
  props[1].value.value.bytes = amqp_cstring_bytes("fanflow");
  amqp_table_t table{2, props};
  amqp_rpc_reply_t reply = amqp_login_with_properties(
      c->conn_, config.vhost.c_str(), 0, AMQP_DEFAULT_FRAME_SIZE, heartbeat_s, &table,
      AMQP_SASL_METHOD_PLAIN, config.user.c_str(), config.password.c_str());
  c->alive_ = true;
  if (Status s = c->Check(
          reply, 0, where + ": login as '" + config.user + "' to vhost '" + config.vhost + "'");
      !s.ok()) {
    c->alive_ = false;
    return s;
  }
  return c;
}

Connection::~Connection() {
  if (alive_) amqp_connection_close(conn_, AMQP_REPLY_SUCCESS);  // bounded by the RPC timeout
  amqp_destroy_connection(conn_);
}

Status Connection::OpenChannel(amqp_channel_t channel) {
  amqp_channel_open(conn_, channel);
  return Check(amqp_get_rpc_reply(conn_), channel, "open channel " + std::to_string(channel));
}

Status Connection::Check(const amqp_rpc_reply_t& reply, amqp_channel_t channel,
                         const std::string& what) {
  switch (reply.reply_type) {
    case AMQP_RESPONSE_NORMAL:
      return Status::Ok();
    case AMQP_RESPONSE_NONE:
      alive_ = false;
      return Internal(what + ": no reply from the library");
    case AMQP_RESPONSE_LIBRARY_EXCEPTION:
      // Socket, TLS, timeout or protocol errors: the link is unusable (an RPC
      // timeout already closed the socket).
      alive_ = false;
      return FromCode(reply.library_error, what);
    case AMQP_RESPONSE_SERVER_EXCEPTION:
      return ServerClose(reply.reply, channel, what);
  }
  return Internal(what + ": unknown reply type");
}

Status Connection::CheckCode(int code, const std::string& what) {
  if (code == AMQP_STATUS_OK) return Status::Ok();
  alive_ = false;
  return FromCode(code, what);
}

Status Connection::HandleFrame(const amqp_frame_t& frame) {
  if (frame.frame_type != AMQP_FRAME_METHOD) return Status::Ok();
  const amqp_method_t& m = frame.payload.method;
  if (m.id == AMQP_CHANNEL_CLOSE_METHOD || m.id == AMQP_CONNECTION_CLOSE_METHOD)
    return ServerClose(m, frame.channel,
                       "server closed " + std::string(frame.channel ? "channel" : "connection"));
  return Status::Ok();
}

Status Connection::ServerClose(const amqp_method_t& method, amqp_channel_t channel,
                               const std::string& what) {
  const std::string text = what + ": " + ServerCloseText(method);
  if (method.id == AMQP_CHANNEL_CLOSE_METHOD) {
    amqp_channel_close_ok_t ok{};
    if (amqp_send_method(conn_, channel, AMQP_CHANNEL_CLOSE_OK_METHOD, &ok) != AMQP_STATUS_OK)
      alive_ = false;
    switch (static_cast<amqp_channel_close_t*>(method.decoded)->reply_code) {
      case AMQP_NOT_FOUND:
        return NotFound(text);
      case AMQP_PRECONDITION_FAILED:
      case AMQP_ACCESS_REFUSED:
        return InvalidArgument(text);
      default:
        return Internal(text);
    }
  }
  alive_ = false;
  if (method.id == AMQP_CONNECTION_CLOSE_METHOD) {
    amqp_connection_close_ok_t ok{};
    amqp_send_method(conn_, 0, AMQP_CONNECTION_CLOSE_OK_METHOD, &ok);
    auto code = static_cast<amqp_connection_close_t*>(method.decoded)->reply_code;
    if (code == AMQP_ACCESS_REFUSED || code == AMQP_NOT_ALLOWED) return InvalidArgument(text);
  }
  return Unavailable(text);
}

Result<bool> Connection::WaitReadable(Waker& waker, std::chrono::milliseconds timeout) {
  if (amqp_frames_enqueued(conn_) || amqp_data_in_buffer(conn_)) return true;
  pollfd fds[2] = {{amqp_get_sockfd(conn_), POLLIN, 0}, {waker.fd(), POLLIN, 0}};
  int n = poll(fds, 2, static_cast<int>(std::min(timeout, PollInterval()).count()));
  if (n < 0 && errno != EINTR) {
    alive_ = false;
    return Unavailable(std::string("amqp: poll failed: ") + std::strerror(errno));
  }
  if (fds[1].revents) waker.Drain();
  return n > 0 && fds[0].revents;
}

std::chrono::milliseconds Connection::PollInterval() const {
  // Wake in time to send our heartbeat (the library sends it on the next call).
  return heartbeat_s_ > 0 ? std::chrono::milliseconds(heartbeat_s_ * 1000 / 2)
                          : std::chrono::milliseconds(1000);
}

}  // namespace fanflow::amqp

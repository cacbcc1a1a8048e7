#include "adapters/mqtt/mqtt_client.h"

#include <mqtt/async_client.h>
#include <spdlog/spdlog.h>

#include <netdb.h>
#include <poll.h>
#include <sys/socket.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <condition_variable>
#include <deque>
#include <thread>

#include "adapters/mqtt/mqtt_paho_threads.h"

namespace fanflow::mqtt {
namespace {

using Clock = std::chrono::steady_clock;
using namespace std::chrono_literals;

// paho's error text never contains the password; the URL is always redacted.
Status FromPaho(const std::string& what, const ::mqtt::exception& e, const MqttOptions& o) {
  std::string msg = what + " (" + o.described + "): " + e.what();
  if (e.get_reason_code() >= 0x80) return Rejected(msg);
  return Unavailable(msg);
}

::mqtt::message_ptr ToPaho(const OutMessage& m) {
  ::mqtt::properties props;
  if (m.event) props.add({::mqtt::property::CONTENT_TYPE, kContentType});
  for (const auto& [k, v] : m.props) props.add({::mqtt::property::USER_PROPERTY, k, v});
  return ::mqtt::message_ptr_builder()
      .topic(m.topic)
      .payload(m.payload)
      .qos(1)
      .retained(m.retained)
      .properties(std::move(props))
      .finalize();
}

Incoming FromPaho(const ::mqtt::const_message_ptr& m) {
  Incoming in;
  in.topic = m->get_topic();
  in.payload = m->get_payload_str();
  in.duplicate = m->is_duplicate();
  const auto& props = m->get_properties();
  for (size_t i = 0, n = props.count(::mqtt::property::USER_PROPERTY); i < n; ++i) {
    auto [k, v] = ::mqtt::get<::mqtt::string_pair>(props, ::mqtt::property::USER_PROPERTY, i);
    in.props.emplace_back(std::move(k), std::move(v));
  }
  return in;
}

// paho runs every client of a process on one network thread that sees a new
// socket only when its select() over the others times out (1 s, twice per
// connect). A QoS 0 message that a live connection sends to itself wakes that
// select, so connects take milliseconds instead of 2 s. Guarded by g_nudge_mu.
std::mutex g_nudge_mu;
std::vector<std::pair<::mqtt::async_client*, std::string>> g_nudgers;  // client, its topic

void NudgeNetworkThread(const ::mqtt::async_client* except) {
  std::lock_guard<std::mutex> lock(g_nudge_mu);
  for (auto& [client, topic] : g_nudgers) {
    if (client == except) continue;
    try {
      client->publish(topic, "", 0, 0, false);
      return;
    } catch (const ::mqtt::exception&) {
      // Disconnected: try the next one.
    }
  }
}

// Whether something accepts TCP connections at host:port (within 500 ms).
bool Accepts(const std::string& host, int port) {
  addrinfo hints{}, *res = nullptr;
  hints.ai_socktype = SOCK_STREAM;
  if (getaddrinfo(host.c_str(), std::to_string(port).c_str(), &hints, &res) != 0) return false;
  bool ok = false;
  for (addrinfo* a = res; a && !ok; a = a->ai_next) {
    int fd = socket(a->ai_family, a->ai_socktype | SOCK_NONBLOCK | SOCK_CLOEXEC, a->ai_protocol);
    if (fd < 0) continue;
    if (connect(fd, a->ai_addr, a->ai_addrlen) == 0) {
      ok = true;
    } else if (errno == EINPROGRESS) {
      pollfd p{fd, POLLOUT, 0};
      int err = 0;
      socklen_t len = sizeof err;
      ok = poll(&p, 1, 500) == 1 && getsockopt(fd, SOL_SOCKET, SO_ERROR, &err, &len) == 0 && err == 0;
    }
    close(fd);
  }
  freeaddrinfo(res);
  return ok;
}

// How long the Publisher stays away from a broker that came back, so that
// consumers (reconnect backoff at most 2 s) re-subscribe before it publishes.
constexpr auto kResumeGrace = 3s;

}  // namespace

const std::string* Incoming::Prop(const std::string& name) const {
  for (const auto& [k, v] : props)
    if (k == name) return &v;
  return nullptr;
}

Connection::Connection(const MqttOptions& options, ConnectSpec spec, OnMessage on_message, OnLost on_lost)
    : options_(options), spec_(std::move(spec)), on_message_(std::move(on_message)), on_lost_(std::move(on_lost)) {}

Result<std::unique_ptr<Connection>> Connection::Create(const MqttOptions& options, ConnectSpec spec,
                                                       OnMessage on_message, OnLost on_lost) {
  std::unique_ptr<Connection> c(
      new Connection(options, std::move(spec), std::move(on_message), std::move(on_lost)));
  KeepNetworkThreadsRunning();
  try {
    // The buffer must hold a full publish window plus what queues while the
    // server's Receive Maximum holds messages back.
    auto create = ::mqtt::create_options_builder()
                      .mqtt_version(MQTTVERSION_5)
                      .send_while_disconnected(true)
                      .max_buffered_messages(2 * options.window + 100)
                      .finalize();
    c->client_ = std::make_unique<::mqtt::async_client>(options.server_uri, c->spec_.client_id, create);
  } catch (const ::mqtt::exception& e) {
    return FromPaho("mqtt client", e, options);
  }
  Connection* self = c.get();
  if (self->on_message_)
    self->client_->set_message_callback(
        [self](::mqtt::const_message_ptr m) { self->on_message_(FromPaho(m)); });
  self->client_->set_connection_lost_handler([self](const std::string& cause) {
    // Short-lived connections (snapshots, parked sessions) report the failed
    // call instead; a consumer taking over a parked session kicks them on purpose.
    const bool long_lived = self->spec_.auto_reconnect || self->on_lost_;
    spdlog::log(long_lived ? spdlog::level::warn : spdlog::level::debug, "mqtt {}: connection to {} lost ({}){}",
                self->spec_.client_id, self->options_.described, cause.empty() ? "no cause given" : cause,
                long_lived ? "; reconnecting" : "");
    if (self->on_lost_) self->on_lost_();
  });
  self->client_->set_connected_handler([self](const std::string& cause) {
    if (cause == "automatic reconnect") {
      spdlog::info("mqtt {}: reconnected to {}", self->spec_.client_id, self->options_.described);
      SendWithoutDelay(SocketsTo(self->options_.host, self->options_.port));  // the new socket too
      self->Resubscribe();
    }
  });
  return c;
}

Connection::~Connection() {
  Disconnect(false);
  client_->disable_callbacks();
}

Result<bool> Connection::Connect() {
  auto b = ::mqtt::connect_options_builder()
               .mqtt_version(MQTTVERSION_5)
               .clean_start(spec_.clean_start)
               .connect_timeout(options_.connect_timeout)
               .keep_alive_interval(20s)
               .automatic_reconnect(spec_.auto_reconnect);
  if (spec_.auto_reconnect) b.automatic_reconnect(1s, 2s);
  if (!options_.user.empty()) b.user_name(options_.user).password(options_.password);
  if (options_.tls) {
    auto ssl = ::mqtt::ssl_options_builder().enable_server_cert_auth(true).verify(true);
    if (!options_.cacert.empty()) ssl.trust_store(options_.cacert);
    if (!options_.cert.empty()) ssl.key_store(options_.cert).private_key(options_.key);
    ssl.error_handler([](const std::string& e) { spdlog::warn("mqtt TLS: {}", e); });
    b.ssl(ssl.finalize());
  }
  auto opts = b.finalize();
  // paho-mqtt-cpp 1.2 drops properties given to the builder: set them on the result.
  ::mqtt::properties props;
  if (spec_.session_expiry_s)
    props.add({::mqtt::property::SESSION_EXPIRY_INTERVAL, static_cast<int>(spec_.session_expiry_s)});
  if (spec_.receive_maximum) props.add({::mqtt::property::RECEIVE_MAXIMUM, spec_.receive_maximum});
  opts.set_properties(props);
  // This connection's socket is the one to the broker that the connect adds.
  const std::vector<SocketId> before = SocketsTo(options_.host, options_.port);
  try {
    auto tok = client_->connect(opts);
    const auto deadline = Clock::now() + options_.connect_timeout + 2s;
    // The socket is usually in paho's set within a millisecond: look early,
    // then every 10 ms.
    std::chrono::milliseconds pause = 1ms;
    while (!tok->wait_for(pause)) {
      if (Clock::now() > deadline) return Timeout("mqtt connect to " + options_.described + " timed out");
      NudgeNetworkThread(client_.get());
      WakeSleepingReceiveThread();
      pause = std::min<std::chrono::milliseconds>(2 * pause, 10ms);
    }
    std::vector<SocketId> added = SocketsAddedTo(options_.host, options_.port, before);
    SendWithoutDelay(added);
    {
      std::lock_guard<std::mutex> lock(mu_);
      sockets_ = std::move(added);
    }
    const auto response = tok->get_connect_response();
    const auto& props = response.get_properties();
    server_receive_maximum_ = props.contains(::mqtt::property::RECEIVE_MAXIMUM)
                                  ? ::mqtt::get<int>(props, ::mqtt::property::RECEIVE_MAXIMUM)
                                  : 65535;
    return response.is_session_present();
  } catch (const ::mqtt::exception& e) {
    return FromPaho("mqtt connect as " + spec_.client_id, e, options_);
  }
}

Status Connection::Subscribe(const std::vector<std::string>& filters, bool remember) {
  if (filters.empty()) return Status::Ok();
  try {
    auto tok = client_->subscribe(::mqtt::string_collection::create(filters),
                                  std::vector<int>(filters.size(), 1));
    if (Status s = AwaitRoundTrip(*tok, "subscribe"); !s.ok()) return s;
    const auto response = tok->get_subscribe_response();
    for (auto rc : response.get_reason_codes())
      if (rc >= 0x80) return Rejected("mqtt subscribe refused (reason " + std::to_string(rc) + ")");
  } catch (const ::mqtt::exception& e) {
    return FromPaho("mqtt subscribe", e, options_);
  }
  if (remember) {
    std::lock_guard<std::mutex> lock(mu_);
    remembered_.insert(remembered_.end(), filters.begin(), filters.end());
  }
  return Status::Ok();
}

Status Connection::Unsubscribe(const std::vector<std::string>& filters) {
  if (filters.empty()) return Status::Ok();
  try {
    auto tok = client_->unsubscribe(::mqtt::string_collection::create(filters));
    if (Status s = AwaitRoundTrip(*tok, "unsubscribe"); !s.ok()) return s;
  } catch (const ::mqtt::exception& e) {
    if (e.get_reason_code() == ::mqtt::NO_SUBSCRIPTION_FOUND) return Status::Ok();  // the goal anyway
    return FromPaho("mqtt unsubscribe", e, options_);
  }
  return Status::Ok();
}

Status Connection::PublishAndWait(const OutMessage& message) {
  try {
    auto tok = client_->publish(ToPaho(message));
    if (Status s = AwaitRoundTrip(*tok, "publish"); !s.ok()) return s;
  } catch (const ::mqtt::exception& e) {
    return FromPaho("mqtt publish to " + message.topic, e, options_);
  }
  return Status::Ok();
}

Status Connection::AwaitRoundTrip(::mqtt::token& tok, const char* what) {
  const auto deadline = Clock::now() + options_.connect_timeout;
  while (!tok.wait_for(20ms)) {
    // paho keeps the token of a connection that was lost (e.g. another client
    // took the session over) pending until the timeout: do not wait for it.
    if (!spec_.auto_reconnect && !client_->is_connected())
      return Unavailable(std::string("mqtt ") + what + ": connection lost (" + options_.described + ")");
    if (Clock::now() > deadline) return Timeout(std::string("mqtt ") + what + " timed out");
  }
  // The broker's next write (a waiter's first delivery after its SUBACK) may
  // wait behind the ACK of this answer on a broker with Nagle on (stock Mosquitto).
  AcknowledgeNow();
  return Status::Ok();
}

void Connection::AcknowledgeNow() {
  std::lock_guard<std::mutex> lock(mu_);
  mqtt::AcknowledgeNow(sockets_);
}

// Runs on paho's thread: queue the subscribe, never wait for it.
void Connection::Resubscribe() {
  std::vector<std::string> filters;
  {
    std::lock_guard<std::mutex> lock(mu_);
    filters = remembered_;
  }
  if (filters.empty()) return;
  try {
    client_->subscribe(::mqtt::string_collection::create(filters), std::vector<int>(filters.size(), 1));
  } catch (const ::mqtt::exception& e) {
    spdlog::error("mqtt {}: re-subscribe failed: {}", spec_.client_id, e.what());
  }
}

void Connection::Disconnect(bool end_session) {
  try {
    auto opts = ::mqtt::disconnect_options_builder().timeout(2s).finalize();
    // Set on the finished options: paho-mqtt-cpp 1.2 loses builder properties.
    if (end_session) opts.set_properties({{::mqtt::property::SESSION_EXPIRY_INTERVAL, 0}});
    // Also stops automatic reconnect when the link is already down.
    client_->disconnect(opts)->wait_for(5s);
  } catch (const ::mqtt::exception&) {
    // Not connected: nothing to end.
  }
}

Publisher::Publisher(const MqttOptions& options, std::function<void()> on_broker_back)
    : options_(options), on_broker_back_(std::move(on_broker_back)) {}

Result<std::unique_ptr<Publisher>> Publisher::Open(const MqttOptions& options,
                                                   std::function<void()> on_broker_back) {
  std::unique_ptr<Publisher> p(new Publisher(options, std::move(on_broker_back)));
  // A clean session each time: see the class comment.
  Publisher* self = p.get();
  auto conn = Connection::Create(
      options, {UniqueClientId("pub"), true, 0, 0, false}, [](Incoming) {}, [self] {
        std::lock_guard<std::mutex> lock(self->mu_);
        self->lost_ = true;
        self->wake_.notify_all();
      });
  if (!conn.ok()) return conn.status();
  p->conn_ = std::move(conn).value();
  if (auto s = p->conn_->Connect(); !s.ok()) return s.status();
  p->window_ = std::min(options.window, p->conn_->server_receive_maximum());
  p->slots_ = std::make_unique<PublishWindow>(p->window_);
  if (p->window_ < options.window)
    spdlog::debug("mqtt: publish window {} (the broker's Receive Maximum) instead of {}", p->window_,
                  options.window);
  p->nudge_topic_ = "fanflow/nudge/" + p->conn_->client_id();
  if (auto s = p->conn_->Subscribe({p->nudge_topic_}, true); !s.ok()) return s;
  p->reconnector_ = std::thread([self] { self->RunReconnects(); });
  std::lock_guard<std::mutex> lock(g_nudge_mu);
  g_nudgers.emplace_back(p->conn_->client_.get(), p->nudge_topic_);
  return p;
}

Publisher::~Publisher() {
  {
    std::lock_guard<std::mutex> lock(mu_);
    closing_ = true;
  }
  wake_.notify_all();
  if (reconnector_.joinable()) reconnector_.join();
  {
    std::lock_guard<std::mutex> lock(g_nudge_mu);
    std::erase_if(g_nudgers, [&](const auto& n) { return n.first == conn_->client_.get(); });
  }
  conn_->Disconnect(true);
}

void Publisher::RunReconnects() {
  std::unique_lock<std::mutex> lock(mu_);
  while (true) {
    wake_.wait(lock, [&] { return lost_ || closing_; });
    if (closing_) return;
    if (!Accepts(options_.host, options_.port)) {
      wake_.wait_for(lock, 250ms, [&] { return closing_; });
      continue;
    }
    if (on_broker_back_) {
      lock.unlock();
      on_broker_back_();
      lock.lock();
    }
    if (wake_.wait_for(lock, kResumeGrace, [&] { return closing_; })) return;
    lost_ = false;
    lock.unlock();
    auto resumed = conn_->Connect();
    if (resumed.ok()) {
      conn_->Resubscribe();
      spdlog::info("mqtt {}: reconnected to {} ({} session)", conn_->client_id(), options_.described,
                   *resumed ? "resumed" : "new");
    }
    lock.lock();
    if (!resumed.ok()) {
      spdlog::warn("mqtt {}: reconnect failed: {}", conn_->client_id(), resumed.status().ToString());
      lost_ = true;
      wake_.wait_for(lock, 500ms, [&] { return closing_; });
    }
  }
}

namespace {

// One PublishAsync call: its messages not settled yet and the first error.
struct AsyncPublishes {
  std::mutex mu;
  size_t remaining;  // guarded by mu
  Status first_error;  // guarded by mu
  std::function<void(const Status&)> done;

  // Settles `n` messages with `s`; the call's last one runs `done`.
  void Settle(const Status& s, size_t n = 1) {
    Status result;
    {
      std::lock_guard<std::mutex> lock(mu);
      if (first_error.ok() && !s.ok()) first_error = s;
      remaining -= n;
      if (remaining > 0) return;
      result = first_error;
    }
    done(result);
  }
};

// paho's listener of one asynchronous publish: frees its window slot, settles
// its message, and deletes itself (paho calls it exactly once, after the PUBACK
// or the failure).
class PublishListener final : public ::mqtt::iaction_listener {
 public:
  PublishListener(std::shared_ptr<AsyncPublishes> call, Connection& conn, PublishWindow& slots, std::string topic)
      : call_(std::move(call)), conn_(conn), slots_(slots), topic_(std::move(topic)) {}

 private:
  void on_success(const ::mqtt::token&) override {
    conn_.AcknowledgeNow();  // the broker may hold further PUBACKs behind this one
    Finish(Status::Ok());
  }
  void on_failure(const ::mqtt::token& tok) override {
    Finish(Unavailable("mqtt publish to " + topic_ + " failed (reason code " +
                       std::to_string(tok.get_reason_code()) + ")"));
  }
  void Finish(const Status& s) {
    slots_.Release();
    call_->Settle(s);
    delete this;
  }

  const std::shared_ptr<AsyncPublishes> call_;
  Connection& conn_;
  PublishWindow& slots_;
  const std::string topic_;
};

}  // namespace

void Publisher::PublishAsync(const std::vector<OutMessage>& messages, std::function<void(const Status&)> done) {
  if (messages.empty()) return done(Status::Ok());
  auto call = std::make_shared<AsyncPublishes>();
  call->remaining = messages.size();
  call->done = std::move(done);
  const auto deadline = Clock::now() + options_.publish_timeout;
  for (size_t i = 0; i < messages.size(); ++i) {
    if (!slots_->AcquireUntil(deadline))
      return call->Settle(Timeout("mqtt publish: the publish window stayed full for publish_timeout"),
                          messages.size() - i);
    auto* listener = new PublishListener(call, *conn_, *slots_, messages[i].topic);
    try {
      conn_->client_->publish(ToPaho(messages[i]), nullptr, *listener);
    } catch (const ::mqtt::exception& e) {
      delete listener;
      slots_->Release();
      return call->Settle(FromPaho("mqtt publish to " + messages[i].topic, e, options_), messages.size() - i);
    }
  }
}

Status Publisher::Publish(const std::vector<OutMessage>& messages) {
  const auto deadline = Clock::now() + options_.publish_timeout;
  auto send = [&](const OutMessage& m) -> Result<::mqtt::delivery_token_ptr> {
    while (true) {
      try {
        return conn_->client_->publish(ToPaho(m));
      } catch (const ::mqtt::exception& e) {
        if (Clock::now() >= deadline) return FromPaho("mqtt publish to " + m.topic, e, options_);
        std::this_thread::sleep_for(50ms);
      }
    }
  };
  // Waits for one PUBACK, sending the message again if paho gave up on it.
  auto await = [&](const OutMessage& m, ::mqtt::delivery_token_ptr tok) -> Status {
    while (true) {
      try {
        if (tok->wait_until(deadline)) {
          conn_->AcknowledgeNow();  // the broker may hold further PUBACKs behind this one
          return Status::Ok();
        }
        return Timeout("mqtt publish to " + m.topic + ": no PUBACK within publish_timeout (" +
                       options_.described + ")");
      } catch (const ::mqtt::exception& e) {
        if (e.get_reason_code() >= 0x80 || Clock::now() >= deadline)
          return FromPaho("mqtt publish to " + m.topic, e, options_);
        spdlog::debug("mqtt publish to {} failed ({}); sending it again", m.topic, e.what());
        std::this_thread::sleep_for(100ms);
        auto again = send(m);
        if (!again.ok()) return again.status();
        tok = *again;
      }
    }
  };

  std::deque<std::pair<size_t, ::mqtt::delivery_token_ptr>> pending;
  Status result;
  auto settle_front = [&] {
    auto [i, tok] = std::move(pending.front());
    pending.pop_front();
    Status s = result.ok() ? await(messages[i], tok) : result;
    slots_->Release();
    if (result.ok()) result = s;
  };
  for (size_t i = 0; i < messages.size() && result.ok(); ++i) {
    // A full window: settle our own oldest publish first, else wait for others'.
    bool have_slot = slots_->TryAcquire();
    while (!have_slot && !pending.empty() && result.ok()) {
      settle_front();
      have_slot = slots_->TryAcquire();
    }
    if (!result.ok()) break;
    if (!have_slot && !slots_->AcquireUntil(deadline)) {
      result = Timeout("mqtt publish: the publish window stayed full for publish_timeout");
      break;
    }
    auto tok = send(messages[i]);
    if (!tok.ok()) {
      slots_->Release();
      result = tok.status();
      break;
    }
    pending.emplace_back(i, *tok);
  }
  while (!pending.empty()) settle_front();
  return result;
}

}  // namespace fanflow::mqtt

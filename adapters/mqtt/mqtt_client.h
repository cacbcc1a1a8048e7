// The adapter's contact with paho: one connection with fanflow's connect policy
// (MQTT 5, QoS 1, automatic reconnect with re-subscribe) and a publisher that
// keeps a bounded window of QoS 1 publishes. paho exceptions stop here.
#pragma once

#include <atomic>
#include <chrono>
#include <condition_variable>
#include <cstdint>
#include <functional>
#include <memory>
#include <mutex>
#include <string>
#include <thread>
#include <utility>
#include <vector>

#include "adapters/mqtt/mqtt_options.h"
#include "adapters/mqtt/mqtt_sockets.h"
#include "core/status.h"

namespace mqtt {
class async_client;
class token;
}  // namespace mqtt

namespace fanflow::mqtt {

// A received message, copied out of paho.
struct Incoming {
  std::string topic;
  std::string payload;
  std::vector<std::pair<std::string, std::string>> props;  // user properties
  bool duplicate = false;

  const std::string* Prop(const std::string& name) const;
};

// A QoS 1 message to send. `event` marks a CloudEvent (content type set).
struct OutMessage {
  std::string topic;
  std::string payload;
  std::vector<std::pair<std::string, std::string>> props;
  bool retained = false;
  bool event = true;
};

struct ConnectSpec {
  std::string client_id;
  bool clean_start = true;
  uint32_t session_expiry_s = 0;
  int receive_maximum = 0;  // 0: paho's default (65535)
  // paho reconnects by itself (backoff 1-2 s) and re-subscribes; off for the
  // Publisher, which reconnects on its own terms.
  bool auto_reconnect = true;
};

// One MQTT 5 client connection. `on_message` runs on paho's callback thread,
// which every client of the process shares: it must only hand the message over,
// never block. Subscriptions made with `remember` are renewed after an automatic
// reconnect. Thread-safe; destroying it disconnects.
class Connection {
 public:
  using OnMessage = std::function<void(Incoming)>;
  using OnLost = std::function<void()>;  // paho's thread too
  [[nodiscard]] static Result<std::unique_ptr<Connection>> Create(const MqttOptions& options,
                                                                  ConnectSpec spec, OnMessage on_message,
                                                                  OnLost on_lost = nullptr);
  ~Connection();
  Connection(const Connection&) = delete;
  Connection& operator=(const Connection&) = delete;

  // Connects (bounded by connect_timeout); the value says whether the broker
  // resumed a stored session.
  [[nodiscard]] Result<bool> Connect();
  // The Receive Maximum of the broker's last CONNACK (65535 when it sent none):
  // how many QoS 1 publishes it takes unacknowledged from this client.
  int server_receive_maximum() const { return server_receive_maximum_.load(); }
  [[nodiscard]] Status Subscribe(const std::vector<std::string>& filters, bool remember);
  [[nodiscard]] Status Unsubscribe(const std::vector<std::string>& filters);
  // Sends one message and waits for its PUBACK (bounded by connect_timeout).
  [[nodiscard]] Status PublishAndWait(const OutMessage& message);
  // Disconnects; `end_session` makes the broker drop the session at once.
  void Disconnect(bool end_session);
  // Sends the TCP acknowledgement this connection's socket may be holding
  // back, so a broker with Nagle on sends what it held (mqtt_sockets.h).
  void AcknowledgeNow();
  const std::string& client_id() const { return spec_.client_id; }

 private:
  friend class Publisher;
  Connection(const MqttOptions& options, ConnectSpec spec, OnMessage on_message, OnLost on_lost);
  void Resubscribe();
  // Waits for a round trip's token (bounded by connect_timeout).
  [[nodiscard]] Status AwaitRoundTrip(::mqtt::token& tok, const char* what);

  // Immutable after construction.
  const MqttOptions options_;
  const ConnectSpec spec_;
  const OnMessage on_message_;
  const OnLost on_lost_;
  std::unique_ptr<::mqtt::async_client> client_;
  std::atomic<int> server_receive_maximum_{65535};
  std::mutex mu_;
  std::vector<std::string> remembered_;  // guarded by mu_
  std::vector<SocketId> sockets_;        // opened by the last Connect; guarded by mu_
};

// The publishes a Publisher may have unacknowledged, shared by its callers. A
// mutex and a condition variable rather than std::counting_semaphore: in
// libstdc++ 12 a timed acquire of the semaphore polls with growing sleeps,
// which held publishes back for milliseconds once the window was full.
class PublishWindow {
 public:
  explicit PublishWindow(int slots) : free_(slots) {}
  bool TryAcquire() {
    std::lock_guard<std::mutex> lock(mu_);
    if (free_ == 0) return false;
    --free_;
    return true;
  }
  bool AcquireUntil(std::chrono::steady_clock::time_point deadline) {
    std::unique_lock<std::mutex> lock(mu_);
    if (!freed_.wait_until(lock, deadline, [&] { return free_ > 0; })) return false;
    --free_;
    return true;
  }
  void Release() {
    {
      std::lock_guard<std::mutex> lock(mu_);
      ++free_;
    }
    freed_.notify_one();
  }

 private:
  std::mutex mu_;
  std::condition_variable freed_;
  int free_;  // guarded by mu_
};

// Publishes QoS 1 messages and returns once every one is PUBACKed. At most
// `window` publishes are outstanding per Publisher, whoever calls, so paho's
// buffer (sized above the window) never overflows with -12, and never more than
// the broker's Receive Maximum (Mosquitto's max_inflight_messages, 20 by
// default): paho holds a publish past that limit in its queue, and sends it
// only when its send thread next wakes, on a new publish or after up to 1 s;
// a window of 100 against a stock Mosquitto ran at 20 messages a second
// whenever the caller then waited for PUBACKs. A publish that fails
// is sent again until publish_timeout. Its session is not kept over a
// reconnect: paho then fails the publishes that were in flight and they are sent
// again as new ones. (Resuming the session made paho resend them itself, after
// which Mosquitto 2.0.11 closed the connection for a protocol error, again on
// every reconnect, and the publisher never got its PUBACKs.)
// Reconnects are its own: Mosquitto 2.0 does not restore shared subscriptions
// from its persistence file, so after a broker restart a group has no
// subscriber until its consumers are back (they retry every 1-2 s). The
// Publisher waits until the broker accepts connections, then kResumeGrace
// more, before it reconnects and paho sends what waited; `on_broker_back` runs
// first, on the Publisher's reconnect thread. Each PUBACK it waits for is
// followed by Connection::AcknowledgeNow. Thread-safe.
class Publisher {
 public:
  [[nodiscard]] static Result<std::unique_ptr<Publisher>> Open(const MqttOptions& options,
                                                               std::function<void()> on_broker_back);
  ~Publisher();
  [[nodiscard]] Status Publish(const std::vector<OutMessage>& messages);
  // Publishes without waiting for the PUBACKs: `done` runs once every message
  // of the call is PUBACKed (ok) or failed (the first error), on paho's thread,
  // so it must not block. A full window waits here, as for Publish. Unlike
  // Publish it never sends a failed message again: that is the caller's call.
  void PublishAsync(const std::vector<OutMessage>& messages, std::function<void(const Status&)> done);
  int server_receive_maximum() const { return conn_->server_receive_maximum(); }  // see Connection

 private:
  Publisher(const MqttOptions& options, std::function<void()> on_broker_back);
  void RunReconnects();

  const MqttOptions options_;
  const std::function<void()> on_broker_back_;
  std::unique_ptr<Connection> conn_;
  std::string nudge_topic_;  // see NudgeNetworkThread in the .cc
  int window_ = 0;  // min(window, the broker's Receive Maximum at the first connect)
  std::unique_ptr<PublishWindow> slots_;
  std::mutex mu_;
  std::condition_variable wake_;
  bool lost_ = false;     // guarded by mu_
  bool closing_ = false;  // guarded by mu_
  std::thread reconnector_;
};

}  // namespace fanflow::mqtt

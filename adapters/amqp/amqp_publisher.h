// Confirmed publishing over one connection owned by one I/O thread.
#pragma once

#include <condition_variable>
#include <deque>
#include <functional>
#include <map>
#include <memory>
#include <mutex>
#include <string>
#include <thread>
#include <vector>

#include "adapters/amqp/amqp_config.h"
#include "adapters/amqp/amqp_connection.h"
#include "adapters/amqp/amqp_message.h"

namespace fanflow::amqp {

// Publishes with publisher confirms in a bounded window
// (config.confirm_window unconfirmed messages at most), so concurrent callers
// share round trips instead of paying one each.
//
// Threads: Publish() is thread-safe and blocks its caller until every message
// of the call is confirmed (or nacked, or config.publish_timeout_ms passed). The
// connection belongs to the I/O thread alone, which connects lazily, services
// heartbeats, and on a lost link reconnects with backoff (to the next node of
// a cluster) and republishes what was not confirmed (so a message may reach
// the broker twice: at-least-once).
class Publisher {
 public:
  explicit Publisher(AmqpConfig config);
  ~Publisher();  // stops the I/O thread; no Publish() may be running
  Publisher(const Publisher&) = delete;
  Publisher& operator=(const Publisher&) = delete;

  [[nodiscard]] Status Publish(std::vector<Outgoing> messages);

  // Publishes without waiting: `done` runs once every message of the call is
  // confirmed (ok) or one was nacked, on the I/O thread, so it must not block;
  // or with Unavailable when the publisher is destroyed first. No timeout: on
  // a lost link the messages are sent again once it is back.
  void PublishAsync(std::vector<Outgoing> messages, std::function<void(const Status&)> done);

 private:
  // One Publish() call. Guarded by mu_.
  struct Batch {
    size_t remaining = 0;
    Status status;
    bool abandoned = false;        // the caller gave up: don't (re)send what is left
    std::condition_variable done;  // remaining reached 0: wakes only this caller
    std::function<void(const Status&)> on_done;  // PublishAsync: called instead
  };
  struct Item {
    std::shared_ptr<Batch> batch;
    Outgoing out;
  };

  void Run();
  bool Connect();         // I/O thread; false while the broker is unreachable
  Status SendSome();      // I/O thread: fills the confirm window
  Status ReadConfirms();  // I/O thread: applies acks / nacks that arrived
  // Requires mu_. Adds the batches it completed to `finished`, to be woken.
  void Settle(uint64_t tag, bool multiple, bool ack, std::vector<std::shared_ptr<Batch>>& finished);
  // Without mu_: wakes the callers of `finished` or runs their callbacks.
  static void Finish(const std::vector<std::shared_ptr<Batch>>& finished);
  void Disconnect(const Status& why);  // I/O thread: requeues the unconfirmed

  const AmqpConfig config_;
  Waker waker_;

  std::mutex mu_;
  std::condition_variable work_;  // the I/O thread, while unconnected, has work
  // Guarded by mu_.
  bool stopping_ = false;
  std::deque<Item> queue_;                // not sent on the current connection yet
  std::map<uint64_t, Item> unconfirmed_;  // publish sequence number -> item
  Status last_error_;                     // why the link is down, for callers that time out

  // I/O thread only.
  std::unique_ptr<Connection> conn_;
  uint64_t next_seq_ = 1;
  size_t next_node_ = 0;  // the node to try first: the one after a node lost
  int failures_ = 0;      // consecutive connect failures, for the backoff
  std::thread thread_;    // last: starts after the state above exists
};

}  // namespace fanflow::amqp

// What `fanflow serve` answers over HTTP, without the HTTP server: starting a
// batch (POST /v1/batches, optionally waiting for its batch_complete), one
// batch's state or explanation, lists, the dashboard's snapshot and the
// metrics. State comes from a read-only view of the aggregator's ledger plus
// the batch_complete and alarm events it hears on the bus (a private ephemeral
// group); it publishes only start_fanout events, for requests it checked.
// Borrows the bus (it must outlive the service). Thread-safe: handlers run on
// the HTTP server's threads.
#pragma once

#include <chrono>
#include <condition_variable>
#include <deque>
#include <functional>
#include <map>
#include <memory>
#include <mutex>
#include <nlohmann/json.hpp>
#include <string>

#include "core/bus.h"
#include "core/event.h"
#include "http/http_server.h"
#include "pipeline/ledger_reader.h"
#include "pipeline/metrics.h"
#include "pipeline/source.h"

namespace fanflow {

struct BatchServiceOptions {
  std::string ledger_path;                    // the aggregator's --state, read-only
  SourcePolicy files;                         // what a POSTed jsonl: source may name (--data-dir)
  std::chrono::seconds max_wait{600};         // ?wait= at most
  int max_waiters = 8;                        // requests blocked in ?wait= at once
  int64_t recent = 50;                        // decided batches listed, at most
  std::function<std::string()> new_batch_id;  // for a POST without batch_id
};

class BatchService {
 public:
  [[nodiscard]] static Result<std::unique_ptr<BatchService>> Start(EventBus& bus,
                                                                   BatchServiceOptions options);
  ~BatchService();

  HttpResponse Submit(const HttpRequest& request);     // POST /v1/batches[?wait=S]
  HttpResponse Describe(const HttpRequest& request);   // GET /v1/batches/{id}[?explain=1]
  HttpResponse List(const HttpRequest& request);       // GET /v1/batches[?state=]
  HttpResponse Dashboard(const HttpRequest& request);  // GET /v1/dashboard
  HttpResponse Cancel(const HttpRequest& request);     // POST /v1/batches/{id}/cancel
  std::string RenderMetrics();                         // GET /metrics
  // Ends every ?wait= now (each answers 202 with the batch's status) and
  // every later one at once: serve is stopping.
  void StopWaiting();

 private:
  BatchService(EventBus& bus, BatchServiceOptions options, std::unique_ptr<LedgerReader> ledger);
  Verdict Hear(const Delivery& delivery);
  // The batch's record in the ledger; nullopt when unknown. Locks ledger_mu_.
  Result<std::optional<BatchRecord>> Find(const std::string& batch_id);
  // Blocks until batch_id is decided or `wait` passes; its batch_complete, if any.
  std::optional<Event> AwaitComplete(const std::string& batch_id, std::chrono::milliseconds wait);
  // What GET answers for a batch known to the ledger.
  nlohmann::json Summary(const BatchRecord& b);
  // Queue statistics, asked of the bus at most once a second.
  nlohmann::json Queues();
  void Count(int status);

  EventBus& bus_;
  const BatchServiceOptions options_;

  std::mutex ledger_mu_;
  std::unique_ptr<LedgerReader> ledger_;  // guarded by ledger_mu_

  std::mutex mu_;
  std::condition_variable decided_;
  // Guarded by mu_.
  std::map<std::string, Event> completes_;           // batch_complete heard, the latest kept
  std::deque<std::string> complete_order_;           // to forget the oldest
  std::map<std::string, nlohmann::json> submitted_;  // requests published, not yet in the ledger
  std::map<std::string, nlohmann::json> alarms_;     // raised, by alarm key
  int waiters_ = 0;
  bool stopping_ = false;
  nlohmann::json queues_;
  std::chrono::steady_clock::time_point queues_at_;

  Metrics metrics_;
  std::unique_ptr<Subscription> subscription_;  // last: stops before the state goes
};

}  // namespace fanflow

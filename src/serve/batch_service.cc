#include "serve/batch_service.h"

#include <spdlog/spdlog.h>
#include <unistd.h>

#include <algorithm>
#include <random>

#include "core/bounded_json.h"
#include "core/printable.h"
#include "pipeline/aggregator.h"
#include "pipeline/batch_report.h"
#include "pipeline/cancel.h"
#include "serve/batch_request.h"

namespace fanflow {
namespace {

using nlohmann::json;
using Clock = std::chrono::steady_clock;

constexpr size_t kCompletesKept = 10000;
// How often a waiting POST also asks the ledger, for a batch_complete the
// subscription did not hear (published before serve subscribed).
constexpr std::chrono::milliseconds kLedgerPoll{500};
// How long POST .../cancel waits for the aggregator's batch_complete.
constexpr std::chrono::milliseconds kCancelWait{10000};

int64_t NowMs() {
  return std::chrono::duration_cast<std::chrono::milliseconds>(
             std::chrono::system_clock::now().time_since_epoch())
      .count();
}

HttpResponse Json(int status, const json& body) {
  HttpResponse r;
  r.status = status;
  r.body = body.dump(-1, ' ', false, json::error_handler_t::replace);
  return r;
}

HttpResponse CompleteResponse(const Event& complete) {
  HttpResponse r;
  r.content_type = "application/cloudevents+json";
  r.body = EncodeEvent(complete);
  return r;
}

}  // namespace

Result<std::unique_ptr<BatchService>> BatchService::Start(EventBus& bus,
                                                          BatchServiceOptions options) {
  auto ledger = LedgerReader::Open(options.ledger_path, "--ledger");
  if (!ledger.ok()) return ledger.status();
  std::unique_ptr<BatchService> s(
      new BatchService(bus, std::move(options), std::move(ledger).value()));
  SubscribeOptions o;
  o.group =
      "serve-" + std::to_string(getpid()) + "-" + std::to_string(std::random_device{}() % 1000000);
  o.event_types = {kBatchComplete, kAlarm};
  o.ephemeral = true;
  auto sub = bus.Subscribe(o, [svc = s.get()](const Delivery& d) { return svc->Hear(d); });
  if (!sub.ok()) return sub.status();
  s->subscription_ = std::move(sub).value();
  return s;
}

BatchService::BatchService(EventBus& bus, BatchServiceOptions options,
                           std::unique_ptr<LedgerReader> ledger)
    : bus_(bus), options_(std::move(options)), ledger_(std::move(ledger)) {}

BatchService::~BatchService() { subscription_.reset(); }

void BatchService::StopWaiting() {
  std::lock_guard<std::mutex> lock(mu_);
  stopping_ = true;
  decided_.notify_all();
}

Verdict BatchService::Hear(const Delivery& d) {
  auto e = DecodeEvent(d.message.body);
  if (!e.ok()) return Verdict::Ack();  // a copy: the aggregator's group dead-letters the original
  std::lock_guard<std::mutex> lock(mu_);
  if (e->type == kAlarm) {
    const std::string key = e->subject + "/" + e->data.value("alarm", "");
    if (e->data.value("state", "") == "raised")
      alarms_[key] = {{"queue", e->subject},
                      {"alarm", e->data["alarm"]},
                      {"message", e->data["message"]},
                      {"raised_at", e->data.value("raised_at", e->time)}};
    else
      alarms_.erase(key);
    if (alarms_.size() > 1000) alarms_.erase(alarms_.begin());
    return Verdict::Ack();
  }
  if (!completes_.count(e->subject)) complete_order_.push_back(e->subject);
  completes_[e->subject] = std::move(e).value();
  while (complete_order_.size() > kCompletesKept) {
    completes_.erase(complete_order_.front());
    complete_order_.pop_front();
  }
  decided_.notify_all();
  return Verdict::Ack();
}

Result<std::optional<BatchRecord>> BatchService::Find(const std::string& batch_id) {
  std::lock_guard<std::mutex> lock(ledger_mu_);
  return ledger_->Get(batch_id);
}

std::optional<Event> BatchService::AwaitComplete(const std::string& batch_id,
                                                 std::chrono::milliseconds wait) {
  const auto until = Clock::now() + wait;
  while (true) {
    {
      std::unique_lock<std::mutex> lock(mu_);
      decided_.wait_until(lock, std::min(until, Clock::now() + kLedgerPoll),
                          [&] { return stopping_ || completes_.count(batch_id) > 0; });
      if (auto it = completes_.find(batch_id); it != completes_.end()) return it->second;
      if (stopping_) return std::nullopt;
    }
    auto b = Find(batch_id);
    if (b.ok() && b.value() && b.value()->complete) {
      auto e = DecodeEvent(*b.value()->complete);
      if (e.ok()) return std::move(e).value();
    }
    if (Clock::now() >= until) return std::nullopt;
  }
}

json BatchService::Summary(const BatchRecord& b) {
  std::map<std::string, Ledger::Outstanding> leased;
  {
    std::lock_guard<std::mutex> lock(ledger_mu_);
    if (auto o = ledger_->OutstandingByBatch(); o.ok()) leased = std::move(o).value();
  }
  auto it = leased.find(b.batch_id);
  return BatchSummary(b, it == leased.end() ? nullptr : &it->second, NowMs());
}

void BatchService::Count(int status) {
  metrics_.AddToCounter("fanflow_serve_requests_total",
                        "HTTP requests answered by fanflow serve, by status",
                        {{"code", std::to_string(status)}}, 1);
}

HttpResponse BatchService::Submit(const HttpRequest& r) {
  HttpResponse out = [&]() -> HttpResponse {
    auto wait = WaitOf(r, options_.max_wait);
    if (!wait.ok()) return JsonError(400, wait.status().message());
    auto body = ParseBoundedJson(r.body, "body");
    if (!body.ok()) return JsonError(400, body.status().message());
    auto start = StartFromBody(body.value(), options_.files, options_.new_batch_id);
    if (!start.ok()) return JsonError(400, start.status().message());
    const Event& s = start.value();
    const json request = BatchRequestOf(s.data);
    auto known = Find(s.subject);
    if (!known.ok()) return JsonError(503, "ledger: " + known.status().message());
    {
      std::lock_guard<std::mutex> lock(mu_);
      const json* prior = known.value() ? &known.value()->request : nullptr;
      if (auto it = submitted_.find(s.subject); !prior && it != submitted_.end())
        prior = &it->second;
      if (prior && *prior != request)
        return Json(409,
                    {{"error", "batch_id: batch '" + s.subject +
                                   "' exists with another request; a batch id names one request"},
                     {"batch_id", s.subject},
                     {"request", *prior}});
      if (!prior) {
        if (Status p = bus_.Publish(Message{s.type, s.id, EncodeEvent(s)}); !p.ok())
          return JsonError(503, "bus: " + p.message());
        submitted_[s.subject] = request;
        if (submitted_.size() > kCompletesKept) submitted_.erase(submitted_.begin());
        spdlog::info("[batch {}] submitted over HTTP: source {}, chunk size {}", s.subject,
                     EscapeForLog(request["source"].get<std::string>()),
                     request["chunk_size"].dump());
      }
    }
    if (wait->count() > 0) {
      {
        std::lock_guard<std::mutex> lock(mu_);
        if (waiters_ >= options_.max_waiters)
          return JsonError(
              503, "wait: " + std::to_string(options_.max_waiters) +
                       " requests are waiting already; retry, or poll GET /v1/batches/{id}");
        ++waiters_;
      }
      auto complete = AwaitComplete(s.subject, wait.value());
      {
        std::lock_guard<std::mutex> lock(mu_);
        --waiters_;
      }
      if (complete) return CompleteResponse(*complete);
    } else if (auto b = Find(s.subject); b.ok() && b.value() && b.value()->complete) {
      auto e = DecodeEvent(*b.value()->complete);
      if (e.ok()) return CompleteResponse(e.value());
    }
    auto b = Find(s.subject);
    if (b.ok() && b.value()) {
      json summary = Summary(*b.value());
      return Json(202, summary);
    }
    return Json(202, {{"batch_id", s.subject}, {"status", "submitted"}, {"state", "submitted"}});
  }();
  Count(out.status);
  return out;
}

HttpResponse BatchService::Describe(const HttpRequest& r) {
  HttpResponse out = [&]() -> HttpResponse {
    const std::string id = r.captures.empty() ? "" : r.captures[0];
    if (Status s = CheckName(id, "batch_id", kMaxSubjectLength); !s.ok())
      return JsonError(400, s.message());
    const std::string* explain = r.Param("explain");
    if (explain && *explain != "1" && *explain != "0" && *explain != "true" && *explain != "false")
      return JsonError(400, "explain: must be 1 or 0");
    auto b = Find(id);
    if (!b.ok()) return JsonError(503, "ledger: " + b.status().message());
    if (!b.value()) {
      std::lock_guard<std::mutex> lock(mu_);
      if (submitted_.count(id))
        return Json(200, {{"batch_id", id},
                          {"state", "submitted"},
                          {"status", "submitted"},
                          {"request", submitted_[id]}});
      return JsonError(404, "batch_id: no batch '" + EscapeForLog(id, 200) + "'");
    }
    if (!explain || *explain == "0" || *explain == "false") return Json(200, Summary(*b.value()));
    auto dead = bus_.ListDeadLetters("");
    if (!dead.ok()) spdlog::warn("explain: dead letters not listed: {}", dead.status().ToString());
    std::lock_guard<std::mutex> lock(ledger_mu_);
    auto x = ExplainBatch(*ledger_, *b.value(), dead.ok() ? &dead.value() : nullptr, NowMs());
    if (!x.ok()) return JsonError(503, "ledger: " + x.status().message());
    if (!dead.ok()) x.value()["explain"]["dead_letters_unknown"] = dead.status().message();
    return Json(200, x.value());
  }();
  Count(out.status);
  return out;
}

HttpResponse BatchService::Cancel(const HttpRequest& r) {
  HttpResponse out = [&]() -> HttpResponse {
    const std::string id = r.captures.empty() ? "" : r.captures[0];
    if (Status s = CheckName(id, "batch_id", kMaxSubjectLength); !s.ok())
      return JsonError(400, s.message());
    std::string reason;
    if (!r.body.empty()) {
      auto body = ParseBoundedJson(r.body, "body");
      if (!body.ok()) return JsonError(400, body.status().message());
      if (!body->is_object()) return JsonError(400, "body: must be a JSON object");
      for (const auto& [key, value] : body->items())
        if (key != "reason") return JsonError(400, EscapeForLog(key, 64) + ": unknown field (only reason)");
      if (auto it = body->find("reason"); it != body->end()) {
        if (!it->is_string()) return JsonError(400, "reason: must be a string");
        reason = it->get<std::string>();
      }
    }
    auto b = Find(id);
    if (!b.ok()) return JsonError(503, "ledger: " + b.status().message());
    if (!b.value()) return JsonError(404, "batch_id: no batch '" + EscapeForLog(id, 200) + "'");
    // The aggregator answers with the batch's one batch_complete: `cancelled`,
    // or how it had ended before.
    auto complete = RequestCancel(bus_, id, reason, kCancelWait);
    if (!complete.ok()) {
      if (complete.status().code() == StatusCode::kInvalidArgument)
        return JsonError(400, complete.status().message());
      return JsonError(504, "the aggregator did not answer the cancel within " +
                                std::to_string(kCancelWait.count() / 1000) + " s: " +
                                complete.status().message());
    }
    const bool cancelled = complete->data.value("status", "") == "cancelled";
    HttpResponse answer;
    answer.status = cancelled ? 200 : 409;
    answer.body = EncodeEvent(complete.value());
    return answer;
  }();
  Count(out.status);
  return out;
}

HttpResponse BatchService::List(const HttpRequest& r) {
  HttpResponse out = [&]() -> HttpResponse {
    const std::string* state = r.Param("state");
    if (state && *state != "open" && *state != "complete" && *state != "all")
      return JsonError(400, "state: must be open, complete or all");
    const bool open = !state || *state != "complete", decided = !state || *state != "open";
    std::vector<BatchRecord> rows;
    {
      std::lock_guard<std::mutex> lock(ledger_mu_);
      if (open) {
        auto o = ledger_->OpenBatches();
        if (!o.ok()) return JsonError(503, "ledger: " + o.status().message());
        rows = std::move(o).value();
      }
      if (decided) {
        auto d = ledger_->RecentlyDecided(options_.recent);
        if (!d.ok()) return JsonError(503, "ledger: " + d.status().message());
        rows.insert(rows.end(), d->begin(), d->end());
      }
    }
    json list = json::array();
    for (const BatchRecord& b : rows) {
      json s = Summary(b);
      s.erase("batch_complete");  // the list stays small; GET the batch for it
      list.push_back(std::move(s));
    }
    return Json(200, {{"batches", list}});
  }();
  Count(out.status);
  return out;
}

json BatchService::Queues() {
  {
    std::lock_guard<std::mutex> lock(mu_);
    if (!queues_.is_null() && Clock::now() - queues_at_ < std::chrono::seconds(1)) return queues_;
  }
  auto stats = bus_.Stats("");
  json q = json::array();
  if (stats.ok())
    for (const QueueStats& s : stats.value()) {
      if (s.group.rfind("serve-", 0) == 0 || s.group.rfind("monitor-", 0) == 0)
        continue;  // private taps
      q.push_back({{"queue", s.queue},
                   {"group", s.group},
                   {"type", s.type},
                   {"depth", s.depth},
                   {"in_flight", s.in_flight},
                   {"consumers", s.consumers},
                   {"dead_letters", s.dead_letters}});
    }
  std::lock_guard<std::mutex> lock(mu_);
  queues_ = q;
  queues_at_ = Clock::now();
  return q;
}

HttpResponse BatchService::Dashboard(const HttpRequest&) {
  HttpRequest all;
  all.query.emplace("state", "all");
  HttpResponse list = List(all);
  if (list.status != 200) return list;
  json out = json::parse(list.body);
  out["time"] = NowRfc3339();
  out["bus"] = bus_.Describe();
  out["queues"] = Queues();
  json alarms = json::array();
  {
    std::lock_guard<std::mutex> lock(mu_);
    for (const auto& [key, a] : alarms_) alarms.push_back(a);
  }
  out["alarms"] = alarms;
  return Json(200, out);
}

std::string BatchService::RenderMetrics() {
  std::vector<std::pair<MetricLabels, double>> by_state, depth;
  std::map<std::string, double> states = {{"open", 0}, {"sealed", 0}};
  {
    std::lock_guard<std::mutex> lock(ledger_mu_);
    if (auto o = ledger_->OpenBatches(); o.ok())
      for (const BatchRecord& b : o.value()) states[BatchState(b)] += 1;
  }
  for (const auto& [state, n] : states) by_state.push_back({{{"state", state}}, n});
  metrics_.SetGaugeFamily("fanflow_serve_batches",
                          "Undecided batches in the aggregator's ledger, by state", by_state);
  for (const json& q : Queues())
    depth.push_back({{{"queue", q["queue"].get<std::string>()}}, q["depth"].get<double>()});
  metrics_.SetGaugeFamily("fanflow_serve_queue_depth_messages", "Messages waiting in each queue",
                          depth);
  std::lock_guard<std::mutex> lock(mu_);
  metrics_.SetGauge("fanflow_serve_alarms_raised", "Alarms raised on the bus and not yet resolved",
                    {}, static_cast<double>(alarms_.size()));
  metrics_.SetGauge("fanflow_serve_waiting_requests", "POSTs blocked in ?wait= now", {}, waiters_);
  return metrics_.Render();
}

}  // namespace fanflow

#include "pipeline/scheduler.h"

#include <spdlog/spdlog.h>

#include <condition_variable>
#include <filesystem>
#include <fstream>
#include <mutex>
#include <set>
#include <sstream>
#include <thread>

#include "core/bounded_json.h"
#include "core/event.h"
#include "core/printable.h"
#include "pipeline/source.h"
#include "pipeline/ventilator.h"

namespace fanflow {
namespace {

using nlohmann::json;
using namespace std::chrono;

constexpr size_t kMaxEntries = 1000;
constexpr size_t kMaxScheduleBytes = 1 << 20;
constexpr seconds kMaxCatchUpWithin = hours(24 * 366);

Status CheckEntryName(const json& value, const std::string& where) {
  if (!value.is_string()) return InvalidArgument(where + ": must be a string");
  const std::string& name = value.get_ref<const std::string&>();
  bool ok = !name.empty() && name.size() <= kMaxGroupLength;
  for (char c : name)
    ok = ok && ((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') ||
                c == '.' || c == '_' || c == '-');
  if (ok) return Status::Ok();
  return InvalidArgument(where + ": '" + EscapeForLog(name, 100) + "' must be 1.." +
                         std::to_string(kMaxGroupLength) + " characters of A-Z a-z 0-9 . _ -");
}

Result<ScheduleEntry> ParseEntry(const json& e, const std::string& at,
                                 const std::string& base_dir) {
  static const std::set<std::string> kKeys = {
      "name", "cron", "source", "chunk_size", "page_chunks", "claim_check_bytes", "correlation_id"};
  if (!e.is_object()) return InvalidArgument(at + ": must be an object");
  for (const auto& [key, value] : e.items())
    if (!kKeys.count(key))
      return InvalidArgument(at + "." + EscapeForLog(key, 64) +
                             ": unknown field (name, cron, source, chunk_size, page_chunks, "
                             "claim_check_bytes, correlation_id)");
  for (const char* key : {"name", "cron", "source", "chunk_size"})
    if (!e.contains(key)) return InvalidArgument(at + "." + key + ": is required");
  ScheduleEntry entry;
  if (Status s = CheckEntryName(e["name"], at + ".name"); !s.ok()) return s;
  entry.name = e["name"].get<std::string>();
  if (!e["cron"].is_string()) return InvalidArgument(at + ".cron: must be a string");
  auto cron = CronSchedule::Parse(e["cron"].get<std::string>());
  if (!cron.ok()) return InvalidArgument(at + ".cron: " + cron.status().message());
  entry.cron = std::move(cron).value();

  json data = json::object();
  for (const char* key : {"source", "chunk_size", "page_chunks", "claim_check_bytes"})
    if (e.contains(key)) data[key] = e[key];
  // The aggregator's own rules, with the entry's field named.
  if (Status s = ValidateEventData(kStartFanout, data); !s.ok())
    return InvalidArgument(at + "." +
                           s.message().substr(s.message().rfind("data.", 0) == 0 ? 5 : 0));
  std::string source = data["source"].get<std::string>();
  if (Status s = CheckSourceSpec(source); !s.ok())
    return InvalidArgument(at + ".source: " + s.message());
  if (source == "-") return InvalidArgument(at + ".source: '-' (stdin) cannot be scheduled");
  if (source.rfind("jsonl:", 0) == 0) {
    // The ventilator reads it from another working directory: absolute.
    std::filesystem::path path = source.substr(6);
    if (path.is_relative()) path = std::filesystem::path(base_dir) / path;
    data["source"] = "jsonl:" + std::filesystem::absolute(path).lexically_normal().string();
  }
  entry.request = std::move(data);
  if (e.contains("correlation_id")) {
    if (!e["correlation_id"].is_string())
      return InvalidArgument(at + ".correlation_id: must be a string");
    entry.correlation_id = e["correlation_id"].get<std::string>();
    if (Status s = CheckName(entry.correlation_id, at + ".correlation_id", kMaxIdLength); !s.ok())
      return s;
  }
  return entry;
}

class SystemClock final : public SchedulerClock {
 public:
  sys_seconds Now() override { return floor<seconds>(system_clock::now()); }
  void SleepUntil(sys_seconds t, std::stop_token stop) override {
    std::mutex mu;
    std::condition_variable_any cv;
    std::unique_lock<std::mutex> lock(mu);
    cv.wait_until(lock, stop, t, [] { return false; });
  }
};

}  // namespace

Result<std::vector<ScheduleEntry>> ParseSchedule(std::string_view text, const std::string& where,
                                                 const std::string& base_dir) {
  if (text.size() > kMaxScheduleBytes)
    return InvalidArgument(where + ": larger than " + std::to_string(kMaxScheduleBytes) + " bytes");
  auto parsed = ParseBoundedJson(text, where);
  if (!parsed.ok()) return InvalidArgument(parsed.status().message());
  const json& list = parsed.value();
  if (!list.is_array() || list.empty())
    return InvalidArgument(where +
                           ": must be a non-empty JSON list of {name, cron, source, chunk_size}");
  if (list.size() > kMaxEntries)
    return InvalidArgument(where + ": more than " + std::to_string(kMaxEntries) + " entries");
  std::vector<ScheduleEntry> entries;
  std::set<std::string> names;
  for (size_t i = 0; i < list.size(); ++i) {
    const std::string at = where + ": [" + std::to_string(i) + "]";
    auto entry = ParseEntry(list[i], at, base_dir);
    if (!entry.ok()) return entry.status();
    // Two entries of one name would share batch ids.
    if (!names.insert(entry->name).second)
      return InvalidArgument(at + ".name: '" + entry->name + "' is used by an earlier entry");
    entries.push_back(std::move(entry).value());
  }
  return entries;
}

Result<std::vector<ScheduleEntry>> LoadSchedule(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  if (!in) return NotFound(path + ": cannot open the schedule file");
  std::string text(kMaxScheduleBytes + 1, '\0');
  in.read(text.data(), static_cast<std::streamsize>(text.size()));
  text.resize(static_cast<size_t>(in.gcount()));
  return ParseSchedule(text, path, std::filesystem::absolute(path).parent_path().string());
}

Event ScheduledStart(const ScheduledBatch& b) {
  const ScheduleEntry& e = *b.entry;
  Event start = MakeStartFanout(
      b.batch_id, e.correlation_id.empty() ? b.batch_id : e.correlation_id,
      e.request["source"].get<std::string>(), e.request["chunk_size"].get<int64_t>());
  start.data = e.request;
  return start;
}

Status PublishScheduledStart(EventBus& bus, const ScheduledBatch& b) {
  Event start = ScheduledStart(b);
  return bus.Publish(Message{start.type, start.id, EncodeEvent(start)});
}

SchedulerClock& SystemSchedulerClock() {
  static SystemClock clock;
  return clock;
}

Result<std::unique_ptr<Scheduler>> Scheduler::Create(std::vector<ScheduleEntry> entries,
                                                     SchedulerOptions options,
                                                     SchedulerClock& clock, Submit submit) {
  if (entries.empty()) return InvalidArgument("schedule: no entries");
  if (options.catch_up_within < seconds(0) || options.catch_up_within > kMaxCatchUpWithin)
    return InvalidArgument("--catch-up-within: must be 0.." +
                           std::to_string(kMaxCatchUpWithin.count()) + " seconds");
  return std::unique_ptr<Scheduler>(
      new Scheduler(std::move(entries), options, clock, std::move(submit)));
}

ScheduledBatch Scheduler::Slot(const ScheduleEntry& entry, UtcMinutes slot) const {
  return {&entry, slot, entry.name + "/" + FormatSlot(slot)};
}

std::vector<ScheduledBatch> Scheduler::Upcoming(sys_seconds from, int count) const {
  std::vector<std::optional<UtcMinutes>> next;
  for (const ScheduleEntry& e : entries_) next.push_back(e.cron.Next(from - seconds(1)));
  std::vector<ScheduledBatch> out;
  while (static_cast<int>(out.size()) < count) {
    std::optional<UtcMinutes> soonest;
    for (const auto& n : next)
      if (n && (!soonest || *n < *soonest)) soonest = n;
    if (!soonest) break;
    for (size_t i = 0; i < entries_.size() && static_cast<int>(out.size()) < count; ++i) {
      if (next[i] != soonest) continue;
      out.push_back(Slot(entries_[i], *soonest));
      next[i] = entries_[i].cron.Next(*next[i]);
    }
  }
  return out;
}

bool Scheduler::SubmitUntilDone(const ScheduledBatch& b, std::stop_token stop) {
  while (!stop.stop_requested()) {
    Status s = submit_(b);
    if (s.ok()) {
      spdlog::info("[batch {}] submitted for schedule '{}' ({})", b.batch_id, b.entry->name,
                   b.entry->cron.text());
      return true;
    }
    spdlog::error("[batch {}] not submitted, retrying in {} s: {}", b.batch_id,
                  options_.retry.count(), s.ToString());
    clock_.SleepUntil(clock_.Now() + options_.retry, stop);
  }
  return false;
}

void Scheduler::Run(std::stop_token stop) {
  const sys_seconds started = clock_.Now();
  std::vector<std::optional<UtcMinutes>> next;
  for (const ScheduleEntry& e : entries_) {
    next.push_back(e.cron.Next(started));
    if (options_.catch_up != SchedulerOptions::CatchUp::kLatest) continue;
    // The latest slot in (started - within, started]: if it ran, its batch id
    // is known to the aggregator and nothing runs twice.
    std::optional<UtcMinutes> latest;
    for (auto s = e.cron.Next(started - options_.catch_up_within); s && *s <= started;
         s = e.cron.Next(*s))
      latest = s;
    if (latest) {
      spdlog::info(
          "schedule '{}': catching up slot {} (missed while no scheduler ran, or already run: "
          "then the aggregator answers with that batch)",
          e.name, FormatSlot(*latest));
      if (!SubmitUntilDone(Slot(e, *latest), stop)) return;
    }
  }
  while (!stop.stop_requested()) {
    std::optional<UtcMinutes> soonest;
    for (const auto& n : next)
      if (n && (!soonest || *n < *soonest)) soonest = n;
    if (!soonest) return;  // no entry fires any more (year 9990)
    while (!stop.stop_requested() && clock_.Now() < *soonest) clock_.SleepUntil(*soonest, stop);
    const sys_seconds now = clock_.Now();
    for (size_t i = 0; i < entries_.size() && !stop.stop_requested(); ++i) {
      if (!next[i] || *next[i] > now) continue;
      // Woken late (the machine slept, the clock jumped): only the latest slot
      // due runs, as at start-up, not every one in between.
      UtcMinutes slot = *next[i];
      for (auto s = entries_[i].cron.Next(slot); s && *s <= now; s = entries_[i].cron.Next(*s))
        slot = *s;
      if (!SubmitUntilDone(Slot(entries_[i], slot), stop)) return;
      next[i] = entries_[i].cron.Next(slot);
    }
  }
}

}  // namespace fanflow

// `fanflow status BATCH`: why a batch is not done yet (or how it ended), from a
// read-only view of the aggregator's ledger and, on a broker, its dead letters.
#include <chrono>
#include <iostream>

#include "cli/cli_common.h"
#include "cli/commands.h"
#include "core/printable.h"
#include "pipeline/batch_report.h"

namespace fanflow::cli {
namespace {

using nlohmann::json;

std::string Seconds(const json& v) {
  if (!v.is_number()) return "?";
  char buf[32];
  std::snprintf(buf, sizeof buf, "%.1f s", v.get<double>());
  return buf;
}

std::string Text(const json& x) {
  const json& e = x["explain"];
  std::string out = "batch " + EscapeForLog(x["batch_id"].get<std::string>()) + ": " +
                    x["state"].get<std::string>();
  if (x["state"] != x["status"]) out += " (" + x["status"].get<std::string>() + ")";
  out += ", " + std::to_string(x["done"].get<int64_t>()) + "/" +
         (x["total_chunks"].is_null() ? "?" : x["total_chunks"].dump()) + " chunks done (" +
         x["succeeded"].dump() + " succeeded, " + x["failed"].dump() + " failed), " +
         e["outstanding_count"].dump() + " outstanding\n";
  for (const json& c : e["failed"])
    out += "  failed         chunk " + c["chunk_index"].dump() + " after " + c["attempts"].dump() +
           " attempts: " + EscapeForLog(c["error"].get<std::string>(), 300) + "\n";
  if (e.contains("dead_lettered"))
    for (const json& c : e["dead_lettered"])
      out += "  dead-lettered  chunk " + c["chunk_index"].dump() + " in group " +
             EscapeForLog(c["group"].get<std::string>()) + ": " +
             EscapeForLog(c["reason"].get<std::string>(), 300) + "\n";
  for (const json& c : e["outstanding"]) {
    out += "  outstanding    chunk " + c["chunk_index"].dump();
    if (c.contains("age_s"))
      out += ": leased " + Seconds(c["age_s"]) + " ago, " + c["redrives"].dump() + " redrives";
    else if (c.contains("age_at_most_s"))
      out += ": published at most " + Seconds(c["age_at_most_s"]) + " ago (the broker holds it)";
    else
      out += ": published by an earlier step (the broker holds it)";
    if (c.value("dead_lettered", false)) out += ", dead-lettered";
    out += "\n";
  }
  if (e["outstanding_count"].get<int64_t>() > static_cast<int64_t>(e["outstanding"].size()))
    out += "  ... " +
           std::to_string(e["outstanding_count"].get<int64_t>() - e["outstanding"].size()) +
           " more outstanding\n";
  if (e.contains("not_published")) {
    const json& n = e["not_published"];
    out += "  not published  from chunk " + n["from_chunk"].dump() + " (item " +
           n["from_item"].dump() + "): the batch is not sealed; fan-out step " + n["step"].dump() +
           " is " + n["step_state"].get<std::string>() + " (" + Seconds(n["step_age_s"]) +
           " ago)\n";
  }
  if (e.contains("outcome")) out += "  outcome        " + e["outcome"].dump() + "\n";
  if (e.contains("dead_letters_unknown"))
    out += "  (dead letters not listed: " + e["dead_letters_unknown"].get<std::string>() + ")\n";
  return out;
}

}  // namespace

int StatusCommand(const BusFlags& bus_flags, const StatusFlags& f) {
  if (Status s = CheckName(f.batch_id, "BATCH", kMaxSubjectLength); !s.ok()) return Fail(s);
  auto ledger = LedgerReader::Open(f.ledger, "--ledger");
  if (!ledger.ok()) return Fail(ledger.status());
  auto batch = ledger.value()->Get(f.batch_id);
  if (!batch.ok()) return Fail(batch.status());
  if (!batch.value())
    return Fail(
        NotFound("batch '" + EscapeForLog(f.batch_id) + "' is not in the ledger " + f.ledger));
  // Dead letters live on a broker; an in-process bus of this command has none.
  std::vector<DeadLetter> dead;
  std::string no_dead;
  bool asked = false;
  if (bus_flags.url != "inproc://") {
    auto bus = OpenServiceBus(bus_flags.url, "status", true);
    auto listed =
        bus.ok() ? bus.value()->ListDeadLetters("") : Result<std::vector<DeadLetter>>(bus.status());
    if (listed.ok()) {
      dead = std::move(listed).value();
      asked = true;
    } else {
      no_dead = listed.status().ToString();
    }
  }
  const int64_t now = std::chrono::duration_cast<std::chrono::milliseconds>(
                          std::chrono::system_clock::now().time_since_epoch())
                          .count();
  auto x = ExplainBatch(*ledger.value(), *batch.value(), asked ? &dead : nullptr, now);
  if (!x.ok()) return Fail(x.status());
  if (!no_dead.empty()) x.value()["explain"]["dead_letters_unknown"] = no_dead;
  if (f.json)
    std::cout << x.value().dump(-1, ' ', false, json::error_handler_t::replace) << std::endl;
  else
    std::cout << Text(x.value()) << std::flush;
  return kExitSucceeded;
}

}  // namespace fanflow::cli

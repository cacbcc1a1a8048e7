// `fanflow dlq list|show|replay|purge`: the dead-letter tooling, the same on
// every bus (through the port's ListDeadLetters / Replay / Purge).
#include <cstdio>
#include <iostream>

#include "cli/cli_common.h"
#include "cli/commands.h"
#include "core/bounded_json.h"
#include "core/printable.h"
#include "core/routes.h"
#include "pipeline/dead_letters.h"

namespace fanflow::cli {
namespace {

// A cell of the table: escaped (a stranger's id or reason may hold a newline
// or invalid UTF-8), then cut to its column.
std::string Cell(const std::string& s, size_t width) {
  std::string e = EscapeForLog(s, width);
  return e.size() <= width ? e : e.substr(0, width - 3) + "...";
}

void PrintTable(const std::vector<DeadLetter>& letters) {
  if (letters.empty()) {
    std::printf("no dead letters\n");
    return;
  }
  std::printf("%-36s %-12s %-14s %8s  %-24s %s\n", "ID", "GROUP", "TYPE", "ATTEMPTS", "TIME",
              "REASON");
  for (const DeadLetter& d : letters)
    std::printf("%-36s %-12s %-14s %8d  %-24s [%s] %s\n", Cell(d.id, 36).c_str(),
                Cell(d.group, 12).c_str(), Cell(routes::ShortName(d.type), 14).c_str(), d.attempts,
                EscapeForLog(d.time, 40).c_str(), DeadLetterCategory(d.reason).c_str(),
                EscapeForLog(d.reason).c_str());
  std::printf("%zu dead letter(s); `fanflow dlq show ID` prints one with its original event\n",
              letters.size());
}

void PrintOne(const DeadLetter& d) {
  nlohmann::json j = DeadLetterToJson(d, true);
  std::printf(
      "id        %s\ngroup     %s\ntype      %s\nattempts  %d\ntime      %s\nreason    %s\n"
      "category  %s\n",
      EscapeForLog(d.id).c_str(), EscapeForLog(d.group).c_str(), EscapeForLog(d.type).c_str(),
      d.attempts, EscapeForLog(d.time).c_str(), EscapeForLog(d.reason).c_str(),
      j["category"].get<std::string>().c_str());
  if (j.contains("batch_id"))
    std::printf("batch     %s\n", EscapeForLog(j["batch_id"].get<std::string>()).c_str());
  if (j.contains("event_base64")) {
    std::printf("event (not a JSON document; escaped, then base64)\n%s\n%s\n",
                EscapeForLog(d.body, kMaxEventBytes).c_str(),
                j["event_base64"].get<std::string>().c_str());
  } else {
    std::printf("event\n%s\n", DumpForDisplay(j["event"], 2).c_str());
  }
}

}  // namespace

int DlqCommand(const BusFlags& bus_flags, const std::string& action, const DlqFlags& f) {
  if (!f.group.empty())
    if (Status s = CheckGroupName(f.group); !s.ok()) return Fail(InvalidArgument("--group: " + s.message()));
  auto bus = OpenServiceBus(bus_flags.url, "dlq", true);
  if (!bus.ok()) return Fail(bus.status());
  EventBus& b = *bus.value();
  const std::string where = f.group.empty() ? "" : " in group '" + f.group + "'";

  if (action == "list" || action == "show") {
    auto letters = FindDeadLetters(b, f.group, action == "show" ? f.id : "");
    if (!letters.ok()) return Fail(letters.status());
    if (action == "show" && letters->empty())
      return Fail(NotFound("no dead letter with id '" + f.id + "'" + where +
                           " (`fanflow dlq list` shows the ids)"));
    for (const DeadLetter& d : letters.value()) {
      if (f.json)
        std::cout << DumpForDisplay(DeadLetterToJson(d, true)) << "\n";
      else if (action == "show")
        PrintOne(d);
    }
    if (!f.json && action == "list") PrintTable(letters.value());
    std::cout << std::flush;
    return kExitSucceeded;
  }
  if (action == "replay") {
    auto n = b.ReplayDeadLetters(f.group, f.id);
    if (!n.ok()) return Fail(n.status());
    if (!f.id.empty() && n.value() == 0)
      return Fail(NotFound("no dead letter with id '" + f.id + "'" + where + " to replay"));
    if (f.json)
      std::cout << nlohmann::json({{"replayed", n.value()}}).dump() << std::endl;
    else
      std::cout << "replayed " << n.value() << " dead letter(s) to their origin queue" << where
                << std::endl;
    return kExitSucceeded;
  }
  auto n = b.PurgeDeadLetters(f.group);  // action == "purge"
  if (!n.ok()) return Fail(n.status());
  if (f.json)
    std::cout << nlohmann::json({{"purged", n.value()}}).dump() << std::endl;
  else
    std::cout << "purged " << n.value() << " dead letter(s)" << where << std::endl;
  return kExitSucceeded;
}

}  // namespace fanflow::cli

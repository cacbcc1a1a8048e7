// `fanflow cancel BATCH`: asks the aggregator to stop a batch and reports how
// the batch ended.
#include <iostream>

#include "cli/cli_common.h"
#include "cli/commands.h"
#include "pipeline/cancel.h"

namespace fanflow::cli {

int CancelCommand(const BusFlags& bus_flags, const CancelFlags& f) {
  auto bus = OpenServiceBus(bus_flags.url, "cancel", true);
  if (!bus.ok()) return Fail(bus.status());
  if (f.wait_s <= 0) {
    if (Status s = PublishCancel(*bus.value(), f.batch_id, f.reason); !s.ok()) return Fail(s);
    std::cerr << "fanflow: cancel of batch " << f.batch_id << " published\n";
    return kExitSucceeded;
  }
  auto answer = RequestCancel(*bus.value(), f.batch_id, f.reason,
                              std::chrono::milliseconds(static_cast<int64_t>(f.wait_s * 1000)));
  if (!answer.ok()) return Fail(answer.status());
  const Event& e = answer.value();
  const std::string status = e.data.value("status", "");
  if (f.json)
    std::cout << EncodeEvent(e) << "\n";
  else
    std::cout << "batch " << e.subject << ": " << status << " ("
              << e.data["succeeded"].get<int64_t>() + e.data["failed"].get<int64_t>()
              << " chunks done"
              << (e.data.contains("missing_chunks")
                      ? ", " + std::to_string(e.data["missing_chunks"].size()) + " not"
                      : std::string())
              << ")\n";
  if (status == "cancelled") return kExitSucceeded;
  std::cerr << "fanflow: batch " << f.batch_id << " had completed " << status
            << " before the cancel; nothing changed\n";
  return kExitError;
}

}  // namespace fanflow::cli

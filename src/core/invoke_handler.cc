#include "core/invoke_handler.h"

#include <algorithm>
#include <exception>
#include <string>

#include "core/printable.h"

namespace fanflow {
namespace {

// The verdict on a delivery whose handler threw what is being handled now.
Verdict Thrown() {
  try {
    throw;
  } catch (const std::exception& e) {
    return Verdict::DeadLetter("handler threw: " + EscapeForLog(e.what()));
  } catch (...) {
    return Verdict::DeadLetter("handler threw a non-std exception");
  }
}

}  // namespace

Verdict InvokeHandler(const Handler& handler, const Delivery& delivery) {
  try {
    return handler(delivery);
  } catch (...) {
    return Thrown();
  }
}

void InvokeHandler(const BurstHandler& handler, std::span<const Delivery> deliveries,
                   std::span<Verdict> verdicts) {
  try {
    handler(deliveries, verdicts);
  } catch (...) {
    std::fill(verdicts.begin(), verdicts.end(), Thrown());
  }
}

}  // namespace fanflow

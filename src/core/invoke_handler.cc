#include "core/invoke_handler.h"

#include <exception>
#include <string>

#include "core/printable.h"

namespace fanflow {

Verdict InvokeHandler(const Handler& handler, const Delivery& delivery) {
  try {
    return handler(delivery);
  } catch (const std::exception& e) {
    return Verdict::DeadLetter("handler threw: " + EscapeForLog(e.what()));
  } catch (...) {
    return Verdict::DeadLetter("handler threw a non-std exception");
  }
}

}  // namespace fanflow

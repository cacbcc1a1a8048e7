#include "core/status.h"

namespace fanflow {

std::string Status::ToString() const {
  switch (code_) {
    case StatusCode::kOk: return "OK";
    case StatusCode::kInvalidArgument: return "invalid argument: " + message_;
    case StatusCode::kNotFound: return "not found: " + message_;
    case StatusCode::kUnavailable: return "unavailable: " + message_;
    case StatusCode::kTimeout: return "timeout: " + message_;
    case StatusCode::kRejected: return "rejected: " + message_;
    case StatusCode::kInternal: return "internal: " + message_;
    case StatusCode::kCancelled: return "cancelled: " + message_;
  }
  return message_;
}

}  // namespace fanflow

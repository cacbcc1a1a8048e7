// --coprocess CMD: long-lived processors in any language. At most `copies`
// copies of CMD (each via /bin/sh -c, in a process group of its own) take one
// chunk at a time: the process_chunk CloudEvent as one line on stdin (items
// inline, a claim check already resolved), one reply line on stdout,
// {"result": ANY} or {"error": "message"} (topics/COPROCESS.md). A copy that
// exits, replies anything else, or runs past the timeout fails that attempt and
// is killed; the next chunk starts a new one. Its stderr goes to the log, line
// by line, with the batch id of the chunk it was working on.
// Thread-safe: each Process call holds one copy; a call finding all `copies`
// busy waits for one. Destruction closes the copies' stdin and kills those that
// do not exit within a second.
#pragma once

#include <chrono>
#include <memory>
#include <string>

#include "pipeline/processor.h"

namespace fanflow {

struct CoprocessOptions {
  std::string command;
  int copies = 1;                        // at most this many alive
  std::chrono::milliseconds timeout{0};  // per chunk, 0: none
};

[[nodiscard]] Result<std::unique_ptr<Processor>> MakeCoprocess(const CoprocessOptions& options);

}  // namespace fanflow

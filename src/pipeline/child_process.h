// A command run by /bin/sh -c in a process group of its own, with pipes on its
// stdin, stdout and stderr: what --exec (one per chunk) and --coprocess (long
// lived) start. The caller owns the descriptors and must reap the child.
#pragma once

#include <sys/types.h>

#include <string>
#include <vector>

#include "core/status.h"

namespace fanflow {

struct ChildProcess {
  pid_t pid = -1;  // also its process group id
  int in = -1;     // its stdin, ours to write
  int out = -1;    // its stdout, ours to read
  int err = -1;    // its stderr, ours to read
};

// Starts `command` with our environment plus `extra_env` ("NAME=value").
// SIGPIPE is ignored from then on: a child that closes its stdin must not end
// this process when we write to it.
[[nodiscard]] Result<ChildProcess> SpawnShell(const std::string& command,
                                              const std::vector<std::string>& extra_env);

// Reads what is there of `fd` into `out`, keeping at most `limit` bytes of it
// (the rest is drained and dropped; `keep_tail`: the last bytes rather than the
// first). False once the descriptor reached its end or failed (it is closed then
// and set to -1).
bool ReadSome(int& fd, std::string& out, size_t limit, bool keep_tail);

// "exited with 3" or "killed by signal 9", for a waitpid status.
std::string DescribeExit(int wait_status);

// Trims trailing newlines and keeps the last `max` bytes of a child's stderr,
// for an error message.
std::string StderrTail(std::string text, size_t max = 500);

}  // namespace fanflow

#include "pipeline/results_sink.h"

#include <fcntl.h>
#include <unistd.h>

#include <cctype>
#include <cerrno>
#include <cstdio>
#include <cstring>
#include <filesystem>

#include "core/bounded_json.h"

namespace fanflow {
namespace {

// A concatenated result larger than this does not fit a batch_complete with
// room to spare for the rest of it (failed_chunks may be long too).
constexpr size_t kMaxConcatBytes = kMaxEventBytes / 2;

Status IoError(const std::string& what, const std::string& path) {
  return Internal("results file '" + path + "': " + what + ": " + std::strerror(errno));
}

// Closes the descriptor on scope exit.
struct Fd {
  int fd;
  ~Fd() {
    if (fd >= 0) close(fd);
  }
};

Result<nlohmann::json> Concatenate(Ledger& ledger, const std::string& batch_id,
                                   std::optional<std::string>& error) {
  nlohmann::json all = nlohmann::json::array();
  size_t bytes = 0;
  Status s = ledger.ForEachChunk(batch_id, [&](const StoredChunk& c) {
    if (!c.succeeded || error) return Status::Ok();
    bytes += c.result_json.size();
    nlohmann::json part = nlohmann::json::parse(c.result_json, nullptr, false);
    if (bytes > kMaxConcatBytes || all.size() + part.size() > kMaxJsonContainerElements) {
      error = "result: the concatenated results are larger than a batch_complete may carry (" +
              std::to_string(kMaxConcatBytes) + " bytes or " +
              std::to_string(kMaxJsonContainerElements) + " elements) from chunk " +
              std::to_string(c.chunk_index) + " on; use --combine none with --results PATH";
      return Status::Ok();
    }
    if (!part.is_array()) {  // RecordChunk refused it already; a ledger from elsewhere
      error = "chunk " + std::to_string(c.chunk_index) +
              ": result: not an array, cannot be concatenated";
      return Status::Ok();
    }
    for (auto& v : part) all.push_back(std::move(v));
    return Status::Ok();
  });
  if (!s.ok()) return s;
  return all;
}

Result<ResultsFile> WriteResultsFile(Ledger& ledger, const std::string& batch_id,
                                     const std::string& path) {
  const std::string temporary = path + ".tmp";
  Fd out{open(temporary.c_str(), O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC | O_NOFOLLOW, 0644)};
  if (out.fd < 0) return IoError("cannot create " + temporary, path);
  ResultsFile file;
  std::error_code ec;
  file.path = std::filesystem::absolute(path, ec).lexically_normal().string();
  std::string buffer;
  auto flush = [&]() -> Status {
    for (size_t done = 0; done < buffer.size();) {
      ssize_t n = write(out.fd, buffer.data() + done, buffer.size() - done);
      if (n < 0 && errno == EINTR) continue;
      if (n <= 0) return IoError("cannot write", path);
      done += static_cast<size_t>(n);
    }
    file.bytes += static_cast<int64_t>(buffer.size());
    buffer.clear();
    return Status::Ok();
  };
  Status s = ledger.ForEachChunk(batch_id, [&](const StoredChunk& c) {
    nlohmann::json line = {{"chunk_index", c.chunk_index},
                           {"status", c.succeeded ? "succeeded" : "failed"},
                           {"items", c.items},
                           {"attempts", c.attempts}};
    if (!c.succeeded) line["error"] = c.error;
    std::string text = line.dump(-1, ' ', false, nlohmann::json::error_handler_t::replace);
    if (c.succeeded) {  // the result as stored, not parsed again
      text.back() = ',';
      text += "\"result\":" + c.result_json + "}";
    }
    buffer += text;
    buffer += '\n';
    ++file.lines;
    return buffer.size() > (1 << 20) ? flush() : Status::Ok();
  });
  if (s.ok()) s = flush();
  if (!s.ok()) return s;
  if (fsync(out.fd) != 0) return IoError("cannot fsync", path);
  if (std::rename(temporary.c_str(), path.c_str()) != 0)
    return IoError("cannot rename " + temporary, path);
  // The rename itself must be durable before the batch is announced.
  const std::string dir = std::filesystem::path(file.path).parent_path().string();
  Fd d{open(dir.empty() ? "." : dir.c_str(), O_RDONLY | O_DIRECTORY | O_CLOEXEC)};
  if (d.fd < 0 || fsync(d.fd) != 0) return IoError("cannot fsync its directory", path);
  return file;
}

}  // namespace

Combine CombineOf(const nlohmann::json& request) {
  auto it = request.find("combine");
  if (it == request.end() || !it->is_string()) return Combine::kMerge;
  return ParseCombine(it->get<std::string>()).value_or(Combine::kMerge);
}

std::string ResultsPathFor(const std::string& pattern, const std::string& batch_id) {
  std::string safe;
  for (unsigned char ch : batch_id) {
    const bool plain = std::isalnum(ch) || ch == '_' || ch == '-' || (ch == '.' && !safe.empty());
    if (plain) {
      safe += static_cast<char>(ch);
    } else {
      char hex[4];
      std::snprintf(hex, sizeof hex, "%%%02X", ch);
      safe += hex;
    }
  }
  std::string path = pattern;
  for (size_t at = 0; (at = path.find("{batch}", at)) != std::string::npos; at += safe.size())
    path.replace(at, 7, safe);
  return path;
}

Status CheckResultsPath(const std::string& pattern) {
  std::string dir = std::filesystem::path(ResultsPathFor(pattern, "b")).parent_path().string();
  if (dir.empty()) dir = ".";
  std::error_code ec;
  if (!std::filesystem::is_directory(dir, ec) || access(dir.c_str(), W_OK) != 0)
    return InvalidArgument("--results '" + pattern + "': " + dir +
                           " is not a directory this process can write");
  return Status::Ok();
}

Result<Consolidation> Consolidate(Ledger& ledger, const BatchRecord& b,
                                  const std::string& results_pattern) {
  Consolidation out;
  auto error = ledger.CombineError(b.batch_id);
  if (!error.ok()) return error.status();
  out.error = error.value();
  const Combine combine = CombineOf(b.request);
  if (!out.error && combine == Combine::kMerge) out.result = b.result;
  if (!out.error && combine == Combine::kConcat) {
    auto all = Concatenate(ledger, b.batch_id, out.error);
    if (!all.ok()) return all.status();
    if (!out.error) out.result = std::move(all).value();
  }
  if (!results_pattern.empty()) {
    auto file = WriteResultsFile(ledger, b.batch_id, ResultsPathFor(results_pattern, b.batch_id));
    if (!file.ok()) return file.status();
    out.file = file.value();
  }
  return out;
}

}  // namespace fanflow

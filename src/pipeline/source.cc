#include "pipeline/source.h"

#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <charconv>
#include <cerrno>
#include <climits>
#include <cstring>
#include <iostream>
#include <streambuf>
#include <utility>

#include "core/bounded_json.h"

namespace fanflow {
namespace {

namespace fs = std::filesystem;

Status NotAllowed(const std::string& field) {
  return InvalidArgument(field + ": path is not under an allowed --data-dir");
}

// A file opened under a policy's roots, closed on destruction.
class OpenedFile {
 public:
  OpenedFile(int fd, fs::path path, int64_t size) : fd_(fd), path_(std::move(path)), size_(size) {}
  OpenedFile(OpenedFile&& o) noexcept
      : fd_(std::exchange(o.fd_, -1)), path_(std::move(o.path_)), size_(o.size_) {}
  OpenedFile& operator=(OpenedFile&&) = delete;
  ~OpenedFile() {
    if (fd_ >= 0) close(fd_);
  }
  int fd() const { return fd_; }
  const fs::path& path() const { return path_; }
  int64_t size() const { return size_; }

 private:
  int fd_;
  fs::path path_;
  int64_t size_;
};

// True when some component of `p` is a symlink. weakly_canonical leaves a
// dangling link in place; where it points is unknown, maybe outside the roots.
bool ThroughSymlink(const fs::path& p) {
  fs::path prefix;
  for (const fs::path& part : p) {
    prefix /= part;
    struct stat st;
    if (lstat(prefix.c_str(), &st) != 0) return false;  // nothing exists below a missing part
    if (S_ISLNK(st.st_mode)) return true;
  }
  return false;
}

// Opens `path` for reading if it resolves to a regular file under the roots.
// Outside them every failure (missing, unreadable, a loop) reads the same.
Result<OpenedFile> OpenUnder(const SourcePolicy& policy, const std::string& path,
                             const std::string& field) {
  if (path.find('\0') != std::string::npos) return NotAllowed(field);  // the OS would cut it there
  std::error_code ec;
  const fs::path absolute = fs::absolute(path, ec);
  const fs::path resolved = ec ? fs::path() : fs::weakly_canonical(absolute, ec);
  if (ec || !policy.Contains(resolved)) return NotAllowed(field);
  // `resolved` holds no link unless one was swapped in since: O_NOFOLLOW
  // refuses one in the last place, the check of the opened file any other.
  const int fd = open(resolved.c_str(), O_RDONLY | O_CLOEXEC | O_NOFOLLOW | O_NONBLOCK);
  if (fd < 0) {
    const int err = errno;
    if (ThroughSymlink(resolved)) return NotAllowed(field);
    if (err == ENOENT) return NotFound(field + ": no such file: " + resolved.string());
    return NotFound(field + ": cannot open " + resolved.string() + ": " + std::strerror(err));
  }
  struct stat st;
  const bool regular = fstat(fd, &st) == 0 && S_ISREG(st.st_mode);
  OpenedFile file(fd, resolved, regular ? st.st_size : 0);
  char opened[PATH_MAX];
  const std::string link = "/proc/self/fd/" + std::to_string(fd);
  const ssize_t n = readlink(link.c_str(), opened, sizeof opened);
  if (n <= 0 || n >= static_cast<ssize_t>(sizeof opened))
    return Internal(field + ": cannot check which file was opened (" + link +
                    " is unreadable: is /proc mounted?)");
  if (!policy.Contains(fs::path(std::string(opened, static_cast<size_t>(n)))))
    return NotAllowed(field);
  if (!regular) return InvalidArgument(field + ": not a regular file: " + resolved.string());
  return file;
}

// Buffered reads from a descriptor, for std::getline. A read error ends the
// stream like an end of file, and failed() tells them apart.
class FdReader final : public std::streambuf {
 public:
  explicit FdReader(int fd) : fd_(fd) {}
  bool failed() const { return failed_; }

 protected:
  int_type underflow() override {
    ssize_t n;
    do n = read(fd_, buf_, sizeof buf_);
    while (n < 0 && errno == EINTR);
    if (n <= 0) {
      failed_ = n < 0;
      return traits_type::eof();
    }
    setg(buf_, buf_, buf_ + n);
    return traits_type::to_int_type(buf_[0]);
  }

 private:
  const int fd_;
  bool failed_ = false;
  char buf_[1 << 16];
};

Result<int64_t> ParseCount(const std::string& text, const std::string& what) {
  if (text.empty() || text.size() > 18 || text.find_first_not_of("0123456789") != std::string::npos)
    return InvalidArgument(what + " must be a whole number, got '" + text + "'");
  return static_cast<int64_t>(std::stoll(text));
}

// A source spec taken apart.
struct ParsedSpec {
  enum Kind { kRange, kJsonl, kStdin } kind = kRange;
  std::string path;  // kJsonl
  int64_t n = 0;     // kRange
  uint64_t seed = 0;
};

Result<ParsedSpec> ParseSpec(const std::string& spec) {
  ParsedSpec p;
  if (spec == "-") {
    p.kind = ParsedSpec::kStdin;
    return p;
  }
  if (spec.rfind("jsonl:", 0) == 0) {
    p.kind = ParsedSpec::kJsonl;
    p.path = spec.substr(6);
    if (p.path.empty())
      return InvalidArgument("data.source: 'jsonl:' needs a path, e.g. jsonl:items.jsonl");
    return p;
  }
  if (spec.rfind("range:", 0) == 0) {
    std::string rest = spec.substr(6);
    auto colon = rest.find(':');
    auto n = ParseCount(rest.substr(0, colon), "data.source: " + spec + ": N");
    if (!n.ok()) return n.status();
    p.n = n.value();
    if (colon != std::string::npos) {
      auto s = ParseCount(rest.substr(colon + 1), "data.source: " + spec + ": SEED");
      if (!s.ok()) return s.status();
      p.seed = static_cast<uint64_t>(s.value());
    }
    return p;
  }
  return InvalidArgument("data.source: unknown source '" + spec +
                         "' (expected range:N[:SEED], jsonl:PATH, or - for JSONL on stdin)");
}

// `[{"id":first,"value":v},...]` for `count` items of range:N:SEED.
std::string RangeItemsJson(uint64_t seed, int64_t first, int64_t count) {
  std::string out;
  out.reserve(static_cast<size_t>(count) * 32 + 2);
  out += '[';
  char digits[24];
  auto append = [&](int64_t v) { out.append(digits, std::to_chars(digits, digits + sizeof digits, v).ptr); };
  for (int64_t i = first; i < first + count; ++i) {
    out += i == first ? "{\"id\":" : ",{\"id\":";
    append(i);
    out += ",\"value\":";
    append(RangeItemValue(seed, i));
    out += '}';
  }
  out += ']';
  return out;
}

class RangeSource final : public Source {
 public:
  RangeSource(int64_t n, uint64_t seed) : n_(n), seed_(seed) {}

  Result<Page> ReadPage(const Cursor& from, int64_t chunk_size, int64_t max_chunks) override {
    Page page;
    page.next = from;
    while (page.next.next_item < n_ && static_cast<int64_t>(page.chunks.size()) < max_chunks) {
      Chunk c;
      c.index = page.next.next_chunk++;
      c.first_item = page.next.next_item;
      c.item_count = std::min(chunk_size, n_ - c.first_item);
      c.items_json = RangeItemsJson(seed_, c.first_item, c.item_count);
      page.next.next_item += c.item_count;
      page.chunks.push_back(std::move(c));
    }
    page.last = page.next.next_item >= n_;
    return page;
  }
  bool resumable() const override { return true; }

 private:
  const int64_t n_;
  const uint64_t seed_;
};

// JSONL from a file (resumable at a byte offset, reopened under the policy for
// every page) or from stdin (a stream).
class JsonlSource final : public Source {
 public:
  // `path`: resolved under `policy`'s roots; empty: stdin.
  JsonlSource(std::string path, int64_t claim_check_bytes, SourcePolicy policy)
      : path_(std::move(path)), claim_check_bytes_(claim_check_bytes), policy_(std::move(policy)) {}

  Result<Page> ReadPage(const Cursor& from, int64_t chunk_size, int64_t max_chunks) override {
    std::istream* in = &std::cin;
    std::optional<OpenedFile> file;
    std::optional<FdReader> reader;
    std::istream file_in(nullptr);
    if (!path_.empty()) {
      auto opened = OpenUnder(policy_, path_, "data.source");
      if (!opened.ok()) return opened.status();
      file.emplace(std::move(opened).value());
      if (lseek(file->fd(), from.offset, SEEK_SET) < 0)
        return InvalidArgument("data.cursor.offset: cannot seek " + Spec() + " to byte " +
                               std::to_string(from.offset));
      reader.emplace(file->fd());
      file_in.rdbuf(&*reader);
      in = &file_in;
    } else if (from.offset != stdin_offset_) {
      return InvalidArgument("source -: stdin cannot be re-read from byte " +
                             std::to_string(from.offset));
    }
    Page page;
    page.next = from;
    std::string line;
    while (static_cast<int64_t>(page.chunks.size()) < max_chunks) {
      Chunk c;
      c.index = page.next.next_chunk;
      c.first_item = page.next.next_item;
      c.items_json = "[";
      const int64_t chunk_start = page.next.offset;
      while (c.item_count < chunk_size && std::getline(*in, line)) {
        const int64_t line_start = page.next.offset;
        page.next.offset += static_cast<int64_t>(line.size()) + (in->eof() ? 0 : 1);
        if (line.find_first_not_of(" \t\r") == std::string::npos) continue;
        // A byte-order mark is not JSON: it would break the chunk's array.
        if (line.starts_with("\xEF\xBB\xBF")) line.erase(0, 3);
        // Within the decoder's limits: a chunk is re-encoded, and later decoded.
        auto item = ParseBoundedJson(line, "item");
        if (!item.ok() || !item->is_object())
          return InvalidArgument("source " + Spec() + ": item " +
                                 std::to_string(page.next.next_item) + " (byte " +
                                 std::to_string(line_start) + ") is not a JSON object" +
                                 (item.ok() ? "" : " (" + item.status().message() + ")"));
        // Valid and within the limits, so it goes into the chunk as it was read.
        if (c.item_count > 0) c.items_json += ',';
        c.items_json += line;
        ++c.item_count;
        ++page.next.next_item;
      }
      if (reader && reader->failed()) return Internal("source " + Spec() + ": read error");
      if (c.item_count == 0) {
        page.last = true;
        break;
      }
      c.items_json += ']';
      const int64_t bytes = page.next.offset - chunk_start;
      if (claim_check_bytes_ > 0 && bytes > claim_check_bytes_ && !path_.empty()) {
        if (bytes > kMaxClaimCheckBytes)
          return InvalidArgument("data.chunk_size: chunk " + std::to_string(c.index) + " of " +
                                 Spec() + " is " + std::to_string(bytes) +
                                 " bytes, more than a claim check may carry (" +
                                 std::to_string(kMaxClaimCheckBytes) + ")");
        c.ref = ClaimCheck{path_, chunk_start, bytes};
        c.items_json.clear();
      }
      ++page.next.next_chunk;
      page.chunks.push_back(std::move(c));
    }
    if (!page.last) page.last = in->eof() || in->peek() == std::char_traits<char>::eof();
    if (path_.empty()) stdin_offset_ = page.next.offset;
    return page;
  }
  bool resumable() const override { return !path_.empty(); }

 private:
  std::string Spec() const { return path_.empty() ? "-" : "jsonl:" + path_; }
  const std::string path_;  // empty: stdin
  const int64_t claim_check_bytes_;
  const SourcePolicy policy_;
  int64_t stdin_offset_ = 0;
};

}  // namespace

Result<SourcePolicy> SourcePolicy::Make(const std::vector<std::string>& dirs, bool allow_stdin) {
  SourcePolicy policy;
  policy.allow_stdin_ = allow_stdin;
  for (const std::string& dir : dirs) {
    std::error_code ec;
    fs::path root = fs::canonical(dir, ec);
    if (ec) return InvalidArgument("--data-dir '" + dir + "': " + ec.message());
    if (!fs::is_directory(root, ec))
      return InvalidArgument("--data-dir '" + dir + "': not a directory");
    policy.roots_.push_back(std::move(root));
  }
  return policy;
}

bool SourcePolicy::Contains(const fs::path& resolved) const {
  return std::any_of(roots_.begin(), roots_.end(), [&](const fs::path& root) {
    return std::mismatch(root.begin(), root.end(), resolved.begin(), resolved.end()).first ==
           root.end();
  });
}

int64_t RangeItemValue(uint64_t seed, int64_t i) {
  // splitmix64: a well-mixed, portable hash of (seed, i).
  uint64_t z = seed * 0x9E3779B97F4A7C15ull + static_cast<uint64_t>(i) + 0x9E3779B97F4A7C15ull;
  z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ull;
  z = (z ^ (z >> 27)) * 0x94D049BB133111EBull;
  z ^= z >> 31;
  return static_cast<int64_t>(z % 1001);
}

Status CheckSourceSpec(const std::string& spec) { return ParseSpec(spec).status(); }

std::optional<int64_t> KnownItemCount(const std::string& spec) {
  auto parsed = ParseSpec(spec);
  if (!parsed.ok() || parsed->kind != ParsedSpec::kRange) return std::nullopt;
  return parsed->n;
}

Result<std::unique_ptr<Source>> OpenSource(const std::string& spec, int64_t claim_check_bytes,
                                           const SourcePolicy& policy) {
  auto parsed = ParseSpec(spec);
  if (!parsed.ok()) return parsed.status();
  switch (parsed->kind) {
    case ParsedSpec::kStdin:
      if (!policy.allows_stdin())
        return InvalidArgument("data.source: '-' (stdin) is read only by the submitting process");
      return std::unique_ptr<Source>(new JsonlSource("", claim_check_bytes, policy));
    case ParsedSpec::kJsonl: {
      auto file = OpenUnder(policy, parsed->path, "data.source");
      if (!file.ok()) return file.status();
      return std::unique_ptr<Source>(
          new JsonlSource(file->path().string(), claim_check_bytes, policy));
    }
    case ParsedSpec::kRange:
      break;
  }
  return std::unique_ptr<Source>(new RangeSource(parsed->n, parsed->seed));
}

Result<nlohmann::json> LoadClaimCheck(const ClaimCheck& ref, const SourcePolicy& policy) {
  // Bounded before anything is opened or allocated.
  if (ref.length < 1 || ref.length > kMaxClaimCheckBytes)
    return InvalidArgument("data.ref.length: must be 1 to " + std::to_string(kMaxClaimCheckBytes) +
                           " bytes");
  if (ref.offset < 0) return InvalidArgument("data.ref.offset: must be >= 0");
  auto file = OpenUnder(policy, ref.path, "data.ref.path");
  if (!file.ok()) return file.status();
  const std::string where = file->path().string();
  if (ref.offset > file->size() - ref.length)
    return InvalidArgument("data.ref.length: bytes " + std::to_string(ref.offset) + " + " +
                           std::to_string(ref.length) + " run past the end of " + where + " (" +
                           std::to_string(file->size()) + " bytes)");
  std::string bytes(static_cast<size_t>(ref.length), '\0');
  for (int64_t done = 0; done < ref.length;) {
    const ssize_t n = pread(file->fd(), bytes.data() + done, static_cast<size_t>(ref.length - done),
                            ref.offset + done);
    if (n < 0 && errno == EINTR) continue;
    if (n < 0) return Internal("data.ref.path: reading " + where + ": " + std::strerror(errno));
    if (n == 0) return NotFound("data.ref.path: " + where + " became shorter while it was read");
    done += n;
  }
  nlohmann::json items = nlohmann::json::array();
  size_t start = 0;
  while (start < bytes.size()) {
    size_t end = bytes.find('\n', start);
    if (end == std::string::npos) end = bytes.size();
    std::string_view line(bytes.data() + start, end - start);
    if (line.find_first_not_of(" \t\r") != std::string_view::npos) {
      auto item = ParseBoundedJson(line, "item");
      if (!item.ok()) return InvalidArgument("data.ref: a line of " + where + ": " + item.status().message());
      items.push_back(std::move(item).value());
    }
    start = end + 1;
  }
  return items;
}

}  // namespace fanflow

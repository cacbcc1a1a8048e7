#include "pipeline/batch_runner.h"

#include <exception>
#include <filesystem>

#include "core/printable.h"
#include "pipeline/batch_run.h"

namespace fanflow {
namespace {

// Foreign code: an exception escaping it fails the attempt (the worker retries
// the chunk), where the bus would dead-letter the chunk with no chunk_done and
// leave the batch waiting for it.
class GuardedProcessor final : public Processor {
 public:
  explicit GuardedProcessor(std::shared_ptr<Processor> inner) : inner_(std::move(inner)) {}

  Result<nlohmann::json> Process(const ChunkInput& chunk) override {
    return Guarded([&] { return inner_->Process(chunk); });
  }
  bool TakesItemsText() const override { return inner_->TakesItemsText(); }
  Result<nlohmann::json> ProcessText(const ChunkText& chunk) override {
    return Guarded([&] { return inner_->ProcessText(chunk); });
  }

 private:
  template <typename Call>
  static Result<nlohmann::json> Guarded(Call call) {
    try {
      return call();
    } catch (const std::exception& e) {
      return Internal("processor threw: " + EscapeForLog(e.what()));
    } catch (...) {
      return Internal("processor threw a non-std exception");
    }
  }

  const std::shared_ptr<Processor> inner_;
};

}  // namespace

Result<Event> MakeBatchStart(const BatchSpec& spec) {
  if (Status s = CheckSourceSpec(spec.source); !s.ok()) return s;
  std::string source = spec.source;
  // Absolute, so a ventilator with another working directory finds the same file.
  if (source.rfind("jsonl:", 0) == 0) {
    std::error_code ec;
    if (!std::filesystem::is_regular_file(source.substr(6), ec))
      return NotFound("--source " + source + ": no such file");
    source = "jsonl:" + std::filesystem::absolute(source.substr(6)).lexically_normal().string();
  }
  const std::string batch_id = spec.batch_id.empty() ? NewBatchId() : spec.batch_id;
  // The ids travel in MQTT properties: one Mosquitto refuses would cost the
  // connection, so they follow the decoder's rules for names.
  if (Status s = CheckName(batch_id, "--batch-id", kMaxSubjectLength); !s.ok()) return s;
  if (!spec.correlation_id.empty())
    if (Status s = CheckName(spec.correlation_id, "--correlation-id", kMaxIdLength); !s.ok())
      return s;
  Event start =
      MakeStartFanout(batch_id, spec.correlation_id.empty() ? batch_id : spec.correlation_id,
                      source, spec.chunk_size);
  start.data["page_chunks"] = spec.page_chunks;
  start.data["claim_check_bytes"] = spec.claim_check_bytes;
  start.data["combine"] = spec.combine;
  // Whatever else the decoder would refuse (e.g. a chunk size past its limit)
  // is a usage error here, not a dead letter later.
  if (auto back = DecodeEvent(EncodeEvent(start)); !back.ok()) return back.status();
  return start;
}

Result<Event> RunBatch(EventBus& bus, std::shared_ptr<Processor> processor, const BatchSpec& spec,
                       const RunOptions& options) {
  if (!processor) return InvalidArgument("RunBatch needs a processor");
  auto start = MakeBatchStart(spec);
  if (!start.ok()) return start.status();
  BatchRoles roles;
  auto files = RunFiles(start.value(), options.data_dirs);
  if (!files.ok()) return files.status();
  roles.workers.files = std::move(files).value();
  roles.workers.concurrency = options.concurrency;
  roles.workers.max_attempts = options.max_attempts;
  roles.processor = std::make_shared<GuardedProcessor>(std::move(processor));
  TemporaryLedger temporary;
  if (options.state_path.empty()) temporary.path = MakeTemporaryLedgerPath();
  roles.aggregator.state_path = options.state_path.empty() ? temporary.path : options.state_path;
  roles.aggregator.lease = DefaultLease(bus);
  auto run = BatchRun::Start({bus, bus, bus}, std::move(roles), start.value(), false);
  if (!run.ok()) return run.status();
  if (Status s = run.value()->Submit(); !s.ok()) return s;
  auto complete = run.value()->Wait(options.timeout, nullptr, options.stop);
  if (!complete.ok()) run.value()->Stop();  // now, not once the chunks in flight are done
  return complete;
}

}  // namespace fanflow

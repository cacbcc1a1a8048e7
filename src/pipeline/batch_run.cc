#include "pipeline/batch_run.h"

#include <unistd.h>

#include <cstdio>
#include <filesystem>
#include <random>

namespace fanflow {

std::string NewBatchId() {
  std::string t = NowRfc3339();  // 2026-11-22T21:45:00.123Z
  std::string compact;
  for (char c : t.substr(0, 19))
    if (c != '-' && c != ':') compact += c;
  char suffix[8];
  std::snprintf(suffix, sizeof suffix, "%06x",
                static_cast<unsigned>(std::random_device{}() & 0xffffff));
  return "b-" + compact + "-" + suffix;
}

Result<SourcePolicy> RunFiles(const Event& start, std::vector<std::string> dirs) {
  const std::string source = start.data["source"].get<std::string>();
  if (source.rfind("jsonl:", 0) == 0) {
    std::error_code ec;
    dirs.push_back(std::filesystem::weakly_canonical(source.substr(6), ec).parent_path().string());
  }
  return SourcePolicy::Make(dirs, source == "-");
}

Result<std::unique_ptr<BatchRun>> BatchRun::Start(BatchBuses buses, BatchRoles roles, Event start,
                                                  bool track_progress) {
  if (!roles.processor) return InvalidArgument("a batch run needs a processor");
  // A bus of this process alone starts empty: a rerun of an unfinished batch publishes it again.
  roles.aggregator.refan_open_batches = !buses.aggregator.Capabilities().shared_between_processes;
  std::unique_ptr<BatchRun> run(new BatchRun(buses.ventilator, std::move(start)));
  auto aggregator = Aggregator::Start(buses.aggregator, std::move(roles.aggregator));
  if (!aggregator.ok()) return aggregator.status();
  run->aggregator_ = std::move(aggregator).value();
  const SourcePolicy files = roles.workers.files;
  auto workers = Worker::Start(buses.workers, std::move(roles.processor), std::move(roles.workers));
  if (!workers.ok()) return workers.status();
  run->workers_ = std::move(workers).value();
  const std::string& batch_id = run->start_.subject;
  const bool from_stdin = run->start_.data["source"] == "-";
  auto ventilator = Ventilator::Start(buses.ventilator, {1, files, from_stdin ? batch_id : ""});
  if (!ventilator.ok()) return ventilator.status();
  run->ventilator_ = std::move(ventilator).value();
  auto waiter = BatchWaiter::Start(buses.aggregator, batch_id, track_progress);
  if (!waiter.ok()) return waiter.status();
  run->waiter_ = std::move(waiter).value();
  return run;
}

Status BatchRun::Submit() {
  return ventilator_bus_.Publish(Message{start_.type, start_.id, EncodeEvent(start_)});
}

Result<Event> BatchRun::Wait(std::chrono::milliseconds timeout,
                             const std::function<void(const BatchProgress&)>& on_progress,
                             std::stop_token stop) {
  return waiter_->Wait(timeout, on_progress, std::move(stop));
}

void BatchRun::Stop() {
  ventilator_.reset();
  if (workers_) workers_->Interrupt();
  workers_.reset();
  aggregator_.reset();
}

void TemporaryLedger::Remove() const {
  if (path.empty()) return;
  for (const char* suffix : {"", "-wal", "-shm"}) std::remove((path + suffix).c_str());
}

std::string MakeTemporaryLedgerPath() {
  std::string pattern = (std::filesystem::temp_directory_path() / "fanflow-run-XXXXXX").string();
  int fd = mkstemp(pattern.data());
  if (fd >= 0) close(fd);
  return pattern;
}

}  // namespace fanflow

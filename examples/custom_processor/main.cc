// custom_processor SOURCE: runs one batch in this process with a processor of
// its own, the sum of the squares of each item's integer `value`, and prints
// the batch_complete CloudEvent as the last line on stdout (data.result =
// {"sum_of_squares": N}). SOURCE: jsonl:FILE, range:N[:SEED] or - (stdin).
#include <fanflow/batch_runner.h>
#include <fanflow/bus.h>
#include <fanflow/event.h>
#include <fanflow/processor.h>
#include <spdlog/sinks/stdout_color_sinks.h>
#include <spdlog/spdlog.h>

#include <cstdint>
#include <iostream>
#include <memory>
#include <string>

namespace {

// Called from several worker threads at once: it keeps no state, so it is
// thread-safe. An error fails the attempt; the worker retries the chunk.
class SumOfSquares final : public fanflow::Processor {
 public:
  fanflow::Result<nlohmann::json> Process(const fanflow::ChunkInput& chunk) override {
    int64_t sum = 0;
    for (size_t i = 0; i < chunk.items.size(); ++i) {
      const nlohmann::json& item = chunk.items[i];
      const std::string where =
          "chunk " + std::to_string(chunk.chunk_index) + ", item " + std::to_string(i);
      if (!item.is_object() || !item.contains("value") || !item["value"].is_number_integer())
        return fanflow::InvalidArgument(where + ": value must be an integer");
      const nlohmann::json& v = item["value"];
      // Above INT64_MAX (stored unsigned) its square is beyond int64 anyway.
      const bool too_large = v.is_number_unsigned() && v.get<uint64_t>() > INT64_MAX;
      const int64_t value = too_large ? 0 : v.get<int64_t>();
      int64_t square = 0;
      if (too_large || __builtin_mul_overflow(value, value, &square) ||
          __builtin_add_overflow(sum, square, &sum))
        return fanflow::InvalidArgument(where + ": the sum of squares leaves the int64 range");
    }
    return nlohmann::json{{"sum_of_squares", sum}};
  }
};

}  // namespace

int main(int argc, char** argv) {
  if (argc != 2) {
    std::cerr << "usage: custom_processor SOURCE   (jsonl:FILE, range:N[:SEED] or -)\n";
    return 2;
  }
  spdlog::set_default_logger(spdlog::stderr_color_mt("custom_processor"));
  spdlog::set_level(spdlog::level::warn);

  auto bus = fanflow::OpenBus("inproc://");
  if (!bus.ok()) {
    std::cerr << "custom_processor: " << bus.status().ToString() << "\n";
    return 1;
  }
  fanflow::BatchSpec spec;
  spec.source = argv[1];
  spec.chunk_size = 100;
  auto complete = fanflow::RunBatch(*bus.value(), std::make_shared<SumOfSquares>(), spec);
  if (!complete.ok()) {
    std::cerr << "custom_processor: " << complete.status().ToString() << "\n";
    return complete.status().code() == fanflow::StatusCode::kInvalidArgument ? 2 : 1;
  }
  std::cout << fanflow::EncodeEvent(complete.value()) << std::endl;
  return complete->data["status"] == "succeeded" ? 0 : 3;
}

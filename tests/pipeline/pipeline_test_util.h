// Shared helpers for pipeline tests on a private in-process bus.
#pragma once

#include <gtest/gtest.h>

#include <chrono>
#include <memory>
#include <random>
#include <string>
#include <thread>

#include "core/bus.h"
#include "core/event.h"

namespace fanflow::testing {

// A bus of its own for each test: inproc://<random name>.
inline std::unique_ptr<EventBus> PrivateBus() {
  static std::mt19937_64 rng(std::random_device{}());
  auto bus = OpenBus("inproc://test-" + std::to_string(rng()));
  EXPECT_TRUE(bus.ok());
  return std::move(bus).value();
}

inline Message ToMessage(const Event& e) { return Message{e.type, e.id, EncodeEvent(e)}; }

inline Event ChunkDone(const std::string& batch, int64_t index, int64_t result, bool ok = true) {
  nlohmann::json d = {{"chunk_index", index}, {"status", ok ? "succeeded" : "failed"},
                      {"items", 10},          {"attempts", 1}};
  if (ok)
    d["result"] = result;
  else
    d["error"] = "processor failed";
  return MakeEvent(kChunkDone, batch + "/done/" + std::to_string(index), batch, "corr-" + batch, d);
}

// The start of a batch of `chunks` chunks of 10 items, as a client sends it.
inline Event Start(const std::string& batch, int64_t chunks) {
  return MakeEvent(kStartFanout, batch + "/start", batch, "corr-" + batch,
                   {{"source", "range:" + std::to_string(chunks * 10)}, {"chunk_size", 10}});
}

// The ventilator's report that the first fan-out step published all of it.
inline Event Sealed(const std::string& batch, int64_t chunks) {
  return MakeEvent(kBatchSealed, batch + "/sealed", batch, "corr-" + batch,
                   {{"total_chunks", chunks}, {"total_items", chunks * 10}, {"step", 0}});
}

template <typename Pred>
bool Eventually(Pred done, std::chrono::milliseconds limit = std::chrono::seconds(20)) {
  auto deadline = std::chrono::steady_clock::now() + limit;
  while (!done()) {
    if (std::chrono::steady_clock::now() > deadline) return false;
    std::this_thread::sleep_for(std::chrono::milliseconds(5));
  }
  return true;
}

}  // namespace fanflow::testing

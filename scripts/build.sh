#!/usr/bin/env bash
# Configures and builds fanflow into ./build (or $FANFLOW_BUILD_DIR): by default
# everything but the benches, whatever an earlier configure of the tree chose
# (scripts/run-main-job.sh builds the command alone). Extra arguments go to
# cmake, e.g. -DFANFLOW_BENCH=ON or -DFANFLOW_TESTS=OFF.
set -euo pipefail
cd "$(dirname "$0")/.."
build_dir="${FANFLOW_BUILD_DIR:-build}"
cmake -S . -B "$build_dir" -G Ninja -DCMAKE_BUILD_TYPE="${FANFLOW_BUILD_TYPE:-RelWithDebInfo}" \
  -DFANFLOW_BENCH=OFF -DFANFLOW_TESTS=ON -DFANFLOW_WITH_AMQP=ON -DFANFLOW_WITH_MQTT=ON "$@"
cmake --build "$build_dir" -j "$(nproc)"

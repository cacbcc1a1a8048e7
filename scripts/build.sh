#!/usr/bin/env bash
# Configures and builds fanflow into ./build (or $FANFLOW_BUILD_DIR).
# Extra arguments go to cmake, e.g. -DFANFLOW_BENCH=ON.
set -euo pipefail
cd "$(dirname "$0")/.."
build_dir="${FANFLOW_BUILD_DIR:-build}"
cmake -S . -B "$build_dir" -G Ninja -DCMAKE_BUILD_TYPE="${FANFLOW_BUILD_TYPE:-RelWithDebInfo}" \
  -DFANFLOW_BENCH=OFF "$@"
cmake --build "$build_dir" -j "$(nproc)"

#!/usr/bin/env bash
# Builds the libFuzzer targets (fuzz/) with clang, ASan and UBSan in a build
# tree of their own (build-fuzz, or $FANFLOW_FUZZ_BUILD_DIR) and runs each for
# $FANFLOW_FUZZ_SECONDS (default 60) over its in-tree corpus fuzz/corpus/<target>/.
# New inputs go to a scratch dir, so the tree is not changed. Exits non-zero on
# any crash, leak, sanitizer report or hang; the reproducer is left in
# build-fuzz/artifacts/.
set -euo pipefail
cd "$(dirname "$0")/.."
build_dir="${FANFLOW_FUZZ_BUILD_DIR:-build-fuzz}"
seconds="${FANFLOW_FUZZ_SECONDS:-60}"
cxx="${FANFLOW_FUZZ_CXX:-clang++-14}"
targets=(fuzz_decode_event fuzz_chunk_done)

command -v "$cxx" >/dev/null || { echo "fuzz.sh: $cxx not found (Debian: clang-14 libfuzzer-14-dev)" >&2; exit 2; }
cmake -S . -B "$build_dir" -G Ninja -DCMAKE_BUILD_TYPE=RelWithDebInfo -DCMAKE_CXX_COMPILER="$cxx" \
  -DFANFLOW_FUZZ=ON -DFANFLOW_WITH_AMQP=OFF -DFANFLOW_WITH_MQTT=OFF -DFANFLOW_TESTS=OFF \
  -DFANFLOW_BENCH=OFF >/dev/null
cmake --build "$build_dir" -j "${FANFLOW_FUZZ_JOBS:-2}" --target "${targets[@]}"

artifacts="$build_dir/artifacts"
mkdir -p "$artifacts"
status=0
for t in "${targets[@]}"; do
  scratch="$(mktemp -d)"
  echo "fuzz.sh: $t for ${seconds} s over fuzz/corpus/$t"
  # -rss_limit_mb guards against a memory blow-up; -timeout makes a hang a finding.
  if ! "$build_dir/fuzz/$t" -max_total_time="$seconds" -timeout=25 -rss_limit_mb=2048 \
       -max_len=65536 -print_final_stats=1 -artifact_prefix="$artifacts/$t-" \
       "$scratch" "fuzz/corpus/$t" 2>"$build_dir/$t.log"; then
    echo "fuzz.sh: $t FAILED; last lines of $build_dir/$t.log:" >&2
    tail -n 40 "$build_dir/$t.log" >&2
    status=1
  else
    grep -E "^stat::number_of_executed_units|^#[0-9]+.*DONE" "$build_dir/$t.log" | tail -n 2 || true
  fi
  rm -rf "$scratch"
done
[ "$status" = 0 ] && echo "fuzz.sh: 0 crashes"
exit "$status"

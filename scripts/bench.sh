#!/usr/bin/env bash
# Builds the core micro benchmarks in a Release tree (build-release/) and runs
# them: 5 repetitions per case, then prints the medians as a Markdown table.
# Extra arguments go to core_bench, e.g. scripts/bench.sh --benchmark_filter=Codec
set -euo pipefail

root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
build="$root/build-release"
json="$build/core_bench.json"

cmake -S "$root" -B "$build" -G Ninja -DCMAKE_BUILD_TYPE=Release \
  -DFANFLOW_BENCH=ON -DFANFLOW_TESTS=OFF >/dev/null
ninja -C "$build" -j2 core_bench

"$build/bench/core_bench" --benchmark_repetitions=5 --benchmark_report_aggregates_only=true \
  --benchmark_out="$json" --benchmark_out_format=json "$@"

# Medians only: on 2 shared cores a mean is dragged by whoever else runs.
python3 - "$json" <<'PY'
import json, sys

NS = {"ns": 1, "us": 1e3, "ms": 1e6, "s": 1e9}

def duration(value, unit):
    ns = value * NS[unit]
    for factor, name in ((1e9, "s"), (1e6, "ms"), (1e3, "µs")):
        if ns >= factor:
            return f"{ns / factor:.3g} {name}"
    return f"{ns:.3g} ns"

def rate(value, unit):
    for factor, prefix in ((1e9, "G"), (1e6, "M"), (1e3, "k")):
        if value >= factor:
            return f"{value / factor:.2f} {prefix}{unit}"
    return f"{value:.1f} {unit}"

report = json.load(open(sys.argv[1]))
print()
ctx = report["context"]
reps = report["benchmarks"][0].get("repetitions", "?")
load = ", ".join(f"{x:.2f}" for x in ctx.get("load_avg", []))
print(f"Medians of {reps} repetitions, {ctx.get('num_cpus', '?')} CPUs, {ctx.get('date', '')}, "
      f"load average {load}")
# Rates are per CPU time of the benchmark thread, or per wall time for the
# names ending in /real_time; cv is the spread of that same time.
print("| benchmark | wall time | CPU time | cv | items/s | bytes/s |")
print("|---|---|---|---|---|---|")
cv = {b["run_name"]: b["real_time"] if b["run_name"].endswith("/real_time") else b["cpu_time"]
      for b in report["benchmarks"] if b.get("aggregate_name") == "cv"}
for b in report["benchmarks"]:
    if b.get("aggregate_name") != "median":
        continue
    name = b["run_name"]
    wall = duration(b["real_time"], b["time_unit"])
    cpu = duration(b["cpu_time"], b["time_unit"])
    items = rate(b["items_per_second"], "/s") if "items_per_second" in b else ""
    size = rate(b["bytes_per_second"], "B/s") if "bytes_per_second" in b else ""
    spread = f"{cv[name] * 100:.0f}%" if name in cv else ""
    print(f"| {name} | {wall} | {cpu} | {spread} | {items} | {size} |")
PY

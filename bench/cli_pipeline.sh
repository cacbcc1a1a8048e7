#!/usr/bin/env bash
# The pipeline as users run it: every role its own `fanflow` process on a
# broker (aggregator, ventilator, WORKERS workers), timed from `submit --wait`
# to its batch_complete, REPS times; prints each run and the median chunks/s.
# Then, in the same sitting, the raw client's ceiling for the same two messages
# per chunk on the same broker (the raw rows of the broker's pipeline bench:
# 1 / (1/big + 1/small), medians of 5) and the ratio of the two.
#
#   bench/cli_pipeline.sh BUS_URL [ITEMS] [CHUNK] [WORKERS] [REPS]
#   bench/cli_pipeline.sh mqtt://127.0.0.1:1886 200000 100 2 5
#
# WORKER_FLAGS go to every `fanflow worker` (e.g. "--concurrency 8 --prefetch 256").
# FANFLOW_BIN picks the binary (default build-release/src/cli/fanflow), and the
# raw bench is taken from the same tree's bench/ (build it with
# -DFANFLOW_BENCH=ON; CEILING=0 skips it). Each repetition starts fresh
# processes and stops them by pid.
set -euo pipefail
root="$(cd "$(dirname "$0")/.." && pwd)"
bus="${1:?usage: bench/cli_pipeline.sh BUS_URL [ITEMS] [CHUNK] [WORKERS] [REPS]}"
items="${2:-200000}" chunk="${3:-100}" workers="${4:-2}" reps="${5:-5}"
bin="${FANFLOW_BIN:-$root/build-release/src/cli/fanflow}"
[[ -x "$bin" ]] || { echo "cli_pipeline.sh: no fanflow at $bin (build build-release first)" >&2; exit 2; }
work="$(mktemp -d)"
pids=()
stop_roles() {
  for pid in "${pids[@]}"; do kill -TERM "$pid" 2>/dev/null || true; done
  for pid in "${pids[@]}"; do wait "$pid" 2>/dev/null || true; done
  pids=()
}
trap 'stop_roles; rm -rf "$work"' EXIT

rates=()
for rep in $(seq 1 "$reps"); do
  "$bin" topology --bus "$bus" >/dev/null 2>&1 || true
  "$bin" aggregator --bus "$bus" --state "$work/ledger-$rep.db" >"$work/aggregator.log" 2>&1 &
  pids+=($!)
  "$bin" ventilator --bus "$bus" >"$work/ventilator.log" 2>&1 &
  pids+=($!)
  for w in $(seq 1 "$workers"); do
    # shellcheck disable=SC2086  # WORKER_FLAGS is a list of flags
    "$bin" worker --bus "$bus" ${WORKER_FLAGS:-} >"$work/worker-$w.log" 2>&1 &
    pids+=($!)
  done
  sleep 2  # every role subscribed
  start=$(date +%s.%N)
  out="$("$bin" submit --bus "$bus" --source "range:$items" --chunk-size "$chunk" --wait --json --timeout 600 2>"$work/submit.log")"
  end=$(date +%s.%N)
  stop_roles
  status="$(python3 -c 'import json,sys; print(json.loads(sys.argv[1].splitlines()[-1])["data"]["status"])' "$out")"
  [[ "$status" == succeeded ]] || { echo "cli_pipeline.sh: run $rep ended $status" >&2; exit 1; }
  rate="$(python3 -c "print(round(($items + $chunk - 1) // $chunk / ($end - $start)))")"
  echo "run $rep: $rate chunks/s"
  rates+=("$rate")
done
median="$(printf '%s\n' "${rates[@]}" | sort -n | awk '{a[NR]=$1} END{print a[int((NR+1)/2)]}')"
echo "median of $reps: $median chunks/s ($items items in chunks of $chunk, $workers workers, $bus)"

[[ "${CEILING:-1}" == 0 ]] && exit 0
case "$bus" in
  mqtt://*) raw_bench=mqtt_pipeline_bench filter='RawPaho/bytes:[0-9]+/props:1/stock:0' rate=msg_per_s
            raw_env=(FANFLOW_BENCH_MQTT_URL="$bus" FANFLOW_BENCH_MQTT_STOCK_URL=) ;;
  amqp://*) raw_bench=amqp_pipeline_bench filter='RawClient/window:1000/prefetch:100/' rate=items_per_second
            raw_env=(FANFLOW_BENCH_AMQP_URL="$bus") ;;
  *) echo "cli_pipeline.sh: no raw ceiling for $bus (CEILING=0 to skip)" >&2; exit 2 ;;
esac
raw_bin="$(dirname "$(dirname "$(dirname "$bin")")")/bench/$raw_bench"
[[ -x "$raw_bin" ]] || { echo "cli_pipeline.sh: no $raw_bin for the raw ceiling (build with -DFANFLOW_BENCH=ON)" >&2; exit 2; }
env "${raw_env[@]}" "$raw_bin" --benchmark_filter="$filter" --benchmark_out="$work/raw.json" \
  --benchmark_out_format=json >"$work/raw.log" 2>&1 || { cat "$work/raw.log" >&2; exit 1; }
python3 - "$work/raw.json" "$rate" "$median" <<'PY'
import json, re, statistics, sys
report, rate, fanflow = json.load(open(sys.argv[1])), sys.argv[2], float(sys.argv[3])
by_size = {}
for b in report["benchmarks"]:
    if b.get("run_type") == "iteration" and not b.get("error_occurred") and rate in b:
        by_size.setdefault(int(re.search(r"bytes:(\d+)", b["name"]).group(1)), []).append(b[rate])
if len(by_size) != 2:
    sys.exit("cli_pipeline.sh: the raw bench did not give both message sizes: %s" % sorted(by_size))
small, big = (statistics.median(by_size[k]) for k in sorted(by_size))
ceiling = 1 / (1 / big + 1 / small)
print("raw ceiling: %.0f chunks/s (%.0f msg/s at %d B, %.0f at %d B, medians of %d); fanflow / raw = %.2f"
      % (ceiling, small, min(by_size), big, max(by_size), len(by_size[max(by_size)]), fanflow / ceiling))
PY

#!/usr/bin/env bash
# The pipeline as users run it: every role its own `fanflow` process on a
# broker (aggregator, ventilator, WORKERS workers), timed from `submit --wait`
# to its batch_complete, REPS times; prints each run and the median chunks/s.
#
#   bench/cli_pipeline.sh BUS_URL [ITEMS] [CHUNK] [WORKERS] [REPS]
#   bench/cli_pipeline.sh mqtt://127.0.0.1:1886 200000 100 2 5
#
# FANFLOW_BIN picks the binary (default build-release/src/cli/fanflow). Each
# repetition starts fresh processes and stops them by pid.
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
    "$bin" worker --bus "$bus" >"$work/worker-$w.log" 2>&1 &
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

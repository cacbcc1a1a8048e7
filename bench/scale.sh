#!/usr/bin/env bash
# The 10-million-item measurements of docs/SCALE.md: one batch of N items
# (range:N:7, summed) in chunks of C, in-process or on RabbitMQ with every role
# a separate process, each under /usr/bin/time -v (peak RSS); amqp-cluster on
# the 3-node cluster (quorum queues, every role on node 1 first). Prints one
# Markdown table row. On RabbitMQ it also reports the node's peak RSS during
# the batch (VmHWM of its Erlang VM, reset at the start; the pid file is the
# start script's) and the peak size of its data dir, sampled every 2 s.
#
#   bench/scale.sh inproc 10000000 100
#   eval "$(scripts/rabbitmq-start.sh)"; bench/scale.sh amqp 10000000 1000
#   eval "$(scripts/rabbitmq-cluster-start.sh)"; bench/scale.sh amqp-cluster 10000000 1000
# Uses build/src/cli/fanflow (FANFLOW=... to change) and a work dir under /tmp.
set -euo pipefail
mode="$1" items="$2" chunk="$3"
fanflow="${FANFLOW:-$(cd "$(dirname "$0")/.." && pwd)/build/src/cli/fanflow}"
work="$(mktemp -d /tmp/fanflow-scale-XXXXXX)"
mb() { awk '{printf "%.1f", $1 / 1e6}' <<<"$(stat -c %s "$1")"; }
peak() { awk -F': *' '/Maximum resident set size/ {printf "%.1f", $2 / 1024}' "$1"; }
elapsed() { awk -F': ' '/Elapsed \(wall clock\)/ {n = split($NF, t, ":"); s = 0; for (i = 1; i <= n; i++) s = s * 60 + t[i]; print s}' "$1"; }

if [[ "$mode" == inproc ]]; then
  /usr/bin/time -v -o "$work/run.time" "$fanflow" run --source "range:$items:7" --chunk-size "$chunk" \
    --processor sum --state "$work/ledger.db" --concurrency 4 --json --log-level warn >"$work/out.json"
  wall="$(elapsed "$work/run.time")"
  printf '| inproc | %s | %s | %s | %.0f | run %s MB | %s MB | - | - |\n' "$items" "$chunk" "$wall" \
    "$(echo "$items / $wall" | bc -l)" "$(peak "$work/run.time")" \
    "$(mb "$work/ledger.db")"
else
  if [[ "$mode" == amqp-cluster ]]; then
    : "${FANFLOW_TEST_AMQP_CLUSTER_URL:?start the cluster: eval \"\$(scripts/rabbitmq-cluster-start.sh)\"}"
    base="$FANFLOW_TEST_AMQP_CLUSTER_URL" ctl="$FANFLOW_TEST_AMQP_CLUSTER_CTL_1"
    pid_files=("$FANFLOW_TEST_AMQP_CLUSTER_PID_FILE_1" "$FANFLOW_TEST_AMQP_CLUSTER_PID_FILE_2"
               "$FANFLOW_TEST_AMQP_CLUSTER_PID_FILE_3")
  else
    : "${FANFLOW_TEST_AMQP_URL:?start the node: eval \"\$(scripts/rabbitmq-start.sh)\"}"
    base="$FANFLOW_TEST_AMQP_URL" ctl="$FANFLOW_TEST_RABBITMQCTL" pid_files=("$FANFLOW_TEST_RABBITMQ_PID_FILE")
  fi
  vhost="scale-$RANDOM"
  $ctl -q add_vhost "$vhost"
  $ctl -q set_permissions -p "$vhost" guest '.*' '.*' '.*'
  export FANFLOW_BUS="${base%/}/$vhost"
  beams=() data=()
  for f in "${pid_files[@]}"; do
    beams+=("$(cat "$f")")
    data+=("$(dirname "$f")/mnesia")
    echo 5 >"/proc/${beams[-1]}/clear_refs"  # VmHWM from now on: this batch's peak, not the boot's
  done
  "$fanflow" topology --log-level warn >/dev/null
  pids=()
  role() {
    local name="$1"; shift
    /usr/bin/time -v -o "$work/$name.time" "$fanflow" "$@" --log-level warn 2>"$work/$name.log" &
    pids+=($!)
  }
  role aggregator aggregator --state "$work/ledger.db"
  role ventilator ventilator
  role worker worker --processor sum --concurrency 32
  sleep 2
  ( while sleep 2; do du -csm "${data[@]}" | tail -1 | cut -f1; done ) >"$work/disk.samples" &
  sampler=$!
  /usr/bin/time -v -o "$work/submit.time" "$fanflow" submit --source "range:$items:7" \
    --chunk-size "$chunk" --wait --json --log-level warn >"$work/out.json"
  kill "$sampler"
  # Per node (on a cluster one figure per node).
  broker_hwm="$(for b in "${beams[@]}"; do awk '/VmHWM/ {printf "%.0f ", $2 / 1024}' "/proc/$b/status"; done)"
  broker_rss="$(for b in "${beams[@]}"; do awk '/VmRSS/ {printf "%.0f ", $2 / 1024}' "/proc/$b/status"; done)"
  disk_peak="$(sort -n "$work/disk.samples" | tail -1)"
  # The roles themselves (children of their /usr/bin/time), so time reports.
  for p in "${pids[@]}"; do kill -TERM $(pgrep -P "$p") 2>/dev/null || true; done
  wait "${pids[@]}" 2>/dev/null || true
  wall="$(elapsed "$work/submit.time")"
  printf "| $mode | %s | %s | %s | %.0f | aggregator %s MB, ventilator %s MB, worker %s MB, submit %s MB | %s MB | VmHWM %s MB (RSS after %s MB) | %s MB |\n" \
    "$items" "$chunk" "$wall" "$(echo "$items / $wall" | bc -l)" "$(peak "$work/aggregator.time")" \
    "$(peak "$work/ventilator.time")" "$(peak "$work/worker.time")" "$(peak "$work/submit.time")" \
    "$(mb "$work/ledger.db")" "$broker_hwm" "$broker_rss" "$disk_peak"
  $ctl -q delete_vhost "$vhost"
fi
python3 -c 'import json,sys; d=json.load(open(sys.argv[1]))["data"]; print("  status", d["status"], "chunks", d["chunks"], "items", d["items"], "result", d["result"])' "$work/out.json" >&2
rm -rf "$work"

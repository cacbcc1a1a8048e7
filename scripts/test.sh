#!/usr/bin/env bash
# Every test, from a fresh Debian machine: installs the build deps, the brokers
# and the third-party clients, builds, starts a private RabbitMQ node, a 3-node
# RabbitMQ cluster and Mosquitto on loopback (non-default ports), runs ctest
# (unit, adapter, hostile-input, fault-matrix and cluster fail-over suites),
# runs the fuzzers for a bounded time, and stops the brokers by pid.
set -euo pipefail
root="$(cd "$(dirname "$0")/.." && pwd)"
cd "$root"

bash scripts/install-deps.sh --brokers
bash scripts/build.sh

cluster_pid=""
stop_brokers() {
  bash "$root/scripts/mosquitto-stop.sh" || true
  # A cluster still starting is let finish (bounded by its ready timeout), then stopped.
  [[ -z "$cluster_pid" ]] || wait "$cluster_pid" 2>/dev/null || true
  bash "$root/scripts/rabbitmq-cluster-stop.sh" || true
  bash "$root/scripts/rabbitmq-stop.sh" || true
}
trap stop_brokers EXIT
# The 3-node cluster (the fail-over tests, faults.amqp-cluster.*) boots in the
# background while the single node and Mosquitto start.
cluster_out="$(mktemp)"
bash scripts/rabbitmq-cluster-start.sh >"$cluster_out" &
cluster_pid=$!
# Captured first: `eval "$(...)"` would swallow a start script's failure, and
# every broker test would then skip instead of run.
rabbitmq_env="$(bash scripts/rabbitmq-start.sh)" || { echo "test.sh: RabbitMQ did not start" >&2; exit 1; }
eval "$rabbitmq_env"
mosquitto_env="$(bash scripts/mosquitto-start.sh)" || { echo "test.sh: Mosquitto did not start" >&2; exit 1; }
eval "$mosquitto_env"
wait "$cluster_pid" || { echo "test.sh: the RabbitMQ cluster did not start" >&2; exit 1; }
eval "$(cat "$cluster_out")"
rm -f "$cluster_out"

# Serial: some broker tests restart their broker, which others must not see.
(cd build && ctest --output-on-failure --timeout 900 "$@")

# The decoder and the chunk_done -> ledger path under libFuzzer, for a bounded
# time over the corpus in fuzz/corpus: any crash fails the run.
bash scripts/fuzz.sh

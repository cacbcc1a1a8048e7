#!/usr/bin/env bash
# Every test, from a fresh Debian machine: installs the build deps, the brokers
# and the third-party clients, builds, starts a private RabbitMQ and Mosquitto
# on loopback (non-default ports), runs ctest (unit, adapter, hostile-input and
# fault-matrix suites), runs the fuzzers for a bounded time, and stops the
# brokers by pid.
set -euo pipefail
root="$(cd "$(dirname "$0")/.." && pwd)"
cd "$root"

bash scripts/install-deps.sh --brokers
bash scripts/build.sh

stop_brokers() {
  bash "$root/scripts/mosquitto-stop.sh" || true
  bash "$root/scripts/rabbitmq-stop.sh" || true
}
trap stop_brokers EXIT
# Captured first: `eval "$(...)"` would swallow a start script's failure, and
# every broker test would then skip instead of run.
rabbitmq_env="$(bash scripts/rabbitmq-start.sh)" || { echo "test.sh: RabbitMQ did not start" >&2; exit 1; }
eval "$rabbitmq_env"
mosquitto_env="$(bash scripts/mosquitto-start.sh)" || { echo "test.sh: Mosquitto did not start" >&2; exit 1; }
eval "$mosquitto_env"

# Serial: some broker tests restart their broker, which others must not see.
(cd build && ctest --output-on-failure --timeout 900 "$@")

# The decoder and the chunk_done -> ledger path under libFuzzer, for a bounded
# time over the corpus in fuzz/corpus: any crash fails the run.
bash scripts/fuzz.sh

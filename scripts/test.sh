#!/usr/bin/env bash
# Every test, from a fresh Debian machine: installs the build deps, the brokers
# and the third-party clients, builds, starts a private RabbitMQ and Mosquitto
# on loopback (non-default ports), runs ctest, and stops the brokers by pid.
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
cd build
ctest --output-on-failure --timeout 900 "$@"

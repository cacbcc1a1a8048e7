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
eval "$(bash scripts/rabbitmq-start.sh)"
eval "$(bash scripts/mosquitto-start.sh)"

# Serial: some broker tests restart their broker, which others must not see.
cd build
ctest --output-on-failure --timeout 900 "$@"

#!/usr/bin/env bash
# Installs what fanflow needs on Debian bookworm. With --brokers, also the
# RabbitMQ and Mosquitto servers and the third-party clients the tests use.
set -euo pipefail

with_brokers=0
for arg in "$@"; do
  case "$arg" in
    --brokers) with_brokers=1 ;;
    *) echo "install-deps.sh: unknown argument '$arg' (expected --brokers)" >&2; exit 2 ;;
  esac
done

packages=(
  build-essential cmake ninja-build ccache pkg-config git
  libgtest-dev libgmock-dev libbenchmark-dev
  nlohmann-json3-dev libsimdjson-dev libspdlog-dev libfmt-dev libcli11-dev libsqlite3-dev libcpp-httplib-dev
  librabbitmq-dev libpaho-mqttpp-dev libpaho-mqtt-dev libssl-dev
  python3 python3-jsonschema nodejs
  clang-14 libfuzzer-14-dev
)
if [ "$with_brokers" = 1 ]; then
  packages+=(rabbitmq-server mosquitto mosquitto-clients amqp-tools python3-pika
             python3-paho-mqtt openssl prometheus curl chromium python3-websocket docker-compose)
fi

sudo=""
[ "$(id -u)" = 0 ] || sudo="sudo"

# Packaged services must not start on install: the tests start their own
# brokers on other ports, and a system broker would only be in the way.
created_policy=0
if [ ! -e /usr/sbin/policy-rc.d ]; then
  printf '#!/bin/sh\nexit 101\n' | $sudo tee /usr/sbin/policy-rc.d >/dev/null
  $sudo chmod +x /usr/sbin/policy-rc.d
  created_policy=1
fi
cleanup() { [ "$created_policy" = 0 ] || $sudo rm -f /usr/sbin/policy-rc.d; }
trap cleanup EXIT

export DEBIAN_FRONTEND=noninteractive
$sudo apt-get update -q
$sudo apt-get install -y -q --no-install-recommends "${packages[@]}"

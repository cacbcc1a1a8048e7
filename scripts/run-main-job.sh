#!/usr/bin/env bash
# The main job, from a fresh Debian machine: install, build, then fan 100,000
# generated items out to a capped worker pool and back in on the embedded
# in-process bus, printing the batch summary. It builds only what that needs:
# the fanflow command with its embedded bus, no broker adapters, tests or
# benches (`bash scripts/build.sh` then adds them to the same tree).
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/install-deps.sh
bash scripts/build.sh -DFANFLOW_TESTS=OFF -DFANFLOW_WITH_AMQP=OFF -DFANFLOW_WITH_MQTT=OFF
./build/src/cli/fanflow --version
./build/src/cli/fanflow run --source range:100000:7 --chunk-size 100 --processor sum --concurrency 4

#!/usr/bin/env bash
# Stops the node started by scripts/rabbitmq-start.sh: `rabbitmqctl stop` for that
# node, then its processes by pid (never by name), then its epmd. Bounded: gives
# up waiting after ${FANFLOW_RABBITMQ_STOP_TIMEOUT:-30}s and SIGKILLs what is left.
# Data stays in ${FANFLOW_RUN_DIR:-/tmp/fanflow-brokers}/rabbitmq (pass --wipe to delete it).
set -uo pipefail
# shellcheck source=scripts/rabbitmq-lib.sh
. "$(dirname "$0")/rabbitmq-lib.sh"

DIR="$RUN_DIR/rabbitmq"
HOME_DIR="$DIR/home"
NODE="${FANFLOW_RABBITMQ_NODE:-fanflow-test@127.0.0.1}"
EPMD_PORT="${FANFLOW_RABBITMQ_EPMD_PORT:-24369}"

log() { echo "rabbitmq-stop: $*" >&2; }

epmd_pid="$(rmq_pid_of "$DIR/epmd.pid" "epmd -port $EPMD_PORT")"
rmq_stop_node log
rmq_stop_pid "$epmd_pid" 5 "epmd" log
rm -f "$DIR/epmd.pid"
if [[ "${1:-}" == "--wipe" ]]; then
  rm -rf "$DIR"
  log "wiped $DIR"
fi
log "stopped"

#!/usr/bin/env bash
# Stops the node started by scripts/rabbitmq-start.sh: `rabbitmqctl stop` for that
# node, then its processes by pid (never by name), then its epmd. Bounded: gives
# up waiting after ${FANFLOW_RABBITMQ_STOP_TIMEOUT:-30}s and SIGKILLs what is left.
# Data stays in ${FANFLOW_RUN_DIR:-/tmp/fanflow-brokers}/rabbitmq (pass --wipe to delete it).
set -uo pipefail

RUN_DIR="${FANFLOW_RUN_DIR:-/tmp/fanflow-brokers}"
DIR="$RUN_DIR/rabbitmq"
NODE="${FANFLOW_RABBITMQ_NODE:-fanflow-test@127.0.0.1}"
LONGNAME=false
[[ "${NODE#*@}" == *.* ]] && LONGNAME=true  # as rabbitmq-start.sh decides
EPMD_PORT="${FANFLOW_RABBITMQ_EPMD_PORT:-24369}"
TIMEOUT="${FANFLOW_RABBITMQ_STOP_TIMEOUT:-30}"

log() { echo "rabbitmq-stop: $*" >&2; }
alive() { [[ -n "$1" ]] && kill -0 "$1" 2>/dev/null; }
# The pid in $DIR/$1 if that process runs and its command line contains $2
# (a pid file left from before a reboot may name someone else's process).
pid_of() {
  [[ -f "$DIR/$1" ]] || return 0
  local pid
  pid="$(cat "$DIR/$1")"
  if alive "$pid" && tr '\0' ' ' <"/proc/$pid/cmdline" 2>/dev/null | grep -q -- "$2"; then echo "$pid"; fi
}

# Waits up to $2 seconds for pid $1 to exit; SIGKILLs it after that.
stop_pid() {
  local pid="$1" limit="$2" what="$3"
  alive "$pid" || return 0
  kill -TERM "$pid" 2>/dev/null
  local deadline=$((SECONDS + limit))
  while alive "$pid" && ((SECONDS < deadline)); do sleep 0.2; done
  if alive "$pid"; then
    log "$what (pid $pid) still running after ${limit}s: SIGKILL"
    kill -KILL "$pid" 2>/dev/null
  fi
}

beam="$(pid_of beam.pid beam)"
wrapper="$(pid_of wrapper.pid rabbitmq-server)"
epmd_pid="$(pid_of epmd.pid "epmd -port $EPMD_PORT")"
if alive "$beam"; then
  log "stopping $NODE (pid $beam)"
  HOME="$DIR/home" ERL_EPMD_PORT="$EPMD_PORT" RABBITMQ_USE_LONGNAME="$LONGNAME" timeout "$TIMEOUT" \
    /usr/lib/rabbitmq/bin/rabbitmqctl -n "$NODE" -q stop "$DIR/beam.pid" >/dev/null 2>&1 ||
    log "rabbitmqctl stop failed; stopping by pid"
fi
stop_pid "$beam" 10 "beam"
stop_pid "$wrapper" 5 "rabbitmq-server wrapper"
stop_pid "$epmd_pid" 5 "epmd"
rm -f "$DIR/beam.pid" "$DIR/wrapper.pid" "$DIR/epmd.pid"
if [[ "${1:-}" == "--wipe" ]]; then
  rm -rf "$DIR"
  log "wiped $DIR"
fi
log "stopped"

#!/usr/bin/env bash
# Stops the broker scripts/mosquitto-start.sh started from the same
# ${FANFLOW_RUN_DIR:-/tmp/fanflow-brokers}/mosquitto, by its pid: SIGTERM (Mosquitto
# saves its persistence file on the way out), SIGKILL after 10 s. Keeps the state
# dir, so the next start resumes the sessions; `--wipe` deletes it too.
set -euo pipefail

dir="${FANFLOW_RUN_DIR:-/tmp/fanflow-brokers}/mosquitto"
log() { echo "mosquitto-stop: $*" >&2; }

if [[ -f "$dir/mosquitto.pid" ]]; then
  pid=$(cat "$dir/mosquitto.pid")
  if [[ -n "$pid" ]] && kill -0 "$pid" 2>/dev/null &&
    tr '\0' ' ' <"/proc/$pid/cmdline" | grep -q "mosquitto -c $dir/mosquitto.conf"; then
    kill -TERM "$pid"
    for _ in $(seq 1 100); do
      kill -0 "$pid" 2>/dev/null || break
      sleep 0.1
    done
    if kill -0 "$pid" 2>/dev/null; then
      log "pid $pid ignored SIGTERM for 10 s; killing it"
      kill -KILL "$pid"
    fi
    log "stopped (pid $pid)"
  else
    log "pid file names no running broker of $dir; nothing to stop"
  fi
  rm -f "$dir/mosquitto.pid"
else
  log "no broker running from $dir"
fi

if [[ "${1:-}" == "--wipe" ]]; then
  rm -rf "$dir"
  log "wiped $dir"
fi

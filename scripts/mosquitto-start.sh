#!/usr/bin/env bash
# Starts a Mosquitto 2 broker for fanflow's tests on loopback, with the settings
# of docker/mosquitto.conf, on non-default ports so a packaged mosquitto on 1883
# is left alone:
#   FANFLOW_MQTT_PORT      (1884) plain, anonymous
#   FANFLOW_MQTTS_PORT     (8884) TLS with a self-made CA (made on first start)
#   FANFLOW_MQTT_AUTH_PORT (1885) plain, user "fanflow" + a generated password
# State (persistence, certificates, log, pid) lives in
# ${FANFLOW_RUN_DIR:-/tmp/fanflow-brokers}/mosquitto and survives a stop, so a
# restart keeps the sessions and messages. FANFLOW_MQTT_EXTRA_CONF is appended to
# the configuration (later lines win). FANFLOW_MQTT_STOCK=1 leaves out every
# setting of docker/mosquitto.conf: the broker then runs with Mosquitto's
# defaults (max_inflight_messages 20, max_queued_messages 1000, no
# persistence), as a user's fresh install does, and only the listeners and their
# auth are set. Waits until the broker answers (bounded).
# Prints `export FANFLOW_TEST_MQTT...=...` lines for the tests (also written to
# <dir>/env); progress goes to stderr. Usage: eval "$(scripts/mosquitto-start.sh)"
# Idempotent: a broker already running from the same dir is reused.
set -euo pipefail

here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
base_conf="$here/../docker/mosquitto.conf"
dir="${FANFLOW_RUN_DIR:-/tmp/fanflow-brokers}/mosquitto"
port="${FANFLOW_MQTT_PORT:-1884}"
tls_port="${FANFLOW_MQTTS_PORT:-8884}"
auth_port="${FANFLOW_MQTT_AUTH_PORT:-1885}"

log() { echo "mosquitto-start: $*" >&2; }

running_pid() {
  [[ -f "$dir/mosquitto.pid" ]] || return 1
  local pid
  pid=$(cat "$dir/mosquitto.pid")
  [[ -n "$pid" ]] && kill -0 "$pid" 2>/dev/null &&
    tr '\0' ' ' <"/proc/$pid/cmdline" | grep -q "mosquitto -c $dir/mosquitto.conf" &&
    echo "$pid"
}

write_env() {
  cat >"$dir/env" <<EOF
export FANFLOW_TEST_MQTT_URL=mqtt://127.0.0.1:$port
export FANFLOW_TEST_MQTTS_URL=mqtts://127.0.0.1:$tls_port?cacert=$dir/tls/ca.crt
export FANFLOW_TEST_MQTT_CACERT=$dir/tls/ca.crt
export FANFLOW_TEST_MQTT_AUTH_URL=mqtt://fanflow:$(cat "$dir/password")@127.0.0.1:$auth_port
export FANFLOW_TEST_MQTT_PID=$(cat "$dir/mosquitto.pid")
EOF
  cat "$dir/env"
}

if pid=$(running_pid); then
  log "already running (pid $pid) in $dir"
  write_env
  exit 0
fi

for tool in mosquitto mosquitto_pub mosquitto_passwd openssl; do
  command -v "$tool" >/dev/null || { log "$tool not found (apt-get install mosquitto mosquitto-clients openssl)"; exit 1; }
done
mkdir -p "$dir/data" "$dir/tls"

# A self-made CA and a server certificate for 127.0.0.1, made once.
if [[ ! -f "$dir/tls/server.crt" ]]; then
  log "making a test CA and server certificate in $dir/tls"
  (
    cd "$dir/tls"
    openssl req -x509 -newkey rsa:2048 -nodes -days 3650 -subj "/CN=fanflow test CA" \
      -keyout ca.key -out ca.crt 2>/dev/null
    openssl req -newkey rsa:2048 -nodes -subj "/CN=127.0.0.1" \
      -keyout server.key -out server.csr 2>/dev/null
    printf 'subjectAltName=IP:127.0.0.1,DNS:localhost\n' >san.ext
    openssl x509 -req -days 3650 -in server.csr -CA ca.crt -CAkey ca.key -CAcreateserial \
      -extfile san.ext -out server.crt 2>/dev/null
  )
fi
if [[ ! -f "$dir/password" ]]; then
  (umask 077 && openssl rand -hex 12 >"$dir/password")
  mosquitto_passwd -c -b "$dir/passwd" fanflow "$(cat "$dir/password")" 2>/dev/null
  chmod 600 "$dir/passwd"
fi

{
  if [[ "${FANFLOW_MQTT_STOCK:-0}" == 1 ]]; then
    echo "# Mosquitto's defaults (FANFLOW_MQTT_STOCK=1): only listeners and auth below."
    echo "per_listener_settings true"
  else
    sed '/^# --- listeners and paths/,$d' "$base_conf"
  fi
  cat <<EOF
# --- listeners and paths: written by scripts/mosquitto-start.sh ---
user $(id -un)
pid_file $dir/mosquitto.pid
persistence_location $dir/data/
log_dest file $dir/mosquitto.log
listener $port 127.0.0.1
allow_anonymous true
listener $tls_port 127.0.0.1
allow_anonymous true
cafile $dir/tls/ca.crt
certfile $dir/tls/server.crt
keyfile $dir/tls/server.key
listener $auth_port 127.0.0.1
allow_anonymous false
password_file $dir/passwd
${FANFLOW_MQTT_EXTRA_CONF:-}
EOF
} >"$dir/mosquitto.conf"

rm -f "$dir/mosquitto.pid"
log "starting on 127.0.0.1:$port (TLS $tls_port, auth $auth_port)$([[ "${FANFLOW_MQTT_STOCK:-0}" == 1 ]] && echo ", stock settings"), state in $dir"
mosquitto -c "$dir/mosquitto.conf" -d

for _ in $(seq 1 50); do
  if [[ -s "$dir/mosquitto.pid" ]] &&
    mosquitto_pub -h 127.0.0.1 -p "$port" -V mqttv5 -q 1 -t fanflow/ping -m ready 2>/dev/null; then
    log "ready (pid $(cat "$dir/mosquitto.pid"))"
    write_env
    exit 0
  fi
  sleep 0.2
done
log "not ready after 10 s; see $dir/mosquitto.log"
tail -n 20 "$dir/mosquitto.log" >&2 || true
exit 1

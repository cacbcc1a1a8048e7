#!/usr/bin/env bash
# Starts a private RabbitMQ node for fanflow's tests on loopback only:
#   AMQP 127.0.0.1:${FANFLOW_AMQP_PORT:-5673}, TLS 127.0.0.1:${FANFLOW_AMQPS_PORT:-5674},
#   Erlang distribution 127.0.0.1:${FANFLOW_RABBITMQ_DIST_PORT:-25673} and its own epmd on
#   127.0.0.1:${FANFLOW_RABBITMQ_EPMD_PORT:-24369}; node name fanflow-test@127.0.0.1.
# An address, not a name: a minimal root has no /etc/hosts, and `x@localhost`
# then fails (epmd: nxdomain). A node name whose host part has a dot (an
# address) is an Erlang long name, so the node and every rabbitmqctl call run
# with RABBITMQ_USE_LONGNAME=true.
# Everything (data, logs, Erlang cookie, a self-made TLS CA) lives under
# ${FANFLOW_RUN_DIR:-/tmp/fanflow-brokers}/rabbitmq, so it never touches a system
# RabbitMQ (5672, node rabbit@host) if the Debian package started one.
#
# Usage: eval "$(scripts/rabbitmq-start.sh)"   # exports the FANFLOW_TEST_AMQP* vars
# The same exports are written to $DIR/env. Idempotent: if the node already runs,
# it only prints the exports. Progress goes to stderr. Stop: scripts/rabbitmq-stop.sh
set -euo pipefail

RUN_DIR="${FANFLOW_RUN_DIR:-/tmp/fanflow-brokers}"
DIR="$RUN_DIR/rabbitmq"
AMQP_PORT="${FANFLOW_AMQP_PORT:-5673}"
AMQPS_PORT="${FANFLOW_AMQPS_PORT:-5674}"
DIST_PORT="${FANFLOW_RABBITMQ_DIST_PORT:-25673}"
EPMD_PORT="${FANFLOW_RABBITMQ_EPMD_PORT:-24369}"
NODE="${FANFLOW_RABBITMQ_NODE:-fanflow-test@127.0.0.1}"
LONGNAME=false
[[ "${NODE#*@}" == *.* ]] && LONGNAME=true
READY_TIMEOUT="${FANFLOW_RABBITMQ_READY_TIMEOUT:-90}"  # seconds
SBIN=/usr/lib/rabbitmq/bin

log() { echo "rabbitmq-start: $*" >&2; }
# True if the pid in file $1 runs and its command line contains $2 (a pid file
# left from before a reboot may name someone else's process).
alive() {
  [[ -f "$1" ]] || return 1
  local pid
  pid="$(cat "$1")"
  kill -0 "$pid" 2>/dev/null && tr '\0' ' ' <"/proc/$pid/cmdline" 2>/dev/null | grep -q -- "$2"
}

# The environment every rabbitmq-server / rabbitmqctl call of this node needs.
node_env() {
  export HOME="$DIR/home"  # the Erlang cookie lives here, not in /root or /var/lib/rabbitmq
  export RABBITMQ_NODENAME="$NODE" RABBITMQ_USE_LONGNAME="$LONGNAME"
  export RABBITMQ_NODE_IP_ADDRESS=127.0.0.1 RABBITMQ_NODE_PORT="$AMQP_PORT"
  export RABBITMQ_DIST_PORT="$DIST_PORT" ERL_EPMD_PORT="$EPMD_PORT" ERL_EPMD_ADDRESS=127.0.0.1
  export RABBITMQ_CONF_ENV_FILE="$DIR/rabbitmq-env.conf" RABBITMQ_CONFIG_FILE="$DIR/rabbitmq.conf"
  export RABBITMQ_ENABLED_PLUGINS_FILE="$DIR/enabled_plugins"
  export RABBITMQ_MNESIA_BASE="$DIR/mnesia" RABBITMQ_LOG_BASE="$DIR/log" RABBITMQ_PID_FILE="$DIR/beam.pid"
  export RABBITMQ_SERVER_ADDITIONAL_ERL_ARGS="-kernel inet_dist_use_interface {127,0,0,1}"
}

print_env() {
  # TLS by name where the name resolves: rabbitmq-c 0.11 checks a certificate's
  # DNS names, not its IP addresses. Where localhost does not resolve (no
  # /etc/hosts entry) the address is used and only the chain is verified.
  local amqps_url="amqps://localhost:$AMQPS_PORT/"
  getent hosts localhost >/dev/null 2>&1 || amqps_url="amqps://127.0.0.1:$AMQPS_PORT/?verify_hostname=false"
  cat >"$DIR/env" <<EOF
# No credentials in the URLs (test names and logs print them): guest/guest is
# the adapter's default, FANFLOW_AMQP_USER / FANFLOW_AMQP_PASSWORD override it.
export FANFLOW_TEST_AMQP_URL='amqp://127.0.0.1:$AMQP_PORT/'
export FANFLOW_TEST_AMQPS_URL='$amqps_url'
export FANFLOW_TEST_AMQP_CACERT='$DIR/tls/ca.pem'
export FANFLOW_TEST_AMQP_CLIENT_CERT='$DIR/tls/client.pem'
export FANFLOW_TEST_AMQP_CLIENT_KEY='$DIR/tls/client.key'
export FANFLOW_TEST_RABBITMQ_NODE='$NODE'
export FANFLOW_TEST_RABBITMQ_PID_FILE='$DIR/beam.pid'
# A command prefix that reaches this node, e.g. \$FANFLOW_TEST_RABBITMQCTL close_all_connections x
export FANFLOW_TEST_RABBITMQCTL='env HOME=$DIR/home ERL_EPMD_PORT=$EPMD_PORT RABBITMQ_USE_LONGNAME=$LONGNAME $SBIN/rabbitmqctl -n $NODE'
EOF
  cat "$DIR/env"
}

# A CA, a server cert for 127.0.0.1/localhost and a client cert, made once.
make_tls() {
  local t="$DIR/tls"
  [[ -f "$t/client.pem" ]] && return 0
  mkdir -p "$t"
  log "making a test CA and certificates in $t"
  (
    cd "$t"
    openssl req -x509 -newkey rsa:2048 -nodes -days 3650 -subj "/CN=fanflow test CA" \
      -keyout ca.key -out ca.pem 2>/dev/null
    printf 'subjectAltName=IP:127.0.0.1,DNS:localhost\n' >server.ext
    openssl req -newkey rsa:2048 -nodes -subj "/CN=localhost" -keyout server.key -out server.csr 2>/dev/null
    openssl x509 -req -in server.csr -CA ca.pem -CAkey ca.key -CAcreateserial -days 3650 \
      -extfile server.ext -out server.pem 2>/dev/null
    openssl req -newkey rsa:2048 -nodes -subj "/CN=fanflow-client" -keyout client.key -out client.csr 2>/dev/null
    openssl x509 -req -in client.csr -CA ca.pem -CAkey ca.key -CAcreateserial -days 3650 -out client.pem 2>/dev/null
    chmod 644 ./*.pem ./*.key
  )
}

write_config() {
  mkdir -p "$DIR/home" "$DIR/mnesia" "$DIR/log"
  : >"$DIR/rabbitmq-env.conf"  # keeps /etc/rabbitmq/rabbitmq-env.conf out
  echo "[]." >"$DIR/enabled_plugins"
  cat >"$DIR/rabbitmq.conf" <<EOF
# Generated by scripts/rabbitmq-start.sh: loopback only, non-default ports.
listeners.tcp.1 = 127.0.0.1:$AMQP_PORT
listeners.ssl.1 = 127.0.0.1:$AMQPS_PORT
ssl_options.cacertfile = $DIR/tls/ca.pem
ssl_options.certfile = $DIR/tls/server.pem
ssl_options.keyfile = $DIR/tls/server.key
ssl_options.verify = verify_peer
ssl_options.fail_if_no_peer_cert = false
# The node shares 2 cores with compilers: don't let a transient disk/memory dip block publishers.
disk_free_limit.absolute = 200MB
vm_memory_high_watermark.relative = 0.6
log.file.level = info
log.console = false
EOF
}

mkdir -p "$DIR"
node_env
if alive "$DIR/beam.pid" beam; then
  log "node $NODE already running (pid $(cat "$DIR/beam.pid"))"
  print_env
  exit 0
fi
rm -f "$DIR/beam.pid" "$DIR/wrapper.pid" "$DIR/epmd.pid"
make_tls
write_config

# Our own epmd on a non-default loopback port: started (and later stopped) by pid.
epmd -port "$EPMD_PORT" -address 127.0.0.1 >>"$DIR/log/epmd.log" 2>&1 &
echo $! >"$DIR/epmd.pid"

log "starting $NODE (amqp 127.0.0.1:$AMQP_PORT, amqps 127.0.0.1:$AMQPS_PORT, data in $DIR)"
setsid "$SBIN/rabbitmq-server" >>"$DIR/log/startup.log" 2>&1 </dev/null &
echo $! >"$DIR/wrapper.pid"

deadline=$((SECONDS + READY_TIMEOUT))
until "$SBIN/rabbitmqctl" -n "$NODE" -q --timeout 10 await_startup >/dev/null 2>&1; do
  if ! alive "$DIR/wrapper.pid" rabbitmq-server; then
    log "the node exited during startup; last lines of $DIR/log/startup.log:"
    tail -n 30 "$DIR/log/startup.log" >&2
    exit 1
  fi
  if ((SECONDS > deadline)); then
    log "not ready after ${READY_TIMEOUT}s; see $DIR/log"
    "$(dirname "$0")/rabbitmq-stop.sh" >&2 || true
    exit 1
  fi
  sleep 1
done
until (exec 3<>"/dev/tcp/127.0.0.1/$AMQP_PORT") 2>/dev/null; do
  ((SECONDS > deadline)) && { log "port $AMQP_PORT not open"; exit 1; }
  sleep 0.5
done
log "ready: node pid $(cat "$DIR/beam.pid")"
print_env

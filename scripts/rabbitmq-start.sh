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
# shellcheck source=scripts/rabbitmq-lib.sh
. "$(dirname "$0")/rabbitmq-lib.sh"

DIR="$RUN_DIR/rabbitmq"
AMQP_PORT="${FANFLOW_AMQP_PORT:-5673}"
AMQPS_PORT="${FANFLOW_AMQPS_PORT:-5674}"
DIST_PORT="${FANFLOW_RABBITMQ_DIST_PORT:-25673}"
EPMD_PORT="${FANFLOW_RABBITMQ_EPMD_PORT:-24369}"
NODE="${FANFLOW_RABBITMQ_NODE:-fanflow-test@127.0.0.1}"
HOME_DIR="$DIR/home"
READY_TIMEOUT="${FANFLOW_RABBITMQ_READY_TIMEOUT:-90}"  # seconds

log() { echo "rabbitmq-start: $*" >&2; }

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
export FANFLOW_TEST_RABBITMQCTL='$(rmq_ctl_prefix)'
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

mkdir -p "$DIR"
if rmq_alive "$DIR/beam.pid" beam; then
  log "node $NODE already running (pid $(cat "$DIR/beam.pid"))"
  print_env
  exit 0
fi
rm -f "$DIR/beam.pid" "$DIR/wrapper.pid" "$DIR/epmd.pid"
make_tls
rmq_write_config <<EOF
listeners.ssl.1 = 127.0.0.1:$AMQPS_PORT
ssl_options.cacertfile = $DIR/tls/ca.pem
ssl_options.certfile = $DIR/tls/server.pem
ssl_options.keyfile = $DIR/tls/server.key
ssl_options.verify = verify_peer
ssl_options.fail_if_no_peer_cert = false
EOF
rmq_start_epmd "$DIR/epmd.pid"

log "starting $NODE (amqp 127.0.0.1:$AMQP_PORT, amqps 127.0.0.1:$AMQPS_PORT, data in $DIR)"
rmq_launch
if ! rmq_await "$READY_TIMEOUT" log; then
  "$(dirname "$0")/rabbitmq-stop.sh" >&2 || true
  exit 1
fi
log "ready: node pid $(cat "$DIR/beam.pid")"
print_env

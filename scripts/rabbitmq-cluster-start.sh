#!/usr/bin/env bash
# Starts a private 3-node RabbitMQ cluster for fanflow's fail-over tests, on
# loopback only, beside the single test node of scripts/rabbitmq-start.sh:
#   AMQP 127.0.0.1:P, P+1, P+2 with P=${FANFLOW_RABBITMQ_CLUSTER_AMQP_PORT:-5681},
#   Erlang distribution D, D+1, D+2 with D=${FANFLOW_RABBITMQ_CLUSTER_DIST_PORT:-25681},
#   one epmd of its own on ${FANFLOW_RABBITMQ_CLUSTER_EPMD_PORT:-24381},
#   nodes NAME-1@127.0.0.1 .. NAME-3@127.0.0.1 with NAME=${FANFLOW_RABBITMQ_CLUSTER_NAME:-fanflow-cluster}.
# Data, logs and the shared Erlang cookie live under
# ${FANFLOW_RUN_DIR:-/tmp/fanflow-brokers}/rabbitmq-cluster/{home,n1,n2,n3}.
# Node 1 starts first; nodes 2 and 3 then start together and join it at boot
# (classic peer discovery: no stop_app / join_cluster round trips). A node that
# has been in the cluster rejoins from its own data when started again.
#
# Usage: eval "$(scripts/rabbitmq-cluster-start.sh)"  # exports FANFLOW_TEST_AMQP_CLUSTER_*
# Idempotent: nodes already running are left alone and a node that is down
# (e.g. one a test killed) is started again, so a test brings a node back by
# running this script. The exports also go to $DIR/env. Progress goes to stderr.
# Stop: scripts/rabbitmq-cluster-stop.sh (same environment).
set -euo pipefail
# shellcheck source=scripts/rabbitmq-lib.sh
. "$(dirname "$0")/rabbitmq-lib.sh"

CLUSTER_DIR="$RUN_DIR/rabbitmq-cluster"
AMQP_BASE="${FANFLOW_RABBITMQ_CLUSTER_AMQP_PORT:-5681}"
DIST_BASE="${FANFLOW_RABBITMQ_CLUSTER_DIST_PORT:-25681}"
EPMD_PORT="${FANFLOW_RABBITMQ_CLUSTER_EPMD_PORT:-24381}"
NAME="${FANFLOW_RABBITMQ_CLUSTER_NAME:-fanflow-cluster}"
HOME_DIR="$CLUSTER_DIR/home"
READY_TIMEOUT="${FANFLOW_RABBITMQ_READY_TIMEOUT:-120}"  # seconds, per wave of nodes

log() { echo "rabbitmq-cluster-start: $*" >&2; }

# Sets DIR, NODE, AMQP_PORT and DIST_PORT for node $1 (1..3).
node_vars() {
  DIR="$CLUSTER_DIR/n$1"
  NODE="$NAME-$1@127.0.0.1"
  AMQP_PORT=$((AMQP_BASE + $1 - 1))
  DIST_PORT=$((DIST_BASE + $1 - 1))
}

print_env() {
  local hosts="" i
  {
    echo "# No credentials in the URL (test names and logs print it): guest/guest is the adapter's default."
    for i in 1 2 3; do
      node_vars "$i"
      hosts+="${hosts:+,}127.0.0.1:$AMQP_PORT"
      echo "export FANFLOW_TEST_AMQP_CLUSTER_NODE_$i='$NODE'"
      echo "export FANFLOW_TEST_AMQP_CLUSTER_PORT_$i='$AMQP_PORT'"
      echo "export FANFLOW_TEST_AMQP_CLUSTER_PID_FILE_$i='$DIR/beam.pid'"
      echo "export FANFLOW_TEST_AMQP_CLUSTER_CTL_$i='$(rmq_ctl_prefix)'"
    done
    echo "export FANFLOW_TEST_AMQP_CLUSTER_URL='amqp://$hosts/'"
    echo "# Brings a stopped or killed node back (and leaves running ones alone)."
    echo "export FANFLOW_TEST_AMQP_CLUSTER_START='env FANFLOW_RUN_DIR=$RUN_DIR FANFLOW_RABBITMQ_CLUSTER_AMQP_PORT=$AMQP_BASE FANFLOW_RABBITMQ_CLUSTER_DIST_PORT=$DIST_BASE FANFLOW_RABBITMQ_CLUSTER_EPMD_PORT=$EPMD_PORT FANFLOW_RABBITMQ_CLUSTER_NAME=$NAME bash $(cd "$(dirname "$0")" && pwd)/rabbitmq-cluster-start.sh'"
  } >"$CLUSTER_DIR/env"
  cat "$CLUSTER_DIR/env"
}

# Starts node $1 unless it runs; writes its config on the first start.
launch() {
  node_vars "$1"
  rmq_alive "$DIR/beam.pid" beam && return 0
  rm -f "$DIR/beam.pid" "$DIR/wrapper.pid"
  rmq_write_config <<EOF2
cluster_formation.peer_discovery_backend = classic_config
cluster_formation.classic_config.nodes.1 = $NAME-1@127.0.0.1
cluster_formation.classic_config.nodes.2 = $NAME-2@127.0.0.1
cluster_formation.classic_config.nodes.3 = $NAME-3@127.0.0.1
cluster_formation.randomized_startup_delay_range.min = 0
cluster_formation.randomized_startup_delay_range.max = 1
# A node lost mid-batch must not pause the others: with 2 of 3 up the majority goes on.
cluster_partition_handling = pause_minority
EOF2
  log "starting $NODE (amqp 127.0.0.1:$AMQP_PORT, data in $DIR)"
  rmq_launch
  started+=("$1")
}

await() {
  node_vars "$1"
  rmq_await "$READY_TIMEOUT" log
}

mkdir -p "$CLUSTER_DIR"
epmd_pid_file="$CLUSTER_DIR/epmd.pid"
if ! rmq_alive "$epmd_pid_file" "epmd -port $EPMD_PORT"; then
  DIR="$CLUSTER_DIR"
  rmq_start_epmd "$epmd_pid_file"
fi

fail() {
  log "the cluster did not start; stopping it"
  bash "$(dirname "$0")/rabbitmq-cluster-stop.sh" >&2 || true
  exit 1
}

# Node 1 alone first when the cluster is new, so 2 and 3 find it at boot.
started=()
if [[ ! -d "$CLUSTER_DIR/n1/mnesia/$NAME-1@127.0.0.1" ]]; then
  launch 1
  await 1 || fail
fi
for i in 1 2 3; do launch "$i"; done
for i in "${started[@]}"; do await "$i" || fail; done

# Every node must see all three as running members before a test relies on them.
node_vars 1
deadline=$((SECONDS + READY_TIMEOUT))
until env HOME="$HOME_DIR" ERL_EPMD_PORT="$EPMD_PORT" RABBITMQ_USE_LONGNAME=true \
  "$RMQ_SBIN/rabbitmqctl" -n "$NODE" -q cluster_status --formatter json 2>/dev/null |
  python3 -c 'import json,sys; sys.exit(len(json.load(sys.stdin)["running_nodes"]) != 3)'; do
  ((SECONDS > deadline)) && { log "the nodes did not form one cluster of 3"; fail; }
  sleep 1
done
log "ready: 3 nodes running ($(for i in 1 2 3; do node_vars "$i"; printf '%s pid %s; ' "$NODE" "$(cat "$DIR/beam.pid")"; done))"
print_env

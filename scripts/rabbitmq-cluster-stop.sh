#!/usr/bin/env bash
# Stops the cluster started by scripts/rabbitmq-cluster-start.sh (same
# environment): each node by `rabbitmqctl stop`, then by pid (never by name),
# then the cluster's epmd. Data stays in ${FANFLOW_RUN_DIR:-/tmp/fanflow-brokers}/rabbitmq-cluster
# (pass --wipe to delete it, so the next start forms a new cluster).
set -uo pipefail
# shellcheck source=scripts/rabbitmq-lib.sh
. "$(dirname "$0")/rabbitmq-lib.sh"

CLUSTER_DIR="$RUN_DIR/rabbitmq-cluster"
EPMD_PORT="${FANFLOW_RABBITMQ_CLUSTER_EPMD_PORT:-24381}"
NAME="${FANFLOW_RABBITMQ_CLUSTER_NAME:-fanflow-cluster}"
HOME_DIR="$CLUSTER_DIR/home"

log() { echo "rabbitmq-cluster-stop: $*" >&2; }

epmd_pid="$(rmq_pid_of "$CLUSTER_DIR/epmd.pid" "epmd -port $EPMD_PORT")"
# The last node up last: stopping members in turn keeps the quorum queues' data consistent.
for i in 3 2 1; do
  DIR="$CLUSTER_DIR/n$i"
  NODE="$NAME-$i@127.0.0.1"
  rmq_stop_node log
done
rmq_stop_pid "$epmd_pid" 5 "epmd" log
rm -f "$CLUSTER_DIR/epmd.pid"
if [[ "${1:-}" == "--wipe" ]]; then
  rm -rf "$CLUSTER_DIR"
  log "wiped $CLUSTER_DIR"
fi
log "stopped"

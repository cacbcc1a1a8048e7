#!/usr/bin/env bash
# docker/compose.yaml is valid (`docker-compose config`, no engine needed) and
# describes the 3-node cluster of docs/DEPLOYMENT.md: services rabbitmq-1..3
# on 127.0.0.1:5681..5683, one cluster config naming the three nodes.
# Exit 77 (skip) without docker-compose, a failure when CI=true.
set -euo pipefail
compose="$1/docker/compose.yaml"
if ! command -v docker-compose >/dev/null; then
  echo "docker-compose not installed (apt-get install docker-compose)" >&2
  [[ "${CI:-}" == true ]] && exit 1
  exit 77
fi
out="$(docker-compose -f "$compose" --profile cluster config)"
services="$(docker-compose -f "$compose" --profile cluster config --services | sort | tr '\n' ' ')"
fail() { echo "compose_config_test: $*" >&2; exit 1; }
[[ "$services" == *"rabbitmq-1 rabbitmq-2 rabbitmq-3"* ]] || fail "services are '$services'"
for i in 1 2 3; do
  grep -q "127.0.0.1:568$i:5672/tcp" <<<"$out" || fail "rabbitmq-$i is not published on 127.0.0.1:568$i"
  grep -q "cluster_formation.classic_config.nodes.$i = rabbit@fanflow-rabbitmq-$i" \
    "$1/docker/rabbitmq/cluster.conf" || fail "cluster.conf does not name node $i"
  grep -q "hostname: fanflow-rabbitmq-$i" <<<"$out" || fail "rabbitmq-$i has another hostname"
done
echo "docker/compose.yaml: valid; services $services"

#!/usr/bin/python3
"""A RabbitMQ node lost mid-batch (issue 13): the fault matrix's harness on the
3-node cluster of scripts/rabbitmq-cluster-start.sh, every fanflow role a
separate process, the roles spread over the nodes (each process's URL names
all three, its own node first).

  node 1: topology (so the quorum queues' leaders start there), worker-1
  node 2: ventilator, worker-2
  node 3: aggregator, submit --wait, the spy

Each case SIGKILLs one node's Erlang VM by pid while the batch runs (the
harness asserts it came before the batch completed) and then checks what
every fault-matrix case checks: exactly one batch_complete, succeeded, every
chunk, the exact sum, each chunk counted once (the aggregator's own count
equals the batch's chunks, and no chunk_done conflicted).

Run one case:  tests/faults/cluster_test.py --fanflow build/src/cli/fanflow ClusterFaults.test_leader_node_killed
ctest runs each as faults.amqp-cluster.<case>. Without the cluster a case is
skipped (exit 77), or fails when CI=true.
"""

import os
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import brokers  # noqa: E402
import fault_matrix_test as matrix  # noqa: E402

# The queues whose leaders matter: the workers' chunks and the aggregator's results.
LEADER_QUEUES = ("fanflow.workers.process_chunk", "fanflow.aggregator.chunk_done")
PLACEMENT = {"topology": 0, "worker-1": 0, "ventilator": 1, "worker-2": 1,
             "aggregator": 2, "submit": 2}


class PlacedCluster(brokers.RabbitMqCluster):
    placement = PLACEMENT


class ClusterFaults(matrix.FaultHarness):
    broker_cls = PlacedCluster

    def kill_node(self, node, fraction):
        """At `fraction` of the chunks done, SIGKILLs `node`'s Erlang VM."""
        self.wait_done(fraction)
        name = self.broker.nodes[node]["name"]
        on_it = sorted(p for p, i in self.broker.placement.items() if i == node)
        self.fault("node %s SIGKILL (pid %d; its clients: %s)" % (name, self.broker.pid(node), on_it),
                   lambda: self.broker.kill(node))

    def test_node_killed(self):
        """Node 2 (the ventilator's and worker-2's) lost for good mid-batch."""
        self.services(workers=2)
        self.run_batch("b-node-lost", lambda: self.kill_node(1, 0.3))

    def test_node_killed_and_brought_back(self):
        """Node 3 (the aggregator's, the waiting submit's and the spy's) lost
        mid-batch and started again while the batch runs."""
        self.services(workers=2)

        def inject():
            self.kill_node(2, 0.25)
            time.sleep(2)
            self.note("bringing node 3 back")
            self.broker.bring_back()
            self.note("node 3 back")

        self.run_batch("b-node-back", inject)

    def test_leader_node_killed(self):
        """The node that hosts the leaders of the workers' and the aggregator's
        queues is lost mid-batch (node 1: topology declared them from there)."""
        self.services(workers=2)
        leaders = {q: self.broker.leader(q) for q in LEADER_QUEUES}
        self.note("leaders: %s" % leaders)
        node = leaders[LEADER_QUEUES[0]]
        self.assertEqual(leaders[LEADER_QUEUES[1]], node, "the leaders are on different nodes: %s" % leaders)

        def inject():
            self.kill_node(node, 0.3)
            moved = {q: self.broker.leader(q, other_than=node) for q in LEADER_QUEUES}
            self.note("leaders after the kill: %s" % moved)

        self.run_batch("b-leader-lost", inject)


if __name__ == "__main__":
    matrix.main()  # its cases are this module's: unittest looks in __main__

#!/usr/bin/python3
"""The fault matrix (issue 10, item 9): each fault x {RabbitMQ, stock Mosquitto},
with every fanflow role a separate process (topology, aggregator --state,
ventilator, workers, submit --wait --json).

Each case asserts that the fault landed before the batch completed (submit
still waiting, no batch_complete at the spy), that exactly one batch_complete
for the batch reached the spy (over the run plus a grace period), and that it
says succeeded, with every chunk and the exact sum of the values written to
the batch's JSONL file here.

Run one case:  tests/faults/fault_matrix_test.py --fanflow build/src/cli/fanflow MqttFaults.test_aggregator_killed
ctest runs each case as faults.<broker>.<case> (see CMakeLists.txt). Without a
broker a case is skipped (exit 77), or fails when CI=true.
"""

import functools
import json
import os
import random
import shutil
import signal
import subprocess
import sys
import tempfile
import time
import unittest

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import brokers  # noqa: E402

FANFLOW = None  # set by --fanflow

# The batch: 400 chunks of 5 items. Two workers at 20 chunks/s each take ~10 s,
# so a fault timed by the spy's progress lands well inside it.
ITEMS, CHUNK_SIZE = 2000, 5
CHUNKS = ITEMS // CHUNK_SIZE
WORKER_ARGS = ["--processor", "sum", "--concurrency", "4", "--rate", "20/s", "--rate-burst", "1"]
DEADLINE_S = 150  # a batch not complete by then fails its case
STALL_S = 40  # ... and so does one without a new chunk_done for this long
GRACE_S = 4  # after submit returns, for a duplicate batch_complete to show up
DELAY_SLACK_S = 10  # case 2's bound: twice the baseline + 2 leases + this


@functools.lru_cache(maxsize=None)
def _help_lists(role, flag):
    r = subprocess.run([FANFLOW, role, "--help"], capture_output=True, text=True, timeout=30)
    return flag in r.stdout


class Proc:
    """One fanflow process, its stderr (and stdout, unless `out_path`) in a log
    file; ended by pid."""

    def __init__(self, name, argv, log_path, out_path=None):
        self.name, self.log_path = name, log_path
        with open(log_path, "ab") as log, open(out_path or os.devnull, "wb") as out:
            self.popen = brokers.spawn(argv, out if out_path else log, log)

    def alive(self):
        return self.popen.poll() is None

    def signal(self, sig):
        if self.alive():
            self.popen.send_signal(sig)

    def stop(self, limit=15):
        self.signal(signal.SIGTERM)
        try:
            self.popen.wait(limit)
        except subprocess.TimeoutExpired:
            self.popen.kill()
            self.popen.wait(10)

    def log(self):
        with open(self.log_path, errors="replace") as f:
            return f.read()

    def tail(self, lines=15):
        return "\n".join("    " + l for l in self.log().splitlines()[-lines:])


class FaultHarness(unittest.TestCase):
    """A broker (fresh per case), the services on it, a spy, and the bookkeeping
    every case asserts on. Subclasses name the broker."""

    broker_cls = None

    def setUp(self):
        self.case = self.id().rsplit(".", 1)[-1].replace("test_", "")
        try:
            self.broker = self.broker_cls()
        except brokers.BrokerMissing as e:
            if brokers.in_ci():
                self.fail("%s (CI=true: a missing broker is a failure)" % e)
            self.skipTest(str(e))
        self.dir = tempfile.mkdtemp(prefix="fanflow-faults-%s-%s-" % (self.broker.name, self.case))
        self.procs = {}
        self.timeline = []
        self.faults = []
        self.spy = None
        # A failure's logs stay for a look (all of them with FANFLOW_FAULTS_KEEP=1).
        self.keep_dir = os.environ.get("FANFLOW_FAULTS_KEEP") == "1"
        self.started = time.monotonic()
        self.broker.start_case(self.case, self.dir)
        self.addCleanup(self._cleanup)
        topo = subprocess.run(self._argv(["topology"], "topology"), capture_output=True, text=True, timeout=60)
        self.assertEqual(topo.returncode, 0, "fanflow topology: %s%s" % (topo.stdout, topo.stderr))
        self.spy = self.broker.spy()
        self.data = os.path.join(self.dir, "items.jsonl")
        rng = random.Random(self.case)
        values = [rng.randrange(0, 1000) for _ in range(ITEMS)]
        with open(self.data, "w") as f:
            for i, v in enumerate(values):
                f.write(json.dumps({"id": i, "value": v}) + "\n")
        self.expected_sum = sum(values)

    def _cleanup(self):
        # The timeline, passed or not: the durations are part of what the matrix measures.
        sys.stderr.write("\n".join(["%s.%s timeline:" % (self.broker.name, self.case)] +
                                    ["  %6.1f s  %s" % tw for tw in self.timeline]) + "\n")
        for p in self.procs.values():
            p.stop()
        if self.spy:
            self.spy.stop()
        self.broker.end_case()
        if not self.keep_dir:
            shutil.rmtree(self.dir, ignore_errors=True)

    # --- processes -------------------------------------------------------

    def _argv(self, args, name=None):
        """`name`: the process's name, which places it on a node of a cluster."""
        return [FANFLOW] + args + ["--bus", self.broker.url(name), "--log-level", "info"]

    def _data_dir(self, role):
        return ["--data-dir", self.dir] if _help_lists(role, "--data-dir") else []

    def start(self, name, args):
        self.procs[name] = Proc(name, self._argv(args, name), os.path.join(self.dir, name + ".log"))
        self.note("started %s (pid %d)" % (name, self.procs[name].popen.pid))
        return self.procs[name]

    def aggregator(self, name="aggregator"):
        return self.start(name, ["aggregator", "--state", os.path.join(self.dir, "ledger.db")]
                          + self.broker.lease_args)

    def ventilator(self, name="ventilator"):
        return self.start(name, ["ventilator"] + self._data_dir("ventilator"))

    def worker(self, name):
        return self.start(name, ["worker"] + WORKER_ARGS + self._data_dir("worker"))

    def services(self, workers=2):
        self.aggregator()
        self.ventilator()
        for i in range(1, workers + 1):
            self.worker("worker-%d" % i)

    # --- bookkeeping -----------------------------------------------------

    def note(self, what):
        self.timeline.append((time.monotonic() - self.started, what))

    def fault(self, what, action):
        """Records the state at the moment of the fault, then does it."""
        batch = self.batch_id
        self.faults.append({"what": what, "submit_running": self.submit.alive(),
                            "completes_seen": len(self.spy.completes(batch)),
                            "chunks_done": self.spy.chunks_done(batch)})
        self.note("FAULT %s (%d/%d chunks done)" % (what, self.spy.chunks_done(batch), CHUNKS))
        action()

    def wait_done(self, fraction, limit=60):
        """Until the spy saw `fraction` of the chunks done (bounded)."""
        deadline = time.monotonic() + limit
        while self.spy.chunks_done(self.batch_id) < fraction * CHUNKS:
            if time.monotonic() > deadline or not self.submit.alive():
                self.note("waited in vain for %.0f%% of the chunks" % (100 * fraction))
                return
            time.sleep(0.02)

    def kill_and_restart(self, name, fraction, restart):
        """At `fraction` of the chunks done, SIGKILLs `name`; 1 s later calls `restart`."""
        self.wait_done(fraction)
        self.fault(name + " SIGKILL", lambda: self.procs[name].signal(signal.SIGKILL))
        time.sleep(1)
        restart()

    def wait_log(self, proc, text, limit=30):
        deadline = time.monotonic() + limit
        while text not in proc.log() and time.monotonic() < deadline:
            time.sleep(0.01)

    # --- one batch -------------------------------------------------------

    def run_batch(self, batch_id, inject=None, submit_args=(), max_s=None, why_max=""):
        """Submits the batch, runs `inject` (the faults) meanwhile, waits for the
        end (bounded, stall-aware), then checks it, and that it took at most
        `max_s` if given. Returns its duration."""
        self.batch_id = batch_id
        self.faults = []
        argv = self._argv(["submit", "--source", "jsonl:" + self.data, "--chunk-size", str(CHUNK_SIZE),
                           "--batch-id", batch_id, "--wait", "--json", "--timeout", str(DEADLINE_S + 30)]
                          + list(submit_args), "submit")
        out_path = os.path.join(self.dir, batch_id + ".out")
        self.submit = Proc("submit " + batch_id, argv, os.path.join(self.dir, batch_id + ".submit.log"), out_path)
        self.procs[self.submit.name] = self.submit
        t0 = time.monotonic()
        self.note("submitted %s" % batch_id)
        if inject:
            inject()
        ended = self._wait_submit(t0)
        elapsed = time.monotonic() - t0
        self.note("submit ended: %s after %.1f s" % (ended, elapsed))
        time.sleep(GRACE_S)
        problems = self._check(batch_id, out_path, ended)
        if max_s is not None and elapsed > max_s:
            problems.append("took %.1f s, more than the bound of %.1f s (%s)" % (elapsed, max_s, why_max))
        if problems:
            self.fail(self.report(problems))
        return elapsed

    def _wait_submit(self, t0):
        last_progress, last_done = time.monotonic(), -1
        while self.submit.alive():
            done = self.spy.chunks_done(self.batch_id)
            if done != last_done:
                last_progress, last_done = time.monotonic(), done
            if time.monotonic() - t0 > DEADLINE_S:
                self.submit.popen.kill()
                return "not complete after %d s (%d/%d chunks done)" % (DEADLINE_S, done, CHUNKS)
            if time.monotonic() - last_progress > STALL_S and not self.spy.completes(self.batch_id):
                self.submit.popen.kill()
                return "stalled: no chunk_done for %d s (%d/%d chunks done)" % (STALL_S, done, CHUNKS)
            time.sleep(0.1)
        return "exit %d" % self.submit.popen.returncode

    def _check(self, batch_id, out_path, ended):
        problems = []
        for f in self.faults:
            if not f["submit_running"] or f["completes_seen"]:
                problems.append("fault '%s' came after the batch completed (submit running: %s, "
                                "batch_complete seen: %d)" % (f["what"], f["submit_running"], f["completes_seen"]))
            if f.get("too_late"):
                problems.append("fault '%s' came too late: %s" % (f["what"], f["too_late"]))
        if not ended.startswith("exit 0"):
            problems.append("submit --wait: %s" % ended)
        with open(out_path, errors="replace") as f:
            lines = [l for l in f.read().splitlines() if l.strip()]
        submitted = None
        try:
            submitted = json.loads(lines[-1]) if lines else None
        except ValueError:
            problems.append("submit printed no JSON: %r" % lines[-1:])
        completes = self.spy.completes(batch_id)
        ids = [e.get("id") for e in completes]
        if len(completes) != 1:
            dup = {i: ids.count(i) for i in set(ids) if ids.count(i) > 1}
            problems.append("%d batch_complete deliveries for %s reached the spy (want exactly 1); ids %s%s" % (
                len(completes), batch_id, ids,
                "; the same event re-delivered: %s" % dup if dup else ""))
        for who, event in [("spy", completes[0] if completes else None), ("submit", submitted)]:
            if event is None:
                continue
            d = event.get("data") or {}
            want = {"status": "succeeded", "chunks": CHUNKS, "items": ITEMS, "result": self.expected_sum,
                    "failed": 0}
            wrong = {k: d.get(k) for k in want if d.get(k) != want[k]}
            if wrong:
                problems.append("%s's batch_complete: %s, want %s (failed chunks %s)" % (
                    who, wrong, {k: want[k] for k in wrong}, d.get("failed_chunks")))
        return problems

    def report(self, problems):
        self.keep_dir = True
        missing = self.spy.missing_chunks(self.batch_id, CHUNKS)
        lines = ["%s on %s, batch %s:" % (self.case, self.broker.describe(), self.batch_id)]
        lines += ["  - " + p for p in problems]
        lines.append("  chunk_done seen by the spy: %d/%d; missing (first 20): %s" % (
            self.spy.chunks_done(self.batch_id), CHUNKS, missing[:20]))
        if self.spy.errors:
            lines.append("  spy reconnects: %d (last: %s)" % (len(self.spy.errors), self.spy.errors[-1]))
        lines.append("  timeline:")
        lines += ["    %6.1f s  %s" % (t, what) for t, what in self.timeline]
        for p in self.procs.values():
            lines.append("  --- %s (%s), last lines:" % (p.name, "running" if p.alive() else
                                                        "exit %s" % p.popen.returncode))
            lines.append(p.tail())
        lines.append("  logs in %s" % self.dir)
        return "\n".join(lines)


class Matrix:
    """The six faults; mixed into one TestCase per broker."""

    def test_worker_killed_and_restarted(self):
        self.services(workers=2)
        self.run_batch("b-restarted", lambda: self.kill_and_restart(
            "worker-1", 0.25, lambda: self.worker("worker-1-restarted")))

    def test_worker_killed_for_good(self):
        self.services(workers=2)
        baseline = self.run_batch("b-baseline")
        self.note("baseline %.1f s" % baseline)

        def inject():
            self.wait_done(0.25)
            self.fault("worker-1 SIGKILL for good", lambda: self.procs["worker-1"].signal(signal.SIGKILL))

        # The survivor alone needs at most twice the baseline; a lost chunk adds
        # at most about two leases.
        self.run_batch("b-lost-worker", inject, max_s=2 * baseline + 2 * self.broker.lease_s + DELAY_SLACK_S,
                       why_max="2 x the baseline of %.1f s + 2 leases of %d s + %d s" % (
                           baseline, self.broker.lease_s, DELAY_SLACK_S))

    def test_workers_scaled_1_4_1(self):
        self.services(workers=1)

        def inject():
            self.wait_done(0.1)
            self.fault("scale 1 -> 4", lambda: [self.worker("worker-%d" % i) for i in (2, 3, 4)])
            self.wait_done(0.45)

            def scale_down():
                self.procs["worker-2"].signal(signal.SIGTERM)
                self.procs["worker-3"].signal(signal.SIGTERM)
                self.procs["worker-4"].signal(signal.SIGKILL)

            self.fault("scale 4 -> 1 (worker-2, -3 SIGTERM, worker-4 SIGKILL)", scale_down)

        self.run_batch("b-scaled", inject)

    def test_ventilator_killed_mid_ventilation(self):
        self.services(workers=2)

        def inject():
            ventilator = self.procs["ventilator"]
            self.wait_log(ventilator, self.batch_id)  # it has begun this batch
            self.wait_done(1 / CHUNKS, limit=2)  # and published some of it

            def kill():
                ventilator.signal(signal.SIGKILL)
                ventilator.popen.wait(10)

            self.fault("ventilator SIGKILL", kill)
            if "last page read" in ventilator.log():
                self.faults[-1]["too_late"] = "the ventilator had sealed the batch (logged 'last page read')"
            time.sleep(1)
            self.ventilator("ventilator-restarted")

        # A page per chunk: a publish (and its confirm) per chunk keeps the
        # ventilation long enough to be cut in the middle.
        self.run_batch("b-ventilator", inject, submit_args=["--page-chunks", "1"])

    def test_aggregator_killed(self):
        self.services(workers=2)
        self.run_batch("b-aggregator", lambda: self.kill_and_restart(
            "aggregator", 0.3, lambda: self.aggregator("aggregator-restarted")))

    def test_broker_restarted(self):
        self.services(workers=2)

        def inject():
            self.wait_done(0.3)
            self.fault("broker restart", self.broker.restart)

        self.run_batch("b-broker", inject)


class AmqpFaults(Matrix, FaultHarness):
    broker_cls = brokers.RabbitMq


class MqttFaults(Matrix, FaultHarness):
    broker_cls = brokers.StockMosquitto


def main():
    global FANFLOW
    args = sys.argv[1:]
    if len(args) < 2 or args[0] != "--fanflow":
        sys.exit("usage: %s --fanflow PATH [unittest args, e.g. AmqpFaults.test_aggregator_killed]"
                 % os.path.basename(sys.argv[0]))
    FANFLOW = os.path.abspath(args[1])
    program = unittest.main(argv=[sys.argv[0], "-v"] + args[2:], exit=False)
    r = program.result
    if r.testsRun and len(r.skipped) == r.testsRun:
        sys.exit(77)  # ctest's SKIP_RETURN_CODE
    sys.exit(0 if r.wasSuccessful() else 1)


if __name__ == "__main__":
    main()

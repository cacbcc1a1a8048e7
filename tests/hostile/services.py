"""fanflow as separate processes, as an operator runs them: topology, the
aggregator, the ventilator and a worker, each with its stderr in a file; the
CLI for one-off commands; dead-letter listing; the normal batch every case
ends with. Every wait is bounded."""

import json
import os
import random
import signal
import subprocess
import time
from contextlib import contextmanager

from brokers import deadline_loop

CLI_LIMIT_S = 90  # no fanflow command may run longer than this


def clean_env():
    env = dict(os.environ)
    env.pop("FANFLOW_BUS", None)  # every command gets --bus explicitly
    return env


class Ran:
    def __init__(self, argv, rc, out, err, seconds, timed_out):
        self.argv, self.rc, self.out, self.err = argv, rc, out, err
        self.seconds, self.timed_out = seconds, timed_out

    def text(self):
        return self.out.decode("utf-8", "replace") + self.err.decode("utf-8", "replace")

    def describe(self):
        how = ("timed out after %.0f s" % self.seconds if self.timed_out else
               "killed by signal %d" % -self.rc if self.rc < 0 else "exit %d" % self.rc)
        err = self.err.decode("utf-8", "replace").strip().splitlines()[-6:]
        return "`%s`: %s; stderr tail: %s" % (" ".join(self.argv[1:])[:300], how,
                                              " | ".join(e[:300] for e in err) or "(empty)")


class Fanflow:
    """One service set on one bus. `missing_flags` lists the flags the suite
    wanted but this build does not know (the services start without them)."""

    SERVICES = ["aggregator", "ventilator", "worker"]

    def __init__(self, binary, bus_url, workdir):
        self.binary, self.bus, self.workdir = binary, bus_url, workdir
        self.data_dir = os.path.join(workdir, "data")
        self.ledger = os.path.join(workdir, "ledger.db")
        os.makedirs(self.data_dir, exist_ok=True)
        self.procs = {}
        self.missing_flags = []
        self.restarts = []
        self._help = {}

    # ---- one-off commands ----
    def run(self, args, limit=CLI_LIMIT_S, stdin=b"", env=None):
        argv = [self.binary] + list(args)
        t0 = time.monotonic()
        p = subprocess.Popen(argv, stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                             stderr=subprocess.PIPE, env=env or clean_env())
        try:
            out, err = p.communicate(stdin, timeout=limit)
            return Ran(argv, p.returncode, out, err, time.monotonic() - t0, False)
        except subprocess.TimeoutExpired:
            p.kill()
            out, err = p.communicate()
            return Ran(argv, -9, out, err, time.monotonic() - t0, True)

    def start_background(self, args):
        """A command running while the test does something else (submit --wait)."""
        argv = [self.binary] + list(args)
        p = subprocess.Popen(argv, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                             stderr=subprocess.PIPE, env=clean_env())
        p.argv, p.t0 = argv, time.monotonic()
        return p

    @staticmethod
    def finish(p, limit):
        try:
            out, err = p.communicate(timeout=max(1, limit - (time.monotonic() - p.t0)))
            return Ran(p.argv, p.returncode, out, err, time.monotonic() - p.t0, False)
        except subprocess.TimeoutExpired:
            p.kill()
            out, err = p.communicate()
            return Ran(p.argv, -9, out, err, time.monotonic() - p.t0, True)

    def knows(self, command, flag):
        if command not in self._help:
            self._help[command] = self.run([command, "--help"], 30).text()
        return flag in self._help[command]

    # ---- services ----
    def _argv(self, name):
        wanted = {"aggregator": ["--state", self.ledger],
                  "ventilator": ["--data-dir", self.data_dir],
                  "worker": ["--processor", "sum", "--concurrency", "4", "--data-dir", self.data_dir]}[name]
        argv = [self.binary, name, "--bus", self.bus]
        i = 0
        while i < len(wanted):
            flag, value = wanted[i], wanted[i + 1]
            i += 2
            if flag != "--processor" and flag != "--concurrency" and not self.knows(name, flag):
                self.missing_flags.append("%s %s" % (name, flag))
                continue
            argv += [flag, value]
        return argv

    def log_path(self, name):
        return os.path.join(self.workdir, name + ".stderr")

    def start(self):
        topo = self.run(["topology", "--bus", self.bus], 60)
        if topo.rc != 0:
            raise RuntimeError("fanflow topology failed: " + topo.describe())
        for name in self.SERVICES:
            self._spawn(name)
        self.wait_ready(self.SERVICES)

    def _spawn(self, name):
        log = open(self.log_path(name), "ab")
        log.write(b"=== hostile suite: starting %s ===\n" % name.encode())
        log.flush()
        self.procs[name] = subprocess.Popen(self._argv(name), stdin=subprocess.DEVNULL, stdout=log,
                                            stderr=log, env=clean_env())
        log.close()  # the child has its own copy

    def wait_ready(self, names, seconds=30):
        for _ in deadline_loop(seconds):
            if all("ready on" in self.tail(n, 4000) for n in names):
                return
            dead = [n for n in names if self.procs[n].poll() is not None]
            if dead:
                raise RuntimeError("%s exited while starting: %s" % (dead, self.tails(dead)))
        raise RuntimeError("services not ready within %d s: %s" % (seconds, self.tails(names)))

    def dead(self):
        """{name: how it ended} for every service that is no longer running."""
        out = {}
        for name, p in self.procs.items():
            rc = p.poll()
            if rc is not None:
                out[name] = "pid %d %s" % (p.pid, "killed by signal %d" % -rc if rc < 0 else "exited %d" % rc)
        return out

    def revive(self, names, purge):
        """Restarts dead or wedged services so the next case starts clean."""
        for name in names:
            p = self.procs[name]
            if p.poll() is None:
                p.kill()
                p.wait(10)
            purge(name if name != "worker" else "workers")
            self._spawn(name)
            self.restarts.append(name)
        self.wait_ready(names)

    def restart_all(self, purge):
        self.revive(self.SERVICES, purge)

    def stop(self):
        for p in self.procs.values():
            if p.poll() is None:
                p.send_signal(signal.SIGCONT)
                p.terminate()
        for p in self.procs.values():
            try:
                p.wait(10)
            except subprocess.TimeoutExpired:
                p.kill()
                p.wait(10)

    @contextmanager
    def paused(self, name):
        """SIGSTOPs a service (a slow worker, deterministically); always resumed."""
        p = self.procs[name]
        p.send_signal(signal.SIGSTOP)
        try:
            yield
        finally:
            p.send_signal(signal.SIGCONT)

    def tail(self, name, nbytes=3000):
        try:
            with open(self.log_path(name), "rb") as f:
                f.seek(0, 2)
                f.seek(max(0, f.tell() - nbytes))
                return f.read().decode("utf-8", "replace")
        except OSError:
            return ""

    def tails(self, names=None, lines=8):
        parts = []
        for n in names or self.SERVICES:
            t = self.tail(n, 20000).splitlines()[-lines:]
            parts.append("--- %s stderr (last %d lines) ---\n%s" % (n, lines, "\n".join(l[:400] for l in t)))
        return "\n".join(parts)

    def log_bytes(self):
        out = b""
        for n in self.SERVICES:
            try:
                with open(self.log_path(n), "rb") as f:
                    out += f.read()
            except OSError:
                pass
        return out

    # ---- dead letters ----
    def dlq_list(self):
        """(entries, problem): every group's dead letters; problem is None
        when `fanflow dlq list --json` exited 0 with one JSON object a line."""
        r = self.run(["dlq", "list", "--bus", self.bus, "--json", "--log-level", "warn"], 60)
        entries, problem = [], None
        for n, line in enumerate(r.out.decode("utf-8", "replace").splitlines()):
            if not line.strip():
                continue
            try:
                entries.append(json.loads(line))
            except ValueError as e:
                problem = "line %d of `dlq list --json` is not JSON (%s): %r" % (n + 1, e, line[:200])
            except RecursionError:
                problem = ("line %d of `dlq list --json` is nested too deep for Python's json module "
                           "(a display must bound depth): %r" % (n + 1, line[:200]))
        if r.rc != 0:
            problem = "dlq list: " + r.describe()
        return entries, problem

    def wait_dead_letters(self, match, want=1, seconds=8, ready=None):
        """Polls the dead letters until `want` entries satisfy `match` (and
        `ready(entries)` if given); returns (matching entries, last problem)."""
        found, problem = [], None
        for _ in deadline_loop(seconds, 0.5):
            entries, problem = self.dlq_list()
            found = [e for e in entries if match(e)]
            if len(found) >= want and (ready is None or ready(found)):
                break
        return found, problem

    # ---- the normal batch ----
    def write_items(self, stem, n, low=-10**6, high=10**6):
        values = [random.randint(low, high) for _ in range(n)]
        path = os.path.join(self.data_dir, "%s-%d.jsonl" % (stem, random.randrange(10**9)))
        with open(path, "w") as f:
            for i, v in enumerate(values):
                f.write(json.dumps({"id": i, "value": v}) + "\n")
        return path, sum(values)

    def submit_args(self, path, batch_id, timeout=60, chunk_size=100):
        return ["submit", "--bus", self.bus, "--source", "jsonl:" + path, "--chunk-size", str(chunk_size),
                "--batch-id", batch_id, "--wait", "--json", "--timeout", str(timeout), "--log-level", "warn"]


def complete_of(ran):
    """The batch_complete `submit --wait --json` printed, or None."""
    for line in reversed(ran.out.decode("utf-8", "replace").splitlines()):
        if line.strip():
            try:
                e = json.loads(line)
                return e if isinstance(e, dict) else None
            except ValueError:
                return None
    return None


def result_problems(ran, expected_sum, chunks=None):
    """What is wrong with a `submit --wait --json` run that should succeed
    with `expected_sum` (and `chunks` chunks); [] when nothing."""
    if ran.rc != 0:
        return ["submit did not succeed: " + ran.describe()]
    e = complete_of(ran)
    if not e or not isinstance(e.get("data"), dict):
        return ["submit printed no batch_complete: %r" % ran.out[-300:]]
    d, problems = e["data"], []
    if d.get("status") != "succeeded":
        problems.append("status %r, expected 'succeeded' (data: %s)" % (d.get("status"), json.dumps(d)[:300]))
    if d.get("result") != expected_sum:
        problems.append("result %r, expected the exact sum %d" % (d.get("result"), expected_sum))
    if chunks is not None and d.get("chunks") != chunks:
        problems.append("data.chunks %r, expected %d" % (d.get("chunks"), chunks))
    return problems

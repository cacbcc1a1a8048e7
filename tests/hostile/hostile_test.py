#!/usr/bin/python3
"""The hostile-input suite (issue 9, item 6): what any broker client can send
to fanflow's documented routes, sent with third-party clients (pika,
paho-mqtt) to services running as separate processes, on RabbitMQ or a
stock-config Mosquitto.

After every case: (a) every service is still the process it was, (b) a normal
JSONL batch still gets the exact sum, (c) the case's own assertion (mostly: a
dead letter whose reason names the field). A failure lists all three with the
tail of the services' stderr.

  python3 tests/hostile/hostile_test.py --broker amqp|mqtt --fanflow build/src/cli/fanflow [-k c05]

amqp needs FANFLOW_TEST_AMQP_URL (eval "$(scripts/rabbitmq-start.sh)"); mqtt
starts its own stock Mosquitto. Without a broker the run is skipped (exit 77),
or fails when CI=true."""

import argparse
import os
import shutil
import signal
import sqlite3
import sys
import tempfile
import time
import unittest

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

import brokers  # noqa: E402
from brokers import Spy, deadline_loop  # noqa: E402
from events import chunk_done, encode, event, process_chunk_ref, start_fanout, uniq  # noqa: E402
from services import Fanflow, complete_of, result_problems  # noqa: E402

BROKER = None  # "amqp" or "mqtt", from the command line
FANFLOW = None
NORMAL_ITEMS = 1000  # the batch every case ends with: 10 chunks of 100
NORMAL_LIMIT_S = 30


def reasons(entries):
    return [str(e.get("reason", "")) for e in entries]


def by_id(*ids):
    return lambda e: e.get("id") in ids


def of_batch(*subjects):
    return lambda e: e.get("batch_id") in subjects or any(
        str(e.get("id", "")).startswith(s + "/") for s in subjects)


class Case:
    """The problems one case found; the test fails with all of them."""

    def __init__(self, title):
        self.title, self.problems = title, []

    def check(self, ok, what):
        if not ok:
            self.problems.append(what)
        return ok

    def dead_lettered(self, found, problem, keywords, what, once=False):
        """`found` dead letters must exist and one reason must contain one of
        `keywords` (case-insensitive)."""
        if problem:
            self.problems.append("(c) %s: %s" % (what, problem))
        if not found:
            self.problems.append("(c) %s: not dead-lettered (no matching entry in `fanflow dlq list "
                                 "--json`, any group)" % what)
            return
        rs = reasons(found)
        if not any(k.lower() in r.lower() for r in rs for k in keywords):
            self.problems.append("(c) %s: dead-lettered, but no reason contains %s; reasons: %s"
                                 % (what, " or ".join(repr(k) for k in keywords), [r[:300] for r in rs]))
        if once and len(found) != 1:
            self.problems.append("(c) %s: dead-lettered %d times, expected exactly once" % (what, len(found)))


class HostileInput(unittest.TestCase):
    @classmethod
    def setUpClass(cls):
        cls.workdir = tempfile.mkdtemp(prefix="fanflow-hostile-%s-" % BROKER)
        cls.broker = (brokers.Amqp if BROKER == "amqp" else brokers.Mqtt)(cls.workdir)
        cls.ff = Fanflow(FANFLOW, cls.broker.url, cls.workdir)
        try:
            cls.ff.start()
            cls.spy = Spy()
            cls.broker.start_spy(cls.spy)
        except Exception:
            cls.tearDownClass()
            raise
        # Outside the data dir: what no remote client may make fanflow read.
        cls.api_key = "sk-live-%s" % uniq("key")
        cls.outside = os.path.join(cls.workdir, "secret.jsonl")
        with open(cls.outside, "w") as f:
            for i in range(30):
                f.write('{"id": %d, "value": 1, "api_key": "%s"}\n' % (i, cls.api_key))
        os.chmod(cls.outside, 0o600)
        print("\n[hostile %s] bus %s, services' stderr in %s" % (BROKER, cls.broker.url, cls.workdir),
              file=sys.stderr)

    @classmethod
    def tearDownClass(cls):
        cls.ff.stop()
        cls.broker.close()

    # ---- shared steps ----
    def publish(self, route, events_or_bodies, ids=None):
        bodies = [b if isinstance(b, bytes) else encode(b) for b in events_or_bodies]
        self.broker.publish(route, bodies, ids)

    def spied(self, route, subject):
        return self.spy.events(route, subject)

    def wait_spied(self, route, subject, want=1, seconds=15, step=0.05):
        for _ in deadline_loop(seconds, step):
            if len(self.spied(route, subject)) >= want:
                return True
        return False

    def mentions(self, needle):
        return sum(1 for line in self.ff.log_bytes().splitlines() if needle.encode() in line)

    def finish(self, c, normal_timeout=60, normal=True):
        """(a) and (b), then fails with everything the case found."""
        dead = self.ff.dead()
        for name, how in dead.items():
            c.problems.append("(a) the %s died during the case (%s)" % (name, how))
        tails = self.ff.tails()
        _, problem = self.ff.dlq_list()
        if problem:
            # Later cases could not list theirs: a case never hides another's result.
            try:
                self.broker.purge_dead_letters()
            except Exception as e:  # reported with the case, never instead of it
                c.problems.append("(dlq) purging the dead letters failed: %s" % e)
            c.problems.append("(dlq) `dlq list` fails after the case (%s); every dead letter was purged so "
                              "later cases can list theirs" % problem)
        if dead:
            self.ff.revive(list(dead), self.broker.purge_group)
        if normal:
            path, total = self.ff.write_items("normal", NORMAL_ITEMS)
            ran = self.ff.run(self.ff.submit_args(path, uniq("normal"), normal_timeout), normal_timeout + 20)
            bad = result_problems(ran, total)
            if not bad and ran.seconds > NORMAL_LIMIT_S:
                bad = ["took %.0f s (a 10-chunk batch takes about a second; a service is wedged)" % ran.seconds]
            for p in bad:
                c.problems.append("(b) normal batch after the case: " + p)
            for name, how in self.ff.dead().items():
                c.problems.append("(a) the %s died during the normal batch (%s)" % (name, how))
            if bad:
                tails = self.ff.tails()
                self.ff.restart_all(self.broker.purge_group)  # the next case starts clean
        if c.problems:
            self.fail("case %s [%s]:\n  - %s\n%s" % (c.title, BROKER, "\n  - ".join(c.problems), tails))

    class Running:
        """A batch whose worker is paused: forgeries reach the aggregator
        while it is open, after its seal."""

        def __init__(self, test, stem, items=2000):
            self.test, self.ff = test, test.ff
            self.path, self.total = self.ff.write_items(stem, items)
            self.batch = uniq(stem)
            self.chunks = (items + 99) // 100
            self.ran = None

        def __enter__(self):
            self._pause = self.ff.paused("worker")
            self._pause.__enter__()
            try:
                self.proc = self.ff.start_background(self.ff.submit_args(self.path, self.batch, 60))
                self.sealed = self.test.wait_spied("batch_sealed", self.batch)
            except BaseException:
                self.resume()
                raise
            return self

        def resume(self):
            if self._pause:
                self._pause.__exit__(None, None, None)
                self._pause = None

        def __exit__(self, *exc):
            self.resume()
            self.ran = self.ff.finish(self.proc, 80)
            return False

        def problems(self, c, chunks=True):
            c.check(self.sealed, "(c) setup: no batch_sealed for %s seen within 15 s" % self.batch)
            for p in result_problems(self.ran, self.total, self.chunks if chunks else None):
                c.problems.append("(c) the running batch: " + p)

    # ---- 1-18: the cases, then ours ----
    def test_c01_result_nested_100000_deep(self):
        c = Case("1 chunk_done with data.result nested 100,000 levels")
        s = uniq("c01")
        e = chunk_done(s, 0, result=None)
        body = encode(e).replace(b'"result":null', b'"result":' + b"[" * 100000 + b"]" * 100000)
        self.publish("chunk_done", [body], [e["id"]])
        found, problem = self.ff.wait_dead_letters(by_id(e["id"]))
        c.dead_lettered(found, problem, ("nested", "depth"), "the deep chunk_done")
        self.finish(c)

    def test_c02_run_exec_prints_deep_json(self):
        c = Case("2 fanflow run --exec printing JSON nested 100,000 levels (inproc)")
        cmd = '%s -c "print(\\"[\\"*100000 + \\"]\\"*100000)"' % sys.executable
        r = self.ff.run(["run", "--bus", "inproc://", "--source", "range:200", "--chunk-size", "100",
                         "--exec", cmd, "--max-attempts", "1", "--json", "--log-level", "warn"], 120)
        c.check(not r.timed_out and r.rc >= 0, "(c) run must exit with a status code: " + r.describe())
        c.check(r.rc in (3, 4), "(c) expected exit 3/4 (partial/failed chunks): " + r.describe())
        e = complete_of(r)
        c.check(e is not None and e.get("data", {}).get("status") in ("failed", "partial"),
                "(c) expected a failed/partial batch_complete, got %r" % r.out[-300:])
        c.check(any(k in r.text().lower() for k in ("nested", "depth")),
                "(c) no clear error: stderr does not mention 'nested'/'depth': " + r.describe())
        self.finish(c, normal=False)

    def test_c03_forged_chunk_index_out_of_range(self):
        c = Case("3 forged chunk_done with chunk_index 25 and 10^15 in a running 20-chunk batch")
        with self.Running(self, "c03") as b:
            forged = [chunk_done(b.batch, 25, result=10**9), chunk_done(b.batch, 10**15, result=10**9)]
            self.publish("chunk_done", forged)
            found, problem = self.ff.wait_dead_letters(by_id(*[f["id"] for f in forged]), want=2, seconds=6)
        b.problems(c)
        if len(found) < 2:
            found, problem = self.ff.wait_dead_letters(by_id(*[f["id"] for f in forged]), want=2, seconds=4)
        for f in forged:
            mine = [e for e in found if e.get("id") == f["id"]]
            c.dead_lettered(mine, problem, ("data.chunk_index",), "forged %s" % f["id"])
        self.finish(c)

    def test_c04_conflicting_duplicate(self):
        c = Case("4 duplicate chunk_done for a counted chunk with a different result")
        with self.Running(self, "c04", items=20000) as b:
            # Let the worker finish a chunk or two, then stop it again.
            w = self.ff.procs["worker"]
            w.send_signal(signal.SIGCONT)
            got = self.wait_spied("chunk_done", b.batch, seconds=10, step=0.002)
            w.send_signal(signal.SIGSTOP)
            real = self.spied("chunk_done", b.batch)
            c.check(got and len(real) < b.chunks, "(c) setup: could not stop the batch part-way")
            if real:
                dup = dict(real[0], data=dict(real[0]["data"]))
                dup["data"]["result"] = dup["data"].get("result", 0) + 7919
                time.sleep(0.5)  # the real one is counted first
                self.publish("chunk_done", [dup])
                found, problem = self.ff.wait_dead_letters(
                    lambda e: e.get("id") == dup["id"] and "conflict" in str(e.get("reason")).lower(), seconds=6)
                if not found:
                    found, problem = self.ff.wait_dead_letters(by_id(dup["id"]), seconds=1)
                c.dead_lettered(found, problem, ("conflict",), "the conflicting duplicate %s" % dup["id"])
        b.problems(c)
        e = complete_of(b.ran) or {}
        conflicts = e.get("data", {}).get("conflicts")
        c.check(isinstance(conflicts, int) and not isinstance(conflicts, bool) and conflicts >= 1,
                "(c) batch_complete data.conflicts = %r, expected an integer >= 1" % conflicts)
        self.finish(c)

    def test_c05_chunk_done_for_unknown_batches(self):
        c = Case("5 201 chunk_done events for batches that do not exist")
        ghosts = [uniq("c05ghost") for _ in range(201)]
        self.publish("chunk_done", [chunk_done(g, 0, result=5) for g in ghosts])
        wanted = set(ghosts)
        found, problem = self.ff.wait_dead_letters(lambda e: e.get("batch_id") in wanted, want=201, seconds=15)
        c.check(not problem, "(c) " + str(problem))
        c.check(len(found) >= 201, "(c) %d of 201 dead-lettered" % len(found))
        vague = [r for r in reasons(found) if "subject" not in r.lower() and "batch" not in r.lower()]
        c.check(found and not vague, "(c) reasons must mention 'subject' or 'batch': %s" % vague[:3])
        try:
            db = sqlite3.connect("file:%s?mode=ro" % self.ff.ledger, uri=True, timeout=10)
            rows = db.execute("SELECT batch_id FROM batches").fetchall()
            db.close()
            ghost_rows = [r[0] for r in rows if r[0] in wanted]
            c.check(not ghost_rows, "(c) %d ghost batches in the ledger's `batches` table, e.g. %s"
                    % (len(ghost_rows), ghost_rows[:2]))
        except sqlite3.Error as e:
            c.problems.append("(c) cannot read the ledger %s: %s" % (self.ff.ledger, e))
        self.finish(c)

    def test_c06_reused_batch_ids(self):
        c = Case("6 start_fanout reusing the id of a running / completed batch")
        with self.Running(self, "c06") as b:
            other = start_fanout(b.batch, "range:500", id=b.batch + "/start")
            self.publish("start_fanout", [other])
            found, problem = self.ff.wait_dead_letters(
                lambda e: e.get("id") == other["id"] and "already exists" in str(e.get("reason")), seconds=6)
        if not found:
            found, problem = self.ff.wait_dead_letters(by_id(other["id"]), seconds=2)
        c.dead_lettered(found, problem, ("already exists",), "another source under a running batch's id")
        b.problems(c)
        if b.ran.rc != 0:
            return self.finish(c)
        # The same request again: the existing result, at once, no second fan-out.
        chunks_before = len(self.spied("process_chunk", b.batch))
        again = self.ff.run(self.ff.submit_args(b.path, b.batch, 15), 30)
        for p in result_problems(again, b.total):
            c.problems.append("(c) identical re-submission of a completed batch: " + p)
        c.check(again.seconds < 10, "(c) the identical re-submission took %.1f s" % again.seconds)
        different = start_fanout(b.batch, "range:700", id=b.batch + "/restart")
        self.publish("start_fanout", [different])
        found, problem = self.ff.wait_dead_letters(by_id(different["id"]), seconds=6)
        c.dead_lettered(found, problem, ("already exists",), "another request under a completed batch's id")
        chunks_after = len(self.spied("process_chunk", b.batch))
        c.check(chunks_after == chunks_before, "(c) completed batch fanned out again: process_chunk events "
                "for it went from %d to %d" % (chunks_before, chunks_after))
        self.finish(c)

    def test_c07_sources_outside_the_data_dir(self):
        c = Case("7 start_fanout reading files outside --data-dir")
        link = os.path.join(self.ff.data_dir, uniq("link") + ".jsonl")
        os.symlink(self.outside, link)
        dotdot = os.path.join(self.ff.data_dir, "..", os.path.basename(self.outside))
        mark = self.spy.mark()
        starts = [start_fanout(uniq("c07"), "jsonl:" + p, chunk_size=10) for p in (self.outside, link, dotdot)]
        self.publish("start_fanout", starts)
        # Admitted by the aggregator, refused by the ventilator: the dead letter
        # is the batch's fan-out step, found by the batch id.
        found, problem = self.ff.wait_dead_letters(of_batch(*[s["subject"] for s in starts]), want=3)
        for s, how in zip(starts, ("a file outside", "a symlink inside pointing outside", "<data-dir>/..")):
            c.dead_lettered([e for e in found if of_batch(s["subject"])(e)], problem, ("data.source",),
                            "source jsonl: " + how)
        leaked = self.spy.bodies_containing(self.api_key, mark)
        c.check(not leaked, "(c) %d message(s) on the bus carry the secret file's api_key, e.g. %r"
                % (len(leaked), leaked[0][:200] if leaked else b""))
        self.finish(c)

    def test_c08_claim_check_outside_the_roots(self):
        c = Case("8 process_chunk claim checks on /etc/shadow and on a missing file outside the roots")
        paths = {"existing": "/etc/shadow", "missing": "/nonexistent-%s/shadow" % uniq("dir"),
                 "secret": self.outside}
        chunks = {k: process_chunk_ref(uniq("c08" + k), p, length=10) for k, p in paths.items()}
        mark = self.spy.mark()
        self.publish("process_chunk", list(chunks.values()))

        def texts(k):
            e = chunks[k]
            out = [str(d.get("reason")) for d in self.ff.dlq_list()[0]
                   if d.get("id") == e["id"] and d.get("type") == "fanflow.process_chunk.v1"]
            out += [str(d["data"].get("error")) for d in self.spied("chunk_done", e["subject"])]
            return sorted(t.replace(paths[k], "<path>").replace(e["subject"], "<batch>") for t in out)

        seen = {}
        for _ in deadline_loop(10, 0.5):
            seen = {k: texts(k) for k in chunks}
            if all(any("data.ref.path" in t for t in v) for v in seen.values()):
                break
        for k, v in seen.items():
            c.check(any("data.ref.path" in t for t in v),
                    "(c) %s file: no dead-letter reason / chunk error names 'data.ref.path': %s" % (k, v))
        c.check(seen.get("existing") == seen.get("missing"),
                "(c) texts differ for an existing and a missing file (they leak existence/size): %s vs %s"
                % (seen.get("existing"), seen.get("missing")))
        leaked = self.spy.bodies_containing(self.api_key, mark) + self.spy.bodies_containing(b"root:", mark)
        c.check(not leaked, "(c) file contents outside the roots reached the bus: %r" % leaked[:1])
        self.finish(c)

    def test_c09_stdin_source(self):
        c = Case("9 start_fanout with source '-' to the service ventilator")
        s = start_fanout(uniq("c09"), "-")
        self.publish("start_fanout", [s])
        found, problem = self.ff.wait_dead_letters(of_batch(s["subject"]))
        c.dead_lettered(found, problem, ("data.source",), "source '-'")
        self.finish(c)

    def observe_no_loop(self, c, subject, seconds=10, most=6):
        time.sleep(seconds)
        n = self.mentions(subject)
        c.check(n <= most, "(c) %s: services' stderr mentions it %d times in %d s (a retry loop)"
                % (subject, n, seconds))
        retries = [b for r, b in self.spy.seen() if r.startswith("retry:") and subject.encode() in b]
        c.check(len(retries) <= 3, "(c) %s: retried %d times on the bus in %d s" % (subject, len(retries), seconds))

    def test_c10_wrong_typed_optional_fields(self):
        c = Case("10 data.started_at: 5 / chunk_done data.error: 123")
        s = start_fanout(uniq("c10start"), "range:10", chunk_size=5, started_at=5)
        d = chunk_done(uniq("c10done"), 0, status="failed", error=123)
        self.publish("start_fanout", [s])
        self.publish("chunk_done", [d])
        self.observe_no_loop(c, s["subject"])
        self.observe_no_loop(c, d["subject"], seconds=0)
        for e, field in ((s, "data.started_at"), (d, "data.error")):
            found, problem = self.ff.wait_dead_letters(by_id(e["id"]), seconds=2)
            c.dead_lettered(found, problem, (field,), field, once=True)
        self.finish(c)

    def test_c11_claim_check_length_10_12(self):
        c = Case("11 process_chunk claim check with length 10^12")
        path, _ = self.ff.write_items("c11", 10)
        e = process_chunk_ref(uniq("c11"), path, length=10**12)
        self.publish("process_chunk", [e])
        self.observe_no_loop(c, e["subject"])
        found, problem = self.ff.wait_dead_letters(of_batch(e["subject"]), seconds=2)
        errors = [str(d["data"].get("error")) for d in self.spied("chunk_done", e["subject"])]
        if not any("data.ref.length" in t for t in errors):
            c.dead_lettered(found, problem, ("data.ref.length",), "length 10^12 (chunk_done errors: %s)" % errors)
        self.finish(c)

    def test_c12_control_characters_in_subjects(self):
        c = Case("12 subjects with a forged log line / invalid UTF-8 and control characters")
        s = start_fanout(uniq("c12") + "\n[fake] batch X complete", "range:10", chunk_size=5,
                         id=uniq("c12") + "/start")
        self.publish("start_fanout", [s])
        found, problem = self.ff.wait_dead_letters(by_id(s["id"]))
        c.dead_lettered(found, problem, ("subject",), "subject with a newline")
        forged = [l for l in self.ff.log_bytes().splitlines() if l.startswith(b"[fake]")]
        c.check(not forged, "(c) a service logged a line starting with '[fake]': %r" % forged[:1])
        raw_id = uniq("c12raw")
        raw = (b'{"specversion":"1.0","id":"' + raw_id.encode() + b'/start","source":"urn:x",'
               b'"type":"fanflow.start_fanout.v1","subject":"' + raw_id.encode() + b'\xff\xfe\x01\x07\x1b[2J",'
               b'"correlationid":"\xc3\x28\x00","data":{"source":"range:10","chunk_size":5}}')
        self.publish("start_fanout", [raw])
        time.sleep(2)
        self.finish(c, normal_timeout=30)

    def test_x14_dlq_shows_binary_bodies(self):
        c = Case("14 dead letters with a binary and an invalid-UTF-8 body")
        ids = {k: uniq("c14" + k) for k in ("binary", "utf8", "plain")}
        bodies = [bytes(range(256)) * 4,
                  b'{"specversion":"1.0","id":"' + ids["utf8"].encode() + b'","subject":"caf\xe9 \xff\xfe"}',
                  b"not json {"]
        self.publish("chunk_done", bodies, [ids["binary"], ids["utf8"], ids["plain"]])
        found, problem = self.ff.wait_dead_letters(by_id(*ids.values()), want=3)
        c.check(not problem, "(c) " + str(problem))
        listed = {e.get("id") for e in found}
        c.check(listed == set(ids.values()), "(c) `dlq list --json` lists %s of %s" % (listed, set(ids.values())))
        table = self.ff.run(["dlq", "list", "--bus", self.ff.bus, "--log-level", "warn"], 60)
        c.check(table.rc == 0, "(c) `dlq list` (table): " + table.describe())
        for k in ("binary", "utf8"):
            show = self.ff.run(["dlq", "show", ids[k], "--bus", self.ff.bus, "--log-level", "warn"], 60)
            c.check(show.rc == 0 and ids[k] in show.text(), "(c) `dlq show %s` (%s body): %s"
                    % (ids[k], k, show.describe()))
        self.finish(c)

    def test_x15_empty_body(self):
        c = Case("15 an empty body to the chunk_done route")
        i = uniq("c15")
        self.publish("chunk_done", [b""], [i])
        found, problem = self.ff.wait_dead_letters(by_id(i))
        c.check(not problem, "(c) " + str(problem))
        c.check(found, "(c) `dlq list --json` does not show the empty message %s" % i)
        self.finish(c)

    def test_c16_password_in_a_schemeless_bus_url(self):
        c = Case("16 a --bus without a scheme holding a password")
        for url in ("user:s3cr3tpw@127.0.0.1", "user:s3cr3tpw@127.0.0.1:5672/", "amqp:/user:s3cr3tpw@127.0.0.1",
                    "ampq://user:s3cr3tpw@127.0.0.1/"):
            r = self.ff.run(["dlq", "list", "--bus", url], 30)
            c.check(r.rc > 0 and not r.timed_out, "(c) --bus %r: expected a non-zero exit: %s" % (url, r.describe()))
            c.check("s3cr3tpw" not in r.text(), "(c) --bus %r: the password is printed: %r" % (url, r.text()[:300]))
        self.finish(c, normal=False)

    # ---- 18: cases the issue does not list ----
    def test_c18a_items_inconsistent_with_the_chunk(self):
        c = Case("18a chunk_done whose items differ from the published chunk")
        with self.Running(self, "c18a") as b:
            forged = chunk_done(b.batch, 3, result=10**6, items=7)
            self.publish("chunk_done", [forged])
            found, problem = self.ff.wait_dead_letters(by_id(forged["id"]), seconds=6)
        c.dead_lettered(found, problem, ("data.items",), "items 7 for a chunk of 100")
        b.problems(c)
        self.finish(c)

    def test_c18b_number_edge_cases(self):
        c = Case("18b 1e400, 2^64 and -1 as chunk_index / items")
        cases = []
        for literal, field in ((b"1e400", "data.chunk_index"), (b"18446744073709551616", "data.chunk_index"),
                               (b"-1", "data.chunk_index"), (b"-0.0", "data.chunk_index")):
            e = chunk_done(uniq("c18b"), 0)
            cases.append((e, field, encode(e).replace(b'"chunk_index":0', b'"chunk_index":' + literal), literal))
        e = chunk_done(uniq("c18b"), 0)
        cases.append((e, "data.items", encode(e).replace(b'"items":100', b'"items":1e400'), b"items 1e400"))
        self.publish("chunk_done", [body for _, _, body, _ in cases], [e["id"] for e, _, _, _ in cases])
        found, problem = self.ff.wait_dead_letters(by_id(*[e["id"] for e, _, _, _ in cases]), want=len(cases))
        for e, field, _, literal in cases:
            # A literal no double can hold fails while parsing, before any field is read.
            keys = (field, "number beyond") if b"1e400" in literal else (field,)
            c.dead_lettered([d for d in found if d.get("id") == e["id"]], problem, keys, literal.decode())
        self.finish(c)

    def test_c18c_duplicate_json_keys(self):
        c = Case("18c start_fanout with data.source given twice (a file outside the roots last)")
        s = start_fanout(uniq("c18c"), "range:10", chunk_size=10)
        body = encode(s).replace(b'"source":"range:10"',
                                 b'"source":"range:10","source":"jsonl:' + self.outside.encode() + b'"')
        mark = self.spy.mark()
        self.publish("start_fanout", [body])
        found, problem = self.ff.wait_dead_letters(of_batch(s["subject"]))
        c.dead_lettered(found, problem, ("data.source", "duplicate"), "duplicate data.source")
        leaked = self.spy.bodies_containing(self.api_key, mark)
        c.check(not leaked, "(c) the secret file's api_key reached the bus: %r" % leaked[:1])
        self.finish(c)

    def test_c18d_contradicting_seal(self):
        c = Case("18d batch_sealed with total_chunks 5 for an open 20-chunk batch")
        with self.Running(self, "c18d") as b:
            # Without a step (as a client would forge it) and as a report of the step that sealed it.
            seals = [event("batch_sealed", b.batch, {"total_chunks": 5, "total_items": 500}, id=b.batch + "/sealed"),
                     event("batch_sealed", b.batch, {"total_chunks": 5, "total_items": 500, "step": 0},
                           id=b.batch + "/sealed-again")]
            self.publish("batch_sealed", seals)
            found, problem = self.ff.wait_dead_letters(of_batch(b.batch), want=2, seconds=6)
        for seal, keys in zip(seals, (("data.step",), ("total_chunks",))):
            c.dead_lettered([d for d in found if d.get("id") == seal["id"]], problem, keys,
                            "the contradicting seal " + seal["id"])
        b.problems(c)
        self.finish(c)

    def test_c18e_forged_complete_for_other_batches(self):
        c = Case("18e forged batch_complete near a waiting submit's batch id")
        with self.Running(self, "c18e") as b:
            data = {"status": "succeeded", "items": 1, "chunks": 1, "succeeded": 1, "failed": 0,
                    "failed_chunks": [], "result": -1}
            forged = [event("batch_complete", b.batch + "x", data, id=b.batch + "/complete"),
                      event("batch_complete", b.batch + "\n", data, id=b.batch + "/complete"),
                      event("batch_complete", uniq("other"), data, id=b.batch + "/complete", correlationid=b.batch)]
            self.publish("batch_complete", forged)
            time.sleep(2)
            c.check(b.proc.poll() is None, "(c) submit --wait ended on a batch_complete of another batch")
        b.problems(c)
        self.finish(c)

    def test_c18f_oversized_id_and_subject(self):
        c = Case("18f start_fanout with a 70,000-character id and subject")
        s = start_fanout("h" * 70000, "range:10", chunk_size=5, id="i" * 70000)
        self.publish("start_fanout", [s], ["c18f-" + uniq("id")])
        found, problem = self.ff.wait_dead_letters(lambda e: "c18f-" in str(e.get("id")) or
                                                   str(e.get("id", "")).startswith("iiii"))
        c.dead_lettered(found, problem, ("id", "subject"), "70,000-character id/subject")
        self.finish(c)

    def test_c18g_start_without_time(self):
        c = Case("18g a foreign start_fanout without `time`: batch_complete's started_at")
        s = start_fanout(uniq("c18g"), "range:10", chunk_size=5)
        self.publish("start_fanout", [s])
        done = self.wait_spied("batch_complete", s["subject"], seconds=30)
        c.check(done, "(c) no batch_complete for %s within 30 s" % s["subject"])
        for e in self.spied("batch_complete", s["subject"]):
            started = e.get("data", {}).get("started_at")
            c.check(isinstance(started, str) and len(started) >= 20 and started[4] == "-",
                    "(c) batch_complete data.started_at = %r, expected an RFC 3339 time" % started)
        self.finish(c)

    def test_y17_body_of_20_mb(self):
        c = Case("17 a 20 MB chunk_done")
        e = chunk_done(uniq("c17"), 0, result="x" * (20 << 20))
        self.publish("chunk_done", [encode(e)], [e["id"]])
        found, problem = self.ff.wait_dead_letters(by_id(e["id"]), seconds=20)
        c.dead_lettered(found, problem, ("bytes",), "the 20 MB body")
        self.finish(c)

    def test_z13_one_batch_cannot_starve_another(self):
        c = Case("13 a 10M-chunk batch, then a 2,000-item batch")
        self.broker.stop_spy()  # it would record every one of the big batch's events
        for flag in ("--fanout-window", "--max-batch-chunks"):
            c.check(self.ff.knows("aggregator", flag), "(c) `fanflow aggregator --help` has no %s" % flag)
        big = start_fanout(uniq("c13big"), "range:10000000", chunk_size=1)
        self.publish("start_fanout", [big])
        time.sleep(5)
        path, total = self.ff.write_items("c13", 2000)
        small = self.ff.run(self.ff.submit_args(path, uniq("c13small"), 20), 35)
        for p in result_problems(small, total, 20):
            c.problems.append("(c) the 2,000-item batch 5 s after the big one: " + p)
        c.check(small.seconds <= 21, "(c) the 2,000-item batch took %.1f s (limit 20 s)" % small.seconds)
        huge = start_fanout(uniq("c13huge"), "range:20000000", chunk_size=1)
        self.publish("start_fanout", [huge])
        found, problem = self.ff.wait_dead_letters(by_id(huge["id"]))
        c.dead_lettered(found, problem, ("max-batch",), "range:20000000 in chunks of 1")
        early = [e for e in self.ff.dlq_list()[0] if e.get("id") == big["id"]]
        c.check(not early, "(c) the 10M-chunk batch was refused: %s" % reasons(early))
        self.finish(c, normal=False)

    def test_c00_services_know_the_flags(self):
        c = Case("0 the services take the flags the suite starts them with")
        c.check(not self.ff.missing_flags, "unknown flags (services started without them): %s"
                % self.ff.missing_flags)
        self.finish(c, normal=False)


def main():
    global BROKER, FANFLOW
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--broker", choices=["amqp", "mqtt"], required=True)
    ap.add_argument("--fanflow", required=True, help="the fanflow binary")
    ap.add_argument("-k", action="append", default=[], help="only tests whose name contains this")
    args = ap.parse_args()
    BROKER, FANFLOW = args.broker, os.path.abspath(args.fanflow)
    try:
        (brokers.Amqp if BROKER == "amqp" else brokers.Mqtt).check_available()
    except brokers.Missing as e:
        if os.environ.get("CI") == "true":
            print("FAIL: %s (CI=true: a missing broker is a failure)" % e, file=sys.stderr)
            return 1
        print("SKIP: %s" % e, file=sys.stderr)
        return 77
    argv = [sys.argv[0], "-v"] + sum((["-k", k] for k in args.k), [])
    prog = unittest.main(argv=argv, exit=False)
    if not prog.result.wasSuccessful():
        return 1
    if getattr(HostileInput, "workdir", None):
        shutil.rmtree(HostileInput.workdir, ignore_errors=True)  # kept for reading when a case fails
    return 0


if __name__ == "__main__":
    sys.exit(main())

"""`fanflow serve` driven over HTTP with urllib, and `fanflow status`, on
inproc:// (serve runs every role) and on RabbitMQ and a stock Mosquitto (the
roles are separate processes; serve publishes start_fanout and reads the
aggregator's ledger read-only). Every wait is bounded; everything listens on
127.0.0.1. Run by ctest (tests/serve/CMakeLists.txt):

    serve_test.py --fanflow BUILD/src/cli/fanflow InprocServe|AmqpServe|MqttServe

A missing broker is a skip (exit 77), a failure when CI=true.
"""

import argparse
import json
import os
import re
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
import unittest
import urllib.error
import urllib.parse
import urllib.request

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "faults"))
from brokers import BrokerMissing, RabbitMq, StockMosquitto, in_ci, spawn  # noqa: E402

FANFLOW = None
TOKEN = "s3cret-token-for-tests"
ITEMS = 300  # items of the test file, values 1..ITEMS


def http(port, method, path, body=None, token=TOKEN, limit=30, raw=None):
    """(status, parsed JSON or text) of one request."""
    data = raw if raw is not None else (json.dumps(body).encode() if body is not None else None)
    req = urllib.request.Request("http://127.0.0.1:%d%s" % (port, path), data=data, method=method)
    if token:
        req.add_header("Authorization", "Bearer " + token)
    if data is not None:
        req.add_header("Content-Type", "application/json")
    try:
        with urllib.request.urlopen(req, timeout=limit) as r:
            status, text = r.status, r.read().decode()
    except urllib.error.HTTPError as e:
        status, text = e.code, e.read().decode()
    try:
        return status, json.loads(text)
    except ValueError:
        return status, text


def wait_for(what, check, limit):
    deadline = time.monotonic() + limit
    last = None
    while time.monotonic() < deadline:
        last = check()
        if last:
            return last
        time.sleep(0.2)
    raise AssertionError("%s: not within %d s (last: %r)" % (what, limit, last))


class Services:
    """fanflow processes of one case, ended by pid."""

    def __init__(self, workdir):
        self.workdir = workdir
        self.procs = {}

    def start(self, name, args, port_line=False):
        out = open(os.path.join(self.workdir, name + ".out"), "w")
        err = open(os.path.join(self.workdir, name + ".err"), "w")
        self.procs[name] = spawn([FANFLOW] + args, out, err)
        out.close()
        err.close()
        if not port_line:
            return None
        def port():
            m = re.search(r"listening on http://127\.0\.0\.1:(\d+)", read(os.path.join(self.workdir, name + ".out")))
            if self.procs[name].poll() is not None:
                raise AssertionError("%s exited %s: %s" % (name, self.procs[name].returncode, self.stderr(name)))
            return int(m.group(1)) if m else None
        return wait_for(name + " listening", port, 30)

    def stderr(self, name):
        return read(os.path.join(self.workdir, name + ".err"))[-3000:]

    def stop(self, name):
        p = self.procs.pop(name, None)
        if p and p.poll() is None:
            p.send_signal(signal.SIGTERM)
            try:
                p.wait(15)
            except subprocess.TimeoutExpired:
                p.kill()
                p.wait(5)

    def stop_all(self):
        for name in list(self.procs):
            self.stop(name)


def read(path):
    with open(path) as f:
        return f.read()


def run_cli(args, limit=60):
    return subprocess.run([FANFLOW] + args, capture_output=True, text=True, timeout=limit)


class ServeCase(unittest.TestCase):
    """The API checks every bus passes; subclasses start serve (self.port)."""

    broker = None

    def setUp(self):
        self.workdir = tempfile.mkdtemp(prefix="fanflow-serve-")
        self.data = os.path.join(self.workdir, "data")
        os.makedirs(self.data)
        self.items = os.path.join(self.data, "items.jsonl")
        with open(self.items, "w") as f:
            for i in range(1, ITEMS + 1):
                f.write(json.dumps({"id": i, "value": i}) + "\n")
        with open(os.path.join(self.workdir, "token"), "w") as f:
            f.write(TOKEN + "\n")
        self.services = Services(self.workdir)
        self.ledger = os.path.join(self.workdir, "ledger.db")

    def tearDown(self):
        self.services.stop_all()
        if self.broker:
            self.broker.end_case()
        shutil.rmtree(self.workdir, ignore_errors=True)

    def post(self, body, wait=None, **kw):
        return http(self.port, "POST", "/v1/batches" + ("?wait=%s" % wait if wait is not None else ""), body, **kw)

    def check_api(self):
        start = {"source": "jsonl:" + self.items, "chunk_size": 10, "batch_id": "api-1"}
        t0 = time.monotonic()
        status, complete = self.post(start, wait=60, limit=90)
        self.assertEqual(status, 200, complete)
        self.assertEqual(complete["type"], "fanflow.batch_complete.v1")
        self.assertEqual(complete["subject"], "api-1")
        self.assertEqual(complete["data"]["status"], "succeeded")
        self.assertEqual(complete["data"]["chunks"], ITEMS // 10)
        self.assertEqual(complete["data"]["items"], ITEMS)
        self.assertEqual(complete["data"]["result"], ITEMS * (ITEMS + 1) // 2)
        print("blocking POST answered in %.2f s" % (time.monotonic() - t0), file=sys.stderr)

        # The same request again: that batch, not a second fan-out.
        status, again = self.post(start, wait=5)
        self.assertEqual(status, 200, again)
        self.assertEqual(again, complete)
        status, listed = http(self.port, "GET", "/v1/batches?state=complete")
        self.assertEqual(status, 200, listed)
        self.assertEqual([b["batch_id"] for b in listed["batches"]].count("api-1"), 1)
        status, got = http(self.port, "GET", "/v1/batches/api-1")
        self.assertEqual(status, 200, got)
        self.assertEqual((got["state"], got["done"], got["total_chunks"], got["progress"]), ("complete", 30, 30, 1.0))
        self.assertEqual(got["batch_complete"], complete)

        # Another request under that id.
        status, conflict = self.post(dict(start, chunk_size=20))
        self.assertEqual(status, 409, conflict)
        self.assertIn("batch_id", conflict["error"])

        # Bad input names the field.
        for body, field in [({"chunk_size": 10}, "source"),
                            ({"source": "jsonl:" + self.items}, "chunk_size"),
                            ({"source": "jsonl:" + self.items, "chunk_size": 0}, "chunk_size"),
                            ({"source": "jsonl:" + self.items, "chunk_size": "10"}, "chunk_size"),
                            ({"source": "jsonl:" + self.items, "chunk_size": 10, "colour": 1}, "colour"),
                            ({"source": "jsonl:/etc/passwd", "chunk_size": 10}, "source"),
                            ({"source": "jsonl:" + self.data + "/../token", "chunk_size": 10}, "source"),
                            ({"source": "jsonl:items.jsonl", "chunk_size": 10}, "source"),
                            ({"source": "range:10", "chunk_size": 1, "batch_id": "a\u0001b"}, "batch_id"),
                            ([1, 2], "body")]:
            status, error = self.post(body)
            self.assertEqual(status, 400, (body, error))
            self.assertTrue(error["error"].startswith(field + ":"), (body, error))
        status, error = self.post(None, raw=b'{"source": ')
        self.assertEqual(status, 400, error)
        status, error = self.post(start, wait="soon")
        self.assertEqual(status, 400, error)
        self.assertTrue(error["error"].startswith("wait:"), error)
        status, error = self.post(None, raw=b"x" * (200 * 1024))
        self.assertEqual(status, 413, error)
        self.assertEqual(http(self.port, "GET", "/v1/batches/no-such-batch")[0], 404)
        self.assertEqual(http(self.port, "GET", "/v1/batches?state=sideways")[0], 400)

        # The token: everything but /healthz (and the page's static files).
        self.assertEqual(http(self.port, "GET", "/v1/batches/api-1", token=None)[0], 401)
        self.assertEqual(http(self.port, "GET", "/v1/batches/api-1", token=TOKEN + "x")[0], 401)
        self.assertEqual(self.post(start, token=None)[0], 401)
        self.assertEqual(http(self.port, "GET", "/metrics", token=None)[0], 401)
        self.assertEqual(http(self.port, "GET", "/healthz", token=None), (200, {"status": "ok"}))

        status, metrics = http(self.port, "GET", "/metrics")
        self.assertEqual(status, 200)
        self.assertIn('fanflow_serve_requests_total{code="409"} 1', metrics)
        if shutil.which("promtool"):
            r = subprocess.run(["promtool", "check", "metrics"], input=metrics, capture_output=True, text=True,
                               timeout=30)
            self.assertEqual(r.returncode, 0, r.stdout + r.stderr)
        elif in_ci():
            self.fail("promtool is missing: apt-get install prometheus")

    def explain(self, batch_id):
        status, x = http(self.port, "GET", "/v1/batches/%s?explain=1" % batch_id)
        self.assertEqual(status, 200, x)
        return x


class InprocServe(ServeCase):
    def setUp(self):
        super().setUp()
        self.port = self.services.start(
            "serve", ["serve", "--listen", "127.0.0.1:0", "--state", self.ledger, "--token-file",
                      os.path.join(self.workdir, "token"), "--data-dir", self.data, "--log-level", "warn"],
            port_line=True)

    def test_api(self):
        self.check_api()

    def test_a_flood_of_idle_connections_passes(self):
        import socket
        idle = []
        for _ in range(300):
            c = socket.socket()
            c.setblocking(False)
            c.connect_ex(("127.0.0.1", self.port))
            idle.append(c)
        time.sleep(1)
        self.assertIsNone(self.services.procs["serve"].poll())
        for c in idle:
            c.close()
        t0 = time.monotonic()
        self.assertEqual(http(self.port, "GET", "/healthz", token=None, limit=20), (200, {"status": "ok"}))
        self.assertLess(time.monotonic() - t0, 10)
        self.check_api()

    def test_bad_flags_are_usage_errors(self):
        for args in (["--listen", "127.0.0.1"], ["--listen", "localhost:80"], ["--listen", "127.0.0.1:70000"],
                     ["--token-file", self.workdir + "/none"], ["--ledger", self.ledger],
                     ["--data-dir", self.workdir + "/none"]):
            r = run_cli(["serve", "--state", self.workdir + "/other.db"] + args, limit=30)
            self.assertEqual(r.returncode, 2, (args, r.stderr))
            self.assertIn(args[0], r.stderr)

    def test_a_short_wait_answers_202_with_progress_then_status_explains(self):
        slow = os.path.join(self.data, "slow.jsonl")
        with open(slow, "w") as f:
            for i in range(40):
                f.write(json.dumps({"id": i, "value": 1}) + "\n")
        self.services.stop("serve")
        self.port = self.services.start(
            "serve", ["serve", "--listen", "127.0.0.1:0", "--state", self.ledger, "--token-file",
                      os.path.join(self.workdir, "token"), "--data-dir", self.data, "--processor", "sleep",
                      "--sleep-scale", "100", "--concurrency", "1", "--log-level", "warn"], port_line=True)
        status, early = self.post({"source": "jsonl:" + slow, "chunk_size": 2, "batch_id": "slow"}, wait=0.5)
        self.assertEqual(status, 202, early)
        self.assertEqual(early["batch_id"], "slow")
        self.assertIn(early["state"], ("submitted", "open", "sealed"))
        # `fanflow status` from another process, on the ledger serve's aggregator writes.
        def outstanding():
            r = run_cli(["status", "slow", "--ledger", self.ledger, "--json"])
            self.assertEqual(r.returncode, 0, r.stderr)
            x = json.loads(r.stdout)
            return x if x["explain"]["outstanding_count"] > 0 and x["done"] > 0 else None
        x = wait_for("outstanding chunks in status", outstanding, 30)
        self.assertEqual(x["state"], "sealed")
        self.assertLess(x["done"], 20)
        r = run_cli(["status", "slow", "--ledger", self.ledger])
        self.assertEqual(r.returncode, 0, r.stderr)
        self.assertIn("outstanding    chunk", r.stdout)
        status, complete = self.post({"source": "jsonl:" + slow, "chunk_size": 2, "batch_id": "slow"}, wait=60,
                                     limit=90)
        self.assertEqual(status, 200, complete)
        self.assertEqual(complete["data"]["chunks"], 20)
        x = self.explain("slow")
        self.assertEqual(x["explain"]["outcome"]["status"], "succeeded")
        self.assertEqual(x["explain"]["outstanding"], [])
        self.assertEqual(run_cli(["status", "nope", "--ledger", self.ledger]).returncode, 1)

    def slow_file(self):
        """40 items of value 1: 100 ms each on a restart_slow serve."""
        slow = os.path.join(self.data, "slow.jsonl")
        with open(slow, "w") as f:
            for i in range(40):
                f.write(json.dumps({"id": i, "value": 1}) + "\n")
        return slow

    def restart_slow(self, *extra):
        """serve again, its workers slow: 100 ms per item of value 1, one at a time."""
        self.services.stop("serve")
        self.port = self.services.start(
            "serve", ["serve", "--listen", "127.0.0.1:0", "--state", self.ledger, "--token-file",
                      os.path.join(self.workdir, "token"), "--data-dir", self.data, "--processor", "sleep",
                      "--sleep-scale", "100", "--concurrency", "1", "--log-level", "warn"] + list(extra),
            port_line=True)

    def test_cancel_ends_a_running_batch_once_and_refuses_the_rest(self):
        slow = self.slow_file()
        self.restart_slow()
        self.assertEqual(self.post({"source": "jsonl:" + slow, "chunk_size": 2, "batch_id": "stop-me"})[0], 202)
        wait_for("a chunk done", lambda: http(self.port, "GET", "/v1/batches/stop-me")[1].get("done", 0) > 0, 30)
        status, complete = http(self.port, "POST", "/v1/batches/stop-me/cancel", {"reason": "wrong input"})
        self.assertEqual(status, 200, complete)
        self.assertEqual(complete["type"], "fanflow.batch_complete.v1")
        self.assertEqual(complete["data"]["status"], "cancelled")
        self.assertEqual(complete["data"]["reason"], "wrong input")
        self.assertLess(complete["data"]["succeeded"], 20)
        self.assertTrue(complete["data"]["missing_chunks"])
        # Again: the same one event; the GET says cancelled.
        self.assertEqual(http(self.port, "POST", "/v1/batches/stop-me/cancel"), (200, complete))
        status, got = http(self.port, "GET", "/v1/batches/stop-me")
        self.assertEqual((status, got["state"]), (200, "cancelled"), got)
        self.assertEqual(http(self.port, "POST", "/v1/batches/no-such/cancel")[0], 404)
        self.assertEqual(http(self.port, "POST", "/v1/batches/stop-me/cancel", {"why": 1})[0], 400)
        self.assertEqual(http(self.port, "POST", "/v1/batches/stop-me/cancel", token=None)[0], 401)
        # A finished batch is not cancelled: 409 with how it ended.
        quick = os.path.join(self.data, "quick.jsonl")
        with open(quick, "w") as f:
            for i in range(4):
                f.write(json.dumps({"id": i, "value": 0}) + "\n")
        status, done = self.post({"source": "jsonl:" + quick, "chunk_size": 2, "batch_id": "done-1"},
                                 wait=60, limit=90)
        self.assertEqual(status, 200, done)
        status, answer = http(self.port, "POST", "/v1/batches/done-1/cancel")
        self.assertEqual((status, answer["data"]["status"]), (409, "succeeded"), answer)

    def test_a_batch_brings_its_own_tolerance_and_deadline(self):
        slow = self.slow_file()
        self.restart_slow()
        for bad in ({"tolerate": "lots"}, {"tolerate": -1}, {"deadline": 0}, {"deadline": "soon"},
                    {"combine": "sum"}):
            status, answer = self.post(dict({"source": "jsonl:" + slow, "chunk_size": 2}, **bad))
            self.assertEqual(status, 400, (bad, answer))
            self.assertIn(next(iter(bad)), json.dumps(answer), bad)
        t0 = time.monotonic()
        status, complete = self.post({"source": "jsonl:" + slow, "chunk_size": 2, "batch_id": "late",
                                      "deadline": 1.5, "tolerate": "10%"}, wait=30, limit=60)
        self.assertEqual(status, 200, complete)
        self.assertEqual(complete["data"]["status"], "timed_out")
        self.assertEqual(complete["data"]["deadline_seconds"], 1.5)
        self.assertTrue(complete["data"]["missing_chunks"])
        self.assertLess(time.monotonic() - t0, 20)
        _, got = http(self.port, "GET", "/v1/batches/late")
        self.assertEqual(got["request"]["tolerate"], "10%")

    def test_a_schedule_submits_its_missed_slot_once_across_restarts(self):
        schedule = os.path.join(self.workdir, "schedule.json")
        with open(schedule, "w") as f:
            json.dump([{"name": "every-minute", "cron": "* * * * *", "source": "jsonl:" + self.items,
                        "chunk_size": 50}], f)
        def scheduled():
            _, listing = http(self.port, "GET", "/v1/batches?state=all")
            return [b for b in listing["batches"] if b["batch_id"].startswith("every-minute/")]
        for _ in range(2):  # a restart runs no slot twice
            self.services.stop("serve")
            self.port = self.services.start(
                "serve", ["serve", "--listen", "127.0.0.1:0", "--state", self.ledger, "--token-file",
                          os.path.join(self.workdir, "token"), "--data-dir", self.data, "--schedule", schedule,
                          "--log-level", "warn"], port_line=True)
            batches = wait_for("the caught-up slot complete",
                               lambda: [b for b in scheduled() if b["state"] == "complete"], 60)
            _, got = http(self.port, "GET", "/v1/batches/" + urllib.parse.quote(batches[0]["batch_id"], safe=""))
            self.assertEqual(got["batch_complete"]["data"]["result"], ITEMS * (ITEMS + 1) // 2, got)
        # One slot a minute at most: a restart within the minute found its slot known.
        self.assertLessEqual(len(scheduled()), 2)

    def test_sigterm_ends_a_waiting_post_and_serve(self):
        slow = os.path.join(self.data, "slow.jsonl")
        with open(slow, "w") as f:
            f.write(json.dumps({"id": 0, "value": 1}) + "\n")
        self.services.stop("serve")
        self.port = self.services.start(
            "serve", ["serve", "--listen", "127.0.0.1:0", "--state", self.ledger, "--token-file",
                      os.path.join(self.workdir, "token"), "--data-dir", self.data, "--processor", "sleep",
                      "--sleep-scale", "60000", "--log-level", "warn"], port_line=True)
        answer = {}
        waiting = threading.Thread(target=lambda: answer.update(r=self.post(
            {"source": "jsonl:" + slow, "chunk_size": 1, "batch_id": "forever"}, wait=300, limit=60)))
        waiting.start()
        wait_for("the batch admitted", lambda: http(self.port, "GET", "/v1/batches/forever")[1].get("state") == "sealed", 30)
        t0 = time.monotonic()
        serve = self.services.procs["serve"]
        serve.send_signal(signal.SIGTERM)
        serve.wait(20)
        waiting.join(20)
        self.assertLess(time.monotonic() - t0, 10)
        self.assertEqual(serve.returncode, 0, self.services.stderr("serve"))
        self.assertEqual(answer["r"][0], 202, answer)
        self.assertEqual(answer["r"][1]["state"], "sealed")
        self.assertEqual(run_cli(["status", "slow", "--ledger", self.workdir + "/missing.db"]).returncode, 2)


class Chromium:
    """Headless Debian chromium driven over the DevTools protocol (python3-websocket)."""

    FLAGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
             "--disable-background-networking", "--disable-component-update", "--disable-sync",
             "--remote-debugging-address=127.0.0.1", "--remote-debugging-port=0", "--window-size=1280,800"]

    def __init__(self, workdir):
        try:
            import websocket  # Debian python3-websocket
        except ImportError:
            raise BrokerMissing("python3-websocket is not installed (apt-get install python3-websocket)")
        binary = shutil.which("chromium")
        if not binary:
            raise BrokerMissing("chromium is not installed (apt-get install chromium)")
        profile = os.path.join(workdir, "chromium-profile")
        os.makedirs(profile)
        log = open(os.path.join(workdir, "chromium.log"), "w")
        self.proc = spawn([binary] + self.FLAGS + ["--user-data-dir=" + profile, "about:blank"], log,
                          subprocess.STDOUT)
        log.close()
        active = os.path.join(profile, "DevToolsActivePort")
        wait_for("chromium's DevTools port", lambda: os.path.exists(active) and read(active).count("\n") >= 1, 60)
        port = int(read(active).split()[0])
        def page():
            with urllib.request.urlopen("http://127.0.0.1:%d/json/list" % port, timeout=5) as r:
                pages = [t for t in json.load(r) if t["type"] == "page"]
            return pages[0]["webSocketDebuggerUrl"] if pages else None
        self.ws = websocket.create_connection(wait_for("a chromium page", page, 30), timeout=30,
                                              suppress_origin=True)
        self.next_id = 0

    def call(self, method, **params):
        self.next_id += 1
        self.ws.send(json.dumps({"id": self.next_id, "method": method, "params": params}))
        while True:
            reply = json.loads(self.ws.recv())
            if reply.get("id") == self.next_id:
                if "error" in reply:
                    raise AssertionError("%s: %s" % (method, reply["error"]))
                return reply["result"]

    def evaluate(self, expression):
        return self.call("Runtime.evaluate", expression=expression, returnByValue=True)["result"].get("value")

    def screenshot(self, path):
        import base64
        with open(path, "wb") as f:
            f.write(base64.b64decode(self.call("Page.captureScreenshot", format="png")["data"]))

    def close(self):
        self.ws.close()
        self.proc.send_signal(signal.SIGTERM)
        try:
            self.proc.wait(15)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait(5)


class Dashboard(ServeCase):
    """The page at / in headless chromium while a batch runs, then when it is done."""

    ROW = "document.querySelector('#batches tr[data-batch=\"%s\"]')"

    def test_the_page_shows_a_running_batch_and_then_its_completion(self):
        try:
            browser = Chromium(self.workdir)
        except BrokerMissing as e:
            if in_ci():
                raise
            raise unittest.SkipTest(str(e))
        self.addCleanup(browser.close)
        slow = os.path.join(self.data, "slow.jsonl")
        with open(slow, "w") as f:
            for i in range(60):
                f.write(json.dumps({"id": i, "value": 1}) + "\n")
        self.port = self.services.start(
            "serve", ["serve", "--listen", "127.0.0.1:0", "--state", self.ledger, "--token-file",
                      os.path.join(self.workdir, "token"), "--data-dir", self.data, "--processor", "sleep",
                      "--sleep-scale", "100", "--concurrency", "2", "--log-level", "warn"], port_line=True)
        # The token travels in the fragment, which the browser never sends.
        browser.call("Page.enable")
        browser.call("Page.navigate", url="http://127.0.0.1:%d/#token=%s" % (self.port, TOKEN))
        wait_for("the page's first refresh",
                 lambda: (browser.evaluate("document.getElementById('updated').textContent") or "").startswith("updated"),
                 30)
        status, r = self.post({"source": "jsonl:" + slow, "chunk_size": 2, "batch_id": "dash"})
        self.assertEqual(status, 202, r)
        row = self.ROW % "dash"
        cells = "(() => { const r = %s; return r && {state: r.dataset.state, status: r.dataset.status, " \
                "text: r.innerText, label: r.querySelector('.bar .label').textContent, " \
                "width: r.querySelector('.bar .done').style.width}; })()" % row
        def running():
            c = browser.evaluate(cells)
            if not c or c["state"] == "complete":
                return None
            m = re.match(r"(\d+)%", c["label"])
            return c if m and 0 < int(m.group(1)) < 100 else None
        mid = wait_for("the batch's progress on the page", running, 60)
        self.assertEqual(mid["state"], "sealed")
        self.assertIn("/ 30", mid["text"])
        screenshot = os.environ.get("FANFLOW_DASHBOARD_SCREENSHOT") or os.path.join(self.workdir, "dashboard.png")
        browser.screenshot(screenshot)
        with open(screenshot, "rb") as f:
            self.assertEqual(f.read(8), b"\x89PNG\r\n\x1a\n")
        self.assertTrue(browser.evaluate("document.querySelectorAll('#queues tbody tr').length > 0"))
        done = wait_for("the batch's completion on the page",
                        lambda: (lambda c: c if c and c["state"] == "complete" else None)(browser.evaluate(cells)), 90)
        self.assertEqual((done["status"], done["label"], done["width"]), ("succeeded", "100%", "100%"))
        self.assertIn("30 / 30", done["text"])
        # What the page showed is what the API says.
        self.assertEqual(http(self.port, "GET", "/v1/batches/dash")[1]["status"], "succeeded")


class BrokerServe(ServeCase):
    """The roles as separate processes; serve in front of them."""

    broker_class = None

    def setUp(self):
        super().setUp()
        try:
            self.broker = self.broker_class()
        except BrokerMissing as e:
            if in_ci():
                raise
            raise unittest.SkipTest(str(e))
        self.broker.start_case("serve", self.workdir)
        self.bus = self.broker.url()
        r = run_cli(["topology", "--bus", self.bus])
        self.assertEqual(r.returncode, 0, r.stderr)
        s = self.services
        s.start("aggregator", ["aggregator", "--bus", self.bus, "--state", self.ledger] + self.broker.lease_args)
        s.start("ventilator", ["ventilator", "--bus", self.bus, "--data-dir", self.data])
        self.start_worker()
        # serve needs the aggregator's ledger to exist: it opens it read-only.
        wait_for("the aggregator's ledger", lambda: os.path.exists(self.ledger), 30)
        self.port = s.start("serve", ["serve", "--bus", self.bus, "--ledger", self.ledger, "--listen", "127.0.0.1:0",
                                      "--token-file", os.path.join(self.workdir, "token"), "--data-dir", self.data],
                            port_line=True)

    def start_worker(self):
        self.services.start("worker", ["worker", "--bus", self.bus, "--data-dir", self.data])

    def test_api(self):
        self.check_api()
        for args, flag in ((["--processor", "sleep", "--ledger", self.ledger], "--processor"), ([], "--ledger")):
            r = run_cli(["serve", "--bus", self.bus, "--listen", "127.0.0.1:0"] + args, limit=30)
            self.assertEqual(r.returncode, 2, (args, r.stderr))
            self.assertIn(flag, r.stderr)

    def test_status_explains_a_batch_whose_workers_are_stopped(self):
        self.services.stop("worker")
        status, r = self.post({"source": "jsonl:" + self.items, "chunk_size": 15, "batch_id": "stuck"})
        self.assertEqual(status, 202, r)
        def sealed():
            x = self.explain("stuck")
            return x if x["state"] == "sealed" and x["explain"]["outstanding_count"] == 20 else None
        x = wait_for("the stuck batch sealed with 20 chunks outstanding", sealed, 60)
        self.assertEqual([c["chunk_index"] for c in x["explain"]["outstanding"]], list(range(20)))
        self.assertEqual(x["done"], 0)
        self.assertNotIn("not_published", x["explain"])
        # The same from another process, with the bus's dead letters.
        r = run_cli(["status", "stuck", "--ledger", self.ledger, "--bus", self.bus, "--json"])
        self.assertEqual(r.returncode, 0, r.stderr)
        cli = json.loads(r.stdout)
        self.assertEqual((cli["state"], cli["explain"]["outstanding_count"]), ("sealed", 20))
        self.assertEqual(cli["explain"]["dead_lettered"], [])
        if self.broker.lease_s:
            # Where the aggregator leases chunks (MQTT), each has an age and redrives.
            wait_for("leases", lambda: all("age_s" in c for c in self.explain("stuck")["explain"]["outstanding"]), 30)
        r = run_cli(["status", "stuck", "--ledger", self.ledger, "--bus", self.bus])
        self.assertIn("outstanding    chunk 19", r.stdout)
        self.start_worker()
        status, complete = self.post({"source": "jsonl:" + self.items, "chunk_size": 15, "batch_id": "stuck"},
                                     wait=60, limit=90)
        self.assertEqual(status, 200, complete)
        self.assertEqual(complete["data"]["status"], "succeeded")
        self.assertEqual(complete["data"]["result"], ITEMS * (ITEMS + 1) // 2)
        self.assertEqual(self.explain("stuck")["explain"]["outcome"]["status"], "succeeded")


    def test_explain_lists_failed_and_dead_lettered_chunks(self):
        self.services.stop("worker")
        self.services.start("worker", ["worker", "--bus", self.bus, "--max-attempts", "1", "--exec",
                                       "echo 'no luck today' >&2; exit 3"])
        status, complete = self.post({"source": "range:30", "chunk_size": 10, "batch_id": "bad"}, wait=60, limit=90)
        self.assertEqual(status, 200, complete)
        self.assertEqual(complete["data"]["failed_chunks"], [0, 1, 2])
        def dead_lettered():
            x = self.explain("bad")
            return x if len(x["explain"]["dead_lettered"]) == 3 else None
        x = wait_for("three dead-lettered chunks", dead_lettered, 30)
        e = x["explain"]
        self.assertEqual([c["chunk_index"] for c in e["failed"]], [0, 1, 2])
        for c in e["failed"]:
            self.assertIn("no luck today", c["error"])
            self.assertEqual(c["attempts"], 1)
        self.assertEqual(sorted(c["chunk_index"] for c in e["dead_lettered"]), [0, 1, 2])
        self.assertEqual({c["group"] for c in e["dead_lettered"]}, {"workers"})
        self.assertEqual(e["outcome"]["status"], complete["data"]["status"])
        self.assertEqual(e["outcome"]["failed_chunks"], [0, 1, 2])
        self.assertEqual(x["state"], "complete")
        r = run_cli(["status", "bad", "--ledger", self.ledger, "--bus", self.bus])
        self.assertEqual(r.returncode, 0, r.stderr)
        self.assertIn("dead-lettered  chunk 2 in group workers", r.stdout)
        self.assertIn("failed         chunk 0 after 1 attempts", r.stdout)


class AmqpServe(BrokerServe):
    broker_class = RabbitMq


class MqttServe(BrokerServe):
    broker_class = StockMosquitto


def main():
    global FANFLOW
    parser = argparse.ArgumentParser()
    parser.add_argument("--fanflow", required=True)
    args, rest = parser.parse_known_args()
    FANFLOW = os.path.abspath(args.fanflow)
    result = unittest.main(argv=[sys.argv[0]] + rest, exit=False, verbosity=2).result
    if not result.wasSuccessful():
        sys.exit(1)
    if result.skipped and not result.testsRun - len(result.skipped):
        sys.exit(77)


if __name__ == "__main__":
    main()

"""The two brokers as a foreign client sees them: a RabbitMQ vhost of the
suite's own (on the node scripts/rabbitmq-start.sh runs) and a stock-config
Mosquitto the suite starts itself. Each offers publish() to a fanflow route,
a spy that records every event on the routes, and cleanup.

Clients are third-party libraries on purpose: Debian's python3-pika and
python3-paho-mqtt, never fanflow's own adapters."""

import importlib.util
import json
import os
import random
import shutil
import socket
import subprocess
import threading
import time
import urllib.parse

CONTENT_TYPE = "application/cloudevents+json"
# The routes a spy records (routes.json); retries show only on MQTT's topics.
SPY_ROUTES = ["start_fanout", "process_chunk", "chunk_done", "batch_sealed", "batch_complete"]


class Missing(Exception):
    """The broker or its client library is not available."""


def deadline_loop(seconds, step=0.1):
    """Yields until `seconds` pass (bounded polling)."""
    end = time.monotonic() + seconds
    while time.monotonic() < end:
        yield
        time.sleep(step)


def parsed(body):
    """The JSON object in a body, or None (also for JSON too deep for Python)."""
    try:
        e = json.loads(body)
        return e if isinstance(e, dict) else None
    except (ValueError, RecursionError):
        return None


class Spy:
    """What a spy saw: (route, body bytes) in arrival order, each body parsed
    once. Thread-safe."""

    def __init__(self):
        self._mu = threading.Lock()
        self._seen = []
        self._events = []

    def add(self, route, body):
        e = parsed(body)
        with self._mu:
            self._seen.append((route, bytes(body)))
            if e is not None:
                self._events.append((route, e))

    def seen(self, route=None):
        with self._mu:
            return [(r, b) for r, b in self._seen if route is None or r == route]

    def events(self, route, subject):
        with self._mu:
            return [e for r, e in self._events if r == route and e.get("subject") == subject]

    def mark(self):
        """A position in what was seen, for bodies_containing(since=)."""
        with self._mu:
            return len(self._seen)

    def bodies_containing(self, needle, since=0):
        needle = needle.encode() if isinstance(needle, str) else needle
        with self._mu:
            return [b for _, b in self._seen[since:] if needle in b]


class Amqp:
    name = "amqp"

    @staticmethod
    def check_available():
        if importlib.util.find_spec("pika") is None:
            raise Missing("python3-pika is not installed (apt-get install python3-pika)")
        if not os.environ.get("FANFLOW_TEST_AMQP_URL"):
            raise Missing("FANFLOW_TEST_AMQP_URL is unset: start a node with "
                          'eval "$(scripts/rabbitmq-start.sh)"')

    def __init__(self, workdir):
        base = os.environ["FANFLOW_TEST_AMQP_URL"]
        self._ctl = os.environ.get("FANFLOW_TEST_RABBITMQCTL", "")
        p = urllib.parse.urlsplit(base)
        if self._ctl:
            # A vhost of its own: its queues and dead letters are the suite's alone.
            self.vhost = "fanflow-hostile-%d" % random.randrange(10**9)
            self._rabbitmqctl("add_vhost", self.vhost)
            self._rabbitmqctl("set_permissions", "-p", self.vhost, "guest", ".*", ".*", ".*")
            self.url = "%s://%s/%s" % (p.scheme, p.netloc, self.vhost)
        else:
            self.vhost = urllib.parse.unquote(p.path[1:]) if len(p.path) > 1 else "/"
            self.url = base
        user = os.environ.get("FANFLOW_AMQP_USER", "guest")
        password = os.environ.get("FANFLOW_AMQP_PASSWORD", "guest")
        self._pika_url = "amqp://%s:%s@%s/%s" % (urllib.parse.quote(user), urllib.parse.quote(password),
                                                  p.hostname + (":%d" % p.port if p.port else ""),
                                                  urllib.parse.quote(self.vhost, safe=""))
        self._spy_stop = threading.Event()
        self._spy_thread = None

    def _rabbitmqctl(self, *args):
        cmd = self._ctl.split() + list(args)
        r = subprocess.run(cmd, capture_output=True, text=True, timeout=60)
        if r.returncode != 0:
            raise Missing("%s failed: %s" % (" ".join(cmd), r.stderr.strip()))
        return r.stdout

    def _connect(self):
        import pika
        params = pika.URLParameters(self._pika_url)
        params.heartbeat = 30
        params.blocked_connection_timeout = 30
        return pika.BlockingConnection(params)

    def publish(self, route, bodies, ids=None):
        """Publishes each body to exchange fanflow with routing key `route`;
        `ids` (optional, one per body) become the message_id property."""
        import pika
        conn = self._connect()
        try:
            ch = conn.channel()
            ch.confirm_delivery()
            for i, body in enumerate(bodies):
                props = pika.BasicProperties(content_type=CONTENT_TYPE, delivery_mode=2,
                                             message_id=ids[i] if ids else None)
                ch.basic_publish("fanflow", route, body, props)
        finally:
            conn.close()

    def start_spy(self, spy):
        ready = threading.Event()
        self._spy_stop.clear()

        def run():
            conn = self._connect()
            ch = conn.channel()
            q = ch.queue_declare("", exclusive=True, auto_delete=True).method.queue
            for route in SPY_ROUTES:
                ch.queue_bind(q, "fanflow", routing_key=route)
            ch.basic_consume(q, lambda c, m, p, b: spy.add(m.routing_key, b), auto_ack=True)
            ready.set()
            while not self._spy_stop.is_set():
                conn.process_data_events(time_limit=0.1)
            conn.close()

        self._spy_thread = threading.Thread(target=run, daemon=True)
        self._spy_thread.start()
        if not ready.wait(20):
            raise RuntimeError("the AMQP spy did not start within 20 s")

    def stop_spy(self):
        self._spy_stop.set()
        if self._spy_thread:
            self._spy_thread.join(10)

    def purge_group(self, group):
        """Empties a consumer group's source queues (a crash-looping poison
        message would kill every restart)."""
        if not self._ctl:
            return
        out = self._rabbitmqctl("list_queues", "-p", self.vhost, "-q", "--no-table-headers", "name")
        names = [n.strip() for n in out.splitlines()
                 if n.strip().startswith("fanflow.%s." % group) and not n.strip().endswith(".dlq")]
        self._purge(names)

    def _purge(self, names):
        for name in names:
            try:
                self._rabbitmqctl("purge_queue", "-p", self.vhost, name)
            except Missing:
                pass  # a private group's queue may vanish between the list and the purge

    def purge_dead_letters(self):
        """Empties every dead-letter queue of the vhost."""
        if not self._ctl:
            return
        out = self._rabbitmqctl("list_queues", "-p", self.vhost, "-q", "--no-table-headers", "name")
        self._purge([n.strip() for n in out.splitlines() if n.strip().endswith(".dlq")])

    def close(self):
        self.stop_spy()
        if self._ctl:
            try:
                self._rabbitmqctl("delete_vhost", self.vhost)
            except Exception:  # best effort at teardown
                pass


class Mqtt:
    """A Mosquitto with only `listener PORT 127.0.0.1` and `allow_anonymous
    true`: the stock configuration a new user starts with."""

    name = "mqtt"

    @staticmethod
    def executable():
        return shutil.which("mosquitto") or shutil.which("mosquitto", path="/usr/sbin:/usr/local/sbin")

    @staticmethod
    def check_available():
        if importlib.util.find_spec("paho") is None:
            raise Missing("python3-paho-mqtt is not installed (apt-get install python3-paho-mqtt)")
        if not Mqtt.executable():
            raise Missing("mosquitto is not installed (apt-get install mosquitto)")

    def __init__(self, workdir):
        exe = Mqtt.executable()
        with socket.socket() as s:
            s.bind(("127.0.0.1", 0))
            self.port = s.getsockname()[1]
        conf = os.path.join(workdir, "mosquitto.conf")
        with open(conf, "w") as f:
            f.write("listener %d 127.0.0.1\nallow_anonymous true\n" % self.port)
        self.log_path = os.path.join(workdir, "mosquitto.log")
        with open(self.log_path, "wb") as log:
            self._proc = subprocess.Popen([exe, "-c", conf], stdin=subprocess.DEVNULL, stdout=log,
                                          stderr=subprocess.STDOUT)
        self.url = "mqtt://127.0.0.1:%d" % self.port
        self._spy_client = None
        self._publisher = None
        for _ in deadline_loop(10):
            if self._proc.poll() is not None:
                break
            try:
                socket.create_connection(("127.0.0.1", self.port), 0.5).close()
                return
            except OSError:
                pass
        self.close()
        raise RuntimeError("stock mosquitto did not start: %s" % open(self.log_path).read()[-2000:])

    def _client(self, stem):
        import paho.mqtt.client as mqtt
        c = mqtt.Client(client_id="%s-%d" % (stem, random.randrange(10**9)), protocol=mqtt.MQTTv5)
        connected = threading.Event()
        c.on_connect = lambda *a, **k: connected.set()
        c.connect("127.0.0.1", self.port, keepalive=30, clean_start=True)
        c.loop_start()
        if not connected.wait(10):
            raise RuntimeError("paho did not connect to 127.0.0.1:%d within 10 s" % self.port)
        return c

    def publish(self, route, bodies, ids=None):
        """QoS 1 publishes to fanflow/<route>; `ids` (optional) become the
        fanflow-id user property. Waits for each PUBACK (bounded)."""
        from paho.mqtt.packettypes import PacketTypes
        from paho.mqtt.properties import Properties
        if self._publisher is None or not self._publisher.is_connected():
            self._publisher = self._client("hostile-pub")
        infos = []
        for i, body in enumerate(bodies):
            props = Properties(PacketTypes.PUBLISH)
            props.ContentType = CONTENT_TYPE
            if ids:
                props.UserProperty = [("fanflow-id", ids[i])]
            infos.append(self._publisher.publish("fanflow/" + route, body, qos=1, properties=props))
        for info in infos:
            info.wait_for_publish(30)
            if not info.is_published():
                raise RuntimeError("a QoS 1 publish to fanflow/%s was not acknowledged in 30 s" % route)

    def start_spy(self, spy):
        c = self._client("hostile-spy")
        subscribed = threading.Event()

        def on_message(client, userdata, msg):
            topic = msg.topic
            route = topic.split("/")[-1] if topic.startswith("fanflow/retry/") else topic[len("fanflow/"):]
            spy.add("retry:" + route if topic.startswith("fanflow/retry/") else route, msg.payload)

        c.on_message = on_message
        c.on_subscribe = lambda *a, **k: subscribed.set()
        c.subscribe([("fanflow/" + r, 1) for r in SPY_ROUTES] + [("fanflow/retry/#", 1)])
        if not subscribed.wait(10):
            raise RuntimeError("the MQTT spy was not subscribed within 10 s")
        self._spy_client = c

    def stop_spy(self):
        if self._spy_client:
            self._spy_client.disconnect()
            self._spy_client.loop_stop()
            self._spy_client = None

    def purge_group(self, group):
        pass  # MQTT acknowledges on receipt: nothing waits to crash a restart

    def purge_dead_letters(self):
        """Clears every retained dead letter (fanflow/dlq/#)."""
        c = self._client("hostile-purge")
        topics = set()
        c.on_message = lambda cl, u, m: topics.add(m.topic) if m.retain else None
        c.subscribe("fanflow/dlq/#", 1)
        time.sleep(2)
        for t in topics:
            c.publish(t, b"", qos=1, retain=True).wait_for_publish(10)
        c.disconnect()
        c.loop_stop()

    def close(self):
        self.stop_spy()
        if self._publisher:
            self._publisher.disconnect()
            self._publisher.loop_stop()
        if self._proc.poll() is None:
            self._proc.terminate()
            try:
                self._proc.wait(10)
            except subprocess.TimeoutExpired:
                self._proc.kill()
                self._proc.wait(10)

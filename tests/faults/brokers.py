"""The brokers the fault matrix runs on, and a spy on each.

RabbitMQ is the test node scripts/rabbitmq-start.sh started (FANFLOW_TEST_AMQP_URL,
FANFLOW_TEST_RABBITMQCTL); every case gets a vhost of its own, deleted after it.
Mosquitto is a stock one of the harness's own: a config holding only a
listener and allow_anonymous, started per case on a free port and killed by
pid, so no session of a dead worker outlives its case.

A spy is a third-party client (pika, paho) that records every batch_complete
delivery and the distinct chunk_done indices (progress, to time the faults). It
survives a broker restart: AMQP through a durable queue of its own, MQTT by
reconnecting and subscribing again.
"""

import ctypes
import json
import os
import random
import shutil
import signal
import socket
import subprocess
import threading
import time
import urllib.parse

import paho.mqtt.client as paho
import pika


def in_ci():
    return os.environ.get("CI") == "true"


class BrokerMissing(Exception):
    """The broker is not there: a skip locally, a failure in CI."""


class Spy:
    """What one spy saw: batch_complete deliveries and chunk_done indices."""

    def __init__(self):
        self._mu = threading.Lock()
        self._completes = []  # (monotonic time, event) per delivery
        self._done = {}  # batch id -> set of chunk indices
        self.errors = []

    def record(self, body, redelivered):
        """`redelivered`: the broker sends again what it may have sent this spy
        (its ack or PUBACK lost in a restart); that copy is the spy's, not a
        second announcement, once the spy has the event."""
        try:
            event = json.loads(body)
        except ValueError:
            return
        with self._mu:
            if event.get("type") == "fanflow.batch_complete.v1":
                if redelivered and any(e.get("id") == event.get("id") for _, e in self._completes):
                    return
                self._completes.append((time.monotonic(), event))
            elif event.get("type") == "fanflow.chunk_done.v1":
                index = (event.get("data") or {}).get("chunk_index")
                self._done.setdefault(event.get("subject"), set()).add(index)

    def completes(self, batch_id):
        with self._mu:
            return [e for _, e in self._completes if e.get("subject") == batch_id]

    def chunks_done(self, batch_id):
        with self._mu:
            return len(self._done.get(batch_id, ()))

    def missing_chunks(self, batch_id, total):
        with self._mu:
            seen = self._done.get(batch_id, set())
        return [i for i in range(total) if i not in seen]


def _die_with_harness():
    # PR_SET_PDEATHSIG: if ctest kills the harness, its processes go with it.
    ctypes.CDLL("libc.so.6", use_errno=True).prctl(1, signal.SIGKILL)


def spawn(argv, stdout, stderr):
    """A child process, ended by pid (or by the harness's death)."""
    return subprocess.Popen(argv, stdin=subprocess.DEVNULL, stdout=stdout, stderr=stderr,
                            preexec_fn=_die_with_harness)


def _wait_port(port, limit):
    deadline = time.monotonic() + limit
    while time.monotonic() < deadline:
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=0.5):
                return True
        except OSError:
            time.sleep(0.1)
    return False


def _free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class RabbitMq:
    """The test node; one vhost per case."""

    name = "amqp"
    lease_args = []  # AMQP redelivers on a lost connection: the CLI's default lease (off)
    lease_s = 0

    def __init__(self):
        self.url_base = os.environ.get("FANFLOW_TEST_AMQP_URL", "")
        self.ctl = os.environ.get("FANFLOW_TEST_RABBITMQCTL", "")
        if not self.url_base or not self.ctl:
            raise BrokerMissing("FANFLOW_TEST_AMQP_URL / FANFLOW_TEST_RABBITMQCTL unset: "
                                'start a node with eval "$(scripts/rabbitmq-start.sh)"')
        parsed = urllib.parse.urlsplit(self.url_base)
        self.host, self.port = parsed.hostname, parsed.port or 5672
        self.vhost = None

    def rabbitmqctl(self, *args, limit=180):
        # 180 s: on a loaded 2-core machine one rabbitmqctl call has taken 70 s.
        r = subprocess.run(self.ctl.split() + list(args), capture_output=True, text=True, timeout=limit)
        if r.returncode != 0:
            raise RuntimeError("rabbitmqctl %s: %s%s" % (" ".join(args), r.stdout, r.stderr))

    def start_case(self, case, workdir):
        self.vhost = "faults-%s-%06d" % (case, random.randrange(10**6))
        self.rabbitmqctl("add_vhost", self.vhost)
        self.rabbitmqctl("set_permissions", "-p", self.vhost, "guest", ".*", ".*", ".*")

    def end_case(self):
        if self.vhost:
            self.rabbitmqctl("delete_vhost", self.vhost)
            self.vhost = None

    def url(self, name=None):
        """`name`: the process the URL is for (a cluster places processes on nodes)."""
        return "amqp://%s:%d/%s" % (self.host, self.port, self.vhost)

    def restart(self):
        """The node's app stopped for 2 s and started again (queues and messages durable)."""
        self.rabbitmqctl("stop_app")
        time.sleep(2)
        self.rabbitmqctl("start_app", limit=120)

    def describe(self):
        return "RabbitMQ node at %s:%d, vhost %s" % (self.host, self.port, self.vhost)

    def spy(self):
        return _AmqpSpy([(self.host, self.port)], self.vhost)


class RabbitMqCluster(RabbitMq):
    """The 3-node cluster scripts/rabbitmq-cluster-start.sh started; one vhost
    per case. Each fanflow process gets the node list in its own order (its
    node first), as `placement` says; a node is killed by its Erlang VM's pid
    and brought back by the start script."""

    name = "amqp-cluster"
    placement = {}  # process name -> node index (0..2), "NAME-restarted" as NAME; others: node 0

    def __init__(self):
        env = os.environ
        self.url_base = env.get("FANFLOW_TEST_AMQP_CLUSTER_URL", "")
        self.start_cmd = env.get("FANFLOW_TEST_AMQP_CLUSTER_START", "")
        if not self.url_base or not self.start_cmd:
            raise BrokerMissing("FANFLOW_TEST_AMQP_CLUSTER_URL / _START unset: start the cluster "
                                'with eval "$(scripts/rabbitmq-cluster-start.sh)"')
        self.nodes = [{"name": env["FANFLOW_TEST_AMQP_CLUSTER_NODE_%d" % i],
                       "port": int(env["FANFLOW_TEST_AMQP_CLUSTER_PORT_%d" % i]),
                       "pid_file": env["FANFLOW_TEST_AMQP_CLUSTER_PID_FILE_%d" % i],
                       "ctl": env["FANFLOW_TEST_AMQP_CLUSTER_CTL_%d" % i]} for i in (1, 2, 3)]
        self.host = "127.0.0.1"
        self.vhost = None
        self.killed = [i for i in range(3) if not self._running(i)]
        if self.killed:
            self.bring_back()  # a node an earlier case left down

    @property
    def ctl(self):
        """rabbitmqctl of a node that runs."""
        return next(n["ctl"] for i, n in enumerate(self.nodes) if i not in self.killed)

    def url(self, name=None):
        first = self.node_of(name)
        order = [self.nodes[(first + i) % 3]["port"] for i in range(3)]
        return "amqp://%s/%s" % (",".join("127.0.0.1:%d" % p for p in order), self.vhost)

    def node_of(self, name):
        return self.placement.get((name or "").replace("-restarted", ""), 0)

    def _running(self, node):
        try:
            os.kill(self.pid(node), 0)
            return True
        except (OSError, ValueError):
            return False

    def pid(self, node):
        with open(self.nodes[node]["pid_file"]) as f:
            return int(f.read().strip())

    def kill(self, node):
        """SIGKILL of node's Erlang VM, by pid: the node is lost hard."""
        pid = self.pid(node)
        os.kill(pid, signal.SIGKILL)
        self.killed.append(node)
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:
            try:
                os.kill(pid, 0)
            except ProcessLookupError:
                return
            time.sleep(0.05)
        raise RuntimeError("node %s (pid %d) still there 10 s after SIGKILL" % (self.nodes[node]["name"], pid))

    def bring_back(self):
        """Starts every node that is down again (the start script leaves the others alone)."""
        r = subprocess.run(["bash", "-c", self.start_cmd], capture_output=True, text=True, timeout=300)
        if r.returncode != 0:
            raise RuntimeError("cluster start: %s" % r.stderr[-2000:])
        self.killed = []

    def leader(self, queue, other_than=None):
        """The index of the node that hosts `queue`'s leader (other than node
        `other_than`: waits for the leader to move off it). Asked of one queue's
        record: `list_queues name leader` waits for every queue of the vhost,
        and one still electing makes it time out."""
        expr = ('{ok, Q} = rabbit_amqqueue:lookup(rabbit_misc:r(<<"%s">>, queue, <<"%s">>)), '
                '{_, Node} = amqqueue:get_pid(Q), Node.' % (self.vhost, queue))
        names = [n["name"] for n in self.nodes]
        deadline, last = time.monotonic() + 120, ""
        while time.monotonic() < deadline:
            r = subprocess.run(self.ctl.split() + ["-q", "eval", expr], capture_output=True, text=True,
                               timeout=180)
            last = (r.stdout + r.stderr).strip()
            node = last.strip("'")
            if r.returncode == 0 and node in names and names.index(node) != other_than:
                return names.index(node)
            time.sleep(0.5)
        raise RuntimeError("leader of %s (other than node %s): %s" % (queue, other_than, last[-500:]))

    def end_case(self):
        if self.killed:
            self.bring_back()
        super().end_case()

    def describe(self):
        return "RabbitMQ cluster %s, vhost %s (killed: %s)" % (
            self.url_base, self.vhost, [self.nodes[i]["name"] for i in self.killed])

    def spy(self):
        # Its own node first (the last); it reconnects to the others.
        order = [2, 0, 1]
        return _AmqpSpy([(self.host, self.nodes[i]["port"]) for i in order], self.vhost,
                        {"x-queue-type": "quorum"})


class _AmqpSpy(Spy):
    # Durable, so the events published while the spy reconnects after a broker
    # restart wait for it (quorum on a cluster, so it outlives a node).
    QUEUE = "faults.spy"

    def __init__(self, nodes, vhost, queue_args=None):
        super().__init__()
        self._queue_args = queue_args
        self._params = [pika.ConnectionParameters(
            host=host, port=port, virtual_host=vhost, credentials=pika.PlainCredentials("guest", "guest"),
            heartbeat=10, blocked_connection_timeout=10, connection_attempts=1, socket_timeout=5)
            for host, port in nodes]
        self._stop = threading.Event()
        self._ready = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()
        if not self._ready.wait(30):
            raise RuntimeError("AMQP spy did not connect: %s" % self.errors)

    def _run(self):
        while not self._stop.is_set():
            try:
                conn = pika.BlockingConnection(self._params)  # the first node that answers
                ch = conn.channel()
                # `fanflow topology` declares it too; declaring here keeps the spy first.
                ch.exchange_declare("fanflow", exchange_type="topic", durable=True)
                ch.queue_declare(self.QUEUE, durable=True, arguments=self._queue_args)
                for key in ("batch_complete", "chunk_done"):
                    ch.queue_bind(self.QUEUE, "fanflow", routing_key=key)

                def on_message(channel, method, _props, body):
                    self.record(body, method.redelivered)
                    channel.basic_ack(method.delivery_tag)

                ch.basic_qos(prefetch_count=200)
                ch.basic_consume(self.QUEUE, on_message)
                self._ready.set()
                while not self._stop.is_set():
                    conn.process_data_events(time_limit=0.2)
                conn.close()
            except Exception as e:  # the broker restarts: reconnect
                self.errors.append(repr(e))
                time.sleep(0.5)

    def stop(self):
        self._stop.set()
        self._thread.join(10)


class StockMosquitto:
    """A Mosquitto 2 with only `listener` and `allow_anonymous` set, per case."""

    name = "mqtt"
    lease_s = 3
    lease_args = ["--lease", "3"]  # a chunk lost with its worker is redriven in seconds

    def __init__(self):
        self.binary = shutil.which("mosquitto") or (
            "/usr/sbin/mosquitto" if os.path.exists("/usr/sbin/mosquitto") else None)
        if not self.binary:
            raise BrokerMissing("mosquitto not installed (apt-get install mosquitto)")
        self.proc = None
        self.dir = None

    def start_case(self, case, workdir):
        self.dir = workdir
        self.port = _free_port()
        self.conf = os.path.join(workdir, "mosquitto.conf")
        with open(self.conf, "w") as f:
            f.write("listener %d 127.0.0.1\nallow_anonymous true\n" % self.port)
        self._start()

    def _start(self):
        log = open(os.path.join(self.dir, "mosquitto.log"), "a")
        self.proc = spawn([self.binary, "-c", self.conf], log, subprocess.STDOUT)
        log.close()
        if not _wait_port(self.port, 10):
            raise RuntimeError("stock mosquitto did not listen on %d" % self.port)

    def _kill(self):
        if self.proc and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGKILL)
            self.proc.wait(10)

    def end_case(self):
        self._kill()
        self.proc = None

    def url(self, name=None):
        return "mqtt://127.0.0.1:%d" % self.port

    def restart(self):
        """SIGKILLed and started again 1 s later on the same port (stock: no persistence)."""
        self._kill()
        time.sleep(1)
        self._start()

    def describe(self):
        return "stock mosquitto pid %s on 127.0.0.1:%d (%s)" % (
            self.proc.pid if self.proc else "-", self.port, self.conf)

    def spy(self):
        return _MqttSpy(self.port)


class _MqttSpy(Spy):
    def __init__(self, port):
        super().__init__()
        self._ready = threading.Event()
        self._client = paho.Client(client_id="faults-spy-%06d" % random.randrange(10**6),
                                   protocol=paho.MQTTv5)
        self._client.on_connect = self._on_connect
        self._client.on_subscribe = lambda *_args: self._ready.set()
        self._client.on_message = lambda _c, _u, msg: self.record(msg.payload, msg.dup)
        self._client.reconnect_delay_set(0.2, 1)
        self._client.connect("127.0.0.1", port, keepalive=5)
        self._client.loop_start()
        if not self._ready.wait(30):
            raise RuntimeError("MQTT spy did not subscribe")

    def _on_connect(self, client, _userdata, _flags, rc, _props=None):
        if rc == 0:
            # Again on every reconnect: a stock broker forgets sessions when it restarts.
            client.subscribe([("fanflow/batch_complete", 1), ("fanflow/chunk_done", 1)])

    def stop(self):
        self._client.loop_stop()
        self._client.disconnect()


BROKERS = {"amqp": RabbitMq, "amqp-cluster": RabbitMqCluster, "mqtt": StockMosquitto}

"""A cluster of three `lamina up` nodes on one PostgreSQL database behind a real HAProxy,
for test_cluster.py.

`HAProxy` runs the load balancer as a child process on a free port, health-checking each
node's /lamina/ready, and repoints a server through its runtime API when a node comes
back on a new port (nodes listen on 127.0.0.1:0, so a restart moves them).
`ClusterOf3` starts the nodes, kills and restarts them on their data directories, and
keeps HAProxy pointed at them.

Without HAProxy or PostgreSQL the cluster tests skip with a visible reason, except under
CI=true, where that is a failure (as conftest treats a missing PostgreSQL).
"""

import collections
import csv
import hashlib
import io
import os
import pathlib
import re
import shutil
import signal
import socket
import subprocess
import threading
import time
import urllib.parse

import boto3
import pytest
import requests
from botocore.config import Config

from conftest import ACCOUNT, REGION, ROOT_KEY_ID, ROOT_SECRET, Lamina, free_ports, signed

BACKEND = "lamina"


def home_nodes(name, node_ids, count=2):
    """The home nodes of function `name` among `node_ids`, best first, as routing ranks
    them: by the SHA-256 of `account/name`, a zero byte and the node id (its first 8
    bytes, big-endian), highest first."""
    key = f"{ACCOUNT}/{name}".encode()

    def weight(node_id):
        return int.from_bytes(hashlib.sha256(key + b"\0" + node_id.encode()).digest()[:8], "big")

    return sorted(node_ids, key=weight, reverse=True)[:count]


def routing_decisions(endpoint):
    """A node's routing decisions so far, by decision, from its /metrics."""
    counts = collections.Counter()
    for line in requests.get(f"{endpoint}/metrics", timeout=10).text.splitlines():
        m = re.match(r'lamina_routing_decisions_total\{decision="(\w+)"\} (\S+)$', line)
        if m:
            counts[m[1]] += int(float(m[2]))
    return counts


def haproxy_binary():
    """The haproxy executable, or None. Debian installs it in /usr/sbin, which is not on
    every user's PATH."""
    found = shutil.which("haproxy")
    if found:
        return found
    for candidate in ("/usr/sbin/haproxy", "/usr/local/sbin/haproxy"):
        if os.access(candidate, os.X_OK):
            return candidate
    return None


def require(what, why):
    """A missing prerequisite: a failure under CI=true, a loud skip elsewhere."""
    if os.environ.get("CI") == "true":
        pytest.fail(f"{what} is required under CI=true: {why}")
    pytest.skip(f"cluster tests need {what}: {why}")


def host_port(endpoint):
    parts = urllib.parse.urlsplit(endpoint)
    return parts.hostname, parts.port


def wait_until(predicate, timeout, what, interval=0.05):
    """The first truthy value of `predicate()`, polled until `timeout` seconds pass."""
    deadline = time.monotonic() + timeout
    while True:
        value = predicate()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout} s waiting for {what}")
        time.sleep(interval)


class HAProxy:
    """`haproxy -f <cfg> -db` in front of `servers` (name -> endpoint URL): HTTP mode,
    round robin, health checks on GET /lamina/ready, and retries that move a request whose
    node died to another node."""

    def __init__(self, directory, servers):
        self.directory = pathlib.Path(directory)
        self.directory.mkdir(parents=True, exist_ok=True)
        self.servers = dict(servers)
        self.binary = haproxy_binary()
        self.port, self.admin_port = free_ports(2)
        self.endpoint = f"http://127.0.0.1:{self.port}"
        self.config = self.directory / "haproxy.cfg"
        self.log = self.directory / "haproxy.log"
        self.proc = None

    def render(self):
        servers = "\n".join(
            f"    server {name} {':'.join(map(str, host_port(url)))} check"
            for name, url in self.servers.items()
        )
        return f"""\
global
    # The runtime API, to repoint a server at a restarted node's new port.
    stats socket ipv4@127.0.0.1:{self.admin_port} level admin

defaults
    mode http
    timeout connect 5s
    # Generous: a cold start on a debug build under load takes seconds.
    timeout client 120s
    timeout server 120s
    timeout http-request 120s
    timeout http-keep-alive 120s
    timeout queue 60s
    # Longer than the check interval: a node busy compiling must not fail a check
    # only for answering in 600 ms. A dead node refuses at once, so this does not
    # slow the detection the tests wait on.
    timeout check 2s
    # A request that could not be sent (node gone) or got no answer at all (node killed
    # while it ran) goes again, each retry to another node. Only a request HAProxy holds
    # whole can be sent again: without http-buffer-request an Invoke (a POST with a body)
    # is never retried on an empty response, only answered 502.
    retries 3
    retry-on conn-failure empty-response
    option redispatch 1
    option http-buffer-request

frontend lamina_lb
    bind 127.0.0.1:{self.port}
    default_backend {BACKEND}

backend {BACKEND}
    balance roundrobin
    # HTTP/1.1 with a Host header, as any client sends; only 200 means ready (503 is a
    # node that is not a live member, or is draining).
    option httpchk
    http-check send meth GET uri /lamina/ready ver HTTP/1.1 hdr Host 127.0.0.1
    http-check expect status 200
    default-server inter 500ms fall 2 rise 1
{servers}
"""

    def start(self, timeout=30):
        self.config.write_text(self.render())
        checked = subprocess.run(
            [self.binary, "-c", "-f", str(self.config)], capture_output=True, text=True, timeout=30
        )
        if checked.returncode != 0:
            raise RuntimeError(f"haproxy refused {self.config}:\n{checked.stdout}{checked.stderr}")
        with open(self.log, "ab") as out:
            self.proc = subprocess.Popen(
                [self.binary, "-f", str(self.config), "-db"], stdout=out, stderr=subprocess.STDOUT
            )
        try:
            wait_until(self._serving, timeout, "HAProxy to serve with every node up")
        except AssertionError:
            self.stop()
            raise RuntimeError(f"haproxy did not become ready:\n{self.log.read_text()[-4000:]}")
        return self

    def _serving(self):
        if self.proc.poll() is not None:
            raise RuntimeError(f"haproxy exited with {self.proc.returncode}:\n{self.log.read_text()[-4000:]}")
        try:
            states = self.states()
        except OSError:
            return False
        if set(states) != set(self.servers) or any(s != "UP" for s in states.values()):
            return False
        try:
            return requests.get(f"{self.endpoint}/lamina/ready", timeout=5).status_code == 200
        except requests.RequestException:
            return False

    def admin(self, command):
        """One runtime API command's answer."""
        with socket.create_connection(("127.0.0.1", self.admin_port), timeout=5) as s:
            s.sendall(command.encode() + b"\n")
            chunks = []
            while chunk := s.recv(65536):
                chunks.append(chunk)
        return b"".join(chunks).decode()

    def stats(self):
        """The backend's servers as `show stat` rows (dicts keyed by column name)."""
        text = self.admin("show stat").lstrip("# ")
        return {
            row["svname"]: row
            for row in csv.DictReader(io.StringIO(text))
            if row.get("pxname") == BACKEND and row.get("svname") not in ("FRONTEND", "BACKEND")
        }

    def states(self):
        """Each server's check state: UP, DOWN, or a transition such as "UP 1/2"."""
        return {name: row["status"] for name, row in self.stats().items()}

    def wait_state(self, name, state, timeout=30):
        wait_until(lambda: self.states().get(name) == state, timeout, f"HAProxy to see {name} {state}")

    def set_server(self, name, endpoint):
        """Points server `name` (and its health check) at `endpoint`."""
        host, port = host_port(endpoint)
        answer = self.admin(f"set server {BACKEND}/{name} addr {host} port {port}")
        addr = self.stats()[name].get("addr")
        assert addr == f"{host}:{port}", f"haproxy kept {name} at {addr}: {answer.strip()}"
        self.servers[name] = endpoint

    def stop(self):
        if self.proc and self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(timeout=10)


def ready(endpoint):
    """Whether the node answers GET /lamina/ready (unsigned) with 200."""
    try:
        return requests.get(f"{endpoint}/lamina/ready", timeout=5).status_code == 200
    except requests.RequestException:
        return False


class ClusterOf3:
    """Three nodes on `database_url` with one server key file, each with its own data
    directory, behind one HAProxy. Node `i` is `nodes[i]`, named `node{i+1}` in HAProxy."""

    SIZE = 3

    def __init__(self, directory, database_url, extra=()):
        self.directory = pathlib.Path(directory)
        self.database_url = database_url
        self.key_file = self.directory / "server.key"
        self.extra = ["--server-key-file", str(self.key_file), *extra]
        self.names = [f"node{i + 1}" for i in range(self.SIZE)]
        self.data_dirs = [self.directory / name for name in self.names]
        self.nodes = [None] * self.SIZE
        # Each node's id as its data directory holds it, read when it last started.
        self.node_ids = [None] * self.SIZE
        # The nodes whose first start created the root account (its key is shown once).
        self.created_root = []
        self.lb = None

    def start(self):
        # The first node creates the key file and the root account; the others start
        # once it serves, so they find both instead of racing it.
        self._launch(0)
        errors = []

        def launch(i):
            try:
                self._launch(i)
            except Exception as e:  # noqa: BLE001 - raised below, in the caller's thread
                errors.append(e)

        threads = [threading.Thread(target=launch, args=(i,)) for i in range(1, self.SIZE)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        if errors:
            raise errors[0]
        self.created_root = [
            name
            for name, node in zip(self.names, self.nodes)
            if any("Created account" in line for line in node.output)
        ]
        self.lb = HAProxy(
            self.directory / "haproxy",
            {name: node.endpoint for name, node in zip(self.names, self.nodes)},
        ).start()
        return self

    def _launch(self, i):
        node = Lamina(self.data_dirs[i], self.database_url, extra=self.extra)
        self.nodes[i] = node
        node.start()

        def up():
            if node.proc.poll() is not None:
                raise RuntimeError(f"{self.names[i]} exited:\n{''.join(node.output)[-4000:]}")
            return ready(node.endpoint)

        wait_until(up, 60, f"{self.names[i]}'s /lamina/ready to answer 200")
        id_file = self.data_dirs[i] / "node-id"
        assert id_file.is_file(), f"{self.names[i]} keeps no {id_file}"
        self.node_ids[i] = id_file.read_text().strip()
        return node

    def alive(self, i):
        node = self.nodes[i]
        return node is not None and node.proc is not None and node.proc.poll() is None

    def kill9(self, i):
        self.nodes[i].kill9()

    def terminate(self, i):
        """Sends SIGTERM without waiting for the node to exit; the time it was sent."""
        sent = time.monotonic()
        self.nodes[i].proc.send_signal(signal.SIGTERM)
        return sent

    def restart(self, i):
        """Starts node `i` again on its data directory (on a new port) and waits until
        HAProxy sends it requests."""
        if self.alive(i):
            raise RuntimeError(f"{self.names[i]} is still running")
        node = self._launch(i)
        self.lb.set_server(self.names[i], node.endpoint)
        self.lb.wait_state(self.names[i], "UP")
        return node

    def restore(self, timeout=60):
        """Restarts every node that is down, then waits until all three are live members
        and HAProxy has every one up."""
        for i in range(self.SIZE):
            if not self.alive(i):
                self.restart(i)
        want = set(self.node_ids)
        wait_until(lambda: self._live_ids() == want, timeout, "three live members", interval=0.2)
        wait_until(
            lambda: all(self._routes_over(i) == want for i in range(self.SIZE)),
            timeout,
            "every node to route over the three",
            interval=0.2,
        )
        wait_until(
            lambda: all(s == "UP" for s in self.lb.states().values()),
            timeout,
            "HAProxy to have every node up",
        )

    def _routes_over(self, i):
        """The members node `i` routes requests over, as its /lamina/status says."""
        return set(self.status(self.nodes[i].endpoint)["Routing"]["Members"])

    def status(self, endpoint=None):
        r = signed("GET", f"{endpoint or self.lb.endpoint}/lamina/status")
        assert r.status_code == 200, r.text
        return r.json()

    def _live_ids(self):
        """The live members' ids, or None while the load balancer cannot say."""
        try:
            r = signed("GET", f"{self.lb.endpoint}/lamina/status")
        except requests.RequestException:
            return None
        return {n["NodeId"] for n in r.json()["Nodes"]} if r.status_code == 200 else None

    def live_nodes(self, endpoint=None):
        """The members /lamina/status lists (through HAProxy unless `endpoint` is given)."""
        return self.status(endpoint)["Nodes"]

    def client(self, i, **config):
        return self.nodes[i].client(**config)

    def lb_client(self, max_attempts=1, **config):
        cfg = Config(
            retries={"max_attempts": max_attempts, "mode": "standard"}, read_timeout=120, **config
        )
        return boto3.client(
            "lambda",
            endpoint_url=self.lb.endpoint,
            region_name=REGION,
            aws_access_key_id=ROOT_KEY_ID,
            aws_secret_access_key=ROOT_SECRET,
            config=cfg,
        )

    def query(self, sql, params=()):
        """Rows of a query against the cluster's database (`?` placeholders, as
        Lamina.query takes them)."""
        import psycopg

        with psycopg.connect(self.database_url) as conn:
            return conn.execute(sql.replace("?", "%s"), params).fetchall()

    def stop(self):
        if self.lb:
            self.lb.stop()
        for node in self.nodes:
            if node is None or node.proc is None:
                continue
            try:
                node.stop()
            except Exception:  # noqa: BLE001 - a node that will not stop is killed
                node.kill9()

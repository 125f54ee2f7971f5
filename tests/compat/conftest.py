"""Fixtures for the compatibility suite: a real `lamina up` process per database backend,
real boto3 clients pointed at it, and packages built from the guest fixtures.

The suite runs against the embedded SQLite and against PostgreSQL
(LAMINA_TEST_POSTGRES, default postgres://postgres@127.0.0.1:5432/postgres). Without a
reachable PostgreSQL the PostgreSQL half is skipped with a visible reason, except under
CI=true, where that is a failure.

Helpers the test modules share (`unique`, `wasm_zip`, `expect_error`, `arn`...) live here
too, so every module imports them from one place.
"""

import base64
import hashlib
import io
import os
import pathlib
import re
import signal
import socket
import sqlite3
import struct
import subprocess
import tempfile
import threading
import time
import uuid
import zipfile

import boto3
import pytest
import requests
from botocore.config import Config
from botocore.exceptions import ClientError

ROOT = pathlib.Path(__file__).resolve().parents[2]
FIXTURES = ROOT / "guests" / "target" / "fixtures"
LAMINA_BIN = os.environ.get("LAMINA_BIN", str(ROOT / "target" / "debug" / "lamina"))
PG_ADMIN = os.environ.get("LAMINA_TEST_POSTGRES", "postgres://postgres@127.0.0.1:5432/postgres")
REGION = "us-east-1"
ACCOUNT = "000000000000"
ROLE = "arn:aws:iam::000000000000:role/lambda-role"
ROOT_KEY_ID = "test"
ROOT_SECRET = "test"
UUID_RE = re.compile(r"^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$")


def fixture_bytes(name):
    path = FIXTURES / f"{name}.wasm"
    assert path.exists(), f"{path} missing: run guests/build.sh"
    return path.read_bytes()


def zip_of(files):
    """A zip with fixed timestamps: the same files always give the same bytes, so the
    same fixture is one content-addressed package, compiled once for the whole suite."""
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w", zipfile.ZIP_DEFLATED) as z:
        for name, data in files.items():
            info = zipfile.ZipInfo(name, date_time=(2020, 1, 1, 0, 0, 0))
            info.compress_type = zipfile.ZIP_DEFLATED
            info.external_attr = 0o644 << 16
            z.writestr(info, data)
    return buf.getvalue()


def wasm_zip(fixture, handler="function.wasm"):
    return zip_of({handler: fixture_bytes(fixture)})


def unique(prefix="fn"):
    return f"{prefix}-{uuid.uuid4().hex[:10]}"


def code_sha256(zip_bytes):
    """CodeSha256 as Lambda reports it: base64 of the zip's SHA-256."""
    return base64.b64encode(hashlib.sha256(zip_bytes).digest()).decode()


def arn(name, qualifier=None, region=REGION):
    base = f"arn:aws:lambda:{region}:{ACCOUNT}:function:{name}"
    return f"{base}:{qualifier}" if qualifier else base


def expect_error(client, code, status, call, message=None):
    """Runs `call`, which must fail with Lambda's error `code` and HTTP `status`, and
    returns the ClientError. Modeled errors must surface as botocore's own exception
    class (so `except client.exceptions.X` works); the rest as a plain ClientError."""
    with pytest.raises(ClientError) as info:
        call()
    e = info.value
    meta = e.response["ResponseMetadata"]
    assert (e.response["Error"]["Code"], meta["HTTPStatusCode"]) == (code, status), e.response
    assert meta["HTTPHeaders"].get("x-amzn-errortype") == code
    assert UUID_RE.match(meta.get("RequestId", "")), meta
    modeled = getattr(client.exceptions, code, None)
    if modeled is not None:
        assert isinstance(e, modeled), f"{type(e)} is not {modeled}"
        assert e.response.get("Type") == "User", e.response
    else:
        assert type(e) is ClientError, type(e)
    if message is not None:
        assert e.response["Error"]["Message"] == message
    return e


def signed(method, url, data=b"", headers=None, key_id=ROOT_KEY_ID, secret=ROOT_SECRET, **kwargs):
    """A raw HTTP request signed with SigV4 as botocore signs Lambda calls, for tests that
    need to see the wire (status, headers, exact bytes) that botocore would hide."""
    from botocore.auth import SigV4Auth
    from botocore.awsrequest import AWSRequest
    from botocore.credentials import Credentials

    request = AWSRequest(method=method, url=url, data=data, headers=dict(headers or {}))
    SigV4Auth(Credentials(key_id, secret), "lambda", REGION).add_auth(request)
    prepared = request.prepare()
    return requests.request(
        method, prepared.url, data=data, headers=dict(prepared.headers), timeout=120, **kwargs
    )


def lamina_cli(lamina, *args, timeout=300):
    """Runs a `lamina` subcommand against a node as a user would: the node from
    LAMINA_ENDPOINT, the key from the AWS variables, no machine profile."""
    env = dict(
        os.environ,
        LAMINA_ENDPOINT=lamina.endpoint,
        AWS_ACCESS_KEY_ID=ROOT_KEY_ID,
        AWS_SECRET_ACCESS_KEY=ROOT_SECRET,
        AWS_SHARED_CREDENTIALS_FILE=os.devnull,
    )
    return subprocess.run(
        [LAMINA_BIN, *args], capture_output=True, text=True, env=env, timeout=timeout
    )


def send_feedback(endpoint, function, request_id, truth, timeout=15):
    """POSTs ground truth for a prediction, waiting out the second or so before the
    ledger has written the prediction (404 until then)."""
    import json

    deadline = time.time() + timeout
    while True:
        r = signed(
            "POST",
            f"{endpoint}/lamina/functions/{function}/feedback",
            data=json.dumps({"RequestId": request_id, "GroundTruth": truth}).encode(),
            headers={"Content-Type": "application/json"},
        )
        if r.status_code != 404 or time.time() > deadline:
            return r
        time.sleep(0.2)


def postgres_database():
    """A fresh database URL, or None (and why) when PostgreSQL is unreachable."""
    try:
        import psycopg
    except ImportError as e:  # pragma: no cover - the venv installs it
        return None, f"psycopg missing: {e}"
    try:
        with psycopg.connect(PG_ADMIN, autocommit=True, connect_timeout=3) as conn:
            name = f"lamina_compat_{uuid.uuid4().hex[:12]}"
            conn.execute(f"CREATE DATABASE {name}")
    except Exception as e:  # noqa: BLE001 - any failure means "no server"
        return None, f"{PG_ADMIN} unreachable: {e}"
    return PG_ADMIN.rsplit("/", 1)[0] + "/" + name, None


def drop_postgres_database(url):
    import psycopg

    name = url.rsplit("/", 1)[1]
    try:
        with psycopg.connect(PG_ADMIN, autocommit=True, connect_timeout=3) as conn:
            conn.execute(f"DROP DATABASE IF EXISTS {name} WITH (FORCE)")
    except Exception:  # noqa: BLE001 - leaving a scratch database behind is harmless
        pass


class Lamina:
    """A `lamina up` child process on a private data directory and a free port."""

    def __init__(self, data_dir, database_url=None, extra=()):
        self.data_dir = pathlib.Path(data_dir)
        self.database_url = database_url
        self.extra = list(extra)
        self.proc = None
        self.endpoint = None
        self.output = []

    def start(self):
        args = [LAMINA_BIN, "up", "--listen", "127.0.0.1:0", "--data-dir", str(self.data_dir)]
        if self.database_url:
            args += ["--database-url", self.database_url]
        args += self.extra
        # The first account gets the well-known test key the clients below sign with.
        env = dict(
            os.environ,
            LAMINA_LOG=os.environ.get("LAMINA_LOG", "warn"),
            LAMINA_ROOT_ACCESS_KEY_ID=ROOT_KEY_ID,
            LAMINA_ROOT_SECRET_ACCESS_KEY=ROOT_SECRET,
        )
        self.proc = subprocess.Popen(
            args, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, env=env
        )
        deadline = time.time() + 60
        for line in self.proc.stdout:
            self.output.append(line)
            m = re.search(r"listening on (https?://\S+)", line)
            if m:
                self.endpoint = m.group(1)
                break
            if time.time() > deadline:
                break
        if not self.endpoint:
            self.proc.kill()
            raise RuntimeError("lamina did not start:\n" + "".join(self.output))
        threading.Thread(target=self._drain, daemon=True).start()
        return self

    def _drain(self):
        for line in self.proc.stdout:
            self.output.append(line)

    def stop(self, sig=signal.SIGTERM, timeout=30):
        if self.proc and self.proc.poll() is None:
            self.proc.send_signal(sig)
            self.proc.wait(timeout=timeout)
        return self.proc.returncode

    def kill9(self):
        return self.stop(signal.SIGKILL)

    def client(self, key_id=ROOT_KEY_ID, secret=ROOT_SECRET, verify=None, **config):
        cfg = Config(retries={"max_attempts": 1, "mode": "standard"}, read_timeout=120, **config)
        return boto3.client(
            "lambda",
            endpoint_url=self.endpoint,
            region_name=REGION,
            aws_access_key_id=key_id,
            aws_secret_access_key=secret,
            verify=verify,
            config=cfg,
        )

    def query(self, sql, params=()):
        """Rows of a query against this node's ledger database."""
        if self.database_url:
            import psycopg

            with psycopg.connect(self.database_url) as conn:
                return conn.execute(sql.replace("?", "%s"), params).fetchall()
        with sqlite3.connect(self.data_dir / "lamina.db") as conn:
            return conn.execute(sql, params).fetchall()

    def wait_for(self, predicate, timeout=30, what="condition"):
        deadline = time.time() + timeout
        while time.time() < deadline:
            value = predicate()
            if value:
                return value
            time.sleep(0.1)
        raise AssertionError(f"timed out waiting for {what}")


class TcpProxy:
    """A TCP relay to `upstream` on a port of its own, which can be cut: `cut()` closes the
    listener (new connections are refused) and resets every open connection, as a database
    that went away would; `restore()` listens again on the same port."""

    def __init__(self, upstream_host, upstream_port):
        self.upstream = (upstream_host, upstream_port)
        self.port = None
        self._listener = None
        self._accepting = None
        self._thread = None
        self._lock = threading.Lock()
        self._open = set()
        self.listen()

    def listen(self):
        listener = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        listener.bind(("127.0.0.1", self.port or 0))
        listener.listen(128)
        # accept() wakes up now and then to notice cut(): closing a socket does not wake a
        # thread blocked on it.
        listener.settimeout(0.1)
        self.port = listener.getsockname()[1]
        self._listener = listener
        self._accepting = threading.Event()
        self._accepting.set()
        self._thread = threading.Thread(target=self._accept, args=(listener, self._accepting), daemon=True)
        self._thread.start()
        return self

    restore = listen

    def _accept(self, listener, accepting):
        while accepting.is_set():
            try:
                downstream, _ = listener.accept()
            except socket.timeout:
                continue
            except OSError:
                return
            downstream.settimeout(None)
            try:
                upstream = socket.create_connection(self.upstream, timeout=5)
                upstream.settimeout(None)
            except OSError:
                downstream.close()
                continue
            pair = (downstream, upstream)
            with self._lock:
                self._open.add(pair)
            for src, dst in ((downstream, upstream), (upstream, downstream)):
                threading.Thread(target=self._pump, args=(src, dst, pair), daemon=True).start()

    def _pump(self, src, dst, pair):
        try:
            while data := src.recv(65536):
                dst.sendall(data)
        except OSError:
            pass
        self._close(pair)

    def _close(self, pair):
        with self._lock:
            self._open.discard(pair)
        for s in pair:
            try:
                # A reset, not an orderly close: the peer sees the connection die.
                s.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
                s.close()
            except OSError:
                pass

    def cut(self):
        self._accepting.clear()
        self._thread.join(timeout=5)
        self._listener.close()
        self._listener = None
        with self._lock:
            pairs = list(self._open)
        for pair in pairs:
            self._close(pair)

    @property
    def is_cut(self):
        return self._listener is None

    def refuses(self):
        """Whether a connection to the proxy's port is refused right now."""
        try:
            socket.create_connection(("127.0.0.1", self.port), timeout=1).close()
        except ConnectionRefusedError:
            return True
        return False

    def url_for(self, database_url):
        """`database_url` with its host and port replaced by the proxy's."""
        return re.sub(r"@[^/@]+/", f"@127.0.0.1:{self.port}/", database_url, count=1)


@pytest.fixture(scope="session", params=["sqlite", "postgres"])
def backend(request):
    if request.param == "sqlite":
        return None
    url, why = postgres_database()
    if url is None:
        if os.environ.get("CI") == "true":
            pytest.fail(f"PostgreSQL is required under CI=true: {why}")
        pytest.skip(f"PostgreSQL backend: {why}")
    request.addfinalizer(lambda: drop_postgres_database(url))
    return url


@pytest.fixture(scope="session")
def lamina(backend, tmp_path_factory):
    node = Lamina(
        tmp_path_factory.mktemp("lamina"),
        backend,
        extra=["--idle-timeout", "600", "--retry-base", "1"],
    ).start()
    yield node
    node.stop()


@pytest.fixture
def client(lamina):
    return lamina.client()


@pytest.fixture
def unvalidated(lamina):
    """A client that sends what it is given, so the server's own validation answers."""
    return lamina.client(parameter_validation=False)


class FunctionFactory:
    """Creates functions from fixtures and deletes them after the test."""

    def __init__(self, client):
        self.client = client
        self.created = []

    def create(self, fixture="echo", name=None, **kwargs):
        """CreateFunction's response."""
        params = dict(
            FunctionName=name or unique(fixture),
            Runtime="wasm",
            Role=ROLE,
            Handler="function.wasm",
            Code={"ZipFile": wasm_zip(fixture)},
        )
        params.update(kwargs)
        response = self.client.create_function(**params)
        self.created.append(response["FunctionName"])
        return response

    def __call__(self, fixture="echo", name=None, **kwargs):
        """The new function's name."""
        return self.create(fixture, name, **kwargs)["FunctionName"]

    def cleanup(self):
        for name in self.created:
            try:
                self.client.delete_function(FunctionName=name)
            except self.client.exceptions.ResourceNotFoundException:
                pass


@pytest.fixture
def make_function(client):
    factory = FunctionFactory(client)
    yield factory
    factory.cleanup()


@pytest.fixture
def tmp_node(tmp_path, backend):
    """A private node for tests that stop or kill it. `start(data_dir)` again on the same
    directory restarts it on the same database (a private one on PostgreSQL, so the
    session's node never shares its catalog)."""
    nodes = []
    databases = {}

    def start(data_dir=None, extra=()):
        data_dir = pathlib.Path(data_dir or tmp_path / f"node{len(nodes)}")
        url = None
        if backend is not None:
            if data_dir not in databases:
                databases[data_dir], why = postgres_database()
                assert databases[data_dir], why
            url = databases[data_dir]
        node = Lamina(data_dir, url, extra=extra).start()
        nodes.append(node)
        return node

    yield start
    for n in nodes:
        try:
            n.stop()
        except Exception:  # noqa: BLE001 - already dead is fine
            pass
    for url in databases.values():
        drop_postgres_database(url)


def tmp_dir():
    return pathlib.Path(tempfile.mkdtemp())

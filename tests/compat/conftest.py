"""Fixtures for the compatibility suite: a real `lamina up` process per database backend,
real boto3 clients pointed at it, and packages built from the guest fixtures.

The suite runs against the embedded SQLite and against PostgreSQL
(LAMINA_TEST_POSTGRES, default postgres://postgres@127.0.0.1:5432/postgres). Without a
reachable PostgreSQL the PostgreSQL half is skipped with a visible reason, except under
CI=true, where that is a failure.
"""

import io
import os
import pathlib
import re
import signal
import sqlite3
import subprocess
import tempfile
import threading
import time
import uuid
import zipfile

import boto3
import pytest
from botocore.config import Config

ROOT = pathlib.Path(__file__).resolve().parents[2]
FIXTURES = ROOT / "guests" / "target" / "fixtures"
LAMINA_BIN = os.environ.get("LAMINA_BIN", str(ROOT / "target" / "debug" / "lamina"))
PG_ADMIN = os.environ.get("LAMINA_TEST_POSTGRES", "postgres://postgres@127.0.0.1:5432/postgres")
REGION = "us-east-1"
ROLE = "arn:aws:iam::000000000000:role/lambda-role"


def fixture_bytes(name):
    path = FIXTURES / f"{name}.wasm"
    assert path.exists(), f"{path} missing: run guests/build.sh"
    return path.read_bytes()


def zip_of(files):
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w", zipfile.ZIP_DEFLATED) as z:
        for name, data in files.items():
            z.writestr(name, data)
    return buf.getvalue()


def wasm_zip(fixture, handler="function.wasm"):
    return zip_of({handler: fixture_bytes(fixture)})


def unique(prefix="fn"):
    return f"{prefix}-{uuid.uuid4().hex[:10]}"


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
        env = dict(os.environ, LAMINA_LOG=os.environ.get("LAMINA_LOG", "warn"))
        self.proc = subprocess.Popen(
            args, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, env=env
        )
        deadline = time.time() + 60
        for line in self.proc.stdout:
            self.output.append(line)
            m = re.search(r"listening on (http://\S+)", line)
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

    def client(self, **config):
        cfg = Config(retries={"max_attempts": 1, "mode": "standard"}, read_timeout=120, **config)
        return boto3.client(
            "lambda",
            endpoint_url=self.endpoint,
            region_name=REGION,
            aws_access_key_id="test",
            aws_secret_access_key="test",
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


@pytest.fixture(scope="session", params=["sqlite", "postgres"])
def backend(request):
    if request.param == "sqlite":
        return None
    url, why = postgres_database()
    if url is None:
        if os.environ.get("CI") == "true":
            pytest.fail(f"PostgreSQL is required under CI=true: {why}")
        pytest.skip(f"PostgreSQL backend: {why}")
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
def make_function(client):
    """Creates functions from fixtures and deletes them afterwards."""
    created = []

    def make(fixture="echo", name=None, **kwargs):
        name = name or unique(fixture)
        params = dict(
            FunctionName=name,
            Runtime="wasm",
            Role=ROLE,
            Handler="function.wasm",
            Code={"ZipFile": wasm_zip(fixture)},
        )
        params.update(kwargs)
        client.create_function(**params)
        created.append(name)
        return name

    yield make
    for name in created:
        try:
            client.delete_function(FunctionName=name)
        except client.exceptions.ResourceNotFoundException:
            pass


@pytest.fixture
def tmp_node(tmp_path, backend):
    """A private node for tests that stop or kill it."""
    nodes = []

    def start(data_dir=None, extra=()):
        node = Lamina(data_dir or tmp_path / f"node{len(nodes)}", backend, extra=extra).start()
        nodes.append(node)
        return node

    yield start
    for n in nodes:
        try:
            n.stop()
        except Exception:  # noqa: BLE001 - already dead is fine
            pass


def tmp_dir():
    return pathlib.Path(tempfile.mkdtemp())

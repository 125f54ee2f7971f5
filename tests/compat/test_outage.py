"""A database outage never fails an invocation: with PostgreSQL refusing connections,
signed invokes keep succeeding (the access key is checked against the key as last read),
and the ledger rows of those invocations reach the database once it is back."""

import json
import threading
import time
import urllib.request

import pytest
from botocore.exceptions import ClientError
from prometheus_client.parser import text_string_to_metric_families

from conftest import (
    ROLE,
    Lamina,
    TcpProxy,
    drop_postgres_database,
    postgres_database,
    unique,
    wasm_zip,
)

OUTAGE_SECONDS = 30


def ledger_backlog(node):
    with urllib.request.urlopen(f"{node.endpoint}/metrics", timeout=10) as resp:
        text = resp.read().decode()
    for family in text_string_to_metric_families(text):
        for s in family.samples:
            if s.name == "lamina_ledger_backlog_records":
                return s.value
    raise AssertionError("no lamina_ledger_backlog_records in /metrics")


@pytest.fixture
def node_behind_proxy(backend, tmp_path):
    """A private node whose every PostgreSQL connection goes through a `TcpProxy`."""
    if backend is None:
        pytest.skip("the outage is cut between the node and PostgreSQL; SQLite is a local file")
    url, why = postgres_database()
    assert url, why
    host_port = url.split("@", 1)[1].split("/", 1)[0]
    host, port = host_port.rsplit(":", 1)
    proxy = TcpProxy(host, int(port))
    node = Lamina(tmp_path / "node", proxy.url_for(url)).start()
    try:
        yield node, proxy
    finally:
        if proxy.is_cut:
            proxy.restore()
        node.stop()
        proxy.cut()
        drop_postgres_database(url)


def test_signed_invokes_keep_succeeding_while_the_database_refuses_connections(node_behind_proxy):
    node, proxy = node_behind_proxy
    client = node.client()
    name = unique("outage")
    client.create_function(
        FunctionName=name,
        Runtime="wasm",
        Role=ROLE,
        Handler="function.wasm",
        Code={"ZipFile": wasm_zip("echo")},
    )
    # Warm: the environment exists and the access key has been read once.
    assert client.invoke(FunctionName=name, Payload=b"{}")["StatusCode"] == 200

    proxy.cut()
    assert proxy.refuses(), "the proxy still accepts connections"
    # A key the node has never read cannot be checked: refused as Lambda refuses an
    # unknown key, not a 500.
    unknown = {}

    def try_unknown_key():
        try:
            node.client(key_id="AKIANEVERSEENBEFORE0", secret="x").invoke(FunctionName=name)
        except ClientError as e:
            unknown["answer"] = (e.response["ResponseMetadata"]["HTTPStatusCode"],
                                 e.response["Error"]["Code"])
        except Exception as e:  # noqa: BLE001 - reported by the assertion below
            unknown["error"] = repr(e)

    stranger = threading.Thread(target=try_unknown_key)
    stranger.start()
    during = []
    failures = []
    slowest = 0.0
    started = time.monotonic()
    while time.monotonic() - started < OUTAGE_SECONDS:
        payload = json.dumps({"n": len(during)}).encode()
        sent = time.monotonic()
        try:
            resp = client.invoke(FunctionName=name, Payload=payload)
            slowest = max(slowest, time.monotonic() - sent)
        except Exception as e:  # noqa: BLE001 - every failure is reported below
            failures.append(f"{time.monotonic() - started:.1f}s: {e!r}")
            continue
        body = resp["Payload"].read()
        if resp["StatusCode"] != 200 or "FunctionError" in resp or body != payload:
            failures.append(f"{time.monotonic() - started:.1f}s: {resp['StatusCode']} {body!r}")
            continue
        during.append(resp["ResponseMetadata"]["RequestId"])
    elapsed = time.monotonic() - started
    stranger.join(timeout=60)
    assert not failures, (
        f"{len(failures)} of {len(failures) + len(during)} invokes failed during the outage; "
        f"first: {failures[:3]}"
    )
    assert elapsed >= OUTAGE_SECONDS and len(during) > 0
    assert unknown.get("answer") == (403, "UnrecognizedClientException"), unknown
    # The outage was real: none of these rows could be written.
    assert proxy.refuses()
    assert ledger_backlog(node) >= len(during)

    proxy.restore()
    restored = time.monotonic()
    wanted = set(during)

    def all_written():
        written = {
            r[0]
            for r in node.query(
                "SELECT request_id FROM invocations WHERE function_name = ?", (name,)
            )
        }
        return wanted <= written

    node.wait_for(all_written, timeout=60, what="the outage's ledger rows in PostgreSQL")
    drained = time.monotonic() - restored
    node.wait_for(lambda: ledger_backlog(node) == 0, timeout=30, what="an empty ledger backlog")
    # Each invocation was recorded once, and the node still serves after the outage.
    rows = node.query(
        "SELECT request_id, COUNT(*) FROM invocations WHERE function_name = ? GROUP BY request_id",
        (name,),
    )
    assert all(count == 1 for _, count in rows)
    assert client.invoke(FunctionName=name, Payload=b"{}")["StatusCode"] == 200
    print(
        f"outage {elapsed:.1f} s: {len(during)} signed invokes, none failed, slowest "
        f"{slowest:.2f} s; their ledger rows in PostgreSQL {drained:.1f} s after it came back"
    )

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


def test_three_nodes_behind_a_load_balancer_serve_through_the_outage_and_catch_up(tmp_path):
    """The cluster's version: three nodes on one database, clients invoking through
    HAProxy while every node's PostgreSQL connections are cut for 30 s. No invocation
    fails, requests keep being routed between the nodes, and every row reaches the
    database once it is back."""
    from cluster import ClusterOf3, haproxy_binary, require, routing_decisions

    if haproxy_binary() is None:
        require("HAProxy", "no haproxy on PATH or in /usr/sbin (apt-get install haproxy)")
    url, why = postgres_database()
    if url is None:
        require("PostgreSQL", why)
    host, port = url.split("@", 1)[1].split("/", 1)[0].rsplit(":", 1)
    proxy = TcpProxy(host, int(port))
    cluster = ClusterOf3(tmp_path, proxy.url_for(url), extra=["--idle-timeout", "600"])
    try:
        cluster.start()
        cluster.restore()
        name = unique("outage-cluster")
        cluster.client(0).create_function(
            FunctionName=name, Runtime="wasm", Role=ROLE, Handler="function.wasm",
            Code={"ZipFile": wasm_zip("echo")},
        )

        def everywhere():
            try:
                return all(cluster.client(i).get_function(FunctionName=name) for i in range(3))
            except ClientError:
                return False

        cluster.nodes[0].wait_for(everywhere, timeout=10, what="the function on every node")
        completed, failures = [], []
        lock = threading.Lock()
        stop = threading.Event()

        def hammer(client):
            n = 0
            while not stop.is_set():
                n += 1
                payload = json.dumps({"n": n}).encode()
                try:
                    resp = client.invoke(FunctionName=name, Payload=payload)
                    body = resp["Payload"].read()
                except Exception as e:  # noqa: BLE001 - every failure is reported below
                    with lock:
                        failures.append(f"{'cut' if proxy.is_cut else 'connected'}: {e!r}")
                    continue
                with lock:
                    if resp["StatusCode"] != 200 or "FunctionError" in resp or body != payload:
                        failures.append(f"{resp['StatusCode']} {body!r}")
                    else:
                        completed.append(resp["ResponseMetadata"]["RequestId"])

        clients = [cluster.lb_client(max_attempts=1) for _ in range(4)]
        threads = [threading.Thread(target=hammer, args=(c,)) for c in clients]
        for t in threads:
            t.start()
        try:
            cluster.nodes[0].wait_for(lambda: len(completed) >= 100, timeout=30, what="invokes before the cut")
            proxy.cut()
            cut_at, before_cut = time.monotonic(), len(completed)
            while time.monotonic() - cut_at < OUTAGE_SECONDS:
                assert not failures, failures[:3]
                time.sleep(0.5)
            during = len(completed) - before_cut
            assert proxy.refuses()
            proxy.restore()
            restored = time.monotonic()
            cluster.nodes[0].wait_for(
                lambda: len(completed) >= before_cut + during + 100, timeout=30, what="invokes after the cut"
            )
        finally:
            stop.set()
            for t in threads:
                t.join(timeout=60)
        assert not failures, f"{len(failures)} invokes failed; first: {failures[:3]}"
        assert during > 0
        forwarded = sum(routing_decisions(node.endpoint)["forwarded"] for node in cluster.nodes)
        assert forwarded > 0, "no request went from one node to a home node"

        wanted = set(completed)

        def written():
            rows = cluster.query("SELECT request_id FROM invocations WHERE function_name = ?", (name,))
            return wanted <= {r[0] for r in rows}

        cluster.nodes[0].wait_for(written, timeout=60, what="every invocation's ledger row in PostgreSQL")
        drained = time.monotonic() - restored
        counts = cluster.query(
            "SELECT request_id, COUNT(*) FROM invocations WHERE function_name = ? GROUP BY request_id", (name,)
        )
        assert all(count == 1 for _, count in counts)
        print(
            f"{len(completed)} invokes through 3 nodes and a {OUTAGE_SECONDS} s cut ({during} during it), "
            f"none failed, {forwarded} forwarded between nodes; every row written {drained:.1f} s after the restore"
        )
    finally:
        if proxy.is_cut:
            proxy.restore()
        cluster.stop()
        proxy.cut()
        drop_postgres_database(url)

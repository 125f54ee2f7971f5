"""A cluster of three nodes on one PostgreSQL database, each figure next to its baseline
in the same run:

1. Catalog propagation: UpdateFunctionConfiguration through node 1, then the time until
   GetFunctionConfiguration on nodes 2 and 3 shows the change (each polled in turn).
   Target: p99 < 1 s. Baseline: the write itself (UpdateFunctionConfiguration's own
   latency on node 1), which a client pays on any Lambda.
2. What PostgreSQL sees: transactions per second (pg_stat_database's commits and
   rollbacks for the cluster's database) with the three nodes idle, then per
   invocation while clients invoke through every node. Baseline: pgbench's select-only
   transactions per second on the same server, its capacity for the simplest work.
   Of those, the requests for concurrency slots (account and reserved concurrency are
   the cluster's): a node asks only when every slot it holds is busy, so per invocation
   they should be far below one. Baseline: one request per invocation, what a limit
   checked in the database on every invocation would cost.
3. Async drain: `--events` Event invokes of a function that sleeps 1 s, sent through the
   nodes, and the rate at which the cluster completes them (from the ledger's end times,
   between the 10th and 90th percentile of completions, so sending does not count).
   Baseline: the same with one node (the two others stopped with SIGTERM). Target: the
   rate grows with the nodes.
4. How many nodes one PostgreSQL carries: that capacity, halved for headroom, over the
   load of one node serving `--rate` invocations per second.

The nodes are `lamina up` processes on this machine with their own data directories and
one server key, started by tests/compat/cluster.py (without the load balancer: each
client talks to a node).

Needs the test venv (tests/requirements.txt), pgbench, PostgreSQL at
LAMINA_TEST_POSTGRES (default postgres://postgres@127.0.0.1:5432/postgres) and a lamina
binary at LAMINA_BIN (else target/debug/lamina; guests/build.sh first).
Usage: .venv/bin/python bench/cluster.py [--updates 100] [--idle 30] [--invokes 2000] [--events 600]
"""

import argparse
import json
import math
import os
import pathlib
import platform
import subprocess
import sys
import tempfile
import threading
import time
import urllib.parse

ROOT = pathlib.Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "tests" / "compat"))

import psycopg  # noqa: E402

from cluster import ClusterOf3, ready, wait_until  # noqa: E402
from conftest import ROLE, drop_postgres_database, postgres_database, unique, wasm_zip  # noqa: E402


def p(samples, q):
    """The nearest-rank q-th percentile."""
    ordered = sorted(samples)
    return ordered[max(0, math.ceil(q / 100 * len(ordered)) - 1)]


def transactions(database_url):
    """Commits plus rollbacks so far on the cluster's database, less the one this asks in."""
    name = urllib.parse.urlsplit(database_url).path.lstrip("/")
    with psycopg.connect(database_url, autocommit=True) as conn:
        row = conn.execute(
            "SELECT xact_commit + xact_rollback FROM pg_stat_database WHERE datname = %s", (name,)
        ).fetchone()
    return row[0]


def slot_requests(database_url):
    """Requests for concurrency slots every node made so far."""
    with psycopg.connect(database_url, autocommit=True) as conn:
        row = conn.execute("SELECT COALESCE(SUM(grants), 0) FROM concurrency_scopes").fetchone()
    return row[0]


def settle_stats():
    """pg_stat_database is updated by each backend at most every 500 ms (and when it goes
    idle); waiting a second makes a delta whole."""
    time.sleep(1.2)


def pgbench_select_only(database_url, seconds):
    """pgbench -S transactions/s on a scratch database of the same server."""
    parts = urllib.parse.urlsplit(database_url)
    scratch = parts._replace(path="/lamina_bench_pgbench").geturl()
    admin = parts._replace(path="/postgres").geturl()
    with psycopg.connect(admin, autocommit=True) as conn:
        conn.execute("DROP DATABASE IF EXISTS lamina_bench_pgbench")
        conn.execute("CREATE DATABASE lamina_bench_pgbench")
    try:
        subprocess.run(["pgbench", "-i", "-q", "-s", "1", scratch], check=True, capture_output=True)
        done = subprocess.run(
            ["pgbench", "-S", "-c", "8", "-j", "2", "-T", str(seconds), scratch],
            check=True,
            capture_output=True,
            text=True,
        )
        for line in done.stdout.splitlines():
            if line.startswith("tps ="):
                return float(line.split()[2])
        raise RuntimeError(f"no tps in pgbench's output:\n{done.stdout}")
    finally:
        with psycopg.connect(admin, autocommit=True) as conn:
            conn.execute("DROP DATABASE IF EXISTS lamina_bench_pgbench")


def propagation(cluster, updates):
    writer, observers = cluster.client(0), [cluster.client(1), cluster.client(2)]
    name = unique("propagation")
    writer.create_function(
        FunctionName=name, Runtime="wasm", Role=ROLE, Handler="function.wasm",
        Code={"ZipFile": wasm_zip("echo")},
    )
    wait_until(lambda: all(_has(c, name) for c in observers), 10, "every node to know the function")
    writes, seen = [], []
    for n in range(updates):
        description = f"round {n}"
        start = time.monotonic()
        writer.update_function_configuration(FunctionName=name, Description=description)
        written = time.monotonic()
        writes.append(written - start)
        pending = list(observers)
        while pending:
            for c in list(pending):
                if c.get_function_configuration(FunctionName=name)["Description"] == description:
                    seen.append(time.monotonic() - written)
                    pending.remove(c)
            if pending and time.monotonic() - written > 10:
                raise AssertionError(f"round {n} not seen within 10 s")
    return name, writes, seen


def _has(client, name):
    try:
        client.get_function(FunctionName=name)
        return True
    except client.exceptions.ResourceNotFoundException:
        return False


def invoke_load(cluster, name, invokes):
    """`invokes` synchronous invokes spread over the three nodes, two clients per node."""
    per_client = invokes // 6
    failures = []

    def run(i):
        client = clients[i]
        for n in range(per_client):
            r = client.invoke(FunctionName=name, Payload=json.dumps({"n": n}).encode())
            if r["StatusCode"] != 200 or "FunctionError" in r:
                failures.append(r)

    clients = [cluster.client(i % 3) for i in range(6)]
    threads = [threading.Thread(target=run, args=(i,)) for i in range(6)]
    start = time.monotonic()
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert not failures, failures[:3]
    return per_client * 6, time.monotonic() - start


def drain_rate(cluster, database_url, nodes, events):
    """Completions per second of `events` async events sent through `nodes`."""
    name = unique("drain")
    cluster.client(nodes[0]).create_function(
        FunctionName=name, Runtime="wasm", Role=ROLE, Handler="function.wasm", Code={"ZipFile": wasm_zip("sleep")}
    )
    for i in nodes:
        wait_until(lambda: _has(cluster.client(i), name), 30, f"{name} on node {i + 1}")
    clients = [cluster.client(nodes[k % len(nodes)]) for k in range(4)]

    def send(k):
        for _ in range(events // 4):
            r = clients[k].invoke(FunctionName=name, InvocationType="Event", Payload=b'{"ms": 1000}')
            assert r["StatusCode"] == 202, r

    threads = [threading.Thread(target=send, args=(k,)) for k in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    sent = events // 4 * 4

    def ended():
        with psycopg.connect(database_url, autocommit=True) as conn:
            return [
                row[0]
                for row in conn.execute(
                    "SELECT ended_at_us FROM invocations WHERE function_name = %s AND outcome = 'success' "
                    "ORDER BY ended_at_us",
                    (name,),
                )
            ]

    wait_until(lambda: len(ended()) >= sent, 300, f"{sent} events to complete", interval=0.5)
    ends = ended()
    first, last = ends[len(ends) // 10], ends[len(ends) * 9 // 10]
    return (len(ends) * 8 // 10) / max((last - first) / 1e6, 1e-3)


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--updates", type=int, default=100)
    parser.add_argument("--idle", type=int, default=30, help="seconds of idle cluster to measure")
    parser.add_argument("--invokes", type=int, default=2000)
    parser.add_argument("--rate", type=float, default=100, help="invocations/s per node, for the plan")
    parser.add_argument("--pgbench-seconds", type=int, default=15)
    parser.add_argument("--events", type=int, default=600, help="async events per drain measurement")
    args = parser.parse_args()

    database_url, why = postgres_database()
    if database_url is None:
        sys.exit(f"PostgreSQL is needed: {why}")
    print(f"machine: {platform.machine()}, {os.cpu_count()} cores; binary {os.environ.get('LAMINA_BIN', 'target/debug/lamina')}")
    with tempfile.TemporaryDirectory() as directory:
        cluster = ClusterOf3(directory, database_url, extra=["--idle-timeout", "600"])
        try:
            for i in range(cluster.SIZE):
                cluster._launch(i)
            wait_until(lambda: all(ready(n.endpoint) for n in cluster.nodes), 60, "three ready nodes")

            name, writes, seen = propagation(cluster, args.updates)
            print(
                f"\npropagation over {args.updates} updates x 2 observers: p50 {p(seen, 50) * 1000:.0f} ms, "
                f"p99 {p(seen, 99) * 1000:.0f} ms, max {max(seen) * 1000:.0f} ms (target p99 < 1000 ms)"
            )
            print(
                f"  baseline, the write itself: p50 {p(writes, 50) * 1000:.0f} ms, "
                f"p99 {p(writes, 99) * 1000:.0f} ms"
            )

            # Warm every node, then measure the idle cluster.
            for i in range(cluster.SIZE):
                cluster.client(i).invoke(FunctionName=name, Payload=b"{}")
            settle_stats()
            before = transactions(database_url)
            time.sleep(args.idle)
            settle_stats()
            idle = (transactions(database_url) - before - 1) / (args.idle + 1.2)
            per_node_idle = idle / cluster.SIZE
            print(f"\nidle: {idle:.1f} transactions/s for 3 nodes, {per_node_idle:.1f} per node")

            settle_stats()
            before = transactions(database_url)
            asked_before = slot_requests(database_url)
            started = time.monotonic()
            count, took = invoke_load(cluster, name, args.invokes)
            asked = slot_requests(database_url) - asked_before
            settle_stats()
            elapsed = time.monotonic() - started
            total = transactions(database_url) - before - 1
            background = idle * elapsed
            per_invoke = max(0.0, total - background) / count
            print(
                f"load: {count} invokes in {took:.1f} s ({count / took:.0f}/s over 3 nodes), "
                f"{total} transactions, {per_invoke:.3f} per invocation beyond the idle load"
            )
            print(
                f"  of which requests for concurrency slots: {asked}, {asked / count:.4f} per invocation "
                f"(baseline, a limit checked in the database per invocation: 1)"
            )

            three = drain_rate(cluster, database_url, [0, 1, 2], args.events)
            for i in (1, 2):
                cluster.terminate(i)
            for i in (1, 2):
                cluster.nodes[i].proc.wait(timeout=60)
            one = drain_rate(cluster, database_url, [0], args.events)
            print(
                f"\nasync drain, {args.events} events of 1 s: 3 nodes {three:.0f} events/s; "
                f"baseline, 1 node: {one:.0f} events/s ({three / one:.2f}x)"
            )
        finally:
            cluster.stop()
            drop_postgres_database(database_url)

    capacity = pgbench_select_only(database_url, args.pgbench_seconds)
    per_node = per_node_idle + args.rate * per_invoke
    print(f"\nbaseline: pgbench -S -c 8 -j 2 on the same server: {capacity:.0f} transactions/s")
    print(
        f"one node at {args.rate:.0f} invocations/s: {per_node:.1f} transactions/s; "
        f"half the server's capacity carries {capacity / 2 / per_node:.0f} such nodes "
        f"({capacity / 2 / per_node_idle:.0f} idle ones)"
    )


if __name__ == "__main__":
    main()

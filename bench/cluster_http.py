"""What being part of a cluster costs one node's warm invoke path, each figure next to its
baseline in the same run:

1. Baseline: one node on PostgreSQL, alone (a cluster of one): wrk replays one signed
   Invoke of `echo` against it.
2. The same node, the same function, with two idle peers on the same database (their
   heartbeats, the change feed, the membership reads, concurrency slots): the function
   is homed on this node, so it serves every request itself. Target: >= 0.9x of 1.
3. The same, for a function homed on the two other nodes: this node forwards every
   request to a home and relays the answer (one hop on the loopback).
4. The node alone again (the peers stopped with SIGTERM), so that a drift over the run
   shows.

Every figure is `wrk -t1 -c<connections> -d<duration>` against the node, on this
machine, with the node and wrk sharing its cores.

Needs the test venv (tests/requirements.txt), wrk, PostgreSQL at LAMINA_TEST_POSTGRES
(default postgres://postgres@127.0.0.1:5432/postgres) and a release lamina binary at
LAMINA_BIN (else target/release/lamina; guests/build.sh first).
Usage: .venv/bin/python bench/cluster_http.py [--duration 10s] [--connections 32]
"""

import argparse
import os
import pathlib
import platform
import re
import subprocess
import sys
import tempfile

ROOT = pathlib.Path(__file__).resolve().parents[1]
os.environ.setdefault(
    "LAMINA_BIN",
    str(pathlib.Path(os.environ.get("CARGO_TARGET_DIR", ROOT / "target")) / "release" / "lamina"),
)
sys.path.insert(0, str(ROOT / "tests" / "compat"))

from botocore.auth import SigV4Auth  # noqa: E402
from botocore.awsrequest import AWSRequest  # noqa: E402
from botocore.credentials import Credentials  # noqa: E402

from cluster import ClusterOf3, home_nodes, ready, wait_until  # noqa: E402
from conftest import (  # noqa: E402
    REGION,
    ROLE,
    ROOT_KEY_ID,
    ROOT_SECRET,
    drop_postgres_database,
    postgres_database,
    wasm_zip,
)

NODE_IDS = ["bench-node-1", "bench-node-2", "bench-node-3"]
BODY = b'{"hello":"world"}'


def wrk_script(endpoint, name, directory):
    """A wrk script replaying one signed Invoke of `name` (valid for 15 minutes)."""
    invoke = AWSRequest(method="POST", url=f"{endpoint}/2015-03-31/functions/{name}/invocations", data=BODY)
    SigV4Auth(Credentials(ROOT_KEY_ID, ROOT_SECRET), "lambda", REGION).add_auth(invoke)
    lines = [(ROOT / "bench" / "invoke.lua").read_text()]
    for header, value in invoke.prepare().headers.items():
        lines.append(f'wrk.headers["{header}"] = "{value}"')
    path = pathlib.Path(directory) / f"{name}.lua"
    path.write_text("\n".join(lines) + "\n")
    return path


def wrk(endpoint, name, script, duration, connections):
    url = f"{endpoint}/2015-03-31/functions/{name}/invocations"
    subprocess.run(["wrk", "-t1", f"-c{connections}", "-d2s", "-s", script, url], capture_output=True, check=True)
    out = subprocess.run(
        ["wrk", "-t1", f"-c{connections}", f"-d{duration}", "--latency", "-s", script, url],
        capture_output=True, text=True, check=True,
    ).stdout
    non_2xx = re.search(r"Non-2xx or 3xx responses: (\d+)", out)
    assert non_2xx is None, out
    rate = float(re.search(r"Requests/sec:\s+(\S+)", out)[1])
    p50 = re.search(r"^\s+50%\s+(\S+)", out, re.M)[1]
    p99 = re.search(r"^\s+99%\s+(\S+)", out, re.M)[1]
    return rate, p50, p99


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--duration", default="10s")
    parser.add_argument("--connections", type=int, default=32)
    args = parser.parse_args()
    database_url, why = postgres_database()
    if database_url is None:
        sys.exit(f"PostgreSQL is needed: {why}")
    # Two functions: one homed on node 1 when all three are members, one homed elsewhere.
    candidates = [f"echo-{i}" for i in range(20)]
    homed = next(n for n in candidates if NODE_IDS[0] in home_nodes(n, NODE_IDS))
    elsewhere = next(n for n in candidates if NODE_IDS[0] not in home_nodes(n, NODE_IDS))
    print(
        f"machine: {platform.machine()}, {os.cpu_count()} cores; binary {os.environ['LAMINA_BIN']}; "
        f"wrk -t1 -c{args.connections} -d{args.duration}"
    )
    rows = []
    with tempfile.TemporaryDirectory() as directory:
        cluster = ClusterOf3(directory, database_url, extra=["--idle-timeout", "600"])
        for data_dir, node_id in zip(cluster.data_dirs, NODE_IDS):
            data_dir.mkdir(parents=True)
            (data_dir / "node-id").write_text(node_id + "\n")
        try:
            node = cluster._launch(0)
            admin = cluster.client(0)
            for name in (homed, elsewhere):
                admin.create_function(
                    FunctionName=name, Runtime="wasm", Role=ROLE, Handler="function.wasm",
                    Code={"ZipFile": wasm_zip("echo")}, MemorySize=128,
                )
            scripts = {n: wrk_script(node.endpoint, n, directory) for n in (homed, elsewhere)}

            def measure(label, name):
                rate, p50, p99 = wrk(node.endpoint, name, scripts[name], args.duration, args.connections)
                rows.append((label, rate, p50, p99))
                print(f"{label:58} {rate:10.0f} req/s   p50 {p50:>8}   p99 {p99:>8}", flush=True)

            measure("1. one node alone (baseline)", homed)
            for i in (1, 2):
                cluster._launch(i)
            wait_until(lambda: all(ready(n.endpoint) for n in cluster.nodes), 60, "three ready nodes")
            wait_until(
                lambda: cluster._routes_over(0) == set(NODE_IDS), 30, "node 1 to route over the three"
            )
            measure("2. same node, 2 idle peers, function homed here", homed)
            measure("3. same node, 2 idle peers, function homed elsewhere", elsewhere)
            for i in (1, 2):
                cluster.terminate(i)
            for i in (1, 2):
                cluster.nodes[i].proc.wait(timeout=60)
            wait_until(lambda: cluster._routes_over(0) == {NODE_IDS[0]}, 30, "node 1 alone again")
            measure("4. the node alone again", homed)
        finally:
            cluster.stop()
            drop_postgres_database(database_url)
    base = rows[0][1]
    print(
        f"\nwith two idle peers, homed here: {rows[1][1] / base:.2f}x the node alone (target >= 0.9x); "
        f"forwarded to a home: {rows[2][1] / base:.2f}x; alone again: {rows[3][1] / base:.2f}x"
    )


if __name__ == "__main__":
    main()

"""Home-node routing in a cluster of three nodes behind HAProxy (round robin), against
the same cluster serving every request where it lands (`--routing local`), in the same
run: the warm-hit ratio over many functions, how many environments the cluster holds
for them, and the latency clients see.

The load: `--invokes` synchronous invokes of `--functions` functions (the `counter`
fixture), each call naming a function drawn from a Zipf-like popularity (weight
1/rank), sent by `--clients` threads through HAProxy. Each node may hold
`--max-environments` environments, fewer than the functions, as a node whose memory is
the limit would: at the cap the least recently used idle one goes. The warm-hit ratio
is 1 - cold starts / invocations, summed over the nodes' /metrics.

Needs the test venv (tests/requirements.txt), HAProxy, PostgreSQL at
LAMINA_TEST_POSTGRES (default postgres://postgres@127.0.0.1:5432/postgres) and a lamina
binary at LAMINA_BIN (else target/debug/lamina; guests/build.sh first).
Usage: .venv/bin/python bench/routing.py [--functions 100] [--invokes 3000]
       [--clients 4] [--max-environments 50]
"""

import argparse
import json
import os
import pathlib
import platform
import random
import sys
import tempfile
import threading
import time

ROOT = pathlib.Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "tests" / "compat"))

import local_node  # noqa: E402
from cluster import ClusterOf3, routing_decisions, wait_until  # noqa: E402
from conftest import ROLE, drop_postgres_database, postgres_database, wasm_zip  # noqa: E402


def p(samples, q):
    s = sorted(samples)
    return s[min(len(s) - 1, int(len(s) * q / 100))]


def scrape(node, metric):
    return local_node.metric_total(node.endpoint, metric)


def environments(node, prefix):
    from conftest import signed

    r = signed("GET", f"{node.endpoint}/lamina/status")
    return sum(
        sum(pool["Environments"][s] for s in ("Idle", "Busy", "Initializing"))
        for pool in r.json()["Pools"]
        if pool["FunctionName"].startswith(prefix)
    )


def run(routing, args, database_url, directory):
    cluster = ClusterOf3(
        directory,
        database_url,
        extra=[
            "--routing", routing,
            "--idle-timeout", "600",
            "--max-environments", str(args.max_environments),
        ],
    )
    prefix = f"route-{routing}-"
    names = [f"{prefix}{i:03d}" for i in range(args.functions)]
    try:
        cluster.start()
        admin = cluster.client(0)
        code = wasm_zip("counter")
        for name in names:
            admin.create_function(
                FunctionName=name, Runtime="wasm", Role=ROLE, Handler="function.wasm", Code={"ZipFile": code}
            )
        last = names[-1]

        def everywhere():
            for i in range(cluster.SIZE):
                try:
                    cluster.client(i).get_function(FunctionName=last)
                except Exception:  # noqa: BLE001 - not there yet
                    return False
            return True

        wait_until(everywhere, 60, "the functions on every node")
        # Every node routes over all three.
        cluster.restore()

        weights = [1 / (rank + 1) for rank in range(args.functions)]
        draws = random.Random(7).choices(names, weights, k=args.invokes)
        per_client = [draws[k :: args.clients] for k in range(args.clients)]
        clients = [cluster.lb_client(max_attempts=1) for _ in range(args.clients)]
        latencies = []
        failures = []
        lock = threading.Lock()

        def send(k):
            mine = []
            for name in per_client[k]:
                started = time.perf_counter()
                r = clients[k].invoke(FunctionName=name, Payload=b"{}")
                r["Payload"].read()
                mine.append(time.perf_counter() - started)
                if r["StatusCode"] != 200 or "FunctionError" in r:
                    failures.append(r)
            with lock:
                latencies.extend(mine)

        threads = [threading.Thread(target=send, args=(k,)) for k in range(args.clients)]
        started = time.monotonic()
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        took = time.monotonic() - started
        assert not failures, failures[:3]
        invocations = sum(scrape(n, "lamina_invocations_total") for n in cluster.nodes)
        colds = sum(scrape(n, "lamina_cold_starts_total") for n in cluster.nodes)
        envs = [environments(n, prefix) for n in cluster.nodes]
        routed = [
            {k: v for k, v in routing_decisions(n.endpoint).items() if v} for n in cluster.nodes
        ]
        return {
            "invocations": invocations,
            "colds": colds,
            "warm_hit": 1 - colds / invocations,
            "environments": envs,
            "throughput": len(draws) / took,
            "p50_ms": p(latencies, 50) * 1000,
            "p99_ms": p(latencies, 99) * 1000,
            "decisions": routed,
        }
    finally:
        cluster.stop()


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--functions", type=int, default=100)
    parser.add_argument("--invokes", type=int, default=3000)
    parser.add_argument("--clients", type=int, default=4)
    parser.add_argument("--max-environments", type=int, default=50)
    args = parser.parse_args()
    print(
        f"machine: {platform.machine()}, {os.cpu_count()} cores; "
        f"binary {os.environ.get('LAMINA_BIN', 'target/debug/lamina')}; {args.functions} functions, "
        f"{args.invokes} invokes (Zipf-like), {args.clients} clients through HAProxy, "
        f"--max-environments {args.max_environments} per node"
    )
    results = {}
    for routing in ("home", "local"):
        database_url, why = postgres_database()
        if database_url is None:
            sys.exit(f"PostgreSQL is needed: {why}")
        try:
            with tempfile.TemporaryDirectory() as directory:
                results[routing] = run(routing, args, database_url, directory)
        finally:
            drop_postgres_database(database_url)
        r = results[routing]
        print(
            f"\n--routing {routing}: warm-hit {r['warm_hit'] * 100:.1f} % "
            f"({r['colds']:.0f} cold starts in {r['invocations']:.0f} invocations), "
            f"environments per node {r['environments']}, {r['throughput']:.0f} invokes/s, "
            f"p50 {r['p50_ms']:.1f} ms, p99 {r['p99_ms']:.1f} ms"
        )
        print(f"  routing decisions per node: {json.dumps(r['decisions'])}")
    home, local = results["home"], results["local"]
    print(
        f"\nwarm-hit ratio: home routing {home['warm_hit'] * 100:.1f} % vs baseline "
        f"(every node serves what it receives) {local['warm_hit'] * 100:.1f} %; "
        f"cold starts {home['colds']:.0f} vs {local['colds']:.0f}; "
        f"p99 {home['p99_ms']:.1f} vs {local['p99_ms']:.1f} ms"
    )


if __name__ == "__main__":
    main()

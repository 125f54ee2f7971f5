"""The `python3.14` runtime, each figure next to its baseline in the same run, on one
`lamina up` node (embedded SQLite):

1. Cold start of a hello-world Python function: a new environment (instantiating the
   runtime, importing the handler's module at INIT) and its first answer, as the
   client sees it and as REPORT's Init Duration says. Baseline: the same for the Rust
   echo handler component. Anchor: Lambda's Python cold starts are 100-200 ms.
2. Warm Invoke over HTTP (SigV4, billing and metrics on), `wrk -t1 -c<connections>`:
   the Python hello-world function against the Rust echo function.
3. Memory of a warm Python environment: the node's RSS grown by `--environments`
   environments held busy at once, per environment, and REPORT's Max Memory Used.
   Baseline: the same for the Rust sleep handler. Target: <= 20 MB per environment.
4. The size of the runtime component and of its compiled artifact.
5. SnapStart: the cold start of a published version restored from its snapshot, against
   the same version's cold start with INIT, on a node whose idle environments stop after
   0.5 s, so each sample is a new environment of the same version. The handler imports
   a few modules at INIT (json, a helper module). Target: <= 10 ms from a snapshot.

Every cold start uses a new function of the same package, so the runtime is compiled
once (that compile is reported apart) and each figure is an environment's own start.

Needs the test venv (tests/requirements.txt), wrk, and a release lamina binary at
LAMINA_BIN (else target/release/lamina; guests/build.sh first).
Usage: .venv/bin/python bench/python.py [--cold 20] [--duration 10s] [--connections 16]
"""

import argparse
import base64
import concurrent.futures
import json
import os
import pathlib
import platform
import re
import statistics
import sys
import tempfile
import time

ROOT = pathlib.Path(__file__).resolve().parents[1]
os.environ.setdefault(
    "LAMINA_BIN",
    str(pathlib.Path(os.environ.get("CARGO_TARGET_DIR", ROOT / "target")) / "release" / "lamina"),
)
sys.path.insert(0, str(ROOT / "tests" / "compat"))
sys.path.insert(0, str(ROOT / "bench"))

from cluster_http import wrk, wrk_script  # noqa: E402
from conftest import ROLE, Lamina, environments_of, wasm_zip, zip_of  # noqa: E402

HELLO = b"def lambda_handler(event, context):\n    return {'hello': event.get('hello')}\n"
SLEEPER = b"import time\n\ndef lambda_handler(event, context):\n    time.sleep(event['ms'] / 1000)\n    return 'slept'\n"
RUNTIME = ROOT / "guests" / "target" / "runtimes" / "python.wasm"


def python_function(client, name, source):
    client.create_function(
        FunctionName=name, Runtime="python3.14", Role=ROLE, Handler="lambda_function.lambda_handler",
        Code={"ZipFile": zip_of({"lambda_function.py": source})}, MemorySize=128,
    )


def rust_function(client, name, fixture):
    client.create_function(
        FunctionName=name, Runtime="wasm", Role=ROLE, Handler="function.wasm",
        Code={"ZipFile": wasm_zip(fixture)}, MemorySize=128,
    )


def report(resp):
    log = base64.b64decode(resp["LogResult"]).decode()
    line = next(line for line in log.splitlines() if line.startswith("REPORT"))
    init = re.search(r"Init Duration: ([\d.]+) ms", line)
    used = re.search(r"Max Memory Used: (\d+) MB", line)
    return (float(init[1]) if init else None), int(used[1])


def cold_starts(client, prefix, create, count):
    """Client round trip and Init Duration of the first invoke of `count` new functions."""
    trips, inits, used = [], [], []
    for i in range(count):
        name = f"{prefix}-{i}"
        create(name)
        started = time.perf_counter()
        resp = client.invoke(FunctionName=name, Payload=b'{"hello": "world"}', LogType="Tail")
        trips.append((time.perf_counter() - started) * 1000)
        assert "FunctionError" not in resp, resp["Payload"].read()
        init, peak = report(resp)
        inits.append(init)
        used.append(peak)
    return statistics.median(trips), statistics.median(i for i in inits if i is not None), max(used)


SNAP_HANDLER = b"""import json
import helper

TABLE = {i: str(i) for i in range(10000)}

def lambda_handler(event, context):
    return {"hello": event.get("hello"), "helper": helper.VALUE, "size": len(TABLE)}
"""


def fresh_starts(node, client, name, qualifier, count):
    """Client round trip and REPORT's Init or Restore Duration of `count` first invokes
    of new environments of one version, each after the last one stopped."""
    trips, starts = [], []
    for _ in range(count):
        node.wait_for(lambda: environments_of(node, name) == 0, timeout=30, what="scale to zero")
        started = time.perf_counter()
        resp = client.invoke(FunctionName=name, Qualifier=qualifier, Payload=b'{"hello": 1}', LogType="Tail")
        trips.append((time.perf_counter() - started) * 1000)
        assert "FunctionError" not in resp, resp["Payload"].read()
        log = base64.b64decode(resp["LogResult"]).decode()
        found = re.search(r"(Init|Restore) Duration: ([\d.]+) ms", log)
        starts.append((found[1], float(found[2])))
    kinds = {kind for kind, _ in starts}
    assert len(kinds) == 1, kinds
    return statistics.median(trips), statistics.median(ms for _, ms in starts), kinds.pop()


def snapstart(directory, count):
    node = Lamina(pathlib.Path(directory) / "snap-node", extra=["--idle-timeout", "0.5"]).start()
    try:
        client = node.client()
        package = zip_of({"lambda_function.py": SNAP_HANDLER, "helper.py": b"VALUE = 'helper'\n"})
        rows = {}
        for label, snap in (("INIT (baseline)", "None"), ("SnapStart", "PublishedVersions")):
            name = f"py-{snap.lower()}"
            client.create_function(
                FunctionName=name, Runtime="python3.14", Role=ROLE, Handler="lambda_function.lambda_handler",
                Code={"ZipFile": package}, MemorySize=128, SnapStart={"ApplyOn": snap},
            )
            started = time.perf_counter()
            version = client.publish_version(FunctionName=name)
            publish_s = time.perf_counter() - started
            assert version["SnapStart"]["OptimizationStatus"] == ("On" if snap != "None" else "Off")
            rows[label] = (*fresh_starts(node, client, name, version["Version"], count), publish_s)
        print(f"\n5. SnapStart: a published version's new environment, median of {count} "
              "(client round trip / REPORT's Init or Restore Duration; PublishVersion took)")
        for label, (trip, start, kind, publish_s) in rows.items():
            print(f"   {label:18} {trip:8.2f} ms   {kind} {start:7.2f} ms   publish {publish_s:5.1f} s")
    finally:
        node.stop()


def rss_kb(pid):
    with open(f"/proc/{pid}/status") as f:
        return next(int(line.split()[1]) for line in f if line.startswith("VmRSS:"))


def held_environments(node, client, name, count, payload):
    """The node's RSS growth while `count` invocations of `name` run at once."""
    before = rss_kb(node.proc.pid)
    with concurrent.futures.ThreadPoolExecutor(count) as pool:
        calls = [pool.submit(client.invoke, FunctionName=name, Payload=json.dumps(payload)) for _ in range(count)]
        time.sleep(payload["ms"] / 2000)
        during = rss_kb(node.proc.pid)
        for call in calls:
            resp = call.result()
            assert "FunctionError" not in resp, resp["Payload"].read()
    return (during - before) / 1024 / count


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--cold", type=int, default=20)
    parser.add_argument("--duration", default="10s")
    parser.add_argument("--connections", type=int, default=16)
    parser.add_argument("--environments", type=int, default=20)
    args = parser.parse_args()
    print(
        f"machine: {platform.machine()}, {os.cpu_count()} cores; binary {os.environ['LAMINA_BIN']}; "
        f"wrk -t1 -c{args.connections} -d{args.duration}"
    )
    with tempfile.TemporaryDirectory() as directory:
        node = Lamina(pathlib.Path(directory) / "node", extra=["--idle-timeout", "600"]).start()
        try:
            client = node.client(max_pool_connections=32)
            cache = pathlib.Path(directory) / "node"
            compiled_before = sum(p.stat().st_size for p in cache.rglob("*") if p.is_file())
            started = time.perf_counter()
            python_function(client, "py-compile", HELLO)
            client.invoke(FunctionName="py-compile", Payload=b"{}")
            compile_s = time.perf_counter() - started
            compiled_after = sum(p.stat().st_size for p in cache.rglob("*") if p.is_file())
            rust_function(client, "rust-compile", "echo")
            client.invoke(FunctionName="rust-compile", Payload=b"{}")

            py = cold_starts(client, "py-cold", lambda n: python_function(client, n, HELLO), args.cold)
            rust = cold_starts(client, "rust-cold", lambda n: rust_function(client, n, "echo"), args.cold)
            print(f"\n1. cold start, median of {args.cold} (client round trip / Init Duration / Max Memory Used)")
            print(f"   python3.14 hello     {py[0]:8.2f} ms   {py[1]:8.2f} ms   {py[2]} MB")
            print(f"   Rust echo (baseline) {rust[0]:8.2f} ms   {rust[1]:8.2f} ms   {rust[2]} MB")

            rows = {}
            for label, name in (("python3.14 hello", "py-compile"), ("Rust echo (baseline)", "rust-compile")):
                script = wrk_script(node.endpoint, name, directory)
                rows[label] = wrk(node.endpoint, name, script, args.duration, args.connections)
            print("\n2. warm Invoke over HTTP")
            for label, (rate, p50, p99) in rows.items():
                print(f"   {label:22} {rate:10.0f} req/s   p50 {p50:>8}   p99 {p99:>8}")
            ratio = rows["python3.14 hello"][0] / rows["Rust echo (baseline)"][0]
            print(f"   python / Rust: {ratio:.2f}x")

            python_function(client, "py-sleep", SLEEPER)
            rust_function(client, "rust-sleep", "sleep")
            payload = {"ms": 2000}
            py_mb = held_environments(node, client, "py-sleep", args.environments, payload)
            rust_mb = held_environments(node, client, "rust-sleep", args.environments, payload)
            print(f"\n3. node RSS per busy environment, {args.environments} at once")
            print(f"   python3.14           {py_mb:8.1f} MB (target <= 20 MB)")
            print(f"   Rust sleep (baseline) {rust_mb:7.1f} MB")

            print("\n4. sizes")
            print(f"   runtime component {RUNTIME.stat().st_size / 2**20:.1f} MB")
            print(f"   the data directory grew {(compiled_after - compiled_before) / 2**20:.1f} MB "
                  f"with its compiled artifact (compiled in {compile_s:.1f} s)")
        finally:
            node.stop()
        snapstart(directory, args.cold)


if __name__ == "__main__":
    main()

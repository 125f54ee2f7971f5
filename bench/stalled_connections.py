#!/usr/bin/env python3
"""Signed invoke latency with and without thousands of stalled client connections.

Starts a private `lamina up` (LAMINA_BIN, default target/release/lamina) on 127.0.0.1,
creates an `echo` function, and times sequential boto3 invokes twice in the same run:
first on a quiet node, then while STALLED connections (default 5,000) each hold half a
request header. Connections the node closes (after its header-read timeout) are opened
again at once, as an attacker would, so the count stays up for the whole measurement.

    .venv/bin/python bench/stalled_connections.py [--stalled 5000] [--invokes 200]

Needs guests/build.sh (for the echo fixture). Raises its own file-handle limit as far as
the hard limit allows. Everything stays on 127.0.0.1 and the run stops after --deadline
seconds whatever happens.
"""

import argparse
import json
import os
import pathlib
import resource
import selectors
import socket
import statistics
import sys
import tempfile
import threading
import time

ROOT = pathlib.Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "tests" / "compat"))
os.environ.setdefault("LAMINA_BIN", str(ROOT / "target" / "release" / "lamina"))

from conftest import ROLE, Lamina, wasm_zip  # noqa: E402

HALF_HEADER = b"POST /2015-03-31/functions/f/invocations HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Le"


class Stalled:
    """Keeps `count` connections to `addr` each stalled in the middle of a header."""

    def __init__(self, addr, count):
        self.addr = addr
        self.count = count
        self.selector = selectors.DefaultSelector()
        self.reopened = 0
        self.failed = 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._keep, daemon=True)

    def _open(self):
        s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        s.setblocking(False)
        try:
            s.connect(self.addr)
        except BlockingIOError:
            pass
        self.selector.register(s, selectors.EVENT_WRITE)
        return s

    def open_all(self):
        for _ in range(self.count):
            self._open()
        self._thread.start()
        return self

    def held(self):
        return len(self.selector.get_map())

    def _keep(self):
        while not self._stop.is_set():
            for key, events in self.selector.select(timeout=0.2):
                s = key.fileobj
                if events & selectors.EVENT_WRITE:
                    # Connected (or refused): send half a header, then wait for the close.
                    try:
                        s.send(HALF_HEADER)
                        self.selector.modify(s, selectors.EVENT_READ)
                        continue
                    except OSError:
                        self.failed += 1
                try:
                    data = s.recv(4096) if events & selectors.EVENT_READ else b""
                except OSError:
                    data = b""
                if data:
                    continue
                self.selector.unregister(s)
                s.close()
                self.reopened += 1
                self._open()

    def close(self):
        self._stop.set()
        self._thread.join()
        for key in list(self.selector.get_map().values()):
            key.fileobj.close()
        self.selector.close()


def timed_invokes(client, name, n):
    payload = json.dumps({"bench": "stalled"}).encode()
    took = []
    for _ in range(n):
        start = time.perf_counter()
        resp = client.invoke(FunctionName=name, Payload=payload)
        assert resp["Payload"].read() == payload and "FunctionError" not in resp, resp
        took.append((time.perf_counter() - start) * 1000)
    return took


def summary(ms):
    q = statistics.quantiles(ms, n=100, method="inclusive")
    return {"p50_ms": round(q[49], 2), "p99_ms": round(q[98], 2), "max_ms": round(max(ms), 2)}


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--stalled", type=int, default=5000)
    parser.add_argument("--invokes", type=int, default=200)
    parser.add_argument("--deadline", type=float, default=600, help="seconds for the whole run")
    parser.add_argument("--extra", default="", help="more `lamina up` flags, space-separated")
    args = parser.parse_args()

    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    want = args.stalled + 1024
    if soft < want:
        resource.setrlimit(resource.RLIMIT_NOFILE, (min(want, hard), hard))
    if resource.getrlimit(resource.RLIMIT_NOFILE)[0] < want:
        sys.exit(f"need {want} file handles, the hard limit is {hard}")
    # The node inherits the raised limit, so it is not the first to run out.
    threading.Timer(args.deadline, lambda: os._exit(3)).start()

    node = Lamina(tempfile.mkdtemp(prefix="lamina-bench-"), extra=args.extra.split()).start()
    stalled = None
    try:
        client = node.client()
        name = "bench-echo"
        client.create_function(
            FunctionName=name, Runtime="wasm", Role=ROLE, Handler="function.wasm",
            Code={"ZipFile": wasm_zip("echo")},
        )
        timed_invokes(client, name, 10)  # warm the environment and the connection pool
        quiet = timed_invokes(client, name, args.invokes)

        host, port = node.endpoint.removeprefix("http://").rsplit(":", 1)
        assert host == "127.0.0.1", node.endpoint
        # Each connection the node accepts is one socket in its fd table.
        fds = lambda: len(os.listdir(f"/proc/{node.proc.pid}/fd"))  # noqa: E731
        base = fds()
        stalled = Stalled((host, int(port)), args.stalled).open_all()
        deadline = time.monotonic() + 60
        while fds() < base + args.stalled * 0.95 and time.monotonic() < deadline:
            time.sleep(0.1)
        accepted = fds() - base
        under_attack = timed_invokes(client, name, args.invokes)
        result = {
            "invokes": args.invokes,
            "stalled_connections": args.stalled,
            "stalled_accepted_by_node": accepted,
            "stalled_reopened_after_close": stalled.reopened,
            "quiet": summary(quiet),
            "with_stalled": summary(under_attack),
            "binary": os.environ["LAMINA_BIN"],
        }
        print(json.dumps(result, indent=2))
    finally:
        if stalled:
            stalled.close()
        node.stop()
    os._exit(0)


if __name__ == "__main__":
    main()

"""Hostile guests through the real API: reaching outside the sandbox's files, opening
sockets, allocating far past MemorySize, unbounded recursion, an endless loop, flooding
stdout, and a burst of all of them at once. Then hostile clients: connections that send
half a request, or nothing, and more of them than the node serves at once.

Each must end as Lambda ends it (200 with FunctionError "Unhandled" and an
errorType/errorMessage body, or the probe's own refusal) and leave the node healthy: an
`echo` function still answers, /metrics still scrapes, and the lamina process's
resident memory stays bounded.
"""

import base64
import concurrent.futures
import json
import os
import socket
import threading
import time

import pytest
import requests

from conftest import ROLE, unique, wasm_zip
from test_observability import scrape, value

MIB = 1 << 20
# Host memory a hostile invocation may add to the lamina process, in kB.
RSS_HEADROOM_KB = 512 * 1024
# wasi-libc's errno values, which Rust prints as "(os error N)".
EACCES, ENOENT, EPERM = 2, 44, 63
SOCKET_REFUSED = f"Permission denied (os error {EACCES})"
LOOKUP_REFUSED = "failed to lookup address information: Non-recoverable error"


def body(resp):
    return json.loads(resp["Payload"].read())


def request_id(resp):
    return resp["ResponseMetadata"]["RequestId"]


def invoke(client, name, event=None, **kwargs):
    return client.invoke(FunctionName=name, Payload=json.dumps(event or {}).encode(), **kwargs)


def unhandled(resp):
    """The error body of a failed invocation, after checking Lambda's shape for it."""
    assert (resp["StatusCode"], resp.get("FunctionError")) == (200, "Unhandled"), resp
    error = body(resp)
    assert set(error) == {"errorType", "errorMessage"}, error
    return error


def exit_error(rid, reason):
    return {
        "errorType": "Runtime.ExitError",
        "errorMessage": f"RequestId: {rid} Error: Runtime exited with error: {reason}",
    }


def out_of_memory(rid, memory_mb=128):
    return {
        "errorType": "Runtime.OutOfMemory",
        "errorMessage": f"RequestId: {rid} Error: Runtime exited with error: "
        f"memory limit of {memory_mb} MB exceeded",
    }


def timed_out(rid, seconds=1):
    return {
        "errorType": "Sandbox.Timedout",
        "errorMessage": f"RequestId: {rid} Error: Task timed out after {seconds:.2f} seconds",
    }


def status_kb(pid, field):
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith(f"{field}:"):
                return int(line.split()[1])
    raise AssertionError(f"no {field} in /proc/{pid}/status")


class PeakRss:
    """The peak resident set size of a process while the block runs, in kB: samples
    taken every few milliseconds and, where /proc lets us reset it on entry, the
    kernel's own high-water mark, which also sees spikes between samples."""

    def __init__(self, pid):
        self.pid = pid
        self.baseline = self.peak = 0
        self.hwm_reset = False
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._sample, daemon=True)

    def _sample(self):
        while not self._stop.wait(0.005):
            self.peak = max(self.peak, status_kb(self.pid, "VmRSS"))

    def __enter__(self):
        self.baseline = self.peak = status_kb(self.pid, "VmRSS")
        try:
            with open(f"/proc/{self.pid}/clear_refs", "w") as f:
                f.write("5")
            self.hwm_reset = True
        except OSError:
            pass
        self._thread.start()
        return self

    def __exit__(self, *exc):
        self._stop.set()
        self._thread.join()
        self.peak = max(self.peak, status_kb(self.pid, "VmRSS"))
        if self.hwm_reset:
            self.peak = max(self.peak, status_kb(self.pid, "VmHWM"))

    @property
    def growth(self):
        return self.peak - self.baseline

    def __repr__(self):
        return (
            f"PeakRss(baseline={self.baseline} kB, peak={self.peak} kB, "
            f"hwm_reset={self.hwm_reset})"
        )


@pytest.fixture
def healthy(lamina, client, make_function):
    """Checks the node is still fine: the process lives, a fresh echo function answers
    and /metrics scrapes. Called once on setup, then by the test after its abuse."""
    echo = make_function("echo")

    def check():
        assert lamina.proc.poll() is None, "".join(lamina.output[-50:])
        resp = client.invoke(FunctionName=echo, Payload=b'{"still": "here"}')
        assert "FunctionError" not in resp
        assert resp["Payload"].read() == b'{"still": "here"}'
        assert requests.get(f"{lamina.endpoint}/metrics", timeout=30).status_code == 200

    check()
    return check


@pytest.fixture
def listener():
    """A local TCP listener no guest should ever reach."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        s.listen(64)
        yield s


def assert_never_connected(listener):
    # A guest's connect returns before its invocation does, so a connection it made
    # would already be waiting in the backlog.
    listener.settimeout(0.2)
    with pytest.raises(TimeoutError):
        conn, peer = listener.accept()
        conn.close()
        pytest.fail(f"the listener accepted a connection from {peer}")


def test_only_var_task_and_tmp_are_visible(client, make_function, healthy):
    name = make_function("env-dump")
    resp = client.invoke(FunctionName=name, Payload=b"{}")
    assert "FunctionError" not in resp
    seen = body(resp)
    # Nothing of the host's file system outside the two preopens exists for the guest.
    assert seen["etc_passwd"] == f"No such file or directory (os error {ENOENT})"
    assert seen["var_task"] == ["function.wasm"]
    assert seen["opt"] == f"No such file or directory (os error {ENOENT})", "no layers, no /opt"
    assert seen["var_task_write"] == f"Operation not permitted (os error {EPERM})"
    assert seen["tmp_write"] == "ok"
    healthy()


@pytest.mark.parametrize(
    "variables",
    [
        {},
        # LAMINA_ALLOWED_HOSTS opens outbound HTTP (wasi:http) to the hosts it lists;
        # raw sockets stay closed whatever it says.
        {"LAMINA_ALLOWED_HOSTS": "127.0.0.1,localhost"},
    ],
    ids=["default", "allowed-hosts"],
)
def test_sockets_are_refused(client, make_function, healthy, listener, variables):
    name = make_function("faults", Environment={"Variables": variables})
    port = listener.getsockname()[1]
    for addr, refusal in [
        (f"127.0.0.1:{port}", SOCKET_REFUSED),
        # Name lookup is refused too, before any connection is tried.
        (f"localhost:{port}", LOOKUP_REFUSED),
    ]:
        resp = invoke(client, name, {"kind": "connect", "addr": addr})
        assert unhandled(resp) == {"errorType": "ConnectError", "errorMessage": refusal}, addr
    assert_never_connected(listener)
    # A refused connection is the guest's own handled error: its environment stays.
    ok = invoke(client, name, {})
    assert "FunctionError" not in ok and body(ok) == {"ok": True}
    healthy()


def test_allocating_gigabytes_is_out_of_memory(lamina, client, make_function, healthy):
    name = make_function("memory-hog", MemorySize=128)
    with PeakRss(lamina.proc.pid) as rss:
        # 4 GiB is all of wasm32's address space: the guest cannot even ask for it, and
        # Rust's allocator panics in the guest before the host sees any request.
        resp = invoke(client, name, {"mb": 4096})
        error = unhandled(resp)
        assert error["errorType"] == "Runtime.ExitError"
        prefix = f"RequestId: {request_id(resp)} Error: Runtime exited with error: panicked at "
        assert error["errorMessage"].startswith(prefix), error
        assert error["errorMessage"].endswith(": capacity overflow"), error

        # Keep 100 MB, then ask for 2047 MB, the largest single allocation wasm32 Rust
        # can make: the host refuses the memory growth and reports out of memory.
        held = invoke(client, name, {"mb": 100})
        assert "FunctionError" not in held and body(held) == {"allocated_mb": 100}
        resp = invoke(client, name, {"mb": 2047})
        assert unhandled(resp) == out_of_memory(request_id(resp))

        # The environment holding 100 MB is gone: a fresh one has room for 100 MB again.
        again = invoke(client, name, {"mb": 100})
        assert "FunctionError" not in again and body(again) == {"allocated_mb": 100}
    assert rss.growth < RSS_HEADROOM_KB, rss
    healthy()


def test_unbounded_recursion_is_a_stack_overflow(client, make_function, healthy):
    name = make_function("faults")
    resp = invoke(client, name, {"kind": "stack-overflow"})
    assert unhandled(resp) == exit_error(request_id(resp), "wasm trap: call stack exhausted")
    # The overflowed instance is replaced and the function keeps working.
    ok = invoke(client, name, {})
    assert "FunctionError" not in ok and body(ok) == {"ok": True}
    healthy()


def test_endless_loop_times_out(client, make_function, healthy):
    name = make_function("spin", Timeout=1)
    started = time.monotonic()
    resp = invoke(client, name, {}, LogType="Tail")
    elapsed = time.monotonic() - started
    rid = request_id(resp)
    assert unhandled(resp) == timed_out(rid)
    # Epoch interruption stops a loop that never calls the host, shortly after the deadline.
    assert 1.0 <= elapsed < 5.0, elapsed
    report = base64.b64decode(resp["LogResult"]).decode().split("\n")[-2]
    assert report.startswith(f"REPORT RequestId: {rid}\t"), report
    assert report.endswith("\tStatus: timeout"), report
    healthy()


def test_stdout_flood_is_bounded(lamina, client, make_function, healthy):
    name = make_function("log-flood")
    flood = 50 * MIB
    # Warm first, so the measurement below sees the flood, not compiling and starting.
    assert body(invoke(client, name, {"bytes": 64})) == {"written": 64}
    with PeakRss(lamina.proc.pid) as rss:
        resp = invoke(client, name, {"bytes": flood}, LogType="Tail")
        assert "FunctionError" not in resp
        assert body(resp) == {"written": flood}
    tail = base64.b64decode(resp["LogResult"])
    assert len(tail) <= 4096
    lines = tail.decode().split("\n")
    rid = request_id(resp)
    # A node keeps the first 1 MiB of an invocation's output and counts the rest.
    assert lines[-4] == f"[lamina] log output truncated: {flood - MIB} bytes dropped", lines[-4:]
    assert lines[-3] == f"END RequestId: {rid}"
    assert lines[-2].startswith(f"REPORT RequestId: {rid}\t")
    # Holding the flood anywhere would take 50 MB; the bound is well below that.
    assert rss.growth < 32 * 1024, rss
    healthy()


def test_burst_of_hostile_invocations(lamina, make_function, healthy, listener):
    client = lamina.client(max_pool_connections=50)
    faults = make_function("faults")
    hog = make_function("memory-hog", MemorySize=128)
    spin = make_function("spin", Timeout=1)
    flood = make_function("log-flood")
    env_dump = make_function("env-dump")
    addr = f"127.0.0.1:{listener.getsockname()[1]}"

    def crash(reason):
        return lambda rid, resp: unhandled(resp) == exit_error(rid, reason)

    def sandboxed(rid, resp):
        seen = body(resp)
        return "FunctionError" not in resp and (seen["etc_passwd"], seen["tmp_write"]) == (
            f"No such file or directory (os error {ENOENT})",
            "ok",
        )

    # (function, event, whether the response is the expected one), five of each.
    kinds = [
        (faults, {"kind": "stack-overflow"}, crash("wasm trap: call stack exhausted")),
        (faults, {"kind": "oob"}, crash("wasm trap: out of bounds memory access")),
        (faults, {"kind": "divide-by-zero"}, crash("wasm trap: integer divide by zero")),
        (faults, {"kind": "abort"}, crash("wasm trap: wasm `unreachable` instruction executed")),
        (faults, {"kind": "exit"}, crash("exit status 1")),
        (
            faults,
            {"kind": "connect", "addr": addr},
            lambda rid, resp: unhandled(resp)
            == {"errorType": "ConnectError", "errorMessage": SOCKET_REFUSED},
        ),
        (hog, {"mb": 2047}, lambda rid, resp: unhandled(resp) == out_of_memory(rid)),
        (spin, {}, lambda rid, resp: unhandled(resp) == timed_out(rid)),
        (
            flood,
            {"bytes": 8 * MIB},
            lambda rid, resp: "FunctionError" not in resp and body(resp) == {"written": 8 * MIB},
        ),
        (env_dump, {}, sandboxed),
    ]
    jobs = kinds * 5
    barrier = threading.Barrier(len(jobs))

    def run(job):
        name, event, expected = job
        barrier.wait()
        resp = invoke(client, name, event)
        return name, event, expected(request_id(resp), resp)

    with PeakRss(lamina.proc.pid) as rss:
        with concurrent.futures.ThreadPoolExecutor(len(jobs)) as pool:
            results = list(pool.map(run, jobs))
    wrong = [(name, event) for name, event, ok in results if not ok]
    assert not wrong, wrong
    assert rss.growth < RSS_HEADROOM_KB, rss
    assert_never_connected(listener)

    # Every invocation was counted under the outcome it ended with.
    expected = {
        (faults, "function_error"): 30,
        (hog, "out_of_memory"): 5,
        (spin, "timeout"): 5,
        (flood, "success"): 5,
        (env_dump, "success"): 5,
    }

    def counted():
        text = scrape(lamina)
        return {
            key: value(text, "lamina_invocations_total", function=key[0], outcome=key[1])
            for key in expected
        }

    deadline = time.monotonic() + 10
    while counted() != expected and time.monotonic() < deadline:
        time.sleep(0.1)
    assert counted() == expected
    healthy()


# Hostile clients: connections that never finish a request.

HALF_HEADER = b"POST /2015-03-31/functions/f/invocations HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Le"
H2_PREFACE = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n"
H2_EMPTY_SETTINGS = b"\x00\x00\x00\x04\x00\x00\x00\x00\x00"


def address(node):
    host, port = node.endpoint.split("://", 1)[1].rsplit(":", 1)
    return host, int(port)


def stall(node, first=HALF_HEADER):
    """A connection to the node that sends `first` and then nothing."""
    s = socket.create_connection(address(node), timeout=30)
    if first:
        s.sendall(first)
    return s


def seconds_until_closed(s, limit=15):
    """How long until the node closes `s` (whatever it answers first)."""
    start = time.monotonic()
    s.settimeout(limit)
    try:
        while s.recv(65536):
            pass
    except TimeoutError:
        return float("inf")
    except (ConnectionResetError, OSError):
        # A reset, or a TLS connection cut without close_notify: closed all the same.
        pass
    return time.monotonic() - start


def fds(pid):
    return len(os.listdir(f"/proc/{pid}/fd"))


def test_stalled_and_idle_connections_are_closed(tmp_node):
    node = tmp_node(extra=["--header-read-timeout", "1"])
    sockets = {
        "nothing sent": stall(node, b""),
        "half a header": stall(node),
        "half an HTTP/2 preface": stall(node, H2_PREFACE[:10]),
        "HTTP/2 without a request": stall(node, H2_PREFACE + H2_EMPTY_SETTINGS),
        "idle after a request": stall(node, b"GET /metrics HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n"),
    }
    with concurrent.futures.ThreadPoolExecutor(len(sockets)) as pool:
        closed = dict(zip(sockets, pool.map(seconds_until_closed, sockets.values())))
    for s in sockets.values():
        s.close()
    # One second of timeout, plus a margin for a loaded machine.
    assert all(0.5 < t < 5 for t in closed.values()), closed


def test_more_stalled_connections_than_the_bound(tmp_node):
    bound, stalled_count = 16, 48
    node = tmp_node(extra=["--header-read-timeout", "2", "--max-connections", str(bound)])
    setup = node.client()
    name = setup.create_function(
        FunctionName=unique("echo"), Runtime="wasm", Role=ROLE, Handler="function.wasm",
        Code={"ZipFile": wasm_zip("echo")},
    )["FunctionName"]
    base = fds(node.proc.pid)
    stalled = [stall(node) for _ in range(stalled_count)]
    try:
        # The node holds at most `bound` of them (one slot may still be the setup
        # client's idle connection); the rest wait in the listen backlog.
        node.wait_for(lambda: fds(node.proc.pid) >= base + bound - 1, what="accepted stalls")
        assert fds(node.proc.pid) <= base + bound + 4, (base, fds(node.proc.pid))
        started = time.monotonic()
        resp = node.client().invoke(FunctionName=name, Payload=b'{"through": "the queue"}')
        assert resp["Payload"].read() == b'{"through": "the queue"}'
        # Behind at most stalled_count / bound rounds of the header-read timeout.
        assert time.monotonic() - started < 2 * (stalled_count / bound) + 10
        # The ones that waited were served (and closed for stalling) in their turn.
        with concurrent.futures.ThreadPoolExecutor(stalled_count) as pool:
            closed = list(pool.map(lambda s: seconds_until_closed(s, 30), stalled))
        assert all(t < 30 for t in closed), closed
    finally:
        for s in stalled:
            s.close()


def test_stalled_tls_connections_are_closed(tmp_node, tmp_path):
    import ssl

    import trustme

    ca = trustme.CA()
    cert = ca.issue_cert("127.0.0.1")
    cert.private_key_pem.write_to_path(str(tmp_path / "key.pem"))
    cert.cert_chain_pems[0].write_to_path(str(tmp_path / "cert.pem"))
    node = tmp_node(
        extra=[
            "--tls-cert", str(tmp_path / "cert.pem"),
            "--tls-key", str(tmp_path / "key.pem"),
            "--header-read-timeout", "1",
        ]
    )
    context = ssl.create_default_context()
    ca.configure_trust(context)
    after_handshake = context.wrap_socket(stall(node, b""), server_hostname="127.0.0.1")
    after_handshake.sendall(HALF_HEADER)
    sockets = {
        "no handshake": stall(node, b""),
        "half a ClientHello": stall(node, b"\x16\x03\x01\x02\x00\x01"),
        "half a header": after_handshake,
    }
    with concurrent.futures.ThreadPoolExecutor(len(sockets)) as pool:
        closed = dict(zip(sockets, pool.map(seconds_until_closed, sockets.values())))
    for s in sockets.values():
        s.close()
    assert all(0.5 < t < 5 for t in closed.values()), closed

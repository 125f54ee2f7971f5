"""The billing ledger: one row per invocation with Lambda's billing arithmetic, written in
batches off the request path, and never missing a completed invocation, whether the node
stops gracefully or is killed with SIGKILL."""

import json
import math
import threading
import time

import requests

from conftest import ACCOUNT, ROLE, signed, unique, wasm_zip

COLUMNS = (
    "request_id, attempt, account_id, function_name, executed_version, invocation_type, "
    "init_ms, duration_ms, billed_ms, memory_size_mb, gb_seconds, outcome, error_type, "
    "start_kind, request_bytes, response_bytes, cost_usd"
)


def rows_for(node, name):
    names = [c.strip() for c in COLUMNS.split(",")]
    rows = node.query(
        f"SELECT {COLUMNS} FROM invocations WHERE function_name = ? ORDER BY started_at_us",
        (name,),
    )
    return [dict(zip(names, row)) for row in rows]


def wait_rows(node, name, n, timeout=10):
    return node.wait_for(
        lambda: (rows := rows_for(node, name)) and len(rows) >= n and rows,
        timeout=timeout,
        what=f"{n} ledger rows for {name}",
    )


def status(node):
    r = signed("GET", f"{node.endpoint}/lamina/status")
    assert r.status_code == 200, r.text
    return r.json()


def wait_written(node):
    """Waits until the spool holds nothing the database lacks. A row is spooled before its
    invocation answers, so every row of an answered invocation is then in the table, and
    counting them cannot race the writer."""
    node.wait_for(
        lambda: status(node)["Ledger"]["BacklogRecords"] == 0,
        timeout=30,
        what="the ledger backlog to drain",
    )


def in_flight(node, name):
    return sum(p["FunctionInFlight"] for p in status(node)["Pools"] if p["FunctionName"] == name)


def check_billing(row):
    exact = row["init_ms"] + row["duration_ms"]
    assert row["billed_ms"] == math.ceil(exact - 1e-6), row
    expected_gbs = row["billed_ms"] / 1000 * row["memory_size_mb"] / 1024
    assert math.isclose(row["gb_seconds"], expected_gbs, rel_tol=1e-9, abs_tol=1e-15), row
    expected_cost = 0.20 / 1_000_000 + expected_gbs * 0.0000166667
    assert math.isclose(row["cost_usd"], expected_cost, rel_tol=1e-9), row


def test_one_row_per_invocation_with_lambdas_billing(lamina, client, make_function):
    name = make_function("echo", MemorySize=256)
    sent = {}
    started = time.time()
    for i in range(6):
        payload = json.dumps({"i": i}).encode()
        resp = client.invoke(FunctionName=name, Payload=payload)
        sent[resp["ResponseMetadata"]["RequestId"]] = (len(payload), len(resp["Payload"].read()))
    rows = wait_rows(lamina, name, 6, timeout=5)
    assert time.time() - started < 8, "the batched writer is too slow"
    wait_written(lamina)
    rows = rows_for(lamina, name)
    assert len(rows) == 6, rows
    assert {r["request_id"] for r in rows} == set(sent)
    assert [r["start_kind"] for r in rows] == ["cold"] + ["warm"] * 5
    assert rows[0]["init_ms"] > 0 and all(r["init_ms"] == 0 for r in rows[1:])
    for r in rows:
        assert (r["attempt"], r["account_id"], r["executed_version"]) == (1, ACCOUNT, "$LATEST")
        assert (r["invocation_type"], r["outcome"], r["error_type"]) == (
            "request_response",
            "success",
            None,
        )
        assert r["memory_size_mb"] == 256
        assert (r["request_bytes"], r["response_bytes"]) == sent[r["request_id"]]
        check_billing(r)


def test_failures_and_other_invocation_types_are_recorded(lamina, client, make_function):
    faults = make_function("faults")
    err = client.invoke(FunctionName=faults, Payload=b'{"kind": "error"}')
    crash = client.invoke(FunctionName=faults, Payload=b'{"kind": "unreachable"}')
    sleeper = make_function("sleep", Timeout=1)
    timeout = client.invoke(FunctionName=sleeper, Payload=b'{"ms": 3000}')
    echo = make_function("echo")
    event = client.invoke(FunctionName=echo, InvocationType="Event", Payload=b'{"async": 1}')
    config = client.create_function_url_config(FunctionName=echo, AuthType="NONE")
    url_call = requests.get(config["FunctionUrl"], timeout=30)
    assert url_call.status_code == 200

    by_id = {r["request_id"]: r for r in wait_rows(lamina, faults, 2)}
    assert (by_id[err["ResponseMetadata"]["RequestId"]]["outcome"],
            by_id[err["ResponseMetadata"]["RequestId"]]["error_type"]) == ("function_error", "MyError")
    assert (by_id[crash["ResponseMetadata"]["RequestId"]]["outcome"],
            by_id[crash["ResponseMetadata"]["RequestId"]]["error_type"]) == (
        "function_error",
        "Runtime.ExitError",
    )
    [row] = wait_rows(lamina, sleeper, 1)
    assert row["request_id"] == timeout["ResponseMetadata"]["RequestId"]
    assert (row["outcome"], row["error_type"]) == ("timeout", "Sandbox.Timedout")
    assert 1000 <= row["billed_ms"] < 1600
    check_billing(row)

    rows = wait_rows(lamina, echo, 2, timeout=15)
    kinds = {r["invocation_type"]: r for r in rows}
    assert set(kinds) == {"event", "function_url"}
    assert kinds["event"]["request_id"] == event["ResponseMetadata"]["RequestId"]
    assert kinds["function_url"]["request_id"] == url_call.headers["x-amzn-RequestId"]
    for r in rows:
        assert r["outcome"] == "success"
        check_billing(r)


def test_throttles_are_not_billed(lamina, client, make_function):
    name = make_function("echo")
    client.invoke(FunctionName=name)
    client.put_function_concurrency(FunctionName=name, ReservedConcurrentExecutions=0)
    try:
        client.invoke(FunctionName=name)
    except client.exceptions.TooManyRequestsException:
        pass
    client.delete_function_concurrency(FunctionName=name)
    client.invoke(FunctionName=name)
    wait_rows(lamina, name, 2)
    wait_written(lamina)
    assert len(rows_for(lamina, name)) == 2


def test_kill_9_loses_no_completed_invocation(tmp_node):
    node = tmp_node()
    client = node.client()
    name = unique("crash")
    client.create_function(
        FunctionName=name,
        Runtime="wasm",
        Role=ROLE,
        Handler="function.wasm",
        Code={"ZipFile": wasm_zip("sleep")},
    )
    completed = []
    lock = threading.Lock()
    stop = threading.Event()

    def hammer():
        c = node.client()
        while not stop.is_set():
            try:
                resp = c.invoke(FunctionName=name, Payload=b'{"ms": 5}')
            except Exception:  # noqa: BLE001 - the node is being killed
                return
            if resp["StatusCode"] == 200 and "FunctionError" not in resp:
                resp["Payload"].read()
                with lock:
                    completed.append(resp["ResponseMetadata"]["RequestId"])

    threads = [threading.Thread(target=hammer) for _ in range(6)]
    for t in threads:
        t.start()
    node.wait_for(lambda: len(completed) >= 30, timeout=30, what="invocations before the kill")
    node.kill9()
    stop.set()
    for t in threads:
        t.join(timeout=30)
    assert len(completed) >= 30

    restarted = tmp_node(node.data_dir)
    wanted = set(completed)

    def all_present():
        rows = restarted.query("SELECT request_id FROM invocations WHERE function_name = ?", (name,))
        return wanted <= {r[0] for r in rows}

    restarted.wait_for(all_present, timeout=20, what="every completed invocation's ledger row")
    rows = restarted.query(
        "SELECT request_id, COUNT(*) FROM invocations WHERE function_name = ? GROUP BY request_id",
        (name,),
    )
    assert all(count == 1 for _, count in rows)
    # The restarted node still serves the function.
    assert restarted.client().invoke(FunctionName=name, Payload=b'{"ms": 1}')["StatusCode"] == 200


def test_sigterm_lets_in_flight_invocations_finish(tmp_node):
    node = tmp_node()
    client = node.client()
    name = unique("drain")
    client.create_function(
        FunctionName=name,
        Runtime="wasm",
        Role=ROLE,
        Handler="function.wasm",
        Timeout=10,
        Code={"ZipFile": wasm_zip("sleep")},
    )
    client.invoke(FunctionName=name, Payload=b'{"ms": 1}')  # warm, so the slow call is in flight soon
    result = {}

    def slow():
        try:
            resp = client.invoke(FunctionName=name, Payload=b'{"ms": 2500}')
            result["status"] = resp["StatusCode"]
            result["payload"] = json.loads(resp["Payload"].read())
            result["request_id"] = resp["ResponseMetadata"]["RequestId"]
        except Exception as e:  # noqa: BLE001 - reported by the assertion below
            result["error"] = e

    t = threading.Thread(target=slow)
    t.start()
    node.wait_for(lambda: in_flight(node, name) >= 1, what="the slow invocation in flight")
    started = time.time()
    assert node.stop(timeout=30) == 0
    t.join(timeout=30)
    assert "error" not in result, result
    assert (result["status"], result["payload"]) == (200, {"slept_ms": 2500})
    assert time.time() - started >= 1.0, "the node stopped before the invocation finished"
    # The stopped node flushed its ledger: the row is in the database without a restart.
    rows = node.query(
        "SELECT outcome FROM invocations WHERE request_id = ?", (result["request_id"],)
    )
    assert rows == [("success",)]

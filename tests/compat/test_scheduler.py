"""Lambda's execution semantics through boto3 against a running Lamina: warm reuse,
scale to zero, throttling, provisioned concurrency, weighted aliases, async retries,
destinations, event age, and the async queue across a kill -9."""

import base64
import concurrent.futures
import json
import threading
import time
import uuid

import pytest

from conftest import ROLE, environments_of, unique, wasm_zip


def create(client, fixture, name=None, **kwargs):
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
    return name


def invoke_json(client, name, payload=None, **kwargs):
    r = client.invoke(FunctionName=name, Payload=json.dumps(payload or {}), **kwargs)
    return r, json.loads(r["Payload"].read())


def tail(resp):
    return base64.b64decode(resp["LogResult"]).decode()


def test_warm_environments_are_reused(client, make_function):
    name = make_function("counter")
    counts = [invoke_json(client, name)[1]["count"] for _ in range(5)]
    assert counts == [1, 2, 3, 4, 5]
    r, _ = invoke_json(client, name, LogType="Tail")
    assert "Init Duration" not in tail(r)


def test_idle_environments_scale_to_zero(tmp_node):
    node = tmp_node(extra=["--idle-timeout", "1"])
    client = node.client()
    name = create(client, "counter")
    first, _ = invoke_json(client, name, LogType="Tail")
    assert "Init Duration" in tail(first)
    assert invoke_json(client, name)[1]["count"] == 2
    node.wait_for(
        lambda: environments_of(node, name) == 0,
        timeout=30,
        what="the idle environment to be reclaimed",
    )
    r, body = invoke_json(client, name, LogType="Tail")
    assert body["count"] == 1, "a new environment after the idle timeout"
    assert "Init Duration" in tail(r)


def parallel(fn, n):
    """Runs `fn` n times at once: every thread waits at a barrier before calling."""
    barrier = threading.Barrier(n)

    def run(_):
        barrier.wait()
        return fn()

    with concurrent.futures.ThreadPoolExecutor(n) as pool:
        return list(pool.map(run, range(n)))


def outcome(client, name, payload):
    try:
        r = client.invoke(FunctionName=name, Payload=json.dumps(payload))
        r["Payload"].read()
        return "ok"
    except client.exceptions.TooManyRequestsException as e:
        assert e.response["ResponseMetadata"]["HTTPStatusCode"] == 429
        assert e.response["Error"]["Message"] == "Rate Exceeded."
        assert e.response["ResponseMetadata"]["HTTPHeaders"].get("retry-after") == "1"
        return e.response["Reason"]


def test_reserved_concurrency_one_throttles_parallel_load(client, make_function):
    name = make_function("sleep")
    client.put_function_concurrency(FunctionName=name, ReservedConcurrentExecutions=1)
    results = parallel(lambda: outcome(client, name, {"ms": 2000}), 6)
    assert results.count("ok") == 1, results
    assert results.count("ReservedFunctionConcurrentInvocationLimitExceeded") == 5, results
    # The limit frees up once the invocation is done.
    assert outcome(client, name, {"ms": 1}) == "ok"


def test_reserved_concurrency_zero_throttles_everything(client, make_function):
    name = make_function("echo")
    client.put_function_concurrency(FunctionName=name, ReservedConcurrentExecutions=0)
    assert outcome(client, name, {}) == "ReservedFunctionConcurrentInvocationLimitExceeded"
    client.delete_function_concurrency(FunctionName=name)
    assert outcome(client, name, {}) == "ok"


def test_the_account_limit_throttles_with_its_own_reason(tmp_node):
    node = tmp_node(extra=["--account-concurrency", "3", "--min-unreserved", "1"])
    client = node.client()
    name = create(client, "sleep")
    results = parallel(lambda: outcome(client, name, {"ms": 2000}), 6)
    assert results.count("ok") == 3, results
    assert results.count("ConcurrentInvocationLimitExceeded") == 3, results


def test_provisioned_concurrency_serves_without_cold_starts(client, make_function):
    name = make_function("env-dump")
    client.publish_version(FunctionName=name)
    with pytest.raises(client.exceptions.InvalidParameterValueException):
        client.put_provisioned_concurrency_config(
            FunctionName=name, Qualifier="$LATEST", ProvisionedConcurrentExecutions=1
        )
    r = client.put_provisioned_concurrency_config(
        FunctionName=name, Qualifier="1", ProvisionedConcurrentExecutions=2
    )
    assert r["ResponseMetadata"]["HTTPStatusCode"] == 202
    assert r["Status"] == "IN_PROGRESS"
    assert r["RequestedProvisionedConcurrentExecutions"] == 2

    def ready():
        c = client.get_provisioned_concurrency_config(FunctionName=name, Qualifier="1")
        return c if c["Status"] == "READY" else None

    c = None
    deadline = time.time() + 30
    while not c and time.time() < deadline:
        c = ready()
        time.sleep(0.05)
    assert c, "provisioned concurrency never became READY"
    assert c["AvailableProvisionedConcurrentExecutions"] == 2
    for _ in range(3):
        r, body = invoke_json(client, f"{name}:1", LogType="Tail")
        assert "Init Duration" not in tail(r), "a provisioned environment served it"
        assert body["env"]["AWS_LAMBDA_INITIALIZATION_TYPE"] == "provisioned-concurrency"
    # $LATEST is not provisioned: it cold-starts an on-demand environment.
    r, body = invoke_json(client, name, LogType="Tail")
    assert body["env"]["AWS_LAMBDA_INITIALIZATION_TYPE"] == "on-demand"
    listed = client.list_provisioned_concurrency_configs(FunctionName=name)
    assert [x["FunctionArn"].rsplit(":", 1)[1] for x in listed["ProvisionedConcurrencyConfigs"]] == ["1"]
    client.delete_provisioned_concurrency_config(FunctionName=name, Qualifier="1")
    with pytest.raises(client.exceptions.ProvisionedConcurrencyConfigNotFoundException):
        client.get_provisioned_concurrency_config(FunctionName=name, Qualifier="1")


def test_provisioned_overflow_spills_to_on_demand(client, make_function):
    name = make_function("sleep")
    client.publish_version(FunctionName=name)
    client.put_provisioned_concurrency_config(
        FunctionName=name, Qualifier="1", ProvisionedConcurrentExecutions=1
    )
    deadline = time.time() + 30
    while client.get_provisioned_concurrency_config(FunctionName=name, Qualifier="1")["Status"] != "READY":
        assert time.time() < deadline
        time.sleep(0.05)

    def run():
        r = client.invoke(FunctionName=f"{name}:1", Payload=b'{"ms": 500}', LogType="Tail")
        return "Init Duration" in tail(r)

    cold = parallel(run, 3)
    assert cold.count(False) == 1, cold
    assert cold.count(True) == 2, cold


def test_weighted_alias_splits_traffic(client, make_function):
    name = make_function("echo")
    client.publish_version(FunctionName=name)
    client.update_function_configuration(FunctionName=name, Description="v2")
    client.publish_version(FunctionName=name)
    client.create_alias(
        FunctionName=name,
        Name="live",
        FunctionVersion="1",
        RoutingConfig={"AdditionalVersionWeights": {"2": 0.2}},
    )
    n = 10_000

    def once(_):
        r = client.invoke(FunctionName=name, Qualifier="live", Payload=b"{}")
        r["Payload"].read()
        return r["ExecutedVersion"]

    with concurrent.futures.ThreadPoolExecutor(8) as pool:
        versions = list(pool.map(once, range(n)))
    share = versions.count("2") / n
    assert set(versions) == {"1", "2"}
    assert abs(share - 0.2) <= 0.02, share


def logged_events(node, function):
    rows = node.query(
        "SELECT log_text FROM function_logs WHERE function_name = ? ORDER BY logged_at_us",
        (function,),
    )
    events = []
    for (text,) in rows:
        for line in text.splitlines():
            if line.startswith("EVENT "):
                events.append(json.loads(line[len("EVENT "):]))
    return events


def test_async_failures_retry_then_reach_the_on_failure_destination(lamina, client, make_function):
    sink = make_function("logger")
    name = make_function("faults")
    sink_arn = client.get_function(FunctionName=sink)["Configuration"]["FunctionArn"]
    client.put_function_event_invoke_config(
        FunctionName=name,
        MaximumRetryAttempts=1,
        DestinationConfig={"OnFailure": {"Destination": sink_arn}},
    )
    r = client.invoke(FunctionName=name, InvocationType="Event", Payload=b'{"kind": "error"}')
    assert r["StatusCode"] == 202
    request_id = r["ResponseMetadata"]["RequestId"]
    events = lamina.wait_for(lambda: logged_events(lamina, sink), timeout=30, what="destination")
    record = events[0]
    assert record["version"] == "1.0"
    assert record["requestContext"]["requestId"] == request_id
    assert record["requestContext"]["condition"] == "RetriesExhausted"
    assert record["requestContext"]["approximateInvokeCount"] == 2
    assert record["requestContext"]["functionArn"].endswith(f":function:{name}:$LATEST")
    assert record["requestPayload"] == {"kind": "error"}
    assert record["responseContext"]["functionError"] == "Unhandled"
    assert record["responsePayload"]["errorType"] == "MyError"
    # Both attempts ran with the same request id, about retry-base (1 s) apart.
    rows = lamina.wait_for(
        lambda: lamina.query(
            "SELECT attempt, started_at_us, outcome FROM invocations WHERE request_id = ? ORDER BY attempt",
            (request_id,),
        ) if len(lamina.query("SELECT 1 FROM invocations WHERE request_id = ?", (request_id,))) == 2 else None,
        what="two ledger rows",
    )
    assert [r[0] for r in rows] == [1, 2]
    assert all(r[2] == "function_error" for r in rows)
    assert rows[1][1] - rows[0][1] >= 900_000


def test_async_success_reaches_the_on_success_destination(lamina, client, make_function):
    sink = make_function("logger")
    name = make_function("echo")
    sink_arn = client.get_function(FunctionName=sink)["Configuration"]["FunctionArn"]
    client.put_function_event_invoke_config(
        FunctionName=name, DestinationConfig={"OnSuccess": {"Destination": sink_arn}}
    )
    r = client.invoke(FunctionName=name, InvocationType="Event", Payload=b'{"x": 1}')
    record = lamina.wait_for(lambda: logged_events(lamina, sink), what="destination")[0]
    assert record["requestContext"]["condition"] == "Success"
    assert record["requestContext"]["requestId"] == r["ResponseMetadata"]["RequestId"]
    assert record["responsePayload"] == {"x": 1}
    assert "functionError" not in record["responseContext"]


def test_zero_reserved_concurrency_sends_async_events_to_failure(lamina, client, make_function):
    sink = make_function("logger")
    name = make_function("echo")
    sink_arn = client.get_function(FunctionName=sink)["Configuration"]["FunctionArn"]
    client.put_function_event_invoke_config(
        FunctionName=name, DestinationConfig={"OnFailure": {"Destination": sink_arn}}
    )
    client.put_function_concurrency(FunctionName=name, ReservedConcurrentExecutions=0)
    client.invoke(FunctionName=name, InvocationType="Event", Payload=b'{"y": 2}')
    record = lamina.wait_for(lambda: logged_events(lamina, sink), what="destination")[0]
    assert record["requestContext"]["condition"] == "ZeroReservedConcurrency"
    assert record["requestContext"]["approximateInvokeCount"] == 0
    assert "responsePayload" not in record


def test_dead_letter_target_receives_the_original_event(lamina, client, make_function):
    dlq = make_function("logger")
    dlq_arn = client.get_function(FunctionName=dlq)["Configuration"]["FunctionArn"]
    name = make_function("faults", DeadLetterConfig={"TargetArn": dlq_arn})
    client.put_function_event_invoke_config(FunctionName=name, MaximumRetryAttempts=0)
    client.invoke(FunctionName=name, InvocationType="Event", Payload=b'{"kind": "panic"}')
    events = lamina.wait_for(lambda: logged_events(lamina, dlq), what="dead letter")
    assert events[0] == {"kind": "panic"}


def test_events_older_than_their_maximum_age_are_discarded(lamina, client, make_function):
    sink = make_function("logger")
    name = make_function("echo")
    sink_arn = client.get_function(FunctionName=sink)["Configuration"]["FunctionArn"]
    client.put_function_event_invoke_config(
        FunctionName=name,
        MaximumEventAgeInSeconds=60,
        DestinationConfig={"OnFailure": {"Destination": sink_arn}},
    )
    # An event that has waited two minutes in the queue (as if throttled all along).
    request_id = str(uuid.uuid4())
    now_ms = int(time.time() * 1000)
    lamina.query(
        "INSERT INTO async_events (event_id, request_id, account_id, caller_account_id, function_name, "
        "qualifier, payload, received_at_ms, attempts, not_before_ms, state) "
        "VALUES (?, ?, '000000000000', '000000000000', ?, '$LATEST', ?, ?, 0, ?, 'queued') RETURNING event_id",
        (str(uuid.uuid4()), request_id, name, b'{"old": true}', now_ms - 120_000, now_ms),
    )
    record = lamina.wait_for(lambda: logged_events(lamina, sink), what="expiry")[0]
    assert record["requestContext"]["condition"] == "EventAgeExceeded"
    assert record["requestContext"]["requestId"] == request_id
    assert not lamina.query("SELECT 1 FROM invocations WHERE request_id = ?", (request_id,)), (
        "an expired event must not run"
    )


def test_accepted_events_survive_kill_9_and_run_to_completion_once(tmp_node, tmp_path):
    data = tmp_path / "killed"
    node = tmp_node(data_dir=data, extra=["--retry-base", "1"])
    client = node.client()
    name = create(client, "sleep")
    request_ids = []
    for i in range(40):
        r = client.invoke(FunctionName=name, InvocationType="Event", Payload=json.dumps({"ms": 150}))
        assert r["StatusCode"] == 202
        request_ids.append(r["ResponseMetadata"]["RequestId"])
    # Killed once the queue is being worked, not before the first event has run.
    node.wait_for(
        lambda: node.query("SELECT COUNT(*) FROM async_events")[0][0] < len(request_ids),
        timeout=30,
        what="the first event to leave the queue",
    )
    node.kill9()
    node = tmp_node(data_dir=data, extra=["--retry-base", "1"])

    def all_done():
        rows = node.query(
            "SELECT request_id, outcome FROM invocations WHERE function_name = ?", (name,)
        )
        done = [r for r in rows if r[1] == "success"]
        queued = node.query("SELECT COUNT(*) FROM async_events")[0][0]
        return rows if len(done) >= len(request_ids) and queued == 0 else None

    rows = node.wait_for(all_done, timeout=60, what="every event to run")
    successes = [r[0] for r in rows if r[1] == "success"]
    assert sorted(successes) == sorted(request_ids), "each accepted event ran to completion exactly once"

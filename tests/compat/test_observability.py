"""What operators and users read back: /metrics, /lamina/status, function logs through
the API and `lamina logs`, and `lamina usage`."""

import json
import os
import shutil
import subprocess
import threading
import urllib.request

import pytest
from prometheus_client.parser import text_string_to_metric_families

from conftest import LAMINA_BIN, ROOT_KEY_ID, ROOT_SECRET, signed, unique


def scrape(node):
    with urllib.request.urlopen(f"{node.endpoint}/metrics", timeout=10) as resp:
        assert resp.headers["content-type"].startswith("text/plain; version=0.0.4")
        return resp.read().decode()


def samples(text):
    """{(name, frozenset(labels.items())): value} of every sample."""
    out = {}
    for family in text_string_to_metric_families(text):
        for s in family.samples:
            out[(s.name, frozenset(s.labels.items()))] = s.value
    return out


def value(text, name, **labels):
    """Sum of the samples of `name` whose labels include `labels`."""
    want = set(labels.items())
    return sum(v for (n, ls), v in samples(text).items() if n == name and want <= ls)


def get_json(node, path):
    r = signed("GET", f"{node.endpoint}{path}")
    assert r.status_code == 200, r.text
    return r.json()


CLI_ENV = dict(os.environ, AWS_ACCESS_KEY_ID=ROOT_KEY_ID, AWS_SECRET_ACCESS_KEY=ROOT_SECRET)


def cli(node, *args, timeout=30):
    return subprocess.run(
        [LAMINA_BIN, *args, "--endpoint", node.endpoint],
        capture_output=True,
        text=True,
        timeout=timeout,
        env=CLI_ENV,
    )


def test_metrics_move_with_cold_starts_errors_timeouts_throttles_and_retries(
    lamina, client, make_function
):
    echo = make_function("echo")
    faults = make_function("faults")
    slow = make_function("sleep", Timeout=1)
    account = "000000000000"
    before = scrape(lamina)

    client.invoke(FunctionName=echo, Payload=b"{}")
    client.invoke(FunctionName=echo, Payload=b"{}")
    client.invoke(FunctionName=faults, Payload=b'{"kind": "error"}')
    client.invoke(FunctionName=slow, Payload=b'{"ms": 3000}')
    client.put_function_concurrency(FunctionName=faults, ReservedConcurrentExecutions=0)
    with pytest.raises(client.exceptions.TooManyRequestsException):
        client.invoke(FunctionName=faults, Payload=b"{}")
    client.delete_function_concurrency(FunctionName=faults)
    client.put_function_event_invoke_config(FunctionName=faults, MaximumRetryAttempts=1)
    client.invoke(FunctionName=faults, InvocationType="Event", Payload=b'{"kind": "error"}')

    def retried():
        text = scrape(lamina)
        second_attempt = value(text, "lamina_async_queue_wait_seconds_count", function=faults) >= 2
        return text if second_attempt else None

    after = lamina.wait_for(retried, timeout=30, what="a second async attempt in /metrics")

    def delta(name, **labels):
        return value(after, name, **labels) - value(before, name, **labels)

    f = dict(account=account)
    assert delta("lamina_invocations_total", function=echo, outcome="success", start="cold", **f) == 1
    assert delta("lamina_invocations_total", function=echo, outcome="success", start="warm", **f) == 1
    assert delta("lamina_async_retries_total", function=faults) == 1
    # The second attempt's outcome is counted as it is recorded, just after it started.
    lamina.wait_for(
        lambda: value(scrape(lamina), "lamina_invocations_total", function=faults, outcome="function_error")
        - value(before, "lamina_invocations_total", function=faults, outcome="function_error")
        == 3,
        what="one sync and two async function errors",
    )
    assert delta("lamina_invocations_total", function=slow, outcome="timeout", **f) == 1
    assert delta("lamina_cold_starts_total", function=echo, **f) == 1
    # boto3 retries a 429 on its own, so count what the server answered.
    route = "/2015-03-31/functions/{name}/invocations"
    answered_429 = delta("lamina_http_requests_total", route=route, method="POST", status="429")
    throttles = delta(
        "lamina_throttles_total",
        function=faults,
        reason="ReservedFunctionConcurrentInvocationLimitExceeded",
    )
    assert throttles >= 1 and throttles == answered_429
    assert delta("lamina_invocation_duration_seconds_count", function=echo) == 2
    assert delta("lamina_init_duration_seconds_count", function=echo) == 1
    assert delta("lamina_platform_overhead_seconds_count", function=echo) == 2
    assert delta("lamina_async_queue_wait_seconds_count", function=faults) >= 2
    assert delta("lamina_billed_requests_total", function=echo) == 2
    assert delta("lamina_billed_gigabyte_seconds_total", function=echo) > 0
    # A one-second timeout at 128 MB bills one second: 0.125 GB-s.
    assert delta("lamina_billed_gigabyte_seconds_total", function=slow) == pytest.approx(0.125, rel=0.01)
    assert value(after, "lamina_environments", function=echo, state="idle") == 1
    assert value(after, "lamina_account_concurrency_limit", account=account) == 1000
    assert value(after, "lamina_async_queue_depth") >= 0
    assert value(after, "lamina_ledger_backlog_records") >= 0
    assert delta("lamina_http_requests_total", route=route, method="POST", status="200") >= 4
    assert value(after, "process_resident_memory_bytes") > 0
    # No raw paths or request ids as label values.
    for (name, labels), _ in samples(after).items():
        for k, v in labels:
            assert not (k == "route" and echo in v), (name, labels)


def test_metrics_pass_promtool(lamina, client, make_function):
    promtool = shutil.which("promtool")
    if promtool is None:
        pytest.fail("promtool (Debian package prometheus) is required; scripts/test.sh installs it")
    name = make_function("echo")
    client.invoke(FunctionName=name, Payload=b"{}")
    text = scrape(lamina)
    check = subprocess.run(
        [promtool, "check", "metrics"], input=text, capture_output=True, text=True, timeout=30
    )
    assert check.returncode == 0, check.stdout + check.stderr
    assert check.stdout.strip() == "" and check.stderr.strip() == "", check.stdout + check.stderr


def test_status_shows_environments_and_throttles(lamina, client, make_function):
    name = make_function("echo")
    client.invoke(FunctionName=name, Payload=b"{}")
    status = get_json(lamina, "/lamina/status")
    pools = [p for p in status["Pools"] if p["FunctionName"] == name]
    assert len(pools) == 1, status
    assert pools[0]["Version"] == "$LATEST"
    assert pools[0]["Environments"] == {"Idle": 1, "Busy": 0, "Initializing": 0, "Provisioned": 0}
    assert status["Limits"]["AccountConcurrency"] == 1000
    assert set(status["Throttles"]) == {
        "ReservedFunctionConcurrentInvocationLimitExceeded",
        "ConcurrentInvocationLimitExceeded",
        "FunctionInvocationRateLimitExceeded",
    }
    assert status["AsyncQueue"]["Depth"] >= 0
    assert status["Ledger"]["BacklogRecords"] >= 0


def logs_of(node, name, after=0):
    return get_json(node, f"/lamina/functions/{name}/logs?after={after}")


def test_function_logs_through_the_api_and_the_cli(lamina, client, make_function):
    name = make_function("logger")
    marker = unique("line")
    resp = client.invoke(FunctionName=name, Payload=json.dumps({"note": marker}).encode())
    request_id = resp["ResponseMetadata"]["RequestId"]

    page = lamina.wait_for(
        lambda: (p := logs_of(lamina, name)) and p["Events"] and p,
        what="the invocation's log",
    )
    event = page["Events"][0]
    assert event["RequestId"] == request_id and event["Version"] == "$LATEST"
    text = event["Message"]
    assert f"START RequestId: {request_id} Version: $LATEST" in text
    assert f"END RequestId: {request_id}" in text
    assert f"REPORT RequestId: {request_id}" in text
    assert marker in text
    assert logs_of(lamina, name, after=page["NextAfter"])["Events"] == []

    out = cli(lamina, "logs", name, "--since", "10m")
    assert out.returncode == 0, out.stderr
    assert f"START RequestId: {request_id}" in out.stdout
    assert f"REPORT RequestId: {request_id}" in out.stdout

    missing = cli(lamina, "logs", unique("absent"))
    assert missing.returncode != 0
    assert "ResourceNotFoundException" in missing.stderr


def test_logs_follow_prints_new_invocations(lamina, client, make_function):
    name = make_function("echo")
    follower = subprocess.Popen(
        [LAMINA_BIN, "logs", name, "--follow", "--since", "1m", "--endpoint", lamina.endpoint],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=CLI_ENV,
    )
    printed = []

    def read():
        for line in follower.stdout:
            printed.append(line)

    threading.Thread(target=read, daemon=True).start()

    def follower_prints(request_id):
        return lamina.wait_for(
            lambda: any(f"REPORT RequestId: {request_id}" in line for line in printed),
            timeout=20,
            what=f"`logs --follow` to print {request_id}; printed so far: {printed}",
        )

    try:
        # The first invocation's REPORT shows the follower is reading; the second is one
        # that happened after it started, so only following can print it.
        for _ in range(2):
            resp = client.invoke(FunctionName=name, Payload=b"{}")
            follower_prints(resp["ResponseMetadata"]["RequestId"])
    finally:
        follower.kill()
        follower.wait()


def test_usage_reports_requests_and_cost(lamina, client, make_function):
    name = make_function("echo", MemorySize=1024)
    for _ in range(3):
        client.invoke(FunctionName=name, Payload=b"{}")

    def report():
        r = get_json(lamina, f"/lamina/usage?function={name}")
        rows = r["Functions"]
        return rows if rows and rows[0]["Requests"] == 3 else None

    rows = lamina.wait_for(report, what="three ledger rows")
    assert len(rows) == 1
    row = rows[0]
    assert row["FunctionName"] == name and row["Errors"] == 0 and row["ColdStarts"] == 1
    # Each invocation bills at least 1 ms at 1 GB.
    assert row["GBSeconds"] >= 0.003
    assert row["CostUSD"] == pytest.approx(
        3 * 0.20 / 1e6 + row["GBSeconds"] * 0.0000166667, rel=1e-6
    )

    out = cli(lamina, "usage", "--function", name, "--since", "1h")
    assert out.returncode == 0, out.stderr
    lines = out.stdout.splitlines()
    assert lines[0].split()[:3] == ["FUNCTION", "REQUESTS", "ERRORS"]
    assert lines[1].split()[:4] == [name, "3", "0", "1"]
    assert lines[-1].startswith("TOTAL")

    bad = cli(lamina, "usage", "--since", "last tuesday")
    assert bad.returncode == 64 and "--since" in bad.stderr

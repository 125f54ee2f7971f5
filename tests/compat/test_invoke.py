"""Invoke: the three invocation types, log tails, function errors and timeouts, request
ids, payload rules and limits, throttling, and the deprecated InvokeAsync."""

import base64
import json
import math
import re

import pytest

from conftest import UUID_RE, arn, expect_error, signed, unique, wasm_zip


def body(resp):
    return json.loads(resp["Payload"].read())


def request_id(resp):
    return resp["ResponseMetadata"]["RequestId"]


def report_pattern(rid, memory=128):
    return re.compile(
        rf"^REPORT RequestId: {rid}\tDuration: (?P<duration>\d+\.\d\d) ms\t"
        rf"Billed Duration: (?P<billed>\d+) ms\tMemory Size: {memory} MB\t"
        rf"Max Memory Used: (?P<used>\d+) MB\t"
        rf"(?:Init Duration: (?P<init>\d+\.\d\d) ms\t)?(?P<status>Status: timeout)?$"
    )


def log_lines(resp):
    return base64.b64decode(resp["LogResult"]).decode().split("\n")


def check_billing(m):
    exact = float(m["duration"]) + float(m["init"] or 0)
    # The printed figures are rounded to 1/100 ms; billing rounds the exact time up.
    assert math.ceil(exact - 0.02) <= int(m["billed"]) <= math.ceil(exact + 0.02), m.groupdict()


def test_request_response(client, make_function):
    name = make_function("echo")
    resp = client.invoke(FunctionName=name, Payload=b'{"hello": ["world", 1, true]}')
    assert resp["StatusCode"] == 200
    assert resp["ExecutedVersion"] == "$LATEST"
    assert "FunctionError" not in resp
    assert "LogResult" not in resp
    headers = resp["ResponseMetadata"]["HTTPHeaders"]
    assert headers["content-type"] == "application/json"
    assert UUID_RE.match(request_id(resp))
    assert resp["Payload"].read() == b'{"hello": ["world", 1, true]}'


def test_event_and_dry_run(client, make_function):
    name = make_function("echo")
    event = client.invoke(FunctionName=name, InvocationType="Event", Payload=b'{"a": 1}')
    assert event["StatusCode"] == 202
    assert event["Payload"].read() == b""
    assert UUID_RE.match(request_id(event))
    assert "ExecutedVersion" not in event

    dry = client.invoke(FunctionName=name, InvocationType="DryRun")
    assert dry["StatusCode"] == 204
    assert dry["Payload"].read() == b""

    missing = unique("missing")
    for kind in ("RequestResponse", "Event", "DryRun"):
        expect_error(
            client,
            "ResourceNotFoundException",
            404,
            lambda: client.invoke(FunctionName=missing, InvocationType=kind),
            f"Function not found: {arn(missing, '$LATEST')}",
        )
    expect_error(
        client,
        "ResourceNotFoundException",
        404,
        lambda: client.invoke(FunctionName=name, Qualifier="7", InvocationType="Event"),
        f"Function not found: {arn(name, '7')}",
    )


def test_invoke_async_is_accepted(client, make_function):
    name = make_function("echo")
    resp = client.invoke_async(FunctionName=name, InvokeArgs=b'{"legacy": true}')
    assert resp["Status"] == 202
    assert resp["ResponseMetadata"]["HTTPStatusCode"] == 202


def test_log_tail_has_exact_start_end_report_lines(client, make_function):
    name = make_function("log-flood")
    resp = client.invoke(FunctionName=name, LogType="Tail", Payload=b'{"bytes": 128}')
    rid = request_id(resp)
    assert body(resp) == {"written": 128}
    lines = log_lines(resp)
    assert lines[0] == f"START RequestId: {rid} Version: $LATEST"
    assert lines[1].startswith("log-flood line            1 ")
    assert lines[2].startswith("log-flood line            2 ")
    assert lines[3] == f"END RequestId: {rid}"
    cold = report_pattern(rid).match(lines[4])
    assert cold, lines[4]
    assert cold["init"] is not None, "a cold start reports Init Duration"
    assert cold["status"] is None
    check_billing(cold)
    assert lines[5:] == [""]

    warm_resp = client.invoke(FunctionName=name, LogType="Tail", Payload=b'{"bytes": 0}')
    rid = request_id(warm_resp)
    assert log_lines(warm_resp)[:2] == [
        f"START RequestId: {rid} Version: $LATEST",
        f"END RequestId: {rid}",
    ]
    warm = report_pattern(rid).match(log_lines(warm_resp)[2])
    assert warm and warm["init"] is None, log_lines(warm_resp)
    check_billing(warm)


def test_log_tail_is_the_last_4kb(client, make_function):
    name = make_function("log-flood")
    # 300 whole 64-byte lines, far more than the 4 KB tail.
    resp = client.invoke(FunctionName=name, LogType="Tail", Payload=b'{"bytes": 19200}')
    text = base64.b64decode(resp["LogResult"]).decode()
    assert len(text.encode()) == 4096
    assert text.endswith("\n")
    lines = text.split("\n")
    assert lines[-4].startswith("log-flood line          300 ")
    assert lines[-3] == f"END RequestId: {request_id(resp)}"
    assert lines[-2].startswith(f"REPORT RequestId: {request_id(resp)}\t")
    assert not text.startswith("START")


def test_end_line_starts_a_line_after_unterminated_output(client, make_function):
    name = make_function("log-flood")
    # 100 bytes: one whole line and a partial one with no newline.
    resp = client.invoke(FunctionName=name, LogType="Tail", Payload=b'{"bytes": 100}')
    lines = base64.b64decode(resp["LogResult"]).decode().split("\n")
    assert lines[-3] == f"END RequestId: {request_id(resp)}"


def test_tail_is_ignored_for_event_invocations(client, make_function):
    name = make_function("echo")
    resp = client.invoke(FunctionName=name, InvocationType="Event", LogType="Tail")
    assert resp["StatusCode"] == 202
    assert "LogResult" not in resp


def test_function_error_is_200_unhandled(client, make_function):
    name = make_function("faults")
    resp = client.invoke(FunctionName=name, Payload=b'{"kind": "error"}')
    assert resp["StatusCode"] == 200
    assert resp["FunctionError"] == "Unhandled"
    assert resp["ExecutedVersion"] == "$LATEST"
    assert body(resp) == {"errorType": "MyError", "errorMessage": "something went wrong"}
    # A handled error leaves the environment warm and usable.
    ok = client.invoke(FunctionName=name, Payload=b"{}")
    assert "FunctionError" not in ok and body(ok) == {"ok": True}


@pytest.mark.parametrize(
    "kind,message",
    [
        ("unreachable", "wasm trap: wasm `unreachable` instruction executed"),
        # wasi:cli/exit in WASI 0.2 carries success or failure, not a code: exit(3) is 1.
        ("exit", "exit status 1"),
        ("divide-by-zero", "wasm trap: integer divide by zero"),
        ("panic", "panicked at fixtures/faults/src/lib.rs"),
    ],
    ids=["unreachable", "exit", "divide-by-zero", "panic"],
)
def test_crashes_are_runtime_exit_errors(client, make_function, kind, message):
    name = make_function("faults")
    resp = client.invoke(FunctionName=name, Payload=json.dumps({"kind": kind}).encode())
    assert (resp["StatusCode"], resp["FunctionError"]) == (200, "Unhandled")
    error = body(resp)
    assert error["errorType"] == "Runtime.ExitError"
    prefix = f"RequestId: {request_id(resp)} Error: Runtime exited with error: "
    if kind == "panic":
        assert error["errorMessage"].startswith(prefix + message), error
        assert error["errorMessage"].endswith(": boom"), error
    else:
        assert error["errorMessage"] == prefix + message
    # The crashed environment is replaced; the function keeps working.
    assert body(client.invoke(FunctionName=name, Payload=b"{}")) == {"ok": True}


def test_timeout_reports_sandbox_timedout_with_the_request_id(client, make_function):
    name = make_function("sleep", Timeout=1)
    resp = client.invoke(FunctionName=name, LogType="Tail", Payload=b'{"ms": 3000}')
    rid = request_id(resp)
    assert (resp["StatusCode"], resp["FunctionError"]) == (200, "Unhandled")
    assert body(resp) == {
        "errorType": "Sandbox.Timedout",
        "errorMessage": f"RequestId: {rid} Error: Task timed out after 1.00 seconds",
    }
    lines = log_lines(resp)
    assert lines[0] == f"START RequestId: {rid} Version: $LATEST"
    report = report_pattern(rid).match(lines[-2])
    assert report and report["status"] == "Status: timeout", lines
    assert 1000 <= float(report["duration"]) < 1500
    # The next invocation gets a fresh environment and finishes.
    again = client.invoke(FunctionName=name, Payload=b'{"ms": 10}')
    assert "FunctionError" not in again and body(again) == {"slept_ms": 10}


def test_executed_version_follows_qualifiers_and_aliases(client, make_function):
    name = make_function("echo")
    client.publish_version(FunctionName=name)
    client.update_function_code(FunctionName=name, ZipFile=wasm_zip("hello"))
    client.publish_version(FunctionName=name)
    client.create_alias(FunctionName=name, Name="stable", FunctionVersion="1")
    cases = [
        (dict(FunctionName=name), "$LATEST"),
        (dict(FunctionName=name, Qualifier="1"), "1"),
        (dict(FunctionName=name, Qualifier="2"), "2"),
        (dict(FunctionName=f"{name}:stable"), "1"),
        (dict(FunctionName=arn(name, "stable")), "1"),
    ]
    for kwargs, version in cases:
        resp = client.invoke(Payload=b'{"x": 1}', **kwargs)
        assert resp["ExecutedVersion"] == version, kwargs
    expect_error(
        client,
        "ResourceNotFoundException",
        404,
        lambda: client.invoke(FunctionName=name, Qualifier="nope"),
        f"Function not found: {arn(name, 'nope')}",
    )


def test_payload_rules(client, make_function, lamina):
    name = make_function("echo")
    assert body(client.invoke(FunctionName=name)) == {}
    assert client.invoke(FunctionName=name, Payload=b"null")["Payload"].read() == b"null"
    assert client.invoke(FunctionName=name, Payload=b'"text"')["Payload"].read() == b'"text"'

    e = expect_error(
        client,
        "InvalidRequestContentException",
        400,
        lambda: client.invoke(FunctionName=name, Payload=b"{not json"),
    )
    assert e.response["Error"]["Message"].startswith(
        "Could not parse request body into json: Could not parse payload into json: "
    )
    e = expect_error(
        client,
        "InvalidRequestContentException",
        400,
        lambda: client.invoke(FunctionName=name, Payload=b"n\x87r\x9e\xe9\xb5\xd7I\xee\x9bmt"),
    )
    assert e.response["Error"]["Message"].startswith(
        "Could not parse request body into json: Could not parse payload into json: "
        "Invalid UTF-8 start byte 0x87"
    )
    expect_error(
        client,
        "InvalidRequestContentException",
        400,
        lambda: client.invoke(FunctionName=name, InvocationType="Event", Payload=b"[1,"),
    )
    # Well-formed JSON around a broken UTF-8 sequence is still refused.
    e = expect_error(
        client,
        "InvalidRequestContentException",
        400,
        lambda: client.invoke(FunctionName=name, Payload=b'{"s": "\xe9A"}'),
    )
    assert e.response["Error"]["Message"].endswith("Invalid UTF-8 middle byte 0x41")

    # Clients send no Content-Type; any that is sent is ignored.
    url = f"{lamina.endpoint}/2015-03-31/functions/{name}/invocations"
    for headers in ({}, {"Content-Type": "text/plain"}, {"Content-Type": "application/x-amz-json-1.1"}):
        r = signed("POST", url, data=b'{"raw": 1}', headers=headers)
        assert (r.status_code, r.content) == (200, b'{"raw": 1}'), headers
        assert r.headers["X-Amz-Executed-Version"] == "$LATEST"
        assert UUID_RE.match(r.headers["x-amzn-RequestId"])


def test_client_context_is_accepted(client, make_function):
    name = make_function("echo")
    context = base64.b64encode(json.dumps({"custom": {"team": "core"}, "env": {}}).encode())
    resp = client.invoke(FunctionName=name, ClientContext=context.decode(), Payload=b"{}")
    assert resp["StatusCode"] == 200 and body(resp) == {}
    expect_error(
        client,
        "InvalidRequestContentException",
        400,
        lambda: client.invoke(FunctionName=name, ClientContext="%%%not-base64", Payload=b"{}"),
        "Client context must be a valid Base64-encoded JSON object.",
    )


def test_large_payloads(client, make_function):
    name = make_function("echo")
    big = json.dumps({"data": "x" * (5 * 1024 * 1024)}).encode()
    resp = client.invoke(FunctionName=name, Payload=big)
    assert resp["Payload"].read() == big

    too_big = json.dumps({"data": "x" * (6 * 1024 * 1024)}).encode()
    e = expect_error(
        client,
        "RequestEntityTooLargeException",
        413,
        lambda: client.invoke(FunctionName=name, Payload=too_big),
        "Request must be smaller than 6291456 bytes for the InvokeFunction operation",
    )
    assert e.response["Error"]["Code"] == "RequestEntityTooLargeException"

    async_too_big = json.dumps({"data": "x" * (1024 * 1024)}).encode()
    expect_error(
        client,
        "RequestEntityTooLargeException",
        413,
        lambda: client.invoke(FunctionName=name, InvocationType="Event", Payload=async_too_big),
        f"{len(async_too_big)} byte payload is too large for the Event invocation type "
        "(limit 1048576 bytes)",
    )


def test_reserved_concurrency_zero_throttles(client, make_function):
    name = make_function("echo")
    client.put_function_concurrency(FunctionName=name, ReservedConcurrentExecutions=0)
    e = expect_error(
        client,
        "TooManyRequestsException",
        429,
        lambda: client.invoke(FunctionName=name, Payload=b"{}"),
        "Rate Exceeded.",
    )
    assert e.response["Reason"] == "ReservedFunctionConcurrentInvocationLimitExceeded"
    assert e.response["retryAfterSeconds"] == "1"
    client.delete_function_concurrency(FunctionName=name)
    assert client.invoke(FunctionName=name, Payload=b"{}")["StatusCode"] == 200


@pytest.mark.parametrize(
    "fixture,payload,expected",
    [
        # Commands read the payload on stdin and answer on stdout.
        ("command", b'"hi there"', {"stdin_bytes": 10, "upper": '"HI THERE"'}),
        ("c-command", b'{"a": 1}', {"language": "c", "stdin_bytes": 8}),
        ("hello", b"{}", {"message": "Hello from Lamina"}),
        # FNV-1a over the little-endian bytes of 0..1000, worked out independently.
        ("compute", b'{"n": 1000}', {"n": 1000, "hash": "3a840aab2742da95"}),
    ],
    ids=["command", "c-command", "hello", "compute"],
)
def test_every_guest_kind_answers(client, make_function, fixture, payload, expected):
    name = make_function(fixture)
    resp = client.invoke(FunctionName=name, Payload=payload)
    assert "FunctionError" not in resp, resp["Payload"].read()
    assert body(resp) == expected


def test_command_exit_status_is_a_function_error(client, make_function):
    name = make_function("c-command")
    resp = client.invoke(FunctionName=name, Payload=b'"please fail"')
    assert resp["FunctionError"] == "Unhandled"
    assert body(resp) == {
        "errorType": "Runtime.ExitError",
        "errorMessage": f"RequestId: {request_id(resp)} Error: Runtime exited with error: exit status 1",
    }

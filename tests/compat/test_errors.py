"""The wire shape of errors and of the path encoding clients use, checked on raw HTTP
where botocore would hide the details."""

import io
import json
import os
import urllib.parse
import zipfile

import pytest

from conftest import REGION, ROLE, UUID_RE, arn, expect_error, signed, unique, wasm_zip


def get(lamina, path, **kwargs):
    return signed("GET", lamina.endpoint + path, **kwargs)


def check_shape(r, status, error_type):
    assert r.status_code == status, r.text
    assert r.headers["x-amzn-ErrorType"] == error_type
    assert UUID_RE.match(r.headers["x-amzn-RequestId"])
    assert r.headers["content-type"] == "application/json"
    return r.json()


def test_not_found_body_uses_capital_message(lamina):
    missing = unique("missing")
    r = get(lamina, f"/2015-03-31/functions/{missing}")
    assert check_shape(r, 404, "ResourceNotFoundException") == {
        "Type": "User",
        "Message": f"Function not found: {arn(missing)}",
    }


def test_parameter_errors_use_lowercase_message(lamina, make_function):
    name = make_function("hello")
    r = signed("DELETE", f"{lamina.endpoint}/2015-03-31/functions/{name}?Qualifier=%24LATEST")
    assert check_shape(r, 400, "InvalidParameterValueException") == {
        "Type": "User",
        "message": "$LATEST version cannot be deleted without deleting the function.",
    }


def test_throttle_body_reason_and_retry_after(lamina, client, make_function):
    name = make_function("echo")
    client.put_function_concurrency(FunctionName=name, ReservedConcurrentExecutions=0)
    r = signed("POST", f"{lamina.endpoint}/2015-03-31/functions/{name}/invocations", data=b"{}")
    assert check_shape(r, 429, "TooManyRequestsException") == {
        "Type": "User",
        "Reason": "ReservedFunctionConcurrentInvocationLimitExceeded",
        "message": "Rate Exceeded.",
    }
    assert r.headers["Retry-After"] == "1"


def test_oversized_invoke_body(lamina, make_function):
    name = make_function("echo")
    r = signed(
        "POST",
        f"{lamina.endpoint}/2015-03-31/functions/{name}/invocations",
        data=b'"' + b"x" * (6 * 1024 * 1024) + b'"',
    )
    assert check_shape(r, 413, "RequestEntityTooLargeException") == {
        "Type": "User",
        "Message": "Request must be smaller than 6291456 bytes for the InvokeFunction operation",
    }


def test_oversized_create_function_requests(lamina, client, make_function):
    big = b"x" * (70_167_211 + 1)
    r = signed("POST", f"{lamina.endpoint}/2015-03-31/functions", data=big)
    assert check_shape(r, 413, "RequestEntityTooLargeException")["Message"] == (
        "Request must be smaller than 70167211 bytes for the CreateFunction operation"
    )
    # A zip over 50 MB fits in a request under 70 MB once base64-encoded, and is refused
    # for its own size.
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w", zipfile.ZIP_STORED) as z:
        z.writestr("function.wasm", os.urandom(52_428_800))
    expect_error(
        client,
        "RequestEntityTooLargeException",
        413,
        lambda: make_function.create("hello", Code={"ZipFile": buf.getvalue()}),
        "Zipped size must be smaller than 52428800 bytes",
    )


def test_unknown_operation(lamina):
    r = get(lamina, "/2015-03-31/no-such-thing")
    body = check_shape(r, 404, "ResourceNotFoundException")
    assert body["Type"] == "User"


def test_percent_encoded_and_raw_arns_in_paths(lamina, make_function):
    name = make_function("hello")
    full = arn(name)
    for segment in (urllib.parse.quote(full, safe=""), full, urllib.parse.quote(f"{name}:$LATEST", safe="")):
        r = get(lamina, f"/2015-03-31/functions/{segment}/configuration")
        assert r.status_code == 200, (segment, r.text)
        assert r.json()["FunctionName"] == name
    r = signed(
        "POST",
        f"{lamina.endpoint}/2015-03-31/functions/{urllib.parse.quote(full, safe='')}/invocations",
    )
    assert (r.status_code, json.loads(r.content)) == (200, {"message": "Hello from Lamina"})


def test_success_responses_carry_a_request_id(lamina, client, make_function):
    name = make_function("hello")
    for resp in (
        client.get_function(FunctionName=name),
        client.list_functions(MaxItems=1),
        client.get_account_settings(),
        client.delete_function(FunctionName=name),
    ):
        assert UUID_RE.match(resp["ResponseMetadata"]["RequestId"]), resp


def test_a_huge_field_is_not_echoed_back_whole(unvalidated):
    huge = "d" * (10 * 1024 * 1024)
    e = expect_error(
        unvalidated,
        "ValidationException",
        400,
        lambda: unvalidated.create_function(
            FunctionName=unique("echo"),
            Runtime="wasm",
            Role=ROLE,
            Handler="function.wasm",
            Description=huge,
            Code={"ZipFile": wasm_zip("echo")},
        ),
        "1 validation error detected: Value '" + "d" * 256 + "...(truncated)' at 'description' "
        "failed to satisfy constraint: Member must have length less than or equal to 256",
    )
    assert len(e.response["Error"]["Message"]) < 1024


# Near the 1 MiB cap on control-plane request bodies, so each request is still read whole.
NEAR_MIB = 1_000_000


@pytest.mark.parametrize(
    "field, constraint, call",
    [
        (
            "tracingConfig.mode",
            "Member must satisfy enum value set: [Active, PassThrough]",
            lambda c, name, huge: c.create_function(
                FunctionName=unique("echo"),
                Runtime="wasm",
                Role=ROLE,
                Handler="function.wasm",
                TracingConfig={"Mode": huge},
                Code={"ZipFile": wasm_zip("echo")},
            ),
        ),
        (
            "name",
            "Member must satisfy regular expression pattern: (?!^[0-9]+$)([a-zA-Z0-9-_]+)",
            lambda c, name, huge: c.create_alias(
                FunctionName=name, Name=huge, FunctionVersion="$LATEST"
            ),
        ),
        (
            "statementId",
            "Member must satisfy regular expression pattern: ([a-zA-Z0-9-_]+)",
            lambda c, name, huge: c.add_permission(
                FunctionName=name,
                StatementId=huge,
                Action="lambda:InvokeFunction",
                Principal="s3.amazonaws.com",
            ),
        ),
    ],
    ids=["tracing-mode", "alias-name", "statement-id"],
)
def test_a_huge_enum_or_pattern_value_is_not_echoed_back_whole(
    unvalidated, make_function, field, constraint, call
):
    # Invalid for its characters, not only its length, so every check along the way
    # refuses it.
    huge = "!" * NEAR_MIB
    name = make_function("echo")
    e = expect_error(
        unvalidated,
        "ValidationException",
        400,
        lambda: call(unvalidated, name, huge),
        "1 validation error detected: Value '" + "!" * 256 + f"...(truncated)' at '{field}' "
        f"failed to satisfy constraint: {constraint}",
    )
    assert len(e.response["Error"]["Message"]) < 1_000


def test_a_huge_string_of_the_wrong_type_is_not_echoed_back_whole(unvalidated):
    # The JSON reader's own type error quotes the string it found.
    e = expect_error(
        unvalidated,
        "ValidationException",
        400,
        lambda: unvalidated.create_function(
            FunctionName=unique("echo"),
            Runtime="wasm",
            Role=ROLE,
            Handler="function.wasm",
            MemorySize="x" * NEAR_MIB,
            Code={"ZipFile": wasm_zip("echo")},
        ),
    )
    message = e.response["Error"]["Message"]
    assert message.startswith("1 validation error detected: invalid type: string"), message
    assert message.endswith("...(truncated)"), message[-100:]
    assert len(message) < 2_000


@pytest.mark.parametrize("qualifier", ["../../etc", "a/b", "v1.0", "q" * 129])
def test_a_malformed_qualifier_is_a_validation_error(client, make_function, qualifier):
    name = make_function("echo")
    if len(qualifier) > 128:
        constraint = "Member must have length less than or equal to 128"
    else:
        constraint = "Member must satisfy regular expression pattern: (|[a-zA-Z0-9$_-]+)"
    message = (
        f"1 validation error detected: Value '{qualifier}' at 'qualifier' "
        f"failed to satisfy constraint: {constraint}"
    )
    for call in (
        lambda: client.invoke(FunctionName=name, Qualifier=qualifier, Payload=b"{}"),
        lambda: client.get_function(FunctionName=name, Qualifier=qualifier),
        lambda: client.delete_function(FunctionName=name, Qualifier=qualifier),
    ):
        expect_error(client, "ValidationException", 400, call, message)
    assert client.get_function(FunctionName=name)["Configuration"]["FunctionName"] == name


def test_another_accounts_arn_is_named_as_given(client, make_function):
    # The caller's own function of that name must not change the answer.
    name = make_function("echo")
    theirs = f"arn:aws:lambda:{REGION}:111111111111:function:{name}"
    expect_error(
        client,
        "ResourceNotFoundException",
        404,
        lambda: client.invoke(FunctionName=theirs, Payload=b"{}"),
        f"Function not found: {theirs}:$LATEST",
    )
    expect_error(
        client,
        "ResourceNotFoundException",
        404,
        lambda: client.get_function(FunctionName=theirs),
        f"Function not found: {theirs}",
    )
    expect_error(
        client,
        "ResourceNotFoundException",
        404,
        lambda: client.get_function(FunctionName=f"{theirs}:live"),
        f"Function not found: {theirs}:live",
    )

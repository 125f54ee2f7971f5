"""Function URL configs, and function URLs called with plain HTTP: the API Gateway 2.0
event a handler guest receives, Lambda's response mapping, wasi:http guests served
directly, CORS, and the errors a caller sees."""

import base64
import json
import re
import time
import uuid

import requests

from conftest import arn, expect_error, unique, wasm_zip

NOT_FOUND = "The resource you requested does not exist."


def url_config(client, make_function, fixture, **kwargs):
    name = make_function(fixture)
    config = client.create_function_url_config(FunctionName=name, AuthType="NONE", **kwargs)
    return name, config


def test_url_config_lifecycle(client, make_function, lamina):
    name = make_function("echo")
    created = client.create_function_url_config(FunctionName=name, AuthType="NONE")
    assert created["ResponseMetadata"]["HTTPStatusCode"] == 201
    url = created["FunctionUrl"]
    assert re.fullmatch(re.escape(lamina.endpoint) + r"/lambda-url/[a-z0-9]{32}/", url), url
    assert (created["FunctionArn"], created["AuthType"], created["InvokeMode"]) == (
        arn(name),
        "NONE",
        "BUFFERED",
    )
    assert "LastModifiedTime" not in created
    assert re.fullmatch(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d+Z", created["CreationTime"])

    got = client.get_function_url_config(FunctionName=name)
    assert (got["FunctionUrl"], got["CreationTime"]) == (url, created["CreationTime"])
    assert "LastModifiedTime" in got

    cors = {"AllowOrigins": ["https://example.com"], "AllowMethods": ["GET"], "MaxAge": 100}
    time.sleep(0.002)
    updated = client.update_function_url_config(FunctionName=name, Cors=cors)
    assert updated["Cors"] == cors
    assert updated["FunctionUrl"] == url
    assert updated["LastModifiedTime"] > got["LastModifiedTime"]

    listed = client.list_function_url_configs(FunctionName=name)["FunctionUrlConfigs"]
    assert [c["FunctionUrl"] for c in listed] == [url]

    expect_error(
        client,
        "ResourceConflictException",
        409,
        lambda: client.create_function_url_config(FunctionName=name, AuthType="NONE"),
        f"Failed to create function url config for [functionArn = {arn(name)}]. Error message:  "
        "FunctionUrlConfig exists for this Lambda function",
    )
    resp = client.delete_function_url_config(FunctionName=name)
    assert resp["ResponseMetadata"]["HTTPStatusCode"] == 204
    for call in (
        lambda: client.get_function_url_config(FunctionName=name),
        lambda: client.delete_function_url_config(FunctionName=name),
        lambda: client.update_function_url_config(FunctionName=name, AuthType="NONE"),
    ):
        expect_error(client, "ResourceNotFoundException", 404, call, NOT_FOUND)
    assert requests.get(url, timeout=10).status_code == 403


def test_url_config_qualifiers_and_errors(client, unvalidated, make_function):
    name = make_function("echo")
    client.publish_version(FunctionName=name)
    client.create_alias(FunctionName=name, Name="live", FunctionVersion="1")
    aliased = client.create_function_url_config(
        FunctionName=name, Qualifier="live", AuthType="AWS_IAM"
    )
    assert aliased["FunctionArn"] == arn(name, "live")
    assert client.get_function_url_config(FunctionName=f"{name}:live")["AuthType"] == "AWS_IAM"
    for q in ("1", "$LATEST"):
        expect_error(
            client,
            "ValidationException",
            400,
            lambda: client.create_function_url_config(FunctionName=name, Qualifier=q, AuthType="NONE"),
            f"1 validation error detected: Value '{q}' at 'qualifier' failed to satisfy constraint: "
            "Member must satisfy regular expression pattern: ((?!^\\d+$)^[0-9a-zA-Z-_]+$)",
        )
    expect_error(
        unvalidated,
        "ValidationException",
        400,
        lambda: unvalidated.create_function_url_config(
            FunctionName=name, AuthType="NONE", InvokeMode="UNKNOWN"
        ),
        "1 validation error detected: Value 'UNKNOWN' at 'invokeMode' failed to satisfy "
        "constraint: Member must satisfy enum value set: [RESPONSE_STREAM, BUFFERED]",
    )
    expect_error(
        unvalidated,
        "ValidationException",
        400,
        lambda: unvalidated.create_function_url_config(FunctionName=name, AuthType="OPEN"),
    )
    missing = unique("missing")
    expect_error(
        client,
        "ResourceNotFoundException",
        404,
        lambda: client.get_function_url_config(FunctionName=missing),
        NOT_FOUND,
    )
    expect_error(
        client,
        "ResourceNotFoundException",
        404,
        lambda: client.list_function_url_configs(FunctionName=missing),
        "Function does not exist",
    )
    # Deleting the alias takes its URL with it.
    client.delete_alias(FunctionName=name, Name="live")
    assert client.list_function_url_configs(FunctionName=name)["FunctionUrlConfigs"] == []


def test_handler_guest_receives_the_2_0_event(client, make_function, lamina):
    name, config = url_config(client, make_function, "echo")
    url_id = config["FunctionUrl"].rstrip("/").rsplit("/", 1)[1]
    r = requests.get(
        config["FunctionUrl"] + "my/path?a=1&a=2&b=x%20y",
        headers={"X-Custom": "v1", "Cookie": "c1=v1; c2=v2", "User-Agent": "compat/1"},
        timeout=30,
    )
    assert r.status_code == 200
    assert r.headers["content-type"] == "application/json"
    event = r.json()
    assert (event["version"], event["routeKey"]) == ("2.0", "$default")
    assert event["rawPath"] == "/my/path"
    assert event["rawQueryString"] == "a=1&a=2&b=x%20y"
    assert event["queryStringParameters"] == {"a": "1,2", "b": "x y"}
    assert event["headers"]["x-custom"] == "v1"
    assert event["headers"]["user-agent"] == "compat/1"
    assert all(k == k.lower() for k in event["headers"])
    assert "cookie" not in event["headers"]
    assert event["cookies"] == ["c1=v1", "c2=v2"]
    assert event["isBase64Encoded"] is False
    assert "body" not in event
    ctx = event["requestContext"]
    assert (ctx["accountId"], ctx["apiId"], ctx["domainPrefix"]) == ("000000000000", url_id, url_id)
    assert ctx["domainName"] == f"{url_id}.lambda-url.us-east-1.on.aws"
    assert ctx["http"] == {
        "method": "GET",
        "path": "/my/path",
        "protocol": "HTTP/1.1",
        "sourceIp": "127.0.0.1",
        "userAgent": "compat/1",
    }
    assert (ctx["routeKey"], ctx["stage"]) == ("$default", "$default")
    # One request, one id: the event's and the response's.
    assert ctx["requestId"] == r.headers["x-amzn-RequestId"]
    assert abs(ctx["timeEpoch"] / 1000 - time.time()) < 60
    assert re.fullmatch(r"\d\d/[A-Z][a-z]{2}/\d{4}:\d\d:\d\d:\d\d \+0000", ctx["time"])

    posted = requests.post(
        config["FunctionUrl"], json={"order": 7}, timeout=30
    ).json()
    assert posted["rawPath"] == "/"
    assert (posted["body"], posted["isBase64Encoded"]) == ('{"order": 7}', False)
    assert posted["requestContext"]["http"]["method"] == "POST"

    binary = bytes(range(256))
    raw = requests.put(
        config["FunctionUrl"] + "bin",
        data=binary,
        headers={"Content-Type": "application/octet-stream"},
        timeout=30,
    ).json()
    assert raw["isBase64Encoded"] is True
    assert base64.b64decode(raw["body"]) == binary

    # The same URL by host name, as on AWS.
    host = requests.get(
        lamina.endpoint + "/by-host",
        headers={"Host": f"{url_id}.lambda-url.us-east-1.localhost"},
        timeout=30,
    )
    assert host.status_code == 200 and host.json()["rawPath"] == "/by-host"


def test_response_mapping_of_plain_json(client, make_function):
    # Any JSON without statusCode is a 200 application/json body, re-serialised compactly.
    name, config = url_config(client, make_function, "faults")
    r = requests.get(config["FunctionUrl"], timeout=30)
    assert (r.status_code, r.headers["content-type"], r.content) == (
        200,
        "application/json",
        b'{"ok":true}',
    )


def test_function_errors_are_502(client, make_function):
    # compute cannot read a URL event as {"n": N}: the handler fails.
    name, config = url_config(client, make_function, "compute")
    r = requests.post(config["FunctionUrl"], json={"n": 1}, timeout=30)
    assert (r.status_code, r.text) == (502, "Internal Server Error")
    name = make_function("sleep", Timeout=1)
    config = client.create_function_url_config(FunctionName=name, AuthType="NONE")
    r = requests.get(config["FunctionUrl"], timeout=30)
    assert (r.status_code, r.text) == (502, "Internal Server Error")


def test_wasi_http_guest_is_served_directly(client, make_function):
    name, config = url_config(client, make_function, "http-hello")
    r = requests.get(config["FunctionUrl"] + "greet?who=me", timeout=30)
    assert (r.status_code, r.text) == (200, "Hello from wasi:http")
    assert r.headers["content-type"] == "text/plain"
    assert r.headers["x-path"] == "/greet?who=me"
    posted = requests.post(
        config["FunctionUrl"] + "echo", data=b"\x00\x01binary", headers={"Content-Type": "image/png"},
        timeout=30,
    )
    assert (posted.status_code, posted.content) == (200, b"\x00\x01binary")
    assert posted.headers["content-type"] == "image/png"

    # Invoked through the API, the HTTP guest's answer comes back as a response event.
    resp = client.invoke(FunctionName=name, Payload=b'{"via": "invoke"}')
    answer = json.loads(resp["Payload"].read())
    assert answer["statusCode"] == 200
    assert answer["body"] == '{"via": "invoke"}'


def test_unknown_and_protected_urls(client, make_function, lamina):
    r = requests.get(f"{lamina.endpoint}/lambda-url/{uuid.uuid4().hex}/", timeout=10)
    assert r.status_code == 403
    assert r.json() == {"Message": None}
    assert r.headers["x-amzn-ErrorType"] == "AccessDeniedException"

    name = make_function("echo")
    config = client.create_function_url_config(FunctionName=name, AuthType="AWS_IAM")
    r = requests.get(config["FunctionUrl"], timeout=10)
    assert r.status_code == 403 and r.json() == {"Message": None}


def test_oversized_url_body_names_the_6_mb_limit(client, make_function, lamina):
    # A function URL takes what Invoke takes: 6 MB (6291456 bytes). The 413 names that
    # limit, by path and by host alike; it used to name the 1 MB control-plane limit.
    limit = 6 * 1024 * 1024
    name, config = url_config(client, make_function, "http-hello")
    url_id = config["FunctionUrl"].rstrip("/").rsplit("/", 1)[1]
    big = b"x" * (2 * 1024 * 1024)
    served = requests.post(config["FunctionUrl"] + "echo", data=big, timeout=60)
    assert (served.status_code, len(served.content)) == (200, len(big))
    message = {
        "Message": f"Request must be smaller than {limit} bytes for the InvokeFunction operation"
    }
    for url, headers in (
        (config["FunctionUrl"] + "echo", {}),
        (lamina.endpoint + "/echo", {"Host": f"{url_id}.lambda-url.us-east-1.localhost"}),
    ):
        r = requests.post(url, data=b"x" * (limit + 1), headers=headers, timeout=60)
        assert (r.status_code, r.json()) == (413, message)
        assert r.headers["x-amzn-ErrorType"] == "RequestEntityTooLargeException"


def test_cors(client, make_function):
    name, config = url_config(
        client,
        make_function,
        "echo",
        Cors={
            "AllowOrigins": ["https://example.com"],
            "AllowMethods": ["GET", "POST"],
            "AllowHeaders": ["x-custom"],
            "MaxAge": 300,
        },
    )
    pre = requests.options(
        config["FunctionUrl"],
        headers={"Origin": "https://example.com", "Access-Control-Request-Method": "POST"},
        timeout=10,
    )
    assert pre.status_code == 200
    assert pre.headers["access-control-allow-origin"] == "https://example.com"
    assert pre.headers["access-control-allow-methods"] == "GET,POST"
    assert pre.headers["access-control-max-age"] == "300"
    r = requests.get(config["FunctionUrl"], headers={"Origin": "https://example.com"}, timeout=10)
    assert r.headers["access-control-allow-origin"] == "https://example.com"
    other = requests.get(config["FunctionUrl"], headers={"Origin": "https://evil.test"}, timeout=10)
    assert "access-control-allow-origin" not in other.headers


def test_alias_url_runs_the_alias_version(client, make_function):
    name = make_function("echo")
    client.publish_version(FunctionName=name)
    client.create_alias(FunctionName=name, Name="live", FunctionVersion="1")
    config = client.create_function_url_config(FunctionName=name, Qualifier="live", AuthType="NONE")
    client.update_function_code(FunctionName=name, ZipFile=wasm_zip("hello"))
    r = requests.get(config["FunctionUrl"] + "still-echo", timeout=30)
    assert r.json()["rawPath"] == "/still-echo"
    latest = client.create_function_url_config(FunctionName=name, AuthType="NONE")
    assert requests.get(latest["FunctionUrl"], timeout=30).json() == {
        "message": "Hello from Lamina"
    }


def test_weighted_alias_over_two_guest_kinds_never_fails(client, make_function):
    # Version 1 is a handler guest, version 2 a wasi:http guest; each alias splits traffic
    # between them, one primary each way. Each call must draw its version once and shape
    # the request for that version's kind: a handler handed a raw HTTP request used to
    # surface as a 500.
    name = make_function("echo")
    client.publish_version(FunctionName=name)
    client.update_function_code(FunctionName=name, ZipFile=wasm_zip("http-hello"))
    client.publish_version(FunctionName=name)
    for alias, primary, extra in (("handler-first", "1", "2"), ("http-first", "2", "1")):
        client.create_alias(
            FunctionName=name,
            Name=alias,
            FunctionVersion=primary,
            RoutingConfig={"AdditionalVersionWeights": {extra: 0.5}},
        )
        config = client.create_function_url_config(
            FunctionName=name, Qualifier=alias, AuthType="NONE"
        )
        served = {"handler": 0, "wasi:http": 0}
        for _ in range(60):
            r = requests.get(config["FunctionUrl"], timeout=30)
            assert r.status_code == 200, (alias, r.status_code, r.text)
            if r.text == "Hello from wasi:http":
                served["wasi:http"] += 1
            else:
                assert r.json()["rawPath"] == "/", r.text
                served["handler"] += 1
        # 60 draws at 50 %: both versions serve (one missing has odds of 2^-59).
        assert served["handler"] > 0 and served["wasi:http"] > 0, (alias, served)

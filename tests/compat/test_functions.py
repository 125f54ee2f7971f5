"""Function lifecycle: CreateFunction, GetFunction(Configuration), ListFunctions,
DeleteFunction, UpdateFunctionCode, UpdateFunctionConfiguration, the waiters, and every
way a client may name a function."""

import json
import re

import pytest
import requests

from conftest import (
    ACCOUNT,
    REGION,
    ROLE,
    UUID_RE,
    FunctionFactory,
    arn,
    code_sha256,
    expect_error,
    unique,
    wasm_zip,
    zip_of,
)

LAST_MODIFIED_RE = re.compile(r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}\+0000$")


def payload(resp):
    return json.loads(resp["Payload"].read())


def test_create_function_returns_lambdas_configuration(client, make_function):
    name = unique("create")
    zip_bytes = wasm_zip("hello")
    resp = make_function.create(
        name=name,
        Code={"ZipFile": zip_bytes},
        Description="the greeter",
        Timeout=7,
        MemorySize=256,
        Environment={"Variables": {"GREETING": "hi"}},
    )
    assert resp["ResponseMetadata"]["HTTPStatusCode"] == 201
    config = {k: v for k, v in resp.items() if k != "ResponseMetadata"}
    assert LAST_MODIFIED_RE.match(config.pop("LastModified"))
    assert UUID_RE.match(config.pop("RevisionId"))
    runtime_version = config.pop("RuntimeVersionConfig")
    assert runtime_version["RuntimeVersionArn"].startswith(f"arn:aws:lambda:{REGION}::runtime:")
    assert config == {
        "FunctionName": name,
        "FunctionArn": arn(name),
        "Runtime": "wasm",
        "Role": ROLE,
        "Handler": "function.wasm",
        "CodeSize": len(zip_bytes),
        "CodeSha256": code_sha256(zip_bytes),
        "Description": "the greeter",
        "Timeout": 7,
        "MemorySize": 256,
        "Version": "$LATEST",
        "Environment": {"Variables": {"GREETING": "hi"}},
        "TracingConfig": {"Mode": "PassThrough"},
        "PackageType": "Zip",
        "Architectures": ["x86_64"],
        "EphemeralStorage": {"Size": 512},
        "SnapStart": {"ApplyOn": "None", "OptimizationStatus": "Off"},
        "LoggingConfig": {"LogFormat": "Text", "LogGroup": f"/aws/lambda/{name}"},
        "State": "Active",
        "LastUpdateStatus": "Successful",
    }
    assert isinstance(resp["CodeSize"], int)


def test_create_defaults_and_duplicate_name(client, make_function):
    resp = make_function.create("hello")
    assert (resp["Timeout"], resp["MemorySize"], resp["Description"]) == (3, 128, "")
    assert "Environment" not in resp
    expect_error(
        client,
        "ResourceConflictException",
        409,
        lambda: make_function.create("hello", name=resp["FunctionName"]),
        f"Function already exist: {resp['FunctionName']}",
    )


def test_create_with_publish_returns_version_1(client, make_function):
    resp = make_function.create("hello", Publish=True)
    assert resp["ResponseMetadata"]["HTTPStatusCode"] == 201
    assert resp["Version"] == "1"
    # Lambda reports the unqualified ARN here even though the answer describes version 1.
    assert resp["FunctionArn"] == arn(resp["FunctionName"])
    versions = client.list_versions_by_function(FunctionName=resp["FunctionName"])["Versions"]
    assert [v["Version"] for v in versions] == ["$LATEST", "1"]


def test_get_function_has_code_tags_and_concurrency(client, make_function):
    name = unique("get")
    zip_bytes = wasm_zip("echo")
    created = make_function.create(name=name, Code={"ZipFile": zip_bytes}, Tags={"team": "core"})
    got = client.get_function(FunctionName=name)
    assert got["ResponseMetadata"]["HTTPStatusCode"] == 200
    created.pop("ResponseMetadata")
    assert got["Configuration"] == created
    assert got["Code"]["RepositoryType"] == "S3"
    download = requests.get(got["Code"]["Location"], timeout=10)
    assert download.status_code == 200
    assert download.content == zip_bytes
    assert got["Tags"] == {"team": "core"}
    assert "Concurrency" not in got

    client.put_function_concurrency(FunctionName=name, ReservedConcurrentExecutions=5)
    got = client.get_function(FunctionName=name)
    assert got["Concurrency"] == {"ReservedConcurrentExecutions": 5}
    config = client.get_function_configuration(FunctionName=name)
    config.pop("ResponseMetadata")
    assert config == got["Configuration"]


def test_get_function_configuration_of_a_version(client, make_function):
    name = make_function("hello")
    client.publish_version(FunctionName=name)
    client.update_function_configuration(FunctionName=name, Description="later")
    v1 = client.get_function_configuration(FunctionName=name, Qualifier="1")
    assert (v1["Version"], v1["FunctionArn"], v1["Description"]) == ("1", arn(name, "1"), "")
    latest = client.get_function_configuration(FunctionName=name)
    assert (latest["Version"], latest["FunctionArn"], latest["Description"]) == (
        "$LATEST",
        arn(name),
        "later",
    )
    qualified = client.get_function(FunctionName=f"{name}:$LATEST")["Configuration"]
    assert qualified["FunctionArn"] == arn(name, "$LATEST")


def test_list_functions_pages_with_marker(client, make_function):
    names = {make_function("hello", name=unique("page")) for _ in range(5)}
    seen = []
    pages = 0
    marker = None
    while True:
        kwargs = {"MaxItems": 2}
        if marker:
            kwargs["Marker"] = marker
        page = client.list_functions(**kwargs)
        pages += 1
        assert len(page["Functions"]) <= 2
        for f in page["Functions"]:
            # List items leave out the state fields.
            for absent in ("State", "StateReason", "LastUpdateStatus", "RuntimeVersionConfig"):
                assert absent not in f, f
        seen += [f["FunctionName"] for f in page["Functions"]]
        marker = page.get("NextMarker")
        if not marker:
            break
    assert pages >= 3
    assert len(seen) == len(set(seen)), "a function was listed twice"
    assert names <= set(seen)

    everything = client.get_paginator("list_functions").paginate(
        PaginationConfig={"PageSize": 2}
    ).build_full_result()["Functions"]
    assert sorted(f["FunctionName"] for f in everything) == sorted(seen)


def test_list_functions_pages_hold_at_most_50(client, make_function):
    names = {make_function("hello", name=unique("many")) for _ in range(51)}
    page = client.list_functions(MaxItems=1000)
    assert len(page["Functions"]) == 50
    rest = client.list_functions(Marker=page["NextMarker"], MaxItems=1000)
    listed = [f["FunctionName"] for f in page["Functions"] + rest["Functions"]]
    assert names <= set(listed) and len(listed) == len(set(listed))


def test_list_functions_all_versions(client, make_function):
    name = make_function("hello")
    client.publish_version(FunctionName=name)
    mine = lambda fs: [f for f in fs if f["FunctionName"] == name]  # noqa: E731
    default = mine(client.list_functions(MaxItems=50)["Functions"])
    default += mine(
        client.get_paginator("list_functions").paginate().build_full_result()["Functions"]
    )
    assert {(f["Version"], f["FunctionArn"]) for f in default} == {("$LATEST", arn(name))}
    everything = client.get_paginator("list_functions").paginate(
        FunctionVersion="ALL"
    ).build_full_result()["Functions"]
    assert [(f["Version"], f["FunctionArn"]) for f in mine(everything)] == [
        ("$LATEST", arn(name, "$LATEST")),
        ("1", arn(name, "1")),
    ]
    expect_error(
        client,
        "ValidationException",
        400,
        lambda: client.list_functions(FunctionVersion="invalid"),
        "1 validation error detected: Value 'invalid' at 'functionVersion' failed to satisfy "
        "constraint: Member must satisfy enum value set: [ALL]",
    )


def test_delete_function(client, make_function):
    name = make_function("hello")
    resp = client.delete_function(FunctionName=name)
    assert resp["ResponseMetadata"]["HTTPStatusCode"] == 204
    not_found = f"Function not found: {arn(name)}"
    expect_error(
        client, "ResourceNotFoundException", 404, lambda: client.get_function(FunctionName=name),
        not_found,
    )
    expect_error(
        client,
        "ResourceNotFoundException",
        404,
        lambda: client.delete_function(FunctionName=name),
        not_found,
    )
    expect_error(
        client,
        "ResourceNotFoundException",
        404,
        lambda: client.delete_function(FunctionName=name, Qualifier="1"),
        not_found,
    )


def test_delete_function_versions(client, make_function):
    name = make_function("hello")
    client.publish_version(FunctionName=name)
    client.update_function_configuration(FunctionName=name, Description="two")
    client.publish_version(FunctionName=name)
    client.create_alias(FunctionName=name, Name="live", FunctionVersion="1")

    expect_error(
        client,
        "InvalidParameterValueException",
        400,
        lambda: client.delete_function(FunctionName=name, Qualifier="$LATEST"),
        "$LATEST version cannot be deleted without deleting the function.",
    )
    expect_error(
        client,
        "ResourceConflictException",
        409,
        lambda: client.delete_function(FunctionName=name, Qualifier="1"),
        "Unable to delete version because the following aliases reference it: [live]",
    )
    expect_error(
        client,
        "InvalidParameterValueException",
        400,
        lambda: client.delete_function(FunctionName=name, Qualifier="live"),
        "Deletion of aliases is not currently supported.",
    )
    resp = client.delete_function(FunctionName=f"{name}:2")
    assert resp["ResponseMetadata"]["HTTPStatusCode"] == 204
    expect_error(
        client,
        "ResourceNotFoundException",
        404,
        lambda: client.get_function(FunctionName=name, Qualifier="2"),
        f"Function not found: {arn(name, '2')}",
    )
    # Deleting a version that is not there is a no-op, as on Lambda.
    assert client.delete_function(FunctionName=name, Qualifier="2")[
        "ResponseMetadata"
    ]["HTTPStatusCode"] == 204
    versions = client.list_versions_by_function(FunctionName=name)["Versions"]
    assert [v["Version"] for v in versions] == ["$LATEST", "1"]
    # The next version number is never reused.
    client.update_function_configuration(FunctionName=name, Description="three")
    assert client.publish_version(FunctionName=name)["Version"] == "3"


def test_update_function_code(client, make_function):
    name = make_function("counter")
    first = client.get_function_configuration(FunctionName=name)
    assert payload(client.invoke(FunctionName=name))["count"] == 1
    assert payload(client.invoke(FunctionName=name))["count"] == 2

    new_zip = wasm_zip("hello")
    updated = client.update_function_code(FunctionName=name, ZipFile=new_zip)
    assert updated["ResponseMetadata"]["HTTPStatusCode"] == 200
    assert updated["CodeSha256"] == code_sha256(new_zip)
    assert updated["CodeSize"] == len(new_zip)
    assert updated["RevisionId"] != first["RevisionId"]
    assert updated["LastUpdateStatus"] == "Successful"
    assert LAST_MODIFIED_RE.match(updated["LastModified"])
    assert updated["LastModified"] >= first["LastModified"]
    # The warm environment of the old code must not answer again.
    assert payload(client.invoke(FunctionName=name)) == {"message": "Hello from Lamina"}
    got = client.get_function(FunctionName=name)
    assert requests.get(got["Code"]["Location"], timeout=10).content == new_zip


def test_update_function_code_publish_and_dry_run(client, make_function):
    name = make_function("hello")
    before = client.get_function_configuration(FunctionName=name)
    dry = client.update_function_code(FunctionName=name, ZipFile=wasm_zip("echo"), DryRun=True)
    assert dry["CodeSha256"] == code_sha256(wasm_zip("echo"))
    after = client.get_function_configuration(FunctionName=name)
    assert after["CodeSha256"] == before["CodeSha256"]
    assert after["RevisionId"] == before["RevisionId"]

    published = client.update_function_code(
        FunctionName=name, ZipFile=wasm_zip("echo"), Publish=True
    )
    assert (published["Version"], published["FunctionArn"]) == ("1", arn(name, "1"))
    assert published["CodeSha256"] == code_sha256(wasm_zip("echo"))


def test_update_function_code_rejects_bad_zips(client, make_function):
    name = make_function("hello")
    expect_error(
        client,
        "InvalidParameterValueException",
        400,
        lambda: client.update_function_code(FunctionName=name, ZipFile=b"not a zip"),
        "Could not unzip uploaded file. Please check your file, then try to upload again.",
    )
    expect_error(
        client,
        "InvalidParameterValueException",
        400,
        lambda: make_function.create("hello", Code={"ZipFile": b"PK\x03\x04broken"}),
        "Could not unzip uploaded file. Please check your file, then try to upload again.",
    )
    # A zip without the handler's module is refused at upload, not at the first invoke.
    e = expect_error(
        client,
        "InvalidParameterValueException",
        400,
        lambda: make_function.create("hello", Code={"ZipFile": zip_of({"other.txt": b"x"})}),
    )
    assert "function.wasm" in e.response["Error"]["Message"]


def test_update_function_configuration_reaches_the_guest(client, make_function):
    name = make_function("env-dump")
    env = payload(client.invoke(FunctionName=name))["env"]
    assert env["AWS_LAMBDA_FUNCTION_MEMORY_SIZE"] == "128"
    assert "COLOUR" not in env

    first = client.get_function_configuration(FunctionName=name)
    updated = client.update_function_configuration(
        FunctionName=name,
        MemorySize=512,
        Timeout=30,
        Description="configured",
        Environment={"Variables": {"COLOUR": "teal", "SIZE": "L"}},
    )
    assert (updated["MemorySize"], updated["Timeout"], updated["Description"]) == (
        512,
        30,
        "configured",
    )
    assert updated["Environment"] == {"Variables": {"COLOUR": "teal", "SIZE": "L"}}
    assert updated["RevisionId"] != first["RevisionId"]
    assert updated["CodeSha256"] == first["CodeSha256"]
    assert updated["LastUpdateStatus"] == "Successful"

    env = payload(client.invoke(FunctionName=name))["env"]
    assert env["AWS_LAMBDA_FUNCTION_MEMORY_SIZE"] == "512"
    assert (env["COLOUR"], env["SIZE"]) == ("teal", "L")
    assert env["AWS_LAMBDA_FUNCTION_NAME"] == name
    assert env["AWS_LAMBDA_FUNCTION_VERSION"] == "$LATEST"
    assert env["AWS_REGION"] == REGION

    # An empty map removes the variables.
    cleared = client.update_function_configuration(
        FunctionName=name, Environment={"Variables": {}}
    )
    assert "COLOUR" not in cleared.get("Environment", {}).get("Variables", {})
    assert "COLOUR" not in payload(client.invoke(FunctionName=name))["env"]


def test_revision_ids_guard_updates(client, make_function):
    name = make_function("hello")
    rev = client.get_function(FunctionName=name)["Configuration"]["RevisionId"]
    updated = client.update_function_configuration(
        FunctionName=name, Description="one", RevisionId=rev
    )
    assert updated["RevisionId"] != rev
    stale = (
        "The Revision Id provided does not match the latest Revision Id. "
        "Call the GetFunction/GetAlias API to retrieve the latest Revision Id"
    )
    expect_error(
        client,
        "PreconditionFailedException",
        412,
        lambda: client.update_function_configuration(
            FunctionName=name, Description="two", RevisionId=rev
        ),
        stale,
    )
    expect_error(
        client,
        "PreconditionFailedException",
        412,
        lambda: client.update_function_code(
            FunctionName=name, ZipFile=wasm_zip("echo"), RevisionId=rev
        ),
        stale,
    )
    assert client.get_function_configuration(FunctionName=name)["Description"] == "one"


def test_waiters_pass(client, make_function):
    name = make_function("hello")
    fast = {"Delay": 1, "MaxAttempts": 5}
    client.get_waiter("function_active_v2").wait(FunctionName=name, WaiterConfig=fast)
    client.get_waiter("function_active").wait(FunctionName=name, WaiterConfig=fast)
    client.get_waiter("function_exists").wait(FunctionName=name, WaiterConfig=fast)
    client.update_function_configuration(FunctionName=name, MemorySize=256)
    client.get_waiter("function_updated_v2").wait(FunctionName=name, WaiterConfig=fast)
    client.get_waiter("function_updated").wait(FunctionName=name, WaiterConfig=fast)
    client.publish_version(FunctionName=name)
    client.get_waiter("published_version_active").wait(
        FunctionName=name, Qualifier="1", WaiterConfig=fast
    )


# ---- names, ARNs and qualifiers ------------------------------------------------------


def test_every_form_of_function_name(client, make_function):
    name = make_function("hello")
    client.publish_version(FunctionName=name)
    client.create_alias(FunctionName=name, Name="live", FunctionVersion="1")
    forms = {
        name: ("$LATEST", arn(name)),
        f"{name}:$LATEST": ("$LATEST", arn(name, "$LATEST")),
        f"{name}:1": ("1", arn(name, "1")),
        f"{name}:live": ("1", arn(name, "live")),
        f"{ACCOUNT}:function:{name}": ("$LATEST", arn(name)),
        f"{ACCOUNT}:function:{name}:1": ("1", arn(name, "1")),
        arn(name): ("$LATEST", arn(name)),
        arn(name, "1"): ("1", arn(name, "1")),
        arn(name, "live"): ("1", arn(name, "live")),
    }
    for ref, (version, function_arn) in forms.items():
        config = client.get_function_configuration(FunctionName=ref)
        assert (config["Version"], config["FunctionArn"]) == (version, function_arn), ref
        resp = client.invoke(FunctionName=ref)
        assert resp["StatusCode"] == 200, ref
        assert resp["ExecutedVersion"] == version, ref
    # ?Qualifier agrees with a qualifier in the name, or stands alone.
    assert client.get_function(FunctionName=f"{name}:1", Qualifier="1")["Configuration"][
        "Version"
    ] == "1"
    assert client.get_function(FunctionName=arn(name), Qualifier="live")["Configuration"][
        "Version"
    ] == "1"


def test_qualifier_mismatch_and_other_regions(client, make_function):
    name = make_function("hello")
    mismatch = "The derived qualifier from the function name does not match the specified qualifier."
    for call in (
        lambda: client.get_function(FunctionName=f"{name}:1", Qualifier="2"),
        lambda: client.get_function_configuration(FunctionName=arn(name, "1"), Qualifier="2"),
        lambda: client.delete_function(FunctionName=f"{name}:1", Qualifier="$LATEST"),
        lambda: client.invoke(FunctionName=f"{name}:1", Qualifier="2"),
    ):
        expect_error(client, "InvalidParameterValueException", 400, call, mismatch)
    other = f"arn:aws:lambda:ap-southeast-1:{ACCOUNT}:function:{name}"
    expect_error(
        client,
        "ResourceNotFoundException",
        404,
        lambda: client.get_function(FunctionName=other),
        f"Functions from 'ap-southeast-1' are not reachable in this region ('{REGION}')",
    )
    expect_error(
        client,
        "ResourceNotFoundException",
        404,
        lambda: client.invoke(FunctionName=other),
        f"Functions from 'ap-southeast-1' are not reachable in this region ('{REGION}')",
    )


def test_missing_functions_and_versions(client, make_function):
    missing = unique("missing")
    expect_error(
        client,
        "ResourceNotFoundException",
        404,
        lambda: client.get_function(FunctionName=missing),
        f"Function not found: {arn(missing)}",
    )
    expect_error(
        client,
        "ResourceNotFoundException",
        404,
        lambda: client.get_function_configuration(FunctionName=missing),
        f"Function not found: {arn(missing)}",
    )
    expect_error(
        client,
        "ResourceNotFoundException",
        404,
        lambda: client.get_function(FunctionName=f"{missing}:$LATEST"),
        f"Function not found: {arn(missing, '$LATEST')}",
    )
    name = make_function("hello")
    expect_error(
        client,
        "ResourceNotFoundException",
        404,
        lambda: client.get_function(FunctionName=name, Qualifier="1221"),
        f"Function not found: {arn(name, '1221')}",
    )
    expect_error(
        client,
        "ResourceNotFoundException",
        404,
        lambda: client.get_function(FunctionName=name, Qualifier="nosuchalias"),
        f"Function not found: {arn(name, 'nosuchalias')}",
    )


def test_function_name_validation(client, unvalidated, make_function):
    too_long = "a" * 65
    expect_error(
        client,
        "InvalidParameterValueException",
        400,
        lambda: make_function.create("hello", name=too_long),
        f"1 validation error detected: Value '{too_long}' at 'functionName' failed to satisfy "
        "constraint: Member must have length less than or equal to 64",
    )
    long_arn = arn("b" * 110)
    expect_error(
        client,
        "ValidationException",
        400,
        lambda: make_function.create("hello", name=long_arn),
        f"1 validation error detected: Value '{long_arn}' at 'functionName' failed to satisfy "
        "constraint: Member must have length less than or equal to 140",
    )
    e = expect_error(
        client,
        "ValidationException",
        400,
        lambda: make_function.create("hello", name="invalid:function:name"),
    )
    assert e.response["Error"]["Message"].startswith(
        "1 validation error detected: Value 'invalid:function:name' at 'functionName' failed to "
        "satisfy constraint: Member must satisfy regular expression pattern: "
    )
    expect_error(
        client,
        "ValidationException",
        400,
        lambda: client.get_function(FunctionName="bad name!"),
    )
    # A 64-character name is fine.
    assert make_function("hello", name="c" * 54 + unique("")[-10:]).startswith("c" * 54)


@pytest.mark.parametrize(
    "field,value,code,message",
    [
        (
            "MemorySize",
            127,
            "ValidationException",
            "1 validation error detected: Value '127' at 'memorySize' failed to satisfy constraint: "
            "Member must have value greater than or equal to 128",
        ),
        (
            "MemorySize",
            10241,
            "ValidationException",
            "1 validation error detected: Value '10241' at 'memorySize' failed to satisfy constraint: "
            "Member must have value less than or equal to 10240",
        ),
        (
            "Timeout",
            0,
            "ValidationException",
            "1 validation error detected: Value '0' at 'timeout' failed to satisfy constraint: "
            "Member must have value greater than or equal to 1",
        ),
        (
            "Timeout",
            901,
            "ValidationException",
            "1 validation error detected: Value '901' at 'timeout' failed to satisfy constraint: "
            "Member must have value less than or equal to 900",
        ),
        (
            "Runtime",
            "nodejs22.x",
            "InvalidParameterValueException",
            "Value nodejs22.x at 'runtime' failed to satisfy constraint: Member must satisfy "
            "enum value set: [wasm, onnx, python3.14] or be a valid ARN",
        ),
        (
            "Role",
            "r1",
            "ValidationException",
            "1 validation error detected: Value 'r1' at 'role' failed to satisfy constraint: "
            "Member must satisfy regular expression pattern: "
            "arn:(aws[a-zA-Z-]*)?:iam::\\d{12}:role/?[a-zA-Z_0-9+=,.@\\-_/]+",
        ),
        (
            "Architectures",
            ["x86_64", "arm64"],
            "ValidationException",
            "1 validation error detected: Value '[x86_64, arm64]' at 'architectures' failed to "
            "satisfy constraint: Member must have length less than or equal to 1",
        ),
    ],
    ids=["memory-low", "memory-high", "timeout-low", "timeout-high", "runtime", "role", "archs"],
)
def test_create_parameter_validation(unvalidated, field, value, code, message):
    factory = FunctionFactory(unvalidated)
    try:
        expect_error(unvalidated, code, 400, lambda: factory.create("hello", **{field: value}),
                     message)
    finally:
        factory.cleanup()


def test_update_configuration_validation(unvalidated, make_function):
    name = make_function("hello")
    expect_error(
        unvalidated,
        "ValidationException",
        400,
        lambda: unvalidated.update_function_configuration(FunctionName=name, MemorySize=10241),
    )
    expect_error(
        unvalidated,
        "InvalidParameterValueException",
        400,
        lambda: unvalidated.update_function_configuration(FunctionName=name, Runtime="nodejs20.x"),
        "Value nodejs20.x at 'runtime' failed to satisfy constraint: Member must satisfy enum "
        "value set: [wasm, onnx, python3.14] or be a valid ARN",
    )
    config = unvalidated.get_function_configuration(FunctionName=name)
    assert (config["MemorySize"], config["Runtime"]) == (128, "wasm")


def test_environment_limits(client, make_function):
    near = {"VAR": "x" * (4096 - len('{"VAR":""}'))}
    name = make_function("env-dump", Environment={"Variables": near})
    assert client.get_function_configuration(FunctionName=name)["Environment"] == {
        "Variables": near
    }
    over = {"VAR": "x" * (4097 - len('{"VAR":""}'))}
    expect_error(
        client,
        "InvalidParameterValueException",
        400,
        lambda: client.update_function_configuration(
            FunctionName=name, Environment={"Variables": over}
        ),
        "Lambda was unable to configure your environment variables because the environment "
        "variables you have provided exceeded the 4KB limit. String measured: "
        + json.dumps(over, separators=(",", ":")),
    )
    expect_error(
        client,
        "InvalidParameterValueException",
        400,
        lambda: make_function.create("hello", Environment={"Variables": over}),
    )
    expect_error(
        client,
        "InvalidParameterValueException",
        400,
        lambda: client.update_function_configuration(
            FunctionName=name, Environment={"Variables": {"AWS_REGION": "eu-west-1", "OK": "1"}}
        ),
        "Lambda was unable to configure your environment variables because the environment "
        "variables you have provided contains reserved keys that are currently not supported "
        "for modification. Reserved keys used in this request: AWS_REGION",
    )
    expect_error(
        client,
        "ValidationException",
        400,
        lambda: client.update_function_configuration(
            FunctionName=name, Environment={"Variables": {"1BAD": "x"}}
        ),
    )

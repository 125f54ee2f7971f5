"""PublishVersion, ListVersionsByFunction and the alias operations, with routing-weight
validation and weighted invocation."""

import json
import uuid

import pytest

from conftest import (
    UUID_RE,
    FunctionFactory,
    arn,
    code_sha256,
    expect_error,
    unique,
    wasm_zip,
)

STALE = (
    "The Revision Id provided does not match the latest Revision Id. "
    "Call the GetFunction/GetAlias API to retrieve the latest Revision Id"
)


def test_publish_version(client, make_function):
    name = make_function("hello")
    latest = client.get_function_configuration(FunctionName=name)
    v1 = client.publish_version(FunctionName=name, Description="first")
    assert v1["ResponseMetadata"]["HTTPStatusCode"] == 201
    assert (v1["Version"], v1["FunctionArn"], v1["Description"]) == ("1", arn(name, "1"), "first")
    assert v1["CodeSha256"] == latest["CodeSha256"] == code_sha256(wasm_zip("hello"))
    assert v1["State"] == "Active"
    assert UUID_RE.match(v1["RevisionId"])

    # Nothing changed in $LATEST: the newest version is returned, no new one is made.
    again = client.publish_version(FunctionName=name, Description="first")
    assert (again["Version"], again["RevisionId"]) == ("1", v1["RevisionId"])

    client.update_function_code(FunctionName=name, ZipFile=wasm_zip("echo"))
    current = client.get_function_configuration(FunctionName=name)["CodeSha256"]
    v2 = client.publish_version(FunctionName=name, CodeSha256=current)
    assert (v2["Version"], v2["CodeSha256"]) == ("2", code_sha256(wasm_zip("echo")))
    # Published versions are immutable snapshots.
    assert client.get_function_configuration(FunctionName=name, Qualifier="1")[
        "CodeSha256"
    ] == code_sha256(wasm_zip("hello"))
    assert json.loads(client.invoke(FunctionName=name, Qualifier="1")["Payload"].read()) == {
        "message": "Hello from Lamina"
    }


def test_publish_version_preconditions(client, make_function):
    name = make_function("hello")
    current = client.get_function_configuration(FunctionName=name)
    expect_error(
        client,
        "InvalidParameterValueException",
        400,
        lambda: client.publish_version(FunctionName=name, CodeSha256="somenonexistentsha256"),
        "CodeSHA256 (somenonexistentsha256) is different from current CodeSHA256 in $LATEST "
        f"({current['CodeSha256']}). Please try again with the CodeSHA256 in $LATEST.",
    )
    expect_error(
        client,
        "PreconditionFailedException",
        412,
        lambda: client.publish_version(FunctionName=name, RevisionId=str(uuid.uuid4())),
        STALE,
    )
    ok = client.publish_version(FunctionName=name, RevisionId=current["RevisionId"])
    assert ok["Version"] == "1"
    missing = unique("missing")
    expect_error(
        client,
        "ResourceNotFoundException",
        404,
        lambda: client.publish_version(FunctionName=missing),
        f"Function not found: {arn(missing)}",
    )


def test_list_versions_by_function(client, make_function):
    name = make_function("hello")
    for description in ("a", "b", "c"):
        client.update_function_configuration(FunctionName=name, Description=description)
        client.publish_version(FunctionName=name)
    versions = client.list_versions_by_function(FunctionName=name)["Versions"]
    assert [(v["Version"], v["FunctionArn"]) for v in versions] == [
        ("$LATEST", arn(name, "$LATEST")),
        ("1", arn(name, "1")),
        ("2", arn(name, "2")),
        ("3", arn(name, "3")),
    ]
    assert [v["Description"] for v in versions] == ["c", "a", "b", "c"]
    for v in versions:
        assert "State" not in v and "LastUpdateStatus" not in v

    first = client.list_versions_by_function(FunctionName=name, MaxItems=3)
    assert [v["Version"] for v in first["Versions"]] == ["$LATEST", "1", "2"]
    rest = client.list_versions_by_function(FunctionName=name, Marker=first["NextMarker"])
    assert [v["Version"] for v in rest["Versions"]] == ["3"]
    assert "NextMarker" not in rest
    paged = client.get_paginator("list_versions_by_function").paginate(
        FunctionName=name, PaginationConfig={"PageSize": 1}
    ).build_full_result()["Versions"]
    assert [v["Version"] for v in paged] == ["$LATEST", "1", "2", "3"]


def _versions(client, name, n):
    for i in range(n):
        client.update_function_configuration(FunctionName=name, Description=f"v{i + 1}")
        client.publish_version(FunctionName=name)


def test_alias_lifecycle(client, make_function):
    name = make_function("hello")
    _versions(client, name, 2)
    created = client.create_alias(
        FunctionName=name, Name="live", FunctionVersion="1", Description="production"
    )
    assert created["ResponseMetadata"]["HTTPStatusCode"] == 201
    created.pop("ResponseMetadata")
    revision = created.pop("RevisionId")
    assert UUID_RE.match(revision)
    assert created == {
        "AliasArn": arn(name, "live"),
        "Name": "live",
        "FunctionVersion": "1",
        "Description": "production",
    }
    got = client.get_alias(FunctionName=name, Name="live")
    assert (got["AliasArn"], got["RevisionId"]) == (arn(name, "live"), revision)

    updated = client.update_alias(
        FunctionName=name,
        Name="live",
        FunctionVersion="2",
        RoutingConfig={"AdditionalVersionWeights": {"1": 0.25}},
        RevisionId=revision,
    )
    assert (updated["FunctionVersion"], updated["Description"]) == ("2", "production")
    assert updated["RoutingConfig"] == {"AdditionalVersionWeights": {"1": 0.25}}
    assert updated["RevisionId"] != revision
    expect_error(
        client,
        "PreconditionFailedException",
        412,
        lambda: client.update_alias(FunctionName=name, Name="live", RevisionId=revision),
        STALE,
    )
    # Only the description changes; routing stays.
    described = client.update_alias(FunctionName=name, Name="live", Description="new")
    assert described["RoutingConfig"] == {"AdditionalVersionWeights": {"1": 0.25}}
    assert described["FunctionVersion"] == "2"

    client.create_alias(FunctionName=name, Name="beta", FunctionVersion="$LATEST")
    aliases = client.list_aliases(FunctionName=name)["Aliases"]
    assert sorted(a["Name"] for a in aliases) == ["beta", "live"]
    assert [a["Name"] for a in client.list_aliases(FunctionName=name, FunctionVersion="2")[
        "Aliases"
    ]] == ["live"]
    page = client.list_aliases(FunctionName=name, MaxItems=1)
    assert len(page["Aliases"]) == 1 and "NextMarker" in page
    rest = client.list_aliases(FunctionName=name, Marker=page["NextMarker"])
    assert {page["Aliases"][0]["Name"], rest["Aliases"][0]["Name"]} == {"beta", "live"}

    resp = client.delete_alias(FunctionName=name, Name="beta")
    assert resp["ResponseMetadata"]["HTTPStatusCode"] == 204
    expect_error(
        client,
        "ResourceNotFoundException",
        404,
        lambda: client.get_alias(FunctionName=name, Name="beta"),
        f"Cannot find alias arn: {arn(name, 'beta')}",
    )
    # Deleting an alias that is gone is not an error.
    assert client.delete_alias(FunctionName=name, Name="beta")["ResponseMetadata"][
        "HTTPStatusCode"
    ] == 204
    expect_error(
        client,
        "ResourceNotFoundException",
        404,
        lambda: client.update_alias(FunctionName=name, Name="beta", Description="x"),
        f"Alias not found: {arn(name, 'beta')}",
    )


def test_alias_errors(client, make_function):
    name = make_function("hello")
    _versions(client, name, 2)
    client.create_alias(FunctionName=name, Name="custom", FunctionVersion="1")
    expect_error(
        client,
        "ResourceConflictException",
        409,
        lambda: client.create_alias(FunctionName=name, Name="custom", FunctionVersion="1"),
        f"Alias already exists: {arn(name, 'custom')}",
    )
    expect_error(
        client,
        "ValidationException",
        400,
        lambda: client.create_alias(FunctionName=name, Name="2024", FunctionVersion="1"),
        "1 validation error detected: Value '2024' at 'name' failed to satisfy constraint: "
        "Member must satisfy regular expression pattern: (?!^[0-9]+$)([a-zA-Z0-9-_]+)",
    )
    expect_error(
        client,
        "ResourceNotFoundException",
        404,
        lambda: client.create_alias(FunctionName=name, Name="ghost", FunctionVersion="10"),
        f"Function not found: {arn(name, '10')}",
    )
    missing = unique("missing")
    expect_error(
        client,
        "ResourceNotFoundException",
        404,
        lambda: client.create_alias(FunctionName=missing, Name="a", FunctionVersion="1"),
        f"Function not found: {arn(missing)}",
    )


ROUTING_CASES = [
    (
        "1",
        {"1": 0.1, "2": 0.1},
        "InvalidParameterValueException",
        "Number of items in AdditionalVersionWeights cannot be greater than 1",
    ),
    (
        "1",
        {"2": 2.0},
        "ValidationException",
        "1 validation error detected: Value '{2=2.0}' at 'routingConfig.additionalVersionWeights' "
        "failed to satisfy constraint: Map value must satisfy constraint: [Member must have value "
        "less than or equal to 1.0, Member must have value greater than or equal to 0.0, Member "
        "must not be null]",
    ),
    (
        "1",
        {"2": -1.0},
        "ValidationException",
        "1 validation error detected: Value '{2=-1.0}' at 'routingConfig.additionalVersionWeights' "
        "failed to satisfy constraint: Map value must satisfy constraint: [Member must have value "
        "less than or equal to 1.0, Member must have value greater than or equal to 0.0, Member "
        "must not be null]",
    ),
    (
        "1",
        {"1": 0.5},
        "InvalidParameterValueException",
        "Invalid function version 1. Function version 1 is already included in routing "
        "configuration.",
    ),
    (
        "$LATEST",
        {"1": 0.5},
        "InvalidParameterValueException",
        "$LATEST is not supported for an alias pointing to more than 1 version",
    ),
    (
        "1",
        {"$LATEST": 0.5},
        "ValidationException",
        "1 validation error detected: Value '{$LATEST=0.5}' at "
        "'routingConfig.additionalVersionWeights' failed to satisfy constraint: Map keys must "
        "satisfy constraint: [Member must have length less than or equal to 1024, Member must "
        "have length greater than or equal to 1, Member must satisfy regular expression pattern: "
        "[0-9]+]",
    ),
    ("1", {"9": 0.5}, "ResourceNotFoundException", "Function not found: {arn}:9"),
]


@pytest.mark.parametrize(
    "version,weights,code,message",
    ROUTING_CASES,
    ids=["two", "above-1", "below-0", "same", "latest-primary", "latest-key", "missing"],
)
def test_routing_weight_validation(unvalidated, version, weights, code, message):
    client = unvalidated
    factory = FunctionFactory(client)
    try:
        name = factory("hello")
        _versions(client, name, 2)
        message = message.replace("{arn}", arn(name))
        status = 404 if code == "ResourceNotFoundException" else 400
        expect_error(
            client,
            code,
            status,
            lambda: client.create_alias(
                FunctionName=name,
                Name="weighted",
                FunctionVersion=version,
                RoutingConfig={"AdditionalVersionWeights": weights},
            ),
            message,
        )
        client.create_alias(FunctionName=name, Name="plain", FunctionVersion="1")
        expect_error(
            client,
            code,
            status,
            lambda: client.update_alias(
                FunctionName=name,
                Name="plain",
                FunctionVersion=version,
                RoutingConfig={"AdditionalVersionWeights": weights},
            ),
            message,
        )
    finally:
        factory.cleanup()


def test_weighted_alias_routes_between_versions(client, make_function):
    name = make_function("hello")
    client.publish_version(FunctionName=name)
    client.update_function_code(FunctionName=name, ZipFile=wasm_zip("echo"))
    client.publish_version(FunctionName=name)
    client.create_alias(
        FunctionName=name,
        Name="canary",
        FunctionVersion="1",
        RoutingConfig={"AdditionalVersionWeights": {"2": 0.5}},
    )
    executed = [
        client.invoke(FunctionName=name, Qualifier="canary", Payload=b"{}")["ExecutedVersion"]
        for _ in range(40)
    ]
    # 40 fair coin flips all landing on one side has probability 2^-39.
    assert set(executed) == {"1", "2"}
    client.update_alias(
        FunctionName=name, Name="canary", RoutingConfig={"AdditionalVersionWeights": {}}
    )
    executed = {
        client.invoke(FunctionName=name, Qualifier="canary")["ExecutedVersion"] for _ in range(5)
    }
    assert executed == {"1"}
    alias = client.get_alias(FunctionName=name, Name="canary")
    assert alias.get("RoutingConfig", {}).get("AdditionalVersionWeights", {}) == {}

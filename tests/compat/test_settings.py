"""Function-level settings: reserved and provisioned concurrency, account settings, tags,
event-invoke configs and resource policies."""

import datetime
import json
import time
import uuid

from conftest import arn, expect_error, unique

QUALIFIED_REFUSED = (
    "This operation is permitted on Lambda functions only. Aliases and versions do not support "
    "this operation. Please specify either a function name or an unqualified function ARN."
)


# ---- reserved concurrency -------------------------------------------------------------


def test_reserved_concurrency_lifecycle(client, make_function):
    name = make_function("hello")
    got = client.get_function_concurrency(FunctionName=name)
    assert "ReservedConcurrentExecutions" not in got
    put = client.put_function_concurrency(FunctionName=name, ReservedConcurrentExecutions=7)
    assert put["ResponseMetadata"]["HTTPStatusCode"] == 200
    assert put["ReservedConcurrentExecutions"] == 7
    assert client.get_function_concurrency(FunctionName=arn(name))[
        "ReservedConcurrentExecutions"
    ] == 7
    resp = client.delete_function_concurrency(FunctionName=name)
    assert resp["ResponseMetadata"]["HTTPStatusCode"] == 204
    assert "ReservedConcurrentExecutions" not in client.get_function_concurrency(FunctionName=name)
    assert "Concurrency" not in client.get_function(FunctionName=name)


def test_reserved_concurrency_errors(client, unvalidated, make_function):
    name = make_function("hello")
    client.publish_version(FunctionName=name)
    expect_error(
        client,
        "InvalidParameterValueException",
        400,
        lambda: client.put_function_concurrency(
            FunctionName=f"{name}:1", ReservedConcurrentExecutions=1
        ),
        QUALIFIED_REFUSED,
    )
    expect_error(
        client,
        "InvalidParameterValueException",
        400,
        lambda: client.put_function_concurrency(FunctionName=name, ReservedConcurrentExecutions=901),
        "Specified ReservedConcurrentExecutions for function decreases account's "
        "UnreservedConcurrentExecution below its minimum value of [100].",
    )
    expect_error(
        unvalidated,
        "ValidationException",
        400,
        lambda: unvalidated.put_function_concurrency(
            FunctionName=name, ReservedConcurrentExecutions=-1
        ),
        "1 validation error detected: Value '-1' at 'reservedConcurrentExecutions' failed to "
        "satisfy constraint: Member must have value greater than or equal to 0",
    )
    missing = unique("missing")
    expect_error(
        client,
        "ResourceNotFoundException",
        404,
        lambda: client.put_function_concurrency(FunctionName=missing, ReservedConcurrentExecutions=1),
        f"Function not found: {arn(missing, '$LATEST')}",
    )
    expect_error(
        client,
        "ResourceNotFoundException",
        404,
        lambda: client.get_function_concurrency(FunctionName=missing),
        f"Function not found: {arn(missing)}",
    )


def test_account_settings(client, make_function):
    before = client.get_account_settings()
    assert before["ResponseMetadata"]["HTTPStatusCode"] == 200
    limit = before["AccountLimit"]
    assert (
        limit["TotalCodeSize"],
        limit["CodeSizeUnzipped"],
        limit["CodeSizeZipped"],
        limit["ConcurrentExecutions"],
    ) == (80530636800, 262144000, 52428800, 1000)
    name = make_function("hello")
    size = client.get_function_configuration(FunctionName=name)["CodeSize"]
    client.put_function_concurrency(FunctionName=name, ReservedConcurrentExecutions=10)
    after = client.get_account_settings()
    assert after["AccountUsage"]["FunctionCount"] == before["AccountUsage"]["FunctionCount"] + 1
    assert after["AccountUsage"]["TotalCodeSize"] == before["AccountUsage"]["TotalCodeSize"] + size
    assert (
        after["AccountLimit"]["UnreservedConcurrentExecutions"]
        == limit["UnreservedConcurrentExecutions"] - 10
    )


# ---- provisioned concurrency ------------------------------------------------------------


def test_provisioned_concurrency_lifecycle(client, make_function):
    name = make_function("counter")
    client.publish_version(FunctionName=name)
    client.create_alias(FunctionName=name, Name="warm", FunctionVersion="1")
    put = client.put_provisioned_concurrency_config(
        FunctionName=name, Qualifier="warm", ProvisionedConcurrentExecutions=2
    )
    assert put["ResponseMetadata"]["HTTPStatusCode"] == 202
    assert (put["RequestedProvisionedConcurrentExecutions"], put["Status"]) == (2, "IN_PROGRESS")

    deadline = time.time() + 20
    while True:
        got = client.get_provisioned_concurrency_config(FunctionName=name, Qualifier="warm")
        if got["Status"] == "READY" or time.time() > deadline:
            break
        time.sleep(0.2)
    assert got["Status"] == "READY", got
    assert got["AvailableProvisionedConcurrentExecutions"] == 2
    assert got["AllocatedProvisionedConcurrentExecutions"] == 2

    listed = client.list_provisioned_concurrency_configs(FunctionName=name)[
        "ProvisionedConcurrencyConfigs"
    ]
    assert [(c["FunctionArn"], c["RequestedProvisionedConcurrentExecutions"]) for c in listed] == [
        (arn(name, "warm"), 2)
    ]
    resp = client.delete_provisioned_concurrency_config(FunctionName=name, Qualifier="warm")
    assert resp["ResponseMetadata"]["HTTPStatusCode"] == 204
    expect_error(
        client,
        "ProvisionedConcurrencyConfigNotFoundException",
        404,
        lambda: client.get_provisioned_concurrency_config(FunctionName=name, Qualifier="warm"),
        "No Provisioned Concurrency Config found for this function",
    )


def test_provisioned_concurrency_errors(client, unvalidated, make_function):
    name = make_function("hello")
    client.publish_version(FunctionName=name)
    expect_error(
        client,
        "InvalidParameterValueException",
        400,
        lambda: client.put_provisioned_concurrency_config(
            FunctionName=name, Qualifier="$LATEST", ProvisionedConcurrentExecutions=1
        ),
        "Provisioned Concurrency Configs cannot be applied to unpublished function versions.",
    )
    expect_error(
        client,
        "InvalidParameterValueException",
        400,
        lambda: client.get_provisioned_concurrency_config(FunctionName=name, Qualifier="$LATEST"),
        "The function resource provided must be an alias or a published version.",
    )
    expect_error(
        client,
        "ResourceNotFoundException",
        404,
        lambda: client.put_provisioned_concurrency_config(
            FunctionName=name, Qualifier="noalias", ProvisionedConcurrentExecutions=1
        ),
        f"Cannot find alias arn: {arn(name, 'noalias')}",
    )
    expect_error(
        unvalidated,
        "ValidationException",
        400,
        lambda: unvalidated.put_provisioned_concurrency_config(
            FunctionName=name, Qualifier="1", ProvisionedConcurrentExecutions=0
        ),
        "1 validation error detected: Value '0' at 'provisionedConcurrentExecutions' failed to "
        "satisfy constraint: Member must have value greater than or equal to 1",
    )
    expect_error(
        client,
        "ProvisionedConcurrencyConfigNotFoundException",
        404,
        lambda: client.get_provisioned_concurrency_config(FunctionName=name, Qualifier="1"),
        "No Provisioned Concurrency Config found for this function",
    )


# ---- tags ------------------------------------------------------------------------------


def test_tag_lifecycle(client, make_function):
    name = make_function("hello", Tags={"created": "yes"})
    resource = arn(name)
    assert client.list_tags(Resource=resource)["Tags"] == {"created": "yes"}
    resp = client.tag_resource(Resource=resource, Tags={"a": "1", "b c": "2", "created": "again"})
    assert resp["ResponseMetadata"]["HTTPStatusCode"] == 204
    assert client.list_tags(Resource=resource)["Tags"] == {
        "a": "1",
        "b c": "2",
        "created": "again",
    }
    resp = client.untag_resource(Resource=resource, TagKeys=["a", "b c", "never-there"])
    assert resp["ResponseMetadata"]["HTTPStatusCode"] == 204
    assert client.list_tags(Resource=resource)["Tags"] == {"created": "again"}
    assert client.get_function(FunctionName=name)["Tags"] == {"created": "again"}


def test_tag_errors(client, make_function):
    name = make_function("hello")
    client.publish_version(FunctionName=name)
    refused = "Tags on function aliases and versions are not supported. Please specify a function ARN."
    for call in (
        lambda: client.tag_resource(Resource=arn(name, "1"), Tags={"a": "b"}),
        lambda: client.list_tags(Resource=arn(name, "$LATEST")),
        lambda: client.untag_resource(Resource=arn(name, "1"), TagKeys=["a"]),
    ):
        expect_error(client, "InvalidParameterValueException", 400, call, refused)
    missing = unique("missing")
    expect_error(
        client,
        "ResourceNotFoundException",
        404,
        lambda: client.tag_resource(Resource=arn(missing), Tags={"a": "b"}),
        f"Function not found: {arn(missing)}",
    )
    expect_error(
        client,
        "ValidationException",
        400,
        lambda: client.list_tags(Resource="arn:aws:something"),
    )
    expect_error(client, "ValidationException", 400, lambda: client.list_tags(Resource=name))
    expect_error(
        client,
        "InvalidParameterValueException",
        400,
        lambda: client.tag_resource(
            Resource=arn(name), Tags={f"k{i}": "v" for i in range(51)}
        ),
        "Number of tags exceeds resource tag limit.",
    )
    assert client.list_tags(Resource=arn(name))["Tags"] == {}


# ---- event invoke configs --------------------------------------------------------------


def test_event_invoke_config_lifecycle(client, make_function):
    name = make_function("hello")
    target = make_function("echo")
    put = client.put_function_event_invoke_config(
        FunctionName=name,
        MaximumRetryAttempts=1,
        MaximumEventAgeInSeconds=120,
        DestinationConfig={"OnFailure": {"Destination": arn(target)}},
    )
    assert put["ResponseMetadata"]["HTTPStatusCode"] == 200
    assert put["FunctionArn"] == arn(name, "$LATEST")
    assert (put["MaximumRetryAttempts"], put["MaximumEventAgeInSeconds"]) == (1, 120)
    assert put["DestinationConfig"]["OnFailure"] == {"Destination": arn(target)}
    assert isinstance(put["LastModified"], datetime.datetime)
    assert abs(put["LastModified"].timestamp() - time.time()) < 60

    got = client.get_function_event_invoke_config(FunctionName=name)
    assert {k: got[k] for k in ("FunctionArn", "MaximumRetryAttempts", "MaximumEventAgeInSeconds")} == {
        "FunctionArn": arn(name, "$LATEST"),
        "MaximumRetryAttempts": 1,
        "MaximumEventAgeInSeconds": 120,
    }

    # Update merges into what is there.
    updated = client.update_function_event_invoke_config(FunctionName=name, MaximumRetryAttempts=0)
    assert (updated["MaximumRetryAttempts"], updated["MaximumEventAgeInSeconds"]) == (0, 120)
    assert updated["DestinationConfig"]["OnFailure"] == {"Destination": arn(target)}
    # Put replaces it whole.
    replaced = client.put_function_event_invoke_config(FunctionName=name, MaximumRetryAttempts=2)
    assert replaced["MaximumRetryAttempts"] == 2
    assert "MaximumEventAgeInSeconds" not in replaced
    assert "OnFailure" not in replaced.get("DestinationConfig", {})

    client.publish_version(FunctionName=name)
    client.put_function_event_invoke_config(FunctionName=name, Qualifier="1", MaximumRetryAttempts=0)
    listed = client.list_function_event_invoke_configs(FunctionName=name)[
        "FunctionEventInvokeConfigs"
    ]
    assert sorted(c["FunctionArn"] for c in listed) == sorted([arn(name, "$LATEST"), arn(name, "1")])

    resp = client.delete_function_event_invoke_config(FunctionName=name)
    assert resp["ResponseMetadata"]["HTTPStatusCode"] == 204
    expect_error(
        client,
        "ResourceNotFoundException",
        404,
        lambda: client.get_function_event_invoke_config(FunctionName=name),
        f"The function {arn(name, '$LATEST')} doesn't have an EventInvokeConfig",
    )
    expect_error(
        client,
        "ResourceNotFoundException",
        404,
        lambda: client.delete_function_event_invoke_config(FunctionName=name),
        f"The function {arn(name, '$LATEST')} doesn't have an EventInvokeConfig",
    )


def test_event_invoke_config_errors(client, unvalidated, make_function):
    name = make_function("hello")
    expect_error(
        client,
        "InvalidParameterValueException",
        400,
        lambda: client.put_function_event_invoke_config(FunctionName=name),
        "You must specify at least one of error handling or destination setting.",
    )
    expect_error(
        client,
        "InvalidParameterValueException",
        400,
        lambda: client.put_function_event_invoke_config(
            FunctionName=name, DestinationConfig={"OnSuccess": {"Destination": arn(name)}}
        ),
        "You can't specify the function as a destination for itself.",
    )
    ghost = arn(unique("ghost"))
    expect_error(
        client,
        "InvalidParameterValueException",
        400,
        lambda: client.put_function_event_invoke_config(
            FunctionName=name, DestinationConfig={"OnFailure": {"Destination": ghost}}
        ),
        f"The destination ARN {ghost} is invalid.",
    )
    expect_error(
        unvalidated,
        "ValidationException",
        400,
        lambda: unvalidated.put_function_event_invoke_config(
            FunctionName=name, MaximumRetryAttempts=3
        ),
        "1 validation error detected: Value '3' at 'maximumRetryAttempts' failed to satisfy "
        "constraint: Member must have value less than or equal to 2",
    )
    expect_error(
        unvalidated,
        "ValidationException",
        400,
        lambda: unvalidated.put_function_event_invoke_config(
            FunctionName=name, MaximumEventAgeInSeconds=59
        ),
    )
    missing = unique("missing")
    expect_error(
        client,
        "ResourceNotFoundException",
        404,
        lambda: client.put_function_event_invoke_config(FunctionName=missing, MaximumRetryAttempts=1),
        "The function doesn't exist.",
    )
    expect_error(
        client,
        "ResourceNotFoundException",
        404,
        lambda: client.put_function_event_invoke_config(
            FunctionName=name, Qualifier="nope", MaximumRetryAttempts=1
        ),
        "The function doesn't exist.",
    )
    expect_error(
        client,
        "ResourceNotFoundException",
        404,
        lambda: client.update_function_event_invoke_config(FunctionName=name, MaximumRetryAttempts=1),
        f"The function {arn(name, '$LATEST')} doesn't have an EventInvokeConfig",
    )
    expect_error(
        client,
        "ResourceNotFoundException",
        404,
        lambda: client.get_function_event_invoke_config(FunctionName=missing),
        f"The function {arn(missing, '$LATEST')} doesn't have an EventInvokeConfig",
    )


# ---- resource policies -------------------------------------------------------------------


def test_permission_lifecycle(client, make_function):
    name = make_function("hello")
    added = client.add_permission(
        FunctionName=name,
        StatementId="s3",
        Action="lambda:InvokeFunction",
        Principal="s3.amazonaws.com",
        SourceArn="arn:aws:s3:::my-bucket",
    )
    assert added["ResponseMetadata"]["HTTPStatusCode"] == 201
    statement = json.loads(added["Statement"])
    assert statement == {
        "Sid": "s3",
        "Effect": "Allow",
        "Principal": {"Service": "s3.amazonaws.com"},
        "Action": "lambda:InvokeFunction",
        "Resource": arn(name),
        "Condition": {"ArnLike": {"AWS:SourceArn": "arn:aws:s3:::my-bucket"}},
    }
    client.add_permission(
        FunctionName=name,
        StatementId="acct",
        Action="lambda:InvokeFunction",
        Principal="123456789012",
    )
    client.add_permission(
        FunctionName=name,
        StatementId="url",
        Action="lambda:InvokeFunctionUrl",
        Principal="*",
        FunctionUrlAuthType="NONE",
    )
    got = client.get_policy(FunctionName=name)
    policy = json.loads(got["Policy"])
    assert (policy["Version"], policy["Id"]) == ("2012-10-17", "default")
    assert [s["Sid"] for s in policy["Statement"]] == ["s3", "acct", "url"]
    assert policy["Statement"][1]["Principal"] == {"AWS": "arn:aws:iam::123456789012:root"}
    assert policy["Statement"][2]["Principal"] == "*"
    assert policy["Statement"][2]["Condition"] == {
        "StringEquals": {"lambda:FunctionUrlAuthType": "NONE"}
    }
    assert got["RevisionId"] == client.get_function_configuration(FunctionName=name)["RevisionId"]

    expect_error(
        client,
        "ResourceConflictException",
        409,
        lambda: client.add_permission(
            FunctionName=name, StatementId="s3", Action="lambda:InvokeFunction", Principal="*"
        ),
        "The statement id (s3) provided already exists. Please provide a new statement id, or "
        "remove the existing statement.",
    )
    for sid in ("s3", "acct"):
        resp = client.remove_permission(FunctionName=name, StatementId=sid)
        assert resp["ResponseMetadata"]["HTTPStatusCode"] == 204
    expect_error(
        client,
        "ResourceNotFoundException",
        404,
        lambda: client.remove_permission(FunctionName=name, StatementId="non-existent"),
        "Statement non-existent is not found in resource policy.",
    )
    client.remove_permission(FunctionName=name, StatementId="url")
    expect_error(
        client,
        "ResourceNotFoundException",
        404,
        lambda: client.get_policy(FunctionName=name),
        "The resource you requested does not exist.",
    )
    expect_error(
        client,
        "ResourceNotFoundException",
        404,
        lambda: client.remove_permission(FunctionName=name, StatementId="s3"),
        "No policy is associated with the given resource.",
    )


def test_permissions_per_qualifier(client, make_function):
    name = make_function("hello")
    client.publish_version(FunctionName=name)
    client.create_alias(FunctionName=name, Name="live", FunctionVersion="1")
    added = client.add_permission(
        FunctionName=name,
        Qualifier="live",
        StatementId="s1",
        Action="lambda:InvokeFunction",
        Principal="sns.amazonaws.com",
    )
    assert json.loads(added["Statement"])["Resource"] == arn(name, "live")
    assert [s["Sid"] for s in json.loads(client.get_policy(FunctionName=f"{name}:live")["Policy"])[
        "Statement"
    ]] == ["s1"]
    expect_error(
        client,
        "ResourceNotFoundException",
        404,
        lambda: client.get_policy(FunctionName=name),
        "The resource you requested does not exist.",
    )


def test_permission_errors(client, make_function):
    name = make_function("hello")
    client.publish_version(FunctionName=name)
    add = dict(StatementId="s1", Action="lambda:InvokeFunction", Principal="s3.amazonaws.com")
    expect_error(
        client,
        "InvalidParameterValueException",
        400,
        lambda: client.add_permission(FunctionName=name, Qualifier="$LATEST", **add),
        "We currently do not support adding policies for $LATEST.",
    )
    expect_error(
        client,
        "ResourceNotFoundException",
        404,
        lambda: client.add_permission(FunctionName=name, Qualifier="alias-doesnotexist", **add),
        f"Cannot find alias arn: {arn(name, 'alias-doesnotexist')}",
    )
    expect_error(
        client,
        "ResourceNotFoundException",
        404,
        lambda: client.add_permission(FunctionName=name, Qualifier="42", **add),
        f"Function not found: {arn(name, '42')}",
    )
    expect_error(
        client,
        "ValidationException",
        400,
        lambda: client.add_permission(
            FunctionName=name,
            StatementId="example.com",
            Action="lambda:InvokeFunction",
            Principal="s3.amazonaws.com",
        ),
        "1 validation error detected: Value 'example.com' at 'statementId' failed to satisfy "
        "constraint: Member must satisfy regular expression pattern: ([a-zA-Z0-9-_]+)",
    )
    expect_error(
        client,
        "PreconditionFailedException",
        412,
        lambda: client.add_permission(FunctionName=name, RevisionId=str(uuid.uuid4()), **add),
        "The Revision Id provided does not match the latest Revision Id. Call the GetPolicy API "
        "to retrieve the latest Revision Id",
    )
    missing = unique("missing")
    expect_error(
        client,
        "ResourceNotFoundException",
        404,
        lambda: client.add_permission(FunctionName=missing, **add),
        f"Function not found: {arn(missing)}",
    )
    expect_error(
        client,
        "ResourceNotFoundException",
        404,
        lambda: client.remove_permission(FunctionName=missing, StatementId="s1"),
        f"No policy found for: {arn(missing)}",
    )
    expect_error(
        client,
        "ResourceNotFoundException",
        404,
        lambda: client.get_policy(FunctionName=missing),
        "The resource you requested does not exist.",
    )

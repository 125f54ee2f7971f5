"""Layers through boto3 and aws-cli: PublishLayerVersion, GetLayerVersion(ByArn),
ListLayers, ListLayerVersions and DeleteLayerVersion with botocore's shapes and Lambda's
errors; functions of every runtime that mount up to 5 layers under /opt in order; and
Python dependencies from a layer's python/ folder.
"""

import json
import textwrap

import pytest
import requests

from conftest import ACCOUNT, REGION, ROLE, aws_lambda, expect_error, unique, wasm_zip, zip_of


def python_zip(files):
    return zip_of({name: textwrap.dedent(source).encode() for name, source in files.items()})


@pytest.fixture
def make_layer(client):
    """Publishes layer versions and deletes them after the test."""
    published = []

    def publish(name=None, files=None, **kwargs):
        params = dict(
            LayerName=name or unique("layer"),
            Content={"ZipFile": zip_of(files or {"python/dep.py": b"VALUE = 1\n"})},
        )
        params.update(kwargs)
        layer = client.publish_layer_version(**params)
        published.append(layer)
        return layer

    yield publish
    for layer in published:
        client.delete_layer_version(LayerName=layer["LayerArn"], VersionNumber=layer["Version"])


def invoke(client, name, payload=None):
    r = client.invoke(FunctionName=name, Payload=json.dumps(payload or {}))
    return r, json.loads(r["Payload"].read())


def test_a_layer_version_is_published_read_listed_and_deleted_as_on_lambda(client, make_layer):
    name = unique("deps")
    files = {"python/dep.py": b"VALUE = 1\n"}
    first = make_layer(
        name,
        files,
        Description="shared code",
        CompatibleRuntimes=["python3.14", "wasm"],
        CompatibleArchitectures=["x86_64"],
        LicenseInfo="MIT",
    )
    assert first["ResponseMetadata"]["HTTPStatusCode"] == 201
    layer_arn = f"arn:aws:lambda:{REGION}:{ACCOUNT}:layer:{name}"
    assert first["LayerArn"] == layer_arn
    assert first["LayerVersionArn"] == f"{layer_arn}:1"
    assert first["Version"] == 1
    assert (first["Description"], first["LicenseInfo"]) == ("shared code", "MIT")
    assert first["CompatibleRuntimes"] == ["python3.14", "wasm"]
    assert first["CompatibleArchitectures"] == ["x86_64"]
    assert first["CreatedDate"].endswith("+0000")
    content = first["Content"]
    assert content["CodeSize"] == len(zip_of(files))
    downloaded = requests.get(content["Location"], timeout=10)
    assert downloaded.status_code == 200 and downloaded.content == zip_of(files)

    second = make_layer(name, {"python/dep.py": b"VALUE = 2\n"}, CompatibleRuntimes=["onnx"])
    assert second["Version"] == 2
    assert "LicenseInfo" not in second

    got = client.get_layer_version(LayerName=name, VersionNumber=1)
    for key in ("LayerArn", "LayerVersionArn", "Version", "Description", "CreatedDate", "Content"):
        assert got[key] == first[key], key
    by_arn = client.get_layer_version_by_arn(Arn=f"{layer_arn}:2")
    assert by_arn["Version"] == 2 and by_arn["CompatibleRuntimes"] == ["onnx"]
    assert client.get_layer_version(LayerName=layer_arn, VersionNumber=2)["Version"] == 2

    versions = client.list_layer_versions(LayerName=name)["LayerVersions"]
    assert [v["Version"] for v in versions] == [2, 1], "newest first"
    assert set(versions[0]) >= {"LayerVersionArn", "Version", "Description", "CreatedDate"}
    assert "Content" not in versions[0]
    python_only = client.list_layer_versions(LayerName=name, CompatibleRuntime="python3.14")
    assert [v["Version"] for v in python_only["LayerVersions"]] == [1]

    listed = {item["LayerName"]: item for item in client.list_layers()["Layers"]}
    assert listed[name]["LayerArn"] == layer_arn
    assert listed[name]["LatestMatchingVersion"]["Version"] == 2
    for_python = {i["LayerName"]: i for i in client.list_layers(CompatibleRuntime="python3.14")["Layers"]}
    assert for_python[name]["LatestMatchingVersion"]["Version"] == 1
    assert name not in {
        i["LayerName"] for i in client.list_layers(CompatibleArchitecture="arm64")["Layers"]
    }

    client.delete_layer_version(LayerName=name, VersionNumber=2)
    expect_error(
        client,
        "ResourceNotFoundException",
        404,
        lambda: client.get_layer_version(LayerName=name, VersionNumber=2),
        "The resource you requested does not exist.",
    )
    # Idempotent, and version numbers are never given again.
    client.delete_layer_version(LayerName=name, VersionNumber=2)
    client.delete_layer_version(LayerName=name, VersionNumber=1)
    assert client.list_layer_versions(LayerName=name)["LayerVersions"] == []
    assert make_layer(name)["Version"] == 3


def test_list_pages_follow_markers(client, make_layer):
    name = unique("paged")
    for _ in range(3):
        make_layer(name)
    pages = client.get_paginator("list_layer_versions").paginate(
        LayerName=name, PaginationConfig={"PageSize": 2}
    )
    seen = [[v["Version"] for v in page["LayerVersions"]] for page in pages]
    assert seen == [[3, 2], [1]]


def test_bad_layer_requests_get_lambdas_errors(client, unvalidated, make_layer):
    name = unique("bad")
    expect_error(
        client,
        "InvalidParameterValueException",
        400,
        lambda: client.get_layer_version(LayerName=name, VersionNumber=0),
        "Layer Version Cannot be less than 1",
    )
    expect_error(
        client,
        "ResourceNotFoundException",
        404,
        lambda: client.get_layer_version(LayerName=name, VersionNumber=1),
        "The resource you requested does not exist.",
    )
    e = expect_error(
        client,
        "ValidationException",
        400,
        lambda: client.get_layer_version_by_arn(Arn=f"arn:aws:lambda:{REGION}:{ACCOUNT}:layer:{name}"),
    )
    assert "at 'arn' failed to satisfy constraint" in e.response["Error"]["Message"]
    e = expect_error(
        unvalidated,
        "ValidationException",
        400,
        lambda: unvalidated.publish_layer_version(
            LayerName=name,
            Content={"ZipFile": zip_of({"a": b"1"})},
            CompatibleRuntimes=["python2.7", "wasm"],
            CompatibleArchitectures=["sparc"],
        ),
    )
    message = e.response["Error"]["Message"]
    assert message.startswith("2 validation errors detected: Value '[python2.7, wasm]' at 'compatibleRuntimes'")
    assert "Value '[sparc]' at 'compatibleArchitectures'" in message
    expect_error(
        client,
        "InvalidParameterValueException",
        400,
        lambda: client.publish_layer_version(LayerName=name, Content={"ZipFile": b"not a zip"}),
        "Could not unzip uploaded file. Please check your file, then try to upload again.",
    )
    e = expect_error(
        unvalidated,
        "ValidationException",
        400,
        lambda: unvalidated.publish_layer_version(LayerName="no.dots", Content={"ZipFile": zip_of({"a": b"1"})}),
    )
    assert "at 'layerName' failed to satisfy constraint" in e.response["Error"]["Message"]
    assert client.list_layer_versions(LayerName=name)["LayerVersions"] == []


ENV_DUMP = {"Runtime": "wasm", "Handler": "function.wasm", "Role": ROLE}


def test_a_wasm_function_sees_its_layers_merged_under_opt_in_order(client, make_function, make_layer):
    base = make_layer(files={"config.txt": b"base", "base-only.txt": b"kept"})
    override = make_layer(files={"config.txt": b"override"})
    created = make_function.create("env-dump", Layers=[base["LayerVersionArn"], override["LayerVersionArn"]])
    assert created["Layers"] == [
        {"Arn": base["LayerVersionArn"], "CodeSize": base["Content"]["CodeSize"]},
        {"Arn": override["LayerVersionArn"], "CodeSize": override["Content"]["CodeSize"]},
    ]
    name = created["FunctionName"]
    _, seen = invoke(client, name)
    assert seen["opt"] == ["base-only.txt", "config.txt"]
    assert seen["opt_files"] == {"base-only.txt": "kept", "config.txt": "override"}
    assert "os error" in seen["opt_write"], "/opt is read-only"

    # The other order, then none: each configuration reaches new environments.
    client.update_function_configuration(
        FunctionName=name, Layers=[override["LayerVersionArn"], base["LayerVersionArn"]]
    )
    assert invoke(client, name)[1]["opt_files"]["config.txt"] == "base"
    updated = client.update_function_configuration(FunctionName=name, Layers=[])
    assert "Layers" not in updated
    assert "No such file or directory" in invoke(client, name)[1]["opt"]
    assert "Layers" not in client.get_function(FunctionName=name)["Configuration"]


DEPENDENT_HANDLER = """
import dep

def lambda_handler(event, context):
    return {"value": dep.VALUE, "file": dep.__file__}
"""


def test_a_python_function_imports_a_pure_python_dependency_from_a_layer(client, make_function, make_layer):
    layer = make_layer(files={"python/dep.py": b"VALUE = 'from the layer'\n"}, CompatibleRuntimes=["python3.14"])
    name = make_function(
        Runtime="python3.14",
        Handler="lambda_function.lambda_handler",
        Code={"ZipFile": python_zip({"lambda_function.py": DEPENDENT_HANDLER})},
        Layers=[layer["LayerVersionArn"]],
    )
    r, body = invoke(client, name)
    assert "FunctionError" not in r, body
    assert body == {"value": "from the layer", "file": "/opt/python/dep.py"}

    # A published version keeps its layer even after the layer version is deleted, as
    # Lambda keeps a copy.
    version = client.publish_version(FunctionName=name)["Version"]
    client.delete_layer_version(LayerName=layer["LayerArn"], VersionNumber=layer["Version"])
    _, body = invoke(client, f"{name}:{version}")
    assert body["value"] == "from the layer"
    assert client.get_function(FunctionName=name, Qualifier=version)["Configuration"]["Layers"][0]["Arn"] == (
        layer["LayerVersionArn"]
    )
    # Yet the deleted version cannot be added to a function any more.
    expect_error(
        client,
        "InvalidParameterValueException",
        400,
        lambda: client.update_function_configuration(FunctionName=name, Layers=[layer["LayerVersionArn"]]),
        f"Layer version {layer['LayerVersionArn']} does not exist.",
    )


def test_a_python_layer_with_a_compiled_extension_is_refused(client, make_function, make_layer):
    layer = make_layer(files={"python/fast.cpython-314-x86_64-linux-gnu.so": b"\x7fELF"})
    e = expect_error(
        client,
        "InvalidParameterValueException",
        400,
        lambda: make_function(
            Runtime="python3.14",
            Handler="lambda_function.lambda_handler",
            Code={"ZipFile": python_zip({"lambda_function.py": DEPENDENT_HANDLER})},
            Layers=[layer["LayerVersionArn"]],
        ),
    )
    assert "fast.cpython-314-x86_64-linux-gnu.so" in e.response["Error"]["Message"]
    # The same layer is only files to a wasm function.
    make_function("env-dump", Layers=[layer["LayerVersionArn"]])


def test_a_functions_layers_are_checked_as_lambda_checks_them(client, unvalidated, make_function, make_layer):
    layer = make_layer()
    other = make_layer(layer["LayerArn"].rsplit(":", 1)[1])
    arn = layer["LayerVersionArn"]
    expect_error(
        client,
        "InvalidParameterValueException",
        400,
        lambda: make_function("echo", Layers=[arn] * 6),
        "Cannot reference more than 5 layers.",
    )
    e = expect_error(
        unvalidated,
        "ValidationException",
        400,
        lambda: unvalidated.create_function(
            FunctionName=unique("l"), Code={"ZipFile": wasm_zip("echo")}, Layers=[layer["LayerArn"]], **ENV_DUMP
        ),
    )
    assert e.response["Error"]["Message"].startswith(
        f"1 validation error detected: Value '[{layer['LayerArn']}]' at 'layers' failed to satisfy constraint"
    )
    missing = f"{layer['LayerArn']}:99"
    expect_error(
        client,
        "InvalidParameterValueException",
        400,
        lambda: make_function("echo", Layers=[missing]),
        f"Layer version {missing} does not exist.",
    )
    expect_error(
        client,
        "InvalidParameterValueException",
        400,
        lambda: make_function("echo", Layers=[arn, other["LayerVersionArn"]]),
        "Two different versions of the same layer are not allowed to be referenced in the same function. "
        f"{arn} and {other['LayerVersionArn']} are versions of the same layer.",
    )
    elsewhere = arn.replace(f":{REGION}:", ":eu-north-1:")
    expect_error(
        client,
        "InvalidParameterValueException",
        400,
        lambda: make_function("echo", Layers=[elsewhere]),
        f"Layers are not in the same region as the function. Layers are expected to be in region {REGION}.",
    )
    foreign = arn.replace(f":{ACCOUNT}:", ":123456789012:")
    expect_error(client, "AccessDeniedException", 403, lambda: make_function("echo", Layers=[foreign]))


def test_a_layer_from_s3_and_through_aws_cli(lamina, client, make_function, s3, tmp_path):
    bucket = unique("layers").lower()
    s3.create_bucket(Bucket=bucket)
    s3.put_object(Bucket=bucket, Key="deps.zip", Body=zip_of({"from-s3.txt": b"s3"}))
    from_s3 = client.publish_layer_version(
        LayerName=unique("s3"), Content={"S3Bucket": bucket, "S3Key": "deps.zip"}
    )
    zip_path = tmp_path / "cli.zip"
    zip_path.write_bytes(zip_of({"from-cli.txt": b"cli"}))
    cli_name = unique("cli")
    published = aws_lambda(
        lamina.endpoint,
        "publish-layer-version",
        "--layer-name",
        cli_name,
        "--zip-file",
        f"fileb://{zip_path}",
        "--compatible-runtimes",
        "wasm",
    )
    assert published.returncode == 0, published.stderr
    out = json.loads(published.stdout)
    assert out["Version"] == 1
    listed = aws_lambda(lamina.endpoint, "list-layers", "--compatible-runtime", "wasm")
    assert listed.returncode == 0, listed.stderr
    listed = json.loads(listed.stdout)
    assert cli_name in [layer["LayerName"] for layer in listed["Layers"]]
    try:
        name = make_function("env-dump", Layers=[from_s3["LayerVersionArn"], out["LayerVersionArn"]])
        assert invoke(client, name)[1]["opt_files"] == {"from-s3.txt": "s3", "from-cli.txt": "cli"}
    finally:
        for layer in (from_s3, out):
            client.delete_layer_version(LayerName=layer["LayerArn"], VersionNumber=layer["Version"])


def test_a_node_lays_a_functions_layers_out_again_after_a_restart(tmp_node, tmp_path):
    node = tmp_node(tmp_path / "restart")
    client = node.client()
    layer = client.publish_layer_version(LayerName="kept", Content={"ZipFile": zip_of({"kept.txt": b"yes"})})
    client.create_function(
        FunctionName="with-layer", Code={"ZipFile": wasm_zip("env-dump")}, Layers=[layer["LayerVersionArn"]], **ENV_DUMP
    )
    client.delete_layer_version(LayerName="kept", VersionNumber=1)
    node.stop()
    node = tmp_node(tmp_path / "restart")
    _, seen = invoke(node.client(), "with-layer")
    assert seen["opt_files"] == {"kept.txt": "yes"}

"""Function code and models from an S3-compatible object store (SeaweedFS), through the
user's own interfaces: boto3, aws-cli and `lamina deploy s3://...`.

Lamina copies the object when the function is created or its code updated, so a
function never depends on the store afterwards; a failed fetch leaves nothing behind;
packages are sealed at rest with the server key, in the data directory or in an S3 code
store; and every failure reads as Lambda words it.
"""

import io
import json
import os
import pathlib
import pickle
import shutil
import zipfile

import numpy as np
import pytest
import trustme
from skl2onnx import to_onnx
from sklearn.datasets import load_diabetes
from sklearn.linear_model import LinearRegression, Ridge

from conftest import (
    ROLE,
    S3_ADMIN_KEY_ID,
    S3_ADMIN_SECRET,
    S3_READABLE_BUCKET,
    S3_READER_KEY_ID,
    S3_READER_SECRET,
    Lamina,
    TcpProxy,
    code_sha256,
    expect_error,
    fixture_bytes,
    free_ports,
    lamina_cli,
    unique,
    zip_of,
)
from test_cli import aws

INVALID = "InvalidParameterValueException"
DEFAULT_UNZIPPED_LIMIT = 262144000
UNREACHABLE = (
    "Error occurred while GetObject. S3 Error Code: ServiceUnavailable. "
    "S3 Error Message: Lamina could not reach the S3 endpoint "
)
# AWS credential sources a node must not pick up unless the test is about them.
AWS_CREDENTIAL_VARIABLES = {
    name: None
    for name in (
        "AWS_ACCESS_KEY_ID",
        "AWS_SECRET_ACCESS_KEY",
        "AWS_SESSION_TOKEN",
        "AWS_PROFILE",
        "AWS_DEFAULT_PROFILE",
        "AWS_SHARED_CREDENTIALS_FILE",
        "AWS_CONFIG_FILE",
        "LAMINA_S3_ACCESS_KEY_ID",
        "LAMINA_S3_SECRET_ACCESS_KEY",
    )
}

X, Y = load_diabetes(return_X_y=True)


# --- models and packages -------------------------------------------------------------


def onnx_of(model):
    return to_onnx(model, X[:1].astype(np.float32)).SerializeToString()


def linear():
    return LinearRegression().fit(X, Y)


def ridge(alpha):
    """A model whose answers differ from `linear()` and from other alphas', so a test can
    tell which one a function serves."""
    return Ridge(alpha=alpha).fit(X, Y)


def stored_zip(files):
    """A zip that stores its files uncompressed, so the files' bytes appear verbatim in
    the package: a search of the disk for them then means something."""
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w", zipfile.ZIP_STORED) as z:
        for name, data in files.items():
            z.writestr(zipfile.ZipInfo(name, date_time=(2020, 1, 1, 0, 0, 0)), data)
    return buf.getvalue()


def marker_of(onnx_bytes):
    """A distinctive run of a model's bytes: its coefficients, as the ONNX file holds them."""
    start = onnx_bytes.index(b"coefficients")
    run = onnx_bytes[start : start + 64]
    assert len(run) == 64
    return run


# --- calling functions ---------------------------------------------------------------


def predict(client, name, rows, qualifier=None):
    kwargs = {"Qualifier": qualifier} if qualifier else {}
    response = client.invoke(FunctionName=name, Payload=json.dumps({"input": rows}), **kwargs)
    result = json.loads(response["Payload"].read())
    assert "FunctionError" not in response, result
    return result["output"]


def assert_serves(client, name, model, qualifier=None):
    np.testing.assert_allclose(
        predict(client, name, X[:20].tolist(), qualifier), model.predict(X[:20]), rtol=1e-4
    )


def wait_active(client, name):
    client.get_waiter("function_active_v2").wait(
        FunctionName=name, WaiterConfig={"Delay": 1, "MaxAttempts": 60}
    )


def wait_updated(client, name):
    client.get_waiter("function_updated_v2").wait(
        FunctionName=name, WaiterConfig={"Delay": 1, "MaxAttempts": 60}
    )


def create_from_s3(client, make_function, bucket, key, version=None, runtime="onnx",
                   handler="model.onnx", name=None):
    code = {"S3Bucket": bucket, "S3Key": key}
    if version is not None:
        code["S3ObjectVersion"] = version
    created = client.create_function(
        FunctionName=name or unique("s3"), Runtime=runtime, Handler=handler, Role=ROLE, Code=code
    )
    if make_function is not None:
        make_function.created.append(created["FunctionName"])
    wait_active(client, created["FunctionName"])
    return created


def assert_absent(client, name):
    """Nothing of a function whose creation failed: no function, no version."""
    expect_error(client, "ResourceNotFoundException", 404, lambda: client.get_function(FunctionName=name))
    expect_error(
        client, "ResourceNotFoundException", 404,
        lambda: client.list_versions_by_function(FunctionName=name),
    )


def refused(client, call, message, prefix=False):
    """Runs `call`, which must fail with InvalidParameterValueException (400) and
    `message` (exactly, or as its start); the message."""
    e = expect_error(client, INVALID, 400, call)
    got = e.response["Error"]["Message"]
    if prefix:
        assert got.startswith(message), got
    else:
        assert got == message
    return got


def refused_create(client, name, bucket, key, message):
    """CreateFunction of a model at `bucket/key`, which must be refused with a message
    that starts with `message`; the message."""
    return refused(
        client,
        lambda: client.create_function(
            FunctionName=name, Runtime="onnx", Handler="model.onnx", Role=ROLE,
            Code={"S3Bucket": bucket, "S3Key": key},
        ),
        message,
        prefix=True,
    )


# --- what is on disk -----------------------------------------------------------------


def files_under(*directories):
    return {
        os.path.join(root, f)
        for d in directories
        if os.path.isdir(d)
        for root, _, names in os.walk(d)
        for f in names
    }


def stored_packages(node):
    """What the node's code store holds, by name: files under <data-dir>/packages on
    SQLite, blobs in the database on PostgreSQL, where every node of a cluster reaches
    them."""
    if node.database_url:
        held = {}
        for name, chunk in node.query("SELECT name, bytes FROM package_blob_chunks ORDER BY name, seq"):
            held[name] = held.get(name, b"") + bytes(chunk)
        return held
    return {path: pathlib.Path(path).read_bytes() for path in files_under(node.data_dir / "packages")}


def files_containing(marker, *directories):
    found = []
    for path in sorted(files_under(*directories)):
        try:
            with open(path, "rb") as f:
                if marker in f.read():
                    found.append(path)
        except OSError:  # a file removed while we looked is not on disk
            pass
    return found


def node_dirs(node):
    """The node's data directory and its package cache (the default one unless the node
    was given --package-cache-dir)."""
    dirs = [node.data_dir]
    if "--package-cache-dir" in node.extra:
        dirs.append(node.extra[node.extra.index("--package-cache-dir") + 1])
    return dirs


def vm_hwm_kb(pid):
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith("VmHWM:"):
                return int(line.split()[1])
    raise AssertionError(f"no VmHWM in /proc/{pid}/status")


def reset_hwm(pid):
    """Resets the kernel's peak resident set size of `pid` to its current size, so VmHWM
    afterwards is the peak of what happened since, not of the node's start."""
    with open(f"/proc/{pid}/clear_refs", "w") as f:
        f.write("5")


# --- fixtures ------------------------------------------------------------------------


@pytest.fixture(scope="module")
def code_bucket(s3):
    name = unique("code")
    s3.create_bucket(Bucket=name)
    return name


@pytest.fixture(scope="module")
def versioned_bucket(s3):
    name = unique("versioned")
    s3.create_bucket(Bucket=name)
    s3.put_bucket_versioning(Bucket=name, VersioningConfiguration={"Status": "Enabled"})
    assert s3.get_bucket_versioning(Bucket=name)["Status"] == "Enabled"
    return name


@pytest.fixture
def s3_node(tmp_node, seaweedfs):
    """A private node that reads code from the session's SeaweedFS (or `endpoint`) with
    explicit credentials, plus whatever other flags the test needs."""

    def start(extra=(), endpoint=None, key_id=S3_ADMIN_KEY_ID, secret=S3_ADMIN_SECRET,
              data_dir=None, env=None):
        flags = seaweedfs.lamina_flags(endpoint, key_id, secret)
        return tmp_node(data_dir, extra=[*flags, *extra], env=env)

    return start


def put(s3, bucket, data, suffix=".onnx"):
    key = f"models/{unique('obj')}{suffix}"
    s3.put_object(Bucket=bucket, Key=key, Body=data)
    return key


# --- deploying from S3 ---------------------------------------------------------------


def test_the_users_flow_a_model_uploaded_to_s3_and_deployed_from_it(
    client, make_function, s3, code_bucket, tmp_path
):
    X, y = load_diabetes(return_X_y=True)
    model = LinearRegression().fit(X, y)
    path = tmp_path / "diabetes.onnx"
    path.write_bytes(to_onnx(model, X[:1].astype(np.float32)).SerializeToString())
    bucket, key = code_bucket, f"models/{unique('diabetes')}.onnx"
    s3.upload_file(str(path), bucket, key)

    name = unique("diabetes")
    created = client.create_function(
        FunctionName=name,
        Runtime="onnx",
        Handler="model.onnx",
        Role=ROLE,
        Code=dict(S3Bucket=bucket, S3Key=key),
    )
    make_function.created.append(name)
    client.get_waiter("function_active_v2").wait(FunctionName=name)
    response = client.invoke(FunctionName=name, Payload=json.dumps({"input": X[0].tolist()}))
    result = json.loads(response["Payload"].read())
    assert "FunctionError" not in response, result
    np.testing.assert_allclose(result["output"], model.predict(X[:1]), rtol=1e-4)

    uploaded = path.read_bytes()
    assert (created["CodeSha256"], created["CodeSize"]) == (code_sha256(uploaded), len(uploaded))
    config = client.get_function(FunctionName=name)["Configuration"]
    assert (config["CodeSha256"], config["CodeSize"]) == (code_sha256(uploaded), len(uploaded))
    assert_serves(client, name, model)


def test_a_zip_from_s3_is_copied_so_the_function_outlives_the_object(
    client, make_function, s3, code_bucket
):
    model = ridge(0.5)
    package = zip_of({"model.onnx": onnx_of(model)})
    key = put(s3, code_bucket, package, ".zip")
    created = create_from_s3(client, make_function, code_bucket, key)
    assert (created["CodeSha256"], created["CodeSize"]) == (code_sha256(package), len(package))

    s3.delete_object(Bucket=code_bucket, Key=key)
    with pytest.raises(s3.exceptions.NoSuchKey):
        s3.get_object(Bucket=code_bucket, Key=key)
    # The first invocation comes after the deletion, so its cold start cannot have used
    # the object; a version published now starts from Lamina's copy too.
    name = created["FunctionName"]
    assert_serves(client, name, model)
    version = client.publish_version(FunctionName=name)["Version"]
    assert_serves(client, name, model, qualifier=version)


def test_a_bare_wasm_object_is_placed_under_the_handler(client, make_function, s3, code_bucket):
    wasm = fixture_bytes("echo")
    key = put(s3, code_bucket, wasm, ".wasm")
    created = create_from_s3(
        client, make_function, code_bucket, key, runtime="wasm", handler="function.wasm"
    )
    assert (created["CodeSha256"], created["CodeSize"]) == (code_sha256(wasm), len(wasm))
    response = client.invoke(FunctionName=created["FunctionName"], Payload=b'{"from": "s3"}')
    assert "FunctionError" not in response
    assert response["Payload"].read() == b'{"from": "s3"}'


def test_s3_object_version_deploys_the_version_it_names(
    client, make_function, s3, versioned_bucket
):
    older, newer = ridge(2.0), ridge(20.0)
    assert np.abs(older.predict(X[:20]) - newer.predict(X[:20])).max() > 1.0
    key = f"models/{unique('versioned')}.onnx"
    older_bytes, newer_bytes = onnx_of(older), onnx_of(newer)
    older_id = s3.put_object(Bucket=versioned_bucket, Key=key, Body=older_bytes)["VersionId"]
    newer_id = s3.put_object(Bucket=versioned_bucket, Key=key, Body=newer_bytes)["VersionId"]
    assert older_id and newer_id and older_id != newer_id

    pinned = create_from_s3(client, make_function, versioned_bucket, key, version=older_id)
    assert pinned["CodeSha256"] == code_sha256(older_bytes)
    assert_serves(client, pinned["FunctionName"], older)

    latest = create_from_s3(client, make_function, versioned_bucket, key)
    assert latest["CodeSha256"] == code_sha256(newer_bytes)
    assert_serves(client, latest["FunctionName"], newer)


def test_update_function_code_from_s3_switches_the_model(
    client, make_function, s3, code_bucket, versioned_bucket
):
    first, second, third = ridge(3.0), ridge(30.0), ridge(300.0)
    first_key = put(s3, code_bucket, onnx_of(first))
    created = create_from_s3(client, make_function, code_bucket, first_key)
    name = created["FunctionName"]
    assert_serves(client, name, first)

    second_bytes = onnx_of(second)
    second_key = put(s3, code_bucket, second_bytes)
    updated = client.update_function_code(FunctionName=name, S3Bucket=code_bucket, S3Key=second_key)
    assert (updated["CodeSha256"], updated["CodeSize"]) == (code_sha256(second_bytes), len(second_bytes))
    wait_updated(client, name)
    assert_serves(client, name, second)

    # A named version of a versioned object, while a newer one is the latest.
    key = f"models/{unique('versioned')}.onnx"
    third_bytes = onnx_of(third)
    third_id = s3.put_object(Bucket=versioned_bucket, Key=key, Body=third_bytes)["VersionId"]
    s3.put_object(Bucket=versioned_bucket, Key=key, Body=onnx_of(first))
    updated = client.update_function_code(
        FunctionName=name, S3Bucket=versioned_bucket, S3Key=key, S3ObjectVersion=third_id
    )
    assert updated["CodeSha256"] == code_sha256(third_bytes)
    wait_updated(client, name)
    assert_serves(client, name, third)

    # An update that cannot be fetched changes nothing.
    refused(
        client,
        lambda: client.update_function_code(
            FunctionName=name, S3Bucket=code_bucket, S3Key=f"models/{unique('missing')}.onnx"
        ),
        "Error occurred while GetObject. S3 Error Code: NoSuchKey. "
        "S3 Error Message: The specified key does not exist.",
    )
    assert client.get_function(FunctionName=name)["Configuration"]["CodeSha256"] == code_sha256(third_bytes)
    assert_serves(client, name, third)


def test_aws_cli_creates_and_updates_a_function_from_s3(lamina, client, s3, code_bucket, tmp_path):
    model, other = ridge(4.0), ridge(40.0)
    model_bytes, other_bytes = onnx_of(model), onnx_of(other)
    key, other_key = put(s3, code_bucket, model_bytes), put(s3, code_bucket, other_bytes)
    name = unique("cli-s3")
    created = aws(
        lamina,
        "create-function",
        "--function-name", name,
        "--runtime", "onnx",
        "--role", ROLE,
        "--handler", "model.onnx",
        "--code", f"S3Bucket={code_bucket},S3Key={key}",
    )
    try:
        assert created.returncode == 0, created.stderr
        config = json.loads(created.stdout)
        assert (config["CodeSha256"], config["CodeSize"]) == (code_sha256(model_bytes), len(model_bytes))
        waited = aws(lamina, "wait", "function-active-v2", "--function-name", name)
        assert waited.returncode == 0, waited.stderr

        def invoke_through_cli():
            out = tmp_path / "out.json"
            run = aws(
                lamina, "invoke", "--function-name", name,
                "--payload", json.dumps({"input": X[:5].tolist()}), str(out),
            )
            assert run.returncode == 0, run.stderr
            assert "FunctionError" not in json.loads(run.stdout), out.read_text()
            return json.loads(out.read_text())["output"]

        np.testing.assert_allclose(invoke_through_cli(), model.predict(X[:5]), rtol=1e-4)

        updated = aws(
            lamina, "update-function-code", "--function-name", name,
            "--s3-bucket", code_bucket, "--s3-key", other_key,
        )
        assert updated.returncode == 0, updated.stderr
        assert json.loads(updated.stdout)["CodeSha256"] == code_sha256(other_bytes)
        waited = aws(lamina, "wait", "function-updated-v2", "--function-name", name)
        assert waited.returncode == 0, waited.stderr
        np.testing.assert_allclose(invoke_through_cli(), other.predict(X[:5]), rtol=1e-4)

        missing = aws(
            lamina, "create-function", "--function-name", unique("cli-s3"), "--runtime", "onnx",
            "--role", ROLE, "--handler", "model.onnx",
            "--code", f"S3Bucket={code_bucket},S3Key=models/{unique('missing')}.onnx",
        )
        assert missing.returncode == 255
        assert (
            "An error occurred (InvalidParameterValueException) when calling the CreateFunction "
            "operation: Error occurred while GetObject. S3 Error Code: NoSuchKey. "
            "S3 Error Message: The specified key does not exist."
        ) in missing.stderr
    finally:
        client.delete_function(FunctionName=name)


def test_lamina_deploy_from_an_s3_url(lamina, client, s3, code_bucket):
    model = ridge(5.0)
    key = put(s3, code_bucket, onnx_of(model))
    name, echo = unique("deployed-s3"), unique("deployed-s3")
    try:
        done = lamina_cli(lamina, "deploy", f"s3://{code_bucket}/{key}", "--name", name)
        assert done.returncode == 0, done.stderr
        assert client.get_function_configuration(FunctionName=name)["Runtime"] == "onnx"
        assert_serves(client, name, model)

        # Runtime and handler can be given, as for a bare .wasm object.
        wasm_key = put(s3, code_bucket, fixture_bytes("echo"), ".wasm")
        done = lamina_cli(
            lamina, "deploy", f"s3://{code_bucket}/{wasm_key}", "--name", echo,
            "--runtime", "wasm", "--handler", "function.wasm",
        )
        assert done.returncode == 0, done.stderr
        config = client.get_function_configuration(FunctionName=echo)
        assert (config["Runtime"], config["Handler"]) == ("wasm", "function.wasm")
        assert client.invoke(FunctionName=echo, Payload=b'{"a": 1}')["Payload"].read() == b'{"a": 1}'

        missing = lamina_cli(lamina, "deploy", f"s3://{code_bucket}/models/{unique('nope')}.onnx",
                             "--name", unique("deployed-s3"))
        assert missing.returncode == 1
        assert "S3 Error Code: NoSuchKey" in missing.stderr, missing.stderr
    finally:
        for fn in (name, echo):
            try:
                client.delete_function(FunctionName=fn)
            except client.exceptions.ResourceNotFoundException:
                pass


# --- what is refused -----------------------------------------------------------------


def test_missing_objects_buckets_and_versions_are_worded_as_lambda_words_them(
    lamina, client, s3, code_bucket, versioned_bucket
):
    key = put(s3, versioned_bucket, onnx_of(linear()))
    cases = [
        (
            dict(S3Bucket=code_bucket, S3Key=f"models/{unique('missing')}.onnx"),
            "Error occurred while GetObject. S3 Error Code: NoSuchKey. "
            "S3 Error Message: The specified key does not exist.",
        ),
        (
            dict(S3Bucket=unique("no-such-bucket"), S3Key="model.onnx"),
            "Error occurred while GetObject. S3 Error Code: NoSuchBucket. "
            "S3 Error Message: The specified bucket does not exist",
        ),
        (
            # A version id shaped like SeaweedFS's own, of an object that exists.
            dict(S3Bucket=versioned_bucket, S3Key=key, S3ObjectVersion="0" * 32),
            "Error occurred while GetObject. S3 Error Code: NoSuchVersion. "
            "S3 Error Message: The specified version does not exist.",
        ),
    ]
    before = files_under(*node_dirs(lamina))
    for code, message in cases:
        name = unique("refused")
        refused(
            client,
            lambda: client.create_function(
                FunctionName=name, Runtime="onnx", Handler="model.onnx", Role=ROLE, Code=code
            ),
            message,
        )
        assert_absent(client, name)
    assert files_under(*node_dirs(lamina)) - before == set()


def test_access_denied_names_the_bucket_and_key(s3_node, s3, code_bucket):
    """The node's credentials (the reader identity) may read one bucket only."""
    node = s3_node(key_id=S3_READER_KEY_ID, secret=S3_READER_SECRET)
    client = node.client()
    model = ridge(6.0)
    readable = put(s3, S3_READABLE_BUCKET, onnx_of(model))
    created = create_from_s3(client, None, S3_READABLE_BUCKET, readable)
    assert_serves(client, created["FunctionName"], model)

    key = put(s3, code_bucket, onnx_of(model))
    name = unique("denied")
    refused(
        client,
        lambda: client.create_function(
            FunctionName=name, Runtime="onnx", Handler="model.onnx", Role=ROLE,
            Code={"S3Bucket": code_bucket, "S3Key": key},
        ),
        "Your access has been denied by S3, please make sure your request credentials have "
        f"permission to GetObject for {code_bucket}/{key}. S3 Error Code: AccessDenied. "
        "S3 Error Message: Access Denied",
    )
    assert_absent(client, name)


def test_an_unreachable_endpoint_says_which_and_why(s3_node):
    (closed,) = free_ports(1)
    endpoint = f"http://127.0.0.1:{closed}"
    node = s3_node(endpoint=endpoint)
    client = node.client()
    name = unique("unreachable")
    message = refused_create(client, name, "any-bucket", "model.onnx", UNREACHABLE)
    rest = message[len(UNREACHABLE):]
    assert rest.startswith(endpoint), message
    assert len(rest) > len(endpoint) + 2, f"no cause in {message!r}"
    # The cause a client can act on, not the client library's internals.
    assert "refused" in rest.lower() and "{" not in rest, message
    assert_absent(client, name)


def test_zipfile_and_s3_fields_together_or_half_an_s3_location_are_refused(client, s3, code_bucket):
    key = put(s3, code_bucket, onnx_of(linear()))
    package = zip_of({"model.onnx": onnx_of(linear())})
    both = "Please do not provide other FunctionCode parameters when providing a ZipFile."
    half = "Please provide both S3Bucket and S3Key for function code from S3."
    base = dict(Runtime="onnx", Handler="model.onnx", Role=ROLE)
    cases = [
        ({"ZipFile": package, "S3Bucket": code_bucket, "S3Key": key}, both),
        ({"ZipFile": package, "S3Bucket": code_bucket}, both),
        ({"ZipFile": package, "S3Key": key}, both),
        ({"ZipFile": package, "S3ObjectVersion": "0" * 32}, both),
        ({"S3Bucket": code_bucket}, half),
        ({"S3Key": key}, half),
        ({"S3Key": key, "S3ObjectVersion": "0" * 32}, half),
    ]
    for code, message in cases:
        name = unique("refused")
        refused(client, lambda: client.create_function(FunctionName=name, Code=code, **base), message)
        assert_absent(client, name)

    name = unique("update")
    client.create_function(FunctionName=name, Code={"ZipFile": package}, **base)
    try:
        for fields, message in [
            ({"ZipFile": package, "S3Bucket": code_bucket, "S3Key": key}, both),
            ({"ZipFile": package, "S3ObjectVersion": "0" * 32}, both),
            ({"S3Bucket": code_bucket}, half),
            ({"S3Key": key}, half),
        ]:
            refused(client, lambda: client.update_function_code(FunctionName=name, **fields), message)
        assert client.get_function(FunctionName=name)["Configuration"]["CodeSha256"] == code_sha256(package)
    finally:
        client.delete_function(FunctionName=name)


def test_pickles_are_refused_for_onnx_with_the_way_out(client, s3, code_bucket, tmp_path):
    import joblib

    model = linear()
    joblib.dump(model, tmp_path / "model.joblib")
    pickled = pickle.dumps(model, protocol=pickle.HIGHEST_PROTOCOL)
    cases = [
        # The object's name says pickle.
        (put(s3, code_bucket, pickle.dumps(model), ".pkl"), "model.onnx"),
        (put(s3, code_bucket, (tmp_path / "model.joblib").read_bytes(), ".joblib"), "model.onnx"),
        (put(s3, code_bucket, pickled, ".pickle"), "model.onnx"),
        # A pickle named as a model: the bytes say pickle.
        (put(s3, code_bucket, pickled, ".onnx"), "model.onnx"),
        # A zip whose handler is a pickle.
        (put(s3, code_bucket, zip_of({"model.pkl": pickled}), ".zip"), "model.pkl"),
    ]
    for key, handler in cases:
        name = unique("pickle")
        e = expect_error(
            client, INVALID, 400,
            lambda: client.create_function(
                FunctionName=name, Runtime="onnx", Handler=handler, Role=ROLE,
                Code={"S3Bucket": code_bucket, "S3Key": key},
            ),
        )
        message = e.response["Error"]["Message"]
        for word in ("pickle", "arbitrary code", "skl2onnx"):
            assert word in message, (key, message)
        assert_absent(client, name)


def zip_of_zeros(size, extra=None):
    """A small zip that unzips to more than `size` bytes: a file of zeros, deflated, written
    a megabyte at a time so the test never holds it whole."""
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w", zipfile.ZIP_DEFLATED) as z:
        for name, data in (extra or {}).items():
            z.writestr(name, data)
        with z.open("zeros.bin", "w", force_zip64=True) as f:
            chunk = bytes(1 << 20)
            left = size
            while left > 0:
                f.write(chunk[: min(left, len(chunk))])
                left -= len(chunk)
    return buf.getvalue()


def test_a_zip_that_unzips_over_the_default_limit_is_refused(lamina, client, s3, code_bucket):
    bomb = zip_of_zeros(DEFAULT_UNZIPPED_LIMIT + (1 << 20), {"model.onnx": onnx_of(linear())})
    assert len(bomb) < 2_000_000
    key = put(s3, code_bucket, bomb, ".zip")
    before = files_under(*node_dirs(lamina))
    name = unique("bomb")
    refused(
        client,
        lambda: client.create_function(
            FunctionName=name, Runtime="onnx", Handler="model.onnx", Role=ROLE,
            Code={"S3Bucket": code_bucket, "S3Key": key},
        ),
        f"Unzipped size must be smaller than {DEFAULT_UNZIPPED_LIMIT} bytes",
    )
    assert_absent(client, name)
    assert files_under(*node_dirs(lamina)) - before == set()


@pytest.fixture(scope="module")
def huge_object(s3, code_bucket, tmp_path_factory):
    """A 300 MB object of zeros: cheap to make (a sparse file, which boto3 uploads in
    parts) and cheap to keep (SeaweedFS compresses it)."""
    zeros = tmp_path_factory.mktemp("huge") / "zeros.onnx"
    with open(zeros, "wb") as f:
        f.truncate(300 * 1000 * 1000)
    key = f"models/{unique('huge')}.onnx"
    s3.upload_file(str(zeros), code_bucket, key)
    zeros.unlink()
    assert s3.head_object(Bucket=code_bucket, Key=key)["ContentLength"] == 300 * 1000 * 1000
    return key


def test_a_300_mb_object_is_refused_without_reading_it_into_memory(
    s3_node, code_bucket, huge_object, tmp_path
):
    key = huge_object
    node = s3_node(extra=["--package-cache-dir", str(tmp_path / "cache")])
    client = node.client()
    before = files_under(*node_dirs(node))
    name = unique("huge")
    reset_hwm(node.proc.pid)
    hwm_before = vm_hwm_kb(node.proc.pid)
    refused(
        client,
        lambda: client.create_function(
            FunctionName=name, Runtime="onnx", Handler="model.onnx", Role=ROLE,
            Code={"S3Bucket": code_bucket, "S3Key": key},
        ),
        f"Unzipped size must be smaller than {DEFAULT_UNZIPPED_LIMIT} bytes",
    )
    growth_kb = vm_hwm_kb(node.proc.pid) - hwm_before
    print(f"peak RSS growth while refusing a 300 MB object: {growth_kb} kB")
    assert growth_kb < 64 * 1024, f"VmHWM grew by {growth_kb} kB"
    assert_absent(client, name)
    assert files_under(*node_dirs(node)) - before == set()


def test_a_smaller_unzipped_limit_bounds_objects_and_what_they_unzip_to(s3_node, s3, code_bucket):
    limit = 1_000_000
    node = s3_node(extra=["--max-unzipped-bytes", str(limit)])
    client = node.client()
    too_small = f"Unzipped size must be smaller than {limit} bytes"
    model = ridge(7.0)
    model_onnx = onnx_of(model)

    big_object = put(s3, code_bucket, os.urandom(limit + 1000), ".onnx")
    small_bomb = zip_of_zeros(2 * limit, {"model.onnx": model_onnx})
    assert len(small_bomb) < limit // 10
    bomb = put(s3, code_bucket, small_bomb, ".zip")
    for key in (big_object, bomb):
        name = unique("limited")
        refused(
            client,
            lambda: client.create_function(
                FunctionName=name, Runtime="onnx", Handler="model.onnx", Role=ROLE,
                Code={"S3Bucket": code_bucket, "S3Key": key},
            ),
            too_small,
        )
        assert_absent(client, name)
    # Under the limit, the same node deploys.
    created = create_from_s3(client, None, code_bucket, put(s3, code_bucket, model_onnx))
    assert_serves(client, created["FunctionName"], model)


def test_the_store_dying_mid_download_leaves_nothing_behind(s3_node, s3, seaweedfs, code_bucket, tmp_path):
    port = int(seaweedfs.endpoint.rsplit(":", 1)[1])
    relay = TcpProxy("127.0.0.1", port, cut_after_bytes=2_000_000)
    try:
        node = s3_node(
            endpoint=f"http://127.0.0.1:{relay.port}",
            extra=["--package-cache-dir", str(tmp_path / "cache")],
        )
        client = node.client()
        # Through the relay, a small object deploys: the path works.
        model = ridge(8.0)
        small = create_from_s3(client, None, code_bucket, put(s3, code_bucket, onnx_of(model)))
        assert_serves(client, small["FunctionName"], model)

        # A ~20 MB package, which the relay cuts after 2 MB.
        package = stored_zip({"model.onnx": onnx_of(model), "weights.bin": os.urandom(20_000_000)})
        key = put(s3, code_bucket, package, ".zip")
        before = files_under(*node_dirs(node))
        cuts = relay.cut_connections
        name = unique("cut")
        # The store is as good as unreachable, and the message says where it broke off.
        message = refused(
            client,
            lambda: client.create_function(
                FunctionName=name, Runtime="onnx", Handler="model.onnx", Role=ROLE,
                Code={"S3Bucket": code_bucket, "S3Key": key},
            ),
            "Error occurred while GetObject. S3 Error Code: ServiceUnavailable. S3 Error Message: ",
            prefix=True,
        )
        assert f"http://127.0.0.1:{relay.port}" in message, message
        assert relay.cut_connections > cuts
        assert_absent(client, name)
        assert files_under(*node_dirs(node)) - before == set()

        # With the store whole again, the same object deploys on the same node.
        relay.cut_after_bytes = None
        created = create_from_s3(client, None, code_bucket, key, name=name)
        assert created["CodeSha256"] == code_sha256(package)
        assert_serves(client, name, model)
    finally:
        relay.cut()


# --- packages at rest ----------------------------------------------------------------


def test_packages_are_sealed_at_rest_and_the_cache_is_emptied(s3_node, s3, code_bucket):
    model = ridge(9.0)
    model_onnx = onnx_of(model)
    marker = marker_of(model_onnx)
    key = put(s3, code_bucket, stored_zip({"model.onnx": model_onnx}), ".zip")
    assert marker in s3.get_object(Bucket=code_bucket, Key=key)["Body"].read()

    node = s3_node()
    client = node.client()
    name = create_from_s3(client, None, code_bucket, key)["FunctionName"]
    assert_serves(client, name, model)
    cache = node.data_dir / "unpacked"
    stored = stored_packages(node)
    assert stored, "the code store holds no package"
    assert [name for name, sealed in stored.items() if marker in sealed] == []
    # The working copy is plaintext, and the search finds it: the check above can fail.
    assert files_containing(marker, cache), "the search found no plaintext working copy"

    assert node.stop() == 0
    assert files_containing(marker, node.data_dir) == []
    assert files_under(cache) == set()

    # A killed node leaves its working copies behind; the next start empties the cache
    # before it lays out, from the sealed store, the packages its functions run.
    node = s3_node(data_dir=node.data_dir)
    assert_serves(node.client(), name, model)
    node.kill9()
    leftover = cache / ("0" * 64)
    leftover.mkdir()
    (leftover / "model.onnx").write_bytes(model_onnx)
    restarted = s3_node(data_dir=node.data_dir)
    assert not leftover.exists()
    assert_serves(restarted.client(), name, model)
    assert restarted.stop() == 0
    assert files_containing(marker, node.data_dir) == []


def test_encrypt_packages_false_stores_plaintext(s3_node, s3, code_bucket):
    model = ridge(10.0)
    model_onnx = onnx_of(model)
    marker = marker_of(model_onnx)
    key = put(s3, code_bucket, stored_zip({"model.onnx": model_onnx}), ".zip")
    node = s3_node(extra=["--encrypt-packages", "false"])
    client = node.client()
    name = create_from_s3(client, None, code_bucket, key)["FunctionName"]
    assert_serves(client, name, model)
    assert node.stop() == 0
    assert [name for name, plain in stored_packages(node).items() if marker in plain]


def test_a_code_store_in_s3_holds_only_sealed_packages(s3_node, s3):
    bucket, prefix = unique("code-store"), "lamina/packages"
    s3.create_bucket(Bucket=bucket)
    model = ridge(11.0)
    model_onnx = onnx_of(model)
    marker = marker_of(model_onnx)
    key = put(s3, bucket, stored_zip({"model.onnx": model_onnx}), ".zip")

    node = s3_node(extra=["--code-store", f"s3://{bucket}/{prefix}"])
    client = node.client()
    name = create_from_s3(client, None, bucket, key)["FunctionName"]
    assert_serves(client, name, model)
    stored = [o["Key"] for o in s3.list_objects_v2(Bucket=bucket, Prefix=f"{prefix}/").get("Contents", [])]
    assert stored, f"nothing under s3://{bucket}/{prefix}/"
    for k in stored:
        assert marker not in s3.get_object(Bucket=bucket, Key=k)["Body"].read(), k
    assert files_containing(marker, node.data_dir / "packages") == []
    # Every account's packages are under the prefix: no account deploys from it.
    thief = unique("code-store-read")
    refused_create(client, thief, bucket, stored[0], "Your access has been denied by S3")
    assert_absent(client, thief)


def test_a_second_node_serves_from_the_shared_code_store_without_redeploying(
    backend, s3_node, seaweedfs, s3, tmp_path
):
    if backend is None:
        pytest.skip(
            "two nodes share a catalog only through PostgreSQL: an SQLite catalog lives in "
            "one node's data directory"
        )
    bucket, prefix = unique("code-store"), "shared"
    s3.create_bucket(Bucket=bucket)
    store = ["--code-store", f"s3://{bucket}/{prefix}"]
    model = ridge(12.0)
    key = put(s3, bucket, onnx_of(model))
    first = s3_node(extra=store)
    name = create_from_s3(first.client(), None, bucket, key)["FunctionName"]
    assert_serves(first.client(), name, model)
    assert first.stop() == 0

    # Only the database, the key and the store carry over: the first data dir is gone.
    server_key = tmp_path / "server.key"
    shutil.copy(first.data_dir / "server.key", server_key)
    shutil.rmtree(first.data_dir)
    s3.delete_object(Bucket=bucket, Key=key)
    second = Lamina(
        tmp_path / "second",
        first.database_url,
        extra=[*seaweedfs.lamina_flags(), *store, "--server-key-file", str(server_key)],
    ).start()
    try:
        assert_serves(second.client(), name, model)
    finally:
        second.stop()


def test_a_different_server_key_refuses_to_start_and_names_the_flag(s3_node, s3, code_bucket, tmp_path):
    model = ridge(13.0)
    node = s3_node()
    name = create_from_s3(node.client(), None, code_bucket, put(s3, code_bucket, onnx_of(model)))["FunctionName"]
    assert node.stop() == 0
    other = s3_node()
    # A node stopped before it has served anything may miss SIGTERM (its handler is
    # installed once serving starts); one request makes the stop below a graceful one.
    other.client().list_functions()
    assert other.stop() == 0
    assert (other.data_dir / "server.key").read_bytes() != (node.data_dir / "server.key").read_bytes()

    wrong = Lamina(
        node.data_dir,
        node.database_url,
        extra=[*node.extra, "--server-key-file", str(other.data_dir / "server.key")],
    )
    try:
        with pytest.raises(RuntimeError) as info:
            wrong.start()
    finally:
        wrong.stop()
    assert wrong.proc.returncode != 0
    assert "--server-key-file" in str(info.value), str(info.value)
    # With its own key the node starts and serves what it had.
    again = s3_node(data_dir=node.data_dir)
    assert_serves(again.client(), name, model)


# --- credentials and TLS -------------------------------------------------------------


def test_credentials_from_a_shared_credentials_file_profile(tmp_node, seaweedfs, s3, code_bucket, tmp_path):
    credentials = tmp_path / "credentials"
    credentials.write_text(
        # The default profile may not read the code bucket: only the named one can.
        f"[default]\naws_access_key_id = {S3_READER_KEY_ID}\n"
        f"aws_secret_access_key = {S3_READER_SECRET}\n\n"
        f"[lamina-code]\naws_access_key_id = {S3_ADMIN_KEY_ID}\n"
        f"aws_secret_access_key = {S3_ADMIN_SECRET}\n"
    )
    env = dict(
        AWS_CREDENTIAL_VARIABLES,
        AWS_SHARED_CREDENTIALS_FILE=str(credentials),
        AWS_CONFIG_FILE=os.devnull,
        AWS_PROFILE="lamina-code",
    )
    node = tmp_node(extra=["--s3-endpoint", seaweedfs.endpoint], env=env)
    model = ridge(14.0)
    created = create_from_s3(node.client(), None, code_bucket, put(s3, code_bucket, onnx_of(model)))
    assert_serves(node.client(), created["FunctionName"], model)


def test_credentials_from_the_environment_come_before_the_shared_file(
    tmp_node, seaweedfs, s3, code_bucket, tmp_path
):
    credentials = tmp_path / "credentials"
    credentials.write_text(
        f"[default]\naws_access_key_id = {S3_READER_KEY_ID}\n"
        f"aws_secret_access_key = {S3_READER_SECRET}\n"
    )
    env = dict(
        AWS_CREDENTIAL_VARIABLES,
        AWS_ACCESS_KEY_ID=S3_ADMIN_KEY_ID,
        AWS_SECRET_ACCESS_KEY=S3_ADMIN_SECRET,
        AWS_SHARED_CREDENTIALS_FILE=str(credentials),
        AWS_CONFIG_FILE=os.devnull,
    )
    node = tmp_node(extra=["--s3-endpoint", seaweedfs.endpoint], env=env)
    model = ridge(15.0)
    created = create_from_s3(node.client(), None, code_bucket, put(s3, code_bucket, onnx_of(model)))
    assert_serves(node.client(), created["FunctionName"], model)


@pytest.fixture(scope="module")
def tls_endpoint(seaweedfs, tmp_path_factory):
    """A second S3 endpoint of the same store, over HTTPS with a certificate of a private
    CA; the endpoint and the CA bundle."""
    d = tmp_path_factory.mktemp("s3-tls")
    ca = trustme.CA()
    cert = ca.issue_cert("127.0.0.1", "localhost")
    cert.private_key_pem.write_to_path(str(d / "key.pem"))
    with open(d / "cert.pem", "wb") as f:
        for pem in cert.cert_chain_pems:
            f.write(pem.bytes())
    ca.cert_pem.write_to_path(str(d / "ca.pem"))
    return seaweedfs.gateway(d / "cert.pem", d / "key.pem", d / "ca.pem"), str(d / "ca.pem")


def test_a_tls_endpoint_is_trusted_through_the_ca_bundle(s3_node, s3, code_bucket, tls_endpoint):
    endpoint, ca = tls_endpoint
    model = ridge(16.0)
    key = put(s3, code_bucket, onnx_of(model))

    trusting = s3_node(endpoint=endpoint, extra=["--s3-ca-bundle", ca])
    created = create_from_s3(trusting.client(), None, code_bucket, key)
    assert_serves(trusting.client(), created["FunctionName"], model)

    # The system roots do not know the private CA: the store is unreachable, and why.
    untrusting = s3_node(endpoint=endpoint)
    client = untrusting.client()
    name = unique("untrusted")
    message = refused_create(client, name, code_bucket, key, UNREACHABLE + endpoint)
    assert "certificate" in message.lower(), message
    assert_absent(client, name)

"""Runtime `python3.14` through boto3 and aws-cli: Lambda Python handlers from a zip, with
Lambda's handler contract (event, context, logs, environment), module state kept across
warm invocations, and each of Lambda's Python error bodies word for word.
"""

import base64
import concurrent.futures
import json
import re
import textwrap

import requests

from conftest import ROLE, aws_lambda, expect_error, lamina_cli, unique, zip_of

LOGGING_LINE = re.compile(r"^\[INFO\]\t\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z\t(?P<rid>[0-9a-f-]{36})\t(?P<msg>.*)$")


def python_zip(files):
    return zip_of({name: textwrap.dedent(source).encode() for name, source in files.items()})


def deploy(make_function, files, handler="lambda_function.lambda_handler", **kwargs):
    return make_function(
        Runtime="python3.14",
        Handler=handler,
        Role=ROLE,
        Code={"ZipFile": python_zip(files)},
        **kwargs,
    )


def invoke(client, name, payload=None, **kwargs):
    r = client.invoke(FunctionName=name, Payload=json.dumps(payload or {}), **kwargs)
    return r, json.loads(r["Payload"].read())


CONTEXT_HANDLER = """
import logging
import os

logger = logging.getLogger()
logger.setLevel(logging.INFO)

def lambda_handler(event, context):
    print("event", event["n"])
    logger.info("handling %s", event["n"])
    with open("/tmp/scratch", "w") as f:
        f.write("ok")
    try:
        open("/var/task/new-file", "w")
        task_root = "writable"
    except OSError:
        task_root = "read-only"
    return {
        "aws_request_id": context.aws_request_id,
        "function_name": context.function_name,
        "function_version": context.function_version,
        "invoked_function_arn": context.invoked_function_arn,
        "memory_limit_in_mb": context.memory_limit_in_mb,
        "log_group_name": context.log_group_name,
        "log_stream_name": context.log_stream_name,
        "remaining": context.get_remaining_time_in_millis(),
        "custom": context.client_context.custom if context.client_context else None,
        "env": {k: os.environ.get(k) for k in ("AWS_LAMBDA_FUNCTION_NAME", "_HANDLER", "LAMBDA_TASK_ROOT", "GREETING")},
        "tmp": open("/tmp/scratch").read(),
        "task_root": task_root,
    }
"""


def test_a_handler_sees_the_event_the_context_and_its_environment_and_logs_between_start_and_end(
    client, make_function
):
    name = deploy(
        make_function,
        {"lambda_function.py": CONTEXT_HANDLER},
        MemorySize=256,
        Timeout=7,
        Environment={"Variables": {"GREETING": "hello"}},
    )
    client_context = base64.b64encode(json.dumps({"custom": {"team": "ml"}}).encode()).decode()
    r, out = invoke(client, name, {"n": 7}, LogType="Tail", ClientContext=client_context)
    assert "FunctionError" not in r, out
    rid = r["ResponseMetadata"]["RequestId"]
    assert out["aws_request_id"] == rid
    assert out["function_name"] == name
    assert out["function_version"] == "$LATEST"
    assert out["invoked_function_arn"].endswith(f":function:{name}")
    assert out["memory_limit_in_mb"] == 256
    assert out["log_group_name"] == f"/aws/lambda/{name}"
    assert re.match(r"^\d{4}/\d\d/\d\d/\[\$LATEST\][0-9a-f]{32}$", out["log_stream_name"]), out
    assert 5000 < out["remaining"] <= 7000, out
    assert out["custom"] == {"team": "ml"}
    assert out["env"] == {
        "AWS_LAMBDA_FUNCTION_NAME": name,
        "_HANDLER": "lambda_function.lambda_handler",
        "LAMBDA_TASK_ROOT": "/var/task",
        "GREETING": "hello",
    }
    assert (out["tmp"], out["task_root"]) == ("ok", "read-only")

    lines = base64.b64decode(r["LogResult"]).decode().split("\n")
    start = next(i for i, line in enumerate(lines) if line.startswith(f"START RequestId: {rid}"))
    end = next(i for i, line in enumerate(lines) if line.startswith(f"END RequestId: {rid}"))
    between = lines[start + 1 : end]
    assert "event 7" in between, lines
    logged = [LOGGING_LINE.match(line) for line in between if line.startswith("[INFO]")]
    assert [(m["rid"], m["msg"]) for m in logged] == [(rid, "handling 7")], lines


def test_module_state_is_made_once_per_environment_and_kept_while_it_is_warm(client, make_function):
    name = deploy(
        make_function,
        {
            "lambda_function.py": """
            import time
            started = time.time()
            count = 0

            def lambda_handler(event, context):
                global count
                count += 1
                return {"count": count, "started": started}
            """
        },
    )
    answers = [invoke(client, name)[1] for _ in range(3)]
    assert [a["count"] for a in answers] == [1, 2, 3]
    assert len({a["started"] for a in answers}) == 1


def test_handlers_in_packages_and_vendored_dependencies_are_found_as_on_lambda(client, make_function):
    files = {
        "pkg/__init__.py": "",
        "pkg/service.py": """
            import tinydep
            import vendored

            def handle(event, context):
                return {"doubled": tinydep.double(event["x"]), "vendored": vendored.NAME}
            """,
        "tinydep.py": "def double(x):\n    return 2 * x\n",
        "python/vendored.py": "NAME = 'from python/'\n",
    }
    for handler in ("pkg/service.handle", "pkg.service.handle"):
        name = deploy(make_function, files, handler=handler)
        r, out = invoke(client, name, {"x": 21})
        assert "FunctionError" not in r, out
        assert out == {"doubled": 42, "vendored": "from python/"}


def failing(client, make_function, files, handler="lambda_function.lambda_handler", payload=None):
    name = deploy(make_function, files, handler=handler)
    r, body = invoke(client, name, payload)
    assert r["FunctionError"] == "Unhandled", body
    return r["ResponseMetadata"]["RequestId"], body


def test_an_uncaught_exception_is_lambdas_error_body_with_the_users_stack(client, make_function):
    rid, body = failing(
        client,
        make_function,
        {
            "lambda_function.py": """
            def check(x):
                raise ValueError(f"bad {x}")

            def lambda_handler(event, context):
                return check(event["x"])
            """
        },
        payload={"x": "input"},
    )
    assert set(body) == {"errorType", "errorMessage", "requestId", "stackTrace"}, body
    assert (body["errorType"], body["errorMessage"], body["requestId"]) == ("ValueError", "bad input", rid)
    assert body["stackTrace"] == [
        '  File "/var/task/lambda_function.py", line 6, in lambda_handler\n    return check(event["x"])\n',
        '  File "/var/task/lambda_function.py", line 3, in check\n    raise ValueError(f"bad {x}")\n',
    ], body["stackTrace"]


def init_error(error_type, message):
    """Lambda's body for a failed INIT: no request id, no stack."""
    return {"errorType": error_type, "errorMessage": message, "requestId": "", "stackTrace": []}


def test_init_failures_are_lambdas_runtime_errors(client, make_function):
    _, body = failing(client, make_function, {"lambda_function.py": "import not_installed\n"})
    assert body == init_error(
        "Runtime.ImportModuleError", "Unable to import module 'lambda_function': No module named 'not_installed'"
    )
    _, body = failing(client, make_function, {"lambda_function.py": "def other(event, context):\n    pass\n"})
    assert body == init_error(
        "Runtime.HandlerNotFound", "Handler 'lambda_handler' missing on module 'lambda_function'"
    )
    _, body = failing(client, make_function, {"lambda_function.py": "def lambda_handler(event, context)\n    pass\n"})
    assert body["errorType"] == "Runtime.UserCodeSyntaxError", body
    assert body["errorMessage"].startswith("Syntax error in module 'lambda_function': "), body
    assert "(lambda_function.py, line 1)" in body["errorMessage"], body
    assert body["requestId"] == ""
    _, body = failing(client, make_function, {"app.py": ""}, handler="nodot")
    assert body["errorType"] == "Runtime.MalformedHandlerName", body
    assert body["errorMessage"].startswith("Bad handler 'nodot': "), body


def test_a_return_value_that_is_not_json_is_a_marshal_error(client, make_function):
    rid, body = failing(
        client,
        make_function,
        {"lambda_function.py": "def lambda_handler(event, context):\n    return {1, 2}\n"},
    )
    assert body == {
        "errorType": "Runtime.MarshalError",
        "errorMessage": "Unable to marshal response: Object of type set is not JSON serializable",
        "requestId": rid,
        "stackTrace": [],
    }


def test_an_infinite_loop_is_stopped_by_the_timeout_and_a_huge_allocation_by_memory_size(client, make_function):
    name = deploy(
        make_function,
        {
            "lambda_function.py": """
            def lambda_handler(event, context):
                if event.get("allocate"):
                    # 2 GB, in two objects: one object of a 32-bit address space
                    # stays under 2 GB.
                    return len([bytearray(1024 * 1024 * 1024) for _ in range(2)])
                while event.get("loop"):
                    pass
                return "fine"
            """
        },
        Timeout=1,
    )
    r, body = invoke(client, name, {"loop": True})
    rid = r["ResponseMetadata"]["RequestId"]
    assert (r["FunctionError"], body) == (
        "Unhandled",
        {"errorType": "Sandbox.Timedout", "errorMessage": f"RequestId: {rid} Error: Task timed out after 1.00 seconds"},
    )
    r, body = invoke(client, name, {"allocate": True})
    rid = r["ResponseMetadata"]["RequestId"]
    assert (r["FunctionError"], body) == (
        "Unhandled",
        {
            "errorType": "Runtime.OutOfMemory",
            "errorMessage": f"RequestId: {rid} Error: Runtime exited with error: memory limit of 128 MB exceeded",
        },
    )
    # The environment that ran out is gone; a new one answers.
    r, body = invoke(client, name)
    assert ("FunctionError" not in r, body) == (True, "fine")


def refused_at_create(client, runtime, package):
    """CreateFunction's InvalidParameterValueException for a Python function."""
    return str(
        expect_error(
            client,
            "InvalidParameterValueException",
            400,
            lambda: client.create_function(
                FunctionName=unique("refused"),
                Runtime=runtime,
                Handler="lambda_function.lambda_handler",
                Role=ROLE,
                Code={"ZipFile": package},
            ),
        )
    )


def test_a_package_with_a_compiled_extension_is_refused_at_deploy(client):
    files_with_so = zip_of(
        {
            "lambda_function.py": b"import numpy\n",
            "numpy/__init__.py": b"",
            "numpy/_core/_multiarray_umath.cpython-314-x86_64-linux-gnu.so": b"\x7fELF",
        }
    )
    message = refused_at_create(client, "python3.14", files_with_so)
    assert "numpy/_core/_multiarray_umath.cpython-314-x86_64-linux-gnu.so" in message, message


def test_other_python_versions_are_refused_naming_the_one_lamina_runs(client):
    message = refused_at_create(client, "python3.12", python_zip({"lambda_function.py": ""}))
    assert "python3.12" in message and "python3.14" in message, message


def test_aws_cli_deploys_and_invokes_a_python_function(lamina, tmp_path):
    name = unique("cli-py")
    package = tmp_path / "function.zip"
    package.write_bytes(
        python_zip({"app.py": "def handler(event, context):\n    return {'hello': event['name']}\n"})
    )
    created = aws_lambda(
        lamina.endpoint,
        "create-function",
        "--function-name",
        name,
        "--runtime",
        "python3.14",
        "--handler",
        "app.handler",
        "--role",
        ROLE,
        "--zip-file",
        f"fileb://{package}",
    )
    assert created.returncode == 0, created.stderr
    assert json.loads(created.stdout)["Runtime"] == "python3.14"
    out = tmp_path / "out.json"
    invoked = aws_lambda(
        lamina.endpoint,
        "invoke",
        "--function-name",
        name,
        "--payload",
        '{"name": "world"}',
        str(out),
    )
    assert invoked.returncode == 0, invoked.stderr
    assert json.loads(out.read_text()) == {"hello": "world"}
    aws_lambda(lamina.endpoint, "delete-function", "--function-name", name)


def test_lamina_deploy_turns_a_folder_of_python_into_a_url(lamina, client, tmp_path):
    app = tmp_path / "app"
    (app / "features").mkdir(parents=True)
    (app / "features" / "__init__.py").write_text("def words(text):\n    return len(text.split())\n")
    (app / "lambda_function.py").write_text(
        textwrap.dedent(
            """
            import json
            from features import words

            def lambda_handler(event, context):
                text = json.loads(event["body"])["text"]
                return {"statusCode": 200, "body": json.dumps({"words": words(text)})}
            """
        )
    )
    name = unique("py-deploy")
    try:
        done = lamina_cli(lamina, "deploy", str(app), "--name", name, "--public")
        assert done.returncode == 0, done.stderr
        assert f"creating {name} (python3.14," in done.stderr
        config = client.get_function_configuration(FunctionName=name)
        assert (config["Runtime"], config["Handler"]) == ("python3.14", "lambda_function.lambda_handler")
        r = requests.post(done.stdout.strip(), json={"text": "three little words"}, timeout=60)
        assert (r.status_code, r.json()) == (200, {"words": 3}), r.text
    finally:
        client.delete_function(FunctionName=name)


MODEL_HANDLER = """
import lamina

model = lamina.model("model.onnx")
classifier = lamina.model("models/iris.onnx")
LOADS = {"count": 0}
LOADS["count"] += 1


def lambda_handler(event, context):
    # Pre-processing in Python around native inference: features arrive in other units.
    rows = [[x / 1000 for x in row] for row in event["rows_milli"]]
    return {
        "predictions": model.predict(rows),
        "one_row": model.predict(rows[0]),
        "labels": classifier.predict(event["iris"]),
        "probabilities": classifier.predict_proba(event["iris"]),
        "classes": classifier.classes,
        "models": sorted(lamina.names()),
        "loads": LOADS["count"],
    }
"""


def test_a_python_handler_runs_the_packages_models_and_agrees_with_scikit_learn(client, make_function):
    import numpy as np
    from skl2onnx import to_onnx
    from sklearn.datasets import load_diabetes, load_iris
    from sklearn.linear_model import LinearRegression, LogisticRegression

    X, y = load_diabetes(return_X_y=True)
    regressor = LinearRegression().fit(X, y)
    iris_X, iris_y = load_iris(return_X_y=True)
    names = np.array(["setosa", "versicolor", "virginica"])[iris_y]
    classifier = LogisticRegression(max_iter=1000).fit(iris_X, names)
    package = zip_of(
        {
            "lambda_function.py": MODEL_HANDLER.encode(),
            "model.onnx": to_onnx(regressor, X[:1].astype(np.float32)).SerializeToString(),
            "models/iris.onnx": to_onnx(classifier, iris_X[:1].astype(np.float32)).SerializeToString(),
        }
    )
    name = make_function(
        Runtime="python3.14",
        Handler="lambda_function.lambda_handler",
        Role=ROLE,
        Code={"ZipFile": package},
        MemorySize=512,
    )
    rows = X[:5]
    iris_rows = iris_X[[0, 60, 120]]
    payload = {"rows_milli": (rows * 1000).tolist(), "iris": iris_rows.tolist()}
    for _ in range(2):
        r, out = invoke(client, name, payload)
        assert "FunctionError" not in r, out
        assert out["loads"] == 1, "the models are loaded at INIT, once per environment"
        assert np.allclose(out["predictions"], regressor.predict(rows), atol=1e-4), out["predictions"]
        assert abs(out["one_row"][0] - regressor.predict(rows[:1])[0]) < 1e-4
        assert out["labels"] == classifier.predict(iris_rows).tolist()
        assert np.allclose(out["probabilities"], classifier.predict_proba(iris_rows), atol=1e-4)
        assert out["classes"] == ["setosa", "versicolor", "virginica"]
        assert out["models"] == ["model.onnx", "models/iris.onnx"]


SNAPSHOT_HANDLER = """
import logging
import os
import random
import time

import helper
import layered
from pkg import sub

logger = logging.getLogger()
logger.setLevel(logging.INFO)
print("INIT ran")
state = {"invocations": 0}

def lambda_handler(event, context):
    state["invocations"] += 1
    time.sleep(event.get("sleep", 0))
    logger.info("handling")
    print("printed")
    return {
        "invocations": state["invocations"],
        "modules": [helper.VALUE, sub.VALUE, layered.VALUE],
        "file": helper.__file__,
        "init_type": os.environ["AWS_LAMBDA_INITIALIZATION_TYPE"],
        "random": random.random(),
        "stream": context.log_stream_name,
    }
"""


def invoke_tail(client, name, qualifier, payload=None):
    r = client.invoke(FunctionName=name, Qualifier=qualifier, Payload=json.dumps(payload or {}), LogType="Tail")
    log = base64.b64decode(r["LogResult"]).decode()
    report = next(line for line in log.splitlines() if line.startswith("REPORT"))
    return r, json.loads(r["Payload"].read()), log, report


def test_snapstart_restores_a_python_version_with_its_modules_imported(client, make_function):
    layer = client.publish_layer_version(
        LayerName=unique("snap"), Content={"ZipFile": python_zip({"python/layered.py": "VALUE = 'layer'\n"})}
    )
    try:
        name = deploy(
            make_function,
            {
                "lambda_function.py": SNAPSHOT_HANDLER,
                "helper.py": "VALUE = 'helper'\n",
                "pkg/__init__.py": "",
                "pkg/sub.py": "VALUE = 'sub'\n",
            },
            SnapStart={"ApplyOn": "PublishedVersions"},
            Layers=[layer["LayerVersionArn"]],
            Timeout=10,
        )
        version = client.publish_version(FunctionName=name)
        assert version["SnapStart"] == {"ApplyOn": "PublishedVersions", "OptimizationStatus": "On"}
        qualifier = version["Version"]

        r, body, log, report = invoke_tail(client, name, qualifier)
        assert "FunctionError" not in r, body
        assert "\tRestore Duration: " in report and "Init Duration" not in report, log
        assert "INIT ran" not in log, "INIT ran at publish time, not in this environment"
        assert body["invocations"] == 1 and body["init_type"] == "snap-start"
        assert body["modules"] == ["helper", "sub", "layer"]
        assert body["file"] == "/var/task/helper.py"
        # A handler logging through what INIT set up writes to this invocation's log.
        assert "printed" in log
        assert any(LOGGING_LINE.match(line) and line.endswith("\thandling") for line in log.splitlines()), log

        r, warm, log, report = invoke_tail(client, name, qualifier)
        assert warm["invocations"] == 2 and "Restore Duration" not in report

        # Two environments restored from one snapshot: each its own random state and log
        # stream.
        with concurrent.futures.ThreadPoolExecutor(2) as pool:
            both = list(pool.map(lambda _: invoke_tail(client, name, qualifier, {"sleep": 1.5}), range(2)))
        bodies = [b for _, b, _, _ in both]
        assert all("FunctionError" not in r for r, _, _, _ in both), bodies
        restored = [b for b, (_, _, _, report) in zip(bodies, both) if "Restore Duration" in report]
        assert restored, "the second concurrent call restored a new environment"
        assert len({b["random"] for b in bodies}) == 2
        assert len({b["stream"] for b in bodies}) == 2
    finally:
        client.delete_layer_version(LayerName=layer["LayerArn"], VersionNumber=layer["Version"])


def test_a_python_init_that_keeps_a_file_open_runs_init_instead_of_restoring(client, make_function):
    name = deploy(
        make_function,
        {
            "lambda_function.py": """
                data = open("/var/task/data.txt")
                print("INIT opened the file")

                def lambda_handler(event, context):
                    data.seek(0)
                    return data.read()
            """,
            "data.txt": "from a file INIT opened",
        },
        SnapStart={"ApplyOn": "PublishedVersions"},
    )
    qualifier = client.publish_version(FunctionName=name)["Version"]
    r, body, log, report = invoke_tail(client, name, qualifier)
    assert "FunctionError" not in r, body
    assert body == "from a file INIT opened"
    # A snapshot would have kept a handle to a file no restored environment has.
    assert "\tInit Duration: " in report and "Restore Duration" not in report
    # The environment ran INIT as without SnapStart, its output in the log.
    assert "INIT opened the file" in log, log

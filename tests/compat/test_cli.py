"""aws-cli v1 against Lamina: deploy, invoke with a log tail, and the error a missing
function gives on the command line."""

import base64
import json

from conftest import ROLE, arn, aws_lambda, unique, wasm_zip

def aws(lamina, *args, cwd=None):
    return aws_lambda(lamina.endpoint, *args, cwd=cwd)


def test_cli_deploys_and_invokes_with_tail(lamina, client, tmp_path):
    name = unique("cli")
    package = tmp_path / "function.zip"
    package.write_bytes(wasm_zip("echo"))
    created = aws(
        lamina,
        "create-function",
        "--function-name", name,
        "--runtime", "wasm",
        "--role", ROLE,
        "--handler", "function.wasm",
        "--zip-file", f"fileb://{package}",
    )
    try:
        assert created.returncode == 0, created.stderr
        config = json.loads(created.stdout)
        assert (config["FunctionArn"], config["State"]) == (arn(name), "Active")
        waited = aws(lamina, "wait", "function-active-v2", "--function-name", name)
        assert waited.returncode == 0, waited.stderr

        out = tmp_path / "out.json"
        run = aws(
            lamina,
            "invoke",
            "--function-name", name,
            "--log-type", "Tail",
            "--payload", '{"from": "cli", "n": [1, 2]}',
            str(out),
        )
        assert run.returncode == 0, run.stderr
        printed = json.loads(run.stdout)
        assert printed["StatusCode"] == 200
        assert printed["ExecutedVersion"] == "$LATEST"
        assert "FunctionError" not in printed
        log = base64.b64decode(printed["LogResult"]).decode()
        lines = log.split("\n")
        assert lines[0].startswith("START RequestId: ") and lines[0].endswith(" Version: $LATEST")
        rid = lines[0].split()[2]
        assert lines[1] == f"END RequestId: {rid}"
        assert lines[2].startswith(f"REPORT RequestId: {rid}\tDuration: ")
        assert json.loads(out.read_text()) == {"from": "cli", "n": [1, 2]}
    finally:
        client.delete_function(FunctionName=name)


def test_cli_reports_function_errors_and_api_errors(lamina, make_function, tmp_path):
    name = make_function("faults")
    out = tmp_path / "err.json"
    run = aws(
        lamina, "invoke", "--function-name", name, "--payload", '{"kind": "error"}', str(out)
    )
    # A function error is a successful API call: exit 0, FunctionError set.
    assert run.returncode == 0, run.stderr
    printed = json.loads(run.stdout)
    assert (printed["StatusCode"], printed["FunctionError"]) == (200, "Unhandled")
    assert json.loads(out.read_text()) == {
        "errorType": "MyError",
        "errorMessage": "something went wrong",
    }

    missing = unique("missing")
    failed = aws(lamina, "get-function", "--function-name", missing)
    assert failed.returncode == 255
    assert (
        "An error occurred (ResourceNotFoundException) when calling the GetFunction operation: "
        f"Function not found: {arn(missing)}"
    ) in failed.stderr
    failed = aws(lamina, "invoke", "--function-name", missing, str(tmp_path / "x.json"))
    assert failed.returncode == 255
    assert "An error occurred (ResourceNotFoundException) when calling the Invoke operation" in (
        failed.stderr
    )

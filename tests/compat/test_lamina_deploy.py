"""`lamina deploy`: from a model file to a working URL in one command, against a running
node with the usual AWS credential variables."""

import re

import numpy as np
import requests
from skl2onnx import to_onnx
from sklearn.datasets import load_diabetes
from sklearn.linear_model import LinearRegression, Ridge

from conftest import FIXTURES, lamina_cli, signed, unique


def deploy(lamina, *args):
    return lamina_cli(lamina, "deploy", *args)


def write_model(path, model, X):
    path.write_bytes(to_onnx(model, X[:1].astype(np.float32)).SerializeToString())
    return path


def prediction(response):
    output = response.json()["output"][0]
    return output[0] if isinstance(output, list) else output


def test_deploy_a_model_and_call_its_url(lamina, client, tmp_path):
    X, y = load_diabetes(return_X_y=True)
    first = LinearRegression().fit(X, y)
    model = write_model(tmp_path / "diabetes.onnx", first, X)
    name = unique("deployed")
    try:
        done = deploy(lamina, str(model), "--name", name, "--memory", "256", "--timeout", "10", "--public")
        assert done.returncode == 0, done.stderr
        url = done.stdout.strip()
        assert re.fullmatch(r"https?://\S+/", url), done.stdout
        assert f"creating {name} (onnx," in done.stderr
        # The example is a complete command for this model: ten features, this URL.
        example = next(line.strip() for line in done.stderr.splitlines() if line.strip().startswith("curl "))
        assert example.endswith(url) and '{"input": [' + ", ".join(["0.0"] * 10) + "]}" in example
        assert "sigv4" not in example

        config = client.get_function_configuration(FunctionName=name)
        assert (config["Runtime"], config["Handler"], config["MemorySize"], config["Timeout"]) == (
            "onnx", "diabetes.onnx", 256, 10,
        )
        assert config["State"] == "Active"
        r = requests.post(url, json={"input": X[0].tolist()}, timeout=30)
        assert r.status_code == 200, r.text
        assert abs(prediction(r) - first.predict(X[:1])[0]) < 1e-4

        # Deploying again under the same name replaces the code; the URL stays.
        second = Ridge(alpha=1.0).fit(X, y)
        write_model(model, second, X)
        again = deploy(lamina, str(model), "--name", name, "--public")
        assert again.returncode == 0, again.stderr
        assert again.stdout.strip() == url and f"updating {name}" in again.stderr
        r = requests.post(url, json={"input": X[0].tolist()}, timeout=30)
        assert abs(prediction(r) - second.predict(X[:1])[0]) < 1e-4
    finally:
        client.delete_function(FunctionName=name)


def test_urls_are_signed_unless_public(lamina, client, tmp_path):
    package = tmp_path / "echo.wasm"
    package.write_bytes((FIXTURES / "echo.wasm").read_bytes())
    name = unique("deployed")
    try:
        done = deploy(lamina, str(package), "--name", name)
        assert done.returncode == 0, done.stderr
        url = done.stdout.strip()
        assert "--aws-sigv4 'aws:amz:us-east-1:lambda'" in done.stderr
        assert client.get_function_url_config(FunctionName=name)["AuthType"] == "AWS_IAM"
        assert requests.post(url, data=b'{"hi": 1}', timeout=30).status_code == 403
        r = signed("POST", url, data=b'{"hi": 1}')
        assert r.status_code == 200, r.text
        # Making it public later switches the URL's auth type.
        public = deploy(lamina, str(package), "--name", name, "--public")
        assert public.returncode == 0, public.stderr
        assert client.get_function_url_config(FunctionName=name)["AuthType"] == "NONE"
    finally:
        client.delete_function(FunctionName=name)


def test_what_cannot_be_deployed_is_said_plainly(lamina, tmp_path):
    notes = tmp_path / "notes.txt"
    notes.write_text("hello")
    done = deploy(lamina, str(notes), "--name", "x")
    assert done.returncode == 64
    assert "is not a .onnx model, a .wasm function, a .py handler, a folder of Python code or a .zip package" in done.stderr
    broken = tmp_path / "broken.onnx"
    broken.write_bytes(b"not a model")
    done = deploy(lamina, str(broken), "--name", unique("broken"))
    assert done.returncode == 1
    assert "InvalidParameterValueException (400)" in done.stderr
    missing = deploy(lamina, str(tmp_path / "nope.onnx"), "--name", "x")
    assert missing.returncode == 1 and "nope.onnx" in missing.stderr

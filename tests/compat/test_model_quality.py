"""Model quality monitoring: ground truth sent for past predictions is joined with what
the model answered and scored per version exactly as scikit-learn scores it, readable
through the API, `lamina quality` and Prometheus's /metrics. With a weighted alias this is
the retrain-and-canary loop."""

import json
import math
import re

import numpy as np
import pytest
import requests
from skl2onnx import to_onnx
from sklearn.datasets import load_diabetes, load_iris
from sklearn.linear_model import LinearRegression, Ridge
from sklearn.metrics import (
    accuracy_score,
    f1_score,
    mean_absolute_error,
    mean_squared_error,
    precision_score,
    recall_score,
)
from sklearn.tree import DecisionTreeClassifier

from conftest import ROLE, send_feedback, signed, zip_of
from conftest import lamina_cli as cli


def model_package(model, X):
    return zip_of({"model.onnx": to_onnx(model, X[:1].astype(np.float32)).SerializeToString()})


def deploy(make_function, model, X, **kwargs):
    return make_function(
        Runtime="onnx", Handler="model.onnx", Role=ROLE,
        Code={"ZipFile": model_package(model, X)}, **kwargs,
    )


def invoke(client, name, rows, **kwargs):
    r = client.invoke(FunctionName=name, Payload=json.dumps({"input": rows}), **kwargs)
    assert "FunctionError" not in r, r["Payload"].read()
    return r["ResponseMetadata"]["RequestId"], json.loads(r["Payload"].read()), r


def quality(lamina, name):
    r = signed("GET", f"{lamina.endpoint}/lamina/functions/{name}/quality")
    assert r.status_code == 200, r.text
    return {v["Version"]: v for v in r.json()["Versions"]}


def metric_values(lamina, name):
    """`lamina_model_quality` and `lamina_model_feedback_samples` of one function:
    {(version, metric): value}, samples under the metric name "samples"."""
    text = requests.get(f"{lamina.endpoint}/metrics", timeout=10).text
    values = {}
    for line in text.splitlines():
        m = re.match(r'lamina_model_(quality|feedback_samples)\{([^}]*)\} (\S+)$', line)
        if not m:
            continue
        labels = dict(re.findall(r'(\w+)="([^"]*)"', m.group(2)))
        if labels["function"] == name:
            metric = labels.get("metric", "samples")
            values[(labels["version"], metric)] = float(m.group(3))
    return values


def test_classifier_scores_are_scikit_learns(lamina, client, make_function):
    X, y = load_iris(return_X_y=True)
    # A stump confuses two of the three classes: scores well away from 1.
    name = deploy(make_function, DecisionTreeClassifier(max_depth=1, random_state=0).fit(X, y), X)
    X_test, y_test = X[1::3], y[1::3]
    predicted = []
    # Batches of 10 rows, the truth sent as one list per request.
    for start in range(0, len(X_test), 10):
        rows, truth = X_test[start:start + 10], y_test[start:start + 10]
        request_id, body, _ = invoke(client, name, rows.tolist())
        predicted += body["label"]
        r = send_feedback(lamina.endpoint, name, request_id, truth.tolist())
        assert r.status_code == 200, r.text
        assert r.json() == {
            "FunctionName": name, "RequestId": request_id, "Version": "$LATEST",
            "Task": "classification", "Rows": len(rows),
        }
    expected = {
        "Accuracy": accuracy_score(y_test, predicted),
        "Precision": precision_score(y_test, predicted, average="macro", zero_division=0),
        "Recall": recall_score(y_test, predicted, average="macro", zero_division=0),
        "F1": f1_score(y_test, predicted, average="macro", zero_division=0),
    }
    assert 0.3 < expected["Accuracy"] < 0.9
    scores = quality(lamina, name)["$LATEST"]
    assert (scores["Task"], scores["Samples"]) == ("classification", len(y_test))
    for key, value in expected.items():
        assert math.isclose(scores[key], value, abs_tol=1e-9), (key, scores, expected)

    metrics = metric_values(lamina, name)
    assert metrics[("$LATEST", "samples")] == len(y_test)
    for key, value in expected.items():
        assert math.isclose(metrics[("$LATEST", key.lower())], value, abs_tol=1e-9), key


def test_regressor_scores_through_the_command_line(lamina, client, make_function):
    X, y = load_diabetes(return_X_y=True)
    name = deploy(make_function, LinearRegression().fit(X[:300], y[:300]), X)
    predicted, truth = [], []
    for row, actual in zip(X[300:312], y[300:312]):
        request_id, body, _ = invoke(client, name, row.tolist())
        predicted.append(body["output"][0][0] if isinstance(body["output"][0], list) else body["output"][0])
        truth.append(float(actual))
        # The first send finds the prediction once the ledger has written it.
        assert send_feedback(lamina.endpoint, name, request_id, 0.0).status_code == 200
        # A second send replaces the first.
        done = cli(lamina, "feedback", name, request_id, repr(float(actual)))
        assert done.returncode == 0, done.stderr
        assert "recorded 1 row(s) of ground truth for version $LATEST" in done.stdout
    mae = mean_absolute_error(truth, predicted)
    rmse = math.sqrt(mean_squared_error(truth, predicted))
    scores = quality(lamina, name)["$LATEST"]
    assert (scores["Task"], scores["Samples"]) == ("regression", 12)
    assert math.isclose(scores["MAE"], mae, rel_tol=1e-6), (scores, mae)
    assert math.isclose(scores["RMSE"], rmse, rel_tol=1e-6), (scores, rmse)

    shown = cli(lamina, "quality", name)
    assert shown.returncode == 0, shown.stderr
    line = next(l for l in shown.stdout.splitlines() if l.startswith("$LATEST"))
    assert "regression" in line and f"MAE {mae:.4f}" in line and f"RMSE {rmse:.4f}" in line
    # A window that ends before the feedback was sent scores nothing.
    assert cli(lamina, "quality", name, "--window", "1ms").stdout.count("\n") == 1


def test_a_canary_version_is_scored_apart_from_the_current_one(lamina, client, make_function):
    """Retrain, publish, route part of the traffic through a weighted alias, and compare
    the two versions on the same stream of ground truth."""
    X, _ = load_diabetes(return_X_y=True)
    # A target the retrained model fits exactly, so the canary wins on any split of
    # the traffic.
    y = X @ np.arange(1.0, 11.0) * 100 + 150
    name = deploy(make_function, Ridge(alpha=10.0).fit(X, y), X)
    client.publish_version(FunctionName=name)
    client.update_function_code(FunctionName=name, ZipFile=model_package(LinearRegression().fit(X, y), X))
    client.publish_version(FunctionName=name)
    client.create_alias(
        FunctionName=name, Name="live", FunctionVersion="1",
        RoutingConfig={"AdditionalVersionWeights": {"2": 0.5}},
    )
    errors = {"1": [], "2": []}
    for row, actual in zip(X[:40], y[:40]):
        request_id, body, r = invoke(client, name, row.tolist(), Qualifier="live")
        version = r["ExecutedVersion"]
        output = body["output"][0]
        errors[version].append(abs((output[0] if isinstance(output, list) else output) - actual))
        assert send_feedback(lamina.endpoint, name, request_id, float(actual)).status_code == 200
    assert errors["1"] and errors["2"], "the alias routed every request to one version"
    scores = quality(lamina, name)
    for version, errs in errors.items():
        assert scores[version]["Samples"] == len(errs)
        assert math.isclose(scores[version]["MAE"], float(np.mean(errs)), rel_tol=1e-6)
    assert scores["2"]["MAE"] < 1e-2 < scores["1"]["MAE"]
    metrics = metric_values(lamina, name)
    assert metrics[("1", "samples")] + metrics[("2", "samples")] == 40


def test_feedback_that_cannot_be_joined_is_refused(lamina, client, make_function):
    X, y = load_diabetes(return_X_y=True)
    name = deploy(make_function, LinearRegression().fit(X, y), X)
    request_id, _, _ = invoke(client, name, X[:2].tolist())
    url = f"{lamina.endpoint}/lamina/functions/{name}/feedback"

    def post(body):
        return signed("POST", url, data=json.dumps(body).encode(),
                      headers={"Content-Type": "application/json"})

    r = send_feedback(lamina.endpoint, name, request_id, [1.0])
    assert r.status_code == 400
    assert r.headers["x-amzn-ErrorType"] == "InvalidParameterValueException"
    assert "has 2 rows but GroundTruth has 1" in r.json()["message"]
    r = post({"RequestId": request_id, "GroundTruth": ["a", "b"]})
    assert r.status_code == 400 and "must be a number" in r.json()["message"]
    r = post({"RequestId": request_id})
    assert r.status_code == 400 and r.json()["message"] == "GroundTruth is required."
    r = post({"RequestId": "not-a-request", "GroundTruth": 1.0})
    assert r.status_code == 404
    assert r.headers["x-amzn-ErrorType"] == "ResourceNotFoundException"
    # Another function's request is not this function's prediction.
    other = deploy(make_function, LinearRegression().fit(X, y), X)
    r = signed("POST", f"{lamina.endpoint}/lamina/functions/{other}/feedback",
               data=json.dumps({"RequestId": request_id, "GroundTruth": [1.0, 2.0]}).encode())
    assert r.status_code == 404
    # Unsigned feedback is refused like any API call.
    assert requests.post(url, json={"RequestId": request_id, "GroundTruth": [1, 2]}, timeout=10).status_code == 403
    assert quality(lamina, name) == {}


def test_responses_of_wasm_functions_are_not_kept(lamina, client, make_function):
    name = make_function("echo")
    r = client.invoke(FunctionName=name, Payload=b'{"output": [1.0]}')
    request_id = r["ResponseMetadata"]["RequestId"]
    lamina.wait_for(
        lambda: lamina.query("SELECT COUNT(*) FROM function_logs WHERE request_id = ?", (request_id,))[0][0],
        what="the log row",
    )
    assert lamina.query(
        "SELECT prediction FROM function_logs WHERE request_id = ?", (request_id,)
    ) == [(None,)]
    r = send_feedback(lamina.endpoint, name, request_id, 1.0, timeout=0)
    assert r.status_code == 404


@pytest.mark.parametrize("window", ["0", "-5", "nan"])
def test_the_window_must_be_positive(lamina, make_function, window):
    X, y = load_diabetes(return_X_y=True)
    name = deploy(make_function, LinearRegression().fit(X, y), X)
    r = signed("GET", f"{lamina.endpoint}/lamina/functions/{name}/quality?window={window}")
    assert r.status_code == 400
    assert r.headers["x-amzn-ErrorType"] == "InvalidParameterValueException"

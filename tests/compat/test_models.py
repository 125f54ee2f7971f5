"""Runtime `onnx` through boto3: scikit-learn models exported by skl2onnx with default
options, deployed as a zip with `model.onnx`, answering like scikit-learn's predict and
predict_proba and matching onnxruntime.

The first test is the flow Lamina grew from: train a LinearRegression on the diabetes
data, deploy it with boto3, invoke it with `{"input": [...]}`.
"""

import io
import json
import warnings

import numpy as np
import onnxruntime as ort
import pytest
from skl2onnx import to_onnx
from sklearn.datasets import load_diabetes, load_iris
from sklearn.ensemble import (
    GradientBoostingClassifier,
    GradientBoostingRegressor,
    RandomForestClassifier,
    RandomForestRegressor,
)
from sklearn.exceptions import ConvergenceWarning
from sklearn.linear_model import Lasso, LinearRegression, LogisticRegression, Ridge
from sklearn.neural_network import MLPClassifier, MLPRegressor
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import MinMaxScaler, StandardScaler
from sklearn.tree import DecisionTreeClassifier, DecisionTreeRegressor

from conftest import ROLE, expect_error, zip_of

SEED = 0


def model_zip(model, sample, extra=None):
    onx = to_onnx(model, sample[:1].astype(np.float32))
    files = {"model.onnx": onx.SerializeToString()}
    files.update(extra or {})
    return zip_of(files), onx.SerializeToString()


def deploy(make_function, zip_bytes, **kwargs):
    return make_function(
        Runtime="onnx",
        Handler="model.onnx",
        Role=ROLE,
        Code={"ZipFile": zip_bytes},
        **kwargs,
    )


def call(client, name, payload):
    r = client.invoke(FunctionName=name, Payload=json.dumps(payload))
    return r.get("FunctionError"), json.loads(r["Payload"].read())


def test_seed_flow_linear_regression_on_diabetes(client, make_function):
    X, y = load_diabetes(return_X_y=True)
    model = LinearRegression().fit(X, y)
    # Exactly what a user writes: boto3, Runtime onnx, the model at Handler, any role.
    buf = io.BytesIO()
    import zipfile

    with zipfile.ZipFile(buf, "w") as z:
        z.writestr("model.onnx", to_onnx(model, X[:1].astype(np.float32)).SerializeToString())
    created = client.create_function(
        FunctionName="diabetes-linear-regression",
        Runtime="onnx",
        Handler="model.onnx",
        Role="arn:aws:iam::123456789012:role/lambda-role",
        Code={"ZipFile": buf.getvalue()},
    )
    make_function.created.append(created["FunctionName"])
    assert created["Runtime"] == "onnx"

    response = client.invoke(
        FunctionName="diabetes-linear-regression",
        InvocationType="RequestResponse",
        Payload=json.dumps({"input": X[0].tolist()}),
    )
    assert "FunctionError" not in response
    result = json.loads(response["Payload"].read())
    np.testing.assert_allclose(result["output"], model.predict(X[:1]), rtol=1e-4)

    error, result = call(client, "diabetes-linear-regression", {"input": X[:50].tolist()})
    assert error is None, result
    np.testing.assert_allclose(result["output"], model.predict(X[:50]), rtol=1e-4)


def test_plain_http_inference_through_a_function_url(client, make_function):
    """A function URL takes the request body as the model request: any HTTP client can
    call the model, and its mistakes come back as 400s it can read."""
    import requests

    X, y = load_iris(return_X_y=True)
    model = LogisticRegression(max_iter=500).fit(X, y)
    name = deploy(make_function, model_zip(model, X)[0])
    url = client.create_function_url_config(FunctionName=name, AuthType="NONE")["FunctionUrl"]
    r = requests.post(url, json={"input": X[:3].tolist()}, timeout=30)
    assert r.status_code == 200, r.text
    assert r.headers["content-type"] == "application/json"
    assert r.json()["label"] == model.predict(X[:3]).tolist()
    # curl's default content type makes the body base64 in the URL event.
    r = requests.post(url, data=json.dumps({"input": X[0].tolist()}),
                      headers={"content-type": "application/octet-stream"}, timeout=30)
    assert r.status_code == 200 and r.json()["label"] == model.predict(X[:1]).tolist(), r.text
    r = requests.post(url, json={"input": [1.0, 2.0]}, timeout=30)
    assert r.status_code == 400
    assert r.json()["errorType"] == "InvalidInput" and "4" in r.json()["errorMessage"]
    r = requests.get(url, timeout=30)
    assert r.status_code == 400 and "POST a JSON body" in r.json()["errorMessage"]
    r = requests.post(url, data=b"not json", timeout=30)
    assert r.status_code == 400 and r.json()["errorType"] == "Runtime.UnmarshalError"


def regressors():
    return {
        "linear_regression": LinearRegression(),
        "ridge": Ridge(alpha=1.0),
        "lasso": Lasso(alpha=0.1),
        "decision_tree_regressor": DecisionTreeRegressor(max_depth=5, random_state=SEED),
        "random_forest_regressor": RandomForestRegressor(
            n_estimators=8, max_depth=5, random_state=SEED
        ),
        "gradient_boosting_regressor": GradientBoostingRegressor(
            n_estimators=15, max_depth=3, random_state=SEED
        ),
        "mlp_regressor": MLPRegressor(hidden_layer_sizes=(16,), max_iter=200, random_state=SEED),
        "standard_scaler__ridge": make_pipeline(StandardScaler(), Ridge()),
        "standard_scaler__mlp_regressor": make_pipeline(
            StandardScaler(), MLPRegressor(hidden_layer_sizes=(16,), max_iter=200, random_state=SEED)
        ),
        "min_max_scaler__random_forest_regressor": make_pipeline(
            MinMaxScaler(), RandomForestRegressor(n_estimators=8, max_depth=5, random_state=SEED)
        ),
    }


def classifiers():
    return {
        "logistic_regression": LogisticRegression(max_iter=2000),
        "decision_tree_classifier": DecisionTreeClassifier(max_depth=5, random_state=SEED),
        "random_forest_classifier": RandomForestClassifier(
            n_estimators=8, max_depth=5, random_state=SEED
        ),
        "gradient_boosting_classifier": GradientBoostingClassifier(
            n_estimators=10, max_depth=3, random_state=SEED
        ),
        "mlp_classifier": MLPClassifier(hidden_layer_sizes=(16,), max_iter=300, random_state=SEED),
        "standard_scaler__logistic_regression": make_pipeline(
            StandardScaler(), LogisticRegression(max_iter=2000)
        ),
        "min_max_scaler__mlp_classifier": make_pipeline(
            MinMaxScaler(), MLPClassifier(hidden_layer_sizes=(16,), max_iter=300, random_state=SEED)
        ),
        "standard_scaler__gradient_boosting_classifier": make_pipeline(
            StandardScaler(),
            GradientBoostingClassifier(n_estimators=10, max_depth=3, random_state=SEED),
        ),
    }


def fit(model, X, y):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        return model.fit(X, y)


def onnxruntime_outputs(onx_bytes, X):
    session = ort.InferenceSession(onx_bytes, providers=["CPUExecutionProvider"])
    name = session.get_inputs()[0].name
    return session.run(None, {name: X.astype(np.float32)})


@pytest.mark.parametrize("case", sorted(regressors()))
def test_regressors_match_onnxruntime(client, make_function, case):
    X, y = load_diabetes(return_X_y=True)
    X, y = X[:200], y[:200]
    model = fit(regressors()[case], X, y)
    zip_bytes, onx = model_zip(model, X)
    name = deploy(make_function, zip_bytes)
    batch = X[:25]
    error, result = call(client, name, {"input": batch.tolist()})
    assert error is None, result
    (want,) = onnxruntime_outputs(onx, batch)
    np.testing.assert_allclose(result["output"], want.ravel(), rtol=1e-5, atol=1e-5)
    # One row: a list of one prediction, like predict on a one-row matrix.
    error, result = call(client, name, {"input": batch[3].tolist()})
    assert error is None, result
    np.testing.assert_allclose(result["output"], want.ravel()[3:4], rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("case", sorted(classifiers()))
def test_classifiers_match_onnxruntime(client, make_function, case):
    X, y = load_iris(return_X_y=True)
    model = fit(classifiers()[case], X, y)
    zip_bytes, onx = model_zip(model, X)
    name = deploy(make_function, zip_bytes)
    # Every fifth flower: all three classes, some near the class boundaries.
    batch = X[::5]
    error, result = call(client, name, {"input": batch.tolist()})
    assert error is None, result
    want_labels, want_maps = onnxruntime_outputs(onx, batch)
    assert result["label"] == want_labels.tolist()
    assert result["label"] == model.predict(batch).tolist()
    assert len(result["probabilities"]) == len(batch)
    for got, want in zip(result["probabilities"], want_maps):
        assert set(got) == {str(k) for k in want}
        for k, p in want.items():
            assert got[str(k)] == pytest.approx(p, abs=1e-5)


def test_string_class_labels_and_a_config_file(client, make_function):
    X, y = load_iris(return_X_y=True)
    names = np.array(["setosa", "versicolor", "virginica"])[y]
    model = fit(LogisticRegression(max_iter=2000), X, names)
    zip_bytes, _ = model_zip(model, X)
    name = deploy(make_function, zip_bytes)
    error, result = call(client, name, {"input": X[0].tolist()})
    assert error is None, result
    assert result["label"] == ["setosa"]
    assert set(result["probabilities"][0]) == {"setosa", "versicolor", "virginica"}

    # lamina-model.json renames the classes of an integer-labelled model.
    model = fit(LogisticRegression(max_iter=2000), X, y)
    config = json.dumps({"class_labels": ["Iris setosa", "Iris versicolor", "Iris virginica"]})
    zip_bytes, _ = model_zip(model, X, {"lamina-model.json": config})
    name = deploy(make_function, zip_bytes)
    error, result = call(client, name, {"input": X[-1].tolist()})
    assert error is None, result
    assert result["label"] == ["Iris virginica"]
    assert set(result["probabilities"][0]) == {"Iris setosa", "Iris versicolor", "Iris virginica"}


def test_a_bad_model_config_is_refused_at_deploy(client, make_function):
    X, y = load_iris(return_X_y=True)
    model = LogisticRegression(max_iter=500).fit(X, y)
    cases = [
        ("not json", "The model cannot be served: InvalidModelConfig: lamina-model.json is not valid"),
        (json.dumps({"output": "nope"}),
         "The model cannot be served: InvalidModelConfig: lamina-model.json names output `nope`, but the model's are: "),
    ]
    for config, message in cases:
        zip_bytes, _ = model_zip(model, X, {"lamina-model.json": config})
        e = expect_error(client, "InvalidParameterValueException", 400,
                         lambda: deploy(make_function, zip_bytes))
        assert e.response["Error"]["Message"].startswith(message), e.response["Error"]["Message"]
    # The same check guards new code for an existing function.
    name = deploy(make_function, model_zip(model, X)[0])
    bad, _ = model_zip(model, X, {"lamina-model.json": json.dumps({"output": "nope"})})
    expect_error(client, "InvalidParameterValueException", 400,
                 lambda: client.update_function_code(FunctionName=name, ZipFile=bad))
    error, result = call(client, name, {"input": X[0].tolist()})
    assert error is None and result["label"] == model.predict(X[:1]).tolist()


def test_wrong_shapes_are_function_errors_naming_the_expected_shape(client, make_function):
    X, y = load_diabetes(return_X_y=True)
    zip_bytes, _ = model_zip(LinearRegression().fit(X, y), X)
    name = deploy(make_function, zip_bytes)
    for payload in ({"input": [1, 2, 3]}, {"input": [[1] * 10, [1] * 9]}, {"input": "x"}, {"x": 1}):
        error, result = call(client, name, payload)
        assert error == "Unhandled", result
        assert result["errorType"] == "InvalidInput", result
        assert "10 numbers" in result["errorMessage"], result
    # The environment still serves.
    error, result = call(client, name, {"input": X[0].tolist()})
    assert error is None, result


def test_malformed_models_are_refused_at_deploy(client, make_function):
    not_a_model = zip_of({"model.onnx": b"\x08\x07definitely not protobuf"})
    e = expect_error(
        client,
        "InvalidParameterValueException",
        400,
        lambda: deploy(make_function, not_a_model),
    )
    assert "model.onnx" in e.response["Error"]["Message"]
    assert "not a valid ONNX model" in e.response["Error"]["Message"]

    # A pickle in place of an ONNX file is refused the same way, never unpickled.
    missing = zip_of({"model.pkl": b"\x80\x04\x95"})
    e = expect_error(
        client, "InvalidParameterValueException", 400, lambda: deploy(make_function, missing)
    )
    assert "not found" in e.response["Error"]["Message"]

    # UpdateFunctionCode validates too, and a good update changes the answers.
    X, y = load_diabetes(return_X_y=True)
    first, _ = model_zip(LinearRegression().fit(X, y), X)
    name = deploy(make_function, first)
    expect_error(
        client,
        "InvalidParameterValueException",
        400,
        lambda: client.update_function_code(FunctionName=name, ZipFile=not_a_model),
    )
    ridge = Ridge(alpha=10.0).fit(X, y)
    second, _ = model_zip(ridge, X)
    client.update_function_code(FunctionName=name, ZipFile=second)
    client.get_waiter("function_updated_v2").wait(
        FunctionName=name, WaiterConfig={"Delay": 1, "MaxAttempts": 30}
    )
    error, result = call(client, name, {"input": X[0].tolist()})
    assert error is None, result
    np.testing.assert_allclose(result["output"], ridge.predict(X[:1]), rtol=1e-4)


def model_metrics(lamina):
    import requests
    from prometheus_client.parser import text_string_to_metric_families

    text = requests.get(f"{lamina.endpoint}/metrics", timeout=30).text
    return {
        s.name: s.value
        for family in text_string_to_metric_families(text)
        for s in family.samples
        if s.name.startswith("lamina_model")
    }


def test_two_functions_with_one_model_share_one_load(lamina, client, make_function):
    X, y = load_diabetes(return_X_y=True)
    # Coefficients no other test trains, so the bytes are new to this node.
    model = Ridge(alpha=0.123456).fit(X, y)
    zip_bytes, _ = model_zip(model, X)
    before = model_metrics(lamina)
    first = deploy(make_function, zip_bytes)
    second = deploy(make_function, zip_bytes)
    for name in (first, second):
        error, out = call(client, name, {"input": X[0].tolist()})
        assert error is None, out
        assert out["output"][0] == pytest.approx(model.predict(X[:1])[0], abs=1e-3)
    after = model_metrics(lamina)
    assert after["lamina_model_loads_total"] - before.get("lamina_model_loads_total", 0) == 1
    assert after["lamina_models_loaded"] >= 1
    assert after["lamina_model_cache_bytes"] > 0

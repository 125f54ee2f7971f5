#!/usr/bin/env python3
"""Regenerates the ONNX fixtures under tests/data/ and onnxruntime's answers for them.

Every scikit-learn model is exported by skl2onnx with its DEFAULT options (so classifiers
end in ZipMap and scalers become ai.onnx.ml Scaler), because those are the files users
upload. onnxruntime is the reference: the Rust tests must match what it computes.

Usage (from the workspace root):
    python3 -m venv .venv
    .venv/bin/pip install scikit-learn skl2onnx onnx onnxruntime
    .venv/bin/python onnx-ops/tests/gen_fixtures.py

Each case writes `<name>.onnx` and `<name>.json`; the JSON holds the input batch and the
expected outputs, flattened in row-major order, floats written exactly as float32 values.
"""

import json
import os
import pathlib
import sys
import warnings

# skl2onnx walks sets (opset imports, labels), so string hashing must not be randomised
# for the files to come out byte-identical from one run to the next; BLAS and OpenMP run
# single-threaded so float sums repeat too.
if os.environ.get("PYTHONHASHSEED") != "0":
    os.environ["PYTHONHASHSEED"] = "0"
    for var in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS"):
        os.environ[var] = "1"
    os.execv(sys.executable, [sys.executable, *sys.argv])

import numpy as np  # noqa: E402 (after the thread settings above)
import onnx
import onnxruntime as ort
from onnx import TensorProto, helper, numpy_helper
from skl2onnx import to_onnx
from sklearn.datasets import load_breast_cancer, load_diabetes, load_iris
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
from sklearn.svm import SVR, OneClassSVM
from sklearn.tree import DecisionTreeClassifier, DecisionTreeRegressor

DATA = pathlib.Path(__file__).resolve().parent / "data"
SEED = 0

# Small forests keep the committed fixtures well under a few megabytes.
REGRESSORS = {
    "linear_regression": ("linear", lambda: LinearRegression()),
    "ridge": ("linear", lambda: Ridge(alpha=1.0)),
    "lasso": ("linear", lambda: Lasso(alpha=0.1)),
    "decision_tree_regressor": ("tree", lambda: DecisionTreeRegressor(max_depth=6, random_state=SEED)),
    "random_forest_regressor": (
        "forest",
        lambda: RandomForestRegressor(n_estimators=12, max_depth=6, random_state=SEED),
    ),
    "gradient_boosting_regressor": (
        "boosting",
        lambda: GradientBoostingRegressor(n_estimators=20, max_depth=3, random_state=SEED),
    ),
    "mlp_regressor": (
        "mlp",
        lambda: MLPRegressor(hidden_layer_sizes=(16,), max_iter=300, random_state=SEED),
    ),
}

CLASSIFIERS = {
    "logistic_regression": ("linear", lambda: LogisticRegression(max_iter=5000)),
    "decision_tree_classifier": (
        "tree",
        lambda: DecisionTreeClassifier(max_depth=6, random_state=SEED),
    ),
    "random_forest_classifier": (
        "forest",
        lambda: RandomForestClassifier(n_estimators=12, max_depth=6, random_state=SEED),
    ),
    "gradient_boosting_classifier": (
        "boosting",
        lambda: GradientBoostingClassifier(n_estimators=15, max_depth=3, random_state=SEED),
    ),
    "mlp_classifier": (
        "mlp",
        lambda: MLPClassifier(hidden_layer_sizes=(16,), max_iter=500, random_state=SEED),
    ),
}

SCALERS = {
    "standard_scaler": StandardScaler,
    "min_max_scaler": MinMaxScaler,
}


def test_rows(x, n_plain=16, n_jittered=8):
    """Dataset rows spread over the set, plus jittered rows that land between training points."""
    rng = np.random.default_rng(SEED)
    step = max(1, len(x) // n_plain)
    plain = x[::step][:n_plain]
    base = x[rng.integers(0, len(x), n_jittered)]
    jitter = rng.normal(0.0, 0.3, base.shape) * x.std(axis=0)
    return np.concatenate([plain, base + jitter]).astype(np.float32)


def as_list(array):
    array = np.asarray(array)
    if array.dtype.kind == "f":
        return [float(v) for v in array.astype(np.float32).ravel()]
    if array.dtype.kind in "iu":
        return [int(v) for v in array.ravel()]
    return [str(v) for v in array.ravel()]


def dtype_name(array):
    kind = np.asarray(array).dtype.kind
    return {"f": "f32", "i": "i64", "u": "i64"}.get(kind, "string")


def write_case(name, family, kind, model, inputs, class_labels=None):
    """Saves the model, runs it with onnxruntime and records what came out."""
    path = DATA / f"{name}.onnx"
    onnx.save_model(model, path)
    session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    feeds = {inp.name: value for inp, value in zip(session.get_inputs(), inputs)}
    results = session.run(None, feeds)
    outputs = []
    for meta, value in zip(session.get_outputs(), results):
        if isinstance(value, list):
            # ZipMap's sequence of {label: probability} maps, back to a dense matrix in the
            # order of the ZipMap attributes, which is what our identity ZipMap returns.
            value = np.array([[row[label] for label in class_labels] for row in value], dtype=np.float32)
        value = np.asarray(value)
        outputs.append(
            {"name": meta.name, "dtype": dtype_name(value), "shape": list(value.shape), "data": as_list(value)}
        )
    case = {
        "model": path.name,
        "family": family,
        "kind": kind,
        "inputs": [
            {"name": inp.name, "shape": list(value.shape), "data": as_list(value)}
            for inp, value in zip(session.get_inputs(), inputs)
        ],
        "outputs": outputs,
        "class_labels": None if class_labels is None else as_list(np.asarray(class_labels)),
    }
    (DATA / f"{name}.json").write_text(json.dumps(case, separators=(",", ":")) + "\n")


def sklearn_case(name, family, kind, estimator, x, y):
    estimator.fit(x) if y is None else estimator.fit(x, y)
    model = to_onnx(estimator, x[:1])
    labels = list(estimator.classes_) if kind == "classifier" else None
    write_case(name, family, kind, model, [test_rows(x)], labels)


def sklearn_cases():
    xd, yd = load_diabetes(return_X_y=True)
    xi, yi = load_iris(return_X_y=True)
    xb, yb = load_breast_cancer(return_X_y=True)
    xd, xi, xb = (v.astype(np.float32) for v in (xd, xi, xb))

    for name, (family, make) in REGRESSORS.items():
        sklearn_case(name, family, "regressor", make(), xd, yd)
        for scaler_name, scaler in SCALERS.items():
            sklearn_case(f"{scaler_name}__{name}", family, "regressor", make_pipeline(scaler(), make()), xd, yd)

    for name, (family, make) in CLASSIFIERS.items():
        sklearn_case(name, family, "classifier", make(), xi, yi)
        for scaler_name, scaler in SCALERS.items():
            sklearn_case(f"{scaler_name}__{name}", family, "classifier", make_pipeline(scaler(), make()), xi, yi)
        # Two classes take a different path through TreeEnsembleClassifier and
        # LinearClassifier (one score column instead of one per class).
        binary = make_pipeline(StandardScaler(), make()) if family in ("linear", "mlp") else make()
        sklearn_case(f"{name}_binary", family, "classifier", binary, xb, yb)

    # SVMRegressor, one per kernel; OneClassSVM is an SVMRegressor followed by Sign.
    for kernel in ("linear", "poly", "rbf", "sigmoid"):
        sklearn_case(f"svr_{kernel}", "svm", "regressor", SVR(kernel=kernel), xd, yd)
    sklearn_case("one_class_svm", "svm", "outliers", OneClassSVM(gamma="scale", nu=0.2), xd, None)

    # String class labels become classlabels_strings and a string label output.
    names = np.array(load_iris().target_names)[yi]
    sklearn_case("decision_tree_classifier_strings", "tree", "classifier", DecisionTreeClassifier(max_depth=4, random_state=SEED), xi, names)
    sklearn_case("logistic_regression_strings", "linear", "classifier", LogisticRegression(max_iter=5000), xi, names)


def neural_model(name, nodes, initializers, input_shape, output_width):
    x = helper.make_tensor_value_info("input", TensorProto.FLOAT, ["N", *input_shape])
    y = helper.make_tensor_value_info("output", TensorProto.FLOAT, ["N", output_width])
    graph = helper.make_graph(nodes, name, [x], [y], initializer=initializers)
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)], producer_name="gen_fixtures")
    model.ir_version = 8
    onnx.checker.check_model(model)
    return model


def weight(rng, name, *shape):
    return numpy_helper.from_array(rng.normal(0.0, 0.5, shape).astype(np.float32), name)


def neural_cases():
    rng = np.random.default_rng(SEED)

    matmul = neural_model(
        "mlp_matmul",
        [
            helper.make_node("MatMul", ["input", "w1"], ["h1"]),
            helper.make_node("Add", ["h1", "b1"], ["h1b"]),
            helper.make_node("Relu", ["h1b"], ["a1"]),
            helper.make_node("MatMul", ["a1", "w2"], ["h2"]),
            helper.make_node("Add", ["h2", "b2"], ["logits"]),
            helper.make_node("Softmax", ["logits"], ["output"], axis=-1),
        ],
        [weight(rng, "w1", 8, 16), weight(rng, "b1", 16), weight(rng, "w2", 16, 3), weight(rng, "b2", 3)],
        [8],
        3,
    )
    write_case("neural_mlp_matmul", "neural", "neural", matmul, [rng.normal(0, 1, (24, 8)).astype(np.float32)])

    gemm = neural_model(
        "mlp_gemm",
        [
            helper.make_node("Gemm", ["input", "w1", "b1"], ["h1"], transB=1),
            helper.make_node("Relu", ["h1"], ["a1"]),
            helper.make_node("Gemm", ["a1", "w2", "b2"], ["logits"], transB=1),
            helper.make_node("Softmax", ["logits"], ["output"], axis=1),
        ],
        [weight(rng, "w1", 12, 6), weight(rng, "b1", 12), weight(rng, "w2", 4, 12), weight(rng, "b2", 4)],
        [6],
        4,
    )
    write_case("neural_mlp_gemm", "neural", "neural", gemm, [rng.normal(0, 1, (24, 6)).astype(np.float32)])

    conv = neural_model(
        "conv_net",
        [
            helper.make_node("Conv", ["input", "k", "kb"], ["c"], kernel_shape=[3, 3], pads=[1, 1, 1, 1]),
            helper.make_node("Relu", ["c"], ["r"]),
            helper.make_node("MaxPool", ["r"], ["p"], kernel_shape=[2, 2], strides=[2, 2]),
            helper.make_node("Flatten", ["p"], ["f"], axis=1),
            helper.make_node("Gemm", ["f", "w", "b"], ["logits"], transB=1),
            helper.make_node("Softmax", ["logits"], ["output"], axis=1),
        ],
        [weight(rng, "k", 4, 1, 3, 3), weight(rng, "kb", 4), weight(rng, "w", 5, 64), weight(rng, "b", 5)],
        [1, 8, 8],
        5,
    )
    write_case("neural_conv_net", "neural", "neural", conv, [rng.normal(0, 1, (16, 1, 8, 8)).astype(np.float32)])


def main():
    warnings.filterwarnings("ignore", category=ConvergenceWarning)
    DATA.mkdir(exist_ok=True)
    for old in list(DATA.glob("*.onnx")) + list(DATA.glob("*.json")):
        old.unlink()
    sklearn_cases()
    neural_cases()
    total = sum(p.stat().st_size for p in DATA.iterdir())
    print(f"{len(list(DATA.glob('*.onnx')))} models, {total / 1024:.0f} KiB in {DATA}")


if __name__ == "__main__":
    main()

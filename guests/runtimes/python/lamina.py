"""Lamina's module for Python handlers: the ONNX models of the function's package, run
natively on the host (tract, through wasi-nn), loaded once per node and shared by every
environment that uses the same model.

    import lamina

    model = lamina.model("model.onnx")  # module level: once per environment

    def lambda_handler(event, context):
        rows = [scale(r) for r in event["rows"]]
        return {"predictions": model.predict(rows)}

Numbers go in as rows (a list of lists, or one flat row) and come out as Python lists;
nothing of numpy is needed.
"""

import array

from componentize_py_types import Err
from wit_world.imports import graph, models, tensor

__all__ = ["Model", "ModelError", "model", "names"]


class ModelError(Exception):
    """A model that is not in the package, input it cannot take, or a failed run."""


# How each element type crosses into wasi-nn: its tensor type and `array` type code
# (little-endian, as WebAssembly is).
_ELEMENTS = {
    models.ElementType.F32: (tensor.TensorType.FP32, "f"),
    models.ElementType.F64: (tensor.TensorType.FP64, "d"),
    models.ElementType.S32: (tensor.TensorType.I32, "i"),
    models.ElementType.S64: (tensor.TensorType.I64, "q"),
    models.ElementType.U8: (tensor.TensorType.U8, "B"),
}
_TYPE_CODES = {
    tensor.TensorType.FP32: "f",
    tensor.TensorType.FP64: "d",
    tensor.TensorType.I32: "i",
    tensor.TensorType.I64: "q",
    tensor.TensorType.U8: "B",
}


def names():
    """The models of the package, by their paths in it."""
    return list(models.names())


def model(name):
    """The package's model at `name` (its path in the zip, such as "model.onnx")."""
    return Model(name)


def _nn_error(what, err):
    detail = err.value
    try:
        return ModelError(f"{what}: {detail.code().name}: {detail.data()}")
    except Exception:
        return ModelError(f"{what}: {detail!r}")


def _flatten(value, depth=0):
    """A nested list of numbers as its values in row-major order and its shape."""
    if not isinstance(value, (list, tuple)):
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            raise ModelError(f"a model input must hold numbers, not {type(value).__name__}")
        return [value], []
    if not value:
        raise ModelError("a model input cannot be empty")
    flat, shape = [], None
    for item in value:
        values, inner = _flatten(item, depth + 1)
        if shape is None:
            shape = inner
        elif inner != shape:
            raise ModelError("the rows of a model input must all have the same length")
        flat.extend(values)
    return flat, [len(value)] + shape


def _nest(values, dims):
    if len(dims) <= 1:
        return list(values)
    step = len(values) // dims[0] if dims[0] else 0
    return [_nest(values[i * step : (i + 1) * step], dims[1:]) for i in range(dims[0])]


class Model:
    """One ONNX model of the package, ready to run."""

    def __init__(self, name):
        info = models.describe(name)
        if info is None:
            available = ", ".join(models.names()) or "none"
            raise ModelError(f"the deployment package has no model '{name}' (it has: {available})")
        try:
            self._graph = graph.load_by_name(name)
            self._context = self._graph.init_execution_context()
        except Err as e:
            raise _nn_error(f"loading {name}", e) from None
        self.name = name
        self.info = info
        self.inputs = [t.name for t in info.inputs]
        self.outputs = [t.name for t in info.outputs]
        labels = info.class_labels
        self.classes = list(labels.value) if labels is not None else None
        # skl2onnx's classifiers: `output_label` (one integer or string per row) and
        # `output_probability` ([rows, classes]); a regressor's prediction is its first.
        self._label = next(
            (
                o
                for o in info.outputs
                if o.element_type in (models.ElementType.S64, models.ElementType.STRING) and len(o.shape) == 1
            ),
            None,
        )
        self._probabilities = next(
            (
                o
                for o in info.outputs
                if o is not self._label
                and o.element_type in (models.ElementType.F32, models.ElementType.F64)
                and len(o.shape) == 2
            ),
            None,
        )

    def run(self, inputs):
        """Runs the model on `inputs` (input name -> nested list of numbers); returns every
        output by name as nested lists."""
        named = []
        for spec in self.info.inputs:
            if spec.name not in inputs:
                raise ModelError(f"the model's input '{spec.name}' is missing (it takes: {', '.join(self.inputs)})")
            if spec.element_type not in _ELEMENTS:
                raise ModelError(f"the model's input '{spec.name}' is of a type Lamina cannot pass in")
            ty, code = _ELEMENTS[spec.element_type]
            flat, dims = _flatten(inputs[spec.name])
            try:
                data = array.array(code, flat).tobytes()
            except (TypeError, OverflowError) as e:
                raise ModelError(f"the model's input '{spec.name}': {e}") from None
            named.append((spec.name, tensor.Tensor(dims, ty, data)))
        try:
            outputs = self._context.compute(named)
        except Err as e:
            raise _nn_error(f"running {self.name}", e) from None
        answer = {}
        for name, t in outputs:
            code = _TYPE_CODES.get(t.ty())
            if code is None:
                raise ModelError(f"the model's output '{name}' is of a type Lamina cannot read")
            values = array.array(code)
            values.frombytes(t.data())
            answer[name] = _nest(values.tolist(), list(t.dimensions()))
        return answer

    def _rows(self, rows):
        if len(self.info.inputs) != 1:
            raise ModelError(f"the model takes several inputs ({', '.join(self.inputs)}): call run() with each")
        flat_row = isinstance(rows, (list, tuple)) and rows and not isinstance(rows[0], (list, tuple))
        return {self.inputs[0]: [rows] if flat_row else rows}

    def predict(self, rows):
        """scikit-learn's predict: one prediction per row (the class label of a
        classifier, the value of a regressor)."""
        if self.classes is not None and self._label is not None:
            labels = self.run(self._rows(rows))[self._label.name]
            if self._label.element_type == models.ElementType.STRING:
                return [self.classes[int(i)] for i in labels]
            return labels
        first = self.run(self._rows(rows))[self.outputs[0]]
        if first and isinstance(first[0], list) and len(first[0]) == 1:
            return [row[0] for row in first]
        return first

    def predict_proba(self, rows):
        """scikit-learn's predict_proba: per row, the probability of each class, in the
        order of `classes`."""
        if self.classes is None or self._probabilities is None:
            raise ModelError(f"{self.name} is not a classifier with probabilities")
        return self.run(self._rows(rows))[self._probabilities.name]

"""The baseline for bench/model_http.py: an ONNX model served the way users deploy one
without Lamina, FastAPI + onnxruntime under uvicorn, written as the FastAPI and
onnxruntime docs show it.

It answers the same contract as Lamina's `onnx` runtime: `POST /` with
`{"input": [x1, ...]}` (one row) or `{"input": [[...], ...]}` (a batch) gives
`{"output": [y1, ...]}`, one prediction per row.

Usage: MODEL_PATH=model.onnx uvicorn fastapi_onnx:app --app-dir bench --workers 2
"""

import os

import numpy as np
import onnxruntime as ort
from fastapi import FastAPI
from pydantic import BaseModel

# Module level, so each uvicorn worker loads the model once, at import.
session = ort.InferenceSession(os.environ["MODEL_PATH"], providers=["CPUExecutionProvider"])
input_name = session.get_inputs()[0].name

app = FastAPI()


class PredictRequest(BaseModel):
    input: list[float] | list[list[float]]


class PredictResponse(BaseModel):
    output: list[float] | list[list[float]]


# A plain `def`: session.run blocks, so FastAPI runs it in its thread pool.
@app.post("/")
def predict(request: PredictRequest) -> PredictResponse:
    x = np.asarray(request.input, dtype=np.float32)
    if x.ndim == 1:
        x = x.reshape(1, -1)
    y = session.run(None, {input_name: x})[0]
    # A regressor's [N, 1] answers as N numbers, as `predict` and Lamina do.
    if y.ndim == 2 and y.shape[1] == 1:
        y = y[:, 0]
    return PredictResponse(output=y.tolist())

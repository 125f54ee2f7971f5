"""Model inference over HTTP, end to end: Lamina serving an ONNX model through a function
URL next to what users deploy instead, FastAPI + onnxruntime under uvicorn with 2 workers
(bench/fastapi_onnx.py). Both serve the same model to the same request.

uvicorn runs twice: as `pip install fastapi uvicorn` gives it (asyncio and h11, the
baseline the targets were set against), and as `pip install "fastapi[standard]"` gives it
(uvloop and httptools). The first answers every request after a connection's first about
40 ms late: h11 writes headers and body separately, and the sockets of `--workers` mode
keep Nagle's algorithm on, so the body waits for the client's delayed ACK. The second
does not, and is the stronger baseline.

The model is scikit-learn's LinearRegression on the diabetes data set, exported with
skl2onnx. Each server is checked against sklearn's prediction, warmed up for 2 s, then
loaded by wrk -t1 with `POST {"input": [<first diabetes row>]}`.
Targets from the issue: Lamina >= 20x FastAPI's throughput and <= 0.1x its p50.

A second Lamina function serves the same model from a Python handler (runtime
python3.14) that parses the request, calls `lamina.model("model.onnx").predict` and
writes the answer itself: the pre- and post-processing users add. Target: >= 5x
FastAPI's throughput.

Needs bench/requirements.txt in .venv, wrk (`apt-get install -y wrk`) and a release build
(`cargo build --release -p lamina`); it builds the onnx runtime itself.
Usage: .venv/bin/python bench/model_http.py [--duration 10s] [--connections 32] [--baseline-only]
"""

import argparse
import io
import json
import math
import os
import pathlib
import re
import shutil
import signal
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request
import zipfile

import boto3
from skl2onnx import convert_sklearn
from skl2onnx.common.data_types import FloatTensorType
from sklearn.datasets import load_diabetes
from sklearn.linear_model import LinearRegression

ROOT = pathlib.Path(__file__).resolve().parents[1]
TARGET = pathlib.Path(os.environ.get("CARGO_TARGET_DIR", ROOT / "target")) / "release"
FASTAPI_PORT = 4710
LAMINA_PORT = 4711
# (name, port, uvicorn's --loop and --http)
BASELINES = [
    ("FastAPI, uvicorn (asyncio, h11)", FASTAPI_PORT, "asyncio", "h11"),
    ("FastAPI, uvicorn[standard] (uvloop)", FASTAPI_PORT + 2, "uvloop", "httptools"),
]


PYTHON_HANDLER = b"""import base64
import json

import lamina

model = lamina.model("model.onnx")


def lambda_handler(event, context):
    body = event["body"]
    if event.get("isBase64Encoded"):
        body = base64.b64decode(body)
    rows = json.loads(body)["input"]
    if rows and not isinstance(rows[0], list):
        rows = [rows]
    return {
        "statusCode": 200,
        "headers": {"content-type": "application/json"},
        "body": json.dumps({"output": model.predict(rows)}),
    }
"""


def train(work):
    """The model file, its zip and one row with sklearn's prediction for it."""
    x, y = load_diabetes(return_X_y=True)
    model = LinearRegression().fit(x, y)
    onnx = convert_sklearn(model, initial_types=[("input", FloatTensorType([None, 10]))])
    path = work / "model.onnx"
    path.write_bytes(onnx.SerializeToString())
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w") as z:
        z.write(path, "model.onnx")
    python = io.BytesIO()
    with zipfile.ZipFile(python, "w") as z:
        z.write(path, "model.onnx")
        z.writestr("lambda_function.py", PYTHON_HANDLER)
    return path, buf.getvalue(), python.getvalue(), x[0].tolist(), float(model.predict(x[:1])[0])


def start(procs, args, log, **kw):
    # Its own process group, so uvicorn's workers go down with it.
    p = subprocess.Popen(args, stdout=log, stderr=subprocess.STDOUT, start_new_session=True, **kw)
    procs.append(p)
    return p


def stop(proc):
    for sig, wait in ((signal.SIGTERM, 10), (signal.SIGKILL, None)):
        try:
            os.killpg(proc.pid, sig)
            proc.wait(timeout=wait)
            return
        except ProcessLookupError:
            return
        except subprocess.TimeoutExpired:
            pass


def wait_until_answering(url, proc, log_path):
    for _ in range(300):
        if proc.poll() is not None:
            sys.exit(f"{url}: the server exited ({proc.returncode}):\n{log_path.read_text()[-2000:]}")
        try:
            urllib.request.urlopen(url, timeout=1).close()
            return
        except urllib.error.HTTPError:
            return  # any status will do
        except OSError:
            time.sleep(0.1)
    sys.exit(f"{url}: no answer after 30 s:\n{log_path.read_text()[-2000:]}")


def post(url, body):
    req = urllib.request.Request(url, body.encode(), {"Content-Type": "application/json"})
    try:
        with urllib.request.urlopen(req, timeout=10) as r:
            return r.status, r.read().decode()
    except urllib.error.HTTPError as e:
        return e.code, e.read().decode()


def check(name, url, body, expected):
    status, text = post(url, body)
    try:
        got = json.loads(text)["output"]
        ok = status == 200 and len(got) == 1 and math.isclose(got[0], expected, rel_tol=1e-4)
    except (ValueError, KeyError, TypeError):
        ok = False
    if not ok:
        sys.exit(f"{name}: expected {{\"output\": [{expected:.6f}]}}, got HTTP {status}: {text[:500]}")


def millis(s):
    m = re.fullmatch(r"([\d.]+)(us|ms|s|m)", s)
    return float(m.group(1)) * {"us": 1e-3, "ms": 1, "s": 1e3, "m": 6e4}[m.group(2)]


def wrk(url, lua, conns, duration):
    out = subprocess.run(
        ["wrk", "-t1", f"-c{conns}", f"-d{duration}", "--latency", "-s", lua, url],
        check=True, capture_output=True, text=True,
    ).stdout
    non2xx = re.search(r"Non-2xx or 3xx responses: (\d+)", out)
    errors = re.search(r"Socket errors: (.*)", out)
    return {
        "rps": float(re.search(r"Requests/sec:\s+([\d.]+)", out).group(1)),
        "p50": re.search(r"^\s+50%\s+(\S+)", out, re.M).group(1),
        "p99": re.search(r"^\s+99%\s+(\S+)", out, re.M).group(1),
        "non2xx": int(non2xx.group(1)) if non2xx else 0,
        "errors": errors.group(1) if errors else "",
    }


def bench(name, url, lua, args):
    # The warm-up keeps first connections and lazy loads out of the measured window.
    wrk(url, lua, args.connections, "2s")
    r = wrk(url, lua, args.connections, args.duration)
    print(f"{name:<40} {r['rps']:>10,.0f} req/s   p50 {r['p50']:>8}   p99 {r['p99']:>8}")
    if r["non2xx"] or r["errors"]:
        print(f"  non-2xx responses: {r['non2xx']}  socket errors: {r['errors'] or 'none'}")
    return r


def main():
    p = argparse.ArgumentParser()
    p.add_argument("--duration", default="10s")
    p.add_argument("--connections", type=int, default=32)
    p.add_argument("--baseline-only", action="store_true", help="measure FastAPI alone")
    args = p.parse_args()
    if not shutil.which("wrk"):
        sys.exit("wrk is not installed: apt-get install -y wrk")
    lamina = TARGET / "lamina"
    if not args.baseline_only and not lamina.exists():
        sys.exit(f"{lamina} is missing: run `cargo build --release -p lamina` first")
    # SIGTERM unwinds like Ctrl-C, through the cleanup below.
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(1))

    work = pathlib.Path(tempfile.mkdtemp(prefix="lamina-model-http-"))
    procs = []
    try:
        model_path, zipped, python_zipped, row, expected = train(work)
        body = json.dumps({"input": row})
        lua = work / "post.lua"
        lua.write_text(
            f"wrk.method = \"POST\"\nwrk.body = '{body}'\n"
            "wrk.headers[\"Content-Type\"] = \"application/json\"\n"
        )

        baselines = []
        for name, port, loop, http in BASELINES:
            log = work / f"fastapi-{port}.log"
            server = start(
                procs,
                [sys.executable, "-m", "uvicorn", "fastapi_onnx:app", "--app-dir", ROOT / "bench",
                 "--workers", "2", "--port", str(port), "--loop", loop, "--http", http,
                 "--log-level", "warning"],
                log.open("w"), env=dict(os.environ, MODEL_PATH=str(model_path)),
            )
            url = f"http://127.0.0.1:{port}/"
            wait_until_answering(url, server, log)
            check(name, url, body, expected)
            baselines.append((name, url))

        if not args.baseline_only:
            subprocess.run([ROOT / "guests/build.sh", "--runtimes-only"], check=True,
                           stdout=subprocess.DEVNULL)
            endpoint = f"http://127.0.0.1:{LAMINA_PORT}"
            lamina_log = work / "lamina.log"
            node = start(
                procs,
                [lamina, "up", "--listen", f"127.0.0.1:{LAMINA_PORT}", "--data-dir", work / "lamina"],
                lamina_log.open("w"),
                env=dict(os.environ, LAMINA_ROOT_ACCESS_KEY_ID="test", LAMINA_ROOT_SECRET_ACCESS_KEY="test"),
            )
            wait_until_answering(endpoint + "/", node, lamina_log)
            lam = boto3.client(
                "lambda", endpoint_url=endpoint, region_name="us-east-1",
                aws_access_key_id="test", aws_secret_access_key="test",
            )
            lam.create_function(
                FunctionName="diabetes", Runtime="onnx", Handler="model.onnx",
                Role="arn:aws:iam::000000000000:role/bench", Code={"ZipFile": zipped},
                MemorySize=256, Timeout=30,
            )
            lamina_url = lam.create_function_url_config(
                FunctionName="diabetes", AuthType="NONE")["FunctionUrl"]
            check("lamina", lamina_url, body, expected)
            lam.create_function(
                FunctionName="diabetes-python", Runtime="python3.14",
                Handler="lambda_function.lambda_handler",
                Role="arn:aws:iam::000000000000:role/bench", Code={"ZipFile": python_zipped},
                MemorySize=256, Timeout=30,
            )
            python_url = lam.create_function_url_config(
                FunctionName="diabetes-python", AuthType="NONE")["FunctionUrl"]
            check("lamina python", python_url, body, expected)

        mem = int(re.search(r"MemTotal:\s+(\d+)", pathlib.Path("/proc/meminfo").read_text()).group(1))
        print(f"machine: {os.cpu_count()} cores, {mem / 1048576:.0f} GiB; "
              f"wrk -t1 -c{args.connections} -d{args.duration}; LinearRegression on diabetes, one row")
        measured = [(name, bench(f"{name}, 2 workers", url, lua, args)) for name, url in baselines]
        if args.baseline_only:
            return
        ours = bench("Lamina function URL, runtime onnx", lamina_url, lua, args)
        for name, base in measured:
            throughput = ours["rps"] / base["rps"]
            p50 = millis(ours["p50"]) / millis(base["p50"])
            print(f"Lamina / {name}: throughput {throughput:.1f}x (target >= 20x: "
                  f"{'met' if throughput >= 20 else 'missed'}), p50 {p50:.3f}x "
                  f"(target <= 0.1x: {'met' if p50 <= 0.1 else 'missed'})")
        python = bench("Lamina function URL, Python handler", python_url, lua, args)
        for name, base in measured:
            throughput = python["rps"] / base["rps"]
            p50 = millis(python["p50"]) / millis(base["p50"])
            print(f"Lamina Python handler / {name}: throughput {throughput:.1f}x (target >= 5x: "
                  f"{'met' if throughput >= 5 else 'missed'}), p50 {p50:.3f}x")
    finally:
        # A second signal (a repeated Ctrl-C, or `timeout`, which signals the process and
        # then its group) must not cut the cleanup short.
        signal.signal(signal.SIGINT, signal.SIG_IGN)
        signal.signal(signal.SIGTERM, signal.SIG_IGN)
        for proc in procs:
            stop(proc)
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()

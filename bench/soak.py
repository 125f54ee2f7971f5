"""The soak: a fresh `lamina up` under a steady mix for a long time, checked for what
drifts. The mix, by request count: 9 warm sync Invokes of echo, 6 requests to the
diabetes ONNX model's function URL and 1 async Invoke of echo in every 16; and every 5 s
a burst of 8 invokes of a function whose environments scale to zero in between (cold
starts). The load first measures the mix's maximum on this machine (closed loop, 10 s),
then holds it open loop at 80 % of that (--load).

Every 10 s it samples the node's RSS and each class's p50/p99/errors (bench/src/bin/
soak-load.rs). Then it waits for the ledger and compares three counts: invocations the
load had answered, rows in the ledger, and the node's `lamina_invocations_total`.

Passes when: no errors; ledger rows equal invocations equal the metric; RSS flat (every
window after the first within --rss-tolerance of the second window's RSS); p99 flat for
echo and the model (every window after the first within --p99-tolerance of the median
window's p99), and below --p99-ceiling-ms when given. docs/benchmarks.md quotes the runs
at 80 %; the test command runs 60 s at 50 % with wide bounds (scripts/test.sh says which).

Usage: .venv/bin/python bench/soak.py [--seconds 600] [--profile release|debug]
       [--load 0.8] [--rss-tolerance 0.10] [--p99-tolerance 0.20] [--p99-ceiling-ms MS]
       [--json OUT] [--svg OUT]
"""

import argparse
import io
import json
import math
import os
import pathlib
import shutil
import signal
import sqlite3
import statistics
import subprocess
import sys
import tempfile
import time
import zipfile

import boto3

import local_node
import plot
from model_http import check, train, wait_until_answering

ROOT = pathlib.Path(__file__).resolve().parents[1]
IDLE_TIMEOUT_S = 2
STEADY = ("echo", "model")


def package(fixture):
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w") as z:
        z.write(ROOT / "guests/target/fixtures" / f"{fixture}.wasm", "function.wasm")
    return buf.getvalue()


def ledger_rows(db):
    with sqlite3.connect(f"file:{db}?mode=ro", uri=True, timeout=10) as c:
        return c.execute("SELECT count(*) FROM invocations").fetchone()[0]


def wait_for(what, predicate, timeout):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return True
        time.sleep(0.5)
    print(f"  {what}: not reached within {timeout} s")
    return False


def flat(values, reference, tolerance):
    return all(abs(v / reference - 1) <= tolerance for v in values) if reference else False


def evaluate(report, args, rows, metric, expected):
    windows = report["windows"]
    steady_windows = windows[1:] or windows
    failures = []
    if report["errors"]:
        failures.append(f"{report['errors']} errors: {report['first_errors']}")
    if not rows == metric == expected:
        failures.append(f"ledger rows {rows}, lamina_invocations_total {metric}, "
                        f"invocations answered {expected}: not equal")
    rss = [w["rss_mib"] for w in steady_windows]
    if not flat(rss, rss[0], args.rss_tolerance):
        failures.append(f"RSS not flat within {args.rss_tolerance:.0%}: "
                        f"{min(rss):.1f}..{max(rss):.1f} MiB against {rss[0]:.1f}")
    for cls in STEADY:
        p99 = [w["classes"][cls]["p99_us"] for w in steady_windows if cls in w["classes"]]
        median = statistics.median(p99) if p99 else 0
        if not flat(p99, median, args.p99_tolerance):
            failures.append(f"{cls} p99 not flat within {args.p99_tolerance:.0%} of the median "
                            f"{median / 1000:.2f} ms: {min(p99) / 1000:.2f}..{max(p99) / 1000:.2f} ms")
        if args.p99_ceiling_ms is not None and p99 and max(p99) > args.p99_ceiling_ms * 1000:
            failures.append(f"{cls} p99 reached {max(p99) / 1000:.2f} ms, over the ceiling of "
                            f"{args.p99_ceiling_ms:g} ms")
    return failures


def table(report):
    lines = ["| window end | RSS (MiB) | anon / file (MiB) | " + " | ".join(
        f"{c} served / p99 (ms)" for c in ("echo", "model", "async", "cold")) + " | errors |",
        "|---" * 8 + "|"]
    for w in report["windows"]:
        cells = []
        errors = 0
        for c in ("echo", "model", "async", "cold"):
            s = w["classes"].get(c)
            errors += s["errors"] if s else 0
            cells.append(f"{s['served']:,} / {s['p99_us'] / 1000:.2f}" if s else "-")
        lines.append(f"| {w['end_s']} s | {w['rss_mib']:.1f} | {w['rss_anon_mib']:.1f} / {w['rss_file_mib']:.1f} | "
                     + " | ".join(cells) + f" | {errors} |")
    return "\n".join(lines)


def svg(report, path):
    windows = report["windows"]
    series = [("node RSS (MiB)", [w["rss_mib"] for w in windows])]
    series += [(f"{cls} p99 (ms)", [w["classes"].get(cls, {}).get("p99_us", 0) / 1000 for w in windows])
               for cls in STEADY]
    plot.panels(path, [w["end_s"] for w in windows], series,
                title="Soak: RSS and p99 per 10 s window")


def main():
    p = argparse.ArgumentParser()
    p.add_argument("--seconds", type=int, default=600)
    p.add_argument("--load", type=float, default=0.8,
                   help="the soak's rate as a share of the mix's measured maximum")
    p.add_argument("--profile", choices=("release", "debug"), default="release")
    p.add_argument("--rss-tolerance", type=float, default=0.10)
    p.add_argument("--p99-tolerance", type=float, default=0.20,
                   help="inf: no flatness bound (with --p99-ceiling-ms, only a ceiling)")
    p.add_argument("--p99-ceiling-ms", type=float,
                   help="also fail when any window's p99 of echo or the model passes this")
    p.add_argument("--json", help="write the whole report here")
    p.add_argument("--svg", help="plot RSS and p99 over time here")
    args = p.parse_args()
    target = pathlib.Path(os.environ.get("CARGO_TARGET_DIR", ROOT / "target")) / args.profile
    for binary in ("lamina", "soak-load"):
        if not (target / binary).exists():
            flag = " --release" if args.profile == "release" else ""
            sys.exit(f"{target / binary} is missing: run `cargo build{flag} -p lamina -p bench`")
    subprocess.run([ROOT / "guests/build.sh"], check=True, stdout=subprocess.DEVNULL)

    work = pathlib.Path(tempfile.mkdtemp(prefix="lamina-soak-"))
    log_path = work / "lamina.log"
    node, endpoint = local_node.start(
        target / "lamina", ["--data-dir", work / "lamina", "--idle-timeout", IDLE_TIMEOUT_S],
        log_path.open("w"))
    try:
        if not endpoint:
            sys.exit(f"lamina up did not start:\n{log_path.read_text()[-2000:]}")
        wait_until_answering(endpoint + "/", node, log_path)
        lam = boto3.client("lambda", endpoint_url=endpoint, region_name="us-east-1",
                           aws_access_key_id="test", aws_secret_access_key="test")
        role = "arn:aws:iam::000000000000:role/soak"
        for name, fixture in (("echo", "echo"), ("cold", "hello")):
            lam.create_function(FunctionName=name, Runtime="wasm", Handler="function.wasm", Role=role,
                                Code={"ZipFile": package(fixture)}, MemorySize=128, Timeout=30)
        _, zipped, _, row, expected = train(work)
        lam.create_function(FunctionName="diabetes", Runtime="onnx", Handler="model.onnx", Role=role,
                            Code={"ZipFile": zipped}, MemorySize=256, Timeout=30)
        model_url = lam.create_function_url_config(FunctionName="diabetes", AuthType="NONE")["FunctionUrl"]
        model_body = json.dumps({"input": row})
        check("lamina", model_url, model_body, expected)
        invoked_by_setup = 1

        print(f"machine: {os.cpu_count()} cores; lamina {args.profile} build; {args.seconds} s soak")
        load = subprocess.run(
            [target / "soak-load", endpoint, model_url, model_body, str(node.pid), str(args.seconds),
             str(args.load)],
            stdout=subprocess.PIPE, text=True,
        )
        if load.returncode != 0:
            sys.exit(f"the load failed ({load.returncode}); node log:\n{log_path.read_text()[-3000:]}")
        report = json.loads(load.stdout)
        expected_rows = sum(report["served"].values()) + report["served_measuring_maxima"] + invoked_by_setup
        # Async events run after their 202; the ledger writer flushes in batches.
        db = work / "lamina" / "lamina.db"
        wait_for("every invocation in the ledger", lambda: ledger_rows(db) >= expected_rows, 120)
        metric = int(local_node.metric_total(endpoint, "lamina_invocations_total"))
    finally:
        node.send_signal(signal.SIGTERM)
        try:
            node.wait(timeout=60)
        except subprocess.TimeoutExpired:
            node.kill()
    rows = ledger_rows(db)
    report["ledger_rows"] = rows
    report["invocations_metric"] = metric
    report["invocations_answered"] = expected_rows

    print(f"maximum of the mix: {report['maximum_per_s']:,.0f}/s; "
          f"rates at {report['load_share']:.0%} of it: " + ", ".join(f"{c} {r:,.0f}/s" for c, r in report["rates_per_s"].items())
          + f", cold bursts of {report['cold_burst']['size']} every {report['cold_burst']['period_s']} s")
    print(table(report))
    print(f"invocations answered {expected_rows:,}; ledger rows {rows:,}; "
          f"lamina_invocations_total {metric:,}; errors {report['errors']}")
    if args.json:
        pathlib.Path(args.json).write_text(json.dumps(report, indent=1) + "\n")
    if args.svg:
        svg(report, args.svg)
    failures = evaluate(report, args, rows, metric, expected_rows)
    for f in failures:
        print(f"FAILED: {f}")
    if failures:
        print(f"node log: {log_path}")
        sys.exit(1)
    bounds = [f"RSS within {args.rss_tolerance:.0%}"]
    if math.isfinite(args.p99_tolerance):
        bounds.append(f"p99 within {args.p99_tolerance:.0%} of the median")
    if args.p99_ceiling_ms is not None:
        bounds.append(f"p99 under {args.p99_ceiling_ms:g} ms")
    print(f"soak passed: no errors, rows = invocations, {', '.join(bounds)}")
    shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()

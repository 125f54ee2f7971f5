"""The ratio table of bench/compare.sh, read from what each benchmark it ran printed.

Usage: python bench/compare.py OUTPUT_DIR DURATION CONNECTIONS
"""

import datetime
import os
import pathlib
import platform
import re
import sys


def rate(text, label):
    """req/s, p50 and p99 of the line that starts with `label`."""
    line = next(line for line in text.splitlines() if line.strip().startswith(label))
    found = re.search(r"([\d,.]+) req/s\s+p50\s+(\S+)\s+p99\s+(\S+)", line)
    return float(found[1].replace(",", "")), found[2], found[3]


def millis(s):
    found = re.fullmatch(r"([\d.]+)(us|ms|s)", s)
    return float(found[1]) * {"us": 1e-3, "ms": 1, "s": 1e3}[found[2]]


def cpu():
    for line in pathlib.Path("/proc/cpuinfo").read_text().splitlines():
        if line.startswith("model name"):
            return line.split(":", 1)[1].strip()
    return platform.machine()


def main():
    out = pathlib.Path(sys.argv[1])
    duration, conns = sys.argv[2], sys.argv[3]
    http = (out / "http.txt").read_text()
    model_http = (out / "model_http.txt").read_text()
    model = (out / "model.txt").read_text()
    scale = (out / "scale.txt").read_text()
    worker = (out / "worker.txt").read_text()

    rows = []
    hyper = rate(http, "bare hyper")
    echo = rate(http, "lamina Invoke echo")
    rows.append((
        "Warm Invoke of echo over HTTP, SigV4, billing and metrics on, vs bare hyper",
        f"{echo[0]:,.0f} vs {hyper[0]:,.0f} req/s", f"{echo[0] / hyper[0]:.2f}x", ">= 0.3x",
    ))
    url = rate(http, "lamina function URL")
    serve = rate(http, "wasmtime serve")
    rows.append((
        "Function URL, wasi:http hello, vs `wasmtime serve` 48.0.8, same component",
        f"{url[0]:,.0f} vs {serve[0]:,.0f} req/s; p99 {url[2]} vs {serve[2]}",
        f"{url[0] / serve[0]:.2f}x, p99 {'lower' if millis(url[2]) < millis(serve[2]) else 'higher'}",
        ">= 3x, p99 lower",
    ))
    lamina = rate(model_http, "Lamina function URL, runtime onnx")
    for label, target in (("FastAPI, uvicorn (asyncio, h11)", ">= 30x"), ("FastAPI, uvicorn[standard]", ">= 4x")):
        base = rate(model_http, label)
        rows.append((
            f"Diabetes model over HTTP vs FastAPI + onnxruntime, {label.split(', ', 1)[1]}, 2 workers",
            f"{lamina[0]:,.0f} vs {base[0]:,.0f} req/s", f"{lamina[0] / base[0]:.1f}x", target,
        ))
    for rows_per_request in (1, 100):
        found = re.search(
            rf"standard_scaler__mlp_regressor\s+{rows_per_request} row\(s\)/request: function\s+([\d.]+) us/row\s+"
            r"tract\s+([\d.]+) us/row\s+([\d.]+)x",
            model,
        )
        rows.append((
            f"MLP, {rows_per_request} {'row' if rows_per_request == 1 else 'rows'} per request, vs tract directly",
            f"{found[1]} vs {found[2]} us/row", f"{found[3]}x", "<= 1.5x",
        ))
    baseline = re.search(r"idle baseline RSS ([\d.]+) MB", scale)
    after = re.search(r"RSS after scale to zero: ([\d.]+) MB \(([+-][\d.]+) %", scale)
    rows.append((
        "RSS after 1,000 environments scale to zero, vs idle baseline",
        f"{after[1]} vs {baseline[1]} MB", f"{after[2]} %", "within +10 %",
    ))
    raw = re.search(r"raw instantiation, hello \(pooling, CoW\)\s+p50\s+([\d.]+) us", worker)
    rows.append(("Raw instantiation (pooling, CoW), p50", f"{raw[1]} us", "", "<= 5 us"))

    print(f"Measured {datetime.date.today()} on {os.cpu_count()} cores ({cpu()}), "
          f"`wrk -t1 -c{conns} -d{duration}`, by `bench/compare.sh {duration} {conns}`.\n")
    print("| Figure | Measured | Ratio | Target |")
    print("|---|---|---|---|")
    for figure, measured, ratio, target in rows:
        print(f"| {figure} | {measured} | {ratio} | {target} |")


if __name__ == "__main__":
    main()

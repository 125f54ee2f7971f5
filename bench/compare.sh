#!/usr/bin/env bash
# The invoke path against every baseline, in one run on this machine, as one Markdown
# table (what docs/benchmarks.md quotes):
#   warm Invoke of echo (SigV4, billing, metrics)   vs bare hyper                bench/http.sh
#   function URL, wasi:http hello                   vs wasmtime serve 48.0.8     bench/http.sh
#   diabetes model over a function URL              vs FastAPI + onnxruntime,    bench/model_http.py
#                                                      uvicorn (h11) and uvicorn[standard]
#   MLP in a function, 1 and 100 rows per request   vs tract directly            model-bench
#   RSS after 1,000 environments scale to zero      vs the idle node             bench/scale_to_zero.py
#   raw instantiation (pooling, CoW)                                             worker-bench
# It builds what it needs: the release binaries, the benchmark venv's packages, and
# wasmtime-cli 48.0.8 (`cargo install --locked`) when `wasmtime` is missing or another
# version; bench/http.sh, which runs first, builds the guests the others use. Every
# load is wrk on 127.0.0.1, bounded in time.
# Usage: bench/compare.sh [duration=10s] [connections=32]
set -euo pipefail
cd "$(dirname "$0")/.."
duration=${1:-10s}
conns=${2:-32}
target=${CARGO_TARGET_DIR:-$PWD/target}
command -v wrk >/dev/null || { echo "wrk is not installed: apt-get install -y wrk" >&2; exit 1; }
[[ -x .venv/bin/python ]] || python3 -m venv .venv
.venv/bin/pip install -q -r tests/requirements.txt -r bench/requirements.txt
if [[ "$(wasmtime --version 2>/dev/null)" != "wasmtime 48.0.8"* ]]; then
  cargo install wasmtime-cli --version 48.0.8 --locked
fi
cargo build --release -q --locked -p lamina -p bench

out=$(mktemp -d)
trap 'rm -rf "$out"' EXIT
LAMINA_BIN="$target/release/lamina" bench/http.sh "$duration" "$conns" | tee "$out/http.txt"
.venv/bin/python bench/model_http.py --duration "$duration" --connections "$conns" | tee "$out/model_http.txt"
"$target/release/model-bench" | tee "$out/model.txt"
.venv/bin/python bench/scale_to_zero.py | tee "$out/scale.txt"
"$target/release/worker-bench" | tee "$out/worker.txt"
echo
.venv/bin/python bench/compare.py "$out" "$duration" "$conns"

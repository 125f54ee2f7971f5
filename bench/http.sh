#!/usr/bin/env bash
# HTTP benchmarks, each next to its baseline in the same run:
#  1. warm sync Invoke of echo through Lamina vs a bare hyper server answering the same
#     bytes (target >= 0.7x its throughput);
#  2. a wasi:http hello component through a function URL vs `wasmtime serve`
#     (wasmtime-cli 48.0.8, one fresh instance per request; target >= 2x, lower p99),
#     when `wasmtime` is on PATH.
# Usage: bench/http.sh [duration=10s] [connections=32]
# LAMINA_BIN=path runs that lamina binary instead of building this checkout's, so two
# builds (before and after a change) can be measured one after the other in one run.
set -euo pipefail
cd "$(dirname "$0")/.."
duration=${1:-10s}
conns=${2:-32}
target=${CARGO_TARGET_DIR:-$PWD/target}
lamina_bin=${LAMINA_BIN:-$target/release/lamina}
# With LAMINA_BIN the checkout is not rebuilt: bare-hyper comes from an earlier build.
[[ -n ${LAMINA_BIN:-} && -x $target/release/bare-hyper ]] || cargo build --release -q -p lamina -p bench
guests/build.sh >/dev/null
work=$(mktemp -d)
pids=()
cleanup() { for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done; rm -rf "$work"; }
trap cleanup EXIT

"$target/release/bare-hyper" 127.0.0.1:4700 >/dev/null & pids+=($!)
LAMINA_ROOT_ACCESS_KEY_ID=test LAMINA_ROOT_SECRET_ACCESS_KEY=test \
  "$lamina_bin" up --listen 127.0.0.1:4701 --data-dir "$work/lamina" >"$work/lamina.log" 2>&1 & pids+=($!)
for _ in $(seq 100); do curl -s -o /dev/null http://127.0.0.1:4701/ && break; sleep 0.1; done
.venv/bin/python bench/setup.py http://127.0.0.1:4701 >"$work/setup.txt"
url=$(awk '$1=="url"{print $2}' "$work/setup.txt")
# wrk replays one signed request (a signature stays valid for 15 minutes).
{
  cat bench/invoke.lua
  awk '$1=="header"{ $1=""; sub(/^ /,""); split($0, kv, ": "); printf "wrk.headers[\"%s\"] = \"%s\"\n", kv[1], substr($0, length(kv[1]) + 3) }' "$work/setup.txt"
} >"$work/invoke-signed.lua"

run() { # name url [lua]
  local out
  out=$(wrk -t1 -c"$conns" -d"$duration" --latency ${3:+-s "$3"} "$2")
  printf '%-34s %10s req/s   p50 %8s   p99 %8s\n' "$1" \
    "$(awk '/Requests\/sec/{print $2}' <<<"$out")" \
    "$(awk '$1=="50%"{print $2}' <<<"$out")" \
    "$(awk '$1=="99%"{print $2}' <<<"$out")"
  grep -q "Non-2xx" <<<"$out" && { echo "  non-2xx responses:"; grep "Non-2xx" <<<"$out"; } || true
}

echo "machine: $(nproc) cores, $(awk '/MemTotal/{printf "%.0f GiB", $2/1048576}' /proc/meminfo); wrk -t1 -c$conns -d$duration"
# Warm both up so neither pays for first connections or cold starts in the window.
wrk -t1 -c"$conns" -d2s -s "$work/invoke-signed.lua" http://127.0.0.1:4701/2015-03-31/functions/echo/invocations >/dev/null
wrk -t1 -c"$conns" -d2s "$url" >/dev/null
run "bare hyper (baseline)" http://127.0.0.1:4700/ "$work/invoke-signed.lua"
run "lamina Invoke echo (warm, SigV4)" http://127.0.0.1:4701/2015-03-31/functions/echo/invocations "$work/invoke-signed.lua"
run "lamina function URL, wasi:http" "$url"
if command -v wasmtime >/dev/null; then
  wasmtime serve -S cli=y -O pooling-allocator --addr 127.0.0.1:4702 guests/target/fixtures/http-hello.wasm >/dev/null 2>&1 & pids+=($!)
  sleep 1
  wrk -t1 -c"$conns" -d2s http://127.0.0.1:4702/ >/dev/null
  run "wasmtime serve $(wasmtime --version | awk '{print $2}') (baseline)" http://127.0.0.1:4702/
else
  echo "wasmtime serve: not installed (cargo install wasmtime-cli --version 48.0.8 --locked)"
fi

#!/usr/bin/env bash
# Runs Lamina's whole test suite: lint, Rust tests (SQLite and PostgreSQL), the guest
# fixtures, fuzzing, a 60 s soak, and the Python compatibility suite with real boto3 and
# aws-cli.
#
# Installs what it needs and is missing: the wasm32-wasip2 Rust target, Debian's clang
# and wasi-libc (for the C guest), Prometheus, and a Python venv with the clients.
# PostgreSQL is used at LAMINA_TEST_POSTGRES (default postgres://postgres@127.0.0.1:5432/postgres);
# without it those tests skip loudly, unless CI=true.
set -euo pipefail
cd "$(dirname "$0")/.."
root=$PWD
step() { printf '\n=== %s\n' "$*"; }

step "prerequisites"
rustup target list --installed 2>/dev/null | grep -q '^wasm32-wasip2$' || rustup target add wasm32-wasip2
need_apt=()
command -v clang >/dev/null || need_apt+=(clang)
[ -f /usr/lib/wasm32-wasi/libc.a ] || need_apt+=(wasi-libc)
ls /usr/lib/llvm-14/lib/clang/14*/lib/wasi/libclang_rt.builtins-wasm32.a >/dev/null 2>&1 || need_apt+=(libclang-rt-14-dev-wasm32)
command -v prometheus >/dev/null || need_apt+=(prometheus)
command -v haproxy >/dev/null || need_apt+=(haproxy)
if [ ${#need_apt[@]} -gt 0 ]; then
  if [ "$(id -u)" = 0 ]; then
    DEBIAN_FRONTEND=noninteractive apt-get install -y -q "${need_apt[@]}" >/dev/null \
      || { apt-get update -q >/dev/null && DEBIAN_FRONTEND=noninteractive apt-get install -y -q "${need_apt[@]}" >/dev/null; }
  else
    echo "missing Debian packages: ${need_apt[*]} (install them, or run as root)" >&2
    exit 1
  fi
fi
venv="$root/.venv"
if [ ! -x "$venv/bin/python" ]; then
  python3 -m venv "$venv"
fi
"$venv/bin/pip" install -q -r tests/requirements.txt

step "guests"
guests/build.sh

step "format and lints"
cargo fmt --all -- --check
(cd guests && cargo fmt --all -- --check)
(cd fuzz && cargo fmt --all -- --check)
cargo clippy --workspace --all-targets --locked -- -D warnings
(cd guests && cargo clippy --release --all-targets --locked -- -D warnings)

step "rust tests"
cargo build --workspace --all-targets --locked
if command -v cargo-nextest >/dev/null; then
  cargo nextest run --workspace --locked --no-fail-fast
else
  cargo test --workspace --locked --no-fail-fast
fi

step "fuzzing (each target for ${FUZZ_SECONDS:-30} s)"
command -v cargo-fuzz >/dev/null || cargo install cargo-fuzz --locked --version 0.13.2
# cargo-fuzz passes nightly-only -Z flags to rustc; RUSTC_BOOTSTRAP lets the machine's one
# (stable) toolchain take them. The instrumented build keeps its own target directory.
fuzz_target_dir="${CARGO_TARGET_DIR:-$root/target}/fuzz"
for target in zip_intake sigv4_header function_ref invoke_payload url_event; do
  found=$(mktemp -d)
  (cd fuzz && RUSTC_BOOTSTRAP=1 CARGO_TARGET_DIR="$fuzz_target_dir" \
    cargo fuzz run --release --sanitizer none "$target" "$found" "corpus/$target" \
    -- -max_total_time="${FUZZ_SECONDS:-30}" -print_final_stats=0 2>&1 | tail -n 3)
  rm -rf "$found"
done

step "soak (60 s of mixed load on the debug build)"
# Exact checks: no errors, and invocations answered = ledger rows = lamina_invocations_total.
# Bounds wide enough for a shared 2-core machine, tight enough for a leak or a stall: RSS
# within 25 % over the run, no window's p99 above 1 s. The flatness figures (RSS within
# 10 %, p99 within 20 %) come from the 10-minute release run in docs/benchmarks.md.
"$venv/bin/python" bench/soak.py --seconds 60 --profile debug --load 0.5 \
  --rss-tolerance 0.25 --p99-tolerance inf --p99-ceiling-ms 1000

step "compatibility suite (boto3, aws-cli)"
export LAMINA_BIN="${CARGO_TARGET_DIR:-$root/target}/debug/lamina"
"$venv/bin/python" -m pytest -q tests/compat "$@"

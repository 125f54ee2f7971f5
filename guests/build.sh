#!/usr/bin/env bash
# Builds every guest the host runs and lays them out flat under stable names, so the
# host needs no knowledge of Cargo's output naming: the built-in runtimes in
# target/runtimes/ (where `lamina up` finds them), fixtures and examples in
# target/fixtures/.
# Safe to run repeatedly: unchanged inputs rebuild nothing and rewrite nothing.
#
# `build.sh --runtimes-only` builds just the built-in runtimes, which is all `lamina up`
# needs (no clang or wasi-libc, which only the C test fixture wants).
set -euo pipefail
runtimes_only=false
[[ ${1:-} == --runtimes-only ]] && runtimes_only=true

cd "$(dirname "${BASH_SOURCE[0]}")"
root=$PWD
# The build directory may live outside the checkout (CI keeps it warm between runs).
release=${CARGO_TARGET_DIR:-$root/target}/wasm32-wasip2/release
out=$root/target/fixtures
runtimes=$root/target/runtimes

# Rust handlers and the http fixture are cdylibs, named by Cargo after their crate.
rust_fixtures=(hello echo counter sleep spin compute memory-hog faults log-flood logger env-dump http-hello embedded-model)

rustup target list --installed 2>/dev/null | grep -q '^wasm32-wasip2$' \
    || rustup target add wasm32-wasip2 >&2

# Built-in runtimes: the `onnx` runtime serves Runtime onnx functions, the `python`
# runtime (CPython made a component by componentize-py) serves Runtime python3.14.
install_runtimes() {
    mkdir -p "$runtimes"
    local src=$release/runtime_onnx.wasm
    if [[ $(wasm_kind "$src") != component ]]; then
        echo "build.sh: runtime onnx: expected a component in $src" >&2
        exit 1
    fi
    if ! cmp -s "$src" "$runtimes/onnx.wasm"; then
        cp "$src" "$runtimes/onnx.wasm.tmp"
        mv "$runtimes/onnx.wasm.tmp" "$runtimes/onnx.wasm"
    fi
    build_python_runtime
}

# componentize-py's version fixes the CPython inside the runtime (0.25.1: CPython 3.14).
componentize_py_version=0.25.1
build_python_runtime() {
    local tools=${CARGO_TARGET_DIR:-$root/target}/componentize-py-$componentize_py_version
    local src=$root/runtimes/python dst=$runtimes/python.wasm stamp
    # Rebuilt only when its sources, the handler world or the tool change.
    stamp=$(cat "$src"/*.py "$root"/../wit/*.wit "$root/build.sh" | sha256sum | cut -d' ' -f1)
    if [[ -f $dst && $(cat "$dst.inputs" 2>/dev/null) == "$stamp" ]]; then
        return
    fi
    if [[ ! -x $tools/bin/componentize-py ]]; then
        python3 -m venv "$tools"
        "$tools/bin/pip" install -q "componentize-py==$componentize_py_version"
    fi
    (cd "$src" && PYTHONDONTWRITEBYTECODE=1 "$tools/bin/componentize-py" \
        -d "$root/../wit" -w python-runtime componentize lamina_runtime -o "$dst.tmp" >/dev/null)
    mv "$dst.tmp" "$dst"
    echo "$stamp" > "$dst.inputs"
}

# Prints the binary format version: components and core modules share the magic
# bytes and differ in the four that follow (layer 1 vs core version 1).
wasm_kind() {
    case $(od -An -tx1 -N8 "$1" | tr -d ' \n') in
        0061736d0d000100) echo component ;;
        0061736d01000000) echo core ;;
        *) echo unknown ;;
    esac
}

if $runtimes_only; then
    cargo build --release --locked --quiet -p runtime-onnx
    install_runtimes
    echo "guests: runtimes onnx and python in ${runtimes#"$root"/} ($(($(stat -c %s "$runtimes/onnx.wasm") / 1024)) KiB, $(($(stat -c %s "$runtimes/python.wasm") / 1024)) KiB)"
    exit 0
fi

# --locked: the fixtures must be the same bytes on every machine that runs the tests.
cargo build --release --workspace --locked --quiet

# The C fixture: Debian's clang with wasi-libc, which that clang finds on its own
# (headers and libraries under /usr/{include,lib}/wasm32-wasi). WASI_SYSROOT points
# it at another wasi-libc.
c_src=$root/fixtures/c-command/main.c
c_out=$root/target/c-command/c-command.wasm
wasm_linker() {
    local candidate
    for candidate in wasm-ld-14 wasm-ld; do
        if command -v "$candidate" >/dev/null; then
            command -v "$candidate"
            return
        fi
    done
    # Debian's lld is not always installed, but every Rust toolchain ships wasm-ld
    # (rust-lld behind a small wrapper) for its own wasm targets.
    local host
    host=$(rustc -vV | sed -n 's/^host: //p')
    candidate=$(rustc --print sysroot)/lib/rustlib/$host/bin/gcc-ld/wasm-ld
    if [[ -x $candidate ]]; then
        echo "$candidate"
        return
    fi
    echo "build.sh: no wasm-ld found (install lld or the Rust toolchain)" >&2
    return 1
}
# Rebuilding when this script changes picks up new flags.
if [[ ! -f $c_out || $c_src -nt $c_out || ${BASH_SOURCE[0]} -nt $c_out ]]; then
    mkdir -p "$(dirname "$c_out")"
    sysroot=()
    if [[ -n ${WASI_SYSROOT:-} ]]; then
        sysroot=(--sysroot="$WASI_SYSROOT")
    fi
    clang --target=wasm32-wasi "${sysroot[@]}" -fuse-ld="$(wasm_linker)" \
        -O2 -Wall -Wextra -Werror -Wl,--strip-all \
        -o "$c_out.tmp" "$c_src"
    mv "$c_out.tmp" "$c_out"
fi

mkdir -p "$out"
components=0
cores=0
bytes=0
# Copies only changed artifacts, so their timestamps mean something to whoever caches on them.
install_fixture() {
    local name=$1 src=$2 want=$3 kind dst=$out/$1.wasm
    if [[ ! -f $src ]]; then
        echo "build.sh: $name: missing $src" >&2
        exit 1
    fi
    kind=$(wasm_kind "$src")
    if [[ $kind != "$want" ]]; then
        echo "build.sh: $name: expected a $want, found $kind in $src" >&2
        exit 1
    fi
    if ! cmp -s "$src" "$dst"; then
        cp "$src" "$dst.tmp"
        mv "$dst.tmp" "$dst"
    fi
    if [[ $kind == component ]]; then
        components=$((components + 1))
    else
        cores=$((cores + 1))
    fi
    bytes=$((bytes + $(stat -c %s "$dst")))
}

for name in "${rust_fixtures[@]}"; do
    install_fixture "$name" "$release/fixture_${name//-/_}.wasm" component
done
install_fixture command "$release/command.wasm" component
install_fixture c-command "$c_out" core
install_fixture example-top-class "$release/example_top_class.wasm" component

install_runtimes

echo "guests: $((components + cores)) fixtures in ${out#"$root"/} ($components components, $cores core module), $((bytes / 1024)) KiB; runtimes onnx and python in ${runtimes#"$root"/} ($(($(stat -c %s "$runtimes/onnx.wasm") / 1024)) KiB, $(($(stat -c %s "$runtimes/python.wasm") / 1024)) KiB)"

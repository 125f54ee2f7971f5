//! What one deploy may cost: code beyond the limits is refused before compiling, and a
//! large compile hands its memory back once it is done.

use std::time::Instant;

use protocol::{CodePackage, ExecutionBackend, PrepareError, Runtime};

use crate::{Harness, rss_bytes};

/// A WASI command of `functions` functions (function 0 is `_start`), each `ops` rounds
/// of `x = x + 1` on a local: valid code that costs the compiler in proportion to it.
fn large_module(functions: u32, ops: usize) -> Vec<u8> {
    let body = " local.get 0 i32.const 1 i32.add local.set 0".repeat(ops);
    let mut text = format!("(module (func (export \"_start\") (local i32){body})");
    for _ in 1..functions {
        text.push_str(&format!("(func (local i32){body})"));
    }
    text.push(')');
    wat::parse_str(text).expect("generated text is valid")
}

fn package(h: &Harness, name: &str, wasm: &[u8]) -> CodePackage {
    let root = h.dir.path().join("packages").join(name);
    std::fs::create_dir_all(&root).unwrap();
    std::fs::write(root.join("function.wasm"), wasm).unwrap();
    CodePackage {
        digest: format!("{name}-digest"),
        root,
        runtime: Runtime::Wasm,
        handler: "function.wasm".into(),
        opt_root: None,
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn code_beyond_the_limits_is_refused_before_compiling() {
    let h = Harness::with_config(|c| {
        c.code_limits.max_functions = 1_000;
        c.code_limits.max_code_section_bytes = 64 << 10;
    });
    let many = package(&h, "many", &large_module(1_001, 1));
    let started = Instant::now();
    match h.worker.prepare(&many).await {
        Err(PrepareError::InvalidCode(m)) => {
            assert!(m.contains("1001 functions"), "{m}");
            assert!(m.contains("at most 1000"), "{m}");
        }
        other => panic!("{other:?}"),
    }
    let big = package(&h, "big", &large_module(100, 200));
    match h.worker.prepare(&big).await {
        Err(PrepareError::InvalidCode(m)) => assert!(m.contains("at most 65536 bytes"), "{m}"),
        other => panic!("{other:?}"),
    }
    assert!(
        started.elapsed().as_millis() < 1_000,
        "refusing took a compile"
    );
    let fits = package(&h, "fits", &large_module(1_000, 1));
    h.worker.prepare(&fits).await.unwrap();
}

/// The process's peak resident set (VmHWM) in bytes.
fn peak_rss_bytes() -> u64 {
    let status = std::fs::read_to_string("/proc/self/status").unwrap();
    let line = status.lines().find(|l| l.starts_with("VmHWM:")).unwrap();
    let kb: u64 = line.split_whitespace().nth(1).unwrap().parse().unwrap();
    kb << 10
}

const CHILD: &str = "LAMINA_COMPILE_MEMORY_CHILD";

/// Other tests of this binary allocate concurrently, so the measurement runs alone in
/// a child process: this binary again, filtered to [`compile_memory_child`].
#[test]
fn a_large_compile_hands_its_memory_back() {
    if std::env::var_os(CHILD).is_some() {
        return;
    }
    let out = std::process::Command::new(std::env::current_exe().unwrap())
        .args([
            "compile::compile_memory_child",
            "--exact",
            "--nocapture",
            "--test-threads=1",
        ])
        .env(CHILD, "1")
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    eprintln!("{stdout}{stderr}");
    assert!(out.status.success(), "the measuring child failed");
    assert!(stdout.contains("1 passed"), "the child ran no test");
}

#[test]
fn compile_memory_child() {
    if std::env::var_os(CHILD).is_none() {
        return;
    }
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .unwrap();
    runtime.block_on(async {
        let h = Harness::new();
        // Warm the engine and the runtime's threads so the baseline includes them.
        let small = package(&h, "small", &large_module(10, 10));
        h.worker.prepare(&small).await.unwrap();
        let baseline = rss_bytes();

        // 40,000 functions and 17 MB of code: within the default limits, and large
        // enough that a compile which kept its memory would hold hundreds of MB.
        let wasm = large_module(40_000, 60);
        let code = package(&h, "large", &wasm);
        drop(wasm);
        let started = Instant::now();
        h.worker.prepare(&code).await.unwrap();
        let took = started.elapsed();
        let prepared = rss_bytes();
        let peak = peak_rss_bytes();
        drop(h);
        let after = rss_bytes();
        println!(
            "compile of 40,000 functions: {:.2} s; RSS baseline {} MB, peak {} MB, prepared {} MB, after drop {} MB",
            took.as_secs_f64(),
            baseline >> 20,
            peak >> 20,
            prepared >> 20,
            after >> 20
        );
        assert!(
            peak > baseline + (50 << 20),
            "the compile was too small to measure anything (peak {} MB)",
            peak >> 20
        );
        assert!(
            prepared < baseline + (96 << 20),
            "the prepared code holds {} MB over the baseline of {} MB",
            (prepared - baseline) >> 20,
            baseline >> 20
        );
        assert!(
            after < baseline + (64 << 20),
            "{} MB were not returned after the worker was dropped",
            (after.saturating_sub(baseline)) >> 20
        );
    });
}

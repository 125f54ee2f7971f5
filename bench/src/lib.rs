//! Shared helpers of the benchmark binaries: percentiles and fixture packages.

use std::path::{Path, PathBuf};
use std::time::Duration;

/// p50, p99 and mean of a sample, in microseconds.
#[derive(Debug, Clone, Copy)]
pub struct Summary {
    pub p50_us: f64,
    pub p99_us: f64,
    pub mean_us: f64,
    pub n: usize,
}

pub fn summarize(mut samples: Vec<Duration>) -> Summary {
    samples.sort_unstable();
    let n = samples.len().max(1);
    let at = |q: f64| samples[((n as f64 - 1.0) * q).round() as usize].as_secs_f64() * 1e6;
    let mean = samples.iter().map(Duration::as_secs_f64).sum::<f64>() / n as f64 * 1e6;
    Summary {
        p50_us: at(0.50),
        p99_us: at(0.99),
        mean_us: mean,
        n: samples.len(),
    }
}

impl std::fmt::Display for Summary {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "p50 {:>9.2} us   p99 {:>9.2} us   mean {:>9.2} us   (n={})",
            self.p50_us, self.p99_us, self.mean_us, self.n
        )
    }
}

pub fn repo_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("..")
}

/// A package directory holding one guest fixture as `function.wasm`.
pub fn fixture_package(dir: &Path, fixture: &str) -> anyhow::Result<protocol::CodePackage> {
    let src = repo_root()
        .join("guests/target/fixtures")
        .join(format!("{fixture}.wasm"));
    anyhow::ensure!(
        src.exists(),
        "{} missing: run guests/build.sh",
        src.display()
    );
    let root = dir.join(fixture);
    std::fs::create_dir_all(&root)?;
    std::fs::copy(&src, root.join("function.wasm"))?;
    Ok(protocol::CodePackage {
        digest: format!("bench-{fixture}"),
        root,
        runtime: protocol::Runtime::Wasm,
        handler: "function.wasm".into(),
    })
}

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

/// Measures as `lamina` runs: library errors capture no backtrace even under
/// `RUST_BACKTRACE` (see `keep_backtraces_for_panics_only` in the lamina binary). Call it
/// first in `main`, before any thread starts.
#[allow(unsafe_code)]
pub fn library_backtraces_off() {
    if std::env::var_os("RUST_LIB_BACKTRACE").is_none() {
        // SAFETY: the caller runs this before any other thread exists.
        unsafe { std::env::set_var("RUST_LIB_BACKTRACE", "0") };
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
        opt_root: None,
    })
}

/// SigV4 headers for a Lambda API request, signed with `AWS_ACCESS_KEY_ID` and
/// `AWS_SECRET_ACCESS_KEY` (default `test`/`test`, the key the benchmarks give the node).
pub fn sigv4_headers(
    method: &str,
    uri: &str,
    extra: &[(&str, &str)],
    body: &[u8],
) -> anyhow::Result<Vec<(String, String)>> {
    use aws_sigv4::http_request::{SignableBody, SignableRequest, SigningSettings, sign};
    let key = std::env::var("AWS_ACCESS_KEY_ID").unwrap_or_else(|_| "test".into());
    let secret = std::env::var("AWS_SECRET_ACCESS_KEY").unwrap_or_else(|_| "test".into());
    let parsed: hyper::Uri = uri.parse()?;
    let host = parsed
        .authority()
        .ok_or_else(|| anyhow::anyhow!("{uri} has no host"))?
        .to_string();
    let identity = aws_credential_types::Credentials::new(key, secret, None, None, "bench").into();
    let params = aws_sigv4::sign::v4::SigningParams::builder()
        .identity(&identity)
        .region("us-east-1")
        .name("lambda")
        .time(std::time::SystemTime::now())
        .settings(SigningSettings::default())
        .build()?
        .into();
    let mut headers: Vec<(&str, &str)> = vec![("host", host.as_str())];
    headers.extend_from_slice(extra);
    let signable = SignableRequest::new(
        method,
        uri,
        headers.iter().copied(),
        SignableBody::Bytes(body),
    )?;
    let (instructions, _) = sign(signable, &params)?.into_parts();
    let mut out: Vec<(String, String)> = headers
        .iter()
        .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
        .collect();
    out.extend(
        instructions
            .headers()
            .map(|(k, v)| (k.to_owned(), v.to_owned())),
    );
    Ok(out)
}

//! The worker through its public API: every guest kind, every limit and fault, warm
//! reuse, reset after a crash, log format, and host health after many faults.
//!
//! Fixtures come from the guests workspace (`guests/build.sh` builds them into
//! `guests/target/fixtures/`).

// clippy.toml allows unwrap inside #[test] functions; the harness helpers are test code too.
#![allow(clippy::unwrap_used, clippy::new_without_default)]

mod compile;
mod faults;
mod kinds;
mod lifecycle;
mod models;
mod snapstart;

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use protocol::{
    CodePackage, ExecutionBackend, ExecutionEnvironment, FunctionSpec, InitializationType,
    InvocationInput, InvocationResult, Payload, Response, Runtime,
};
use worker::{Worker, WorkerConfig};

pub fn fixture(name: &str) -> PathBuf {
    let path = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../guests/target/fixtures")
        .join(format!("{name}.wasm"));
    assert!(
        path.exists(),
        "fixture {} is missing: run guests/build.sh first",
        path.display()
    );
    path
}

/// A worker on a private data directory, and packages made from fixtures.
pub struct Harness {
    pub worker: Worker,
    pub dir: tempfile::TempDir,
}

impl Default for Harness {
    fn default() -> Self {
        Self::with_config(|_| {})
    }
}

impl Harness {
    pub fn new() -> Self {
        Self::default()
    }

    pub fn with_config(tweak: impl FnOnce(&mut WorkerConfig)) -> Self {
        let dir = tempfile::tempdir().unwrap();
        let mut config = WorkerConfig::new(dir.path().join("data"));
        // Small pools keep the tests' address-space reservation modest.
        config.pool.total_component_instances = 200;
        config.pool.total_core_instances = 1000;
        config.pool.total_memories = 400;
        config.pool.total_tables = 1000;
        config.pool.total_stacks = 200;
        config.runtimes_dir =
            Some(Path::new(env!("CARGO_MANIFEST_DIR")).join("../guests/target/runtimes"));
        tweak(&mut config);
        let worker = Worker::new(config).unwrap();
        Harness { worker, dir }
    }

    /// Unpacks a fixture as a package's `function.wasm` (plus a data file).
    pub fn package(&self, fixture_name: &str) -> CodePackage {
        let root = self.dir.path().join("packages").join(fixture_name);
        std::fs::create_dir_all(&root).unwrap();
        std::fs::copy(fixture(fixture_name), root.join("function.wasm")).unwrap();
        std::fs::write(root.join("data.txt"), "package data").unwrap();
        CodePackage {
            digest: format!("{fixture_name}-digest"),
            root,
            runtime: Runtime::Wasm,
            handler: "function.wasm".into(),
            opt_root: None,
        }
    }

    pub fn spec(&self, fixture_name: &str, memory_mb: u32, timeout: Duration) -> Arc<FunctionSpec> {
        Arc::new(FunctionSpec {
            account_id: "123456789012".into(),
            region: "us-east-1".into(),
            function_name: fixture_name.into(),
            version: "$LATEST".into(),
            function_arn: format!(
                "arn:aws:lambda:us-east-1:123456789012:function:{fixture_name}:$LATEST"
            ),
            memory_mb,
            timeout,
            ephemeral_storage_mb: 512,
            environment: vec![("GREETING".into(), "hi".into())],
            code: self.package(fixture_name),
            allowed_hosts: vec![],
            snap_start: false,
        })
    }

    /// Prepares the fixture and creates one on-demand environment of it.
    pub async fn environment(
        &self,
        fixture_name: &str,
        memory_mb: u32,
        timeout: Duration,
    ) -> Box<dyn ExecutionEnvironment> {
        let spec = self.spec(fixture_name, memory_mb, timeout);
        self.worker.prepare(&spec.code).await.unwrap();
        self.worker
            .create_environment(spec, InitializationType::OnDemand)
            .await
            .unwrap()
    }
}

pub fn event(json: &str) -> InvocationInput {
    InvocationInput {
        request_id: uuid::Uuid::new_v4().to_string(),
        payload: Payload::Event(Bytes::from(json.to_owned())),
        invoked_arn: "arn:aws:lambda:us-east-1:123456789012:function:f".into(),
        client_context: None,
    }
}

pub fn body(result: &InvocationResult) -> serde_json::Value {
    match &result.response {
        Response::Event(b) => serde_json::from_slice(b).unwrap_or_else(|e| {
            panic!("response is not JSON ({e}): {}", String::from_utf8_lossy(b))
        }),
        Response::Http(r) => panic!("unexpected HTTP response {r:?}"),
    }
}

pub fn error_type(result: &InvocationResult) -> String {
    result
        .error
        .as_ref()
        .map(|e| e.error_type.clone())
        .unwrap_or_default()
}

/// Resident set size of this process in bytes.
pub fn rss_bytes() -> u64 {
    let statm = std::fs::read_to_string("/proc/self/statm").unwrap();
    let pages: u64 = statm.split_whitespace().nth(1).unwrap().parse().unwrap();
    pages * 4096
}

//! SnapStart for Wasm: a published version's INIT runs once, and the initialised
//! instance is captured with wasmtime's Wizer as a new component whose data segments hold
//! the state INIT built. Environments of the version instantiate that component and do
//! not run INIT; with copy-on-write images a restore maps the state instead of rebuilding
//! it.
//!
//! What a snapshot captures is guest memory and globals. What the host holds for a guest
//! (open files, streams, the `/tmp` of the environment that ran INIT, wasi-nn graphs) is
//! not in it: as on Lambda, INIT of a SnapStart function must not leave such state behind
//! for the handler. A Python handler that still holds a host resource when INIT ends is
//! not snapshotted (its handle would dangle in every restore), nor is a package with
//! models loaded through wasi-nn. The Python runtime imports the handler's modules through
//! `lamina:function/task-files` during such an INIT, so its C library opens no file.
//!
//! Snapshots are keyed by everything INIT can observe (code, handler, layers, environment) and
//! kept as precompiled artifacts, so a restarted node reuses them.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Instant;

use protocol::{FunctionError, InitializationType, SharedSpec, SnapshotError, SnapshotInfo};
use sha2::{Digest, Sha256};
use wasmtime::component::Val;

use crate::Shared;
use crate::capture::Capture;
use crate::code::{self, CodeCache, Prepared};
use crate::failure::Failure;
use crate::host::{self, GuestIo, GuestLimiter, GuestModels, guarded_store};

/// What compiling the instrumented guest may add to INIT's bound when a snapshot is taken
/// (the Python runtime's component takes seconds).
const SNAPSHOT_COMPILE_ALLOWANCE: std::time::Duration = std::time::Duration::from_secs(60);

/// The handler world's `init`, called as Wizer's initialisation function.
const INIT_CALL: &str = "lamina:function/handler.init@0.1.0()";

/// What is known about one snapshot key.
enum Entry {
    Ready(Arc<Prepared>),
    /// Taking it failed; not retried until the node restarts.
    Failed(SnapshotError),
}

pub(crate) struct Snapshots {
    entries: Mutex<HashMap<String, Entry>>,
    /// One snapshot is taken at a time: each runs a guest's INIT and compiles a binary.
    taking: tokio::sync::Mutex<()>,
}

/// Tells the Python runtime its INIT ends in a snapshot (it then keeps INIT from opening
/// files); set only in the instance the snapshot is taken from, never in the
/// environments that restore it or run INIT because no snapshot could be taken.
const SNAPSHOT_INIT_VARIABLE: &str = "LAMINA_SNAPSHOT_INIT";

/// Everything INIT of `spec` can observe, hashed, with the guest binary it runs (a
/// built-in runtime is not in the package: a new runtime needs a new snapshot).
fn snapshot_key(spec: &SharedSpec, original: &Prepared) -> String {
    let mut h = Sha256::new();
    for part in [&spec.code.digest, &spec.code.handler, &original.source] {
        h.update(part.as_bytes());
        h.update([0]);
    }
    for (k, v) in spec.guest_environment(InitializationType::SnapStart) {
        h.update(k.as_bytes());
        h.update([b'=']);
        h.update(v.as_bytes());
        h.update([0]);
    }
    h.update(spec.memory_mb.to_le_bytes());
    // The layers under /opt, named by the digest of their ordered list.
    if let Some(opt) = spec.code.opt_root.as_ref().and_then(|p| p.file_name()) {
        h.update(opt.as_encoded_bytes());
    }
    hex::encode(h.finalize())
}

impl Snapshots {
    pub(crate) fn new() -> Self {
        Snapshots {
            entries: Mutex::default(),
            taking: tokio::sync::Mutex::new(()),
        }
    }

    fn lookup(&self, key: &str) -> Option<Result<Arc<Prepared>, SnapshotError>> {
        match self
            .entries
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .get(key)?
        {
            Entry::Ready(p) => Some(Ok(p.clone())),
            Entry::Failed(e) => Some(Err(e.clone())),
        }
    }

    fn remember(&self, key: String, entry: Entry) {
        self.entries
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .insert(key, entry);
    }

    /// The snapshot of `spec`, taken now if no earlier run of this node took it.
    /// `original` is the prepared guest the snapshot is taken from.
    pub(crate) async fn get_or_take(
        &self,
        shared: &Arc<Shared>,
        code: &CodeCache,
        spec: &SharedSpec,
        original: &Prepared,
    ) -> Result<(Arc<Prepared>, Option<SnapshotInfo>), SnapshotError> {
        let key = snapshot_key(spec, original);
        if let Some(found) = self.lookup(&key) {
            return found.map(|p| (p, None));
        }
        let _one_at_a_time = self.taking.lock().await;
        if let Some(found) = self.lookup(&key) {
            return found.map(|p| (p, None));
        }
        if let Some(p) = code.load_snapshot(&key).await {
            self.remember(key, Entry::Ready(p.clone()));
            return Ok((p, None));
        }
        match take(shared, code, spec, original, &key).await {
            Ok((p, info)) => {
                self.remember(key, Entry::Ready(p.clone()));
                Ok((p, Some(info)))
            }
            Err(e) => {
                tracing::warn!(
                    function = %spec.function_arn,
                    error = %e,
                    "SnapStart: no snapshot; environments of this version run INIT"
                );
                self.remember(key, Entry::Failed(e.clone()));
                Err(e)
            }
        }
    }
}

/// Runs INIT in an instrumented instance, captures it, and compiles the result.
async fn take(
    shared: &Arc<Shared>,
    code: &CodeCache,
    spec: &SharedSpec,
    original: &Prepared,
    key: &str,
) -> Result<(Arc<Prepared>, SnapshotInfo), SnapshotError> {
    let platform =
        |what: &str, e: &dyn std::fmt::Display| SnapshotError::Platform(format!("{what}: {e}"));
    let path = match shared.config.runtime_path(spec.code.runtime) {
        Some(runtime) => runtime,
        None => code::handler_path(&spec.code.root, &spec.code.handler)
            .map_err(|e| platform("locating the handler", &e))?,
    };
    let wasm = tokio::fs::read(&path)
        .await
        .map_err(|e| platform("reading the handler", &e))?;
    let tmp = shared
        .scratch
        .take()
        .map_err(|e| platform("creating /tmp", &e))?;
    let mut env = spec.guest_environment(InitializationType::SnapStart);
    if spec.code.runtime == protocol::Runtime::Python314 {
        env.push((SNAPSHOT_INIT_VARIABLE.into(), "1".into()));
    }
    let logs = Capture::new(shared.config.max_log_bytes);
    let no_models = Arc::default();
    let state = host::component_state(
        GuestIo {
            env: &env,
            code: &spec.code,
            tmp_dir: tmp.path(),
            stdin: None,
            stdout: logs.clone(),
            stderr: logs.clone(),
        },
        GuestLimiter::new((spec.memory_mb as usize) << 20, &shared.config),
        &spec.allowed_hosts,
        GuestModels {
            cache: &shared.models,
            table: &no_models,
        },
    )
    .map_err(|e| platform("building the guest context", &e))?;
    let mut store = guarded_store(&shared.engine, state);
    // Compiling the instrumented guest happens within this bound too: INIT that ends in
    // a snapshot may take longer than an environment's, as on Lambda.
    let timeout = shared.config.init_timeout + SNAPSHOT_COMPILE_ALLOWANCE;
    store.data_mut().deadline = Instant::now() + timeout;

    let mut wizer = wasmtime_wizer::Wizer::new();
    // The snapshot must still be a handler-world component: `init` stays exported.
    wizer.init_func(INIT_CALL).keep_init_func(true);
    let linker = code.component_linker();
    let started = Instant::now();
    let run = wizer.run_component(&mut store, &wasm, async |store, component| {
        linker.instantiate_async(store, component).await
    });
    let (snapshot, results) = match tokio::time::timeout(timeout, run).await {
        Err(_) => {
            return Err(SnapshotError::Init(FunctionError::timeout(
                "snapshot", timeout,
            )));
        }
        Ok(Err(e)) => {
            return Err(classify(
                &e,
                &logs,
                spec.memory_mb,
                store.data().limiter.refused,
            ));
        }
        Ok(Ok(done)) => done,
    };
    let init_duration = started.elapsed();
    if let Some(Val::Result(Err(Some(error)))) = results.first() {
        return Err(SnapshotError::Init(guest_error(error)));
    }
    // A Wasm guest's own code decides what its INIT leaves open and uses later; the
    // Python runtime cannot know what a handler's imports left in the C library.
    if spec.code.runtime == protocol::Runtime::Python314 && store.data().holds_resources() {
        return Err(SnapshotError::Unsupported(
            "INIT left files, streams or models open, which a snapshot cannot keep; \
             environments of this version run INIT instead"
                .into(),
        ));
    }
    drop(store);
    drop(tmp);
    let snapshot_bytes = snapshot.len() as u64;
    let prepared = code
        .compile_snapshot(key, snapshot)
        .await
        .map_err(|e| platform("compiling the snapshot", &e))?;
    if prepared.kind != original.kind {
        return Err(SnapshotError::Platform(
            "the snapshot is not the same kind of guest as its original".into(),
        ));
    }
    tracing::info!(
        function = %spec.function_arn,
        init_ms = init_duration.as_secs_f64() * 1000.0,
        snapshot_bytes,
        "SnapStart: snapshot taken"
    );
    Ok((
        prepared,
        SnapshotInfo {
            init_duration,
            snapshot_bytes,
        },
    ))
}

/// Why INIT (or capturing it) failed: the guest's fault when it trapped or ran out of
/// memory, the platform's when a host function failed under it, else a construct Wizer
/// cannot capture.
fn classify(
    e: &wasmtime::Error,
    logs: &Capture,
    memory_mb: u32,
    refused: crate::failure::Refused,
) -> SnapshotError {
    let text = format!("{e:#}");
    if text.contains("initialization function trapped") || refused.memory {
        return match crate::failure::classify(e, refused, &logs.peek_text()) {
            Failure::Platform(reason) => SnapshotError::Platform(reason),
            Failure::Exhausted => SnapshotError::Platform("no instance slot was free".into()),
            failure => SnapshotError::Init(failure.to_error("snapshot", memory_mb)),
        };
    }
    SnapshotError::Unsupported(format!("this guest cannot be snapshotted: {text}"))
}

/// The `error` record of the handler world, as Wizer hands back `init`'s result.
fn guest_error(value: &Val) -> FunctionError {
    let field = |name: &str| match value {
        Val::Record(fields) => fields.iter().find_map(|(n, v)| match v {
            Val::String(s) if n == name => Some(s.clone()),
            _ => None,
        }),
        _ => None,
    };
    FunctionError::new(
        field("error-type").unwrap_or_else(|| "Runtime.InitError".into()),
        field("error-message").unwrap_or_default(),
    )
}

//! Lamina's execution environments: the only crate that links wasmtime.
//!
//! [`Worker`] owns the process's one `Engine` (component model, pooling allocator,
//! copy-on-write images, epoch interruption), the code cache of precompiled guests, and
//! creates execution environments with Lambda's lifecycle. It implements
//! [`protocol::ExecutionBackend`], so the scheduler drives it without knowing wasmtime.
//!
//! Models: runtime `onnx` functions run the built-in model runtime (a guest from
//! `guests/runtimes/onnx`) on the model at their Handler; any component may run the
//! `.onnx` files of its package through `wasi:nn`. Inference runs natively with tract,
//! and each model is loaded once per node and shared (see `models` and `nn`).

mod capture;
mod code;
mod compile;
mod config;
mod engine;
mod environment;
mod failure;
mod host;
mod models;
mod nn;
mod scratch;
mod snapshot;
mod task_files;

use std::sync::Arc;

use async_trait::async_trait;
use protocol::{
    CodePackage, EnvironmentError, ExecutionBackend, ExecutionEnvironment, FunctionError,
    GuestKind, InitializationType, InvocationInput, InvocationResult, PrepareError, PreparedCode,
    Runtime, SharedSpec, SnapshotError, SnapshotInfo,
};

pub use config::{CodeLimits, ModelConfig, PoolConfig, WorkerConfig};
pub use models::ModelStats;

/// Bindings of the handler world in the repository's `wit/` folder.
mod bindings {
    wasmtime::component::bindgen!({
        path: "../wit",
        world: "function",
        exports: { default: async },
    });
}

/// Why the worker could not start.
#[derive(Debug, thiserror::Error)]
pub enum WorkerError {
    #[error("cannot configure the wasm engine: {0}")]
    Engine(String),
    #[error("cannot link host interfaces: {0}")]
    Link(String),
    #[error("cannot prepare the worker's directories: {0}")]
    Io(#[from] std::io::Error),
}

/// State shared by the worker and all its environments.
pub(crate) struct Shared {
    pub(crate) engine: wasmtime::Engine,
    pub(crate) config: WorkerConfig,
    pub(crate) scratch: Arc<scratch::ScratchPool>,
    pub(crate) models: Arc<models::ModelCache>,
}

/// Runs guests. Cheap to clone.
#[derive(Clone)]
pub struct Worker {
    shared: Arc<Shared>,
    code: Arc<code::CodeCache>,
    snapshots: Arc<snapshot::Snapshots>,
}

impl std::fmt::Debug for Worker {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Worker")
            .field("cache_dir", &self.shared.config.cache_dir)
            .finish_non_exhaustive()
    }
}

impl Worker {
    /// Builds the engine and linkers and starts the epoch ticker.
    pub fn new(config: WorkerConfig) -> Result<Self, WorkerError> {
        std::fs::create_dir_all(&config.cache_dir)?;
        let scratch = Arc::new(scratch::ScratchPool::open(&config.scratch_dir)?);
        let engine = engine::build_engine(&config)?;
        if config.epoch_interruption {
            engine::start_epoch_ticker(&engine, config.epoch_tick)?;
        }
        let link = |e: wasmtime::Error| WorkerError::Link(format!("{e:#}"));

        let mut component_linker = wasmtime::component::Linker::new(&engine);
        wasmtime_wasi::p2::add_to_linker_async(&mut component_linker).map_err(link)?;
        wasmtime_wasi_http::p2::add_only_http_to_linker_async(&mut component_linker)
            .map_err(link)?;
        wasmtime_wasi_nn::wit::add_to_linker(&mut component_linker, host::HostState::nn)
            .map_err(link)?;
        nn::bindings::lamina::function::models::add_to_linker::<_, wasmtime::component::HasSelf<_>>(
            &mut component_linker,
            |s: &mut host::HostState| s,
        )
        .map_err(link)?;
        task_files::bindings::lamina::function::task_files::add_to_linker::<
            _,
            wasmtime::component::HasSelf<_>,
        >(&mut component_linker, |s: &mut host::HostState| s)
        .map_err(link)?;
        let mut core_linker = wasmtime::Linker::new(&engine);
        wasmtime_wasi::p1::add_to_linker_async(&mut core_linker, |s: &mut host::CoreState| {
            &mut s.wasi
        })
        .map_err(link)?;

        let artifact_dir = config.cache_dir.join(engine::compatibility_tag(&engine));
        std::fs::create_dir_all(&artifact_dir)?;
        let code = code::CodeCache::new(
            engine.clone(),
            component_linker,
            core_linker,
            artifact_dir,
            code::Budget {
                max_code_bytes: config.max_code_bytes,
                limits: config.code_limits,
                concurrent_compiles: config.max_concurrent_compiles,
            },
        );
        let models = Arc::new(models::ModelCache::new(config.models.clone()));
        // Checking often relative to the TTL keeps an idle model's overstay short.
        let sweep = (config.models.ttl / 4).clamp(
            std::time::Duration::from_millis(50),
            std::time::Duration::from_secs(60),
        );
        models::start_sweeper(Arc::downgrade(&models), sweep)?;
        Ok(Worker {
            shared: Arc::new(Shared {
                engine,
                config,
                scratch,
                models,
            }),
            code: Arc::new(code),
            snapshots: Arc::new(snapshot::Snapshots::new()),
        })
    }

    pub fn config(&self) -> &WorkerConfig {
        &self.shared.config
    }

    /// What the node's model cache holds and has done.
    pub fn model_stats(&self) -> ModelStats {
        self.shared.models.stats()
    }

    /// Drops models idle longer than the model TTL now, instead of at the next sweep.
    /// Returns how many were dropped.
    pub fn evict_idle_models(&self) -> usize {
        self.shared.models.evict_idle()
    }

    /// The guest that serves `code` and the models it may load, validated and compiled.
    async fn prepare_package(
        &self,
        code: &CodePackage,
    ) -> Result<(Arc<code::Prepared>, Arc<[models::ModelRef]>), PrepareError> {
        let models = self
            .shared
            .models
            .prepare_package(code)
            .await
            .map_err(|e| {
                if e.is_clients() {
                    PrepareError::InvalidCode(e.to_string())
                } else {
                    PrepareError::Platform(e.to_string())
                }
            })?;
        let prepared = match code.runtime {
            Runtime::Wasm => self.code.prepare(code).await?,
            Runtime::Onnx | Runtime::Python314 => {
                let path = self
                    .shared
                    .config
                    .runtime_path(code.runtime)
                    .ok_or_else(|| {
                        PrepareError::Platform(
                            "this node has no built-in runtimes directory (--runtimes-dir)".into(),
                        )
                    })?;
                let prepared = self.code.prepare_builtin(code, &path).await?;
                if prepared.kind != GuestKind::Handler {
                    return Err(PrepareError::Platform(format!(
                        "the built-in runtime {} is not a handler component",
                        path.display()
                    )));
                }
                prepared
            }
        };
        Ok((prepared, models))
    }

    /// Runs the `onnx` runtime's INIT once on the package, so that what only the runtime
    /// reads (the model's signature as it serves it, `lamina-model.json`) is checked when
    /// the code is deployed rather than at the first invoke.
    async fn check_model_runtime(
        &self,
        code: &CodePackage,
        prepared: &Arc<code::Prepared>,
        models: &Arc<[models::ModelRef]>,
    ) -> Result<(), PrepareError> {
        let spec = Arc::new(protocol::FunctionSpec {
            account_id: String::new(),
            region: String::new(),
            function_name: "deploy-check".into(),
            version: protocol::names::LATEST.into(),
            function_arn: String::new(),
            memory_mb: 128,
            timeout: self.shared.config.init_timeout,
            ephemeral_storage_mb: 512,
            environment: Vec::new(),
            code: code.clone(),
            allowed_hosts: Vec::new(),
            snap_start: false,
        });
        let env = environment::Environment::create(
            self.shared.clone(),
            spec,
            prepared.clone(),
            models.clone(),
            InitializationType::OnDemand,
            false,
        )
        .await
        .map_err(|e| PrepareError::Platform(format!("creating /tmp: {e}")))?;
        if let Some(failure) = env.platform_failure() {
            return Err(PrepareError::Platform(format!(
                "starting the model runtime: {failure:?}"
            )));
        }
        match env.init_error() {
            Some(e) => Err(PrepareError::InvalidCode(format!(
                "The model cannot be served: {}: {}",
                e.error_type, e.error_message
            ))),
            None => Ok(()),
        }
    }

    /// The snapshot environments of `spec` restore, taken now if needed; `None` when the
    /// guest cannot be snapshotted.
    async fn snapshot_of(
        &self,
        spec: &SharedSpec,
        prepared: &code::Prepared,
        models: &[models::ModelRef],
    ) -> Result<(Arc<code::Prepared>, Option<SnapshotInfo>), SnapshotError> {
        if spec.code.runtime == Runtime::Onnx || prepared.kind != GuestKind::Handler {
            return Err(SnapshotError::Unsupported(
                "SnapStart applies to handler components; this guest has no INIT to capture".into(),
            ));
        }
        if !models.is_empty() {
            return Err(SnapshotError::Unsupported(
                "the package's models are loaded by the host through wasi-nn; a snapshot of \
                 guest memory cannot hold them"
                    .into(),
            ));
        }
        self.snapshots
            .get_or_take(&self.shared, &self.code, spec, prepared)
            .await
    }
}

struct Env(environment::Environment);

#[async_trait]
impl ExecutionEnvironment for Env {
    async fn invoke(&mut self, input: InvocationInput) -> InvocationResult {
        self.0.invoke(input).await
    }

    fn init_error(&self) -> Option<&FunctionError> {
        self.0.init_error()
    }
}

#[async_trait]
impl ExecutionBackend for Worker {
    fn model_cache(&self) -> Option<protocol::ModelCacheStats> {
        let s = self.model_stats();
        Some(protocol::ModelCacheStats {
            models: s.models as u64,
            resident_bytes: s.resident_bytes as u64,
            loads: s.loads,
            evictions: s.evictions,
        })
    }

    async fn prepare(&self, code: &CodePackage) -> Result<PreparedCode, PrepareError> {
        let (prepared, models) = self.prepare_package(code).await?;
        if code.runtime == Runtime::Onnx {
            self.check_model_runtime(code, &prepared, &models).await?;
        }
        let kind = match code.runtime {
            Runtime::Wasm | Runtime::Python314 => prepared.kind,
            Runtime::Onnx => GuestKind::Model,
        };
        Ok(PreparedCode {
            kind,
            artifact_bytes: prepared.artifact_bytes,
        })
    }

    async fn snapshot(&self, spec: SharedSpec) -> Result<SnapshotInfo, SnapshotError> {
        let (prepared, models) = self
            .prepare_package(&spec.code)
            .await
            .map_err(|e| match e {
                PrepareError::InvalidCode(m) | PrepareError::Platform(m) => {
                    SnapshotError::Platform(m)
                }
            })?;
        let (restored, taken) = self.snapshot_of(&spec, &prepared, &models).await?;
        Ok(taken.unwrap_or(SnapshotInfo {
            init_duration: std::time::Duration::ZERO,
            snapshot_bytes: restored.artifact_bytes,
        }))
    }

    async fn create_environment(
        &self,
        spec: SharedSpec,
        init_type: InitializationType,
    ) -> Result<Box<dyn ExecutionEnvironment>, EnvironmentError> {
        // Normally a cache hit; after a restart this reloads the precompiled artifact.
        let (prepared, models) = self
            .prepare_package(&spec.code)
            .await
            .map_err(|e| match e {
                PrepareError::InvalidCode(m) | PrepareError::Platform(m) => {
                    EnvironmentError::NotPrepared(format!("{}: {m}", spec.code.digest))
                }
            })?;
        // A version whose snapshot cannot be taken still runs, with INIT as usual.
        let restore = match init_type {
            InitializationType::SnapStart => self
                .snapshot_of(&spec, &prepared, &models)
                .await
                .ok()
                .map(|(snapshot, _)| snapshot),
            _ => None,
        };
        let env = environment::Environment::create(
            self.shared.clone(),
            spec,
            restore.clone().unwrap_or(prepared),
            models,
            init_type,
            restore.is_some(),
        )
        .await
        .map_err(|e| EnvironmentError::Platform(format!("creating /tmp: {e}")))?;
        // A guest whose INIT failed is still an environment (it reports the failure to
        // its first caller); a platform that could not host it is not.
        match env.platform_failure() {
            Some(failure::Failure::Exhausted) => Err(EnvironmentError::Exhausted),
            Some(failure::Failure::Platform(m)) => Err(EnvironmentError::Platform(m.clone())),
            _ => Ok(Box::new(Env(env))),
        }
    }
}

/// Measurements of the engine without Lamina's machinery around it: the baselines the
/// benchmarks in `bench/` compare the worker with. Not part of the runtime API.
#[doc(hidden)]
pub mod diagnostics {
    use std::time::{Duration, Instant};

    use protocol::CodePackage;

    use crate::Worker;
    use crate::capture::Capture;
    use crate::code::Compiled;
    use crate::host::{self, GuestIo, GuestLimiter, guarded_store};

    fn io<'a>(code: &'a CodePackage, tmp: &'a std::path::Path) -> GuestIo<'a> {
        GuestIo {
            env: &[],
            code,
            tmp_dir: tmp,
            stdin: None,
            stdout: Capture::new(1 << 16),
            stderr: Capture::new(1 << 16),
        }
    }

    fn no_models(worker: &Worker) -> host::GuestModels<'_> {
        static EMPTY: std::sync::OnceLock<std::sync::Arc<crate::models::ModelTable>> =
            std::sync::OnceLock::new();
        host::GuestModels {
            cache: &worker.shared.models,
            table: EMPTY.get_or_init(Default::default),
        }
    }

    /// Instantiates a handler guest in a fresh store `n` times without running INIT.
    pub async fn instantiate(
        worker: &Worker,
        code: &CodePackage,
        n: usize,
    ) -> Result<Vec<Duration>, String> {
        let prepared = worker.code.prepare(code).await.map_err(|e| e.to_string())?;
        let Compiled::Handler(pre) = &prepared.compiled else {
            return Err("not a handler guest".into());
        };
        let tmp = worker.shared.config.scratch_dir.clone();
        let mut out = Vec::with_capacity(n);
        for _ in 0..n {
            let limiter = GuestLimiter::new(128 << 20, &worker.shared.config);
            let state = host::component_state(io(code, &tmp), limiter, &[], no_models(worker))
                .map_err(|e| e.to_string())?;
            let mut store = guarded_store(&worker.shared.engine, state);
            store.data_mut().deadline = Instant::now() + Duration::from_secs(10);
            let started = Instant::now();
            // The store, and the instance in it, go back to the pool at the end of each round.
            pre.instantiate_async(&mut store)
                .await
                .map_err(|e| e.to_string())?;
            out.push(started.elapsed());
        }
        Ok(out)
    }

    /// Calls a handler guest's `handle` `n` times on one instance, with no logs, report
    /// or result assembly: the floor of a warm invocation.
    pub async fn raw_handle(
        worker: &Worker,
        code: &CodePackage,
        event: &[u8],
        n: usize,
    ) -> Result<Vec<Duration>, String> {
        let prepared = worker.code.prepare(code).await.map_err(|e| e.to_string())?;
        let Compiled::Handler(pre) = &prepared.compiled else {
            return Err("not a handler guest".into());
        };
        let tmp = worker.shared.config.scratch_dir.clone();
        let limiter = GuestLimiter::new(128 << 20, &worker.shared.config);
        let state = host::component_state(io(code, &tmp), limiter, &[], no_models(worker))
            .map_err(|e| e.to_string())?;
        let mut store = guarded_store(&worker.shared.engine, state);
        store.data_mut().deadline = Instant::now() + Duration::from_secs(3600);
        let bindings = pre
            .instantiate_async(&mut store)
            .await
            .map_err(|e| e.to_string())?;
        let handler = bindings.lamina_function_handler();
        handler
            .call_init(&mut store)
            .await
            .map_err(|e| e.to_string())?
            .map_err(|e| e.error_message)?;
        let ctx = crate::bindings::exports::lamina::function::handler::Context {
            request_id: "bench".into(),
            function_name: "bench".into(),
            function_version: "$LATEST".into(),
            invoked_function_arn: "arn:aws:lambda:us-east-1:000000000000:function:bench".into(),
            memory_limit_mb: 128,
            deadline_ms: u64::MAX,
            client_context: None,
        };
        let mut out = Vec::with_capacity(n);
        for _ in 0..n {
            let started = Instant::now();
            let r = handler
                .call_handle(&mut store, event, &ctx)
                .await
                .map_err(|e| e.to_string())?;
            out.push(started.elapsed());
            drop(r);
        }
        Ok(out)
    }
}

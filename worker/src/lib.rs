//! Lamina's execution environments: the only crate that links wasmtime.
//!
//! [`Worker`] owns the process's one `Engine` (component model, pooling allocator,
//! copy-on-write images, epoch interruption), the code cache of precompiled guests, and
//! creates execution environments with Lambda's lifecycle. It implements
//! [`protocol::ExecutionBackend`], so the scheduler drives it without knowing wasmtime.

mod capture;
mod code;
mod config;
mod engine;
mod environment;
mod failure;
mod host;

use std::sync::Arc;

use async_trait::async_trait;
use protocol::{
    CodePackage, EnvironmentError, ExecutionBackend, ExecutionEnvironment, FunctionError,
    InitializationType, InvocationInput, InvocationResult, PrepareError, PreparedCode, SharedSpec,
};

pub use config::{PoolConfig, WorkerConfig};

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
}

/// Runs guests. Cheap to clone.
#[derive(Clone)]
pub struct Worker {
    shared: Arc<Shared>,
    code: Arc<code::CodeCache>,
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
        std::fs::create_dir_all(&config.scratch_dir)?;
        let engine = engine::build_engine(&config)?;
        if config.epoch_interruption {
            engine::start_epoch_ticker(&engine, config.epoch_tick)?;
        }
        let link = |e: wasmtime::Error| WorkerError::Link(format!("{e:#}"));

        let mut component_linker = wasmtime::component::Linker::new(&engine);
        wasmtime_wasi::p2::add_to_linker_async(&mut component_linker).map_err(link)?;
        wasmtime_wasi_http::p2::add_only_http_to_linker_async(&mut component_linker)
            .map_err(link)?;
        let mut core_linker = wasmtime::Linker::new(&engine);
        wasmtime_wasi::p1::add_to_linker_async(&mut core_linker, |s: &mut host::CoreState| {
            &mut s.wasi
        })
        .map_err(link)?;

        let artifact_dir = config
            .cache_dir
            .join(engine::compatibility_tag(&engine));
        std::fs::create_dir_all(&artifact_dir)?;
        let code = code::CodeCache::new(
            engine.clone(),
            component_linker,
            core_linker,
            artifact_dir,
            config.max_code_bytes,
        );
        Ok(Worker {
            shared: Arc::new(Shared { engine, config }),
            code: Arc::new(code),
        })
    }

    pub fn config(&self) -> &WorkerConfig {
        &self.shared.config
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
    async fn prepare(&self, code: &CodePackage) -> Result<PreparedCode, PrepareError> {
        let prepared = self.code.prepare(code).await?;
        Ok(PreparedCode {
            kind: prepared.kind,
            artifact_bytes: prepared.artifact_bytes,
        })
    }

    async fn create_environment(
        &self,
        spec: SharedSpec,
        init_type: InitializationType,
    ) -> Result<Box<dyn ExecutionEnvironment>, EnvironmentError> {
        // Normally a cache hit; after a restart this reloads the precompiled artifact.
        let prepared = self.code.prepare(&spec.code).await.map_err(|e| match e {
            PrepareError::InvalidCode(m) | PrepareError::Platform(m) => {
                EnvironmentError::NotPrepared(format!("{}: {m}", spec.code.digest))
            }
        })?;
        let env = environment::Environment::create(self.shared.clone(), spec, prepared, init_type)
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

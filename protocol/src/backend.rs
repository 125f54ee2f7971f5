//! The contract between the scheduler and whatever runs guest code.
//!
//! The scheduler and gateway program against these traits; the `worker` crate implements
//! them with wasmtime. Keeping the contract here lets both compile and be tested without
//! a Wasm engine.

use async_trait::async_trait;

use crate::invocation::{FunctionError, InvocationInput, InvocationResult};
use crate::spec::{CodePackage, GuestKind, InitializationType, SharedSpec};

/// Why code was refused at deploy time.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum PrepareError {
    /// The client's package is unusable; the message explains why.
    #[error("{0}")]
    InvalidCode(String),
    /// Lamina failed to compile or store valid code.
    #[error("platform error while preparing code: {0}")]
    Platform(String),
}

/// Why an environment could not be created at all. A guest whose INIT fails still
/// yields an environment; see [`ExecutionEnvironment::init_error`].
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum EnvironmentError {
    /// Every instance slot of this node is in use.
    #[error("no capacity for a new execution environment")]
    Exhausted,
    /// The code was never prepared on this node, or its artifact is gone.
    #[error("code {0} is not prepared on this node")]
    NotPrepared(String),
    #[error("platform error while creating an environment: {0}")]
    Platform(String),
}

/// Why SnapStart could not snapshot a version. Its environments then run INIT as usual.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SnapshotError {
    /// INIT failed; the version's environments report the same failure to callers.
    #[error("INIT failed: {}: {}", .0.error_type, .0.error_message)]
    Init(FunctionError),
    /// The guest has no INIT phase, or keeps state the host holds, which a snapshot of
    /// its memory cannot capture.
    #[error("{0}")]
    Unsupported(String),
    #[error("platform error while taking a snapshot: {0}")]
    Platform(String),
}

/// What taking a snapshot cost.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SnapshotInfo {
    /// How long INIT ran before the snapshot.
    pub init_duration: std::time::Duration,
    /// Size of the initialised guest as a new binary.
    pub snapshot_bytes: u64,
}

/// What a successful prepare learned about the code.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PreparedCode {
    pub kind: GuestKind,
    /// Bytes of the compiled artifact kept on disk.
    pub artifact_bytes: u64,
}

/// Runs guest code: validates and compiles it, and creates execution environments.
#[async_trait]
pub trait ExecutionBackend: Send + Sync + 'static {
    /// Validates and compiles a package so that the first invoke is never a compile.
    /// Idempotent: a digest already prepared returns at once.
    async fn prepare(&self, code: &CodePackage) -> Result<PreparedCode, PrepareError>;

    /// SnapStart: runs INIT of `spec` once and keeps the initialised instance, so that
    /// environments created with [`InitializationType::SnapStart`] restore it instead of
    /// running INIT. Idempotent.
    async fn snapshot(&self, spec: SharedSpec) -> Result<SnapshotInfo, SnapshotError> {
        let _ = spec;
        Err(SnapshotError::Unsupported(
            "this execution backend does not take snapshots".into(),
        ))
    }

    /// Creates one execution environment of `spec` and runs its INIT (or, for SnapStart,
    /// restores its snapshot).
    async fn create_environment(
        &self,
        spec: SharedSpec,
        init_type: InitializationType,
    ) -> Result<Box<dyn ExecutionEnvironment>, EnvironmentError>;

    /// The node's shared model cache, for metrics; backends without one report nothing.
    fn model_cache(&self) -> Option<ModelCacheStats> {
        None
    }
}

/// The node's loaded models: how many, their memory, and cumulative loads and evictions.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct ModelCacheStats {
    pub models: u64,
    pub resident_bytes: u64,
    pub loads: u64,
    pub evictions: u64,
}

/// One execution environment: one instance of one function version, running at most
/// one invocation at a time (enforced by `&mut self`). Dropping it is SHUTDOWN.
#[async_trait]
pub trait ExecutionEnvironment: Send + 'static {
    /// Runs one invocation. Never fails: every failure is reported in the result.
    async fn invoke(&mut self, input: InvocationInput) -> InvocationResult;

    /// The INIT failure of this environment, if INIT failed. Such an environment answers
    /// its first invoke with that error and is then discarded.
    fn init_error(&self) -> Option<&FunctionError>;
}

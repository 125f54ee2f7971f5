//! Lamina's shared vocabulary: names and ARNs, function specs, invocation results,
//! billing records, the platform's log lines, function-URL mapping and the
//! execution-backend contract.
//!
//! Pure data and pure functions only: this crate does no IO, so every other crate can
//! depend on it and its logic is tested with plain tables.

pub mod backend;
pub mod billing;
pub mod http;
pub mod invocation;
pub mod log_lines;
pub mod names;
pub mod quality;
pub mod spec;

pub use backend::{
    EnvironmentError, ExecutionBackend, ExecutionEnvironment, ModelCacheStats, PrepareError,
    PreparedCode, SnapshotError, SnapshotInfo,
};
pub use billing::{LedgerRecord, Price};
pub use invocation::{
    Blame, FunctionError, InvocationInput, InvocationResult, InvocationType, Outcome, Payload,
    Response, StartKind,
};
pub use spec::{CodePackage, FunctionSpec, GuestKind, InitializationType, Runtime, SharedSpec};

/// Largest synchronous request and response payload (6 MB).
pub const MAX_SYNC_PAYLOAD: usize = 6 * 1024 * 1024;
/// Largest response payload before `Function.ResponseSizeTooLarge` (AWS's exact figure).
pub const MAX_RESPONSE_PAYLOAD: usize = 6_291_556;
/// Largest asynchronous (`Event`) payload (1 MB).
pub const MAX_ASYNC_PAYLOAD: usize = 1024 * 1024;
/// `LogType=Tail` returns the last 4 KB of the log.
pub const LOG_TAIL_BYTES: usize = 4096;

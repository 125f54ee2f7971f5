//! Worker configuration: where artifacts and built-in runtimes live, how large the
//! instance pool is, and how the node holds models.

use std::path::PathBuf;
use std::time::Duration;

pub use crate::compile::CodeLimits;
pub use crate::models::ModelConfig;

/// Sizes of wasmtime's pooling instance allocator. Every slot is reserved up front as
/// virtual address space, so these bound how many environments one node can hold.
#[derive(Debug, Clone)]
pub struct PoolConfig {
    /// Use the pooling allocator; when false, instances are allocated on demand.
    pub enabled: bool,
    pub total_component_instances: u32,
    pub total_core_instances: u32,
    pub total_memories: u32,
    pub total_tables: u32,
    pub total_stacks: u32,
    /// Largest linear memory in bytes. Wasm32 cannot address more than 4 GiB; a
    /// function's MemorySize is enforced per store below this.
    pub max_memory_size: usize,
    pub table_elements: usize,
    /// Bytes of each memory slot kept resident after an instance is dropped, so the next
    /// instance in that slot does not fault those pages in again. Bounded, so that
    /// scale-to-zero still returns nearly everything to the OS.
    pub linear_memory_keep_resident: usize,
    /// The same for table slots.
    pub table_keep_resident: usize,
    /// The same for fiber stacks: the top of the stack, which every call touches.
    pub async_stack_keep_resident: usize,
}

impl Default for PoolConfig {
    fn default() -> Self {
        PoolConfig {
            enabled: true,
            total_component_instances: 1_100,
            total_core_instances: 6_000,
            total_memories: 2_200,
            total_tables: 6_000,
            total_stacks: 1_100,
            max_memory_size: 4 << 30,
            table_elements: 100_000,
            linear_memory_keep_resident: 0,
            table_keep_resident: 0,
            async_stack_keep_resident: 0,
        }
    }
}

/// Everything the worker needs to run.
#[derive(Debug, Clone)]
pub struct WorkerConfig {
    /// Precompiled artifacts, keyed by the engine's compatibility hash and the code digest.
    pub cache_dir: PathBuf,
    /// Parent of each environment's private `/tmp`.
    pub scratch_dir: PathBuf,
    pub pool: PoolConfig,
    /// How often the epoch advances: the granularity of timeouts and of yielding a
    /// long-running guest back to the async runtime.
    pub epoch_tick: Duration,
    /// Epoch interruption instruments loops; turning it off exists only for measuring
    /// its cost, since without it an infinite loop cannot be stopped.
    pub epoch_interruption: bool,
    /// INIT must finish within this (Lambda: 10 s).
    pub init_timeout: Duration,
    /// Guest log bytes kept per invocation; the rest is dropped and counted.
    pub max_log_bytes: usize,
    /// Largest table a guest may grow.
    pub max_table_elements: usize,
    /// Instances, tables and memories a guest may create in one store.
    pub max_instances: usize,
    pub max_tables: usize,
    pub max_memories: usize,
    /// Largest guest binary accepted.
    pub max_code_bytes: u64,
    /// Most functions and code bytes one guest may hold: what one compile may cost.
    pub code_limits: CodeLimits,
    /// Compiles running at once on this node; more wait. Each holds memory in
    /// proportion to its code while it runs.
    pub max_concurrent_compiles: usize,
    /// Where the built-in runtimes are (`onnx.wasm` for Runtime `onnx`); `guests/build.sh`
    /// puts them in `guests/target/runtimes/`. None: runtime `onnx` functions are refused
    /// at deploy time with a platform error saying so.
    pub runtimes_dir: Option<PathBuf>,
    pub models: ModelConfig,
}

impl WorkerConfig {
    pub fn new(data_dir: impl Into<PathBuf>) -> Self {
        let data_dir = data_dir.into();
        WorkerConfig {
            cache_dir: data_dir.join("compiled"),
            scratch_dir: data_dir.join("scratch"),
            pool: PoolConfig::default(),
            epoch_tick: Duration::from_millis(10),
            epoch_interruption: true,
            init_timeout: Duration::from_secs(10),
            max_log_bytes: 1 << 20,
            max_table_elements: 100_000,
            max_instances: 64,
            max_tables: 64,
            max_memories: 16,
            max_code_bytes: 250 << 20,
            code_limits: CodeLimits::default(),
            max_concurrent_compiles: 2,
            runtimes_dir: None,
            models: ModelConfig::default(),
        }
    }
}

impl WorkerConfig {
    /// The built-in runtime guest of `runtime`, if the runtimes directory is set.
    pub fn runtime_path(&self, runtime: protocol::Runtime) -> Option<PathBuf> {
        let guest = runtime.builtin_guest()?;
        self.runtimes_dir.as_ref().map(|d| d.join(guest))
    }
}

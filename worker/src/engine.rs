//! The one wasmtime `Engine` of the process and the ticker that drives its epochs.

use std::hash::{Hash, Hasher};
use std::thread;

use wasmtime::{Config, Engine, InstanceAllocationStrategy, PoolingAllocationConfig};

use crate::WorkerError;
use crate::config::WorkerConfig;

pub(crate) fn build_engine(config: &WorkerConfig) -> Result<Engine, WorkerError> {
    let mut wasm = Config::new();
    wasm.wasm_component_model(true)
        .epoch_interruption(config.epoch_interruption)
        // Copy-on-write images make a new instance map its data segments instead of
        // copying them: microseconds instead of milliseconds for large guests.
        .memory_init_cow(true)
        .parallel_compilation(true)
        // Guest stacks are bounded well below the fiber stack so that infinite
        // recursion traps as a stack overflow instead of touching host memory.
        .max_wasm_stack(512 << 10)
        .async_stack_size(2 << 20)
        // A fiber stack handed back to the pool is reset: its top with a memset, the rest
        // returned to the OS. Without this every stack a burst touched stays resident
        // after the node scales to zero (and a guest could read another's old frames).
        .async_stack_zeroing(true);
    if config.pool.enabled {
        let p = &config.pool;
        let mut pool = PoolingAllocationConfig::new();
        pool.total_component_instances(p.total_component_instances)
            .total_core_instances(p.total_core_instances)
            .total_memories(p.total_memories)
            .total_tables(p.total_tables)
            .total_stacks(p.total_stacks)
            .max_memory_size(p.max_memory_size)
            .table_elements(p.table_elements)
            .max_memories_per_component(config.max_memories as u32)
            .max_tables_per_component(config.max_tables as u32)
            .max_core_instances_per_component(config.max_instances as u32)
            .linear_memory_keep_resident(p.linear_memory_keep_resident)
            .table_keep_resident(p.table_keep_resident)
            .async_stack_keep_resident(p.async_stack_keep_resident);
        wasm.allocation_strategy(InstanceAllocationStrategy::Pooling(pool));
    }
    Engine::new(&wasm).map_err(|e| WorkerError::Engine(format!("{e:#}")))
}

/// A short, stable name for the engine's compiled-code format: artifacts compiled by an
/// incompatible engine (other version or settings) live in another folder.
pub(crate) fn compatibility_tag(engine: &Engine) -> String {
    let mut hasher = std::collections::hash_map::DefaultHasher::new();
    engine.precompile_compatibility_hash().hash(&mut hasher);
    format!("{:016x}", hasher.finish())
}

/// Advances the engine's epoch every `tick` until the engine is dropped.
pub(crate) fn start_epoch_ticker(
    engine: &Engine,
    tick: std::time::Duration,
) -> Result<(), WorkerError> {
    let weak = engine.weak();
    thread::Builder::new()
        .name("lamina-epoch".into())
        .spawn(move || {
            loop {
                thread::sleep(tick);
                match weak.upgrade() {
                    Some(engine) => engine.increment_epoch(),
                    None => break,
                }
            }
        })?;
    Ok(())
}

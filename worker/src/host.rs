//! Per-store host state: the guest's WASI view of the world, its models, its resource
//! limits and the deadline the epoch callback enforces.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Instant;

use wasmtime::component::ResourceTable;
use wasmtime::{ResourceLimiter, Store};
use wasmtime_wasi::p1::WasiP1Ctx;
use wasmtime_wasi::{FsPerms, WasiCtx, WasiCtxBuilder, WasiCtxView, WasiView};
use wasmtime_wasi_http::p2::bindings::http::types::ErrorCode;
use wasmtime_wasi_http::{WasiHttpCtx, WasiHttpCtxView, WasiHttpHooks, WasiHttpView};
use wasmtime_wasi_nn::wit::{WasiNnCtx, WasiNnView};

use crate::capture::Capture;
use crate::failure::Refused;
use crate::models::{ModelCache, ModelTable};
use crate::nn;

/// Enforces a function's MemorySize across all memories of a store and records the
/// high-water mark that REPORT prints as Max Memory Used.
#[derive(Debug)]
pub(crate) struct GuestLimiter {
    memory_limit: usize,
    memory_in_use: usize,
    memory_peak: usize,
    /// What was refused, so that the error which follows is blamed on the guest (a
    /// refused memory growth is reported as out of memory).
    pub(crate) refused: Refused,
    max_table_elements: usize,
    max_instances: usize,
    max_tables: usize,
    max_memories: usize,
}

impl GuestLimiter {
    pub(crate) fn new(memory_limit: usize, limits: &crate::config::WorkerConfig) -> Self {
        GuestLimiter {
            memory_limit,
            memory_in_use: 0,
            memory_peak: 0,
            refused: Refused::default(),
            max_table_elements: limits.max_table_elements,
            max_instances: limits.max_instances,
            max_tables: limits.max_tables,
            max_memories: limits.max_memories,
        }
    }

    pub(crate) fn peak_bytes(&self) -> usize {
        self.memory_peak
    }
}

impl ResourceLimiter for GuestLimiter {
    fn memory_growing(
        &mut self,
        current: usize,
        desired: usize,
        _maximum: Option<usize>,
    ) -> wasmtime::Result<bool> {
        let growth = desired.saturating_sub(current);
        if self.memory_in_use.saturating_add(growth) > self.memory_limit {
            self.refused.memory = true;
            return Ok(false);
        }
        self.memory_in_use += growth;
        self.memory_peak = self.memory_peak.max(self.memory_in_use);
        Ok(true)
    }

    fn table_growing(
        &mut self,
        _current: usize,
        desired: usize,
        _maximum: Option<usize>,
    ) -> wasmtime::Result<bool> {
        let allowed = desired <= self.max_table_elements;
        self.refused.table |= !allowed;
        Ok(allowed)
    }

    fn instances(&self) -> usize {
        self.max_instances
    }

    fn tables(&self) -> usize {
        self.max_tables
    }

    fn memories(&self) -> usize {
        self.max_memories
    }
}

/// Decides which outbound HTTP requests a guest may make.
#[derive(Debug, Default)]
pub(crate) struct EgressPolicy {
    allowed_hosts: Vec<String>,
}

impl EgressPolicy {
    fn allows(&self, host: &str) -> bool {
        self.allowed_hosts
            .iter()
            .any(|allowed| allowed.eq_ignore_ascii_case(host))
    }
}

impl WasiHttpHooks for EgressPolicy {
    fn send_request(
        &mut self,
        request: http::Request<wasmtime_wasi_http::WasiBody>,
        options: Option<wasmtime_wasi_http::RequestOptions>,
        fut: Box<dyn Future<Output = Result<(), wasmtime_wasi_http::Error>> + Send>,
    ) -> Box<
        dyn Future<
                Output = wasmtime_wasi_http::Result<(
                    http::Response<wasmtime_wasi_http::WasiBody>,
                    Box<dyn Future<Output = Result<(), wasmtime_wasi_http::Error>> + Send>,
                )>,
            > + Send,
    > {
        let host = request.uri().host().unwrap_or("").to_owned();
        if !self.allows(&host) {
            return Box::new(async move {
                Err(wasmtime_wasi_http::Error::from(
                    ErrorCode::HttpRequestDenied,
                ))
            });
        }
        _ = fut;
        Box::new(async move {
            use http_body_util::BodyExt;
            let (res, io) = wasmtime_wasi_http::default_send_request(request, options).await?;
            Ok((
                res.map(BodyExt::boxed_unsync),
                Box::new(io) as Box<dyn Future<Output = _> + Send>,
            ))
        })
    }
}

/// The `T` of every component store.
pub(crate) struct HostState {
    wasi: WasiCtx,
    table: ResourceTable,
    http: WasiHttpCtx,
    egress: EgressPolicy,
    nn: WasiNnCtx,
    /// The models this environment may load by name, for `lamina:function/models`.
    models: Arc<ModelTable>,
    /// The roots `lamina:function/task-files` reads under: `/var/task` and `/opt`.
    task_root: PathBuf,
    opt_root: Option<PathBuf>,
    pub(crate) limiter: GuestLimiter,
    /// When the running call must stop; checked on every epoch tick.
    pub(crate) deadline: Instant,
}

impl HostState {
    pub(crate) fn nn(&mut self) -> WasiNnView<'_> {
        WasiNnView::new(&mut self.table, &mut self.nn)
    }

    /// Whether the guest holds host resources (files, streams, graphs, ...): a snapshot
    /// would keep the guest's handles to them but not the resources.
    pub(crate) fn holds_resources(&self) -> bool {
        !self.table.is_empty()
    }
}

impl crate::task_files::bindings::lamina::function::task_files::Host for HostState {
    fn read(&mut self, path: String) -> Option<Vec<u8>> {
        let file = crate::task_files::resolve(&path, &self.task_root, self.opt_root.as_deref())?;
        crate::task_files::read(&file)
    }
}

impl nn::bindings::lamina::function::models::Host for HostState {
    fn names(&mut self) -> Vec<String> {
        self.models.iter().map(|(name, _)| name.clone()).collect()
    }

    fn describe(
        &mut self,
        name: String,
    ) -> Option<nn::bindings::lamina::function::models::ModelInfo> {
        self.models
            .iter()
            .find(|(n, _)| *n == name)
            .map(|(_, model)| nn::describe(model))
    }
}

impl WasiView for HostState {
    fn ctx(&mut self) -> WasiCtxView<'_> {
        WasiCtxView {
            ctx: &mut self.wasi,
            table: &mut self.table,
        }
    }
}

impl WasiHttpView for HostState {
    fn http(&mut self) -> WasiHttpCtxView<'_> {
        WasiHttpCtxView {
            ctx: &mut self.http,
            table: &mut self.table,
            hooks: &mut self.egress,
        }
    }
}

/// The `T` of every core-module (WASI preview 1) store.
pub(crate) struct CoreState {
    pub(crate) wasi: WasiP1Ctx,
    pub(crate) limiter: GuestLimiter,
    pub(crate) deadline: Instant,
}

/// What a guest's WASI context is built from.
pub(crate) struct GuestIo<'a> {
    pub(crate) env: &'a [(String, String)],
    /// The package at `/var/task`, and its layers at `/opt`.
    pub(crate) code: &'a protocol::CodePackage,
    pub(crate) tmp_dir: &'a Path,
    pub(crate) stdin: Option<bytes::Bytes>,
    pub(crate) stdout: Capture,
    pub(crate) stderr: Capture,
}

fn wasi_builder(io: GuestIo<'_>) -> wasmtime::Result<WasiCtxBuilder> {
    let mut b = WasiCtxBuilder::new();
    // Only the function's own variables and Lambda's standard ones; nothing inherited
    // from the host. No sockets: the default address check denies every address.
    b.envs(io.env)
        .stdout(io.stdout)
        .stderr(io.stderr)
        .allow_ip_name_lookup(false)
        .allow_tcp(false)
        .allow_udp(false);
    if let Some(stdin) = io.stdin {
        b.stdin(wasmtime_wasi::p2::pipe::MemoryInputPipe::new(stdin));
    }
    b.preopened_dir(&io.code.root, "/var/task", FsPerms::ReadOnly)?;
    if let Some(opt) = &io.code.opt_root {
        b.preopened_dir(opt, "/opt", FsPerms::ReadOnly)?;
    }
    b.preopened_dir(io.tmp_dir, "/tmp", FsPerms::ReadWrite)?;
    Ok(b)
}

/// The models a store can reach: the node's cache (for `wasi:nn/graph.load`) and the
/// environment's own models (for `load-by-name`).
pub(crate) struct GuestModels<'a> {
    pub(crate) cache: &'a Arc<ModelCache>,
    pub(crate) table: &'a Arc<ModelTable>,
}

pub(crate) fn component_state(
    io: GuestIo<'_>,
    limiter: GuestLimiter,
    allowed_hosts: &[String],
    models: GuestModels<'_>,
) -> wasmtime::Result<HostState> {
    let task_root = io.code.root.clone();
    let opt_root = io.code.opt_root.clone();
    Ok(HostState {
        wasi: wasi_builder(io)?.build(),
        table: ResourceTable::new(),
        http: WasiHttpCtx::new(),
        egress: EgressPolicy {
            allowed_hosts: allowed_hosts.to_vec(),
        },
        nn: nn::context(models.cache, models.table),
        models: models.table.clone(),
        task_root,
        opt_root,
        limiter,
        deadline: Instant::now(),
    })
}

pub(crate) fn core_state(io: GuestIo<'_>, limiter: GuestLimiter) -> wasmtime::Result<CoreState> {
    Ok(CoreState {
        wasi: wasi_builder(io)?.build_p1(),
        limiter,
        deadline: Instant::now(),
    })
}

/// Something with a deadline and a limiter in its store data.
pub(crate) trait Guarded: Send + 'static {
    fn deadline(&self) -> Instant;
    fn limiter(&mut self) -> &mut GuestLimiter;
}

impl Guarded for HostState {
    fn deadline(&self) -> Instant {
        self.deadline
    }
    fn limiter(&mut self) -> &mut GuestLimiter {
        &mut self.limiter
    }
}

impl Guarded for CoreState {
    fn deadline(&self) -> Instant {
        self.deadline
    }
    fn limiter(&mut self) -> &mut GuestLimiter {
        &mut self.limiter
    }
}

/// Creates a store whose guest yields to the async runtime on every epoch tick and is
/// interrupted once its deadline has passed.
pub(crate) fn guarded_store<T: Guarded>(engine: &wasmtime::Engine, data: T) -> Store<T> {
    let mut store = Store::new(engine, data);
    store.limiter(|data| data.limiter());
    store.set_epoch_deadline(1);
    store.epoch_deadline_callback(|ctx| {
        if Instant::now() >= ctx.data().deadline() {
            Ok(wasmtime::UpdateDeadline::Interrupt)
        } else {
            Ok(wasmtime::UpdateDeadline::Yield(1))
        }
    });
    store
}

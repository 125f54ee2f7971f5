//! The adapter around the pure core: holds the live environments, creates and destroys
//! them through the execution backend, and runs the housekeeping timer.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, OnceLock, PoisonError};
use std::time::{Duration, Instant, SystemTime};

use prometheus::Registry;
use protocol::{
    EnvironmentError, ExecutionBackend, ExecutionEnvironment, InitializationType, InvocationInput,
    InvocationResult, SharedSpec, StartKind,
};

use crate::core::{
    Action, Admission, Core, EnvId, FunctionKey, Limits, PoolCounts, PoolId, ThrottleReason,
};
use crate::invocation::PoolKey;
use crate::metrics::{InvocationMetrics, PoolSeries};
use crate::placement::Placement;
use crate::recorder::{InvocationMeta, Recorder};
use crate::slot_leases::{Asked, SETTLE_INTERVAL, SlotLeases};
use crate::slots::Scope;

/// How many times an invocation asks the cluster for a slot before it is throttled: the
/// node's invocations that were not short may take the slots an answer brought first.
const SLOT_ATTEMPTS: usize = 3;

/// Leases of nodes that are gone are deleted every this many settlings.
const SWEEP_EVERY: u32 = 10;

/// Why an invocation did not run.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum InvokeError {
    #[error("throttled: {}", .0.as_str())]
    Throttled(ThrottleReason),
    /// The node has no room for another environment.
    #[error("no capacity for a new execution environment")]
    NoCapacity,
    #[error("the function version is no longer available")]
    Gone,
    #[error("platform failure: {0}")]
    Platform(String),
}

/// Counters the metrics endpoint reads.
#[derive(Debug, Default)]
pub struct SchedulerStats {
    pub cold_starts: AtomicU64,
    pub warm_starts: AtomicU64,
    pub throttles_reserved: AtomicU64,
    pub throttles_account: AtomicU64,
    pub throttles_rate: AtomicU64,
    pub environments_created: AtomicU64,
    pub environments_shut_down: AtomicU64,
}

/// The pools the scheduler knows, by key and by id.
#[derive(Default)]
struct PoolRegistry {
    by_key: HashMap<PoolKey, PoolId>,
    pools: HashMap<PoolId, PoolEntry>,
    next: u64,
}

struct PoolEntry {
    key: PoolKey,
    function: FunctionKey,
    spec: SharedSpec,
    init_type: InitializationType,
    series: Arc<PoolSeries>,
}

struct Inner {
    backend: Arc<dyn ExecutionBackend>,
    recorder: Recorder,
    core: Mutex<Core>,
    idle: Mutex<HashMap<EnvId, Box<dyn ExecutionEnvironment>>>,
    registry: Mutex<PoolRegistry>,
    stats: SchedulerStats,
    metrics: InvocationMetrics,
    /// Set when the node's concurrency limits are the cluster's.
    slot_leases: OnceLock<SlotLeases>,
    /// The members provisioned concurrency is spread over.
    placement: Mutex<Placement>,
    /// Provisioned concurrency configured per pool, for the whole cluster; the core holds
    /// this node's share of it.
    provisioned: Mutex<HashMap<PoolId, u32>>,
}

/// Lambda's execution semantics over an execution backend. Cheap to clone.
#[derive(Clone)]
pub struct Scheduler {
    inner: Arc<Inner>,
}

impl std::fmt::Debug for Scheduler {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Scheduler").finish_non_exhaustive()
    }
}

pub(crate) fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(PoisonError::into_inner)
}

/// The scheduler's clock: tokio's, so that tests with paused time move idle timeouts and
/// burst refills; outside such tests it is the monotonic clock itself.
fn now() -> Instant {
    tokio::time::Instant::now().into_std()
}

impl Scheduler {
    /// A scheduler over `backend` that adds its invocation metrics to `metrics` (the
    /// node's registry); fails only if they are registered there already.
    pub fn new(
        backend: Arc<dyn ExecutionBackend>,
        limits: Limits,
        recorder: Recorder,
        metrics: &Registry,
    ) -> prometheus::Result<Self> {
        Ok(Scheduler {
            inner: Arc::new(Inner {
                backend,
                recorder,
                core: Mutex::new(Core::new(limits)),
                idle: Mutex::new(HashMap::new()),
                registry: Mutex::new(PoolRegistry::default()),
                stats: SchedulerStats::default(),
                metrics: InvocationMetrics::register(metrics)?,
                slot_leases: OnceLock::new(),
                placement: Mutex::new(Placement::default()),
                provisioned: Mutex::new(HashMap::new()),
            }),
        })
    }

    pub fn backend(&self) -> &Arc<dyn ExecutionBackend> {
        &self.inner.backend
    }

    /// Makes account and reserved concurrency limits of the cluster: invocations are
    /// admitted within the slots this node holds in the database's `leases`, under its
    /// `incarnation`. Keep [`Scheduler::run_slot_settling`] running beside it.
    pub fn share_limits_with_cluster(&self, leases: store::ConcurrencyLeases, incarnation: String) {
        if self
            .inner
            .slot_leases
            .set(SlotLeases::new(leases, incarnation))
            .is_ok()
        {
            lock(&self.inner.core).share_limits_with_cluster();
        }
    }

    /// Admits an invocation of `pool`, asking the cluster for slots when the node is
    /// short of them. Short invocations take their turn at the limit's gate and admit
    /// again there, right after each answer, so one is throttled only when the database
    /// had no free slot for it.
    async fn admit(&self, pool: PoolId) -> Option<Admission> {
        let admission = lock(&self.inner.core).admit(pool, now());
        let Some(Admission::Short(scope)) = admission else {
            return admission;
        };
        let Some(leases) = self.inner.slot_leases.get() else {
            return Some(Admission::Throttled(scope.throttle_reason()));
        };
        let gate = leases.gate(&scope);
        let _one_at_a_time = gate.lock().await;
        let mut short_of = scope;
        for _ in 0..SLOT_ATTEMPTS {
            let admission = lock(&self.inner.core).admit(pool, now());
            let Some(Admission::Short(scope)) = admission else {
                return admission;
            };
            if !self.top_up(leases, &scope).await {
                return Some(Admission::Throttled(scope.throttle_reason()));
            }
            short_of = scope;
        }
        Some(Admission::Throttled(short_of.throttle_reason()))
    }

    /// Asks the cluster for slots of `scope` (the caller holds its gate); true when the
    /// node has room for one more.
    async fn top_up(&self, leases: &SlotLeases, scope: &Scope) -> bool {
        let Some(ask) = lock(&self.inner.core).slot_ask(scope) else {
            return true;
        };
        match leases.ask(scope, ask.want, ask.busy, ask.limit).await {
            Asked::Granted(grant) => lock(&self.inner.core).slots_granted(scope, grant),
            Asked::Unreachable => lock(&self.inner.core).slots_unreachable(scope),
        }
    }

    /// Gives back the slots unused since the last settling, scope by scope.
    pub async fn settle_slots(&self) {
        let Some(leases) = self.inner.slot_leases.get() else {
            return;
        };
        let scopes = lock(&self.inner.core).held_scopes();
        for scope in scopes {
            let gate = leases.gate(&scope);
            let _one_at_a_time = gate.lock().await;
            let Some(slots) = lock(&self.inner.core).settle_slots(&scope) else {
                continue;
            };
            if leases.record(&scope, slots).await {
                lock(&self.inner.core).slots_recorded(&scope, slots);
            }
        }
    }

    /// Settles the node's slots every [`SETTLE_INTERVAL`] until `shutdown` resolves, then
    /// gives every slot back.
    pub async fn run_slot_settling(&self, shutdown: impl Future<Output = ()>) {
        let Some(leases) = self.inner.slot_leases.get() else {
            return;
        };
        let mut interval = tokio::time::interval(SETTLE_INTERVAL);
        interval.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        tokio::pin!(shutdown);
        let mut settlings = 0u32;
        loop {
            tokio::select! {
                _ = &mut shutdown => break,
                _ = interval.tick() => {}
            }
            self.settle_slots().await;
            settlings = settlings.wrapping_add(1);
            if settlings.is_multiple_of(SWEEP_EVERY) {
                leases.sweep_dead().await;
            }
        }
        leases.release_all().await;
    }

    pub fn stats(&self) -> &SchedulerStats {
        &self.inner.stats
    }

    pub fn limits(&self) -> Limits {
        *lock(&self.inner.core).limits()
    }

    /// The pool serving `spec`, registered on first use. `key` identifies one immutable
    /// spec (function version and revision); a new revision gets a new pool.
    pub fn pool_for(&self, key: &PoolKey, spec: &SharedSpec) -> PoolId {
        if let Some(id) = lock(&self.inner.registry).by_key.get(key) {
            return *id;
        }
        // A pool is visible in the registry only once the core knows it, or a concurrent
        // first invocation would find its id and be told the version is gone. The core's
        // lock is taken first, in the order every other path takes both.
        let mut core = lock(&self.inner.core);
        let mut reg = lock(&self.inner.registry);
        if let Some(id) = reg.by_key.get(key) {
            return *id;
        }
        reg.next += 1;
        let id = PoolId(reg.next);
        let function = key.function();
        reg.by_key.insert(key.clone(), id);
        let init_type = if spec.snap_start && spec.version != protocol::names::LATEST {
            InitializationType::SnapStart
        } else {
            InitializationType::OnDemand
        };
        reg.pools.insert(
            id,
            PoolEntry {
                key: key.clone(),
                function: function.clone(),
                spec: spec.clone(),
                init_type,
                series: Arc::new(self.inner.metrics.pool_series(
                    &key.account_id,
                    &key.function_name,
                    &key.version,
                )),
            },
        );
        core.add_pool(id, function);
        id
    }

    /// This node has an idle environment of the version `key` names: an invocation of it
    /// here would be warm.
    pub fn has_idle(&self, key: &PoolKey) -> bool {
        let Some(pool) = lock(&self.inner.registry).by_key.get(key).copied() else {
            return false;
        };
        lock(&self.inner.core).has_idle(pool)
    }

    /// Reads from a pool's entry; `None` once the pool is gone.
    fn pool_entry<T>(&self, pool: PoolId, read: impl FnOnce(&PoolEntry) -> T) -> Option<T> {
        lock(&self.inner.registry).pools.get(&pool).map(read)
    }

    fn spec_of(&self, pool: PoolId) -> Option<(SharedSpec, InitializationType)> {
        self.pool_entry(pool, |p| (p.spec.clone(), p.init_type))
    }

    pub fn recorder(&self) -> &Recorder {
        &self.inner.recorder
    }

    /// Runs one invocation with Lambda's semantics and records it in the ledger before
    /// returning. The invocation runs in its own task, so it completes (and is billed)
    /// even if the caller goes away.
    pub async fn invoke(
        &self,
        pool: PoolId,
        input: InvocationInput,
        meta: InvocationMeta,
    ) -> Result<InvocationResult, InvokeError> {
        let this = self.clone();
        // A synchronous caller has waited since the gateway received the request; an async
        // event's wait in the queue is not platform overhead.
        let since = match meta.invocation_type {
            protocol::InvocationType::Event => SystemTime::now(),
            _ => meta.received_at,
        };
        // Without a pool there is no invocation to count: `run` answers that it is gone.
        let series = self.pool_entry(pool, |p| p.series.clone());
        tokio::spawn(async move {
            let result = this.run(pool, input).await?;
            let record = this
                .inner
                .recorder
                .record(&meta, &result)
                .map_err(|e| InvokeError::Platform(format!("recording the invocation: {e}")))?;
            let guest = result.duration + result.init_duration.unwrap_or_default();
            let overhead = since.elapsed().unwrap_or_default().saturating_sub(guest);
            if let Some(series) = series {
                series.invocation(&record, &result, overhead);
            }
            Ok(result)
        })
        .await
        .map_err(|e| InvokeError::Platform(format!("invocation task failed: {e}")))?
    }

    async fn run(
        &self,
        pool: PoolId,
        input: InvocationInput,
    ) -> Result<InvocationResult, InvokeError> {
        let admission = self.admit(pool).await;
        let stats = &self.inner.stats;
        let (env_id, mut env) = match admission {
            None => return Err(InvokeError::Gone),
            Some(Admission::Throttled(reason)) => return Err(self.throttled(pool, reason)),
            // `admit` asked the cluster already; still short means used up.
            Some(Admission::Short(scope)) => {
                return Err(self.throttled(pool, scope.throttle_reason()));
            }
            Some(Admission::Warm(env_id)) => match lock(&self.inner.idle).remove(&env_id) {
                Some(env) => (env_id, env),
                None => {
                    // The core and the idle map disagree: never expected; heal by forgetting.
                    lock(&self.inner.core).finish(env_id, false, now());
                    return Err(InvokeError::Platform("lost an idle environment".into()));
                }
            },
            Some(Admission::Cold { env: env_id, evict }) => {
                if let Some(victim) = evict {
                    self.shut_down(victim);
                }
                let Some((spec, init_type)) = self.spec_of(pool) else {
                    lock(&self.inner.core).env_started(env_id, false, now());
                    return Err(InvokeError::Gone);
                };
                match self.inner.backend.create_environment(spec, init_type).await {
                    Ok(env) => {
                        stats.environments_created.fetch_add(1, Ordering::Relaxed);
                        lock(&self.inner.core).env_started(env_id, true, now());
                        (env_id, env)
                    }
                    Err(e) => {
                        lock(&self.inner.core).env_started(env_id, false, now());
                        return Err(match e {
                            EnvironmentError::Exhausted => InvokeError::NoCapacity,
                            other => InvokeError::Platform(other.to_string()),
                        });
                    }
                }
            }
        };
        let result = env.invoke(input).await;
        match result.start {
            StartKind::Warm => stats.warm_starts.fetch_add(1, Ordering::Relaxed),
            _ => stats.cold_starts.fetch_add(1, Ordering::Relaxed),
        };
        let keep = result.environment_reusable;
        {
            // The environment must be in the idle map before the core may hand it out
            // again, so both are updated under the core's lock.
            let mut core = lock(&self.inner.core);
            match core.finish(env_id, keep, now()) {
                Some(Action::Shutdown(_)) => {
                    stats.environments_shut_down.fetch_add(1, Ordering::Relaxed);
                    drop(core);
                    drop(env);
                }
                _ => {
                    lock(&self.inner.idle).insert(env_id, env);
                }
            }
        }
        Ok(result)
    }

    fn throttled(&self, pool: PoolId, reason: ThrottleReason) -> InvokeError {
        let stats = &self.inner.stats;
        let counter = match reason {
            ThrottleReason::ReservedFunctionConcurrentInvocationLimitExceeded => {
                &stats.throttles_reserved
            }
            ThrottleReason::ConcurrentInvocationLimitExceeded => &stats.throttles_account,
            ThrottleReason::FunctionInvocationRateLimitExceeded => &stats.throttles_rate,
        };
        counter.fetch_add(1, Ordering::Relaxed);
        if let Some(function) = self.pool_entry(pool, |p| p.function.clone()) {
            self.inner.metrics.throttle(&function, reason);
        }
        InvokeError::Throttled(reason)
    }

    fn shut_down(&self, env: EnvId) {
        if lock(&self.inner.idle).remove(&env).is_some() {
            self.inner
                .stats
                .environments_shut_down
                .fetch_add(1, Ordering::Relaxed);
        }
    }

    fn apply(&self, actions: Vec<Action>) {
        for action in actions {
            match action {
                Action::Shutdown(env) => self.shut_down(env),
                Action::Provision { pool, env } => self.provision(pool, env),
            }
        }
    }

    fn provision(&self, pool: PoolId, env_id: EnvId) {
        let this = self.clone();
        tokio::spawn(async move {
            let created = match this.spec_of(pool) {
                Some((spec, _)) => this
                    .inner
                    .backend
                    .create_environment(spec, InitializationType::ProvisionedConcurrency)
                    .await
                    .ok()
                    .filter(|env| env.init_error().is_none()),
                None => None,
            };
            let ok = created.is_some();
            let mut core = lock(&this.inner.core);
            let wanted = core.env_started(env_id, ok, now());
            if let Some(env) = created {
                this.inner
                    .stats
                    .environments_created
                    .fetch_add(1, Ordering::Relaxed);
                if wanted {
                    // Under the core's lock, as in `run`: idle in the core means present here.
                    lock(&this.inner.idle).insert(env_id, env);
                }
            }
        });
    }

    /// Housekeeping: scale idle environments to zero and keep provisioned pools full.
    pub fn tick(&self) {
        let actions = lock(&self.inner.core).tick(now());
        self.apply(actions);
    }

    /// Runs [`Scheduler::tick`] periodically until `shutdown` resolves.
    pub async fn run_housekeeping(&self, shutdown: impl Future<Output = ()>) {
        let idle = self.limits().idle_timeout;
        let period = (idle / 4).clamp(Duration::from_millis(50), Duration::from_secs(1));
        let mut interval = tokio::time::interval(period);
        interval.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        tokio::pin!(shutdown);
        loop {
            tokio::select! {
                _ = &mut shutdown => break,
                _ = interval.tick() => self.tick(),
            }
        }
    }

    /// The spec behind `key` changed or was deleted: its environments go away.
    pub fn retire(&self, key: &PoolKey) {
        let pool = {
            let mut reg = lock(&self.inner.registry);
            let Some(id) = reg.by_key.remove(key) else {
                return;
            };
            reg.pools.remove(&id);
            id
        };
        lock(&self.inner.provisioned).remove(&pool);
        let actions = lock(&self.inner.core).retire_pool(pool);
        self.apply(actions);
    }

    pub fn set_reserved(
        &self,
        function: &FunctionKey,
        reserved: Option<u32>,
    ) -> Result<(), crate::core::ReserveError> {
        lock(&self.inner.core).set_reserved(function, reserved)
    }

    pub fn unreserved(&self, account_id: &str) -> u32 {
        lock(&self.inner.core).unreserved(account_id)
    }

    /// Sets the pool's provisioned concurrency for the whole cluster; this node keeps its
    /// share of it (all of it when it is its own cluster).
    pub fn set_provisioned(&self, pool: PoolId, total: u32) {
        {
            let mut provisioned = lock(&self.inner.provisioned);
            if total == 0 {
                provisioned.remove(&pool);
            } else {
                provisioned.insert(pool, total);
            }
        }
        self.apply_provisioned_share(pool, total);
    }

    fn apply_provisioned_share(&self, pool: PoolId, total: u32) {
        let key = lock(&self.inner.registry)
            .pools
            .get(&pool)
            .map(|p| p.key.to_string());
        let share = key.map_or(total, |key| lock(&self.inner.placement).share(&key, total));
        let actions = lock(&self.inner.core).set_provisioned(pool, share);
        self.apply(actions);
    }

    /// The live members changed: every provisioned pool takes its new share (the shares
    /// of a node that died move to the survivors).
    pub fn set_placement(&self, placement: Placement) {
        let members = placement.members();
        {
            let mut current = lock(&self.inner.placement);
            if *current == placement {
                return;
            }
            *current = placement;
        }
        if members > 0 {
            lock(&self.inner.core).set_live_nodes(members as u32);
        }
        let totals: Vec<(PoolId, u32)> = lock(&self.inner.provisioned)
            .iter()
            .map(|(pool, total)| (*pool, *total))
            .collect();
        for (pool, total) in totals {
            self.apply_provisioned_share(pool, total);
        }
    }

    /// Ready provisioned environments of every pool that has some, by pool key (what
    /// the node reports to the cluster with its heartbeat).
    pub fn provisioned_ready_by_key(&self) -> Vec<(String, u32)> {
        let pools: Vec<PoolId> = lock(&self.inner.provisioned).keys().copied().collect();
        let core = lock(&self.inner.core);
        let reg = lock(&self.inner.registry);
        pools
            .into_iter()
            .filter_map(|pool| {
                let key = reg.pools.get(&pool)?.key.to_string();
                Some((key, core.provisioned_ready(pool)))
            })
            .collect()
    }

    pub fn provisioned_ready(&self, pool: PoolId) -> u32 {
        lock(&self.inner.core).provisioned_ready(pool)
    }

    pub fn forget_function(&self, function: &FunctionKey) {
        lock(&self.inner.core).forget_function(function);
    }

    /// Environments per pool and state, for operators and metrics.
    pub fn snapshot(&self) -> Vec<PoolSnapshot> {
        let core = lock(&self.inner.core);
        let reg = lock(&self.inner.registry);
        core.pools()
            .map(|(id, function)| PoolSnapshot {
                key: reg.pools.get(&id).map(|p| p.key.clone()),
                function: function.clone(),
                counts: core.pool_counts(id),
                in_flight_function: core.in_flight(function),
                reserved: core.reserved(function),
            })
            .collect()
    }

    pub fn environments(&self) -> usize {
        lock(&self.inner.core).environments()
    }

    /// Shuts every idle environment down (used at shutdown and by tests).
    pub fn clear_idle(&self) {
        let envs: Vec<EnvId> = lock(&self.inner.idle).keys().copied().collect();
        let mut core = lock(&self.inner.core);
        let removed: Vec<EnvId> = envs.into_iter().filter(|e| core.remove_idle(*e)).collect();
        drop(core);
        for env in removed {
            self.shut_down(env);
        }
    }
}

/// One pool as operators see it.
#[derive(Debug, Clone)]
pub struct PoolSnapshot {
    /// `None` for a pool retired while the snapshot was taken.
    pub key: Option<PoolKey>,
    pub function: FunctionKey,
    pub counts: PoolCounts,
    pub in_flight_function: u32,
    pub reserved: Option<u32>,
}

impl PoolSnapshot {
    /// The function version this pool runs.
    pub fn version(&self) -> &str {
        self.key.as_ref().map_or("", |k| k.version.as_str())
    }
}

//! The scheduler's decisions, as pure code: events in, actions out, no IO and no clock of
//! its own (every call is given `now`).
//!
//! Rules, as Lambda applies them:
//! - One invocation per execution environment at a time. An idle provisioned environment
//!   is used first, then the most recently used idle one; a cold start happens only when
//!   none is idle.
//! - A function with reserved concurrency R never has more than R invocations in flight
//!   (`ReservedFunctionConcurrentInvocationLimitExceeded`); R = 0 throttles everything.
//!   Functions without a reservation share what the account limit leaves after all
//!   reservations (`ConcurrentInvocationLimitExceeded`); at least `min_unreserved` stays
//!   unreserved.
//! - New environments per function are rate-limited by a token bucket (Lambda: 1,000 per
//!   10 s); past it, `FunctionInvocationRateLimitExceeded`.
//! - An idle on-demand environment is shut down after `idle_timeout` (scale to zero); a
//!   busy one never is; provisioned environments never are.
//! - The node holds at most `max_environments`; at the cap, the least recently used idle
//!   environment of any function is evicted to make room.
//! - In a cluster, both concurrency limits are the cluster's: the node admits within the
//!   slots it holds of each ([`crate::slots`]), and asks for more ([`Admission::Short`])
//!   before it throttles.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use crate::slots::{Granted, Scope, SlotHoldings};

/// A function, the scope of reserved concurrency.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct FunctionKey {
    pub account_id: Arc<str>,
    pub name: Arc<str>,
}

impl FunctionKey {
    pub fn new(account_id: &str, name: &str) -> Self {
        FunctionKey {
            account_id: account_id.into(),
            name: name.into(),
        }
    }
}

/// A pool: the environments of one immutable function version (one spec).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct PoolId(pub u64);

/// One execution environment.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct EnvId(pub u64);

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum ThrottleReason {
    /// The function's reserved concurrency is used up (or is 0).
    ReservedFunctionConcurrentInvocationLimitExceeded,
    /// The account's unreserved concurrency is used up.
    ConcurrentInvocationLimitExceeded,
    /// Too many new environments for this function in the current interval.
    FunctionInvocationRateLimitExceeded,
}

impl ThrottleReason {
    pub fn as_str(self) -> &'static str {
        match self {
            ThrottleReason::ReservedFunctionConcurrentInvocationLimitExceeded => {
                "ReservedFunctionConcurrentInvocationLimitExceeded"
            }
            ThrottleReason::ConcurrentInvocationLimitExceeded => {
                "ConcurrentInvocationLimitExceeded"
            }
            ThrottleReason::FunctionInvocationRateLimitExceeded => {
                "FunctionInvocationRateLimitExceeded"
            }
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Limits {
    pub account_concurrency: u32,
    pub min_unreserved: u32,
    pub idle_timeout: Duration,
    pub burst_limit: u32,
    pub burst_interval: Duration,
    pub max_environments: usize,
}

impl Default for Limits {
    fn default() -> Self {
        Limits {
            account_concurrency: 1000,
            min_unreserved: 100,
            idle_timeout: Duration::from_secs(600),
            burst_limit: 1000,
            burst_interval: Duration::from_secs(10),
            max_environments: 1000,
        }
    }
}

/// Where an admitted invocation runs.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Admission {
    /// Reuse this idle environment.
    Warm(EnvId),
    /// Create this environment (INIT), then run. `evict` must be shut down first to make
    /// room on the node.
    Cold {
        env: EnvId,
        evict: Option<EnvId>,
    },
    Throttled(ThrottleReason),
    /// Every slot the node holds of this cluster-wide limit is busy: ask the cluster for
    /// more ([`Core::slots_granted`], [`Core::slots_unreachable`]), then admit again.
    Short(Scope),
}

/// What the node asks the cluster for when it is short of slots.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SlotAsk {
    /// Slots to hold in all.
    pub want: u32,
    pub busy: u32,
    pub limit: u32,
}

/// Something the adapter must do.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Action {
    /// Shut this idle environment down and drop it.
    Shutdown(EnvId),
    /// Create this provisioned environment for the pool and report with `env_started`.
    Provision { pool: PoolId, env: EnvId },
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ReserveError {
    /// The reservation would leave fewer than `min_unreserved` for everyone else.
    BelowMinimumUnreserved { minimum: u32 },
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum EnvState {
    Starting,
    Busy,
    Idle { since: Instant },
}

#[derive(Debug, Clone)]
struct Env {
    pool: PoolId,
    state: EnvState,
    provisioned: bool,
}

#[derive(Debug, Clone)]
struct Pool {
    function: FunctionKey,
    /// Idle on-demand environments, most recently used last.
    idle: Vec<EnvId>,
    /// Idle provisioned environments.
    idle_provisioned: Vec<EnvId>,
    provisioned_target: u32,
    retired: bool,
}

#[derive(Debug, Clone)]
struct Bucket {
    tokens: f64,
    updated: Instant,
}

#[derive(Debug, Clone, Default)]
struct FunctionState {
    reserved: Option<u32>,
    /// Invocations in flight (including environments starting for one).
    busy: u32,
    bucket: Option<Bucket>,
}

#[derive(Debug, Clone, Default)]
struct AccountState {
    busy_unreserved: u32,
    reserved_total: u32,
}

/// Counts for operators and metrics.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct PoolCounts {
    pub idle: u32,
    pub busy: u32,
    pub starting: u32,
    pub provisioned: u32,
}

#[derive(Debug, Clone)]
pub struct Core {
    limits: Limits,
    accounts: HashMap<Arc<str>, AccountState>,
    functions: HashMap<FunctionKey, FunctionState>,
    pools: HashMap<PoolId, Pool>,
    envs: HashMap<EnvId, Env>,
    next_env: u64,
    /// The slots held of the cluster's limits; `None` on a node that is its own cluster.
    slots: Option<SlotHoldings>,
}

impl Core {
    pub fn new(limits: Limits) -> Self {
        Core {
            limits,
            accounts: HashMap::new(),
            functions: HashMap::new(),
            pools: HashMap::new(),
            envs: HashMap::new(),
            next_env: 1,
            slots: None,
        }
    }

    /// Makes the concurrency limits the cluster's: from now on the node admits only within
    /// the slots it holds.
    pub fn share_limits_with_cluster(&mut self) {
        self.slots.get_or_insert_with(SlotHoldings::new);
    }

    pub fn limits(&self) -> &Limits {
        &self.limits
    }

    /// Registers a pool for a function version (idempotent).
    pub fn add_pool(&mut self, pool: PoolId, function: FunctionKey) {
        self.pools.entry(pool).or_insert(Pool {
            function,
            idle: Vec::new(),
            idle_provisioned: Vec::new(),
            provisioned_target: 0,
            retired: false,
        });
    }

    fn new_env(&mut self, pool: PoolId, provisioned: bool) -> EnvId {
        let id = EnvId(self.next_env);
        self.next_env += 1;
        self.envs.insert(
            id,
            Env {
                pool,
                state: EnvState::Starting,
                provisioned,
            },
        );
        id
    }

    fn unreserved_capacity(&self, account: &str) -> u32 {
        let reserved = self.accounts.get(account).map_or(0, |a| a.reserved_total);
        self.limits.account_concurrency.saturating_sub(reserved)
    }

    /// Decides where an invocation of `pool` runs, or throttles it.
    pub fn admit(&mut self, pool_id: PoolId, now: Instant) -> Option<Admission> {
        let pool = self.pools.get(&pool_id)?;
        let function = pool.function.clone();
        let scope = self.scope_of(&function);
        let busy = self.scope_busy(&scope);
        if busy >= self.scope_limit(&scope) {
            return Some(Admission::Throttled(scope.throttle_reason()));
        }
        if let Some(slots) = &self.slots
            && !slots.has_room(&scope, busy)
        {
            return Some(Admission::Short(scope));
        }
        let pool = self.pools.get_mut(&pool_id)?;
        let reuse = pool.idle_provisioned.pop().or_else(|| pool.idle.pop());
        let admission = match reuse {
            Some(env) => {
                if let Some(e) = self.envs.get_mut(&env) {
                    e.state = EnvState::Busy;
                }
                Admission::Warm(env)
            }
            None => {
                if !self.take_burst_token(&function, now) {
                    return Some(Admission::Throttled(
                        ThrottleReason::FunctionInvocationRateLimitExceeded,
                    ));
                }
                let evict = if self.envs.len() >= self.limits.max_environments {
                    match self.evict_lru_idle() {
                        Some(e) => Some(e),
                        None => {
                            return Some(Admission::Throttled(
                                ThrottleReason::ConcurrentInvocationLimitExceeded,
                            ));
                        }
                    }
                } else {
                    None
                };
                let env = self.new_env(pool_id, false);
                Admission::Cold { env, evict }
            }
        };
        self.count_busy(&function, 1);
        Some(admission)
    }

    fn count_busy(&mut self, function: &FunctionKey, delta: i32) {
        let fstate = self.functions.entry(function.clone()).or_default();
        fstate.busy = fstate.busy.saturating_add_signed(delta);
        if fstate.reserved.is_none() {
            let account = self
                .accounts
                .entry(function.account_id.clone())
                .or_default();
            account.busy_unreserved = account.busy_unreserved.saturating_add_signed(delta);
        }
        if delta > 0 && self.slots.is_some() {
            let scope = self.scope_of(function);
            let busy = self.scope_busy(&scope);
            if let Some(slots) = &mut self.slots {
                slots.observe_busy(&scope, busy);
            }
        }
    }

    /// The limit an invocation of `function` counts against.
    fn scope_of(&self, function: &FunctionKey) -> Scope {
        match self.functions.get(function).and_then(|f| f.reserved) {
            Some(_) => Scope::Reserved(function.clone()),
            None => Scope::Unreserved(function.account_id.clone()),
        }
    }

    fn scope_busy(&self, scope: &Scope) -> u32 {
        match scope {
            Scope::Reserved(f) => self
                .functions
                .get(f)
                .filter(|f| f.reserved.is_some())
                .map_or(0, |f| f.busy),
            Scope::Unreserved(account) => {
                self.accounts.get(account).map_or(0, |a| a.busy_unreserved)
            }
        }
    }

    fn scope_limit(&self, scope: &Scope) -> u32 {
        match scope {
            Scope::Reserved(f) => self.reserved(f).unwrap_or(0),
            Scope::Unreserved(account) => self.unreserved_capacity(account),
        }
    }

    /// What to ask the cluster for when short of slots of `scope`; `None` when the node
    /// has room again (another invocation's request was answered meanwhile) or does not
    /// share its limits.
    pub fn slot_ask(&self, scope: &Scope) -> Option<SlotAsk> {
        let slots = self.slots.as_ref()?;
        let busy = self.scope_busy(scope);
        if slots.has_room(scope, busy) {
            return None;
        }
        let limit = self.scope_limit(scope);
        Some(SlotAsk {
            want: slots.want(busy, limit),
            busy,
            limit,
        })
    }

    /// The membership counts `live_nodes` nodes in the cluster.
    pub fn set_live_nodes(&mut self, live_nodes: u32) {
        if let Some(s) = &mut self.slots {
            s.set_live_nodes(live_nodes);
        }
    }

    /// The cluster answered a [`SlotAsk`]; true when the node now has room for one more.
    pub fn slots_granted(&mut self, scope: &Scope, grant: Granted) -> bool {
        let busy = self.scope_busy(scope);
        self.slots
            .as_mut()
            .is_some_and(|s| s.granted(scope, busy, grant))
    }

    /// The cluster could not be asked (its database is away); true when the node's own
    /// share gives it room for one more.
    pub fn slots_unreachable(&mut self, scope: &Scope) -> bool {
        let busy = self.scope_busy(scope);
        let limit = self.scope_limit(scope);
        self.slots
            .as_mut()
            .is_some_and(|s| s.unreachable(scope, busy, limit))
    }

    /// The scopes the node holds slots of.
    pub fn held_scopes(&self) -> Vec<Scope> {
        self.slots
            .as_ref()
            .map(SlotHoldings::scopes)
            .unwrap_or_default()
    }

    /// Gives back the slots of `scope` unused since the last call; the slots to record
    /// for the node when that changed what the cluster holds for it.
    pub fn settle_slots(&mut self, scope: &Scope) -> Option<u32> {
        let busy = self.scope_busy(scope);
        self.slots.as_mut()?.settle(scope, busy)
    }

    /// The cluster now records `held` slots of `scope` for the node.
    pub fn slots_recorded(&mut self, scope: &Scope, held: u32) {
        if let Some(s) = &mut self.slots {
            s.recorded(scope, held);
        }
    }

    fn take_burst_token(&mut self, function: &FunctionKey, now: Instant) -> bool {
        let limit = self.limits.burst_limit as f64;
        let per_sec = limit / self.limits.burst_interval.as_secs_f64().max(1e-9);
        let fstate = self.functions.entry(function.clone()).or_default();
        let bucket = fstate.bucket.get_or_insert(Bucket {
            tokens: limit,
            updated: now,
        });
        let elapsed = now.saturating_duration_since(bucket.updated).as_secs_f64();
        bucket.tokens = (bucket.tokens + elapsed * per_sec).min(limit);
        bucket.updated = now;
        if bucket.tokens >= 1.0 {
            bucket.tokens -= 1.0;
            true
        } else {
            false
        }
    }

    /// The least recently used idle on-demand environment of any pool, removed.
    fn evict_lru_idle(&mut self) -> Option<EnvId> {
        let (&victim, _) = self
            .envs
            .iter()
            .filter(|(_, e)| !e.provisioned)
            .filter_map(|(id, e)| match e.state {
                EnvState::Idle { since } => Some((id, since)),
                _ => None,
            })
            .min_by_key(|(_, since)| *since)?;
        self.remove_env(victim);
        Some(victim)
    }

    fn remove_env(&mut self, env: EnvId) {
        if let Some(e) = self.envs.remove(&env)
            && let Some(pool) = self.pools.get_mut(&e.pool)
        {
            pool.idle.retain(|x| *x != env);
            pool.idle_provisioned.retain(|x| *x != env);
        }
    }

    /// A cold start finished INIT. A failed start frees its slot; a provisioned one that
    /// started becomes idle and ready. Returns false if the environment is no longer
    /// wanted (its pool's target shrank meanwhile): the caller shuts it down.
    pub fn env_started(&mut self, env: EnvId, ok: bool, now: Instant) -> bool {
        let Some(e) = self.envs.get(&env).cloned() else {
            return false;
        };
        if e.provisioned {
            if ok {
                self.make_idle(env, now);
            } else {
                self.remove_env(env);
            }
            return ok;
        }
        if ok {
            if let Some(e) = self.envs.get_mut(&env) {
                e.state = EnvState::Busy;
            }
        } else {
            self.finish(env, false, now);
        }
        ok
    }

    fn make_idle(&mut self, env: EnvId, now: Instant) {
        let Some(e) = self.envs.get_mut(&env) else {
            return;
        };
        e.state = EnvState::Idle { since: now };
        let provisioned = e.provisioned;
        if let Some(pool) = self.pools.get_mut(&e.pool) {
            if provisioned {
                pool.idle_provisioned.push(env);
            } else {
                pool.idle.push(env);
            }
        }
    }

    /// An invocation on `env` finished. Returns the environment to shut down if it cannot
    /// be kept (broken, or its pool was retired).
    pub fn finish(&mut self, env: EnvId, keep: bool, now: Instant) -> Option<Action> {
        let e = self.envs.get(&env)?.clone();
        let function = self.pools.get(&e.pool).map(|p| p.function.clone());
        if let Some(f) = &function {
            self.count_busy(f, -1);
        }
        let retired = self.pools.get(&e.pool).is_none_or(|p| p.retired);
        if keep && !retired {
            self.make_idle(env, now);
            None
        } else {
            self.remove_env(env);
            self.drop_pool_if_empty(e.pool);
            Some(Action::Shutdown(env))
        }
    }

    /// Removes an idle environment outside the normal timeout (at shutdown).
    pub fn remove_idle(&mut self, env: EnvId) -> bool {
        let idle = self
            .envs
            .get(&env)
            .is_some_and(|e| matches!(e.state, EnvState::Idle { .. }));
        if idle {
            let pool = self.envs.get(&env).map(|e| e.pool);
            self.remove_env(env);
            if let Some(p) = pool {
                self.drop_pool_if_empty(p);
            }
        }
        idle
    }

    /// Periodic housekeeping: scale idle environments to zero and keep provisioned pools
    /// at their target.
    pub fn tick(&mut self, now: Instant) -> Vec<Action> {
        let timeout = self.limits.idle_timeout;
        let expired: Vec<EnvId> = self
            .envs
            .iter()
            .filter(|(_, e)| !e.provisioned)
            .filter_map(|(id, e)| match e.state {
                EnvState::Idle { since } if now.saturating_duration_since(since) >= timeout => {
                    Some(*id)
                }
                _ => None,
            })
            .collect();
        let mut actions: Vec<Action> = Vec::new();
        for env in expired {
            let pool = self.envs.get(&env).map(|e| e.pool);
            self.remove_env(env);
            if let Some(p) = pool {
                self.drop_pool_if_empty(p);
            }
            actions.push(Action::Shutdown(env));
        }
        let pools: Vec<PoolId> = self.pools.keys().copied().collect();
        for pool in pools {
            actions.extend(self.refill_provisioned(pool));
        }
        actions.sort_by_key(|a| match a {
            Action::Shutdown(e) => (0, e.0),
            Action::Provision { env, .. } => (1, env.0),
        });
        actions
    }

    fn provisioned_count(&self, pool: PoolId) -> u32 {
        self.envs
            .values()
            .filter(|e| e.pool == pool && e.provisioned)
            .count() as u32
    }

    fn refill_provisioned(&mut self, pool: PoolId) -> Vec<Action> {
        let Some(p) = self.pools.get(&pool) else {
            return Vec::new();
        };
        let target = p.provisioned_target;
        let have = self.provisioned_count(pool);
        (have..target)
            .map(|_| {
                let env = self.new_env(pool, true);
                Action::Provision { pool, env }
            })
            .collect()
    }

    /// Sets a pool's provisioned concurrency; returns environments to create or shut down.
    pub fn set_provisioned(&mut self, pool: PoolId, target: u32) -> Vec<Action> {
        let Some(p) = self.pools.get_mut(&pool) else {
            return Vec::new();
        };
        p.provisioned_target = target;
        let mut actions = self.refill_provisioned(pool);
        // Shrinking: idle provisioned environments beyond the target go; busy ones become
        // on-demand and follow the idle timeout.
        let mut excess = self.provisioned_count(pool).saturating_sub(target);
        let idle: Vec<EnvId> = self
            .pools
            .get(&pool)
            .map(|p| p.idle_provisioned.clone())
            .unwrap_or_default();
        for env in idle {
            if excess == 0 {
                break;
            }
            self.remove_env(env);
            actions.push(Action::Shutdown(env));
            excess -= 1;
        }
        if excess > 0 {
            for e in self.envs.values_mut() {
                if excess == 0 {
                    break;
                }
                if e.pool == pool && e.provisioned {
                    e.provisioned = false;
                    excess -= 1;
                }
            }
        }
        actions
    }

    /// How many provisioned environments of the pool are initialised and ready.
    pub fn provisioned_ready(&self, pool: PoolId) -> u32 {
        self.envs
            .values()
            .filter(|e| e.pool == pool && e.provisioned && e.state != EnvState::Starting)
            .count() as u32
    }

    /// Sets or clears a function's reserved concurrency.
    pub fn set_reserved(
        &mut self,
        function: &FunctionKey,
        reserved: Option<u32>,
    ) -> Result<(), ReserveError> {
        let previous = self.functions.get(function).and_then(|f| f.reserved);
        let account_reserved = self
            .accounts
            .get(&function.account_id)
            .map_or(0, |a| a.reserved_total);
        let new_total = account_reserved - previous.unwrap_or(0) + reserved.unwrap_or(0);
        if reserved.is_some()
            && self.limits.account_concurrency.saturating_sub(new_total)
                < self.limits.min_unreserved
        {
            return Err(ReserveError::BelowMinimumUnreserved {
                minimum: self.limits.min_unreserved,
            });
        }
        let busy = self.functions.get(function).map_or(0, |f| f.busy);
        let account = self
            .accounts
            .entry(function.account_id.clone())
            .or_default();
        account.reserved_total = new_total;
        // Move the function's in-flight invocations between the shared and reserved pools.
        match (previous.is_some(), reserved.is_some()) {
            (false, true) => account.busy_unreserved = account.busy_unreserved.saturating_sub(busy),
            (true, false) => account.busy_unreserved += busy,
            _ => {}
        }
        self.functions.entry(function.clone()).or_default().reserved = reserved;
        Ok(())
    }

    pub fn reserved(&self, function: &FunctionKey) -> Option<u32> {
        self.functions.get(function).and_then(|f| f.reserved)
    }

    /// Unreserved capacity of an account (GetAccountSettings' UnreservedConcurrentExecutions).
    pub fn unreserved(&self, account_id: &str) -> u32 {
        self.unreserved_capacity(account_id)
    }

    /// The pool's code or configuration is gone (an update or deletion): shut its idle
    /// environments down now; busy ones are shut down when they finish.
    pub fn retire_pool(&mut self, pool: PoolId) -> Vec<Action> {
        let Some(p) = self.pools.get_mut(&pool) else {
            return Vec::new();
        };
        p.retired = true;
        p.provisioned_target = 0;
        let idle: Vec<EnvId> = p.idle.iter().chain(&p.idle_provisioned).copied().collect();
        let actions = idle
            .into_iter()
            .map(|env| {
                self.remove_env(env);
                Action::Shutdown(env)
            })
            .collect();
        self.drop_pool_if_empty(pool);
        actions
    }

    fn drop_pool_if_empty(&mut self, pool: PoolId) {
        let retired = self.pools.get(&pool).is_some_and(|p| p.retired);
        if retired && !self.envs.values().any(|e| e.pool == pool) {
            self.pools.remove(&pool);
        }
    }

    /// Forgets a function's concurrency state after it is deleted.
    pub fn forget_function(&mut self, function: &FunctionKey) {
        if let Some(f) = self.functions.get(function)
            && f.busy == 0
        {
            let _ = self.set_reserved(function, None);
            self.functions.remove(function);
        }
    }

    pub fn pool_counts(&self, pool: PoolId) -> PoolCounts {
        let mut c = PoolCounts::default();
        for e in self.envs.values().filter(|e| e.pool == pool) {
            match e.state {
                EnvState::Idle { .. } => c.idle += 1,
                EnvState::Busy => c.busy += 1,
                EnvState::Starting => c.starting += 1,
            }
            if e.provisioned {
                c.provisioned += 1;
            }
        }
        c
    }

    /// The pool has an idle environment: its next invocation is warm.
    pub fn has_idle(&self, pool: PoolId) -> bool {
        self.pools
            .get(&pool)
            .is_some_and(|p| !p.idle.is_empty() || !p.idle_provisioned.is_empty())
    }

    pub fn pools(&self) -> impl Iterator<Item = (PoolId, &FunctionKey)> {
        self.pools.iter().map(|(id, p)| (*id, &p.function))
    }

    pub fn in_flight(&self, function: &FunctionKey) -> u32 {
        self.functions.get(function).map_or(0, |f| f.busy)
    }

    pub fn environments(&self) -> usize {
        self.envs.len()
    }
}

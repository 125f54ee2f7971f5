//! Table tests of the pure core: every rule, driven by explicit events and times.

use std::time::{Duration, Instant};

use crate::core::{
    Action, Admission, Core, EnvId, FunctionKey, Limits, PoolId, ReserveError, ThrottleReason,
};
use crate::slots::{Granted, Scope};

const SEC: Duration = Duration::from_secs(1);

struct Check {
    core: Core,
    t0: Instant,
}

impl Check {
    fn new(tweak: impl FnOnce(&mut Limits)) -> Self {
        let mut limits = Limits {
            account_concurrency: 1000,
            min_unreserved: 100,
            idle_timeout: 10 * SEC,
            burst_limit: 1000,
            burst_interval: 10 * SEC,
            max_environments: 1000,
        };
        tweak(&mut limits);
        Check {
            core: Core::new(limits),
            t0: Instant::now(),
        }
    }

    fn at(&self, secs: f64) -> Instant {
        self.t0 + Duration::from_secs_f64(secs)
    }

    fn pool(&mut self, id: u64, account: &str, name: &str) -> PoolId {
        self.core
            .add_pool(PoolId(id), FunctionKey::new(account, name));
        PoolId(id)
    }

    /// Admits and, for a cold start, reports INIT done.
    fn run(&mut self, pool: PoolId, at: f64) -> Admission {
        let now = self.at(at);
        let a = self.core.admit(pool, now).unwrap();
        if let Admission::Cold { env, .. } = a {
            self.core.env_started(env, true, now);
        }
        a
    }

    fn done(&mut self, env: EnvId, at: f64) {
        assert_eq!(self.core.finish(env, true, self.at(at)), None);
    }
}

fn env_of(a: Admission) -> EnvId {
    match a {
        Admission::Warm(e) | Admission::Cold { env: e, .. } => e,
        Admission::Throttled(r) => panic!("throttled: {r:?}"),
        Admission::Short(scope) => panic!("short of slots of {scope:?}"),
    }
}

#[test]
fn cold_start_only_when_no_environment_is_idle_and_reuse_is_most_recent_first() {
    let mut c = Check::new(|_| {});
    let p = c.pool(1, "a", "f");
    let e1 = env_of(c.run(p, 0.0));
    let e2 = env_of(c.run(p, 0.0));
    assert!(
        matches!(c.run(p, 0.0), Admission::Cold { .. }),
        "both busy: cold"
    );
    c.done(e1, 1.0);
    c.done(e2, 2.0);
    // e2 was used last, so it is reused first.
    assert_eq!(c.run(p, 3.0), Admission::Warm(e2));
    assert_eq!(c.run(p, 3.0), Admission::Warm(e1));
    assert_eq!(c.core.in_flight(&FunctionKey::new("a", "f")), 3);
}

#[test]
fn idle_environments_scale_to_zero_but_busy_ones_never_do() {
    let mut c = Check::new(|l| l.idle_timeout = 10 * SEC);
    let p = c.pool(1, "a", "f");
    let idle = env_of(c.run(p, 0.0));
    let busy = env_of(c.run(p, 0.0));
    c.done(idle, 1.0);
    assert_eq!(c.core.tick(c.at(10.9)), vec![]);
    assert_eq!(c.core.tick(c.at(11.0)), vec![Action::Shutdown(idle)]);
    // The long invocation is still running at t=100: untouched.
    assert_eq!(c.core.tick(c.at(100.0)), vec![]);
    assert_eq!(c.core.pool_counts(p).busy, 1);
    c.done(busy, 100.0);
    assert_eq!(c.core.tick(c.at(110.0)), vec![Action::Shutdown(busy)]);
    assert_eq!(c.core.environments(), 0);
    // Reuse resets the idle clock.
    let e = env_of(c.run(p, 200.0));
    c.done(e, 201.0);
    assert_eq!(c.run(p, 209.0), Admission::Warm(e));
    c.done(e, 209.5);
    assert_eq!(c.core.tick(c.at(215.0)), vec![]);
}

#[test]
fn reserved_concurrency_caps_the_function() {
    let table: &[(u32, usize, Option<ThrottleReason>)] = &[
        (
            0,
            0,
            Some(ThrottleReason::ReservedFunctionConcurrentInvocationLimitExceeded),
        ),
        (
            1,
            1,
            Some(ThrottleReason::ReservedFunctionConcurrentInvocationLimitExceeded),
        ),
        (
            3,
            3,
            Some(ThrottleReason::ReservedFunctionConcurrentInvocationLimitExceeded),
        ),
    ];
    for &(reserved, admitted, reason) in table {
        let mut c = Check::new(|_| {});
        let p = c.pool(1, "a", "f");
        c.core
            .set_reserved(&FunctionKey::new("a", "f"), Some(reserved))
            .unwrap();
        for _ in 0..admitted {
            env_of(c.run(p, 0.0));
        }
        assert_eq!(
            c.run(p, 0.0),
            Admission::Throttled(reason.unwrap()),
            "R={reserved}"
        );
    }
}

#[test]
fn unreserved_functions_share_what_reservations_leave() {
    let mut c = Check::new(|l| {
        l.account_concurrency = 110;
        l.min_unreserved = 5;
    });
    let big = c.pool(1, "a", "big");
    let other = c.pool(2, "a", "other");
    let elsewhere = c.pool(3, "b", "f");
    c.core
        .set_reserved(&FunctionKey::new("a", "big"), Some(100))
        .unwrap();
    assert_eq!(c.core.unreserved("a"), 10);
    for _ in 0..10 {
        env_of(c.run(other, 0.0));
    }
    assert_eq!(
        c.run(other, 0.0),
        Admission::Throttled(ThrottleReason::ConcurrentInvocationLimitExceeded)
    );
    // The reservation is untouched by the others' load, and other accounts are separate.
    env_of(c.run(big, 0.0));
    env_of(c.run(elsewhere, 0.0));
}

#[test]
fn at_least_the_minimum_stays_unreserved() {
    let mut c = Check::new(|l| {
        l.account_concurrency = 1000;
        l.min_unreserved = 100;
    });
    let f = FunctionKey::new("a", "f");
    let g = FunctionKey::new("a", "g");
    assert!(c.core.set_reserved(&f, Some(900)).is_ok());
    assert_eq!(
        c.core.set_reserved(&g, Some(1)),
        Err(ReserveError::BelowMinimumUnreserved { minimum: 100 })
    );
    // Changing f's own reservation counts only the difference.
    assert!(c.core.set_reserved(&f, Some(850)).is_ok());
    assert!(c.core.set_reserved(&g, Some(50)).is_ok());
    assert_eq!(c.core.unreserved("a"), 100);
    c.core.set_reserved(&f, None).unwrap();
    assert_eq!(c.core.unreserved("a"), 950);
}

#[test]
fn moving_in_flight_work_between_pools_keeps_counts_right() {
    let mut c = Check::new(|l| {
        l.account_concurrency = 105;
        l.min_unreserved = 100;
    });
    let p = c.pool(1, "a", "f");
    let f = FunctionKey::new("a", "f");
    let e = env_of(c.run(p, 0.0));
    c.core.set_reserved(&f, Some(5)).unwrap();
    c.done(e, 1.0);
    // All 100 unreserved slots are available to others again, and f has its 5.
    let q = c.pool(2, "a", "g");
    for _ in 0..100 {
        env_of(c.run(q, 2.0));
    }
    for _ in 0..5 {
        env_of(c.run(p, 2.0));
    }
    assert!(matches!(c.run(p, 2.0), Admission::Throttled(_)));
}

#[test]
fn new_environments_are_rate_limited_per_function() {
    let mut c = Check::new(|l| {
        l.burst_limit = 3;
        l.burst_interval = 3 * SEC;
    });
    let p = c.pool(1, "a", "f");
    for _ in 0..3 {
        assert!(matches!(c.run(p, 0.0), Admission::Cold { .. }));
    }
    assert_eq!(
        c.run(p, 0.0),
        Admission::Throttled(ThrottleReason::FunctionInvocationRateLimitExceeded)
    );
    // One token refills per second; unused rate does not accumulate past the limit.
    assert!(matches!(c.run(p, 1.0), Admission::Cold { .. }));
    assert!(matches!(c.run(p, 1.0), Admission::Throttled(_)));
    let q = c.pool(2, "a", "g");
    assert!(
        matches!(c.run(q, 1.0), Admission::Cold { .. }),
        "per function"
    );
}

#[test]
fn failed_cold_starts_free_their_slot() {
    let mut c = Check::new(|_| {});
    let p = c.pool(1, "a", "f");
    c.core
        .set_reserved(&FunctionKey::new("a", "f"), Some(1))
        .unwrap();
    let Admission::Cold { env, .. } = c.core.admit(p, c.at(0.0)).unwrap() else {
        panic!()
    };
    c.core.env_started(env, false, c.at(0.1));
    assert_eq!(c.core.environments(), 0);
    assert!(matches!(c.run(p, 0.2), Admission::Cold { .. }));
}

#[test]
fn broken_environments_are_not_kept() {
    let mut c = Check::new(|_| {});
    let p = c.pool(1, "a", "f");
    let e = env_of(c.run(p, 0.0));
    assert_eq!(
        c.core.finish(e, false, c.at(1.0)),
        Some(Action::Shutdown(e))
    );
    assert!(matches!(c.run(p, 2.0), Admission::Cold { .. }));
}

#[test]
fn the_node_cap_evicts_the_least_recently_used_idle_environment() {
    let mut c = Check::new(|l| l.max_environments = 2);
    let p = c.pool(1, "a", "f");
    let q = c.pool(2, "a", "g");
    let old = env_of(c.run(p, 0.0));
    let newer = env_of(c.run(q, 0.0));
    c.done(old, 1.0);
    c.done(newer, 2.0);
    let r = c.pool(3, "a", "h");
    match c.run(r, 3.0) {
        Admission::Cold { evict, .. } => assert_eq!(evict, Some(old)),
        other => panic!("{other:?}"),
    }
    // Everything busy at the cap: no room.
    let busy = env_of(c.run(q, 4.0));
    assert_eq!(busy, newer);
    assert!(matches!(c.run(p, 4.0), Admission::Throttled(_)));
}

#[test]
fn provisioned_environments_are_used_first_and_never_scale_to_zero() {
    let mut c = Check::new(|l| l.idle_timeout = SEC);
    let p = c.pool(1, "a", "f");
    let actions = c.core.set_provisioned(p, 2);
    assert_eq!(actions.len(), 2);
    assert_eq!(c.core.provisioned_ready(p), 0);
    let mut provisioned = Vec::new();
    for a in actions {
        let Action::Provision { env, .. } = a else {
            panic!()
        };
        c.core.env_started(env, true, c.at(0.0));
        provisioned.push(env);
    }
    assert_eq!(c.core.provisioned_ready(p), 2);
    let a = env_of(c.run(p, 1.0));
    let b = env_of(c.run(p, 1.0));
    assert!(provisioned.contains(&a) && provisioned.contains(&b));
    // Overflow spills to an on-demand environment.
    let spill = c.run(p, 1.0);
    assert!(matches!(spill, Admission::Cold { .. }));
    c.done(a, 2.0);
    c.done(b, 2.0);
    let spill = env_of(spill);
    c.done(spill, 2.0);
    let after = c.core.tick(c.at(100.0));
    assert_eq!(after, vec![Action::Shutdown(spill)]);
    assert_eq!(c.core.provisioned_ready(p), 2);
    // Lowering the target shuts idle provisioned environments down.
    assert_eq!(c.core.set_provisioned(p, 0).len(), 2);
    assert_eq!(c.core.environments(), 0);
}

#[test]
fn failed_provisioned_environments_are_replaced_on_tick() {
    let mut c = Check::new(|_| {});
    let p = c.pool(1, "a", "f");
    let Action::Provision { env, .. } = c.core.set_provisioned(p, 1)[0] else {
        panic!()
    };
    c.core.env_started(env, false, c.at(0.0));
    let again = c.core.tick(c.at(1.0));
    assert!(matches!(again.as_slice(), [Action::Provision { .. }]));
}

#[test]
fn retired_pools_drain_and_disappear() {
    let mut c = Check::new(|_| {});
    let p = c.pool(1, "a", "f");
    let idle = env_of(c.run(p, 0.0));
    let busy = env_of(c.run(p, 0.0));
    c.done(idle, 1.0);
    assert_eq!(c.core.retire_pool(p), vec![Action::Shutdown(idle)]);
    // The busy one is shut down when its invocation ends, then the pool is gone.
    assert_eq!(
        c.core.finish(busy, true, c.at(2.0)),
        Some(Action::Shutdown(busy))
    );
    assert_eq!(c.core.pools().count(), 0);
    assert_eq!(c.core.admit(p, c.at(3.0)), None);
}

fn granted(held: u32) -> Granted {
    Granted {
        held,
        free: 0,
        live_nodes: 3,
    }
}

/// A core whose limits are the cluster's, with one pool of function `f` of account `a`.
fn in_a_cluster() -> (Check, PoolId) {
    let mut c = Check::new(|_| {});
    c.core.share_limits_with_cluster();
    let p = c.pool(1, "a", "f");
    (c, p)
}

#[test]
fn in_a_cluster_a_node_admits_only_within_the_slots_it_holds() {
    let (mut c, p) = in_a_cluster();
    let account = Scope::Unreserved("a".into());
    assert_eq!(c.run(p, 0.0), Admission::Short(account.clone()));
    let ask = c.core.slot_ask(&account).unwrap();
    assert_eq!((ask.busy, ask.limit), (0, 1000));
    assert!(c.core.slots_granted(&account, granted(2)));
    env_of(c.run(p, 0.0));
    env_of(c.run(p, 0.0));
    assert_eq!(c.run(p, 0.0), Admission::Short(account.clone()));
    assert!(
        !c.core.slots_granted(&account, granted(2)),
        "nothing more to be had"
    );
}

#[test]
fn in_a_cluster_a_reserved_function_asks_for_its_own_scope_and_its_limit_still_throttles() {
    let (mut c, p) = in_a_cluster();
    let f = FunctionKey::new("a", "f");
    c.core.set_reserved(&f, Some(1)).unwrap();
    let scope = Scope::Reserved(f);
    assert_eq!(c.run(p, 0.0), Admission::Short(scope.clone()));
    assert!(c.core.slots_granted(&scope, granted(1)));
    env_of(c.run(p, 0.0));
    assert_eq!(
        c.run(p, 0.0),
        Admission::Throttled(ThrottleReason::ReservedFunctionConcurrentInvocationLimitExceeded),
        "the node alone fills the limit: no need to ask"
    );
    assert_eq!(c.core.slot_ask(&scope).map(|a| a.want), Some(1));
}

#[test]
fn in_a_cluster_unused_slots_go_back_and_busy_ones_stay() {
    let (mut c, p) = in_a_cluster();
    let account = Scope::Unreserved("a".into());
    c.core.slots_granted(&account, granted(5));
    let e1 = env_of(c.run(p, 0.0));
    let e2 = env_of(c.run(p, 0.0));
    c.done(e2, 0.1);
    assert_eq!(
        c.core.settle_slots(&account),
        Some(2),
        "the peak stays a settling longer"
    );
    c.core.slots_recorded(&account, 2);
    assert_eq!(
        c.core.settle_slots(&account),
        Some(1),
        "then only the busy one"
    );
    c.core.slots_recorded(&account, 1);
    c.done(e1, 0.2);
    assert_eq!(
        c.core.settle_slots(&account),
        None,
        "it was busy since the last settling"
    );
    assert_eq!(c.core.settle_slots(&account), Some(0));
    c.core.slots_recorded(&account, 0);
    assert!(c.core.held_scopes().is_empty());
}

#[test]
fn without_the_cluster_a_node_never_asks() {
    let mut c = Check::new(|_| {});
    let p = c.pool(1, "a", "f");
    env_of(c.run(p, 0.0));
    assert_eq!(c.core.slot_ask(&Scope::Unreserved("a".into())), None);
}

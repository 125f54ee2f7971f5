//! The scheduler's own Prometheus metrics: counters and histograms that move when an
//! invocation or an async event ends.
//!
//! They are registered in a registry the node owns and hands in. Gauges of current state
//! (pools, queue, ledger, models, quality) are not here: the HTTP edge fills them from
//! each owner's read API when `/metrics` is scraped, so nothing in this module reads the
//! scheduler's pools and the scheduler never depends on its own observer.

use std::time::Duration;

use prometheus::core::Collector;
use prometheus::{CounterVec, HistogramOpts, HistogramVec, IntCounterVec, Opts, Registry};
use protocol::{InvocationResult, LedgerRecord, StartKind};

use crate::core::{FunctionKey, ThrottleReason};

/// Buckets for durations, from 100 µs to Lambda's 900 s maximum timeout.
pub const DURATION_BUCKETS: &[f64] = &[
    0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5,
    5.0, 10.0, 30.0, 60.0, 120.0, 300.0, 600.0, 900.0,
];

/// Where a discarded or completed async event's record went.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DeliveryTarget {
    OnSuccess,
    OnFailure,
    DeadLetter,
}

impl DeliveryTarget {
    fn as_str(self) -> &'static str {
        match self {
            DeliveryTarget::OnSuccess => "on_success",
            DeliveryTarget::OnFailure => "on_failure",
            DeliveryTarget::DeadLetter => "dead_letter",
        }
    }
}

const FUNCTION: &[&str] = &["account", "function"];

fn register<C: Collector + Clone + 'static>(registry: &Registry, c: C) -> prometheus::Result<C> {
    registry.register(Box::new(c.clone()))?;
    Ok(c)
}

fn counter(
    registry: &Registry,
    name: &str,
    help: &str,
    labels: &[&str],
) -> prometheus::Result<IntCounterVec> {
    register(registry, IntCounterVec::new(Opts::new(name, help), labels)?)
}

fn float_counter(
    registry: &Registry,
    name: &str,
    help: &str,
    labels: &[&str],
) -> prometheus::Result<CounterVec> {
    register(registry, CounterVec::new(Opts::new(name, help), labels)?)
}

fn histogram(
    registry: &Registry,
    name: &str,
    help: &str,
    labels: &[&str],
) -> prometheus::Result<HistogramVec> {
    let opts = HistogramOpts::new(name, help).buckets(DURATION_BUCKETS.to_vec());
    register(registry, HistogramVec::new(opts, labels)?)
}

/// Invocations by how they ended and started, and those refused.
#[derive(Clone)]
struct Counts {
    invocations: IntCounterVec,
    cold_starts: IntCounterVec,
    throttles: IntCounterVec,
}

impl Counts {
    fn register(r: &Registry) -> prometheus::Result<Self> {
        Ok(Counts {
            invocations: counter(
                r,
                "lamina_invocations_total",
                "Invocations by outcome and start kind.",
                &["account", "function", "version", "outcome", "start"],
            )?,
            cold_starts: counter(
                r,
                "lamina_cold_starts_total",
                "Invocations that had to initialise a new environment.",
                FUNCTION,
            )?,
            throttles: counter(
                r,
                "lamina_throttles_total",
                "Invocations refused by a concurrency or rate limit, by Lambda's reason.",
                &["account", "function", "reason"],
            )?,
        })
    }
}

/// Where an invocation's time went: the guest's run, its INIT or restore, the platform.
#[derive(Clone)]
struct Timings {
    duration: HistogramVec,
    init: HistogramVec,
    restore: HistogramVec,
    overhead: HistogramVec,
}

impl Timings {
    fn register(r: &Registry) -> prometheus::Result<Self> {
        Ok(Timings {
            duration: histogram(
                r,
                "lamina_invocation_duration_seconds",
                "Time the guest ran for an invocation, INIT excluded.",
                FUNCTION,
            )?,
            init: histogram(
                r,
                "lamina_init_duration_seconds",
                "INIT time of cold starts.",
                FUNCTION,
            )?,
            restore: histogram(
                r,
                "lamina_restore_duration_seconds",
                "Time to restore a SnapStart snapshot instead of running INIT.",
                FUNCTION,
            )?,
            overhead: histogram(
                r,
                "lamina_platform_overhead_seconds",
                "End-to-end time of an invocation minus the guest's INIT and run time.",
                FUNCTION,
            )?,
        })
    }
}

/// What the ledger billed, as it was billed.
#[derive(Clone)]
struct Billing {
    gb_seconds: CounterVec,
    requests: IntCounterVec,
    cost: CounterVec,
}

impl Billing {
    fn register(r: &Registry) -> prometheus::Result<Self> {
        Ok(Billing {
            gb_seconds: float_counter(
                r,
                "lamina_billed_gigabyte_seconds_total",
                "Billed compute: billed duration times configured memory.",
                FUNCTION,
            )?,
            requests: counter(
                r,
                "lamina_billed_requests_total",
                "Billed requests.",
                FUNCTION,
            )?,
            cost: float_counter(
                r,
                "lamina_billed_cost_usd_total",
                "Cost at the configured prices, in USD.",
                FUNCTION,
            )?,
        })
    }
}

/// What the scheduler counts as invocations end or are refused. Cheap to clone.
#[derive(Clone)]
pub struct InvocationMetrics {
    counts: Counts,
    timings: Timings,
    billing: Billing,
}

impl std::fmt::Debug for InvocationMetrics {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("InvocationMetrics").finish_non_exhaustive()
    }
}

impl InvocationMetrics {
    /// Adds the invocation metrics to `registry`; fails if they are already there.
    pub fn register(registry: &Registry) -> prometheus::Result<Self> {
        Ok(InvocationMetrics {
            counts: Counts::register(registry)?,
            timings: Timings::register(registry)?,
            billing: Billing::register(registry)?,
        })
    }

    /// Counts a finished invocation; `overhead` is its end-to-end time minus guest time.
    pub fn invocation(&self, record: &LedgerRecord, result: &InvocationResult, overhead: Duration) {
        let function = [record.account_id.as_str(), record.function_name.as_str()];
        self.counts
            .invocations
            .with_label_values(&[
                function[0],
                function[1],
                record.executed_version.as_str(),
                result.outcome.as_str(),
                result.start.as_str(),
            ])
            .inc();
        let t = &self.timings;
        t.duration
            .with_label_values(&function)
            .observe(result.duration.as_secs_f64());
        if let Some(init) = result.init_duration {
            let histogram = if result.start == StartKind::Snapshot {
                &t.restore
            } else {
                &t.init
            };
            histogram
                .with_label_values(&function)
                .observe(init.as_secs_f64());
        }
        if result.start != StartKind::Warm {
            self.counts.cold_starts.with_label_values(&function).inc();
        }
        t.overhead
            .with_label_values(&function)
            .observe(overhead.as_secs_f64());
        if record.billed_ms > 0 {
            let b = &self.billing;
            b.requests.with_label_values(&function).inc();
            b.gb_seconds
                .with_label_values(&function)
                .inc_by(record.gb_seconds);
            b.cost.with_label_values(&function).inc_by(record.cost_usd);
        }
    }

    pub fn throttle(&self, function: &FunctionKey, reason: ThrottleReason) {
        self.counts
            .throttles
            .with_label_values(&[&*function.account_id, &*function.name, reason.as_str()])
            .inc();
    }
}

/// What the dispatcher counts as async events wait, fail, end and are delivered. Cheap
/// to clone.
#[derive(Clone)]
pub struct AsyncMetrics {
    queue_wait: HistogramVec,
    retries: IntCounterVec,
    deliveries: IntCounterVec,
    dropped: IntCounterVec,
}

impl std::fmt::Debug for AsyncMetrics {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AsyncMetrics").finish_non_exhaustive()
    }
}

impl AsyncMetrics {
    /// Adds the async-event metrics to `registry`; fails if they are already there.
    pub fn register(r: &Registry) -> prometheus::Result<Self> {
        Ok(AsyncMetrics {
            queue_wait: histogram(
                r,
                "lamina_async_queue_wait_seconds",
                "Age of an async event when one of its attempts starts.",
                FUNCTION,
            )?,
            retries: counter(
                r,
                "lamina_async_retries_total",
                "Async attempts that failed and were scheduled again.",
                FUNCTION,
            )?,
            deliveries: counter(
                r,
                "lamina_async_deliveries_total",
                "Records sent to destinations and dead-letter targets.",
                &["account", "function", "target", "result"],
            )?,
            dropped: counter(
                r,
                "lamina_async_events_dropped_total",
                "Async events that ended without success, by condition.",
                &["account", "function", "reason"],
            )?,
        })
    }

    pub fn queue_wait(&self, account: &str, function: &str, waited: Duration) {
        self.queue_wait
            .with_label_values(&[account, function])
            .observe(waited.as_secs_f64());
    }

    pub fn retry(&self, account: &str, function: &str) {
        self.retries.with_label_values(&[account, function]).inc();
    }

    pub fn delivery(&self, account: &str, function: &str, target: DeliveryTarget, ok: bool) {
        let result = if ok { "delivered" } else { "failed" };
        self.deliveries
            .with_label_values(&[account, function, target.as_str(), result])
            .inc();
    }

    pub fn dropped(&self, account: &str, function: &str, reason: &str) {
        self.dropped
            .with_label_values(&[account, function, reason])
            .inc();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn each_family_registers_once_per_registry() {
        let registry = Registry::new();
        InvocationMetrics::register(&registry).unwrap();
        AsyncMetrics::register(&registry).unwrap();
        assert!(InvocationMetrics::register(&registry).is_err());
        assert!(AsyncMetrics::register(&registry).is_err());
    }
}

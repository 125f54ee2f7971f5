//! The scheduler's own Prometheus metrics: counters and histograms that move when an
//! invocation or an async event ends.
//!
//! They are registered in a registry the node owns and hands in. Gauges of current state
//! (pools, queue, ledger, models, quality) are not here: the HTTP edge fills them from
//! each owner's read API when `/metrics` is scraped, so nothing in this module reads the
//! scheduler's pools and the scheduler never depends on its own observer.

use std::sync::OnceLock;
use std::time::Duration;

use prometheus::core::Collector;
use prometheus::{
    Counter, CounterVec, Histogram, HistogramOpts, HistogramVec, IntCounter, IntCounterVec, Opts,
    Registry,
};
use protocol::{InvocationResult, LedgerRecord, Outcome, StartKind};

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

    /// Resolves the series one pool's invocations move, so that counting an invocation
    /// looks up no labels and takes no lock: a pool serves one version of one function.
    pub fn pool_series(&self, account: &str, function: &str, version: &str) -> PoolSeries {
        let labels = [account, function];
        let t = &self.timings;
        let b = &self.billing;
        PoolSeries {
            invocations: self.counts.invocations.clone(),
            labels: [account.to_owned(), function.to_owned(), version.to_owned()],
            by_ending: Default::default(),
            cold_starts: self.counts.cold_starts.with_label_values(&labels),
            duration: t.duration.with_label_values(&labels),
            init: t.init.with_label_values(&labels),
            restore: t.restore.with_label_values(&labels),
            overhead: t.overhead.with_label_values(&labels),
            requests: b.requests.with_label_values(&labels),
            gb_seconds: b.gb_seconds.with_label_values(&labels),
            cost: b.cost.with_label_values(&labels),
        }
    }

    pub fn throttle(&self, function: &FunctionKey, reason: ThrottleReason) {
        self.counts
            .throttles
            .with_label_values(&[&*function.account_id, &*function.name, reason.as_str()])
            .inc();
    }
}

const OUTCOMES: usize = 5;
const STARTS: usize = 3;

fn outcome_index(outcome: Outcome) -> usize {
    match outcome {
        Outcome::Success => 0,
        Outcome::FunctionError => 1,
        Outcome::Timeout => 2,
        Outcome::OutOfMemory => 3,
        Outcome::PlatformError => 4,
    }
}

fn start_index(start: StartKind) -> usize {
    match start {
        StartKind::Cold => 0,
        StartKind::Warm => 1,
        StartKind::Snapshot => 2,
    }
}

/// The metric series of one pool (one version of one function), resolved when the pool
/// is created. Counting an invocation through it only touches atomics.
pub struct PoolSeries {
    invocations: IntCounterVec,
    /// account, function, version: the labels `by_ending` resolves with.
    labels: [String; 3],
    /// `lamina_invocations_total` by outcome and start, resolved on first use so that
    /// endings a pool never has do not appear as zero series.
    by_ending: [[OnceLock<IntCounter>; STARTS]; OUTCOMES],
    cold_starts: IntCounter,
    duration: Histogram,
    init: Histogram,
    restore: Histogram,
    overhead: Histogram,
    requests: IntCounter,
    gb_seconds: Counter,
    cost: Counter,
}

impl std::fmt::Debug for PoolSeries {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PoolSeries")
            .field("labels", &self.labels)
            .finish_non_exhaustive()
    }
}

impl PoolSeries {
    /// Counts a finished invocation; `overhead` is its end-to-end time minus guest time.
    pub fn invocation(&self, record: &LedgerRecord, result: &InvocationResult, overhead: Duration) {
        self.by_ending[outcome_index(result.outcome)][start_index(result.start)]
            .get_or_init(|| {
                let [account, function, version] = &self.labels;
                self.invocations.with_label_values(&[
                    account.as_str(),
                    function,
                    version,
                    result.outcome.as_str(),
                    result.start.as_str(),
                ])
            })
            .inc();
        self.duration.observe(result.duration.as_secs_f64());
        if let Some(init) = result.init_duration {
            let histogram = if result.start == StartKind::Snapshot {
                &self.restore
            } else {
                &self.init
            };
            histogram.observe(init.as_secs_f64());
        }
        if result.start != StartKind::Warm {
            self.cold_starts.inc();
        }
        self.overhead.observe(overhead.as_secs_f64());
        if record.billed_ms > 0 {
            self.requests.inc();
            self.gb_seconds.inc_by(record.gb_seconds);
            self.cost.inc_by(record.cost_usd);
        }
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

    fn ended(outcome: Outcome, start: StartKind) -> (LedgerRecord, InvocationResult) {
        let at = std::time::SystemTime::UNIX_EPOCH;
        let result = InvocationResult {
            request_id: "r".into(),
            version: "7".into(),
            response: protocol::Response::Event(bytes::Bytes::new()),
            outcome,
            error: None,
            start,
            init_duration: (start != StartKind::Warm).then_some(Duration::from_millis(3)),
            duration: Duration::from_millis(2),
            started_at: at,
            ended_at: at,
            memory_mb: 128,
            max_memory_used_mb: 1,
            log: String::new(),
            environment_reusable: true,
        };
        let record = LedgerRecord {
            request_id: "r".into(),
            attempt: 1,
            account_id: "111111111111".into(),
            caller_account_id: "111111111111".into(),
            function_name: "f".into(),
            executed_version: "7".into(),
            invocation_type: "request_response".into(),
            received_at_us: 0,
            started_at_us: 0,
            ended_at_us: 0,
            init_ms: 3.0,
            duration_ms: 2.0,
            billed_ms: 5,
            memory_size_mb: 128,
            max_memory_used_mb: 1,
            gb_seconds: 0.000625,
            outcome: outcome.as_str().into(),
            error_type: None,
            start_kind: start.as_str().into(),
            request_bytes: 0,
            response_bytes: 0,
            cost_usd: 0.00001,
        };
        (record, result)
    }

    #[test]
    fn pools_of_one_function_count_into_its_series_and_only_endings_seen_appear() {
        let registry = Registry::new();
        let metrics = InvocationMetrics::register(&registry).unwrap();
        // Two revisions of one version: two pools, one set of series.
        let first = metrics.pool_series("111111111111", "f", "7");
        let second = metrics.pool_series("111111111111", "f", "7");
        let (record, cold) = ended(Outcome::Success, StartKind::Cold);
        first.invocation(&record, &cold, Duration::from_micros(40));
        let (record, warm) = ended(Outcome::Success, StartKind::Warm);
        second.invocation(&record, &warm, Duration::from_micros(40));
        let (record, failed) = ended(Outcome::Timeout, StartKind::Warm);
        second.invocation(&record, &failed, Duration::from_micros(40));

        let text = prometheus::TextEncoder::new()
            .encode_to_string(&registry.gather())
            .unwrap();
        let labels = r#"account="111111111111",function="f""#;
        let ending = |outcome: &str, start: &str| {
            format!(
                r#"lamina_invocations_total{{{labels},outcome="{outcome}",start="{start}",version="7"}}"#
            )
        };
        for line in [
            format!("{} 1", ending("success", "cold")),
            format!("{} 1", ending("success", "warm")),
            format!("{} 1", ending("timeout", "warm")),
            format!("lamina_cold_starts_total{{{labels}}} 1"),
            format!("lamina_init_duration_seconds_count{{{labels}}} 1"),
            format!("lamina_invocation_duration_seconds_count{{{labels}}} 3"),
            format!("lamina_billed_requests_total{{{labels}}} 3"),
        ] {
            assert!(
                text.contains(&format!("{line}\n")),
                "missing {line} in\n{text}"
            );
        }
        assert!(
            !text.contains(&ending("timeout", "cold")),
            "an ending never seen has no series:\n{text}"
        );
    }
}

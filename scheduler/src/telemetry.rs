//! Prometheus metrics for invocations, environments, concurrency and the async queue.
//!
//! Counters and histograms move as things happen; gauges describing current state are
//! filled from the scheduler's snapshot when `/metrics` is scraped, so they are never
//! stale and cost nothing between scrapes.

use std::time::Duration;

use prometheus::{
    HistogramOpts, HistogramVec, IntCounterVec, IntGauge, IntGaugeVec, Opts, Registry,
};
use protocol::quality::Scores;
use protocol::{InvocationResult, LedgerRecord, StartKind};

use crate::core::{FunctionKey, ThrottleReason};
use crate::scheduler::PoolSnapshot;

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

/// The metrics registry and every collector the scheduler feeds.
#[derive(Clone)]
pub struct Telemetry {
    registry: Registry,
    invocations: IntCounterVec,
    duration: HistogramVec,
    init_duration: HistogramVec,
    restore_duration: HistogramVec,
    overhead: HistogramVec,
    queue_wait: HistogramVec,
    cold_starts: IntCounterVec,
    throttles: IntCounterVec,
    billed_gb_seconds: prometheus::CounterVec,
    billed_requests: IntCounterVec,
    billed_cost: prometheus::CounterVec,
    retries: IntCounterVec,
    deliveries: IntCounterVec,
    dropped: IntCounterVec,
    concurrent: IntGaugeVec,
    account_limit: IntGaugeVec,
    reserved: IntGaugeVec,
    environments: IntGaugeVec,
    provisioned: IntGaugeVec,
    queue_depth: IntGauge,
    queue_oldest_age: prometheus::Gauge,
    ledger_backlog: IntGauge,
    ledger_lag: prometheus::Gauge,
    models_loaded: IntGauge,
    model_bytes: IntGauge,
    model_loads: prometheus::IntCounter,
    model_evictions: prometheus::IntCounter,
    model_quality: prometheus::GaugeVec,
    model_feedback_samples: IntGaugeVec,
}

impl std::fmt::Debug for Telemetry {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Telemetry").finish_non_exhaustive()
    }
}

const FUNCTION: &[&str] = &["account", "function"];

fn counter(registry: &Registry, name: &str, help: &str, labels: &[&str]) -> IntCounterVec {
    let c = IntCounterVec::new(Opts::new(name, help), labels).expect("valid metric");
    registry
        .register(Box::new(c.clone()))
        .expect("unique metric");
    c
}

fn float_counter(
    registry: &Registry,
    name: &str,
    help: &str,
    labels: &[&str],
) -> prometheus::CounterVec {
    let c = prometheus::CounterVec::new(Opts::new(name, help), labels).expect("valid metric");
    registry
        .register(Box::new(c.clone()))
        .expect("unique metric");
    c
}

fn histogram(registry: &Registry, name: &str, help: &str, labels: &[&str]) -> HistogramVec {
    let opts = HistogramOpts::new(name, help).buckets(DURATION_BUCKETS.to_vec());
    let h = HistogramVec::new(opts, labels).expect("valid metric");
    registry
        .register(Box::new(h.clone()))
        .expect("unique metric");
    h
}

fn gauge(registry: &Registry, name: &str, help: &str, labels: &[&str]) -> IntGaugeVec {
    let g = IntGaugeVec::new(Opts::new(name, help), labels).expect("valid metric");
    registry
        .register(Box::new(g.clone()))
        .expect("unique metric");
    g
}

fn float_gauge(
    registry: &Registry,
    name: &str,
    help: &str,
    labels: &[&str],
) -> prometheus::GaugeVec {
    let g = prometheus::GaugeVec::new(Opts::new(name, help), labels).expect("valid metric");
    registry
        .register(Box::new(g.clone()))
        .expect("unique metric");
    g
}

fn scalar_gauge(registry: &Registry, name: &str, help: &str) -> prometheus::Gauge {
    let g = prometheus::Gauge::new(name, help).expect("valid metric");
    registry
        .register(Box::new(g.clone()))
        .expect("unique metric");
    g
}

fn scalar_counter(registry: &Registry, name: &str, help: &str) -> prometheus::IntCounter {
    let c = prometheus::IntCounter::new(name, help).expect("valid metric");
    registry
        .register(Box::new(c.clone()))
        .expect("unique metric");
    c
}

fn scalar_int_gauge(registry: &Registry, name: &str, help: &str) -> IntGauge {
    let g = IntGauge::new(name, help).expect("valid metric");
    registry
        .register(Box::new(g.clone()))
        .expect("unique metric");
    g
}

impl Default for Telemetry {
    fn default() -> Self {
        Self::new()
    }
}

impl Telemetry {
    pub fn new() -> Self {
        let r = Registry::new();
        #[cfg(target_os = "linux")]
        {
            let process = prometheus::process_collector::ProcessCollector::for_self();
            r.register(Box::new(process)).expect("unique metric");
        }
        Telemetry {
            invocations: counter(
                &r,
                "lamina_invocations_total",
                "Invocations by outcome and start kind.",
                &["account", "function", "version", "outcome", "start"],
            ),
            duration: histogram(
                &r,
                "lamina_invocation_duration_seconds",
                "Time the guest ran for an invocation, INIT excluded.",
                FUNCTION,
            ),
            init_duration: histogram(
                &r,
                "lamina_init_duration_seconds",
                "INIT time of cold starts.",
                FUNCTION,
            ),
            restore_duration: histogram(
                &r,
                "lamina_restore_duration_seconds",
                "Time to restore a SnapStart snapshot instead of running INIT.",
                FUNCTION,
            ),
            overhead: histogram(
                &r,
                "lamina_platform_overhead_seconds",
                "End-to-end time of an invocation minus the guest's INIT and run time.",
                FUNCTION,
            ),
            queue_wait: histogram(
                &r,
                "lamina_async_queue_wait_seconds",
                "Age of an async event when one of its attempts starts.",
                FUNCTION,
            ),
            cold_starts: counter(
                &r,
                "lamina_cold_starts_total",
                "Invocations that had to initialise a new environment.",
                FUNCTION,
            ),
            throttles: counter(
                &r,
                "lamina_throttles_total",
                "Invocations refused by a concurrency or rate limit, by Lambda's reason.",
                &["account", "function", "reason"],
            ),
            billed_gb_seconds: float_counter(
                &r,
                "lamina_billed_gigabyte_seconds_total",
                "Billed compute: billed duration times configured memory.",
                FUNCTION,
            ),
            billed_requests: counter(
                &r,
                "lamina_billed_requests_total",
                "Billed requests.",
                FUNCTION,
            ),
            billed_cost: float_counter(
                &r,
                "lamina_billed_cost_usd_total",
                "Cost at the configured prices, in USD.",
                FUNCTION,
            ),
            retries: counter(
                &r,
                "lamina_async_retries_total",
                "Async attempts that failed and were scheduled again.",
                FUNCTION,
            ),
            deliveries: counter(
                &r,
                "lamina_async_deliveries_total",
                "Records sent to destinations and dead-letter targets.",
                &["account", "function", "target", "result"],
            ),
            dropped: counter(
                &r,
                "lamina_async_events_dropped_total",
                "Async events that ended without success, by condition.",
                &["account", "function", "reason"],
            ),
            concurrent: gauge(
                &r,
                "lamina_concurrent_executions",
                "Invocations running now.",
                FUNCTION,
            ),
            account_limit: gauge(
                &r,
                "lamina_account_concurrency_limit",
                "Concurrent executions an account may use.",
                &["account"],
            ),
            reserved: gauge(
                &r,
                "lamina_reserved_concurrency",
                "A function's reserved concurrency.",
                FUNCTION,
            ),
            environments: gauge(
                &r,
                "lamina_environments",
                "Execution environments by state.",
                &["account", "function", "version", "state"],
            ),
            provisioned: gauge(
                &r,
                "lamina_provisioned_environments",
                "Provisioned environments initialised and ready.",
                &["account", "function", "version"],
            ),
            queue_depth: scalar_int_gauge(
                &r,
                "lamina_async_queue_depth",
                "Async events accepted and not yet finished.",
            ),
            queue_oldest_age: scalar_gauge(
                &r,
                "lamina_async_queue_oldest_age_seconds",
                "Age of the oldest async event still queued (0 when empty).",
            ),
            ledger_backlog: scalar_int_gauge(
                &r,
                "lamina_ledger_backlog_records",
                "Ledger and log records spooled to disk but not yet in the database.",
            ),
            ledger_lag: scalar_gauge(
                &r,
                "lamina_ledger_write_lag_seconds",
                "Age of the oldest record not yet in the database (0 when none).",
            ),
            models_loaded: scalar_int_gauge(
                &r,
                "lamina_models_loaded",
                "Models loaded on this node (each shared by every function using it).",
            ),
            model_bytes: scalar_int_gauge(
                &r,
                "lamina_model_cache_bytes",
                "Estimated resident memory of the loaded models.",
            ),
            model_loads: scalar_counter(
                &r,
                "lamina_model_loads_total",
                "Models parsed and optimised (first use, or reuse after eviction).",
            ),
            model_evictions: scalar_counter(
                &r,
                "lamina_model_evictions_total",
                "Models dropped for idleness or to make room in the budget.",
            ),
            model_quality: float_gauge(
                &r,
                "lamina_model_quality",
                "A model version's score over the quality window, from ground truth sent as \
                 feedback: mae and rmse for regressors; accuracy and macro precision, recall \
                 and f1 for classifiers.",
                &["account", "function", "version", "metric"],
            ),
            model_feedback_samples: gauge(
                &r,
                "lamina_model_feedback_samples",
                "Rows of ground truth a model version's quality scores are computed from.",
                &["account", "function", "version"],
            ),
            registry: r,
        }
    }

    /// The registry other parts of the process (the HTTP edge) add their metrics to.
    pub fn registry(&self) -> &Registry {
        &self.registry
    }

    /// Counts a finished invocation; `overhead` is its end-to-end time minus guest time.
    pub fn invocation(&self, record: &LedgerRecord, result: &InvocationResult, overhead: Duration) {
        let function = [record.account_id.as_str(), record.function_name.as_str()];
        self.invocations
            .with_label_values(&[
                function[0],
                function[1],
                record.executed_version.as_str(),
                result.outcome.as_str(),
                result.start.as_str(),
            ])
            .inc();
        self.duration
            .with_label_values(&function)
            .observe(result.duration.as_secs_f64());
        if let Some(init) = result.init_duration {
            let histogram = if result.start == StartKind::Snapshot {
                &self.restore_duration
            } else {
                &self.init_duration
            };
            histogram
                .with_label_values(&function)
                .observe(init.as_secs_f64());
        }
        if result.start != StartKind::Warm {
            self.cold_starts.with_label_values(&function).inc();
        }
        self.overhead
            .with_label_values(&function)
            .observe(overhead.as_secs_f64());
        if record.billed_ms > 0 {
            self.billed_requests.with_label_values(&function).inc();
            self.billed_gb_seconds
                .with_label_values(&function)
                .inc_by(record.gb_seconds);
            self.billed_cost
                .with_label_values(&function)
                .inc_by(record.cost_usd);
        }
    }

    pub fn throttle(&self, function: &FunctionKey, reason: ThrottleReason) {
        self.throttles
            .with_label_values(&[&*function.account_id, &*function.name, reason.as_str()])
            .inc();
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

    /// Refreshes the state gauges from the scheduler's current view.
    pub fn observe_pools(&self, pools: &[PoolSnapshot], account_limit: u32) {
        self.environments.reset();
        self.provisioned.reset();
        self.concurrent.reset();
        self.account_limit.reset();
        self.reserved.reset();
        for pool in pools {
            let account = &*pool.function.account_id;
            let name = &*pool.function.name;
            let version = pool.version();
            let counts = &pool.counts;
            for (state, n) in [
                ("idle", counts.idle),
                ("busy", counts.busy),
                ("initializing", counts.starting),
            ] {
                self.environments
                    .with_label_values(&[account, name, version, state])
                    .add(i64::from(n));
            }
            if counts.provisioned > 0 {
                self.provisioned
                    .with_label_values(&[account, name, version])
                    .add(i64::from(counts.provisioned));
            }
            self.concurrent
                .with_label_values(&[account, name])
                .set(i64::from(pool.in_flight_function));
            self.account_limit
                .with_label_values(&[account])
                .set(i64::from(account_limit));
            if let Some(reserved) = pool.reserved {
                self.reserved
                    .with_label_values(&[account, name])
                    .set(i64::from(reserved));
            }
        }
    }

    /// Sets the async queue gauges; `oldest_age` is `None` when the queue is empty.
    pub fn observe_queue(&self, depth: u64, oldest_age: Option<Duration>) {
        self.queue_depth.set(depth as i64);
        self.queue_oldest_age
            .set(oldest_age.map_or(0.0, |a| a.as_secs_f64()));
    }

    /// Sets the ledger gauges from the spool's counters.
    pub fn observe_ledger(&self, backlog: u64, lag: Duration) {
        self.ledger_backlog.set(backlog as i64);
        self.ledger_lag.set(lag.as_secs_f64());
    }

    /// Sets the model-cache metrics from the backend's cumulative figures.
    pub fn observe_models(&self, stats: &protocol::ModelCacheStats) {
        self.models_loaded.set(stats.models as i64);
        self.model_bytes.set(stats.resident_bytes as i64);
        // The backend counts from its start, as these counters do: add what is new.
        self.model_loads
            .inc_by(stats.loads.saturating_sub(self.model_loads.get()));
        self.model_evictions
            .inc_by(stats.evictions.saturating_sub(self.model_evictions.get()));
    }

    /// Sets the model quality gauges to `scores`; versions without feedback in the window
    /// disappear from them.
    pub fn observe_quality<'a>(
        &self,
        scores: impl IntoIterator<Item = (&'a str, &'a str, &'a str, &'a Scores)>,
    ) {
        self.model_quality.reset();
        self.model_feedback_samples.reset();
        for (account, function, version, s) in scores {
            for (metric, value) in s.metrics() {
                self.model_quality
                    .with_label_values(&[account, function, version, metric])
                    .set(value);
            }
            self.model_feedback_samples
                .with_label_values(&[account, function, version])
                .set(s.samples() as i64);
        }
    }

    /// The text exposition format of every registered metric.
    pub fn encode(&self) -> String {
        let families = self.registry.gather();
        prometheus::TextEncoder::new()
            .encode_to_string(&families)
            .unwrap_or_default()
    }
}

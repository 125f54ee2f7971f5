//! Gauges of the node's current state: environments and concurrency, the async queue, the
//! ledger spool, loaded models and model quality.
//!
//! Each is filled from its owner's read API (the scheduler's snapshot, the queue, the
//! spool's counters, the backend's model cache, the store's quality sums) when `/metrics`
//! is scraped, so they are never stale and cost nothing between scrapes, and the owners
//! know nothing of Prometheus.

use std::time::Duration;

use prometheus::core::Collector;
use prometheus::{Gauge, GaugeVec, IntCounter, IntGauge, IntGaugeVec, Opts, Registry};
use protocol::ModelCacheStats;
use protocol::quality::Scores;
use scheduler::PoolSnapshot;

const FUNCTION: &[&str] = &["account", "function"];

fn register<C: Collector + Clone + 'static>(registry: &Registry, c: C) -> prometheus::Result<C> {
    registry.register(Box::new(c.clone()))?;
    Ok(c)
}

fn gauge(r: &Registry, name: &str, help: &str, labels: &[&str]) -> prometheus::Result<IntGaugeVec> {
    register(r, IntGaugeVec::new(Opts::new(name, help), labels)?)
}

fn scalar_int_gauge(r: &Registry, name: &str, help: &str) -> prometheus::Result<IntGauge> {
    register(r, IntGauge::new(name, help)?)
}

fn scalar_gauge(r: &Registry, name: &str, help: &str) -> prometheus::Result<Gauge> {
    register(r, Gauge::new(name, help)?)
}

fn scalar_counter(r: &Registry, name: &str, help: &str) -> prometheus::Result<IntCounter> {
    register(r, IntCounter::new(name, help)?)
}

/// Environments by state and concurrency in use, from the scheduler's snapshot.
#[derive(Clone)]
pub struct PoolGauges {
    concurrent: IntGaugeVec,
    account_limit: IntGaugeVec,
    reserved: IntGaugeVec,
    environments: IntGaugeVec,
    provisioned: IntGaugeVec,
}

impl PoolGauges {
    fn register(r: &Registry) -> prometheus::Result<Self> {
        Ok(PoolGauges {
            concurrent: gauge(
                r,
                "lamina_concurrent_executions",
                "Invocations running now.",
                FUNCTION,
            )?,
            account_limit: gauge(
                r,
                "lamina_account_concurrency_limit",
                "Concurrent executions an account may use.",
                &["account"],
            )?,
            reserved: gauge(
                r,
                "lamina_reserved_concurrency",
                "A function's reserved concurrency.",
                FUNCTION,
            )?,
            environments: gauge(
                r,
                "lamina_environments",
                "Execution environments by state.",
                &["account", "function", "version", "state"],
            )?,
            provisioned: gauge(
                r,
                "lamina_provisioned_environments",
                "Provisioned environments initialised and ready.",
                &["account", "function", "version"],
            )?,
        })
    }

    /// Sets the gauges to `pools`; functions without pools disappear from them.
    pub fn observe(&self, pools: &[PoolSnapshot], account_limit: u32) {
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
}

/// The async queue's depth and the age of its oldest event.
#[derive(Clone)]
pub struct QueueGauges {
    depth: IntGauge,
    oldest_age: Gauge,
}

impl QueueGauges {
    fn register(r: &Registry) -> prometheus::Result<Self> {
        Ok(QueueGauges {
            depth: scalar_int_gauge(
                r,
                "lamina_async_queue_depth",
                "Async events accepted and not yet finished.",
            )?,
            oldest_age: scalar_gauge(
                r,
                "lamina_async_queue_oldest_age_seconds",
                "Age of the oldest async event still queued (0 when empty).",
            )?,
        })
    }

    /// `oldest_age` is `None` when the queue is empty.
    pub fn observe(&self, depth: u64, oldest_age: Option<Duration>) {
        self.depth.set(depth as i64);
        self.oldest_age
            .set(oldest_age.map_or(0.0, |a| a.as_secs_f64()));
    }
}

/// Ledger records spooled and not yet in the database.
#[derive(Clone)]
pub struct LedgerGauges {
    backlog: IntGauge,
    lag: Gauge,
}

impl LedgerGauges {
    fn register(r: &Registry) -> prometheus::Result<Self> {
        Ok(LedgerGauges {
            backlog: scalar_int_gauge(
                r,
                "lamina_ledger_backlog_records",
                "Ledger and log records spooled to disk but not yet in the database.",
            )?,
            lag: scalar_gauge(
                r,
                "lamina_ledger_write_lag_seconds",
                "Age of the oldest record not yet in the database (0 when none).",
            )?,
        })
    }

    pub fn observe(&self, backlog: u64, lag: Duration) {
        self.backlog.set(backlog as i64);
        self.lag.set(lag.as_secs_f64());
    }
}

/// The node's model cache. Its loads and evictions are counters the backend keeps; they
/// are brought up to the backend's figures at each scrape.
#[derive(Clone)]
pub struct ModelGauges {
    loaded: IntGauge,
    bytes: IntGauge,
    loads: IntCounter,
    evictions: IntCounter,
}

impl ModelGauges {
    fn register(r: &Registry) -> prometheus::Result<Self> {
        Ok(ModelGauges {
            loaded: scalar_int_gauge(
                r,
                "lamina_models_loaded",
                "Models loaded on this node (each shared by every function using it).",
            )?,
            bytes: scalar_int_gauge(
                r,
                "lamina_model_cache_bytes",
                "Estimated resident memory of the loaded models.",
            )?,
            loads: scalar_counter(
                r,
                "lamina_model_loads_total",
                "Models parsed and optimised (first use, or reuse after eviction).",
            )?,
            evictions: scalar_counter(
                r,
                "lamina_model_evictions_total",
                "Models dropped for idleness or to make room in the budget.",
            )?,
        })
    }

    pub fn observe(&self, stats: &ModelCacheStats) {
        self.loaded.set(stats.models as i64);
        self.bytes.set(stats.resident_bytes as i64);
        // The backend counts from its start, as these counters do: add what is new.
        self.loads
            .inc_by(stats.loads.saturating_sub(self.loads.get()));
        self.evictions
            .inc_by(stats.evictions.saturating_sub(self.evictions.get()));
    }
}

/// Model versions' quality scores over the quality window.
#[derive(Clone)]
pub struct QualityGauges {
    quality: GaugeVec,
    feedback_samples: IntGaugeVec,
}

impl QualityGauges {
    fn register(r: &Registry) -> prometheus::Result<Self> {
        Ok(QualityGauges {
            quality: register(
                r,
                GaugeVec::new(
                    Opts::new(
                        "lamina_model_quality",
                        "A model version's score over the quality window, from ground truth \
                         sent as feedback: mae and rmse for regressors; accuracy and macro \
                         precision, recall and f1 for classifiers.",
                    ),
                    &["account", "function", "version", "metric"],
                )?,
            )?,
            feedback_samples: gauge(
                r,
                "lamina_model_feedback_samples",
                "Rows of ground truth a model version's quality scores are computed from.",
                &["account", "function", "version"],
            )?,
        })
    }

    /// Sets the gauges to `scores`; versions without feedback in the window disappear.
    pub fn observe<'a>(
        &self,
        scores: impl IntoIterator<Item = (&'a str, &'a str, &'a str, &'a Scores)>,
    ) {
        self.quality.reset();
        self.feedback_samples.reset();
        for (account, function, version, s) in scores {
            for (metric, value) in s.metrics() {
                self.quality
                    .with_label_values(&[account, function, version, metric])
                    .set(value);
            }
            self.feedback_samples
                .with_label_values(&[account, function, version])
                .set(s.samples() as i64);
        }
    }
}

/// Every state gauge of the node, one family per owner of the data.
#[derive(Clone)]
pub struct NodeGauges {
    pub pools: PoolGauges,
    pub queue: QueueGauges,
    pub ledger: LedgerGauges,
    pub models: ModelGauges,
    pub quality: QualityGauges,
}

impl NodeGauges {
    pub fn register(registry: &Registry) -> prometheus::Result<Self> {
        Ok(NodeGauges {
            pools: PoolGauges::register(registry)?,
            queue: QueueGauges::register(registry)?,
            ledger: LedgerGauges::register(registry)?,
            models: ModelGauges::register(registry)?,
            quality: QualityGauges::register(registry)?,
        })
    }
}

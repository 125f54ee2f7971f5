//! What operators read: Prometheus's `/metrics`, the `/lamina/status` snapshot, and the
//! per-route HTTP metrics every request feeds.
//!
//! The registry belongs to the node; the scheduler's counters are already in it. This
//! module adds the HTTP metrics and the gauges of current state (see [`gauges`]), which
//! it fills from their owners when `/metrics` is scraped.

mod gauges;

use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use axum::Json;
use axum::extract::{MatchedPath, Request, State};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use prometheus::{HistogramOpts, HistogramVec, IntCounterVec, Opts, Registry};
use serde_json::{Value, json};

use self::gauges::NodeGauges;
use crate::error::ApiError;
use crate::state::AppState;

/// The node's registry and what the HTTP edge adds to it. Cheap to clone.
#[derive(Clone)]
pub struct Observer {
    registry: Registry,
    http: HttpMetrics,
    gauges: NodeGauges,
}

impl std::fmt::Debug for Observer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Observer").finish_non_exhaustive()
    }
}

impl Observer {
    /// Adds the HTTP metrics and state gauges to `registry`. A second gateway on the same
    /// registry keeps its own (unexported) copies instead of failing: what `/metrics`
    /// shows is then the first gateway's.
    pub fn new(registry: Registry) -> Self {
        let (http, gauges) = Self::register(&registry).unwrap_or_else(|e| {
            tracing::warn!(error = %e, "gateway metrics already registered; not exported twice");
            Self::register(&Registry::new()).expect("a fresh registry accepts them")
        });
        Observer {
            registry,
            http,
            gauges,
        }
    }

    fn register(registry: &Registry) -> prometheus::Result<(HttpMetrics, NodeGauges)> {
        Ok((
            HttpMetrics::register(registry)?,
            NodeGauges::register(registry)?,
        ))
    }

    /// The text exposition format of every metric in the node's registry.
    pub fn encode(&self) -> String {
        prometheus::TextEncoder::new()
            .encode_to_string(&self.registry.gather())
            .unwrap_or_default()
    }
}

/// Requests by route template (never the raw path: names and ids would explode the
/// series count) and status.
#[derive(Clone)]
struct HttpMetrics {
    requests: IntCounterVec,
    duration: HistogramVec,
}

impl HttpMetrics {
    fn register(registry: &Registry) -> prometheus::Result<Self> {
        let requests = IntCounterVec::new(
            Opts::new(
                "lamina_http_requests_total",
                "HTTP requests by route template, method and status.",
            ),
            &["route", "method", "status"],
        )?;
        let duration = HistogramVec::new(
            HistogramOpts::new(
                "lamina_http_request_duration_seconds",
                "Time to the response head, by route template and method.",
            )
            .buckets(scheduler::metrics::DURATION_BUCKETS.to_vec()),
            &["route", "method"],
        )?;
        registry.register(Box::new(requests.clone()))?;
        registry.register(Box::new(duration.clone()))?;
        Ok(HttpMetrics { requests, duration })
    }
}

/// Function-URL requests routed by host name never match an API route.
const UNMATCHED: &str = "unmatched";

pub async fn count_requests(
    State(state): State<AppState>,
    request: Request,
    next: Next,
) -> Response {
    let started = Instant::now();
    // Both are cheap clones (an interned method, an Arc'd route), not string copies.
    let method = request.method().clone();
    let route = request.extensions().get::<MatchedPath>().cloned();
    let resp = next.run(request).await;
    let route = route.as_ref().map_or(UNMATCHED, MatchedPath::as_str);
    let m = &state.observer.http;
    m.requests
        .with_label_values(&[route, method.as_str(), resp.status().as_str()])
        .inc();
    m.duration
        .with_label_values(&[route, method.as_str()])
        .observe(started.elapsed().as_secs_f64());
    resp
}

fn since_epoch_us(us: i64) -> Option<Duration> {
    let now = SystemTime::now().duration_since(UNIX_EPOCH).ok()?;
    (us > 0).then(|| now.saturating_sub(Duration::from_micros(us as u64)))
}

/// Async queue depth and the age of its oldest event.
async fn queue_state(state: &AppState) -> Result<(u64, Option<Duration>), ApiError> {
    let (depth, oldest_ms) = state.queue.depth().await.map_err(ApiError::service)?;
    Ok((depth, oldest_ms.and_then(|ms| since_epoch_us(ms * 1000))))
}

/// Ledger records spooled but not yet in the database, and how long the oldest waited.
fn ledger_state(state: &AppState) -> (u64, Duration) {
    use std::sync::atomic::Ordering::Relaxed;
    let stats = state.spool.stats();
    let backlog = stats
        .appended
        .load(Relaxed)
        .saturating_sub(stats.committed.load(Relaxed));
    let lag = since_epoch_us(stats.oldest_pending_us.load(Relaxed)).unwrap_or_default();
    (backlog, lag)
}

/// How long a scrape waits for the gauges read from the database. Well under
/// Prometheus's default scrape timeout (10 s), so the rest of the scrape always lands.
const DATABASE_GAUGES_BUDGET: Duration = Duration::from_secs(2);

/// `GET /metrics`: Prometheus's text exposition format.
pub async fn metrics(State(state): State<AppState>) -> Response {
    let gauges = &state.observer.gauges;
    let limits = state.scheduler.limits();
    gauges
        .pools
        .observe(&state.scheduler.snapshot(), limits.account_concurrency);
    let (backlog, lag) = ledger_state(&state);
    gauges.ledger.observe(backlog, lag);
    if let Some(models) = state.scheduler.backend().model_cache() {
        gauges.models.observe(&models);
    }
    // The database's gauges are read together under one budget: while the database is
    // slow or away the scrape still answers in time, with their last values (stale
    // gauges are better than a scrape that times out and loses every other metric).
    let since = crate::api::quality::window_start_us(state.config.quality_window);
    let reads = async {
        tokio::join!(
            queue_state(&state),
            store::quality::scores(&state.db, None, since)
        )
    };
    match tokio::time::timeout(DATABASE_GAUGES_BUDGET, reads).await {
        Ok((queue, quality)) => {
            match queue {
                Ok((depth, age)) => gauges.queue.observe(depth, age),
                Err(e) => {
                    tracing::warn!(error = %e, "cannot read the async queue depth for /metrics")
                }
            }
            match quality {
                Ok(scores) => gauges.quality.observe(
                    scores
                        .iter()
                        .map(|(v, s)| (&*v.account_id, &*v.function_name, &*v.version, s)),
                ),
                Err(e) => tracing::warn!(error = %e, "cannot read model quality for /metrics"),
            }
        }
        Err(_) => tracing::warn!(
            budget = ?DATABASE_GAUGES_BUDGET,
            "the database did not answer for /metrics in time; queue and quality gauges keep their last values"
        ),
    }
    (
        [("content-type", "text/plain; version=0.0.4; charset=utf-8")],
        state.observer.encode(),
    )
        .into_response()
}

/// `GET /lamina/nodes`: the cluster's live nodes (`lamina nodes`).
pub async fn nodes(
    State(state): State<AppState>,
    _caller: crate::auth::Caller,
) -> Result<Json<Value>, ApiError> {
    Ok(Json(json!({
        "NodeId": state.node.node_id,
        "Nodes": crate::membership::live_nodes(&state).await?,
    })))
}

/// `GET /lamina/status`: this node and the cluster's live nodes, the caller's
/// environments per function version and state, in-flight invocations, and the node's
/// limits, throttles, async queue and ledger.
pub async fn status(
    State(state): State<AppState>,
    caller: crate::auth::Caller,
) -> Result<Json<Value>, ApiError> {
    use std::sync::atomic::Ordering::Relaxed;
    let pools: Vec<Value> = state
        .scheduler
        .snapshot()
        .iter()
        .filter(|p| *p.function.account_id == *caller.account_id)
        .map(|p| {
            json!({
                "AccountId": &*p.function.account_id,
                "FunctionName": &*p.function.name,
                "Version": p.version(),
                "Environments": {
                    "Idle": p.counts.idle,
                    "Busy": p.counts.busy,
                    "Initializing": p.counts.starting,
                    "Provisioned": p.counts.provisioned,
                },
                "FunctionInFlight": p.in_flight_function,
                "ReservedConcurrency": p.reserved,
            })
        })
        .collect();
    let stats = state.scheduler.stats();
    let limits = state.scheduler.limits();
    let (depth, oldest) = queue_state(&state).await?;
    let (backlog, lag) = ledger_state(&state);
    let nodes = crate::membership::live_nodes(&state).await?;
    let routes = state.forwarder.routes();
    let policy = routes.policy();
    Ok(Json(json!({
        "NodeId": state.node.node_id,
        "Nodes": nodes,
        "Routing": {
            "Enabled": policy.enabled,
            "HomeNodes": policy.home_nodes,
            "SpillOverAt": policy.spill_over_at,
            "Members": routes.members().collect::<Vec<_>>(),
        },
        "Pools": pools,
        "Environments": state.scheduler.environments(),
        "Limits": {
            "AccountConcurrency": limits.account_concurrency,
            "MinUnreserved": limits.min_unreserved,
            "BurstLimit": limits.burst_limit,
            "BurstIntervalSeconds": limits.burst_interval.as_secs_f64(),
            "IdleTimeoutSeconds": limits.idle_timeout.as_secs_f64(),
            "MaxEnvironments": limits.max_environments,
        },
        "Starts": {
            "Cold": stats.cold_starts.load(Relaxed),
            "Warm": stats.warm_starts.load(Relaxed),
        },
        "Throttles": {
            "ReservedFunctionConcurrentInvocationLimitExceeded": stats.throttles_reserved.load(Relaxed),
            "ConcurrentInvocationLimitExceeded": stats.throttles_account.load(Relaxed),
            "FunctionInvocationRateLimitExceeded": stats.throttles_rate.load(Relaxed),
        },
        "AsyncQueue": {
            "Depth": depth,
            "OldestAgeSeconds": oldest.map(|a| a.as_secs_f64()),
        },
        "Ledger": {
            "BacklogRecords": backlog,
            "WriteLagSeconds": lag.as_secs_f64(),
        },
    })))
}

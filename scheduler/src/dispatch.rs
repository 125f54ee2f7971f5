//! Asynchronous invocations: leases due events from the durable queue, runs them under
//! the same concurrency rules as synchronous ones, retries function errors with backoff,
//! and delivers results to destinations and dead-letter targets.
//!
//! Retry policy, as Lambda's: a function error or timeout is retried up to
//! `MaximumRetryAttempts` (default 2) times, `retry_base` and then twice that apart
//! (Lambda: 1 and 2 minutes), always with the same request id. A throttle or platform
//! failure puts the event back with exponential backoff (1 s up to 5 min) without using
//! up an attempt. An event older than `MaximumEventAgeInSeconds` (default 6 h) is
//! discarded. Discarded events go to the on-failure destination and/or the DLQ.
//!
//! Every node of a cluster runs a dispatcher on the one queue. Leases carry the node's
//! incarnation; events leased by an incarnation that stopped heartbeating are taken over
//! and settled against the ledger (`Dispatcher::recover`).

use std::collections::{HashMap, HashSet};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, SystemTime};

use bytes::Bytes;
use protocol::names::{FunctionRef, LATEST};
use protocol::{InvocationResult, InvocationType, Outcome, Payload};
use serde_json::{Value, json};
use store::{AsyncEvent, Catalog, EventInvokeConfig, FunctionEntry, Membership, Queue, Settlement};
use tokio::sync::{Notify, Semaphore};

use crate::invocation::{InvocationRequest, Invoker, Target};
use crate::metrics::{AsyncMetrics, DeliveryTarget};
use crate::scheduler::lock;
use crate::scheduler::{InvokeError, Scheduler};

#[derive(Debug, Clone)]
pub struct DispatchConfig {
    /// Delay before the first retry of a failed event (Lambda: 1 minute); the second
    /// waits twice as long.
    pub retry_base: Duration,
    /// How many async invocations run at once.
    pub concurrency: usize,
    /// How often the queue is polled when nothing wakes the dispatcher.
    pub poll_interval: Duration,
    pub default_max_age: Duration,
    pub default_max_retries: u32,
    /// How often events leased by incarnations that are no longer live are taken over.
    pub recovery_interval: Duration,
}

/// Who holds this dispatcher's leases: the incarnation of the node it runs in, and the
/// membership that says which incarnations are live.
#[derive(Debug, Clone)]
pub struct Leaseholder {
    pub incarnation: String,
    pub membership: Membership,
}

impl Default for DispatchConfig {
    fn default() -> Self {
        DispatchConfig {
            retry_base: Duration::from_secs(60),
            concurrency: 64,
            poll_interval: Duration::from_millis(500),
            default_max_age: Duration::from_secs(6 * 3600),
            default_max_retries: 2,
            recovery_interval: Duration::from_secs(5),
        }
    }
}

/// Why an event left the queue without success.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Condition {
    Success,
    RetriesExhausted,
    EventAgeExceeded,
    ZeroReservedConcurrency,
}

impl Condition {
    fn as_str(self) -> &'static str {
        match self {
            Condition::Success => "Success",
            Condition::RetriesExhausted => "RetriesExhausted",
            Condition::EventAgeExceeded => "EventAgeExceeded",
            Condition::ZeroReservedConcurrency => "ZeroReservedConcurrency",
        }
    }
}

#[derive(Clone)]
pub struct Dispatcher {
    inner: Arc<Inner>,
}

struct Inner {
    invoker: Invoker,
    catalog: Arc<Catalog>,
    queue: Queue,
    notify: Arc<Notify>,
    owner: String,
    membership: Membership,
    config: DispatchConfig,
    metrics: AsyncMetrics,
    /// Throttles seen per event, for backoff; lost on restart, which only resets backoff.
    throttles: Mutex<HashMap<String, u32>>,
    /// The events this dispatcher leased and is running. An event leased under its owner
    /// but not here was lost on the way (the lease committed, its answer never arrived),
    /// and recovery takes it back.
    running: Mutex<HashSet<String>>,
}

/// How long a lease of due events may wait for the database.
const LEASE_DEADLINE: Duration = Duration::from_secs(15);
/// How long one recovery pass may take.
const RECOVERY_DEADLINE: Duration = Duration::from_secs(60);

fn now_ms() -> i64 {
    SystemTime::now()
        .duration_since(SystemTime::UNIX_EPOCH)
        .map(|d| d.as_millis() as i64)
        .unwrap_or(0)
}

fn iso_now() -> String {
    chrono::Utc::now()
        .format("%Y-%m-%dT%H:%M:%S%.3fZ")
        .to_string()
}

/// The JSON value of a payload, or its text when it is not JSON.
fn as_json(bytes: &[u8]) -> Value {
    serde_json::from_slice(bytes)
        .unwrap_or_else(|_| Value::String(String::from_utf8_lossy(bytes).into_owned()))
}

impl Dispatcher {
    /// A dispatcher that adds its async-event metrics to `metrics` (the node's registry);
    /// fails only if they are registered there already.
    pub fn new(
        scheduler: Scheduler,
        catalog: Arc<Catalog>,
        queue: Queue,
        notify: Arc<Notify>,
        leaseholder: Leaseholder,
        config: DispatchConfig,
        metrics: &prometheus::Registry,
    ) -> prometheus::Result<Self> {
        Ok(Dispatcher {
            inner: Arc::new(Inner {
                invoker: Invoker::new(scheduler, catalog.clone()),
                catalog,
                queue,
                notify,
                owner: leaseholder.incarnation,
                membership: leaseholder.membership,
                config,
                metrics: AsyncMetrics::register(metrics)?,
                throttles: Mutex::new(HashMap::new()),
                running: Mutex::new(HashSet::new()),
            }),
        })
    }

    /// Settles events that a killed process, or a node that stopped heartbeating, left
    /// running: each is taken over first (so two live dispatchers never settle one), then
    /// an attempt the ledger knows ended is applied as ended (so it never runs twice to
    /// completion) and any other goes back to the queue. Run at start after the ledger's
    /// spool has been replayed, and every `recovery_interval` after.
    pub async fn recover(&self) -> Result<usize, store::StoreError> {
        store::within(RECOVERY_DEADLINE, self.recover_orphans()).await
    }

    async fn recover_orphans(&self) -> Result<usize, store::StoreError> {
        let owner = self.inner.owner.as_str();
        let live: HashSet<String> = self
            .inner
            .membership
            .live()
            .await?
            .into_iter()
            .map(|n| n.incarnation)
            .filter(|incarnation| incarnation != owner)
            .collect();
        let orphans = self.inner.queue.orphaned(&live).await?;
        let mut recovered = 0;
        for orphan in orphans {
            if orphan.lease_owner.as_deref() == Some(owner)
                && lock(&self.inner.running).contains(&orphan.event_id)
            {
                continue;
            }
            let queue = &self.inner.queue;
            let Some(event) = queue.take_over(&orphan, owner).await? else {
                continue;
            };
            recovered += 1;
            let attempt = event.attempts + 1;
            let settlement = match queue.attempt_outcome(&event.request_id, attempt).await? {
                Some((outcome, error_type)) => {
                    let outcome = Outcome::parse(&outcome).unwrap_or(Outcome::FunctionError);
                    self.after_attempt(&event, outcome, error_type.as_deref(), None, None)
                        .await
                }
                None => Settlement::Retry {
                    attempts: event.attempts,
                    not_before_ms: now_ms(),
                    last_error: Some("interrupted: the node running it stopped".into()),
                },
            };
            queue.settle(&event.event_id, owner, &settlement).await?;
        }
        if recovered > 0 {
            tracing::info!(recovered, "took over async events of stopped nodes");
            self.inner.notify.notify_one();
        }
        Ok(recovered)
    }

    /// Runs until `shutdown` resolves.
    pub async fn run(&self, shutdown: impl Future<Output = ()>) {
        let permits = Arc::new(Semaphore::new(self.inner.config.concurrency.max(1)));
        tokio::pin!(shutdown);
        let mut next_recovery = tokio::time::Instant::now() + self.inner.config.recovery_interval;
        loop {
            if tokio::time::Instant::now() >= next_recovery {
                if let Err(e) = self.recover().await {
                    tracing::warn!(error = %e, "cannot take over the async events of stopped nodes");
                }
                next_recovery = tokio::time::Instant::now() + self.inner.config.recovery_interval;
            }
            let free = permits.available_permits() as u32;
            let leased = if free > 0 {
                let lease = self.inner.queue.lease_due(&self.inner.owner, free);
                match store::within(LEASE_DEADLINE, lease).await {
                    Ok(events) => {
                        lock(&self.inner.running).extend(events.iter().map(|e| e.event_id.clone()));
                        events
                    }
                    Err(e) => {
                        tracing::warn!(error = %e, "cannot read the async queue; retrying");
                        Vec::new()
                    }
                }
            } else {
                Vec::new()
            };
            let got = leased.len();
            for event in leased {
                let Ok(permit) = permits.clone().acquire_owned().await else {
                    return;
                };
                let this = self.clone();
                tokio::spawn(async move {
                    let event_id = event.event_id.clone();
                    this.process(event).await;
                    lock(&this.inner.running).remove(&event_id);
                    drop(permit);
                    this.inner.notify.notify_one();
                });
            }
            if got > 0 && permits.available_permits() > 0 {
                continue;
            }
            tokio::select! {
                _ = &mut shutdown => return,
                _ = self.inner.notify.notified() => {}
                _ = tokio::time::sleep(self.inner.config.poll_interval) => {}
                _ = tokio::time::sleep_until(next_recovery) => {}
            }
        }
    }

    fn event_config(&self, entry: &FunctionEntry, qualifier: &str) -> EventInvokeConfig {
        entry
            .event_configs
            .get(qualifier)
            .map(|r| r.config.clone())
            .unwrap_or_default()
    }

    fn max_retries(&self, config: &EventInvokeConfig) -> u32 {
        config
            .maximum_retry_attempts
            .unwrap_or(self.inner.config.default_max_retries)
    }

    async fn process(&self, event: AsyncEvent) {
        let settlement = self.attempt(&event).await;
        match self
            .inner
            .queue
            .settle(&event.event_id, &self.inner.owner, &settlement)
            .await
        {
            Ok(true) => {}
            Ok(false) => tracing::warn!(
                event_id = %event.event_id,
                "another node took this async event over while it ran; its settlement is theirs"
            ),
            // The lease stays; recovery settles it from the ledger.
            Err(e) => {
                tracing::error!(event_id = %event.event_id, error = %e, "cannot settle an async event")
            }
        }
    }

    async fn attempt(&self, event: &AsyncEvent) -> Settlement {
        let Some(entry) = self
            .inner
            .catalog
            .function(&event.account_id, &event.function_name)
        else {
            // Created through another node a moment ago, and not yet in this node's
            // mirror: try again shortly, without counting an attempt.
            if let Ok(true) = self
                .inner
                .catalog
                .is_in_database(&event.account_id, &event.function_name)
                .await
            {
                return Settlement::Retry {
                    attempts: event.attempts,
                    not_before_ms: now_ms() + 1000,
                    last_error: None,
                };
            }
            // The function was deleted: nothing to run, nobody to notify.
            return Settlement::Done { follow_up: None };
        };
        let config = self.event_config(&entry, &event.qualifier);
        let max_age = config
            .maximum_event_age_in_seconds
            .map_or(self.inner.config.default_max_age, |s| {
                Duration::from_secs(s.into())
            });
        if now_ms() - event.received_at_ms > max_age.as_millis() as i64 {
            return self.discard(&entry, event, Condition::EventAgeExceeded, None, None);
        }
        if entry.reserved_concurrency == Some(0) {
            return self.discard(
                &entry,
                event,
                Condition::ZeroReservedConcurrency,
                None,
                None,
            );
        }
        let Some(version) = entry
            .version_for_invoke(&event.qualifier, rand::random())
            .cloned()
        else {
            return Settlement::Done { follow_up: None };
        };
        let target = Target {
            entry: &entry,
            version: &version,
            // Events keep `$LATEST` for an unqualified reference; the ARN stays unqualified.
            qualifier: (event.qualifier != LATEST).then_some(event.qualifier.as_str()),
        };
        let request = InvocationRequest {
            request_id: event.request_id.clone(),
            payload: Payload::Event(Bytes::from(event.payload.clone())),
            client_context: None,
            invocation_type: InvocationType::Event,
            caller_account_id: event.caller_account_id.clone(),
            received_at: SystemTime::UNIX_EPOCH
                + Duration::from_millis(event.received_at_ms.max(0) as u64),
            request_bytes: event.payload.len() as u64,
            attempt: event.attempts + 1,
        };
        let waited = Duration::from_millis((now_ms() - event.received_at_ms).max(0) as u64);
        self.inner
            .metrics
            .queue_wait(&entry.account_id, &entry.name, waited);
        match self.inner.invoker.invoke(target, request).await {
            Ok(result) if result.outcome == Outcome::PlatformError => self.back_off(event),
            Ok(result) => {
                let error_type = result.error.as_ref().map(|e| e.error_type.clone());
                self.after_attempt(
                    event,
                    result.outcome,
                    error_type.as_deref(),
                    Some(&result),
                    Some(&entry),
                )
                .await
            }
            Err(InvokeError::Gone) => Settlement::Done { follow_up: None },
            Err(_) => self.back_off(event),
        }
    }

    /// A throttle or platform failure: try again later without using an attempt.
    fn back_off(&self, event: &AsyncEvent) -> Settlement {
        let mut throttles = self
            .inner
            .throttles
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        let n = throttles.entry(event.event_id.clone()).or_insert(0);
        *n += 1;
        let delay = Duration::from_secs(1u64 << (*n - 1).min(8)).min(Duration::from_secs(300));
        Settlement::Retry {
            attempts: event.attempts,
            not_before_ms: now_ms() + delay.as_millis() as i64,
            last_error: Some("throttled".into()),
        }
    }

    /// Decides what follows an attempt that ran to an end.
    async fn after_attempt(
        &self,
        event: &AsyncEvent,
        outcome: Outcome,
        error_type: Option<&str>,
        result: Option<&InvocationResult>,
        entry: Option<&FunctionEntry>,
    ) -> Settlement {
        self.inner
            .throttles
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .remove(&event.event_id);
        let entry = match entry {
            Some(e) => Arc::new(e.clone()),
            None => match self
                .inner
                .catalog
                .function(&event.account_id, &event.function_name)
            {
                Some(e) => e,
                None => return Settlement::Done { follow_up: None },
            },
        };
        let attempts = event.attempts + 1;
        if outcome == Outcome::Success {
            let config = self.event_config(&entry, &event.qualifier);
            let follow_up = config.on_success.as_deref().and_then(|dest| {
                let record = self.record(&entry, event, Condition::Success, attempts, result);
                let follow_up = self.destination_event(&entry, dest, record);
                self.inner.metrics.delivery(
                    &entry.account_id,
                    &entry.name,
                    DeliveryTarget::OnSuccess,
                    follow_up.is_some(),
                );
                follow_up
            });
            return Settlement::Done { follow_up };
        }
        let config = self.event_config(&entry, &event.qualifier);
        if attempts <= self.max_retries(&config) {
            self.inner.metrics.retry(&entry.account_id, &entry.name);
            let delay = self.inner.config.retry_base * attempts;
            return Settlement::Retry {
                attempts,
                not_before_ms: now_ms() + delay.as_millis() as i64,
                last_error: error_type.map(str::to_owned),
            };
        }
        let mut exhausted = event.clone();
        exhausted.attempts = attempts;
        self.discard(
            &entry,
            &exhausted,
            Condition::RetriesExhausted,
            result,
            error_type,
        )
    }

    /// Sends a discarded event to its on-failure destination, or else to the DLQ.
    fn discard(
        &self,
        entry: &FunctionEntry,
        event: &AsyncEvent,
        condition: Condition,
        result: Option<&InvocationResult>,
        error_type: Option<&str>,
    ) -> Settlement {
        let metrics = &self.inner.metrics;
        metrics.dropped(&entry.account_id, &entry.name, condition.as_str());
        let config = self.event_config(entry, &event.qualifier);
        if let Some(dest) = config.on_failure.as_deref() {
            let record = self.record(entry, event, condition, event.attempts, result);
            let follow_up = self.destination_event(entry, dest, record);
            metrics.delivery(
                &entry.account_id,
                &entry.name,
                DeliveryTarget::OnFailure,
                follow_up.is_some(),
            );
            return Settlement::Done { follow_up };
        }
        let dlq = entry
            .version_for_read(&event.qualifier)
            .and_then(|v| v.config.dead_letter_target.clone());
        if let Some(target) = dlq {
            tracing::info!(request_id = %event.request_id, error = error_type.unwrap_or(""), "dead-lettering an async event");
            // A DLQ receives the original event, as Lambda's does.
            let follow_up = self.destination_event(entry, &target, as_json(&event.payload));
            metrics.delivery(
                &entry.account_id,
                &entry.name,
                DeliveryTarget::DeadLetter,
                follow_up.is_some(),
            );
            return Settlement::Done { follow_up };
        }
        Settlement::Done { follow_up: None }
    }

    /// Lambda's destination record.
    fn record(
        &self,
        entry: &FunctionEntry,
        event: &AsyncEvent,
        condition: Condition,
        attempts: u32,
        result: Option<&InvocationResult>,
    ) -> Value {
        let arns = protocol::names::ArnBuilder::new(self.inner.catalog.region());
        let executed = result.map_or_else(|| event.qualifier.clone(), |r| r.version.clone());
        let mut record = json!({
            "version": "1.0",
            "timestamp": iso_now(),
            "requestContext": {
                "requestId": event.request_id,
                "functionArn": arns.qualified(&entry.account_id, &entry.name, &event.qualifier),
                "condition": condition.as_str(),
                "approximateInvokeCount": attempts,
            },
            "requestPayload": as_json(&event.payload),
        });
        if let (Some(obj), Some(r)) = (record.as_object_mut(), result) {
            let mut context = json!({ "statusCode": 200, "executedVersion": executed });
            if r.outcome != Outcome::Success
                && let Some(c) = context.as_object_mut()
            {
                c.insert("functionError".into(), "Unhandled".into());
            }
            obj.insert("responseContext".into(), context);
            let body = match &r.response {
                protocol::Response::Event(b) => as_json(b),
                protocol::Response::Http(h) => as_json(&h.body),
            };
            obj.insert("responsePayload".into(), body);
        }
        record
    }

    /// An Event invocation of the destination function carrying `payload`.
    fn destination_event(
        &self,
        entry: &FunctionEntry,
        arn: &str,
        payload: Value,
    ) -> Option<AsyncEvent> {
        let target = FunctionRef::parse(arn).ok()?;
        let account = target
            .account_id
            .clone()
            .unwrap_or_else(|| entry.account_id.clone());
        Some(AsyncEvent::new(
            uuid::Uuid::new_v4().to_string(),
            &account,
            &entry.account_id,
            &target.name,
            target.qualifier.as_deref().unwrap_or(LATEST),
            payload.to_string().into_bytes(),
        ))
    }
}

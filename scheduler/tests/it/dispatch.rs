//! The `Dispatcher` over a real queue on SQLite and the fake backend: function errors are
//! retried with backoff and then discarded, old events are discarded unrun, results go
//! to on-success and on-failure destinations and to the dead-letter queue.
//!
//! These run on the wall clock, not paused time: whether an event is due is decided by
//! the queue in the database against the wall clock (`Queue::lease_due`), so paused time
//! could not move it. Delays are configured down to tens of milliseconds instead, and
//! every wait is on an observable state (an invocation reaching the fake), bounded by a
//! timeout.

use std::sync::Arc;
use std::time::Duration;

use scheduler::testing::{Seen, Step};
use scheduler::{DispatchConfig, Dispatcher, Leaseholder, Limits};
use serde_json::{Value, json};
use store::{AsyncEvent, EventInvokeConfig, EventInvokeRecord, Membership, Queue};
use tokio::sync::{Notify, oneshot};
use tokio::task::JoinHandle;

use crate::{ACCOUNT, Harness, arn, config};

const RETRY_BASE: Duration = Duration::from_millis(100);
const INCARNATION: &str = "incarnation-test";

/// A dispatcher running on a harness until dropped.
struct Running {
    h: Harness,
    queue: Queue,
    notify: Arc<Notify>,
    stop: Option<oneshot::Sender<()>>,
    task: Option<JoinHandle<()>>,
}

impl Running {
    async fn start() -> Running {
        Self::start_with_lease_lost(None).await
    }

    /// Starts a dispatcher; with `lost`, that event of function `f` is first leased under
    /// the dispatcher's own incarnation, as a lease whose answer never reached it would be.
    async fn start_with_lease_lost(lost: Option<AsyncEvent>) -> Running {
        let h = Harness::new(Limits::default()).await;
        let queue = Queue::new(h.db.clone());
        let notify = Arc::new(Notify::new());
        if let Some(event) = lost {
            h.function("f", config()).await;
            queue.enqueue(event).await.unwrap();
            let leased = queue.lease_due(INCARNATION, 1).await.unwrap();
            assert_eq!(leased.len(), 1);
        }
        let dispatcher = Dispatcher::new(
            h.scheduler.clone(),
            h.catalog.clone(),
            queue.clone(),
            notify.clone(),
            Leaseholder {
                incarnation: INCARNATION.into(),
                membership: Membership::new(h.db.clone()),
            },
            DispatchConfig {
                retry_base: RETRY_BASE,
                concurrency: 4,
                poll_interval: Duration::from_millis(10),
                recovery_interval: Duration::from_millis(100),
                ..DispatchConfig::default()
            },
            &h.registry,
        )
        .unwrap();
        let (stop, stopped) = oneshot::channel::<()>();
        let task = tokio::spawn(async move {
            dispatcher
                .run(async {
                    let _ = stopped.await;
                })
                .await
        });
        Running {
            h,
            queue,
            notify,
            stop: Some(stop),
            task: Some(task),
        }
    }

    async fn event_config(&self, name: &str, config: EventInvokeConfig) {
        let record = EventInvokeRecord {
            qualifier: "$LATEST".into(),
            config,
            last_modified_ms: 0,
        };
        self.h
            .catalog
            .put_setting(ACCOUNT, name, record)
            .await
            .unwrap();
    }

    async fn enqueue(&self, event: AsyncEvent) {
        self.queue.enqueue(event).await.unwrap();
        self.notify.notify_one();
    }

    /// Waits (at most 10 s) until function `name` has been invoked.
    async fn invoked(&self, name: &str) -> Vec<Seen> {
        let wait = self
            .h
            .fake
            .wait_until(|seen| seen.iter().any(|s| s.function_name == name));
        tokio::time::timeout(Duration::from_secs(10), wait)
            .await
            .unwrap_or_else(|_| panic!("{name} was never invoked: {:?}", self.h.fake.seen()))
    }

    /// Waits (at most 10 s) until the queue is empty.
    async fn drained(&self) {
        let wait = async {
            while self.queue.depth().await.unwrap().0 > 0 {
                tokio::time::sleep(Duration::from_millis(10)).await;
            }
        };
        tokio::time::timeout(Duration::from_secs(10), wait)
            .await
            .expect("the queue never drained");
    }

    async fn stop(mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        if let Some(task) = self.task.take() {
            task.await.unwrap();
        }
    }
}

fn event(id: &str, name: &str) -> AsyncEvent {
    AsyncEvent::new(
        id.to_owned(),
        ACCOUNT,
        ACCOUNT,
        name,
        "$LATEST",
        br#"{"n":1}"#.to_vec(),
    )
}

fn calls<'a>(seen: &'a [Seen], name: &str) -> Vec<&'a Seen> {
    seen.iter().filter(|s| s.function_name == name).collect()
}

fn json_of(seen: &Seen) -> Value {
    serde_json::from_slice(&seen.payload).unwrap()
}

#[tokio::test(flavor = "multi_thread")]
async fn a_failing_event_is_retried_with_backoff_then_dead_lettered() {
    let d = Running::start().await;
    let mut f = config();
    f.dead_letter_target = Some(arn("dlq"));
    d.h.function("f", f).await;
    d.h.function("dlq", config()).await;
    d.event_config(
        "f",
        EventInvokeConfig {
            maximum_retry_attempts: Some(2),
            ..EventInvokeConfig::default()
        },
    )
    .await;
    // Every attempt of the event fails; the dead-letter queue's invocation succeeds.
    d.h.fake.script(
        "ev",
        [Step::fail("Boom"), Step::fail("Boom"), Step::fail("Boom")],
    );
    d.enqueue(event("ev", "f")).await;

    let seen = d.invoked("dlq").await;
    let attempts = calls(&seen, "f");
    assert_eq!(
        attempts.len(),
        3,
        "one attempt and MaximumRetryAttempts=2 retries"
    );
    assert!(attempts.iter().all(|s| s.request_id == "ev"));
    // Lambda waits retry_base, then twice that (less the queue's millisecond rounding).
    let gaps = [
        attempts[1].at - attempts[0].at,
        attempts[2].at - attempts[1].at,
    ];
    let ms = Duration::from_millis(1);
    assert!(gaps[0] >= RETRY_BASE - ms, "{gaps:?}");
    assert!(gaps[1] >= RETRY_BASE * 2 - ms, "{gaps:?}");
    // A DLQ receives the original event.
    let dlq = calls(&seen, "dlq");
    assert_eq!(json_of(dlq[0]), json!({"n": 1}));
    d.drained().await;
    let metrics = d.h.metrics();
    assert!(
        metrics.contains("lamina_async_retries_total{account=\"111111111111\",function=\"f\"} 2"),
        "{metrics}"
    );
    assert!(metrics.contains("target=\"dead_letter\""), "{metrics}");
    d.stop().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn a_failure_goes_to_the_on_failure_destination_rather_than_the_dlq() {
    let d = Running::start().await;
    let mut f = config();
    f.dead_letter_target = Some(arn("dlq"));
    d.h.function("f", f).await;
    d.h.function("dlq", config()).await;
    d.h.function("failures", config()).await;
    d.event_config(
        "f",
        EventInvokeConfig {
            maximum_retry_attempts: Some(0),
            on_failure: Some(arn("failures")),
            ..EventInvokeConfig::default()
        },
    )
    .await;
    d.h.fake.script("ev", [Step::fail("Boom")]);
    d.enqueue(event("ev", "f")).await;

    let seen = d.invoked("failures").await;
    d.drained().await;
    let record = json_of(calls(&seen, "failures")[0]);
    assert_eq!(record["requestContext"]["requestId"], "ev");
    assert_eq!(record["requestContext"]["condition"], "RetriesExhausted");
    assert_eq!(record["requestContext"]["approximateInvokeCount"], 1);
    assert_eq!(
        record["requestContext"]["functionArn"],
        format!("{}:$LATEST", arn("f"))
    );
    assert_eq!(record["responseContext"]["functionError"], "Unhandled");
    assert_eq!(record["requestPayload"], json!({"n": 1}));
    assert!(
        calls(&d.h.fake.seen(), "dlq").is_empty(),
        "dead-lettered too"
    );
    d.stop().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn a_success_goes_to_the_on_success_destination() {
    let d = Running::start().await;
    d.h.function("f", config()).await;
    d.h.function("successes", config()).await;
    d.event_config(
        "f",
        EventInvokeConfig {
            on_success: Some(arn("successes")),
            ..EventInvokeConfig::default()
        },
    )
    .await;
    d.enqueue(event("ev", "f")).await;

    let seen = d.invoked("successes").await;
    let record = json_of(calls(&seen, "successes")[0]);
    assert_eq!(record["requestContext"]["condition"], "Success");
    assert_eq!(record["requestContext"]["approximateInvokeCount"], 1);
    assert_eq!(record["responseContext"]["executedVersion"], "$LATEST");
    // The fake echoes: the function's response is the event.
    assert_eq!(record["responsePayload"], json!({"n": 1}));
    d.stop().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn an_event_older_than_its_maximum_age_is_discarded_unrun() {
    let d = Running::start().await;
    d.h.function("f", config()).await;
    d.h.function("failures", config()).await;
    d.event_config(
        "f",
        EventInvokeConfig {
            maximum_event_age_in_seconds: Some(60),
            on_failure: Some(arn("failures")),
            ..EventInvokeConfig::default()
        },
    )
    .await;
    let mut old = event("ev", "f");
    old.received_at_ms -= 61_000;
    d.enqueue(old).await;

    let seen = d.invoked("failures").await;
    assert!(calls(&seen, "f").is_empty(), "an expired event ran");
    let record = json_of(calls(&seen, "failures")[0]);
    assert_eq!(record["requestContext"]["condition"], "EventAgeExceeded");
    assert_eq!(record["requestContext"]["approximateInvokeCount"], 0);
    assert!(record.get("responseContext").is_none(), "{record}");
    d.stop().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn a_platform_failure_is_retried_without_using_an_attempt() {
    let d = Running::start().await;
    d.h.function("f", config()).await;
    d.h.function("successes", config()).await;
    d.event_config(
        "f",
        EventInvokeConfig {
            maximum_retry_attempts: Some(0),
            on_success: Some(arn("successes")),
            ..EventInvokeConfig::default()
        },
    )
    .await;
    d.h.fake.script("ev", [Step::PlatformError, Step::echo()]);
    d.enqueue(event("ev", "f")).await;

    let seen = d.invoked("successes").await;
    let attempts = calls(&seen, "f");
    assert_eq!(attempts.len(), 2);
    // The platform's failure backs off (1 s at first) and is not counted as an attempt,
    // although MaximumRetryAttempts is 0.
    assert!(attempts[1].at - attempts[0].at >= Duration::from_secs(1));
    let record = json_of(calls(&seen, "successes")[0]);
    assert_eq!(record["requestContext"]["approximateInvokeCount"], 1);
    d.stop().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn an_event_leased_under_this_node_but_never_received_is_taken_back_and_run() {
    let d = Running::start_with_lease_lost(Some(event("lost", "f"))).await;
    let seen = d.invoked("f").await;
    assert_eq!(calls(&seen, "f").len(), 1);
    d.drained().await;
    d.stop().await;
}

//! The `Scheduler` adapter under paused tokio time: environments are reused, scale to
//! zero after the idle timeout, are refused beyond reserved concurrency, and provisioned
//! ahead of traffic.
//!
//! Each test fills the catalog first and pauses the clock after: SQLite answers from a
//! thread of its own, so a paused clock would auto-advance past the connection pool's
//! timeouts while it waits. The invoke path never touches the database (an invariant),
//! so everything after the pause runs on the paused clock alone.

use std::time::Duration;

use protocol::{InitializationType, StartKind};
use scheduler::testing::Step;
use scheduler::{FunctionKey, InvokeError, Limits, Target, ThrottleReason};

use crate::{ACCOUNT, Harness, config, request};

fn limits(idle_timeout: Duration) -> Limits {
    Limits {
        idle_timeout,
        ..Limits::default()
    }
}

#[tokio::test]
async fn a_second_invoke_reuses_the_warm_environment() {
    let h = Harness::new(Limits::default()).await;
    h.function("f", config()).await;
    tokio::time::pause();

    let first = h.invoke("f", "r1").await.unwrap();
    let second = h.invoke("f", "r2").await.unwrap();

    assert_eq!(
        (first.start, second.start),
        (StartKind::Cold, StartKind::Warm)
    );
    assert_eq!(h.fake.created(), [InitializationType::OnDemand]);
    let seen = h.fake.seen();
    assert_eq!(seen[0].environment, seen[1].environment);
    assert_eq!(h.scheduler.environments(), 1);
    assert_eq!(h.fake.live(), 1);
}

#[tokio::test]
async fn an_idle_environment_is_shut_down_after_the_idle_timeout() {
    let idle = Duration::from_secs(60);
    let h = Harness::new(limits(idle)).await;
    h.function("f", config()).await;
    tokio::time::pause();
    h.invoke("f", "r1").await.unwrap();

    tokio::time::advance(idle - Duration::from_secs(1)).await;
    h.scheduler.tick();
    assert_eq!(h.fake.live(), 1, "shut down before its idle timeout");

    tokio::time::advance(Duration::from_secs(2)).await;
    h.scheduler.tick();
    assert_eq!(h.fake.live(), 0, "still alive after its idle timeout");
    assert_eq!(h.scheduler.environments(), 0);

    // The next request starts from zero again.
    let again = h.invoke("f", "r2").await.unwrap();
    assert_eq!(again.start, StartKind::Cold);
    assert_eq!(h.fake.created().len(), 2);
}

#[tokio::test]
async fn the_housekeeping_timer_scales_to_zero_on_its_own() {
    let idle = Duration::from_secs(10);
    let h = Harness::new(limits(idle)).await;
    h.function("f", config()).await;
    tokio::time::pause();
    h.invoke("f", "r1").await.unwrap();

    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let s = h.scheduler.clone();
    let housekeeping = tokio::spawn(async move {
        s.run_housekeeping(async {
            let _ = stopped.await;
        })
        .await
    });
    // Paused time jumps from timer to timer: this sleep is the housekeeping's ticks.
    tokio::time::sleep(idle + Duration::from_secs(2)).await;
    assert_eq!(h.fake.live(), 0);
    stop.send(()).unwrap();
    housekeeping.await.unwrap();
}

#[tokio::test]
async fn reserved_concurrency_of_one_throttles_a_second_concurrent_invoke() {
    let h = Harness::new(Limits::default()).await;
    h.function("f", config()).await;
    tokio::time::pause();
    h.scheduler
        .set_reserved(&FunctionKey::new(ACCOUNT, "f"), Some(1))
        .unwrap();
    h.fake.script(
        "long",
        [Step::Echo {
            run_for: Duration::from_secs(2),
        }],
    );

    let (long, second) = tokio::join!(h.invoke("f", "long"), h.invoke("f", "second"));

    assert!(long.is_ok(), "{long:?}");
    assert_eq!(
        second.unwrap_err(),
        InvokeError::Throttled(ThrottleReason::ReservedFunctionConcurrentInvocationLimitExceeded)
    );
    let seen: Vec<_> = h.fake.seen().into_iter().map(|s| s.request_id).collect();
    assert_eq!(seen, ["long"], "the throttled request reached the backend");
    assert!(
        h.metrics().contains(
            "lamina_throttles_total{account=\"111111111111\",function=\"f\",reason=\"ReservedFunctionConcurrentInvocationLimitExceeded\"} 1"
        ),
        "{}",
        h.metrics()
    );

    // Once the first has finished, the one environment serves the next.
    let third = h.invoke("f", "third").await.unwrap();
    assert_eq!(third.start, StartKind::Warm);
}

#[tokio::test]
async fn provisioned_concurrency_fills_the_pool_before_any_invoke() {
    let idle = Duration::from_secs(60);
    let h = Harness::new(limits(idle)).await;
    let entry = h.function("f", config()).await;
    tokio::time::pause();
    let v1 = entry.versions.values().next().unwrap().clone();
    let pool = h.invoker.pool(&entry, &v1);

    h.scheduler.set_provisioned(pool, 3);
    while h.scheduler.provisioned_ready(pool) < 3 {
        tokio::time::sleep(Duration::from_millis(1)).await;
    }
    assert_eq!(
        h.fake.created(),
        [InitializationType::ProvisionedConcurrency; 3]
    );
    assert_eq!(h.fake.live(), 3);

    let result = h
        .invoker
        .invoke(
            Target {
                entry: &entry,
                version: &v1,
                qualifier: Some("1"),
            },
            request("r1"),
        )
        .await
        .unwrap();
    assert_eq!(result.start, StartKind::Warm);
    assert_eq!(result.version, "1");
    assert_eq!(
        h.fake.created().len(),
        3,
        "an invoke created an environment"
    );

    // Provisioned environments never scale to zero.
    tokio::time::advance(idle * 2).await;
    h.scheduler.tick();
    assert_eq!(h.fake.live(), 3);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn concurrent_first_invocations_of_a_version_all_find_its_pool() {
    // The first invocations of a version register its pool; those that arrive while it is
    // being registered must find it whole, never an id the scheduler does not know yet.
    const FUNCTIONS: usize = 400;
    const CALLERS: usize = 6;
    let room = (FUNCTIONS * CALLERS) as u32;
    let h = std::sync::Arc::new(
        Harness::new(Limits {
            account_concurrency: room,
            burst_limit: room,
            max_environments: room as usize,
            ..Limits::default()
        })
        .await,
    );
    for f in 0..FUNCTIONS {
        h.function(&format!("f{f}"), config()).await;
    }
    let barrier = std::sync::Arc::new(tokio::sync::Barrier::new(FUNCTIONS * CALLERS));
    let calls: Vec<_> = (0..FUNCTIONS * CALLERS)
        .map(|i| {
            let (h, barrier) = (h.clone(), barrier.clone());
            tokio::spawn(async move {
                barrier.wait().await;
                h.invoke(&format!("f{}", i % FUNCTIONS), &format!("r{i}"))
                    .await
            })
        })
        .collect();
    for call in calls {
        let outcome = call.await.unwrap();
        assert!(outcome.is_ok(), "{outcome:?}");
    }
}

//! SnapStart: a snapshot of INIT, restored by new environments instead of running INIT,
//! kept across a restart of the node; and the guests it cannot apply to.

use std::sync::Arc;
use std::time::Duration;

use protocol::{
    ExecutionBackend, FunctionSpec, InitializationType, Outcome, SnapshotError, StartKind,
};
use worker::{Worker, WorkerConfig};

use crate::{Harness, body, event};

const SECOND: Duration = Duration::from_secs(1);

fn published(h: &Harness, fixture: &str) -> Arc<FunctionSpec> {
    let mut spec = (*h.spec(fixture, 256, 10 * SECOND)).clone();
    spec.version = "1".into();
    spec.snap_start = true;
    Arc::new(spec)
}

#[tokio::test(flavor = "multi_thread")]
async fn environments_restore_the_snapshot_instead_of_running_init() {
    let h = Harness::new();
    let spec = published(&h, "embedded-model");
    h.worker.prepare(&spec.code).await.unwrap();
    let info = h.worker.snapshot(spec.clone()).await.unwrap();
    assert!(info.init_duration > Duration::ZERO);
    // The initialised heap (12 MiB of parsed weights) is part of the snapshot.
    assert!(info.snapshot_bytes > 12 << 20, "{info:?}");

    let mut restored = h
        .worker
        .create_environment(spec.clone(), InitializationType::SnapStart)
        .await
        .unwrap();
    let r = restored.invoke(event("{}")).await;
    assert_eq!(r.outcome, Outcome::Success, "{r:?}");
    assert_eq!(r.start, StartKind::Snapshot);
    assert!(r.init_duration.is_some(), "a restore reports its duration");
    assert!(!r.log.contains("INIT: parsed"), "{}", r.log);
    assert!(r.log.contains("\tRestore Duration: "), "{}", r.log);
    let from_snapshot = body(&r);
    assert_eq!(from_snapshot["inits"], 1);
    assert_eq!(from_snapshot["init_type"], "snap-start");

    let mut on_demand = h
        .worker
        .create_environment(spec.clone(), InitializationType::OnDemand)
        .await
        .unwrap();
    let r = on_demand.invoke(event("{}")).await;
    assert_eq!(r.start, StartKind::Cold);
    assert!(r.log.contains("INIT: parsed"), "{}", r.log);
    assert_eq!(body(&r)["output"], from_snapshot["output"]);

    // A taken snapshot is not taken again: the second call costs no INIT.
    let again = h.worker.snapshot(spec).await.unwrap();
    assert_eq!(again.init_duration, Duration::ZERO);
}

#[tokio::test(flavor = "multi_thread")]
async fn a_restarted_node_reuses_the_compiled_snapshot() {
    let h = Harness::new();
    let spec = published(&h, "counter");
    h.worker.prepare(&spec.code).await.unwrap();
    assert!(h.worker.snapshot(spec.clone()).await.unwrap().init_duration > Duration::ZERO);

    let mut config = WorkerConfig::new(h.dir.path().join("data"));
    config.pool.total_component_instances = 50;
    config.pool.total_core_instances = 200;
    config.pool.total_memories = 100;
    config.pool.total_tables = 200;
    config.pool.total_stacks = 50;
    let restarted = Worker::new(config).unwrap();
    restarted.prepare(&spec.code).await.unwrap();
    let info = restarted.snapshot(spec.clone()).await.unwrap();
    assert_eq!(
        info.init_duration,
        Duration::ZERO,
        "the artifact on disk is reused"
    );
    let mut env = restarted
        .create_environment(spec, InitializationType::SnapStart)
        .await
        .unwrap();
    let r = env.invoke(event("{}")).await;
    assert_eq!(
        (r.start, body(&r)["count"].clone()),
        (StartKind::Snapshot, 1.into())
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn what_cannot_be_snapshotted_runs_init_as_usual() {
    let h = Harness::new();
    // A command has no INIT.
    let command = published(&h, "command");
    h.worker.prepare(&command.code).await.unwrap();
    assert!(matches!(
        h.worker.snapshot(command.clone()).await,
        Err(SnapshotError::Unsupported(_))
    ));
    let mut env = h
        .worker
        .create_environment(command, InitializationType::SnapStart)
        .await
        .unwrap();
    assert_eq!(env.invoke(event("\"x\"")).await.outcome, Outcome::Success);

    // An INIT that fails is the guest's failure, at publish and for callers alike.
    let mut failing = (*published(&h, "embedded-model")).clone();
    failing.environment.push(("FAIL_INIT".into(), "1".into()));
    let failing = Arc::new(failing);
    h.worker.prepare(&failing.code).await.unwrap();
    match h.worker.snapshot(failing.clone()).await {
        Err(SnapshotError::Init(e)) => {
            assert_eq!(
                (e.error_type.as_str(), e.error_message.as_str()),
                ("ModelLoadError", "FAIL_INIT is set")
            )
        }
        other => panic!("expected an INIT failure, got {other:?}"),
    }
    let mut env = h
        .worker
        .create_environment(failing, InitializationType::SnapStart)
        .await
        .unwrap();
    let r = env.invoke(event("{}")).await;
    assert_eq!(r.outcome, Outcome::FunctionError);
    assert_eq!(r.start, StartKind::Cold);
}

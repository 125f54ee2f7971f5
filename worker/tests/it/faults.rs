//! Limits and faults: every failure becomes Lambda's error payload, blames the function,
//! and leaves the host healthy.

use std::time::{Duration, Instant};

use protocol::{Blame, EnvironmentError, ExecutionBackend, InitializationType, Outcome, StartKind};

use crate::{Harness, body, error_type, event, rss_bytes};

const SECOND: Duration = Duration::from_secs(1);

#[tokio::test(flavor = "multi_thread")]
async fn timeouts_stop_sleeping_and_spinning_guests() {
    let h = Harness::new();
    for (fixture, payload) in [("sleep", "{\"ms\":5000}"), ("spin", "{}")] {
        let mut env = h.environment(fixture, 128, SECOND).await;
        let started = Instant::now();
        let r = env.invoke(event(payload)).await;
        let took = started.elapsed();
        assert_eq!(r.outcome, Outcome::Timeout, "{fixture}");
        assert_eq!(r.blame(), Some(Blame::Function));
        let e = r.error.as_ref().unwrap();
        assert_eq!(e.error_type, "Sandbox.Timedout");
        assert_eq!(
            e.error_message,
            format!(
                "RequestId: {} Error: Task timed out after 1.00 seconds",
                r.request_id
            )
        );
        assert_eq!(
            body(&r),
            serde_json::json!({"errorType": "Sandbox.Timedout", "errorMessage": e.error_message})
        );
        assert!(r.log.contains("\tStatus: timeout\n"), "{}", r.log);
        assert!(
            took < Duration::from_millis(1500),
            "{fixture}: the timeout fired late ({took:?})"
        );
    }
    // After a timeout the environment re-initialises and serves again.
    let mut env = h.environment("sleep", 128, SECOND).await;
    assert_eq!(
        env.invoke(event("{\"ms\":3000}")).await.outcome,
        Outcome::Timeout
    );
    let r = env.invoke(event("{\"ms\":1}")).await;
    assert_eq!(r.outcome, Outcome::Success, "{r:?}");
    assert_eq!(r.start, StartKind::Cold);
}

#[tokio::test(flavor = "multi_thread")]
async fn memory_size_caps_linear_memory() {
    let h = Harness::new();
    let mut env = h.environment("memory-hog", 128, 5 * SECOND).await;
    let r = env.invoke(event("{\"mb\":40}")).await;
    assert_eq!(r.outcome, Outcome::Success, "{r:?}");
    assert!(
        r.max_memory_used_mb >= 40,
        "Max Memory Used {}",
        r.max_memory_used_mb
    );
    assert!(
        r.log
            .contains(&format!("Max Memory Used: {} MB", r.max_memory_used_mb))
    );

    let r = env.invoke(event("{\"mb\":400}")).await;
    assert_eq!(r.outcome, Outcome::OutOfMemory, "{r:?}");
    assert_eq!(error_type(&r), "Runtime.OutOfMemory");
    assert!(r.max_memory_used_mb <= 128);

    // A larger MemorySize allows the same allocation.
    let mut big = h.environment("memory-hog", 1024, 5 * SECOND).await;
    let r = big.invoke(event("{\"mb\":400}")).await;
    assert_eq!(r.outcome, Outcome::Success, "{r:?}");
}

#[tokio::test(flavor = "multi_thread")]
async fn every_fault_kind_is_caught_and_worded() {
    let h = Harness::new();
    let mut env = h.environment("faults", 128, 3 * SECOND).await;
    let table: &[(&str, &str, &str)] = &[
        ("panic", "Runtime.ExitError", "panicked at"),
        ("unreachable", "Runtime.ExitError", "unreachable"),
        (
            "stack-overflow",
            "Runtime.ExitError",
            "call stack exhausted",
        ),
        ("abort", "Runtime.ExitError", "Runtime exited with error"),
        ("oob", "Runtime.ExitError", "out of bounds memory access"),
        ("exit", "Runtime.ExitError", "exit status 1"),
        ("error", "MyError", "something went wrong"),
    ];
    for (kind, error_type_expected, message_part) in table {
        let r = env.invoke(event(&format!("{{\"kind\":\"{kind}\"}}"))).await;
        assert_eq!(r.outcome, Outcome::FunctionError, "{kind}: {r:?}");
        assert_eq!(r.blame(), Some(Blame::Function), "{kind}");
        assert_eq!(&error_type(&r), error_type_expected, "{kind}");
        let msg = &r.error.as_ref().unwrap().error_message;
        assert!(msg.contains(message_part), "{kind}: {msg}");
        // Every failure leaves the environment able to serve.
        let ok = env.invoke(event("{}")).await;
        assert_eq!(ok.outcome, Outcome::Success, "after {kind}: {ok:?}");
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn a_guest_error_cannot_break_or_forge_log_lines() {
    let h = Harness::new();
    let mut env = h.environment("faults", 128, 3 * SECOND).await;
    let error_type = "Bad\"},\"forged\":true,\"x\":{\"\nREPORT RequestId: fake\u{0}\u{1b}[31m\\";
    let message = "two\nlines\r\t\u{7} and \"quotes\"";
    let payload = serde_json::json!({"kind": "error", "type": error_type, "message": message});
    let r = env.invoke(event(&payload.to_string())).await;
    assert_eq!(r.outcome, Outcome::FunctionError, "{r:?}");
    let line = r
        .log
        .lines()
        .find(|l| l.starts_with("{\"errorType\""))
        .unwrap_or_else(|| panic!("no error line in {}", r.log));
    let parsed: serde_json::Value = serde_json::from_str(line).unwrap();
    assert_eq!(
        parsed,
        serde_json::json!({"errorType": error_type, "errorMessage": message})
    );
    // The guest's newline did not start a REPORT line of its own.
    let report_lines = r.log.lines().filter(|l| l.starts_with("REPORT "));
    assert_eq!(report_lines.count(), 1, "{}", r.log);
}

#[tokio::test(flavor = "multi_thread")]
async fn a_log_flood_is_bounded() {
    let h = Harness::with_config(|c| c.max_log_bytes = 64 << 10);
    let mut env = h.environment("log-flood", 128, 10 * SECOND).await;
    for stream in ["stdout", "stderr"] {
        let r = env
            .invoke(event(&format!(
                "{{\"bytes\":{},\"stream\":\"{stream}\"}}",
                64 << 20
            )))
            .await;
        assert_eq!(r.outcome, Outcome::Success, "{r:?}");
        assert!(
            r.log.len() < (64 << 10) + 4096,
            "log is {} bytes",
            r.log.len()
        );
        assert!(r.log.contains("log output truncated"), "{stream}");
        assert!(r.log.contains("REPORT RequestId"));
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn an_exhausted_pool_is_a_platform_error_not_a_crash() {
    let h = Harness::with_config(|c| {
        c.pool.total_component_instances = 2;
        c.pool.total_stacks = 2;
    });
    let spec = h.spec("hello", 128, SECOND);
    h.worker.prepare(&spec.code).await.unwrap();
    let mut held = Vec::new();
    let mut exhausted = false;
    for _ in 0..4 {
        match h
            .worker
            .create_environment(spec.clone(), InitializationType::OnDemand)
            .await
        {
            Ok(env) => held.push(env),
            Err(EnvironmentError::Exhausted) => {
                exhausted = true;
                break;
            }
            Err(other) => panic!("{other:?}"),
        }
    }
    assert!(exhausted, "the pool never reported exhaustion");
    // Shutting an environment down frees its slot.
    held.pop();
    assert!(
        h.worker
            .create_environment(spec, InitializationType::OnDemand)
            .await
            .is_ok()
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn a_thousand_faulty_invocations_leave_the_host_healthy() {
    let h = Harness::new();
    let mut faults = h.environment("faults", 128, SECOND).await;
    let mut hog = h.environment("memory-hog", 64, SECOND).await;
    let mut spin = h.environment("spin", 128, Duration::from_secs(1)).await;
    // Warm everything up once, then measure.
    faults.invoke(event("{\"kind\":\"panic\"}")).await;
    hog.invoke(event("{\"mb\":100}")).await;
    let baseline = rss_bytes();
    let kinds = [
        "panic",
        "unreachable",
        "stack-overflow",
        "abort",
        "oob",
        "error",
        "exit",
    ];
    let mut outcomes = std::collections::HashMap::<Outcome, usize>::new();
    for i in 0..1000 {
        let r = match i % 10 {
            0..=6 => {
                faults
                    .invoke(event(&format!("{{\"kind\":\"{}\"}}", kinds[i % 7])))
                    .await
            }
            7 | 8 => hog.invoke(event("{\"mb\":100}")).await,
            _ if i % 100 == 9 => spin.invoke(event("{}")).await,
            _ => faults.invoke(event("{}")).await,
        };
        *outcomes.entry(r.outcome).or_default() += 1;
    }
    assert!(outcomes[&Outcome::FunctionError] >= 600, "{outcomes:?}");
    assert!(outcomes[&Outcome::OutOfMemory] >= 150, "{outcomes:?}");
    assert!(outcomes[&Outcome::Timeout] >= 5, "{outcomes:?}");
    let mut hello = h.environment("hello", 128, SECOND).await;
    assert_eq!(hello.invoke(event("{}")).await.outcome, Outcome::Success);
    drop((faults, hog, spin, hello));
    let after = rss_bytes();
    assert!(
        after < baseline + (48 << 20),
        "RSS grew from {} MB to {} MB",
        baseline >> 20,
        after >> 20
    );
}

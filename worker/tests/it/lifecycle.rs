//! Lambda's lifecycle: INIT once, warm reuse, reset after a crash, the guest's view of
//! its environment, and the exact log lines.

use std::time::Duration;

use protocol::{Outcome, StartKind};
use regex::Regex;

use crate::{Harness, body, error_type, event};

const SECOND: Duration = Duration::from_secs(1);

#[tokio::test(flavor = "multi_thread")]
async fn warm_invocations_reuse_the_instance_and_a_trap_resets_it() {
    let h = Harness::new();
    let mut env = h.environment("counter", 128, 3 * SECOND).await;
    for expected in 1..=3 {
        let r = env.invoke(event("{}")).await;
        assert_eq!(r.outcome, Outcome::Success, "{r:?}");
        let v = body(&r);
        assert_eq!(
            v["count"], expected,
            "globals must survive between invocations"
        );
        assert_eq!(v["inits"], 1, "INIT must run once");
        let expected_start = if expected == 1 {
            StartKind::Cold
        } else {
            StartKind::Warm
        };
        assert_eq!(r.start, expected_start);
        assert_eq!(r.init_duration.is_some(), expected == 1);
    }
    let r = env.invoke(event("{\"tmp\":\"write\"}")).await;
    assert_eq!(body(&r)["count"], 4);

    let r = env.invoke(event("{\"trap\":true}")).await;
    assert_eq!(r.outcome, Outcome::FunctionError);
    assert_eq!(error_type(&r), "Runtime.ExitError");

    // The next invocation re-initialises: the counter starts over, /tmp is kept.
    let r = env.invoke(event("{}")).await;
    assert_eq!(r.outcome, Outcome::Success);
    assert_eq!(body(&r)["count"], 1);
    assert_eq!(r.start, StartKind::Cold);
    assert!(r.log.contains("Init Duration: "), "{}", r.log);
    let r = env.invoke(event("{\"tmp\":\"read\"}")).await;
    assert_eq!(
        body(&r)["marker"],
        "4",
        "/tmp must survive a reset, as on Lambda"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn log_lines_match_lambdas_format() {
    let h = Harness::new();
    let mut env = h.environment("hello", 256, 3 * SECOND).await;
    let cold = env.invoke(event("{}")).await;
    let warm = env.invoke(event("{}")).await;
    let report = |init: &str| {
        Regex::new(&format!(
            r"(?m)^REPORT RequestId: [0-9a-f-]{{36}}\tDuration: \d+\.\d\d ms\tBilled Duration: \d+ ms\tMemory Size: 256 MB\tMax Memory Used: \d+ MB\t{init}$"
        ))
        .unwrap()
    };
    for (r, init) in [(&cold, r"Init Duration: \d+\.\d\d ms\t"), (&warm, "")] {
        let id = &r.request_id;
        assert!(
            r.log
                .contains(&format!("START RequestId: {id} Version: $LATEST\n")),
            "{}",
            r.log
        );
        assert!(
            r.log.contains(&format!("END RequestId: {id}\n")),
            "{}",
            r.log
        );
        assert!(report(init).is_match(&r.log), "{}", r.log);
        assert!(r.log.ends_with('\n'));
        assert!(r.max_memory_used_mb >= 1 && r.max_memory_used_mb <= 256);
        let billed = r.billed_ms();
        let exact = (r.init_duration.unwrap_or_default() + r.duration).as_secs_f64() * 1000.0;
        assert!(
            billed as f64 >= exact && (billed as f64) < exact + 1.0,
            "{billed} vs {exact}"
        );
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn guests_see_only_their_package_their_tmp_and_lambdas_variables() {
    let h = Harness::new();
    let mut env = h.environment("env-dump", 128, 3 * SECOND).await;
    let r = env.invoke(event("{}")).await;
    assert_eq!(r.outcome, Outcome::Success, "{r:?}");
    let v = body(&r);
    let vars = v["env"].as_object().unwrap();
    for (k, expected) in [
        ("AWS_LAMBDA_FUNCTION_NAME", "env-dump"),
        ("AWS_LAMBDA_FUNCTION_MEMORY_SIZE", "128"),
        ("AWS_LAMBDA_FUNCTION_VERSION", "$LATEST"),
        ("AWS_REGION", "us-east-1"),
        ("_HANDLER", "function.wasm"),
        ("LAMBDA_TASK_ROOT", "/var/task"),
        ("AWS_LAMBDA_INITIALIZATION_TYPE", "on-demand"),
        ("GREETING", "hi"),
    ] {
        assert_eq!(vars.get(k).and_then(|x| x.as_str()), Some(expected), "{k}");
    }
    for host_var in ["PATH", "HOME", "CARGO_MANIFEST_DIR", "RUST_BACKTRACE"] {
        assert!(
            !vars.contains_key(host_var),
            "host variable {host_var} leaked in"
        );
    }
    let listing: Vec<&str> = v["var_task"]
        .as_array()
        .unwrap()
        .iter()
        .map(|x| x.as_str().unwrap())
        .collect();
    assert!(listing.contains(&"function.wasm") && listing.contains(&"data.txt"));
    assert_ne!(
        v["etc_passwd"], "readable",
        "the host filesystem must be invisible"
    );
    assert_eq!(v["tmp_write"], "ok");
    assert_ne!(v["var_task_write"], "ok", "/var/task must be read-only");
}

#[tokio::test(flavor = "multi_thread")]
async fn init_failures_are_reported_to_the_first_caller() {
    // A command that exits at once has no INIT; a handler's INIT can only fail through
    // a trap here, so use a memory limit too small for the guest to instantiate.
    let h = Harness::new();
    let spec = h.spec("hello", 1, 3 * SECOND);
    protocol::ExecutionBackend::prepare(&h.worker, &spec.code)
        .await
        .unwrap();
    let mut env = protocol::ExecutionBackend::create_environment(
        &h.worker,
        spec,
        protocol::InitializationType::OnDemand,
    )
    .await
    .unwrap();
    assert!(env.init_error().is_some());
    let r = env.invoke(event("{}")).await;
    assert_ne!(r.outcome, Outcome::Success);
    assert_eq!(r.start, StartKind::Cold);
    assert!(r.init_duration.is_some());
}

//! Every guest kind, detected from the binary, answering through its own contract.

use std::time::Duration;

use bytes::Bytes;
use protocol::http::HttpRequest;
use protocol::{
    ExecutionBackend, GuestKind, InvocationInput, Outcome, Payload, PrepareError, Response,
};

use crate::{Harness, body, error_type, event};

const SECOND: Duration = Duration::from_secs(1);

#[tokio::test(flavor = "multi_thread")]
async fn detects_every_guest_kind_from_the_binary() {
    let h = Harness::new();
    for (name, kind) in [
        ("hello", GuestKind::Handler),
        ("http-hello", GuestKind::Http),
        ("command", GuestKind::Command),
        ("c-command", GuestKind::Command),
    ] {
        let prepared = h.worker.prepare(&h.package(name)).await.unwrap();
        assert_eq!(prepared.kind, kind, "{name}");
        assert!(prepared.artifact_bytes > 0, "{name} has no artifact");
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn handler_component_answers_and_echoes_large_payloads() {
    let h = Harness::new();
    let mut hello = h.environment("hello", 128, 3 * SECOND).await;
    let r = hello.invoke(event("{}")).await;
    assert_eq!(r.outcome, Outcome::Success, "{r:?}");
    assert_eq!(body(&r)["message"], "Hello from Lamina");

    let mut echo = h.environment("echo", 256, 3 * SECOND).await;
    let big = format!("{{\"data\":\"{}\"}}", "x".repeat(5 << 20));
    let r = echo.invoke(event(&big)).await;
    assert_eq!(r.outcome, Outcome::Success);
    match &r.response {
        Response::Event(b) => assert_eq!(b.len(), big.len()),
        other => panic!("{other:?}"),
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn wasi_command_components_read_stdin_and_exit_codes_are_errors() {
    let h = Harness::new();
    let mut env = h.environment("command", 128, 3 * SECOND).await;
    let r = env.invoke(event("{\"a\":\"hello\"}")).await;
    assert_eq!(r.outcome, Outcome::Success, "{r:?}");
    let v = body(&r);
    assert_eq!(v["stdin_bytes"], 13);
    assert_eq!(v["upper"], "{\"A\":\"HELLO\"}");
    assert!(
        r.log.contains('\n'),
        "stderr line missing from log: {}",
        r.log
    );

    let r = env.invoke(event("{\"please\":\"exit\"}")).await;
    assert_eq!(r.outcome, Outcome::FunctionError);
    assert_eq!(error_type(&r), "Runtime.ExitError");
    assert!(
        r.error
            .as_ref()
            .unwrap()
            .error_message
            .ends_with("exit status 1"),
        "{:?}",
        r.error
    );
    // Commands keep no state, so the environment serves again at once.
    let r = env.invoke(event("{}")).await;
    assert_eq!(r.outcome, Outcome::Success);
}

#[tokio::test(flavor = "multi_thread")]
async fn c_command_core_module_runs_as_a_function() {
    let h = Harness::new();
    let mut env = h.environment("c-command", 128, 3 * SECOND).await;
    let r = env.invoke(event("{\"x\":1}")).await;
    assert_eq!(r.outcome, Outcome::Success, "{r:?}");
    let v = body(&r);
    assert_eq!(v["language"], "c");
    assert_eq!(v["stdin_bytes"], 7);

    let r = env.invoke(event("\"fail\"")).await;
    assert_eq!(r.outcome, Outcome::FunctionError);
    assert!(
        r.error
            .as_ref()
            .unwrap()
            .error_message
            .ends_with("exit status 1"),
        "{:?}",
        r.error
    );
}

fn http_request(method: &str, path: &str, body: &str) -> InvocationInput {
    InvocationInput {
        request_id: uuid::Uuid::new_v4().to_string(),
        payload: Payload::Http(HttpRequest {
            method: method.into(),
            path: path.into(),
            query: Some("q=1".into()),
            headers: vec![
                ("host".into(), "example.test".into()),
                ("content-type".into(), "application/json".into()),
            ],
            body: Bytes::from(body.to_owned()),
            source_ip: "127.0.0.1".into(),
            protocol: "HTTP/1.1".into(),
        }),
        invoked_arn: "arn:aws:lambda:us-east-1:123456789012:function:f".into(),
        client_context: None,
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn wasi_http_components_serve_requests_and_events() {
    let h = Harness::new();
    let mut env = h.environment("http-hello", 128, 3 * SECOND).await;
    for _ in 0..3 {
        let r = env.invoke(http_request("GET", "/greet", "")).await;
        assert_eq!(r.outcome, Outcome::Success, "{r:?}");
        match &r.response {
            Response::Http(resp) => {
                assert_eq!(resp.status, 200);
                assert_eq!(resp.body, Bytes::from("Hello from wasi:http"));
                assert!(
                    resp.headers
                        .iter()
                        .any(|(k, v)| k == "x-path" && v == "/greet?q=1"),
                    "{:?}",
                    resp.headers
                );
            }
            other => panic!("{other:?}"),
        }
    }
    let r = env.invoke(http_request("POST", "/", "{\"in\":1}")).await;
    match &r.response {
        Response::Http(resp) => assert_eq!(resp.body, Bytes::from("{\"in\":1}")),
        other => panic!("{other:?}"),
    }
    // Through Invoke, an HTTP guest gets the event as a POST and answers in the
    // function-URL response shape.
    let r = env.invoke(event("{\"in\":2}")).await;
    assert_eq!(r.outcome, Outcome::Success);
    let v = body(&r);
    assert_eq!(v["statusCode"], 200);
    assert_eq!(v["body"], "{\"in\":2}");
}

#[tokio::test(flavor = "multi_thread")]
async fn unusable_code_is_refused_with_a_reason() {
    let h = Harness::new();
    let mut pkg = h.package("hello");
    std::fs::write(pkg.root.join("garbage.wasm"), b"definitely not wasm").unwrap();
    std::fs::write(pkg.root.join("truncated.wasm"), b"\0asm\x01\0\0\0\x01").unwrap();
    for (handler, expect) in [
        ("garbage.wasm", "not a WebAssembly binary"),
        ("truncated.wasm", "invalid"),
        ("missing.wasm", "was not found"),
        ("../escape.wasm", "relative path"),
        ("data.txt", "not a WebAssembly binary"),
    ] {
        pkg.handler = handler.into();
        pkg.digest = format!("digest-{handler}");
        match h.worker.prepare(&pkg).await {
            Err(PrepareError::InvalidCode(msg)) => {
                assert!(msg.contains(expect), "{handler}: {msg}")
            }
            other => panic!("{handler}: {other:?}"),
        }
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn precompiled_artifacts_survive_a_restart() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let make = || {
        let mut c = worker::WorkerConfig::new(&data);
        c.pool.enabled = false;
        worker::Worker::new(c).unwrap()
    };
    let h = Harness::new();
    let mut pkg = h.package("hello");
    pkg.digest = "restart".into();

    let first = make();
    let started = std::time::Instant::now();
    first.prepare(&pkg).await.unwrap();
    let compile_time = started.elapsed();
    drop(first);

    let artifacts: Vec<_> = walk(&data.join("compiled"));
    assert_eq!(artifacts.len(), 1, "{artifacts:?}");
    let modified = std::fs::metadata(&artifacts[0])
        .unwrap()
        .modified()
        .unwrap();

    let second = make();
    let started = std::time::Instant::now();
    second.prepare(&pkg).await.unwrap();
    let load_time = started.elapsed();
    assert_eq!(walk(&data.join("compiled")), artifacts);
    assert_eq!(
        std::fs::metadata(&artifacts[0])
            .unwrap()
            .modified()
            .unwrap(),
        modified,
        "the artifact was rewritten instead of reused"
    );
    assert!(
        load_time < compile_time,
        "loading ({load_time:?}) was not faster than compiling ({compile_time:?})"
    );
    let spec = h.spec("hello", 128, SECOND);
    let spec = std::sync::Arc::new(protocol::FunctionSpec {
        code: pkg,
        ..(*spec).clone()
    });
    let mut env = second
        .create_environment(spec, protocol::InitializationType::OnDemand)
        .await
        .unwrap();
    assert_eq!(env.invoke(event("{}")).await.outcome, Outcome::Success);
}

fn walk(dir: &std::path::Path) -> Vec<std::path::PathBuf> {
    let mut out = Vec::new();
    for entry in std::fs::read_dir(dir).unwrap() {
        let path = entry.unwrap().path();
        if path.is_dir() {
            out.extend(walk(&path));
        } else {
            out.push(path);
        }
    }
    out.sort();
    out
}

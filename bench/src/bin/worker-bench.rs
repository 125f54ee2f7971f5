//! The worker in-process: warm invoke, new environment, raw instantiation, and the cost
//! of epoch interruption, each next to the engine-only baseline measured in the same run.
//!
//! `cargo run --release -p bench --bin worker-bench`

use std::sync::Arc;
use std::time::{Duration, Instant};

use bench::{fixture_package, summarize};
use bytes::Bytes;
use protocol::{
    ExecutionBackend, FunctionSpec, InitializationType, InvocationInput, Outcome, Payload,
};
use worker::{Worker, WorkerConfig};

fn spec(code: protocol::CodePackage, memory_mb: u32) -> Arc<FunctionSpec> {
    Arc::new(FunctionSpec {
        account_id: "000000000000".into(),
        region: "us-east-1".into(),
        function_name: "bench".into(),
        version: "$LATEST".into(),
        function_arn: "arn:aws:lambda:us-east-1:000000000000:function:bench:$LATEST".into(),
        memory_mb,
        timeout: Duration::from_secs(60),
        ephemeral_storage_mb: 512,
        environment: vec![],
        code,
        allowed_hosts: vec![],
        snap_start: false,
    })
}

fn input(payload: &'static [u8]) -> InvocationInput {
    InvocationInput {
        request_id: "00000000-0000-0000-0000-000000000000".into(),
        payload: Payload::Event(Bytes::from_static(payload)),
        invoked_arn: "arn:aws:lambda:us-east-1:000000000000:function:bench".into(),
        client_context: None,
    }
}

fn worker(dir: &std::path::Path, epoch: bool) -> anyhow::Result<Worker> {
    let mut config = WorkerConfig::new(dir);
    config.epoch_interruption = epoch;
    let env_bytes = |name: &str| std::env::var(name).ok().and_then(|v| v.parse().ok());
    if let Some(b) = env_bytes("BENCH_MEMORY_KEEP_RESIDENT") {
        config.pool.linear_memory_keep_resident = b;
    }
    if let Some(b) = env_bytes("BENCH_TABLE_KEEP_RESIDENT") {
        config.pool.table_keep_resident = b;
    }
    Ok(Worker::new(config)?)
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let dir = std::env::temp_dir().join(format!("lamina-bench-{}", uuid::Uuid::new_v4()));
    let packages = dir.join("packages");
    let w = worker(&dir.join("data"), true)?;
    let echo = fixture_package(&packages, "echo")?;
    let hello = fixture_package(&packages, "hello")?;
    w.prepare(&echo).await?;
    w.prepare(&hello).await?;
    let payload: &'static [u8] = br#"{"hello":"world"}"#;

    // 1. Warm invoke of echo: Lamina's environment vs a bare `handle` call.
    let mut env = w
        .create_environment(spec(echo.clone(), 128), InitializationType::OnDemand)
        .await?;
    for _ in 0..2000 {
        env.invoke(input(payload)).await;
    }
    let mut lamina = Vec::with_capacity(20_000);
    for _ in 0..20_000 {
        let started = Instant::now();
        let r = env.invoke(input(payload)).await;
        lamina.push(started.elapsed());
        assert_eq!(r.outcome, Outcome::Success);
    }
    let raw = worker::diagnostics::raw_handle(&w, &echo, payload, 20_000)
        .await
        .map_err(anyhow::Error::msg)?;
    println!(
        "warm invoke, echo, Lamina environment   {}",
        summarize(lamina)
    );
    println!("warm invoke, echo, bare handle() call   {}", summarize(raw));

    // 2. New environment (instantiate + INIT) for hello vs raw instantiation.
    let hello_spec = spec(hello.clone(), 128);
    let mut created = Vec::with_capacity(2000);
    for _ in 0..2000 {
        let started = Instant::now();
        let env = w
            .create_environment(hello_spec.clone(), InitializationType::OnDemand)
            .await?;
        created.push(started.elapsed());
        drop(env);
    }
    let raw = worker::diagnostics::instantiate(&w, &hello, 2000)
        .await
        .map_err(anyhow::Error::msg)?;
    println!(
        "new environment, hello (+INIT, /tmp)    {}",
        summarize(created)
    );
    println!("raw instantiation, hello (pooling, CoW) {}", summarize(raw));

    // 3. Cold invoke end to end: environment creation plus the first invocation.
    let mut cold = Vec::with_capacity(1000);
    for _ in 0..1000 {
        let started = Instant::now();
        let mut env = w
            .create_environment(hello_spec.clone(), InitializationType::OnDemand)
            .await?;
        env.invoke(input(b"{}")).await;
        cold.push(started.elapsed());
    }
    println!(
        "cold invoke, hello (create + invoke)    {}",
        summarize(cold)
    );

    // 4. Epoch interruption on vs off on a compute-heavy guest.
    let compute = fixture_package(&packages, "compute")?;
    let off = worker(&dir.join("data-noepoch"), false)?;
    w.prepare(&compute).await?;
    off.prepare(&compute).await?;
    let mut on_env = w
        .create_environment(spec(compute.clone(), 128), InitializationType::OnDemand)
        .await?;
    let mut off_env = off
        .create_environment(spec(compute.clone(), 128), InitializationType::OnDemand)
        .await?;
    let work: &'static [u8] = br#"{"n":10000000}"#;
    let (mut with, mut without) = (Vec::new(), Vec::new());
    // Interleaved, so drift in machine load hits both sides alike.
    for _ in 0..15 {
        let r = on_env.invoke(input(work)).await;
        with.push(r.duration);
        let r = off_env.invoke(input(work)).await;
        without.push(r.duration);
    }
    let (with, without) = (summarize(with), summarize(without));
    println!("compute n=1e7, epoch interruption on    {with}");
    println!("compute n=1e7, epoch interruption off   {without}");
    println!(
        "epoch tax (p50): {:+.2} %",
        (with.p50_us / without.p50_us - 1.0) * 100.0
    );
    let _ = std::fs::remove_dir_all(&dir);
    Ok(())
}

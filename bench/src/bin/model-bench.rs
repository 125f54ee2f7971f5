//! Models in the worker, each figure next to its baseline from the same run:
//! 1. per-row inference through a Runtime onnx function against tract called directly
//!    on the same model (MLP and random forest; one row per request, and 100);
//! 2. a cold ML request: a new environment and its first answer, with the model already
//!    loaded on the node, next to the same request warm; and the model's load time;
//! 3. SnapStart: a guest that embeds a 12 MiB model, cold-started by running INIT
//!    against restoring its snapshot.
//!
//! `cargo run --release -p bench --bin model-bench`

use std::sync::Arc;
use std::time::{Duration, Instant};

use bench::{fixture_package, repo_root, summarize};
use bytes::Bytes;
use protocol::{
    CodePackage, ExecutionBackend, FunctionSpec, InitializationType, InvocationInput, Outcome,
    Payload, Runtime,
};
use serde_json::{Value, json};
use tract_onnx::prelude::{IntoTValue, Tensor};
use worker::{Worker, WorkerConfig};

fn spec(code: CodePackage, version: &str, snap_start: bool) -> Arc<FunctionSpec> {
    Arc::new(FunctionSpec {
        account_id: "000000000000".into(),
        region: "us-east-1".into(),
        function_name: "bench".into(),
        version: version.into(),
        function_arn: format!("arn:aws:lambda:us-east-1:000000000000:function:bench:{version}"),
        memory_mb: 512,
        timeout: Duration::from_secs(60),
        ephemeral_storage_mb: 512,
        environment: vec![],
        code,
        allowed_hosts: vec![],
        snap_start,
    })
}

fn input(payload: Bytes) -> InvocationInput {
    InvocationInput {
        request_id: "00000000-0000-0000-0000-000000000000".into(),
        payload: Payload::Event(payload),
        invoked_arn: "arn:aws:lambda:us-east-1:000000000000:function:bench".into(),
        client_context: None,
    }
}

/// A fixture model of `onnx-ops/tests/data` and its first input row.
fn model(name: &str) -> anyhow::Result<(Vec<u8>, Vec<f32>)> {
    let data = repo_root().join("onnx-ops/tests/data");
    let bytes = std::fs::read(data.join(format!("{name}.onnx")))?;
    let meta: Value = serde_json::from_slice(&std::fs::read(data.join(format!("{name}.json")))?)?;
    let features = meta["inputs"][0]["shape"][1]
        .as_u64()
        .ok_or_else(|| anyhow::anyhow!("{name}.json has no feature count"))?
        as usize;
    let row = meta["inputs"][0]["data"]
        .as_array()
        .ok_or_else(|| anyhow::anyhow!("{name}.json has no rows"))?
        .iter()
        .take(features)
        .map(|v| v.as_f64().unwrap_or(0.0) as f32)
        .collect();
    Ok((bytes, row))
}

fn model_package(dir: &std::path::Path, name: &str, bytes: &[u8]) -> anyhow::Result<CodePackage> {
    let root = dir.join(name);
    std::fs::create_dir_all(&root)?;
    std::fs::write(root.join("model.onnx"), bytes)?;
    Ok(CodePackage {
        digest: format!("bench-model-{name}"),
        root,
        runtime: Runtime::Onnx,
        handler: "model.onnx".into(),
        opt_root: None,
    })
}

async fn invoke_ok(env: &mut Box<dyn protocol::ExecutionEnvironment>, payload: &Bytes) {
    let r = env.invoke(input(payload.clone())).await;
    assert_eq!(r.outcome, Outcome::Success, "{:?}", r.error);
}

/// Microseconds per row of `rows`-row requests through the function, and through tract.
async fn per_row(
    w: &Worker,
    dir: &std::path::Path,
    name: &str,
    rows: usize,
) -> anyhow::Result<(f64, f64)> {
    let (bytes, row) = model(name)?;
    let code = model_package(dir, name, &bytes)?;
    w.prepare(&code).await?;
    let mut env = w
        .create_environment(spec(code, "$LATEST", false), InitializationType::OnDemand)
        .await?;
    let batch: Vec<Vec<f32>> = vec![row.clone(); rows];
    let payload = Bytes::from(if rows == 1 {
        json!({ "input": row }).to_string()
    } else {
        json!({ "input": batch }).to_string()
    });
    let rounds = (20_000 / rows).max(200);
    for _ in 0..rounds / 10 {
        invoke_ok(&mut env, &payload).await;
    }
    let started = Instant::now();
    for _ in 0..rounds {
        invoke_ok(&mut env, &payload).await;
    }
    let in_function = started.elapsed().as_secs_f64() * 1e6 / (rounds * rows) as f64;

    let direct = onnx_ops::load(&bytes, &onnx_ops::LoadLimits::default())?;
    let flat: Vec<f32> = batch.concat();
    let tensor = Tensor::from_shape(&[rows, row.len()], &flat)?;
    for _ in 0..rounds / 10 {
        direct.run(vec![tensor.clone().into_tvalue()])?;
    }
    let started = Instant::now();
    for _ in 0..rounds {
        direct.run(vec![tensor.clone().into_tvalue()])?;
    }
    let native = started.elapsed().as_secs_f64() * 1e6 / (rounds * rows) as f64;
    Ok((in_function, native))
}

fn main() -> anyhow::Result<()> {
    bench::library_backtraces_off();
    tokio::runtime::Runtime::new()?.block_on(run())
}

async fn run() -> anyhow::Result<()> {
    let dir = std::env::temp_dir().join(format!("lamina-model-bench-{}", uuid::Uuid::new_v4()));
    let packages = dir.join("packages");
    let mut config = WorkerConfig::new(dir.join("data"));
    config.runtimes_dir = Some(repo_root().join("guests/target/runtimes"));
    let w = Worker::new(config)?;

    println!("1. per-row inference: in a function vs tract directly (target <= 1.2x)");
    for name in ["standard_scaler__mlp_regressor", "random_forest_regressor"] {
        for rows in [1, 100] {
            let (function, native) = per_row(&w, &packages, name, rows).await?;
            println!(
                "   {name:<32} {rows:>3} row(s)/request: function {function:>8.2} us/row   tract {native:>8.2} us/row   {:.2}x",
                function / native
            );
        }
    }

    println!("2. cold ML request, the model already on the node (target <= 1 ms)");
    let (bytes, row) = model("linear_regression")?;
    let started = Instant::now();
    onnx_ops::load(&bytes, &onnx_ops::LoadLimits::default())?;
    let load = started.elapsed();
    let code = model_package(&packages, "linear_regression", &bytes)?;
    let started = Instant::now();
    w.prepare(&code).await?;
    println!(
        "   model load: onnx-ops {:.2} ms; deploy-time prepare on a fresh node (runtime compile + model load) {:.2} ms",
        load.as_secs_f64() * 1e3,
        started.elapsed().as_secs_f64() * 1e3
    );
    let payload = Bytes::from(json!({ "input": row }).to_string());
    let function = spec(code, "$LATEST", false);
    let mut cold = Vec::new();
    for _ in 0..300 {
        let started = Instant::now();
        let mut env = w
            .create_environment(function.clone(), InitializationType::OnDemand)
            .await?;
        invoke_ok(&mut env, &payload).await;
        cold.push(started.elapsed());
    }
    let mut env = w
        .create_environment(function.clone(), InitializationType::OnDemand)
        .await?;
    let mut warm = Vec::new();
    for _ in 0..3000 {
        let started = Instant::now();
        invoke_ok(&mut env, &payload).await;
        warm.push(started.elapsed());
    }
    println!("   cold (new environment + answer): {}", summarize(cold));
    println!("   warm (baseline):                 {}", summarize(warm));

    println!("3. SnapStart: cold start of a guest embedding a 12 MiB model");
    let embedded = fixture_package(&packages, "embedded-model")?;
    w.prepare(&embedded).await?;
    let version = spec(embedded, "1", true);
    let started = Instant::now();
    let info = w.snapshot(version.clone()).await?;
    println!(
        "   snapshot at publish: {:.1} ms (INIT {:.2} ms), {:.1} MiB",
        started.elapsed().as_secs_f64() * 1e3,
        info.init_duration.as_secs_f64() * 1e3,
        info.snapshot_bytes as f64 / (1 << 20) as f64
    );
    let empty = Bytes::from_static(b"{}");
    for (label, init_type) in [
        ("INIT (baseline)", InitializationType::OnDemand),
        ("snapshot restore", InitializationType::SnapStart),
    ] {
        let mut samples = Vec::new();
        for _ in 0..30 {
            let started = Instant::now();
            let mut env = w.create_environment(version.clone(), init_type).await?;
            invoke_ok(&mut env, &empty).await;
            samples.push(started.elapsed());
        }
        println!(
            "   {label:<17} new environment + first answer: {}",
            summarize(samples)
        );
    }
    let mut env = w
        .create_environment(version.clone(), InitializationType::SnapStart)
        .await?;
    let mut warm = Vec::new();
    for _ in 0..30 {
        let started = Instant::now();
        invoke_ok(&mut env, &empty).await;
        warm.push(started.elapsed());
    }
    println!(
        "   warm answer (the handler's own work): {}",
        summarize(warm)
    );
    drop(env);
    let _ = std::fs::remove_dir_all(&dir);
    Ok(())
}

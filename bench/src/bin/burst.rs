//! Fires N invocations at once at a running Lamina and reports how long until all were
//! answered, their status codes, cold starts and latency percentiles.
//!
//! `burst http://127.0.0.1:4599 FUNCTION N [PAYLOAD]`

use std::time::{Duration, Instant};

use bench::summarize;
use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper_util::client::legacy::Client;
use hyper_util::rt::TokioExecutor;

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let args: Vec<String> = std::env::args().collect();
    anyhow::ensure!(
        args.len() >= 4,
        "usage: burst ENDPOINT FUNCTION N [PAYLOAD]"
    );
    let endpoint = args[1].trim_end_matches('/').to_owned();
    let function = args[2].clone();
    let n: usize = args[3].parse()?;
    let payload = Bytes::from(args.get(4).cloned().unwrap_or_else(|| "{}".into()));
    let mut connector = hyper_util::client::legacy::connect::HttpConnector::new();
    connector.set_nodelay(true);
    let client: Client<_, Full<Bytes>> = Client::builder(TokioExecutor::new())
        .pool_max_idle_per_host(n)
        .build(connector);
    let uri = format!("{endpoint}/2015-03-31/functions/{function}/invocations");
    let barrier = std::sync::Arc::new(tokio::sync::Barrier::new(n + 1));
    let mut tasks = Vec::with_capacity(n);
    for _ in 0..n {
        let client = client.clone();
        let uri = uri.clone();
        let payload = payload.clone();
        let barrier = barrier.clone();
        tasks.push(tokio::spawn(async move {
            let mut request = hyper::Request::post(uri.as_str());
            for (name, value) in
                bench::sigv4_headers("POST", &uri, &[("x-amz-log-type", "Tail")], &payload)?
            {
                request = request.header(name, value);
            }
            let request = request.body(Full::new(payload))?;
            barrier.wait().await;
            let started = Instant::now();
            let resp = client.request(request).await?;
            let status = resp.status().as_u16();
            let cold = resp
                .headers()
                .get("x-amz-log-result")
                .and_then(|v| v.to_str().ok())
                .map(|v| {
                    use base64::Engine as _;
                    let log = base64::engine::general_purpose::STANDARD
                        .decode(v)
                        .unwrap_or_default();
                    String::from_utf8_lossy(&log).contains("Init Duration")
                })
                .unwrap_or(false);
            resp.into_body().collect().await?;
            anyhow::Ok((status, cold, started.elapsed()))
        }));
    }
    barrier.wait().await;
    let started = Instant::now();
    let mut latencies: Vec<Duration> = Vec::with_capacity(n);
    let mut statuses = std::collections::BTreeMap::<u16, usize>::new();
    let mut cold = 0;
    for t in tasks {
        let (status, was_cold, latency) = t.await??;
        *statuses.entry(status).or_default() += 1;
        cold += usize::from(was_cold);
        latencies.push(latency);
    }
    let wall = started.elapsed();
    println!(
        "burst of {n}: all answered in {:.1} ms",
        wall.as_secs_f64() * 1e3
    );
    println!("status codes: {statuses:?}");
    println!("cold starts: {cold}");
    println!("latency: {}", summarize(latencies));
    Ok(())
}

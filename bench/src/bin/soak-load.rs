//! The load of the soak (`bench/soak.py`): first the maximum of the mix, closed loop, then
//! the same mix at a share of it (80 % by default), open loop, for the soak's length.
//! Prints one JSON document: the maximum, the rates used, and per 10 s window each
//! class's count, errors and latency percentiles with the node's RSS at the window's end.
//!
//! The maximum is the mix's own, not a sum of each class's alone: an async event costs
//! its 202 and later a dispatch, a run and a settle, and every class adds ledger rows,
//! so shares of separate maxima overshot what the node sustains and the "80 %" soak ran
//! past saturation.
//!
//! Latency is measured from when a request was due, not from when it left, so a stall
//! of the node shows in the percentiles instead of silently slowing the load.
//!
//! `soak-load ENDPOINT MODEL_URL MODEL_BODY NODE_PID SECONDS LOAD_SHARE`

use std::collections::BTreeMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper_util::client::legacy::Client;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::TokioExecutor;
use serde_json::json;
use tokio::sync::{Semaphore, mpsc};

const WINDOW: Duration = Duration::from_secs(10);
/// The mix by request count: of every 16 requests, 9 warm echo Invokes, 6 requests to the
/// model's function URL and 1 async Invoke of echo.
const MIX: [(Class, usize); 3] = [(Class::Echo, 9), (Class::Model, 6), (Class::Async, 1)];
/// How long the mix's maximum is measured: long enough for async events' dispatches and
/// the ledger's inserts to run beside the requests that cause them.
const MAXIMUM_LENGTH: Duration = Duration::from_secs(10);
/// Cold starts: a burst of this many concurrent invokes of a function every period; the
/// soak's node scales idle environments to zero well within the period.
const COLD_BURST: usize = 8;
const COLD_PERIOD: Duration = Duration::from_secs(5);
/// Requests in flight at most per class; a node slower than the load fills it, and the
/// latency (taken from when each request was due) shows the wait.
const MAX_IN_FLIGHT: usize = 512;
const ECHO_BODY: &[u8] = br#"{"hello":"soak"}"#;

type HttpClient = Client<HttpConnector, Full<Bytes>>;

#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
enum Class {
    Echo,
    Model,
    Async,
    Cold,
}

impl Class {
    fn name(self) -> &'static str {
        match self {
            Class::Echo => "echo",
            Class::Model => "model",
            Class::Async => "async",
            Class::Cold => "cold",
        }
    }
}

struct Target {
    endpoint: String,
    model_url: String,
    model_body: Bytes,
}

impl Target {
    fn request(&self, class: Class) -> anyhow::Result<hyper::Request<Full<Bytes>>> {
        let (uri, extra, body): (String, &[(&str, &str)], Bytes) = match class {
            Class::Model => {
                return Ok(hyper::Request::post(self.model_url.as_str())
                    .header("content-type", "application/json")
                    .body(Full::new(self.model_body.clone()))?);
            }
            Class::Echo => (self.invoke_uri("echo"), &[], Bytes::from_static(ECHO_BODY)),
            Class::Async => (
                self.invoke_uri("echo"),
                &[("x-amz-invocation-type", "Event")],
                Bytes::from_static(ECHO_BODY),
            ),
            Class::Cold => (self.invoke_uri("cold"), &[], Bytes::from_static(b"{}")),
        };
        let mut request = hyper::Request::post(uri.as_str());
        for (name, value) in bench::sigv4_headers("POST", &uri, extra, &body)? {
            request = request.header(name, value);
        }
        Ok(request.body(Full::new(body))?)
    }

    fn invoke_uri(&self, function: &str) -> String {
        format!(
            "{}/2015-03-31/functions/{function}/invocations",
            self.endpoint
        )
    }

    fn expected_status(class: Class) -> u16 {
        if class == Class::Async { 202 } else { 200 }
    }

    /// Sends one request; `Err` says why it does not count as served.
    async fn send(&self, client: &HttpClient, class: Class) -> Result<(), String> {
        let request = self.request(class).map_err(|e| e.to_string())?;
        let response = client.request(request).await.map_err(|e| e.to_string())?;
        let status = response.status().as_u16();
        let function_error = response.headers().contains_key("x-amz-function-error");
        let body = response
            .into_body()
            .collect()
            .await
            .map_err(|e| e.to_string())?
            .to_bytes();
        if status != Self::expected_status(class) || function_error {
            return Err(format!(
                "{}: HTTP {status}: {}",
                class.name(),
                String::from_utf8_lossy(&body[..body.len().min(200)])
            ));
        }
        if class == Class::Echo && body.as_ref() != ECHO_BODY {
            return Err(format!(
                "echo answered {:?}",
                String::from_utf8_lossy(&body)
            ));
        }
        Ok(())
    }
}

/// One finished request: its class, the window it was due in, latency, outcome.
struct Outcome {
    class: Class,
    window: usize,
    latency: Duration,
    error: Option<String>,
}

/// The throughput of `pattern` (requests sent in its order, over and over) with
/// `connections` requests always in flight, and how many it served.
async fn maximum(
    target: &Arc<Target>,
    client: &HttpClient,
    pattern: &[Class],
    connections: usize,
    length: Duration,
) -> anyhow::Result<(f64, u64)> {
    let served = Arc::new(AtomicU64::new(0));
    let deadline = Instant::now() + length;
    let mut loops = Vec::new();
    for connection in 0..connections {
        let (target, client, served) = (target.clone(), client.clone(), served.clone());
        let pattern = pattern.to_vec();
        loops.push(tokio::spawn(async move {
            // Each connection starts at its own place in the pattern, so the classes
            // in flight at any moment are mixed as the pattern is.
            for &class in pattern.iter().cycle().skip(connection) {
                if Instant::now() >= deadline {
                    break;
                }
                target
                    .send(&client, class)
                    .await
                    .map_err(anyhow::Error::msg)?;
                served.fetch_add(1, Ordering::Relaxed);
            }
            anyhow::Ok(())
        }));
    }
    for l in loops {
        l.await??;
    }
    let served = served.load(Ordering::Relaxed);
    Ok((served as f64 / length.as_secs_f64(), served))
}

/// What every paced class shares: where to send, when the soak runs, where outcomes go.
#[derive(Clone)]
struct Soak {
    target: Arc<Target>,
    client: HttpClient,
    start: Instant,
    end: Instant,
    outcomes: mpsc::UnboundedSender<Outcome>,
}

/// Sends `per_tick` requests of `class` every `period` until the soak ends, each as its
/// own task.
async fn pace(soak: Soak, class: Class, period: Duration, per_tick: usize) {
    let Soak {
        target,
        client,
        start,
        end,
        outcomes,
    } = soak;
    let in_flight = Arc::new(Semaphore::new(MAX_IN_FLIGHT));
    let mut ticks = tokio::time::interval_at(start.into(), period);
    ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Burst);
    loop {
        let due = ticks.tick().await.into_std();
        if due >= end {
            return;
        }
        let window = (due - start).as_secs() as usize / WINDOW.as_secs() as usize;
        for _ in 0..per_tick {
            let Ok(permit) = in_flight.clone().acquire_owned().await else {
                return;
            };
            let (target, client, outcomes) = (target.clone(), client.clone(), outcomes.clone());
            tokio::spawn(async move {
                let error = target.send(&client, class).await.err();
                let latency = due.elapsed();
                drop(permit);
                let _ = outcomes.send(Outcome {
                    class,
                    window,
                    latency,
                    error,
                });
            });
        }
    }
}

/// The node's resident memory, split so a drift can be told apart: anonymous memory is
/// the heap (and SQLite's page cache), file memory is mapped code and files.
#[derive(Clone, Copy)]
struct Resident {
    total_mib: f64,
    anon_mib: f64,
    file_mib: f64,
}

fn resident(pid: u32) -> anyhow::Result<Resident> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status"))?;
    let field = |name: &str| -> anyhow::Result<f64> {
        let kib: f64 = status
            .lines()
            .find_map(|l| l.strip_prefix(name))
            .and_then(|v| v.split_whitespace().next())
            .ok_or_else(|| anyhow::anyhow!("no {name} for process {pid}"))?
            .parse()?;
        Ok(kib / 1024.0)
    };
    Ok(Resident {
        total_mib: field("VmRSS:")?,
        anon_mib: field("RssAnon:")?,
        file_mib: field("RssFile:")?,
    })
}

#[derive(Default)]
struct Tally {
    latencies: Vec<Duration>,
    errors: u64,
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let args: Vec<String> = std::env::args().collect();
    anyhow::ensure!(
        args.len() == 7,
        "usage: soak-load ENDPOINT MODEL_URL MODEL_BODY NODE_PID SECONDS LOAD_SHARE"
    );
    let target = Arc::new(Target {
        endpoint: args[1].trim_end_matches('/').to_owned(),
        model_url: args[2].clone(),
        model_body: Bytes::from(args[3].clone()),
    });
    let pid: u32 = args[4].parse()?;
    let seconds: u64 = args[5].parse()?;
    // The soak's rate as a share of the mix's measured maximum.
    let load_share: f64 = args[6].parse()?;
    let mut connector = HttpConnector::new();
    connector.set_nodelay(true);
    let client: HttpClient = Client::builder(TokioExecutor::new())
        .pool_max_idle_per_host(MAX_IN_FLIGHT)
        // Below the node's keep-alive timeout (10 s), as SDK clients keep theirs: a
        // connection reused just as the server closes it for idling fails to send, a
        // race of the client's pool and not the node's error.
        .pool_idle_timeout(Duration::from_secs(5))
        .build(connector);

    // Warm both steady classes, then take the mix's maximum. Their invocations are
    // billed too: the ledger's count includes them.
    let mut served_measuring = 0;
    let mut measure = async |pattern: &[Class], length| {
        let (rate, served) = maximum(&target, &client, pattern, 32, length).await?;
        served_measuring += served;
        anyhow::Ok(rate)
    };
    measure(&[Class::Echo], Duration::from_secs(2)).await?;
    measure(&[Class::Model], Duration::from_secs(2)).await?;
    let pattern: Vec<Class> = MIX
        .iter()
        .flat_map(|&(class, count)| std::iter::repeat_n(class, count))
        .collect();
    let mix_max = measure(&pattern, MAXIMUM_LENGTH).await?;
    let rates = MIX.map(|(class, count)| {
        (
            class,
            mix_max * load_share * count as f64 / pattern.len() as f64,
        )
    });
    eprintln!(
        "maximum of the mix: {mix_max:.0}/s; soak for {seconds} s at {}",
        rates
            .iter()
            .map(|(c, r)| format!("{} {r:.0}/s", c.name()))
            .collect::<Vec<_>>()
            .join(", ")
    );

    let start = Instant::now() + Duration::from_millis(100);
    let end = start + Duration::from_secs(seconds);
    let (outcomes_tx, mut outcomes) = mpsc::unbounded_channel();
    let soak = Soak {
        target: target.clone(),
        client: client.clone(),
        start,
        end,
        outcomes: outcomes_tx,
    };
    let mut pacers = Vec::new();
    for (class, rate) in rates {
        let period = Duration::from_secs_f64(1.0 / rate.max(1.0));
        pacers.push(tokio::spawn(pace(soak.clone(), class, period, 1)));
    }
    pacers.push(tokio::spawn(pace(
        soak,
        Class::Cold,
        COLD_PERIOD,
        COLD_BURST,
    )));

    // RSS at the end of each window, and a progress line for whoever watches.
    let windows = seconds.div_ceil(WINDOW.as_secs()) as usize;
    let sampler = tokio::spawn(async move {
        let mut by_window = Vec::with_capacity(windows);
        for w in 1..=windows {
            tokio::time::sleep_until((start + WINDOW * w as u32).into()).await;
            let memory = resident(pid)?;
            eprintln!(
                "{:>5} s  node RSS {:.1} MiB (anon {:.1}, file {:.1})",
                w as u64 * WINDOW.as_secs(),
                memory.total_mib,
                memory.anon_mib,
                memory.file_mib
            );
            by_window.push(memory);
        }
        anyhow::Ok(by_window)
    });

    let mut tallies: BTreeMap<(usize, Class), Tally> = BTreeMap::new();
    let mut first_errors: Vec<String> = Vec::new();
    while let Some(o) = outcomes.recv().await {
        let tally = tallies.entry((o.window, o.class)).or_default();
        match o.error {
            None => tally.latencies.push(o.latency),
            Some(e) => {
                tally.errors += 1;
                if first_errors.len() < 10 {
                    first_errors.push(e);
                }
            }
        }
    }
    for p in pacers {
        p.await?;
    }
    let resident_by_window = sampler.await??;

    let mut served: BTreeMap<&str, u64> = BTreeMap::new();
    let mut report_windows = Vec::new();
    for (w, memory) in resident_by_window.iter().enumerate() {
        let mut classes = serde_json::Map::new();
        for class in [Class::Echo, Class::Model, Class::Async, Class::Cold] {
            let Some(tally) = tallies.get_mut(&(w, class)) else {
                continue;
            };
            let count = tally.latencies.len();
            *served.entry(class.name()).or_default() += count as u64;
            let max_us = tally.latencies.iter().max().map_or(0, |d| d.as_micros());
            // A window of only errors has no latencies to summarize.
            let (p50_us, p99_us) = if count == 0 {
                (0.0, 0.0)
            } else {
                let s = bench::summarize(std::mem::take(&mut tally.latencies));
                (s.p50_us, s.p99_us)
            };
            classes.insert(
                class.name().into(),
                json!({
                    "served": count,
                    "errors": tally.errors,
                    "p50_us": p50_us,
                    "p99_us": p99_us,
                    "max_us": max_us,
                }),
            );
        }
        report_windows.push(json!({
            "end_s": (w as u64 + 1) * WINDOW.as_secs(),
            "rss_mib": memory.total_mib,
            "rss_anon_mib": memory.anon_mib,
            "rss_file_mib": memory.file_mib,
            "classes": classes,
        }));
    }
    let errors: u64 = tallies.values().map(|t| t.errors).sum();
    let report = json!({
        "maximum_per_s": mix_max,
        "load_share": load_share,
        "rates_per_s": rates.iter().map(|(c, r)| (c.name(), *r)).collect::<BTreeMap<_, _>>(),
        "cold_burst": {"size": COLD_BURST, "period_s": COLD_PERIOD.as_secs()},
        "windows": report_windows,
        "served": served,
        "served_measuring_maxima": served_measuring,
        "errors": errors,
        "first_errors": first_errors,
    });
    println!("{}", serde_json::to_string_pretty(&report)?);
    Ok(())
}

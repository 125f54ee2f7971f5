//! Ledger throughput into a database: spool appends plus the batching writer, against
//! the baseline of one INSERT per invocation, and the cost of recording on the invoke
//! path.
//!
//! `cargo run --release -p bench --bin ledger-bench -- postgres://postgres@127.0.0.1:5432/postgres`
//! `cargo run --release -p bench --bin ledger-bench -- sqlite` (a fresh embedded database)

use std::time::Instant;

use protocol::LedgerRecord;
use store::{Db, LedgerConfig, LedgerWriter, LoggedInvocation, Spool, SpoolEntry};

fn record(i: usize) -> LedgerRecord {
    LedgerRecord {
        request_id: uuid::Uuid::new_v4().to_string(),
        attempt: 1,
        account_id: "000000000000".into(),
        caller_account_id: "000000000000".into(),
        function_name: "bench".into(),
        executed_version: "$LATEST".into(),
        invocation_type: "request_response".into(),
        received_at_us: 1_700_000_000_000_000 + i as i64,
        started_at_us: 1_700_000_000_000_100 + i as i64,
        ended_at_us: 1_700_000_000_000_300 + i as i64,
        init_ms: 0.0,
        duration_ms: 0.2,
        billed_ms: 1,
        memory_size_mb: 128,
        max_memory_used_mb: 2,
        gb_seconds: 0.000125,
        outcome: "success".into(),
        error_type: None,
        start_kind: "warm".into(),
        request_bytes: 17,
        response_bytes: 17,
        cost_usd: 0.000_000_202,
    }
}

/// A warm echo invocation's spool entry: its billing record and its START/END/REPORT log.
fn logged(i: usize) -> SpoolEntry {
    let record = record(i);
    let id = record.request_id.clone();
    SpoolEntry::LoggedInvocation(LoggedInvocation {
        log_text: format!(
            "START RequestId: {id} Version: $LATEST\nEND RequestId: {id}\n\
             REPORT RequestId: {id}\tDuration: 0.20 ms\tBilled Duration: 1 ms\t\
             Memory Size: 128 MB\tMax Memory Used: 2 MB\t\n"
        ),
        record,
        prediction: None,
    })
}

async fn fresh_database(admin: &str) -> anyhow::Result<String> {
    use sqlx::Connection;
    let mut conn = sqlx::PgConnection::connect(admin).await?;
    let name = format!("lamina_bench_{}", uuid::Uuid::new_v4().simple());
    // The name is generated just above.
    sqlx::query(sqlx::AssertSqlSafe(format!("CREATE DATABASE {name}")))
        .execute(&mut conn)
        .await?;
    let base = admin.rsplit_once('/').map_or(admin, |(b, _)| b);
    Ok(format!("{base}/{name}"))
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let admin = std::env::args()
        .nth(1)
        .unwrap_or_else(|| "postgres://postgres@127.0.0.1:5432/postgres".into());
    let n: usize = std::env::var("LEDGER_ROWS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(200_000);
    let dir = std::env::temp_dir().join(format!("lamina-ledger-bench-{}", uuid::Uuid::new_v4()));
    let db = if admin == "sqlite" {
        Db::open_sqlite(&dir.join("database/lamina.db")).await?
    } else {
        Db::connect(&fresh_database(&admin).await?).await?
    };
    let config = LedgerConfig::new(&dir);
    let spool = Spool::open(&config)?;

    // The invoke path's share: one spool append of a ledger row (its log inside) per call.
    let entries: Vec<Vec<SpoolEntry>> = (0..n).map(|i| vec![logged(i)]).collect();
    let started = Instant::now();
    for e in &entries {
        spool.append(e)?;
    }
    let append = started.elapsed();
    println!(
        "spool append: {n} records in {:.3} s = {:.2} us per invocation",
        append.as_secs_f64(),
        append.as_secs_f64() * 1e6 / n as f64
    );

    // The writer, draining the spool into the database in batches.
    let mut writer = LedgerWriter::new(spool.clone(), db.clone(), &config);
    let started = Instant::now();
    loop {
        if writer.drain_once().await?.caught_up {
            break;
        }
    }
    let drained = started.elapsed();
    println!(
        "batched writer: {n} rows in {:.3} s = {:.0} rows/s",
        drained.as_secs_f64(),
        n as f64 / drained.as_secs_f64()
    );

    // Baseline: one INSERT (one transaction) per invocation.
    let baseline_n = (n / 20).max(1000);
    let started = Instant::now();
    for i in 0..baseline_n {
        store::ledger::insert_entries(&db, &[logged(n + i)]).await?;
    }
    let single = started.elapsed();
    println!(
        "baseline, one INSERT per invocation: {baseline_n} rows in {:.3} s = {:.0} rows/s",
        single.as_secs_f64(),
        baseline_n as f64 / single.as_secs_f64()
    );
    let _ = std::fs::remove_dir_all(&dir);
    Ok(())
}

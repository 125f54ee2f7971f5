//! The ledger: spooled records reach the database exactly once, survive a crash, and
//! wait out a database outage.

use std::io::Write as _;
use std::time::Duration;

use protocol::LedgerRecord;
use sqlx::Row;
use store::{Db, LedgerConfig, LedgerWriter, Spool, SpoolEntry};

use crate::{backends, fresh_postgres};

pub fn record(i: usize) -> LedgerRecord {
    LedgerRecord {
        request_id: format!("req-{i}"),
        attempt: 1,
        account_id: "111111111111".into(),
        caller_account_id: "111111111111".into(),
        function_name: "f".into(),
        executed_version: "$LATEST".into(),
        invocation_type: "request_response".into(),
        received_at_us: 1_000_000 + i as i64,
        started_at_us: 1_000_100 + i as i64,
        ended_at_us: 1_000_200 + i as i64,
        init_ms: 0.0,
        duration_ms: 1.25,
        billed_ms: 2,
        memory_size_mb: 128,
        max_memory_used_mb: 3,
        gb_seconds: 0.00025,
        outcome: "success".into(),
        error_type: None,
        start_kind: "warm".into(),
        request_bytes: 10,
        response_bytes: 20,
        cost_usd: 0.000_000_204,
    }
}

async fn rows(db: &Db) -> i64 {
    sqlx::query("SELECT COUNT(*) AS n FROM invocations")
        .fetch_one(db.pool())
        .await
        .unwrap()
        .try_get("n")
        .unwrap()
}

async fn drain(writer: &mut LedgerWriter) {
    for _ in 0..10_000 {
        if writer.drain_once().await.unwrap().caught_up {
            return;
        }
    }
    panic!("the writer never caught up");
}

fn entries(range: std::ops::Range<usize>) -> Vec<SpoolEntry> {
    range.map(|i| SpoolEntry::Invocation(record(i))).collect()
}

#[tokio::test(flavor = "multi_thread")]
async fn spooled_records_reach_the_database_once() {
    for b in backends().await {
        let dir = tempfile::tempdir().unwrap();
        let mut config = LedgerConfig::new(dir.path());
        config.batch_size = 100;
        config.segment_bytes = 64 << 10;
        let spool = Spool::open(&config).unwrap();
        for chunk in entries(0..2500).chunks(7) {
            spool.append(chunk).unwrap();
        }
        let mut writer = LedgerWriter::new(spool.clone(), b.db.clone(), &config);
        drain(&mut writer).await;
        assert_eq!(rows(&b.db).await, 2500, "{}", b.name);
        // Rotated segments were deleted once inserted; only the open one remains.
        let files = std::fs::read_dir(dir.path()).unwrap().count();
        assert_eq!(files, 1, "{}", b.name);
        // The same records again (a replay) change nothing.
        spool.append(&entries(0..2500)).unwrap();
        drain(&mut writer).await;
        assert_eq!(rows(&b.db).await, 2500, "{}", b.name);
        let row = sqlx::query("SELECT billed_ms, gb_seconds, outcome, cost_usd FROM invocations WHERE request_id = 'req-7'")
            .fetch_one(b.db.pool())
            .await
            .unwrap();
        assert_eq!(row.try_get::<i64, _>("billed_ms").unwrap(), 2);
        assert_eq!(row.try_get::<String, _>("outcome").unwrap(), "success");
        assert!((row.try_get::<f64, _>("gb_seconds").unwrap() - 0.00025).abs() < 1e-12);
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn a_crash_loses_no_spooled_record() {
    for b in backends().await {
        let dir = tempfile::tempdir().unwrap();
        let config = LedgerConfig::new(dir.path());
        {
            // A process spools records and dies before its writer inserts them; its last
            // write was cut short.
            let spool = Spool::open(&config).unwrap();
            spool.append(&entries(0..300)).unwrap();
            let seg = std::fs::read_dir(dir.path())
                .unwrap()
                .next()
                .unwrap()
                .unwrap()
                .path();
            let mut f = std::fs::OpenOptions::new().append(true).open(seg).unwrap();
            f.write_all(b"{\"kind\":\"invocation\",\"request_id\":\"cut")
                .unwrap();
        }
        // The next process replays the old segment.
        let spool = Spool::open(&config).unwrap();
        spool.append(&entries(300..310)).unwrap();
        let mut writer = LedgerWriter::new(spool.clone(), b.db.clone(), &config);
        drain(&mut writer).await;
        assert_eq!(rows(&b.db).await, 310, "{}", b.name);
        assert_eq!(std::fs::read_dir(dir.path()).unwrap().count(), 1);
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn corrupt_lines_are_skipped_not_fatal() {
    for b in backends().await {
        let dir = tempfile::tempdir().unwrap();
        let config = LedgerConfig::new(dir.path());
        std::fs::write(
            dir.path().join("segment-000000000001.jsonl"),
            format!(
                "{}\nnot json at all\n{}\n",
                serde_json::to_string(&SpoolEntry::Invocation(record(1))).unwrap(),
                serde_json::to_string(&SpoolEntry::Invocation(record(2))).unwrap()
            ),
        )
        .unwrap();
        let spool = Spool::open(&config).unwrap();
        let mut writer = LedgerWriter::new(spool.clone(), b.db.clone(), &config);
        drain(&mut writer).await;
        assert_eq!(rows(&b.db).await, 2, "{}", b.name);
        assert_eq!(
            spool
                .stats()
                .corrupt
                .load(std::sync::atomic::Ordering::Relaxed),
            1
        );
    }
}

/// A TCP proxy to PostgreSQL that the test can cut and restore.
struct Proxy {
    port: u16,
    task: Option<tokio::task::JoinHandle<()>>,
    conns: std::sync::Arc<std::sync::Mutex<Vec<tokio::task::JoinHandle<()>>>>,
}

impl Proxy {
    async fn start(port: u16) -> Proxy {
        let listener = tokio::net::TcpListener::bind(("127.0.0.1", port))
            .await
            .unwrap();
        let port = listener.local_addr().unwrap().port();
        let conns = std::sync::Arc::new(std::sync::Mutex::new(Vec::new()));
        let c = conns.clone();
        let task = tokio::spawn(async move {
            loop {
                let Ok((mut inbound, _)) = listener.accept().await else {
                    return;
                };
                let h = tokio::spawn(async move {
                    if let Ok(mut outbound) = tokio::net::TcpStream::connect("127.0.0.1:5432").await
                    {
                        let _ = tokio::io::copy_bidirectional(&mut inbound, &mut outbound).await;
                    }
                });
                c.lock().unwrap().push(h);
            }
        });
        Proxy {
            port,
            task: Some(task),
            conns,
        }
    }

    fn cut(&mut self) {
        if let Some(t) = self.task.take() {
            t.abort();
        }
        for h in self.conns.lock().unwrap().drain(..) {
            h.abort();
        }
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn a_database_outage_delays_but_never_loses_records() {
    let Some(url) = fresh_postgres().await else {
        return;
    };
    let mut proxy = Proxy::start(0).await;
    let proxied = url.replace("127.0.0.1:5432", &format!("127.0.0.1:{}", proxy.port));
    let db = Db::connect(&proxied).await.unwrap();
    let direct = Db::connect(&url).await.unwrap();
    let dir = tempfile::tempdir().unwrap();
    let config = LedgerConfig::new(dir.path());
    let spool = Spool::open(&config).unwrap();
    let writer = LedgerWriter::new(spool.clone(), db.clone(), &config);
    let (tx, rx) = tokio::sync::oneshot::channel::<()>();
    let run = tokio::spawn(writer.run(
        async {
            let _ = rx.await;
        },
        Duration::from_secs(10),
    ));

    spool.append(&entries(0..100)).unwrap();
    wait_for_rows(&direct, 100).await;

    proxy.cut();
    // Appending never fails while the database is away.
    for chunk in entries(100..400).chunks(10) {
        spool.append(chunk).unwrap();
    }
    for _ in 0..200 {
        if spool
            .stats()
            .write_errors
            .load(std::sync::atomic::Ordering::Relaxed)
            > 0
        {
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert!(
        spool
            .stats()
            .write_errors
            .load(std::sync::atomic::Ordering::Relaxed)
            > 0
    );
    assert_eq!(rows(&direct).await, 100);

    let _restored = Proxy::start(proxy.port).await;
    wait_for_rows(&direct, 400).await;
    let _ = tx.send(());
    run.await.unwrap();
}

async fn wait_for_rows(db: &Db, n: i64) {
    for _ in 0..200 {
        if rows(db).await == n {
            return;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    panic!("expected {n} rows, have {}", rows(db).await);
}

fn logged(i: usize, prediction: Option<&str>) -> SpoolEntry {
    SpoolEntry::LoggedInvocation(store::LoggedInvocation {
        record: record(i),
        log_text: format!("START RequestId: req-{i}\nline {i}\nEND RequestId: req-{i}\n"),
        prediction: prediction.map(str::to_owned),
    })
}

async fn logs_of_f(db: &Db) -> Vec<store::LogEntry> {
    store::function_logs::read(
        db,
        &store::LogQuery {
            account_id: "111111111111",
            function_name: "f",
            after_us: 0,
            limit: 1000,
        },
    )
    .await
    .unwrap()
}

/// Spools `entries` in a fresh spool and drains them into `db`.
async fn spool_into(db: &Db, entries: &[SpoolEntry]) {
    let dir = tempfile::tempdir().unwrap();
    let config = LedgerConfig::new(dir.path());
    let spool = Spool::open(&config).unwrap();
    spool.append(entries).unwrap();
    let mut writer = LedgerWriter::new(spool, db.clone(), &config);
    drain(&mut writer).await;
}

async fn prediction_of(db: &Db, request_id: &str) -> Option<store::quality::Prediction> {
    store::quality::prediction(db, "111111111111", request_id)
        .await
        .unwrap()
}

#[tokio::test(flavor = "multi_thread")]
async fn an_invocation_is_one_row_holding_its_log_and_prediction() {
    for b in backends().await {
        spool_into(&b.db, &[logged(1, None), logged(2, Some("[151.2]"))]).await;
        assert_eq!(rows(&b.db).await, 2, "{}", b.name);
        let logs = logs_of_f(&b.db).await;
        assert_eq!(logs.len(), 2, "{}", b.name);
        assert_eq!(logs[1].request_id, "req-2");
        assert_eq!(logs[1].version, "$LATEST");
        assert_eq!(logs[1].logged_at_us, record(2).ended_at_us);
        assert_eq!(
            logs[1].text,
            "START RequestId: req-2\nline 2\nEND RequestId: req-2\n"
        );
        let p = prediction_of(&b.db, "req-2")
            .await
            .expect("the model's response is kept");
        assert_eq!(
            (p.function_name.as_str(), p.body.as_str()),
            ("f", "[151.2]")
        );
        assert_eq!(prediction_of(&b.db, "req-1").await, None);
        // `function_logs` stays readable for operators' own queries.
        let n: i64 =
            sqlx::query("SELECT COUNT(*) AS n FROM function_logs WHERE prediction IS NOT NULL")
                .fetch_one(b.db.pool())
                .await
                .unwrap()
                .try_get("n")
                .unwrap();
        assert_eq!(n, 1, "{}", b.name);
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn a_spool_from_before_logs_joined_the_row_replays_into_one_row() {
    for b in backends().await {
        let dir = tempfile::tempdir().unwrap();
        let config = LedgerConfig::new(dir.path());
        let log = |i: usize| {
            serde_json::json!({
                "kind": "log", "request_id": format!("req-{i}"), "attempt": 1,
                "account_id": "111111111111", "function_name": "f", "version": "$LATEST",
                "logged_at_us": record(i).ended_at_us, "log_text": format!("old log {i}"),
            })
            .to_string()
        };
        // As the older recorder wrote them: each invocation's line, then its log's line.
        let mut lines = String::new();
        for i in 0..3 {
            lines += &serde_json::to_string(&SpoolEntry::Invocation(record(i))).unwrap();
            lines += "\n";
            lines += &log(i);
            lines += "\n";
        }
        std::fs::write(dir.path().join("segment-000000000001.jsonl"), &lines).unwrap();
        let spool = Spool::open(&config).unwrap();
        let mut writer = LedgerWriter::new(spool.clone(), b.db.clone(), &config);
        drain(&mut writer).await;
        assert_eq!(rows(&b.db).await, 3, "{}", b.name);
        let texts: Vec<String> = logs_of_f(&b.db).await.into_iter().map(|l| l.text).collect();
        assert_eq!(texts, ["old log 0", "old log 1", "old log 2"], "{}", b.name);
        assert_eq!(
            spool
                .stats()
                .corrupt
                .load(std::sync::atomic::Ordering::Relaxed),
            0
        );
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn log_retention_clears_the_log_and_keeps_the_billing_row() {
    for b in backends().await {
        spool_into(
            &b.db,
            &[logged(1, Some("[1]")), logged(2, None), logged(3, None)],
        )
        .await;
        // Logs ending before req-3's are expired.
        let cleared = store::function_logs::expire(&b.db, record(3).ended_at_us)
            .await
            .unwrap();
        assert_eq!(cleared, 2, "{}", b.name);
        let left: Vec<String> = logs_of_f(&b.db)
            .await
            .into_iter()
            .map(|l| l.request_id)
            .collect();
        assert_eq!(left, ["req-3"], "{}", b.name);
        assert_eq!(rows(&b.db).await, 3, "billing rows stay: {}", b.name);
        assert_eq!(prediction_of(&b.db, "req-1").await, None, "{}", b.name);
        assert_eq!(
            store::function_logs::expire(&b.db, record(3).ended_at_us)
                .await
                .unwrap(),
            0,
            "{}",
            b.name
        );
    }
}

/// A database whose logs sit in the table they had before they moved into the ledger row
/// keeps them, and their predictions, through the upgrade.
#[tokio::test(flavor = "multi_thread")]
async fn logs_stored_before_the_upgrade_are_read_after_it() {
    sqlx::any::install_default_drivers();
    let dir = tempfile::tempdir().unwrap();
    let mut urls = vec![format!(
        "sqlite://{}?mode=rwc",
        dir.path().join("old.db").display()
    )];
    urls.extend(fresh_postgres().await);
    for url in urls {
        let mut older = sqlx::migrate!("../migrations");
        older.migrations = older
            .migrations
            .iter()
            .filter(|m| m.version < 7)
            .cloned()
            .collect::<Vec<_>>()
            .into();
        let pool = sqlx::AnyPool::connect(&url).await.unwrap();
        older.run(&pool).await.unwrap();
        let r = record(1);
        sqlx::query(
            "INSERT INTO invocations (request_id, attempt, account_id, caller_account_id, \
             function_name, executed_version, invocation_type, received_at_us, started_at_us, \
             ended_at_us, init_ms, duration_ms, billed_ms, memory_size_mb, max_memory_used_mb, \
             gb_seconds, outcome, error_type, start_kind, request_bytes, response_bytes, cost_usd) \
             VALUES ($1, 1, $2, $2, 'f', '$LATEST', 'request_response', 1, 2, $3, 0, 1.25, 2, \
             128, 3, 0.00025, 'success', NULL, 'warm', 10, 20, 0.0000002)",
        )
        .bind(r.request_id.as_str())
        .bind(r.account_id.as_str())
        .bind(r.ended_at_us)
        .execute(&pool)
        .await
        .unwrap();
        sqlx::query(
            "INSERT INTO function_logs (request_id, attempt, account_id, function_name, version, \
             logged_at_us, log_text, prediction) VALUES ($1, 1, $2, 'f', '$LATEST', $3, \
             'kept across the upgrade', '[42.0]')",
        )
        .bind(r.request_id.as_str())
        .bind(r.account_id.as_str())
        .bind(r.ended_at_us)
        .execute(&pool)
        .await
        .unwrap();
        pool.close().await;

        let db = Db::connect(&url).await.unwrap();
        let logs = logs_of_f(&db).await;
        assert_eq!(logs.len(), 1, "{url}");
        assert_eq!(logs[0].text, "kept across the upgrade");
        assert_eq!(logs[0].logged_at_us, r.ended_at_us);
        let p = prediction_of(&db, &r.request_id)
            .await
            .expect("the prediction moved with its log");
        assert_eq!(p.body, "[42.0]");
        assert_eq!(rows(&db).await, 1);
    }
}

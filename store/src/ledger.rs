//! The billing ledger: every invocation's record reaches an append-only spool on local
//! disk before the caller gets its response, and a writer task moves the spool into the
//! database in batches, off the request path.
//!
//! What is persisted and why:
//! - The spool is a folder of segment files (`segment-<n>.jsonl`), one JSON line per
//!   entry, each written with a single `write` so a killed process leaves whole lines.
//!   It is what makes "no completed invocation is lost across kill -9" true: the line is
//!   in the kernel's page cache before the response leaves.
//! - The writer reads segments oldest first and inserts batches keyed by
//!   `(request_id, attempt)` with `ON CONFLICT DO NOTHING`, so replaying a segment after
//!   a crash never bills twice. A segment is deleted once rotated and fully inserted.
//! - While the database is down, entries wait on disk (not in memory) and drain when it
//!   returns; invocations never fail because of it.

use std::fs::{File, OpenOptions};
use std::io::{Read, Seek, SeekFrom, Write};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicI64, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use protocol::LedgerRecord;
use serde::{Deserialize, Serialize};
use tokio::sync::Notify;

use crate::db::{Db, StoreError};

/// One invocation's log text, kept for `lamina logs` with bounded retention.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct LogRecord {
    pub request_id: String,
    pub attempt: u32,
    pub account_id: String,
    pub function_name: String,
    pub version: String,
    pub logged_at_us: i64,
    pub log_text: String,
}

/// What the spool holds.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum SpoolEntry {
    Invocation(LedgerRecord),
    Log(LogRecord),
}

#[derive(Debug, Clone)]
pub struct LedgerConfig {
    pub dir: PathBuf,
    /// Rows per INSERT statement.
    pub batch_size: usize,
    /// How long the writer waits for more entries before inserting a partial batch.
    pub linger: Duration,
    /// A segment is rotated once it holds this many bytes.
    pub segment_bytes: u64,
}

impl LedgerConfig {
    pub fn new(dir: impl Into<PathBuf>) -> Self {
        LedgerConfig {
            dir: dir.into(),
            batch_size: 1000,
            linger: Duration::from_millis(20),
            segment_bytes: 16 << 20,
        }
    }
}

/// Counters for `/metrics` and the ledger's own tests.
#[derive(Debug, Default)]
pub struct LedgerStats {
    /// Entries appended by this process.
    pub appended: AtomicU64,
    /// Entries inserted (or found already present) by this process's writer.
    pub committed: AtomicU64,
    /// Entries that could not be parsed and were skipped.
    pub corrupt: AtomicU64,
    /// Microseconds since the epoch of the oldest entry not yet committed (0: none).
    pub oldest_pending_us: AtomicI64,
    /// Failed insert attempts (database errors).
    pub write_errors: AtomicU64,
}

struct Segment {
    seq: u64,
    file: File,
    bytes: u64,
}

struct SpoolInner {
    dir: PathBuf,
    segment_bytes: u64,
    current: Mutex<Segment>,
    notify: Notify,
    stats: Arc<LedgerStats>,
}

/// The append side of the ledger. Cheap to clone; shared by every request.
#[derive(Clone)]
pub struct Spool {
    inner: Arc<SpoolInner>,
}

impl std::fmt::Debug for Spool {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Spool").field("dir", &self.inner.dir).finish()
    }
}

fn segment_path(dir: &Path, seq: u64) -> PathBuf {
    dir.join(format!("segment-{seq:012}.jsonl"))
}

fn list_segments(dir: &Path) -> std::io::Result<Vec<u64>> {
    let mut seqs: Vec<u64> = std::fs::read_dir(dir)?
        .filter_map(|e| e.ok())
        .filter_map(|e| {
            let name = e.file_name().into_string().ok()?;
            name.strip_prefix("segment-")?
                .strip_suffix(".jsonl")?
                .parse()
                .ok()
        })
        .collect();
    seqs.sort_unstable();
    Ok(seqs)
}

fn open_segment(dir: &Path, seq: u64) -> std::io::Result<Segment> {
    let file = OpenOptions::new()
        .create(true)
        .append(true)
        .open(segment_path(dir, seq))?;
    let bytes = file.metadata()?.len();
    Ok(Segment { seq, file, bytes })
}

impl Spool {
    /// Opens the spool in `config.dir`, starting a new segment after any left by an
    /// earlier process (those are replayed by the writer).
    pub fn open(config: &LedgerConfig) -> std::io::Result<Spool> {
        std::fs::create_dir_all(&config.dir)?;
        let next = list_segments(&config.dir)?.last().map_or(1, |s| s + 1);
        let current = open_segment(&config.dir, next)?;
        Ok(Spool {
            inner: Arc::new(SpoolInner {
                dir: config.dir.clone(),
                segment_bytes: config.segment_bytes,
                current: Mutex::new(current),
                notify: Notify::new(),
                stats: Arc::new(LedgerStats::default()),
            }),
        })
    }

    pub fn stats(&self) -> &Arc<LedgerStats> {
        &self.inner.stats
    }

    /// Appends entries; when this returns they survive a crash of the process.
    pub fn append(&self, entries: &[SpoolEntry]) -> std::io::Result<()> {
        let mut buf = Vec::with_capacity(512 * entries.len());
        let mut oldest = i64::MAX;
        for entry in entries {
            serde_json::to_writer(&mut buf, entry).map_err(std::io::Error::other)?;
            buf.push(b'\n');
            if let SpoolEntry::Invocation(r) = entry {
                oldest = oldest.min(r.ended_at_us);
            }
        }
        {
            let mut seg = self.inner.current.lock().unwrap_or_else(PoisonError::into_inner);
            seg.file.write_all(&buf)?;
            seg.bytes += buf.len() as u64;
            if seg.bytes >= self.inner.segment_bytes {
                let next = open_segment(&self.inner.dir, seg.seq + 1)?;
                *seg = next;
            }
        }
        let stats = &self.inner.stats;
        stats
            .appended
            .fetch_add(entries.len() as u64, Ordering::Relaxed);
        if oldest != i64::MAX {
            let _ = stats.oldest_pending_us.compare_exchange(
                0,
                oldest,
                Ordering::Relaxed,
                Ordering::Relaxed,
            );
        }
        self.inner.notify.notify_one();
        Ok(())
    }

    fn current_seq(&self) -> u64 {
        self.inner
            .current
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .seq
    }
}

/// Moves spooled entries into the database.
pub struct LedgerWriter {
    spool: Spool,
    db: Db,
    batch_size: usize,
    linger: Duration,
    /// How far into each segment the writer has committed, by sequence number.
    offsets: std::collections::HashMap<u64, u64>,
}

/// What one pass over the spool did.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct Drained {
    pub entries: u64,
    /// Whether nothing remains to insert right now.
    pub caught_up: bool,
}

impl LedgerWriter {
    pub fn new(spool: Spool, db: Db, config: &LedgerConfig) -> Self {
        LedgerWriter {
            spool,
            db,
            batch_size: config.batch_size.max(1),
            linger: config.linger,
            offsets: Default::default(),
        }
    }

    /// Runs until `shutdown` resolves, then drains what is left (bounded by `grace`).
    pub async fn run(mut self, shutdown: impl Future<Output = ()>, grace: Duration) {
        tokio::pin!(shutdown);
        let mut backoff = Duration::from_millis(100);
        loop {
            match self.drain_once().await {
                Ok(d) if d.caught_up => {
                    backoff = Duration::from_millis(100);
                    tokio::select! {
                        _ = &mut shutdown => break,
                        _ = self.spool.inner.notify.notified() => {
                            // Let a few more entries arrive so batches are not of one row.
                            tokio::time::sleep(self.linger).await;
                        }
                    }
                }
                Ok(_) => {
                    backoff = Duration::from_millis(100);
                    tokio::task::yield_now().await;
                }
                Err(e) => {
                    self.spool
                        .stats()
                        .write_errors
                        .fetch_add(1, Ordering::Relaxed);
                    tracing::warn!(error = %e, retry_in = ?backoff, "ledger write failed; entries stay in the spool");
                    tokio::select! {
                        _ = &mut shutdown => break,
                        _ = tokio::time::sleep(backoff) => {}
                    }
                    backoff = (backoff * 2).min(Duration::from_secs(5));
                }
            }
        }
        let deadline = tokio::time::Instant::now() + grace;
        while tokio::time::Instant::now() < deadline {
            match self.drain_once().await {
                Ok(d) if d.caught_up => return,
                Ok(_) => {}
                Err(e) => {
                    tracing::warn!(error = %e, "ledger could not be flushed at shutdown; the spool keeps the rest for the next start");
                    return;
                }
            }
        }
    }

    /// Inserts up to one batch from the oldest segment with unread entries and deletes
    /// segments that are rotated and fully inserted.
    pub async fn drain_once(&mut self) -> Result<Drained, StoreError> {
        let dir = self.spool.inner.dir.clone();
        let current = self.spool.current_seq();
        for seq in list_segments(&dir)? {
            let path = segment_path(&dir, seq);
            let offset = self.offsets.get(&seq).copied().unwrap_or(0);
            let (lines, consumed) = read_lines(&path, offset, self.batch_size)?;
            if lines.is_empty() {
                if seq < current {
                    // Rotated and fully committed: its entries are all in the database.
                    std::fs::remove_file(&path)?;
                    self.offsets.remove(&seq);
                    continue;
                }
                continue;
            }
            let entries = self.parse(&lines);
            insert_entries(&self.db, &entries).await?;
            self.offsets.insert(seq, offset + consumed);
            let stats = self.spool.stats();
            stats
                .committed
                .fetch_add(lines.len() as u64, Ordering::Relaxed);
            if stats.committed.load(Ordering::Relaxed) >= stats.appended.load(Ordering::Relaxed)
            {
                stats.oldest_pending_us.store(0, Ordering::Relaxed);
            }
            return Ok(Drained {
                entries: lines.len() as u64,
                caught_up: false,
            });
        }
        Ok(Drained {
            entries: 0,
            caught_up: true,
        })
    }

    fn parse(&self, lines: &[Vec<u8>]) -> Vec<SpoolEntry> {
        lines
            .iter()
            .filter_map(|line| match serde_json::from_slice::<SpoolEntry>(line) {
                Ok(e) => Some(e),
                Err(err) => {
                    self.spool
                        .stats()
                        .corrupt
                        .fetch_add(1, Ordering::Relaxed);
                    tracing::error!(error = %err, "skipping a corrupt ledger spool line");
                    None
                }
            })
            .collect()
    }
}

/// Reads up to `max` complete lines starting at `offset`; returns them and the bytes
/// they span. A trailing line without its newline is still being written: leave it.
fn read_lines(path: &Path, offset: u64, max: usize) -> std::io::Result<(Vec<Vec<u8>>, u64)> {
    let mut file = File::open(path)?;
    let len = file.metadata()?.len();
    if len <= offset {
        return Ok((Vec::new(), 0));
    }
    file.seek(SeekFrom::Start(offset))?;
    // Lines are small (under 1 KB for invocations, bounded for logs); reading a window
    // keeps memory bounded whatever the backlog.
    let window = (len - offset).min(8 << 20) as usize;
    let mut buf = vec![0u8; window];
    file.read_exact(&mut buf)?;
    let mut lines = Vec::new();
    let mut consumed = 0usize;
    let mut start = 0usize;
    for (i, b) in buf.iter().enumerate() {
        if *b == b'\n' {
            lines.push(buf[start..i].to_vec());
            start = i + 1;
            consumed = start;
            if lines.len() >= max {
                break;
            }
        }
    }
    if lines.is_empty() && window == 8 << 20 {
        // A single line larger than the window: it cannot be valid, skip it.
        return Ok((vec![buf], window as u64));
    }
    Ok((lines, consumed as u64))
}

/// `($1, $2, ...), (...), ...` for `rows` rows of `columns` values each. Numbered
/// placeholders are what both PostgreSQL and SQLite accept.
fn values_clause(rows: usize, columns: usize) -> String {
    let mut sql = String::with_capacity(rows * columns * 6);
    for r in 0..rows {
        sql.push_str(if r == 0 { "(" } else { ",(" });
        for c in 0..columns {
            if c > 0 {
                sql.push(',');
            }
            sql.push('$');
            sql.push_str(&(r * columns + c + 1).to_string());
        }
        sql.push(')');
    }
    sql
}

const INVOCATION_COLUMNS: usize = 22;
const LOG_COLUMNS: usize = 7;

/// Inserts entries idempotently, in one transaction.
pub async fn insert_entries(db: &Db, entries: &[SpoolEntry]) -> Result<(), StoreError> {
    let mut tx = db.pool().begin().await?;
    let invocations: Vec<&LedgerRecord> = entries
        .iter()
        .filter_map(|e| match e {
            SpoolEntry::Invocation(r) => Some(r),
            SpoolEntry::Log(_) => None,
        })
        .collect();
    let logs: Vec<&LogRecord> = entries
        .iter()
        .filter_map(|e| match e {
            SpoolEntry::Log(l) => Some(l),
            SpoolEntry::Invocation(_) => None,
        })
        .collect();
    // Each statement stays well under both databases' bind-parameter limits.
    for chunk in invocations.chunks(1000) {
        let sql = format!(
            "INSERT INTO invocations (request_id, attempt, account_id, caller_account_id, \
             function_name, executed_version, invocation_type, received_at_us, started_at_us, \
             ended_at_us, init_ms, duration_ms, billed_ms, memory_size_mb, max_memory_used_mb, \
             gb_seconds, outcome, error_type, start_kind, request_bytes, response_bytes, cost_usd) \
             VALUES {} ON CONFLICT (request_id, attempt) DO NOTHING",
            values_clause(chunk.len(), INVOCATION_COLUMNS)
        );
        // The statement is built from constants and row counts only; values are bound.
        let mut q = sqlx::query(sqlx::AssertSqlSafe(sql));
        for r in chunk {
            q = q
                .bind(r.request_id.clone())
                .bind(r.attempt as i64)
                .bind(r.account_id.clone())
                .bind(r.caller_account_id.clone())
                .bind(r.function_name.clone())
                .bind(r.executed_version.clone())
                .bind(r.invocation_type.clone())
                .bind(r.received_at_us)
                .bind(r.started_at_us)
                .bind(r.ended_at_us)
                .bind(r.init_ms)
                .bind(r.duration_ms)
                .bind(r.billed_ms as i64)
                .bind(r.memory_size_mb as i64)
                .bind(r.max_memory_used_mb as i64)
                .bind(r.gb_seconds)
                .bind(r.outcome.clone())
                .bind(r.error_type.clone())
                .bind(r.start_kind.clone())
                .bind(r.request_bytes as i64)
                .bind(r.response_bytes as i64)
                .bind(r.cost_usd);
        }
        q.execute(&mut *tx).await?;
    }
    for chunk in logs.chunks(1000) {
        let sql = format!(
            "INSERT INTO function_logs (request_id, attempt, account_id, function_name, version, \
             logged_at_us, log_text) VALUES {} ON CONFLICT (request_id, attempt) DO NOTHING",
            values_clause(chunk.len(), LOG_COLUMNS)
        );
        let mut q = sqlx::query(sqlx::AssertSqlSafe(sql));
        for l in chunk {
            q = q
                .bind(l.request_id.clone())
                .bind(l.attempt as i64)
                .bind(l.account_id.clone())
                .bind(l.function_name.clone())
                .bind(l.version.clone())
                .bind(l.logged_at_us)
                .bind(l.log_text.clone());
        }
        q.execute(&mut *tx).await?;
    }
    tx.commit().await?;
    Ok(())
}

#[cfg(test)]
mod tests {
    #[test]
    fn values_are_numbered_across_rows() {
        assert_eq!(super::values_clause(2, 3), "($1,$2,$3),($4,$5,$6)");
    }
}

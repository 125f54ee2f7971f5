//! The billing ledger: every invocation's record reaches an append-only spool on local
//! disk before the caller gets its response, and a writer task moves the spool into the
//! database in batches, off the request path.
//!
//! What is persisted and why:
//! - The spool is a folder of segment files (`segment-<n>.jsonl`), one JSON line per
//!   entry, each written with a single `write` so a killed process leaves whole lines.
//!   It is what makes "no completed invocation is lost across kill -9" true: the line is
//!   in the kernel's page cache before the response leaves.
//! - An invocation is one line and one database row: its billing record and its log
//!   together, so the writer inserts one row per invocation.
//! - The writer reads segments oldest first and inserts batches keyed by
//!   `(request_id, attempt)` with `ON CONFLICT DO NOTHING`, so replaying a segment after
//!   a crash never bills twice. A segment is deleted once rotated and fully inserted.
//! - While the database is down, entries wait on disk (not in memory) and drain when it
//!   returns; invocations never fail because of it.

use std::fs::{File, OpenOptions};
use std::io::{Read, Write};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicI64, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use protocol::LedgerRecord;
use serde::{Deserialize, Serialize};
use tokio::sync::Notify;

use crate::db::{Backend, Db, StoreError};

/// An invocation's log as spools written before logs moved into the ledger row hold it:
/// a line of its own after the invocation's, replayed as an update of that row.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct LogRecord {
    pub request_id: String,
    pub attempt: u32,
    pub account_id: String,
    pub function_name: String,
    pub version: String,
    pub logged_at_us: i64,
    pub log_text: String,
    /// A model function's response, kept to be joined with ground truth later.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub prediction: Option<String>,
}

/// An invocation's whole ledger row: what it is billed, and its log (START/END/REPORT
/// and the guest's output), kept for `lamina logs` with bounded retention.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct LoggedInvocation {
    pub record: LedgerRecord,
    pub log_text: String,
    /// A model function's response, kept to be joined with ground truth later.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub prediction: Option<String>,
}

/// What the spool holds: one line per invocation.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum SpoolEntry {
    LoggedInvocation(LoggedInvocation),
    /// A billing row without a log.
    Invocation(LedgerRecord),
    /// Only in spools written before logs moved into the ledger row.
    Log(LogRecord),
}

impl SpoolEntry {
    fn ended_at_us(&self) -> Option<i64> {
        match self {
            SpoolEntry::LoggedInvocation(l) => Some(l.record.ended_at_us),
            SpoolEntry::Invocation(r) => Some(r.ended_at_us),
            SpoolEntry::Log(_) => None,
        }
    }
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
        f.debug_struct("Spool")
            .field("dir", &self.inner.dir)
            .finish()
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
            if let Some(ended_at_us) = entry.ended_at_us() {
                oldest = oldest.min(ended_at_us);
            }
        }
        {
            let mut seg = self
                .inner
                .current
                .lock()
                .unwrap_or_else(PoisonError::into_inner);
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
    /// Where the writer is reading: each spooled byte is read once.
    cursor: Option<Cursor>,
}

/// Bytes read from a segment per fill, bounding memory whatever the backlog.
const MAX_READ: u64 = 4 << 20;
/// A longer line cannot be an entry the spool wrote.
const MAX_LINE: usize = 16 << 20;

/// The writer's position in one segment: the file read sequentially, with the bytes read
/// but not yet inserted.
struct Cursor {
    seq: u64,
    file: File,
    buf: Vec<u8>,
    /// Bytes of `buf` already inserted.
    start: usize,
    /// Whether the last fill stopped at the end of the file.
    at_end: bool,
}

impl Cursor {
    fn open(dir: &Path, seq: u64) -> std::io::Result<Cursor> {
        Ok(Cursor {
            seq,
            file: File::open(segment_path(dir, seq))?,
            buf: Vec::new(),
            start: 0,
            at_end: false,
        })
    }

    /// Reads what was appended since the last fill.
    fn fill(&mut self) -> std::io::Result<()> {
        if self.start > 0 && self.start * 2 >= self.buf.len() {
            self.buf.drain(..self.start);
            self.start = 0;
        }
        let read = (&mut self.file).take(MAX_READ).read_to_end(&mut self.buf)?;
        self.at_end = (read as u64) < MAX_READ;
        Ok(())
    }

    /// Up to `max` complete lines after `start` (a line still being written has no
    /// newline yet and waits), and the position just past them.
    fn lines(&self, max: usize) -> (Vec<&[u8]>, usize) {
        let mut lines = Vec::new();
        let mut pos = self.start;
        while lines.len() < max {
            match self.buf[pos..].iter().position(|b| *b == b'\n') {
                Some(n) => {
                    lines.push(&self.buf[pos..pos + n]);
                    pos += n + 1;
                }
                None => break,
            }
        }
        if lines.is_empty() && self.buf.len() - self.start > MAX_LINE {
            // No entry is this long: treat the run as one corrupt line.
            return (vec![&self.buf[self.start..]], self.buf.len());
        }
        (lines, pos)
    }
}

/// What one pass over the spool did.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct Drained {
    pub entries: u64,
    /// Whether nothing remains to insert right now.
    pub caught_up: bool,
}

/// How long one batch insert may take before the writer gives up on it and retries (the
/// insert is idempotent, so a batch that did commit is not counted twice).
const WRITE_DEADLINE: Duration = Duration::from_secs(30);

impl LedgerWriter {
    pub fn new(spool: Spool, db: Db, config: &LedgerConfig) -> Self {
        LedgerWriter {
            spool,
            db,
            batch_size: config.batch_size.max(1),
            linger: config.linger,
            cursor: None,
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
        loop {
            let current = self.spool.current_seq();
            let cursor = match &mut self.cursor {
                Some(c) => c,
                None => {
                    let Some(&seq) = list_segments(&dir)?.first() else {
                        return Ok(Drained {
                            entries: 0,
                            caught_up: true,
                        });
                    };
                    self.cursor.insert(Cursor::open(&dir, seq)?)
                }
            };
            cursor.fill()?;
            let (lines, next) = cursor.lines(self.batch_size);
            if lines.is_empty() {
                if cursor.seq < current && cursor.at_end {
                    // Rotated and fully inserted: its entries are all in the database.
                    std::fs::remove_file(segment_path(&dir, cursor.seq))?;
                    self.cursor = None;
                    continue;
                }
                return Ok(Drained {
                    entries: 0,
                    caught_up: cursor.at_end,
                });
            }
            let count = lines.len() as u64;
            let entries = parse(self.spool.stats(), &lines);
            let insert = self
                .db
                .write(|db| async move { insert_entries(&db, &entries).await });
            crate::db::within(WRITE_DEADLINE, insert).await?;
            cursor.start = next;
            let stats = self.spool.stats();
            stats.committed.fetch_add(count, Ordering::Relaxed);
            if stats.committed.load(Ordering::Relaxed) >= stats.appended.load(Ordering::Relaxed) {
                stats.oldest_pending_us.store(0, Ordering::Relaxed);
            }
            return Ok(Drained {
                entries: count,
                caught_up: false,
            });
        }
    }
}

fn parse(stats: &LedgerStats, lines: &[&[u8]]) -> Vec<SpoolEntry> {
    lines
        .iter()
        .filter_map(|line| match serde_json::from_slice::<SpoolEntry>(line) {
            Ok(e) => Some(e),
            Err(err) => {
                stats.corrupt.fetch_add(1, Ordering::Relaxed);
                tracing::error!(error = %err, "skipping a corrupt ledger spool line");
                None
            }
        })
        .collect()
}

/// `(p, p, ...), (...), ...` for `rows` rows of `columns` values each. PostgreSQL needs
/// numbered placeholders; SQLite gets anonymous ones, because it resolves numbered
/// ones by a linear search per bind (quadratic over a batch of thousands).
fn values_clause(backend: Backend, rows: usize, columns: usize) -> String {
    let mut sql = String::with_capacity(rows * columns * 6);
    for r in 0..rows {
        sql.push_str(if r == 0 { "(" } else { ",(" });
        for c in 0..columns {
            if c > 0 {
                sql.push(',');
            }
            match backend {
                Backend::Postgres => {
                    sql.push('$');
                    sql.push_str(&(r * columns + c + 1).to_string());
                }
                Backend::Sqlite => sql.push('?'),
            }
        }
        sql.push(')');
    }
    sql
}

const INVOCATION_COLUMNS: usize = 24;

/// Inserts entries idempotently, in one transaction: one row per invocation.
pub async fn insert_entries(db: &Db, entries: &[SpoolEntry]) -> Result<(), StoreError> {
    let mut tx = db.writer().begin().await?;
    let rows: Vec<(&LedgerRecord, Option<&str>, Option<&str>)> = entries
        .iter()
        .filter_map(|e| match e {
            SpoolEntry::LoggedInvocation(l) => Some((
                &l.record,
                Some(l.log_text.as_str()),
                l.prediction.as_deref(),
            )),
            SpoolEntry::Invocation(r) => Some((r, None, None)),
            SpoolEntry::Log(_) => None,
        })
        .collect();
    // Each statement stays well under both databases' bind-parameter limits.
    for chunk in rows.chunks(1000) {
        let sql = format!(
            "INSERT INTO invocations (request_id, attempt, account_id, caller_account_id, \
             function_name, executed_version, invocation_type, received_at_us, started_at_us, \
             ended_at_us, init_ms, duration_ms, billed_ms, memory_size_mb, max_memory_used_mb, \
             gb_seconds, outcome, error_type, start_kind, request_bytes, response_bytes, cost_usd, \
             log_text, prediction) \
             VALUES {} ON CONFLICT (request_id, attempt) DO NOTHING",
            values_clause(db.backend(), chunk.len(), INVOCATION_COLUMNS)
        );
        // The statement is built from constants and row counts only; values are bound, by
        // reference: the batch outlives the statement.
        let mut q = sqlx::query(sqlx::AssertSqlSafe(sql));
        for (r, log_text, prediction) in chunk {
            q = q
                .bind(r.request_id.as_str())
                .bind(r.attempt as i64)
                .bind(r.account_id.as_str())
                .bind(r.caller_account_id.as_str())
                .bind(r.function_name.as_str())
                .bind(r.executed_version.as_str())
                .bind(r.invocation_type.as_str())
                .bind(r.received_at_us)
                .bind(r.started_at_us)
                .bind(r.ended_at_us)
                .bind(r.init_ms)
                .bind(r.duration_ms)
                .bind(r.billed_ms as i64)
                .bind(r.memory_size_mb as i64)
                .bind(r.max_memory_used_mb as i64)
                .bind(r.gb_seconds)
                .bind(r.outcome.as_str())
                .bind(r.error_type.as_deref())
                .bind(r.start_kind.as_str())
                .bind(r.request_bytes as i64)
                .bind(r.response_bytes as i64)
                .bind(r.cost_usd)
                .bind(*log_text)
                .bind(*prediction);
        }
        q.execute(&mut *tx).await?;
    }
    // An older spool's log line follows its invocation's line, so the row is there (in
    // this transaction or an earlier one); a replay finds the log already set.
    for entry in entries {
        if let SpoolEntry::Log(l) = entry {
            sqlx::query(
                "UPDATE invocations SET log_text = $1, prediction = $2 \
                 WHERE request_id = $3 AND attempt = $4 AND log_text IS NULL",
            )
            .bind(l.log_text.as_str())
            .bind(l.prediction.as_deref())
            .bind(l.request_id.as_str())
            .bind(l.attempt as i64)
            .execute(&mut *tx)
            .await?;
        }
    }
    tx.commit().await?;
    Ok(())
}

#[cfg(test)]
mod tests {
    #[test]
    fn values_are_numbered_across_rows() {
        use crate::db::Backend;
        assert_eq!(
            super::values_clause(Backend::Postgres, 2, 3),
            "($1,$2,$3),($4,$5,$6)"
        );
        assert_eq!(super::values_clause(Backend::Sqlite, 2, 2), "(?,?),(?,?)");
    }
}

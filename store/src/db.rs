//! The database connection: PostgreSQL in production, an embedded SQLite file by default.
//! One schema and one set of queries serve both, through sqlx's `Any` driver.

use std::path::Path;
use std::str::FromStr;
use std::sync::OnceLock;
use std::time::Duration;

use sqlx::any::{AnyConnectOptions, AnyPoolOptions};
use sqlx::{AnyPool, Executor};

/// Why the store failed. Callers branch on `Unavailable` (retry later) versus the rest.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("unsupported database URL {0:?}: use postgres://... or sqlite://...")]
    UnsupportedUrl(String),
    #[error("the database is unavailable: {0}")]
    Unavailable(String),
    #[error("database error: {0}")]
    Query(String),
    #[error("migration failed: {0}")]
    Migration(String),
    #[error("stored data is corrupt: {0}")]
    Corrupt(String),
    #[error("io error: {0}")]
    Io(#[from] std::io::Error),
}

/// Bounds a piece of database work that a background loop waits on. The client does no
/// TCP keepalive, so a connection whose server vanished without closing it (a failover, a
/// dropped NAT mapping, a network that drops packets) would leave the loop waiting for an
/// answer forever; past `deadline` the work counts as failed, and the loop retries it as
/// it retries any other failure.
pub async fn within<T>(
    deadline: std::time::Duration,
    work: impl Future<Output = Result<T, StoreError>>,
) -> Result<T, StoreError> {
    tokio::time::timeout(deadline, work)
        .await
        .unwrap_or_else(|_| {
            Err(StoreError::Unavailable(format!(
                "no answer from the database within {} s",
                deadline.as_secs_f64()
            )))
        })
}

impl From<sqlx::Error> for StoreError {
    fn from(e: sqlx::Error) -> Self {
        match e {
            sqlx::Error::Io(_)
            | sqlx::Error::PoolTimedOut
            | sqlx::Error::PoolClosed
            | sqlx::Error::Tls(_)
            | sqlx::Error::WorkerCrashed => StoreError::Unavailable(e.to_string()),
            other => StoreError::Query(other.to_string()),
        }
    }
}

/// Which database a [`Db`] talks to; the few statements that differ switch on it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Backend {
    Postgres,
    Sqlite,
}

/// Connection pools with migrations applied.
///
/// Every statement that writes goes through [`Db::writer`]. On SQLite that is a pool of
/// one connection, so the process's writers (the ledger, the async queue, the catalog)
/// queue for it in order. Without it they would contend for SQLite's file lock, and
/// each loser would poll with the busy handler's sleeps, which grow to 100 ms: an async
/// Invoke's 202 waited seconds behind the ledger's batches that way. Readers never wait
/// for the writer in WAL mode. On PostgreSQL both are the same pool.
#[derive(Debug, Clone)]
pub struct Db {
    pool: AnyPool,
    writer: AnyPool,
    backend: Backend,
}

static MIGRATOR: sqlx::migrate::Migrator = sqlx::migrate!("../migrations");

/// SQLite's page cache per connection, in KiB. The writer's holds the pages the ledger's
/// inserts keep touching (the indexes' right edges and their random-key leaves); the
/// appended rows themselves are never read back, so a larger cache only holds them longer.
/// A reader's cache is dropped whenever another connection commits, so it stays small.
/// Both bound the node's memory: every cached page is heap that a steady load would
/// otherwise keep growing until the cache filled.
const SQLITE_WRITER_CACHE_KIB: u32 = 16 * 1024;
const SQLITE_READER_CACHE_KIB: u32 = 2 * 1024;
const SQLITE_READERS: u32 = 4;

/// What the connections of a SQLite pool may do.
#[derive(Clone, Copy)]
enum SqliteRole {
    Writer,
    /// Refuses to write (`query_only`), so a write that missed [`Db::writer`] fails in
    /// every SQLite test instead of contending for the lock in production.
    Reader,
}

async fn sqlite_pool(options: AnyConnectOptions, role: SqliteRole) -> Result<AnyPool, StoreError> {
    let (connections, cache_kib, query_only) = match role {
        SqliteRole::Writer => (1, SQLITE_WRITER_CACHE_KIB, "OFF"),
        SqliteRole::Reader => (SQLITE_READERS, SQLITE_READER_CACHE_KIB, "ON"),
    };
    AnyPoolOptions::new()
        .max_connections(connections)
        .acquire_timeout(Duration::from_secs(10))
        .after_connect(move |conn, _| {
            Box::pin(async move {
                // WAL lets readers run beside the single writer; NORMAL sync is durable
                // against process crashes, which is what the ledger's spool needs from the
                // database side. Rarer checkpoints keep the ledger's inserts from
                // re-writing the same pages. The busy timeout only matters against
                // another process (a second node on the same file, a CLI reading it).
                let pragmas = format!(
                    "PRAGMA journal_mode=WAL; PRAGMA synchronous=NORMAL; \
                     PRAGMA busy_timeout=10000; PRAGMA foreign_keys=ON; \
                     PRAGMA cache_size=-{cache_kib}; PRAGMA wal_autocheckpoint=8192; \
                     PRAGMA temp_store=MEMORY; PRAGMA query_only={query_only};"
                );
                // The statement is built from constants above.
                conn.execute(sqlx::AssertSqlSafe(pragmas)).await?;
                Ok(())
            })
        })
        .connect_with(options)
        .await
        .map_err(|e| StoreError::Unavailable(e.to_string()))
}

impl Db {
    /// Connects to `url` and applies pending migrations.
    pub async fn connect(url: &str) -> Result<Db, StoreError> {
        sqlx::any::install_default_drivers();
        let backend = if url.starts_with("postgres://") || url.starts_with("postgresql://") {
            Backend::Postgres
        } else if url.starts_with("sqlite:") {
            Backend::Sqlite
        } else {
            return Err(StoreError::UnsupportedUrl(url.to_owned()));
        };
        let options =
            AnyConnectOptions::from_str(url).map_err(|e| StoreError::Unavailable(e.to_string()))?;
        let (pool, writer) = match backend {
            Backend::Postgres => {
                let pool = AnyPoolOptions::new()
                    .max_connections(16)
                    .acquire_timeout(Duration::from_secs(5))
                    .connect_with(options)
                    .await
                    .map_err(|e| StoreError::Unavailable(e.to_string()))?;
                (pool.clone(), pool)
            }
            Backend::Sqlite => {
                // The writer connects first: it creates the file and turns WAL on.
                let writer = sqlite_pool(options.clone(), SqliteRole::Writer).await?;
                let readers = sqlite_pool(options, SqliteRole::Reader).await?;
                (readers, writer)
            }
        };
        MIGRATOR
            .run(&writer)
            .await
            .map_err(|e| StoreError::Migration(e.to_string()))?;
        Ok(Db {
            pool,
            writer,
            backend,
        })
    }

    /// Opens (creating if needed) the embedded SQLite database at `path`.
    pub async fn open_sqlite(path: &Path) -> Result<Db, StoreError> {
        if let Some(dir) = path.parent() {
            std::fs::create_dir_all(dir)?;
        }
        Self::connect(&format!("sqlite://{}?mode=rwc", path.display())).await
    }

    /// For statements that only read.
    pub fn pool(&self) -> &AnyPool {
        &self.pool
    }

    /// For every statement and transaction that writes.
    pub fn writer(&self) -> &AnyPool {
        &self.writer
    }

    /// Runs the writes of a hot path (the ledger's batches, the async queue) where
    /// SQLite's one writer connection is never left idle. Done in the caller's task on a
    /// loaded node, every await of that connection resumes only when the runtime gets
    /// round to the task again, behind every request queued before it, while the
    /// connection sits idle and every other writer waits for it: in a soak at full load
    /// the ledger stopped draining for 40 s and async Invokes timed out. On a runtime
    /// thread of its own, the awaits resume at once and only the caller's final wake-up
    /// waits its turn. On PostgreSQL, where writers have a pool, it runs in place.
    pub async fn write<T, F>(&self, work: impl FnOnce(Db) -> F) -> Result<T, StoreError>
    where
        T: Send + 'static,
        F: Future<Output = Result<T, StoreError>> + Send + 'static,
    {
        let work = work(self.clone());
        match self.backend {
            Backend::Postgres => work.await,
            Backend::Sqlite => writer_runtime()?.spawn(work).await.map_err(|e| {
                StoreError::Unavailable(format!("the database writer stopped: {e}"))
            })?,
        }
    }

    /// A transaction that reads before it writes. On SQLite it takes the write lock at its
    /// start: a deferred transaction whose snapshot another writer (the ledger, the queue)
    /// overtook fails at its first write with SQLITE_BUSY, which no busy timeout waits out.
    /// PostgreSQL's writers lock the rows they read with `FOR UPDATE` instead.
    pub async fn begin_write(&self) -> sqlx::Result<sqlx::Transaction<'static, sqlx::Any>> {
        match self.backend {
            Backend::Sqlite => self.writer.begin_with("BEGIN IMMEDIATE").await,
            Backend::Postgres => self.writer.begin().await,
        }
    }

    pub fn backend(&self) -> Backend {
        self.backend
    }

    pub async fn close(&self) {
        self.pool.close().await;
        self.writer.close().await;
    }
}

/// The runtime of [`Db::write`]: one thread, shared by every SQLite database of the process
/// (a node has one), started on first use and kept for the life of the process.
fn writer_runtime() -> Result<&'static tokio::runtime::Handle, StoreError> {
    static RUNTIME: OnceLock<Result<tokio::runtime::Runtime, String>> = OnceLock::new();
    RUNTIME
        .get_or_init(|| {
            tokio::runtime::Builder::new_multi_thread()
                .worker_threads(1)
                .thread_name("lamina-db-writer")
                .enable_all()
                .build()
                .map_err(|e| e.to_string())
        })
        .as_ref()
        .map(tokio::runtime::Runtime::handle)
        .map_err(|e| StoreError::Unavailable(format!("cannot start the database writer: {e}")))
}

pub(crate) fn now_ms() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_millis() as i64)
        .unwrap_or(0)
}

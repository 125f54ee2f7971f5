//! Function logs as the ledger stored them (in each invocation's row), read back per
//! function within one account, and their retention.

use sqlx::Row;

use crate::db::{Db, StoreError};

/// One invocation's log (its START/END/REPORT lines and the guest's output).
#[derive(Debug, Clone, PartialEq)]
pub struct LogEntry {
    pub request_id: String,
    pub attempt: u32,
    pub function_name: String,
    pub version: String,
    pub logged_at_us: i64,
    pub text: String,
}

/// Which logs to read.
#[derive(Debug, Clone)]
pub struct LogQuery<'a> {
    pub account_id: &'a str,
    pub function_name: &'a str,
    /// Only entries logged strictly after this (microseconds since the epoch); a
    /// follower passes the last one it saw.
    pub after_us: i64,
    pub limit: u32,
}

/// The oldest matching entries first, at most `limit`.
pub async fn read(db: &Db, q: &LogQuery<'_>) -> Result<Vec<LogEntry>, StoreError> {
    let rows = sqlx::query(
        "SELECT request_id, attempt, function_name, executed_version, ended_at_us, log_text \
         FROM invocations \
         WHERE account_id = $1 AND function_name = $2 AND ended_at_us > $3 \
         AND log_text IS NOT NULL \
         ORDER BY ended_at_us, request_id, attempt LIMIT $4",
    )
    .bind(q.account_id)
    .bind(q.function_name)
    .bind(q.after_us)
    .bind(i64::from(q.limit))
    .fetch_all(db.pool())
    .await?;
    rows.iter()
        .map(|r| {
            Ok(LogEntry {
                request_id: r.try_get("request_id")?,
                attempt: r.try_get::<i64, _>("attempt")? as u32,
                function_name: r.try_get("function_name")?,
                version: r.try_get("executed_version")?,
                logged_at_us: r.try_get("ended_at_us")?,
                text: r.try_get("log_text")?,
            })
        })
        .collect()
}

/// Clears logs (and the predictions kept with them) older than `before_us`, keeping the
/// billing rows; returns how many were cleared.
pub async fn expire(db: &Db, before_us: i64) -> Result<u64, StoreError> {
    let done = sqlx::query(
        "UPDATE invocations SET log_text = NULL, prediction = NULL \
         WHERE log_text IS NOT NULL AND ended_at_us < $1",
    )
    .bind(before_us)
    .execute(db.writer())
    .await?;
    Ok(done.rows_affected())
}

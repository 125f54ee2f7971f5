//! Reading back what the ledger wrote: function logs and usage per function, always
//! within one account, and the logs' retention.

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
pub async fn logs(db: &Db, q: &LogQuery<'_>) -> Result<Vec<LogEntry>, StoreError> {
    let rows = sqlx::query(
        "SELECT request_id, attempt, function_name, version, logged_at_us, log_text \
         FROM function_logs \
         WHERE account_id = $1 AND function_name = $2 AND logged_at_us > $3 \
         ORDER BY logged_at_us, request_id, attempt LIMIT $4",
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
                version: r.try_get("version")?,
                logged_at_us: r.try_get("logged_at_us")?,
                text: r.try_get("log_text")?,
            })
        })
        .collect()
}

/// Deletes logs older than `before_us`; returns how many went.
pub async fn expire_logs(db: &Db, before_us: i64) -> Result<u64, StoreError> {
    let done = sqlx::query("DELETE FROM function_logs WHERE logged_at_us < $1")
        .bind(before_us)
        .execute(db.pool())
        .await?;
    Ok(done.rows_affected())
}

/// One function's usage over a period.
#[derive(Debug, Clone, PartialEq)]
pub struct Usage {
    pub function_name: String,
    pub requests: u64,
    pub errors: u64,
    pub cold_starts: u64,
    pub billed_ms: u64,
    pub gb_seconds: f64,
    pub cost_usd: f64,
}

/// Usage of every function of `account_id` (or just `function_name`) from ledger rows
/// that ended at or after `since_us`, the most expensive first.
pub async fn usage(
    db: &Db,
    account_id: &str,
    since_us: i64,
    function_name: Option<&str>,
) -> Result<Vec<Usage>, StoreError> {
    let rows = sqlx::query(
        "SELECT function_name, \
                COUNT(*) AS requests, \
                SUM(CASE WHEN outcome <> 'success' THEN 1 ELSE 0 END) AS errors, \
                SUM(CASE WHEN start_kind <> 'warm' THEN 1 ELSE 0 END) AS cold_starts, \
                CAST(SUM(billed_ms) AS BIGINT) AS billed_ms, \
                SUM(gb_seconds) AS gb_seconds, \
                SUM(cost_usd) AS cost_usd \
         FROM invocations \
         WHERE account_id = $1 AND ended_at_us >= $2 AND ($3 = '' OR function_name = $3) \
         GROUP BY function_name \
         ORDER BY SUM(cost_usd) DESC, function_name",
    )
    .bind(account_id)
    .bind(since_us)
    .bind(function_name.unwrap_or(""))
    .fetch_all(db.pool())
    .await?;
    rows.iter()
        .map(|r| {
            Ok(Usage {
                function_name: r.try_get("function_name")?,
                requests: r.try_get::<i64, _>("requests")? as u64,
                errors: r.try_get::<i64, _>("errors")? as u64,
                cold_starts: r.try_get::<i64, _>("cold_starts")? as u64,
                billed_ms: r.try_get::<i64, _>("billed_ms")? as u64,
                gb_seconds: r.try_get("gb_seconds")?,
                cost_usd: r.try_get("cost_usd")?,
            })
        })
        .collect()
}

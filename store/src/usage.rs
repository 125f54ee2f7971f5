//! Usage per function, summed from the ledger's invocation rows within one account.

use sqlx::Row;

use crate::db::{Db, StoreError};

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
pub async fn per_function(
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

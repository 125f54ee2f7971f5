//! Lamina's own read-back routes: a function's logs and an account's usage.
//!
//! - `GET /lamina/functions/{name}/logs?after=<µs>&limit=<n>`: the oldest entries logged
//!   after `after` (a follower passes the `NextAfter` of its previous page).
//! - `GET /lamina/usage?since=<µs>&function=<name>`: requests, errors, cold starts,
//!   GB-seconds and cost per function, from the billing ledger.
//!
//! Both only ever see the caller's account.

use axum::Json;
use axum::extract::{Path, Query, State};
use serde::Deserialize;
use serde_json::{Value, json};

use crate::auth::Caller;
use crate::error::ApiError;
use crate::state::AppState;

const MAX_LOG_PAGE: u32 = 1000;

#[derive(Debug, Deserialize)]
pub struct LogsQuery {
    after: Option<i64>,
    limit: Option<u32>,
}

pub async fn logs(
    State(state): State<AppState>,
    caller: Caller,
    Path(name): Path<String>,
    Query(q): Query<LogsQuery>,
) -> Result<Json<Value>, ApiError> {
    let r = state.resolve(&caller.account_id, &name, None)?;
    let limit = q.limit.unwrap_or(100);
    if !(1..=MAX_LOG_PAGE).contains(&limit) {
        return Err(ApiError::InvalidParameterValue(format!(
            "limit must be between 1 and {MAX_LOG_PAGE}."
        )));
    }
    let after = q.after.unwrap_or(0);
    let entries = store::function_logs::read(
        &state.db,
        &store::function_logs::LogQuery {
            account_id: &r.entry.account_id,
            function_name: &r.entry.name,
            after_us: after,
            limit,
        },
    )
    .await
    .map_err(ApiError::service)?;
    let next = entries.last().map_or(after, |e| e.logged_at_us);
    let events: Vec<Value> = entries
        .into_iter()
        .map(|e| {
            json!({
                "RequestId": e.request_id,
                "Attempt": e.attempt,
                "Version": e.version,
                "LoggedAtMicros": e.logged_at_us,
                "Message": e.text,
            })
        })
        .collect();
    Ok(Json(json!({
        "FunctionName": r.entry.name,
        "Events": events,
        "NextAfter": next,
    })))
}

#[derive(Debug, Deserialize)]
pub struct UsageQuery {
    since: Option<i64>,
    function: Option<String>,
}

pub async fn usage(
    State(state): State<AppState>,
    caller: Caller,
    Query(q): Query<UsageQuery>,
) -> Result<Json<Value>, ApiError> {
    let rows = store::usage::per_function(
        &state.db,
        &caller.account_id,
        q.since.unwrap_or(0),
        q.function.as_deref().filter(|f| !f.is_empty()),
    )
    .await
    .map_err(ApiError::service)?;
    let functions: Vec<Value> = rows
        .into_iter()
        .map(|u| {
            json!({
                "FunctionName": u.function_name,
                "Requests": u.requests,
                "Errors": u.errors,
                "ColdStarts": u.cold_starts,
                "BilledMilliseconds": u.billed_ms,
                "GBSeconds": u.gb_seconds,
                "CostUSD": u.cost_usd,
            })
        })
        .collect();
    Ok(Json(json!({
        "AccountId": caller.account_id,
        "Since": q.since.unwrap_or(0),
        "Functions": functions,
    })))
}

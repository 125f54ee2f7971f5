//! Reserved concurrency: PutFunctionConcurrency, GetFunctionConcurrency and
//! DeleteFunctionConcurrency. The scheduler enforces the reservation; the catalog keeps it.

use axum::Json;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use bytes::Bytes;
use serde::Deserialize;
use serde_json::{Value, json};

use super::request::parse_body;
use crate::auth::Caller;
use crate::error::{About, ApiError, catalog};
use crate::state::{AppState, MissingFunction};

#[derive(Debug, Deserialize)]
#[serde(rename_all = "PascalCase")]
struct Reserved {
    reserved_concurrent_executions: Option<i64>,
}

pub async fn put_reserved(
    State(state): State<AppState>,
    caller: Caller,
    Path(name): Path<String>,
    body: Bytes,
) -> Result<Json<Value>, ApiError> {
    let req: Reserved = parse_body(&body)?;
    let r = state.resolve_unqualified(&caller.account_id, &name, MissingFunction::Latest)?;
    let n = req.reserved_concurrent_executions.ok_or_else(|| {
        ApiError::Validation(
            "1 validation error detected: Value null at 'reservedConcurrentExecutions' failed to satisfy constraint: Member must not be null".into(),
        )
    })?;
    let n = crate::validate::bounded(n, "reservedConcurrentExecutions", 0, None)?;
    let provisioned: u32 = r.entry.provisioned.values().map(|p| p.requested).sum();
    if n < provisioned {
        return Err(ApiError::InvalidParameterValue(format!(
            "ReservedConcurrentExecutions  {n} should not be lower than function's total provisioned concurrency [{provisioned}]."
        )));
    }
    let function = scheduler::FunctionKey::new(&r.entry.account_id, &r.entry.name);
    let limits = state.scheduler.limits();
    state
        .scheduler
        .set_reserved(&function, Some(n))
        .map_err(|_| {
            ApiError::InvalidParameterValue(format!(
                "Specified ReservedConcurrentExecutions for function decreases account's UnreservedConcurrentExecution below its minimum value of [{}].",
                limits.min_unreserved
            ))
        })?;
    if let Err(e) = state
        .catalog
        .set_reserved(&caller.account_id, &r.entry.name, Some(n))
        .await
    {
        let _ = state
            .scheduler
            .set_reserved(&function, r.entry.reserved_concurrency);
        let arn = state.arns.function(&r.entry.account_id, &r.entry.name);
        return Err(catalog(e, About::arn(&arn)));
    }
    Ok(Json(json!({ "ReservedConcurrentExecutions": n })))
}

pub async fn get_reserved(
    State(state): State<AppState>,
    caller: Caller,
    Path(name): Path<String>,
) -> Result<Json<Value>, ApiError> {
    let r = state.resolve_unqualified(&caller.account_id, &name, MissingFunction::AsGiven)?;
    Ok(Json(match r.entry.reserved_concurrency {
        Some(n) => json!({ "ReservedConcurrentExecutions": n }),
        None => json!({}),
    }))
}

pub async fn delete_reserved(
    State(state): State<AppState>,
    caller: Caller,
    Path(name): Path<String>,
) -> Result<StatusCode, ApiError> {
    let r = state.resolve_unqualified(&caller.account_id, &name, MissingFunction::AsGiven)?;
    let function = scheduler::FunctionKey::new(&r.entry.account_id, &r.entry.name);
    let _ = state.scheduler.set_reserved(&function, None);
    state
        .catalog
        .set_reserved(&caller.account_id, &r.entry.name, None)
        .await
        .map_err(|e| {
            let arn = state.arns.function(&r.entry.account_id, &r.entry.name);
            catalog(e, About::arn(&arn))
        })?;
    Ok(StatusCode::NO_CONTENT)
}

//! Provisioned concurrency: Put, Get, Delete and ListProvisionedConcurrencyConfigs, on a
//! published version or an alias, never `$LATEST`.

use std::collections::BTreeMap;

use axum::Json;
use axum::extract::{Path, Query, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use bytes::Bytes;
use serde::Deserialize;
use serde_json::{Value, json};
use store::{CatalogError, ProvisionedRecord};

use super::request::{QualifierQuery, parse_body};
use crate::auth::Caller;
use crate::error::{About, ApiError, catalog};
use crate::state::{AppState, Resolved};

#[derive(Debug, Deserialize)]
#[serde(rename_all = "PascalCase")]
struct Provisioned {
    provisioned_concurrent_executions: Option<i64>,
}

/// Put's refusal of `$LATEST`; Get and Delete word it as [`NOT_PUBLISHED`].
const UNPUBLISHED: &str =
    "Provisioned Concurrency Configs cannot be applied to unpublished function versions.";
const NOT_PUBLISHED: &str =
    "The function resource provided must be an alias or a published version.";

/// The version a provisioned-concurrency qualifier pins: a number or an alias (whose
/// primary version is provisioned), never `$LATEST` (refused with `latest_refusal`).
fn provisioned_target(
    state: &AppState,
    r: &Resolved,
    latest_refusal: &str,
) -> Result<(String, std::sync::Arc<store::VersionRecord>), ApiError> {
    let q = r.qualifier.clone().ok_or_else(|| {
        ApiError::Validation(
            "1 validation error detected: Value null at 'qualifier' failed to satisfy constraint: Member must not be null".into(),
        )
    })?;
    if q == protocol::names::LATEST {
        return Err(ApiError::InvalidParameterValue(latest_refusal.into()));
    }
    let version = state.version_for_setting(r)?;
    Ok((q, version))
}

/// Pool of the version a provisioned qualifier pins, registered with the scheduler.
fn provisioned_pool(
    state: &AppState,
    r: &Resolved,
    version: &store::VersionRecord,
) -> scheduler::PoolId {
    state.invoker.pool(&r.entry, version)
}

/// Ready provisioned environments per version on the other live nodes, read once per
/// request. Without the database the other nodes' environments cannot be counted: the
/// answers show this node's until it is back.
async fn ready_elsewhere(state: &AppState) -> BTreeMap<String, u32> {
    crate::membership::provisioned_ready_elsewhere(state)
        .await
        .unwrap_or_else(|e| {
            tracing::warn!(error = ?e, "cannot read the other nodes' provisioned environments");
            BTreeMap::new()
        })
}

/// A provisioned-concurrency config as the API shows it, with the environments ready
/// over the whole cluster: this node's, and `elsewhere` (from [`ready_elsewhere`]).
fn provisioned_body(
    state: &AppState,
    r: &Resolved,
    record: &ProvisionedRecord,
    version: &store::VersionRecord,
    elsewhere: &BTreeMap<String, u32>,
) -> Value {
    let pool = provisioned_pool(state, r, version);
    let key = scheduler::PoolKey::of(&r.entry, version).to_string();
    let ready = state
        .scheduler
        .provisioned_ready(pool)
        .saturating_add(elsewhere.get(&key).copied().unwrap_or(0))
        .min(record.requested);
    let status = if ready >= record.requested {
        "READY"
    } else {
        "IN_PROGRESS"
    };
    json!({
        "RequestedProvisionedConcurrentExecutions": record.requested,
        "AvailableProvisionedConcurrentExecutions": ready,
        "AllocatedProvisionedConcurrentExecutions": ready,
        "Status": status,
        "LastModified": crate::wire::iso_time(record.last_modified_ms),
    })
}

pub async fn put_provisioned(
    State(state): State<AppState>,
    caller: Caller,
    Path(name): Path<String>,
    Query(q): Query<QualifierQuery>,
    body: Bytes,
) -> Result<Response, ApiError> {
    let req: Provisioned = parse_body(&body)?;
    let r = state.resolve(&caller.account_id, &name, q.qualifier.as_deref())?;
    let (qualifier, version) = provisioned_target(&state, &r, UNPUBLISHED)?;
    let n = req.provisioned_concurrent_executions.unwrap_or(0);
    let n = crate::validate::bounded(n, "provisionedConcurrentExecutions", 1, None)?;
    let others: u32 = r
        .entry
        .provisioned
        .values()
        .filter(|p| p.qualifier != qualifier)
        .map(|p| p.requested)
        .sum();
    let ceiling = r.entry.reserved_concurrency.unwrap_or_else(|| {
        state
            .scheduler
            .unreserved(&caller.account_id)
            .saturating_sub(state.scheduler.limits().min_unreserved)
    });
    if others + n > ceiling {
        return Err(ApiError::InvalidParameterValue(format!(
            "Requested Provisioned Concurrency should not be greater than the reservedConcurrentExecution [{ceiling}] for function."
        )));
    }
    let record = ProvisionedRecord {
        qualifier: qualifier.clone(),
        requested: n,
        last_modified_ms: chrono::Utc::now().timestamp_millis(),
    };
    state
        .catalog
        .put_setting(&caller.account_id, &r.entry.name, record.clone())
        .await
        .map_err(|e| catalog(e, About::arn(&qualified_arn(&state, &r, &qualifier))))?;
    let pool = provisioned_pool(&state, &r, &version);
    state.scheduler.set_provisioned(pool, n);
    let elsewhere = ready_elsewhere(&state).await;
    let mut body = provisioned_body(&state, &r, &record, &version, &elsewhere);
    if let Some(obj) = body.as_object_mut() {
        obj.insert("Status".into(), "IN_PROGRESS".into());
    }
    Ok((StatusCode::ACCEPTED, Json(body)).into_response())
}

/// The ARN a provisioned-concurrency refusal names: the function's, with its qualifier.
fn qualified_arn(state: &AppState, r: &Resolved, qualifier: &str) -> String {
    state
        .arns
        .qualified(&r.entry.account_id, &r.entry.name, qualifier)
}

fn no_provisioned() -> ApiError {
    ApiError::ProvisionedConcurrencyConfigNotFound(
        "No Provisioned Concurrency Config found for this function".into(),
    )
}

pub async fn get_provisioned(
    State(state): State<AppState>,
    caller: Caller,
    Path(name): Path<String>,
    Query(q): Query<QualifierQuery>,
) -> Result<Json<Value>, ApiError> {
    let r = state.resolve(&caller.account_id, &name, q.qualifier.as_deref())?;
    let (qualifier, version) = provisioned_target(&state, &r, NOT_PUBLISHED)?;
    let record = r
        .entry
        .provisioned
        .get(&qualifier)
        .ok_or_else(no_provisioned)?;
    let elsewhere = ready_elsewhere(&state).await;
    Ok(Json(provisioned_body(
        &state, &r, record, &version, &elsewhere,
    )))
}

pub async fn delete_provisioned(
    State(state): State<AppState>,
    caller: Caller,
    Path(name): Path<String>,
    Query(q): Query<QualifierQuery>,
) -> Result<StatusCode, ApiError> {
    let r = state.resolve(&caller.account_id, &name, q.qualifier.as_deref())?;
    let (qualifier, version) = provisioned_target(&state, &r, NOT_PUBLISHED)?;
    if !r.entry.provisioned.contains_key(&qualifier) {
        return Err(no_provisioned());
    }
    state
        .catalog
        .delete_setting::<store::ProvisionedRecord>(&caller.account_id, &r.entry.name, &qualifier)
        .await
        .map_err(|e| match e {
            // Deleted by a concurrent request since it was read.
            CatalogError::NotFound => no_provisioned(),
            other => catalog(other, About::arn(&qualified_arn(&state, &r, &qualifier))),
        })?;
    let pool = provisioned_pool(&state, &r, &version);
    state.scheduler.set_provisioned(pool, 0);
    Ok(StatusCode::NO_CONTENT)
}

pub async fn list_provisioned(
    State(state): State<AppState>,
    caller: Caller,
    Path(name): Path<String>,
) -> Result<Json<Value>, ApiError> {
    let r = state.resolve(&caller.account_id, &name, None)?;
    let elsewhere = ready_elsewhere(&state).await;
    let mut configs = Vec::new();
    for record in r.entry.provisioned.values() {
        let qualified = Resolved {
            entry: r.entry.clone(),
            qualifier: Some(record.qualifier.clone()),
        };
        if let Ok(version) = state.version_for_read(&qualified) {
            let mut body = provisioned_body(&state, &qualified, record, &version, &elsewhere);
            if let Some(obj) = body.as_object_mut() {
                obj.insert(
                    "FunctionArn".into(),
                    qualified_arn(&state, &r, &record.qualifier).into(),
                );
            }
            configs.push(body);
        }
    }
    Ok(Json(json!({ "ProvisionedConcurrencyConfigs": configs })))
}

#[derive(Debug, Deserialize)]
pub struct GetOrListQuery {
    #[serde(rename = "Qualifier")]
    qualifier: Option<String>,
    #[serde(rename = "List")]
    list: Option<String>,
}

/// Get and List share a path; `?List=ALL` selects ListProvisionedConcurrencyConfigs.
pub async fn get_or_list(
    state: State<AppState>,
    caller: Caller,
    name: Path<String>,
    Query(q): Query<GetOrListQuery>,
) -> Result<Json<Value>, ApiError> {
    if q.list.as_deref() == Some("ALL") {
        return list_provisioned(state, caller, name).await;
    }
    let qualifier = QualifierQuery {
        qualifier: q.qualifier,
    };
    get_provisioned(state, caller, name, Query(qualifier)).await
}

//! Function-level settings: reserved and provisioned concurrency, tags, event-invoke
//! configs, resource policies, and the account's settings.

use std::collections::BTreeMap;

use axum::Json;
use axum::extract::{Path, Query, RawQuery, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use bytes::Bytes;
use serde::Deserialize;
use serde_json::{Value, json};
use store::{
    CatalogError, EventInvokeConfig, EventInvokeRecord, PolicyStatement, ProvisionedRecord,
};

use super::functions::page;
use super::{Caller, QualifierQuery, parse_body, scheduler_key};
use crate::error::ApiError;
use crate::state::{AppState, MissingFunction, Resolved};
use crate::validate;

// ---- reserved concurrency -------------------------------------------------------------

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
    if n < 0 {
        return Err(ApiError::Validation(format!(
            "1 validation error detected: Value '{n}' at 'reservedConcurrentExecutions' failed to satisfy constraint: Member must have value greater than or equal to 0"
        )));
    }
    let n = u32::try_from(n).unwrap_or(u32::MAX);
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
        return Err(ApiError::service(e));
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
        .map_err(ApiError::service)?;
    Ok(StatusCode::NO_CONTENT)
}

// ---- provisioned concurrency -----------------------------------------------------------

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
    let spec = state.catalog.spec(&r.entry, version);
    let function = scheduler::FunctionKey::new(&r.entry.account_id, &r.entry.name);
    state
        .scheduler
        .pool_for(&scheduler_key(&r.entry, version), &function, &spec)
}

pub fn provisioned_body(
    state: &AppState,
    r: &Resolved,
    record: &ProvisionedRecord,
    version: &store::VersionRecord,
) -> Value {
    let pool = provisioned_pool(state, r, version);
    let ready = state
        .scheduler
        .provisioned_ready(pool)
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
    if n < 1 {
        return Err(ApiError::Validation(format!(
            "1 validation error detected: Value '{n}' at 'provisionedConcurrentExecutions' failed to satisfy constraint: Member must have value greater than or equal to 1"
        )));
    }
    let n = u32::try_from(n).unwrap_or(u32::MAX);
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
        .map_err(ApiError::service)?;
    let pool = provisioned_pool(&state, &r, &version);
    state.scheduler.set_provisioned(pool, n);
    let mut body = provisioned_body(&state, &r, &record, &version);
    if let Some(obj) = body.as_object_mut() {
        obj.insert("Status".into(), "IN_PROGRESS".into());
    }
    Ok((StatusCode::ACCEPTED, Json(body)).into_response())
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
    Ok(Json(provisioned_body(&state, &r, record, &version)))
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
        .map_err(ApiError::service)?;
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
    let mut configs = Vec::new();
    for record in r.entry.provisioned.values() {
        let qualified = Resolved {
            entry: r.entry.clone(),
            qualifier: Some(record.qualifier.clone()),
        };
        if let Ok(version) = state.version_for_read(&qualified) {
            let mut body = provisioned_body(&state, &qualified, record, &version);
            if let Some(obj) = body.as_object_mut() {
                obj.insert(
                    "FunctionArn".into(),
                    state
                        .arns
                        .qualified(&r.entry.account_id, &r.entry.name, &record.qualifier)
                        .into(),
                );
            }
            configs.push(body);
        }
    }
    Ok(Json(json!({ "ProvisionedConcurrencyConfigs": configs })))
}

// ---- tags ------------------------------------------------------------------------------

/// What TagResource and friends accept: a function's ARN (Lamina has no other
/// taggable resources).
const TAGGABLE_ARN_PATTERN: &str = "arn:(aws[a-zA-Z-]*):lambda:[a-z]{2}((-gov)|(-iso([a-z]?)))?-[a-z]+-\\d{1}:\\d{12}:function:[a-zA-Z0-9-_]+(:(\\$LATEST|[a-zA-Z0-9-_]+))?";

fn tag_target(state: &AppState, caller: &Caller, resource: &str) -> Result<Resolved, ApiError> {
    let invalid = || {
        ApiError::Validation(format!(
            "1 validation error detected: Value '{resource}' at 'resource' failed to satisfy constraint: Member must satisfy regular expression pattern: {TAGGABLE_ARN_PATTERN}"
        ))
    };
    if !resource.starts_with("arn:") {
        return Err(invalid());
    }
    let parsed =
        protocol::names::FunctionRef::parse_field(resource, "resource").map_err(|_| invalid())?;
    if parsed.qualifier.is_some() {
        return Err(ApiError::InvalidParameterValue(
            "Tags on function aliases and versions are not supported. Please specify a function ARN.".into(),
        ));
    }
    state.find(&caller.account_id, parsed)
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "PascalCase")]
struct TagInput {
    tags: Option<BTreeMap<String, String>>,
}

pub async fn tag(
    State(state): State<AppState>,
    caller: Caller,
    Path(resource): Path<String>,
    body: Bytes,
) -> Result<StatusCode, ApiError> {
    let req: TagInput = parse_body(&body)?;
    let r = tag_target(&state, &caller, &resource)?;
    let mut tags = r.entry.tags.clone();
    tags.extend(req.tags.unwrap_or_default());
    validate::tags(&tags)?;
    state
        .catalog
        .set_tags(&caller.account_id, &r.entry.name, tags)
        .await
        .map_err(ApiError::service)?;
    Ok(StatusCode::NO_CONTENT)
}

pub async fn untag(
    State(state): State<AppState>,
    caller: Caller,
    Path(resource): Path<String>,
    RawQuery(query): RawQuery,
) -> Result<StatusCode, ApiError> {
    let r = tag_target(&state, &caller, &resource)?;
    let keys: Vec<String> = query
        .unwrap_or_default()
        .split('&')
        .filter_map(|pair| pair.split_once('='))
        .filter(|(k, _)| *k == "tagKeys")
        .map(|(_, v)| {
            percent_encoding::percent_decode_str(&v.replace('+', " "))
                .decode_utf8_lossy()
                .into_owned()
        })
        .collect();
    let mut tags = r.entry.tags.clone();
    for k in &keys {
        tags.remove(k);
    }
    state
        .catalog
        .set_tags(&caller.account_id, &r.entry.name, tags)
        .await
        .map_err(ApiError::service)?;
    Ok(StatusCode::NO_CONTENT)
}

pub async fn list_tags(
    State(state): State<AppState>,
    caller: Caller,
    Path(resource): Path<String>,
) -> Result<Json<Value>, ApiError> {
    let r = tag_target(&state, &caller, &resource)?;
    Ok(Json(json!({ "Tags": r.entry.tags })))
}

// ---- account settings ------------------------------------------------------------------

pub async fn account_settings(State(state): State<AppState>, caller: Caller) -> Json<Value> {
    let functions = state.catalog.functions(&caller.account_id);
    let total_code: u64 = functions
        .iter()
        .flat_map(|f| std::iter::once(&f.latest).chain(f.versions.values()))
        .map(|v| v.config.code_size)
        .sum();
    let limits = state.scheduler.limits();
    Json(json!({
        "AccountLimit": {
            "TotalCodeSize": 80_530_636_800_u64,
            "CodeSizeUnzipped": crate::intake::MAX_UNZIPPED,
            "CodeSizeZipped": crate::intake::MAX_ZIPPED,
            "ConcurrentExecutions": limits.account_concurrency,
            "UnreservedConcurrentExecutions": state.scheduler.unreserved(&caller.account_id),
        },
        "AccountUsage": {
            "TotalCodeSize": total_code,
            "FunctionCount": functions.len(),
        },
    }))
}

// ---- event invoke configs -------------------------------------------------------------

#[derive(Debug, Deserialize, Default)]
#[serde(rename_all = "PascalCase")]
struct DestinationInput {
    destination: Option<String>,
}

#[derive(Debug, Deserialize, Default)]
#[serde(rename_all = "PascalCase")]
struct DestinationsInput {
    on_success: Option<DestinationInput>,
    on_failure: Option<DestinationInput>,
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "PascalCase")]
struct EventConfigInput {
    maximum_retry_attempts: Option<i64>,
    maximum_event_age_in_seconds: Option<i64>,
    destination_config: Option<DestinationsInput>,
}

fn event_qualifier(r: &Resolved) -> String {
    r.qualifier
        .clone()
        .unwrap_or_else(|| protocol::names::LATEST.to_owned())
}

fn nothing_to_configure(input: &EventConfigInput) -> bool {
    input.maximum_retry_attempts.is_none()
        && input.maximum_event_age_in_seconds.is_none()
        && input.destination_config.is_none()
}

fn nothing_configured() -> ApiError {
    ApiError::InvalidParameterValue(
        "You must specify at least one of error handling or destination setting.".into(),
    )
}

/// The function (and version or alias) a Put or Update writes to. Lambda answers a missing
/// one, function or qualifier, with the same sentence.
fn event_config_target(
    state: &AppState,
    caller: &Caller,
    name: &str,
    qualifier: Option<&str>,
) -> Result<Resolved, ApiError> {
    let doesnt_exist = || ApiError::ResourceNotFound("The function doesn't exist.".into());
    let r = state
        .resolve(&caller.account_id, name, qualifier)
        .map_err(|e| match e {
            ApiError::ResourceNotFound(_) => doesnt_exist(),
            other => other,
        })?;
    state.version_for_read(&r).map_err(|_| doesnt_exist())?;
    Ok(r)
}

/// Get and Delete name the missing config, even when the function itself is missing.
fn event_config_lookup(
    state: &AppState,
    caller: &Caller,
    name: &str,
    qualifier: Option<&str>,
) -> Result<Resolved, ApiError> {
    state
        .resolve(&caller.account_id, name, qualifier)
        .map_err(|e| match e {
            ApiError::ResourceNotFound(m) => {
                match protocol::names::FunctionRef::parse(name)
                    .ok()
                    .and_then(|f| f.with_query_qualifier(qualifier).ok())
                {
                    Some(f) => ApiError::ResourceNotFound(format!(
                        "The function {} doesn't have an EventInvokeConfig",
                        state.arns.qualified(
                            &caller.account_id,
                            &f.name,
                            f.qualifier.as_deref().unwrap_or(protocol::names::LATEST)
                        )
                    )),
                    None => ApiError::ResourceNotFound(m),
                }
            }
            other => other,
        })
}

fn check_event_config(
    state: &AppState,
    r: &Resolved,
    input: EventConfigInput,
    base: EventInvokeConfig,
) -> Result<EventInvokeConfig, ApiError> {
    let mut c = base;
    if let Some(n) = input.maximum_retry_attempts {
        if !(0..=2).contains(&n) {
            let bound = if n < 0 {
                "greater than or equal to 0"
            } else {
                "less than or equal to 2"
            };
            return Err(ApiError::Validation(format!(
                "1 validation error detected: Value '{n}' at 'maximumRetryAttempts' failed to satisfy constraint: Member must have value {bound}"
            )));
        }
        c.maximum_retry_attempts = u32::try_from(n).ok();
    }
    if let Some(n) = input.maximum_event_age_in_seconds {
        if !(60..=21_600).contains(&n) {
            let bound = if n < 60 {
                "greater than or equal to 60"
            } else {
                "less than or equal to 21600"
            };
            return Err(ApiError::Validation(format!(
                "1 validation error detected: Value '{n}' at 'maximumEventAgeInSeconds' failed to satisfy constraint: Member must have value {bound}"
            )));
        }
        c.maximum_event_age_in_seconds = u32::try_from(n).ok();
    }
    if let Some(d) = input.destination_config {
        if let Some(s) = d.on_success {
            c.on_success = s.destination.filter(|x| !x.is_empty());
        }
        if let Some(f) = d.on_failure {
            c.on_failure = f.destination.filter(|x| !x.is_empty());
        }
    }
    for dest in [&c.on_success, &c.on_failure].into_iter().flatten() {
        let target = protocol::names::FunctionRef::parse(dest)
            .ok()
            .filter(|_| dest.starts_with("arn:") && dest.contains(":lambda:"));
        let Some(target) = target else {
            return Err(ApiError::InvalidParameterValue(format!(
                "The destination ARN {dest} is invalid: Lamina delivers destinations to Lamina functions (arn:aws:lambda:...:function:NAME)."
            )));
        };
        let known = target.region.as_deref() == Some(state.config.region.as_str())
            && target.account_id.as_deref() == Some(r.entry.account_id.as_str())
            && state
                .catalog
                .function(&r.entry.account_id, &target.name)
                .is_some();
        if !known {
            return Err(ApiError::InvalidParameterValue(format!(
                "The destination ARN {dest} is invalid."
            )));
        }
        if target.name == r.entry.name {
            return Err(ApiError::InvalidParameterValue(
                "You can't specify the function as a destination for itself.".into(),
            ));
        }
    }
    if c == EventInvokeConfig::default() {
        return Err(nothing_configured());
    }
    Ok(c)
}

async fn save_event_config(
    state: &AppState,
    caller: &Caller,
    r: &Resolved,
    config: EventInvokeConfig,
) -> Result<Json<Value>, ApiError> {
    let record = EventInvokeRecord {
        qualifier: event_qualifier(r),
        config,
        last_modified_ms: chrono::Utc::now().timestamp_millis(),
    };
    state
        .catalog
        .put_setting(&caller.account_id, &r.entry.name, record.clone())
        .await
        .map_err(ApiError::service)?;
    Ok(Json(crate::wire::event_invoke_configuration(
        state, &r.entry, &record,
    )))
}

pub async fn put_event_config(
    State(state): State<AppState>,
    caller: Caller,
    Path(name): Path<String>,
    Query(q): Query<QualifierQuery>,
    body: Bytes,
) -> Result<Json<Value>, ApiError> {
    let input: EventConfigInput = parse_body(&body)?;
    if nothing_to_configure(&input) {
        return Err(nothing_configured());
    }
    let r = event_config_target(&state, &caller, &name, q.qualifier.as_deref())?;
    let config = check_event_config(&state, &r, input, EventInvokeConfig::default())?;
    save_event_config(&state, &caller, &r, config).await
}

fn no_event_config(state: &AppState, r: &Resolved) -> ApiError {
    ApiError::ResourceNotFound(format!(
        "The function {} doesn't have an EventInvokeConfig",
        state
            .arns
            .qualified(&r.entry.account_id, &r.entry.name, &event_qualifier(r))
    ))
}

pub async fn update_event_config(
    State(state): State<AppState>,
    caller: Caller,
    Path(name): Path<String>,
    Query(q): Query<QualifierQuery>,
    body: Bytes,
) -> Result<Json<Value>, ApiError> {
    let input: EventConfigInput = parse_body(&body)?;
    if nothing_to_configure(&input) {
        return Err(nothing_configured());
    }
    let r = event_config_target(&state, &caller, &name, q.qualifier.as_deref())?;
    let base = r
        .entry
        .event_configs
        .get(&event_qualifier(&r))
        .map(|e| e.config.clone())
        .ok_or_else(|| no_event_config(&state, &r))?;
    let config = check_event_config(&state, &r, input, base)?;
    save_event_config(&state, &caller, &r, config).await
}

pub async fn get_event_config(
    State(state): State<AppState>,
    caller: Caller,
    Path(name): Path<String>,
    Query(q): Query<QualifierQuery>,
) -> Result<Json<Value>, ApiError> {
    let r = event_config_lookup(&state, &caller, &name, q.qualifier.as_deref())?;
    let record = r
        .entry
        .event_configs
        .get(&event_qualifier(&r))
        .ok_or_else(|| no_event_config(&state, &r))?;
    Ok(Json(crate::wire::event_invoke_configuration(
        &state, &r.entry, record,
    )))
}

pub async fn delete_event_config(
    State(state): State<AppState>,
    caller: Caller,
    Path(name): Path<String>,
    Query(q): Query<QualifierQuery>,
) -> Result<StatusCode, ApiError> {
    let r = event_config_lookup(&state, &caller, &name, q.qualifier.as_deref())?;
    state
        .catalog
        .delete_setting::<store::EventInvokeRecord>(
            &caller.account_id,
            &r.entry.name,
            &event_qualifier(&r),
        )
        .await
        .map_err(|e| match e {
            CatalogError::NotFound => no_event_config(&state, &r),
            other => ApiError::service(other),
        })?;
    Ok(StatusCode::NO_CONTENT)
}

#[derive(Debug, Deserialize)]
pub struct ListQuery {
    #[serde(rename = "Marker")]
    marker: Option<String>,
    #[serde(rename = "MaxItems")]
    max_items: Option<usize>,
}

pub async fn list_event_configs(
    State(state): State<AppState>,
    caller: Caller,
    Path(name): Path<String>,
    Query(q): Query<ListQuery>,
) -> Result<Json<Value>, ApiError> {
    let r = state
        .resolve(&caller.account_id, &name, None)
        .map_err(|e| match e {
            ApiError::ResourceNotFound(_) => {
                ApiError::ResourceNotFound("The function doesn't exist.".into())
            }
            other => other,
        })?;
    let items: Vec<Value> = r
        .entry
        .event_configs
        .values()
        .map(|e| crate::wire::event_invoke_configuration(&state, &r.entry, e))
        .collect();
    let (configs, next) = page(items, q.marker.as_deref(), q.max_items)?;
    let mut body = json!({ "FunctionEventInvokeConfigs": configs });
    if let (Some(next), Some(obj)) = (next, body.as_object_mut()) {
        obj.insert("NextMarker".into(), Value::String(next));
    }
    Ok(Json(body))
}

// ---- resource policy ---------------------------------------------------------------------

#[derive(Debug, Deserialize)]
#[serde(rename_all = "PascalCase")]
struct PermissionInput {
    statement_id: String,
    action: String,
    principal: String,
    source_arn: Option<String>,
    source_account: Option<String>,
    function_url_auth_type: Option<String>,
    revision_id: Option<String>,
}

fn policy_qualifier(r: &Resolved) -> String {
    r.qualifier.clone().unwrap_or_default()
}

/// The revision a policy change is checked against: the alias's, the version's, or
/// $LATEST's.
fn policy_revision(r: &Resolved, version: &store::VersionRecord) -> String {
    match r.qualifier.as_deref().and_then(|q| r.entry.aliases.get(q)) {
        Some(alias) => alias.revision_id.clone(),
        None => version.revision_id.clone(),
    }
}

fn valid_statement_id(sid: &str) -> bool {
    !sid.is_empty()
        && sid
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_')
}

pub async fn add_permission(
    State(state): State<AppState>,
    caller: Caller,
    Path(name): Path<String>,
    Query(q): Query<QualifierQuery>,
    body: Bytes,
) -> Result<Response, ApiError> {
    let req: PermissionInput = parse_body(&body)?;
    let r = state.resolve(&caller.account_id, &name, q.qualifier.as_deref())?;
    if r.qualifier.as_deref() == Some(protocol::names::LATEST) {
        return Err(ApiError::InvalidParameterValue(
            "We currently do not support adding policies for $LATEST.".into(),
        ));
    }
    let version = state.version_for_setting(&r)?;
    if let Some(rev) = &req.revision_id
        && *rev != policy_revision(&r, &version)
    {
        return Err(ApiError::PreconditionFailed(
            "The Revision Id provided does not match the latest Revision Id. Call the GetPolicy API to retrieve the latest Revision Id".into(),
        ));
    }
    if !valid_statement_id(&req.statement_id) {
        return Err(ApiError::Validation(format!(
            "1 validation error detected: Value '{}' at 'statementId' failed to satisfy constraint: Member must satisfy regular expression pattern: ([a-zA-Z0-9-_]+)",
            req.statement_id
        )));
    }
    let valid_action = matches!(
        req.action.as_str(),
        "lambda:InvokeFunction" | "lambda:InvokeFunctionUrl" | "lambda:*" | "lambda:GetFunction"
    );
    if !valid_action {
        return Err(ApiError::InvalidParameterValue(format!(
            "The provided action {} is not supported by Lamina; use lambda:InvokeFunction or lambda:InvokeFunctionUrl.",
            req.action
        )));
    }
    let resource = match &r.qualifier {
        Some(qual) => state
            .arns
            .qualified(&r.entry.account_id, &r.entry.name, qual),
        None => state.arns.function(&r.entry.account_id, &r.entry.name),
    };
    let principal =
        if req.principal.len() == 12 && req.principal.bytes().all(|b| b.is_ascii_digit()) {
            json!({ "AWS": format!("arn:aws:iam::{}:root", req.principal) })
        } else if req.principal == "*" {
            json!("*")
        } else if req.principal.starts_with("arn:") {
            json!({ "AWS": req.principal })
        } else {
            json!({ "Service": req.principal })
        };
    let mut statement = json!({
        "Sid": req.statement_id,
        "Effect": "Allow",
        "Principal": principal,
        "Action": req.action,
        "Resource": resource,
    });
    let mut conditions = serde_json::Map::new();
    if let Some(arn) = &req.source_arn {
        conditions.insert("ArnLike".into(), json!({ "AWS:SourceArn": arn }));
    }
    if let Some(acct) = &req.source_account {
        conditions.insert("StringEquals".into(), json!({ "AWS:SourceAccount": acct }));
    }
    if let Some(auth) = &req.function_url_auth_type {
        conditions.insert(
            "StringEquals".into(),
            json!({ "lambda:FunctionUrlAuthType": auth }),
        );
    }
    if !conditions.is_empty()
        && let Some(obj) = statement.as_object_mut()
    {
        obj.insert("Condition".into(), Value::Object(conditions));
    }
    state
        .catalog
        .add_statement(
            &caller.account_id,
            &r.entry.name,
            PolicyStatement {
                qualifier: policy_qualifier(&r),
                statement_id: req.statement_id.clone(),
                statement: statement.clone(),
            },
        )
        .await
        .map_err(|e| match e {
            CatalogError::StatementExists => ApiError::ResourceConflict(format!(
                "The statement id ({}) provided already exists. Please provide a new statement id, or remove the existing statement.",
                req.statement_id
            )),
            other => ApiError::service(other),
        })?;
    Ok((
        StatusCode::CREATED,
        Json(json!({ "Statement": statement.to_string() })),
    )
        .into_response())
}

/// GetPolicy's answer for a function, version or alias without a policy (or without
/// the function at all).
fn no_policy() -> ApiError {
    ApiError::ResourceNotFound("The resource you requested does not exist.".into())
}

pub async fn get_policy(
    State(state): State<AppState>,
    caller: Caller,
    Path(name): Path<String>,
    Query(q): Query<QualifierQuery>,
) -> Result<Json<Value>, ApiError> {
    let r = state
        .resolve(&caller.account_id, &name, q.qualifier.as_deref())
        .map_err(|e| match e {
            ApiError::ResourceNotFound(_) => no_policy(),
            other => other,
        })?;
    let version = state.version_for_read(&r).map_err(|_| no_policy())?;
    let qualifier = policy_qualifier(&r);
    let statements: Vec<&Value> = r
        .entry
        .policy
        .iter()
        .filter(|s| s.qualifier == qualifier)
        .map(|s| &s.statement)
        .collect();
    if statements.is_empty() {
        return Err(no_policy());
    }
    let policy = json!({
        "Version": "2012-10-17",
        "Id": "default",
        "Statement": statements,
    });
    Ok(Json(json!({
        "Policy": policy.to_string(),
        "RevisionId": policy_revision(&r, &version),
    })))
}

pub async fn remove_permission(
    State(state): State<AppState>,
    caller: Caller,
    Path((name, statement_id)): Path<(String, String)>,
    Query(q): Query<QualifierQuery>,
) -> Result<StatusCode, ApiError> {
    let r = state
        .resolve(&caller.account_id, &name, q.qualifier.as_deref())
        .map_err(|e| match (e, protocol::names::FunctionRef::parse(&name)) {
            (ApiError::ResourceNotFound(_), Ok(f))
                if f.region
                    .as_deref()
                    .is_none_or(|region| region == state.config.region) =>
            {
                ApiError::ResourceNotFound(format!(
                    "No policy found for: {}",
                    state.arns.function(&caller.account_id, &f.name)
                ))
            }
            (other, _) => other,
        })?;
    state.version_for_setting(&r)?;
    let qualifier = policy_qualifier(&r);
    if !r.entry.policy.iter().any(|s| s.qualifier == qualifier) {
        return Err(ApiError::ResourceNotFound(
            "No policy is associated with the given resource.".into(),
        ));
    }
    state
        .catalog
        .remove_statement(&caller.account_id, &r.entry.name, &qualifier, &statement_id)
        .await
        .map_err(|e| match e {
            CatalogError::StatementNotFound => ApiError::ResourceNotFound(format!(
                "Statement {statement_id} is not found in resource policy."
            )),
            other => ApiError::service(other),
        })?;
    Ok(StatusCode::NO_CONTENT)
}

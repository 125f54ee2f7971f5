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
use store::{CatalogError, EventInvokeConfig, EventInvokeRecord, PolicyStatement, ProvisionedRecord};

use super::functions::page;
use super::{Caller, QualifierQuery, parse_body, scheduler_key};
use crate::error::ApiError;
use crate::state::{AppState, Resolved};
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
    let r = state.resolve(&caller.account_id, &name, None)?;
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
    let r = state.resolve(&caller.account_id, &name, None)?;
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
    let r = state.resolve(&caller.account_id, &name, None)?;
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

/// The version a provisioned-concurrency qualifier pins: a number or an alias (whose
/// primary version is provisioned), never `$LATEST`.
fn provisioned_target(state: &AppState, r: &Resolved) -> Result<(String, std::sync::Arc<store::VersionRecord>), ApiError> {
    let q = r.qualifier.clone().ok_or_else(|| {
        ApiError::Validation(
            "1 validation error detected: Value null at 'qualifier' failed to satisfy constraint: Member must not be null".into(),
        )
    })?;
    if q == protocol::names::LATEST {
        return Err(ApiError::InvalidParameterValue(
            "Provisioned Concurrency Configs cannot be applied to unpublished function versions."
                .into(),
        ));
    }
    let version = state.version_for_read(r)?;
    Ok((q, version))
}

/// Pool of the version a provisioned qualifier pins, registered with the scheduler.
fn provisioned_pool(state: &AppState, r: &Resolved, version: &store::VersionRecord) -> scheduler::PoolId {
    let spec = state.catalog.spec(&r.entry, version);
    let function = scheduler::FunctionKey::new(&r.entry.account_id, &r.entry.name);
    state
        .scheduler
        .pool_for(&scheduler_key(&r.entry, version), &function, &spec)
}

pub fn provisioned_body(state: &AppState, r: &Resolved, record: &ProvisionedRecord, version: &store::VersionRecord) -> Value {
    let pool = provisioned_pool(state, r, version);
    let ready = state.scheduler.provisioned_ready(pool).min(record.requested);
    let status = if ready >= record.requested { "READY" } else { "IN_PROGRESS" };
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
    let (qualifier, version) = provisioned_target(&state, &r)?;
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
    let ceiling = r
        .entry
        .reserved_concurrency
        .unwrap_or_else(|| state.scheduler.unreserved(&caller.account_id).saturating_sub(state.scheduler.limits().min_unreserved));
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
        .put_provisioned(&caller.account_id, &r.entry.name, record.clone())
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
    let (qualifier, version) = provisioned_target(&state, &r)?;
    let record = r.entry.provisioned.get(&qualifier).ok_or_else(no_provisioned)?;
    Ok(Json(provisioned_body(&state, &r, record, &version)))
}

pub async fn delete_provisioned(
    State(state): State<AppState>,
    caller: Caller,
    Path(name): Path<String>,
    Query(q): Query<QualifierQuery>,
) -> Result<StatusCode, ApiError> {
    let r = state.resolve(&caller.account_id, &name, q.qualifier.as_deref())?;
    let (qualifier, version) = provisioned_target(&state, &r)?;
    if !r.entry.provisioned.contains_key(&qualifier) {
        return Err(no_provisioned());
    }
    state
        .catalog
        .delete_provisioned(&caller.account_id, &r.entry.name, &qualifier)
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

fn tag_target(state: &AppState, caller: &Caller, resource: &str) -> Result<Resolved, ApiError> {
    let parsed = protocol::names::FunctionRef::parse_field(resource, "resource")
        .map_err(|e| ApiError::Validation(e.to_string()))?;
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

fn check_event_config(
    state: &AppState,
    r: &Resolved,
    input: EventConfigInput,
    base: EventInvokeConfig,
) -> Result<EventInvokeConfig, ApiError> {
    let mut c = base;
    if let Some(n) = input.maximum_retry_attempts {
        if !(0..=2).contains(&n) {
            return Err(ApiError::Validation(format!(
                "1 validation error detected: Value '{n}' at 'maximumRetryAttempts' failed to satisfy constraint: Member must have value less than or equal to 2"
            )));
        }
        c.maximum_retry_attempts = Some(n as u32);
    }
    if let Some(n) = input.maximum_event_age_in_seconds {
        if !(60..=21_600).contains(&n) {
            return Err(ApiError::Validation(format!(
                "1 validation error detected: Value '{n}' at 'maximumEventAgeInSeconds' failed to satisfy constraint: Member must have value between 60 and 21600"
            )));
        }
        c.maximum_event_age_in_seconds = Some(n as u32);
    }
    if let Some(d) = input.destination_config {
        if let Some(s) = d.on_success {
            c.on_success = s.destination.filter(|x| !x.is_empty());
        }
        if let Some(f) = d.on_failure {
            c.on_failure = f.destination.filter(|x| !x.is_empty());
        }
    }
    let own = state.arns.function(&r.entry.account_id, &r.entry.name);
    for dest in [&c.on_success, &c.on_failure].into_iter().flatten() {
        let parsed = protocol::names::FunctionRef::parse(dest).ok();
        let is_function = dest.starts_with("arn:") && dest.contains(":lambda:") && parsed.is_some();
        if !is_function {
            return Err(ApiError::InvalidParameterValue(format!(
                "The destination ARN {dest} is invalid: Lamina delivers destinations to Lamina functions (arn:aws:lambda:...:function:NAME)."
            )));
        }
        if dest.trim_end_matches(":$LATEST") == own {
            return Err(ApiError::InvalidParameterValue(
                "You can't specify the function as a destination for itself.".into(),
            ));
        }
    }
    if c == EventInvokeConfig::default() {
        return Err(ApiError::InvalidParameterValue(
            "You must specify at least one of error handling or destination setting.".into(),
        ));
    }
    Ok(c)
}

async fn save_event_config(
    state: &AppState,
    caller: &Caller,
    r: &Resolved,
    config: EventInvokeConfig,
) -> Result<Json<Value>, ApiError> {
    state.version_for_read(r)?;
    let record = EventInvokeRecord {
        qualifier: event_qualifier(r),
        config,
        last_modified_ms: chrono::Utc::now().timestamp_millis(),
    };
    state
        .catalog
        .put_event_config(&caller.account_id, &r.entry.name, record.clone())
        .await
        .map_err(ApiError::service)?;
    Ok(Json(crate::wire::event_invoke_configuration(state, &r.entry, &record)))
}

pub async fn put_event_config(
    State(state): State<AppState>,
    caller: Caller,
    Path(name): Path<String>,
    Query(q): Query<QualifierQuery>,
    body: Bytes,
) -> Result<Json<Value>, ApiError> {
    let input: EventConfigInput = parse_body(&body)?;
    let r = state.resolve(&caller.account_id, &name, q.qualifier.as_deref())?;
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
    let r = state.resolve(&caller.account_id, &name, q.qualifier.as_deref())?;
    let base = r
        .entry
        .event_configs
        .get(&event_qualifier(&r))
        .map(|e| e.config.clone())
        .unwrap_or_default();
    let config = check_event_config(&state, &r, input, base)?;
    save_event_config(&state, &caller, &r, config).await
}

pub async fn get_event_config(
    State(state): State<AppState>,
    caller: Caller,
    Path(name): Path<String>,
    Query(q): Query<QualifierQuery>,
) -> Result<Json<Value>, ApiError> {
    let r = state.resolve(&caller.account_id, &name, q.qualifier.as_deref())?;
    let record = r
        .entry
        .event_configs
        .get(&event_qualifier(&r))
        .ok_or_else(|| no_event_config(&state, &r))?;
    Ok(Json(crate::wire::event_invoke_configuration(&state, &r.entry, record)))
}

pub async fn delete_event_config(
    State(state): State<AppState>,
    caller: Caller,
    Path(name): Path<String>,
    Query(q): Query<QualifierQuery>,
) -> Result<StatusCode, ApiError> {
    let r = state.resolve(&caller.account_id, &name, q.qualifier.as_deref())?;
    state
        .catalog
        .delete_event_config(&caller.account_id, &r.entry.name, &event_qualifier(&r))
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
    let r = state.resolve(&caller.account_id, &name, None)?;
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

pub async fn add_permission(
    State(state): State<AppState>,
    caller: Caller,
    Path(name): Path<String>,
    Query(q): Query<QualifierQuery>,
    body: Bytes,
) -> Result<Response, ApiError> {
    let req: PermissionInput = parse_body(&body)?;
    let r = state.resolve(&caller.account_id, &name, q.qualifier.as_deref())?;
    if r.qualifier.is_some() {
        state.version_for_read(&r)?;
    }
    if let Some(rev) = &req.revision_id
        && *rev != r.entry.latest.revision_id
    {
        return Err(ApiError::PreconditionFailed(
            "The Revision Id provided does not match the latest Revision Id. Call the GetFunction/GetAlias API to retrieve the latest Revision Id".into(),
        ));
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
        Some(qual) => state.arns.qualified(&r.entry.account_id, &r.entry.name, qual),
        None => state.arns.function(&r.entry.account_id, &r.entry.name),
    };
    let principal = if req.principal.len() == 12 && req.principal.bytes().all(|b| b.is_ascii_digit()) {
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

fn no_policy() -> ApiError {
    ApiError::ResourceNotFound("No policy is associated with the given resource.".into())
}

pub async fn get_policy(
    State(state): State<AppState>,
    caller: Caller,
    Path(name): Path<String>,
    Query(q): Query<QualifierQuery>,
) -> Result<Json<Value>, ApiError> {
    let r = state.resolve(&caller.account_id, &name, q.qualifier.as_deref())?;
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
        "RevisionId": r.entry.latest.revision_id,
    })))
}

pub async fn remove_permission(
    State(state): State<AppState>,
    caller: Caller,
    Path((name, statement_id)): Path<(String, String)>,
    Query(q): Query<QualifierQuery>,
) -> Result<StatusCode, ApiError> {
    let r = state.resolve(&caller.account_id, &name, q.qualifier.as_deref())?;
    state
        .catalog
        .remove_statement(&caller.account_id, &r.entry.name, &policy_qualifier(&r), &statement_id)
        .await
        .map_err(|e| match e {
            CatalogError::StatementNotFound => ApiError::ResourceNotFound(format!(
                "Statement {statement_id} is not found in resource policy."
            )),
            other => ApiError::service(other),
        })?;
    Ok(StatusCode::NO_CONTENT)
}

//! Event invoke configs (Put, Update, Get, Delete and ListFunctionEventInvokeConfigs):
//! retries, maximum event age and destinations of asynchronous invokes.

use axum::Json;
use axum::extract::{Path, Query, State};
use axum::http::StatusCode;
use bytes::Bytes;
use serde::Deserialize;
use serde_json::Value;
use store::{CatalogError, EventInvokeConfig, EventInvokeRecord};

use super::request::{ListQuery, QualifierQuery, listing, parse_body};
use crate::auth::Caller;
use crate::error::{About, ApiError, catalog};
use crate::state::{AppState, Resolved};
use crate::validate::bounded;

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

fn doesnt_exist() -> ApiError {
    ApiError::ResourceNotFound("The function doesn't exist.".into())
}

/// The function (and version or alias) a Put or Update writes to. Lambda answers a missing
/// one, function or qualifier, with the same sentence.
fn event_config_target(
    state: &AppState,
    caller: &Caller,
    name: &str,
    qualifier: Option<&str>,
) -> Result<Resolved, ApiError> {
    let r = state
        .resolve(&caller.account_id, name, qualifier)
        .map_err(|e| e.when_missing(doesnt_exist))?;
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
        c.maximum_retry_attempts = Some(bounded(n, "maximumRetryAttempts", 0, Some(2))?);
    }
    if let Some(n) = input.maximum_event_age_in_seconds {
        c.maximum_event_age_in_seconds =
            Some(bounded(n, "maximumEventAgeInSeconds", 60, Some(21_600))?);
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
        .map_err(|e| catalog(e, About::arn(&config_arn(state, r))))?;
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

/// The ARN of the version or alias whose config a call is about (`$LATEST` unqualified).
fn config_arn(state: &AppState, r: &Resolved) -> String {
    state
        .arns
        .qualified(&r.entry.account_id, &r.entry.name, &event_qualifier(r))
}

fn no_event_config(state: &AppState, r: &Resolved) -> ApiError {
    ApiError::ResourceNotFound(format!(
        "The function {} doesn't have an EventInvokeConfig",
        config_arn(state, r)
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
            other => catalog(other, About::arn(&config_arn(&state, &r))),
        })?;
    Ok(StatusCode::NO_CONTENT)
}

pub async fn list_event_configs(
    State(state): State<AppState>,
    caller: Caller,
    Path(name): Path<String>,
    Query(q): Query<ListQuery>,
) -> Result<Json<Value>, ApiError> {
    let r = state
        .resolve(&caller.account_id, &name, None)
        .map_err(|e| e.when_missing(doesnt_exist))?;
    let items: Vec<Value> = r
        .entry
        .event_configs
        .values()
        .map(|e| crate::wire::event_invoke_configuration(&state, &r.entry, e))
        .collect();
    Ok(Json(listing(
        "FunctionEventInvokeConfigs",
        items,
        q.marker.as_deref(),
        q.max_items,
    )?))
}

//! Function URL configs: Create, Get, Update, Delete and ListFunctionUrlConfigs. What the
//! URLs answer is `function_urls`.

use axum::Json;
use axum::extract::{Path, Query, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use bytes::Bytes;
use serde::Deserialize;
use serde_json::{Value, json};
use store::{CatalogError, UrlConfigRecord};

use super::request::{ListQuery, QualifierQuery, listing, parse_body};
use crate::auth::Caller;
use crate::error::{About, ApiError, catalog};
use crate::state::{AppState, Resolved};
use crate::wire::url_configuration;

#[derive(Debug, Deserialize)]
#[serde(rename_all = "PascalCase")]
struct UrlInput {
    auth_type: Option<String>,
    cors: Option<Value>,
    invoke_mode: Option<String>,
}

fn url_qualifier(state: &AppState, r: &Resolved) -> Result<String, ApiError> {
    match r.qualifier.as_deref() {
        None => Ok(protocol::names::LATEST.to_owned()),
        // An explicit `$LATEST` fails the model's pattern just like a version number.
        Some(q) if q == protocol::names::LATEST || protocol::names::is_version_number(q) => {
            Err(crate::validate::constraint(
                q,
                "qualifier",
                "Member must satisfy regular expression pattern: ((?!^\\d+$)^[0-9a-zA-Z-_]+$)",
            ))
        }
        Some(q) if r.entry.aliases.contains_key(q) => Ok(q.to_owned()),
        Some(q) => Err(ApiError::ResourceNotFound(format!(
            "Alias not found: {}",
            state.arns.qualified(&r.entry.account_id, &r.entry.name, q)
        ))),
    }
}

fn auth_type(v: Option<&str>) -> Result<String, ApiError> {
    match v {
        Some(a @ ("NONE" | "AWS_IAM")) => Ok(a.to_owned()),
        other => Err(crate::validate::constraint(
            other.unwrap_or("null"),
            "authType",
            "Member must satisfy enum value set: [NONE, AWS_IAM]",
        )),
    }
}

fn invoke_mode(v: Option<&str>) -> Result<String, ApiError> {
    match v.unwrap_or("BUFFERED") {
        "BUFFERED" => Ok("BUFFERED".into()),
        "RESPONSE_STREAM" => Err(ApiError::InvalidParameterValue(
            "InvokeMode RESPONSE_STREAM is not supported; use BUFFERED.".into(),
        )),
        other => Err(crate::validate::constraint(
            other,
            "invokeMode",
            "Member must satisfy enum value set: [RESPONSE_STREAM, BUFFERED]",
        )),
    }
}

fn not_found() -> ApiError {
    ApiError::ResourceNotFound("The resource you requested does not exist.".into())
}

/// Update's and Delete's answer to a catalog refusal: a config or function deleted
/// meanwhile is a missing config, as when it was missing to begin with.
fn refused(state: &AppState, r: &Resolved, e: CatalogError) -> ApiError {
    match e {
        CatalogError::FunctionNotFound => not_found(),
        other => {
            let arn = state.arns.function(&r.entry.account_id, &r.entry.name);
            catalog(other, About::arn(&arn))
        }
    }
}

/// Get, Update and Delete answer a missing function as a missing config.
fn resolve_config(
    state: &AppState,
    caller: &Caller,
    name: &str,
    qualifier: Option<&str>,
) -> Result<Resolved, ApiError> {
    state
        .resolve(&caller.account_id, name, qualifier)
        .map_err(|e| e.when_missing(not_found))
}

/// A URL id: 32 characters of `[a-z0-9]`, as Lambda's.
fn new_url_id() -> String {
    const ALPHABET: &[u8] = b"abcdefghijklmnopqrstuvwxyz0123456789";
    (0..32)
        .map(|_| ALPHABET[rand::random_range(0..ALPHABET.len())] as char)
        .collect()
}

pub async fn create(
    State(state): State<AppState>,
    caller: Caller,
    Path(name): Path<String>,
    Query(q): Query<QualifierQuery>,
    body: Bytes,
) -> Result<Response, ApiError> {
    let req: UrlInput = parse_body(&body)?;
    let r = state.resolve(&caller.account_id, &name, q.qualifier.as_deref())?;
    let qualifier = url_qualifier(&state, &r)?;
    let now = chrono::Utc::now().timestamp_millis();
    let record = UrlConfigRecord {
        url_id: new_url_id(),
        account_id: r.entry.account_id.clone(),
        function_name: r.entry.name.clone(),
        qualifier,
        auth_type: auth_type(req.auth_type.as_deref())?,
        cors: req.cors.unwrap_or_else(|| json!({})),
        invoke_mode: invoke_mode(req.invoke_mode.as_deref())?,
        created_at_ms: now,
        last_modified_ms: now,
    };
    let url = state
        .catalog
        .put_url(&caller.account_id, &r.entry.name, record, true)
        .await
        // Lambda names the unqualified function even for an alias's URL.
        .map_err(|e| {
            let arn = state.arns.function(&r.entry.account_id, &r.entry.name);
            catalog(e, About::arn(&arn))
        })?;
    let mut body = url_configuration(&state, &r.entry, &url);
    if let Some(obj) = body.as_object_mut() {
        // CreateFunctionUrlConfig's output has no LastModifiedTime.
        obj.remove("LastModifiedTime");
    }
    Ok((StatusCode::CREATED, Json(body)).into_response())
}

pub async fn get(
    State(state): State<AppState>,
    caller: Caller,
    Path(name): Path<String>,
    Query(q): Query<QualifierQuery>,
) -> Result<Json<Value>, ApiError> {
    let r = resolve_config(&state, &caller, &name, q.qualifier.as_deref())?;
    let qualifier = url_qualifier(&state, &r)?;
    let url = r.entry.urls.get(&qualifier).ok_or_else(not_found)?;
    Ok(Json(url_configuration(&state, &r.entry, url)))
}

pub async fn update(
    State(state): State<AppState>,
    caller: Caller,
    Path(name): Path<String>,
    Query(q): Query<QualifierQuery>,
    body: Bytes,
) -> Result<Json<Value>, ApiError> {
    let req: UrlInput = parse_body(&body)?;
    let r = resolve_config(&state, &caller, &name, q.qualifier.as_deref())?;
    let qualifier = url_qualifier(&state, &r)?;
    let current = r.entry.urls.get(&qualifier).ok_or_else(not_found)?;
    let mut record = (**current).clone();
    if req.auth_type.is_some() {
        record.auth_type = auth_type(req.auth_type.as_deref())?;
    }
    if let Some(cors) = req.cors {
        record.cors = cors;
    }
    if req.invoke_mode.is_some() {
        record.invoke_mode = invoke_mode(req.invoke_mode.as_deref())?;
    }
    record.last_modified_ms = chrono::Utc::now().timestamp_millis();
    let url = state
        .catalog
        .put_url(&caller.account_id, &r.entry.name, record, false)
        .await
        .map_err(|e| refused(&state, &r, e))?;
    Ok(Json(url_configuration(&state, &r.entry, &url)))
}

pub async fn delete(
    State(state): State<AppState>,
    caller: Caller,
    Path(name): Path<String>,
    Query(q): Query<QualifierQuery>,
) -> Result<StatusCode, ApiError> {
    let r = resolve_config(&state, &caller, &name, q.qualifier.as_deref())?;
    let qualifier = url_qualifier(&state, &r)?;
    state
        .catalog
        .delete_url(&caller.account_id, &r.entry.name, &qualifier)
        .await
        .map_err(|e| refused(&state, &r, e))?;
    Ok(StatusCode::NO_CONTENT)
}

pub async fn list(
    State(state): State<AppState>,
    caller: Caller,
    Path(name): Path<String>,
    Query(q): Query<ListQuery>,
) -> Result<Json<Value>, ApiError> {
    let r = state
        .resolve(&caller.account_id, &name, None)
        .map_err(|e| {
            e.when_missing(|| ApiError::ResourceNotFound("Function does not exist".into()))
        })?;
    let items: Vec<Value> = r
        .entry
        .urls
        .values()
        .map(|u| url_configuration(&state, &r.entry, u))
        .collect();
    Ok(Json(listing(
        "FunctionUrlConfigs",
        items,
        q.marker.as_deref(),
        q.max_items,
    )?))
}

//! Function URL configs (Create/Get/Update/Delete/ListFunctionUrlConfig(s)) and the
//! function URLs themselves: plain HTTP calls mapped to events in API Gateway payload
//! format 2.0 (or served directly by `wasi:http` guests).

use std::net::SocketAddr;
use std::time::SystemTime;

use axum::Json;
use axum::extract::{ConnectInfo, Path, Query, Request, State};
use axum::http::{HeaderName, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use bytes::Bytes;
use http_body_util::BodyExt;
use protocol::http::{HttpRequest, HttpResponse, UrlRequestContext};
use protocol::{GuestKind, InvocationType, MAX_SYNC_PAYLOAD, Outcome, Payload};
use scheduler::InvocationRequest;
use serde::Deserialize;
use serde_json::{Value, json};
use store::{CatalogError, UrlConfigRecord};

use super::functions::page;
use super::invoke::run_sync;
use super::{Caller, QualifierQuery, parse_body};
use crate::error::ApiError;
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
            Err(ApiError::Validation(format!(
                "1 validation error detected: Value '{q}' at 'qualifier' failed to satisfy constraint: Member must satisfy regular expression pattern: ((?!^\\d+$)^[0-9a-zA-Z-_]+$)"
            )))
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
        other => Err(ApiError::Validation(format!(
            "1 validation error detected: Value '{}' at 'authType' failed to satisfy constraint: Member must satisfy enum value set: [NONE, AWS_IAM]",
            other.unwrap_or("null")
        ))),
    }
}

fn invoke_mode(v: Option<&str>) -> Result<String, ApiError> {
    match v.unwrap_or("BUFFERED") {
        "BUFFERED" => Ok("BUFFERED".into()),
        "RESPONSE_STREAM" => Err(ApiError::InvalidParameterValue(
            "InvokeMode RESPONSE_STREAM is not supported; use BUFFERED.".into(),
        )),
        other => Err(ApiError::Validation(format!(
            "1 validation error detected: Value '{other}' at 'invokeMode' failed to satisfy constraint: Member must satisfy enum value set: [RESPONSE_STREAM, BUFFERED]"
        ))),
    }
}

fn not_found() -> ApiError {
    ApiError::ResourceNotFound("The resource you requested does not exist.".into())
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
        .map_err(|e| match e {
            ApiError::ResourceNotFound(_) => not_found(),
            other => other,
        })
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
        .map_err(|e| match e {
            CatalogError::UrlExists => ApiError::ResourceConflict(format!(
                "Failed to create function url config for [functionArn = {}]. Error message:  FunctionUrlConfig exists for this Lambda function",
                state.arns.function(&r.entry.account_id, &r.entry.name)
            )),
            other => ApiError::service(other),
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
        .map_err(|e| match e {
            CatalogError::UrlNotFound => not_found(),
            other => ApiError::service(other),
        })?;
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
        .map_err(|e| match e {
            CatalogError::UrlNotFound => not_found(),
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

pub async fn list(
    State(state): State<AppState>,
    caller: Caller,
    Path(name): Path<String>,
    Query(q): Query<ListQuery>,
) -> Result<Json<Value>, ApiError> {
    let r = state
        .resolve(&caller.account_id, &name, None)
        .map_err(|e| match e {
            ApiError::ResourceNotFound(_) => {
                ApiError::ResourceNotFound("Function does not exist".into())
            }
            other => other,
        })?;
    let items: Vec<Value> = r
        .entry
        .urls
        .values()
        .map(|u| url_configuration(&state, &r.entry, u))
        .collect();
    let (configs, next) = page(items, q.marker.as_deref(), q.max_items)?;
    let mut body = json!({ "FunctionUrlConfigs": configs });
    if let (Some(next), Some(obj)) = (next, body.as_object_mut()) {
        obj.insert("NextMarker".into(), Value::String(next));
    }
    Ok(Json(body))
}

// ---- serving function URLs ---------------------------------------------------------

fn plain(status: StatusCode, body: &'static str) -> Response {
    (status, [("content-type", "application/json")], body).into_response()
}

fn to_response(r: HttpResponse) -> Response {
    let mut resp = Response::new(axum::body::Body::from(r.body));
    *resp.status_mut() = StatusCode::from_u16(r.status).unwrap_or(StatusCode::BAD_GATEWAY);
    for (k, v) in r.headers {
        if let (Ok(k), Ok(v)) = (HeaderName::try_from(k), HeaderValue::try_from(v)) {
            resp.headers_mut().append(k, v);
        }
    }
    resp
}

/// CORS headers from the URL config's `Cors` object.
fn apply_cors(url: &UrlConfigRecord, origin: Option<&str>, resp: &mut Response) {
    let Value::Object(cors) = &url.cors else {
        return;
    };
    let list = |key: &str| -> Vec<String> {
        cors.get(key)
            .and_then(Value::as_array)
            .map(|a| {
                a.iter()
                    .filter_map(Value::as_str)
                    .map(str::to_owned)
                    .collect()
            })
            .unwrap_or_default()
    };
    let origins = list("AllowOrigins");
    let allowed = match origin {
        Some(_) if origins.iter().any(|a| a == "*") => Some("*".to_owned()),
        Some(o) if origins.iter().any(|a| a == o) => Some(o.to_owned()),
        _ => None,
    };
    let Some(allowed) = allowed else {
        return;
    };
    let h = resp.headers_mut();
    let mut set = |name: &'static str, value: String| {
        if let Ok(v) = HeaderValue::from_str(&value) {
            h.insert(name, v);
        }
    };
    set("access-control-allow-origin", allowed);
    for (key, header) in [
        ("AllowMethods", "access-control-allow-methods"),
        ("AllowHeaders", "access-control-allow-headers"),
        ("ExposeHeaders", "access-control-expose-headers"),
    ] {
        let values = list(key);
        if !values.is_empty() {
            set(header, values.join(","));
        }
    }
    if let Some(age) = cors.get("MaxAge").and_then(Value::as_u64) {
        set("access-control-max-age", age.to_string());
    }
    if cors.get("AllowCredentials").and_then(Value::as_bool) == Some(true) {
        set("access-control-allow-credentials", "true".into());
    }
}

/// `/lambda-url/{url_id}/{*path}`: a function URL call.
pub async fn serve(
    State(state): State<AppState>,
    Path(params): Path<Vec<(String, String)>>,
    request: Request,
) -> Response {
    let mut url_id = String::new();
    let mut path = String::from("/");
    for (k, v) in params {
        match k.as_str() {
            "url_id" => url_id = v,
            "path" => path = format!("/{v}"),
            _ => {}
        }
    }
    let source_ip = source_ip(&request);
    serve_url(&state, &url_id, path, source_ip, request).await
}

/// The client's address, when the server recorded it (in-process tests have none).
pub fn source_ip(request: &Request) -> String {
    request
        .extensions()
        .get::<ConnectInfo<SocketAddr>>()
        .map_or_else(|| "127.0.0.1".to_owned(), |c| c.0.ip().to_string())
}

/// An AWS_IAM URL takes requests signed by its own account, or by an account its
/// resource policy grants `lambda:InvokeFunctionUrl`; anyone else is refused.
async fn iam_caller(
    state: &AppState,
    url: &store::UrlConfigRecord,
    parts: &axum::http::request::Parts,
    body: &[u8],
) -> Result<protocol::http::IamCaller, ApiError> {
    let signer = crate::auth::verify(
        &state.keys,
        &state.config.region,
        parts,
        body,
        SystemTime::now(),
    )
    .await?;
    let allowed = signer.account_id == url.account_id
        || state
            .catalog
            .function(&url.account_id, &url.function_name)
            .is_some_and(|f| {
                let qualifier =
                    (url.qualifier != protocol::names::LATEST).then_some(url.qualifier.as_str());
                f.grants_invoke_url(&signer.account_id, qualifier)
            });
    if !allowed {
        return Err(ApiError::AccessDenied);
    }
    Ok(protocol::http::IamCaller {
        access_key: signer.access_key_id,
        account_id: signer.account_id,
    })
}

pub async fn serve_url(
    state: &AppState,
    url_id: &str,
    path: String,
    source_ip: String,
    request: Request,
) -> Response {
    let received_at = SystemTime::now();
    let Some(url) = state.catalog.url(url_id) else {
        return ApiError::AccessDenied.into_response();
    };
    if url.auth_type == "AWS_IAM" && !request.headers().contains_key("authorization") {
        return ApiError::AccessDenied.into_response();
    }
    let origin = request
        .headers()
        .get("origin")
        .and_then(|v| v.to_str().ok())
        .map(str::to_owned);
    if request.method() == axum::http::Method::OPTIONS && origin.is_some() {
        let mut resp = StatusCode::OK.into_response();
        apply_cors(&url, origin.as_deref(), &mut resp);
        return resp;
    }
    let (parts, body) = request.into_parts();
    let body = match http_body_util::Limited::new(body, MAX_SYNC_PAYLOAD)
        .collect()
        .await
    {
        Ok(b) => b.to_bytes(),
        Err(_) => {
            return plain(
                StatusCode::PAYLOAD_TOO_LARGE,
                "{\"Message\":\"Request must be smaller than 6291456 bytes for the InvokeFunction operation\"}",
            );
        }
    };
    let iam_caller = if url.auth_type == "AWS_IAM" {
        match iam_caller(state, &url, &parts, &body).await {
            Ok(c) => Some(c),
            Err(e) => return e.into_response(),
        }
    } else {
        None
    };
    let headers: Vec<(String, String)> = parts
        .headers
        .iter()
        .map(|(k, v)| {
            (
                k.as_str().to_ascii_lowercase(),
                String::from_utf8_lossy(v.as_bytes()).into_owned(),
            )
        })
        .collect();
    let http_request = HttpRequest {
        method: parts.method.as_str().to_owned(),
        path,
        query: parts.uri.query().map(str::to_owned),
        headers,
        body: body.clone(),
        source_ip,
        protocol: format!("{:?}", parts.version),
    };
    let Some(entry) = state.catalog.function(&url.account_id, &url.function_name) else {
        return ApiError::AccessDenied.into_response();
    };
    let resolved = Resolved {
        entry,
        qualifier: (url.qualifier != protocol::names::LATEST).then(|| url.qualifier.clone()),
    };
    // The version is drawn once: the payload's shape depends on its guest kind.
    let version = match state.version_for_invoke(&resolved) {
        Ok(v) => v,
        Err(e) => return e.into_response(),
    };
    // One id for the whole call: the event's requestContext, the invocation (and its
    // ledger row) and the response's x-amzn-RequestId.
    let request_id = uuid::Uuid::new_v4().to_string();
    let payload = if version.config.guest_kind == GuestKind::Http.as_str() {
        Payload::Http(http_request)
    } else {
        let ctx = UrlRequestContext {
            account_id: url.account_id.clone(),
            url_id: url.url_id.clone(),
            domain_name: format!("{}.lambda-url.{}.on.aws", url.url_id, state.config.region),
            request_id: request_id.clone(),
            time_epoch_ms: chrono::Utc::now().timestamp_millis(),
            iam_caller: iam_caller.clone(),
        };
        let event = protocol::http::url_request_to_event(&http_request, &ctx);
        Payload::Event(Bytes::from(event.to_string()))
    };
    // The signer pays nothing but is recorded; an anonymous call is the owner's own.
    let request = InvocationRequest {
        request_id: request_id.clone(),
        payload,
        client_context: None,
        invocation_type: InvocationType::FunctionUrl,
        caller_account_id: iam_caller.map_or_else(|| url.account_id.clone(), |c| c.account_id),
        received_at,
        request_bytes: body.len() as u64,
        attempt: 1,
    };
    let result = run_sync(state, &resolved, &version, request).await;
    let mut resp = match result {
        Err(ApiError::TooManyRequests { .. }) => plain(
            StatusCode::TOO_MANY_REQUESTS,
            "{\"Message\":\"Rate Exceeded.\"}",
        ),
        Err(e) => e.into_response(),
        Ok(r) if r.outcome != Outcome::Success => {
            (StatusCode::BAD_GATEWAY, "Internal Server Error").into_response()
        }
        Ok(r) => match r.response {
            protocol::Response::Http(h) => to_response(h),
            protocol::Response::Event(b) => {
                to_response(protocol::http::event_result_to_url_response(&b))
            }
        },
    };
    apply_cors(&url, origin.as_deref(), &mut resp);
    if let Ok(v) = HeaderValue::from_str(&request_id) {
        resp.headers_mut().insert("x-amzn-RequestId", v);
    }
    resp
}

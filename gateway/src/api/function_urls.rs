//! Serving function URLs (`/lambda-url/{url_id}/...`, or a `<url-id>.lambda-url.` host):
//! a plain HTTP call becomes an event in API Gateway payload format 2.0, or is handed as
//! is to a `wasi:http` guest; CORS from the URL's config; AWS_IAM URLs check the caller's
//! signature and the function's resource policy.

use std::net::SocketAddr;
use std::time::{Instant, SystemTime};

use axum::extract::{ConnectInfo, Path, Request, State};
use axum::http::{HeaderName, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use bytes::Bytes;
use http_body_util::BodyExt;
use protocol::http::{HttpRequest, HttpResponse, UrlRequestContext};
use protocol::{GuestKind, InvocationType, MAX_SYNC_PAYLOAD, Outcome, Payload};
use scheduler::InvocationRequest;
use serde_json::Value;
use store::UrlConfigRecord;

use super::invoke::run_sync;
use super::request::MAX_INVOKE_READ;
use crate::error::ApiError;
use crate::forwarding::{ForwardedRequest, Routed, mark_served_in};
use crate::state::{AppState, Resolved};

fn plain(status: StatusCode, body: String) -> Response {
    (status, [("content-type", "application/json")], body).into_response()
}

/// Lambda's answer to a body over [`MAX_SYNC_PAYLOAD`], the limit a function URL enforces.
/// The error-type header also tells the edge's 413 shaping, which knows only the API's
/// paths, that this answer is already Lambda's.
fn too_large() -> Response {
    let mut resp = plain(
        StatusCode::PAYLOAD_TOO_LARGE,
        serde_json::json!({
            "Message": format!(
                "Request must be smaller than {MAX_SYNC_PAYLOAD} bytes for the InvokeFunction operation"
            )
        })
        .to_string(),
    );
    resp.headers_mut().insert(
        "x-amzn-ErrorType",
        HeaderValue::from_static("RequestEntityTooLargeException"),
    );
    resp
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
    let started = Instant::now();
    // A request another node forwarded carries the client's address, vouched for.
    let source_ip = state
        .forwarder
        .vouched_source_ip(request.headers())
        .unwrap_or(source_ip);
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
    // Read past the limit, as Invoke does, so that a client a little over it gets the 413
    // rather than a connection reset over the body left unread.
    let body = match http_body_util::Limited::new(body, MAX_INVOKE_READ)
        .collect()
        .await
    {
        Ok(b) => b.to_bytes(),
        Err(_) => return too_large(),
    };
    if body.len() > MAX_SYNC_PAYLOAD {
        return too_large();
    }
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
        source_ip: source_ip.clone(),
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
    let hop = ForwardedRequest {
        method: &parts.method,
        uri: &parts.uri,
        headers: &parts.headers,
        body: &body,
        source_ip: Some(&source_ip),
    };
    let forwarded_here = match state.forwarder.route(state, &resolved, &version, hop).await {
        Ok(Routed::There(answer)) => return answer,
        Ok(Routed::Here { forwarded }) => forwarded,
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
    if let Ok(init) = result.as_ref().map(|r| r.init_duration)
        && let Some(init) = init
    {
        state.forwarder.cold_start(&resolved, init);
    }
    let mut resp = match result {
        Err(ApiError::TooManyRequests { .. }) => plain(
            StatusCode::TOO_MANY_REQUESTS,
            "{\"Message\":\"Rate Exceeded.\"}".into(),
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
    if forwarded_here {
        mark_served_in(&mut resp, started.elapsed());
    }
    resp
}

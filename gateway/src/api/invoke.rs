//! Invoke (RequestResponse, Event, DryRun, log tail) and the deprecated InvokeAsync.

use std::time::{Instant, SystemTime};

use axum::extract::{OriginalUri, Path, Query, State};
use axum::http::{HeaderMap, HeaderValue, Method, StatusCode};
use axum::response::{IntoResponse, Response};
use base64::Engine as _;
use bytes::Bytes;
use protocol::{
    InvocationResult, InvocationType, MAX_ASYNC_PAYLOAD, MAX_SYNC_PAYLOAD, Outcome, Payload,
};
use scheduler::{InvocationRequest, InvokeError, Target};
use store::VersionRecord;

use super::request::QualifierQuery;
use crate::auth::Caller;
use crate::error::ApiError;
use crate::forwarding::{ForwardedRequest, Routed, mark_served_in};
use crate::state::{AppState, Resolved};

const B64: base64::engine::GeneralPurpose = base64::engine::general_purpose::STANDARD;

/// Lambda's answer to a throttled invocation.
pub fn throttled(e: &InvokeError) -> ApiError {
    match e {
        InvokeError::Throttled(reason) => ApiError::TooManyRequests {
            reason: reason.as_str(),
            message: "Rate Exceeded.".into(),
            retry_after_seconds: 1,
        },
        InvokeError::NoCapacity => ApiError::TooManyRequests {
            reason: "ConcurrentInvocationLimitExceeded",
            message: "Rate Exceeded.".into(),
            retry_after_seconds: 1,
        },
        InvokeError::Gone => ApiError::ResourceNotFound(
            "The function version was deleted while the invocation was starting.".into(),
        ),
        InvokeError::Platform(m) => ApiError::service(m),
    }
}

/// An Invoke payload must be JSON in UTF-8; an empty one is `{}`.
pub fn event_payload(body: Bytes) -> Result<Bytes, ApiError> {
    if body.is_empty() || body.iter().all(u8::is_ascii_whitespace) {
        return Ok(Bytes::from_static(b"{}"));
    }
    let reject = |detail: String| {
        ApiError::InvalidRequestContent(format!(
            "Could not parse request body into json: Could not parse payload into json: {detail}"
        ))
    };
    // Checked first: serde skips the strings it ignores without validating their bytes.
    let text = std::str::from_utf8(&body).map_err(|bad| reject(invalid_utf8(&body, &bad)))?;
    serde_json::from_str::<serde::de::IgnoredAny>(text).map_err(|e| reject(e.to_string()))?;
    Ok(body)
}

/// Words an encoding error as Lambda's JSON parser does: a stray continuation byte is an
/// invalid start byte, a broken sequence an invalid middle byte.
fn invalid_utf8(body: &[u8], error: &std::str::Utf8Error) -> String {
    let at = error.valid_up_to();
    let first = body.get(at).copied().unwrap_or_default();
    if (0x80..0xC0).contains(&first) || first >= 0xF8 {
        return format!("Invalid UTF-8 start byte 0x{first:02x}");
    }
    let middle = body.get(at + 1).copied().unwrap_or_default();
    format!("Invalid UTF-8 middle byte 0x{middle:02x}")
}

fn client_context(headers: &HeaderMap) -> Result<Option<String>, ApiError> {
    let Some(raw) = headers.get("x-amz-client-context") else {
        return Ok(None);
    };
    let bad = || {
        ApiError::InvalidRequestContent(
            "Client context must be a valid Base64-encoded JSON object.".into(),
        )
    };
    let raw = raw.to_str().map_err(|_| bad())?;
    if raw.len() > 3583 {
        return Err(ApiError::InvalidParameterValue(
            "Client context must be at most 3583 bytes (base64).".into(),
        ));
    }
    let decoded = B64.decode(raw).map_err(|_| bad())?;
    let text = String::from_utf8(decoded).map_err(|_| bad())?;
    serde_json::from_str::<serde_json::Map<String, serde_json::Value>>(&text).map_err(|_| bad())?;
    Ok(Some(text))
}

fn header<'a>(headers: &'a HeaderMap, name: &str) -> Option<&'a str> {
    headers.get(name).and_then(|v| v.to_str().ok())
}

pub async fn invoke(
    State(state): State<AppState>,
    caller: Caller,
    Path(name): Path<String>,
    Query(q): Query<QualifierQuery>,
    OriginalUri(uri): OriginalUri,
    headers: HeaderMap,
    body: Bytes,
) -> Result<Response, ApiError> {
    let received_at = SystemTime::now();
    let started = Instant::now();
    let invocation_type = header(&headers, "x-amz-invocation-type").unwrap_or("RequestResponse");
    let tail = match header(&headers, "x-amz-log-type").unwrap_or("None") {
        "Tail" => true,
        "None" => false,
        other => {
            return Err(crate::validate::constraint(
                other,
                "logType",
                "Member must satisfy enum value set: [Tail, None]",
            ));
        }
    };
    let r = state.resolve_for_invoke(&caller.account_id, &name, q.qualifier.as_deref())?;
    match invocation_type {
        "RequestResponse" => {
            if body.len() > MAX_SYNC_PAYLOAD {
                return Err(ApiError::RequestTooLarge(format!(
                    "Request must be smaller than {MAX_SYNC_PAYLOAD} bytes for the InvokeFunction operation"
                )));
            }
            let request_bytes = body.len() as u64;
            let payload = event_payload(body.clone())?;
            let client_context = client_context(&headers)?;
            let version = state.version_for_invoke(&r)?;
            let hop = ForwardedRequest {
                // Invoke is only ever a POST.
                method: &Method::POST,
                uri: &uri,
                headers: &headers,
                body: &body,
                source_ip: None,
            };
            let forwarded_here = match state.forwarder.route(&state, &r, &version, hop).await? {
                Routed::There(answer) => return Ok(answer),
                Routed::Here { forwarded } => forwarded,
            };
            let request = InvocationRequest {
                request_id: uuid::Uuid::new_v4().to_string(),
                payload: Payload::Event(payload),
                client_context,
                invocation_type: InvocationType::RequestResponse,
                caller_account_id: caller.account_id,
                received_at,
                request_bytes,
                attempt: 1,
            };
            let result = run_sync(&state, &r, &version, request).await?;
            if let Some(init) = result.init_duration {
                state.forwarder.cold_start(&r, init);
            }
            let mut answer = sync_response(result, tail);
            if forwarded_here {
                mark_served_in(&mut answer, started.elapsed());
            }
            Ok(answer)
        }
        "Event" => {
            if body.len() > MAX_ASYNC_PAYLOAD {
                return Err(ApiError::RequestTooLarge(format!(
                    "{} byte payload is too large for the Event invocation type (limit {MAX_ASYNC_PAYLOAD} bytes)",
                    body.len()
                )));
            }
            let payload = event_payload(body)?;
            let request_id = enqueue(&state, &caller, &r, payload).await?;
            let mut resp = StatusCode::ACCEPTED.into_response();
            set_request_id(&mut resp, &request_id);
            Ok(resp)
        }
        "DryRun" => {
            state.version_for_read(&r)?;
            let mut resp = StatusCode::NO_CONTENT.into_response();
            set_request_id(&mut resp, &uuid::Uuid::new_v4().to_string());
            Ok(resp)
        }
        other => Err(crate::validate::constraint(
            other,
            "invocationType",
            "Member must satisfy enum value set: [Event, RequestResponse, DryRun]",
        )),
    }
}

fn set_request_id(resp: &mut Response, request_id: &str) {
    if let Ok(v) = HeaderValue::from_str(request_id) {
        resp.headers_mut().insert("x-amzn-RequestId", v);
    }
}

/// Stores an Event invocation durably; returns its request id.
pub async fn enqueue(
    state: &AppState,
    caller: &Caller,
    r: &Resolved,
    payload: Bytes,
) -> Result<String, ApiError> {
    // Validates the qualifier now: an unknown version or alias is a 404 at enqueue time.
    state.version_for_read(r)?;
    let request_id = uuid::Uuid::new_v4().to_string();
    let event = store::AsyncEvent::new(
        request_id.clone(),
        &r.entry.account_id,
        &caller.account_id,
        &r.entry.name,
        r.qualifier.as_deref().unwrap_or(protocol::names::LATEST),
        payload.to_vec(),
    );
    state
        .queue
        .enqueue(event)
        .await
        .map_err(ApiError::service)?;
    state.async_notify.notify_one();
    Ok(request_id)
}

/// Runs a synchronous invocation of `version`, the one version chosen for this call
/// (an alias's weighted draw happens once, before the payload is shaped for its guest).
pub async fn run_sync(
    state: &AppState,
    r: &Resolved,
    version: &VersionRecord,
    request: InvocationRequest,
) -> Result<InvocationResult, ApiError> {
    let target = Target {
        entry: &r.entry,
        version,
        qualifier: r.qualifier.as_deref(),
    };
    let result = state
        .invoker
        .invoke(target, request)
        .await
        .map_err(|e| throttled(&e))?;
    if result.outcome == Outcome::PlatformError {
        return Err(ApiError::service(format!(
            "platform failure in request {}",
            result.request_id
        )));
    }
    Ok(result)
}

fn sync_response(result: InvocationResult, tail: bool) -> Response {
    let body = match result.response {
        protocol::Response::Event(b) => b,
        protocol::Response::Http(r) => protocol::http::http_response_to_event(&r),
    };
    let mut resp = (StatusCode::OK, body).into_response();
    let h = resp.headers_mut();
    h.insert("content-type", HeaderValue::from_static("application/json"));
    if let Ok(v) = HeaderValue::from_str(&result.request_id) {
        h.insert("x-amzn-RequestId", v);
    }
    if let Ok(v) = HeaderValue::from_str(&result.version) {
        h.insert("X-Amz-Executed-Version", v);
    }
    if result.outcome != Outcome::Success {
        h.insert(
            "X-Amz-Function-Error",
            HeaderValue::from_static("Unhandled"),
        );
    }
    if tail {
        let tail = protocol::log_lines::tail(&result.log, protocol::LOG_TAIL_BYTES);
        if let Ok(v) = HeaderValue::from_str(&B64.encode(tail)) {
            h.insert("X-Amz-Log-Result", v);
        }
    }
    resp
}

/// The deprecated InvokeAsync: an Event invoke answering `{"Status": 202}`.
pub async fn invoke_async(
    State(state): State<AppState>,
    caller: Caller,
    Path(name): Path<String>,
    body: Bytes,
) -> Result<Response, ApiError> {
    if body.len() > MAX_ASYNC_PAYLOAD {
        return Err(ApiError::RequestTooLarge(format!(
            "{} byte payload is too large for the Event invocation type (limit {MAX_ASYNC_PAYLOAD} bytes)",
            body.len()
        )));
    }
    let r = state.resolve_for_invoke(&caller.account_id, &name, None)?;
    let payload = event_payload(body)?;
    let request_id = enqueue(&state, &caller, &r, payload).await?;
    let mut resp = (
        StatusCode::ACCEPTED,
        axum::Json(serde_json::json!({ "Status": 202 })),
    )
        .into_response();
    set_request_id(&mut resp, &request_id);
    Ok(resp)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rejection(body: &'static [u8]) -> String {
        match event_payload(Bytes::from_static(body)) {
            Err(e) => e.to_string(),
            Ok(_) => panic!("{body:?} was accepted"),
        }
    }

    #[test]
    fn payloads_must_be_json() {
        assert_eq!(
            event_payload(Bytes::new()).unwrap(),
            Bytes::from_static(b"{}")
        );
        assert_eq!(
            event_payload(Bytes::from_static(b" \n")).unwrap(),
            Bytes::from_static(b"{}")
        );
        assert_eq!(
            event_payload(Bytes::from_static(b"null")).unwrap(),
            Bytes::from_static(b"null")
        );
        let prefix = "Could not parse request body into json: Could not parse payload into json: ";
        assert!(rejection(b"{not json").starts_with(prefix));
        assert_eq!(
            rejection(b"n\x87r"),
            format!("{prefix}Invalid UTF-8 start byte 0x87")
        );
        assert_eq!(
            rejection(b"\"\xe9\x41\""),
            format!("{prefix}Invalid UTF-8 middle byte 0x41")
        );
    }
}

//! Lamina's HTTP edge: AWS Lambda's REST API as botocore's `lambda` model defines it,
//! function URLs, and /metrics.
//!
//! [`app`] builds the whole router from an [`AppState`], so tests drive it in-process;
//! [`serve`] runs it on a bound listener until a shutdown signal.

pub mod api;
pub mod auth;
pub mod connections;
pub mod error;
pub mod forwarding;
pub mod membership;
pub mod observe;
pub mod propagation;
pub mod state;
pub mod tls;
pub mod validate;
pub mod wire;

use axum::Router;
use axum::extract::{Request, State};
use axum::http::HeaderValue;
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};

pub use connections::ConnectionLimits;
pub use error::ApiError;
pub use membership::NodeIdentity;
pub use state::{AppState, GatewayConfig, Services};

/// Every response carries `x-amzn-RequestId` (botocore reads it into ResponseMetadata);
/// handlers that know the invocation's id set it themselves.
async fn request_id(request: Request, next: Next) -> Response {
    let mut resp = next.run(request).await;
    if !resp.headers().contains_key("x-amzn-requestid")
        && let Ok(v) = HeaderValue::from_str(&uuid::Uuid::new_v4().to_string())
    {
        resp.headers_mut().insert("x-amzn-RequestId", v);
    }
    resp
}

/// Lambda's words for a request over an operation's body limit.
pub(crate) fn too_large_message(method: &axum::http::Method, path: &str) -> String {
    use axum::http::Method;
    let (limit, operation) = match (method, path.trim_end_matches('/')) {
        (&Method::POST, "/2015-03-31/functions") => {
            (api::request::MAX_CREATE_REQUEST, "CreateFunction")
        }
        (&Method::PUT, p) if p.ends_with("/code") => {
            (api::request::MAX_CREATE_REQUEST, "UpdateFunctionCode")
        }
        (&Method::POST, p) if p.ends_with("/invocations") || p.ends_with("/invoke-async") => {
            (protocol::MAX_SYNC_PAYLOAD, "InvokeFunction")
        }
        _ => (api::request::MAX_CONTROL_REQUEST, "this"),
    };
    if operation == "this" {
        return format!("Request must be smaller than {limit} bytes for this operation");
    }
    format!("Request must be smaller than {limit} bytes for the {operation} operation")
}

/// Body-limit rejections come from axum as bare 413s; give them Lambda's error shape.
async fn lambda_shaped_rejections(request: Request, next: Next) -> Response {
    let method = request.method().clone();
    let path = request.uri().path().to_owned();
    let resp = next.run(request).await;
    if resp.status() == axum::http::StatusCode::PAYLOAD_TOO_LARGE
        && !resp.headers().contains_key("x-amzn-errortype")
    {
        return ApiError::RequestTooLarge(too_large_message(&method, &path)).into_response();
    }
    resp
}

/// `<url-id>.lambda-url.<region>.<host>` requests are function-URL calls whatever the
/// path, as on AWS; everything else is the API.
async fn host_routed_urls(State(state): State<AppState>, request: Request, next: Next) -> Response {
    let url_id = request
        .headers()
        .get("host")
        .and_then(|h| h.to_str().ok())
        .and_then(|h| h.split_once(".lambda-url."))
        .map(|(id, _)| id.to_owned())
        .filter(|id| id.len() == 32 && id.bytes().all(|b| b.is_ascii_alphanumeric()));
    match url_id {
        Some(id) => {
            let path = request.uri().path().to_owned();
            let ip = api::function_urls::source_ip(&request);
            api::function_urls::serve_url(&state, &id, path, ip, request).await
        }
        None => next.run(request).await,
    }
}

async fn not_found() -> ApiError {
    ApiError::ResourceNotFound("No Lambda operation matches this method and path.".into())
}

/// The whole HTTP surface. Layers, outermost first:
/// - tracing: one span per request, so logs of an invocation share its context;
/// - request id: added last on the way out, so even rejections carry one;
/// - 413 shaping: turns framework body-limit rejections into Lambda's error shape;
/// - HTTP metrics, by the matched route template (`unmatched` for host-routed URLs);
/// - host routing: function-URL hosts bypass the API router entirely;
/// - SigV4: every API request is signed by a known access key (metrics, package downloads
///   and function URLs excepted);
/// - routes, each group with its own body limit (CreateFunction 70 MB, Invoke 6 MB...).
pub fn app(state: AppState) -> Router {
    api::routes()
        .fallback(not_found)
        .layer(middleware::from_fn_with_state(
            state.clone(),
            auth::require_signature,
        ))
        .layer(middleware::from_fn_with_state(
            state.clone(),
            host_routed_urls,
        ))
        .layer(middleware::from_fn_with_state(
            state.clone(),
            observe::count_requests,
        ))
        .layer(middleware::from_fn(lambda_shaped_rejections))
        .layer(middleware::from_fn(request_id))
        .layer(tower_http::trace::TraceLayer::new_for_http())
        .with_state(state)
}

/// Serves `router` on `listener` until `shutdown` resolves, then finishes in-flight
/// requests; `limits` bound what each connection may cost (see [`connections`]).
pub async fn serve(
    listener: tokio::net::TcpListener,
    router: Router,
    limits: ConnectionLimits,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> std::io::Result<()> {
    connections::serve(
        listener,
        router,
        limits,
        |tcp, _peer| async move { Some(tcp) },
        shutdown,
    )
    .await
}

#[cfg(test)]
mod tests {
    use super::too_large_message;
    use axum::http::Method;

    #[test]
    fn oversized_requests_name_their_operation() {
        assert_eq!(
            too_large_message(&Method::POST, "/2015-03-31/functions"),
            "Request must be smaller than 70167211 bytes for the CreateFunction operation"
        );
        assert_eq!(
            too_large_message(&Method::PUT, "/2015-03-31/functions/f/code"),
            "Request must be smaller than 70167211 bytes for the UpdateFunctionCode operation"
        );
        assert_eq!(
            too_large_message(&Method::POST, "/2015-03-31/functions/f/invocations"),
            "Request must be smaller than 6291456 bytes for the InvokeFunction operation"
        );
        assert_eq!(
            too_large_message(&Method::PUT, "/2017-10-31/functions/f/concurrency"),
            "Request must be smaller than 1048576 bytes for this operation"
        );
    }
}

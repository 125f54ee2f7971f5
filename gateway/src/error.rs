//! The one API error type of the HTTP edge. Each case maps to Lambda's status code,
//! `x-amzn-ErrorType` and JSON body, so botocore raises the named exception class.
//! Internal details (database, wasm engine) are logged, never sent.

use axum::http::{HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use serde_json::json;

#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum ApiError {
    #[error("{0}")]
    ResourceNotFound(String),
    #[error("{0}")]
    ResourceConflict(String),
    #[error("{0}")]
    InvalidParameterValue(String),
    /// Framework-level constraint failures (`1 validation error detected: ...`).
    #[error("{0}")]
    Validation(String),
    #[error("{message}")]
    TooManyRequests {
        reason: &'static str,
        message: String,
        retry_after_seconds: u32,
    },
    #[error("{0}")]
    InvalidRequestContent(String),
    /// 413, sent as `RequestEntityTooLargeException` exactly as AWS does.
    #[error("{0}")]
    RequestTooLarge(String),
    #[error("{0}")]
    PreconditionFailed(String),
    #[error("{0}")]
    ProvisionedConcurrencyConfigNotFound(String),
    #[error("{0}")]
    UnsupportedMediaType(String),
    #[error("{0}")]
    CodeStorageExceeded(String),
    /// An unknown function URL (403 with `{"Message": null}`).
    #[error("access denied")]
    AccessDenied,
    #[error("{0}")]
    UnrecognizedClient(String),
    #[error("{0}")]
    InvalidSignature(String),
    /// A request with no `Authorization` header where one is required.
    #[error("Missing Authentication Token")]
    MissingAuthenticationToken,
    /// An `Authorization` header that is not a complete SigV4 one.
    #[error("{0}")]
    IncompleteSignature(String),
    /// Lamina failed. The message sent is generic; `detail` is only logged.
    #[error("internal error: {detail}")]
    Service { detail: String },
}

impl ApiError {
    pub fn service(detail: impl std::fmt::Display) -> Self {
        ApiError::Service {
            detail: detail.to_string(),
        }
    }

    /// The model's shape name (sent as `x-amzn-ErrorType`), the status, and whether the
    /// message member is spelled `Message` (capitalised) in the model.
    fn shape(&self) -> (&'static str, StatusCode, bool) {
        use ApiError::*;
        match self {
            ResourceNotFound(_) => ("ResourceNotFoundException", StatusCode::NOT_FOUND, true),
            ResourceConflict(_) => ("ResourceConflictException", StatusCode::CONFLICT, false),
            InvalidParameterValue(_) => (
                "InvalidParameterValueException",
                StatusCode::BAD_REQUEST,
                false,
            ),
            Validation(_) => ("ValidationException", StatusCode::BAD_REQUEST, true),
            TooManyRequests { .. } => (
                "TooManyRequestsException",
                StatusCode::TOO_MANY_REQUESTS,
                false,
            ),
            InvalidRequestContent(_) => (
                "InvalidRequestContentException",
                StatusCode::BAD_REQUEST,
                false,
            ),
            RequestTooLarge(_) => (
                "RequestEntityTooLargeException",
                StatusCode::PAYLOAD_TOO_LARGE,
                true,
            ),
            PreconditionFailed(_) => (
                "PreconditionFailedException",
                StatusCode::PRECONDITION_FAILED,
                false,
            ),
            ProvisionedConcurrencyConfigNotFound(_) => (
                "ProvisionedConcurrencyConfigNotFoundException",
                StatusCode::NOT_FOUND,
                false,
            ),
            UnsupportedMediaType(_) => (
                "UnsupportedMediaTypeException",
                StatusCode::UNSUPPORTED_MEDIA_TYPE,
                false,
            ),
            CodeStorageExceeded(_) => (
                "CodeStorageExceededException",
                StatusCode::BAD_REQUEST,
                false,
            ),
            AccessDenied => ("AccessDeniedException", StatusCode::FORBIDDEN, true),
            UnrecognizedClient(_) => ("UnrecognizedClientException", StatusCode::FORBIDDEN, false),
            InvalidSignature(_) => ("InvalidSignatureException", StatusCode::FORBIDDEN, false),
            MissingAuthenticationToken => (
                "MissingAuthenticationTokenException",
                StatusCode::FORBIDDEN,
                false,
            ),
            IncompleteSignature(_) => (
                "IncompleteSignatureException",
                StatusCode::BAD_REQUEST,
                false,
            ),
            Service { .. } => ("ServiceException", StatusCode::INTERNAL_SERVER_ERROR, true),
        }
    }

    pub fn status(&self) -> StatusCode {
        self.shape().1
    }

    pub fn error_type(&self) -> &'static str {
        self.shape().0
    }

    /// Who is at fault: the platform for `Service`, the client for everything else.
    pub fn blame(&self) -> protocol::Blame {
        match self {
            ApiError::Service { .. } => protocol::Blame::Platform,
            _ => protocol::Blame::Client,
        }
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let (shape, status, capital) = self.shape();
        let body = match &self {
            ApiError::AccessDenied => json!({ "Message": null }),
            ApiError::Service { detail } => {
                tracing::error!(detail, "service error");
                json!({ "Type": "Service", "Message": "An internal error occurred. The request can be retried." })
            }
            ApiError::TooManyRequests {
                reason, message, ..
            } => {
                json!({ "Type": "User", "Reason": reason, "message": message })
            }
            other => {
                let key = if capital { "Message" } else { "message" };
                json!({ "Type": "User", key: other.to_string() })
            }
        };
        let mut resp = (status, axum::Json(body)).into_response();
        let headers = resp.headers_mut();
        headers.insert("x-amzn-ErrorType", HeaderValue::from_static(shape));
        if let ApiError::TooManyRequests {
            retry_after_seconds,
            ..
        } = &self
            && let Ok(v) = HeaderValue::from_str(&retry_after_seconds.to_string())
        {
            headers.insert("Retry-After", v);
        }
        resp
    }
}

/// Lambda's message for a function that does not exist.
pub fn function_not_found(arn: &str) -> ApiError {
    ApiError::ResourceNotFound(format!("Function not found: {arn}"))
}

#[cfg(test)]
mod tests {
    use super::*;

    async fn parts(e: ApiError) -> (StatusCode, String, serde_json::Value) {
        let r = e.into_response();
        let status = r.status();
        let ty = r.headers()["x-amzn-ErrorType"].to_str().unwrap().to_owned();
        let body = axum::body::to_bytes(r.into_body(), 1 << 20).await.unwrap();
        (status, ty, serde_json::from_slice(&body).unwrap())
    }

    #[tokio::test]
    async fn errors_have_lambdas_wire_shape() {
        let (s, t, b) = parts(function_not_found("arn:x")).await;
        assert_eq!((s.as_u16(), t.as_str()), (404, "ResourceNotFoundException"));
        assert_eq!(
            b,
            json!({"Type": "User", "Message": "Function not found: arn:x"})
        );

        let (s, t, b) = parts(ApiError::InvalidParameterValue("bad".into())).await;
        assert_eq!(
            (s.as_u16(), t.as_str()),
            (400, "InvalidParameterValueException")
        );
        assert_eq!(b["message"], "bad");

        let (s, t, b) = parts(ApiError::RequestTooLarge("big".into())).await;
        assert_eq!(
            (s.as_u16(), t.as_str()),
            (413, "RequestEntityTooLargeException")
        );
        assert_eq!(b["Message"], "big");

        let r = ApiError::TooManyRequests {
            reason: "ReservedFunctionConcurrentInvocationLimitExceeded",
            message: "Rate Exceeded.".into(),
            retry_after_seconds: 1,
        }
        .into_response();
        assert_eq!(r.headers()["Retry-After"], "1");
        let (s, _, b) = parts(ApiError::TooManyRequests {
            reason: "ReservedFunctionConcurrentInvocationLimitExceeded",
            message: "Rate Exceeded.".into(),
            retry_after_seconds: 1,
        })
        .await;
        assert_eq!(s.as_u16(), 429);
        assert_eq!(
            b["Reason"],
            "ReservedFunctionConcurrentInvocationLimitExceeded"
        );

        let (s, _, b) = parts(ApiError::service("db exploded: password=x")).await;
        assert_eq!(s.as_u16(), 500);
        assert!(!b.to_string().contains("password"), "internals leaked: {b}");
    }
}

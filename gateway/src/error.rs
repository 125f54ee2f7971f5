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
    /// A resource of another account that no resource-based policy shares.
    #[error("{0}")]
    NotAuthorized(String),
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

impl From<packages::PackageError> for ApiError {
    fn from(e: packages::PackageError) -> Self {
        match e {
            packages::PackageError::Invalid(m) => ApiError::InvalidParameterValue(m),
            packages::PackageError::TooLarge(m) => ApiError::RequestTooLarge(m),
            packages::PackageError::Platform(m) => ApiError::service(m),
        }
    }
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
            AccessDenied | NotAuthorized(_) => {
                ("AccessDeniedException", StatusCode::FORBIDDEN, true)
            }
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

    /// A missing resource answered as `missing` says, other refusals as they are: some
    /// operations word a missing function their own way.
    pub fn when_missing(self, missing: impl FnOnce() -> ApiError) -> ApiError {
        match self {
            ApiError::ResourceNotFound(_) => missing(),
            other => other,
        }
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

/// What a catalog call was about: the resource its refusal names, as Lambda names it.
#[derive(Debug, Clone, Copy, Default)]
pub struct About<'a> {
    /// The function's ARN, qualified by the version or alias the call was about.
    pub arn: &'a str,
    /// AddPermission's and RemovePermission's statement id.
    pub statement_id: Option<&'a str>,
    /// PublishVersion's expected CodeSha256, as the client sent it.
    pub code_sha256: Option<&'a str>,
}

impl<'a> About<'a> {
    pub fn arn(arn: &'a str) -> Self {
        About {
            arn,
            ..About::default()
        }
    }

    /// A policy call about `statement_id` of `arn`'s policy.
    pub fn statement(arn: &'a str, statement_id: &'a str) -> Self {
        About {
            arn,
            statement_id: Some(statement_id),
            ..About::default()
        }
    }

    /// The function's name, as the ARN spells it.
    fn name(&self) -> &'a str {
        let name = self
            .arn
            .rsplit_once(":function:")
            .map_or(self.arn, |(_, n)| n);
        name.split_once(':').map_or(name, |(n, _)| n)
    }
}

/// Lambda's answer to a catalog refusal. A refusal is the client's (the resource is gone,
/// already there, or changed since it was read, often by a concurrent request); only a
/// store fault is the platform's.
pub fn catalog(e: store::CatalogError, about: About<'_>) -> ApiError {
    use store::CatalogError as C;
    let statement = about.statement_id.unwrap_or_default();
    match e {
        C::FunctionNotFound | C::VersionNotFound => function_not_found(about.arn),
        C::AliasNotFound => ApiError::ResourceNotFound(format!("Alias not found: {}", about.arn)),
        C::UrlNotFound | C::NotFound => {
            ApiError::ResourceNotFound("The resource you requested does not exist.".into())
        }
        C::StatementNotFound => ApiError::ResourceNotFound(format!(
            "Statement {statement} is not found in resource policy."
        )),
        C::FunctionExists => {
            ApiError::ResourceConflict(format!("Function already exist: {}", about.name()))
        }
        C::AliasExists => {
            ApiError::ResourceConflict(format!("Alias already exists: {}", about.arn))
        }
        C::UrlExists => ApiError::ResourceConflict(format!(
            "Failed to create function url config for [functionArn = {}]. Error message:  FunctionUrlConfig exists for this Lambda function",
            about.arn
        )),
        C::StatementExists => ApiError::ResourceConflict(format!(
            "The statement id ({statement}) provided already exists. Please provide a new statement id, or remove the existing statement."
        )),
        C::VersionInUse(aliases) => ApiError::ResourceConflict(format!(
            "Unable to delete version because the following aliases reference it: [{}]",
            aliases.join(", ")
        )),
        C::RevisionMismatch => ApiError::PreconditionFailed(
            "The Revision Id provided does not match the latest Revision Id. Call the GetFunction/GetAlias API to retrieve the latest Revision Id".into(),
        ),
        // Lambda answers a stale CodeSha256 as a bad parameter, not a failed precondition.
        C::CodeShaMismatch { current } => {
            use base64::Engine as _;
            let current = hex::decode(&current)
                .map(|b| base64::engine::general_purpose::STANDARD.encode(b))
                .unwrap_or(current);
            ApiError::InvalidParameterValue(format!(
                "CodeSHA256 ({}) is different from current CodeSHA256 in $LATEST ({current}). Please try again with the CodeSHA256 in $LATEST.",
                about.code_sha256.unwrap_or_default()
            ))
        }
        C::Store(e) => ApiError::service(e),
    }
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

    #[test]
    fn catalog_refusals_keep_their_blame() {
        use store::CatalogError as C;
        let arn = "arn:aws:lambda:us-east-1:123456789012:function:f";
        let alias = "arn:aws:lambda:us-east-1:123456789012:function:f:live";
        let sha = "0a0b";
        let check = |e: C, about: About<'_>, status: u16, shape: &str, message: &str| {
            let kind = format!("{e:?}");
            let api = catalog(e, about);
            assert_eq!(
                (
                    api.status().as_u16(),
                    api.error_type(),
                    api.to_string().as_str()
                ),
                (status, shape, message),
                "{kind}"
            );
            let blame = if status == 500 {
                protocol::Blame::Platform
            } else {
                protocol::Blame::Client
            };
            assert_eq!(api.blame(), blame, "{kind}");
        };
        let statement = About::statement(arn, "s1");
        let publish = About {
            arn,
            statement_id: None,
            code_sha256: Some("stale"),
        };
        let not_found = "ResourceNotFoundException";
        let conflict = "ResourceConflictException";
        check(
            C::FunctionNotFound,
            About::arn(arn),
            404,
            not_found,
            &format!("Function not found: {arn}"),
        );
        check(
            C::VersionNotFound,
            About::arn(alias),
            404,
            not_found,
            &format!("Function not found: {alias}"),
        );
        check(
            C::AliasNotFound,
            About::arn(alias),
            404,
            not_found,
            &format!("Alias not found: {alias}"),
        );
        check(
            C::UrlNotFound,
            About::arn(arn),
            404,
            not_found,
            "The resource you requested does not exist.",
        );
        check(
            C::NotFound,
            About::arn(arn),
            404,
            not_found,
            "The resource you requested does not exist.",
        );
        check(
            C::StatementNotFound,
            statement,
            404,
            not_found,
            "Statement s1 is not found in resource policy.",
        );
        check(
            C::FunctionExists,
            About::arn(arn),
            409,
            conflict,
            "Function already exist: f",
        );
        check(
            C::AliasExists,
            About::arn(alias),
            409,
            conflict,
            &format!("Alias already exists: {alias}"),
        );
        check(
            C::UrlExists,
            About::arn(arn),
            409,
            conflict,
            &format!(
                "Failed to create function url config for [functionArn = {arn}]. Error message:  FunctionUrlConfig exists for this Lambda function"
            ),
        );
        check(
            C::StatementExists,
            statement,
            409,
            conflict,
            "The statement id (s1) provided already exists. Please provide a new statement id, or remove the existing statement.",
        );
        check(
            C::VersionInUse(vec!["a".into(), "b".into()]),
            About::arn(arn),
            409,
            conflict,
            "Unable to delete version because the following aliases reference it: [a, b]",
        );
        check(
            C::RevisionMismatch,
            About::arn(arn),
            412,
            "PreconditionFailedException",
            "The Revision Id provided does not match the latest Revision Id. Call the GetFunction/GetAlias API to retrieve the latest Revision Id",
        );
        check(
            C::CodeShaMismatch {
                current: sha.into(),
            },
            publish,
            400,
            "InvalidParameterValueException",
            "CodeSHA256 (stale) is different from current CodeSHA256 in $LATEST (Cgs=). Please try again with the CodeSHA256 in $LATEST.",
        );
        check(
            C::Store(store::StoreError::Unavailable("connection refused".into())),
            About::arn(arn),
            500,
            "ServiceException",
            "internal error: the database is unavailable: connection refused",
        );
    }
}

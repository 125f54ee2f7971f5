//! The client side of the subcommands that talk to a running Lamina (`logs`, `usage`,
//! `feedback`, `quality`, `deploy`).

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use anyhow::Context as _;
use http_body_util::BodyExt as _;
use hyper::body::Bytes;
use hyper::{Method, StatusCode};
use hyper_util::client::legacy::Client;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::TokioExecutor;
use serde_json::Value;

use crate::UsageError;

/// An access key, from the usual AWS sources.
pub struct Credentials {
    pub access_key_id: String,
    pub secret: String,
}

impl Credentials {
    /// `AWS_ACCESS_KEY_ID`/`AWS_SECRET_ACCESS_KEY`, else the profile (`AWS_PROFILE`, default
    /// `default`) of the shared credentials file (`AWS_SHARED_CREDENTIALS_FILE`, default
    /// `~/.aws/credentials`).
    pub fn from_environment() -> Result<Self, UsageError> {
        if let (Ok(id), Ok(secret)) = (
            std::env::var("AWS_ACCESS_KEY_ID"),
            std::env::var("AWS_SECRET_ACCESS_KEY"),
        ) {
            return Ok(Credentials {
                access_key_id: id,
                secret,
            });
        }
        let file = std::env::var_os("AWS_SHARED_CREDENTIALS_FILE")
            .map(std::path::PathBuf::from)
            .or_else(|| std::env::var_os("HOME").map(|h| std::path::Path::new(&h).join(".aws/credentials")))
            .ok_or_else(|| UsageError("no AWS credentials: set AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY, or AWS_SHARED_CREDENTIALS_FILE".into()))?;
        let profile = std::env::var("AWS_PROFILE").unwrap_or_else(|_| "default".into());
        let ini = ini::Ini::load_from_file(&file).map_err(|e| {
            UsageError(format!(
                "no AWS credentials: cannot read {} ({e}); set AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY",
                file.display()
            ))
        })?;
        let section = ini.section(Some(profile.as_str())).ok_or_else(|| {
            UsageError(format!("profile {profile:?} is not in {}", file.display()))
        })?;
        match (
            section.get("aws_access_key_id"),
            section.get("aws_secret_access_key"),
        ) {
            (Some(id), Some(secret)) => Ok(Credentials {
                access_key_id: id.to_owned(),
                secret: secret.to_owned(),
            }),
            _ => Err(UsageError(format!(
                "profile {profile:?} in {} lacks aws_access_key_id or aws_secret_access_key",
                file.display()
            ))),
        }
    }
}

/// A running Lamina's HTTP endpoint; requests are signed as the AWS SDKs sign them.
pub struct Remote {
    endpoint: String,
    region: String,
    credentials: Credentials,
    client: Client<HttpConnector, UploadBody>,
}

/// An error answer in Lambda's shape.
#[derive(Debug, thiserror::Error)]
#[error("{error_type} ({}): {message}", status.as_u16())]
pub struct RemoteError {
    pub status: StatusCode,
    pub error_type: String,
    pub message: String,
}

/// A request body handed to the connection in chunks, so that a progress bar can follow
/// an upload.
pub struct UploadBody {
    chunks: std::collections::VecDeque<Bytes>,
    progress: Option<indicatif::ProgressBar>,
}

/// Upload progress moves in steps of this size.
const UPLOAD_CHUNK: usize = 64 * 1024;

impl UploadBody {
    fn new(body: Bytes, progress: Option<indicatif::ProgressBar>) -> Self {
        let mut chunks = std::collections::VecDeque::new();
        let mut rest = body;
        while !rest.is_empty() {
            chunks.push_back(rest.split_to(rest.len().min(UPLOAD_CHUNK)));
        }
        UploadBody { chunks, progress }
    }
}

impl hyper::body::Body for UploadBody {
    type Data = Bytes;
    type Error = std::convert::Infallible;

    fn poll_frame(
        mut self: std::pin::Pin<&mut Self>,
        _: &mut std::task::Context<'_>,
    ) -> std::task::Poll<Option<Result<hyper::body::Frame<Bytes>, Self::Error>>> {
        let next = self.chunks.pop_front();
        if let (Some(chunk), Some(bar)) = (&next, &self.progress) {
            bar.inc(chunk.len() as u64);
        }
        std::task::Poll::Ready(next.map(|c| Ok(hyper::body::Frame::data(c))))
    }

    fn is_end_stream(&self) -> bool {
        self.chunks.is_empty()
    }

    fn size_hint(&self) -> hyper::body::SizeHint {
        hyper::body::SizeHint::with_exact(self.chunks.iter().map(|c| c.len() as u64).sum())
    }
}

impl Remote {
    pub fn new(endpoint: &str, region: &str) -> Result<Self, UsageError> {
        if !endpoint.starts_with("http://") {
            return Err(UsageError(format!(
                "--endpoint must be an http:// URL, not {endpoint:?}"
            )));
        }
        Ok(Remote {
            endpoint: endpoint.trim_end_matches('/').to_owned(),
            region: region.to_owned(),
            credentials: Credentials::from_environment()?,
            client: Client::builder(TokioExecutor::new()).build_http(),
        })
    }

    pub fn region(&self) -> &str {
        &self.region
    }

    /// A request carrying a SigV4 signature over its method, URL, host and body.
    fn signed(
        &self,
        method: &Method,
        uri: &hyper::Uri,
        body: Bytes,
        progress: Option<indicatif::ProgressBar>,
    ) -> anyhow::Result<hyper::Request<UploadBody>> {
        use aws_sigv4::http_request::{SignableBody, SignableRequest, SigningSettings, sign};
        let host = uri
            .authority()
            .context("the endpoint has no host")?
            .as_str();
        let identity = aws_credential_types::Credentials::new(
            &self.credentials.access_key_id,
            &self.credentials.secret,
            None,
            None,
            "lamina-cli",
        )
        .into();
        let params = aws_sigv4::sign::v4::SigningParams::builder()
            .identity(&identity)
            .region(&self.region)
            .name("lambda")
            .time(SystemTime::now())
            .settings(SigningSettings::default())
            .build()?
            .into();
        let uri_text = uri.to_string();
        let content_type = if body.is_empty() {
            None
        } else {
            Some(("content-type", "application/json"))
        };
        let headers = std::iter::once(("host", host)).chain(content_type);
        let signable = SignableRequest::new(
            method.as_str(),
            &uri_text,
            headers,
            SignableBody::Bytes(&body),
        )?;
        let (instructions, _) = sign(signable, &params)?.into_parts();
        let mut request = hyper::Request::builder()
            .method(method.clone())
            .uri(uri.clone())
            .header("host", host);
        if let Some((name, value)) = content_type {
            request = request.header(name, value);
        }
        for (name, value) in instructions.headers() {
            request = request.header(name, value);
        }
        Ok(request.body(UploadBody::new(body, progress))?)
    }

    /// GETs `path_and_query` and returns its JSON body; Lambda-shaped errors become a
    /// [`RemoteError`].
    pub async fn get_json(&self, path_and_query: &str) -> anyhow::Result<Value> {
        self.send_json(Method::GET, path_and_query, None).await
    }

    /// Sends `body` (JSON) with `method` and returns the JSON answer (`null` when empty).
    pub async fn send_json(
        &self,
        method: Method,
        path_and_query: &str,
        body: Option<&Value>,
    ) -> anyhow::Result<Value> {
        let body = body.map_or_else(Bytes::new, |b| Bytes::from(b.to_string()));
        self.send(method, path_and_query, body, None).await
    }

    /// Like [`Remote::send_json`] with a body already encoded, advancing `progress` as
    /// the body goes out.
    pub async fn send(
        &self,
        method: Method,
        path_and_query: &str,
        body: Bytes,
        progress: Option<indicatif::ProgressBar>,
    ) -> anyhow::Result<Value> {
        let uri: hyper::Uri = format!("{}{path_and_query}", self.endpoint)
            .parse()
            .context("building the request URL")?;
        let resp = self
            .client
            .request(self.signed(&method, &uri, body, progress)?)
            .await
            .with_context(|| format!("cannot reach Lamina at {}", self.endpoint))?;
        let status = resp.status();
        let error_type = resp
            .headers()
            .get("x-amzn-errortype")
            .and_then(|v| v.to_str().ok())
            .map(str::to_owned);
        let body = resp
            .into_body()
            .collect()
            .await
            .context("reading the response")?
            .to_bytes();
        let value: Value = if body.is_empty() {
            Value::Null
        } else {
            serde_json::from_slice(&body).with_context(|| {
                format!("the server answered {status} with a body that is not JSON")
            })?
        };
        if !status.is_success() {
            let message = value
                .get("message")
                .or_else(|| value.get("Message"))
                .and_then(Value::as_str)
                .unwrap_or("no message");
            return Err(RemoteError {
                status,
                error_type: error_type.unwrap_or_else(|| "error".into()),
                message: message.to_owned(),
            }
            .into());
        }
        Ok(value)
    }
}

/// Microseconds since the epoch of a `--since` value: a duration back from now (`10m`,
/// `2h`, `7d`) or an RFC 3339 time (`2026-01-31T12:00:00Z`).
pub fn since_micros(value: &str, now: SystemTime) -> Result<i64, UsageError> {
    let at = match humantime::parse_duration(value) {
        Ok(back) => now.checked_sub(back).unwrap_or(UNIX_EPOCH),
        Err(_) => humantime::parse_rfc3339_weak(value).map_err(|_| {
            UsageError(format!(
                "--since takes a duration like 10m or 2h, or a time like 2026-01-31T12:00:00Z; not {value:?}"
            ))
        })?,
    };
    Ok(at
        .duration_since(UNIX_EPOCH)
        .unwrap_or(Duration::ZERO)
        .as_micros() as i64)
}

/// Percent-encodes a query value.
pub fn query_value(value: &str) -> String {
    percent_encoding::utf8_percent_encode(value, percent_encoding::NON_ALPHANUMERIC).to_string()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn since_takes_durations_and_times() {
        let now = UNIX_EPOCH + Duration::from_secs(10_000);
        assert_eq!(since_micros("10s", now).unwrap(), 9_990_000_000);
        assert_eq!(since_micros("1h", now).unwrap(), 6_400_000_000);
        assert_eq!(
            since_micros("1970-01-01T00:00:05Z", now).unwrap(),
            5_000_000
        );
        assert!(since_micros("yesterday", now).is_err());
    }
}

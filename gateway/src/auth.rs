//! SigV4 on every API request: who is calling (the account behind the access key) and
//! proof they hold the secret. The signature is recomputed with `aws-sigv4` from the
//! request exactly as received, over the headers the client says it signed.

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::{Duration, Instant, SystemTime};

use aws_credential_types::Credentials;
use aws_sigv4::http_request::{SignableBody, SignableRequest, SigningSettings, sign};
use aws_sigv4::sign::v4;
use axum::http::request::Parts;
use chrono::{DateTime, NaiveDateTime, Utc};
use sha2::{Digest, Sha256};
use store::accounts::{Accounts, Credential};
use subtle::ConstantTimeEq;

use crate::error::ApiError;

/// AWS refuses requests signed further than this from its clock.
pub const MAX_CLOCK_SKEW: Duration = Duration::from_secs(15 * 60);
/// How long a looked-up key is trusted before the database is asked again, so a key
/// revoked from another process stops working within this time.
const KEY_CACHE_TTL: Duration = Duration::from_secs(5);
const SERVICE: &str = "lambda";
const AMZ_DATE: &str = "%Y%m%dT%H%M%SZ";

const MISMATCH: &str = "The request signature we calculated does not match the signature you provided. Check your AWS Secret Access Key and signing method. Consult the service documentation for details.";

/// The parts of an `Authorization: AWS4-HMAC-SHA256 ...` header.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Authorization<'a> {
    pub access_key_id: &'a str,
    pub date: &'a str,
    pub region: &'a str,
    pub service: &'a str,
    pub signed_headers: Vec<&'a str>,
    pub signature: &'a str,
}

/// Parses the header; `None` when it is not a SigV4 header at all.
pub fn parse_authorization(header: &str) -> Option<Authorization<'_>> {
    let rest = header.strip_prefix("AWS4-HMAC-SHA256")?.trim_start();
    let (mut credential, mut signed, mut signature) = (None, None, None);
    for part in rest.split(',') {
        let (k, v) = part.trim().split_once('=')?;
        match k {
            "Credential" => credential = Some(v),
            "SignedHeaders" => signed = Some(v),
            "Signature" => signature = Some(v),
            _ => return None,
        }
    }
    let mut scope = credential?.split('/');
    let auth = Authorization {
        access_key_id: scope.next().filter(|s| !s.is_empty())?,
        date: scope.next()?,
        region: scope.next()?,
        service: scope.next()?,
        signed_headers: signed?.split(';').filter(|h| !h.is_empty()).collect(),
        signature: signature?,
    };
    (scope.next() == Some("aws4_request") && scope.next().is_none()).then_some(auth)
}

/// Remembers credentials looked up in the database for a few seconds, so the invoke path
/// does not query the database on every request.
#[derive(Debug)]
pub struct KeyRing {
    accounts: Accounts,
    cache: Mutex<HashMap<String, (Instant, Option<Credential>)>>,
}

impl KeyRing {
    pub fn new(accounts: Accounts) -> Self {
        KeyRing {
            accounts,
            cache: Mutex::new(HashMap::new()),
        }
    }

    pub async fn credential(&self, key_id: &str) -> Result<Option<Credential>, ApiError> {
        if let Some((at, hit)) = self.lock().get(key_id)
            && at.elapsed() < KEY_CACHE_TTL
        {
            return Ok(hit.clone());
        }
        let found = self
            .accounts
            .credential(key_id)
            .await
            .map_err(ApiError::service)?;
        let mut cache = self.lock();
        // Unknown keys are cached too, but the cache must not grow without bound.
        if cache.len() > 10_000 {
            cache.retain(|_, (at, _)| at.elapsed() < KEY_CACHE_TTL);
        }
        cache.insert(key_id.to_owned(), (Instant::now(), found.clone()));
        Ok(found)
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<String, (Instant, Option<Credential>)>> {
        self.cache
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }
}

/// Who signed a request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Signer {
    pub account_id: String,
    pub access_key_id: String,
}

/// The signing key a request claims, checked before its body is read, so an unsigned or
/// unknown caller cannot make the server buffer a large body.
async fn claimed_credential<'a>(
    keys: &KeyRing,
    parts: &'a Parts,
) -> Result<(Authorization<'a>, Credential), ApiError> {
    let header = parts
        .headers
        .get("authorization")
        .ok_or(ApiError::MissingAuthenticationToken)?
        .to_str()
        .map_err(|_| ApiError::IncompleteSignature("Authorization header is not ASCII.".into()))?;
    let auth = parse_authorization(header).ok_or_else(|| {
        ApiError::IncompleteSignature(format!(
            "Authorization header requires 'Credential', 'Signature' and 'SignedHeaders' parameters. Authorization={header}"
        ))
    })?;
    let Some(credential) = keys.credential(auth.access_key_id).await? else {
        return Err(ApiError::UnrecognizedClient(
            "The security token included in the request is invalid.".into(),
        ));
    };
    Ok((auth, credential))
}

/// Checks a request's SigV4 signature; returns who signed it.
pub async fn verify(
    keys: &KeyRing,
    region: &str,
    parts: &Parts,
    body: &[u8],
    now: SystemTime,
) -> Result<Signer, ApiError> {
    let (auth, credential) = claimed_credential(keys, parts).await?;
    check_signature(&auth, credential, region, parts, body, now)
}

/// Checks the signature of a request whose claimed key is already known.
fn check_signature(
    auth: &Authorization<'_>,
    credential: Credential,
    region: &str,
    parts: &Parts,
    body: &[u8],
    now: SystemTime,
) -> Result<Signer, ApiError> {
    if auth.service != SERVICE {
        return Err(ApiError::InvalidSignature(format!(
            "Credential should be scoped to correct service: '{SERVICE}'."
        )));
    }
    if auth.region != region {
        return Err(ApiError::InvalidSignature(format!(
            "Credential should be scoped to a valid region, not '{}'.",
            auth.region
        )));
    }
    let amz_date = parts
        .headers
        .get("x-amz-date")
        .and_then(|v| v.to_str().ok())
        .ok_or_else(|| {
            ApiError::IncompleteSignature("Authorization requires an X-Amz-Date header.".into())
        })?;
    let signed_at = NaiveDateTime::parse_from_str(amz_date, AMZ_DATE)
        .map_err(|_| {
            ApiError::IncompleteSignature(format!(
                "X-Amz-Date {amz_date:?} is not YYYYMMDD'T'HHMMSS'Z'."
            ))
        })?
        .and_utc();
    check_skew(signed_at, DateTime::<Utc>::from(now))?;
    if !amz_date.starts_with(auth.date) {
        return Err(ApiError::InvalidSignature(MISMATCH.into()));
    }
    if !auth.signed_headers.contains(&"host") {
        return Err(ApiError::InvalidSignature(
            "'Host' must be a signed header.".into(),
        ));
    }
    let expected = signature(auth, &credential, parts, body, signed_at.into())?;
    if bool::from(expected.as_bytes().ct_eq(auth.signature.as_bytes())) {
        Ok(Signer {
            account_id: credential.account_id,
            access_key_id: credential.access_key_id,
        })
    } else {
        Err(ApiError::InvalidSignature(MISMATCH.into()))
    }
}

fn check_skew(signed_at: DateTime<Utc>, now: DateTime<Utc>) -> Result<(), ApiError> {
    let skew = chrono::Duration::from_std(MAX_CLOCK_SKEW).unwrap_or_default();
    let fmt = |t: DateTime<Utc>| t.format(AMZ_DATE).to_string();
    if signed_at < now - skew {
        return Err(ApiError::InvalidSignature(format!(
            "Signature expired: {} is now earlier than {} ({} - 15 min.)",
            fmt(signed_at),
            fmt(now - skew),
            fmt(now)
        )));
    }
    if signed_at > now + skew {
        return Err(ApiError::InvalidSignature(format!(
            "Signature not yet current: {} is still later than {} ({} + 15 min.)",
            fmt(signed_at),
            fmt(now + skew),
            fmt(now)
        )));
    }
    Ok(())
}

/// The signature the client should have sent, computed over the headers it signed.
fn signature(
    auth: &Authorization<'_>,
    credential: &Credential,
    parts: &Parts,
    body: &[u8],
    signed_at: SystemTime,
) -> Result<String, ApiError> {
    let mismatch = || ApiError::InvalidSignature(MISMATCH.into());
    let mut headers = Vec::with_capacity(auth.signed_headers.len());
    for name in &auth.signed_headers {
        // The signer adds X-Amz-Date itself, from `signed_at`.
        if *name == "x-amz-date" {
            continue;
        }
        let values: Vec<&str> = parts
            .headers
            .get_all(*name)
            .iter()
            .map(|v| v.to_str().map_err(|_| mismatch()))
            .collect::<Result<_, _>>()?;
        if values.is_empty() {
            return Err(mismatch());
        }
        headers.push((*name, values.join(",")));
    }
    let host = parts
        .headers
        .get("host")
        .and_then(|h| h.to_str().ok())
        .ok_or_else(mismatch)?;
    let uri = format!(
        "http://{host}{}",
        parts.uri.path_and_query().map_or("/", |p| p.as_str())
    );
    // A client that sends the payload hash signs it; otherwise it is the body's.
    let body_hash = match parts
        .headers
        .get("x-amz-content-sha256")
        .and_then(|v| v.to_str().ok())
    {
        Some(claimed) if claimed != "UNSIGNED-PAYLOAD" => {
            if claimed != hex::encode(Sha256::digest(body)) {
                return Err(ApiError::InvalidSignature(
                    "The provided 'x-amz-content-sha256' header does not match what was computed."
                        .into(),
                ));
            }
            claimed.to_owned()
        }
        Some(unsigned) => unsigned.to_owned(),
        None => hex::encode(Sha256::digest(body)),
    };
    let signable = SignableRequest::new(
        parts.method.as_str(),
        uri,
        headers.iter().map(|(k, v)| (*k, v.as_str())),
        SignableBody::Precomputed(body_hash),
    )
    .map_err(|_| mismatch())?;
    let identity = Credentials::new(
        &credential.access_key_id,
        &credential.secret,
        None,
        None,
        "lamina",
    )
    .into();
    let params = v4::SigningParams::builder()
        .identity(&identity)
        .region(auth.region)
        .name(SERVICE)
        .time(signed_at)
        .settings(SigningSettings::default())
        .build()
        .map_err(ApiError::service)?
        .into();
    let output = sign(signable, &params).map_err(|_| mismatch())?;
    Ok(output.signature().to_owned())
}

/// Routes that answer without a signature: Prometheus scrapes, stored packages (their
/// digest is the capability, as a presigned URL's signature is), and function URLs, whose
/// own AuthType decides.
fn is_public(path: &str) -> bool {
    path == "/metrics" || path.starts_with("/lamina/code/") || path.starts_with("/lambda-url/")
}

/// Middleware: verifies the signature of every API request and attaches the caller's
/// account to it, or answers with Lambda's 403.
pub async fn require_signature(
    axum::extract::State(state): axum::extract::State<crate::state::AppState>,
    request: axum::extract::Request,
    next: axum::middleware::Next,
) -> axum::response::Response {
    use axum::response::IntoResponse as _;
    if is_public(request.uri().path()) {
        return next.run(request).await;
    }
    let (mut parts, body) = request.into_parts();
    let (auth, credential) = match claimed_credential(&state.keys, &parts).await {
        Ok(claimed) => claimed,
        Err(e) => return e.into_response(),
    };
    // The largest body any API operation takes; each route still applies its own limit.
    let body = match axum::body::to_bytes(body, crate::api::request::MAX_CREATE_REQUEST).await {
        Ok(b) => b,
        Err(_) => {
            return ApiError::RequestTooLarge(crate::too_large_message(
                &parts.method,
                parts.uri.path(),
            ))
            .into_response();
        }
    };
    let checked = check_signature(
        &auth,
        credential,
        &state.config.region,
        &parts,
        &body,
        SystemTime::now(),
    );
    match checked {
        Ok(signer) => {
            parts.extensions.insert(Caller {
                account_id: signer.account_id,
            });
            next.run(axum::extract::Request::from_parts(parts, body.into()))
                .await
        }
        Err(e) => e.into_response(),
    }
}

/// The account a request acts for, set by [`require_signature`] once the signature is
/// checked; a handler that takes it is not reachable unsigned.
#[derive(Debug, Clone)]
pub struct Caller {
    pub account_id: String,
}

impl<S: Send + Sync> axum::extract::FromRequestParts<S> for Caller {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, _: &S) -> Result<Self, ApiError> {
        parts
            .extensions
            .get::<Caller>()
            .cloned()
            .ok_or(ApiError::MissingAuthenticationToken)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_botocore_headers() {
        let h = "AWS4-HMAC-SHA256 Credential=AKIDEXAMPLE/20240115/us-east-1/lambda/aws4_request, SignedHeaders=host;x-amz-date;x-amz-log-type, Signature=2195382735b83ee561e4a597fcb3eb9db7e79ba5830b84b847b2c8d01b0f6754";
        let a = parse_authorization(h).unwrap();
        assert_eq!(a.access_key_id, "AKIDEXAMPLE");
        assert_eq!(a.date, "20240115");
        assert_eq!(a.region, "us-east-1");
        assert_eq!(a.service, "lambda");
        assert_eq!(a.signed_headers, ["host", "x-amz-date", "x-amz-log-type"]);
        assert!(parse_authorization("Basic dXNlcjpwYXNz").is_none());
        assert!(
            parse_authorization("AWS4-HMAC-SHA256 Credential=A/2024/r/s, Signature=x").is_none()
        );
    }

    /// botocore 1.43.11's own signature for this request (the wire capture's vector).
    #[test]
    fn matches_botocores_test_vector() {
        let request = axum::http::Request::builder()
            .method("POST")
            .uri("/2015-03-31/functions/arn%3Aaws%3Alambda%3Aus-east-1%3A000000000000%3Afunction%3Amy-fn/invocations?Qualifier=%24LATEST")
            .header("host", "localhost:9000")
            .header("x-amz-date", "20240115T120000Z")
            .header("x-amz-log-type", "Tail")
            .body(())
            .unwrap();
        let (parts, ()) = request.into_parts();
        let header = "AWS4-HMAC-SHA256 Credential=AKIDEXAMPLE/20240115/us-east-1/lambda/aws4_request, SignedHeaders=host;x-amz-date;x-amz-log-type, Signature=2195382735b83ee561e4a597fcb3eb9db7e79ba5830b84b847b2c8d01b0f6754";
        let auth = parse_authorization(header).unwrap();
        let credential = Credential {
            access_key_id: "AKIDEXAMPLE".into(),
            account_id: "000000000000".into(),
            secret: "wJalrXUtnFEMI/K7MDENG+bPxRfiCYEXAMPLEKEY".into(),
        };
        let at = NaiveDateTime::parse_from_str("20240115T120000Z", AMZ_DATE)
            .unwrap()
            .and_utc();
        let sig = signature(&auth, &credential, &parts, br#"{"a":1}"#, at.into()).unwrap();
        assert_eq!(sig, auth.signature);
        // One byte of body more and it no longer matches.
        let sig = signature(&auth, &credential, &parts, br#"{"a":12}"#, at.into()).unwrap();
        assert_ne!(sig, auth.signature);
    }

    #[test]
    fn skew_beyond_fifteen_minutes_is_refused_with_awss_words() {
        let now = NaiveDateTime::parse_from_str("20240115T123000Z", AMZ_DATE)
            .unwrap()
            .and_utc();
        let old = NaiveDateTime::parse_from_str("20240115T120000Z", AMZ_DATE)
            .unwrap()
            .and_utc();
        assert_eq!(
            check_skew(old, now).unwrap_err().to_string(),
            "Signature expired: 20240115T120000Z is now earlier than 20240115T121500Z (20240115T123000Z - 15 min.)"
        );
        assert!(check_skew(now - chrono::Duration::minutes(14), now).is_ok());
        assert!(check_skew(now + chrono::Duration::minutes(16), now).is_err());
    }
}

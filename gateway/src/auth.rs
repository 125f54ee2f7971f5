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
use store::StoreError;
use store::accounts::{Accounts, Credential};
use subtle::ConstantTimeEq;

use crate::error::ApiError;

/// AWS refuses requests signed further than this from its clock.
pub const MAX_CLOCK_SKEW: Duration = Duration::from_secs(15 * 60);
/// How long a looked-up key is trusted before the database is asked again, so a key
/// revoked from another process stops working within this time.
const KEY_CACHE_TTL: Duration = Duration::from_secs(5);
/// How long a request waits for the database to re-read a key the cache already holds
/// before it is checked against the cached one. It bounds what an outage adds to one
/// request per key per TTL; the pool's own timeout is several seconds.
const OUTAGE_LOOKUP_BUDGET: Duration = Duration::from_secs(1);
/// Beyond this many cached keys, unknown ones are purged (clients choose them freely).
const MAX_CACHED_KEYS: usize = 10_000;
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
/// does not query the database on every request, and keeps the last answer for each key
/// so that a database outage does not lock every caller out.
#[derive(Debug)]
pub struct KeyRing {
    accounts: Accounts,
    cache: Mutex<HashMap<String, Entry>>,
}

/// What the database last said about one access key.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Entry {
    /// When the database last answered for this key, or was last tried and failed; a
    /// failed try counts so that an outage costs one slow lookup per key per TTL, not one
    /// per request.
    checked_at: Instant,
    /// `None`: unknown or revoked.
    credential: Option<Credential>,
}

/// What a lookup does before any IO, decided from the cache alone.
#[derive(Debug, PartialEq, Eq)]
enum Plan {
    /// Recent enough to trust without asking the database.
    Serve(Option<Credential>),
    /// Ask the database, waiting at most `budget` (`None`: the pool's own timeout) before
    /// falling back on what the cache knows.
    Ask { budget: Option<Duration> },
}

/// How the database answered a lookup.
#[derive(Debug)]
enum Answer {
    Found(Option<Credential>),
    /// No connection, or no answer within the budget: the database is down for us.
    Unreachable(String),
    /// The database answered with an error, or what it holds cannot be read.
    Failed(String),
}

/// What a lookup returns, and what the cache keeps for the next one.
#[derive(Debug, PartialEq, Eq)]
struct Settled {
    keep: Option<Entry>,
    outcome: Outcome,
}

#[derive(Debug, PartialEq, Eq)]
enum Outcome {
    /// The database's fresh answer.
    Current(Option<Credential>),
    /// The last answer the database gave, served because it cannot answer now.
    Stale(Option<Credential>),
    /// A key the database has never answered for, while it cannot answer: refused as any
    /// unknown key is, since it cannot be checked.
    UnknownDuringOutage,
    /// Neither an answer nor anything to fall back on.
    Fault(String),
}

/// Whether the cached entry can be served as is. An expired entry that holds a
/// credential is asked for within a short budget: the caller is waiting, and the entry is
/// an answer to fall back on if the database does not reply in time.
fn plan(entry: Option<&Entry>, now: Instant) -> Plan {
    match entry {
        Some(e) if now.saturating_duration_since(e.checked_at) < KEY_CACHE_TTL => {
            Plan::Serve(e.credential.clone())
        }
        Some(_) => Plan::Ask {
            budget: Some(OUTAGE_LOOKUP_BUDGET),
        },
        None => Plan::Ask { budget: None },
    }
}

/// Folds the database's answer into the cache. A fresh answer always wins, so a revoked
/// key stops working within the TTL while the database answers; without one, the last
/// answer stands, whatever it was (a credential, or "unknown").
fn settle(previous: Option<&Entry>, answer: Answer, now: Instant) -> Settled {
    let (reason, transient) = match answer {
        Answer::Found(credential) => {
            return Settled {
                keep: Some(Entry {
                    checked_at: now,
                    credential: credential.clone(),
                }),
                outcome: Outcome::Current(credential),
            };
        }
        Answer::Unreachable(reason) => (reason, true),
        Answer::Failed(reason) => (reason, false),
    };
    match previous {
        Some(e) => Settled {
            keep: Some(Entry {
                checked_at: now,
                credential: e.credential.clone(),
            }),
            outcome: Outcome::Stale(e.credential.clone()),
        },
        None if transient => Settled {
            keep: None,
            outcome: Outcome::UnknownDuringOutage,
        },
        None => Settled {
            keep: None,
            outcome: Outcome::Fault(reason),
        },
    }
}

/// Whether an entry survives a purge of the cache. Keys that exist are few and are what
/// callers fall back on during an outage; unknown keys are whatever clients send, so only
/// they (and entries the database will be asked about anyway) are dropped.
fn worth_keeping(entry: &Entry, now: Instant) -> bool {
    entry.credential.is_some() || now.saturating_duration_since(entry.checked_at) < KEY_CACHE_TTL
}

impl KeyRing {
    pub fn new(accounts: Accounts) -> Self {
        KeyRing {
            accounts,
            cache: Mutex::new(HashMap::new()),
        }
    }

    /// The credential of an access key: `None` when the key is unknown or revoked.
    pub async fn credential(&self, key_id: &str) -> Result<Option<Credential>, ApiError> {
        let previous = self.lock().get(key_id).cloned();
        let budget = match plan(previous.as_ref(), Instant::now()) {
            Plan::Serve(credential) => return Ok(credential),
            Plan::Ask { budget } => budget,
        };
        let answer = self.ask(key_id, budget).await;
        let settled = settle(previous.as_ref(), answer, Instant::now());
        if let Some(entry) = settled.keep {
            let mut cache = self.lock();
            if cache.len() > MAX_CACHED_KEYS {
                let now = Instant::now();
                cache.retain(|_, e| worth_keeping(e, now));
            }
            cache.insert(key_id.to_owned(), entry);
        }
        match settled.outcome {
            Outcome::Current(credential) => Ok(credential),
            Outcome::Stale(credential) => {
                tracing::warn!(
                    access_key_id = key_id,
                    "the database cannot be reached; checking the signature against the key as last read"
                );
                Ok(credential)
            }
            Outcome::UnknownDuringOutage => {
                tracing::warn!(
                    access_key_id = key_id,
                    "the database cannot be reached and this key was never read; refusing it"
                );
                Ok(None)
            }
            Outcome::Fault(reason) => Err(ApiError::service(reason)),
        }
    }

    /// Drops the cached answer for a key changed through another node, so the next
    /// request signed with it reads it afresh.
    pub fn forget(&self, key_id: &str) {
        self.lock().remove(key_id);
    }

    /// Drops every cached answer.
    pub fn forget_all(&self) {
        self.lock().clear();
    }

    async fn ask(&self, key_id: &str, budget: Option<Duration>) -> Answer {
        let lookup = self.accounts.credential(key_id);
        let result = match budget {
            Some(budget) => match tokio::time::timeout(budget, lookup).await {
                Ok(result) => result,
                Err(_) => {
                    return Answer::Unreachable(format!("no answer within {budget:?}"));
                }
            },
            None => lookup.await,
        };
        match result {
            Ok(found) => Answer::Found(found),
            Err(e @ StoreError::Unavailable(_)) => Answer::Unreachable(e.to_string()),
            Err(e) => Answer::Failed(e.to_string()),
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<String, Entry>> {
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
            // HTTP/2 carries the host in the request's authority, not in a header.
            match (*name, parts.uri.authority()) {
                ("host", Some(authority)) => headers.push(("host", authority.to_string())),
                _ => return Err(mismatch()),
            }
            continue;
        }
        headers.push((*name, values.join(",")));
    }
    let host = parts
        .headers
        .get("host")
        .and_then(|h| h.to_str().ok())
        .or_else(|| parts.uri.authority().map(|a| a.as_str()))
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
    path == "/metrics"
        || path == "/lamina/ready"
        || path.starts_with("/lamina/code/")
        || path.starts_with("/lambda-url/")
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

    fn key(secret: &str) -> Option<Credential> {
        Some(Credential {
            access_key_id: "AKIDEXAMPLE".into(),
            account_id: "000000000000".into(),
            secret: secret.into(),
        })
    }

    fn entry(checked_at: Instant, credential: Option<Credential>) -> Entry {
        Entry {
            checked_at,
            credential,
        }
    }

    #[test]
    fn a_recent_answer_is_served_without_asking_the_database() {
        let t0 = Instant::now();
        let cached = entry(t0, key("s"));
        let just_before = t0 + KEY_CACHE_TTL - Duration::from_millis(1);
        assert_eq!(plan(Some(&cached), just_before), Plan::Serve(key("s")));
        // An unknown key is remembered as unknown just as long.
        assert_eq!(plan(Some(&entry(t0, None)), just_before), Plan::Serve(None));
    }

    #[test]
    fn an_old_answer_is_checked_within_a_budget_and_a_new_key_waits_for_the_database() {
        let t0 = Instant::now();
        let budgeted = Plan::Ask {
            budget: Some(OUTAGE_LOOKUP_BUDGET),
        };
        assert_eq!(
            plan(Some(&entry(t0, key("s"))), t0 + KEY_CACHE_TTL),
            budgeted
        );
        assert_eq!(plan(Some(&entry(t0, None)), t0 + KEY_CACHE_TTL), budgeted);
        assert_eq!(plan(None, t0), Plan::Ask { budget: None });
    }

    #[test]
    fn the_databases_answer_wins_so_a_revoked_key_stops_within_the_ttl() {
        let t0 = Instant::now();
        let now = t0 + KEY_CACHE_TTL;
        let known = entry(t0, key("s"));
        // Revoked (or deleted) while the database answers: refused from now on.
        assert_eq!(
            settle(Some(&known), Answer::Found(None), now),
            Settled {
                keep: Some(entry(now, None)),
                outcome: Outcome::Current(None),
            }
        );
        // A rotated secret replaces the old one.
        assert_eq!(
            settle(Some(&known), Answer::Found(key("new")), now).outcome,
            Outcome::Current(key("new"))
        );
        // A key created since it was last refused becomes usable.
        assert_eq!(
            settle(Some(&entry(t0, None)), Answer::Found(key("s")), now).outcome,
            Outcome::Current(key("s"))
        );
    }

    #[test]
    fn an_unreachable_database_serves_the_last_answer_and_waits_a_ttl_before_asking_again() {
        let t0 = Instant::now();
        let now = t0 + Duration::from_secs(30);
        for answer in [
            Answer::Unreachable("connection refused".into()),
            Answer::Failed("terminating connection due to administrator command".into()),
        ] {
            let settled = settle(Some(&entry(t0, key("s"))), answer, now);
            assert_eq!(
                settled,
                Settled {
                    keep: Some(entry(now, key("s"))),
                    outcome: Outcome::Stale(key("s")),
                }
            );
            let next = settled.keep.unwrap();
            assert_eq!(
                plan(Some(&next), now + Duration::from_secs(1)),
                Plan::Serve(key("s"))
            );
        }
        // A key known to be unknown or revoked stays refused.
        assert_eq!(
            settle(
                Some(&entry(t0, None)),
                Answer::Unreachable("timed out".into()),
                now
            )
            .outcome,
            Outcome::Stale(None)
        );
    }

    #[test]
    fn a_key_never_read_is_refused_during_an_outage_and_a_real_fault_is_the_platforms() {
        let now = Instant::now();
        assert_eq!(
            settle(None, Answer::Unreachable("pool timed out".into()), now),
            Settled {
                keep: None,
                outcome: Outcome::UnknownDuringOutage,
            }
        );
        assert_eq!(
            settle(None, Answer::Failed("corrupt".into()), now),
            Settled {
                keep: None,
                outcome: Outcome::Fault("corrupt".into()),
            }
        );
    }

    #[test]
    fn a_purge_drops_only_stale_unknown_keys() {
        let t0 = Instant::now();
        let later = t0 + KEY_CACHE_TTL * 100;
        assert!(worth_keeping(&entry(t0, key("s")), later));
        assert!(!worth_keeping(&entry(t0, None), later));
        assert!(worth_keeping(&entry(later, None), later));
    }
}

//! The node's one S3 client: code fetched from users' buckets at deploy time (with
//! Lambda's wording for every failure), and the bucket a cluster may keep its sealed
//! packages in. Any S3-compatible store: a custom endpoint, path-style addressing by
//! default, checksums only where the protocol requires them (several stores reject the
//! SDK's default ones), TLS with the system roots plus an optional CA bundle.

use std::path::{Path, PathBuf};
use std::time::Duration;

use aws_config::meta::credentials::CredentialsProviderChain;
use aws_sdk_s3::config::{
    BehaviorVersion, Credentials, Region, RequestChecksumCalculation, ResponseChecksumValidation,
    SharedCredentialsProvider, timeout::TimeoutConfig,
};
use aws_sdk_s3::error::{DisplayErrorContext, ProvideErrorMetadata, SdkError};

use aws_sdk_s3::primitives::ByteStream;
use aws_smithy_http_client::tls;
use sha2::{Digest, Sha256};
use tokio::io::AsyncWriteExt;

use crate::error::PackageError;

/// How a node reaches its S3 endpoint.
#[derive(Debug, Clone, Default)]
pub struct S3Config {
    /// The endpoint URL; AWS's own endpoint for `region` when absent.
    pub endpoint: Option<String>,
    pub region: String,
    /// Explicit credentials; the AWS environment variables and the shared credentials
    /// file otherwise.
    pub access_key: Option<(String, String)>,
    /// Bucket names as host names (`bucket.host`) instead of in the path.
    pub virtual_hosted: bool,
    /// PEM roots trusted besides the system's.
    pub ca_bundle: Option<PathBuf>,
}

/// An object a function's code comes from (`S3Bucket`, `S3Key`, `S3ObjectVersion`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct S3Location {
    pub bucket: String,
    pub key: String,
    pub version: Option<String>,
}

/// What a fetch wrote: the object's SHA-256, its size and its first bytes.
#[derive(Debug)]
pub(crate) struct Fetched {
    pub sha256: [u8; 32],
    pub size: u64,
    pub head: Vec<u8>,
}

/// The S3 client of one node.
#[derive(Debug, Clone)]
pub struct S3 {
    client: aws_sdk_s3::Client,
    endpoint: String,
}

impl S3 {
    pub fn new(config: &S3Config) -> Result<S3, PackageError> {
        let mut trust = tls::TrustStore::default();
        if let Some(path) = &config.ca_bundle {
            let pem = std::fs::read(path).map_err(|e| {
                PackageError::platform(&format!("reading the S3 CA bundle {}", path.display()), e)
            })?;
            trust = trust.with_pem_certificate(pem);
        }
        let tls_context = tls::TlsContext::builder()
            .with_trust_store(trust)
            .build()
            .map_err(|e| PackageError::platform("the S3 endpoint's TLS settings", e))?;
        let http = aws_smithy_http_client::Builder::new()
            .tls_provider(tls::Provider::Rustls(
                tls::rustls_provider::CryptoMode::Ring,
            ))
            .tls_context(tls_context)
            .build_https();
        let credentials = match &config.access_key {
            Some((id, secret)) => SharedCredentialsProvider::new(Credentials::new(
                id,
                secret,
                None,
                None,
                "lamina-flags",
            )),
            None => SharedCredentialsProvider::new(
                CredentialsProviderChain::first_try(
                    "Environment",
                    aws_config::environment::credentials::EnvironmentVariableCredentialsProvider::new(),
                )
                .or_else(
                    "Profile",
                    // A profile may name another source (a role, instance metadata):
                    // those reach the network through this node's client.
                    aws_config::profile::ProfileFileCredentialsProvider::builder()
                        .configure(
                            &aws_config::provider_config::ProviderConfig::default()
                                .with_http_client(http.clone())
                                .with_region(Some(Region::new(config.region.clone()))),
                        )
                        .build(),
                ),
            ),
        };
        let mut builder = aws_sdk_s3::Config::builder()
            .behavior_version(BehaviorVersion::latest())
            .region(Region::new(config.region.clone()))
            .credentials_provider(credentials)
            .force_path_style(!config.virtual_hosted)
            .request_checksum_calculation(RequestChecksumCalculation::WhenRequired)
            .response_checksum_validation(ResponseChecksumValidation::WhenRequired)
            .http_client(http)
            .timeout_config(
                TimeoutConfig::builder()
                    .connect_timeout(Duration::from_secs(5))
                    .read_timeout(Duration::from_secs(30))
                    .build(),
            );
        if let Some(endpoint) = &config.endpoint {
            builder = builder.endpoint_url(endpoint);
        }
        Ok(S3 {
            client: aws_sdk_s3::Client::from_conf(builder.build()),
            endpoint: config
                .endpoint
                .clone()
                .unwrap_or_else(|| format!("https://s3.{}.amazonaws.com", config.region)),
        })
    }

    /// Copies a user's object to `dest`, refusing it before its body is read when it
    /// declares more than `max_bytes`, and while reading when it sends more.
    pub(crate) async fn fetch_code(
        &self,
        location: &S3Location,
        max_bytes: u64,
        too_large: impl Fn() -> PackageError,
        dest: &Path,
    ) -> Result<Fetched, PackageError> {
        let response = self
            .client
            .get_object()
            .bucket(&location.bucket)
            .key(&location.key)
            .set_version_id(location.version.clone())
            .send()
            .await
            .map_err(|e| self.get_object_error(location, e))?;
        if response
            .content_length()
            .is_some_and(|n| u64::try_from(n).unwrap_or(0) > max_bytes)
        {
            return Err(too_large());
        }
        let declared = response.content_length();
        let mut body = response.body;
        let mut file = tokio::fs::File::create(dest).await?;
        let mut hasher = Sha256::new();
        let mut size = 0u64;
        let mut head = Vec::with_capacity(16);
        loop {
            let chunk = match body.try_next().await {
                Ok(Some(chunk)) => chunk,
                Ok(None) => break,
                Err(e) => {
                    return Err(PackageError::Invalid(format!(
                        "Error occurred while GetObject. S3 Error Code: ServiceUnavailable. S3 Error Message: the download from {} broke off after {size} of {} bytes: {}",
                        self.endpoint,
                        declared.map_or_else(|| "?".into(), |n| n.to_string()),
                        root_cause(&e)
                    )));
                }
            };
            size += chunk.len() as u64;
            if size > max_bytes {
                return Err(too_large());
            }
            if head.len() < 16 {
                let take = (16 - head.len()).min(chunk.len());
                head.extend_from_slice(&chunk[..take]);
            }
            hasher.update(&chunk);
            file.write_all(&chunk).await?;
        }
        file.flush().await?;
        Ok(Fetched {
            sha256: hasher.finalize().into(),
            size,
            head,
        })
    }

    fn get_object_error(
        &self,
        location: &S3Location,
        error: SdkError<aws_sdk_s3::operation::get_object::GetObjectError>,
    ) -> PackageError {
        match &error {
            SdkError::ServiceError(service) => {
                let e = service.err();
                let code = e.code().unwrap_or(match service.raw().status().as_u16() {
                    403 => "AccessDenied",
                    404 => "NoSuchKey",
                    _ => "InternalError",
                });
                PackageError::Invalid(s3_code_message(location, code, e.message()))
            }
            SdkError::DispatchFailure(_) | SdkError::TimeoutError(_) => {
                unreachable(&self.endpoint, &root_cause(&error))
            }
            _ => PackageError::Invalid(format!(
                "Error occurred while GetObject. S3 Error Code: InvalidRequest. S3 Error Message: {}",
                root_cause(&error)
            )),
        }
    }

    /// Whether `bucket/key` exists (the code store's check before an upload).
    pub(crate) async fn exists(&self, bucket: &str, key: &str) -> Result<bool, PackageError> {
        match self
            .client
            .head_object()
            .bucket(bucket)
            .key(key)
            .send()
            .await
        {
            Ok(_) => Ok(true),
            Err(SdkError::ServiceError(e)) if e.raw().status().as_u16() == 404 => Ok(false),
            Err(e) => Err(self.store_error("looking up", bucket, key, e)),
        }
    }

    /// Uploads a file to the code store.
    pub(crate) async fn put_file(
        &self,
        bucket: &str,
        key: &str,
        path: &Path,
    ) -> Result<(), PackageError> {
        let body = ByteStream::from_path(path)
            .await
            .map_err(|e| PackageError::platform("reading a sealed package", e))?;
        self.client
            .put_object()
            .bucket(bucket)
            .key(key)
            .body(body)
            .send()
            .await
            .map_err(|e| self.store_error("storing", bucket, key, e))?;
        Ok(())
    }

    /// Downloads from the code store to `dest`; false when the object does not exist.
    pub(crate) async fn get_file(
        &self,
        bucket: &str,
        key: &str,
        dest: &Path,
    ) -> Result<bool, PackageError> {
        let response = match self
            .client
            .get_object()
            .bucket(bucket)
            .key(key)
            .send()
            .await
        {
            Ok(r) => r,
            Err(SdkError::ServiceError(e)) if e.raw().status().as_u16() == 404 => return Ok(false),
            Err(e) => return Err(self.store_error("fetching", bucket, key, e)),
        };
        let mut body = response.body;
        let mut file = tokio::fs::File::create(dest).await?;
        while let Some(chunk) = body.try_next().await.map_err(|e| {
            PackageError::platform(
                &format!("fetching s3://{bucket}/{key} from the code store"),
                e,
            )
        })? {
            file.write_all(&chunk).await?;
        }
        file.flush().await?;
        Ok(true)
    }

    fn store_error<E, R>(
        &self,
        doing: &str,
        bucket: &str,
        key: &str,
        e: SdkError<E, R>,
    ) -> PackageError
    where
        E: std::error::Error + 'static,
        R: std::fmt::Debug,
    {
        PackageError::Platform(format!(
            "{doing} s3://{bucket}/{key} in the code store at {}: {}",
            self.endpoint,
            DisplayErrorContext(&e)
        ))
    }
}

/// Lambda's message for an S3 error code; the codes Lambda users meet most get AWS's own
/// wording, whatever the store said, so messages match Lambda's exactly.
fn s3_code_message(location: &S3Location, code: &str, message: Option<&str>) -> String {
    let canonical = match code {
        "NoSuchKey" => Some("The specified key does not exist."),
        "NoSuchBucket" => Some("The specified bucket does not exist"),
        "NoSuchVersion" => Some("The specified version does not exist."),
        "AccessDenied" => return access_denied_message(location),
        _ => None,
    };
    let message = canonical.or(message).unwrap_or("");
    format!("Error occurred while GetObject. S3 Error Code: {code}. S3 Error Message: {message}")
}

/// The innermost cause of an SDK error ("Connection refused (os error 111)", "invalid
/// peer certificate: UnknownIssuer"): what a client can act on, without the SDK's
/// internals around it.
fn root_cause(error: &(dyn std::error::Error + 'static)) -> String {
    let mut cause = error;
    while let Some(next) = cause.source() {
        cause = next;
    }
    let text = cause.to_string();
    if text.is_empty() || text.contains('{') {
        "the connection failed".to_owned()
    } else {
        text
    }
}

/// Lambda's message when S3 refuses the object to the caller.
pub(crate) fn access_denied_message(location: &S3Location) -> String {
    format!(
        "Your access has been denied by S3, please make sure your request credentials have permission to GetObject for {}/{}. S3 Error Code: AccessDenied. S3 Error Message: Access Denied",
        location.bucket, location.key
    )
}

fn unreachable(endpoint: &str, cause: &str) -> PackageError {
    PackageError::Invalid(format!(
        "Error occurred while GetObject. S3 Error Code: ServiceUnavailable. S3 Error Message: Lamina could not reach the S3 endpoint {endpoint}: {cause}"
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn location() -> S3Location {
        S3Location {
            bucket: "models".into(),
            key: "m.onnx".into(),
            version: None,
        }
    }

    #[test]
    fn well_known_codes_get_aws_wording_whatever_the_store_said() {
        assert_eq!(
            s3_code_message(&location(), "NoSuchKey", Some("not here")),
            "Error occurred while GetObject. S3 Error Code: NoSuchKey. S3 Error Message: The specified key does not exist."
        );
        assert_eq!(
            s3_code_message(&location(), "AccessDenied", None),
            "Your access has been denied by S3, please make sure your request credentials have permission to GetObject for models/m.onnx. S3 Error Code: AccessDenied. S3 Error Message: Access Denied"
        );
        assert_eq!(
            s3_code_message(
                &location(),
                "SlowDown",
                Some("Please reduce your request rate.")
            ),
            "Error occurred while GetObject. S3 Error Code: SlowDown. S3 Error Message: Please reduce your request rate."
        );
    }
}

//! What the catalog persists about functions, as plain data.

use std::collections::BTreeMap;
use std::sync::{Arc, OnceLock};

use serde::{Deserialize, Serialize};

/// The configuration of one function version: everything UpdateFunctionConfiguration
/// and UpdateFunctionCode can change. Stored as JSON; published versions never change.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct VersionConfig {
    pub runtime: String,
    pub handler: String,
    pub role: String,
    pub description: String,
    pub timeout: u32,
    pub memory_size: u32,
    pub environment: BTreeMap<String, String>,
    pub ephemeral_storage: u32,
    pub architectures: Vec<String>,
    pub package_type: String,
    /// Lowercase hex SHA-256 of the deployment zip.
    pub code_sha256: String,
    pub code_size: u64,
    /// How the guest talks to the host (`handler`, `command`, `http`, `model`).
    pub guest_kind: String,
    pub tracing_mode: String,
    pub dead_letter_target: Option<String>,
    pub snap_start: bool,
    pub log_format: String,
    pub kms_key_arn: Option<String>,
    /// The layers mounted under `/opt`, in order. A version keeps its layers' packages
    /// even after their layer versions are deleted, as Lambda keeps a copy.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub layers: Vec<FunctionLayer>,
}

/// One layer of a function version.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct FunctionLayer {
    /// The layer version's ARN (`LayerVersionArn`).
    pub arn: String,
    /// Lowercase hex SHA-256 of the layer's zip.
    pub code_sha256: String,
    pub code_size: u64,
}

/// One stored version ($LATEST or a number).
#[derive(Debug, Serialize, Deserialize)]
pub struct VersionRecord {
    pub version: String,
    pub config: VersionConfig,
    pub revision_id: String,
    pub last_modified_ms: i64,
    /// The execution spec built from this record, made once on first use.
    #[serde(skip)]
    pub(crate) spec: OnceLock<protocol::SharedSpec>,
}

impl Clone for VersionRecord {
    fn clone(&self) -> Self {
        VersionRecord {
            version: self.version.clone(),
            config: self.config.clone(),
            revision_id: self.revision_id.clone(),
            last_modified_ms: self.last_modified_ms,
            spec: OnceLock::new(),
        }
    }
}

impl PartialEq for VersionRecord {
    fn eq(&self, other: &Self) -> bool {
        self.version == other.version
            && self.config == other.config
            && self.revision_id == other.revision_id
            && self.last_modified_ms == other.last_modified_ms
    }
}

impl VersionRecord {
    pub fn new(version: impl Into<String>, config: VersionConfig, last_modified_ms: i64) -> Self {
        VersionRecord {
            version: version.into(),
            config,
            revision_id: uuid::Uuid::new_v4().to_string(),
            last_modified_ms,
            spec: OnceLock::new(),
        }
    }

    /// The numeric version, or None for $LATEST.
    pub fn number(&self) -> Option<u64> {
        self.version.parse().ok()
    }
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct AliasRecord {
    pub name: String,
    pub function_version: String,
    pub description: String,
    /// AdditionalVersionWeights: at most one other version and its share of traffic.
    pub routing: BTreeMap<String, f64>,
    pub revision_id: String,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct UrlConfigRecord {
    pub url_id: String,
    pub account_id: String,
    pub function_name: String,
    /// `$LATEST` or an alias name.
    pub qualifier: String,
    pub auth_type: String,
    /// The Cors object as the client sent it (JSON).
    pub cors: serde_json::Value,
    pub invoke_mode: String,
    pub created_at_ms: i64,
    pub last_modified_ms: i64,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ProvisionedRecord {
    pub qualifier: String,
    pub requested: u32,
    pub last_modified_ms: i64,
}

/// PutFunctionEventInvokeConfig's settings for one qualifier.
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
pub struct EventInvokeConfig {
    pub maximum_retry_attempts: Option<u32>,
    pub maximum_event_age_in_seconds: Option<u32>,
    pub on_success: Option<String>,
    pub on_failure: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct EventInvokeRecord {
    pub qualifier: String,
    pub config: EventInvokeConfig,
    pub last_modified_ms: i64,
}

/// One resource-policy statement (AddPermission).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct PolicyStatement {
    pub qualifier: String,
    pub statement_id: String,
    pub statement: serde_json::Value,
}

/// A function and everything attached to it. Immutable: the catalog replaces the whole
/// entry on every change, so readers hold a consistent view without locks.
#[derive(Debug, Clone, PartialEq)]
pub struct FunctionEntry {
    pub account_id: String,
    pub name: String,
    pub created_at_ms: i64,
    pub reserved_concurrency: Option<u32>,
    pub next_version: u64,
    pub tags: BTreeMap<String, String>,
    pub latest: Arc<VersionRecord>,
    pub versions: BTreeMap<u64, Arc<VersionRecord>>,
    pub aliases: BTreeMap<String, Arc<AliasRecord>>,
    pub urls: BTreeMap<String, Arc<UrlConfigRecord>>,
    pub provisioned: BTreeMap<String, ProvisionedRecord>,
    pub event_configs: BTreeMap<String, EventInvokeRecord>,
    pub policy: Vec<PolicyStatement>,
}

/// Whether a statement's `Condition` block holds: absent, or only a URL auth type that
/// matches the call's.
fn conditions_hold(condition: &serde_json::Value, url_auth_type: Option<&str>) -> bool {
    match condition {
        serde_json::Value::Null => true,
        serde_json::Value::Object(c) => {
            c.len() == 1
                && c.get("StringEquals").is_some_and(|eq| {
                    eq.as_object().is_some_and(|m| m.len() == 1)
                        && url_auth_type.is_some()
                        && eq["lambda:FunctionUrlAuthType"].as_str() == url_auth_type
                })
        }
        _ => false,
    }
}

impl FunctionEntry {
    /// Whether a resource-policy statement lets `caller_account` invoke this function
    /// through `qualifier` (a statement on the unqualified function covers every
    /// qualifier, as a grant on the function does in Lambda).
    pub fn grants_invoke(&self, caller_account: &str, qualifier: Option<&str>) -> bool {
        self.grants(caller_account, qualifier, "lambda:InvokeFunction", None)
    }

    /// Whether a statement lets `caller_account` call an AWS_IAM function URL. The one
    /// condition understood is `lambda:FunctionUrlAuthType`, which AddPermission sets.
    pub fn grants_invoke_url(&self, caller_account: &str, qualifier: Option<&str>) -> bool {
        self.grants(
            caller_account,
            qualifier,
            "lambda:InvokeFunctionUrl",
            Some("AWS_IAM"),
        )
    }

    /// Conditions other than the URL auth type (source ARN or account) name AWS services
    /// that do not exist here, so a statement carrying them grants nothing.
    fn grants(
        &self,
        caller_account: &str,
        qualifier: Option<&str>,
        wanted: &str,
        url_auth_type: Option<&str>,
    ) -> bool {
        let caller_root = format!("arn:aws:iam::{caller_account}:root");
        self.policy.iter().any(|p| {
            let s = &p.statement;
            let action = s["Action"].as_str().unwrap_or_default();
            let principal_matches = match &s["Principal"] {
                serde_json::Value::String(any) => any == "*",
                other => other["AWS"]
                    .as_str()
                    .is_some_and(|a| a == caller_root || a == caller_account),
            };
            let scope_matches = p.qualifier.is_empty() || Some(p.qualifier.as_str()) == qualifier;
            s["Effect"] == "Allow"
                && (action == wanted || action == "lambda:*")
                && principal_matches
                && scope_matches
                && conditions_hold(&s["Condition"], url_auth_type)
        })
    }

    /// The version a qualifier names for reading configuration: `$LATEST`, a number, or
    /// an alias's primary version.
    pub fn version_for_read(&self, qualifier: &str) -> Option<&Arc<VersionRecord>> {
        self.version(qualifier).or_else(|| {
            let alias = self.aliases.get(qualifier)?;
            self.version(&alias.function_version)
        })
    }

    /// The version an invocation of `qualifier` runs. For an alias with routing, a
    /// `draw` (uniform in [0, 1)) below the additional version's weight selects it.
    pub fn version_for_invoke(&self, qualifier: &str, draw: f64) -> Option<&Arc<VersionRecord>> {
        if let Some(v) = self.version(qualifier) {
            return Some(v);
        }
        let alias = self.aliases.get(qualifier)?;
        let chosen = match alias.routing.iter().next() {
            Some((extra, weight)) if draw < *weight => extra.as_str(),
            _ => alias.function_version.as_str(),
        };
        self.version(chosen)
    }

    /// The version a qualifier names directly: `$LATEST` or a number (not an alias).
    pub fn version(&self, qualifier: &str) -> Option<&Arc<VersionRecord>> {
        if qualifier == protocol::names::LATEST {
            Some(&self.latest)
        } else {
            qualifier
                .parse::<u64>()
                .ok()
                .and_then(|n| self.versions.get(&n))
        }
    }
}

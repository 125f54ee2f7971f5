//! Lambda's response shapes, built from catalog records, with the model's exact field
//! names and formats.

use serde_json::{Map, Value, json};
use store::{AliasRecord, EventInvokeRecord, FunctionEntry, UrlConfigRecord, VersionRecord};

use crate::state::AppState;

/// `2020-04-10T19:06:32.563+0000`, the format of FunctionConfiguration.LastModified.
pub fn lambda_time(ms: i64) -> String {
    chrono::DateTime::from_timestamp_millis(ms)
        .unwrap_or_default()
        .format("%Y-%m-%dT%H:%M:%S%.3f+0000")
        .to_string()
}

/// ISO 8601 with `Z`, as URL configs report CreationTime and LastModifiedTime.
pub fn iso_time(ms: i64) -> String {
    chrono::DateTime::from_timestamp_millis(ms)
        .unwrap_or_default()
        .format("%Y-%m-%dT%H:%M:%S%.6fZ")
        .to_string()
}

/// Base64 of the zip's SHA-256, as Lambda reports CodeSha256.
pub fn code_sha256_b64(hex_digest: &str) -> String {
    use base64::Engine as _;
    let bytes = hex::decode(hex_digest).unwrap_or_default();
    base64::engine::general_purpose::STANDARD.encode(bytes)
}

/// How much of FunctionConfiguration a response carries.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Detail {
    /// GetFunction, CreateFunction and friends: with State and LastUpdateStatus.
    Full,
    /// ListFunctions and ListVersionsByFunction items omit the state fields.
    ListItem,
}

pub fn function_configuration(
    state: &AppState,
    entry: &FunctionEntry,
    version: &VersionRecord,
    qualified_arn: bool,
    detail: Detail,
) -> Value {
    let c = &version.config;
    let arn = if qualified_arn {
        state
            .arns
            .qualified(&entry.account_id, &entry.name, &version.version)
    } else {
        state.arns.function(&entry.account_id, &entry.name)
    };
    let mut v = json!({
        "FunctionName": entry.name,
        "FunctionArn": arn,
        "Runtime": c.runtime,
        "Role": c.role,
        "Handler": c.handler,
        "CodeSize": c.code_size,
        "Description": c.description,
        "Timeout": c.timeout,
        "MemorySize": c.memory_size,
        "LastModified": lambda_time(version.last_modified_ms),
        "CodeSha256": code_sha256_b64(&c.code_sha256),
        "Version": version.version,
        "TracingConfig": {"Mode": c.tracing_mode},
        "RevisionId": version.revision_id,
        "PackageType": c.package_type,
        "Architectures": c.architectures,
        "EphemeralStorage": {"Size": c.ephemeral_storage},
        "SnapStart": {
            "ApplyOn": if c.snap_start { "PublishedVersions" } else { "None" },
            "OptimizationStatus": if c.snap_start && version.version != protocol::names::LATEST { "On" } else { "Off" },
        },
        "LoggingConfig": {
            "LogFormat": c.log_format,
            "LogGroup": format!("/aws/lambda/{}", entry.name),
        },
    });
    let obj = v.as_object_mut().expect("a JSON object literal");
    if !c.environment.is_empty() {
        obj.insert("Environment".into(), json!({ "Variables": c.environment }));
    }
    if let Some(target) = &c.dead_letter_target {
        obj.insert("DeadLetterConfig".into(), json!({ "TargetArn": target }));
    }
    if !c.layers.is_empty() {
        let layers: Vec<Value> = c
            .layers
            .iter()
            .map(|l| json!({ "Arn": l.arn, "CodeSize": l.code_size }))
            .collect();
        obj.insert("Layers".into(), Value::Array(layers));
    }
    if let Some(kms) = &c.kms_key_arn {
        obj.insert("KMSKeyArn".into(), Value::String(kms.clone()));
    }
    if detail == Detail::Full {
        obj.insert("State".into(), "Active".into());
        obj.insert("LastUpdateStatus".into(), "Successful".into());
        obj.insert(
            "RuntimeVersionConfig".into(),
            json!({ "RuntimeVersionArn": format!(
                "arn:aws:lambda:{}::runtime:lamina-{}", state.config.region, c.runtime
            ) }),
        );
    }
    v
}

pub fn alias_configuration(state: &AppState, entry: &FunctionEntry, alias: &AliasRecord) -> Value {
    let mut v = json!({
        "AliasArn": state.arns.qualified(&entry.account_id, &entry.name, &alias.name),
        "Name": alias.name,
        "FunctionVersion": alias.function_version,
        "Description": alias.description,
        "RevisionId": alias.revision_id,
    });
    if !alias.routing.is_empty()
        && let Some(obj) = v.as_object_mut()
    {
        obj.insert(
            "RoutingConfig".into(),
            json!({ "AdditionalVersionWeights": alias.routing }),
        );
    }
    v
}

pub fn url_configuration(state: &AppState, entry: &FunctionEntry, url: &UrlConfigRecord) -> Value {
    let arn = if url.qualifier == protocol::names::LATEST {
        state.arns.function(&entry.account_id, &entry.name)
    } else {
        state
            .arns
            .qualified(&entry.account_id, &entry.name, &url.qualifier)
    };
    let mut v = json!({
        "FunctionUrl": state.function_url(&url.url_id),
        "FunctionArn": arn,
        "AuthType": url.auth_type,
        "CreationTime": iso_time(url.created_at_ms),
        "LastModifiedTime": iso_time(url.last_modified_ms),
        "InvokeMode": url.invoke_mode,
    });
    if let (Some(obj), Value::Object(cors)) = (v.as_object_mut(), &url.cors)
        && !cors.is_empty()
    {
        obj.insert("Cors".into(), Value::Object(cors.clone()));
    }
    v
}

pub fn event_invoke_configuration(
    state: &AppState,
    entry: &FunctionEntry,
    record: &EventInvokeRecord,
) -> Value {
    let mut destinations = Map::new();
    if let Some(d) = &record.config.on_success {
        destinations.insert("OnSuccess".into(), json!({ "Destination": d }));
    }
    if let Some(d) = &record.config.on_failure {
        destinations.insert("OnFailure".into(), json!({ "Destination": d }));
    }
    let mut v = json!({
        "LastModified": record.last_modified_ms as f64 / 1000.0,
        "FunctionArn": state.arns.qualified(&entry.account_id, &entry.name, &record.qualifier),
        "DestinationConfig": Value::Object(destinations),
    });
    if let Some(obj) = v.as_object_mut() {
        if let Some(n) = record.config.maximum_retry_attempts {
            obj.insert("MaximumRetryAttempts".into(), n.into());
        }
        if let Some(n) = record.config.maximum_event_age_in_seconds {
            obj.insert("MaximumEventAgeInSeconds".into(), n.into());
        }
    }
    v
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn formats_match_lambda() {
        assert_eq!(
            lambda_time(1_586_545_592_563),
            "2020-04-10T19:06:32.563+0000"
        );
        assert_eq!(
            code_sha256_b64("605803804286dee82f175fa95fae2057ab6ef6a36e218354760266f270b1b26e"),
            "YFgDgEKG3ugvF1+pX64gV6tu9qNuIYNUdgJm8nCxsm4="
        );
    }
}

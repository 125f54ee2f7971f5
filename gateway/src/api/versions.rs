//! PublishVersion, ListVersionsByFunction and the alias operations.

use std::collections::BTreeMap;

use axum::Json;
use axum::extract::{Path, Query, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use bytes::Bytes;
use serde::Deserialize;
use serde_json::Value;
use store::{AliasRecord, CatalogError};

use super::request::{listing, parse_body};
use crate::auth::Caller;
use crate::error::{About, ApiError, catalog};
use crate::state::AppState;
use crate::wire::{Detail, alias_configuration, function_configuration};

#[derive(Debug, Deserialize, Default)]
#[serde(rename_all = "PascalCase")]
struct Publish {
    code_sha256: Option<String>,
    description: Option<String>,
    revision_id: Option<String>,
}

pub async fn publish(
    State(state): State<AppState>,
    caller: Caller,
    Path(name): Path<String>,
    body: Bytes,
) -> Result<Response, ApiError> {
    let req: Publish = if body.is_empty() {
        Publish::default()
    } else {
        parse_body(&body)?
    };
    let r = state.resolve(&caller.account_id, &name, None)?;
    // Clients send CodeSha256 as Lambda reports it: base64 of the digest.
    let expected = req.code_sha256.as_deref().map(|b64| {
        use base64::Engine as _;
        base64::engine::general_purpose::STANDARD
            .decode(b64)
            .map(hex::encode)
            .unwrap_or_else(|_| b64.to_owned())
    });
    let (version, entry) = state
        .catalog
        .publish_version(
            &caller.account_id,
            &r.entry.name,
            expected.as_deref(),
            req.revision_id.as_deref(),
            req.description.as_deref(),
        )
        .await
        .map_err(|e| {
            let arn = state.arns.function(&r.entry.account_id, &r.entry.name);
            let about = About {
                code_sha256: req.code_sha256.as_deref(),
                ..About::arn(&arn)
            };
            catalog(e, about)
        })?;
    if version.config.snap_start {
        // INIT runs now, once; the version's environments restore what it built. A guest
        // that cannot be snapshotted runs INIT per environment, as without SnapStart.
        let spec = state.catalog.spec(&entry, &version);
        match state.scheduler.backend().snapshot(spec).await {
            Ok(info) => tracing::debug!(
                function = %r.entry.name,
                version = %version.version,
                init_ms = info.init_duration.as_secs_f64() * 1000.0,
                "SnapStart snapshot ready"
            ),
            Err(e) => tracing::warn!(
                function = %r.entry.name,
                version = %version.version,
                error = %e,
                "SnapStart: environments of this version will run INIT"
            ),
        }
    }
    let body = function_configuration(&state, &entry, &version, true, Detail::Full);
    Ok((StatusCode::CREATED, Json(body)).into_response())
}

#[derive(Debug, Deserialize)]
pub struct PageQuery {
    #[serde(rename = "Marker")]
    marker: Option<String>,
    #[serde(rename = "MaxItems")]
    max_items: Option<usize>,
    #[serde(rename = "FunctionVersion")]
    function_version: Option<String>,
}

pub async fn list_versions(
    State(state): State<AppState>,
    caller: Caller,
    Path(name): Path<String>,
    Query(q): Query<PageQuery>,
) -> Result<Json<Value>, ApiError> {
    let r = state.resolve(&caller.account_id, &name, None)?;
    let e = &r.entry;
    let mut items = vec![function_configuration(
        &state,
        e,
        &e.latest,
        true,
        Detail::ListItem,
    )];
    items.extend(
        e.versions
            .values()
            .map(|v| function_configuration(&state, e, v, true, Detail::ListItem)),
    );
    Ok(Json(listing(
        "Versions",
        items,
        q.marker.as_deref(),
        q.max_items,
    )?))
}

#[derive(Debug, Deserialize, Default)]
#[serde(rename_all = "PascalCase")]
struct RoutingInput {
    #[serde(default)]
    additional_version_weights: BTreeMap<String, f64>,
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "PascalCase")]
struct AliasInput {
    name: Option<String>,
    function_version: Option<String>,
    description: Option<String>,
    routing_config: Option<RoutingInput>,
    revision_id: Option<String>,
}

/// A routing weight as Lambda's validation messages print it (Java's `Double`): `2.0`,
/// `-1.0`, `0.25`.
fn java_double(v: f64) -> String {
    if v.is_finite() && v.fract() == 0.0 && v.abs() < 1e7 {
        format!("{v:.1}")
    } else {
        format!("{v}")
    }
}

/// Checks an alias's target and routing as Lambda does, in Lambda's order, so the first
/// problem reported is the one Lambda reports.
fn check_alias(
    state: &AppState,
    entry: &store::FunctionEntry,
    version: &str,
    routing: &BTreeMap<String, f64>,
) -> Result<(), ApiError> {
    let exists = |v: &str| entry.version(v).is_some();
    let missing = |v: &str| {
        ApiError::ResourceNotFound(format!(
            "Function not found: {}",
            state.arns.qualified(&entry.account_id, &entry.name, v)
        ))
    };
    if !exists(version) {
        return Err(missing(version));
    }
    if routing.len() > 1 {
        return Err(ApiError::InvalidParameterValue(
            "Number of items in AdditionalVersionWeights cannot be greater than 1".into(),
        ));
    }
    for (v, weight) in routing {
        let shown = format!("{{{v}={}}}", java_double(*weight));
        if !(0.0..=1.0).contains(weight) {
            return Err(crate::validate::constraint(
                &shown,
                "routingConfig.additionalVersionWeights",
                "Map value must satisfy constraint: [Member must have value less than or equal to 1.0, Member must have value greater than or equal to 0.0, Member must not be null]",
            ));
        }
        if v == version {
            return Err(ApiError::InvalidParameterValue(format!(
                "Invalid function version {version}. Function version {version} is already included in routing configuration."
            )));
        }
        if version == protocol::names::LATEST {
            return Err(ApiError::InvalidParameterValue(
                "$LATEST is not supported for an alias pointing to more than 1 version".into(),
            ));
        }
        if !protocol::names::is_version_number(v) {
            return Err(crate::validate::constraint(
                &shown,
                "routingConfig.additionalVersionWeights",
                "Map keys must satisfy constraint: [Member must have length less than or equal to 1024, Member must have length greater than or equal to 1, Member must satisfy regular expression pattern: [0-9]+]",
            ));
        }
        if !exists(v) {
            return Err(missing(v));
        }
    }
    Ok(())
}

fn alias_arn(state: &AppState, entry: &store::FunctionEntry, alias: &str) -> String {
    state.arns.qualified(&entry.account_id, &entry.name, alias)
}

fn alias_not_found(state: &AppState, entry: &store::FunctionEntry, alias: &str) -> ApiError {
    let arn = alias_arn(state, entry, alias);
    catalog(CatalogError::AliasNotFound, About::arn(&arn))
}

pub async fn create_alias(
    State(state): State<AppState>,
    caller: Caller,
    Path(name): Path<String>,
    body: Bytes,
) -> Result<Response, ApiError> {
    let req: AliasInput = parse_body(&body)?;
    let r = state.resolve(&caller.account_id, &name, None)?;
    let alias_name = req.name.unwrap_or_default();
    if !protocol::names::is_valid_alias_name(&alias_name) {
        return Err(crate::validate::constraint(
            &alias_name,
            "name",
            "Member must satisfy regular expression pattern: (?!^[0-9]+$)([a-zA-Z0-9-_]+)",
        ));
    }
    let version = req.function_version.unwrap_or_default();
    if r.entry.version(&version).is_some() && r.entry.aliases.contains_key(&alias_name) {
        let arn = alias_arn(&state, &r.entry, &alias_name);
        return Err(catalog(CatalogError::AliasExists, About::arn(&arn)));
    }
    let routing = req
        .routing_config
        .map(|r| r.additional_version_weights)
        .unwrap_or_default();
    check_alias(&state, &r.entry, &version, &routing)?;
    let record = AliasRecord {
        name: alias_name.clone(),
        function_version: version,
        description: req.description.unwrap_or_default(),
        routing,
        revision_id: uuid::Uuid::new_v4().to_string(),
    };
    let alias = state
        .catalog
        .put_alias(&caller.account_id, &r.entry.name, record, true, None)
        .await
        .map_err(|e| catalog(e, About::arn(&alias_arn(&state, &r.entry, &alias_name))))?;
    let body = alias_configuration(&state, &r.entry, &alias);
    Ok((StatusCode::CREATED, Json(body)).into_response())
}

pub async fn get_alias(
    State(state): State<AppState>,
    caller: Caller,
    Path((name, alias)): Path<(String, String)>,
) -> Result<Json<Value>, ApiError> {
    let r = state.resolve(&caller.account_id, &name, None)?;
    let a = r.entry.aliases.get(&alias).ok_or_else(|| {
        ApiError::ResourceNotFound(format!(
            "Cannot find alias arn: {}",
            state
                .arns
                .qualified(&r.entry.account_id, &r.entry.name, &alias)
        ))
    })?;
    Ok(Json(alias_configuration(&state, &r.entry, a)))
}

pub async fn update_alias(
    State(state): State<AppState>,
    caller: Caller,
    Path((name, alias)): Path<(String, String)>,
    body: Bytes,
) -> Result<Json<Value>, ApiError> {
    let req: AliasInput = parse_body(&body)?;
    let r = state.resolve(&caller.account_id, &name, None)?;
    let current = r
        .entry
        .aliases
        .get(&alias)
        .cloned()
        .ok_or_else(|| alias_not_found(&state, &r.entry, &alias))?;
    let version = req
        .function_version
        .unwrap_or_else(|| current.function_version.clone());
    let routing = match req.routing_config {
        Some(rc) => rc.additional_version_weights,
        None => current.routing.clone(),
    };
    check_alias(&state, &r.entry, &version, &routing)?;
    let record = AliasRecord {
        name: alias.clone(),
        function_version: version,
        description: req
            .description
            .unwrap_or_else(|| current.description.clone()),
        routing,
        revision_id: uuid::Uuid::new_v4().to_string(),
    };
    let updated = state
        .catalog
        .put_alias(
            &caller.account_id,
            &r.entry.name,
            record,
            false,
            req.revision_id.as_deref(),
        )
        .await
        .map_err(|e| catalog(e, About::arn(&alias_arn(&state, &r.entry, &alias))))?;
    Ok(Json(alias_configuration(&state, &r.entry, &updated)))
}

pub async fn delete_alias(
    State(state): State<AppState>,
    caller: Caller,
    Path((name, alias)): Path<(String, String)>,
) -> Result<StatusCode, ApiError> {
    let r = state.resolve(&caller.account_id, &name, None)?;
    state
        .catalog
        .delete_alias(&caller.account_id, &r.entry.name, &alias)
        .await
        .map_err(|e| catalog(e, About::arn(&alias_arn(&state, &r.entry, &alias))))?;
    Ok(StatusCode::NO_CONTENT)
}

pub async fn list_aliases(
    State(state): State<AppState>,
    caller: Caller,
    Path(name): Path<String>,
    Query(q): Query<PageQuery>,
) -> Result<Json<Value>, ApiError> {
    let r = state.resolve(&caller.account_id, &name, None)?;
    let items: Vec<Value> = r
        .entry
        .aliases
        .values()
        .filter(|a| {
            q.function_version
                .as_deref()
                .is_none_or(|v| a.function_version == v)
        })
        .map(|a| alias_configuration(&state, &r.entry, a))
        .collect();
    Ok(Json(listing(
        "Aliases",
        items,
        q.marker.as_deref(),
        q.max_items,
    )?))
}

#[cfg(test)]
mod tests {
    use super::java_double;

    #[test]
    fn weights_print_as_java_doubles() {
        assert_eq!(java_double(2.0), "2.0");
        assert_eq!(java_double(-1.0), "-1.0");
        assert_eq!(java_double(0.25), "0.25");
        assert_eq!(java_double(0.0), "0.0");
    }
}

//! PublishLayerVersion, GetLayerVersion, GetLayerVersionByArn, ListLayers,
//! ListLayerVersions and DeleteLayerVersion; and the `Layers` of a function's
//! configuration, checked and laid out as the `/opt` its environments see.

use axum::Json;
use axum::extract::{Path, Query, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use bytes::Bytes;
use protocol::names::{LAYER_NAME_PATTERN, LAYER_VERSION_ARN_PATTERN, LayerRef};
use serde::Deserialize;
use serde_json::{Value, json};
use store::{FunctionLayer, LayerDraft, LayerVersion};

use super::functions::{CodeInput, code_source};
use super::request::{page, parse_body};
use crate::auth::Caller;
use crate::error::ApiError;
use crate::state::AppState;
use crate::validate;
use crate::wire::lambda_time;

/// Lambda's limit on the layers of one function.
pub const MAX_FUNCTION_LAYERS: usize = 5;

/// The runtimes a layer may declare itself compatible with: Lamina's own, and Lambda's,
/// so a layer published for Lambda keeps its metadata.
const LAYER_RUNTIMES: &[&str] = &[
    "wasm",
    "onnx",
    "python3.14",
    "python3.13",
    "python3.12",
    "python3.11",
    "python3.10",
    "python3.9",
    "nodejs24.x",
    "nodejs22.x",
    "nodejs20.x",
    "nodejs18.x",
    "java25",
    "java21",
    "java17",
    "java11",
    "java8.al2",
    "dotnet10",
    "dotnet8",
    "ruby3.4",
    "ruby3.3",
    "ruby3.2",
    "provided.al2023",
    "provided.al2",
];

const ARCHITECTURES: &[&str] = &["x86_64", "arm64"];

#[derive(Debug, Deserialize)]
#[serde(rename_all = "PascalCase")]
struct PublishLayerVersion {
    description: Option<String>,
    content: Option<CodeInput>,
    compatible_runtimes: Option<Vec<String>>,
    compatible_architectures: Option<Vec<String>>,
    license_info: Option<String>,
}

/// `?CompatibleRuntime=&CompatibleArchitecture=&Marker=&MaxItems=`, and GetLayerVersionByArn's
/// `?find=LayerVersion&Arn=` on the same path.
#[derive(Debug, Deserialize)]
pub struct LayerQuery {
    #[serde(rename = "CompatibleRuntime")]
    compatible_runtime: Option<String>,
    #[serde(rename = "CompatibleArchitecture")]
    compatible_architecture: Option<String>,
    #[serde(rename = "Marker")]
    marker: Option<String>,
    #[serde(rename = "MaxItems")]
    max_items: Option<String>,
    find: Option<String>,
    #[serde(rename = "Arn")]
    arn: Option<String>,
}

fn not_found() -> ApiError {
    ApiError::ResourceNotFound("The resource you requested does not exist.".into())
}

/// A `{LayerName}` path segment: a name, or the ARN of a layer of the caller's account in
/// this region (any other is not there for the caller).
fn layer_name(state: &AppState, caller: &Caller, raw: &str) -> Result<String, ApiError> {
    let layer = LayerRef::parse_name(raw).ok_or_else(|| {
        validate::constraint(
            raw,
            "layerName",
            &format!("Member must satisfy regular expression pattern: {LAYER_NAME_PATTERN}"),
        )
    })?;
    if layer
        .account_id
        .as_deref()
        .is_some_and(|a| a != caller.account_id)
        || layer
            .region
            .as_deref()
            .is_some_and(|r| r != state.config.region)
    {
        return Err(not_found());
    }
    Ok(layer.name)
}

fn version_number(raw: &str) -> Result<u64, ApiError> {
    let n: i64 = raw
        .parse()
        .map_err(|_| validate::constraint(raw, "versionNumber", "Member must be a whole number"))?;
    if n < 1 {
        return Err(ApiError::InvalidParameterValue(
            "Layer Version Cannot be less than 1".into(),
        ));
    }
    Ok(n as u64)
}

/// Refuses what is not in `allowed`, naming the whole list as Lambda does.
fn enum_list(values: &[String], field: &str, allowed: &[&str]) -> Result<(), ApiError> {
    if values.iter().all(|v| allowed.contains(&v.as_str())) {
        return Ok(());
    }
    Err(validate::constraint(
        format!("[{}]", values.join(", ")),
        field,
        &format!(
            "Member must satisfy constraint: [Member must satisfy enum value set: [{}], Member must not be null]",
            allowed.join(", ")
        ),
    ))
}

fn max_items(field: &str, value: usize, max: usize) -> Result<(), ApiError> {
    if value > max {
        return Err(validate::constraint(
            format!("[{value} items]"),
            field,
            &format!("Member must have length less than or equal to {max}"),
        ));
    }
    Ok(())
}

/// The body of PublishLayerVersion and GetLayerVersion.
fn layer_version_body(state: &AppState, layer: &LayerVersion) -> Value {
    let mut body = list_item(state, layer);
    let obj = body.as_object_mut().expect("a JSON object literal");
    obj.insert(
        "LayerArn".into(),
        state
            .arns
            .layer(&layer.account_id, &layer.layer_name)
            .into(),
    );
    obj.insert(
        "Content".into(),
        json!({
            "Location": format!(
                "{}/lamina/code/{}.zip",
                state.config.public_url.trim_end_matches('/'),
                layer.code_sha256
            ),
            "CodeSha256": crate::wire::code_sha256_b64(&layer.code_sha256),
            "CodeSize": layer.code_size,
        }),
    );
    body
}

/// A `LayerVersionsListItem`: what ListLayerVersions and ListLayers report of a version.
fn list_item(state: &AppState, layer: &LayerVersion) -> Value {
    let mut item = json!({
        "LayerVersionArn": state.arns.layer_version(&layer.account_id, &layer.layer_name, layer.version),
        "Version": layer.version,
        "Description": layer.description,
        "CreatedDate": lambda_time(layer.created_at_ms),
        "CompatibleRuntimes": layer.compatible_runtimes,
        "CompatibleArchitectures": layer.compatible_architectures,
    });
    let obj = item.as_object_mut().expect("a JSON object literal");
    if let Some(license) = &layer.license_info {
        obj.insert("LicenseInfo".into(), license.clone().into());
    }
    item
}

pub async fn publish(
    State(state): State<AppState>,
    caller: Caller,
    Path(raw_name): Path<String>,
    body: Bytes,
) -> Result<Response, ApiError> {
    let req: PublishLayerVersion = parse_body(&body)?;
    let name = layer_name(&state, &caller, &raw_name)?;
    let Some(content) = req.content else {
        return Err(validate::constraint(
            "null",
            "content",
            "Member must not be null",
        ));
    };
    let description = req.description.unwrap_or_default();
    validate::description(&description)?;
    let runtimes = req.compatible_runtimes.unwrap_or_default();
    max_items("compatibleRuntimes", runtimes.len(), 15)?;
    let architectures = req.compatible_architectures.unwrap_or_default();
    max_items("compatibleArchitectures", architectures.len(), 2)?;
    let mut refused = Vec::new();
    if let Err(e) = enum_list(&runtimes, "compatibleRuntimes", LAYER_RUNTIMES) {
        refused.push(e);
    }
    if let Err(e) = enum_list(&architectures, "compatibleArchitectures", ARCHITECTURES) {
        refused.push(e);
    }
    if let Some(e) = validate::combine(refused) {
        return Err(e);
    }
    if let Some(license) = &req.license_info
        && license.chars().count() > 512
    {
        return Err(validate::constraint(
            license,
            "licenseInfo",
            "Member must have length less than or equal to 512",
        ));
    }
    let source = code_source(&content)?;
    let stored = state.packages.take_layer(source).await?;
    let layer = state
        .layers
        .publish(
            &caller.account_id,
            &name,
            LayerDraft {
                description,
                license_info: req.license_info,
                compatible_runtimes: runtimes,
                compatible_architectures: architectures,
                code_sha256: stored.digest,
                code_size: stored.size,
            },
        )
        .await
        .map_err(|e| ApiError::service(e.to_string()))?;
    Ok((
        StatusCode::CREATED,
        Json(layer_version_body(&state, &layer)),
    )
        .into_response())
}

pub async fn get(
    State(state): State<AppState>,
    caller: Caller,
    Path((raw_name, raw_version)): Path<(String, String)>,
) -> Result<Json<Value>, ApiError> {
    let name = layer_name(&state, &caller, &raw_name)?;
    let version = version_number(&raw_version)?;
    let layer = state
        .layers
        .get(&caller.account_id, &name, version)
        .await
        .map_err(|e| ApiError::service(e.to_string()))?
        .ok_or_else(not_found)?;
    Ok(Json(layer_version_body(&state, &layer)))
}

pub async fn delete(
    State(state): State<AppState>,
    caller: Caller,
    Path((raw_name, raw_version)): Path<(String, String)>,
) -> Result<StatusCode, ApiError> {
    let name = layer_name(&state, &caller, &raw_name)?;
    let version = version_number(&raw_version)?;
    // Idempotent, as on Lambda: deleting what is not there succeeds. Functions that use
    // the version keep its package.
    state
        .layers
        .delete(&caller.account_id, &name, version)
        .await
        .map_err(|e| ApiError::service(e.to_string()))?;
    Ok(StatusCode::NO_CONTENT)
}

/// The filters of ListLayers and ListLayerVersions, checked.
struct Filters {
    runtime: Option<String>,
    architecture: Option<String>,
}

impl Filters {
    fn from_query(q: &LayerQuery) -> Result<Filters, ApiError> {
        let mut refused = Vec::new();
        if let Some(r) = &q.compatible_runtime
            && !LAYER_RUNTIMES.contains(&r.as_str())
        {
            refused.push(validate::constraint(
                r,
                "compatibleRuntime",
                &format!(
                    "Member must satisfy enum value set: [{}]",
                    LAYER_RUNTIMES.join(", ")
                ),
            ));
        }
        if let Some(a) = &q.compatible_architecture
            && !ARCHITECTURES.contains(&a.as_str())
        {
            refused.push(validate::constraint(
                a,
                "compatibleArchitecture",
                "Member must satisfy enum value set: [x86_64, arm64]",
            ));
        }
        if let Some(e) = validate::combine(refused) {
            return Err(e);
        }
        Ok(Filters {
            runtime: q.compatible_runtime.clone(),
            architecture: q.compatible_architecture.clone(),
        })
    }

    fn admit(&self, layer: &LayerVersion) -> bool {
        self.runtime
            .as_ref()
            .is_none_or(|r| layer.compatible_runtimes.contains(r))
            && self
                .architecture
                .as_ref()
                .is_none_or(|a| layer.compatible_architectures.contains(a))
    }
}

fn page_size(q: &LayerQuery) -> Result<Option<usize>, ApiError> {
    let Some(raw) = &q.max_items else {
        return Ok(None);
    };
    match raw.parse::<i64>() {
        Ok(n) if (1..=50).contains(&n) => Ok(Some(n as usize)),
        Ok(n) if n < 1 => Err(validate::constraint(
            n,
            "maxItems",
            "Member must have value greater than or equal to 1",
        )),
        Ok(n) => Err(validate::constraint(
            n,
            "maxItems",
            "Member must have value less than or equal to 50",
        )),
        Err(_) => Err(validate::constraint(
            raw,
            "maxItems",
            "Member must be a whole number",
        )),
    }
}

/// ListLayers, or GetLayerVersionByArn (`?find=LayerVersion&Arn=`), which shares its path.
pub async fn list_or_find(
    State(state): State<AppState>,
    caller: Caller,
    Query(q): Query<LayerQuery>,
) -> Result<Json<Value>, ApiError> {
    if q.find.as_deref() == Some("LayerVersion") {
        return find_by_arn(&state, &caller, q.arn.as_deref().unwrap_or_default()).await;
    }
    let filters = Filters::from_query(&q)?;
    let max = page_size(&q)?;
    let all = state
        .layers
        .all_versions(&caller.account_id)
        .await
        .map_err(|e| ApiError::service(e.to_string()))?;
    // Newest first within each name: the first admitted version of a name is its latest
    // matching one. Names without one are not listed.
    let mut latest: Vec<&LayerVersion> = Vec::new();
    for layer in all.iter().filter(|l| filters.admit(l)) {
        if latest
            .last()
            .is_none_or(|l| l.layer_name != layer.layer_name)
        {
            latest.push(layer);
        }
    }
    let (items, next) = page(latest, q.marker.as_deref(), max)?;
    let layers: Vec<Value> = items
        .into_iter()
        .map(|l| {
            json!({
                "LayerName": l.layer_name,
                "LayerArn": state.arns.layer(&l.account_id, &l.layer_name),
                "LatestMatchingVersion": list_item(&state, l),
            })
        })
        .collect();
    let mut body = json!({ "Layers": layers });
    if let Some(next) = next {
        body["NextMarker"] = next.into();
    }
    Ok(Json(body))
}

async fn find_by_arn(
    state: &AppState,
    caller: &Caller,
    arn: &str,
) -> Result<Json<Value>, ApiError> {
    let (layer, version) = LayerRef::parse_version_arn(arn).ok_or_else(|| {
        validate::constraint(
            arn,
            "arn",
            &format!("Member must satisfy regular expression pattern: {LAYER_VERSION_ARN_PATTERN}"),
        )
    })?;
    if layer.account_id.as_deref() != Some(caller.account_id.as_str())
        || layer.region.as_deref() != Some(state.config.region.as_str())
    {
        return Err(not_found());
    }
    let found = state
        .layers
        .get(&caller.account_id, &layer.name, version)
        .await
        .map_err(|e| ApiError::service(e.to_string()))?
        .ok_or_else(not_found)?;
    Ok(Json(layer_version_body(state, &found)))
}

pub async fn list_versions(
    State(state): State<AppState>,
    caller: Caller,
    Path(raw_name): Path<String>,
    Query(q): Query<LayerQuery>,
) -> Result<Json<Value>, ApiError> {
    let name = layer_name(&state, &caller, &raw_name)?;
    let filters = Filters::from_query(&q)?;
    let max = page_size(&q)?;
    let versions: Vec<LayerVersion> = state
        .layers
        .versions(&caller.account_id, &name)
        .await
        .map_err(|e| ApiError::service(e.to_string()))?
        .into_iter()
        .filter(|l| filters.admit(l))
        .collect();
    let (items, next) = page(versions, q.marker.as_deref(), max)?;
    let items: Vec<Value> = items.iter().map(|l| list_item(&state, l)).collect();
    let mut body = json!({ "LayerVersions": items });
    if let Some(next) = next {
        body["NextMarker"] = next.into();
    }
    Ok(Json(body))
}

/// The `Layers` of CreateFunction or UpdateFunctionConfiguration, checked in Lambda's
/// order and resolved to the packages the version keeps.
pub(crate) async fn function_layers(
    state: &AppState,
    account_id: &str,
    arns: &[String],
) -> Result<Vec<FunctionLayer>, ApiError> {
    if arns.len() > MAX_FUNCTION_LAYERS {
        return Err(ApiError::InvalidParameterValue(format!(
            "Cannot reference more than {MAX_FUNCTION_LAYERS} layers."
        )));
    }
    let mut parsed = Vec::with_capacity(arns.len());
    for arn in arns {
        let Some(layer) = LayerRef::parse_version_arn(arn) else {
            return Err(validate::constraint(
                format!("[{arn}]"),
                "layers",
                &format!(
                    "Member must satisfy constraint: [Member must have length less than or equal to 2048, Member must have length greater than or equal to 1, Member must satisfy regular expression pattern: {LAYER_VERSION_ARN_PATTERN}, Member must not be null]"
                ),
            ));
        };
        parsed.push((arn, layer));
    }
    let mut resolved: Vec<(&String, &LayerRef, FunctionLayer)> = Vec::with_capacity(arns.len());
    for (arn, (layer, version)) in &parsed {
        if layer.region.as_deref() != Some(state.config.region.as_str()) {
            return Err(ApiError::InvalidParameterValue(format!(
                "Layers are not in the same region as the function. Layers are expected to be in region {}.",
                state.config.region
            )));
        }
        if layer.account_id.as_deref() != Some(account_id) {
            // Layers are not shared between accounts (no AddLayerVersionPermission).
            return Err(ApiError::NotAuthorized(format!(
                "User: arn:aws:iam::{account_id}:root is not authorized to perform: lambda:GetLayerVersion on resource: {arn} because no resource-based policy allows the lambda:GetLayerVersion action"
            )));
        }
        let found = state
            .layers
            .get(account_id, &layer.name, *version)
            .await
            .map_err(|e| ApiError::service(e.to_string()))?
            .ok_or_else(|| {
                ApiError::InvalidParameterValue(format!("Layer version {arn} does not exist."))
            })?;
        if let Some((first, _, _)) = resolved.iter().find(|(_, l, _)| l.name == layer.name) {
            return Err(ApiError::InvalidParameterValue(format!(
                "Two different versions of the same layer are not allowed to be referenced in the same function. {first} and {arn} are versions of the same layer."
            )));
        }
        resolved.push((
            *arn,
            layer,
            FunctionLayer {
                arn: (*arn).clone(),
                code_sha256: found.code_sha256,
                code_size: found.code_size,
            },
        ));
    }
    Ok(resolved.into_iter().map(|(_, _, l)| l).collect())
}

/// Lays out the `/opt` of a function with `layers` and the package `code_sha256` on this
/// node, and refuses what Lambda refuses of the whole: over 250 MB unzipped together,
/// and (for Python) a compiled extension module in a layer.
pub(crate) async fn lay_out_function_layers(
    state: &AppState,
    runtime: protocol::Runtime,
    code_sha256: &str,
    layers: &[FunctionLayer],
) -> Result<(), ApiError> {
    let digests: Vec<String> = layers.iter().map(|l| l.code_sha256.clone()).collect();
    let Some(opt) = state.packages.materialise_layers(&digests).await? else {
        return Ok(());
    };
    let limit = state.packages.limits().max_unzipped;
    let mut total = state.packages.unpacked_size(code_sha256).await?;
    for digest in &digests {
        total += state.packages.unpacked_size(digest).await?;
    }
    if total > limit {
        return Err(ApiError::InvalidParameterValue(format!(
            "Function code combined with layers exceeds the maximum allowed size of {limit} bytes. The actual size is {total} bytes."
        )));
    }
    if runtime == protocol::Runtime::Python314 {
        state.packages.refuse_native_extensions(opt).await?;
    }
    Ok(())
}

//! CreateFunction, GetFunction, GetFunctionConfiguration, ListFunctions, DeleteFunction,
//! UpdateFunctionCode and UpdateFunctionConfiguration.

use std::collections::BTreeMap;

use axum::Json;
use axum::extract::{Path, Query, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use base64::Engine as _;
use bytes::Bytes;
use serde::Deserialize;
use serde_json::{Value, json};
use store::VersionConfig;

use super::request::{QualifierQuery, listing, parse_body};
use crate::auth::Caller;
use crate::error::{About, ApiError, catalog};
use crate::state::{AppState, MissingFunction, Resolved};
use crate::validate;
use crate::wire::{Detail, function_configuration};

#[derive(Debug, Deserialize, Default)]
#[serde(rename_all = "PascalCase")]
pub struct CodeInput {
    pub zip_file: Option<String>,
    #[serde(rename = "S3Bucket")]
    pub s3_bucket: Option<String>,
    #[serde(rename = "S3Key")]
    pub s3_key: Option<String>,
    #[serde(rename = "S3ObjectVersion")]
    pub s3_object_version: Option<String>,
    pub image_uri: Option<String>,
}

#[derive(Debug, Deserialize, Default)]
#[serde(rename_all = "PascalCase")]
pub struct EnvironmentInput {
    #[serde(default)]
    pub variables: BTreeMap<String, String>,
}

#[derive(Debug, Deserialize, Default)]
#[serde(rename_all = "PascalCase")]
pub struct SizeInput {
    pub size: u32,
}

#[derive(Debug, Deserialize, Default)]
#[serde(rename_all = "PascalCase")]
pub struct TargetInput {
    pub target_arn: Option<String>,
}

#[derive(Debug, Deserialize, Default)]
#[serde(rename_all = "PascalCase")]
pub struct ModeInput {
    pub mode: Option<String>,
}

#[derive(Debug, Deserialize, Default)]
#[serde(rename_all = "PascalCase")]
pub struct LoggingInput {
    pub log_format: Option<String>,
}

#[derive(Debug, Deserialize, Default)]
#[serde(rename_all = "PascalCase")]
pub struct SnapStartInput {
    pub apply_on: Option<String>,
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "PascalCase")]
struct CreateFunction {
    function_name: String,
    role: String,
    code: CodeInput,
    runtime: Option<String>,
    handler: Option<String>,
    description: Option<String>,
    timeout: Option<u32>,
    memory_size: Option<u32>,
    environment: Option<EnvironmentInput>,
    #[serde(default)]
    publish: bool,
    package_type: Option<String>,
    #[serde(default)]
    architectures: Vec<String>,
    ephemeral_storage: Option<SizeInput>,
    #[serde(default)]
    layers: Vec<String>,
    dead_letter_config: Option<TargetInput>,
    #[serde(default)]
    tags: BTreeMap<String, String>,
    tracing_config: Option<ModeInput>,
    logging_config: Option<LoggingInput>,
    snap_start: Option<SnapStartInput>,
    #[serde(rename = "KMSKeyArn")]
    kms_key_arn: Option<String>,
}

fn snap_start(input: Option<&SnapStartInput>) -> Result<Option<bool>, ApiError> {
    match input.and_then(|s| s.apply_on.as_deref()) {
        None => Ok(None),
        Some("None") => Ok(Some(false)),
        Some("PublishedVersions") => Ok(Some(true)),
        Some(other) => Err(validate::constraint(
            other,
            "snapStart.applyOn",
            "Member must satisfy enum value set: [PublishedVersions, None]",
        )),
    }
}

/// SnapStart captures a guest's INIT (a Python handler's imports too); the `onnx`
/// runtime's INIT is a model the node already loads once and shares.
fn check_snap_start(runtime: protocol::Runtime, snap_start: bool) -> Result<(), ApiError> {
    if !snap_start {
        return Ok(());
    }
    match runtime {
        protocol::Runtime::Onnx => Err(ApiError::InvalidParameterValue(
            "SnapStart is not supported for runtime onnx: its model is loaded once per node and shared by every environment, so they already start without loading it.".into(),
        )),
        protocol::Runtime::Python314 | protocol::Runtime::Wasm => Ok(()),
    }
}

fn tracing_mode(input: Option<&ModeInput>) -> Result<Option<String>, ApiError> {
    match input.and_then(|t| t.mode.as_deref()) {
        None => Ok(None),
        Some(m @ ("Active" | "PassThrough")) => Ok(Some(m.to_owned())),
        Some(other) => Err(validate::constraint(
            other,
            "tracingConfig.mode",
            "Member must satisfy enum value set: [Active, PassThrough]",
        )),
    }
}

/// Takes the code in (received, or copied from S3 once, as Lambda does) and has the
/// worker validate and compile its handler.
async fn take_code(
    state: &AppState,
    source: packages::Source,
    runtime: protocol::Runtime,
    handler: &str,
) -> Result<(packages::Stored, protocol::GuestKind), ApiError> {
    let stored = state.packages.take(source, runtime, handler).await?;
    let code = protocol::CodePackage {
        digest: stored.digest.clone(),
        root: stored.root.clone(),
        runtime,
        handler: handler.to_owned(),
        opt_root: None,
    };
    let kind = prepare(state, &code).await?;
    Ok((stored, kind))
}

async fn prepare(
    state: &AppState,
    code: &protocol::CodePackage,
) -> Result<protocol::GuestKind, ApiError> {
    let prepared = state
        .scheduler
        .backend()
        .prepare(code)
        .await
        .map_err(|e| match e {
            protocol::PrepareError::InvalidCode(m) => ApiError::InvalidParameterValue(m),
            protocol::PrepareError::Platform(m) => ApiError::service(m),
        })?;
    Ok(prepared.kind)
}

/// Where the code comes from: a zip in the request, or an S3 object.
pub(crate) fn code_source(code: &CodeInput) -> Result<packages::Source, ApiError> {
    let from_s3 =
        code.s3_bucket.is_some() || code.s3_key.is_some() || code.s3_object_version.is_some();
    if code.image_uri.is_some() {
        return Err(ApiError::InvalidParameterValue(
            "Container images are not supported: deploy a Zip package (Code.ZipFile or Code.S3Bucket and Code.S3Key).".into(),
        ));
    }
    match (&code.zip_file, from_s3) {
        (Some(_), true) => Err(ApiError::InvalidParameterValue(
            "Please do not provide other FunctionCode parameters when providing a ZipFile.".into(),
        )),
        (Some(zip_b64), false) => {
            let zip = base64::engine::general_purpose::STANDARD
                .decode(zip_b64.trim())
                .map_err(|_| ApiError::InvalidParameterValue(packages::intake::UNZIP_FAILED.into()))?;
            Ok(packages::Source::Upload(zip))
        }
        (None, true) => match (&code.s3_bucket, &code.s3_key) {
            (Some(bucket), Some(key)) if !bucket.is_empty() && !key.is_empty() => {
                Ok(packages::Source::S3(packages::S3Location {
                    bucket: bucket.clone(),
                    key: key.clone(),
                    version: code.s3_object_version.clone().filter(|v| !v.is_empty()),
                }))
            }
            _ => Err(ApiError::InvalidParameterValue(
                "Please provide both S3Bucket and S3Key for function code from S3.".into(),
            )),
        },
        (None, false) => Err(ApiError::InvalidParameterValue(
            "Please provide a source for function code (Code.ZipFile, or Code.S3Bucket and Code.S3Key).".into(),
        )),
    }
}

pub async fn create(
    State(state): State<AppState>,
    caller: Caller,
    body: Bytes,
) -> Result<Response, ApiError> {
    let req: CreateFunction = parse_body(&body)?;
    let fref = validate::new_function_name(&req.function_name)?;
    if fref.qualifier.is_some()
        || fref
            .account_id
            .as_deref()
            .is_some_and(|a| a != caller.account_id)
        || fref
            .region
            .as_deref()
            .is_some_and(|r| r != state.config.region)
    {
        return Err(ApiError::InvalidParameterValue(format!(
            "The function name {} is not valid for CreateFunction in this account and region.",
            req.function_name
        )));
    }
    let name = fref.name;
    validate::role(&req.role)?;
    if req.package_type.as_deref().is_some_and(|p| p != "Zip") {
        return Err(ApiError::InvalidParameterValue(
            "PackageType Image is not supported: deploy a Zip package with runtime wasm or onnx."
                .into(),
        ));
    }
    let (Some(runtime_name), handler) = (req.runtime.as_deref(), req.handler.as_deref()) else {
        return Err(ApiError::InvalidParameterValue(
            "Runtime and Handler are mandatory parameters for functions created with deployment packages.".into(),
        ));
    };
    let runtime = validate::runtime(runtime_name)?;
    let handler = handler.unwrap_or(runtime.default_handler()).to_owned();
    validate::handler(&handler)?;
    let description = req.description.unwrap_or_default();
    validate::description(&description)?;
    let timeout = validate::timeout(req.timeout.unwrap_or(3))?;
    let memory = validate::memory(req.memory_size.unwrap_or(128))?;
    let environment = req.environment.map(|e| e.variables).unwrap_or_default();
    validate::environment(&environment)?;
    let ephemeral = validate::ephemeral_storage(req.ephemeral_storage.map_or(512, |e| e.size))?;
    let architectures = validate::architectures(&req.architectures)?;
    validate::tags(&req.tags)?;
    let snap = snap_start(req.snap_start.as_ref())?.unwrap_or(false);
    check_snap_start(runtime, snap)?;
    let tracing =
        tracing_mode(req.tracing_config.as_ref())?.unwrap_or_else(|| "PassThrough".into());
    let source = code_source(&req.code)?;

    let layers = super::layers::function_layers(&state, &caller.account_id, &req.layers).await?;

    if state.catalog.function(&caller.account_id, &name).is_some() {
        return Err(ApiError::ResourceConflict(format!(
            "Function already exist: {name}"
        )));
    }
    let (stored, kind) = take_code(&state, source, runtime, &handler).await?;
    super::layers::lay_out_function_layers(&state, runtime, &stored.digest, &layers).await?;
    let config = VersionConfig {
        runtime: runtime.as_str().to_owned(),
        handler,
        role: req.role,
        description,
        timeout,
        memory_size: memory,
        environment,
        ephemeral_storage: ephemeral,
        architectures,
        package_type: "Zip".into(),
        code_sha256: stored.digest,
        code_size: stored.size,
        guest_kind: kind.as_str().to_owned(),
        tracing_mode: tracing,
        dead_letter_target: req.dead_letter_config.and_then(|d| d.target_arn),
        snap_start: snap,
        log_format: req
            .logging_config
            .and_then(|l| l.log_format)
            .unwrap_or_else(|| "Text".into()),
        kms_key_arn: req.kms_key_arn,
        layers,
    };
    let entry = state
        .catalog
        .create_function(&caller.account_id, &name, config, req.tags, req.publish)
        .await
        .map_err(|e| {
            catalog(
                e,
                About::arn(&state.arns.function(&caller.account_id, &name)),
            )
        })?;
    // With Publish the answer describes version 1, yet Lambda reports the unqualified ARN.
    let version = match entry.versions.last_key_value() {
        Some((_, v)) => v.clone(),
        None => entry.latest.clone(),
    };
    let body = function_configuration(&state, &entry, &version, false, Detail::Full);
    Ok((StatusCode::CREATED, Json(body)).into_response())
}

/// The configuration GetFunction(Configuration) report. Read through an alias, it is the
/// version the alias points at, under the alias's ARN.
fn read_configuration(state: &AppState, r: &Resolved, version: &store::VersionRecord) -> Value {
    let mut config = function_configuration(
        state,
        &r.entry,
        version,
        r.qualifier.is_some(),
        Detail::Full,
    );
    if let Some(alias) = r
        .qualifier
        .as_deref()
        .filter(|q| r.entry.aliases.contains_key(*q))
        && let Some(obj) = config.as_object_mut()
    {
        obj.insert(
            "FunctionArn".into(),
            state
                .arns
                .qualified(&r.entry.account_id, &r.entry.name, alias)
                .into(),
        );
    }
    config
}

pub async fn get(
    State(state): State<AppState>,
    caller: Caller,
    Path(name): Path<String>,
    Query(q): Query<QualifierQuery>,
) -> Result<Json<Value>, ApiError> {
    let r = state.resolve(&caller.account_id, &name, q.qualifier.as_deref())?;
    let version = state.version_for_read(&r)?;
    let config = read_configuration(&state, &r, &version);
    let mut body = json!({
        "Configuration": config,
        "Code": {
            "RepositoryType": "S3",
            "Location": format!(
                "{}/lamina/code/{}.zip",
                state.config.public_url.trim_end_matches('/'),
                version.config.code_sha256
            ),
        },
    });
    if let Some(obj) = body.as_object_mut() {
        if !r.entry.tags.is_empty() {
            obj.insert("Tags".into(), json!(r.entry.tags));
        }
        if let Some(reserved) = r.entry.reserved_concurrency {
            obj.insert(
                "Concurrency".into(),
                json!({ "ReservedConcurrentExecutions": reserved }),
            );
        }
    }
    Ok(Json(body))
}

pub async fn get_configuration(
    State(state): State<AppState>,
    caller: Caller,
    Path(name): Path<String>,
    Query(q): Query<QualifierQuery>,
) -> Result<Json<Value>, ApiError> {
    let r = state.resolve(&caller.account_id, &name, q.qualifier.as_deref())?;
    let version = state.version_for_read(&r)?;
    Ok(Json(read_configuration(&state, &r, &version)))
}

#[derive(Debug, Deserialize)]
pub struct ListQuery {
    #[serde(rename = "Marker")]
    marker: Option<String>,
    #[serde(rename = "MaxItems")]
    max_items: Option<usize>,
    #[serde(rename = "FunctionVersion")]
    function_version: Option<String>,
}

pub async fn list(
    State(state): State<AppState>,
    caller: Caller,
    Query(q): Query<ListQuery>,
) -> Result<Json<Value>, ApiError> {
    if q.max_items == Some(0) || q.max_items.is_some_and(|m| m > 10_000) {
        return Err(validate::constraint(
            q.max_items.unwrap_or(0),
            "maxItems",
            "Member must have value between 1 and 10000",
        ));
    }
    let all_versions = match q.function_version.as_deref() {
        None => false,
        Some("ALL") => true,
        Some(other) => {
            return Err(validate::constraint(
                other,
                "functionVersion",
                "Member must satisfy enum value set: [ALL]",
            ));
        }
    };
    let mut items = Vec::new();
    for entry in state.catalog.functions(&caller.account_id) {
        items.push(function_configuration(
            &state,
            &entry,
            &entry.latest,
            all_versions,
            Detail::ListItem,
        ));
        if all_versions {
            for v in entry.versions.values() {
                items.push(function_configuration(
                    &state,
                    &entry,
                    v,
                    true,
                    Detail::ListItem,
                ));
            }
        }
    }
    Ok(Json(listing(
        "Functions",
        items,
        q.marker.as_deref(),
        q.max_items,
    )?))
}

pub async fn delete(
    State(state): State<AppState>,
    caller: Caller,
    Path(name): Path<String>,
    Query(q): Query<QualifierQuery>,
) -> Result<StatusCode, ApiError> {
    let r = state.resolve_as(
        &caller.account_id,
        &name,
        q.qualifier.as_deref(),
        MissingFunction::Unqualified,
    )?;
    let account = caller.account_id.as_str();
    match r.qualifier.as_deref() {
        None => {
            let entry = state
                .catalog
                .delete_function(account, &r.entry.name)
                .await
                .map_err(|e| {
                    catalog(e, About::arn(&state.arns.function(account, &r.entry.name)))
                })?;
            state.retire_function(&entry);
        }
        Some(protocol::names::LATEST) => {
            return Err(ApiError::InvalidParameterValue(
                "$LATEST version cannot be deleted without deleting the function.".into(),
            ));
        }
        Some(q) => {
            let Ok(n) = q.parse::<u64>() else {
                return Err(ApiError::InvalidParameterValue(
                    "Deletion of aliases is not currently supported.".into(),
                ));
            };
            let version = r.entry.versions.get(&n).cloned();
            state
                .catalog
                .delete_version(account, &r.entry.name, n)
                .await
                .map_err(|e| {
                    catalog(
                        e,
                        About::arn(&state.arns.qualified(account, &r.entry.name, q)),
                    )
                })?;
            if let Some(v) = version {
                state
                    .scheduler
                    .retire(&scheduler::PoolKey::of(&r.entry, &v));
            }
        }
    }
    Ok(StatusCode::NO_CONTENT)
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "PascalCase")]
struct UpdateCode {
    zip_file: Option<String>,
    #[serde(rename = "S3Bucket")]
    s3_bucket: Option<String>,
    #[serde(rename = "S3Key")]
    s3_key: Option<String>,
    #[serde(rename = "S3ObjectVersion")]
    s3_object_version: Option<String>,
    image_uri: Option<String>,
    #[serde(default)]
    publish: bool,
    #[serde(default)]
    dry_run: bool,
    revision_id: Option<String>,
    #[serde(default)]
    architectures: Vec<String>,
}

pub async fn update_code(
    State(state): State<AppState>,
    caller: Caller,
    Path(name): Path<String>,
    body: Bytes,
) -> Result<Json<Value>, ApiError> {
    let req: UpdateCode = parse_body(&body)?;
    let r = state.resolve(&caller.account_id, &name, None)?;
    if r.qualifier.is_some() {
        return Err(ApiError::InvalidParameterValue(
            "Function code can only be updated on $LATEST; do not qualify the function name."
                .into(),
        ));
    }
    let source = code_source(&CodeInput {
        zip_file: req.zip_file,
        s3_bucket: req.s3_bucket,
        s3_key: req.s3_key,
        s3_object_version: req.s3_object_version,
        image_uri: req.image_uri,
    })?;
    let old = r.entry.latest.clone();
    let mut config = old.config.clone();
    if !req.architectures.is_empty() {
        config.architectures = validate::architectures(&req.architectures)?;
    }
    let runtime = validate::runtime(&config.runtime)?;
    let (stored, kind) = take_code(&state, source, runtime, &config.handler).await?;
    super::layers::lay_out_function_layers(&state, runtime, &stored.digest, &config.layers).await?;
    if req.dry_run {
        config.code_sha256 = stored.digest;
        config.code_size = stored.size;
        let preview =
            store::VersionRecord::new(protocol::names::LATEST, config, old.last_modified_ms);
        return Ok(Json(function_configuration(
            &state,
            &r.entry,
            &preview,
            false,
            Detail::Full,
        )));
    }
    config.code_sha256 = stored.digest;
    config.code_size = stored.size;
    config.guest_kind = kind.as_str().to_owned();
    state
        .apply_latest(&r.entry, req.revision_id.as_deref(), config, req.publish)
        .await
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "PascalCase")]
struct UpdateConfiguration {
    role: Option<String>,
    handler: Option<String>,
    description: Option<String>,
    timeout: Option<u32>,
    memory_size: Option<u32>,
    environment: Option<EnvironmentInput>,
    runtime: Option<String>,
    dead_letter_config: Option<TargetInput>,
    #[serde(default)]
    layers: Option<Vec<String>>,
    ephemeral_storage: Option<SizeInput>,
    revision_id: Option<String>,
    tracing_config: Option<ModeInput>,
    logging_config: Option<LoggingInput>,
    snap_start: Option<SnapStartInput>,
    #[serde(rename = "KMSKeyArn")]
    kms_key_arn: Option<String>,
}

pub async fn update_configuration(
    State(state): State<AppState>,
    caller: Caller,
    Path(name): Path<String>,
    body: Bytes,
) -> Result<Json<Value>, ApiError> {
    let req: UpdateConfiguration = parse_body(&body)?;
    let r = state.resolve(&caller.account_id, &name, None)?;
    if r.qualifier.is_some() {
        return Err(ApiError::InvalidParameterValue(
            "Function configuration can only be updated on $LATEST; do not qualify the function name.".into(),
        ));
    }
    let mut config = r.entry.latest.config.clone();
    if let Some(role) = req.role {
        validate::role(&role)?;
        config.role = role;
    }
    if let Some(d) = req.description {
        validate::description(&d)?;
        config.description = d;
    }
    if let Some(t) = req.timeout {
        config.timeout = validate::timeout(t)?;
    }
    if let Some(m) = req.memory_size {
        config.memory_size = validate::memory(m)?;
    }
    if let Some(env) = req.environment {
        validate::environment(&env.variables)?;
        config.environment = env.variables;
    }
    if let Some(e) = req.ephemeral_storage {
        config.ephemeral_storage = validate::ephemeral_storage(e.size)?;
    }
    let layers_changed = match &req.layers {
        Some(arns) => {
            let layers = super::layers::function_layers(&state, &caller.account_id, arns).await?;
            let changed = layers != config.layers;
            config.layers = layers;
            changed
        }
        None => false,
    };
    if let Some(d) = req.dead_letter_config {
        config.dead_letter_target = d.target_arn.filter(|t| !t.is_empty());
    }
    if let Some(mode) = tracing_mode(req.tracing_config.as_ref())? {
        config.tracing_mode = mode;
    }
    if let Some(format) = req.logging_config.and_then(|l| l.log_format) {
        config.log_format = format;
    }
    if let Some(snap) = snap_start(req.snap_start.as_ref())? {
        config.snap_start = snap;
    }
    if let Some(kms) = req.kms_key_arn {
        config.kms_key_arn = Some(kms).filter(|k| !k.is_empty());
    }
    let runtime_changed = req.runtime.as_ref().is_some_and(|rt| *rt != config.runtime);
    let handler_changed = req.handler.as_ref().is_some_and(|h| *h != config.handler);
    if let Some(rt) = req.runtime {
        config.runtime = validate::runtime(&rt)?.as_str().to_owned();
    }
    if let Some(h) = req.handler {
        validate::handler(&h)?;
        config.handler = h;
    }
    check_snap_start(validate::runtime(&config.runtime)?, config.snap_start)?;
    if runtime_changed || handler_changed {
        // The same package, read another way: validate and compile it again (a bare
        // object gets its file under the new handler's name first).
        let runtime = validate::runtime(&config.runtime)?;
        packages::intake::refuse_pickle_names(runtime, &config.handler, None)?;
        let root = state
            .packages
            .materialise(&config.code_sha256, &config.handler)
            .await?;
        let code = protocol::CodePackage {
            digest: config.code_sha256.clone(),
            root,
            runtime,
            handler: config.handler.clone(),
            opt_root: None,
        };
        config.guest_kind = prepare(&state, &code).await?.as_str().to_owned();
    }
    if layers_changed || runtime_changed {
        let runtime = validate::runtime(&config.runtime)?;
        super::layers::lay_out_function_layers(
            &state,
            runtime,
            &config.code_sha256,
            &config.layers,
        )
        .await?;
    }
    state
        .apply_latest(&r.entry, req.revision_id.as_deref(), config, false)
        .await
}

impl AppState {
    /// Stores a new $LATEST (and publishes it on request), retiring the environments of
    /// the configuration it replaces.
    async fn apply_latest(
        &self,
        entry: &store::FunctionEntry,
        revision: Option<&str>,
        config: VersionConfig,
        publish: bool,
    ) -> Result<Json<Value>, ApiError> {
        let old_key = scheduler::PoolKey::of(entry, &entry.latest);
        let updated = self
            .catalog
            .update_latest(&entry.account_id, &entry.name, revision, config)
            .await
            .map_err(|e| {
                let latest =
                    self.arns
                        .qualified(&entry.account_id, &entry.name, protocol::names::LATEST);
                catalog(e, About::arn(&latest))
            })?;
        self.scheduler.retire(&old_key);
        if publish {
            let (version, updated) = self
                .catalog
                .publish_version(&entry.account_id, &entry.name, None, None, None)
                .await
                .map_err(|e| {
                    catalog(
                        e,
                        About::arn(&self.arns.function(&entry.account_id, &entry.name)),
                    )
                })?;
            return Ok(Json(function_configuration(
                self,
                &updated,
                &version,
                true,
                Detail::Full,
            )));
        }
        let mut body = function_configuration(self, &updated, &updated.latest, false, Detail::Full);
        if let Some(obj) = body.as_object_mut() {
            // The update is applied synchronously; report it as finished so waiters pass.
            obj.insert("LastUpdateStatus".into(), "Successful".into());
        }
        Ok(Json(body))
    }

    pub(crate) fn retire_function(&self, entry: &store::FunctionEntry) {
        self.scheduler
            .retire(&scheduler::PoolKey::of(entry, &entry.latest));
        for v in entry.versions.values() {
            self.scheduler.retire(&scheduler::PoolKey::of(entry, v));
        }
        self.scheduler
            .forget_function(&scheduler::FunctionKey::new(&entry.account_id, &entry.name));
    }
}

/// Serves a stored deployment package (GetFunction's Code.Location): the object as it
/// was deployed, a zip or a bare file. The digest is the capability: only someone who
/// can read the function's configuration knows it.
pub async fn code_zip(State(state): State<AppState>, Path(file): Path<String>) -> Response {
    let no_package = || ApiError::ResourceNotFound("No such package.".into()).into_response();
    let Some(digest) = file.strip_suffix(".zip") else {
        return no_package();
    };
    if digest.len() != 64 || !digest.bytes().all(|b| b.is_ascii_hexdigit()) {
        return no_package();
    }
    let digest = digest.to_ascii_lowercase();
    let deployed = state.catalog.all_functions().iter().any(|f| {
        std::iter::once(&f.latest)
            .chain(f.versions.values())
            .any(|v| v.config.code_sha256 == digest)
    });
    // A layer version's package, or one a function keeps after its layer version was
    // deleted.
    let deployed = deployed
        || state.catalog.all_functions().iter().any(|f| {
            std::iter::once(&f.latest)
                .chain(f.versions.values())
                .any(|v| v.config.layers.iter().any(|l| l.code_sha256 == digest))
        })
        || match state.layers.has_digest(&digest).await {
            Ok(published) => published,
            Err(e) => return ApiError::service(e.to_string()).into_response(),
        };
    if !deployed {
        return no_package();
    }
    match state.packages.export(&digest).await {
        Ok((file, shape)) => {
            let content_type = match shape {
                packages::Shape::Zip => "application/zip",
                packages::Shape::Bare => "application/octet-stream",
            };
            let stream = tokio_util::io::ReaderStream::new(tokio::fs::File::from_std(file));
            (
                [("content-type", content_type)],
                axum::body::Body::from_stream(stream),
            )
                .into_response()
        }
        Err(e) => ApiError::from(e).into_response(),
    }
}

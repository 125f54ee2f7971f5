//! The Lambda REST API routes, exactly as botocore's model spells them.

pub mod functions;
pub mod invoke;
pub mod quality;
pub mod reports;
pub mod settings;
pub mod urls;
pub mod versions;

use axum::Router;
use axum::extract::{DefaultBodyLimit, FromRequestParts, Path, State};
use axum::http::request::Parts;
use axum::response::{IntoResponse, Response};
use axum::routing::{any, get, post, put};
use serde::Deserialize;

use crate::error::ApiError;
use crate::state::AppState;

/// The account a request acts for.
#[derive(Debug, Clone)]
pub struct Caller {
    pub account_id: String,
}

impl FromRequestParts<AppState> for Caller {
    type Rejection = ApiError;

    /// Set by [`crate::auth::require_signature`]; a route without it is not reachable
    /// unsigned.
    async fn from_request_parts(parts: &mut Parts, _: &AppState) -> Result<Self, ApiError> {
        parts
            .extensions
            .get::<Caller>()
            .cloned()
            .ok_or(ApiError::MissingAuthenticationToken)
    }
}

#[derive(Debug, Deserialize)]
pub struct QualifierQuery {
    #[serde(rename = "Qualifier")]
    pub qualifier: Option<String>,
}

/// Parses a JSON request body into `T`, answering as Lambda does when it cannot.
pub fn parse_body<T: serde::de::DeserializeOwned>(body: &[u8]) -> Result<T, ApiError> {
    let body = if body.is_empty() { &b"{}"[..] } else { body };
    serde_json::from_slice(body).map_err(|e| {
        if e.is_data() {
            ApiError::Validation(format!("1 validation error detected: {e}"))
        } else {
            ApiError::InvalidRequestContent(format!("Could not parse request body into json: {e}"))
        }
    })
}

/// Largest CreateFunction request Lambda accepts.
pub const MAX_CREATE_REQUEST: usize = 70_167_211;
/// Invoke bodies are read up to this, so an oversized payload gets Lambda's own 413.
const MAX_INVOKE_READ: usize = 16 << 20;
/// Every other control-plane request.
pub const MAX_CONTROL_REQUEST: usize = 1 << 20;

/// Serves a stored deployment zip (GetFunction's Code.Location). The digest is the
/// capability: only someone who can read the function's configuration knows it.
async fn code_zip(State(state): State<AppState>, Path(file): Path<String>) -> Response {
    let Some(digest) = file.strip_suffix(".zip") else {
        return ApiError::ResourceNotFound("No such package.".into()).into_response();
    };
    if digest.len() != 64 || !digest.bytes().all(|b| b.is_ascii_hexdigit()) {
        return ApiError::ResourceNotFound("No such package.".into()).into_response();
    }
    match tokio::fs::read(state.config.packages_dir.join(format!("{digest}.zip"))).await {
        Ok(bytes) => ([("content-type", "application/zip")], bytes).into_response(),
        Err(_) => ApiError::ResourceNotFound("No such package.".into()).into_response(),
    }
}

pub fn routes() -> Router<AppState> {
    use functions as f;
    use settings as s;
    use versions as v;

    let code_upload = Router::new()
        .route("/2015-03-31/functions", post(f::create).get(f::list))
        .route("/2015-03-31/functions/{name}/code", put(f::update_code))
        .layer(DefaultBodyLimit::max(MAX_CREATE_REQUEST));

    let invocations = Router::new()
        .route(
            "/2015-03-31/functions/{name}/invocations",
            post(invoke::invoke),
        )
        .route(
            "/2014-11-13/functions/{name}/invoke-async/",
            post(invoke::invoke_async),
        )
        .route(
            "/2014-11-13/functions/{name}/invoke-async",
            post(invoke::invoke_async),
        )
        .layer(DefaultBodyLimit::max(MAX_INVOKE_READ));

    let urls = Router::new()
        .route("/lambda-url/{url_id}", any(urls::serve))
        .route("/lambda-url/{url_id}/", any(urls::serve))
        .route("/lambda-url/{url_id}/{*path}", any(urls::serve))
        .layer(DefaultBodyLimit::max(MAX_INVOKE_READ));

    let control = Router::new()
        .route("/2015-03-31/functions/", get(f::list))
        .route(
            "/2015-03-31/functions/{name}",
            get(f::get).delete(f::delete),
        )
        .route(
            "/2015-03-31/functions/{name}/configuration",
            get(f::get_configuration).put(f::update_configuration),
        )
        .route(
            "/2015-03-31/functions/{name}/versions",
            post(v::publish).get(v::list_versions),
        )
        .route(
            "/2015-03-31/functions/{name}/aliases",
            post(v::create_alias).get(v::list_aliases),
        )
        .route(
            "/2015-03-31/functions/{name}/aliases/{alias}",
            get(v::get_alias)
                .put(v::update_alias)
                .delete(v::delete_alias),
        )
        .route(
            "/2017-10-31/functions/{name}/concurrency",
            put(s::put_reserved).delete(s::delete_reserved),
        )
        .route(
            "/2019-09-30/functions/{name}/concurrency",
            get(s::get_reserved),
        )
        .route(
            "/2019-09-30/functions/{name}/provisioned-concurrency",
            put(s::put_provisioned)
                .get(provisioned_get_or_list)
                .delete(s::delete_provisioned),
        )
        .route(
            "/2021-10-31/functions/{name}/url",
            post(urls::create)
                .get(urls::get)
                .put(urls::update)
                .delete(urls::delete),
        )
        .route("/2021-10-31/functions/{name}/urls", get(urls::list))
        .route("/2016-08-19/account-settings/", get(s::account_settings))
        .route("/2016-08-19/account-settings", get(s::account_settings))
        .route(
            "/2017-03-31/tags/{resource}",
            post(s::tag).delete(s::untag).get(s::list_tags),
        )
        .route(
            "/2019-09-25/functions/{name}/event-invoke-config",
            put(s::put_event_config)
                .post(s::update_event_config)
                .get(s::get_event_config)
                .delete(s::delete_event_config),
        )
        .route(
            "/2019-09-25/functions/{name}/event-invoke-config/list",
            get(s::list_event_configs),
        )
        .route(
            "/2015-03-31/functions/{name}/policy",
            post(s::add_permission).get(s::get_policy),
        )
        .route(
            "/2015-03-31/functions/{name}/policy/{statement_id}",
            axum::routing::delete(s::remove_permission),
        )
        .route("/lamina/code/{file}", get(code_zip))
        .route("/lamina/status", get(crate::observe::status))
        .route("/lamina/functions/{name}/logs", get(reports::logs))
        .route("/lamina/usage", get(reports::usage))
        .route("/lamina/functions/{name}/feedback", post(quality::feedback))
        .route("/lamina/functions/{name}/quality", get(quality::quality))
        .route("/metrics", get(crate::observe::metrics))
        .layer(DefaultBodyLimit::max(MAX_CONTROL_REQUEST));

    Router::new()
        .merge(code_upload)
        .merge(invocations)
        .merge(urls)
        .merge(control)
}

#[derive(Debug, Deserialize)]
struct ProvisionedQuery {
    #[serde(rename = "Qualifier")]
    qualifier: Option<String>,
    #[serde(rename = "List")]
    list: Option<String>,
}

/// Get and List share a path; `?List=ALL` selects ListProvisionedConcurrencyConfigs.
async fn provisioned_get_or_list(
    state: State<AppState>,
    caller: Caller,
    name: Path<String>,
    axum::extract::Query(q): axum::extract::Query<ProvisionedQuery>,
) -> Result<axum::Json<serde_json::Value>, ApiError> {
    if q.list.as_deref() == Some("ALL") {
        return settings::list_provisioned(state, caller, name).await;
    }
    settings::get_provisioned(
        state,
        caller,
        name,
        axum::extract::Query(QualifierQuery {
            qualifier: q.qualifier,
        }),
    )
    .await
}

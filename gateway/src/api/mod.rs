//! The Lambda REST API's routes, exactly as botocore's model spells them, each group of
//! routes with its body limit. The operations live in one module per family; what they
//! read from a request alike is in [`request`].

pub mod account;
pub mod concurrency;
pub mod event_configs;
pub mod function_urls;
pub mod functions;
pub mod invoke;
pub mod layers;
pub mod policy;
pub mod provisioned;
pub mod quality;
pub mod reports;
pub mod request;
pub mod tags;
pub mod url_configs;
pub mod versions;

use axum::Router;
use axum::extract::DefaultBodyLimit;
use axum::routing::{any, get, post, put};

use crate::state::AppState;
use request::{MAX_CONTROL_REQUEST, MAX_CREATE_REQUEST, MAX_INVOKE_READ};

/// Every route of the API and of function URLs, grouped by body limit.
pub fn routes() -> Router<AppState> {
    use functions as f;
    use versions as v;

    let code_upload = Router::new()
        .route("/2015-03-31/functions", post(f::create).get(f::list))
        .route("/2015-03-31/functions/{name}/code", put(f::update_code))
        .route(
            "/2018-10-31/layers/{layer}/versions",
            post(layers::publish).get(layers::list_versions),
        )
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
        .route("/lambda-url/{url_id}", any(function_urls::serve))
        .route("/lambda-url/{url_id}/", any(function_urls::serve))
        .route("/lambda-url/{url_id}/{*path}", any(function_urls::serve))
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
            put(concurrency::put_reserved).delete(concurrency::delete_reserved),
        )
        .route(
            "/2019-09-30/functions/{name}/concurrency",
            get(concurrency::get_reserved),
        )
        .route(
            "/2019-09-30/functions/{name}/provisioned-concurrency",
            put(provisioned::put_provisioned)
                .get(provisioned::get_or_list)
                .delete(provisioned::delete_provisioned),
        )
        .route(
            "/2021-10-31/functions/{name}/url",
            post(url_configs::create)
                .get(url_configs::get)
                .put(url_configs::update)
                .delete(url_configs::delete),
        )
        .route("/2021-10-31/functions/{name}/urls", get(url_configs::list))
        .route(
            "/2016-08-19/account-settings/",
            get(account::account_settings),
        )
        .route(
            "/2016-08-19/account-settings",
            get(account::account_settings),
        )
        .route(
            "/2017-03-31/tags/{resource}",
            post(tags::tag).delete(tags::untag).get(tags::list_tags),
        )
        .route(
            "/2019-09-25/functions/{name}/event-invoke-config",
            put(event_configs::put_event_config)
                .post(event_configs::update_event_config)
                .get(event_configs::get_event_config)
                .delete(event_configs::delete_event_config),
        )
        .route(
            "/2019-09-25/functions/{name}/event-invoke-config/list",
            get(event_configs::list_event_configs),
        )
        .route(
            "/2015-03-31/functions/{name}/policy",
            post(policy::add_permission).get(policy::get_policy),
        )
        .route(
            "/2015-03-31/functions/{name}/policy/{statement_id}",
            axum::routing::delete(policy::remove_permission),
        )
        .route("/2018-10-31/layers", get(layers::list_or_find))
        .route("/2018-10-31/layers/", get(layers::list_or_find))
        .route(
            "/2018-10-31/layers/{layer}/versions/{version}",
            get(layers::get).delete(layers::delete),
        )
        .route("/lamina/code/{file}", get(f::code_zip))
        .route("/lamina/status", get(crate::observe::status))
        .route("/lamina/ready", get(crate::membership::ready))
        .route("/lamina/nodes", get(crate::observe::nodes))
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

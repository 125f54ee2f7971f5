//! TagResource, UntagResource and ListTags, on a function's ARN (Lamina has no other
//! taggable resources).

use std::collections::BTreeMap;

use axum::Json;
use axum::extract::{Path, RawQuery, State};
use axum::http::StatusCode;
use bytes::Bytes;
use serde::Deserialize;
use serde_json::{Value, json};

use super::request::parse_body;
use crate::auth::Caller;
use crate::error::{About, ApiError, catalog};
use crate::state::{AppState, Resolved};
use crate::validate;

/// What TagResource and friends accept: a function's ARN (Lamina has no other
/// taggable resources).
const TAGGABLE_ARN_PATTERN: &str = "arn:(aws[a-zA-Z-]*):lambda:[a-z]{2}((-gov)|(-iso([a-z]?)))?-[a-z]+-\\d{1}:\\d{12}:function:[a-zA-Z0-9-_]+(:(\\$LATEST|[a-zA-Z0-9-_]+))?";

fn tag_target(state: &AppState, caller: &Caller, resource: &str) -> Result<Resolved, ApiError> {
    let invalid = || {
        validate::constraint(
            resource,
            "resource",
            &format!("Member must satisfy regular expression pattern: {TAGGABLE_ARN_PATTERN}"),
        )
    };
    if !resource.starts_with("arn:") {
        return Err(invalid());
    }
    let parsed =
        protocol::names::FunctionRef::parse_field(resource, "resource").map_err(|_| invalid())?;
    if parsed.qualifier.is_some() {
        return Err(ApiError::InvalidParameterValue(
            "Tags on function aliases and versions are not supported. Please specify a function ARN.".into(),
        ));
    }
    state.find(&caller.account_id, parsed)
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "PascalCase")]
struct TagInput {
    tags: Option<BTreeMap<String, String>>,
}

pub async fn tag(
    State(state): State<AppState>,
    caller: Caller,
    Path(resource): Path<String>,
    body: Bytes,
) -> Result<StatusCode, ApiError> {
    let req: TagInput = parse_body(&body)?;
    let r = tag_target(&state, &caller, &resource)?;
    let mut tags = r.entry.tags.clone();
    tags.extend(req.tags.unwrap_or_default());
    validate::tags(&tags)?;
    save(&state, &r, tags).await
}

/// Replaces the function's tags; a function deleted meanwhile is Lambda's 404.
async fn save(
    state: &AppState,
    r: &Resolved,
    tags: BTreeMap<String, String>,
) -> Result<StatusCode, ApiError> {
    state
        .catalog
        .set_tags(&r.entry.account_id, &r.entry.name, tags)
        .await
        .map_err(|e| {
            let arn = state.arns.function(&r.entry.account_id, &r.entry.name);
            catalog(e, About::arn(&arn))
        })?;
    Ok(StatusCode::NO_CONTENT)
}

pub async fn untag(
    State(state): State<AppState>,
    caller: Caller,
    Path(resource): Path<String>,
    RawQuery(query): RawQuery,
) -> Result<StatusCode, ApiError> {
    let r = tag_target(&state, &caller, &resource)?;
    let keys: Vec<String> = query
        .unwrap_or_default()
        .split('&')
        .filter_map(|pair| pair.split_once('='))
        .filter(|(k, _)| *k == "tagKeys")
        .map(|(_, v)| {
            percent_encoding::percent_decode_str(&v.replace('+', " "))
                .decode_utf8_lossy()
                .into_owned()
        })
        .collect();
    let mut tags = r.entry.tags.clone();
    for k in &keys {
        tags.remove(k);
    }
    save(&state, &r, tags).await
}

pub async fn list_tags(
    State(state): State<AppState>,
    caller: Caller,
    Path(resource): Path<String>,
) -> Result<Json<Value>, ApiError> {
    let r = tag_target(&state, &caller, &resource)?;
    Ok(Json(json!({ "Tags": r.entry.tags })))
}

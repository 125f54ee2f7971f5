//! Resource policies: AddPermission, GetPolicy and RemovePermission, per function,
//! version or alias.

use axum::Json;
use axum::extract::{Path, Query, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use bytes::Bytes;
use serde::Deserialize;
use serde_json::{Value, json};
use store::PolicyStatement;

use super::request::{QualifierQuery, parse_body};
use crate::auth::Caller;
use crate::error::{About, ApiError, catalog};
use crate::state::{AppState, Resolved};

#[derive(Debug, Deserialize)]
#[serde(rename_all = "PascalCase")]
struct PermissionInput {
    statement_id: String,
    action: String,
    principal: String,
    source_arn: Option<String>,
    source_account: Option<String>,
    function_url_auth_type: Option<String>,
    revision_id: Option<String>,
}

fn policy_qualifier(r: &Resolved) -> String {
    r.qualifier.clone().unwrap_or_default()
}

/// The revision a policy change is checked against: the alias's, the version's, or
/// $LATEST's.
fn policy_revision(r: &Resolved, version: &store::VersionRecord) -> String {
    match r.qualifier.as_deref().and_then(|q| r.entry.aliases.get(q)) {
        Some(alias) => alias.revision_id.clone(),
        None => version.revision_id.clone(),
    }
}

/// The ARN a policy is attached to: the function's, or its version's or alias's.
fn resource_arn(state: &AppState, r: &Resolved) -> String {
    match &r.qualifier {
        Some(qual) => state
            .arns
            .qualified(&r.entry.account_id, &r.entry.name, qual),
        None => state.arns.function(&r.entry.account_id, &r.entry.name),
    }
}

fn valid_statement_id(sid: &str) -> bool {
    !sid.is_empty()
        && sid
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_')
}

pub async fn add_permission(
    State(state): State<AppState>,
    caller: Caller,
    Path(name): Path<String>,
    Query(q): Query<QualifierQuery>,
    body: Bytes,
) -> Result<Response, ApiError> {
    let req: PermissionInput = parse_body(&body)?;
    let r = state.resolve(&caller.account_id, &name, q.qualifier.as_deref())?;
    if r.qualifier.as_deref() == Some(protocol::names::LATEST) {
        return Err(ApiError::InvalidParameterValue(
            "We currently do not support adding policies for $LATEST.".into(),
        ));
    }
    let version = state.version_for_setting(&r)?;
    if let Some(rev) = &req.revision_id
        && *rev != policy_revision(&r, &version)
    {
        return Err(ApiError::PreconditionFailed(
            "The Revision Id provided does not match the latest Revision Id. Call the GetPolicy API to retrieve the latest Revision Id".into(),
        ));
    }
    if !valid_statement_id(&req.statement_id) {
        return Err(crate::validate::constraint(
            &req.statement_id,
            "statementId",
            "Member must satisfy regular expression pattern: ([a-zA-Z0-9-_]+)",
        ));
    }
    let valid_action = matches!(
        req.action.as_str(),
        "lambda:InvokeFunction" | "lambda:InvokeFunctionUrl" | "lambda:*" | "lambda:GetFunction"
    );
    if !valid_action {
        return Err(ApiError::InvalidParameterValue(format!(
            "The provided action {} is not supported by Lamina; use lambda:InvokeFunction or lambda:InvokeFunctionUrl.",
            req.action
        )));
    }
    let resource = resource_arn(&state, &r);
    let principal =
        if req.principal.len() == 12 && req.principal.bytes().all(|b| b.is_ascii_digit()) {
            json!({ "AWS": format!("arn:aws:iam::{}:root", req.principal) })
        } else if req.principal == "*" {
            json!("*")
        } else if req.principal.starts_with("arn:") {
            json!({ "AWS": req.principal })
        } else {
            json!({ "Service": req.principal })
        };
    let mut statement = json!({
        "Sid": req.statement_id,
        "Effect": "Allow",
        "Principal": principal,
        "Action": req.action,
        "Resource": resource,
    });
    let mut conditions = serde_json::Map::new();
    if let Some(arn) = &req.source_arn {
        conditions.insert("ArnLike".into(), json!({ "AWS:SourceArn": arn }));
    }
    if let Some(acct) = &req.source_account {
        conditions.insert("StringEquals".into(), json!({ "AWS:SourceAccount": acct }));
    }
    if let Some(auth) = &req.function_url_auth_type {
        conditions.insert(
            "StringEquals".into(),
            json!({ "lambda:FunctionUrlAuthType": auth }),
        );
    }
    if !conditions.is_empty()
        && let Some(obj) = statement.as_object_mut()
    {
        obj.insert("Condition".into(), Value::Object(conditions));
    }
    state
        .catalog
        .add_statement(
            &caller.account_id,
            &r.entry.name,
            PolicyStatement {
                qualifier: policy_qualifier(&r),
                statement_id: req.statement_id.clone(),
                statement: statement.clone(),
            },
        )
        .await
        .map_err(|e| catalog(e, About::statement(&resource, &req.statement_id)))?;
    Ok((
        StatusCode::CREATED,
        Json(json!({ "Statement": statement.to_string() })),
    )
        .into_response())
}

/// GetPolicy's answer for a function, version or alias without a policy (or without
/// the function at all).
fn no_policy() -> ApiError {
    ApiError::ResourceNotFound("The resource you requested does not exist.".into())
}

pub async fn get_policy(
    State(state): State<AppState>,
    caller: Caller,
    Path(name): Path<String>,
    Query(q): Query<QualifierQuery>,
) -> Result<Json<Value>, ApiError> {
    let r = state
        .resolve(&caller.account_id, &name, q.qualifier.as_deref())
        .map_err(|e| e.when_missing(no_policy))?;
    let version = state.version_for_read(&r).map_err(|_| no_policy())?;
    let qualifier = policy_qualifier(&r);
    let statements: Vec<&Value> = r
        .entry
        .policy
        .iter()
        .filter(|s| s.qualifier == qualifier)
        .map(|s| &s.statement)
        .collect();
    if statements.is_empty() {
        return Err(no_policy());
    }
    let policy = json!({
        "Version": "2012-10-17",
        "Id": "default",
        "Statement": statements,
    });
    Ok(Json(json!({
        "Policy": policy.to_string(),
        "RevisionId": policy_revision(&r, &version),
    })))
}

pub async fn remove_permission(
    State(state): State<AppState>,
    caller: Caller,
    Path((name, statement_id)): Path<(String, String)>,
    Query(q): Query<QualifierQuery>,
) -> Result<StatusCode, ApiError> {
    let r = state
        .resolve(&caller.account_id, &name, q.qualifier.as_deref())
        .map_err(|e| match (e, protocol::names::FunctionRef::parse(&name)) {
            (ApiError::ResourceNotFound(_), Ok(f))
                if f.region
                    .as_deref()
                    .is_none_or(|region| region == state.config.region) =>
            {
                ApiError::ResourceNotFound(format!(
                    "No policy found for: {}",
                    state.arns.function(&caller.account_id, &f.name)
                ))
            }
            (other, _) => other,
        })?;
    state.version_for_setting(&r)?;
    let qualifier = policy_qualifier(&r);
    if !r.entry.policy.iter().any(|s| s.qualifier == qualifier) {
        return Err(ApiError::ResourceNotFound(
            "No policy is associated with the given resource.".into(),
        ));
    }
    state
        .catalog
        .remove_statement(&caller.account_id, &r.entry.name, &qualifier, &statement_id)
        .await
        .map_err(|e| {
            catalog(
                e,
                About::statement(&resource_arn(&state, &r), &statement_id),
            )
        })?;
    Ok(StatusCode::NO_CONTENT)
}

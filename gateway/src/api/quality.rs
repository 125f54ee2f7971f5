//! Model quality monitoring: callers send the ground truth of a past prediction, and
//! read each version's scores over the quality window.
//!
//! - `POST /lamina/functions/{name}/feedback` with `{"RequestId": "...", "GroundTruth":
//!   <value, or one per row of a batch>}`: joins the truth with the prediction the
//!   function returned to that request (kept with its log). Sending truth again for the
//!   same request replaces it.
//! - `GET /lamina/functions/{name}/quality?window=<seconds>`: per version, MAE and RMSE
//!   (regressors) or accuracy and macro precision, recall and F1 (classifiers).
//!
//! Both only ever see the caller's account. The same scores, for every function, are the
//! `lamina_model_quality` metric.

use std::time::{Duration, SystemTime};

use axum::Json;
use axum::extract::{Path, Query, State};
use bytes::Bytes;
use protocol::quality::Scores;
use scheduler::recorder::micros;
use serde::Deserialize;
use serde_json::{Value, json};

use super::request::parse_body;
use crate::auth::Caller;
use crate::error::ApiError;
use crate::state::AppState;

#[derive(Debug, Deserialize)]
#[serde(rename_all = "PascalCase")]
struct FeedbackRequest {
    request_id: Option<String>,
    ground_truth: Option<Value>,
}

/// Microseconds since the epoch at which a quality window of `window` starts now.
pub(crate) fn window_start_us(window: Duration) -> i64 {
    micros(SystemTime::now()).saturating_sub(window.as_micros() as i64)
}

pub async fn feedback(
    State(state): State<AppState>,
    caller: Caller,
    Path(name): Path<String>,
    body: Bytes,
) -> Result<Json<Value>, ApiError> {
    let req: FeedbackRequest = parse_body(&body)?;
    let request_id = req
        .request_id
        .filter(|id| !id.is_empty())
        .ok_or_else(|| ApiError::InvalidParameterValue("RequestId is required.".into()))?;
    let truth = req
        .ground_truth
        .filter(|v| !v.is_null())
        .ok_or_else(|| ApiError::InvalidParameterValue("GroundTruth is required.".into()))?;
    let r = state.resolve(&caller.account_id, &name, None)?;
    let prediction = store::quality::prediction(&state.db, &r.entry.account_id, &request_id)
        .await
        .map_err(ApiError::service)?
        .filter(|p| p.function_name == r.entry.name)
        .ok_or_else(|| {
            ApiError::ResourceNotFound(format!(
                "No prediction of function {} is recorded for request {request_id}. \
                 Predictions of Runtime onnx functions are kept as long as their logs, and \
                 are readable about a second after the response.",
                r.entry.name
            ))
        })?;
    let body: Value = serde_json::from_str(&prediction.body).map_err(|_| {
        ApiError::InvalidParameterValue(format!(
            "The response to request {request_id} is not JSON, so it cannot be scored."
        ))
    })?;
    let (task, pairs) = protocol::quality::join(&body, &truth)
        .map_err(|e| ApiError::InvalidParameterValue(format!("Request {request_id}: {e}.")))?;
    store::quality::record_feedback(
        &state.db,
        &store::quality::Feedback {
            account_id: &r.entry.account_id,
            request_id: &request_id,
            function_name: &r.entry.name,
            version: &prediction.version,
            task,
            pairs: &pairs,
            received_at_us: micros(SystemTime::now()),
        },
    )
    .await
    .map_err(ApiError::service)?;
    Ok(Json(json!({
        "FunctionName": r.entry.name,
        "RequestId": request_id,
        "Version": prediction.version,
        "Task": task.as_str(),
        "Rows": pairs.len(),
    })))
}

#[derive(Debug, Deserialize)]
pub struct QualityQuery {
    window: Option<f64>,
}

/// One version's scores, in the API's field names.
pub fn scores_json(version: &str, scores: &Scores) -> Value {
    match *scores {
        Scores::Regression { samples, mae, rmse } => json!({
            "Version": version,
            "Task": "regression",
            "Samples": samples,
            "MAE": mae,
            "RMSE": rmse,
        }),
        Scores::Classification {
            samples,
            accuracy,
            precision,
            recall,
            f1,
        } => json!({
            "Version": version,
            "Task": "classification",
            "Samples": samples,
            "Accuracy": accuracy,
            "Precision": precision,
            "Recall": recall,
            "F1": f1,
        }),
    }
}

pub async fn quality(
    State(state): State<AppState>,
    caller: Caller,
    Path(name): Path<String>,
    Query(q): Query<QualityQuery>,
) -> Result<Json<Value>, ApiError> {
    let window = match q.window {
        None => state.config.quality_window,
        Some(s) if s.is_finite() && s > 0.0 => Duration::from_secs_f64(s),
        Some(_) => {
            return Err(ApiError::InvalidParameterValue(
                "window must be a positive number of seconds.".into(),
            ));
        }
    };
    let r = state.resolve(&caller.account_id, &name, None)?;
    let since = window_start_us(window);
    let scores =
        store::quality::scores(&state.db, Some((&r.entry.account_id, &r.entry.name)), since)
            .await
            .map_err(ApiError::service)?;
    let versions: Vec<Value> = scores
        .iter()
        .map(|(v, s)| scores_json(&v.version, s))
        .collect();
    Ok(Json(json!({
        "FunctionName": r.entry.name,
        "WindowSeconds": window.as_secs_f64(),
        "Versions": versions,
    })))
}

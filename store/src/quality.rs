//! Model quality: ground truth joined with logged predictions, and the sums a version's
//! scores are computed from. Always within one account.

use std::collections::BTreeMap;

use protocol::quality::{Confusion, Pair, RegressionTally, Scores, Task};
use sqlx::Row;

use crate::db::{Db, StoreError};

/// A model function's logged response to one request.
#[derive(Debug, Clone, PartialEq)]
pub struct Prediction {
    pub function_name: String,
    pub version: String,
    /// The response payload, as the function returned it.
    pub body: String,
}

/// The prediction `request_id` produced in `account_id`, once the ledger has written it.
/// The last attempt wins (an async retry predicts again).
pub async fn prediction(
    db: &Db,
    account_id: &str,
    request_id: &str,
) -> Result<Option<Prediction>, StoreError> {
    let row = sqlx::query(
        "SELECT function_name, executed_version, prediction FROM invocations \
         WHERE request_id = $1 AND account_id = $2 AND prediction IS NOT NULL \
         ORDER BY attempt DESC LIMIT 1",
    )
    .bind(request_id)
    .bind(account_id)
    .fetch_optional(db.pool())
    .await?;
    row.map(|r| {
        Ok(Prediction {
            function_name: r.try_get("function_name")?,
            version: r.try_get("executed_version")?,
            body: r.try_get("prediction")?,
        })
    })
    .transpose()
}

/// Ground truth for one request, joined row by row with its prediction.
#[derive(Debug, Clone)]
pub struct Feedback<'a> {
    pub account_id: &'a str,
    pub request_id: &'a str,
    pub function_name: &'a str,
    pub version: &'a str,
    pub task: Task,
    pub pairs: &'a [Pair],
    pub received_at_us: i64,
}

/// Records feedback; truth sent again for the same request replaces the earlier one.
pub async fn record_feedback(db: &Db, f: &Feedback<'_>) -> Result<(), StoreError> {
    let mut tx = db.writer().begin().await?;
    // Replacing row by row would leave stale rows if a resend has fewer of them.
    sqlx::query("DELETE FROM model_feedback WHERE account_id = $1 AND request_id = $2")
        .bind(f.account_id)
        .bind(f.request_id)
        .execute(&mut *tx)
        .await?;
    for (row, pair) in f.pairs.iter().enumerate() {
        // Only the pair's own columns are named, so every parameter is always bound with
        // the same type: PostgreSQL fixes a prepared statement's parameter types on first
        // use, and a NULL bound where a number was before fails there.
        let columns = match pair {
            Pair::Regression { .. } => "predicted_value, actual_value",
            Pair::Classification { .. } => "predicted_label, actual_label",
        };
        let sql = format!(
            "INSERT INTO model_feedback (account_id, request_id, row_index, function_name, \
             version, task, {columns}, received_at_us) \
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9)"
        );
        // Built from constants only; values are bound.
        let q = sqlx::query(sqlx::AssertSqlSafe(sql))
            .bind(f.account_id)
            .bind(f.request_id)
            .bind(row as i64)
            .bind(f.function_name)
            .bind(f.version)
            .bind(f.task.as_str());
        let q = match pair {
            Pair::Regression { predicted, actual } => q.bind(*predicted).bind(*actual),
            Pair::Classification { predicted, actual } => {
                q.bind(predicted.as_str()).bind(actual.as_str())
            }
        };
        q.bind(f.received_at_us).execute(&mut *tx).await?;
    }
    tx.commit().await?;
    Ok(())
}

/// Which function version scores belong to.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
pub struct ScoredVersion {
    pub account_id: String,
    pub function_name: String,
    pub version: String,
}

/// Scores per function version from feedback received at or after `since_us`: of one
/// function of `account_id`, or of every function on the node when `scope` is `None`.
pub async fn scores(
    db: &Db,
    scope: Option<(&str, &str)>,
    since_us: i64,
) -> Result<BTreeMap<ScoredVersion, Scores>, StoreError> {
    let (account, function) = scope.unwrap_or(("", ""));
    let regression = sqlx::query(
        "SELECT account_id, function_name, version, COUNT(*) AS n, \
                SUM(ABS(predicted_value - actual_value)) AS abs_sum, \
                SUM((predicted_value - actual_value) * (predicted_value - actual_value)) AS sq_sum \
         FROM model_feedback \
         WHERE received_at_us >= $1 AND task = 'regression' \
           AND ($2 = '' OR (account_id = $2 AND function_name = $3)) \
         GROUP BY account_id, function_name, version",
    )
    .bind(since_us)
    .bind(account)
    .bind(function)
    .fetch_all(db.pool())
    .await?;
    let classification = sqlx::query(
        "SELECT account_id, function_name, version, predicted_label, actual_label, COUNT(*) AS n \
         FROM model_feedback \
         WHERE received_at_us >= $1 AND task = 'classification' \
           AND ($2 = '' OR (account_id = $2 AND function_name = $3)) \
         GROUP BY account_id, function_name, version, predicted_label, actual_label",
    )
    .bind(since_us)
    .bind(account)
    .bind(function)
    .fetch_all(db.pool())
    .await?;

    let key = |r: &sqlx::any::AnyRow| -> Result<ScoredVersion, StoreError> {
        Ok(ScoredVersion {
            account_id: r.try_get("account_id")?,
            function_name: r.try_get("function_name")?,
            version: r.try_get("version")?,
        })
    };
    let mut scores = BTreeMap::new();
    for r in &regression {
        let tally = RegressionTally {
            count: r.try_get::<i64, _>("n")? as u64,
            abs_error_sum: r.try_get("abs_sum")?,
            squared_error_sum: r.try_get("sq_sum")?,
        };
        if let Some(s) = protocol::quality::regression_scores(&tally) {
            scores.insert(key(r)?, s);
        }
    }
    let mut confusions: BTreeMap<ScoredVersion, Confusion> = BTreeMap::new();
    for r in &classification {
        let predicted: String = r.try_get("predicted_label")?;
        let actual: String = r.try_get("actual_label")?;
        confusions.entry(key(r)?).or_default().add(
            &predicted,
            &actual,
            r.try_get::<i64, _>("n")? as u64,
        );
    }
    for (version, confusion) in confusions {
        // A version retrained from regressor to classifier keeps only its latest kind.
        if let Some(s) = protocol::quality::classification_scores(&confusion) {
            scores.insert(version, s);
        }
    }
    Ok(scores)
}

/// Deletes feedback received before `before_us`; returns how many rows went.
pub async fn expire_feedback(db: &Db, before_us: i64) -> Result<u64, StoreError> {
    let done = sqlx::query("DELETE FROM model_feedback WHERE received_at_us < $1")
        .bind(before_us)
        .execute(db.writer())
        .await?;
    Ok(done.rows_affected())
}

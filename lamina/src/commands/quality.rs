//! `lamina quality`: a model function's quality scores per version, computed by a running
//! Lamina from the ground truth sent with `lamina feedback`.

use clap::Args;
use serde_json::Value;

use crate::UsageError;
use crate::options::EndpointArgs;
use crate::remote::{Remote, query_value};

#[derive(Debug, Clone, Args)]
pub struct QualityArgs {
    /// Function name or ARN.
    pub function: String,
    /// Scores over feedback from this far back (10m, 2h, 7d); the node's
    /// --quality-window when unset.
    #[arg(long)]
    pub window: Option<String>,
    #[command(flatten)]
    pub remote: EndpointArgs,
}

pub async fn run(args: QualityArgs) -> anyhow::Result<()> {
    let remote = Remote::new(&args.remote.endpoint, &args.remote.region)?;
    let mut path = format!("/lamina/functions/{}/quality", query_value(&args.function));
    if let Some(w) = &args.window {
        let window = humantime::parse_duration(w).map_err(|_| {
            UsageError(format!(
                "--window takes a duration like 10m or 2h, not {w:?}"
            ))
        })?;
        path.push_str(&format!("?window={}", window.as_secs_f64()));
    }
    let report = remote.get_json(&path).await?;
    print!("{}", quality_table(&report));
    Ok(())
}

/// One line per version: its task, sample count and scores.
fn quality_table(report: &Value) -> String {
    let mut out = format!(
        "{:<10} {:<15} {:>8}  SCORES\n",
        "VERSION", "TASK", "SAMPLES"
    );
    for v in report["Versions"].as_array().into_iter().flatten() {
        let scores: Vec<String> = ["MAE", "RMSE", "Accuracy", "Precision", "Recall", "F1"]
            .iter()
            .filter_map(|k| v[*k].as_f64().map(|x| format!("{k} {x:.4}")))
            .collect();
        out.push_str(&format!(
            "{:<10} {:<15} {:>8}  {}\n",
            v["Version"].as_str().unwrap_or("?"),
            v["Task"].as_str().unwrap_or("?"),
            v["Samples"].as_u64().unwrap_or(0),
            scores.join("  ")
        ));
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn quality_table_shows_each_versions_scores() {
        let report = json!({"Versions": [
            {"Version": "1", "Task": "regression", "Samples": 10, "MAE": 1.5, "RMSE": 2.0},
            {"Version": "2", "Task": "classification", "Samples": 4, "Accuracy": 0.75,
             "Precision": 0.5, "Recall": 0.5, "F1": 0.5},
        ]});
        let table = quality_table(&report);
        assert!(table.contains("MAE 1.5000  RMSE 2.0000"), "{table}");
        assert!(
            table.contains("Accuracy 0.7500") && table.contains("F1 0.5000"),
            "{table}"
        );
    }
}

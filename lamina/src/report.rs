//! `lamina logs`, `lamina usage`, `lamina feedback` and `lamina quality`: what a running
//! Lamina recorded, for a terminal.

use std::io::Write as _;
use std::time::{Duration, SystemTime};

use serde_json::Value;

use hyper::Method;
use serde_json::json;

use crate::cli::{FeedbackArgs, LogsArgs, QualityArgs, UsageArgs, UsageError};
use crate::remote::{Remote, query_value, since_micros};

const FOLLOW_POLL: Duration = Duration::from_secs(1);

pub async fn logs(args: LogsArgs) -> anyhow::Result<()> {
    let remote = Remote::new(&args.remote.endpoint, &args.remote.region)?;
    let mut after = since_micros(&args.since, SystemTime::now())?;
    let name = query_value(&args.function);
    loop {
        let page = remote
            .get_json(&format!(
                "/lamina/functions/{name}/logs?after={after}&limit=1000"
            ))
            .await?;
        let events = page["Events"].as_array().cloned().unwrap_or_default();
        let mut out = std::io::stdout().lock();
        for event in &events {
            write!(out, "{}", event["Message"].as_str().unwrap_or_default())?;
        }
        out.flush()?;
        drop(out);
        after = page["NextAfter"].as_i64().unwrap_or(after);
        if events.len() >= 1000 {
            continue;
        }
        if !args.follow {
            return Ok(());
        }
        tokio::time::sleep(FOLLOW_POLL).await;
    }
}

pub async fn usage(args: UsageArgs) -> anyhow::Result<()> {
    let remote = Remote::new(&args.remote.endpoint, &args.remote.region)?;
    let since = since_micros(&args.since, SystemTime::now())?;
    let mut path = format!("/lamina/usage?since={since}");
    if let Some(f) = &args.function {
        path.push_str(&format!("&function={}", query_value(f)));
    }
    let report = remote.get_json(&path).await?;
    print!("{}", usage_table(&report));
    Ok(())
}

pub async fn feedback(args: FeedbackArgs) -> anyhow::Result<()> {
    let remote = Remote::new(&args.remote.endpoint, &args.remote.region)?;
    let truth = ground_truth(&args.ground_truth);
    let answer = remote
        .send_json(
            Method::POST,
            &format!("/lamina/functions/{}/feedback", query_value(&args.function)),
            Some(&json!({"RequestId": args.request_id, "GroundTruth": truth})),
        )
        .await?;
    println!(
        "recorded {} row(s) of ground truth for version {} of {}",
        answer["Rows"],
        answer["Version"].as_str().unwrap_or("?"),
        answer["FunctionName"].as_str().unwrap_or("?")
    );
    Ok(())
}

/// JSON as typed; anything that is not JSON is a class label spelled without quotes.
fn ground_truth(text: &str) -> Value {
    serde_json::from_str(text).unwrap_or_else(|_| Value::String(text.to_owned()))
}

pub async fn quality(args: QualityArgs) -> anyhow::Result<()> {
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

/// The usage report as an aligned table with a total line.
fn usage_table(report: &Value) -> String {
    let rows = report["Functions"].as_array().cloned().unwrap_or_default();
    let mut out = format!(
        "{:<40} {:>10} {:>8} {:>8} {:>14} {:>12}\n",
        "FUNCTION", "REQUESTS", "ERRORS", "COLD", "GB-SECONDS", "COST (USD)"
    );
    let (mut requests, mut gbs, mut cost) = (0u64, 0f64, 0f64);
    for r in &rows {
        let n = r["Requests"].as_u64().unwrap_or(0);
        let g = r["GBSeconds"].as_f64().unwrap_or(0.0);
        let c = r["CostUSD"].as_f64().unwrap_or(0.0);
        requests += n;
        gbs += g;
        cost += c;
        out.push_str(&format!(
            "{:<40} {:>10} {:>8} {:>8} {:>14.4} {:>12.6}\n",
            r["FunctionName"].as_str().unwrap_or_default(),
            n,
            r["Errors"].as_u64().unwrap_or(0),
            r["ColdStarts"].as_u64().unwrap_or(0),
            g,
            c
        ));
    }
    out.push_str(&format!(
        "{:<40} {:>10} {:>8} {:>8} {:>14.4} {:>12.6}\n",
        "TOTAL", requests, "", "", gbs, cost
    ));
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ground_truth_is_json_or_a_bare_label() {
        assert_eq!(ground_truth("3.5"), json!(3.5));
        assert_eq!(ground_truth("[1, 0]"), json!([1, 0]));
        assert_eq!(ground_truth("\"setosa\""), json!("setosa"));
        assert_eq!(ground_truth("setosa"), json!("setosa"));
    }

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

    #[test]
    fn usage_table_totals_every_function() {
        let report = serde_json::json!({"Functions": [
            {"FunctionName": "a", "Requests": 3, "Errors": 1, "ColdStarts": 1, "GBSeconds": 0.5, "CostUSD": 0.25},
            {"FunctionName": "b", "Requests": 2, "Errors": 0, "ColdStarts": 0, "GBSeconds": 0.25, "CostUSD": 0.5},
        ]});
        let table = usage_table(&report);
        let total = table.lines().last().unwrap();
        assert!(total.starts_with("TOTAL"), "{table}");
        assert!(
            total.contains(" 5 ") && total.contains("0.7500") && total.contains("0.750000"),
            "{table}"
        );
    }
}

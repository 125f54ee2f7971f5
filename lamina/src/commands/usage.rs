//! `lamina usage`: requests, GB-seconds and cost per function from a running Lamina's
//! billing ledger, as a table.

use std::time::SystemTime;

use clap::Args;
use serde_json::Value;

use crate::options::EndpointArgs;
use crate::remote::{Remote, query_value, since_micros};

#[derive(Debug, Clone, Args)]
pub struct UsageArgs {
    /// Usage from this far back (10m, 2h, 7d) or since this time (RFC 3339).
    #[arg(long, default_value = "30d")]
    pub since: String,
    /// Only this function.
    #[arg(long)]
    pub function: Option<String>,
    #[command(flatten)]
    pub remote: EndpointArgs,
}

pub async fn run(args: UsageArgs) -> anyhow::Result<()> {
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

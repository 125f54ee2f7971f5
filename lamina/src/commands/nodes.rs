//! `lamina nodes`: the live nodes of the cluster a running Lamina belongs to, with their
//! addresses, start times, heartbeats and load.

use clap::Args;
use serde_json::Value;

use crate::options::EndpointArgs;
use crate::remote::Remote;

#[derive(Debug, Clone, Args)]
pub struct NodesArgs {
    /// `table`, or `json` for the list as the node returns it.
    #[arg(long, default_value = "table", value_parser = ["table", "json"])]
    pub output: String,
    #[command(flatten)]
    pub remote: EndpointArgs,
}

pub async fn run(args: NodesArgs) -> anyhow::Result<()> {
    let remote = Remote::new(&args.remote.endpoint, &args.remote.region)?;
    let report = remote.get_json("/lamina/nodes").await?;
    if args.output == "json" {
        println!("{}", serde_json::to_string_pretty(&report["Nodes"])?);
    } else {
        print!("{}", nodes_table(&report));
    }
    Ok(())
}

/// One line per live node; the node that answered is marked with `*`.
fn nodes_table(report: &Value) -> String {
    let mut out = format!(
        "{:<2}{:<24} {:<32} {:<24} {:<24} {:>6} {:>9} {:>6}\n",
        "", "NODE", "ADDRESS", "STARTED", "LAST HEARTBEAT", "ENVS", "IN FLIGHT", "MODELS"
    );
    for n in report["Nodes"].as_array().into_iter().flatten() {
        let text = |k: &str| n[k].as_str().unwrap_or_default().to_owned();
        let count = |k: &str| n[k].as_u64().unwrap_or(0);
        out.push_str(&format!(
            "{:<2}{:<24} {:<32} {:<24} {:<24} {:>6} {:>9} {:>6}\n",
            if n["Self"].as_bool() == Some(true) {
                "*"
            } else {
                ""
            },
            text("NodeId"),
            text("AdvertiseUrl"),
            text("StartedAt"),
            text("LastHeartbeat"),
            count("Environments"),
            count("InFlight"),
            count("ModelsLoaded"),
        ));
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_table_has_a_line_per_node_and_marks_the_one_that_answered() {
        let report = serde_json::json!({"NodeId": "b", "Nodes": [
            {"NodeId": "a", "AdvertiseUrl": "http://10.0.0.1:4599", "StartedAt": "2026-12-06T10:00:00.000Z",
             "LastHeartbeat": "2026-12-06T10:05:00.000Z", "Environments": 3, "InFlight": 1, "ModelsLoaded": 2, "Self": false},
            {"NodeId": "b", "AdvertiseUrl": "http://10.0.0.2:4599", "StartedAt": "2026-12-06T10:00:01.000Z",
             "LastHeartbeat": "2026-12-06T10:05:00.500Z", "Environments": 0, "InFlight": 0, "ModelsLoaded": 0, "Self": true},
        ]});
        let table = nodes_table(&report);
        let lines: Vec<&str> = table.lines().collect();
        assert_eq!(lines.len(), 3, "{table}");
        assert!(lines[1].starts_with("  a "), "{table}");
        assert!(lines[1].contains("http://10.0.0.1:4599"));
        assert!(lines[2].starts_with("* b "), "{table}");
    }
}

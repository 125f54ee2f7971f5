//! `lamina logs`: a function's log lines as a running Lamina recorded them, once or
//! followed.

use std::io::Write as _;
use std::time::{Duration, SystemTime};

use clap::Args;

use crate::options::EndpointArgs;
use crate::remote::{Remote, query_value, since_micros};

#[derive(Debug, Clone, Args)]
pub struct LogsArgs {
    /// Function name or ARN.
    pub function: String,
    /// Only logs from this far back (10m, 2h, 7d) or since this time (RFC 3339).
    #[arg(long, default_value = "1h")]
    pub since: String,
    /// Keep printing new logs as they arrive.
    #[arg(long, short)]
    pub follow: bool,
    #[command(flatten)]
    pub remote: EndpointArgs,
}

const FOLLOW_POLL: Duration = Duration::from_secs(1);

pub async fn run(args: LogsArgs) -> anyhow::Result<()> {
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

//! `lamina up`: one process serving the Lambda API on embedded defaults.

use std::time::Duration;

use anyhow::Context as _;
use lamina::node::{Node, NodeConfig, public_url};
use protocol::Price;
use scheduler::{DispatchConfig, Limits};

use crate::cli::UpArgs;

fn config(args: &UpArgs, public: String) -> NodeConfig {
    let mut c = NodeConfig::new(&args.data_dir, public);
    c.database_url = args.database_url.clone();
    c.region = args.region.clone();
    c.default_account = args.default_account.clone();
    c.root_key = args
        .root_access_key_id
        .clone()
        .zip(args.root_secret_access_key.clone());
    c.limits = Limits {
        account_concurrency: args.account_concurrency,
        min_unreserved: args.min_unreserved,
        idle_timeout: Duration::from_secs_f64(args.idle_timeout),
        burst_limit: args.burst_limit,
        burst_interval: Duration::from_secs_f64(args.burst_interval),
        max_environments: args.max_environments as usize,
    };
    c.dispatch = DispatchConfig {
        retry_base: Duration::from_secs_f64(args.retry_base),
        ..DispatchConfig::default()
    };
    c.log_retention = Duration::from_secs_f64(args.log_retention);
    c.quality_window = Duration::from_secs_f64(args.quality_window);
    if let Some(dir) = &args.runtimes_dir {
        c.runtimes_dir = Some(dir.clone());
    }
    c.models.budget_bytes = usize::try_from(args.model_budget_mb << 20).unwrap_or(usize::MAX);
    c.models.ttl = Duration::from_secs_f64(args.model_ttl);
    c.connections = gateway::ConnectionLimits {
        header_read_timeout: Duration::from_secs_f64(args.header_read_timeout),
        max_connections: usize::try_from(args.max_connections).unwrap_or(usize::MAX),
    };
    c.price = Price {
        per_million_requests: args.price_per_million_requests,
        per_gb_second: args.price_per_gb_second,
    };
    c
}

/// Resolves on Ctrl-C or SIGTERM.
async fn signal() {
    let ctrl_c = tokio::signal::ctrl_c();
    #[cfg(unix)]
    {
        let mut term =
            match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
                Ok(s) => s,
                Err(_) => {
                    let _ = ctrl_c.await;
                    return;
                }
            };
        tokio::select! {
            _ = ctrl_c => {}
            _ = term.recv() => {}
        }
    }
    #[cfg(not(unix))]
    let _ = ctrl_c.await;
}

pub async fn run(args: UpArgs) -> anyhow::Result<()> {
    let listener = tokio::net::TcpListener::bind(args.listen)
        .await
        .with_context(|| format!("binding {}", args.listen))?;
    let addr = listener.local_addr()?;
    let tls = match (&args.tls_cert, &args.tls_key) {
        (Some(cert), Some(key)) => Some(gateway::tls::server_config(cert, key)?),
        _ => None,
    };
    let public = args
        .public_url
        .clone()
        .unwrap_or_else(|| public_url(addr, tls.is_some()));
    let config = config(&args, public.clone());
    if config.runtimes_dir.is_none() {
        tracing::warn!(
            "no built-in runtimes found (run guests/build.sh or set --runtimes-dir): functions with Runtime onnx will be refused"
        );
    }
    let node = Node::start(config).await?;
    let database = match &args.database_url {
        Some(_) => "PostgreSQL".to_owned(),
        None => format!("SQLite at {}", args.data_dir.join("lamina.db").display()),
    };
    let credentials = args.data_dir.join("credentials");
    if let Some(key) = &node.created_root_key {
        // Shown once, on the start that created it; afterwards only the file has it.
        println!(
            "Created account {} with access key {} (secret {}),\n\
             saved to {} in the AWS shared-credentials format.\n",
            key.account_id,
            key.access_key_id,
            key.secret,
            credentials.display()
        );
    }
    println!(
        "Lamina is listening on {public}\n\
         data: {}   database: {database}   region: {}\n\n\
         Point AWS clients at it (requests are signed with the account's access keys):\n\
         \x20 export AWS_SHARED_CREDENTIALS_FILE={}\n\
         \x20 boto3:   boto3.client(\"lambda\", endpoint_url=\"{public}\", region_name=\"{}\")\n\
         \x20 aws-cli: aws --endpoint-url {public} --region {} lambda list-functions\n",
        args.data_dir.display(),
        args.region,
        credentials.display(),
        args.region,
        args.region,
    );
    let shutdown = async {
        signal().await;
        tracing::info!("stopping: draining in-flight invocations");
    };
    node.serve(listener, tls, shutdown).await?;
    tracing::info!("stopped");
    Ok(())
}

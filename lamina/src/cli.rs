//! The command line: one typed configuration, every flag also a `LAMINA_*` variable.

use std::net::SocketAddr;
use std::path::PathBuf;

use clap::{Args, Parser, Subcommand};

/// A mistake in how lamina was invoked (exit code 64).
#[derive(Debug, thiserror::Error)]
#[error("{0}")]
pub struct UsageError(pub String);

#[derive(Debug, Parser)]
#[command(
    name = "lamina",
    version,
    about = "Self-hosted AWS Lambda for WebAssembly functions and ML models"
)]
pub struct Cli {
    /// Log format of Lamina's own logs: text or json.
    #[arg(long, env = "LAMINA_LOG_FORMAT", default_value = "text", global = true)]
    pub log_format: String,
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Run gateway, scheduler and worker in one process.
    Up(Box<UpArgs>),
    /// Print a function's logs (START/END/REPORT lines and its own output).
    Logs(LogsArgs),
    /// Print requests, GB-seconds and cost per function from the billing ledger.
    Usage(UsageArgs),
    /// Deploy a model (.onnx), a Wasm function (.wasm) or a package (.zip) and print its
    /// function URL.
    Deploy(DeployArgs),
    /// Send the ground truth of a past prediction, for the model's quality scores.
    Feedback(FeedbackArgs),
    /// Print a model function's quality scores per version.
    Quality(QualityArgs),
    /// Create and list accounts (each created with a first access key).
    #[command(subcommand)]
    Accounts(AccountsCommand),
    /// Create, list and revoke access keys.
    #[command(subcommand)]
    Keys(KeysCommand),
}

/// Where the node's database and server key are (the same flags as `lamina up`).
#[derive(Debug, Clone, Args)]
pub struct AdminArgs {
    #[arg(long, env = "LAMINA_DATA_DIR", default_value = ".lamina")]
    pub data_dir: PathBuf,
    #[arg(long, env = "LAMINA_DATABASE_URL")]
    pub database_url: Option<String>,
}

#[derive(Debug, Subcommand)]
pub enum AccountsCommand {
    /// Create an account and its first access key, and print the key.
    Create {
        /// A name for people.
        #[arg(long, default_value = "")]
        name: String,
        /// The 12-digit id (random if unset).
        #[arg(long)]
        id: Option<String>,
        #[command(flatten)]
        admin: AdminArgs,
    },
    List {
        #[command(flatten)]
        admin: AdminArgs,
    },
}

#[derive(Debug, Subcommand)]
pub enum KeysCommand {
    /// Create an access key for an account and print it (the secret is shown only once).
    Create {
        #[arg(long)]
        account: String,
        #[command(flatten)]
        admin: AdminArgs,
    },
    /// List access keys (never their secrets).
    List {
        #[arg(long)]
        account: Option<String>,
        #[command(flatten)]
        admin: AdminArgs,
    },
    /// Revoke an access key; requests signed with it are refused within seconds.
    Revoke {
        key_id: String,
        #[command(flatten)]
        admin: AdminArgs,
    },
}

/// Where a running Lamina is.
#[derive(Debug, Clone, Args)]
pub struct EndpointArgs {
    /// The Lamina to ask.
    #[arg(long, env = "LAMINA_ENDPOINT", default_value = "http://127.0.0.1:4599")]
    pub endpoint: String,
    /// The region requests are signed for.
    #[arg(long, env = "AWS_REGION", default_value = "us-east-1")]
    pub region: String,
}

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

#[derive(Debug, Clone, Args)]
pub struct DeployArgs {
    /// What to deploy: model.onnx (Runtime onnx), a .wasm (Runtime wasm), or a .zip
    /// package (its runtime read from what it holds).
    pub path: PathBuf,
    /// The function's name; an existing function gets the new code.
    #[arg(long)]
    pub name: String,
    /// MemorySize in MB.
    #[arg(long)]
    pub memory: Option<u32>,
    /// Timeout in seconds.
    #[arg(long)]
    pub timeout: Option<u32>,
    /// Make the function URL public (AuthType NONE) instead of requiring signed requests.
    #[arg(long)]
    pub public: bool,
    /// Seconds to wait for the function to become Active.
    #[arg(long, default_value_t = 300)]
    pub wait: u64,
    #[command(flatten)]
    pub remote: EndpointArgs,
}

#[derive(Debug, Clone, Args)]
pub struct FeedbackArgs {
    /// Function name or ARN.
    pub function: String,
    /// The request id of the prediction (the `x-amzn-RequestId` of its response).
    pub request_id: String,
    /// The true value or class label, as JSON (`3.5`, `"setosa"`, `1`), or a JSON list
    /// with one per row of a batch request; a bare word is taken as a label.
    pub ground_truth: String,
    #[command(flatten)]
    pub remote: EndpointArgs,
}

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

#[derive(Debug, Clone, Args)]
pub struct UpArgs {
    /// Address to listen on.
    #[arg(long, env = "LAMINA_LISTEN", default_value = "127.0.0.1:4599")]
    pub listen: SocketAddr,
    /// PEM certificate chain (leaf first): serve HTTPS instead of HTTP.
    #[arg(long, env = "LAMINA_TLS_CERT", requires = "tls_key")]
    pub tls_cert: Option<PathBuf>,
    /// PEM private key of that certificate.
    #[arg(long, env = "LAMINA_TLS_KEY", requires = "tls_cert")]
    pub tls_key: Option<PathBuf>,
    /// Where Lamina keeps packages, compiled code, the spool and the embedded database.
    #[arg(long, env = "LAMINA_DATA_DIR", default_value = ".lamina")]
    pub data_dir: PathBuf,
    /// postgres://... to use PostgreSQL; the embedded SQLite file otherwise.
    #[arg(long, env = "LAMINA_DATABASE_URL")]
    pub database_url: Option<String>,
    /// Region in ARNs and accepted in request signatures.
    #[arg(long, env = "LAMINA_REGION", default_value = "us-east-1")]
    pub region: String,
    /// Base URL clients reach this server at (for function URLs); defaults to the
    /// listen address.
    #[arg(long, env = "LAMINA_PUBLIC_URL")]
    pub public_url: Option<String>,
    /// Seconds an idle execution environment is kept before it is shut down.
    #[arg(long, env = "LAMINA_IDLE_TIMEOUT", default_value_t = 600.0)]
    pub idle_timeout: f64,
    /// Concurrent executions per account.
    #[arg(long, env = "LAMINA_ACCOUNT_CONCURRENCY", default_value_t = 1000)]
    pub account_concurrency: u32,
    /// Concurrency that reservations must leave to the rest of the account.
    #[arg(long, env = "LAMINA_MIN_UNRESERVED", default_value_t = 100)]
    pub min_unreserved: u32,
    /// New environments per function per burst interval.
    #[arg(long, env = "LAMINA_BURST_LIMIT", default_value_t = 1000)]
    pub burst_limit: u32,
    /// Seconds over which the burst limit refills.
    #[arg(long, env = "LAMINA_BURST_INTERVAL", default_value_t = 10.0)]
    pub burst_interval: f64,
    /// Execution environments this node holds at most.
    #[arg(long, env = "LAMINA_MAX_ENVIRONMENTS", default_value_t = 1000)]
    pub max_environments: u32,
    /// Seconds before the first retry of a failed async event (Lambda: 60); the second
    /// retry waits twice as long.
    #[arg(long, env = "LAMINA_RETRY_BASE", default_value_t = 60.0)]
    pub retry_base: f64,
    /// Price per million requests, in USD.
    #[arg(
        long,
        env = "LAMINA_PRICE_PER_MILLION_REQUESTS",
        default_value_t = 0.20
    )]
    pub price_per_million_requests: f64,
    /// Price per GB-second, in USD.
    #[arg(
        long,
        env = "LAMINA_PRICE_PER_GB_SECOND",
        default_value_t = 0.0000166667
    )]
    pub price_per_gb_second: f64,
    /// Seconds function logs are kept.
    #[arg(long, env = "LAMINA_LOG_RETENTION", default_value_t = 7.0 * 24.0 * 3600.0)]
    pub log_retention: f64,
    /// Seconds of model feedback the quality scores (`lamina quality`, the
    /// `lamina_model_quality` metric) are computed over; feedback is kept for
    /// --log-retention.
    #[arg(long, env = "LAMINA_QUALITY_WINDOW", default_value_t = 3600.0)]
    pub quality_window: f64,
    /// Directory of the built-in runtimes (onnx.wasm). Defaults to `runtimes/` next to
    /// the lamina binary, else the source checkout's `guests/target/runtimes` (where
    /// `guests/build.sh` puts them).
    #[arg(long, env = "LAMINA_RUNTIMES_DIR")]
    pub runtimes_dir: Option<PathBuf>,
    /// MiB of memory all loaded models on this node may take together.
    #[arg(long, env = "LAMINA_MODEL_BUDGET_MB", default_value_t = 2048)]
    pub model_budget_mb: u64,
    /// Seconds a model nobody uses stays loaded (independent of --idle-timeout: one
    /// model serves every function and environment that uses it).
    #[arg(long, env = "LAMINA_MODEL_TTL", default_value_t = 900.0)]
    pub model_ttl: f64,
    /// The id of the account a fresh data directory starts with.
    #[arg(long, env = "LAMINA_DEFAULT_ACCOUNT", default_value = "000000000000")]
    pub default_account: String,
    /// The first account's access key id on a fresh data directory (generated if unset).
    #[arg(
        long,
        env = "LAMINA_ROOT_ACCESS_KEY_ID",
        requires = "root_secret_access_key"
    )]
    pub root_access_key_id: Option<String>,
    /// Its secret; never logged.
    #[arg(
        long,
        env = "LAMINA_ROOT_SECRET_ACCESS_KEY",
        hide_env_values = true,
        requires = "root_access_key_id"
    )]
    pub root_secret_access_key: Option<String>,
    /// Seconds a client has to send a request's headers (and a TLS handshake); also how
    /// long a connection may stay open without a request.
    #[arg(
        long,
        env = "LAMINA_HEADER_READ_TIMEOUT",
        default_value_t = 10.0,
        value_parser = |s: &str| match s.parse::<f64>() {
            Ok(v) if v.is_finite() && v > 0.0 => Ok(v),
            _ => Err("must be a positive number of seconds"),
        }
    )]
    pub header_read_timeout: f64,
    /// Client connections served at once; more wait in the listen backlog. Each takes a
    /// file handle: keep it under `ulimit -n`.
    #[arg(
        long,
        env = "LAMINA_MAX_CONNECTIONS",
        default_value_t = 10_000,
        value_parser = clap::value_parser!(u64).range(1..=gateway::ConnectionLimits::MAX_CONNECTIONS as u64)
    )]
    pub max_connections: u64,
}

impl UpArgs {
    /// Checks the configuration before anything is bound or created.
    pub fn validate(&self) -> Result<(), UsageError> {
        let positive = |v: f64, name: &str| {
            if v.is_finite() && v > 0.0 {
                Ok(())
            } else {
                Err(UsageError(format!(
                    "--{name} must be a positive number of seconds"
                )))
            }
        };
        positive(self.idle_timeout, "idle-timeout")?;
        positive(self.burst_interval, "burst-interval")?;
        positive(self.retry_base, "retry-base")?;
        positive(self.log_retention, "log-retention")?;
        positive(self.quality_window, "quality-window")?;
        positive(self.model_ttl, "model-ttl")?;
        if self.model_budget_mb == 0 {
            return Err(UsageError("--model-budget-mb must be positive".into()));
        }
        if let Some(dir) = &self.runtimes_dir
            && !dir.join("onnx.wasm").is_file()
        {
            return Err(UsageError(format!(
                "--runtimes-dir {}: no onnx.wasm there (build it with guests/build.sh)",
                dir.display()
            )));
        }
        if self.min_unreserved > self.account_concurrency {
            return Err(UsageError(
                "--min-unreserved cannot exceed --account-concurrency".into(),
            ));
        }
        if !(self.default_account.len() == 12
            && self.default_account.bytes().all(|b| b.is_ascii_digit()))
        {
            return Err(UsageError("--default-account must be 12 digits".into()));
        }
        if let Some(url) = &self.database_url
            && !(url.starts_with("postgres://")
                || url.starts_with("postgresql://")
                || url.starts_with("sqlite:"))
        {
            return Err(UsageError(
                "--database-url must start with postgres:// or sqlite:".into(),
            ));
        }
        Ok(())
    }
}

pub fn init_tracing(format: &str) {
    let filter = tracing_subscriber::EnvFilter::try_from_env("LAMINA_LOG")
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"));
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr);
    if format == "json" {
        builder.json().init();
    } else {
        builder.init();
    }
}

pub async fn run(cli: Cli) -> anyhow::Result<()> {
    match cli.command {
        Command::Up(args) => {
            args.validate()?;
            crate::up::run(*args).await
        }
        Command::Logs(args) => crate::report::logs(args).await,
        Command::Usage(args) => crate::report::usage(args).await,
        Command::Deploy(args) => crate::deploy::run(args).await,
        Command::Feedback(args) => crate::report::feedback(args).await,
        Command::Quality(args) => crate::report::quality(args).await,
        Command::Accounts(command) => crate::admin::accounts(command).await,
        Command::Keys(command) => crate::admin::keys(command).await,
    }
}

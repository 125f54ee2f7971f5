//! `lamina up`: one process serving the Lambda API on embedded defaults; its flags are
//! the node's configuration.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use anyhow::Context as _;
use clap::Args;
use lamina::node::{Node, NodeConfig, PackageOptions, public_url};
use packages::{CodeStoreLocation, PackageLimits, S3Config};
use protocol::Price;
use scheduler::{DispatchConfig, Limits};

use crate::UsageError;

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
    /// The key that seals access-key secrets and packages at rest; every node of a
    /// cluster needs the same one. Created at `<data-dir>/server.key` when absent.
    #[arg(long, env = "LAMINA_SERVER_KEY_FILE")]
    pub server_key_file: Option<PathBuf>,
    /// This node's id in its cluster. Default: the id kept in `<data-dir>/node-id`,
    /// made up on the first start, so a node that comes back on its data directory is
    /// the same node.
    #[arg(long, env = "LAMINA_NODE_ID")]
    pub node_id: Option<String>,
    /// Where other nodes and operators reach this node. Default: the public URL.
    #[arg(long, env = "LAMINA_ADVERTISE_URL")]
    pub advertise_url: Option<String>,
    /// In a cluster, send each function's synchronous invocations to its home nodes
    /// (`home`), or serve every request on the node that received it (`local`).
    #[arg(long, env = "LAMINA_ROUTING", value_enum, default_value_t = Routing::Home)]
    pub routing: Routing,
    /// How many home nodes each function has in a cluster.
    #[arg(long, env = "LAMINA_HOME_NODES", default_value_t = 2,
          value_parser = clap::value_parser!(u32).range(1..))]
    pub home_nodes: u32,
    /// Invocations in flight at which a home node takes no more forwarded requests; the
    /// node that received them serves them itself (spill-over).
    #[arg(long, env = "LAMINA_SPILL_OVER_AT", default_value_t = 32,
          value_parser = clap::value_parser!(u64).range(1..))]
    pub spill_over_at: u64,
    #[command(flatten)]
    pub packages: PackageArgs,
}

/// Where packages are kept, what they may weigh, and the S3 endpoint code comes from.
#[derive(Debug, Clone, clap::Args)]
pub struct PackageArgs {
    /// Where sealed packages are kept: a directory, or `s3://bucket/prefix` on the S3
    /// endpoint. Default: the database when it is PostgreSQL (so every node of a
    /// cluster reaches every package), else `<data-dir>/packages`.
    #[arg(long, env = "LAMINA_CODE_STORE", value_parser = CodeStoreLocation::parse)]
    pub code_store: Option<CodeStoreLocation>,
    /// Where packages are unpacked for environments to read (the only plaintext copy;
    /// emptied at start and stop: put it on tmpfs to keep plaintext off disks). Default
    /// `<data-dir>/unpacked`.
    #[arg(long, env = "LAMINA_PACKAGE_CACHE_DIR")]
    pub package_cache_dir: Option<PathBuf>,
    /// Seal packages at rest with the server key (ChaCha20-Poly1305).
    #[arg(long, env = "LAMINA_ENCRYPT_PACKAGES", default_value_t = true, action = clap::ArgAction::Set)]
    pub encrypt_packages: bool,
    /// Largest zip accepted inline (`Code.ZipFile`), in bytes.
    #[arg(long, env = "LAMINA_MAX_ZIPPED_BYTES", default_value_t = PackageLimits::default().max_zipped)]
    pub max_zipped_bytes: u64,
    /// Largest package once unpacked, and largest S3 object, in bytes.
    #[arg(long, env = "LAMINA_MAX_UNZIPPED_BYTES", default_value_t = PackageLimits::default().max_unzipped)]
    pub max_unzipped_bytes: u64,
    /// The S3-compatible endpoint code is fetched from (`Code.S3Bucket`); AWS's own S3
    /// in `--region` when absent.
    #[arg(long, env = "LAMINA_S3_ENDPOINT")]
    pub s3_endpoint: Option<String>,
    /// The S3 access key; otherwise AWS_ACCESS_KEY_ID and friends, then the shared
    /// credentials file (AWS_SHARED_CREDENTIALS_FILE, AWS_PROFILE).
    #[arg(
        long,
        env = "LAMINA_S3_ACCESS_KEY_ID",
        requires = "s3_secret_access_key"
    )]
    pub s3_access_key_id: Option<String>,
    #[arg(
        long,
        env = "LAMINA_S3_SECRET_ACCESS_KEY",
        hide_env_values = true,
        requires = "s3_access_key_id"
    )]
    pub s3_secret_access_key: Option<String>,
    /// Address buckets as host names (`bucket.endpoint`) instead of path-style.
    #[arg(long, env = "LAMINA_S3_VIRTUAL_HOSTED")]
    pub s3_virtual_hosted: bool,
    /// PEM certificates trusted for the S3 endpoint besides the system's roots.
    #[arg(long, env = "LAMINA_S3_CA_BUNDLE")]
    pub s3_ca_bundle: Option<PathBuf>,
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
        if self.packages.max_zipped_bytes == 0 || self.packages.max_unzipped_bytes == 0 {
            return Err(UsageError(
                "--max-zipped-bytes and --max-unzipped-bytes must be positive".into(),
            ));
        }
        if let Some(bundle) = &self.packages.s3_ca_bundle
            && !bundle.is_file()
        {
            return Err(UsageError(format!(
                "--s3-ca-bundle {}: no such file",
                bundle.display()
            )));
        }
        if let Some(id) = &self.node_id
            && (id.is_empty()
                || id.len() > 128
                || !id
                    .bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b"-_.".contains(&b)))
        {
            return Err(UsageError(
                "--node-id must be 1 to 128 letters, digits, '-', '_' or '.'".into(),
            ));
        }
        if let Some(url) = &self.advertise_url
            && !(url.starts_with("http://") || url.starts_with("https://"))
        {
            return Err(UsageError(
                "--advertise-url must start with http:// or https://".into(),
            ));
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

/// Where a cluster serves synchronous invocations.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum Routing {
    /// On the function's home nodes, unless the receiving node is warm, a cold start
    /// there measures cheaper than a hop, or the homes are saturated.
    Home,
    /// On the node that received the request.
    Local,
}

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
    c.server_key_file = args.server_key_file.clone();
    c.node_id = args.node_id.clone();
    c.advertise_url = args.advertise_url.clone();
    c.routing = scheduler::RoutingPolicy {
        enabled: args.routing == Routing::Home,
        home_nodes: args.home_nodes as usize,
        spill_over_at: args.spill_over_at,
    };
    let p = &args.packages;
    c.packages = PackageOptions {
        code_store: p.code_store.clone(),
        working_dir: p.package_cache_dir.clone(),
        plaintext: !p.encrypt_packages,
        limits: PackageLimits {
            max_zipped: p.max_zipped_bytes,
            max_unzipped: p.max_unzipped_bytes,
            ..PackageLimits::default()
        },
        s3: S3Config {
            endpoint: p.s3_endpoint.clone(),
            region: args.region.clone(),
            access_key: p
                .s3_access_key_id
                .clone()
                .zip(p.s3_secret_access_key.clone()),
            virtual_hosted: p.s3_virtual_hosted,
            ca_bundle: p.s3_ca_bundle.clone(),
        },
    };
    c
}

/// Resolves on Ctrl-C or SIGTERM. The handlers are installed when this is called, not
/// when the future is first polled: a SIGTERM sent the moment the node says it listens
/// must stop it gracefully, not kill it.
fn stop_signal() -> impl Future<Output = ()> {
    #[cfg(unix)]
    {
        use tokio::signal::unix::{SignalKind, signal};
        let term = signal(SignalKind::terminate());
        let interrupt = signal(SignalKind::interrupt());
        async move {
            match (term, interrupt) {
                (Ok(mut term), Ok(mut interrupt)) => {
                    tokio::select! {
                        _ = term.recv() => {}
                        _ = interrupt.recv() => {}
                    }
                }
                _ => {
                    let _ = tokio::signal::ctrl_c().await;
                }
            }
        }
    }
    #[cfg(not(unix))]
    async {
        let _ = tokio::signal::ctrl_c().await;
    }
}

pub async fn run(args: UpArgs) -> anyhow::Result<()> {
    args.validate()?;
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
    match lamina::file_table::prepare() {
        Ok(p) => tracing::debug!(
            open_files_limit = p.open_files_limit,
            ready_slots = p.ready_slots,
            "file table ready"
        ),
        Err(e) => tracing::warn!(error = %e, "could not size the file table up front"),
    }
    let stopping = stop_signal();
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
        stopping.await;
        tracing::info!("stopping: draining in-flight invocations");
    };
    node.serve(listener, tls, shutdown).await?;
    tracing::info!("stopped");
    Ok(())
}

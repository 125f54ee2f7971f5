//! The command line's top level: the `lamina` parser, its global flags and which command
//! runs. Each command's own flags live with it in `commands/`; option groups several
//! commands share are in `options.rs`.

use clap::{Parser, Subcommand};

use crate::commands::{accounts, deploy, feedback, keys, logs, nodes, quality, up, usage};

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
    Up(Box<up::UpArgs>),
    /// Print a function's logs (START/END/REPORT lines and its own output).
    Logs(logs::LogsArgs),
    /// Print requests, GB-seconds and cost per function from the billing ledger.
    Usage(usage::UsageArgs),
    /// Deploy a model (.onnx), a Wasm function (.wasm) or a package (.zip) and print its
    /// function URL.
    Deploy(deploy::DeployArgs),
    /// Send the ground truth of a past prediction, for the model's quality scores.
    Feedback(feedback::FeedbackArgs),
    /// Print a model function's quality scores per version.
    Quality(quality::QualityArgs),
    /// Create and list accounts (each created with a first access key).
    #[command(subcommand)]
    Accounts(accounts::AccountsCommand),
    /// Create, list and revoke access keys.
    #[command(subcommand)]
    Keys(keys::KeysCommand),
    /// List the live nodes of the cluster.
    Nodes(nodes::NodesArgs),
}

impl Command {
    /// Runs the chosen command to its end (for `up`, until Ctrl-C or SIGTERM).
    pub async fn run(self) -> anyhow::Result<()> {
        match self {
            Command::Up(args) => up::run(*args).await,
            Command::Logs(args) => logs::run(args).await,
            Command::Usage(args) => usage::run(args).await,
            Command::Deploy(args) => deploy::run(args).await,
            Command::Feedback(args) => feedback::run(args).await,
            Command::Quality(args) => quality::run(args).await,
            Command::Accounts(command) => accounts::run(command).await,
            Command::Keys(command) => keys::run(command).await,
            Command::Nodes(args) => nodes::run(args).await,
        }
    }
}

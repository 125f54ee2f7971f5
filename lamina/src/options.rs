//! Option groups several commands share, each defined once: where a running Lamina is
//! (the commands that talk to it over HTTP) and where a node's data is (the commands that
//! open its database directly).

use std::path::PathBuf;

use clap::Args;

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

/// Where the node's database and server key are (the same flags as `lamina up`).
#[derive(Debug, Clone, Args)]
pub struct AdminArgs {
    #[arg(long, env = "LAMINA_DATA_DIR", default_value = ".lamina")]
    pub data_dir: PathBuf,
    #[arg(long, env = "LAMINA_DATABASE_URL")]
    pub database_url: Option<String>,
    /// The key that seals secrets; `<data-dir>/server.key` by default.
    #[arg(long, env = "LAMINA_SERVER_KEY_FILE")]
    pub server_key_file: Option<PathBuf>,
}

impl AdminArgs {
    pub fn server_key_path(&self) -> PathBuf {
        self.server_key_file
            .clone()
            .unwrap_or_else(|| self.data_dir.join("server.key"))
    }
}

//! `lamina keys`: creating, listing and revoking access keys directly in the node's
//! database.

use clap::Subcommand;

use super::accounts::{open, twelve_digits};
use crate::options::AdminArgs;

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

pub async fn run(command: KeysCommand) -> anyhow::Result<()> {
    match command {
        KeysCommand::Create { account, admin } => {
            twelve_digits(&account)?;
            let key = open(&admin).await?.create_key(&account, None).await?;
            println!("aws_access_key_id = {}", key.access_key_id);
            println!("aws_secret_access_key = {}", key.secret);
        }
        KeysCommand::List { account, admin } => {
            let keys = open(&admin).await?.list_keys(account.as_deref()).await?;
            for k in keys {
                let state = if k.revoked { "revoked" } else { "active" };
                println!("{}  {}  {state}", k.access_key_id, k.account_id);
            }
        }
        KeysCommand::Revoke { key_id, admin } => {
            open(&admin).await?.revoke_key(&key_id).await?;
            println!("revoked {key_id}");
        }
    }
    Ok(())
}

//! `lamina accounts`: creating and listing accounts directly in the node's database, with
//! the server key from its data directory. `lamina keys` opens them the same way.

use anyhow::Context as _;
use clap::Subcommand;
use store::Db;
use store::accounts::{Accounts, ServerKey};

use crate::UsageError;
use crate::options::AdminArgs;

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

pub async fn run(command: AccountsCommand) -> anyhow::Result<()> {
    match command {
        AccountsCommand::Create { name, id, admin } => {
            if let Some(id) = &id {
                twelve_digits(id)?;
            }
            let accounts = open(&admin).await?;
            let account = accounts.create_account(id.as_deref(), &name).await?;
            let key = accounts.create_key(&account, None).await?;
            println!("account {account}");
            println!("aws_access_key_id = {}", key.access_key_id);
            println!("aws_secret_access_key = {}", key.secret);
        }
        AccountsCommand::List { admin } => {
            for (id, name) in open(&admin).await?.list_accounts().await? {
                println!("{id}  {name}");
            }
        }
    }
    Ok(())
}

/// The node's accounts and keys, opened without a running node.
pub(super) async fn open(args: &AdminArgs) -> anyhow::Result<Accounts> {
    let db = match &args.database_url {
        Some(url) => Db::connect(url).await,
        None => Db::open_sqlite(&args.data_dir.join("lamina.db")).await,
    }
    .context("opening the database")?;
    let key =
        ServerKey::load_or_create(&args.server_key_path()).context("reading the server key")?;
    Ok(Accounts::new(db, key))
}

pub(super) fn twelve_digits(id: &str) -> Result<(), UsageError> {
    if id.len() == 12 && id.bytes().all(|b| b.is_ascii_digit()) {
        Ok(())
    } else {
        Err(UsageError(format!(
            "an account id is 12 digits, not {id:?}"
        )))
    }
}

//! `lamina accounts` and `lamina keys`: administering accounts and access keys directly in
//! the node's database, with the server key from its data directory.

use anyhow::Context as _;
use store::Db;
use store::accounts::{Accounts, ServerKey};

use crate::cli::{AccountsCommand, AdminArgs, KeysCommand, UsageError};

async fn open(args: &AdminArgs) -> anyhow::Result<Accounts> {
    let db = match &args.database_url {
        Some(url) => Db::connect(url).await,
        None => Db::open_sqlite(&args.data_dir.join("lamina.db")).await,
    }
    .context("opening the database")?;
    let key = ServerKey::load_or_create(&args.data_dir.join("server.key"))
        .context("reading the server key")?;
    Ok(Accounts::new(db, key))
}

fn twelve_digits(id: &str) -> Result<(), UsageError> {
    if id.len() == 12 && id.bytes().all(|b| b.is_ascii_digit()) {
        Ok(())
    } else {
        Err(UsageError(format!(
            "an account id is 12 digits, not {id:?}"
        )))
    }
}

pub async fn accounts(command: AccountsCommand) -> anyhow::Result<()> {
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

pub async fn keys(command: KeysCommand) -> anyhow::Result<()> {
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

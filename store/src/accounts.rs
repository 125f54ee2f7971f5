//! Accounts and their access keys. Secrets are sealed with the node's server key
//! (ChaCha20-Poly1305) before they reach the database, so a copy of the database alone
//! never yields a usable credential.

use std::path::Path;

use chacha20poly1305::aead::{Aead, KeyInit};
use chacha20poly1305::{ChaCha20Poly1305, Key, Nonce};
use rand::RngCore;
use sqlx::Row;

use crate::catalog::propagation::Subject;
use crate::db::{Db, StoreError, now_ms};

const SERVER_KEY_BYTES: usize = 32;
const NONCE_BYTES: usize = 12;

/// The key that seals access-key secrets at rest.
#[derive(Clone)]
pub struct ServerKey(Key);

impl std::fmt::Debug for ServerKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("ServerKey(..)")
    }
}

impl ServerKey {
    /// Reads the key at `path`, creating it (readable by the owner only) on first use.
    pub fn load_or_create(path: &Path) -> Result<ServerKey, StoreError> {
        match std::fs::read(path) {
            Ok(bytes) if bytes.len() == SERVER_KEY_BYTES => Ok(ServerKey(*Key::from_slice(&bytes))),
            Ok(_) => Err(StoreError::Corrupt(format!(
                "{} is not a {SERVER_KEY_BYTES}-byte server key",
                path.display()
            ))),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                let mut bytes = [0u8; SERVER_KEY_BYTES];
                rand::rng().fill_bytes(&mut bytes);
                write_private(path, &bytes)?;
                Ok(ServerKey(*Key::from_slice(&bytes)))
            }
            Err(e) => Err(e.into()),
        }
    }

    /// A key for another purpose (packages at rest, say), derived with HKDF-SHA256 so
    /// that no two purposes ever share key material.
    pub fn derive(&self, purpose: &str) -> [u8; 32] {
        let mut out = [0u8; 32];
        hkdf::Hkdf::<sha2::Sha256>::new(None, self.0.as_slice())
            .expand(purpose.as_bytes(), &mut out)
            .expect("32 bytes is a valid HKDF-SHA256 output length");
        out
    }

    fn seal(&self, secret: &str) -> String {
        let mut nonce = [0u8; NONCE_BYTES];
        rand::rng().fill_bytes(&mut nonce);
        let sealed = ChaCha20Poly1305::new(&self.0)
            .encrypt(Nonce::from_slice(&nonce), secret.as_bytes())
            .unwrap_or_default();
        format!("{}.{}", hex::encode(nonce), hex::encode(sealed))
    }

    fn open(&self, sealed: &str) -> Result<String, StoreError> {
        let corrupt =
            || StoreError::Corrupt("a sealed secret does not open with this server key".into());
        let (nonce, body) = sealed.split_once('.').ok_or_else(corrupt)?;
        let nonce = hex::decode(nonce).map_err(|_| corrupt())?;
        let body = hex::decode(body).map_err(|_| corrupt())?;
        if nonce.len() != NONCE_BYTES {
            return Err(corrupt());
        }
        let plain = ChaCha20Poly1305::new(&self.0)
            .decrypt(Nonce::from_slice(&nonce), body.as_slice())
            .map_err(|_| corrupt())?;
        String::from_utf8(plain).map_err(|_| corrupt())
    }
}

/// Writes `bytes` to a new file only its owner can read.
pub fn write_private(path: &Path, bytes: &[u8]) -> std::io::Result<()> {
    use std::io::Write as _;
    let mut options = std::fs::OpenOptions::new();
    options.write(true).create_new(true);
    #[cfg(unix)]
    std::os::unix::fs::OpenOptionsExt::mode(&mut options, 0o600);
    let mut file = options.open(path)?;
    file.write_all(bytes)?;
    file.sync_all()
}

/// One access key as listed (never with its secret).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AccessKey {
    pub access_key_id: String,
    pub account_id: String,
    pub created_at_ms: i64,
    pub revoked: bool,
}

/// A usable credential: what request signing needs to check a signature.
#[derive(Clone, PartialEq, Eq)]
pub struct Credential {
    pub access_key_id: String,
    pub account_id: String,
    pub secret: String,
}

impl std::fmt::Debug for Credential {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Credential")
            .field("access_key_id", &self.access_key_id)
            .field("account_id", &self.account_id)
            .finish_non_exhaustive()
    }
}

#[derive(Debug, thiserror::Error)]
pub enum AccountError {
    #[error("account {0} does not exist")]
    NoSuchAccount(String),
    #[error("account {0} already exists")]
    AccountExists(String),
    #[error("access key {0} already exists")]
    KeyExists(String),
    #[error("access key {0} does not exist")]
    NoSuchKey(String),
    #[error(transparent)]
    Store(#[from] StoreError),
}

/// Accounts and access keys in the database.
#[derive(Debug, Clone)]
pub struct Accounts {
    db: Db,
    key: ServerKey,
}

/// A fresh random string of `len` characters from `alphabet`.
fn random_string(alphabet: &[u8], len: usize) -> String {
    let mut rng = rand::rng();
    (0..len)
        .map(|_| alphabet[(rng.next_u32() as usize) % alphabet.len()] as char)
        .collect()
}

/// A new access key id in AWS's shape (`LKIA` and 16 more upper-case characters).
pub fn new_access_key_id() -> String {
    format!(
        "LKIA{}",
        random_string(b"ABCDEFGHIJKLMNOPQRSTUVWXYZ234567", 16)
    )
}

/// A new 40-character secret, as AWS's.
pub fn new_secret() -> String {
    random_string(
        b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/",
        40,
    )
}

impl Accounts {
    pub fn new(db: Db, key: ServerKey) -> Self {
        Accounts { db, key }
    }

    /// True when no account exists yet (a fresh data directory).
    pub async fn is_empty(&self) -> Result<bool, StoreError> {
        let row = sqlx::query("SELECT COUNT(*) AS n FROM accounts")
            .fetch_one(self.db.pool())
            .await?;
        Ok(row.try_get::<i64, _>("n")? == 0)
    }

    /// Creates account `account_id` (12 digits; a random one when `None`).
    pub async fn create_account(
        &self,
        account_id: Option<&str>,
        name: &str,
    ) -> Result<String, AccountError> {
        let id = match account_id {
            Some(id) => id.to_owned(),
            None => random_string(b"0123456789", 12),
        };
        if self.account_exists(&id).await? {
            return Err(AccountError::AccountExists(id));
        }
        sqlx::query("INSERT INTO accounts (account_id, name, created_at_ms) VALUES ($1, $2, $3)")
            .bind(&id)
            .bind(name)
            .bind(now_ms())
            .execute(self.db.writer())
            .await
            .map_err(StoreError::from)?;
        Ok(id)
    }

    pub async fn account_exists(&self, account_id: &str) -> Result<bool, StoreError> {
        let row = sqlx::query("SELECT COUNT(*) AS n FROM accounts WHERE account_id = $1")
            .bind(account_id)
            .fetch_one(self.db.pool())
            .await?;
        Ok(row.try_get::<i64, _>("n")? > 0)
    }

    /// Every account id with its name, oldest first.
    pub async fn list_accounts(&self) -> Result<Vec<(String, String)>, StoreError> {
        let rows =
            sqlx::query("SELECT account_id, name FROM accounts ORDER BY created_at_ms, account_id")
                .fetch_all(self.db.pool())
                .await?;
        rows.iter()
            .map(|r| Ok((r.try_get("account_id")?, r.try_get("name")?)))
            .collect()
    }

    /// Adds an access key to an account: the given id and secret, or fresh ones.
    pub async fn create_key(
        &self,
        account_id: &str,
        given: Option<(&str, &str)>,
    ) -> Result<Credential, AccountError> {
        if !self.account_exists(account_id).await? {
            return Err(AccountError::NoSuchAccount(account_id.to_owned()));
        }
        let (key_id, secret) = match given {
            Some((id, secret)) => (id.to_owned(), secret.to_owned()),
            None => (new_access_key_id(), new_secret()),
        };
        if self.key_exists(&key_id).await? {
            return Err(AccountError::KeyExists(key_id));
        }
        sqlx::query(
            "INSERT INTO access_keys (access_key_id, account_id, secret_sealed, created_at_ms) \
             VALUES ($1, $2, $3, $4)",
        )
        .bind(&key_id)
        .bind(account_id)
        .bind(self.key.seal(&secret))
        .bind(now_ms())
        .execute(self.db.writer())
        .await
        .map_err(StoreError::from)?;
        Ok(Credential {
            access_key_id: key_id,
            account_id: account_id.to_owned(),
            secret,
        })
    }

    async fn key_exists(&self, key_id: &str) -> Result<bool, StoreError> {
        let row = sqlx::query("SELECT COUNT(*) AS n FROM access_keys WHERE access_key_id = $1")
            .bind(key_id)
            .fetch_one(self.db.pool())
            .await?;
        Ok(row.try_get::<i64, _>("n")? > 0)
    }

    /// Checks that this node's server key opens the secrets already stored (by this node
    /// before, or by the other nodes of its cluster), so a node with the wrong key stops
    /// at start instead of refusing every signed request.
    pub async fn check_server_key(&self) -> Result<(), StoreError> {
        let row = sqlx::query("SELECT secret_sealed FROM access_keys LIMIT 1")
            .fetch_optional(self.db.pool())
            .await?;
        if let Some(row) = row {
            let sealed: String = row.try_get("secret_sealed")?;
            self.key.open(&sealed)?;
        }
        Ok(())
    }

    /// The usable (not revoked) credential behind `key_id`.
    pub async fn credential(&self, key_id: &str) -> Result<Option<Credential>, StoreError> {
        let row = sqlx::query(
            "SELECT account_id, secret_sealed FROM access_keys \
             WHERE access_key_id = $1 AND revoked_at_ms IS NULL",
        )
        .bind(key_id)
        .fetch_optional(self.db.pool())
        .await?;
        let Some(row) = row else {
            return Ok(None);
        };
        let sealed: String = row.try_get("secret_sealed")?;
        Ok(Some(Credential {
            access_key_id: key_id.to_owned(),
            account_id: row.try_get("account_id")?,
            secret: self.key.open(&sealed)?,
        }))
    }

    /// The keys of one account, or of every account.
    pub async fn list_keys(&self, account_id: Option<&str>) -> Result<Vec<AccessKey>, StoreError> {
        let rows = sqlx::query(
            "SELECT access_key_id, account_id, created_at_ms, revoked_at_ms FROM access_keys \
             WHERE ($1 = '' OR account_id = $1) ORDER BY created_at_ms, access_key_id",
        )
        .bind(account_id.unwrap_or(""))
        .fetch_all(self.db.pool())
        .await?;
        rows.iter()
            .map(|r| {
                Ok(AccessKey {
                    access_key_id: r.try_get("access_key_id")?,
                    account_id: r.try_get("account_id")?,
                    created_at_ms: r.try_get("created_at_ms")?,
                    revoked: r.try_get::<Option<i64>, _>("revoked_at_ms")?.is_some(),
                })
            })
            .collect()
    }

    /// Revokes a key; requests signed with it fail from then on.
    /// Every node learns of it through the catalog's change feed, and drops its cached
    /// answer for the key.
    pub async fn revoke_key(&self, key_id: &str) -> Result<(), AccountError> {
        let mut tx = self.db.writer().begin().await.map_err(StoreError::from)?;
        let done = sqlx::query(
            "UPDATE access_keys SET revoked_at_ms = $1 \
             WHERE access_key_id = $2 AND revoked_at_ms IS NULL",
        )
        .bind(now_ms())
        .bind(key_id)
        .execute(&mut *tx)
        .await
        .map_err(StoreError::from)?;
        if done.rows_affected() == 0 {
            return Err(AccountError::NoSuchKey(key_id.to_owned()));
        }
        crate::catalog::propagation::record(&mut tx, Subject::AccessKey, "", key_id)
            .await
            .map_err(StoreError::from)?;
        tx.commit().await.map_err(StoreError::from)?;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sealed_secrets_open_only_with_their_key() {
        let dir = tempfile::tempdir().unwrap();
        let key = ServerKey::load_or_create(&dir.path().join("server.key")).unwrap();
        let again = ServerKey::load_or_create(&dir.path().join("server.key")).unwrap();
        let sealed = key.seal("wJalrXUtnFEMI/K7MDENG+bPxRfiCYEXAMPLEKEY");
        assert!(!sealed.contains("wJalr"));
        assert_eq!(
            again.open(&sealed).unwrap(),
            "wJalrXUtnFEMI/K7MDENG+bPxRfiCYEXAMPLEKEY"
        );
        let other = ServerKey::load_or_create(&dir.path().join("other.key")).unwrap();
        assert!(other.open(&sealed).is_err());
        assert!(key.open("00.00").is_err());
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt as _;
            let mode = std::fs::metadata(dir.path().join("server.key"))
                .unwrap()
                .permissions()
                .mode();
            assert_eq!(mode & 0o777, 0o600);
        }
    }

    #[test]
    fn generated_keys_look_like_aws_keys() {
        let id = new_access_key_id();
        assert_eq!(id.len(), 20);
        assert!(id.starts_with("LKIA"));
        assert_eq!(new_secret().len(), 40);
        assert_ne!(new_secret(), new_secret());
    }
}

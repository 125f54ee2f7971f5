//! The catalog: every function, version, alias, URL config and setting, persisted in the
//! database and mirrored in memory so that resolving a function on the invoke path never
//! touches the database.
//!
//! Every change is written to the database in one transaction first and then swapped
//! into memory, under one writer lock; readers see whole, immutable [`FunctionEntry`]
//! values. Lamina runs one process per data directory, so this mirror is authoritative.

use std::collections::{BTreeMap, HashMap};
use std::path::PathBuf;
use std::sync::{Arc, RwLock};

use protocol::{CodePackage, FunctionSpec, Runtime, SharedSpec};
use sqlx::Row;

use crate::db::{Db, StoreError, now_ms};
use crate::records::*;

#[derive(Debug, thiserror::Error)]
pub enum CatalogError {
    #[error("function not found")]
    FunctionNotFound,
    #[error("version not found")]
    VersionNotFound,
    #[error("alias not found")]
    AliasNotFound,
    #[error("function already exists")]
    FunctionExists,
    #[error("alias already exists")]
    AliasExists,
    #[error("url config already exists")]
    UrlExists,
    #[error("url config not found")]
    UrlNotFound,
    #[error("revision id does not match")]
    RevisionMismatch,
    #[error("code sha256 does not match: current {current}")]
    CodeShaMismatch { current: String },
    /// A version is still referenced by these aliases.
    #[error("version is referenced by aliases")]
    VersionInUse(Vec<String>),
    #[error("statement already exists")]
    StatementExists,
    #[error("statement not found")]
    StatementNotFound,
    #[error("not found")]
    NotFound,
    #[error(transparent)]
    Store(#[from] StoreError),
}

impl From<sqlx::Error> for CatalogError {
    fn from(e: sqlx::Error) -> Self {
        CatalogError::Store(e.into())
    }
}

/// One database change, applied in a transaction together with the others of an update.
enum Write {
    Function,
    Version(Arc<VersionRecord>),
    DeleteVersion(String),
    Alias(Arc<AliasRecord>),
    DeleteAlias(String),
    Url(Arc<UrlConfigRecord>),
    DeleteUrl(String),
    Provisioned(ProvisionedRecord),
    DeleteProvisioned(String),
    EventConfig(EventInvokeRecord),
    DeleteEventConfig(String),
    Statement(PolicyStatement),
    DeleteStatement {
        qualifier: String,
        statement_id: String,
    },
}

#[derive(Default)]
struct Index {
    functions: HashMap<(String, String), Arc<FunctionEntry>>,
    urls: HashMap<String, Arc<UrlConfigRecord>>,
}

pub struct Catalog {
    db: Db,
    packages_dir: PathBuf,
    region: String,
    index: RwLock<Index>,
    writer: tokio::sync::Mutex<()>,
}

impl std::fmt::Debug for Catalog {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Catalog")
            .field("packages_dir", &self.packages_dir)
            .finish_non_exhaustive()
    }
}

fn json<T: serde::Serialize>(v: &T) -> String {
    serde_json::to_string(v).unwrap_or_else(|_| "null".into())
}

fn parse<T: serde::de::DeserializeOwned>(s: &str, what: &str) -> Result<T, StoreError> {
    serde_json::from_str(s).map_err(|e| StoreError::Corrupt(format!("{what}: {e}")))
}

impl Catalog {
    /// Loads the whole catalog from the database.
    pub async fn load(db: Db, packages_dir: PathBuf, region: String) -> Result<Self, StoreError> {
        let catalog = Catalog {
            db,
            packages_dir,
            region,
            index: RwLock::new(Index::default()),
            writer: tokio::sync::Mutex::new(()),
        };
        let index = catalog.read_all().await?;
        *catalog.index.write().unwrap_or_else(|e| e.into_inner()) = index;
        Ok(catalog)
    }

    pub fn db(&self) -> &Db {
        &self.db
    }

    pub fn region(&self) -> &str {
        &self.region
    }

    /// Where unpacked packages live (`<dir>/<digest>/`) and their zips (`<digest>.zip`).
    pub fn packages_dir(&self) -> &PathBuf {
        &self.packages_dir
    }

    async fn read_all(&self) -> Result<Index, StoreError> {
        let pool = self.db.pool();
        let mut versions: HashMap<(String, String), Vec<VersionRecord>> = HashMap::new();
        for row in sqlx::query(
            "SELECT account_id, function_name, version, config, revision_id, last_modified_ms \
             FROM function_versions",
        )
        .fetch_all(pool)
        .await?
        {
            let key = (row.try_get("account_id")?, row.try_get("function_name")?);
            let config: String = row.try_get("config")?;
            versions.entry(key).or_default().push(VersionRecord {
                version: row.try_get("version")?,
                config: parse(&config, "version config")?,
                revision_id: row.try_get("revision_id")?,
                last_modified_ms: row.try_get("last_modified_ms")?,
                spec: Default::default(),
            });
        }
        let mut aliases: HashMap<(String, String), Vec<AliasRecord>> = HashMap::new();
        for row in sqlx::query(
            "SELECT account_id, function_name, alias_name, function_version, description, \
             routing, revision_id FROM aliases",
        )
        .fetch_all(pool)
        .await?
        {
            let key = (row.try_get("account_id")?, row.try_get("function_name")?);
            let routing: String = row.try_get("routing")?;
            aliases.entry(key).or_default().push(AliasRecord {
                name: row.try_get("alias_name")?,
                function_version: row.try_get("function_version")?,
                description: row.try_get("description")?,
                routing: parse(&routing, "alias routing")?,
                revision_id: row.try_get("revision_id")?,
            });
        }
        let mut urls: HashMap<(String, String), Vec<UrlConfigRecord>> = HashMap::new();
        for row in sqlx::query(
            "SELECT url_id, account_id, function_name, qualifier, auth_type, cors, invoke_mode, \
             created_at_ms, last_modified_ms FROM url_configs",
        )
        .fetch_all(pool)
        .await?
        {
            let key = (row.try_get("account_id")?, row.try_get("function_name")?);
            let cors: String = row.try_get("cors")?;
            urls.entry(key.clone()).or_default().push(UrlConfigRecord {
                url_id: row.try_get("url_id")?,
                account_id: key.0,
                function_name: key.1,
                qualifier: row.try_get("qualifier")?,
                auth_type: row.try_get("auth_type")?,
                cors: parse(&cors, "url cors")?,
                invoke_mode: row.try_get("invoke_mode")?,
                created_at_ms: row.try_get("created_at_ms")?,
                last_modified_ms: row.try_get("last_modified_ms")?,
            });
        }
        let mut provisioned: HashMap<(String, String), Vec<ProvisionedRecord>> = HashMap::new();
        for row in sqlx::query(
            "SELECT account_id, function_name, qualifier, requested, last_modified_ms \
             FROM provisioned_concurrency",
        )
        .fetch_all(pool)
        .await?
        {
            let key = (row.try_get("account_id")?, row.try_get("function_name")?);
            let requested: i64 = row.try_get("requested")?;
            provisioned.entry(key).or_default().push(ProvisionedRecord {
                qualifier: row.try_get("qualifier")?,
                requested: requested as u32,
                last_modified_ms: row.try_get("last_modified_ms")?,
            });
        }
        let mut event_configs: HashMap<(String, String), Vec<EventInvokeRecord>> = HashMap::new();
        for row in sqlx::query(
            "SELECT account_id, function_name, qualifier, config, last_modified_ms \
             FROM event_invoke_configs",
        )
        .fetch_all(pool)
        .await?
        {
            let key = (row.try_get("account_id")?, row.try_get("function_name")?);
            let config: String = row.try_get("config")?;
            event_configs
                .entry(key)
                .or_default()
                .push(EventInvokeRecord {
                    qualifier: row.try_get("qualifier")?,
                    config: parse(&config, "event invoke config")?,
                    last_modified_ms: row.try_get("last_modified_ms")?,
                });
        }
        let mut statements: HashMap<(String, String), Vec<PolicyStatement>> = HashMap::new();
        for row in sqlx::query(
            "SELECT account_id, function_name, qualifier, statement_id, statement \
             FROM policy_statements",
        )
        .fetch_all(pool)
        .await?
        {
            let key = (row.try_get("account_id")?, row.try_get("function_name")?);
            let statement: String = row.try_get("statement")?;
            statements.entry(key).or_default().push(PolicyStatement {
                qualifier: row.try_get("qualifier")?,
                statement_id: row.try_get("statement_id")?,
                statement: parse(&statement, "policy statement")?,
            });
        }

        let mut index = Index::default();
        for row in sqlx::query(
            "SELECT account_id, function_name, created_at_ms, reserved_concurrency, \
             next_version, tags FROM functions",
        )
        .fetch_all(pool)
        .await?
        {
            let account_id: String = row.try_get("account_id")?;
            let name: String = row.try_get("function_name")?;
            let key = (account_id.clone(), name.clone());
            let mut latest = None;
            let mut numbered = BTreeMap::new();
            for v in versions.remove(&key).unwrap_or_default() {
                match v.number() {
                    Some(n) => {
                        numbered.insert(n, Arc::new(v));
                    }
                    None => latest = Some(Arc::new(v)),
                }
            }
            let Some(latest) = latest else {
                return Err(StoreError::Corrupt(format!(
                    "function {account_id}/{name} has no $LATEST"
                )));
            };
            let reserved: Option<i64> = row.try_get("reserved_concurrency")?;
            let next_version: i64 = row.try_get("next_version")?;
            let tags: String = row.try_get("tags")?;
            let entry_urls: BTreeMap<String, Arc<UrlConfigRecord>> = urls
                .remove(&key)
                .unwrap_or_default()
                .into_iter()
                .map(|u| (u.qualifier.clone(), Arc::new(u)))
                .collect();
            for u in entry_urls.values() {
                index.urls.insert(u.url_id.clone(), u.clone());
            }
            let entry = FunctionEntry {
                account_id,
                name,
                created_at_ms: row.try_get("created_at_ms")?,
                reserved_concurrency: reserved.map(|r| r as u32),
                next_version: next_version as u64,
                tags: parse(&tags, "tags")?,
                latest,
                versions: numbered,
                aliases: aliases
                    .remove(&key)
                    .unwrap_or_default()
                    .into_iter()
                    .map(|a| (a.name.clone(), Arc::new(a)))
                    .collect(),
                urls: entry_urls,
                provisioned: provisioned
                    .remove(&key)
                    .unwrap_or_default()
                    .into_iter()
                    .map(|p| (p.qualifier.clone(), p))
                    .collect(),
                event_configs: event_configs
                    .remove(&key)
                    .unwrap_or_default()
                    .into_iter()
                    .map(|c| (c.qualifier.clone(), c))
                    .collect(),
                policy: statements.remove(&key).unwrap_or_default(),
            };
            index.functions.insert(key, Arc::new(entry));
        }
        Ok(index)
    }

    // ---- reads ----------------------------------------------------------------------

    pub fn function(&self, account_id: &str, name: &str) -> Option<Arc<FunctionEntry>> {
        self.index
            .read()
            .unwrap_or_else(|e| e.into_inner())
            .functions
            .get(&(account_id.to_owned(), name.to_owned()))
            .cloned()
    }

    /// The account's functions sorted by name.
    pub fn functions(&self, account_id: &str) -> Vec<Arc<FunctionEntry>> {
        let index = self.index.read().unwrap_or_else(|e| e.into_inner());
        let mut out: Vec<Arc<FunctionEntry>> = index
            .functions
            .values()
            .filter(|f| f.account_id == account_id)
            .cloned()
            .collect();
        out.sort_by(|a, b| a.name.cmp(&b.name));
        out
    }

    pub fn all_functions(&self) -> Vec<Arc<FunctionEntry>> {
        let index = self.index.read().unwrap_or_else(|e| e.into_inner());
        index.functions.values().cloned().collect()
    }

    pub fn url(&self, url_id: &str) -> Option<Arc<UrlConfigRecord>> {
        self.index
            .read()
            .unwrap_or_else(|e| e.into_inner())
            .urls
            .get(url_id)
            .cloned()
    }

    /// The execution spec of a version (built once per record).
    pub fn spec(&self, entry: &FunctionEntry, version: &VersionRecord) -> SharedSpec {
        version
            .spec
            .get_or_init(|| {
                let c = &version.config;
                let runtime = Runtime::parse(&c.runtime).unwrap_or(Runtime::Wasm);
                let arn = protocol::names::ArnBuilder::new(&self.region).qualified(
                    &entry.account_id,
                    &entry.name,
                    &version.version,
                );
                let allowed_hosts = c
                    .environment
                    .get("LAMINA_ALLOWED_HOSTS")
                    .map(|v| {
                        v.split(',')
                            .map(|h| h.trim().to_owned())
                            .filter(|h| !h.is_empty())
                            .collect()
                    })
                    .unwrap_or_default();
                Arc::new(FunctionSpec {
                    account_id: entry.account_id.clone(),
                    region: self.region.clone(),
                    function_name: entry.name.clone(),
                    version: version.version.clone(),
                    function_arn: arn,
                    memory_mb: c.memory_size,
                    timeout: std::time::Duration::from_secs(c.timeout as u64),
                    ephemeral_storage_mb: c.ephemeral_storage,
                    environment: c
                        .environment
                        .iter()
                        .map(|(k, v)| (k.clone(), v.clone()))
                        .collect(),
                    code: CodePackage {
                        digest: c.code_sha256.clone(),
                        root: self.packages_dir.join(&c.code_sha256),
                        runtime,
                        handler: c.handler.clone(),
                    },
                    allowed_hosts,
                    snap_start: c.snap_start,
                })
            })
            .clone()
    }

    // ---- writes ---------------------------------------------------------------------

    /// Applies `change` to a copy of the function's entry, persists the writes it lists
    /// in one transaction, then publishes the new entry.
    async fn update<T>(
        &self,
        account_id: &str,
        name: &str,
        change: impl FnOnce(&mut FunctionEntry) -> Result<(T, Vec<Write>), CatalogError>,
    ) -> Result<(T, Arc<FunctionEntry>), CatalogError> {
        let _guard = self.writer.lock().await;
        let current = self
            .function(account_id, name)
            .ok_or(CatalogError::FunctionNotFound)?;
        let mut next = (*current).clone();
        let (value, writes) = change(&mut next)?;
        let mut tx = self.db.pool().begin().await?;
        for w in &writes {
            apply(&mut tx, &next, w).await?;
        }
        tx.commit().await?;
        let next = Arc::new(next);
        let mut index = self.index.write().unwrap_or_else(|e| e.into_inner());
        for w in &writes {
            match w {
                Write::Url(u) => {
                    index.urls.insert(u.url_id.clone(), u.clone());
                }
                Write::DeleteUrl(id) => {
                    index.urls.remove(id);
                }
                _ => {}
            }
        }
        index
            .functions
            .insert((account_id.to_owned(), name.to_owned()), next.clone());
        Ok((value, next))
    }

    /// Creates a function with its $LATEST (and version 1 when `publish`).
    pub async fn create_function(
        &self,
        account_id: &str,
        name: &str,
        config: VersionConfig,
        tags: BTreeMap<String, String>,
        publish: bool,
    ) -> Result<Arc<FunctionEntry>, CatalogError> {
        let _guard = self.writer.lock().await;
        if self.function(account_id, name).is_some() {
            return Err(CatalogError::FunctionExists);
        }
        let now = now_ms();
        let latest = Arc::new(VersionRecord::new(protocol::names::LATEST, config, now));
        let mut entry = FunctionEntry {
            account_id: account_id.to_owned(),
            name: name.to_owned(),
            created_at_ms: now,
            reserved_concurrency: None,
            next_version: 1,
            tags,
            latest: latest.clone(),
            versions: BTreeMap::new(),
            aliases: BTreeMap::new(),
            urls: BTreeMap::new(),
            provisioned: BTreeMap::new(),
            event_configs: BTreeMap::new(),
            policy: Vec::new(),
        };
        let mut writes = vec![Write::Function, Write::Version(latest.clone())];
        if publish {
            let v1 = Arc::new(VersionRecord::new("1", latest.config.clone(), now));
            entry.versions.insert(1, v1.clone());
            entry.next_version = 2;
            writes.push(Write::Version(v1));
        }
        let mut tx = self.db.pool().begin().await?;
        for w in &writes {
            apply(&mut tx, &entry, w).await?;
        }
        tx.commit().await?;
        let entry = Arc::new(entry);
        self.index
            .write()
            .unwrap_or_else(|e| e.into_inner())
            .functions
            .insert((account_id.to_owned(), name.to_owned()), entry.clone());
        Ok(entry)
    }

    pub async fn delete_function(
        &self,
        account_id: &str,
        name: &str,
    ) -> Result<Arc<FunctionEntry>, CatalogError> {
        let _guard = self.writer.lock().await;
        let entry = self
            .function(account_id, name)
            .ok_or(CatalogError::FunctionNotFound)?;
        let mut tx = self.db.pool().begin().await?;
        for statement in [
            "DELETE FROM functions WHERE account_id = $1 AND function_name = $2",
            "DELETE FROM function_versions WHERE account_id = $1 AND function_name = $2",
            "DELETE FROM aliases WHERE account_id = $1 AND function_name = $2",
            "DELETE FROM url_configs WHERE account_id = $1 AND function_name = $2",
            "DELETE FROM provisioned_concurrency WHERE account_id = $1 AND function_name = $2",
            "DELETE FROM event_invoke_configs WHERE account_id = $1 AND function_name = $2",
            "DELETE FROM policy_statements WHERE account_id = $1 AND function_name = $2",
        ] {
            sqlx::query(statement)
                .bind(account_id)
                .bind(name)
                .execute(&mut *tx)
                .await?;
        }
        tx.commit().await?;
        let mut index = self.index.write().unwrap_or_else(|e| e.into_inner());
        index
            .functions
            .remove(&(account_id.to_owned(), name.to_owned()));
        for u in entry.urls.values() {
            index.urls.remove(&u.url_id);
        }
        Ok(entry)
    }

    /// Replaces $LATEST's configuration (code or settings), checking the revision.
    pub async fn update_latest(
        &self,
        account_id: &str,
        name: &str,
        expected_revision: Option<&str>,
        config: VersionConfig,
    ) -> Result<Arc<FunctionEntry>, CatalogError> {
        self.update(account_id, name, |e| {
            if expected_revision.is_some_and(|r| r != e.latest.revision_id) {
                return Err(CatalogError::RevisionMismatch);
            }
            let latest = Arc::new(VersionRecord::new(
                protocol::names::LATEST,
                config,
                now_ms(),
            ));
            e.latest = latest.clone();
            Ok(((), vec![Write::Version(latest)]))
        })
        .await
        .map(|(_, e)| e)
    }

    /// Publishes $LATEST as a new version. When $LATEST is unchanged since the newest
    /// version, Lambda returns that version instead of making a new one.
    pub async fn publish_version(
        &self,
        account_id: &str,
        name: &str,
        expected_code_sha256: Option<&str>,
        expected_revision: Option<&str>,
        description: Option<&str>,
    ) -> Result<(Arc<VersionRecord>, Arc<FunctionEntry>), CatalogError> {
        self.update(account_id, name, |e| {
            if expected_revision.is_some_and(|r| r != e.latest.revision_id) {
                return Err(CatalogError::RevisionMismatch);
            }
            if let Some(sha) = expected_code_sha256
                && sha != e.latest.config.code_sha256
            {
                return Err(CatalogError::CodeShaMismatch {
                    current: e.latest.config.code_sha256.clone(),
                });
            }
            let mut config = e.latest.config.clone();
            if let Some(d) = description {
                config.description = d.to_owned();
            }
            if let Some((_, newest)) = e.versions.last_key_value()
                && newest.config == config
            {
                return Ok((newest.clone(), vec![]));
            }
            let n = e.next_version;
            let v = Arc::new(VersionRecord::new(n.to_string(), config, now_ms()));
            e.versions.insert(n, v.clone());
            e.next_version = n + 1;
            Ok((v.clone(), vec![Write::Version(v), Write::Function]))
        })
        .await
    }

    pub async fn delete_version(
        &self,
        account_id: &str,
        name: &str,
        version: u64,
    ) -> Result<Arc<FunctionEntry>, CatalogError> {
        self.update(account_id, name, |e| {
            let v = e.version(&version.to_string()).cloned();
            if v.is_none() {
                return Ok(((), vec![]));
            }
            let users: Vec<String> = e
                .aliases
                .values()
                .filter(|a| {
                    a.function_version == version.to_string()
                        || a.routing.contains_key(&version.to_string())
                })
                .map(|a| a.name.clone())
                .collect();
            if !users.is_empty() {
                return Err(CatalogError::VersionInUse(users));
            }
            e.versions.remove(&version);
            let q = version.to_string();
            let mut writes = vec![Write::DeleteVersion(q.clone())];
            if e.provisioned.remove(&q).is_some() {
                writes.push(Write::DeleteProvisioned(q.clone()));
            }
            if e.event_configs.remove(&q).is_some() {
                writes.push(Write::DeleteEventConfig(q));
            }
            Ok(((), writes))
        })
        .await
        .map(|(_, e)| e)
    }

    /// Creates (`create`) or replaces an alias, checking its revision on update.
    pub async fn put_alias(
        &self,
        account_id: &str,
        name: &str,
        alias: AliasRecord,
        create: bool,
        expected_revision: Option<&str>,
    ) -> Result<Arc<AliasRecord>, CatalogError> {
        self.update(account_id, name, |e| {
            match (create, e.aliases.get(&alias.name)) {
                (true, Some(_)) => return Err(CatalogError::AliasExists),
                (false, None) => return Err(CatalogError::AliasNotFound),
                (false, Some(existing))
                    if expected_revision.is_some_and(|r| r != existing.revision_id) =>
                {
                    return Err(CatalogError::RevisionMismatch);
                }
                _ => {}
            }
            let a = Arc::new(alias);
            e.aliases.insert(a.name.clone(), a.clone());
            Ok((a.clone(), vec![Write::Alias(a)]))
        })
        .await
        .map(|(a, _)| a)
    }

    pub async fn delete_alias(
        &self,
        account_id: &str,
        name: &str,
        alias: &str,
    ) -> Result<Arc<FunctionEntry>, CatalogError> {
        self.update(account_id, name, |e| {
            if e.aliases.remove(alias).is_none() {
                return Ok(((), vec![]));
            }
            let mut writes = vec![Write::DeleteAlias(alias.to_owned())];
            if let Some(u) = e.urls.remove(alias) {
                writes.push(Write::DeleteUrl(u.url_id.clone()));
            }
            if e.provisioned.remove(alias).is_some() {
                writes.push(Write::DeleteProvisioned(alias.to_owned()));
            }
            if e.event_configs.remove(alias).is_some() {
                writes.push(Write::DeleteEventConfig(alias.to_owned()));
            }
            Ok(((), writes))
        })
        .await
        .map(|(_, e)| e)
    }

    pub async fn set_reserved(
        &self,
        account_id: &str,
        name: &str,
        reserved: Option<u32>,
    ) -> Result<(), CatalogError> {
        self.update(account_id, name, |e| {
            e.reserved_concurrency = reserved;
            Ok(((), vec![Write::Function]))
        })
        .await
        .map(|_| ())
    }

    pub async fn set_tags(
        &self,
        account_id: &str,
        name: &str,
        tags: BTreeMap<String, String>,
    ) -> Result<(), CatalogError> {
        self.update(account_id, name, |e| {
            e.tags = tags;
            Ok(((), vec![Write::Function]))
        })
        .await
        .map(|_| ())
    }

    /// Creates (`create`) or updates the URL config of a qualifier.
    pub async fn put_url(
        &self,
        account_id: &str,
        name: &str,
        url: UrlConfigRecord,
        create: bool,
    ) -> Result<Arc<UrlConfigRecord>, CatalogError> {
        self.update(account_id, name, |e| {
            match (create, e.urls.contains_key(&url.qualifier)) {
                (true, true) => return Err(CatalogError::UrlExists),
                (false, false) => return Err(CatalogError::UrlNotFound),
                _ => {}
            }
            let u = Arc::new(url);
            e.urls.insert(u.qualifier.clone(), u.clone());
            Ok((u.clone(), vec![Write::Url(u)]))
        })
        .await
        .map(|(u, _)| u)
    }

    pub async fn delete_url(
        &self,
        account_id: &str,
        name: &str,
        qualifier: &str,
    ) -> Result<(), CatalogError> {
        self.update(account_id, name, |e| {
            let u = e.urls.remove(qualifier).ok_or(CatalogError::UrlNotFound)?;
            Ok(((), vec![Write::DeleteUrl(u.url_id.clone())]))
        })
        .await
        .map(|_| ())
    }

    pub async fn put_provisioned(
        &self,
        account_id: &str,
        name: &str,
        record: ProvisionedRecord,
    ) -> Result<(), CatalogError> {
        self.update(account_id, name, |e| {
            e.provisioned
                .insert(record.qualifier.clone(), record.clone());
            Ok(((), vec![Write::Provisioned(record)]))
        })
        .await
        .map(|_| ())
    }

    pub async fn delete_provisioned(
        &self,
        account_id: &str,
        name: &str,
        qualifier: &str,
    ) -> Result<(), CatalogError> {
        self.update(account_id, name, |e| {
            e.provisioned
                .remove(qualifier)
                .ok_or(CatalogError::NotFound)?;
            Ok(((), vec![Write::DeleteProvisioned(qualifier.to_owned())]))
        })
        .await
        .map(|_| ())
    }

    pub async fn put_event_config(
        &self,
        account_id: &str,
        name: &str,
        record: EventInvokeRecord,
    ) -> Result<(), CatalogError> {
        self.update(account_id, name, |e| {
            e.event_configs
                .insert(record.qualifier.clone(), record.clone());
            Ok(((), vec![Write::EventConfig(record)]))
        })
        .await
        .map(|_| ())
    }

    pub async fn delete_event_config(
        &self,
        account_id: &str,
        name: &str,
        qualifier: &str,
    ) -> Result<(), CatalogError> {
        self.update(account_id, name, |e| {
            e.event_configs
                .remove(qualifier)
                .ok_or(CatalogError::NotFound)?;
            Ok(((), vec![Write::DeleteEventConfig(qualifier.to_owned())]))
        })
        .await
        .map(|_| ())
    }

    pub async fn add_statement(
        &self,
        account_id: &str,
        name: &str,
        statement: PolicyStatement,
    ) -> Result<(), CatalogError> {
        self.update(account_id, name, |e| {
            if e.policy.iter().any(|s| {
                s.qualifier == statement.qualifier && s.statement_id == statement.statement_id
            }) {
                return Err(CatalogError::StatementExists);
            }
            e.policy.push(statement.clone());
            Ok(((), vec![Write::Statement(statement)]))
        })
        .await
        .map(|_| ())
    }

    pub async fn remove_statement(
        &self,
        account_id: &str,
        name: &str,
        qualifier: &str,
        statement_id: &str,
    ) -> Result<(), CatalogError> {
        self.update(account_id, name, |e| {
            let before = e.policy.len();
            e.policy
                .retain(|s| !(s.qualifier == qualifier && s.statement_id == statement_id));
            if e.policy.len() == before {
                return Err(CatalogError::StatementNotFound);
            }
            Ok((
                (),
                vec![Write::DeleteStatement {
                    qualifier: qualifier.to_owned(),
                    statement_id: statement_id.to_owned(),
                }],
            ))
        })
        .await
        .map(|_| ())
    }
}

async fn apply(
    tx: &mut sqlx::Transaction<'_, sqlx::Any>,
    e: &FunctionEntry,
    write: &Write,
) -> Result<(), sqlx::Error> {
    let (a, f) = (e.account_id.as_str(), e.name.as_str());
    match write {
        Write::Function => {
            sqlx::query(
                "INSERT INTO functions (account_id, function_name, created_at_ms, \
                 reserved_concurrency, next_version, tags) VALUES ($1, $2, $3, $4, $5, $6) \
                 ON CONFLICT (account_id, function_name) DO UPDATE SET \
                 reserved_concurrency = excluded.reserved_concurrency, \
                 next_version = excluded.next_version, tags = excluded.tags",
            )
            .bind(a)
            .bind(f)
            .bind(e.created_at_ms)
            .bind(e.reserved_concurrency.map(i64::from))
            .bind(e.next_version as i64)
            .bind(json(&e.tags))
            .execute(&mut **tx)
            .await?;
        }
        Write::Version(v) => {
            sqlx::query(
                "INSERT INTO function_versions (account_id, function_name, version, config, \
                 code_sha256, revision_id, last_modified_ms) VALUES ($1, $2, $3, $4, $5, $6, $7) \
                 ON CONFLICT (account_id, function_name, version) DO UPDATE SET \
                 config = excluded.config, code_sha256 = excluded.code_sha256, \
                 revision_id = excluded.revision_id, last_modified_ms = excluded.last_modified_ms",
            )
            .bind(a)
            .bind(f)
            .bind(v.version.as_str())
            .bind(json(&v.config))
            .bind(v.config.code_sha256.as_str())
            .bind(v.revision_id.as_str())
            .bind(v.last_modified_ms)
            .execute(&mut **tx)
            .await?;
        }
        Write::DeleteVersion(v) => {
            sqlx::query(
                "DELETE FROM function_versions WHERE account_id = $1 AND function_name = $2 \
                 AND version = $3",
            )
            .bind(a)
            .bind(f)
            .bind(v.as_str())
            .execute(&mut **tx)
            .await?;
        }
        Write::Alias(al) => {
            sqlx::query(
                "INSERT INTO aliases (account_id, function_name, alias_name, function_version, \
                 description, routing, revision_id) VALUES ($1, $2, $3, $4, $5, $6, $7) \
                 ON CONFLICT (account_id, function_name, alias_name) DO UPDATE SET \
                 function_version = excluded.function_version, \
                 description = excluded.description, routing = excluded.routing, \
                 revision_id = excluded.revision_id",
            )
            .bind(a)
            .bind(f)
            .bind(al.name.as_str())
            .bind(al.function_version.as_str())
            .bind(al.description.as_str())
            .bind(json(&al.routing))
            .bind(al.revision_id.as_str())
            .execute(&mut **tx)
            .await?;
        }
        Write::DeleteAlias(name) => {
            sqlx::query(
                "DELETE FROM aliases WHERE account_id = $1 AND function_name = $2 \
                 AND alias_name = $3",
            )
            .bind(a)
            .bind(f)
            .bind(name.as_str())
            .execute(&mut **tx)
            .await?;
        }
        Write::Url(u) => {
            sqlx::query(
                "INSERT INTO url_configs (url_id, account_id, function_name, qualifier, \
                 auth_type, cors, invoke_mode, created_at_ms, last_modified_ms) \
                 VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9) \
                 ON CONFLICT (url_id) DO UPDATE SET auth_type = excluded.auth_type, \
                 cors = excluded.cors, invoke_mode = excluded.invoke_mode, \
                 last_modified_ms = excluded.last_modified_ms",
            )
            .bind(u.url_id.as_str())
            .bind(a)
            .bind(f)
            .bind(u.qualifier.as_str())
            .bind(u.auth_type.as_str())
            .bind(json(&u.cors))
            .bind(u.invoke_mode.as_str())
            .bind(u.created_at_ms)
            .bind(u.last_modified_ms)
            .execute(&mut **tx)
            .await?;
        }
        Write::DeleteUrl(id) => {
            sqlx::query("DELETE FROM url_configs WHERE url_id = $1")
                .bind(id.as_str())
                .execute(&mut **tx)
                .await?;
        }
        Write::Provisioned(p) => {
            sqlx::query(
                "INSERT INTO provisioned_concurrency (account_id, function_name, qualifier, \
                 requested, last_modified_ms) VALUES ($1, $2, $3, $4, $5) \
                 ON CONFLICT (account_id, function_name, qualifier) DO UPDATE SET \
                 requested = excluded.requested, last_modified_ms = excluded.last_modified_ms",
            )
            .bind(a)
            .bind(f)
            .bind(p.qualifier.as_str())
            .bind(p.requested as i64)
            .bind(p.last_modified_ms)
            .execute(&mut **tx)
            .await?;
        }
        Write::DeleteProvisioned(q) => {
            sqlx::query(
                "DELETE FROM provisioned_concurrency WHERE account_id = $1 \
                 AND function_name = $2 AND qualifier = $3",
            )
            .bind(a)
            .bind(f)
            .bind(q.as_str())
            .execute(&mut **tx)
            .await?;
        }
        Write::EventConfig(c) => {
            sqlx::query(
                "INSERT INTO event_invoke_configs (account_id, function_name, qualifier, config, \
                 last_modified_ms) VALUES ($1, $2, $3, $4, $5) \
                 ON CONFLICT (account_id, function_name, qualifier) DO UPDATE SET \
                 config = excluded.config, last_modified_ms = excluded.last_modified_ms",
            )
            .bind(a)
            .bind(f)
            .bind(c.qualifier.as_str())
            .bind(json(&c.config))
            .bind(c.last_modified_ms)
            .execute(&mut **tx)
            .await?;
        }
        Write::DeleteEventConfig(q) => {
            sqlx::query(
                "DELETE FROM event_invoke_configs WHERE account_id = $1 AND function_name = $2 \
                 AND qualifier = $3",
            )
            .bind(a)
            .bind(f)
            .bind(q.as_str())
            .execute(&mut **tx)
            .await?;
        }
        Write::Statement(s) => {
            sqlx::query(
                "INSERT INTO policy_statements (account_id, function_name, qualifier, \
                 statement_id, statement) VALUES ($1, $2, $3, $4, $5)",
            )
            .bind(a)
            .bind(f)
            .bind(s.qualifier.as_str())
            .bind(s.statement_id.as_str())
            .bind(json(&s.statement))
            .execute(&mut **tx)
            .await?;
        }
        Write::DeleteStatement {
            qualifier,
            statement_id,
        } => {
            sqlx::query(
                "DELETE FROM policy_statements WHERE account_id = $1 AND function_name = $2 \
                 AND qualifier = $3 AND statement_id = $4",
            )
            .bind(a)
            .bind(f)
            .bind(qualifier.as_str())
            .bind(statement_id.as_str())
            .execute(&mut **tx)
            .await?;
        }
    }
    Ok(())
}

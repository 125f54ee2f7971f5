//! Reading the catalog from the database: the whole of it at start (one query per table,
//! the rows grouped by function, then one [`FunctionEntry`] assembled per row of
//! `functions`), or one function when a change to it is applied or propagated.

use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;

use sqlx::any::{AnyArguments, AnyRow};
use sqlx::{AnyConnection, Row};

use super::entries::*;
use super::{FunctionId, Index};
use crate::db::{Db, StoreError};

/// One table's records, grouped by the function they belong to.
type Grouped<T> = HashMap<FunctionId, Vec<T>>;

/// Every record attached to a function, read ahead of the functions themselves.
struct Attached {
    versions: Grouped<VersionRecord>,
    aliases: Grouped<AliasRecord>,
    urls: Grouped<UrlConfigRecord>,
    provisioned: Grouped<ProvisionedRecord>,
    event_configs: Grouped<EventInvokeRecord>,
    /// Each with the place it was added in, which orders the policy.
    statements: Grouped<(i64, PolicyStatement)>,
}

const FUNCTIONS: &str = "SELECT account_id, function_name, created_at_ms, \
    reserved_concurrency, next_version, tags FROM functions";
const VERSIONS: &str = "SELECT account_id, function_name, version, config, revision_id, \
    last_modified_ms FROM function_versions";
const ALIASES: &str = "SELECT account_id, function_name, alias_name, function_version, \
    description, routing, revision_id FROM aliases";
const URLS: &str = "SELECT url_id, account_id, function_name, qualifier, auth_type, cors, \
    invoke_mode, created_at_ms, last_modified_ms FROM url_configs";
const PROVISIONED: &str = "SELECT account_id, function_name, qualifier, requested, \
    last_modified_ms FROM provisioned_concurrency";
const EVENT_CONFIGS: &str = "SELECT account_id, function_name, qualifier, config, \
    last_modified_ms FROM event_invoke_configs";
const STATEMENTS: &str = "SELECT account_id, function_name, qualifier, statement_id, \
    statement, added_order FROM policy_statements";

/// Which functions a read covers.
#[derive(Clone, Copy)]
enum Scope<'a> {
    All,
    One { account_id: &'a str, name: &'a str },
}

impl Scope<'_> {
    /// `sql` limited to this scope's function; its account binds as $1, its name as $2.
    fn query(self, sql: &'static str) -> sqlx::query::Query<'static, sqlx::Any, AnyArguments> {
        match self {
            Scope::All => sqlx::query(sql),
            Scope::One { account_id, name } => sqlx::query(sqlx::AssertSqlSafe(format!(
                "{sql} WHERE account_id = $1 AND function_name = $2"
            )))
            .bind(account_id.to_owned())
            .bind(name.to_owned()),
        }
    }
}

/// Reads every function with everything attached to it.
pub(super) async fn read_all(db: &Db) -> Result<Index, StoreError> {
    let mut conn = db.pool().acquire().await?;
    let mut attached = Attached::read(&mut conn, Scope::All).await?;
    let mut index = Index::default();
    let functions = sqlx::query(FUNCTIONS).fetch_all(&mut *conn).await?;
    for row in &functions {
        let entry = attached.entry(row)?;
        index.publish(Arc::new(entry));
    }
    Ok(index)
}

/// Reads one function with everything attached to it, on `conn` (in the transaction of a
/// change, or on its own); `None` when the database does not hold it.
pub(super) async fn read_function(
    conn: &mut AnyConnection,
    account_id: &str,
    name: &str,
) -> Result<Option<FunctionEntry>, StoreError> {
    let scope = Scope::One { account_id, name };
    let Some(row) = scope.query(FUNCTIONS).fetch_optional(&mut *conn).await? else {
        return Ok(None);
    };
    let mut attached = Attached::read(conn, scope).await?;
    Ok(Some(attached.entry(&row)?))
}

impl Attached {
    async fn read(conn: &mut AnyConnection, scope: Scope<'_>) -> Result<Self, StoreError> {
        Ok(Attached {
            versions: grouped(conn, scope, VERSIONS, version).await?,
            aliases: grouped(conn, scope, ALIASES, alias).await?,
            urls: grouped(conn, scope, URLS, url).await?,
            provisioned: grouped(conn, scope, PROVISIONED, provisioned).await?,
            event_configs: grouped(conn, scope, EVENT_CONFIGS, event_config).await?,
            statements: grouped(conn, scope, STATEMENTS, statement).await?,
        })
    }

    /// Assembles the entry of one row of `functions` from the records read ahead.
    fn entry(&mut self, row: &AnyRow) -> Result<FunctionEntry, StoreError> {
        let id = function_of(row)?;
        let (latest, versions) = split_latest(&id, take(&mut self.versions, &id))?;
        let reserved: Option<i64> = row.try_get("reserved_concurrency")?;
        let next_version: i64 = row.try_get("next_version")?;
        Ok(FunctionEntry {
            created_at_ms: row.try_get("created_at_ms")?,
            reserved_concurrency: reserved.map(|r| r as u32),
            next_version: next_version as u64,
            tags: parse(row, "tags", "tags")?,
            latest,
            versions,
            aliases: by_key(take(&mut self.aliases, &id), |a| &a.name, Arc::new),
            urls: by_key(take(&mut self.urls, &id), |u| &u.qualifier, Arc::new),
            provisioned: by_key(take(&mut self.provisioned, &id), |p| &p.qualifier, |p| p),
            event_configs: by_key(take(&mut self.event_configs, &id), |c| &c.qualifier, |c| c),
            policy: in_added_order(take(&mut self.statements, &id)),
            account_id: id.0,
            name: id.1,
        })
    }
}

/// A policy's statements in the order they were added, as GetPolicy lists them, whichever
/// order the database returned the rows in.
fn in_added_order(mut statements: Vec<(i64, PolicyStatement)>) -> Vec<PolicyStatement> {
    statements.sort_by(|(x_order, x), (y_order, y)| {
        (x_order, &x.qualifier, &x.statement_id).cmp(&(y_order, &y.qualifier, &y.statement_id))
    });
    statements.into_iter().map(|(_, s)| s).collect()
}

/// Runs `sql` over `scope` and groups its rows, each read by `read`, by their function.
async fn grouped<T>(
    conn: &mut AnyConnection,
    scope: Scope<'_>,
    sql: &'static str,
    read: fn(&AnyRow) -> Result<T, StoreError>,
) -> Result<Grouped<T>, StoreError> {
    let mut out: Grouped<T> = HashMap::new();
    for row in scope.query(sql).fetch_all(&mut *conn).await? {
        out.entry(function_of(&row)?).or_default().push(read(&row)?);
    }
    Ok(out)
}

fn take<T>(grouped: &mut Grouped<T>, id: &FunctionId) -> Vec<T> {
    grouped.remove(id).unwrap_or_default()
}

/// Keys records by the name or qualifier that `key` reads, wrapping each with `wrap`.
fn by_key<T, W>(
    records: Vec<T>,
    key: impl Fn(&T) -> &String,
    wrap: impl Fn(T) -> W,
) -> BTreeMap<String, W> {
    records
        .into_iter()
        .map(|r| (key(&r).clone(), wrap(r)))
        .collect()
}

type Numbered = BTreeMap<u64, Arc<VersionRecord>>;

/// Separates $LATEST from the numbered versions; a function without $LATEST is corrupt.
fn split_latest(
    id: &FunctionId,
    versions: Vec<VersionRecord>,
) -> Result<(Arc<VersionRecord>, Numbered), StoreError> {
    let mut latest = None;
    let mut numbered = BTreeMap::new();
    for v in versions {
        match v.number() {
            Some(n) => {
                numbered.insert(n, Arc::new(v));
            }
            None => latest = Some(Arc::new(v)),
        }
    }
    let latest = latest
        .ok_or_else(|| StoreError::Corrupt(format!("function {}/{} has no $LATEST", id.0, id.1)))?;
    Ok((latest, numbered))
}

fn function_of(row: &AnyRow) -> Result<FunctionId, StoreError> {
    Ok((row.try_get("account_id")?, row.try_get("function_name")?))
}

/// Reads a JSON column; what does not parse was not written by this catalog.
fn parse<T: serde::de::DeserializeOwned>(
    row: &AnyRow,
    column: &str,
    what: &str,
) -> Result<T, StoreError> {
    let text: String = row.try_get(column)?;
    serde_json::from_str(&text).map_err(|e| StoreError::Corrupt(format!("{what}: {e}")))
}

fn version(row: &AnyRow) -> Result<VersionRecord, StoreError> {
    Ok(VersionRecord {
        version: row.try_get("version")?,
        config: parse(row, "config", "version config")?,
        revision_id: row.try_get("revision_id")?,
        last_modified_ms: row.try_get("last_modified_ms")?,
        spec: Default::default(),
    })
}

fn alias(row: &AnyRow) -> Result<AliasRecord, StoreError> {
    Ok(AliasRecord {
        name: row.try_get("alias_name")?,
        function_version: row.try_get("function_version")?,
        description: row.try_get("description")?,
        routing: parse(row, "routing", "alias routing")?,
        revision_id: row.try_get("revision_id")?,
    })
}

fn url(row: &AnyRow) -> Result<UrlConfigRecord, StoreError> {
    Ok(UrlConfigRecord {
        url_id: row.try_get("url_id")?,
        account_id: row.try_get("account_id")?,
        function_name: row.try_get("function_name")?,
        qualifier: row.try_get("qualifier")?,
        auth_type: row.try_get("auth_type")?,
        cors: parse(row, "cors", "url cors")?,
        invoke_mode: row.try_get("invoke_mode")?,
        created_at_ms: row.try_get("created_at_ms")?,
        last_modified_ms: row.try_get("last_modified_ms")?,
    })
}

fn provisioned(row: &AnyRow) -> Result<ProvisionedRecord, StoreError> {
    let requested: i64 = row.try_get("requested")?;
    Ok(ProvisionedRecord {
        qualifier: row.try_get("qualifier")?,
        requested: requested as u32,
        last_modified_ms: row.try_get("last_modified_ms")?,
    })
}

fn event_config(row: &AnyRow) -> Result<EventInvokeRecord, StoreError> {
    Ok(EventInvokeRecord {
        qualifier: row.try_get("qualifier")?,
        config: parse(row, "config", "event invoke config")?,
        last_modified_ms: row.try_get("last_modified_ms")?,
    })
}

fn statement(row: &AnyRow) -> Result<(i64, PolicyStatement), StoreError> {
    let statement = PolicyStatement {
        qualifier: row.try_get("qualifier")?,
        statement_id: row.try_get("statement_id")?,
        statement: parse(row, "statement", "policy statement")?,
    };
    Ok((row.try_get("added_order")?, statement))
}

//! One change to a function as one database transaction: the transaction locks the
//! function's row and reads the function afresh (another node may have changed it), the
//! change edits that entry and lists the rows it puts or deletes, the transaction writes
//! the function's own row and those rows and takes the next catalog revision; only after
//! the commit is the new entry published.

use std::sync::Arc;

use sqlx::any::AnyArguments;

use super::entries::*;
use super::propagation::{self, Subject};
use super::{Catalog, CatalogError, load};
use crate::db::Backend;

/// One row put or deleted by a change, in the transaction of the others of that change.
pub(super) enum Write {
    /// Inserts the row, or replaces the one with the same key.
    Put(Row),
    /// Deletes the row with this record's key.
    Delete(Row),
}

/// A record stored in a row of its own, keyed within its function. Public only because
/// [`super::attachments::Attachment`] names it; its module is private.
pub enum Row {
    Version(Arc<VersionRecord>),
    Alias(Arc<AliasRecord>),
    Url(Arc<UrlConfigRecord>),
    Provisioned(ProvisionedRecord),
    EventConfig(EventInvokeRecord),
    Statement(PolicyStatement),
}

type Statement<'q> = sqlx::query::Query<'q, sqlx::Any, AnyArguments>;
type Transaction<'c> = sqlx::Transaction<'c, sqlx::Any>;

// Every statement binds the account as $1 and the function's name as $2, then the row's
// key columns, then (in an upsert) its other columns, in the order `Row::bind_*` binds them.
impl Row {
    /// The upsert and the delete of this row's table.
    fn statements(&self) -> (&'static str, &'static str) {
        match self {
            Row::Version(_) => (
                "INSERT INTO function_versions (account_id, function_name, version, config, \
                 code_sha256, revision_id, last_modified_ms) VALUES ($1, $2, $3, $4, $5, $6, $7) \
                 ON CONFLICT (account_id, function_name, version) DO UPDATE SET \
                 config = excluded.config, code_sha256 = excluded.code_sha256, \
                 revision_id = excluded.revision_id, last_modified_ms = excluded.last_modified_ms",
                "DELETE FROM function_versions WHERE account_id = $1 AND function_name = $2 \
                 AND version = $3",
            ),
            Row::Alias(_) => (
                "INSERT INTO aliases (account_id, function_name, alias_name, function_version, \
                 description, routing, revision_id) VALUES ($1, $2, $3, $4, $5, $6, $7) \
                 ON CONFLICT (account_id, function_name, alias_name) DO UPDATE SET \
                 function_version = excluded.function_version, \
                 description = excluded.description, routing = excluded.routing, \
                 revision_id = excluded.revision_id",
                "DELETE FROM aliases WHERE account_id = $1 AND function_name = $2 \
                 AND alias_name = $3",
            ),
            Row::Url(_) => (
                "INSERT INTO url_configs (account_id, function_name, url_id, qualifier, \
                 auth_type, cors, invoke_mode, created_at_ms, last_modified_ms) \
                 VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9) \
                 ON CONFLICT (url_id) DO UPDATE SET auth_type = excluded.auth_type, \
                 cors = excluded.cors, invoke_mode = excluded.invoke_mode, \
                 last_modified_ms = excluded.last_modified_ms",
                "DELETE FROM url_configs WHERE account_id = $1 AND function_name = $2 \
                 AND url_id = $3",
            ),
            Row::Provisioned(_) => (
                "INSERT INTO provisioned_concurrency (account_id, function_name, qualifier, \
                 requested, last_modified_ms) VALUES ($1, $2, $3, $4, $5) \
                 ON CONFLICT (account_id, function_name, qualifier) DO UPDATE SET \
                 requested = excluded.requested, last_modified_ms = excluded.last_modified_ms",
                "DELETE FROM provisioned_concurrency WHERE account_id = $1 \
                 AND function_name = $2 AND qualifier = $3",
            ),
            Row::EventConfig(_) => (
                "INSERT INTO event_invoke_configs (account_id, function_name, qualifier, config, \
                 last_modified_ms) VALUES ($1, $2, $3, $4, $5) \
                 ON CONFLICT (account_id, function_name, qualifier) DO UPDATE SET \
                 config = excluded.config, last_modified_ms = excluded.last_modified_ms",
                "DELETE FROM event_invoke_configs WHERE account_id = $1 AND function_name = $2 \
                 AND qualifier = $3",
            ),
            // AddPermission refuses an existing statement id before it gets here.
            Row::Statement(_) => (
                "INSERT INTO policy_statements (account_id, function_name, qualifier, \
                 statement_id, statement, added_order) VALUES ($1, $2, $3, $4, $5, \
                 (SELECT COALESCE(MAX(added_order), 0) + 1 FROM policy_statements \
                  WHERE account_id = $1 AND function_name = $2))",
                "DELETE FROM policy_statements WHERE account_id = $1 AND function_name = $2 \
                 AND qualifier = $3 AND statement_id = $4",
            ),
        }
    }

    fn bind_key<'q>(&self, q: Statement<'q>) -> Statement<'q> {
        match self {
            Row::Version(v) => q.bind(v.version.as_str()),
            Row::Alias(a) => q.bind(a.name.as_str()),
            Row::Url(u) => q.bind(u.url_id.as_str()),
            Row::Provisioned(p) => q.bind(p.qualifier.as_str()),
            Row::EventConfig(c) => q.bind(c.qualifier.as_str()),
            Row::Statement(s) => q.bind(s.qualifier.as_str()).bind(s.statement_id.as_str()),
        }
    }

    fn bind_columns<'q>(&self, q: Statement<'q>) -> Statement<'q> {
        match self {
            Row::Version(v) => q
                .bind(json(&v.config))
                .bind(v.config.code_sha256.as_str())
                .bind(v.revision_id.as_str())
                .bind(v.last_modified_ms),
            Row::Alias(a) => q
                .bind(a.function_version.as_str())
                .bind(a.description.as_str())
                .bind(json(&a.routing))
                .bind(a.revision_id.as_str()),
            Row::Url(u) => q
                .bind(u.qualifier.as_str())
                .bind(u.auth_type.as_str())
                .bind(json(&u.cors))
                .bind(u.invoke_mode.as_str())
                .bind(u.created_at_ms)
                .bind(u.last_modified_ms),
            Row::Provisioned(p) => q.bind(i64::from(p.requested)).bind(p.last_modified_ms),
            Row::EventConfig(c) => q.bind(json(&c.config)).bind(c.last_modified_ms),
            Row::Statement(s) => q.bind(json(&s.statement)),
        }
    }
}

/// Serialises a column stored as JSON. Maps with string keys and JSON values, which is
/// all the catalog stores, always serialise.
fn json<T: serde::Serialize>(v: &T) -> String {
    serde_json::to_string(v).unwrap_or_else(|_| "null".into())
}

/// Runs one write in the change's transaction.
async fn apply(tx: &mut Transaction<'_>, e: &FunctionEntry, write: &Write) -> sqlx::Result<()> {
    let (row, put) = match write {
        Write::Put(row) => (row, true),
        Write::Delete(row) => (row, false),
    };
    let (upsert, delete) = row.statements();
    let q = sqlx::query(if put { upsert } else { delete })
        .bind(e.account_id.as_str())
        .bind(e.name.as_str());
    let q = row.bind_key(q);
    let q = if put { row.bind_columns(q) } else { q };
    q.execute(&mut **tx).await?;
    Ok(())
}

async fn apply_all(
    tx: &mut Transaction<'_>,
    e: &FunctionEntry,
    writes: &[Write],
) -> sqlx::Result<()> {
    for w in writes {
        apply(tx, e, w).await?;
    }
    Ok(())
}

/// Binds the function's own row: $1 account, $2 name, $3 reserved concurrency, $4 next
/// version, $5 tags.
fn function_row<'q>(sql: &'static str, e: &FunctionEntry) -> Statement<'q> {
    sqlx::query(sql)
        .bind(e.account_id.as_str())
        .bind(e.name.as_str())
        .bind(e.reserved_concurrency.map(i64::from))
        .bind(e.next_version as i64)
        .bind(json(&e.tags))
}

/// Writes the function's own row; false when it is no longer in the database.
async fn update_function_row(tx: &mut Transaction<'_>, e: &FunctionEntry) -> sqlx::Result<bool> {
    let done = function_row(
        "UPDATE functions SET reserved_concurrency = $3, next_version = $4, tags = $5 \
         WHERE account_id = $1 AND function_name = $2",
        e,
    )
    .execute(&mut **tx)
    .await?;
    Ok(done.rows_affected() > 0)
}

/// Inserts the function's own row; false when the function exists already (another node
/// may have created it a moment ago).
async fn insert_function_row(tx: &mut Transaction<'_>, e: &FunctionEntry) -> sqlx::Result<bool> {
    let done = function_row(
        "INSERT INTO functions (account_id, function_name, reserved_concurrency, \
         next_version, tags, created_at_ms) VALUES ($1, $2, $3, $4, $5, $6) \
         ON CONFLICT (account_id, function_name) DO NOTHING",
        e,
    )
    .bind(e.created_at_ms)
    .execute(&mut **tx)
    .await?;
    Ok(done.rows_affected() > 0)
}

/// Reads the function in the change's transaction; on PostgreSQL its row stays locked
/// until the commit, so changes made through different nodes apply one after the other.
/// SQLite serialises writers itself.
async fn read_for_change(
    tx: &mut Transaction<'_>,
    backend: Backend,
    account_id: &str,
    name: &str,
) -> Result<Option<FunctionEntry>, CatalogError> {
    if backend == Backend::Postgres {
        sqlx::query(
            "SELECT function_name FROM functions WHERE account_id = $1 AND function_name = $2 \
             FOR UPDATE",
        )
        .bind(account_id)
        .bind(name)
        .fetch_optional(&mut **tx)
        .await?;
    }
    Ok(load::read_function(tx, account_id, name).await?)
}

impl Catalog {
    /// Applies `change` to a copy of the function's entry, persists the function's row and
    /// the writes the change lists in one transaction, then publishes the new entry.
    ///
    /// A function deleted before the writer lock was taken, or whose row is gone from the
    /// database, is `FunctionNotFound`: the caller's lookup raced a delete.
    pub(super) async fn update<T>(
        &self,
        account_id: &str,
        name: &str,
        change: impl FnOnce(&mut FunctionEntry) -> Result<(T, Vec<Write>), CatalogError>,
    ) -> Result<(T, Arc<FunctionEntry>), CatalogError> {
        let _guard = self.writer.lock().await;
        let mut tx = self.db.begin_write().await?;
        let Some(mut next) = read_for_change(&mut tx, self.db.backend(), account_id, name).await?
        else {
            // The database is the record; a mirror that still shows the function would
            // keep answering reads for it.
            self.write_index().forget(account_id, name);
            return Err(CatalogError::FunctionNotFound);
        };
        let (value, writes) = change(&mut next)?;
        if !update_function_row(&mut tx, &next).await? {
            self.write_index().forget(account_id, name);
            return Err(CatalogError::FunctionNotFound);
        }
        apply_all(&mut tx, &next, &writes).await?;
        propagation::record(&mut tx, Subject::Function, account_id, name).await?;
        tx.commit().await?;
        let next = Arc::new(next);
        let mut index = self.write_index();
        index.forget(account_id, name);
        index.publish(next.clone());
        Ok((value, next))
    }

    /// Persists a new function with the writes that come with it, then publishes it.
    pub(super) async fn insert(
        &self,
        entry: FunctionEntry,
        writes: Vec<Write>,
    ) -> Result<Arc<FunctionEntry>, CatalogError> {
        let _guard = self.writer.lock().await;
        if self.function(&entry.account_id, &entry.name).is_some() {
            return Err(CatalogError::FunctionExists);
        }
        let mut tx = self.db.begin_write().await?;
        if !insert_function_row(&mut tx, &entry).await? {
            return Err(CatalogError::FunctionExists);
        }
        apply_all(&mut tx, &entry, &writes).await?;
        propagation::record(&mut tx, Subject::Function, &entry.account_id, &entry.name).await?;
        tx.commit().await?;
        let entry = Arc::new(entry);
        self.write_index().publish(entry.clone());
        Ok(entry)
    }

    /// Deletes a function and every row attached to it, then forgets it.
    pub(super) async fn remove(
        &self,
        account_id: &str,
        name: &str,
    ) -> Result<Arc<FunctionEntry>, CatalogError> {
        let _guard = self.writer.lock().await;
        let mut tx = self.db.begin_write().await?;
        let Some(entry) = read_for_change(&mut tx, self.db.backend(), account_id, name).await?
        else {
            self.write_index().forget(account_id, name);
            return Err(CatalogError::FunctionNotFound);
        };
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
        propagation::record(&mut tx, Subject::Function, account_id, name).await?;
        tx.commit().await?;
        self.write_index().forget(account_id, name);
        Ok(Arc::new(entry))
    }
}

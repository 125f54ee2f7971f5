//! The catalog's change feed, which keeps every node's mirror in step with the database.
//!
//! Each change takes the next catalog revision in its own transaction and names what it
//! changed (a function, or an access key). A node remembers the revision its mirror
//! reflects; [`Catalog::catch_up`] reads the changes after it and reloads each function
//! they name from the database, so a node that missed changes while it was cut off
//! catches up from its revision, and one that fell behind the pruned feed reloads all.

use std::collections::BTreeSet;
use std::sync::Arc;
use std::sync::atomic::Ordering;

use sqlx::{AnyConnection, Row};

use super::entries::FunctionEntry;
use super::{Catalog, Index, load};
use crate::db::{Db, StoreError, now_ms};

/// What a catalog change names.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Subject {
    Function,
    AccessKey,
}

impl Subject {
    fn as_str(self) -> &'static str {
        match self {
            Subject::Function => "function",
            Subject::AccessKey => "access_key",
        }
    }
}

/// Takes the next catalog revision and records what it changes, in the transaction of
/// the change: the row lock on the counter orders concurrent changes from every node.
pub(crate) async fn record(
    conn: &mut AnyConnection,
    subject: Subject,
    account_id: &str,
    name: &str,
) -> sqlx::Result<i64> {
    let revision: i64 = sqlx::query(
        "UPDATE catalog_revision SET revision = revision + 1 WHERE singleton = 1 \
         RETURNING revision",
    )
    .fetch_one(&mut *conn)
    .await?
    .try_get(0)?;
    sqlx::query(
        "INSERT INTO catalog_changes (revision, kind, account_id, subject, changed_at_ms) \
         VALUES ($1, $2, $3, $4, $5)",
    )
    .bind(revision)
    .bind(subject.as_str())
    .bind(account_id)
    .bind(name)
    .bind(now_ms())
    .execute(&mut *conn)
    .await?;
    Ok(revision)
}

pub(super) async fn current_revision(db: &Db) -> Result<i64, StoreError> {
    Ok(
        sqlx::query("SELECT revision FROM catalog_revision WHERE singleton = 1")
            .fetch_one(db.pool())
            .await?
            .try_get(0)?,
    )
}

/// One function as it was before a change this node applied, and as it is after.
#[derive(Debug, Clone)]
pub struct FunctionChange {
    pub account_id: String,
    pub name: String,
    pub before: Option<Arc<FunctionEntry>>,
    pub after: Option<Arc<FunctionEntry>>,
}

/// What one [`Catalog::catch_up`] applied.
#[derive(Debug, Default)]
pub struct CatchUp {
    /// The revision the mirror reflects now.
    pub revision: i64,
    pub functions: Vec<FunctionChange>,
    /// Access keys revoked or created since; their cached answers are stale.
    pub access_keys: Vec<String>,
    /// The feed no longer reached back to this node's revision: everything was reloaded,
    /// and any access key may have changed.
    pub reloaded_all: bool,
}

/// What a node does with a function's new entry before its mirror shows it: lay out the
/// packages it runs, so no invocation finds a version whose code is not there yet.
#[async_trait::async_trait]
pub trait BeforePublish: Send + Sync {
    async fn before_publish(&self, entry: &FunctionEntry);
}

/// Publishes entries as they are, for callers with nothing to prepare.
pub struct PublishAsIs;

#[async_trait::async_trait]
impl BeforePublish for PublishAsIs {
    async fn before_publish(&self, _entry: &FunctionEntry) {}
}

/// Changes read per round, so that a node far behind catches up in bounded steps.
const BATCH: i64 = 500;

impl Catalog {
    /// The catalog revision this node's mirror reflects.
    pub fn revision(&self) -> i64 {
        self.revision.load(Ordering::Acquire)
    }

    /// Applies the changes made since [`Catalog::revision`], by this node or any other,
    /// handing each new entry to `prepare` before publishing it. One query when nothing
    /// changed.
    pub async fn catch_up(&self, prepare: &dyn BeforePublish) -> Result<CatchUp, StoreError> {
        let from = self.revision();
        let latest = current_revision(&self.db).await?;
        if latest <= from {
            return Ok(CatchUp {
                revision: from,
                ..CatchUp::default()
            });
        }
        let rows = sqlx::query(
            "SELECT revision, kind, account_id, subject FROM catalog_changes \
             WHERE revision > $1 ORDER BY revision LIMIT $2",
        )
        .bind(from)
        .bind(BATCH)
        .fetch_all(self.db.pool())
        .await?;
        let first: Option<i64> = rows.first().map(|r| r.try_get(0)).transpose()?;
        if first != Some(from + 1) {
            return self.reload_all(prepare).await;
        }
        let mut functions = BTreeSet::new();
        let mut access_keys = BTreeSet::new();
        let mut last = from;
        for row in &rows {
            last = row.try_get(0)?;
            let kind: String = row.try_get(1)?;
            let account_id: String = row.try_get(2)?;
            let subject: String = row.try_get(3)?;
            if kind == Subject::AccessKey.as_str() {
                access_keys.insert(subject);
            } else {
                functions.insert((account_id, subject));
            }
        }
        let mut changes = Vec::with_capacity(functions.len());
        for (account_id, name) in functions {
            changes.push(self.reload_function(&account_id, &name, prepare).await?);
        }
        self.revision.fetch_max(last, Ordering::AcqRel);
        Ok(CatchUp {
            revision: self.revision(),
            functions: changes,
            access_keys: access_keys.into_iter().collect(),
            reloaded_all: false,
        })
    }

    /// Reads one function again from the database and swaps it into the mirror.
    async fn reload_function(
        &self,
        account_id: &str,
        name: &str,
        prepare: &dyn BeforePublish,
    ) -> Result<FunctionChange, StoreError> {
        let _guard = self.writer.lock().await;
        let mut conn = self.db.pool().acquire().await?;
        let after = load::read_function(&mut conn, account_id, name)
            .await?
            .map(Arc::new);
        drop(conn);
        if let Some(entry) = &after {
            prepare.before_publish(entry).await;
        }
        let before = self.function(account_id, name);
        let mut index = self.write_index();
        index.forget(account_id, name);
        if let Some(entry) = &after {
            index.publish(entry.clone());
        }
        Ok(FunctionChange {
            account_id: account_id.to_owned(),
            name: name.to_owned(),
            before,
            after,
        })
    }

    /// Reads the whole catalog again, for a node that fell behind the pruned feed.
    async fn reload_all(&self, prepare: &dyn BeforePublish) -> Result<CatchUp, StoreError> {
        let _guard = self.writer.lock().await;
        let revision = current_revision(&self.db).await?;
        let fresh: Index = load::read_all(&self.db).await?;
        for entry in fresh.functions.values() {
            prepare.before_publish(entry).await;
        }
        let mut index = self.write_index();
        let mut names: BTreeSet<(String, String)> = index.functions.keys().cloned().collect();
        names.extend(fresh.functions.keys().cloned());
        let functions = names
            .into_iter()
            .map(|(account_id, name)| {
                let id = (account_id.clone(), name.clone());
                FunctionChange {
                    before: index.functions.get(&id).cloned(),
                    after: fresh.functions.get(&id).cloned(),
                    account_id,
                    name,
                }
            })
            .collect();
        *index = fresh;
        drop(index);
        self.revision.fetch_max(revision, Ordering::AcqRel);
        Ok(CatchUp {
            revision: self.revision(),
            functions,
            access_keys: Vec::new(),
            reloaded_all: true,
        })
    }

    /// Whether the database holds the function, whatever this node's mirror says yet.
    pub async fn is_in_database(&self, account_id: &str, name: &str) -> Result<bool, StoreError> {
        Ok(
            sqlx::query("SELECT 1 FROM functions WHERE account_id = $1 AND function_name = $2")
                .bind(account_id)
                .bind(name)
                .fetch_optional(self.db.pool())
                .await?
                .is_some(),
        )
    }

    /// Deletes the changes recorded before `before_ms`; nodes further behind reload all.
    pub async fn prune_changes(&self, before_ms: i64) -> Result<u64, StoreError> {
        let done = sqlx::query("DELETE FROM catalog_changes WHERE changed_at_ms < $1")
            .bind(before_ms)
            .execute(self.db.writer())
            .await?;
        Ok(done.rows_affected())
    }
}

//! The catalog: every function, version, alias, URL config and setting, persisted in the
//! database and mirrored in memory so that resolving a function on the invoke path never
//! touches the database.
//!
//! Every change is written to the database in one transaction first and then swapped
//! into memory, under one writer lock; readers see whole, immutable [`FunctionEntry`]
//! values. The database is the record: every change re-reads the function in its own
//! transaction, and [`propagation`] brings in the changes other nodes made.
//!
//! - this module: the [`Catalog`] type, its in-memory index and the reads.
//! - [`entries`]: what the catalog persists about a function, as plain data.
//! - `error`: [`CatalogError`] and its class, [`CatalogErrorKind`].
//! - `load`: reading the whole catalog from the database at start.
//! - `write`: one change to a function as a transaction, and the rows it writes.
//! - `functions`: creating, updating, publishing and deleting functions and versions.
//! - `attachments`: what hangs off a function by qualifier (aliases, URL configs,
//!   provisioned concurrency, event invoke configs, policy statements) and its settings.
//! - `spec`: the execution spec of a version, as the worker needs it.
//! - [`propagation`]: the change feed that keeps every node's mirror current.

mod attachments;
pub mod entries;
mod error;
mod functions;
mod load;
pub mod propagation;
mod spec;
mod write;

use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::atomic::AtomicI64;
use std::sync::{Arc, RwLock, RwLockReadGuard, RwLockWriteGuard};

pub use attachments::QualifierSetting;
pub use entries::{
    AliasRecord, EventInvokeConfig, EventInvokeRecord, FunctionEntry, FunctionLayer,
    PolicyStatement, ProvisionedRecord, UrlConfigRecord, VersionConfig, VersionRecord,
};
pub use error::{CatalogError, CatalogErrorKind};

use crate::db::{Db, StoreError};

/// A function's identity in the index: its account and its name.
type FunctionId = (String, String);

fn function_id(account_id: &str, name: &str) -> FunctionId {
    (account_id.to_owned(), name.to_owned())
}

/// The in-memory mirror of the catalog tables.
#[derive(Default)]
struct Index {
    functions: HashMap<FunctionId, Arc<FunctionEntry>>,
    /// Every function's URL configs by URL id, for the function-URL data plane.
    urls: HashMap<String, Arc<UrlConfigRecord>>,
}

impl Index {
    /// Publishes a function's new entry with its URL configs.
    fn publish(&mut self, entry: Arc<FunctionEntry>) {
        for u in entry.urls.values() {
            self.urls.insert(u.url_id.clone(), u.clone());
        }
        let id = function_id(&entry.account_id, &entry.name);
        self.functions.insert(id, entry);
    }

    /// Forgets a function and its URL configs.
    fn forget(&mut self, account_id: &str, name: &str) {
        if let Some(entry) = self.functions.remove(&function_id(account_id, name)) {
            for u in entry.urls.values() {
                self.urls.remove(&u.url_id);
            }
        }
    }
}

pub struct Catalog {
    db: Db,
    packages_dir: PathBuf,
    region: String,
    index: RwLock<Index>,
    /// The catalog revision the index reflects (see [`propagation`]).
    revision: AtomicI64,
    /// Serialises changes, so that each one edits the entry the previous one published.
    writer: tokio::sync::Mutex<()>,
}

impl std::fmt::Debug for Catalog {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Catalog")
            .field("packages_dir", &self.packages_dir)
            .finish_non_exhaustive()
    }
}

impl Catalog {
    /// Loads the whole catalog from the database.
    pub async fn load(db: Db, packages_dir: PathBuf, region: String) -> Result<Self, StoreError> {
        // The revision first: a change committed between the two reads is read again by
        // the next catch-up, which is harmless.
        let revision = propagation::current_revision(&db).await?;
        let index = load::read_all(&db).await?;
        Ok(Catalog {
            db,
            packages_dir,
            region,
            index: RwLock::new(index),
            revision: AtomicI64::new(revision),
            writer: tokio::sync::Mutex::new(()),
        })
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

    // A panic while holding the lock leaves the index whole (every change swaps in a
    // finished entry), so a poisoned lock is still safe to use.
    fn read_index(&self) -> RwLockReadGuard<'_, Index> {
        self.index.read().unwrap_or_else(|e| e.into_inner())
    }

    fn write_index(&self) -> RwLockWriteGuard<'_, Index> {
        self.index.write().unwrap_or_else(|e| e.into_inner())
    }

    pub fn function(&self, account_id: &str, name: &str) -> Option<Arc<FunctionEntry>> {
        self.read_index()
            .functions
            .get(&function_id(account_id, name))
            .cloned()
    }

    /// The account's functions sorted by name.
    pub fn functions(&self, account_id: &str) -> Vec<Arc<FunctionEntry>> {
        let mut out: Vec<Arc<FunctionEntry>> = self
            .read_index()
            .functions
            .values()
            .filter(|f| f.account_id == account_id)
            .cloned()
            .collect();
        out.sort_by(|a, b| a.name.cmp(&b.name));
        out
    }

    pub fn all_functions(&self) -> Vec<Arc<FunctionEntry>> {
        self.read_index().functions.values().cloned().collect()
    }

    pub fn url(&self, url_id: &str) -> Option<Arc<UrlConfigRecord>> {
        self.read_index().urls.get(url_id).cloned()
    }
}

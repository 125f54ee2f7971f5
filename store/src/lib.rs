//! Lamina's persistence, and the only crate that holds SQL.
//!
//! - [`accounts`]: accounts and access keys, secrets sealed with the server key.
//! - [`db`]: the connection (PostgreSQL or embedded SQLite) and migrations.
//! - [`catalog`]: functions, versions, aliases and their settings, mirrored in memory.
//! - [`ledger`]: the billing ledger and its crash-proof spool.
//! - [`queue`]: the durable queue of asynchronous invocations.
//! - [`reports`]: function logs and usage read back from the ledger.
//! - [`quality`]: ground truth joined with logged predictions, and model scores.

pub mod accounts;
pub mod catalog;
pub mod db;
pub mod ledger;
pub mod quality;
pub mod queue;
pub mod records;
pub mod reports;

pub use catalog::{Catalog, CatalogError};
pub use db::{Backend, Db, StoreError};
pub use ledger::{LedgerConfig, LedgerStats, LedgerWriter, LogRecord, Spool, SpoolEntry};
pub use queue::{AsyncEvent, Queue, Settlement};
pub use records::*;

//! Lamina's persistence, and the only crate that holds SQL.
//!
//! - [`accounts`]: accounts and access keys, secrets sealed with the server key.
//! - [`db`]: the connection (PostgreSQL or embedded SQLite) and migrations.
//! - [`catalog`]: functions, versions, aliases and their settings, mirrored in memory;
//!   [`catalog::entries`] is what it persists about each function.
//! - [`ledger`]: the billing ledger and its crash-proof spool.
//! - [`queue`]: the durable queue of asynchronous invocations, drained by every node.
//! - [`membership`]: the nodes of a cluster, their heartbeats and figures.
//! - [`concurrency_leases`]: the slots of the cluster's concurrency limits each node
//!   holds.
//! - [`package_blobs`]: package blobs kept in the database, for clusters without a
//!   shared bucket.
//! - [`layers`]: layer versions, the packages functions mount under `/opt`.
//! - [`function_logs`]: function logs read back from the ledger, and their retention.
//! - [`usage`]: usage per function, summed from the ledger.
//! - [`quality`]: ground truth joined with logged predictions, and model scores.

pub mod accounts;
pub mod catalog;
pub mod concurrency_leases;
pub mod db;
pub mod function_logs;
pub mod layers;
pub mod ledger;
pub mod membership;
pub mod package_blobs;
pub mod quality;
pub mod queue;
pub mod usage;

pub use catalog::propagation::{BeforePublish, CatchUp, FunctionChange, PublishAsIs};
pub use catalog::{
    AliasRecord, Catalog, CatalogError, CatalogErrorKind, EventInvokeConfig, EventInvokeRecord,
    FunctionEntry, FunctionLayer, PolicyStatement, ProvisionedRecord, QualifierSetting,
    UrlConfigRecord, VersionConfig, VersionRecord,
};
pub use concurrency_leases::{ConcurrencyLeases, SlotGrant};
pub use db::{Backend, Db, StoreError, within};
pub use function_logs::{LogEntry, LogQuery};
pub use layers::{LayerDraft, LayerVersion, Layers};
pub use ledger::{
    LedgerConfig, LedgerStats, LedgerWriter, LogRecord, LoggedInvocation, Spool, SpoolEntry,
};
pub use membership::{Membership, NodeLoad, NodeRecord};
pub use package_blobs::PackageBlobs;
pub use queue::{AsyncEvent, Orphan, Queue, Settlement};
pub use usage::Usage;

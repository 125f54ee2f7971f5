//! The scheduler's adapters against a fake execution backend: the `Scheduler` (warm
//! reuse, scale to zero, throttles, provisioned concurrency) under paused tokio time, and
//! the `Dispatcher` (retries, event age, destinations, dead-letter queue) over a real
//! store on SQLite.

// clippy.toml allows unwrap inside #[test] functions; the harness helpers are test code too.
#![allow(clippy::unwrap_used)]

mod dispatch;
mod pools;

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::SystemTime;

use bytes::Bytes;
use prometheus::Registry;
use protocol::{InvocationResult, InvocationType, Payload, Price};
use scheduler::testing::{FakeBackend, version_config as config};
use scheduler::{InvocationRequest, InvokeError, Invoker, Limits, Recorder, Scheduler, Target};
use store::{Catalog, Db, FunctionEntry, LedgerConfig, Spool, VersionConfig};

pub const ACCOUNT: &str = "111111111111";

/// A scheduler on the fake backend, with a catalog and a ledger spool in a temporary
/// directory.
pub struct Harness {
    pub fake: FakeBackend,
    pub db: Db,
    pub catalog: Arc<Catalog>,
    pub scheduler: Scheduler,
    pub invoker: Invoker,
    pub registry: Registry,
    _dir: tempfile::TempDir,
}

pub fn arn(name: &str) -> String {
    format!("arn:aws:lambda:us-east-1:{ACCOUNT}:function:{name}")
}

impl Harness {
    pub async fn new(limits: Limits) -> Harness {
        let dir = tempfile::tempdir().unwrap();
        let db = Db::open_sqlite(&dir.path().join("lamina.db"))
            .await
            .unwrap();
        let catalog = Arc::new(
            Catalog::load(db.clone(), dir.path().join("packages"), "us-east-1".into())
                .await
                .unwrap(),
        );
        let spool = Spool::open(&LedgerConfig::new(dir.path().join("ledger"))).unwrap();
        let fake = FakeBackend::new();
        let registry = Registry::new();
        let scheduler = Scheduler::new(
            Arc::new(fake.clone()),
            limits,
            Recorder::new(spool, Price::default()),
            &registry,
        )
        .unwrap();
        let invoker = Invoker::new(scheduler.clone(), catalog.clone());
        Harness {
            fake,
            db,
            catalog,
            scheduler,
            invoker,
            registry,
            _dir: dir,
        }
    }

    /// Creates function `name` with `$LATEST` and version 1.
    pub async fn function(&self, name: &str, config: VersionConfig) -> Arc<FunctionEntry> {
        self.catalog
            .create_function(ACCOUNT, name, config, BTreeMap::new(), true)
            .await
            .unwrap()
    }

    /// Invokes `$LATEST` of `name` synchronously with request id `id`.
    pub async fn invoke(&self, name: &str, id: &str) -> Result<InvocationResult, InvokeError> {
        let entry = self.catalog.function(ACCOUNT, name).unwrap();
        let target = Target {
            entry: &entry,
            version: &entry.latest,
            qualifier: None,
        };
        self.invoker.invoke(target, request(id)).await
    }

    /// The text exposition of the registry the scheduler was given.
    pub fn metrics(&self) -> String {
        prometheus::TextEncoder::new()
            .encode_to_string(&self.registry.gather())
            .unwrap()
    }
}

pub fn request(id: &str) -> InvocationRequest {
    InvocationRequest {
        request_id: id.to_owned(),
        payload: Payload::Event(Bytes::from(format!("{{\"id\":\"{id}\"}}"))),
        client_context: None,
        invocation_type: InvocationType::RequestResponse,
        caller_account_id: ACCOUNT.to_owned(),
        received_at: SystemTime::now(),
        request_bytes: 10,
        attempt: 1,
    }
}

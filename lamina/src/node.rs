//! One Lamina node: store, worker, scheduler, async dispatcher, ledger writer and gateway
//! wired together. `lamina up` runs one; integration tests start them in-process.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context as _;
use gateway::{AppState, ConnectionLimits, GatewayConfig, NodeIdentity, Services};
use packages::{
    CodeStoreLocation, PackageLimits, Packages, PackagesConfig, S3Config, SealKey, SharedBlobsRef,
};
use protocol::{ExecutionBackend, Price};
use scheduler::{
    DispatchConfig, Dispatcher, FunctionKey, Leaseholder, Limits, Recorder, Scheduler,
};
use store::accounts::{Accounts, ServerKey};
use store::{
    Backend, Catalog, ConcurrencyLeases, Db, LedgerConfig, LedgerWriter, Membership, PackageBlobs,
    Queue, Spool,
};
use tokio::sync::{Notify, watch};
use tokio::task::JoinHandle;
use worker::{ModelConfig, Worker, WorkerConfig};

/// Everything a node needs to start.
#[derive(Debug, Clone)]
pub struct NodeConfig {
    pub data_dir: PathBuf,
    pub database_url: Option<String>,
    pub region: String,
    pub public_url: String,
    /// The id of the account a fresh data directory starts with.
    pub default_account: String,
    /// That account's first access key (id, secret); generated when `None`.
    pub root_key: Option<(String, String)>,
    pub limits: Limits,
    pub dispatch: DispatchConfig,
    pub price: Price,
    pub worker: Option<WorkerConfig>,
    /// How long function logs (and model predictions and feedback) are kept.
    pub log_retention: Duration,
    /// How far back model quality scores look.
    pub quality_window: Duration,
    /// The built-in runtimes (see [`default_runtimes_dir`]); used when `worker` is None.
    pub runtimes_dir: Option<PathBuf>,
    /// How the node holds models; used when `worker` is None.
    pub models: ModelConfig,
    /// What one client connection may cost: header-read timeout, connections at once.
    pub connections: ConnectionLimits,
    /// The key that seals secrets and packages; `<data-dir>/server.key` when `None`.
    pub server_key_file: Option<PathBuf>,
    pub packages: PackageOptions,
    /// This node's id in its cluster; kept in `<data-dir>/node-id` when `None`.
    pub node_id: Option<String>,
    /// Where other nodes reach this node; the public URL when `None`.
    pub advertise_url: Option<String>,
    /// How synchronous invocations are sent to their functions' home nodes.
    pub routing: scheduler::RoutingPolicy,
}

/// Where the node keeps packages and how it reaches S3.
#[derive(Debug, Clone, Default)]
pub struct PackageOptions {
    /// `<data-dir>/packages` when `None`.
    pub code_store: Option<CodeStoreLocation>,
    /// The plaintext working copies; `<data-dir>/unpacked` when `None`.
    pub working_dir: Option<PathBuf>,
    /// Keep new packages in plaintext (for disks encrypted underneath, and for measuring
    /// what sealing costs).
    pub plaintext: bool,
    pub limits: PackageLimits,
    /// The node's S3 endpoint and credentials; the region is the node's.
    pub s3: S3Config,
}

/// Where the built-in runtimes are when nobody says: `runtimes/` next to the lamina
/// binary (an installed layout), else the `guests/target/runtimes` of the source
/// checkout this binary was built from (`cargo run` after `guests/build.sh`).
pub fn default_runtimes_dir() -> Option<PathBuf> {
    let beside = std::env::current_exe()
        .ok()
        .and_then(|exe| exe.parent().map(|d| d.join("runtimes")));
    let checkout = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../guests/target/runtimes");
    beside
        .into_iter()
        .chain([checkout])
        .find(|d| d.join("onnx.wasm").is_file())
}

impl NodeConfig {
    pub fn new(data_dir: impl Into<PathBuf>, public_url: impl Into<String>) -> Self {
        NodeConfig {
            data_dir: data_dir.into(),
            database_url: None,
            region: "us-east-1".into(),
            public_url: public_url.into(),
            default_account: "000000000000".into(),
            root_key: None,
            limits: Limits::default(),
            dispatch: DispatchConfig::default(),
            price: Price::default(),
            worker: None,
            log_retention: Duration::from_secs(7 * 24 * 3600),
            quality_window: Duration::from_secs(3600),
            runtimes_dir: default_runtimes_dir(),
            models: ModelConfig::default(),
            connections: ConnectionLimits::default(),
            server_key_file: None,
            packages: PackageOptions::default(),
            node_id: None,
            advertise_url: None,
            routing: scheduler::RoutingPolicy::default(),
        }
    }

    pub fn server_key_path(&self) -> PathBuf {
        self.server_key_file
            .clone()
            .unwrap_or_else(|| self.data_dir.join("server.key"))
    }

    /// `shared_blobs` is the database's blob store, the code store of a cluster that was
    /// given no other.
    fn packages_config(
        &self,
        server_key: &ServerKey,
        shared_blobs: Option<SharedBlobsRef>,
    ) -> PackagesConfig {
        let mut c = PackagesConfig::in_data_dir(
            &self.data_dir,
            SealKey::new(server_key.derive("lamina packages v1")),
            &self.region,
        );
        let options = &self.packages;
        if let Some(store) = &options.code_store {
            c.code_store = store.clone();
        } else if let Some(blobs) = shared_blobs {
            c.code_store = CodeStoreLocation::Shared(blobs);
        }
        if let Some(dir) = &options.working_dir {
            c.working_dir = dir.clone();
        }
        c.encrypt = !options.plaintext;
        c.limits = options.limits;
        c.s3 = S3Config {
            region: self.region.clone(),
            ..options.s3.clone()
        };
        c
    }
}

pub struct Node {
    pub state: AppState,
    /// The first account's key when this start created it (a fresh data directory).
    pub created_root_key: Option<store::accounts::Credential>,
    pub dispatcher: Dispatcher,
    pub db: Db,
    stop: watch::Sender<bool>,
    tasks: Vec<JoinHandle<()>>,
    ledger: JoinHandle<()>,
    connections: ConnectionLimits,
    packages: Packages,
}

async fn stopped(mut rx: watch::Receiver<bool>) {
    let _ = rx.wait_for(|s| *s).await;
}

impl Node {
    pub async fn start(config: NodeConfig) -> anyhow::Result<Node> {
        std::fs::create_dir_all(&config.data_dir)
            .with_context(|| format!("creating {}", config.data_dir.display()))?;
        let db = match &config.database_url {
            Some(url) => Db::connect(url).await,
            None => Db::open_sqlite(&config.data_dir.join("lamina.db")).await,
        }
        .context("opening the database")?;

        // The ledger first: records a previous process spooled but never inserted go in
        // before anything reads the ledger (the async queue's recovery does).
        let ledger_config = LedgerConfig::new(config.data_dir.join("ledger"));
        let spool = Spool::open(&ledger_config).context("opening the ledger spool")?;
        let mut writer = LedgerWriter::new(spool.clone(), db.clone(), &ledger_config);
        loop {
            let drained = writer
                .drain_once()
                .await
                .context("replaying the ledger spool")?;
            if drained.caught_up {
                break;
            }
        }
        let (stop, stop_rx) = watch::channel(false);
        let ledger = tokio::spawn(writer.run(stopped(stop_rx.clone()), Duration::from_secs(10)));

        let key_path = config.server_key_path();
        let server_key = ServerKey::load_or_create(&key_path)
            .with_context(|| format!("reading the server key {}", key_path.display()))?;
        let shared_blobs = (db.backend() == Backend::Postgres).then(|| {
            SharedBlobsRef(Arc::new(crate::package_blobs::DatabaseBlobs(
                PackageBlobs::new(db.clone()),
            )))
        });
        let packages = Packages::open(config.packages_config(&server_key, shared_blobs))
            .context("opening the package store")?;
        let hop_key = server_key.derive("lamina node hop v1");
        let accounts = Accounts::new(db.clone(), server_key);
        accounts.check_server_key().await.with_context(|| {
            format!(
                "the server key {} does not open the secrets in this database: start the node with the key that sealed them (--server-key-file)",
                key_path.display()
            )
        })?;
        let created_root_key = bootstrap_account(&accounts, &config).await?;

        let catalog = Arc::new(
            Catalog::load(
                db.clone(),
                packages.working_dir().to_owned(),
                config.region.clone(),
            )
            .await
            .context("loading the catalog")?,
        );
        lay_out_packages(&packages, &catalog, &store::Layers::new(db.clone())).await?;
        let worker_config = config.worker.clone().unwrap_or_else(|| {
            let mut w = WorkerConfig::new(&config.data_dir);
            w.runtimes_dir = config.runtimes_dir.clone();
            w.models = config.models.clone();
            w
        });
        let worker = Worker::new(worker_config).context("starting the worker")?;
        let backend: Arc<dyn ExecutionBackend> = Arc::new(worker);
        let metrics = metrics_registry();
        let recorder = Recorder::new(spool.clone(), config.price);
        let scheduler = Scheduler::new(backend.clone(), config.limits, recorder, &metrics)
            .context("registering the scheduler's metrics")?;
        let queue = Queue::new(db.clone());
        let notify = Arc::new(Notify::new());

        restore(&catalog, &scheduler, &backend).await;

        let membership = Membership::new(db.clone());
        let node = Arc::new(NodeIdentity::new(
            crate::membership::node_id(config.node_id.as_deref(), &config.data_dir)?,
            uuid::Uuid::new_v4().to_string(),
            config
                .advertise_url
                .clone()
                .unwrap_or_else(|| config.public_url.clone()),
            membership.clone(),
        ));
        membership
            .join(&node.node_id, &node.incarnation, &node.advertise_url)
            .await
            .context("joining the cluster")?;
        node.set_ready(true);
        let cluster_limits = db.backend() == Backend::Postgres;
        if cluster_limits {
            // Every node of a PostgreSQL database is a member of one cluster, so account and
            // reserved concurrency bound the invocations of all nodes together.
            scheduler.share_limits_with_cluster(
                ConcurrencyLeases::new(db.clone()),
                node.incarnation.clone(),
            );
        }

        let dispatcher = Dispatcher::new(
            scheduler.clone(),
            catalog.clone(),
            queue.clone(),
            notify.clone(),
            Leaseholder {
                incarnation: node.incarnation.clone(),
                membership,
            },
            config.dispatch.clone(),
            &metrics,
        )
        .context("registering the dispatcher's metrics")?;
        dispatcher
            .recover()
            .await
            .context("recovering the async queue")?;

        let state = AppState::new(
            GatewayConfig {
                region: config.region.clone(),
                public_url: config.public_url.clone(),
                price: config.price,
                quality_window: config.quality_window,
                routing: config.routing,
            },
            Services {
                db: db.clone(),
                catalog,
                packages: packages.clone(),
                scheduler: scheduler.clone(),
                queue,
                spool,
                async_notify: notify,
                accounts,
                metrics,
                node,
                hop_key,
            },
        );
        let mut tasks = Vec::new();
        {
            let d = dispatcher.clone();
            let rx = stop_rx.clone();
            tasks.push(tokio::spawn(async move { d.run(stopped(rx)).await }));
        }
        {
            let s = scheduler.clone();
            let rx = stop_rx.clone();
            tasks.push(tokio::spawn(async move {
                s.run_housekeeping(stopped(rx)).await
            }));
        }
        {
            let s = state.clone();
            let rx = stop_rx.clone();
            tasks.push(tokio::spawn(async move {
                gateway::propagation::follow_catalog(s, stopped(rx)).await
            }));
        }
        if cluster_limits {
            let s = scheduler.clone();
            let rx = stop_rx.clone();
            tasks.push(tokio::spawn(async move {
                s.run_slot_settling(stopped(rx)).await
            }));
        }
        {
            let s = state.clone();
            let rx = stop_rx.clone();
            tasks.push(tokio::spawn(async move {
                crate::membership::keep_membership(s, stopped(rx)).await
            }));
        }
        {
            let db = db.clone();
            let retention = config.log_retention;
            let rx = stop_rx.clone();
            tasks.push(tokio::spawn(async move {
                expire_logs(db, retention, stopped(rx)).await
            }));
        }
        Ok(Node {
            packages,
            connections: config.connections,
            state,
            created_root_key,
            dispatcher,
            db,
            stop,
            tasks,
            ledger,
        })
    }

    pub fn router(&self) -> axum::Router {
        gateway::app(self.state.clone())
    }

    /// A future that resolves when the node is asked to stop.
    pub fn stopping(&self) -> impl Future<Output = ()> + Send + 'static {
        stopped(self.stop.subscribe())
    }

    /// Stops background work and flushes the ledger.
    pub async fn shutdown(self) {
        let _ = self.stop.send(true);
        // A task stuck on a database call (a connection the network dropped silently)
        // must not keep the node from leaving; the ledger below is still flushed whole.
        let deadline = tokio::time::Instant::now() + BACKGROUND_STOP_GRACE;
        for t in self.tasks {
            let abort = t.abort_handle();
            if tokio::time::timeout_at(deadline, t).await.is_err() {
                tracing::warn!("a background task did not stop in time; abandoning it");
                abort.abort();
            }
        }
        self.state.scheduler.clear_idle();
        let _ = self.ledger.await;
        self.db.close().await;
        if let Err(e) = self.packages.clear_working_copies() {
            tracing::warn!(error = %e, "removing the packages' working copies");
        }
    }

    /// Serves the node on `listener` (over TLS when `tls` is given) until `shutdown`
    /// resolves, then stops the node.
    pub async fn serve(
        self,
        listener: tokio::net::TcpListener,
        tls: Option<Arc<gateway::tls::ServerConfig>>,
        shutdown: impl Future<Output = ()> + Send + 'static,
    ) -> anyhow::Result<()> {
        // Load balancers stop sending new requests while in-flight ones drain.
        let node = self.state.node.clone();
        let shutdown = async move {
            shutdown.await;
            node.set_ready(false);
        };
        match tls {
            Some(config) => {
                gateway::tls::serve_tls(listener, self.router(), config, self.connections, shutdown)
                    .await
                    .context("serving HTTPS")?
            }
            None => gateway::serve(listener, self.router(), self.connections, shutdown)
                .await
                .context("serving HTTP")?,
        }
        self.shutdown().await;
        Ok(())
    }
}

/// The node's one Prometheus registry: the process's own figures here, the scheduler's
/// and dispatcher's counters added by them, the HTTP edge's metrics and state gauges by
/// the gateway. Each node has its own, so nodes started side by side in one process
/// (tests) never clash.
fn metrics_registry() -> prometheus::Registry {
    let registry = prometheus::Registry::new();
    #[cfg(target_os = "linux")]
    {
        let process = prometheus::process_collector::ProcessCollector::for_self();
        if let Err(e) = registry.register(Box::new(process)) {
            tracing::warn!(error = %e, "cannot export the process's metrics");
        }
    }
    registry
}

/// Brings the scheduler back to the catalog's settings after a restart, and loads each
/// function's compiled code so the first invoke does not pay for it.
async fn restore(
    catalog: &Arc<Catalog>,
    scheduler: &Scheduler,
    backend: &Arc<dyn ExecutionBackend>,
) {
    for entry in catalog.all_functions() {
        let key = FunctionKey::new(&entry.account_id, &entry.name);
        if let Err(e) = scheduler.set_reserved(&key, entry.reserved_concurrency) {
            tracing::warn!(function = %entry.name, error = ?e, "cannot restore reserved concurrency");
        }
        for record in entry.provisioned.values() {
            if let Some(version) = entry.version_for_read(&record.qualifier) {
                let pool = scheduler.pool_for(
                    &scheduler::PoolKey::of(&entry, version),
                    &catalog.spec(&entry, version),
                );
                scheduler.set_provisioned(pool, record.requested);
            }
        }
        for version in std::iter::once(&entry.latest).chain(entry.versions.values()) {
            let spec = catalog.spec(&entry, version);
            if let Err(e) = backend.prepare(&spec.code).await {
                tracing::warn!(function = %entry.name, version = %version.version, error = %e, "cannot load compiled code");
            }
        }
    }
}

/// Lays out the working copy of every package the catalog runs, from the code store,
/// before anything may start an environment: working copies do not outlive a process.
/// Packages an earlier version kept in plaintext are sealed first.
async fn lay_out_packages(
    packages: &Packages,
    catalog: &Catalog,
    layers: &store::Layers,
) -> anyhow::Result<()> {
    let adopted = packages
        .adopt_plaintext_packages()
        .await
        .context("sealing packages stored in plaintext")?;
    if adopted > 0 {
        tracing::info!(
            adopted,
            "sealed packages an earlier version stored in plaintext"
        );
    }
    let mut wanted = std::collections::BTreeSet::new();
    let mut layer_sets = std::collections::BTreeSet::new();
    for function in catalog.all_functions() {
        for version in std::iter::once(&function.latest).chain(function.versions.values()) {
            wanted.insert((
                version.config.code_sha256.clone(),
                version.config.handler.clone(),
            ));
            let layers: Vec<String> = version
                .config
                .layers
                .iter()
                .map(|l| l.code_sha256.clone())
                .collect();
            if !layers.is_empty() {
                layer_sets.insert(layers);
            }
        }
    }
    for (digest, handler) in &wanted {
        packages
            .materialise(digest, handler)
            .await
            .with_context(|| format!("laying out package {digest}"))?;
    }
    for layers in &layer_sets {
        packages
            .materialise_layers(layers)
            .await
            .with_context(|| format!("laying out layers {layers:?}"))?;
    }
    // Published layer versions keep their packages too, used or not.
    let mut referenced = layers
        .digests()
        .await
        .context("reading the packages of layer versions")?;
    referenced.extend(wanted.into_iter().map(|(digest, _)| digest));
    referenced.extend(layer_sets.into_iter().flatten());
    let removed = packages
        .remove_unreferenced(&referenced)
        .context("removing packages no function uses")?;
    if removed > 0 {
        tracing::info!(removed, "removed packages no function uses");
    }
    Ok(())
}

/// On a fresh data directory, creates the first account and its access key, and writes
/// the key to `<data-dir>/credentials` in the AWS shared-credentials format.
async fn bootstrap_account(
    accounts: &Accounts,
    config: &NodeConfig,
) -> anyhow::Result<Option<store::accounts::Credential>> {
    if !accounts.is_empty().await? {
        return Ok(None);
    }
    if let Err(e) = accounts
        .create_account(Some(&config.default_account), "root")
        .await
    {
        // Nodes of a new cluster started at once: one of them creates the account.
        if !accounts.is_empty().await? {
            return Ok(None);
        }
        return Err(e.into());
    }
    let given = config
        .root_key
        .as_ref()
        .map(|(id, secret)| (id.as_str(), secret.as_str()));
    let credential = accounts.create_key(&config.default_account, given).await?;
    let file = format!(
        "[default]\naws_access_key_id = {}\naws_secret_access_key = {}\n",
        credential.access_key_id, credential.secret
    );
    let path = config.data_dir.join("credentials");
    let _ = std::fs::remove_file(&path);
    store::accounts::write_private(&path, file.as_bytes())
        .with_context(|| format!("writing {}", path.display()))?;
    Ok(Some(credential))
}

/// Deletes function logs (and the predictions kept with them) and model feedback older
/// than `retention`, every minute until `shutdown`.
/// How long stopping waits for the background tasks (dispatcher, housekeeping, catalog
/// follower, heartbeat, log expiry) together.
const BACKGROUND_STOP_GRACE: Duration = Duration::from_secs(10);

async fn expire_logs(db: Db, retention: Duration, shutdown: impl Future<Output = ()>) {
    let mut interval = tokio::time::interval(Duration::from_secs(60).min(retention));
    interval.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    tokio::pin!(shutdown);
    loop {
        tokio::select! {
            _ = &mut shutdown => return,
            _ = interval.tick() => {}
        }
        let cutoff = std::time::SystemTime::now()
            .checked_sub(retention)
            .and_then(|t| t.duration_since(std::time::UNIX_EPOCH).ok())
            .map_or(0, |d| d.as_micros() as i64);
        match store::function_logs::expire(&db, cutoff).await {
            Ok(0) => {}
            Ok(n) => tracing::debug!(deleted = n, "expired function logs"),
            Err(e) => tracing::warn!(error = %e, "cannot expire function logs"),
        }
        match store::quality::expire_feedback(&db, cutoff).await {
            Ok(0) => {}
            Ok(n) => tracing::debug!(deleted = n, "expired model feedback"),
            Err(e) => tracing::warn!(error = %e, "cannot expire model feedback"),
        }
    }
}

/// The URL clients reach a node on.
pub fn public_url(listen: SocketAddr, tls: bool) -> String {
    let scheme = if tls { "https" } else { "http" };
    format!("{scheme}://{listen}")
}

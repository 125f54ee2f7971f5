//! Keeps this node in step with changes made through any node of its cluster: the
//! catalog's change feed is read every [`FOLLOW_INTERVAL`], each changed function's
//! packages are laid out before the mirror shows it, and what the change means for this
//! node's scheduler (retired versions, reserved and provisioned concurrency) and key
//! cache is applied. Changes this node made itself come back through the feed too, which
//! is harmless: applying an entry that is already in force changes nothing.

use std::collections::HashSet;
use std::sync::Arc;
use std::time::Duration;

use scheduler::{FunctionKey, PoolKey};
use store::{BeforePublish, CatchUp, FunctionChange, FunctionEntry, VersionRecord};

use crate::state::AppState;

/// How often the change feed is read: the p99 of a change reaching every node is this
/// plus one query and the packages to lay out.
pub const FOLLOW_INTERVAL: Duration = Duration::from_millis(100);

/// How long one catch-up may take, laying out the packages of the changed functions
/// included, before it counts as failed and starts over at the next tick.
const CATCH_UP_DEADLINE: Duration = Duration::from_secs(300);

/// How long changes stay in the feed; a node further behind reloads the whole catalog.
const FEED_RETENTION: Duration = Duration::from_secs(3600);

/// Reads the change feed until `shutdown` resolves.
pub async fn follow_catalog(state: AppState, shutdown: impl Future<Output = ()>) {
    let mut tick = tokio::time::interval(FOLLOW_INTERVAL);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let mut prune = tokio::time::interval(Duration::from_secs(600));
    let mut failing = false;
    tokio::pin!(shutdown);
    loop {
        tokio::select! {
            _ = &mut shutdown => return,
            _ = prune.tick() => {
                let before = store_now_ms() - FEED_RETENTION.as_millis() as i64;
                if let Err(e) = state.catalog.prune_changes(before).await {
                    tracing::debug!(error = %e, "cannot prune the catalog's change feed");
                }
                continue;
            }
            _ = tick.tick() => {}
        }
        let started = std::time::Instant::now();
        match store::within(CATCH_UP_DEADLINE, state.catalog.catch_up(&LayOut(&state))).await {
            Ok(caught) => {
                if started.elapsed() > SLOW_CATCH_UP {
                    tracing::warn!(
                        revision = caught.revision,
                        functions = caught.functions.len(),
                        took_ms = started.elapsed().as_millis() as u64,
                        "catching up with the catalog took long: changes made through other nodes reach this one late"
                    );
                }
                if failing {
                    tracing::info!(
                        revision = caught.revision,
                        "the catalog's change feed is readable again"
                    );
                    failing = false;
                }
                apply(&state, caught);
            }
            // While the database is away, the node serves the catalog it last read; the
            // feed picks up from the same revision when it is back.
            Err(e) if !failing => {
                tracing::warn!(error = %e, "cannot read the catalog's change feed; serving the last known catalog");
                failing = true;
            }
            Err(_) => {}
        }
    }
}

/// Over this, a catch-up is reported: changes through other nodes are due within 1 s.
const SLOW_CATCH_UP: Duration = Duration::from_millis(500);

fn store_now_ms() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as i64)
}

/// Lays out the packages of every version of a changed function before it is published.
struct LayOut<'a>(&'a AppState);

#[async_trait::async_trait]
impl BeforePublish for LayOut<'_> {
    async fn before_publish(&self, entry: &FunctionEntry) {
        for version in versions(entry) {
            let config = &version.config;
            let layers: Vec<String> = config
                .layers
                .iter()
                .map(|l| l.code_sha256.clone())
                .collect();
            let packages = &self.0.packages;
            let laid_out = match packages
                .materialise(&config.code_sha256, &config.handler)
                .await
            {
                Ok(_) => packages.materialise_layers(&layers).await.map(|_| ()),
                Err(e) => Err(e),
            };
            if let Err(e) = laid_out {
                // Invocations of this version fail as the platform's fault until a later
                // change or a restart lays it out; the others are unaffected.
                tracing::error!(
                    function = %entry.name,
                    version = %version.version,
                    error = %e,
                    "cannot lay out the package of a function changed through another node"
                );
            }
        }
    }
}

fn versions(entry: &FunctionEntry) -> impl Iterator<Item = &Arc<VersionRecord>> {
    std::iter::once(&entry.latest).chain(entry.versions.values())
}

fn apply(state: &AppState, caught: CatchUp) {
    if caught.reloaded_all {
        state.keys.forget_all();
    }
    for key_id in &caught.access_keys {
        state.keys.forget(key_id);
    }
    for change in caught.functions {
        apply_function(state, change);
    }
}

/// Brings the scheduler to the function's new entry.
fn apply_function(state: &AppState, change: FunctionChange) {
    let FunctionChange { before, after, .. } = change;
    let Some(after) = after else {
        if let Some(before) = before {
            state.retire_function(&before);
        }
        return;
    };
    let function = FunctionKey::new(&after.account_id, &after.name);
    let current: HashSet<PoolKey> = versions(&after).map(|v| PoolKey::of(&after, v)).collect();
    if let Some(before) = &before {
        for version in versions(before) {
            let key = PoolKey::of(before, version);
            if !current.contains(&key) {
                state.scheduler.retire(&key);
            }
        }
    }
    let reserved_before = before.as_ref().and_then(|b| b.reserved_concurrency);
    if (before.is_none() || reserved_before != after.reserved_concurrency)
        && let Err(e) = state
            .scheduler
            .set_reserved(&function, after.reserved_concurrency)
    {
        // Another node accepted it against its own view of the account; this node
        // keeps its previous setting rather than overcommit.
        tracing::warn!(function = %after.name, error = ?e, "cannot apply reserved concurrency set through another node");
    }
    let provisioned_before = |qualifier: &str| {
        let b = before.as_ref()?;
        let p = b.provisioned.get(qualifier)?;
        Some((
            p.requested,
            b.version_for_read(qualifier).map(|v| v.revision_id.clone()),
        ))
    };
    for record in after.provisioned.values() {
        let Some(version) = after.version_for_read(&record.qualifier) else {
            continue;
        };
        if provisioned_before(&record.qualifier)
            == Some((record.requested, Some(version.revision_id.clone())))
        {
            continue;
        }
        let pool = state.scheduler.pool_for(
            &PoolKey::of(&after, version),
            &state.catalog.spec(&after, version),
        );
        state.scheduler.set_provisioned(pool, record.requested);
    }
    if let Some(before) = &before {
        for (qualifier, _) in before.provisioned.iter() {
            if after.provisioned.contains_key(qualifier) {
                continue;
            }
            if let Some(version) = before.version_for_read(qualifier) {
                let key = PoolKey::of(before, version);
                if current.contains(&key) {
                    let pool = state
                        .scheduler
                        .pool_for(&key, &state.catalog.spec(before, version));
                    state.scheduler.set_provisioned(pool, 0);
                }
            }
        }
    }
}

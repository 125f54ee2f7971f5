//! The node's place in its cluster: its id (kept in the data directory, so a node that
//! comes back on its volume is the same node and replays its own ledger spool), and the
//! heartbeat that keeps it a live member until it leaves.

use std::path::Path;
use std::time::Duration;

use anyhow::Context as _;
use gateway::AppState;

/// How often a node reports that it is alive; a node silent for
/// `store::membership::DEAD_AFTER` is dead to the others.
pub const HEARTBEAT_INTERVAL: Duration = Duration::from_secs(1);

/// How long a heartbeat or a read of the members may wait for the database.
const DATABASE_DEADLINE: Duration = Duration::from_secs(5);

/// The node id given, else the one kept in `<data-dir>/node-id`, made up on first start.
pub fn node_id(given: Option<&str>, data_dir: &Path) -> anyhow::Result<String> {
    if let Some(id) = given {
        return Ok(id.to_owned());
    }
    let path = data_dir.join("node-id");
    match std::fs::read_to_string(&path) {
        Ok(kept) if !kept.trim().is_empty() => return Ok(kept.trim().to_owned()),
        Ok(_) => {}
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
        Err(e) => return Err(e).with_context(|| format!("reading {}", path.display())),
    }
    let id = format!("node-{}", &uuid::Uuid::new_v4().simple().to_string()[..12]);
    std::fs::write(&path, format!("{id}\n"))
        .with_context(|| format!("writing {}", path.display()))?;
    Ok(id)
}

/// Heartbeats until `shutdown` resolves, then leaves the cluster. On PostgreSQL, each
/// heartbeat also reads the live members, over which provisioned concurrency is spread
/// and synchronous invocations are routed. While the database is
/// unreachable the node keeps serving (and stays ready): invocations do not need it.
pub async fn keep_membership(state: AppState, shutdown: impl Future<Output = ()>) {
    let node = state.node.clone();
    let mut tick = tokio::time::interval(HEARTBEAT_INTERVAL);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let mut failing = false;
    // On PostgreSQL every node is a member of one cluster, over which provisioned
    // concurrency is spread.
    let spreads_provisioned = state.db.backend() == store::Backend::Postgres;
    tokio::pin!(shutdown);
    loop {
        tokio::select! {
            _ = &mut shutdown => break,
            _ = tick.tick() => {}
        }
        let load = gateway::membership::node_load(&state);
        let beat = node
            .membership
            .heartbeat(&node.node_id, &node.incarnation, &load);
        match store::within(DATABASE_DEADLINE, beat).await {
            Ok(true) => {
                if failing {
                    tracing::info!("heartbeats reach the database again");
                    failing = false;
                }
                node.set_ready(true);
                if spreads_provisioned {
                    follow_members(&state).await;
                }
            }
            Ok(false) => {
                tracing::error!(
                    node_id = %node.node_id,
                    "another process started as this node (same --node-id or data directory); this one takes no more traffic"
                );
                node.set_ready(false);
            }
            Err(e) => {
                if !failing {
                    tracing::warn!(error = %e, "cannot heartbeat; serving on, the others will count this node dead after 10 s");
                    failing = true;
                }
            }
        }
    }
    node.set_ready(false);
    if let Err(e) = node
        .membership
        .leave(&node.node_id, &node.incarnation)
        .await
    {
        tracing::warn!(error = %e, "cannot record leaving the cluster; the others will notice the silence");
    }
}

/// Reads the live members and hands them to the scheduler, which moves provisioned
/// concurrency to where it now belongs (the share of a dead node to the survivors), and
/// to the forwarder, which routes each function to its home nodes among them.
async fn follow_members(state: &AppState) {
    match store::within(DATABASE_DEADLINE, state.node.membership.live()).await {
        Ok(nodes) => {
            state.scheduler.set_placement(scheduler::Placement::new(
                state.node.node_id.clone(),
                nodes.iter().map(|n| n.node_id.clone()).collect(),
            ));
            state.forwarder.set_members(
                nodes
                    .into_iter()
                    .map(|n| scheduler::Peer {
                        node_id: n.node_id,
                        url: n.advertise_url,
                        in_flight: n.load.in_flight,
                    })
                    .collect(),
            );
        }
        Err(e) => tracing::debug!(error = %e, "reading the live members"),
    }
}

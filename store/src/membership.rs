//! The nodes of a cluster, as the database sees them: each node joins with its address,
//! heartbeats with its figures, and leaves when it stops. A node whose heartbeat is older
//! than the dead interval counts as gone for routing, leases and the async queue.

use std::collections::BTreeMap;
use std::time::Duration;

use sqlx::Row;

use crate::db::{Db, StoreError, now_ms};

/// How long a node may miss heartbeats before the others treat it as dead.
pub const DEAD_AFTER: Duration = Duration::from_secs(10);

/// What a node reports with each heartbeat.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct NodeLoad {
    pub environments: u64,
    pub in_flight: u64,
    pub models_loaded: u64,
    /// Ready provisioned environments per version (by its pool key).
    pub provisioned_ready: BTreeMap<String, u32>,
}

/// One node as the membership table holds it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NodeRecord {
    pub node_id: String,
    /// Which start of the node this is; async events carry it as their lease owner.
    pub incarnation: String,
    pub advertise_url: String,
    pub started_at_ms: i64,
    pub heartbeat_at_ms: i64,
    pub left_at_ms: Option<i64>,
    pub load: NodeLoad,
}

impl NodeRecord {
    /// Whether the node counts as a member at `now_ms`.
    pub fn is_live(&self, now_ms: i64) -> bool {
        self.left_at_ms.is_none() && now_ms - self.heartbeat_at_ms < DEAD_AFTER.as_millis() as i64
    }
}

#[derive(Debug, Clone)]
pub struct Membership {
    db: Db,
}

impl Membership {
    pub fn new(db: Db) -> Self {
        Membership { db }
    }

    /// Enters the node (again, after a restart on the same identity) as live.
    pub async fn join(
        &self,
        node_id: &str,
        incarnation: &str,
        advertise_url: &str,
    ) -> Result<(), StoreError> {
        let now = now_ms();
        sqlx::query(
            "INSERT INTO cluster_nodes (node_id, incarnation, advertise_url, started_at_ms, \
             heartbeat_at_ms, left_at_ms, environments, in_flight, models_loaded) \
             VALUES ($1, $4, $2, $3, $3, NULL, 0, 0, 0) \
             ON CONFLICT (node_id) DO UPDATE SET incarnation = excluded.incarnation, \
             advertise_url = excluded.advertise_url, \
             started_at_ms = excluded.started_at_ms, heartbeat_at_ms = excluded.heartbeat_at_ms, \
             left_at_ms = NULL, environments = 0, in_flight = 0, models_loaded = 0, \
             provisioned_ready = '{}'",
        )
        .bind(node_id)
        .bind(advertise_url)
        .bind(now)
        .bind(incarnation)
        .execute(self.db.writer())
        .await?;
        Ok(())
    }

    /// Records that the node is alive, with its figures.
    /// False when a newer start of the same node has taken the identity over.
    pub async fn heartbeat(
        &self,
        node_id: &str,
        incarnation: &str,
        load: &NodeLoad,
    ) -> Result<bool, StoreError> {
        let provisioned = serde_json::to_string(&load.provisioned_ready)
            .map_err(|e| StoreError::Query(e.to_string()))?;
        let done = sqlx::query(
            "UPDATE cluster_nodes SET heartbeat_at_ms = $1, left_at_ms = NULL, \
             environments = $2, in_flight = $3, models_loaded = $4, provisioned_ready = $7 \
             WHERE node_id = $5 AND incarnation = $6",
        )
        .bind(now_ms())
        .bind(load.environments as i64)
        .bind(load.in_flight as i64)
        .bind(load.models_loaded as i64)
        .bind(node_id)
        .bind(incarnation)
        .bind(provisioned)
        .execute(self.db.writer())
        .await?;
        Ok(done.rows_affected() > 0)
    }

    /// Marks the node as gone at once, so the others need not wait for its heartbeat to
    /// age.
    pub async fn leave(&self, node_id: &str, incarnation: &str) -> Result<(), StoreError> {
        sqlx::query(
            "UPDATE cluster_nodes SET left_at_ms = $1 WHERE node_id = $2 AND incarnation = $3",
        )
        .bind(now_ms())
        .bind(node_id)
        .bind(incarnation)
        .execute(self.db.writer())
        .await?;
        Ok(())
    }

    /// The live nodes, by id.
    pub async fn live(&self) -> Result<Vec<NodeRecord>, StoreError> {
        let now = now_ms();
        Ok(self
            .all()
            .await?
            .into_iter()
            .filter(|n| n.is_live(now))
            .collect())
    }

    /// Every node that ever joined, by id.
    pub async fn all(&self) -> Result<Vec<NodeRecord>, StoreError> {
        let rows = sqlx::query(
            "SELECT node_id, incarnation, advertise_url, started_at_ms, heartbeat_at_ms, left_at_ms, \
             environments, in_flight, models_loaded, provisioned_ready FROM cluster_nodes \
             ORDER BY node_id",
        )
        .fetch_all(self.db.pool())
        .await?;
        rows.iter()
            .map(|r| {
                let count = |column: &str| -> Result<u64, sqlx::Error> {
                    Ok(r.try_get::<i64, _>(column)?.max(0) as u64)
                };
                Ok(NodeRecord {
                    node_id: r.try_get("node_id")?,
                    incarnation: r.try_get("incarnation")?,
                    advertise_url: r.try_get("advertise_url")?,
                    started_at_ms: r.try_get("started_at_ms")?,
                    heartbeat_at_ms: r.try_get("heartbeat_at_ms")?,
                    left_at_ms: r.try_get("left_at_ms")?,
                    load: NodeLoad {
                        environments: count("environments")?,
                        in_flight: count("in_flight")?,
                        models_loaded: count("models_loaded")?,
                        // A report this node cannot read counts as none ready.
                        provisioned_ready: serde_json::from_str(
                            &r.try_get::<String, _>("provisioned_ready")?,
                        )
                        .unwrap_or_default(),
                    },
                })
            })
            .collect::<Result<Vec<_>, sqlx::Error>>()
            .map_err(Into::into)
    }
}

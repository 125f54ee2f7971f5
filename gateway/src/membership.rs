//! This node as a member of its cluster: who it is, whether it takes traffic, and the
//! live nodes as the database lists them (`/lamina/ready`, `/lamina/status`, `lamina
//! nodes`). The heartbeat that keeps the membership current is the node's; this module
//! only reads it.

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicBool, Ordering};

use axum::Json;
use axum::extract::State;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use serde_json::{Value, json};
use store::{Membership, NodeLoad, NodeRecord};

use crate::error::ApiError;
use crate::state::AppState;

/// Who this node is in the cluster.
#[derive(Debug)]
pub struct NodeIdentity {
    pub node_id: String,
    /// Changes with every start; the async queue's leases carry it.
    pub incarnation: String,
    /// Where other nodes and operators reach this node.
    pub advertise_url: String,
    pub membership: Membership,
    /// Joined, heartbeating, and not draining.
    ready: AtomicBool,
}

impl NodeIdentity {
    pub fn new(
        node_id: String,
        incarnation: String,
        advertise_url: String,
        membership: Membership,
    ) -> Self {
        NodeIdentity {
            node_id,
            incarnation,
            advertise_url,
            membership,
            ready: AtomicBool::new(false),
        }
    }

    pub fn set_ready(&self, ready: bool) {
        self.ready.store(ready, Ordering::Release);
    }

    pub fn is_ready(&self) -> bool {
        self.ready.load(Ordering::Acquire)
    }
}

/// What this node reports with its heartbeat: its environments, the invocations running
/// in them, and the models it holds.
pub fn node_load(state: &AppState) -> NodeLoad {
    let in_flight = state
        .scheduler
        .snapshot()
        .iter()
        .map(|p| u64::from(p.counts.busy))
        .sum();
    NodeLoad {
        environments: state.scheduler.environments() as u64,
        in_flight,
        models_loaded: state
            .scheduler
            .backend()
            .model_cache()
            .map_or(0, |m| m.models),
        provisioned_ready: state
            .scheduler
            .provisioned_ready_by_key()
            .into_iter()
            .collect(),
    }
}

/// `GET /lamina/ready`, unsigned, for load balancers and readiness probes: 200 while the
/// node is a live member of its cluster and not draining, 503 otherwise.
pub async fn ready(State(state): State<AppState>) -> Response {
    let node = &state.node;
    let status = if node.is_ready() {
        StatusCode::OK
    } else {
        StatusCode::SERVICE_UNAVAILABLE
    };
    (
        status,
        Json(json!({ "Ready": node.is_ready(), "NodeId": node.node_id })),
    )
        .into_response()
}

/// Ready provisioned environments per version (by pool key) on the other live nodes, as
/// their last heartbeats reported them; none on a node that is its own cluster.
pub async fn provisioned_ready_elsewhere(
    state: &AppState,
) -> Result<BTreeMap<String, u32>, ApiError> {
    let mut ready = BTreeMap::new();
    if state.db.backend() != store::Backend::Postgres {
        return Ok(ready);
    }
    for node in live_records(state).await? {
        if node.node_id == state.node.node_id {
            continue;
        }
        for (key, n) in node.load.provisioned_ready {
            *ready.entry(key).or_insert(0u32) += n;
        }
    }
    Ok(ready)
}

/// The live nodes, as `/lamina/status` and `lamina nodes` show them.
pub async fn live_nodes(state: &AppState) -> Result<Value, ApiError> {
    Ok(Value::Array(
        live_records(state)
            .await?
            .iter()
            .map(|n| node_json(n, &state.node))
            .collect(),
    ))
}

async fn live_records(state: &AppState) -> Result<Vec<NodeRecord>, ApiError> {
    state
        .node
        .membership
        .live()
        .await
        .map_err(ApiError::service)
}

fn node_json(n: &NodeRecord, me: &NodeIdentity) -> Value {
    json!({
        "NodeId": n.node_id,
        "AdvertiseUrl": n.advertise_url,
        "StartedAt": iso(n.started_at_ms),
        "LastHeartbeat": iso(n.heartbeat_at_ms),
        "Environments": n.load.environments,
        "InFlight": n.load.in_flight,
        "ModelsLoaded": n.load.models_loaded,
        "Self": n.node_id == me.node_id,
    })
}

fn iso(ms: i64) -> String {
    chrono::DateTime::from_timestamp_millis(ms)
        .map(|t| t.format("%Y-%m-%dT%H:%M:%S%.3fZ").to_string())
        .unwrap_or_default()
}

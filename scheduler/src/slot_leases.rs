//! The node's slots of the cluster's concurrency limits, taken from the database when
//! the core is short of them and given back when they go unused. The decisions (how many
//! to ask for, what to give back, what to do without the database) are the core's and
//! [`crate::slots`]'s; this is the IO around them.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use store::ConcurrencyLeases;

use crate::slots::{Granted, Scope};

/// How long an invocation waits for the database to answer a request for slots before
/// it goes on with the node's own share.
pub const ASK_TIMEOUT: Duration = Duration::from_secs(1);

/// After the database failed to answer, how long requests go straight to the node's own
/// share instead of waiting on it again.
pub const UNREACHABLE_BACKOFF: Duration = Duration::from_secs(2);

/// How often unused slots go back.
pub const SETTLE_INTERVAL: Duration = Duration::from_secs(1);

/// The database side of the node's slots.
pub struct SlotLeases {
    leases: ConcurrencyLeases,
    incarnation: String,
    /// One request or settling at a time per scope, so what the database records for the
    /// node is always the latest decision.
    gates: Mutex<HashMap<Scope, Arc<tokio::sync::Mutex<()>>>>,
    unreachable_since: Mutex<Option<Instant>>,
}

/// What asking the database for slots came to.
pub enum Asked {
    Granted(Granted),
    /// The database did not answer (or the node gave up on it for a while).
    Unreachable,
}

impl SlotLeases {
    pub fn new(leases: ConcurrencyLeases, incarnation: String) -> Self {
        SlotLeases {
            leases,
            incarnation,
            gates: Mutex::new(HashMap::new()),
            unreachable_since: Mutex::new(None),
        }
    }

    pub fn gate(&self, scope: &Scope) -> Arc<tokio::sync::Mutex<()>> {
        crate::scheduler::lock(&self.gates)
            .entry(scope.clone())
            .or_default()
            .clone()
    }

    fn backing_off(&self) -> bool {
        crate::scheduler::lock(&self.unreachable_since)
            .is_some_and(|since| since.elapsed() < UNREACHABLE_BACKOFF)
    }

    fn reached(&self, ok: bool) {
        let mut since = crate::scheduler::lock(&self.unreachable_since);
        match (ok, since.is_some()) {
            (true, true) => {
                tracing::info!("concurrency slots are taken from the database again");
                *since = None;
            }
            (false, _) => {
                if since.is_none() {
                    tracing::warn!(
                        "the database does not answer for concurrency slots; this node admits within its own share until it does"
                    );
                }
                *since = Some(Instant::now());
            }
            (true, false) => {}
        }
    }

    /// Asks for `want` slots of `scope` in all, `busy` of them in use, within `limit`.
    pub async fn ask(&self, scope: &Scope, want: u32, busy: u32, limit: u32) -> Asked {
        if self.backing_off() {
            return Asked::Unreachable;
        }
        let key = scope.key();
        let asked = self
            .leases
            .acquire(&key, &self.incarnation, want, busy, limit);
        match tokio::time::timeout(ASK_TIMEOUT, asked).await {
            Ok(Ok(grant)) => {
                self.reached(true);
                Asked::Granted(Granted {
                    held: grant.held,
                    free: grant.free,
                    live_nodes: grant.live_nodes,
                })
            }
            Ok(Err(e)) => {
                tracing::debug!(error = %e, scope = %key, "asking for concurrency slots");
                self.reached(false);
                Asked::Unreachable
            }
            Err(_) => {
                self.reached(false);
                Asked::Unreachable
            }
        }
    }

    /// Records that the node holds `slots` of `scope`; false when the database did not
    /// take it (the next settling tries again).
    pub async fn record(&self, scope: &Scope, slots: u32) -> bool {
        let key = scope.key();
        match self.leases.hold(&key, &self.incarnation, slots).await {
            Ok(()) => true,
            Err(e) => {
                tracing::debug!(error = %e, scope = %key, "giving back concurrency slots");
                false
            }
        }
    }

    /// Gives back every slot (the node is stopping), and forgets the leases of nodes that
    /// are gone.
    pub async fn release_all(&self) {
        if let Err(e) = self.leases.release_all(&self.incarnation).await {
            tracing::warn!(error = %e, "cannot give back this node's concurrency slots; they lapse when its membership does");
        }
    }

    /// Deletes the leases of incarnations that are not live.
    pub async fn sweep_dead(&self) {
        match self.leases.sweep_dead().await {
            Ok(0) => {}
            Ok(n) => tracing::info!(
                leases = n,
                "freed the concurrency slots of nodes that are gone"
            ),
            Err(e) => {
                tracing::debug!(error = %e, "sweeping the concurrency slots of nodes that are gone")
            }
        }
    }
}

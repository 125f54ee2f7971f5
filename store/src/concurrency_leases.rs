//! Concurrency slots of the cluster's limits, as the database keeps them: how many slots
//! of each scope (a function's reserved concurrency, an account's unreserved
//! concurrency) every live incarnation of a node holds.
//!
//! A node asks for slots only when those it holds are all busy, and gives back what it
//! has not used for a while, so invocations themselves never wait on the database.
//! Taking slots locks the scope's row first: two nodes asking at once are served one
//! after the other, and the second sees what the first took. Slots of an incarnation
//! that is not live (see [`crate::membership::DEAD_AFTER`]) count as free at once and are
//! deleted by [`ConcurrencyLeases::sweep_dead`].

use sqlx::Row;

use crate::db::{Db, StoreError, now_ms};
use crate::membership::DEAD_AFTER;

/// What a node holds of a scope after asking for slots.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SlotGrant {
    /// The slots this incarnation now holds.
    pub held: u32,
    /// Slots of the limit no live node holds after this grant.
    pub free: u32,
    /// Live nodes of the cluster, this one included.
    pub live_nodes: u32,
}

#[derive(Debug, Clone)]
pub struct ConcurrencyLeases {
    db: Db,
}

impl ConcurrencyLeases {
    pub fn new(db: Db) -> Self {
        ConcurrencyLeases { db }
    }

    /// Takes slots of `scope` for `incarnation` up to `want` in all, within `limit` over
    /// every live node. Never gives back slots the node still uses: it holds at least
    /// `busy` afterwards, even when the limit has been lowered below what runs.
    pub async fn acquire(
        &self,
        scope: &str,
        incarnation: &str,
        want: u32,
        busy: u32,
        limit: u32,
    ) -> Result<SlotGrant, StoreError> {
        let now = now_ms();
        let live_since = now - DEAD_AFTER.as_millis() as i64;
        let mut tx = self.db.begin_write().await?;
        // The upsert holds the scope's row lock until commit: concurrent takers queue here.
        sqlx::query(
            "INSERT INTO concurrency_scopes (scope, grants) VALUES ($1, 1) \
             ON CONFLICT (scope) DO UPDATE SET grants = concurrency_scopes.grants + 1",
        )
        .bind(scope)
        .execute(&mut *tx)
        .await?;
        let row = sqlx::query(
            "SELECT \
               CAST((SELECT COALESCE(SUM(l.slots), 0) FROM concurrency_leases l \
                  JOIN cluster_nodes n ON n.incarnation = l.incarnation \
                  WHERE l.scope = $1 AND l.incarnation <> $2 \
                    AND n.left_at_ms IS NULL AND n.heartbeat_at_ms > $3) AS BIGINT) AS others, \
               (SELECT COUNT(*) FROM cluster_nodes \
                  WHERE left_at_ms IS NULL AND heartbeat_at_ms > $3) AS live_nodes",
        )
        .bind(scope)
        .bind(incarnation)
        .bind(live_since)
        .fetch_one(&mut *tx)
        .await?;
        let others = count(row.try_get::<i64, _>("others")?);
        let live_nodes = count(row.try_get::<i64, _>("live_nodes")?).max(1);
        let available = limit.saturating_sub(others);
        let held = want.min(available).max(busy);
        sqlx::query(
            "INSERT INTO concurrency_leases (scope, incarnation, slots, updated_at_ms) \
             VALUES ($1, $2, $3, $4) \
             ON CONFLICT (scope, incarnation) DO UPDATE SET slots = excluded.slots, \
             updated_at_ms = excluded.updated_at_ms",
        )
        .bind(scope)
        .bind(incarnation)
        .bind(i64::from(held))
        .bind(now)
        .execute(&mut *tx)
        .await?;
        tx.commit().await?;
        Ok(SlotGrant {
            held,
            free: limit.saturating_sub(others.saturating_add(held)),
            live_nodes,
        })
    }

    /// Records that `incarnation` now holds only `slots` of `scope` (giving the rest back);
    /// none deletes the lease.
    pub async fn hold(&self, scope: &str, incarnation: &str, slots: u32) -> Result<(), StoreError> {
        if slots == 0 {
            sqlx::query("DELETE FROM concurrency_leases WHERE scope = $1 AND incarnation = $2")
                .bind(scope)
                .bind(incarnation)
                .execute(self.db.writer())
                .await?;
        } else {
            sqlx::query(
                "UPDATE concurrency_leases SET slots = $3, updated_at_ms = $4 \
                 WHERE scope = $1 AND incarnation = $2",
            )
            .bind(scope)
            .bind(incarnation)
            .bind(i64::from(slots))
            .bind(now_ms())
            .execute(self.db.writer())
            .await?;
        }
        Ok(())
    }

    /// Gives back every slot `incarnation` holds (when the node stops).
    pub async fn release_all(&self, incarnation: &str) -> Result<(), StoreError> {
        sqlx::query("DELETE FROM concurrency_leases WHERE incarnation = $1")
            .bind(incarnation)
            .execute(self.db.writer())
            .await?;
        Ok(())
    }

    /// Deletes the leases of incarnations that are not live, then the rows of limits
    /// nobody holds a slot of (a deleted function's, an idle account's); returns how many
    /// leases went. A limit's row only anchors the lock its takers queue on: the next
    /// taker writes it again, so deleting one that a taker is about to use is harmless.
    pub async fn sweep_dead(&self) -> Result<u64, StoreError> {
        let live_since = now_ms() - DEAD_AFTER.as_millis() as i64;
        let done = sqlx::query(
            "DELETE FROM concurrency_leases WHERE incarnation NOT IN \
             (SELECT incarnation FROM cluster_nodes \
              WHERE left_at_ms IS NULL AND heartbeat_at_ms > $1)",
        )
        .bind(live_since)
        .execute(self.db.writer())
        .await?;
        sqlx::query(
            "DELETE FROM concurrency_scopes WHERE scope NOT IN \
             (SELECT scope FROM concurrency_leases)",
        )
        .execute(self.db.writer())
        .await?;
        Ok(done.rows_affected())
    }
}

fn count(n: i64) -> u32 {
    u32::try_from(n.max(0)).unwrap_or(u32::MAX)
}

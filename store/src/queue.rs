//! The durable queue of asynchronous (`Event`) invocations.
//!
//! What is persisted and why: an event row is inserted before the caller gets 202, so an
//! accepted event survives any crash. A dispatcher leases due rows (`state = running`,
//! `lease_owner` its node's incarnation; on PostgreSQL with `FOR UPDATE SKIP LOCKED`, so
//! nodes draining one queue never lease the same row), runs them, and in one transaction
//! either deletes the row or puts it back with its next attempt time, together with any
//! destination event it produces, so a completion and its follow-up can never be half
//! applied. Settling checks the lease is still its own. A lease whose owner is no longer
//! a live incarnation is taken over by another dispatcher and settled against the ledger
//! ([`Queue::orphaned`], [`Queue::take_over`]).

use sqlx::Row;

use std::collections::HashSet;

use crate::db::{Backend, Db, StoreError, now_ms};

/// A running event whose lease owner is not live, as [`Queue::orphaned`] finds it.
#[derive(Debug, Clone, PartialEq)]
pub struct Orphan {
    pub event_id: String,
    /// `None` for a lease written before leases carried their owner.
    pub lease_owner: Option<String>,
}

/// One queued asynchronous invocation.
#[derive(Debug, Clone, PartialEq)]
pub struct AsyncEvent {
    pub event_id: String,
    /// Stays the same on every attempt, as on Lambda.
    pub request_id: String,
    pub account_id: String,
    pub caller_account_id: String,
    pub function_name: String,
    pub qualifier: String,
    pub payload: Vec<u8>,
    pub received_at_ms: i64,
    /// Attempts that ran the function to an end (throttles do not count).
    pub attempts: u32,
    pub not_before_ms: i64,
}

impl AsyncEvent {
    pub fn new(
        request_id: String,
        account_id: &str,
        caller_account_id: &str,
        function_name: &str,
        qualifier: &str,
        payload: Vec<u8>,
    ) -> Self {
        let now = now_ms();
        AsyncEvent {
            event_id: uuid::Uuid::new_v4().to_string(),
            request_id,
            account_id: account_id.to_owned(),
            caller_account_id: caller_account_id.to_owned(),
            function_name: function_name.to_owned(),
            qualifier: qualifier.to_owned(),
            payload,
            received_at_ms: now,
            attempts: 0,
            not_before_ms: now,
        }
    }
}

/// How an event leaves the queue, or when it comes back.
#[derive(Debug, Clone, PartialEq)]
pub enum Settlement {
    /// Done (successfully or for good); `follow_up` is a destination event to enqueue.
    Done { follow_up: Option<AsyncEvent> },
    /// Try again at `not_before_ms`.
    Retry {
        attempts: u32,
        not_before_ms: i64,
        last_error: Option<String>,
    },
}

#[derive(Debug, Clone)]
pub struct Queue {
    db: Db,
}

/// The columns of an [`AsyncEvent`], as a literal so queries stay static strings.
macro_rules! columns {
    () => {
        "event_id, request_id, account_id, caller_account_id, function_name, qualifier, \
         payload, received_at_ms, attempts, not_before_ms"
    };
}

fn from_row(row: &sqlx::any::AnyRow) -> Result<AsyncEvent, sqlx::Error> {
    let attempts: i64 = row.try_get("attempts")?;
    Ok(AsyncEvent {
        event_id: row.try_get("event_id")?,
        request_id: row.try_get("request_id")?,
        account_id: row.try_get("account_id")?,
        caller_account_id: row.try_get("caller_account_id")?,
        function_name: row.try_get("function_name")?,
        qualifier: row.try_get("qualifier")?,
        payload: row.try_get("payload")?,
        received_at_ms: row.try_get("received_at_ms")?,
        attempts: attempts as u32,
        not_before_ms: row.try_get("not_before_ms")?,
    })
}

async fn insert(conn: &mut sqlx::AnyConnection, e: &AsyncEvent) -> Result<(), sqlx::Error> {
    sqlx::query(concat!(
        "INSERT INTO async_events (",
        columns!(),
        ", state) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, 'queued')"
    ))
    .bind(e.event_id.as_str())
    .bind(e.request_id.as_str())
    .bind(e.account_id.as_str())
    .bind(e.caller_account_id.as_str())
    .bind(e.function_name.as_str())
    .bind(e.qualifier.as_str())
    .bind(e.payload.clone())
    .bind(e.received_at_ms)
    .bind(e.attempts as i64)
    .bind(e.not_before_ms)
    .execute(conn)
    .await?;
    Ok(())
}

impl Queue {
    pub fn new(db: Db) -> Self {
        Queue { db }
    }

    /// Stores an accepted event; when this returns, the event is durable.
    pub async fn enqueue(&self, event: AsyncEvent) -> Result<(), StoreError> {
        self.db
            .write(|db| async move {
                let mut conn = db.writer().acquire().await?;
                insert(&mut conn, &event).await?;
                Ok(())
            })
            .await
    }

    /// Leases up to `limit` due events for `owner`.
    pub async fn lease_due(&self, owner: &str, limit: u32) -> Result<Vec<AsyncEvent>, StoreError> {
        let now = now_ms();
        // The outer `state` check makes a row another dispatcher leased first drop out
        // after the lock wait; on PostgreSQL, SKIP LOCKED makes it not wait at all.
        macro_rules! lease {
            ($lock:literal) => {
                concat!(
                    "UPDATE async_events SET state = 'running', lease_owner = $1 \
                     WHERE state = 'queued' AND event_id IN (SELECT event_id FROM async_events \
                       WHERE state = 'queued' AND not_before_ms <= $2 \
                       ORDER BY not_before_ms LIMIT $3",
                    $lock,
                    ") RETURNING ",
                    columns!()
                )
            };
        }
        let sql = match self.db.backend() {
            Backend::Postgres => lease!(" FOR UPDATE SKIP LOCKED"),
            Backend::Sqlite => lease!(""),
        };
        let owner = owner.to_owned();
        let rows = self
            .db
            .write(|db| async move {
                let rows = sqlx::query(sql)
                    .bind(owner)
                    .bind(now)
                    .bind(limit as i64)
                    .fetch_all(db.writer())
                    .await?;
                Ok(rows)
            })
            .await?;
        let mut events = rows.iter().map(from_row).collect::<Result<Vec<_>, _>>()?;
        events.sort_by_key(|e| e.not_before_ms);
        Ok(events)
    }

    /// Settles an event `owner` leased, atomically with its follow-up. False (and nothing
    /// written) when the lease is no longer `owner`'s: another node took the event over
    /// after this one stopped heartbeating.
    pub async fn settle(
        &self,
        event_id: &str,
        owner: &str,
        settlement: &Settlement,
    ) -> Result<bool, StoreError> {
        let (event_id, owner, settlement) =
            (event_id.to_owned(), owner.to_owned(), settlement.clone());
        self.db
            .write(|db| settle(db, event_id, owner, settlement))
            .await
    }

    /// Running events whose lease owner is not among `live_owners`: left by a process
    /// that was killed, or by a node that stopped heartbeating. Only ids and owners are
    /// read: every node asks every few seconds, and the payloads come with `take_over`.
    pub async fn orphaned(&self, live_owners: &HashSet<String>) -> Result<Vec<Orphan>, StoreError> {
        let rows =
            sqlx::query("SELECT event_id, lease_owner FROM async_events WHERE state = 'running'")
                .fetch_all(self.db.pool())
                .await?;
        let mut out = Vec::new();
        for row in &rows {
            let lease_owner: Option<String> = row.try_get("lease_owner")?;
            if lease_owner
                .as_ref()
                .is_some_and(|o| live_owners.contains(o))
            {
                continue;
            }
            out.push(Orphan {
                event_id: row.try_get("event_id")?,
                lease_owner,
            });
        }
        Ok(out)
    }

    /// Moves an orphaned event's lease to `owner` and returns the event; `None` when
    /// another dispatcher took it over (or settled it) first.
    pub async fn take_over(
        &self,
        orphan: &Orphan,
        owner: &str,
    ) -> Result<Option<AsyncEvent>, StoreError> {
        let row = sqlx::query(concat!(
            "UPDATE async_events SET lease_owner = $1 WHERE event_id = $2 AND state = 'running' \
             AND (lease_owner = $3 OR (lease_owner IS NULL AND $3 IS NULL)) RETURNING ",
            columns!()
        ))
        .bind(owner)
        .bind(orphan.event_id.as_str())
        .bind(orphan.lease_owner.as_deref())
        .fetch_optional(self.db.writer())
        .await?;
        Ok(row.as_ref().map(from_row).transpose()?)
    }

    /// Whether the ledger holds a record of this attempt (it ran to an end).
    pub async fn attempt_outcome(
        &self,
        request_id: &str,
        attempt: u32,
    ) -> Result<Option<(String, Option<String>)>, StoreError> {
        let row = sqlx::query(
            "SELECT outcome, error_type FROM invocations WHERE request_id = $1 AND attempt = $2",
        )
        .bind(request_id)
        .bind(attempt as i64)
        .fetch_optional(self.db.pool())
        .await?;
        Ok(match row {
            Some(r) => Some((r.try_get("outcome")?, r.try_get("error_type")?)),
            None => None,
        })
    }

    /// Queue depth and the receive time of the oldest waiting event.
    pub async fn depth(&self) -> Result<(u64, Option<i64>), StoreError> {
        let row =
            sqlx::query("SELECT COUNT(*) AS n, MIN(received_at_ms) AS oldest FROM async_events")
                .fetch_one(self.db.pool())
                .await?;
        let n: i64 = row.try_get("n")?;
        let oldest: Option<i64> = row.try_get("oldest")?;
        Ok((n as u64, oldest))
    }
}

/// [`Queue::settle`], as a future that owns what it needs.
async fn settle(
    db: Db,
    event_id: String,
    owner: String,
    settlement: Settlement,
) -> Result<bool, StoreError> {
    let (event_id, owner) = (event_id.as_str(), owner.as_str());
    let mut tx = db.writer().begin().await?;
    let done = match &settlement {
        Settlement::Done { follow_up } => {
            let done =
                sqlx::query("DELETE FROM async_events WHERE event_id = $1 AND lease_owner = $2")
                    .bind(event_id)
                    .bind(owner)
                    .execute(&mut *tx)
                    .await?;
            if let (1, Some(f)) = (done.rows_affected(), follow_up) {
                insert(&mut tx, f).await?;
            }
            done
        }
        Settlement::Retry {
            attempts,
            not_before_ms,
            last_error,
        } => {
            sqlx::query(
                "UPDATE async_events SET state = 'queued', lease_owner = NULL, \
                 attempts = $1, not_before_ms = $2, last_error = $3 \
                 WHERE event_id = $4 AND lease_owner = $5",
            )
            .bind(*attempts as i64)
            .bind(*not_before_ms)
            .bind(last_error.clone())
            .bind(event_id)
            .bind(owner)
            .execute(&mut *tx)
            .await?
        }
    };
    tx.commit().await?;
    Ok(done.rows_affected() == 1)
}

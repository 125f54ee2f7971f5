//! The durable queue of asynchronous (`Event`) invocations.
//!
//! What is persisted and why: an event row is inserted before the caller gets 202, so an
//! accepted event survives any crash. A dispatcher leases due rows (`state = running`),
//! runs them, and in one transaction either deletes the row or puts it back with its next
//! attempt time, together with any destination event it produces, so a completion and
//! its follow-up can never be half applied. A lease left by a killed process is settled
//! at start-up against the ledger (see [`Queue::recover`]).

use sqlx::Row;

use crate::db::{Db, StoreError, now_ms};

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
    pub async fn enqueue(&self, event: &AsyncEvent) -> Result<(), StoreError> {
        let mut conn = self.db.pool().acquire().await?;
        insert(&mut conn, event).await?;
        Ok(())
    }

    /// Leases up to `limit` due events for `owner`.
    pub async fn lease_due(&self, owner: &str, limit: u32) -> Result<Vec<AsyncEvent>, StoreError> {
        let now = now_ms();
        let rows = sqlx::query(concat!(
            "UPDATE async_events SET state = 'running', lease_owner = $1 \
             WHERE event_id IN (SELECT event_id FROM async_events \
               WHERE state = 'queued' AND not_before_ms <= $2 \
               ORDER BY not_before_ms LIMIT $3) \
             RETURNING ",
            columns!()
        ))
        .bind(owner)
        .bind(now)
        .bind(limit as i64)
        .fetch_all(self.db.pool())
        .await?;
        let mut events = rows.iter().map(from_row).collect::<Result<Vec<_>, _>>()?;
        events.sort_by_key(|e| e.not_before_ms);
        Ok(events)
    }

    /// Settles a leased event, atomically with its follow-up.
    pub async fn settle(&self, event_id: &str, settlement: &Settlement) -> Result<(), StoreError> {
        let mut tx = self.db.pool().begin().await?;
        match settlement {
            Settlement::Done { follow_up } => {
                sqlx::query("DELETE FROM async_events WHERE event_id = $1")
                    .bind(event_id)
                    .execute(&mut *tx)
                    .await?;
                if let Some(f) = follow_up {
                    insert(&mut tx, f).await?;
                }
            }
            Settlement::Retry {
                attempts,
                not_before_ms,
                last_error,
            } => {
                sqlx::query(
                    "UPDATE async_events SET state = 'queued', lease_owner = NULL, \
                     attempts = $1, not_before_ms = $2, last_error = $3 WHERE event_id = $4",
                )
                .bind(*attempts as i64)
                .bind(*not_before_ms)
                .bind(last_error.clone())
                .bind(event_id)
                .execute(&mut *tx)
                .await?;
            }
        }
        tx.commit().await?;
        Ok(())
    }

    /// Events a previous process was running when it stopped.
    pub async fn orphaned(&self, live_owner: &str) -> Result<Vec<AsyncEvent>, StoreError> {
        let rows = sqlx::query(concat!(
            "SELECT ",
            columns!(),
            " FROM async_events WHERE state = 'running' \
             AND (lease_owner IS NULL OR lease_owner <> $1)"
        ))
        .bind(live_owner)
        .fetch_all(self.db.pool())
        .await?;
        Ok(rows.iter().map(from_row).collect::<Result<Vec<_>, _>>()?)
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

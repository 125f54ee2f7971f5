//! The scheduler's side of the ledger: turns invocation results into ledger and log
//! records and puts them in the store's spool before anyone sees the result. (The store's
//! `ledger` module is the other side: the spool file and the writer that moves it into
//! the database.)

use std::time::{SystemTime, UNIX_EPOCH};

use protocol::{InvocationResult, InvocationType, LedgerRecord, Outcome, Price, Response};
use store::{LoggedInvocation, Spool, SpoolEntry};

/// Largest model response kept for joining with ground truth; a bigger one (a large
/// batch with class probabilities) is not scored.
pub const MAX_KEPT_PREDICTION: usize = 64 * 1024;

fn prediction(result: &InvocationResult) -> Option<String> {
    match &result.response {
        Response::Event(body)
            if result.outcome == Outcome::Success && body.len() <= MAX_KEPT_PREDICTION =>
        {
            std::str::from_utf8(body).ok().map(str::to_owned)
        }
        _ => None,
    }
}

/// Who and what an invocation was for; completes the worker's result into a ledger row.
#[derive(Debug, Clone)]
pub struct InvocationMeta {
    /// The account that owns (and pays for) the function.
    pub account_id: String,
    /// The account that invoked it.
    pub caller_account_id: String,
    pub function_name: String,
    pub invocation_type: InvocationType,
    pub received_at: SystemTime,
    pub request_bytes: u64,
    /// 1 for a first attempt; async retries count up with the same request id.
    pub attempt: u32,
    /// Whether the response is a model's prediction (Runtime onnx), kept with the log to
    /// be joined with ground truth later.
    pub keeps_prediction: bool,
}

pub fn micros(t: SystemTime) -> i64 {
    t.duration_since(UNIX_EPOCH)
        .map(|d| d.as_micros() as i64)
        .unwrap_or(0)
}

#[derive(Debug, Clone)]
pub struct Recorder {
    spool: Spool,
    price: Price,
}

impl Recorder {
    pub fn new(spool: Spool, price: Price) -> Self {
        Recorder { spool, price }
    }

    pub fn spool(&self) -> &Spool {
        &self.spool
    }

    pub fn ledger_record(&self, meta: &InvocationMeta, result: &InvocationResult) -> LedgerRecord {
        let billed_ms = result.billed_ms();
        // The platform's own failures are not billed.
        let (billed_ms, gb_seconds, cost) = if result.outcome == Outcome::PlatformError {
            (0, 0.0, 0.0)
        } else {
            let gbs = protocol::billing::gb_seconds(billed_ms, result.memory_mb);
            (billed_ms, gbs, self.price.cost(gbs))
        };
        LedgerRecord {
            request_id: result.request_id.clone(),
            attempt: meta.attempt,
            account_id: meta.account_id.clone(),
            caller_account_id: meta.caller_account_id.clone(),
            function_name: meta.function_name.clone(),
            executed_version: result.version.clone(),
            invocation_type: meta.invocation_type.as_str().to_owned(),
            received_at_us: micros(meta.received_at),
            started_at_us: micros(result.started_at),
            ended_at_us: micros(result.ended_at),
            init_ms: result
                .init_duration
                .map_or(0.0, |d| d.as_secs_f64() * 1000.0),
            duration_ms: result.duration.as_secs_f64() * 1000.0,
            billed_ms,
            memory_size_mb: result.memory_mb,
            max_memory_used_mb: result.max_memory_used_mb,
            gb_seconds,
            outcome: result.outcome.as_str().to_owned(),
            error_type: result.error.as_ref().map(|e| e.error_type.clone()),
            start_kind: result.start.as_str().to_owned(),
            request_bytes: meta.request_bytes,
            response_bytes: result.response.len() as u64,
            cost_usd: cost,
        }
    }

    /// Spools the invocation's ledger row with its log (and the response of a model
    /// function) as one entry; when this returns, it survives a crash of the process.
    pub fn record(
        &self,
        meta: &InvocationMeta,
        result: &InvocationResult,
    ) -> std::io::Result<LedgerRecord> {
        let entry = SpoolEntry::LoggedInvocation(LoggedInvocation {
            record: self.ledger_record(meta, result),
            log_text: result.log.clone(),
            prediction: meta.keeps_prediction.then(|| prediction(result)).flatten(),
        });
        self.spool.append(std::slice::from_ref(&entry))?;
        let SpoolEntry::LoggedInvocation(logged) = entry else {
            unreachable!("built above as a logged invocation")
        };
        Ok(logged.record)
    }
}

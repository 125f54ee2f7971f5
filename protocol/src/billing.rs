//! Billing arithmetic and the ledger record: one per invocation, keyed by request id
//! and attempt so that replaying a record can never bill twice.

use serde::{Deserialize, Serialize};
use std::time::Duration;

/// Lambda bills INIT plus duration, rounded up to the next millisecond (since 2025-08).
pub fn billed_ms(init: Option<Duration>, duration: Duration) -> u64 {
    let total = init.unwrap_or_default() + duration;
    total.as_nanos().div_ceil(1_000_000) as u64
}

/// GB-seconds of one invocation: billed seconds times configured memory in GB.
pub fn gb_seconds(billed_ms: u64, memory_mb: u32) -> f64 {
    (billed_ms as f64 / 1000.0) * (memory_mb as f64 / 1024.0)
}

/// Prices in USD; defaults are Lambda's x86 on-demand prices in us-east-1.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct Price {
    pub per_million_requests: f64,
    pub per_gb_second: f64,
}

impl Default for Price {
    fn default() -> Self {
        Price {
            per_million_requests: 0.20,
            per_gb_second: 0.000_016_666_7,
        }
    }
}

impl Price {
    /// The cost of one invocation.
    pub fn cost(&self, gb_seconds: f64) -> f64 {
        self.per_million_requests / 1_000_000.0 + gb_seconds * self.per_gb_second
    }
}

/// One row of the billing ledger.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct LedgerRecord {
    pub request_id: String,
    /// 1 for the first attempt; async retries reuse the request id with a higher attempt.
    pub attempt: u32,
    /// The account that owns the function and pays for it.
    pub account_id: String,
    /// The account that invoked it (differs when a resource policy granted access).
    pub caller_account_id: String,
    pub function_name: String,
    pub executed_version: String,
    /// `request_response`, `event` or `function_url`.
    pub invocation_type: String,
    /// Microseconds since the Unix epoch.
    pub received_at_us: i64,
    pub started_at_us: i64,
    pub ended_at_us: i64,
    pub init_ms: f64,
    pub duration_ms: f64,
    pub billed_ms: u64,
    pub memory_size_mb: u32,
    pub max_memory_used_mb: u32,
    pub gb_seconds: f64,
    /// See [`crate::Outcome::as_str`].
    pub outcome: String,
    pub error_type: Option<String>,
    /// `cold`, `warm` or `snapshot`.
    pub start_kind: String,
    pub request_bytes: u64,
    pub response_bytes: u64,
    pub cost_usd: f64,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bills_like_lambda() {
        // 1293.83 ms INIT + 1049.63 ms duration bills 2344 ms.
        assert_eq!(
            billed_ms(
                Some(Duration::from_micros(1_293_830)),
                Duration::from_micros(1_049_630)
            ),
            2344
        );
        assert_eq!(billed_ms(None, Duration::from_nanos(1)), 1);
        assert_eq!(billed_ms(None, Duration::ZERO), 0);
        assert_eq!(billed_ms(None, Duration::from_millis(3)), 3);
        let gbs = gb_seconds(1000, 1024);
        assert!((gbs - 1.0).abs() < 1e-12);
        let cost = Price::default().cost(gbs);
        assert!((cost - (0.0000002 + 0.0000166667)).abs() < 1e-15);
    }
}

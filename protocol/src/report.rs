//! Lambda's START, END and REPORT log lines, byte for byte.

use std::fmt::Write as _;
use std::time::Duration;

use crate::invocation::{Outcome, StartKind};

pub fn start_line(request_id: &str, version: &str) -> String {
    format!("START RequestId: {request_id} Version: {version}\n")
}

pub fn end_line(request_id: &str) -> String {
    format!("END RequestId: {request_id}\n")
}

/// The figures a REPORT line prints.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct ReportFigures<'a> {
    pub request_id: &'a str,
    pub duration: Duration,
    pub billed_ms: u64,
    pub memory_mb: u32,
    pub max_memory_used_mb: u32,
    pub init_duration: Option<Duration>,
    pub start: StartKind,
    pub outcome: Outcome,
}

fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1000.0
}

/// `REPORT RequestId: <id>\tDuration: 26.73 ms\tBilled Duration: 27 ms\t...` with a
/// trailing tab, `Init Duration` on cold starts, `Restore Duration` on snapshot starts
/// and `Status: timeout` on timeouts.
pub fn report_line(f: &ReportFigures<'_>) -> String {
    let mut line = format!(
        "REPORT RequestId: {}\tDuration: {:.2} ms\tBilled Duration: {} ms\tMemory Size: {} MB\tMax Memory Used: {} MB\t",
        f.request_id,
        ms(f.duration),
        f.billed_ms,
        f.memory_mb,
        f.max_memory_used_mb
    );
    if let Some(init) = f.init_duration {
        // Writing to a String cannot fail.
        let _ = match f.start {
            StartKind::Snapshot => write!(
                line,
                "Restore Duration: {:.2} ms\tBilled Restore Duration: {} ms\t",
                ms(init),
                init.as_nanos().div_ceil(1_000_000)
            ),
            _ => write!(line, "Init Duration: {:.2} ms\t", ms(init)),
        };
    }
    match f.outcome {
        Outcome::Timeout => line.push_str("Status: timeout"),
        Outcome::OutOfMemory => line.push_str("Status: error\tError Type: Runtime.OutOfMemory"),
        _ => {}
    }
    line.push('\n');
    line
}

/// The last `max` bytes of a log, cut at a UTF-8 boundary (`LogType=Tail` sends 4 KB).
pub fn tail(log: &str, max: usize) -> &str {
    if log.len() <= max {
        return log;
    }
    let mut start = log.len() - max;
    while !log.is_char_boundary(start) {
        start += 1;
    }
    &log[start..]
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lines_match_lambda_exactly() {
        assert_eq!(
            start_line("r1", "$LATEST"),
            "START RequestId: r1 Version: $LATEST\n"
        );
        assert_eq!(end_line("r1"), "END RequestId: r1\n");
        let mut f = ReportFigures {
            request_id: "r1",
            duration: Duration::from_micros(26_730),
            billed_ms: 157,
            memory_mb: 128,
            max_memory_used_mb: 75,
            init_duration: Some(Duration::from_micros(130_490)),
            start: StartKind::Cold,
            outcome: Outcome::Success,
        };
        assert_eq!(
            report_line(&f),
            "REPORT RequestId: r1\tDuration: 26.73 ms\tBilled Duration: 157 ms\tMemory Size: 128 MB\tMax Memory Used: 75 MB\tInit Duration: 130.49 ms\t\n"
        );
        f.init_duration = None;
        f.outcome = Outcome::Timeout;
        f.duration = Duration::from_secs(3);
        f.billed_ms = 3000;
        assert_eq!(
            report_line(&f),
            "REPORT RequestId: r1\tDuration: 3000.00 ms\tBilled Duration: 3000 ms\tMemory Size: 128 MB\tMax Memory Used: 75 MB\tStatus: timeout\n"
        );
    }

    #[test]
    fn tail_respects_char_boundaries() {
        assert_eq!(tail("abc", 10), "abc");
        assert_eq!(tail("abcdef", 3), "def");
        assert_eq!(tail("é€x", 2), "x");
    }
}

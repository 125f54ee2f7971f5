//! The lines the platform writes into a function's log, byte for byte as Lambda
//! writes them: START, END, REPORT and the JSON error line of a failed invocation.
//!
//! Every guest-supplied string that reaches a log line goes through [`error_line`]'s
//! JSON writer, never through `format!`: a guest must not be able to forge or break
//! the platform's lines.

use std::fmt::Write as _;
use std::time::Duration;

use crate::invocation::{FunctionError, Outcome, StartKind};

pub fn start_line(request_id: &str, version: &str) -> String {
    format!("START RequestId: {request_id} Version: {version}\n")
}

pub fn end_line(request_id: &str) -> String {
    format!("END RequestId: {request_id}\n")
}

/// `{"errorType":"...","errorMessage":"..."}` as Lambda logs a failed invocation. Both
/// fields may come from the guest, so they are escaped by serde_json: quotes, newlines
/// and control characters cannot end the line or the JSON object early.
pub fn error_line(error: &FunctionError) -> String {
    // Serialising a struct of two strings cannot fail.
    let mut line = serde_json::to_string(error).unwrap_or_default();
    line.push('\n');
    line
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
    fn error_lines_escape_what_the_guest_wrote() {
        assert_eq!(
            error_line(&FunctionError::new("Oops", "bad")),
            "{\"errorType\":\"Oops\",\"errorMessage\":\"bad\"}\n"
        );
        let hostile = FunctionError::new(
            "A\"},\"forged\":1,\"x\":{\"\nREPORT RequestId: fake\u{0}\u{1b}\\",
            "line one\nline two\r\t\u{7}\"end\"",
        );
        let line = error_line(&hostile);
        // One line: the guest's newlines cannot start a line of their own.
        assert_eq!(line.matches('\n').count(), 1);
        assert!(line.ends_with('\n'));
        assert!(!line.chars().any(|c| c.is_control() && c != '\n'));
        let parsed: serde_json::Value = serde_json::from_str(&line).unwrap();
        let object = parsed.as_object().unwrap();
        assert_eq!(object.len(), 2, "{line}");
        assert_eq!(object["errorType"], hostile.error_type.as_str());
        assert_eq!(object["errorMessage"], hostile.error_message.as_str());
    }

    #[test]
    fn tail_respects_char_boundaries() {
        assert_eq!(tail("abc", 10), "abc");
        assert_eq!(tail("abcdef", 3), "def");
        assert_eq!(tail("é€x", 2), "x");
    }
}

//! How a guest failed, and how Lambda words each failure.

use std::time::Duration;

use protocol::{FunctionError, MAX_RESPONSE_PAYLOAD, Outcome};

/// A failure during INIT or an invocation, before it is rendered for a request id.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Failure {
    /// The guest returned an error of its own.
    Guest(FunctionError),
    /// A trap: `unreachable`, a panic, stack overflow, out-of-bounds access...
    Trap(String),
    /// A command exited with a non-zero status.
    Exit(i32),
    OutOfMemory,
    Timeout(Duration),
    ResponseTooLarge,
    /// Every instance slot of the node is taken.
    Exhausted,
    /// Lamina failed; the guest is not at fault.
    Platform(String),
}

impl Failure {
    pub(crate) fn outcome(&self) -> Outcome {
        match self {
            Failure::Guest(_) | Failure::Trap(_) | Failure::Exit(_) | Failure::ResponseTooLarge => {
                Outcome::FunctionError
            }
            Failure::OutOfMemory => Outcome::OutOfMemory,
            Failure::Timeout(_) => Outcome::Timeout,
            Failure::Exhausted | Failure::Platform(_) => Outcome::PlatformError,
        }
    }

    /// Whether the guest's instance must be thrown away (its state may be corrupt).
    pub(crate) fn resets_instance(&self) -> bool {
        !matches!(self, Failure::Guest(_) | Failure::ResponseTooLarge)
    }

    pub(crate) fn to_error(&self, request_id: &str, memory_mb: u32) -> FunctionError {
        match self {
            Failure::Guest(e) => e.clone(),
            Failure::Trap(reason) => FunctionError::exit(request_id, reason),
            Failure::Exit(code) => FunctionError::exit(request_id, &format!("exit status {code}")),
            Failure::OutOfMemory => FunctionError::out_of_memory(request_id, memory_mb),
            Failure::Timeout(t) => FunctionError::timeout(request_id, *t),
            Failure::ResponseTooLarge => FunctionError::response_too_large(MAX_RESPONSE_PAYLOAD),
            Failure::Exhausted | Failure::Platform(_) => FunctionError::new(
                "ServiceException",
                format!("RequestId: {request_id} Error: the platform failed to run the function"),
            ),
        }
    }
}

/// Classifies an error that escaped a guest call. `memory_denied` says whether the
/// store's limiter refused a memory growth during the call.
pub(crate) fn classify(error: &wasmtime::Error, memory_denied: bool, log: &str) -> Failure {
    if let Some(exit) = error.downcast_ref::<wasmtime_wasi::I32Exit>() {
        return Failure::Exit(exit.0);
    }
    if let Some(trap) = error.downcast_ref::<wasmtime::Trap>() {
        if *trap == wasmtime::Trap::Interrupt {
            // Only the epoch callback interrupts, and only past the deadline.
            return Failure::Timeout(Duration::ZERO);
        }
        if memory_denied {
            return Failure::OutOfMemory;
        }
        return Failure::Trap(describe_trap(trap, log));
    }
    if error
        .downcast_ref::<wasmtime::PoolConcurrencyLimitError>()
        .is_some()
    {
        return Failure::Exhausted;
    }
    if memory_denied {
        return Failure::OutOfMemory;
    }
    Failure::Trap(first_line(&format!("{error:#}")))
}

fn first_line(s: &str) -> String {
    s.lines().next().unwrap_or("unknown error").to_owned()
}

/// A Rust guest's panic message is more useful than "unreachable executed": find it in
/// the guest's stderr.
fn describe_trap(trap: &wasmtime::Trap, log: &str) -> String {
    if *trap == wasmtime::Trap::UnreachableCodeReached
        && let Some(panic) = panic_message(log)
    {
        return panic;
    }
    // wasmtime's Display for a Trap already reads "wasm trap: ...".
    let text = trap.to_string();
    if text.starts_with("wasm trap: ") {
        text
    } else {
        format!("wasm trap: {text}")
    }
}

fn panic_message(log: &str) -> Option<String> {
    let mut lines = log.lines();
    while let Some(line) = lines.next() {
        if let Some(at) = line.find("panicked at ") {
            let location = line[at + "panicked at ".len()..].trim_end_matches(':');
            let message = lines.next().unwrap_or("").trim();
            return Some(format!("panicked at {location}: {message}"));
        }
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn finds_rust_panic_messages() {
        let log = "before\nthread '<unnamed>' panicked at src/lib.rs:10:5:\nboom\nnote: run with `RUST_BACKTRACE=1`\n";
        assert_eq!(
            panic_message(log).as_deref(),
            Some("panicked at src/lib.rs:10:5: boom")
        );
        assert_eq!(panic_message("nothing here"), None);
    }

    #[test]
    fn failures_are_worded_as_lambda_words_them() {
        let e = Failure::Timeout(Duration::from_secs(1)).to_error("r", 128);
        assert_eq!(e.error_type, "Sandbox.Timedout");
        assert_eq!(
            e.error_message,
            "RequestId: r Error: Task timed out after 1.00 seconds"
        );
        let e = Failure::Exit(3).to_error("r", 128);
        assert_eq!(e.error_type, "Runtime.ExitError");
        assert_eq!(
            e.error_message,
            "RequestId: r Error: Runtime exited with error: exit status 3"
        );
        assert_eq!(
            Failure::OutOfMemory.to_error("r", 128).error_type,
            "Runtime.OutOfMemory"
        );
        assert_eq!(Failure::OutOfMemory.outcome(), Outcome::OutOfMemory);
        assert!(!Failure::Guest(FunctionError::new("E", "m")).resets_instance());
        assert!(Failure::Trap("x".into()).resets_instance());
    }
}

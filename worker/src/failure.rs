//! How a guest failed, and how Lambda words each failure.

use std::time::Duration;

use protocol::{FunctionError, MAX_RESPONSE_PAYLOAD, Outcome, Runtime};
use wasmtime::component::ResourceTableError;

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
    /// Lamina failed (a host function, the host's IO, Lamina's glue); the guest is not
    /// at fault. The reason is for the node's log, never for the caller.
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

/// The error a handler guest returned from INIT (`request_id` empty, as Lambda reports
/// it) or from an invocation. Lamina's Python runtime reports the rest of Lambda's error
/// body (the message and the user's stack) as JSON in `error-message`; any other guest's
/// message is its own words.
pub(crate) fn guest_error(
    runtime: Runtime,
    error_type: String,
    error_message: String,
    request_id: &str,
) -> FunctionError {
    if runtime == Runtime::Python314
        && let Ok(serde_json::Value::Object(report)) = serde_json::from_str(&error_message)
        && let Some(message) = report.get("errorMessage").and_then(|m| m.as_str())
    {
        let stack_trace = report
            .get("stackTrace")
            .and_then(|s| s.as_array())
            .map(|frames| {
                frames
                    .iter()
                    .filter_map(|f| f.as_str().map(str::to_owned))
                    .collect()
            })
            .unwrap_or_default();
        return FunctionError::with_stack_trace(error_type, message, request_id, stack_trace);
    }
    FunctionError::new(error_type, error_message)
}

/// What a store's limiter refused the guest during a call. A refusal is the guest asking
/// for more than its configuration allows, so an error that follows one is the guest's.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub(crate) struct Refused {
    /// A linear memory growth beyond the function's MemorySize.
    pub(crate) memory: bool,
    /// A table growth beyond the node's table limit.
    pub(crate) table: bool,
}

/// Classifies an error that escaped a guest call, putting the blame where it belongs.
///
/// The guest is blamed for a `wasmtime::Trap` (the epoch interrupt of its deadline is
/// a timeout), a WASI exit status, a limit the store's limiter refused it, a resource it
/// dropped while its children were alive, and the untyped errors wasmtime raises while
/// running it. The host's own failures arrive typed (IO, the resource tables it keeps)
/// and are the platform's: blaming the function for those would bill the customer and
/// hide Lamina's bugs behind function errors. Pool exhaustion is capacity.
pub(crate) fn classify(error: &wasmtime::Error, refused: Refused, log: &str) -> Failure {
    if let Some(exit) = error.downcast_ref::<wasmtime_wasi::I32Exit>() {
        return Failure::Exit(exit.0);
    }
    if let Some(trap) = error.downcast_ref::<wasmtime::Trap>() {
        if *trap == wasmtime::Trap::Interrupt {
            // Only the epoch callback interrupts, and only past the deadline.
            return Failure::Timeout(Duration::ZERO);
        }
        if refused.memory {
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
    // A memory or table the guest declares larger than its limits fails instantiation
    // with an untyped error; the limiter's record says whose it is.
    if refused.memory {
        return Failure::OutOfMemory;
    }
    if refused.table {
        return Failure::Trap("a table grew beyond the allowed number of elements".into());
    }
    if let Some(table_error) = error.downcast_ref::<ResourceTableError>()
        && matches!(table_error, ResourceTableError::HasChildren)
    {
        // WASI's contract: dropping a resource before the ones borrowed from it traps.
        return Failure::Trap(first_line(&format!("{error:#}")));
    }
    // The host's own failures arrive typed: IO and the resource tables it keeps.
    if error.downcast_ref::<std::io::Error>().is_some()
        || error.downcast_ref::<ResourceTableError>().is_some()
    {
        return Failure::Platform(format!("{error:#}"));
    }
    // What is left arrives untyped from wasmtime itself while it runs the guest: a value
    // the guest handed back that the canonical ABI cannot lift (a bad pointer, string or
    // discriminant), instance or table counts over their limits, WASI refusing a guest
    // that breaks its contract. Those are the guest's doing; blaming the platform would
    // leave them unbilled and retried forever as async events.
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

    fn refused(memory: bool, table: bool) -> Refused {
        Refused { memory, table }
    }

    /// The blame table: which errors are the guest's and which the platform's.
    #[test]
    fn blame_follows_where_the_error_came_from() {
        use wasmtime::{Error, Trap};
        let none = Refused::default();
        let io = || std::io::Error::other("No space left on device");
        let cases: Vec<(&str, Error, Refused, Failure)> = vec![
            (
                "exit status",
                Error::new(wasmtime_wasi::I32Exit(3)),
                none,
                Failure::Exit(3),
            ),
            (
                "epoch interrupt",
                Error::new(Trap::Interrupt),
                none,
                Failure::Timeout(Duration::ZERO),
            ),
            (
                "a trap",
                Error::new(Trap::MemoryOutOfBounds),
                none,
                Failure::Trap("wasm trap: out of bounds memory access".into()),
            ),
            (
                "a trap under context",
                Error::new(Trap::StackOverflow).context("error while executing at wasm backtrace"),
                none,
                Failure::Trap("wasm trap: call stack exhausted".into()),
            ),
            (
                "a trap after a refused growth",
                Error::new(Trap::UnreachableCodeReached),
                refused(true, false),
                Failure::OutOfMemory,
            ),
            (
                "instantiation over MemorySize",
                Error::msg("memory minimum size exceeds limits"),
                refused(true, false),
                Failure::OutOfMemory,
            ),
            (
                "instantiation over the table limit",
                Error::msg("table minimum size exceeds limits"),
                refused(false, true),
                Failure::Trap("a table grew beyond the allowed number of elements".into()),
            ),
            (
                "a parent resource dropped before its child",
                Error::new(ResourceTableError::HasChildren),
                none,
                Failure::Trap("resource has children".into()),
            ),
            // The host's side: none of these is the guest's doing.
            (
                "host IO",
                Error::new(io()),
                none,
                Failure::Platform("No space left on device".into()),
            ),
            (
                "host IO under context",
                Error::new(io()).context("writing the response"),
                none,
                Failure::Platform("writing the response: No space left on device".into()),
            ),
            (
                "a host resource missing",
                Error::new(ResourceTableError::NotPresent),
                none,
                Failure::Platform("resource not present".into()),
            ),
            (
                "a host resource of another type",
                Error::new(ResourceTableError::WrongType),
                none,
                Failure::Platform("resource is of another type".into()),
            ),
            (
                "a full host table",
                Error::new(ResourceTableError::Full),
                none,
                Failure::Platform("resource table has no free keys".into()),
            ),
            (
                "an untyped error of the guest call (a value the ABI cannot lift)",
                Error::msg("invalid utf-8 string"),
                none,
                Failure::Trap("invalid utf-8 string".into()),
            ),
        ];
        for (case, error, refused, expected) in cases {
            assert_eq!(classify(&error, refused, ""), expected, "{case}");
        }
    }

    /// The same table through a real call: wasmtime must hand a host function's error
    /// back as itself, not as a trap, for the table above to hold.
    #[test]
    fn errors_escaping_a_real_guest_call_keep_their_origin() {
        use wasmtime::{Caller, Engine, Linker, Module, Store};
        let engine = Engine::default();
        let module = Module::new(
            &engine,
            r#"(module
                (import "host" "fail" (func $fail))
                (import "host" "exit" (func $exit))
                (func (export "host-fails") call $fail)
                (func (export "guest-exits") call $exit)
                (func (export "guest-traps") unreachable))"#,
        )
        .unwrap();
        let mut linker = Linker::new(&engine);
        linker
            .func_wrap(
                "host",
                "fail",
                |_: Caller<'_, ()>| -> wasmtime::Result<()> {
                    Err(wasmtime::Error::new(std::io::Error::other("disk gone")))
                },
            )
            .unwrap();
        linker
            .func_wrap(
                "host",
                "exit",
                |_: Caller<'_, ()>| -> wasmtime::Result<()> {
                    Err(wasmtime::Error::new(wasmtime_wasi::I32Exit(7)))
                },
            )
            .unwrap();
        let mut store = Store::new(&engine, ());
        let instance = linker.instantiate(&mut store, &module).unwrap();
        let mut call = |name: &str| {
            let f = instance.get_typed_func::<(), ()>(&mut store, name).unwrap();
            let error = f.call(&mut store, ()).unwrap_err();
            classify(&error, Refused::default(), "")
        };
        assert!(matches!(call("host-fails"), Failure::Platform(m) if m.contains("disk gone")));
        assert_eq!(call("guest-exits"), Failure::Exit(7));
        assert!(matches!(call("guest-traps"), Failure::Trap(m) if m.contains("unreachable")));
        assert_eq!(
            Failure::Platform(String::new()).outcome(),
            Outcome::PlatformError
        );
    }

    #[test]
    fn the_python_runtimes_reports_become_lambdas_error_bodies() {
        let report = r#"{"errorMessage": "bad x", "stackTrace": ["  File \"/var/task/f.py\", line 2, in h\n"]}"#;
        let e = guest_error(
            Runtime::Python314,
            "ValueError".into(),
            report.into(),
            "rid-1",
        );
        assert_eq!(
            serde_json::to_value(&e).unwrap_or_default(),
            serde_json::json!({
                "errorType": "ValueError",
                "errorMessage": "bad x",
                "requestId": "rid-1",
                "stackTrace": ["  File \"/var/task/f.py\", line 2, in h\n"],
            })
        );
        // Any other guest's message is its own words, JSON or not.
        let e = guest_error(Runtime::Wasm, "MyError".into(), report.into(), "rid-1");
        assert_eq!((e.error_message.as_str(), e.request_id), (report, None));
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

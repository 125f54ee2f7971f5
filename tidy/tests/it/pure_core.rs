//! The scheduler's pure core does no IO, reads no clock and knows no async runtime: every
//! call is given `now`, so the core's tests are plain table tests.

use std::path::PathBuf;

use tidy::{Source, display, lex, project_root, read, rust_files};

use crate::report;

/// The files of the pure core: the module file and its folder, if it grows one.
const CORE_FILE: &str = "scheduler/src/core.rs";
const CORE_DIR: &str = "scheduler/src/core";

/// Paths and identifiers the core may not name (as whole words, outside comments and
/// strings), and what each would bring in.
const FORBIDDEN: &[(&str, &str)] = &[
    ("tokio", "an async runtime"),
    ("sqlx", "the database"),
    ("std::fs", "the file system"),
    ("std::net", "the network"),
    ("std::io", "IO"),
    ("std::thread", "threads and sleeps"),
    ("std::process", "child processes"),
    ("std::env", "environment variables"),
    ("Instant::now", "the clock"),
    ("SystemTime::now", "the clock"),
    ("Utc::now", "the clock"),
    ("rand", "randomness, an input like the clock"),
];

/// The same modules imported in a group, `use std::{fs, ...}`.
const FORBIDDEN_STD: &[&str] = &["fs", "net", "io", "thread", "process", "env"];

fn core_files() -> Vec<PathBuf> {
    let root = project_root();
    let mut files: Vec<PathBuf> = vec![root.join(CORE_FILE)];
    files.retain(|f| f.exists());
    files.extend(rust_files(&root.join(CORE_DIR)));
    files
}

/// The `std::{...}` groups of `source` that import a forbidden module, with their lines.
fn grouped_std_imports(source: &Source) -> Vec<(String, usize)> {
    let mut out = Vec::new();
    for (at, _) in source.code.match_indices("std::{") {
        let body = &source.code[at + "std::{".len()..];
        let mut depth = 1;
        let end = body
            .char_indices()
            .find(|&(_, c)| {
                depth += match c {
                    '{' => 1,
                    '}' => -1,
                    _ => 0,
                };
                depth == 0
            })
            .map_or(body.len(), |(i, _)| i);
        let words = body[..end].split(|c: char| !(c.is_alphanumeric() || c == '_'));
        for word in words {
            if FORBIDDEN_STD.contains(&word) {
                out.push((format!("std::{{{word}}}"), source.line_of(at)));
            }
        }
    }
    out
}

#[test]
fn scheduler_core_does_no_io_and_reads_no_clock() {
    let files = core_files();
    assert!(
        !files.is_empty(),
        "tidy: the scheduler's pure core is neither {CORE_FILE} nor under {CORE_DIR}/; if it \
         moved, point CORE_FILE and CORE_DIR in tidy/tests/it/pure_core.rs at its new home"
    );
    let mut violations = Vec::new();
    for file in files {
        let source = lex(&read(&file));
        let path = display(&file);
        for (token, brings) in FORBIDDEN {
            for line in source.find_token(token) {
                violations.push(format!("{path}:{line}: names `{token}` ({brings})"));
            }
        }
        for (import, line) in grouped_std_imports(&source) {
            violations.push(format!("{path}:{line}: imports `{import}`"));
        }
    }
    report(
        "the scheduler's pure core does no IO, reads no clock and uses no tokio",
        &violations,
        "Fix: take what you need as an argument (`now: Instant`, a drawn number, a loaded \
         value) and return a decision (an `Action`) for the adapter in the scheduler to carry \
         out; the adapter does the IO and the awaiting. The core stays testable with plain \
         table tests and a hand-made clock.",
    );
}

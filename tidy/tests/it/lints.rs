//! Lint exceptions the architecture does not allow: no function on the invoke path takes
//! so many arguments that clippy has to be told to look away.

use tidy::{display, lex, project_root, read, rust_files};

use crate::report;

/// The crates of the invoke path.
const INVOKE_PATH: &[&str] = &["gateway", "scheduler"];

/// Files that still carry the exception; emptied as the invoke path is refactored. The
/// test fails when a listed file no longer has one, so the list cannot outlive the code.
const KNOWN_TOO_MANY_ARGUMENTS: &[&str] = &["gateway/src/api/invoke.rs"];

#[test]
fn no_too_many_arguments_on_the_invoke_path() {
    let root = project_root();
    let mut violations = Vec::new();
    let mut seen = Vec::new();
    for krate in INVOKE_PATH {
        for file in rust_files(&root.join(krate)) {
            let path = display(&file);
            let lines = lex(&read(&file)).find_token("clippy::too_many_arguments");
            if lines.is_empty() {
                continue;
            }
            if KNOWN_TOO_MANY_ARGUMENTS.contains(&path.as_str()) {
                seen.push(path);
                continue;
            }
            for line in lines {
                violations.push(format!(
                    "{path}:{line}: silences `clippy::too_many_arguments`"
                ));
            }
        }
    }
    for known in KNOWN_TOO_MANY_ARGUMENTS {
        if !seen.iter().any(|p| p == known) {
            violations.push(format!(
                "{known} no longer silences `clippy::too_many_arguments`: remove it from \
                 KNOWN_TOO_MANY_ARGUMENTS in tidy/tests/it/lints.rs"
            ));
        }
    }
    report(
        "no `#[allow(clippy::too_many_arguments)]` in gateway/ or scheduler/",
        &violations,
        "Fix: group the arguments that travel together into a type that names them (a \
         request, a resolved invocation), or let the owner of the data build it, instead of \
         silencing the lint. When a listed file is clean, its entry leaves the list.",
    );
}

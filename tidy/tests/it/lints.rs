//! Lint exceptions the architecture does not allow: no function on the invoke path takes
//! so many arguments that clippy has to be told to look away.

use tidy::{display, lex, project_root, read, rust_files};

use crate::report;

/// The crates of the invoke path.
const INVOKE_PATH: &[&str] = &["gateway", "scheduler"];

#[test]
fn no_too_many_arguments_on_the_invoke_path() {
    let root = project_root();
    let mut violations = Vec::new();
    for krate in INVOKE_PATH {
        for file in rust_files(&root.join(krate)) {
            let path = display(&file);
            for line in lex(&read(&file)).find_token("clippy::too_many_arguments") {
                violations.push(format!(
                    "{path}:{line}: silences `clippy::too_many_arguments`"
                ));
            }
        }
    }
    report(
        "no `#[allow(clippy::too_many_arguments)]` in gateway/ or scheduler/",
        &violations,
        "Fix: group the arguments that travel together into a type that names them (a \
         request, a resolved invocation), or let the owner of the data build it, instead of \
         silencing the lint.",
    );
}

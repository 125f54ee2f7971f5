//! Every Rust file opens with a `//!` doc comment saying what it is for (STYLE.md).

use tidy::{display, project_root, read, rust_files, workspace_members};

use crate::report;

/// Every `.rs` file of every workspace crate (sources, tests, binaries) and of the fuzz
/// targets must start with a `//!` line, before any `#![...]` attribute: the first thing a
/// reader of a file sees is what it is for. Guests are checked by their own workspace.
#[test]
fn every_module_opens_with_a_doc_comment() {
    let root = project_root();
    let mut dirs: Vec<String> = workspace_members();
    dirs.push("fuzz".to_string());
    let mut violations = Vec::new();
    for dir in dirs {
        for file in rust_files(&root.join(dir)) {
            let text = read(&file);
            if !text.starts_with("//!") {
                let first = text.lines().next().unwrap_or("(empty file)");
                violations.push(format!(
                    "{}: starts with `{first}` instead of a `//!` line",
                    display(&file)
                ));
            }
        }
    }
    report(
        "every module opens with a `//!` doc comment",
        &violations,
        "Fix: make the file's first line a `//!` comment saying what the module is for \
         (what it holds and why it is a room of its own, not how it works); put any \
         `#![...]` attributes after it.",
    );
}

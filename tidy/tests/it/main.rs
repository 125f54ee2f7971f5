//! Lamina's architecture invariants, checked on the tree as it stands, in the manner of
//! rust-analyzer's tidy tests: each test walks files as text and fails with every file
//! that breaks its rule, why the rule exists and how to fix it. ARCHITECTURE.md states the
//! invariants in prose; these tests are what keeps the prose true.

mod code_map;
mod dependencies;
mod docs;
mod lints;
mod pure_core;
mod sql;

/// Fails the test with every violation found, then the rule's reason and remedy, so one
/// run shows everything to fix.
fn report(rule: &str, violations: &[String], remedy: &str) {
    if violations.is_empty() {
        return;
    }
    let list: String = violations.iter().map(|v| format!("  - {v}\n")).collect();
    panic!("\n\ntidy: {rule}\n\n{list}\n{remedy}\n\n");
}

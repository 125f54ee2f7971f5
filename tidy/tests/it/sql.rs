//! No SQL outside `store`: every string literal of every Rust file in the repository is
//! read, and one that holds an SQL statement is reported unless it is in `store/`.

use tidy::{display, lex, project_root, read, rust_files, sql_statement};

use crate::report;

/// Folders whose Rust files may hold SQL: the store, and this crate, whose tests spell out
/// what they look for.
const SQL_HOMES: &[&str] = &["store/", "tidy/"];

/// Files outside the store that hold SQL anyway, and why. The test fails when one of them
/// no longer does, so the list only shrinks.
const KNOWN_SQL_OUTSIDE_STORE: &[(&str, &str)] = &[(
    "bench/src/bin/ledger-bench.rs",
    "creates the throwaway PostgreSQL database the ledger benchmark measures",
)];

#[test]
fn no_sql_outside_store() {
    let mut violations = Vec::new();
    let mut known_seen = Vec::new();
    for file in rust_files(&project_root()) {
        let path = display(&file);
        if SQL_HOMES.iter().any(|home| path.starts_with(home)) {
            continue;
        }
        let known = KNOWN_SQL_OUTSIDE_STORE.iter().any(|(p, _)| *p == path);
        for literal in lex(&read(&file)).literals {
            let Some(statement) = sql_statement(&literal.text) else {
                continue;
            };
            if known {
                known_seen.push(path.clone());
                continue;
            }
            let shown: String = literal.text.chars().take(60).collect();
            violations.push(format!(
                "{path}:{}: a string literal holds SQL (`{statement}`): \"{shown}\"",
                literal.line
            ));
        }
    }
    for (path, _) in KNOWN_SQL_OUTSIDE_STORE {
        if !known_seen.iter().any(|p| p == path) {
            violations.push(format!(
                "{path} is in KNOWN_SQL_OUTSIDE_STORE but holds no SQL any more: remove it from \
                 the list in tidy/tests/it/sql.rs"
            ));
        }
    }
    report(
        "only `store` contains SQL",
        &violations,
        "Fix: move the query into `store` behind a function that says what it does (the \
         catalog, ledger, queue, reports and quality modules are the homes), and call that. \
         One crate owning the SQL is what lets one migration set serve PostgreSQL and SQLite.",
    );
}

//! ARCHITECTURE.md's code map matches the tree: every path it names exists, and every
//! source file is named, directly or through its folder.
//!
//! The convention (see `tidy::code_map`): in `## Code map`, each workspace crate has a
//! bullet that opens with its folder (`` `worker/` ``); inside it, backticked tokens ending
//! in `.rs` (files) or `/` (folders) are paths relative to that crate's `src/`. A folder
//! covers every file under it. Files compiled only for tests (`#[cfg(test)] mod x;`) need
//! not be named.

use std::collections::BTreeSet;

use tidy::{
    CodeMapEntry, code_map, display, project_root, read, rust_files, test_only_modules,
    workspace_members,
};

use crate::report;

const HOW: &str = "In `## Code map` of ARCHITECTURE.md, each crate's bullet opens with \
                   `` `crate/` ``; in it, `` `file.rs` `` and `` `folder/` `` are paths \
                   relative to the crate's src/, and a folder covers every file under it.";

fn entries() -> Vec<CodeMapEntry> {
    code_map(
        &read(&project_root().join("ARCHITECTURE.md")),
        &workspace_members(),
    )
}

#[test]
fn code_map_names_only_paths_that_exist() {
    let root = project_root();
    let mut violations = Vec::new();
    for entry in entries() {
        let src = root.join(&entry.krate).join("src");
        for (path, line) in &entry.paths {
            let target = src.join(path);
            let exists = if path.ends_with('/') {
                target.is_dir()
            } else {
                target.is_file()
            };
            if !exists {
                violations.push(format!(
                    "ARCHITECTURE.md:{line}: the `{}/` bullet names `{path}`, but {} does not \
                     exist",
                    entry.krate,
                    display(&target)
                ));
            }
        }
    }
    report(
        "every path in ARCHITECTURE.md's code map exists",
        &violations,
        &format!(
            "Fix: rename the path in the code map to where the code now lives, or drop it if \
             the code is gone. {HOW}"
        ),
    );
}

#[test]
fn code_map_names_every_source_file() {
    let root = project_root();
    let map = entries();
    let mut violations = Vec::new();
    for krate in workspace_members() {
        let Some(entry) = map.iter().find(|e| e.krate == krate) else {
            violations.push(format!(
                "the workspace crate `{krate}` has no bullet in the code map (a line opening with `- `{krate}/` — `)"
            ));
            continue;
        };
        let named: BTreeSet<&str> = entry.paths.iter().map(|(p, _)| p.as_str()).collect();
        let src = root.join(&krate).join("src");
        let test_only = test_only_modules(&src);
        for file in rust_files(&src) {
            if test_only.contains(&file) {
                continue;
            }
            let rel = display(&file);
            let rel = rel
                .strip_prefix(&format!("{krate}/src/"))
                .unwrap_or(&rel)
                .to_string();
            let covered = named
                .iter()
                .any(|p| *p == rel || (p.ends_with('/') && rel.starts_with(p)));
            if !covered {
                violations.push(format!(
                    "{krate}/src/{rel} is not in the code map: name `{rel}` (and what it holds) \
                     in the `{krate}/` bullet (ARCHITECTURE.md:{})",
                    entry.line
                ));
            }
        }
    }
    report(
        "ARCHITECTURE.md's code map names every source file",
        &violations,
        &format!(
            "Fix: add each file, with a few words on what it holds, to its crate's bullet; a \
             new crate gets a bullet of its own. {HOW}"
        ),
    );
}

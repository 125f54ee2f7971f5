//! Who may depend on what: the direction of the Lamina crates' graph, the crates that own
//! each heavy dependency (wasmtime, sqlx, onnx-ops, tract), read from every `Cargo.toml`
//! and, for what comes in through third-party crates, from `Cargo.lock`.

use std::collections::BTreeSet;

use tidy::{
    display, files_with_suffix, find_chain, lock_graph, manifest_dependencies, project_root, read,
    workspace_members,
};

use crate::report;

/// Every workspace crate, the floor it stands on, and the Lamina crates it may depend on.
/// A crate depends only on crates of lower floors (`layers_point_down` checks this table),
/// so the graph has no cycle and no upward edge; the lists are narrower than the floors
/// allow where the architecture says so (the scheduler and the gateway never reach
/// `worker`: they run guests only through `protocol::ExecutionBackend`).
const LAYERS: &[(&str, u8, &[&str])] = &[
    ("protocol", 0, &[]),
    ("onnx-ops", 0, &[]),
    ("tidy", 0, &[]),
    ("worker", 1, &["protocol", "onnx-ops"]),
    ("store", 1, &["protocol"]),
    ("packages", 1, &["protocol"]),
    ("scheduler", 2, &["protocol", "store"]),
    (
        "gateway",
        3,
        &["protocol", "scheduler", "store", "packages"],
    ),
    (
        "lamina",
        4,
        &[
            "protocol",
            "onnx-ops",
            "worker",
            "store",
            "packages",
            "scheduler",
            "gateway",
        ],
    ),
    (
        "bench",
        4,
        &[
            "protocol",
            "onnx-ops",
            "worker",
            "store",
            "scheduler",
            "gateway",
        ],
    ),
];

/// Heavy dependencies and the only crates that may name them: package-name patterns (a
/// trailing `*` matches any suffix), owners, and why.
const OWNERS: &[(&[&str], &[&str], &str)] = &[
    (
        &["wasmtime*", "wasi-nn*", "cranelift*"],
        &["worker"],
        "`worker` is the only crate that links wasmtime; the scheduler and the gateway reach \
         guest code only through `protocol::ExecutionBackend`, so they build and test without \
         a Wasm engine",
    ),
    (
        &["sqlx*"],
        // bench: `ledger-bench` creates the throwaway PostgreSQL database it measures.
        &["store", "bench"],
        "`store` is the only crate with SQL: one place owns the queries, the migrator and the \
         two databases' differences",
    ),
    (
        &["onnx-ops"],
        // lamina: `lamina deploy` reads a model's input width to write its settings.
        &["worker", "lamina", "bench"],
        "untrusted model bytes get in only through `onnx_ops::load`, on the worker and in the \
         deploy command's local check",
    ),
    (
        &["aws-sdk-s3", "aws-config"],
        &["packages"],
        "`packages` is the only crate that talks to S3: code fetched from users' buckets and \
         the code store, with Lambda's wording for every failure in one place",
    ),
    (
        &["tract*"],
        &["worker", "onnx-ops", "bench"],
        "inference runs on the worker's host side, through the operators `onnx-ops` adds to \
         tract",
    ),
];

fn matches(pattern: &str, name: &str) -> bool {
    match pattern.strip_suffix('*') {
        Some(prefix) => name.starts_with(prefix),
        None => name == pattern,
    }
}

fn allowed(krate: &str) -> Option<&'static [&'static str]> {
    LAYERS
        .iter()
        .find(|(c, _, _)| *c == krate)
        .map(|(_, _, deps)| *deps)
}

#[test]
fn layers_point_down() {
    let floor = |c: &str| LAYERS.iter().find(|(n, _, _)| *n == c).map(|(_, f, _)| *f);
    let mut violations = Vec::new();
    for (krate, f, deps) in LAYERS {
        for dep in *deps {
            match floor(dep) {
                Some(d) if d < *f => {}
                Some(d) => violations.push(format!(
                    "`{krate}` (floor {f}) may depend on `{dep}` (floor {d}), which is not below it"
                )),
                None => violations.push(format!("`{krate}` names `{dep}`, which is not in LAYERS")),
            }
        }
    }
    report(
        "LAYERS in tidy/tests/it/dependencies.rs must only point down",
        &violations,
        "Fix: a crate may only depend on crates of a lower floor; move the crate up a floor or \
         the shared code down, and update the crate graph in ARCHITECTURE.md to match.",
    );
}

#[test]
fn lamina_crates_depend_only_downward() {
    let root = project_root();
    let members = workspace_members();
    let mut violations = Vec::new();
    for krate in &members {
        let Some(may) = allowed(krate) else {
            violations.push(format!(
                "`{krate}` is a workspace member but has no row in LAYERS: decide which floor it \
                 stands on and which Lamina crates it may use"
            ));
            continue;
        };
        let manifest = root.join(krate).join("Cargo.toml");
        for dep in manifest_dependencies(&read(&manifest)) {
            // A crate may name itself among its dev-dependencies to turn on a test-only
            // feature (the scheduler's fake backend); that is no edge of the graph.
            let is_self = dep.name == *krate && dep.table.contains("dev");
            if members.contains(&dep.name) && !is_self && !may.contains(&dep.name.as_str()) {
                violations.push(format!(
                    "{}:{}: `{krate}` depends on `{}` in [{}]; `{krate}` may depend only on [{}]",
                    display(&manifest),
                    dep.line,
                    dep.name,
                    dep.table,
                    may.join(", ")
                ));
            }
        }
    }
    for (krate, _, _) in LAYERS {
        if !members.iter().any(|m| m == krate) {
            violations.push(format!(
                "LAYERS names `{krate}`, which is not a workspace member: remove its row"
            ));
        }
    }
    report(
        "Lamina's crates depend one way: gateway -> scheduler -> store -> protocol, \
         worker -> onnx-ops and protocol, and only lamina and bench reach worker",
        &violations,
        "Fix: move the code you need into a crate the dependent may use (often `protocol`, \
         the shared vocabulary), or pass it in through a trait the lower crate defines, as \
         `protocol::ExecutionBackend` does for the worker. If the architecture itself changes, \
         change LAYERS in tidy/tests/it/dependencies.rs and ARCHITECTURE.md together.",
    );
}

#[test]
fn heavy_dependencies_stay_with_their_owners() {
    let root = project_root();
    let mut violations = Vec::new();
    for krate in workspace_members() {
        let manifest = root.join(&krate).join("Cargo.toml");
        for dep in manifest_dependencies(&read(&manifest)) {
            for (patterns, owners, why) in OWNERS {
                if patterns.iter().any(|p| matches(p, &dep.name)) && !owners.contains(&&*krate) {
                    violations.push(format!(
                        "{}:{}: `{krate}` depends on `{}` in [{}], which only [{}] may depend on: \
                         {why}",
                        display(&manifest),
                        dep.line,
                        dep.name,
                        dep.table,
                        owners.join(", ")
                    ));
                }
            }
        }
    }
    report(
        "heavy dependencies stay in the crates that own them",
        &violations,
        "Fix: remove the dependency and reach the owner's functionality through its crate's API \
         (or through the trait in `protocol` it implements). The owners are OWNERS in \
         tidy/tests/it/dependencies.rs; change them only with ARCHITECTURE.md's invariants.",
    );
}

#[test]
fn no_crate_pulls_a_heavy_dependency_in_sideways() {
    let graph = lock_graph(&read(&project_root().join("Cargo.lock")));
    let members = workspace_members();
    let stop: BTreeSet<String> = members.iter().cloned().collect();
    let mut violations = Vec::new();
    for krate in &members {
        for (patterns, owners, why) in OWNERS {
            if owners.contains(&krate.as_str()) {
                continue;
            }
            // Through Lamina crates the direct rules above already hold; what is left is a
            // third-party crate that brings the dependency along.
            let hit = |name: &str| patterns.iter().any(|p| matches(p, name));
            // A direct dependency is `heavy_dependencies_stay_with_their_owners`'s to report.
            if let Some(chain) = find_chain(&graph, krate, &stop, hit)
                && chain.len() > 2
            {
                violations.push(format!(
                    "`{krate}` reaches `{}` through a third-party crate: {} ({why})",
                    chain.last().map_or("", String::as_str),
                    chain.join(" -> ")
                ));
            }
        }
    }
    report(
        "no crate pulls a heavy dependency in through a third-party crate (per Cargo.lock)",
        &violations,
        "Fix: drop the third-party crate that brings it in, or turn off the feature that does \
         (`cargo tree -p <crate> -i <dependency>` shows the path).",
    );
}

#[test]
fn guests_depend_on_no_host_crate() {
    let root = project_root();
    let members = workspace_members();
    let mut violations = Vec::new();
    for manifest in files_with_suffix(&root.join("guests"), "Cargo.toml") {
        for dep in manifest_dependencies(&read(&manifest)) {
            if members.contains(&dep.name) {
                violations.push(format!(
                    "{}:{}: a guest depends on the host crate `{}`",
                    display(&manifest),
                    dep.line,
                    dep.name
                ));
            }
        }
    }
    report(
        "guests depend on `wit/` alone, never on host crates",
        &violations,
        "Fix: share the contract through the WIT files in `wit/` and the guest SDK \
         (`guests/sdk`), which the host's `bindgen!` reads too.",
    );
}

//! Deployment zips: whatever the bytes, intake either stores a package inside its
//! directory or refuses with a client error, never panics, never writes outside.
#![no_main]

use std::sync::LazyLock;

use libfuzzer_sys::fuzz_target;

static PACKAGES: LazyLock<tempfile::TempDir> =
    LazyLock::new(|| tempfile::tempdir().expect("a temporary directory"));

fuzz_target!(|data: &[u8]| {
    let dir = PACKAGES.path();
    if let Ok(stored) = gateway::intake::store_zip(dir, data) {
        assert!(stored.root.starts_with(dir));
        // Keep the disk flat across millions of runs.
        let _ = std::fs::remove_dir_all(&stored.root);
        let _ = std::fs::remove_file(dir.join(format!("{}.zip", stored.digest)));
    }
    // Nothing but packages and their zips may appear, whatever the entry names said.
    for entry in std::fs::read_dir(dir).expect("readable").flatten() {
        let name = entry.file_name();
        let name = name.to_string_lossy();
        assert!(
            !name.starts_with(".staging-"),
            "a staging directory leaked: {name}"
        );
    }
});

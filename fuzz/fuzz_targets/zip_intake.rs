//! Deployment zips: whatever the bytes, intake either unpacks a package inside its
//! directory or refuses with a client error, never panics, never writes outside.
#![no_main]

use std::sync::LazyLock;

use libfuzzer_sys::fuzz_target;
use packages::{PackageError, PackageLimits, intake};

static SCRATCH: LazyLock<tempfile::TempDir> =
    LazyLock::new(|| tempfile::tempdir().expect("a temporary directory"));

fuzz_target!(|data: &[u8]| {
    let dest = SCRATCH.path().join("package");
    let unpacked = intake::unpack_zip(std::io::Cursor::new(data), &dest, &PackageLimits::default());
    assert!(
        !matches!(unpacked, Err(PackageError::Platform(_))),
        "a client's bytes made a platform error: {unpacked:?}"
    );
    // Nothing may appear beside the package, whatever the entry names said.
    for entry in std::fs::read_dir(SCRATCH.path())
        .expect("readable")
        .flatten()
    {
        assert_eq!(entry.file_name(), "package", "written outside the package");
    }
    // Keep the disk flat across millions of runs (files are read-only only on success).
    let _ = std::fs::remove_dir_all(&dest);
});

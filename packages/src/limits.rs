//! What one package may weigh: Lambda's limits by default, configurable per node.

/// The limits a node applies to every package it takes in.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PackageLimits {
    /// A zip uploaded directly (`ZipFile`), before it is unpacked.
    pub max_zipped: u64,
    /// A package unpacked, and any object fetched from S3 (a zip never unpacks smaller
    /// than itself by much, so an object above this can hold no valid package).
    pub max_unzipped: u64,
    /// Files in one zip: a cap on the metadata work a hostile archive can ask for.
    pub max_entries: usize,
}

impl Default for PackageLimits {
    fn default() -> Self {
        PackageLimits {
            max_zipped: 52_428_800,
            max_unzipped: 262_144_000,
            max_entries: 20_000,
        }
    }
}

impl PackageLimits {
    pub(crate) fn zipped_message(&self) -> String {
        format!("Zipped size must be smaller than {} bytes", self.max_zipped)
    }

    pub(crate) fn unzipped_message(&self) -> String {
        format!(
            "Unzipped size must be smaller than {} bytes",
            self.max_unzipped
        )
    }
}

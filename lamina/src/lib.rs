//! The `lamina` command's library side: assembling a node from all of Lamina's crates.

pub mod file_table;
pub mod membership;
pub mod node;
mod package_blobs;

//! Working copies: each package unpacked once per node under its digest, the directory
//! environments see as `/var/task`. They are the only plaintext a node keeps, so they
//! are emptied when the node starts and when it stops; put the directory on tmpfs and
//! plaintext never reaches a disk.

use std::path::{Path, PathBuf};

use crate::error::PackageError;
use crate::intake::{self, Shape};
use crate::limits::PackageLimits;

#[derive(Debug, Clone)]
pub(crate) struct WorkingCopies {
    dir: PathBuf,
}

impl WorkingCopies {
    pub(crate) fn open(dir: PathBuf) -> Result<WorkingCopies, PackageError> {
        std::fs::create_dir_all(&dir)?;
        Ok(WorkingCopies { dir })
    }

    pub(crate) fn dir(&self) -> &Path {
        &self.dir
    }

    pub(crate) fn root(&self, digest: &str) -> PathBuf {
        self.dir.join(digest)
    }

    /// Beside the root, not in it: a bare object's package may gain a second name when
    /// another function deploys the same bytes under another handler.
    fn bare_marker(&self, digest: &str) -> PathBuf {
        self.dir.join(format!("{digest}.bare"))
    }

    /// Whether the package is laid out for `handler`: a zip is whole once published, a
    /// bare object needs its file under this handler's name.
    pub(crate) fn is_ready(&self, digest: &str, handler: &str) -> bool {
        let root = self.root(digest);
        root.is_dir() && (!self.bare_marker(digest).exists() || root.join(handler).exists())
    }

    /// Lays out the object at `object` as package `digest`. Returns the unpacked size.
    /// Safe against a concurrent lay-out of the same digest: the loser of the publish
    /// race goes on with the winner's copy.
    pub(crate) fn lay_out(
        &self,
        digest: &str,
        object: &Path,
        shape: Shape,
        handler: &str,
        limits: &PackageLimits,
    ) -> Result<u64, PackageError> {
        let root = self.root(digest);
        if !root.is_dir() {
            self.publish(digest, object, shape, handler, limits)?;
        }
        if shape == Shape::Bare && !root.join(handler).exists() {
            // Another handler's name for the same bytes: only a model or module name, so
            // no one can plant a settings file in a package others run.
            let lower = handler.to_ascii_lowercase();
            if !(lower.ends_with(".onnx") || lower.ends_with(".wasm")) {
                return Err(PackageError::Invalid(format!(
                    "The package is a single file, so its Handler must end in .onnx or .wasm, not {handler}."
                )));
            }
            self.add_bare_name(object, &root, handler)?;
        }
        Ok(intake::dir_size(&root)?)
    }

    fn publish(
        &self,
        digest: &str,
        object: &Path,
        shape: Shape,
        handler: &str,
        limits: &PackageLimits,
    ) -> Result<(), PackageError> {
        let root = self.root(digest);
        let staging = self.scratch_path("staging");
        let laid_out = (|| {
            match shape {
                Shape::Zip => {
                    let file = std::io::BufReader::new(std::fs::File::open(object)?);
                    intake::unpack_zip(file, &staging, limits)?;
                }
                Shape::Bare => {
                    std::fs::create_dir_all(&staging)?;
                    intake::place_bare(object, &staging, handler)?;
                    std::fs::write(self.bare_marker(digest), b"")?;
                }
            }
            intake::make_read_only(&staging)?;
            Ok::<(), PackageError>(())
        })();
        if let Err(e) = laid_out {
            let _ = std::fs::remove_dir_all(&staging);
            return Err(e);
        }
        // Publish atomically: a concurrent deploy of the same bytes may have won.
        if std::fs::rename(&staging, &root).is_err() {
            let _ = std::fs::remove_dir_all(&staging);
            if !root.is_dir() {
                return Err(PackageError::Platform(format!(
                    "publishing package {digest} in {}",
                    self.dir.display()
                )));
            }
        }
        Ok(())
    }

    /// Gives a bare package's file a second name (the same bytes deployed under another
    /// handler): copied beside the working copies, then renamed in, so no environment
    /// ever sees half a file.
    fn add_bare_name(&self, object: &Path, root: &Path, handler: &str) -> Result<(), PackageError> {
        let staging = self.scratch_path("name");
        let placed = (|| {
            std::fs::create_dir_all(&staging)?;
            intake::place_bare(object, &staging, handler)?;
            let rel = intake::safe_entry_path(handler).map_err(PackageError::Invalid)?;
            let target = root.join(&rel);
            if let Some(parent) = target.parent() {
                std::fs::create_dir_all(parent)?;
            }
            if !target.exists() {
                std::fs::rename(staging.join(&rel), &target)?;
            }
            intake::make_read_only(root)?;
            Ok::<(), PackageError>(())
        })();
        let _ = std::fs::remove_dir_all(&staging);
        placed
    }

    /// Merges the working copies `layers` in order into the working copy `name`: a file
    /// of a later layer replaces the same path of an earlier one, as Lambda extracts
    /// layers into `/opt`. Files are hard links to the layers' own read-only copies (copies
    /// where the file system cannot link). Safe against a concurrent merge of the same
    /// list, as [`WorkingCopies::lay_out`] is.
    pub(crate) fn merge(&self, name: &str, layers: &[PathBuf]) -> Result<PathBuf, PackageError> {
        let merged = self.dir.join(name);
        if merged.is_dir() {
            return Ok(merged);
        }
        let staging = self.scratch_path("merge");
        let built = (|| {
            std::fs::create_dir_all(&staging)?;
            for layer in layers {
                overlay(layer, &staging)?;
            }
            intake::make_read_only(&staging)
        })();
        if let Err(e) = built {
            let _ = std::fs::remove_dir_all(&staging);
            return Err(e.into());
        }
        if std::fs::rename(&staging, &merged).is_err() {
            let _ = std::fs::remove_dir_all(&staging);
            if !merged.is_dir() {
                return Err(PackageError::Platform(format!(
                    "publishing the merged layers {name} in {}",
                    self.dir.display()
                )));
            }
        }
        Ok(merged)
    }

    fn scratch_path(&self, what: &str) -> PathBuf {
        self.dir
            .join(format!(".staging-{what}-{}", uuid::Uuid::new_v4().simple()))
    }

    /// Removes every working copy and leftover staging directory (and nothing else that
    /// might share the directory).
    pub(crate) fn clear(&self) -> std::io::Result<()> {
        let Ok(entries) = std::fs::read_dir(&self.dir) else {
            return Ok(());
        };
        for entry in entries {
            let entry = entry?;
            let name = entry.file_name();
            let name = name.to_string_lossy();
            let digest = name
                .strip_suffix(".bare")
                .or_else(|| name.strip_prefix("opt-"))
                .unwrap_or(&name);
            let ours = name.starts_with(".staging-")
                || (digest.len() == 64 && digest.bytes().all(|b| b.is_ascii_hexdigit()));
            if !ours {
                continue;
            }
            let path = entry.path();
            if entry.file_type()?.is_dir() {
                std::fs::remove_dir_all(&path)?;
            } else {
                std::fs::remove_file(&path)?;
            }
        }
        Ok(())
    }
}

/// Lays the tree `from` over `onto`. Working copies hold only directories and regular
/// files (the zip intake makes nothing else).
fn overlay(from: &Path, onto: &Path) -> std::io::Result<()> {
    for entry in std::fs::read_dir(from)? {
        let entry = entry?;
        let target = onto.join(entry.file_name());
        let existing = std::fs::symlink_metadata(&target).ok();
        if entry.file_type()?.is_dir() {
            if existing.as_ref().is_some_and(|m| !m.is_dir()) {
                std::fs::remove_file(&target)?;
            }
            std::fs::create_dir_all(&target)?;
            overlay(&entry.path(), &target)?;
        } else {
            match existing {
                Some(m) if m.is_dir() => std::fs::remove_dir_all(&target)?,
                Some(_) => std::fs::remove_file(&target)?,
                None => {}
            }
            if std::fs::hard_link(entry.path(), &target).is_err() {
                std::fs::copy(entry.path(), &target)?;
            }
        }
    }
    Ok(())
}

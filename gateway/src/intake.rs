//! Code intake: a deployment zip is checked, unpacked and stored content-addressed by
//! its SHA-256, so identical uploads share one copy and a package never changes under a
//! running function.

use std::io::Read;
use std::path::{Component, Path, PathBuf};

use sha2::{Digest, Sha256};

use crate::error::ApiError;

/// Lambda's limits for directly uploaded packages.
pub const MAX_ZIPPED: usize = 52_428_800;
pub const MAX_UNZIPPED: u64 = 262_144_000;
const MAX_ENTRIES: usize = 20_000;

const UNZIP_FAILED: &str =
    "Could not unzip uploaded file. Please check your file, then try to upload again.";

/// A package stored on this node.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StoredPackage {
    /// Lowercase hex SHA-256 of the zip.
    pub digest: String,
    pub zipped_bytes: u64,
    pub unzipped_bytes: u64,
    pub root: PathBuf,
}

/// Checks, unpacks and stores a zip under `packages_dir/<digest>/`. Idempotent.
pub fn store_zip(packages_dir: &Path, zip_bytes: &[u8]) -> Result<StoredPackage, ApiError> {
    if zip_bytes.len() > MAX_ZIPPED {
        return Err(ApiError::RequestTooLarge(format!(
            "Zipped size must be smaller than {MAX_ZIPPED} bytes"
        )));
    }
    let digest = hex::encode(Sha256::digest(zip_bytes));
    let root = packages_dir.join(&digest);
    let zip_path = packages_dir.join(format!("{digest}.zip"));
    if root.is_dir() && zip_path.is_file() {
        let unzipped_bytes = dir_size(&root).map_err(ApiError::service)?;
        return Ok(StoredPackage {
            digest,
            zipped_bytes: zip_bytes.len() as u64,
            unzipped_bytes,
            root,
        });
    }
    std::fs::create_dir_all(packages_dir).map_err(ApiError::service)?;
    let staging = packages_dir.join(format!(".staging-{}", uuid::Uuid::new_v4()));
    let unpacked = unpack(zip_bytes, &staging);
    let unzipped_bytes = match unpacked {
        Ok(n) => n,
        Err(e) => {
            let _ = std::fs::remove_dir_all(&staging);
            return Err(e);
        }
    };
    // Publish atomically: a concurrent identical upload may have won; that is fine.
    if let Err(e) = std::fs::rename(&staging, &root) {
        let _ = std::fs::remove_dir_all(&staging);
        if !root.is_dir() {
            return Err(ApiError::service(format!("storing package: {e}")));
        }
    }
    let tmp_zip = packages_dir.join(format!(".zip-{}", uuid::Uuid::new_v4()));
    std::fs::write(&tmp_zip, zip_bytes)
        .and_then(|()| std::fs::rename(&tmp_zip, &zip_path))
        .map_err(|e| ApiError::service(format!("storing zip: {e}")))?;
    Ok(StoredPackage {
        digest,
        zipped_bytes: zip_bytes.len() as u64,
        unzipped_bytes,
        root,
    })
}

/// A relative path that stays inside the package, or a reason it does not.
pub fn safe_entry_path(name: &str) -> Result<PathBuf, String> {
    if name.contains('\\') || name.contains('\0') {
        return Err(format!(
            "The deployment package contains an invalid path: {name}"
        ));
    }
    let path = Path::new(name);
    let mut out = PathBuf::new();
    for c in path.components() {
        match c {
            Component::Normal(part) => out.push(part),
            Component::CurDir => {}
            Component::ParentDir | Component::RootDir | Component::Prefix(_) => {
                return Err(format!(
                    "The deployment package contains a path outside the package: {name}"
                ));
            }
        }
    }
    if out.as_os_str().is_empty() {
        return Err(format!(
            "The deployment package contains an invalid path: {name}"
        ));
    }
    Ok(out)
}

fn unpack(zip_bytes: &[u8], dest: &Path) -> Result<u64, ApiError> {
    let invalid = |m: String| ApiError::InvalidParameterValue(m);
    let mut archive = zip::ZipArchive::new(std::io::Cursor::new(zip_bytes))
        .map_err(|_| invalid(UNZIP_FAILED.into()))?;
    if archive.len() > MAX_ENTRIES {
        return Err(invalid(format!(
            "The deployment package has more than {MAX_ENTRIES} files."
        )));
    }
    std::fs::create_dir_all(dest).map_err(ApiError::service)?;
    let too_large = || {
        invalid(format!(
            "Unzipped size must be smaller than {MAX_UNZIPPED} bytes"
        ))
    };
    let mut total: u64 = 0;
    for i in 0..archive.len() {
        let mut entry = archive
            .by_index(i)
            .map_err(|_| invalid(UNZIP_FAILED.into()))?;
        let name = entry
            .name()
            .map_err(|_| invalid(UNZIP_FAILED.into()))?
            .into_owned();
        let rel = safe_entry_path(&name).map_err(invalid)?;
        if entry.is_symlink() {
            return Err(invalid(format!(
                "The deployment package contains a symbolic link, which is not allowed: {name}"
            )));
        }
        let target = dest.join(&rel);
        if entry.is_dir() {
            std::fs::create_dir_all(&target).map_err(ApiError::service)?;
            continue;
        }
        // Declared sizes can lie (a zip bomb): count the bytes actually inflated.
        if total.saturating_add(entry.size()) > MAX_UNZIPPED {
            return Err(too_large());
        }
        if let Some(parent) = target.parent() {
            std::fs::create_dir_all(parent).map_err(ApiError::service)?;
        }
        let mut out = std::fs::File::create(&target).map_err(ApiError::service)?;
        let budget = MAX_UNZIPPED - total;
        let written = std::io::copy(&mut (&mut entry).take(budget + 1), &mut out)
            .map_err(|_| invalid(UNZIP_FAILED.into()))?;
        if written > budget {
            return Err(too_large());
        }
        total += written;
    }
    make_read_only(dest).map_err(ApiError::service)?;
    Ok(total)
}

fn make_read_only(dir: &Path) -> std::io::Result<()> {
    for entry in std::fs::read_dir(dir)? {
        let entry = entry?;
        let path = entry.path();
        if entry.file_type()?.is_dir() {
            make_read_only(&path)?;
        } else {
            let mut perms = entry.metadata()?.permissions();
            perms.set_readonly(true);
            std::fs::set_permissions(&path, perms)?;
        }
    }
    Ok(())
}

fn dir_size(dir: &Path) -> std::io::Result<u64> {
    let mut total = 0;
    for entry in std::fs::read_dir(dir)? {
        let entry = entry?;
        total += if entry.file_type()?.is_dir() {
            dir_size(&entry.path())?
        } else {
            entry.metadata()?.len()
        };
    }
    Ok(total)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Write;

    pub fn zip_of(files: &[(&str, &[u8])]) -> Vec<u8> {
        let mut buf = std::io::Cursor::new(Vec::new());
        {
            let mut w = zip::ZipWriter::new(&mut buf);
            let opts = zip::write::SimpleFileOptions::default()
                .compression_method(zip::CompressionMethod::Deflated);
            for (name, data) in files {
                w.start_file(*name, opts).unwrap();
                w.write_all(data).unwrap();
            }
            w.finish().unwrap();
        }
        buf.into_inner()
    }

    #[test]
    fn stores_content_addressed_and_idempotently() {
        let dir = tempfile::tempdir().unwrap();
        let zip = zip_of(&[("function.wasm", b"\0asm"), ("lib/data.txt", b"hi")]);
        let a = store_zip(dir.path(), &zip).unwrap();
        let b = store_zip(dir.path(), &zip).unwrap();
        assert_eq!(a, b);
        assert_eq!(a.unzipped_bytes, 6);
        assert_eq!(std::fs::read(a.root.join("lib/data.txt")).unwrap(), b"hi");
        assert!(dir.path().join(format!("{}.zip", a.digest)).is_file());
    }

    #[test]
    fn rejects_unsafe_and_broken_packages() {
        let dir = tempfile::tempdir().unwrap();
        for (files, expect) in [
            (vec![("../evil", &b"x"[..])], "outside the package"),
            (vec![("/etc/passwd", &b"x"[..])], "outside the package"),
            (vec![("a/../../evil", &b"x"[..])], "outside the package"),
            (vec![("a\\..\\evil", &b"x"[..])], "invalid path"),
        ] {
            let err = store_zip(dir.path(), &zip_of(&files)).unwrap_err();
            assert!(err.to_string().contains(expect), "{err}");
        }
        let err = store_zip(dir.path(), b"not a zip").unwrap_err();
        assert_eq!(err.to_string(), UNZIP_FAILED);
        // Nothing half-written is left behind.
        let left: Vec<_> = std::fs::read_dir(dir.path()).unwrap().collect();
        assert!(left.is_empty(), "{left:?}");
    }

    #[test]
    fn zip_bombs_are_stopped_by_what_they_inflate_to() {
        let dir = tempfile::tempdir().unwrap();
        // 300 MB of zeros compresses to a few hundred KB.
        let mut buf = std::io::Cursor::new(Vec::new());
        {
            let mut w = zip::ZipWriter::new(&mut buf);
            let opts = zip::write::SimpleFileOptions::default()
                .compression_method(zip::CompressionMethod::Deflated);
            w.start_file("bomb.bin", opts).unwrap();
            let chunk = vec![0u8; 1 << 20];
            for _ in 0..300 {
                w.write_all(&chunk).unwrap();
            }
            w.finish().unwrap();
        }
        let zip = buf.into_inner();
        assert!(zip.len() < 2 << 20);
        let err = store_zip(dir.path(), &zip).unwrap_err();
        assert!(
            err.to_string().contains("Unzipped size must be smaller"),
            "{err}"
        );
    }

    #[test]
    fn symlinks_are_refused() {
        let dir = tempfile::tempdir().unwrap();
        let mut buf = std::io::Cursor::new(Vec::new());
        {
            let mut w = zip::ZipWriter::new(&mut buf);
            w.add_symlink(
                "link",
                "/etc/passwd",
                zip::write::SimpleFileOptions::default(),
            )
            .unwrap();
            w.finish().unwrap();
        }
        let err = store_zip(dir.path(), &buf.into_inner()).unwrap_err();
        assert!(err.to_string().contains("symbolic link"), "{err}");
    }
}

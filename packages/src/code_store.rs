//! The code store: every package a node took in, kept as one blob per digest (sealed,
//! unless the node was told not to) in a local directory, under a prefix of an S3
//! bucket, or in a store the node shares with the rest of its cluster (the database), so
//! that every node of a cluster reaches every package. Blobs are written whole or not at
//! all, and checked against their digest whenever they are read back.

use std::io::{Read, Write};
use std::path::{Path, PathBuf};

use sha2::{Digest, Sha256};

use crate::error::PackageError;
use crate::s3::S3;
use crate::seal::{self, OpenError, SealKey};

/// Where a node keeps its packages (`--code-store`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum CodeStoreLocation {
    Local(PathBuf),
    S3 {
        bucket: String,
        prefix: String,
    },
    /// Blobs kept by the cluster's shared store (the database), handed in by the node.
    Shared(SharedBlobsRef),
}

/// Named blobs every node of a cluster reaches, kept outside this crate (the node hands
/// in its database). Blobs are written whole or not at all.
#[async_trait::async_trait]
pub trait SharedBlobs: Send + Sync {
    async fn exists(&self, name: &str) -> Result<bool, PackageError>;
    /// Stores the file at `path` as blob `name`.
    async fn put_file(&self, name: &str, path: &Path) -> Result<(), PackageError>;
    /// Writes blob `name` to `dest`; false when there is no such blob.
    async fn get_file(&self, name: &str, dest: &Path) -> Result<bool, PackageError>;
    /// What the store is, for messages: "the database".
    fn describe(&self) -> String;
}

/// A handle on a [`SharedBlobs`]; two handles are equal when they are the same store.
#[derive(Clone)]
pub struct SharedBlobsRef(pub std::sync::Arc<dyn SharedBlobs>);

impl std::fmt::Debug for SharedBlobsRef {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0.describe())
    }
}

impl PartialEq for SharedBlobsRef {
    fn eq(&self, other: &Self) -> bool {
        std::sync::Arc::ptr_eq(&self.0, &other.0)
    }
}

impl Eq for SharedBlobsRef {}

impl CodeStoreLocation {
    /// `s3://bucket[/prefix]`, or a local directory.
    pub fn parse(value: &str) -> Result<CodeStoreLocation, String> {
        let Some(rest) = value.strip_prefix("s3://") else {
            return Ok(CodeStoreLocation::Local(PathBuf::from(value)));
        };
        let (bucket, prefix) = rest.split_once('/').unwrap_or((rest, ""));
        if bucket.is_empty() {
            return Err(format!("{value} names no bucket: write s3://bucket/prefix"));
        }
        Ok(CodeStoreLocation::S3 {
            bucket: bucket.to_owned(),
            prefix: prefix.trim_matches('/').to_owned(),
        })
    }
}

impl std::fmt::Display for CodeStoreLocation {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            CodeStoreLocation::Local(dir) => write!(f, "{}", dir.display()),
            CodeStoreLocation::S3 { bucket, prefix } => write!(f, "s3://{bucket}/{prefix}"),
            CodeStoreLocation::Shared(blobs) => f.write_str(&blobs.0.describe()),
        }
    }
}

/// How a blob is kept: sealed, or as the object itself.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Form {
    Sealed,
    Plain,
}

impl Form {
    fn suffix(self) -> &'static str {
        match self {
            Form::Sealed => "sealed",
            Form::Plain => "plain",
        }
    }
}

#[derive(Debug, Clone)]
pub(crate) struct CodeStore {
    location: CodeStoreLocation,
    s3: S3,
    key: SealKey,
    new_blobs: Form,
}

impl CodeStore {
    pub(crate) fn new(location: CodeStoreLocation, s3: S3, key: SealKey, seal_new: bool) -> Self {
        CodeStore {
            location,
            s3,
            key,
            new_blobs: if seal_new { Form::Sealed } else { Form::Plain },
        }
    }

    pub(crate) fn location(&self) -> &CodeStoreLocation {
        &self.location
    }

    fn name(digest: &str, form: Form) -> String {
        format!("{digest}.{}", form.suffix())
    }

    fn object_key(prefix: &str, name: &str) -> String {
        if prefix.is_empty() {
            name.to_owned()
        } else {
            format!("{prefix}/{name}")
        }
    }

    /// Whether the package is stored in the form new blobs take: a package kept in
    /// plaintext before sealing was turned on is sealed when it is deployed again.
    pub(crate) async fn contains(&self, digest: &str) -> Result<bool, PackageError> {
        let name = Self::name(digest, self.new_blobs);
        match &self.location {
            CodeStoreLocation::Local(dir) => Ok(dir.join(&name).is_file()),
            CodeStoreLocation::S3 { bucket, prefix } => {
                self.s3
                    .exists(bucket, &Self::object_key(prefix, &name))
                    .await
            }
            CodeStoreLocation::Shared(blobs) => blobs.0.exists(&name).await,
        }
    }

    /// Writes the object at `object`, sealed as this store seals new blobs, to `scratch`,
    /// from where it is copied to a bucket or the database.
    async fn seal_to(
        &self,
        digest: &str,
        object: &Path,
        scratch: &Path,
    ) -> Result<(), PackageError> {
        let (key, form, object, scratch, digest) = (
            self.key.clone(),
            self.new_blobs,
            object.to_owned(),
            scratch.to_owned(),
            digest.to_owned(),
        );
        blocking(move || write_blob(&key, form, &digest, &object, &scratch)).await
    }

    /// Stores the object at `object` as package `digest`; `scratch` is a free path for the
    /// sealed copy on its way to a bucket.
    pub(crate) async fn put(
        &self,
        digest: &str,
        object: &Path,
        scratch: &Path,
    ) -> Result<(), PackageError> {
        let name = Self::name(digest, self.new_blobs);
        match &self.location {
            CodeStoreLocation::Local(dir) => {
                let target = dir.join(&name);
                let partial = dir.join(format!(".partial-{}", uuid::Uuid::new_v4().simple()));
                let (key, form, object, digest) = (
                    self.key.clone(),
                    self.new_blobs,
                    object.to_owned(),
                    digest.to_owned(),
                );
                let dir = dir.clone();
                blocking(move || {
                    let written = write_blob(&key, form, &digest, &object, &partial)
                        .and_then(|()| std::fs::rename(&partial, &target).map_err(Into::into))
                        .and_then(|()| sync_dir(&dir).map_err(Into::into));
                    if written.is_err() {
                        let _ = std::fs::remove_file(&partial);
                    }
                    written
                })
                .await
            }
            CodeStoreLocation::S3 { bucket, prefix } => {
                self.seal_to(digest, object, scratch).await?;
                let stored = self
                    .s3
                    .put_file(bucket, &Self::object_key(prefix, &name), scratch)
                    .await;
                let _ = std::fs::remove_file(scratch);
                stored
            }
            CodeStoreLocation::Shared(blobs) => {
                self.seal_to(digest, object, scratch).await?;
                let stored = blobs.0.put_file(&name, scratch).await;
                let _ = std::fs::remove_file(scratch);
                stored
            }
        }
    }

    /// Writes package `digest` as the original object to `dest`, checked against its
    /// digest. Returns false when the store does not hold it.
    pub(crate) async fn get(
        &self,
        digest: &str,
        dest: &Path,
        scratch: &Path,
    ) -> Result<bool, PackageError> {
        for form in [Form::Sealed, Form::Plain] {
            let name = Self::name(digest, form);
            let blob = match &self.location {
                CodeStoreLocation::Local(dir) => {
                    let path = dir.join(&name);
                    if !path.is_file() {
                        continue;
                    }
                    path
                }
                CodeStoreLocation::S3 { bucket, prefix } => {
                    if !self
                        .s3
                        .get_file(bucket, &Self::object_key(prefix, &name), scratch)
                        .await?
                    {
                        let _ = std::fs::remove_file(scratch);
                        continue;
                    }
                    scratch.to_owned()
                }
                CodeStoreLocation::Shared(blobs) => {
                    if !blobs.0.get_file(&name, scratch).await? {
                        let _ = std::fs::remove_file(scratch);
                        continue;
                    }
                    scratch.to_owned()
                }
            };
            let (key, d, dest_path, location) = (
                self.key.clone(),
                digest.to_owned(),
                dest.to_owned(),
                self.location.to_string(),
            );
            let read =
                blocking(move || read_blob(&key, form, &d, &blob, &dest_path, &location)).await;
            if !matches!(self.location, CodeStoreLocation::Local(_)) {
                let _ = std::fs::remove_file(scratch);
            }
            read?;
            return Ok(true);
        }
        Ok(false)
    }
}

fn write_blob(
    key: &SealKey,
    form: Form,
    digest: &str,
    object: &Path,
    target: &Path,
) -> Result<(), PackageError> {
    let src = std::io::BufReader::new(std::fs::File::open(object)?);
    let mut file = std::fs::File::create(target)?;
    {
        let mut out = std::io::BufWriter::new(&mut file);
        match form {
            Form::Sealed => {
                seal::seal(key, digest, src, &mut out)?;
            }
            Form::Plain => {
                std::io::copy(&mut { src }, &mut out)?;
            }
        }
        out.flush()?;
    }
    file.sync_all()?;
    Ok(())
}

fn read_blob(
    key: &SealKey,
    form: Form,
    digest: &str,
    blob: &Path,
    dest: &Path,
    location: &str,
) -> Result<(), PackageError> {
    let src = std::io::BufReader::new(std::fs::File::open(blob)?);
    let mut out = std::io::BufWriter::new(std::fs::File::create(dest)?);
    let sha = match form {
        Form::Sealed => match seal::open(key, digest, src, &mut out) {
            Ok((sha, _)) => sha,
            Err(OpenError::Io(e)) => return Err(e.into()),
            Err(e) => {
                return Err(PackageError::Platform(format!(
                    "package {digest} in the code store {location} does not open: {e}. \
                     Start the node with the server key that sealed it (--server-key-file)."
                )));
            }
        },
        Form::Plain => {
            let mut hasher = Sha256::new();
            let mut reader = src;
            let mut buf = vec![0u8; 64 * 1024];
            loop {
                let n = reader.read(&mut buf)?;
                if n == 0 {
                    break;
                }
                hasher.update(&buf[..n]);
                out.write_all(&buf[..n])?;
            }
            hasher.finalize().into()
        }
    };
    out.flush()?;
    if hex::encode(sha) != digest {
        return Err(PackageError::Platform(format!(
            "package {digest} in the code store {location} is corrupt: its content does not hash to its digest"
        )));
    }
    Ok(())
}

fn sync_dir(dir: &Path) -> std::io::Result<()> {
    std::fs::File::open(dir)?.sync_all()
}

pub(crate) async fn blocking<T: Send + 'static>(
    work: impl FnOnce() -> Result<T, PackageError> + Send + 'static,
) -> Result<T, PackageError> {
    tokio::task::spawn_blocking(work)
        .await
        .map_err(|e| PackageError::platform("package work", e))?
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn locations_parse() {
        assert_eq!(
            CodeStoreLocation::parse("s3://code/cluster/a/").unwrap(),
            CodeStoreLocation::S3 {
                bucket: "code".into(),
                prefix: "cluster/a".into()
            }
        );
        assert_eq!(
            CodeStoreLocation::parse("s3://code").unwrap(),
            CodeStoreLocation::S3 {
                bucket: "code".into(),
                prefix: String::new()
            }
        );
        assert!(CodeStoreLocation::parse("s3:///x").is_err());
        assert_eq!(
            CodeStoreLocation::parse("/var/lib/lamina/packages").unwrap(),
            CodeStoreLocation::Local("/var/lib/lamina/packages".into())
        );
    }
}

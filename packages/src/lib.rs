//! Deployment packages, from the bytes a client sent (or the S3 object it named) to the
//! directory an environment sees as `/var/task`.
//!
//! - [`intake`]: what an object is (a zip, or a bare model or module), pickles refused,
//!   zips unpacked inside themselves and within the limits.
//! - [`limits`]: what one package may weigh.
//! - [`s3`]: the node's S3 client, with Lambda's wording for every failed fetch.
//! - [`seal`]: packages sealed at rest under a key derived from the server key.
//! - `code_store`: one blob per digest, in a local directory or an S3 bucket.
//! - `working_copies`: the plaintext copies environments read, emptied at start and stop.
//!
//! A package is taken in once: fetched or received, checked, laid out, then stored by
//! the SHA-256 of the object. A cold start never reads from S3 or from the code store;
//! a node that lacks a working copy (after a restart, or a package another node took
//! in) lays it out again from the code store, checked against its digest.

mod code_store;
pub mod error;
pub mod intake;
pub mod limits;
pub mod s3;
pub mod seal;
mod working_copies;

use std::path::{Path, PathBuf};
use std::sync::Arc;

use protocol::Runtime;
use sha2::{Digest, Sha256};

pub use code_store::{CodeStoreLocation, SharedBlobs, SharedBlobsRef};
pub use error::PackageError;
pub use intake::Shape;
pub use limits::PackageLimits;
pub use s3::{S3, S3Config, S3Location};
pub use seal::SealKey;

use code_store::{CodeStore, blocking};
use working_copies::WorkingCopies;

/// Where a node's packages live and how they are kept.
#[derive(Debug, Clone)]
pub struct PackagesConfig {
    /// The plaintext working copies (`--package-cache-dir`).
    pub working_dir: PathBuf,
    /// Where packages of an earlier version of Lamina may still lie in plaintext
    /// (`<data-dir>/packages`), to be sealed into the code store at start.
    pub legacy_dir: PathBuf,
    pub code_store: CodeStoreLocation,
    pub seal_key: SealKey,
    /// Whether new blobs are sealed (`--encrypt-packages`); sealed blobs always open.
    pub encrypt: bool,
    pub limits: PackageLimits,
    pub s3: S3Config,
}

impl PackagesConfig {
    /// The defaults under a node's data directory: packages sealed in `packages/`,
    /// working copies in `unpacked/`, Lambda's limits, S3 on AWS's endpoint for `region`.
    pub fn in_data_dir(data_dir: &Path, seal_key: SealKey, region: &str) -> PackagesConfig {
        PackagesConfig {
            working_dir: data_dir.join("unpacked"),
            legacy_dir: data_dir.join("packages"),
            code_store: CodeStoreLocation::Local(data_dir.join("packages")),
            seal_key,
            encrypt: true,
            limits: PackageLimits::default(),
            s3: S3Config {
                region: region.to_owned(),
                ..S3Config::default()
            },
        }
    }
}

/// Where a function's code comes from.
#[derive(Debug, Clone)]
pub enum Source {
    /// `Code.ZipFile`: the bytes, already decoded.
    Upload(Vec<u8>),
    /// `Code.S3Bucket`, `S3Key` and `S3ObjectVersion`.
    S3(S3Location),
}

/// A package taken in.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Stored {
    /// Lowercase hex SHA-256 of the object (the zip, or the bare file).
    pub digest: String,
    /// The object's size (`CodeSize`).
    pub size: u64,
    pub unzipped_bytes: u64,
    /// The working copy.
    pub root: PathBuf,
}

/// The packages of one node.
#[derive(Debug, Clone)]
pub struct Packages {
    inner: Arc<Inner>,
}

#[derive(Debug)]
struct Inner {
    limits: PackageLimits,
    s3: S3,
    store: CodeStore,
    copies: WorkingCopies,
    /// Objects on their way in: plaintext, so beside the working copies (on tmpfs when
    /// they are), never in the data directory.
    incoming: PathBuf,
    legacy_dir: PathBuf,
}

/// A file on its way in, removed whatever happens to the request that brought it.
struct Incoming(PathBuf);

/// An object received or fetched, not yet checked.
struct Received {
    object: Incoming,
    sha256: [u8; 32],
    size: u64,
    /// Its first bytes, which tell its shape.
    head: Vec<u8>,
}

impl Drop for Incoming {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(&self.0);
    }
}

impl Packages {
    /// Opens the node's packages: plaintext left by a previous process (a crash skips
    /// the cleanup at stop) and half-received objects are removed first.
    pub fn open(config: PackagesConfig) -> Result<Packages, PackageError> {
        let s3 = S3::new(&config.s3)?;
        if let CodeStoreLocation::Local(dir) = &config.code_store {
            std::fs::create_dir_all(dir)?;
        }
        let incoming = config.working_dir.join(".incoming");
        std::fs::create_dir_all(&incoming)?;
        for entry in std::fs::read_dir(&incoming)?.flatten() {
            let _ = std::fs::remove_file(entry.path());
        }
        let copies = WorkingCopies::open(config.working_dir)?;
        copies.clear()?;
        Ok(Packages {
            inner: Arc::new(Inner {
                limits: config.limits,
                store: CodeStore::new(
                    config.code_store,
                    s3.clone(),
                    config.seal_key,
                    config.encrypt,
                ),
                s3,
                copies,
                incoming,
                legacy_dir: config.legacy_dir,
            }),
        })
    }

    pub fn limits(&self) -> PackageLimits {
        self.inner.limits
    }

    pub fn code_store(&self) -> &CodeStoreLocation {
        self.inner.store.location()
    }

    /// Where the working copies are: the catalog places a version's package at
    /// `<working dir>/<digest>`.
    pub fn working_dir(&self) -> &Path {
        self.inner.copies.dir()
    }

    /// The working copy of package `digest`.
    pub fn root(&self, digest: &str) -> PathBuf {
        self.inner.copies.root(digest)
    }

    fn incoming(&self, what: &str) -> Incoming {
        Incoming(
            self.inner
                .incoming
                .join(format!("{what}-{}", uuid::Uuid::new_v4().simple())),
        )
    }

    /// Takes in a function's code for `runtime` and `handler`: receives or fetches the
    /// object, checks it, lays it out and stores it. Nothing is left behind on failure.
    pub async fn take(
        &self,
        source: Source,
        runtime: Runtime,
        handler: &str,
    ) -> Result<Stored, PackageError> {
        let object_name = match &source {
            Source::S3(location) => Some(location.key.clone()),
            Source::Upload(_) => None,
        };
        intake::refuse_pickle_names(runtime, handler, object_name.as_deref())?;
        let received = self.receive(source).await?;
        let shape = intake::shape(&received.head);
        if shape == Shape::Bare {
            intake::check_bare(runtime, &received.head, object_name.as_deref())?;
            intake::check_bare_handler(runtime, handler)?;
        }
        let digest = hex::encode(received.sha256);
        let unzipped_bytes = self
            .lay_out(&digest, &received.object.0, shape, handler)
            .await?;
        if runtime == Runtime::Python314 {
            self.refuse_native_extensions(self.root(&digest)).await?;
        }
        if let Ok(handler_file) = intake::safe_entry_path(handler) {
            let path = self.root(&digest).join(handler_file);
            if path.is_file() {
                intake::refuse_pickle_content(runtime, handler, &read_head(&path)?)?;
            }
        }
        self.store(&digest, &received.object).await?;
        Ok(Stored {
            root: self.root(&digest),
            digest,
            size: received.size,
            unzipped_bytes,
        })
    }

    /// Takes in a layer's zip (PublishLayerVersion's `Content`): received or fetched,
    /// checked, laid out and stored like a function's code. A layer is always a zip.
    pub async fn take_layer(&self, source: Source) -> Result<Stored, PackageError> {
        let received = self.receive(source).await?;
        if intake::shape(&received.head) != Shape::Zip {
            return Err(PackageError::Invalid(intake::UNZIP_FAILED.into()));
        }
        let digest = hex::encode(received.sha256);
        let unzipped_bytes = self
            .lay_out(&digest, &received.object.0, Shape::Zip, "")
            .await?;
        self.store(&digest, &received.object).await?;
        Ok(Stored {
            root: self.root(&digest),
            digest,
            size: received.size,
            unzipped_bytes,
        })
    }

    /// Refuses a Python package or layer with a compiled extension module, which no
    /// WebAssembly guest can load.
    pub async fn refuse_native_extensions(&self, root: PathBuf) -> Result<(), PackageError> {
        tokio::task::spawn_blocking(move || intake::refuse_native_extensions(&root))
            .await
            .map_err(|e| PackageError::platform("checking the package's files", e))?
    }

    /// Receives the object (or fetches it from S3) into a file on its way in.
    async fn receive(&self, source: Source) -> Result<Received, PackageError> {
        let limits = self.inner.limits;
        if let (Source::S3(location), CodeStoreLocation::S3 { bucket, prefix }) =
            (&source, self.inner.store.location())
            && location.bucket == *bucket
            && (prefix.is_empty() || location.key.starts_with(&format!("{prefix}/")))
        {
            // Every account's packages are under that prefix; no account deploys from it.
            return Err(PackageError::Invalid(s3::access_denied_message(location)));
        }
        let object = self.incoming("object");
        let (sha256, size, head) = match &source {
            Source::Upload(bytes) => {
                if bytes.len() as u64 > limits.max_zipped {
                    return Err(PackageError::TooLarge(limits.zipped_message()));
                }
                tokio::fs::write(&object.0, bytes).await?;
                let head = bytes[..bytes.len().min(16)].to_vec();
                (
                    <[u8; 32]>::from(Sha256::digest(bytes)),
                    bytes.len() as u64,
                    head,
                )
            }
            Source::S3(location) => {
                let fetched = self
                    .inner
                    .s3
                    .fetch_code(
                        location,
                        limits.max_unzipped,
                        || PackageError::Invalid(limits.unzipped_message()),
                        &object.0,
                    )
                    .await?;
                (fetched.sha256, fetched.size, fetched.head)
            }
        };
        Ok(Received {
            object,
            sha256,
            size,
            head,
        })
    }

    /// Puts the object in the code store under `digest`, unless it is there already.
    async fn store(&self, digest: &str, object: &Incoming) -> Result<(), PackageError> {
        if !self.inner.store.contains(digest).await? {
            let scratch = self.incoming("sealed");
            self.inner.store.put(digest, &object.0, &scratch.0).await?;
        }
        Ok(())
    }

    async fn lay_out(
        &self,
        digest: &str,
        object: &Path,
        shape: Shape,
        handler: &str,
    ) -> Result<u64, PackageError> {
        let (this, digest, object, handler) = (
            self.clone(),
            digest.to_owned(),
            object.to_owned(),
            handler.to_owned(),
        );
        blocking(move || {
            this.inner
                .copies
                .lay_out(&digest, &object, shape, &handler, &this.inner.limits)
        })
        .await
    }

    /// Makes sure the working copy of `digest` is there for `handler`, laying it out
    /// again from the code store when it is not.
    pub async fn materialise(&self, digest: &str, handler: &str) -> Result<PathBuf, PackageError> {
        if self.inner.copies.is_ready(digest, handler) {
            return Ok(self.root(digest));
        }
        let object = self.fetch_stored(digest).await?;
        let head = read_head(&object.0)?;
        self.lay_out(digest, &object.0, intake::shape(&head), handler)
            .await?;
        Ok(self.root(digest))
    }

    /// Makes sure the layers `digests` are laid out and merged in this order, and returns
    /// the merged copy a function sees as `/opt` (None without layers).
    pub async fn materialise_layers(
        &self,
        digests: &[String],
    ) -> Result<Option<PathBuf>, PackageError> {
        if digests.is_empty() {
            return Ok(None);
        }
        let mut roots = Vec::with_capacity(digests.len());
        for digest in digests {
            roots.push(self.materialise(digest, "").await?);
        }
        let name = protocol::spec::merged_layers_dir(digests);
        let copies = self.inner.copies.clone();
        blocking(move || copies.merge(&name, &roots))
            .await
            .map(Some)
    }

    /// The unpacked size of the laid-out package `digest`.
    pub async fn unpacked_size(&self, digest: &str) -> Result<u64, PackageError> {
        let root = self.root(digest);
        blocking(move || Ok(intake::dir_size(&root)?)).await
    }

    async fn fetch_stored(&self, digest: &str) -> Result<Incoming, PackageError> {
        let object = self.incoming("object");
        let scratch = self.incoming("sealed");
        if !self.inner.store.get(digest, &object.0, &scratch.0).await? {
            return Err(PackageError::Platform(format!(
                "package {digest} is not in the code store {}",
                self.inner.store.location()
            )));
        }
        Ok(object)
    }

    /// The original object of package `digest` (GetFunction's `Code.Location`), as an
    /// open file that is already unlinked, with its shape.
    pub async fn export(&self, digest: &str) -> Result<(std::fs::File, Shape), PackageError> {
        let object = self.fetch_stored(digest).await?;
        let head = read_head(&object.0)?;
        let file = std::fs::File::open(&object.0)?;
        Ok((file, intake::shape(&head)))
    }

    /// Seals and stores the packages an earlier version of Lamina kept in plaintext in a
    /// local code store (`<digest>.zip` beside its unpacked `<digest>/`), then removes
    /// the plaintext. Returns how many it adopted.
    pub async fn adopt_plaintext_packages(&self) -> Result<usize, PackageError> {
        let dir = self.inner.legacy_dir.clone();
        if !dir.is_dir() {
            return Ok(0);
        }
        let mut adopted = 0;
        for entry in std::fs::read_dir(&dir)?.flatten() {
            let name = entry.file_name().to_string_lossy().into_owned();
            let Some(digest) = name.strip_suffix(".zip") else {
                continue;
            };
            if digest.len() != 64 || !digest.bytes().all(|b| b.is_ascii_hexdigit()) {
                continue;
            }
            if !self.inner.store.contains(digest).await? {
                let scratch = self.incoming("sealed");
                self.inner
                    .store
                    .put(digest, &entry.path(), &scratch.0)
                    .await?;
            }
            let unpacked = dir.join(digest);
            if unpacked.is_dir() {
                std::fs::remove_dir_all(&unpacked)?;
            }
            std::fs::remove_file(entry.path())?;
            adopted += 1;
        }
        Ok(adopted)
    }

    /// Removes the blobs of a local code store that no version uses (a deploy refused
    /// after its package was stored, a function deleted). Only a local store: a bucket
    /// may be shared by nodes deploying at this moment. Returns how many it removed.
    pub fn remove_unreferenced(
        &self,
        referenced: &std::collections::BTreeSet<String>,
    ) -> Result<usize, PackageError> {
        let CodeStoreLocation::Local(dir) = self.inner.store.location() else {
            return Ok(0);
        };
        let mut removed = 0;
        for entry in std::fs::read_dir(dir)?.flatten() {
            let name = entry.file_name().to_string_lossy().into_owned();
            let Some((digest, form)) = name.split_once('.') else {
                continue;
            };
            if matches!(form, "sealed" | "plain") && !referenced.contains(digest) {
                std::fs::remove_file(entry.path())?;
                removed += 1;
            }
        }
        Ok(removed)
    }

    /// Removes every plaintext working copy (at a graceful stop).
    pub fn clear_working_copies(&self) -> Result<(), PackageError> {
        Ok(self.inner.copies.clear()?)
    }
}

fn read_head(path: &Path) -> Result<Vec<u8>, PackageError> {
    use std::io::Read as _;
    let mut head = Vec::with_capacity(16);
    std::fs::File::open(path)?.take(16).read_to_end(&mut head)?;
    Ok(head)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Write as _;

    fn zip_of(files: &[(&str, &[u8])]) -> Vec<u8> {
        let mut buf = std::io::Cursor::new(Vec::new());
        {
            let mut w = zip::ZipWriter::new(&mut buf);
            for (name, data) in files {
                w.start_file(*name, zip::write::SimpleFileOptions::default())
                    .unwrap();
                w.write_all(data).unwrap();
            }
            w.finish().unwrap();
        }
        buf.into_inner()
    }

    fn open(dir: &Path, key: u8, encrypt: bool) -> Packages {
        let mut config = PackagesConfig::in_data_dir(dir, SealKey::new([key; 32]), "us-east-1");
        config.encrypt = encrypt;
        Packages::open(config).unwrap()
    }

    /// Every file under `dir`, with its bytes.
    fn files_under(dir: &Path) -> Vec<(PathBuf, Vec<u8>)> {
        let mut out = Vec::new();
        let mut stack = vec![dir.to_owned()];
        while let Some(d) = stack.pop() {
            for entry in std::fs::read_dir(&d).unwrap().flatten() {
                let path = entry.path();
                if path.is_dir() {
                    stack.push(path);
                } else {
                    out.push((path.clone(), std::fs::read(&path).unwrap()));
                }
            }
        }
        out
    }

    fn holds(files: &[(PathBuf, Vec<u8>)], needle: &[u8]) -> bool {
        files
            .iter()
            .any(|(_, bytes)| bytes.windows(needle.len()).any(|w| w == needle))
    }

    const SECRET_WEIGHTS: &[u8] = b"model weights nobody may read off the disk";

    #[tokio::test]
    async fn a_package_is_sealed_at_rest_and_laid_out_again_after_a_restart() {
        let dir = tempfile::tempdir().unwrap();
        let zip = zip_of(&[("model.onnx", SECRET_WEIGHTS)]);
        let packages = open(dir.path(), 1, true);
        let stored = packages
            .take(Source::Upload(zip.clone()), Runtime::Onnx, "model.onnx")
            .await
            .unwrap();
        assert_eq!(stored.digest, hex::encode(Sha256::digest(&zip)));
        assert_eq!(stored.size, zip.len() as u64);
        assert_eq!(
            std::fs::read(stored.root.join("model.onnx")).unwrap(),
            SECRET_WEIGHTS
        );
        let store = files_under(&dir.path().join("packages"));
        assert_eq!(store.len(), 1, "{store:?}");
        assert!(!holds(&store, SECRET_WEIGHTS));

        // A graceful stop leaves no plaintext anywhere in the data directory.
        packages.clear_working_copies().unwrap();
        assert!(!holds(&files_under(dir.path()), SECRET_WEIGHTS));

        let restarted = open(dir.path(), 1, true);
        let root = restarted
            .materialise(&stored.digest, "model.onnx")
            .await
            .unwrap();
        assert_eq!(
            std::fs::read(root.join("model.onnx")).unwrap(),
            SECRET_WEIGHTS
        );
    }

    #[tokio::test]
    async fn another_key_cannot_open_the_store_and_says_which_flag_fixes_it() {
        let dir = tempfile::tempdir().unwrap();
        let stored = open(dir.path(), 1, true)
            .take(
                Source::Upload(zip_of(&[("f.wasm", b"\0asm")])),
                Runtime::Wasm,
                "f.wasm",
            )
            .await
            .unwrap();
        let err = open(dir.path(), 2, true)
            .materialise(&stored.digest, "f.wasm")
            .await
            .unwrap_err();
        assert!(matches!(err, PackageError::Platform(_)), "{err:?}");
        assert!(err.to_string().contains("--server-key-file"), "{err}");
    }

    #[tokio::test]
    async fn plaintext_mode_keeps_the_object_as_it_came() {
        let dir = tempfile::tempdir().unwrap();
        let zip = zip_of(&[("model.onnx", SECRET_WEIGHTS)]);
        open(dir.path(), 1, false)
            .take(Source::Upload(zip.clone()), Runtime::Onnx, "model.onnx")
            .await
            .unwrap();
        let store = files_under(&dir.path().join("packages"));
        assert_eq!(store.len(), 1);
        assert_eq!(store[0].1, zip);
    }

    #[tokio::test]
    async fn a_bare_model_takes_the_name_of_each_handler_that_deploys_it() {
        let dir = tempfile::tempdir().unwrap();
        let packages = open(dir.path(), 1, true);
        let model = b"\x08\x07 an onnx protobuf".to_vec();
        let first = packages
            .take(Source::Upload(model.clone()), Runtime::Onnx, "model.onnx")
            .await
            .unwrap();
        let second = packages
            .take(
                Source::Upload(model.clone()),
                Runtime::Onnx,
                "models/v2.onnx",
            )
            .await
            .unwrap();
        assert_eq!(first.digest, second.digest);
        assert_eq!(std::fs::read(first.root.join("model.onnx")).unwrap(), model);
        assert_eq!(
            std::fs::read(first.root.join("models/v2.onnx")).unwrap(),
            model
        );
        // No one plants a settings file in a package others run.
        let err = packages
            .take(
                Source::Upload(model.clone()),
                Runtime::Onnx,
                "lamina-model.json",
            )
            .await
            .unwrap_err();
        assert!(err.to_string().contains(".onnx"), "{err}");
        let err = packages
            .materialise(&first.digest, "lamina-model.json")
            .await
            .unwrap_err();
        assert!(matches!(err, PackageError::Invalid(_)), "{err:?}");
        assert!(!first.root.join("lamina-model.json").exists());
        packages.clear_working_copies().unwrap();
        let root = packages
            .materialise(&first.digest, "other.onnx")
            .await
            .unwrap();
        assert_eq!(std::fs::read(root.join("other.onnx")).unwrap(), model);
    }

    #[tokio::test]
    async fn blobs_no_version_uses_are_removed_and_plaintext_is_sealed_when_deployed_again() {
        let dir = tempfile::tempdir().unwrap();
        let zip = zip_of(&[("model.onnx", SECRET_WEIGHTS)]);
        let stored = open(dir.path(), 1, false)
            .take(Source::Upload(zip.clone()), Runtime::Onnx, "model.onnx")
            .await
            .unwrap();
        let packages = open(dir.path(), 1, true);
        packages
            .take(Source::Upload(zip), Runtime::Onnx, "model.onnx")
            .await
            .unwrap();
        let kept = std::collections::BTreeSet::from([stored.digest.clone()]);
        assert_eq!(packages.remove_unreferenced(&kept).unwrap(), 0);
        let store = dir.path().join("packages");
        assert!(store.join(format!("{}.sealed", stored.digest)).is_file());
        assert_eq!(
            packages.remove_unreferenced(&Default::default()).unwrap(),
            2
        );
        assert_eq!(files_under(&store), vec![]);
    }

    #[tokio::test]
    async fn layers_are_merged_in_order_and_laid_out_again_after_a_restart() {
        let dir = tempfile::tempdir().unwrap();
        let packages = open(dir.path(), 1, true);
        let base = packages
            .take_layer(Source::Upload(zip_of(&[
                ("python/lib.py", b"base"),
                ("shared/x", b"a file here"),
                ("only-base", b"kept"),
            ])))
            .await
            .unwrap();
        let top = packages
            .take_layer(Source::Upload(zip_of(&[
                ("python/lib.py", b"top"),
                ("shared/x/inner", b"a directory there"),
            ])))
            .await
            .unwrap();
        let order = vec![base.digest.clone(), top.digest.clone()];
        let opt = packages.materialise_layers(&order).await.unwrap().unwrap();
        let read = |p: &str| std::fs::read_to_string(opt.join(p)).unwrap();
        assert_eq!(read("python/lib.py"), "top");
        assert_eq!(read("shared/x/inner"), "a directory there");
        assert_eq!(read("only-base"), "kept");
        // The layers' own copies are untouched by the merge.
        assert_eq!(
            std::fs::read_to_string(base.root.join("python/lib.py")).unwrap(),
            "base"
        );
        let reversed = vec![top.digest.clone(), base.digest.clone()];
        let other = packages
            .materialise_layers(&reversed)
            .await
            .unwrap()
            .unwrap();
        assert_ne!(other, opt);
        assert_eq!(
            std::fs::read_to_string(other.join("python/lib.py")).unwrap(),
            "base"
        );
        assert_eq!(packages.materialise_layers(&[]).await.unwrap(), None);

        packages.clear_working_copies().unwrap();
        assert!(!opt.exists());
        let restarted = open(dir.path(), 1, true);
        let again = restarted.materialise_layers(&order).await.unwrap().unwrap();
        assert_eq!(again, opt);
        assert_eq!(
            std::fs::read_to_string(again.join("python/lib.py")).unwrap(),
            "top"
        );

        let err = packages
            .take_layer(Source::Upload(b"\x08\x07 a bare model".to_vec()))
            .await
            .unwrap_err();
        assert_eq!(err.to_string(), intake::UNZIP_FAILED);
    }

    #[tokio::test]
    async fn a_refused_package_leaves_nothing_behind() {
        let dir = tempfile::tempdir().unwrap();
        let packages = open(dir.path(), 1, true);
        for (bytes, runtime) in [
            (zip_of(&[("../evil", b"x")]), Runtime::Wasm),
            (b"plain text".to_vec(), Runtime::Wasm),
            (vec![0x80, 4, 0x95, 1, 2], Runtime::Onnx),
        ] {
            let err = packages
                .take(Source::Upload(bytes), runtime, "handler")
                .await
                .unwrap_err();
            assert!(matches!(err, PackageError::Invalid(_)), "{err:?}");
        }
        let limits = PackageLimits {
            max_zipped: 10,
            ..PackageLimits::default()
        };
        let mut config = PackagesConfig::in_data_dir(dir.path(), SealKey::new([1; 32]), "r");
        config.limits = limits;
        let small = Packages::open(config).unwrap();
        let err = small
            .take(Source::Upload(vec![0; 11]), Runtime::Onnx, "m.onnx")
            .await
            .unwrap_err();
        assert_eq!(err.to_string(), "Zipped size must be smaller than 10 bytes");
        assert_eq!(files_under(dir.path()), vec![]);
    }

    #[tokio::test]
    async fn plaintext_packages_of_an_earlier_version_are_sealed_and_removed() {
        let dir = tempfile::tempdir().unwrap();
        let zip = zip_of(&[("model.onnx", SECRET_WEIGHTS)]);
        let digest = hex::encode(Sha256::digest(&zip));
        let old = dir.path().join("packages");
        std::fs::create_dir_all(old.join(&digest)).unwrap();
        std::fs::write(old.join(&digest).join("model.onnx"), SECRET_WEIGHTS).unwrap();
        std::fs::write(old.join(format!("{digest}.zip")), &zip).unwrap();
        let packages = open(dir.path(), 1, true);
        assert_eq!(packages.adopt_plaintext_packages().await.unwrap(), 1);
        assert!(!holds(&files_under(dir.path()), SECRET_WEIGHTS));
        let root = packages.materialise(&digest, "model.onnx").await.unwrap();
        assert_eq!(
            std::fs::read(root.join("model.onnx")).unwrap(),
            SECRET_WEIGHTS
        );
    }
}

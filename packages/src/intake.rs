//! Intake: what an uploaded or fetched object is (a zip, or a bare model or module),
//! whether it may be taken in at all (never a pickle), and laying it out as a package
//! directory that stays inside itself and within the limits.

use std::io::{Read, Seek};
use std::path::{Component, Path, PathBuf};

use protocol::Runtime;

use crate::error::PackageError;
use crate::limits::PackageLimits;

pub const UNZIP_FAILED: &str =
    "Could not unzip uploaded file. Please check your file, then try to upload again.";

const PICKLE_SUFFIXES: &[&str] = &[".pkl", ".pickle", ".joblib"];

/// How an object's bytes are laid out as a package.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Shape {
    /// A zip archive, unpacked as it is.
    Zip,
    /// One file (a model or a Wasm binary), placed in the package under the handler's
    /// name, because that is what users upload.
    Bare,
}

/// Reads the shape from an object's first bytes.
pub fn shape(head: &[u8]) -> Shape {
    // A local file header, or the end record of an empty archive.
    if head.starts_with(b"PK\x03\x04") || head.starts_with(b"PK\x05\x06") {
        Shape::Zip
    } else {
        Shape::Bare
    }
}

/// Refuses a pickle for the model runtime before anything is fetched or unpacked, when
/// the handler or the object's name already says so.
pub fn refuse_pickle_names(
    runtime: Runtime,
    handler: &str,
    object_name: Option<&str>,
) -> Result<(), PackageError> {
    if runtime != Runtime::Onnx {
        return Ok(());
    }
    for name in std::iter::once(handler).chain(object_name) {
        if is_pickle_name(name) {
            return Err(pickle_refused(name));
        }
    }
    Ok(())
}

/// Decides whether a bare object may stand in for a package of `runtime`.
pub fn check_bare(
    runtime: Runtime,
    head: &[u8],
    object_name: Option<&str>,
) -> Result<(), PackageError> {
    match runtime {
        Runtime::Onnx if looks_like_pickle(head) => {
            Err(pickle_refused(object_name.unwrap_or("the uploaded object")))
        }
        Runtime::Onnx => Ok(()),
        Runtime::Wasm if head.starts_with(b"\0asm") => Ok(()),
        Runtime::Wasm | Runtime::Python314 => Err(PackageError::Invalid(UNZIP_FAILED.into())),
    }
}

/// A bare object becomes one file named by the handler, so the handler must name a file
/// of the runtime's kind: never a settings file (`lamina-model.json`) or anything else an
/// environment would read as more than the model or module itself.
pub fn check_bare_handler(runtime: Runtime, handler: &str) -> Result<(), PackageError> {
    let suffix = match runtime {
        Runtime::Onnx => ".onnx",
        Runtime::Wasm => ".wasm",
        // Never reached: a Python package is always a zip (check_bare).
        Runtime::Python314 => return Err(PackageError::Invalid(UNZIP_FAILED.into())),
    };
    if handler.to_ascii_lowercase().ends_with(suffix) {
        Ok(())
    } else {
        Err(PackageError::Invalid(format!(
            "The object is a single file, not a zip: its Handler must name it with the {suffix} extension (for example model{suffix}), or upload a zip."
        )))
    }
}

/// Whether a package's handler file is a pickle by its first bytes, whatever its name.
pub fn refuse_pickle_content(
    runtime: Runtime,
    handler: &str,
    head: &[u8],
) -> Result<(), PackageError> {
    if runtime == Runtime::Onnx && looks_like_pickle(head) {
        return Err(pickle_refused(handler));
    }
    Ok(())
}

/// Suffixes of compiled extension modules, which a Python runtime built for WebAssembly
/// cannot load.
const NATIVE_EXTENSION_SUFFIXES: &[&str] = &[".so", ".pyd", ".dylib"];

/// Refuses a Python package that carries a compiled extension module (numpy's, say),
/// naming the first one found, since its import would only fail at INIT.
pub fn refuse_native_extensions(root: &Path) -> Result<(), PackageError> {
    match first_native_extension(root, root)? {
        None => Ok(()),
        Some(file) => Err(PackageError::Invalid(format!(
            "The deployment package contains a native extension module, which cannot load in Lamina's \
             WebAssembly Python runtime: {file}. Use pure-Python packages; for a model, export it to \
             ONNX and deploy it with Runtime onnx, which runs it natively on the host."
        ))),
    }
}

fn first_native_extension(root: &Path, dir: &Path) -> std::io::Result<Option<String>> {
    let mut entries: Vec<_> = std::fs::read_dir(dir)?.collect::<Result<_, _>>()?;
    entries.sort_by_key(|e| e.file_name());
    for entry in entries {
        let path = entry.path();
        if entry.file_type()?.is_dir() {
            if let Some(found) = first_native_extension(root, &path)? {
                return Ok(Some(found));
            }
            continue;
        }
        let name = entry.file_name().to_string_lossy().to_ascii_lowercase();
        let is_versioned_so = name.contains(".so.");
        if is_versioned_so || NATIVE_EXTENSION_SUFFIXES.iter().any(|s| name.ends_with(s)) {
            let relative = path.strip_prefix(root).unwrap_or(&path);
            return Ok(Some(relative.to_string_lossy().into_owned()));
        }
    }
    Ok(None)
}

fn is_pickle_name(name: &str) -> bool {
    let lower = name.to_ascii_lowercase();
    PICKLE_SUFFIXES.iter().any(|s| lower.ends_with(s))
}

/// Pickle protocols 2 to 5 open with the PROTO opcode and their number.
fn looks_like_pickle(head: &[u8]) -> bool {
    matches!(head, [0x80, 2..=5, ..])
}

fn pickle_refused(name: &str) -> PackageError {
    PackageError::Invalid(format!(
        "{name} is a Python pickle. Lamina does not load pickles, because loading one runs arbitrary code. \
         Export the model to ONNX with skl2onnx instead: \
         onx = skl2onnx.to_onnx(model, X[:1].astype(\"float32\")); \
         open(\"model.onnx\", \"wb\").write(onx.SerializeToString()); \
         then deploy model.onnx with Runtime onnx."
    ))
}

/// A relative path that stays inside the package, or a reason it does not.
pub fn safe_entry_path(name: &str) -> Result<PathBuf, String> {
    if name.contains('\\') || name.contains('\0') {
        return Err(format!(
            "The deployment package contains an invalid path: {name}"
        ));
    }
    let mut out = PathBuf::new();
    for c in Path::new(name).components() {
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

/// Unpacks a zip into `dest` (created), counting the bytes actually inflated against
/// the unzipped limit. Returns the unpacked size.
pub fn unpack_zip<R: Read + Seek>(
    reader: R,
    dest: &Path,
    limits: &PackageLimits,
) -> Result<u64, PackageError> {
    let invalid = |m: String| PackageError::Invalid(m);
    let mut archive = zip::ZipArchive::new(reader).map_err(|_| invalid(UNZIP_FAILED.into()))?;
    if archive.len() > limits.max_entries {
        return Err(invalid(format!(
            "The deployment package has more than {} files.",
            limits.max_entries
        )));
    }
    std::fs::create_dir_all(dest)?;
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
        // A name the file system cannot hold is the package's fault; anything else the
        // disk says is the node's.
        let path_error = |e: std::io::Error| match e.kind() {
            std::io::ErrorKind::InvalidFilename
            | std::io::ErrorKind::NotADirectory
            | std::io::ErrorKind::IsADirectory
            | std::io::ErrorKind::AlreadyExists => PackageError::Invalid(format!(
                "The deployment package contains an invalid path: {name}"
            )),
            _ => e.into(),
        };
        if entry.is_dir() {
            std::fs::create_dir_all(&target).map_err(path_error)?;
            continue;
        }
        // Declared sizes can lie (a zip bomb): count the bytes actually inflated.
        if total.saturating_add(entry.size()) > limits.max_unzipped {
            return Err(invalid(limits.unzipped_message()));
        }
        if let Some(parent) = target.parent() {
            std::fs::create_dir_all(parent).map_err(path_error)?;
        }
        let mut out = std::fs::File::create(&target).map_err(path_error)?;
        let budget = limits.max_unzipped - total;
        let written = std::io::copy(&mut (&mut entry).take(budget + 1), &mut out)
            .map_err(|_| invalid(UNZIP_FAILED.into()))?;
        if written > budget {
            return Err(invalid(limits.unzipped_message()));
        }
        total += written;
    }
    Ok(total)
}

/// Places a bare object in `dest` under the handler's path. Returns its size.
pub fn place_bare(object: &Path, dest: &Path, handler: &str) -> Result<u64, PackageError> {
    let rel = safe_entry_path(handler).map_err(PackageError::Invalid)?;
    let target = dest.join(rel);
    if let Some(parent) = target.parent() {
        std::fs::create_dir_all(parent)?;
    }
    Ok(std::fs::copy(object, &target)?)
}

/// Marks every file read-only: a package never changes under a running function.
pub fn make_read_only(dir: &Path) -> std::io::Result<()> {
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

/// The bytes under `dir`.
pub fn dir_size(dir: &Path) -> std::io::Result<u64> {
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
    use std::io::{Cursor, Write};

    pub fn zip_of(files: &[(&str, &[u8])]) -> Vec<u8> {
        let mut buf = Cursor::new(Vec::new());
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

    fn unpack(bytes: &[u8], dest: &Path) -> Result<u64, PackageError> {
        unpack_zip(Cursor::new(bytes), dest, &PackageLimits::default())
    }

    #[test]
    fn a_python_package_with_a_compiled_extension_is_refused_by_the_file() {
        let root = tempfile::tempdir().unwrap();
        let dir = root.path().join("numpy/core");
        std::fs::create_dir_all(&dir).unwrap();
        std::fs::write(root.path().join("app.py"), b"").unwrap();
        std::fs::write(
            dir.join("_multiarray_umath.cpython-314-x86_64-linux-gnu.so"),
            b"",
        )
        .unwrap();
        let err = refuse_native_extensions(root.path()).unwrap_err();
        assert!(
            err.to_string()
                .contains("numpy/core/_multiarray_umath.cpython-314-x86_64-linux-gnu.so"),
            "{err}"
        );
        std::fs::remove_dir_all(root.path().join("numpy")).unwrap();
        assert!(refuse_native_extensions(root.path()).is_ok());
    }

    #[test]
    fn zips_unpack_with_their_sizes_counted() {
        let dir = tempfile::tempdir().unwrap();
        let zip = zip_of(&[("function.wasm", b"\0asm"), ("lib/data.txt", b"hi")]);
        assert_eq!(shape(&zip), Shape::Zip);
        assert_eq!(unpack(&zip, dir.path()).unwrap(), 6);
        assert_eq!(
            std::fs::read(dir.path().join("lib/data.txt")).unwrap(),
            b"hi"
        );
    }

    #[test]
    fn unsafe_and_broken_zips_are_refused() {
        for (files, expect) in [
            (vec![("../evil", &b"x"[..])], "outside the package"),
            (vec![("/etc/passwd", &b"x"[..])], "outside the package"),
            (vec![("a/../../evil", &b"x"[..])], "outside the package"),
            (vec![("a\\..\\evil", &b"x"[..])], "invalid path"),
        ] {
            let dir = tempfile::tempdir().unwrap();
            let err = unpack(&zip_of(&files), dir.path()).unwrap_err();
            assert!(err.to_string().contains(expect), "{err}");
        }
        let dir = tempfile::tempdir().unwrap();
        let err = unpack(b"PK\x03\x04 not a zip", dir.path()).unwrap_err();
        assert_eq!(err.to_string(), UNZIP_FAILED);
    }

    #[test]
    fn zip_bombs_are_stopped_by_what_they_inflate_to() {
        let dir = tempfile::tempdir().unwrap();
        // 300 MB of zeros compresses to a few hundred KB.
        let mut buf = Cursor::new(Vec::new());
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
        let err = unpack(&zip, dir.path()).unwrap_err();
        assert!(
            err.to_string().contains("Unzipped size must be smaller"),
            "{err}"
        );
    }

    #[test]
    fn symlinks_are_refused() {
        let dir = tempfile::tempdir().unwrap();
        let mut buf = Cursor::new(Vec::new());
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
        let err = unpack(&buf.into_inner(), dir.path()).unwrap_err();
        assert!(err.to_string().contains("symbolic link"), "{err}");
    }

    #[test]
    fn pickles_are_refused_by_name_and_by_content() {
        let err = refuse_pickle_names(Runtime::Onnx, "model.onnx", Some("models/m.PKL"))
            .unwrap_err()
            .to_string();
        assert!(err.starts_with("models/m.PKL is a Python pickle"), "{err}");
        assert!(
            err.contains("arbitrary code") && err.contains("skl2onnx"),
            "{err}"
        );
        assert!(refuse_pickle_names(Runtime::Onnx, "model.joblib", None).is_err());
        assert!(refuse_pickle_names(Runtime::Wasm, "model.pkl", None).is_ok());
        assert!(check_bare(Runtime::Onnx, &[0x80, 4, 0x95], Some("k")).is_err());
        assert!(check_bare(Runtime::Onnx, b"\x08\x07onnx", Some("k")).is_ok());
    }

    #[test]
    fn a_bare_object_must_be_what_its_runtime_runs() {
        assert_eq!(shape(b"\0asm\x01\0\0\0"), Shape::Bare);
        assert!(check_bare(Runtime::Wasm, b"\0asm\x01\0\0\0", None).is_ok());
        let err = check_bare(Runtime::Wasm, b"text", None).unwrap_err();
        assert_eq!(err.to_string(), UNZIP_FAILED);
    }
}

//! The host side of `lamina:function/task-files`: a file of the function's code or
//! layers, read by the host for a guest that must not open it through WASI (the Python
//! runtime's SnapStart INIT). Only regular files under the two read-only roots are
//! reachable, by a path of plain names.

use std::path::{Path, PathBuf};

/// Bindings of the `task-files` interface in the repository's `wit/` folder.
pub(crate) mod bindings {
    wasmtime::component::bindgen!({
        path: "../wit",
        inline: "
            package lamina:host;
            world task-files-host {
                import lamina:function/task-files@0.1.0;
            }
        ",
        world: "task-files-host",
    });
}

/// A source file larger than this is not a module anyone imports at INIT.
const MAX_FILE_BYTES: u64 = 64 << 20;

/// Where `path` (as the guest sees it) lies on the host, if it names a file under
/// `/var/task` or `/opt` by plain names.
pub(crate) fn resolve(path: &str, task_root: &Path, opt_root: Option<&Path>) -> Option<PathBuf> {
    let (root, rest) = if let Some(rest) = path.strip_prefix("/var/task/") {
        (task_root, rest)
    } else {
        (opt_root?, path.strip_prefix("/opt/")?)
    };
    let mut resolved = root.to_path_buf();
    for part in rest.split('/') {
        if part.is_empty() || part == "." || part == ".." || part.contains('\0') {
            return None;
        }
        resolved.push(part);
    }
    Some(resolved)
}

/// The bytes of the regular file at `path`, if there is one of a sensible size.
pub(crate) fn read(path: &Path) -> Option<Vec<u8>> {
    // Working copies hold no symlinks, but a path must not leave them even if one did.
    let meta = std::fs::symlink_metadata(path).ok()?;
    if !meta.is_file() || meta.len() > MAX_FILE_BYTES {
        return None;
    }
    std::fs::read(path).ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_plain_names_under_the_two_roots_resolve() {
        let task = Path::new("/w/task");
        let opt = Path::new("/w/opt");
        assert_eq!(
            resolve("/var/task/pkg/mod.py", task, Some(opt)),
            Some(PathBuf::from("/w/task/pkg/mod.py"))
        );
        assert_eq!(
            resolve("/opt/python/dep.py", task, Some(opt)),
            Some(PathBuf::from("/w/opt/python/dep.py"))
        );
        for refused in [
            "/opt/python/dep.py",
            "/var/task/../secret",
            "/var/task/./x.py",
            "/var/task//x.py",
            "/var/task/",
            "/etc/passwd",
            "var/task/x.py",
        ] {
            assert_eq!(resolve(refused, task, None), None, "{refused}");
        }
        assert_eq!(resolve("/opt/../x", task, Some(opt)), None);
    }
}

//! Each environment's private `/tmp`. Creating and deleting a directory costs more than
//! instantiating a guest (filesystem metadata, journal), so empty directories are kept
//! and handed to the next environment; a directory a guest wrote to is deleted instead,
//! so nothing ever passes from one environment to another.

use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, PoisonError};

/// Empty directories kept for reuse; beyond this they are deleted.
const MAX_SPARE: usize = 4096;

pub(crate) struct ScratchPool {
    root: PathBuf,
    spare: Mutex<Vec<PathBuf>>,
}

impl ScratchPool {
    /// Starts from an empty `root`: whatever a previous process left there is deleted.
    pub(crate) fn open(root: &Path) -> std::io::Result<Self> {
        match std::fs::remove_dir_all(root) {
            Ok(()) => {}
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
            Err(e) => return Err(e),
        }
        std::fs::create_dir_all(root)?;
        Ok(ScratchPool {
            root: root.to_owned(),
            spare: Mutex::new(Vec::new()),
        })
    }

    pub(crate) fn take(self: &Arc<Self>) -> std::io::Result<ScratchDir> {
        let spare = self
            .spare
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .pop();
        let path = match spare {
            Some(p) => p,
            None => {
                let p = self.root.join(uuid::Uuid::new_v4().simple().to_string());
                std::fs::create_dir(&p)?;
                p
            }
        };
        Ok(ScratchDir {
            path,
            pool: self.clone(),
        })
    }

    fn give_back(&self, path: PathBuf) {
        let empty = std::fs::read_dir(&path).is_ok_and(|mut d| d.next().is_none());
        if empty {
            let mut spare = self.spare.lock().unwrap_or_else(PoisonError::into_inner);
            if spare.len() < MAX_SPARE {
                spare.push(path);
                return;
            }
        }
        if let Err(e) = std::fs::remove_dir_all(&path)
            && e.kind() != std::io::ErrorKind::NotFound
        {
            tracing::warn!(dir = %path.display(), error = %e, "could not remove an environment's /tmp");
        }
    }
}

/// A `/tmp` owned by one environment until it shuts down.
pub(crate) struct ScratchDir {
    path: PathBuf,
    pool: Arc<ScratchPool>,
}

impl ScratchDir {
    pub(crate) fn path(&self) -> &Path {
        &self.path
    }
}

impl Drop for ScratchDir {
    fn drop(&mut self) {
        self.pool.give_back(std::mem::take(&mut self.path));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn empty_directories_are_reused_and_written_ones_are_not() {
        let root = tempfile::tempdir().unwrap();
        let pool = Arc::new(ScratchPool::open(&root.path().join("scratch")).unwrap());
        let a = pool.take().unwrap();
        let a_path = a.path().to_owned();
        drop(a);
        let b = pool.take().unwrap();
        assert_eq!(b.path(), a_path, "an empty /tmp is handed on");
        std::fs::write(b.path().join("secret"), "x").unwrap();
        drop(b);
        assert!(!a_path.exists(), "a used /tmp is deleted");
        let c = pool.take().unwrap();
        assert_ne!(c.path(), a_path);
        assert!(std::fs::read_dir(c.path()).unwrap().next().is_none());
    }
}

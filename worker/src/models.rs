//! The node's model cache: each ONNX model is loaded once per node per SHA-256 of its
//! bytes and shared (`Arc`) by every environment and function that uses it.
//!
//! Loaded models count against a node-wide budget of resident bytes, and a model that
//! has been idle longer than the model TTL is dropped. "Idle" means no invocation used
//! it and no live environment holds it: an environment keeps its graphs for its whole
//! life, so dropping the cache's reference then would free nothing and only make the
//! next environment load a second copy. The next environment after an eviction loads
//! the model again during its INIT, where the time shows as Init Duration.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, PoisonError, Weak};
use std::time::{Duration, Instant};

use onnx_ops::{LoadLimits, LoadedModel, ModelError};
use protocol::{CodePackage, Runtime};
use sha2::{Digest, Sha256};
use tokio::sync::OnceCell;

use crate::code::handler_path;

/// How the node holds models.
#[derive(Debug, Clone)]
pub struct ModelConfig {
    /// Resident bytes all loaded models may take together (estimated by onnx-ops).
    pub budget_bytes: usize,
    /// A model nobody used for this long is dropped; separate from the environments'
    /// idle timeout, since one model serves many functions and their environments.
    pub ttl: Duration,
    /// Longest a model may take to load; a model that needs more is refused.
    pub load_timeout: Duration,
    /// Bounds on what a model file may contain and make the loader build.
    pub limits: LoadLimits,
    /// Most `.onnx` files a `wasm` package may carry.
    pub max_models_per_package: usize,
}

impl Default for ModelConfig {
    fn default() -> Self {
        ModelConfig {
            budget_bytes: 2 << 30,
            ttl: Duration::from_secs(15 * 60),
            load_timeout: Duration::from_secs(30),
            limits: LoadLimits::default(),
            max_models_per_package: 16,
        }
    }
}

/// What the model cache holds right now and has done so far.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct ModelStats {
    /// Models currently loaded.
    pub models: usize,
    /// Their estimated resident bytes together.
    pub resident_bytes: usize,
    /// Loads since the worker started (each is a parse and optimise by tract).
    pub loads: u64,
    /// Models dropped for idleness or to make room.
    pub evictions: u64,
}

/// Why a model could not be loaded, and so who is at fault.
#[derive(Debug, thiserror::Error)]
pub(crate) enum ModelLoadError {
    /// The package's fault: the file is not there.
    #[error("The model file '{0}' was not found in the deployment package.")]
    Missing(String),
    /// The model's fault: onnx-ops refused it.
    #[error("The model '{name}' cannot be loaded: {source}")]
    Invalid { name: String, source: ModelError },
    /// The model's fault: loading it takes longer than the node allows.
    #[error("The model '{name}' did not load within {} s.", .limit.as_secs())]
    TimedOut { name: String, limit: Duration },
    /// The model's fault: it could never fit on this node.
    #[error(
        "The model '{name}' needs about {needed} bytes of memory once loaded, more than this node's model budget of {budget} bytes."
    )]
    LargerThanBudget {
        name: String,
        needed: usize,
        budget: usize,
    },
    /// The function's configuration is at fault: its Handler cannot name a model.
    #[error("{0}")]
    BadHandler(String),
    /// The package's fault: more models than one function may load.
    #[error(
        "The deployment package carries {count} .onnx files; a function may load at most {max}."
    )]
    TooMany { count: usize, max: usize },
    /// The platform's: other models in use fill the budget right now.
    #[error(
        "The model '{name}' needs {needed} bytes of memory and models in use hold {held} of this node's {budget}."
    )]
    BudgetFull {
        name: String,
        needed: usize,
        held: usize,
        budget: usize,
    },
    /// The platform's: reading the package or running the loader failed.
    #[error("{0}")]
    Platform(String),
}

impl ModelLoadError {
    /// Whether the model (and so its owner) is at fault rather than Lamina.
    pub(crate) fn is_clients(&self) -> bool {
        matches!(
            self,
            ModelLoadError::Missing(_)
                | ModelLoadError::Invalid { .. }
                | ModelLoadError::TimedOut { .. }
                | ModelLoadError::LargerThanBudget { .. }
                | ModelLoadError::TooMany { .. }
                | ModelLoadError::BadHandler(_)
        )
    }
}

/// A model of a package: the name the guest loads it by and where its bytes are.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct ModelRef {
    /// The file's path inside the package, as given (for `onnx`, the Handler).
    pub(crate) name: String,
    /// Lowercase hex SHA-256 of the file.
    pub(crate) digest: String,
    pub(crate) path: PathBuf,
}

/// One loaded model, shared by every environment that uses its bytes.
#[derive(Debug)]
pub(crate) struct SharedModel {
    pub(crate) digest: String,
    pub(crate) model: LoadedModel,
    origin: Instant,
    /// Milliseconds after `origin` of the last use, for the TTL.
    last_used_ms: AtomicU64,
}

impl SharedModel {
    pub(crate) fn touch(&self) {
        let ms = self.origin.elapsed().as_millis() as u64;
        self.last_used_ms.store(ms, Ordering::Relaxed);
    }

    fn idle(&self, now: Instant) -> Duration {
        let last = Duration::from_millis(self.last_used_ms.load(Ordering::Relaxed));
        now.saturating_duration_since(self.origin + last)
    }
}

/// The models one environment can load by name.
pub(crate) type ModelTable = Vec<(String, Arc<SharedModel>)>;

type Cell = Arc<OnceCell<Arc<SharedModel>>>;
type PackageKey = (String, String, Runtime);

pub(crate) struct ModelCache {
    config: ModelConfig,
    origin: Instant,
    /// By model digest. A cell is created empty and filled by the one load that wins, so
    /// environments starting together for a cold model wait for one load, not run many.
    entries: Mutex<HashMap<String, Cell>>,
    /// The models of each package, found and validated at prepare time.
    packages: Mutex<HashMap<PackageKey, Arc<[ModelRef]>>>,
    loads: AtomicU64,
    evictions: AtomicU64,
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(PoisonError::into_inner)
}

impl ModelCache {
    pub(crate) fn new(config: ModelConfig) -> Self {
        ModelCache {
            config,
            origin: Instant::now(),
            entries: Mutex::new(HashMap::new()),
            packages: Mutex::new(HashMap::new()),
            loads: AtomicU64::new(0),
            evictions: AtomicU64::new(0),
        }
    }

    pub(crate) fn stats(&self) -> ModelStats {
        let entries = lock(&self.entries);
        let loaded: Vec<_> = entries.values().filter_map(|c| c.get()).collect();
        ModelStats {
            models: loaded.len(),
            resident_bytes: loaded.iter().map(|m| m.model.resident_bytes()).sum(),
            loads: self.loads.load(Ordering::Relaxed),
            evictions: self.evictions.load(Ordering::Relaxed),
        }
    }

    /// Finds the models of a package and validates each by loading it: the `onnx`
    /// runtime's Handler, or every `.onnx` file of a `wasm` package. A model that loads
    /// but does not fit in the budget now is still valid; it loads at INIT instead.
    pub(crate) async fn prepare_package(
        &self,
        code: &CodePackage,
    ) -> Result<Arc<[ModelRef]>, ModelLoadError> {
        let key = (code.digest.clone(), code.handler.clone(), code.runtime);
        if let Some(refs) = lock(&self.packages).get(&key) {
            return Ok(refs.clone());
        }
        let names = match code.runtime {
            Runtime::Onnx => {
                handler_path(&code.root, &code.handler)
                    .map_err(|e| ModelLoadError::BadHandler(e.to_string()))?;
                vec![code.handler.clone()]
            }
            // A package's `.onnx` files, which its code runs through wasi-nn (the
            // Python runtime's `lamina` module does).
            Runtime::Wasm | Runtime::Python314 => {
                let root = code.root.clone();
                let max = self.config.max_models_per_package;
                tokio::task::spawn_blocking(move || find_models(&root, max))
                    .await
                    .map_err(|e| ModelLoadError::Platform(format!("scan task failed: {e}")))??
            }
        };
        let mut refs = Vec::with_capacity(names.len());
        for name in names {
            let path = code.root.join(&name);
            let bytes = self.read_model(&name, &path).await?;
            let digest = hex::encode(Sha256::digest(&bytes));
            match self.get_or_load(&name, &digest, bytes).await {
                Ok(_) | Err(ModelLoadError::BudgetFull { .. }) => {}
                Err(e) => return Err(e),
            }
            refs.push(ModelRef { name, digest, path });
        }
        let refs: Arc<[ModelRef]> = refs.into();
        lock(&self.packages).insert(key, refs.clone());
        Ok(refs)
    }

    /// The loaded models of a package for a new environment, loading any that were
    /// evicted (or never fitted) since the package was prepared.
    pub(crate) async fn acquire(&self, refs: &[ModelRef]) -> Result<ModelTable, ModelLoadError> {
        let mut table = Vec::with_capacity(refs.len());
        for r in refs {
            let cached = lock(&self.entries)
                .get(&r.digest)
                .and_then(|c| c.get().cloned());
            let model = match cached {
                Some(m) => m,
                None => {
                    let bytes = self.read_model(&r.name, &r.path).await?;
                    if hex::encode(Sha256::digest(&bytes)) != r.digest {
                        return Err(ModelLoadError::Platform(format!(
                            "the model '{}' changed on disk since it was validated",
                            r.name
                        )));
                    }
                    self.get_or_load(&r.name, &r.digest, bytes).await?
                }
            };
            model.touch();
            table.push((r.name.clone(), model));
        }
        Ok(table)
    }

    async fn read_model(&self, name: &str, path: &Path) -> Result<Vec<u8>, ModelLoadError> {
        let meta = tokio::fs::symlink_metadata(path)
            .await
            .map_err(|_| ModelLoadError::Missing(name.to_owned()))?;
        if !meta.is_file() {
            return Err(ModelLoadError::Missing(name.to_owned()));
        }
        let limit = self.config.limits.max_model_bytes;
        if meta.len() > limit as u64 {
            return Err(ModelLoadError::Invalid {
                name: name.to_owned(),
                source: ModelError::TooLarge {
                    size: meta.len() as usize,
                    limit,
                },
            });
        }
        tokio::fs::read(path)
            .await
            .map_err(|e| ModelLoadError::Platform(format!("reading {}: {e}", path.display())))
    }

    fn cell(&self, digest: &str) -> Cell {
        lock(&self.entries)
            .entry(digest.to_owned())
            .or_default()
            .clone()
    }

    /// The loaded model of these bytes, loading it on a blocking thread if nobody has.
    async fn get_or_load(
        &self,
        name: &str,
        digest: &str,
        bytes: Vec<u8>,
    ) -> Result<Arc<SharedModel>, ModelLoadError> {
        let cell = self.cell(digest);
        let result = cell
            .get_or_try_init(|| async {
                let limits = self.config.limits.clone();
                let limit = self.config.load_timeout;
                let task = tokio::task::spawn_blocking(move || onnx_ops::load(&bytes, &limits));
                // A load that overruns keeps its blocking thread until tract returns, but
                // nothing waits for it and its result is dropped.
                let loaded = match tokio::time::timeout(limit, task).await {
                    Err(_) => {
                        return Err(ModelLoadError::TimedOut {
                            name: name.to_owned(),
                            limit,
                        });
                    }
                    Ok(Err(e)) => {
                        return Err(ModelLoadError::Platform(format!("load task failed: {e}")));
                    }
                    Ok(Ok(loaded)) => loaded.map_err(|source| ModelLoadError::Invalid {
                        name: name.to_owned(),
                        source,
                    })?,
                };
                self.admit(name, digest, loaded)
            })
            .await
            .cloned();
        if result.is_err() {
            self.forget_empty(digest, &cell);
        }
        result
    }

    /// Loads bytes a guest passed to `wasi:nn/graph.load`, on the calling thread (the
    /// wasi-nn host interface is synchronous). Same digest, same shared model.
    pub(crate) fn load_bytes_blocking(
        &self,
        bytes: &[u8],
    ) -> Result<Arc<SharedModel>, ModelLoadError> {
        let digest = hex::encode(Sha256::digest(bytes));
        let cell = self.cell(&digest);
        if let Some(m) = cell.get() {
            m.touch();
            return Ok(m.clone());
        }
        let name = format!("sha256:{digest}");
        let loaded =
            onnx_ops::load(bytes, &self.config.limits).map_err(|source| ModelLoadError::Invalid {
                name: name.clone(),
                source,
            });
        let admitted = loaded.and_then(|l| self.admit(&name, &digest, l));
        match admitted {
            Ok(model) => match cell.set(model.clone()) {
                Ok(()) => Ok(model),
                // Another environment loaded the same bytes meanwhile: use theirs.
                Err(_) => Ok(cell.get().cloned().unwrap_or(model)),
            },
            Err(e) => {
                self.forget_empty(&digest, &cell);
                Err(e)
            }
        }
    }

    /// Accounts a freshly loaded model against the budget, evicting unused models
    /// (least recently used first) to make room.
    fn admit(
        &self,
        name: &str,
        digest: &str,
        loaded: LoadedModel,
    ) -> Result<Arc<SharedModel>, ModelLoadError> {
        self.loads.fetch_add(1, Ordering::Relaxed);
        let needed = loaded.resident_bytes();
        let budget = self.config.budget_bytes;
        if needed > budget {
            return Err(ModelLoadError::LargerThanBudget {
                name: name.to_owned(),
                needed,
                budget,
            });
        }
        let mut entries = lock(&self.entries);
        let mut held: usize = entries
            .values()
            .filter_map(|c| c.get())
            .map(|m| m.model.resident_bytes())
            .sum();
        if held + needed > budget {
            let mut unused: Vec<(Duration, String, usize)> = entries
                .iter()
                .filter_map(|(d, c)| c.get().map(|m| (d, m)))
                .filter(|(_, m)| Arc::strong_count(m) == 1)
                .map(|(d, m)| (m.idle(Instant::now()), d.clone(), m.model.resident_bytes()))
                .collect();
            unused.sort_by_key(|u| std::cmp::Reverse(u.0));
            for (_, d, bytes) in unused {
                if held + needed <= budget {
                    break;
                }
                entries.remove(&d);
                held -= bytes;
                self.evictions.fetch_add(1, Ordering::Relaxed);
                tracing::info!(model = %d, bytes, "evicted a model to make room");
            }
        }
        if held + needed > budget {
            return Err(ModelLoadError::BudgetFull {
                name: name.to_owned(),
                needed,
                held,
                budget,
            });
        }
        let model = Arc::new(SharedModel {
            digest: digest.to_owned(),
            model: loaded,
            origin: self.origin,
            last_used_ms: AtomicU64::new(0),
        });
        model.touch();
        tracing::info!(model = %digest, bytes = needed, "loaded a model");
        Ok(model)
    }

    fn forget_empty(&self, digest: &str, cell: &Cell) {
        let mut entries = lock(&self.entries);
        if entries
            .get(digest)
            .is_some_and(|c| Arc::ptr_eq(c, cell) && c.get().is_none())
        {
            entries.remove(digest);
        }
    }

    /// Drops models idle longer than the TTL that no environment holds.
    pub(crate) fn evict_idle(&self) -> usize {
        let now = Instant::now();
        let ttl = self.config.ttl;
        let mut entries = lock(&self.entries);
        let before = entries.len();
        entries.retain(|digest, cell| {
            let Some(m) = cell.get() else {
                // Still loading.
                return true;
            };
            let keep = Arc::strong_count(m) > 1 || m.idle(now) < ttl;
            if !keep {
                tracing::info!(model = %digest, "evicted an idle model");
            }
            keep
        });
        let evicted = before - entries.len();
        self.evictions.fetch_add(evicted as u64, Ordering::Relaxed);
        evicted
    }
}

/// Runs `evict_idle` every `period` until the cache is dropped.
pub(crate) fn start_sweeper(cache: Weak<ModelCache>, period: Duration) -> std::io::Result<()> {
    std::thread::Builder::new()
        .name("lamina-models".into())
        .spawn(move || {
            loop {
                std::thread::sleep(period);
                match cache.upgrade() {
                    Some(cache) => {
                        cache.evict_idle();
                    }
                    None => break,
                }
            }
        })?;
    Ok(())
}

/// The `.onnx` files of a package, as paths relative to its root, in a stable order.
/// Symbolic links are not followed: intake never creates them, and a model is data the
/// package carries, not something it points at.
fn find_models(root: &Path, max: usize) -> Result<Vec<String>, ModelLoadError> {
    let mut found = Vec::new();
    let mut dirs = vec![root.to_path_buf()];
    while let Some(dir) = dirs.pop() {
        let entries = std::fs::read_dir(&dir)
            .map_err(|e| ModelLoadError::Platform(format!("reading {}: {e}", dir.display())))?;
        for entry in entries {
            let entry = entry.map_err(|e| ModelLoadError::Platform(e.to_string()))?;
            let kind = entry
                .file_type()
                .map_err(|e| ModelLoadError::Platform(e.to_string()))?;
            let path = entry.path();
            if kind.is_dir() {
                dirs.push(path);
            } else if kind.is_file() && path.extension().is_some_and(|e| e == "onnx") {
                let rel = path
                    .strip_prefix(root)
                    .map_err(|e| ModelLoadError::Platform(e.to_string()))?;
                let Some(rel) = rel.to_str() else {
                    return Err(ModelLoadError::Missing(format!(
                        "{} (the path is not UTF-8)",
                        rel.display()
                    )));
                };
                found.push(rel.to_owned());
            }
        }
    }
    if found.len() > max {
        return Err(ModelLoadError::TooMany {
            count: found.len(),
            max,
        });
    }
    found.sort();
    Ok(found)
}

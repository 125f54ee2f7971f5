//! The code cache: each guest binary is compiled once, keyed by its SHA-256, persisted
//! as a precompiled artifact and kept in memory as an `InstancePre`, so creating an
//! environment never compiles.

use std::collections::HashMap;
use std::path::{Component as PathComponent, Path, PathBuf};
use std::sync::{Arc, Mutex, PoisonError};

use protocol::{CodePackage, GuestKind, PrepareError, Runtime};
use sha2::{Digest, Sha256};
use tokio::sync::Semaphore;
use wasmtime::component::{Component, Linker as ComponentLinker};
use wasmtime::{Engine, InstancePre, Linker, Module};
use wasmtime_wasi::p2::bindings::CommandPre;
use wasmtime_wasi_http::p2::bindings::ProxyPre;

use crate::bindings::FunctionPre;
use crate::compile::{self, CodeLimits};
use crate::host::{CoreState, HostState};

/// A guest ready to instantiate.
pub(crate) enum Compiled {
    Handler(FunctionPre<HostState>),
    Http(ProxyPre<HostState>),
    Command(CommandPre<HostState>),
    CoreCommand(InstancePre<CoreState>),
}

pub(crate) struct Prepared {
    pub(crate) kind: GuestKind,
    pub(crate) compiled: Compiled,
    pub(crate) artifact_bytes: u64,
    /// What it was compiled from: the guest binary's SHA-256, or a snapshot's key.
    pub(crate) source: String,
}

type PackageKey = (String, String, Runtime);

fn package_key(code: &CodePackage) -> PackageKey {
    (code.digest.clone(), code.handler.clone(), code.runtime)
}

/// What the code cache accepts and how many compiles it runs at once.
pub(crate) struct Budget {
    pub(crate) max_code_bytes: u64,
    pub(crate) limits: CodeLimits,
    pub(crate) concurrent_compiles: usize,
}

pub(crate) struct CodeCache {
    engine: Engine,
    component_linker: ComponentLinker<HostState>,
    core_linker: Linker<CoreState>,
    artifact_dir: PathBuf,
    max_code_bytes: u64,
    limits: CodeLimits,
    /// One permit per compile allowed at once: compiles are the node's largest
    /// allocations, and a burst of deploys must not multiply them.
    compiles: Semaphore,
    by_wasm_digest: Mutex<HashMap<String, Arc<Prepared>>>,
    by_package: Mutex<HashMap<PackageKey, Arc<Prepared>>>,
}

const COMPONENT_LAYER: [u8; 4] = [0x0d, 0x00, 0x01, 0x00];
const MODULE_VERSION: [u8; 4] = [0x01, 0x00, 0x00, 0x00];

/// Rejects handler paths that could leave the package.
pub(crate) fn handler_path(root: &Path, handler: &str) -> Result<PathBuf, PrepareError> {
    let rel = Path::new(handler);
    let safe = !handler.is_empty()
        && rel
            .components()
            .all(|c| matches!(c, PathComponent::Normal(_) | PathComponent::CurDir));
    if !safe {
        return Err(PrepareError::InvalidCode(format!(
            "Handler '{handler}' must be a relative path inside the deployment package."
        )));
    }
    Ok(root.join(rel))
}

impl CodeCache {
    pub(crate) fn new(
        engine: Engine,
        component_linker: ComponentLinker<HostState>,
        core_linker: Linker<CoreState>,
        artifact_dir: PathBuf,
        budget: Budget,
    ) -> Self {
        CodeCache {
            engine,
            component_linker,
            core_linker,
            artifact_dir,
            max_code_bytes: budget.max_code_bytes,
            limits: budget.limits,
            compiles: Semaphore::new(budget.concurrent_compiles.max(1)),
            by_wasm_digest: Mutex::new(HashMap::new()),
            by_package: Mutex::new(HashMap::new()),
        }
    }

    pub(crate) fn lookup(&self, code: &CodePackage) -> Option<Arc<Prepared>> {
        self.by_package
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .get(&package_key(code))
            .cloned()
    }

    /// Validates, compiles (or loads the artifact of) and pre-instantiates a package's
    /// handler. Idempotent and cheap for code already prepared.
    pub(crate) async fn prepare(&self, code: &CodePackage) -> Result<Arc<Prepared>, PrepareError> {
        if let Some(p) = self.lookup(code) {
            return Ok(p);
        }
        let path = handler_path(&code.root, &code.handler)?;
        let bytes = read_handler(&path, &code.handler, self.max_code_bytes).await?;
        let prepared = self.compiled(bytes).await?;
        self.remember(code, prepared.clone());
        Ok(prepared)
    }

    /// Compiles (once) a guest Lamina ships itself, a built-in runtime, to serve `code`.
    /// Anything wrong with it is the platform's fault, not the package's.
    pub(crate) async fn prepare_builtin(
        &self,
        code: &CodePackage,
        path: &Path,
    ) -> Result<Arc<Prepared>, PrepareError> {
        if let Some(p) = self.lookup(code) {
            return Ok(p);
        }
        let bytes = tokio::fs::read(path).await.map_err(|e| {
            PrepareError::Platform(format!(
                "the built-in {} runtime {} is unavailable ({e}): build it with guests/build.sh or point --runtimes-dir at it",
                code.runtime.as_str(),
                path.display()
            ))
        })?;
        let prepared = self.compiled(bytes).await.map_err(|e| match e {
            PrepareError::InvalidCode(m) => PrepareError::Platform(format!(
                "the built-in runtime {} is unusable: {m}",
                path.display()
            )),
            other => other,
        })?;
        self.remember(code, prepared.clone());
        Ok(prepared)
    }

    /// The compiled form of a guest binary, compiled once per SHA-256.
    async fn compiled(&self, bytes: Vec<u8>) -> Result<Arc<Prepared>, PrepareError> {
        let wasm_digest = hex::encode(Sha256::digest(&bytes));
        let cached = self
            .by_wasm_digest
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .get(&wasm_digest)
            .cloned();
        if let Some(p) = cached {
            return Ok(p);
        }
        let p = Arc::new(self.compile(bytes, &wasm_digest).await?);
        self.by_wasm_digest
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .insert(wasm_digest, p.clone());
        Ok(p)
    }

    fn remember(&self, code: &CodePackage, prepared: Arc<Prepared>) {
        self.by_package
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .insert(package_key(code), prepared);
    }

    async fn compile(&self, bytes: Vec<u8>, wasm_digest: &str) -> Result<Prepared, PrepareError> {
        let is_component = match bytes.get(0..8) {
            Some(h) if &h[0..4] == b"\0asm" && h[4..8] == COMPONENT_LAYER => true,
            Some(h) if &h[0..4] == b"\0asm" && h[4..8] == MODULE_VERSION => false,
            _ => {
                return Err(PrepareError::InvalidCode(
                    "The handler is not a WebAssembly binary (missing \\0asm header).".into(),
                ));
            }
        };
        compile::check(&bytes, &self.limits)?;
        let artifact = self.artifact_dir.join(format!("{wasm_digest}.cwasm"));
        let engine = self.engine.clone();
        let artifact_for_task = artifact.clone();
        let loaded = self
            .bounded(move || load_or_compile(&engine, &bytes, &artifact_for_task, is_component))
            .await?;
        let artifact_bytes = std::fs::metadata(&artifact).map(|m| m.len()).unwrap_or(0);
        let (kind, compiled) = match loaded {
            Loaded::Component(c) => self.pre_component(&c)?,
            Loaded::Module(m) => self.pre_module(&m)?,
        };
        Ok(Prepared {
            kind,
            compiled,
            artifact_bytes,
            source: wasm_digest.to_owned(),
        })
    }

    /// Runs a compile on the blocking pool once a compile permit is free.
    async fn bounded(
        &self,
        compile: impl FnOnce() -> Result<Loaded, PrepareError> + Send + 'static,
    ) -> Result<Loaded, PrepareError> {
        let _permit = self
            .compiles
            .acquire()
            .await
            .map_err(|_| PrepareError::Platform("the code cache is shutting down".into()))?;
        tokio::task::spawn_blocking(compile)
            .await
            .map_err(|e| PrepareError::Platform(format!("compile task failed: {e}")))?
    }

    /// The linker every component guest is instantiated with.
    pub(crate) fn component_linker(&self) -> &ComponentLinker<HostState> {
        &self.component_linker
    }

    fn snapshot_artifact(&self, key: &str) -> PathBuf {
        self.artifact_dir
            .join("snapshots")
            .join(format!("{key}.cwasm"))
    }

    /// A snapshot an earlier run of this node compiled, if its artifact is still there.
    pub(crate) async fn load_snapshot(&self, key: &str) -> Option<Arc<Prepared>> {
        let artifact = self.snapshot_artifact(key);
        if !artifact.exists() {
            return None;
        }
        let engine = self.engine.clone();
        let path = artifact.clone();
        let loaded = tokio::task::spawn_blocking(move || deserialize(&engine, &path, true))
            .await
            .ok()?;
        match loaded {
            Ok(Loaded::Component(c)) => self
                .prepared_component(&c, &artifact, key)
                .ok()
                .map(Arc::new),
            Ok(Loaded::Module(_)) => None,
            Err(e) => {
                tracing::warn!(artifact = %artifact.display(), error = %e, "discarding unusable snapshot");
                None
            }
        }
    }

    /// Compiles a snapshot (a component Lamina produced) and keeps its artifact.
    pub(crate) async fn compile_snapshot(
        &self,
        key: &str,
        bytes: Vec<u8>,
    ) -> Result<Arc<Prepared>, PrepareError> {
        let artifact = self.snapshot_artifact(key);
        let engine = self.engine.clone();
        let path = artifact.clone();
        let loaded = self
            .bounded(move || load_or_compile(&engine, &bytes, &path, true))
            .await?;
        match loaded {
            Loaded::Component(c) => self.prepared_component(&c, &artifact, key).map(Arc::new),
            Loaded::Module(_) => Err(PrepareError::Platform(
                "a snapshot compiled to a core module".into(),
            )),
        }
    }

    fn prepared_component(
        &self,
        component: &Component,
        artifact: &Path,
        key: &str,
    ) -> Result<Prepared, PrepareError> {
        let (kind, compiled) = self.pre_component(component)?;
        Ok(Prepared {
            kind,
            compiled,
            artifact_bytes: std::fs::metadata(artifact).map(|m| m.len()).unwrap_or(0),
            source: key.to_owned(),
        })
    }

    fn pre_component(&self, component: &Component) -> Result<(GuestKind, Compiled), PrepareError> {
        let ty = component.component_type();
        let exports: Vec<String> = ty
            .exports(&self.engine)
            .map(|(name, _)| name.to_owned())
            .collect();
        let has = |prefix: &str| exports.iter().any(|e| e.starts_with(prefix));
        let pre = self
            .component_linker
            .instantiate_pre(component)
            .map_err(|e| link_error(&e))?;
        let bad_exports = |e: wasmtime::Error| {
            PrepareError::InvalidCode(format!("The component's exports do not match: {e:#}"))
        };
        if has("lamina:function/handler") {
            let pre = FunctionPre::new(pre).map_err(bad_exports)?;
            Ok((GuestKind::Handler, Compiled::Handler(pre)))
        } else if has("wasi:http/incoming-handler") {
            let pre = ProxyPre::new(pre).map_err(bad_exports)?;
            Ok((GuestKind::Http, Compiled::Http(pre)))
        } else if has("wasi:cli/run") {
            let pre = CommandPre::new(pre).map_err(bad_exports)?;
            Ok((GuestKind::Command, Compiled::Command(pre)))
        } else {
            Err(PrepareError::InvalidCode(format!(
                "The component exports none of lamina:function/handler, wasi:http/incoming-handler or wasi:cli/run (it exports: {}).",
                if exports.is_empty() {
                    "nothing".to_owned()
                } else {
                    exports.join(", ")
                }
            )))
        }
    }

    fn pre_module(&self, module: &Module) -> Result<(GuestKind, Compiled), PrepareError> {
        if module.get_export("_start").is_none() {
            return Err(PrepareError::InvalidCode(
                "A core WebAssembly module must be a WASI command exporting _start.".into(),
            ));
        }
        let pre = self
            .core_linker
            .instantiate_pre(module)
            .map_err(|e| link_error(&e))?;
        Ok((GuestKind::Command, Compiled::CoreCommand(pre)))
    }
}

fn link_error(e: &wasmtime::Error) -> PrepareError {
    PrepareError::InvalidCode(format!(
        "The WebAssembly binary imports something Lamina does not provide: {e:#}"
    ))
}

async fn read_handler(path: &Path, handler: &str, max: u64) -> Result<Vec<u8>, PrepareError> {
    let meta = tokio::fs::symlink_metadata(path).await.map_err(|_| {
        PrepareError::InvalidCode(format!(
            "The handler file '{handler}' was not found in the deployment package."
        ))
    })?;
    if !meta.is_file() {
        return Err(PrepareError::InvalidCode(format!(
            "The handler '{handler}' is not a regular file."
        )));
    }
    if meta.len() > max {
        return Err(PrepareError::InvalidCode(format!(
            "The handler '{handler}' is larger than {max} bytes."
        )));
    }
    tokio::fs::read(path)
        .await
        .map_err(|e| PrepareError::Platform(format!("reading {}: {e}", path.display())))
}

enum Loaded {
    Component(Component),
    Module(Module),
}

/// Loads the artifact if a compatible one exists, otherwise compiles and persists it.
fn load_or_compile(
    engine: &Engine,
    bytes: &[u8],
    artifact: &Path,
    is_component: bool,
) -> Result<Loaded, PrepareError> {
    if artifact.exists() {
        match deserialize(engine, artifact, is_component) {
            Ok(loaded) => return Ok(loaded),
            Err(e) => {
                tracing::warn!(artifact = %artifact.display(), error = %e, "discarding unusable precompiled artifact");
            }
        }
    }
    let invalid = |e: wasmtime::Error| {
        PrepareError::InvalidCode(format!("The WebAssembly binary is invalid: {e:#}"))
    };
    // Compiled straight to the artifact's bytes, never to executable memory of this
    // process: the code is then mapped from the file, where the kernel can page it out
    // and where it costs nothing once the last user drops it.
    let compiled = if is_component {
        engine.precompile_component(bytes)
    } else {
        engine.precompile_module(bytes)
    };
    let written = compiled.map_err(invalid).and_then(|serialized| {
        persist(artifact, &serialized)
            .map_err(|e| PrepareError::Platform(format!("writing {}: {e}", artifact.display())))
    });
    // The compiler's scratch memory is free now (or the compile failed); give it back
    // before anything else is allocated on top of it.
    compile::release_freed_memory();
    written?;
    deserialize(engine, artifact, is_component)
        .map_err(|e| PrepareError::Platform(format!("loading {}: {e:#}", artifact.display())))
}

fn persist(path: &Path, bytes: &[u8]) -> std::io::Result<()> {
    if let Some(dir) = path.parent() {
        std::fs::create_dir_all(dir)?;
    }
    // Write then rename, so a crash never leaves a truncated artifact under the real name.
    let tmp = path.with_extension(format!("tmp-{}", uuid::Uuid::new_v4()));
    std::fs::write(&tmp, bytes)?;
    std::fs::rename(&tmp, path)
}

#[allow(unsafe_code)]
fn deserialize(engine: &Engine, artifact: &Path, is_component: bool) -> wasmtime::Result<Loaded> {
    // SAFETY: the artifact was produced by `serialize` of this engine configuration (its
    // folder is named by the engine's compatibility hash) and lives in Lamina's own data
    // directory, which guests and clients cannot write. wasmtime still checks the header
    // and engine compatibility before mapping it.
    unsafe {
        if is_component {
            Component::deserialize_file(engine, artifact).map(Loaded::Component)
        } else {
            Module::deserialize_file(engine, artifact).map(Loaded::Module)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn handler_paths_stay_inside_the_package() {
        let root = Path::new("/pkg");
        assert_eq!(
            handler_path(root, "a/b.wasm").unwrap(),
            Path::new("/pkg/a/b.wasm")
        );
        assert_eq!(
            handler_path(root, "./f.wasm").unwrap(),
            Path::new("/pkg/./f.wasm")
        );
        for bad in ["", "../x.wasm", "/etc/passwd", "a/../../x"] {
            assert!(handler_path(root, bad).is_err(), "{bad}");
        }
    }
}

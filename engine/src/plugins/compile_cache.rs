//! Precompiled components on disk, so a restart never recompiles a plugin.
//!
//! A compiled component is native code: loading one is `unsafe` in wasmtime
//! because a tampered file could do anything. This cache only ever loads files
//! it wrote itself, under a key that covers the wasm's sha256, the wasmtime
//! version and the engine's compilation settings, in a directory created
//! `0700`. A file that fails to load (truncated, other settings) is replaced by
//! a fresh compile, never trusted.

use std::collections::HashMap;
use std::hash::{Hash, Hasher};
use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::Mutex;

use sha2::{Digest, Sha256};
use wasmtime::Engine;
use wasmtime::component::Component;

/// What happened when a component was asked for (for logs and benchmarks).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CacheOutcome {
    /// Already loaded in this process.
    Memory,
    /// Loaded from a precompiled file.
    Disk,
    /// Compiled now (and written to disk when the cache dir is writable).
    Compiled,
}

/// Why the cache could not be set up or a component not compiled.
#[derive(Debug, thiserror::Error)]
pub enum CacheError {
    /// The cache directory could not be created.
    #[error("cannot create the plugin cache directory {path}: {source}")]
    CreateDir {
        /// The cache directory.
        path: PathBuf,
        /// The I/O error.
        source: std::io::Error,
    },
    /// wasmtime could not compile the wasm (e.g. it is not a valid
    /// component); wasmtime's error chain.
    #[error("{0}")]
    Compile(String),
}

/// Compiled plugin components, in memory and (when there is a directory) on
/// disk, keyed by the wasm's sha256 and the engine's compilation settings.
pub struct CompileCache {
    dir: Option<PathBuf>,
    /// sha256 of (wasmtime version, engine settings): part of every key.
    engine_key: String,
    loaded: Mutex<HashMap<String, Component>>,
}

/// Feeds `Hash` output into SHA-256, for a key that is stable across runs.
struct Sha256Hasher(Sha256);

impl Hasher for Sha256Hasher {
    fn finish(&self) -> u64 {
        unreachable!("only `write` is used; the digest is read with finalize")
    }
    fn write(&mut self, bytes: &[u8]) {
        self.0.update(bytes);
    }
}

impl CompileCache {
    /// A cache in `dir` (`None`: in memory only, e.g. a read-only state dir).
    pub fn new(engine: &Engine, dir: Option<&Path>) -> Result<CompileCache, CacheError> {
        if let Some(dir) = dir {
            create_private_dir(dir).map_err(|source| CacheError::CreateDir {
                path: dir.to_path_buf(),
                source,
            })?;
        }
        let mut hasher = Sha256Hasher(Sha256::new());
        env!("CARGO_PKG_VERSION").hash(&mut hasher);
        wasmtime_version().hash(&mut hasher);
        engine.precompile_compatibility_hash().hash(&mut hasher);
        Ok(CompileCache {
            dir: dir.map(Path::to_path_buf),
            engine_key: hex::encode(hasher.0.finalize()),
            loaded: Mutex::new(HashMap::new()),
        })
    }

    /// The compiled component for `wasm` (whose sha256 is `sha256`).
    pub fn component(
        &self,
        engine: &Engine,
        sha256: &str,
        wasm: &[u8],
    ) -> Result<(Component, CacheOutcome), CacheError> {
        if let Some(c) = self.lock().get(sha256) {
            return Ok((c.clone(), CacheOutcome::Memory));
        }
        let file = self
            .dir
            .as_ref()
            .map(|d| d.join(format!("{}.cwasm", self.key(sha256))));
        if let Some(file) = &file
            && file.is_file()
        {
            // SAFETY: the file sits in our private cache directory under a
            // key that includes the wasm's sha256 and the engine's settings;
            // only `store` below writes there. A mismatch returns an error.
            match unsafe { Component::deserialize_file(engine, file) } {
                Ok(c) => {
                    self.lock().insert(sha256.to_owned(), c.clone());
                    return Ok((c, CacheOutcome::Disk));
                }
                Err(e) => {
                    tracing::warn!(file = %file.display(), error = %e, "discarding unusable precompiled plugin")
                }
            }
        }
        let component =
            Component::new(engine, wasm).map_err(|e| CacheError::Compile(format!("{e:#}")))?;
        if let Some(file) = &file
            && let Err(e) = store(&component, file)
        {
            tracing::warn!(file = %file.display(), error = %e, "cannot write precompiled plugin; it will be compiled again next time");
        }
        self.lock().insert(sha256.to_owned(), component.clone());
        Ok((component, CacheOutcome::Compiled))
    }

    fn key(&self, sha256: &str) -> String {
        hex::encode(Sha256::digest(format!("{sha256}:{}", self.engine_key)))
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<String, Component>> {
        // A poisoned map only means another thread panicked mid-insert of a
        // complete value; the map itself is still consistent.
        self.loaded.lock().unwrap_or_else(|p| p.into_inner())
    }
}

fn wasmtime_version() -> &'static str {
    // Part of the key so an upgrade never even tries an old artifact.
    "wasmtime-48"
}

fn create_private_dir(dir: &Path) -> std::io::Result<()> {
    use std::os::unix::fs::DirBuilderExt;
    std::fs::DirBuilder::new()
        .recursive(true)
        .mode(0o700)
        .create(dir)
}

/// Write atomically: a crash mid-write never leaves a truncated artifact
/// under the final name.
fn store(component: &Component, file: &Path) -> std::io::Result<()> {
    let bytes = component
        .serialize()
        .map_err(|e| std::io::Error::other(format!("{e:#}")))?;
    let dir = file.parent().unwrap_or(Path::new("."));
    let mut tmp = tempfile::NamedTempFile::new_in(dir)?;
    tmp.write_all(&bytes)?;
    tmp.as_file().sync_all()?;
    tmp.persist(file).map_err(|e| e.error)?;
    Ok(())
}

//! Runs one call of one plugin under limits.
//!
//! One shared `wasmtime::Engine` (pooling allocator, epoch interruption) and
//! one `Linker`; per plugin an `InstancePre` made once ([`PreparedPlugin`]);
//! per call a fresh `Store` and instance, dropped after the call.
//!
//! What a plugin gets, and nothing more (deny by default):
//! - the repository of the call as a **read-only** preopen at `/repo`;
//! - no environment variables, no arguments, a closed stdin;
//! - stdout and stderr captured into a capped buffer, then sent to `tracing`;
//! - sockets: TCP, UDP and name lookup disabled, every address denied;
//! - clocks and random numbers as WASI provides them;
//! - `slipway:plugin/host.log`, capped per message and per call.
//!
//! Limits per call: a wall-clock budget, a linear-memory cap, caps on tables
//! and instances, and a cap on the size of what it returns. That cap holds
//! before the host allocates: wasmtime's hostcall fuel bounds every copy out
//! of the guest (strings and lists, aliased ones counted each time) to
//! [`COPY_BUDGET_FACTOR`] times the output limit, so a plugin cannot make
//! the host copy more than a few MiB whatever it returns. The budget holds
//! whatever the plugin does: running wasm is interrupted by the epoch
//! deadline; a call waiting in a host call (a WASI sleep or poll) is
//! abandoned by a timer, because calls run as futures on a fiber (wasmtime's
//! async support) and dropping one drops its store and frees its instance
//! slot. The repository preopen opens regular files and directories only: a
//! FIFO, socket or device reads as unreadable (`EACCES`), so a hostile
//! checkout cannot block a plugin in `open`. Slots are shared fairly: one
//! plugin holds at most [`PER_PLUGIN_SLOTS`] calls at once, and a call that
//! finds no slot waits [`SLOT_WAIT`] at most, then fails as `Busy`.
//!
//! What it returns is checked against its meaning before anyone uses it
//! (`output`: no control characters where a Dockerfile, a container or a
//! terminal would take them, strict names, paths inside the repository,
//! bounded cache paths, timings, commands and findings); its own words
//! (errors, hints, stderr) are quoted (`quote`).
//!
//! Callers are synchronous (a `spawn_blocking` thread or a CLI command): each
//! call is driven to its end on the sandbox's own small tokio runtime.

use std::collections::HashMap;
use std::future::Future;
use std::path::Path;
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::task::Poll;
use std::time::{Duration, Instant};

use serde::Serialize;
use tokio::sync::{OwnedSemaphorePermit, Semaphore};
use wasmtime::component::{HasSelf, Linker, Resource, ResourceTable};
use wasmtime::{
    Config, Engine, InstanceAllocationStrategy, PoolingAllocationConfig, ResourceLimiter, Store,
    StoreContextMut, Trap,
};
use wasmtime_wasi::cli::{IsTerminal, StdoutStream};
use wasmtime_wasi::p2::{OutputStream, Pollable, StreamError};
use wasmtime_wasi::{FsPerms, WasiCtx, WasiCtxBuilder, WasiCtxView, WasiView};

use super::bindings::{
    Detection, Finding, Level, OptionPair, Plan, PluginError, Probe, ProbeOutput, RepoRequest,
    Service, Verdict, ecosystem::EcosystemPre, readiness::ReadinessPre, validator::ValidatorPre,
};
use super::compile_cache::{CacheError, CacheOutcome, CompileCache};
use super::{Limits, LimitsPolicy, Manifest, PluginId, World, output};

/// Where the repository appears inside the sandbox.
pub const REPO_GUEST_PATH: &str = "/repo";
/// How often the epoch advances; a runaway call stops at most this late.
const EPOCH_TICK: Duration = Duration::from_millis(5);
/// stdout and stderr of one call are kept up to this size each.
const STDIO_CAP: usize = 64 * 1024;
/// One `log` message is cut at this size; a call logs at most `LOG_BUDGET`.
const LOG_MESSAGE_CAP: usize = 4 * 1024;
const LOG_BUDGET: usize = 64 * 1024;
/// Structural caps: a Rust component needs a handful of each.
const MAX_INSTANCES: usize = 32;
const MAX_TABLES: usize = 32;
const MAX_MEMORIES: usize = 4;
const MAX_TABLE_ELEMENTS: usize = 100_000;
/// Concurrent calls the pooling allocator has slots for.
const POOL_COMPONENT_INSTANCES: u32 = 64;
/// Concurrent calls one plugin may hold, so a stuck or flooding plugin
/// leaves three quarters of the slots to the others.
pub const PER_PLUGIN_SLOTS: usize = 16;
/// How long a call waits for a free slot before it fails as `Busy`.
pub const SLOT_WAIT: Duration = Duration::from_secs(2);
/// The WASI filesystem interface as wasmtime-wasi links it; `open-at` is
/// shadowed there (see [`refuse_special_files`]). A test opens a FIFO, so a
/// version bump that leaves the shadow unused fails the suite.
const WASI_FILESYSTEM_TYPES: &str = "wasi:filesystem/types@0.2.12";

/// Why a plugin could not be loaded.
#[derive(Debug, Clone, thiserror::Error)]
pub enum LoadError {
    /// `plugin.toml` does not parse or validate, or its version differs from its folder's.
    #[error("{0}")]
    Manifest(#[from] super::ManifestError),
    /// The manifest or `plugin.wasm` cannot be read from disk.
    #[error("cannot read {path}: {message}")]
    Io {
        /// The file that could not be read.
        path: String,
        /// The I/O error.
        message: String,
    },
    /// `plugin.wasm` is not the file the manifest's `sha256` names (changed after install).
    #[error(
        "sha256 mismatch: the manifest says {expected}, plugin.wasm is {actual} (hint: reinstall with `slipway plugins install`)"
    )]
    HashMismatch {
        /// sha256 in the manifest, hex.
        expected: String,
        /// sha256 of `plugin.wasm` as read, hex.
        actual: String,
    },
    /// An installed plugin's manifest has no `sha256` to check `plugin.wasm` against.
    #[error(
        "no sha256 in the manifest (hint: install with `slipway plugins install`, which fills it in)"
    )]
    MissingHash,
    /// The plugin was built for a `slipway:plugin` API version this engine does not implement.
    #[error("needs slipway:plugin {required}, but this engine implements {host} (hint: rebuild against a plugin SDK for {host})", host = super::HOST_API_VERSION)]
    ApiIncompatible {
        /// The manifest's `api` version requirement (semver, e.g. `^1`).
        required: String,
    },
    /// The manifest asks for limits above the engine's defaults.
    #[error(transparent)]
    Limits(#[from] super::manifest::RaisedLimit),
    /// `plugin.wasm` is a core module or not WebAssembly at all, not a component.
    #[error(
        "not a WebAssembly component: {detail} (hint: build with `cargo build --target wasm32-wasip2 --release`)"
    )]
    NotAComponent {
        /// What the file is instead.
        detail: String,
    },
    /// wasmtime could not compile the component (or load its cached compilation).
    #[error("cannot compile the component: {0}")]
    Compile(String),
    /// The component's exports are missing or mistyped for the world its manifest declares.
    #[error("manifest says world `{declared}` but the component {detail}")]
    WrongWorld {
        /// The world in the manifest.
        declared: World,
        /// What the component is or lacks instead.
        detail: String,
    },
    /// The component imports an interface the sandbox does not link (e.g. `wasi:http`).
    #[error("the component imports what the sandbox does not provide: {0}")]
    Imports(String),
    /// `slipway plugins verify` found a function of this build that fails.
    #[error(
        "`slipway plugins verify` rejected this build: {problem} (hint: fix the plugin and install the new build; the verdict holds until plugin.wasm changes)"
    )]
    FailedVerify {
        /// The function that failed, and how.
        problem: String,
    },
    /// A validator claims a report format another validator already reads.
    #[error(
        "reads `{format}` reports, which the validator plugin `{owner}` already reads: a report format has one reader (hint: give the format a name of its own, or replace `{owner}` with `plugins.replace`)"
    )]
    FormatTaken {
        /// The format claimed twice.
        format: String,
        /// The validator that reads it.
        owner: String,
    },
    /// A third-party plugin takes a bundled plugin's name without `plugins.replace`.
    #[error(
        "`{name}` is the name of a bundled plugin: a third-party plugin may replace it only when the configuration says so (`plugins.replace = [\"{name}\"]`); otherwise give it a name of its own"
    )]
    Reserved {
        /// The bundled plugin's name.
        name: String,
    },
}

/// Why a call of a loaded plugin did not produce a usable result.
#[derive(Debug, thiserror::Error)]
pub enum CallError {
    /// The call ran past its wall-clock budget and was interrupted.
    #[error(
        "plugin {plugin} ran past its time budget of {limit_ms} ms and was stopped after {elapsed_ms} ms"
    )]
    CpuLimit {
        /// The plugin called.
        plugin: PluginId,
        /// Its wall-clock budget per call, in ms.
        limit_ms: u32,
        /// How long the call ran before it was stopped, instantiation included, in ms.
        elapsed_ms: u64,
    },
    /// The plugin grew (or started with) linear memory over its cap.
    #[error(
        "plugin {plugin} tried to grow its memory to {requested} bytes, over its limit of {limit_mib} MiB, and was stopped"
    )]
    MemoryLimit {
        /// The plugin called.
        plugin: PluginId,
        /// Memory size it asked for, in bytes.
        requested: usize,
        /// Its memory cap, in MiB.
        limit_mib: u32,
    },
    /// The plugin hit a structural cap of the sandbox (today: table elements).
    #[error("plugin {plugin} exceeded the sandbox's limit on {what} and was stopped")]
    ResourceLimit {
        /// The plugin called.
        plugin: PluginId,
        /// The resource whose cap it hit, e.g. `table elements`.
        what: &'static str,
    },
    /// The call returned more than the plugin's output limit.
    #[error(
        "plugin {plugin} returned more than {limit_kib} KiB from `{function}`, over its output limit"
    )]
    OutputTooLarge {
        /// The plugin called.
        plugin: PluginId,
        /// The export called (`detect`, `plan`, `parse`, ...).
        function: &'static str,
        /// Its output limit, in KiB.
        limit_kib: u32,
    },
    /// The call returned a value that fails the host's checks of its meaning.
    #[error("plugin {plugin} returned invalid data from `{function}`: {problem}")]
    InvalidOutput {
        /// The plugin called.
        plugin: PluginId,
        /// The export called.
        function: &'static str,
        /// What is wrong with the value, and where.
        problem: String,
    },
    /// The call trapped (a panic, an out-of-bounds access, ...) or failed with another error.
    #[error("plugin {plugin} crashed in `{function}`: {trap}{}", stderr_suffix(.stderr))]
    Trapped {
        /// The plugin called.
        plugin: PluginId,
        /// The export called.
        function: &'static str,
        /// The trap, or the other error (quoted: it may hold the plugin's words).
        trap: String,
        /// What the plugin wrote to stderr (capped at 64 KiB); the message shows its last 3 lines.
        stderr: String,
    },
    /// The plugin ran and returned its own error.
    #[error("plugin {plugin} reported {}: {}", .error.kind(), .error.describe())]
    Reported {
        /// The plugin called.
        plugin: PluginId,
        /// The error the plugin returned.
        error: PluginError,
    },
    /// The repository directory could not be opened as the plugin's `/repo`.
    #[error("cannot give plugin {plugin} the repository {repo}: {message}")]
    Repository {
        /// The plugin called.
        plugin: PluginId,
        /// The repository's path on the host.
        repo: String,
        /// Why it could not be opened.
        message: String,
    },
    /// A fresh instance could not be created (e.g. every pool slot in use).
    #[error("cannot start plugin {plugin}: {message}")]
    Instantiate {
        /// The plugin called.
        plugin: PluginId,
        /// wasmtime's error.
        message: String,
    },
    /// Every call slot of the plugin (or of the engine) was held by calls
    /// still running, and none freed within [`SLOT_WAIT`].
    #[error(
        "plugin {plugin} was not called: {held} calls of {scope} are already running, the most allowed at once, and none ended within {waited_ms} ms (hint: a plugin whose calls hang is stopped at its time budget; try again)"
    )]
    Busy {
        /// The plugin called.
        plugin: PluginId,
        /// Whose slots were full: `this plugin` or `all plugins`.
        scope: &'static str,
        /// How many calls hold those slots.
        held: usize,
        /// How long the call waited, in ms.
        waited_ms: u64,
    },
    /// A function of one world was called on a plugin of another (a caller's bug).
    #[error("plugin {plugin} is a {actual} plugin, not a {expected} plugin")]
    WrongWorld {
        /// The plugin called.
        plugin: PluginId,
        /// The world the function belongs to.
        expected: World,
        /// The plugin's world.
        actual: World,
    },
}

fn stderr_suffix(stderr: &str) -> String {
    let tail: Vec<&str> = stderr.lines().filter(|l| !l.trim().is_empty()).collect();
    match tail.len() {
        0 => String::new(),
        n => format!(
            " (plugin stderr: {})",
            super::quote::quote(&tail[n.saturating_sub(3)..].join(" | "))
        ),
    }
}

/// A plugin compiled and linked, ready for calls.
pub struct PreparedPlugin {
    /// The plugin's `name@version`.
    pub id: PluginId,
    /// Limits each call runs under: the manifest's where it lowers the engine's defaults.
    pub limits: Limits,
    /// How the component was obtained this time (memory, disk, compiled).
    pub compile: CacheOutcome,
    pre: WorldPre,
}

enum WorldPre {
    Ecosystem(EcosystemPre<CallState>),
    Validator(ValidatorPre<CallState>),
    Readiness(ReadinessPre<CallState>),
}

impl PreparedPlugin {
    /// The world the component implements (checked against its manifest when prepared).
    pub fn world(&self) -> World {
        match self.pre {
            WorldPre::Ecosystem(_) => World::Ecosystem,
            WorldPre::Validator(_) => World::Validator,
            WorldPre::Readiness(_) => World::Readiness,
        }
    }
}

/// Which limit a call hit, recorded by the limiter before the trap unwinds.
#[derive(Debug, Clone, Copy)]
enum LimitHit {
    Memory { requested: usize },
    TableElements,
}

struct CallLimiter {
    memory_bytes: usize,
    hit: Option<LimitHit>,
}

impl ResourceLimiter for CallLimiter {
    fn memory_growing(
        &mut self,
        _current: usize,
        desired: usize,
        _maximum: Option<usize>,
    ) -> wasmtime::Result<bool> {
        if desired > self.memory_bytes {
            self.hit = Some(LimitHit::Memory { requested: desired });
            return Err(wasmtime::Error::msg("memory limit reached"));
        }
        Ok(true)
    }

    fn table_growing(
        &mut self,
        _current: usize,
        desired: usize,
        _maximum: Option<usize>,
    ) -> wasmtime::Result<bool> {
        if desired > MAX_TABLE_ELEMENTS {
            self.hit = Some(LimitHit::TableElements);
            return Err(wasmtime::Error::msg("table limit reached"));
        }
        Ok(true)
    }

    fn instances(&self) -> usize {
        MAX_INSTANCES
    }
    fn tables(&self) -> usize {
        MAX_TABLES
    }
    fn memories(&self) -> usize {
        MAX_MEMORIES
    }
}

/// Everything one call's `Store` holds.
pub struct CallState {
    wasi: WasiCtx,
    table: ResourceTable,
    limiter: CallLimiter,
    plugin: PluginId,
    log_used: usize,
    log_dropped: usize,
}

impl WasiView for CallState {
    fn ctx(&mut self) -> WasiCtxView<'_> {
        WasiCtxView {
            ctx: &mut self.wasi,
            table: &mut self.table,
        }
    }
}

impl super::bindings::ecosystem::slipway::plugin::host::Host for CallState {
    fn log(&mut self, level: Level, message: String) {
        let mut end = message.len().min(LOG_MESSAGE_CAP);
        while !message.is_char_boundary(end) {
            end -= 1;
        }
        if self.log_used + end > LOG_BUDGET {
            self.log_dropped += 1;
            return;
        }
        self.log_used += end;
        let (plugin, text) = (&self.plugin, &message[..end]);
        match level {
            Level::Trace => tracing::trace!(%plugin, "{text}"),
            Level::Debug => tracing::debug!(%plugin, "{text}"),
            Level::Info => tracing::info!(%plugin, "{text}"),
            Level::Warn => tracing::warn!(%plugin, "{text}"),
            Level::Error => tracing::error!(%plugin, "{text}"),
        }
    }
}

/// A stdout/stderr that keeps the first `STDIO_CAP` bytes and silently drops
/// the rest, so a chatty plugin is never failed (or trapped) for printing.
#[derive(Clone)]
struct CappedOutput {
    buffer: Arc<Mutex<Vec<u8>>>,
}

impl CappedOutput {
    fn new() -> Self {
        CappedOutput {
            buffer: Arc::new(Mutex::new(Vec::new())),
        }
    }

    fn take(&self) -> String {
        let bytes = std::mem::take(&mut *self.buffer.lock().unwrap_or_else(|p| p.into_inner()));
        String::from_utf8_lossy(&bytes).into_owned()
    }

    fn append(&self, bytes: &[u8]) {
        let mut buf = self.buffer.lock().unwrap_or_else(|p| p.into_inner());
        let room = STDIO_CAP.saturating_sub(buf.len());
        buf.extend_from_slice(&bytes[..bytes.len().min(room)]);
    }
}

impl IsTerminal for CappedOutput {
    fn is_terminal(&self) -> bool {
        false
    }
}

impl StdoutStream for CappedOutput {
    fn p2_stream(&self) -> Box<dyn OutputStream> {
        Box::new(self.clone())
    }

    fn async_stream(&self) -> Box<dyn tokio::io::AsyncWrite + Send + Sync> {
        Box::new(self.clone())
    }
}

#[wasmtime_wasi::async_trait]
impl Pollable for CappedOutput {
    async fn ready(&mut self) {}
}

impl OutputStream for CappedOutput {
    fn write(&mut self, bytes: bytes::Bytes) -> Result<(), StreamError> {
        self.append(&bytes);
        Ok(())
    }
    fn flush(&mut self) -> Result<(), StreamError> {
        Ok(())
    }
    fn check_write(&mut self) -> Result<usize, StreamError> {
        Ok(64 * 1024)
    }
}

impl tokio::io::AsyncWrite for CappedOutput {
    fn poll_write(
        self: std::pin::Pin<&mut Self>,
        _cx: &mut std::task::Context<'_>,
        buf: &[u8],
    ) -> std::task::Poll<std::io::Result<usize>> {
        self.append(buf);
        std::task::Poll::Ready(Ok(buf.len()))
    }
    fn poll_flush(
        self: std::pin::Pin<&mut Self>,
        _cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<std::io::Result<()>> {
        std::task::Poll::Ready(Ok(()))
    }
    fn poll_shutdown(
        self: std::pin::Pin<&mut Self>,
        _cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<std::io::Result<()>> {
        std::task::Poll::Ready(Ok(()))
    }
}

/// Advances the engine's epoch every [`EPOCH_TICK`] until the engine is gone.
fn start_epoch_ticker(engine: &Engine) {
    let weak = engine.weak();
    let stop = Arc::new(AtomicBool::new(false));
    let _ = std::thread::Builder::new()
        .name("slipway-plugin-epoch".into())
        .spawn(move || {
            while !stop.load(Ordering::Relaxed) {
                std::thread::sleep(EPOCH_TICK);
                match weak.upgrade() {
                    Some(engine) => engine.increment_epoch(),
                    None => stop.store(true, Ordering::Relaxed),
                }
            }
        });
}

/// How a [`PluginSandbox`] is set up.
#[derive(Debug, Clone)]
pub struct SandboxOptions {
    /// Directory of precompiled components; `None` keeps them in memory only.
    pub cache_dir: Option<std::path::PathBuf>,
    /// Default and maximum per-call limits; the maximum memory sizes the pool's slots.
    pub policy: LimitsPolicy,
    /// Use the pooling allocator (fast instantiation); off falls back to
    /// on-demand allocation, e.g. where virtual memory is restricted.
    pub pooling: bool,
    /// Calls come from one thread, one at a time (a one-shot command): they
    /// are driven on that thread, with no runtime thread of their own.
    pub single_caller: bool,
}

/// Why the sandbox could not be set up at engine start.
#[derive(Debug, thiserror::Error)]
pub enum SandboxError {
    /// wasmtime refused the engine configuration, or WASI or the host API could not be linked.
    #[error("cannot set up the WebAssembly engine: {0}")]
    Engine(String),
    /// The compile cache's directory could not be created.
    #[error(transparent)]
    Cache(#[from] CacheError),
}

/// The shared engine, linker and compile cache.
pub struct PluginSandbox {
    engine: Engine,
    linker: Linker<CallState>,
    cache: CompileCache,
    policy: LimitsPolicy,
    stats: PluginStats,
    verdicts: super::verify::Verdicts,
    slots: Slots,
    calls: CallRuntime,
}

/// The runtime every call is driven on: its timer abandons a call that
/// waits in a host call past its budget.
struct CallRuntime(Option<tokio::runtime::Runtime>);

impl CallRuntime {
    /// With one caller, the caller's own thread drives the timer while a
    /// call waits in a host call; with several, a worker thread does, so a
    /// call busy in wasm on one thread cannot hold back another's deadline.
    fn new(single_caller: bool) -> Result<CallRuntime, SandboxError> {
        let mut builder = if single_caller {
            tokio::runtime::Builder::new_current_thread()
        } else {
            let mut b = tokio::runtime::Builder::new_multi_thread();
            b.worker_threads(1).thread_name("slipway-plugin-calls");
            b
        };
        builder
            .enable_all()
            .build()
            .map(|rt| CallRuntime(Some(rt)))
            .map_err(|e| SandboxError::Engine(format!("cannot start the plugin call runtime: {e}")))
    }

    /// Run `call` to its end on the calling thread, which must not be one of
    /// an async runtime's workers (callers use `spawn_blocking`).
    fn block_on<F: Future>(&self, call: F) -> F::Output {
        self.0.as_ref().expect("kept until drop").block_on(call)
    }
}

impl Drop for CallRuntime {
    // A runtime dropped inside another's context panics; this one owns no
    // work worth waiting for once the sandbox goes.
    fn drop(&mut self) {
        if let Some(rt) = self.0.take() {
            rt.shutdown_background();
        }
    }
}

/// Instance slots, shared fairly: the engine's total, and a share per plugin.
struct Slots {
    engine: Arc<Semaphore>,
    per_plugin: Mutex<HashMap<String, Arc<Semaphore>>>,
}

impl Slots {
    fn new() -> Slots {
        Slots {
            engine: Arc::new(Semaphore::new(POOL_COMPONENT_INSTANCES as usize)),
            per_plugin: Mutex::new(HashMap::new()),
        }
    }

    /// A slot of the plugin's share and one of the engine's, each waited
    /// for [`SLOT_WAIT`] at most.
    async fn acquire(
        &self,
        plugin: &PluginId,
    ) -> Result<(OwnedSemaphorePermit, OwnedSemaphorePermit), CallError> {
        let share = self
            .per_plugin
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .entry(plugin.name.clone())
            .or_insert_with(|| Arc::new(Semaphore::new(PER_PLUGIN_SLOTS)))
            .clone();
        let started = Instant::now();
        let busy = |scope, held| CallError::Busy {
            plugin: plugin.clone(),
            scope,
            held,
            waited_ms: started.elapsed().as_millis() as u64,
        };
        // A free slot is taken at once; only a wait arms a timer.
        let take = |slots: Arc<Semaphore>, scope: &'static str, held: usize| {
            let busy = &busy;
            async move {
                if let Ok(permit) = slots.clone().try_acquire_owned() {
                    return Ok(permit);
                }
                let left = SLOT_WAIT.saturating_sub(started.elapsed());
                tokio::time::timeout(left, slots.acquire_owned())
                    .await
                    .map_err(|_| busy(scope, held))
                    .map(|p| p.expect("never closed"))
            }
        };
        let own = take(share, "this plugin", PER_PLUGIN_SLOTS).await?;
        let engine = take(
            self.engine.clone(),
            "all plugins",
            POOL_COMPONENT_INSTANCES as usize,
        )
        .await?;
        Ok((own, engine))
    }
}

/// Where a call failed: making its instance, or in the export itself.
enum Stage {
    Instantiate(wasmtime::Error),
    Call(wasmtime::Error),
}

/// One call's body: given the store, instantiate and call one export; the
/// store comes back with the result so its state can be read.
type CallBody<'a, R> =
    Pin<Box<dyn Future<Output = (Store<CallState>, Result<R, Stage>)> + Send + 'a>>;

/// `instantiate` then `call` on a store moved in and handed back.
macro_rules! call_body {
    ($pre:expr, |$store:ident, $instance:ident| $call:expr) => {
        move |mut $store: Store<CallState>| -> CallBody<'_, _> {
            Box::pin(async move {
                let $instance = match $pre.instantiate_async(&mut $store).await {
                    Ok(instance) => instance,
                    Err(e) => return ($store, Err(Stage::Instantiate(e))),
                };
                let result = $call.await.map_err(Stage::Call);
                ($store, result)
            })
        }
    };
}

/// Plugin calls for `/metrics`: how many, how long, and how many a trap or
/// a limit stopped (by kind).
pub struct PluginStats {
    calls: std::sync::atomic::AtomicU64,
    failures: std::sync::Mutex<std::collections::BTreeMap<&'static str, u64>>,
    duration: crate::metrics::Histogram,
}

const CALL_BOUNDS: &[f64] = &[0.001, 0.005, 0.02, 0.1, 0.5, 2.0, 10.0];

impl Default for PluginStats {
    fn default() -> Self {
        PluginStats {
            calls: Default::default(),
            failures: Default::default(),
            duration: crate::metrics::Histogram::new(CALL_BOUNDS),
        }
    }
}

impl CallError {
    /// A short name for metrics.
    pub fn kind_name(&self) -> &'static str {
        match self {
            CallError::CpuLimit { .. } => "cpu_limit",
            CallError::MemoryLimit { .. } => "memory_limit",
            CallError::ResourceLimit { .. } => "resource_limit",
            CallError::OutputTooLarge { .. } => "output_too_large",
            CallError::InvalidOutput { .. } => "invalid_output",
            CallError::Trapped { .. } => "trap",
            CallError::Reported { .. } => "reported",
            CallError::Repository { .. } => "repository",
            CallError::Instantiate { .. } => "instantiate",
            CallError::Busy { .. } => "busy",
            CallError::WrongWorld { .. } => "wrong_world",
        }
    }
}

impl PluginSandbox {
    /// The engine, linker and compile cache; falls back to on-demand allocation when the
    /// pooling allocator cannot reserve its memory.
    pub fn new(options: SandboxOptions) -> Result<PluginSandbox, SandboxError> {
        let engine = match build_engine(&options) {
            Ok(engine) => engine,
            Err(e) if options.pooling => {
                tracing::warn!(error = %e, "pooling allocator unavailable; using on-demand allocation");
                build_engine(&SandboxOptions {
                    pooling: false,
                    ..options.clone()
                })?
            }
            Err(e) => return Err(e),
        };
        let mut linker = Linker::new(&engine);
        wasmtime_wasi::p2::add_to_linker_async(&mut linker)
            .map_err(|e| SandboxError::Engine(format!("{e:#}")))?;
        refuse_special_files(&mut linker).map_err(|e| SandboxError::Engine(format!("{e:#}")))?;
        super::bindings::ecosystem::slipway::plugin::host::add_to_linker::<
            CallState,
            HasSelf<CallState>,
        >(&mut linker, |state| state)
        .map_err(|e| SandboxError::Engine(format!("{e:#}")))?;
        let cache = CompileCache::new(&engine, options.cache_dir.as_deref())?;
        let verdicts = super::verify::Verdicts::new(options.cache_dir.as_deref());
        start_epoch_ticker(&engine);
        Ok(PluginSandbox {
            engine,
            linker,
            cache,
            policy: options.policy,
            stats: PluginStats::default(),
            verdicts,
            slots: Slots::new(),
            calls: CallRuntime::new(options.single_caller)?,
        })
    }

    /// What `plugins verify` concluded about each build, by sha256.
    pub fn verdicts(&self) -> &super::verify::Verdicts {
        &self.verdicts
    }

    /// The engine-wide limit defaults and maxima plugins are prepared under.
    pub fn policy(&self) -> &LimitsPolicy {
        &self.policy
    }

    /// Compile (or load from the cache), check the world, link.
    pub fn prepare(
        &self,
        manifest: &Manifest,
        wasm: &[u8],
        sha256: &str,
    ) -> Result<PreparedPlugin, LoadError> {
        let id = PluginId {
            name: manifest.name.clone(),
            version: manifest.version.clone(),
        };
        let limits = manifest
            .effective_limits(&self.policy)
            .map_err(LoadError::Limits)?;
        check_component_header(wasm)?;
        let (component, compile) = self
            .cache
            .component(&self.engine, sha256, wasm)
            .map_err(|e| LoadError::Compile(e.to_string()))?;

        let exports: Vec<String> = component
            .component_type()
            .exports(&self.engine)
            .map(|(name, _)| name.to_owned())
            .collect();
        let missing: Vec<&str> = manifest
            .world
            .exports()
            .iter()
            .copied()
            .filter(|f| !exports.iter().any(|e| e == f))
            .collect();
        if !missing.is_empty() {
            let actual = World::ALL
                .into_iter()
                .find(|w| w.exports().iter().all(|f| exports.iter().any(|e| e == f)));
            let detail = match actual {
                Some(w) => format!("is a `{w}` component (exports {})", exports.join(", ")),
                None => format!(
                    "lacks {} (it exports {})",
                    missing.join(", "),
                    if exports.is_empty() {
                        "nothing".into()
                    } else {
                        exports.join(", ")
                    }
                ),
            };
            return Err(LoadError::WrongWorld {
                declared: manifest.world,
                detail,
            });
        }
        let pre = self
            .linker
            .instantiate_pre(&component)
            .map_err(|e| LoadError::Imports(format!("{e:#}")))?;
        let wrong = |e: wasmtime::Error| LoadError::WrongWorld {
            declared: manifest.world,
            detail: format!("does not match its functions' types: {e:#}"),
        };
        let pre = match manifest.world {
            World::Ecosystem => WorldPre::Ecosystem(EcosystemPre::new(pre).map_err(wrong)?),
            World::Validator => WorldPre::Validator(ValidatorPre::new(pre).map_err(wrong)?),
            World::Readiness => WorldPre::Readiness(ReadinessPre::new(pre).map_err(wrong)?),
        };
        Ok(PreparedPlugin {
            id,
            limits,
            compile,
            pre,
        })
    }

    /// `detect` of an ecosystem plugin on the repository at `repo`.
    pub fn detect(
        &self,
        plugin: &PreparedPlugin,
        repo: &Path,
        options: &[OptionPair],
    ) -> Result<Option<Detection>, CallError> {
        let WorldPre::Ecosystem(pre) = &plugin.pre else {
            return Err(wrong_world(plugin, World::Ecosystem));
        };
        let request = repo_request(options);
        let out = self.call(
            plugin,
            Some(repo),
            "detect",
            call_body!(pre, |store, i| i.call_detect(&mut store, &request)),
        )?;
        let detection = reported(plugin, out)?;
        if let Some(d) = &detection {
            invalid(plugin, "detect", output::detection(d))?;
        }
        Ok(detection)
    }

    /// `plan` of an ecosystem plugin on the repository at `repo`.
    pub fn plan(
        &self,
        plugin: &PreparedPlugin,
        repo: &Path,
        options: &[OptionPair],
    ) -> Result<Plan, CallError> {
        let WorldPre::Ecosystem(pre) = &plugin.pre else {
            return Err(wrong_world(plugin, World::Ecosystem));
        };
        let request = repo_request(options);
        let out = self.call(
            plugin,
            Some(repo),
            "plan",
            call_body!(pre, |store, i| i.call_plan(&mut store, &request)),
        )?;
        let plan = reported(plugin, out)?;
        invalid(plugin, "plan", output::plan(&plan))?;
        Ok(plan)
    }

    /// `formats` of a validator plugin.
    pub fn formats(&self, plugin: &PreparedPlugin) -> Result<Vec<String>, CallError> {
        let WorldPre::Validator(pre) = &plugin.pre else {
            return Err(wrong_world(plugin, World::Validator));
        };
        self.call(
            plugin,
            None,
            "formats",
            call_body!(pre, |store, i| i.call_formats(&mut store)),
        )
    }

    /// `parse` of a validator plugin.
    pub fn parse_report(
        &self,
        plugin: &PreparedPlugin,
        format: &str,
        report: &str,
    ) -> Result<Vec<Finding>, CallError> {
        let WorldPre::Validator(pre) = &plugin.pre else {
            return Err(wrong_world(plugin, World::Validator));
        };
        let out = self.call(
            plugin,
            None,
            "parse",
            call_body!(pre, |store, i| i.call_parse(&mut store, format, report)),
        )?;
        let findings = reported(plugin, out)?;
        invalid(plugin, "parse", output::findings(&findings))?;
        Ok(findings)
    }

    /// `probe` of a readiness plugin.
    pub fn probe(&self, plugin: &PreparedPlugin, service: &Service) -> Result<Probe, CallError> {
        let WorldPre::Readiness(pre) = &plugin.pre else {
            return Err(wrong_world(plugin, World::Readiness));
        };
        let out = self.call(
            plugin,
            None,
            "probe",
            call_body!(pre, |store, i| i.call_probe(&mut store, service)),
        )?;
        let probe = reported(plugin, out)?;
        invalid(plugin, "probe", output::probe(&probe))?;
        Ok(probe)
    }

    /// `judge` of a readiness plugin.
    pub fn judge(
        &self,
        plugin: &PreparedPlugin,
        service: &Service,
        output: &ProbeOutput,
    ) -> Result<Verdict, CallError> {
        let WorldPre::Readiness(pre) = &plugin.pre else {
            return Err(wrong_world(plugin, World::Readiness));
        };
        self.call(
            plugin,
            None,
            "judge",
            call_body!(pre, |store, i| i.call_judge(&mut store, service, output)),
        )
    }

    /// `snapshot` (or, with `reset = true`, `reset`) of a readiness plugin.
    pub fn state_command(
        &self,
        plugin: &PreparedPlugin,
        service: &Service,
        reset: bool,
    ) -> Result<Option<Vec<String>>, CallError> {
        let WorldPre::Readiness(pre) = &plugin.pre else {
            return Err(wrong_world(plugin, World::Readiness));
        };
        let function = if reset { "reset" } else { "snapshot" };
        let command = if reset {
            self.call(
                plugin,
                None,
                function,
                call_body!(pre, |store, i| i.call_reset(&mut store, service)),
            )
        } else {
            self.call(
                plugin,
                None,
                function,
                call_body!(pre, |store, i| i.call_snapshot(&mut store, service)),
            )
        }?;
        if let Some(argv) = &command {
            invalid(plugin, function, output::state_command(argv))?;
        }
        Ok(command)
    }

    /// One call in a fresh store: set up the sandbox, `instantiate`, `invoke`,
    /// turn traps and limits into [`CallError`]s, check the output's size.
    /// Plugin calls so far, in the Prometheus text format.
    pub fn render_metrics(&self, out: &mut String) {
        use std::fmt::Write as _;
        use std::sync::atomic::Ordering;
        let _ = writeln!(
            out,
            "# HELP slipway_plugin_calls_total Plugin calls (each in a fresh instance)."
        );
        let _ = writeln!(out, "# TYPE slipway_plugin_calls_total counter");
        let _ = writeln!(
            out,
            "slipway_plugin_calls_total {}",
            self.stats.calls.load(Ordering::Relaxed)
        );
        let _ = writeln!(
            out,
            "# HELP slipway_plugin_failures_total Plugin calls stopped by a trap or a limit, by kind."
        );
        let _ = writeln!(out, "# TYPE slipway_plugin_failures_total counter");
        let failures = self
            .stats
            .failures
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .clone();
        for (kind, n) in failures {
            let _ = writeln!(out, "slipway_plugin_failures_total{{kind=\"{kind}\"}} {n}");
        }
        self.stats.duration.render(
            out,
            "slipway_plugin_call_duration_seconds",
            "Duration of plugin calls, instantiation included.",
        );
    }

    /// [`Self::call_inner`], counted for `/metrics`.
    fn call<'a, R: Serialize + Send>(
        &self,
        plugin: &PreparedPlugin,
        repo: Option<&Path>,
        function: &'static str,
        body: impl FnOnce(Store<CallState>) -> CallBody<'a, R>,
    ) -> Result<R, CallError> {
        use std::sync::atomic::Ordering;
        let started = std::time::Instant::now();
        let result = self
            .calls
            .block_on(self.call_inner(plugin, repo, function, body));
        self.stats.calls.fetch_add(1, Ordering::Relaxed);
        self.stats.duration.observe(started.elapsed().as_secs_f64());
        if let Err(e) = &result {
            *self
                .stats
                .failures
                .lock()
                .unwrap_or_else(|p| p.into_inner())
                .entry(e.kind_name())
                .or_default() += 1;
        }
        result
    }

    /// One call in a fresh store: take a slot, set up the sandbox, run
    /// `body` under the budget, turn traps and limits into [`CallError`]s,
    /// check the output's size.
    async fn call_inner<'a, R: Serialize + Send>(
        &self,
        plugin: &PreparedPlugin,
        repo: Option<&Path>,
        function: &'static str,
        body: impl FnOnce(Store<CallState>) -> CallBody<'a, R>,
    ) -> Result<R, CallError> {
        // Declared first, dropped last: the store (and its instance slot)
        // goes before the permits let another call in.
        let _permits = self.slots.acquire(&plugin.id).await?;
        let stdout = CappedOutput::new();
        let stderr = CappedOutput::new();
        let mut wasi = WasiCtxBuilder::new();
        // Reads of regular files do not block for long (special files are
        // refused at open), so they run on the call's own thread instead of
        // each hopping to a blocking-pool thread.
        wasi.allow_blocking_current_thread(true);
        wasi.stdout(stdout.clone())
            .stderr(stderr.clone())
            .allow_tcp(false)
            .allow_udp(false)
            .allow_ip_name_lookup(false);
        if let Some(repo) = repo {
            wasi.preopened_dir(repo, REPO_GUEST_PATH, FsPerms::ReadOnly)
                .map_err(|e| CallError::Repository {
                    plugin: plugin.id.clone(),
                    repo: repo.display().to_string(),
                    message: format!("{e:#}"),
                })?;
        }
        let state = CallState {
            wasi: wasi.build(),
            table: ResourceTable::new(),
            limiter: CallLimiter {
                memory_bytes: plugin.limits.memory_mib as usize * 1024 * 1024,
                hit: None,
            },
            plugin: plugin.id.clone(),
            log_used: 0,
            log_dropped: 0,
        };
        let mut store = Store::new(&self.engine, state);
        store.limiter(|s| &mut s.limiter);
        let limit = plugin.limits.output_kib as usize * 1024;
        store.set_hostcall_fuel(limit.saturating_mul(COPY_BUDGET_FACTOR));
        let tick_ms = EPOCH_TICK.as_millis() as u64;
        // Running wasm traps once the epoch passes the deadline: with ticks
        // on a fixed 5 ms schedule that is within one tick after the budget.
        store.set_epoch_deadline(u64::from(plugin.limits.cpu_ms).div_ceil(tick_ms));
        // A call waiting in a host call is dropped by the timer instead.
        let budget = Duration::from_millis(u64::from(plugin.limits.cpu_ms));

        let started = Instant::now();
        // Most calls end in their first poll (nothing they call waits):
        // only one that is still pending then arms the timer.
        let mut call = std::pin::pin!(body(store));
        let first = std::future::poll_fn(|cx| Poll::Ready(call.as_mut().poll(cx))).await;
        let ran = match first {
            Poll::Ready(done) => Ok(done),
            Poll::Pending => {
                tokio::time::timeout(budget.saturating_sub(started.elapsed()), call).await
            }
        };
        let elapsed = started.elapsed();
        let (out, err) = (stdout.take(), stderr.take());
        if !out.is_empty() {
            tracing::debug!(plugin = %plugin.id, function, "stdout: {}", out.trim_end());
        }
        if !err.is_empty() {
            tracing::debug!(plugin = %plugin.id, function, "stderr: {}", err.trim_end());
        }
        let Ok((store, result)) = ran else {
            return Err(CallError::CpuLimit {
                plugin: plugin.id.clone(),
                limit_ms: plugin.limits.cpu_ms,
                elapsed_ms: elapsed.as_millis() as u64,
            });
        };
        let state = store.data();
        if state.log_dropped > 0 {
            tracing::warn!(plugin = %plugin.id, function, dropped = state.log_dropped, "plugin log budget exhausted; messages dropped");
        }
        let value = match result {
            Ok(value) => value,
            // Pool exhausted, or an initial memory above the cap.
            Err(Stage::Instantiate(e)) if state.limiter.hit.is_none() => {
                return Err(CallError::Instantiate {
                    plugin: plugin.id.clone(),
                    message: format!("{e:#}"),
                });
            }
            Err(Stage::Call(e)) if copy_budget_exhausted(&e) => {
                return Err(CallError::OutputTooLarge {
                    plugin: plugin.id.clone(),
                    function,
                    limit_kib: plugin.limits.output_kib,
                });
            }
            Err(Stage::Instantiate(e) | Stage::Call(e)) => {
                return Err(self.call_failure(
                    plugin,
                    function,
                    e,
                    state.limiter.hit,
                    elapsed,
                    err,
                ));
            }
        };
        if output::size_within(&value, limit).is_err() {
            return Err(CallError::OutputTooLarge {
                plugin: plugin.id.clone(),
                function,
                limit_kib: plugin.limits.output_kib,
            });
        }
        Ok(value)
    }

    fn call_failure(
        &self,
        plugin: &PreparedPlugin,
        function: &'static str,
        error: wasmtime::Error,
        hit: Option<LimitHit>,
        elapsed: Duration,
        stderr: String,
    ) -> CallError {
        let id = plugin.id.clone();
        match hit {
            Some(LimitHit::Memory { requested }) => {
                return CallError::MemoryLimit {
                    plugin: id,
                    requested,
                    limit_mib: plugin.limits.memory_mib,
                };
            }
            Some(LimitHit::TableElements) => {
                return CallError::ResourceLimit {
                    plugin: id,
                    what: "table elements",
                };
            }
            None => {}
        }
        match error.downcast_ref::<Trap>() {
            Some(Trap::Interrupt) => CallError::CpuLimit {
                plugin: id,
                limit_ms: plugin.limits.cpu_ms,
                elapsed_ms: elapsed.as_millis() as u64,
            },
            Some(trap) => CallError::Trapped {
                plugin: id,
                function,
                trap: trap.to_string(),
                stderr,
            },
            None => CallError::Trapped {
                plugin: id,
                function,
                trap: super::quote::quote(&format!("{error:#}")),
                stderr,
            },
        }
    }
}

/// How many bytes the host may copy out of a call's guest, as a multiple of
/// the output limit. The copy is counted in host sizes (a `String` in a list
/// counts its 24-byte header, a record its whole struct), which run above
/// the serialized size `output::size_within` measures: 4x leaves room for
/// any output within the limit.
pub const COPY_BUDGET_FACTOR: usize = 4;

/// Whether `error` is wasmtime refusing a copy out of the guest past the
/// store's hostcall fuel. Its error type is private, so the message is
/// the only thing to go by (pinned by a test against a real plugin).
fn copy_budget_exhausted(error: &wasmtime::Error) -> bool {
    format!("{error:#}").contains("too much data is being copied between the host and the guest")
}

/// Shadow WASI's `open-at` with one that first looks at what the path is,
/// without opening it (`open` on a FIFO blocks until a writer comes): a
/// FIFO, socket or device is refused as unreadable; anything else goes to
/// wasmtime-wasi's own `open-at`, which confines the path to the preopen.
fn refuse_special_files(linker: &mut Linker<CallState>) -> wasmtime::Result<()> {
    use wasmtime_wasi::filesystem::WasiFilesystemView;
    use wasmtime_wasi::p2::bindings::filesystem::types::{
        Descriptor, DescriptorFlags, ErrorCode, Host, HostDescriptor, OpenFlags, PathFlags,
    };
    type Params = (
        Resource<Descriptor>,
        PathFlags,
        String,
        OpenFlags,
        DescriptorFlags,
    );
    linker.allow_shadowing(true);
    linker.instance(WASI_FILESYSTEM_TYPES)?.func_wrap_async(
        "[method]descriptor.open-at",
        |mut store: StoreContextMut<'_, CallState>,
         (fd, path_flags, path, oflags, flags): Params| {
            Box::new(async move {
                let plugin = store.data().plugin.clone();
                let mut view = store.data_mut().filesystem();
                let follow = path_flags.contains(PathFlags::SYMLINK_FOLLOW);
                let special = match view.table.get(&fd) {
                    Ok(Descriptor::Dir(dir)) => special_file(&dir.dir, &path, follow),
                    _ => None,
                };
                if let Some(kind) = special {
                    tracing::debug!(%plugin, path = %path, "open refused: the path is {kind}");
                    return Ok((Err(ErrorCode::Access),));
                }
                match view.open_at(fd, path_flags, path, oflags, flags).await {
                    Ok(opened) => Ok((Ok(opened),)),
                    Err(e) => Ok((Err(Host::convert_error_code(&mut view, e)?),)),
                }
            })
        },
    )?;
    linker.allow_shadowing(false);
    Ok(())
}

/// What `path` under the directory `dir` is, when it is neither a regular
/// file, a directory nor a symlink: `lstat`/`stat` never block on a FIFO.
/// Absolute paths and paths that do not resolve are left to `open-at`,
/// which refuses what leaves the preopen.
fn special_file(dir: &std::fs::File, path: &str, follow: bool) -> Option<&'static str> {
    use std::os::fd::AsRawFd;
    use std::os::unix::fs::FileTypeExt;
    if path.starts_with('/') {
        return None;
    }
    let full = Path::new("/proc/self/fd")
        .join(dir.as_raw_fd().to_string())
        .join(path);
    let meta = if follow {
        std::fs::metadata(&full)
    } else {
        std::fs::symlink_metadata(&full)
    }
    .ok()?;
    let kind = meta.file_type();
    if kind.is_fifo() {
        Some("a FIFO")
    } else if kind.is_socket() {
        Some("a socket")
    } else if kind.is_char_device() || kind.is_block_device() {
        Some("a device")
    } else {
        None
    }
}

fn build_engine(options: &SandboxOptions) -> Result<Engine, SandboxError> {
    let mut config = Config::new();
    config.wasm_component_model(true).epoch_interruption(true);
    if options.pooling {
        let mut pool = PoolingAllocationConfig::default();
        pool.total_component_instances(POOL_COMPONENT_INSTANCES)
            .total_core_instances(POOL_COMPONENT_INSTANCES * MAX_INSTANCES as u32)
            .total_memories(POOL_COMPONENT_INSTANCES * MAX_MEMORIES as u32)
            .total_tables(POOL_COMPONENT_INSTANCES * MAX_TABLES as u32)
            .max_memory_size(options.policy.maxima.memory_mib as usize * 1024 * 1024)
            .max_core_instances_per_component(MAX_INSTANCES as u32)
            .max_memories_per_component(MAX_MEMORIES as u32)
            .max_tables_per_component(MAX_TABLES as u32)
            .table_elements(MAX_TABLE_ELEMENTS)
            // One fiber stack per call slot (the default reserves 1000, a
            // few ms of `mprotect` at every start of a CLI command).
            .total_stacks(POOL_COMPONENT_INSTANCES);
        config.allocation_strategy(InstanceAllocationStrategy::Pooling(pool));
    }
    Engine::new(&config).map_err(|e| SandboxError::Engine(format!("{e:#}")))
}

/// Core modules start `\0asm 01 00 00 00`; components `\0asm 0d 00 01 00`.
fn check_component_header(wasm: &[u8]) -> Result<(), LoadError> {
    let detail = match wasm.get(..8) {
        Some([0, b'a', b's', b'm', _, _, 1, 0]) => return Ok(()),
        Some([0, b'a', b's', b'm', _, _, 0, 0]) => "it is a core WebAssembly module".to_owned(),
        _ => format!(
            "it does not start with the WebAssembly magic bytes ({} bytes)",
            wasm.len()
        ),
    };
    Err(LoadError::NotAComponent { detail })
}

fn repo_request(options: &[OptionPair]) -> RepoRequest {
    RepoRequest {
        root: REPO_GUEST_PATH.to_owned(),
        options: options.to_vec(),
    }
}

fn wrong_world(plugin: &PreparedPlugin, expected: World) -> CallError {
    CallError::WrongWorld {
        plugin: plugin.id.clone(),
        expected,
        actual: plugin.world(),
    }
}

fn reported<T>(plugin: &PreparedPlugin, out: Result<T, PluginError>) -> Result<T, CallError> {
    out.map_err(|error| CallError::Reported {
        plugin: plugin.id.clone(),
        error,
    })
}

fn invalid(
    plugin: &PreparedPlugin,
    function: &'static str,
    check: Result<(), output::InvalidOutput>,
) -> Result<(), CallError> {
    check.map_err(|problem| CallError::InvalidOutput {
        plugin: plugin.id.clone(),
        function,
        problem: problem.0,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn header_check_tells_modules_from_components() {
        assert!(check_component_header(b"\0asm\x0d\0\x01\0rest").is_ok());
        let core = check_component_header(b"\0asm\x01\0\0\0")
            .unwrap_err()
            .to_string();
        assert!(core.contains("core WebAssembly module"), "{core}");
        let junk = check_component_header(b"hello").unwrap_err().to_string();
        assert!(junk.contains("magic bytes (5 bytes)"), "{junk}");
    }

    #[test]
    fn stderr_suffix_keeps_the_last_lines() {
        assert_eq!(stderr_suffix(""), "");
        assert_eq!(
            stderr_suffix("a\nb\n\nc\nd\n"),
            " (plugin stderr: b | c | d)"
        );
    }
}

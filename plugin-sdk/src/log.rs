//! Logging to the engine's log (`slipway:plugin/host.log`).
//!
//! Inside the sandbox this calls the host; under `cargo test` on the host it
//! prints to stderr, so the same plugin code runs in both places.

pub use crate::ecosystem::bindings::slipway::plugin::host::Level;

/// Write one message at `level`.
pub fn log(level: Level, message: &str) {
    #[cfg(target_arch = "wasm32")]
    crate::ecosystem::bindings::slipway::plugin::host::log(level, message);
    #[cfg(not(target_arch = "wasm32"))]
    eprintln!("[{level:?}] {message}");
}

pub fn debug(message: &str) {
    log(Level::Debug, message)
}

pub fn info(message: &str) {
    log(Level::Info, message)
}

pub fn warn(message: &str) {
    log(Level::Warn, message)
}

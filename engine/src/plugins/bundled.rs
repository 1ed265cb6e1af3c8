//! First-party plugins compiled into the binary by `build.rs`, so `slipway`
//! finds them with no configuration.

/// One bundled plugin: its manifest as JSON (with `sha256`), and its component.
pub struct BundledPlugin {
    pub dir_name: &'static str,
    pub manifest: &'static str,
    pub wasm: &'static [u8],
}

include!(concat!(env!("OUT_DIR"), "/bundled_plugins.rs"));

//! Configuration: `slipway.toml` (path from `--config` or `SLIPWAY_CONFIG`)
//! with every key overridable by `SLIPWAY_<KEY>` (`__` between levels, e.g.
//! `SLIPWAY_PLUGINS__DEFAULT_CPU_MS`). Parsed raw once, then resolved into a
//! validated [`Config`]; nothing else in the engine reads the environment.
//! Every key and its default is documented in `docs/configuration.md`.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use figment::Figment;
use figment::providers::{Env, Format, Toml};
use serde::Deserialize;

use crate::plugins::{Limits, LimitsPolicy};

/// Why the configuration could not be loaded; the engine refuses to start.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    /// The file named by `--config` or `SLIPWAY_CONFIG` is not there.
    #[error(
        "configuration file {path} does not exist (from {origin}); create it or unset {origin}"
    )]
    MissingFile {
        /// The configuration file that was named.
        path: PathBuf,
        /// Where it was named: `--config` or `SLIPWAY_CONFIG`.
        origin: &'static str,
    },
    /// The TOML or a `SLIPWAY_*` variable does not parse, or has an unknown key
    /// or a value of the wrong type.
    #[error("invalid configuration: {0}")]
    Invalid(#[from] Box<figment::Error>),
    /// A key parsed but its value is out of range or inconsistent.
    #[error("invalid configuration: `{key}`: {message}")]
    Value {
        /// The offending key, dotted below the top level (`plugins.max_cpu_ms`).
        key: &'static str,
        /// What is wrong with the value, for the operator.
        message: String,
    },
    /// No `state_dir` configured and none derivable from the environment.
    #[error(
        "no state directory: neither SLIPWAY_STATE_DIR, XDG_STATE_HOME nor HOME is set (hint: set SLIPWAY_STATE_DIR)"
    )]
    NoStateDir,
}

/// Top-level keys of `slipway.toml`, the only `SLIPWAY_*` variables read as configuration.
const CONFIG_KEYS: &[&str] = &[
    "state_dir",
    "plugins_dir",
    "plugins",
    "listen",
    "advertise_url",
    "token",
    "token_file",
    "allow_local_paths",
    "base_images",
    "ca_bundle",
    "git_credentials",
    "git_ssh_keys",
    "git_known_hosts",
    "runner",
    "workspaces",
    "outbound",
    "tls",
    "auth_failure_limit",
    "store",
    "node_id",
];
/// `SLIPWAY_*` variables that are not configuration keys (read elsewhere).
const CLIENT_ONLY_VARIABLES: &[&str] = &["config", "log", "log_json", "url"];

/// The configuration as written: every field optional.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawConfig {
    state_dir: Option<PathBuf>,
    /// Extra plugin registry directories, `:`-separated like `PATH`.
    plugins_dir: Option<String>,
    #[serde(default)]
    plugins: RawPluginConfig,
    listen: Option<String>,
    advertise_url: Option<String>,
    store: Option<String>,
    node_id: Option<String>,
    token: Option<String>,
    token_file: Option<PathBuf>,
    #[serde(default)]
    allow_local_paths: bool,
    #[serde(default)]
    base_images: BTreeMap<String, String>,
    ca_bundle: Option<PathBuf>,
    /// Host → secret reference of its git credential.
    #[serde(default)]
    git_credentials: BTreeMap<String, String>,
    /// Host → secret reference of an SSH private key (a deploy key).
    #[serde(default)]
    git_ssh_keys: BTreeMap<String, String>,
    /// The host keys SSH checks git servers against.
    git_known_hosts: Option<PathBuf>,
    #[serde(default)]
    runner: RawRunnerConfig,
    #[serde(default)]
    workspaces: RawWorkspaceConfig,
    /// Where outbound requests (git, callbacks, forge APIs) may go.
    #[serde(default)]
    outbound: crate::outbound::OutboundPolicy,
    /// Failed authentications one client address may make per 10 s.
    auth_failure_limit: Option<u32>,
    /// The certificate pair `serve` terminates TLS with.
    #[serde(default)]
    tls: RawTlsConfig,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawTlsConfig {
    cert: Option<PathBuf>,
    key: Option<PathBuf>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawWorkspaceConfig {
    max_open: Option<usize>,
    max_full_runs: Option<u32>,
    step_timeout_s: Option<u64>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawRunnerConfig {
    concurrency: Option<usize>,
    per_repository: Option<usize>,
    total_concurrency: Option<usize>,
    build_network: Option<String>,
    holder_image: Option<String>,
    stop_grace_s: Option<u64>,
    log_cap_mb: Option<u64>,
    cache_budget_mb: Option<u64>,
    image_budget_mb: Option<u64>,
    drain_s: Option<u64>,
    lease_s: Option<u64>,
    checkout_max_mb: Option<u64>,
    checkout_timeout_s: Option<u64>,
    output_kept_mb: Option<u64>,
    selinux_relabel: Option<bool>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawPluginConfig {
    default_cpu_ms: Option<u32>,
    max_cpu_ms: Option<u32>,
    default_memory_mib: Option<u32>,
    max_memory_mib: Option<u32>,
    default_output_kib: Option<u32>,
    max_output_kib: Option<u32>,
    ecosystem_order: Option<Vec<String>>,
    /// Bundled plugin names a third-party plugin may replace.
    #[serde(default)]
    replace: Vec<String>,
    /// Third-party ecosystem plugins that may outrank bundled ones.
    #[serde(default)]
    prefer: Vec<String>,
}

/// The resolved configuration.
#[derive(Debug, Clone)]
pub struct Config {
    /// Holds the store, logs, checkouts and the precompiled-plugin cache.
    pub state_dir: PathBuf,
    /// Where `serve` listens.
    pub listen: std::net::SocketAddr,
    /// The certificate pair `serve` terminates TLS with (`[tls]`); `None`:
    /// it serves plain HTTP (for a reverse proxy in front). Only both paths
    /// are checked here; `serve` reads and checks the files.
    pub tls: Option<crate::tls::TlsFiles>,
    /// The URL people and forges reach this engine at (commit statuses link
    /// their jobs there); `None`: statuses carry no link.
    pub advertise_url: Option<String>,
    /// Where the engine keeps its state: the embedded redb file (default)
    /// or a PostgreSQL database shared by replicas.
    pub store: StoreLocation,
    /// This replica's name among the engines of one store (`node_id`,
    /// default: the host name); its containers carry it.
    pub node_id: String,
    /// The API token, when given directly (else `token_file`, else `<state>/token`).
    pub token: Option<String>,
    /// A file holding the API token; must exist when set (unset: `<state>/token`,
    /// generated on first `serve`).
    pub token_file: Option<PathBuf>,
    /// Whether jobs may name a local path as their repository.
    pub allow_local_paths: bool,
    /// Official base-image names mapped to a mirror or private registry.
    pub base_images: BTreeMap<String, String>,
    /// A PEM bundle package managers trust in generated image builds and in
    /// job containers (behind a TLS-inspecting proxy: the system bundle
    /// plus the proxy's CA).
    pub ca_bundle: Option<PathBuf>,
    /// Jobs this engine runs at once.
    pub concurrency: usize,
    /// Jobs of one repository running at once (0: no per-repository limit).
    pub per_repository: usize,
    /// Jobs running at once in the whole store: with a shared store, across
    /// every replica (0: no limit beyond each engine's `concurrency`).
    pub total_concurrency: usize,
    /// Network for image builds: `host` where the daemon has no bridge.
    pub build_network: String,
    /// Image of the container that holds each job's network namespace and
    /// runs TCP/HTTP probes (a busybox: `sh` and `nc`).
    pub holder_image: String,
    /// Time a stopped step gets between SIGTERM and SIGKILL.
    pub stop_grace: std::time::Duration,
    /// A job's log stops growing here (bytes).
    pub log_cap: u64,
    /// Budget of each package-manager cache volume (MiB).
    pub cache_budget_mb: u64,
    /// Total of runner images kept (MiB), least recently used removed first.
    pub image_budget_mb: u64,
    /// On SIGTERM, how long running jobs may go on before they are requeued.
    pub drain: std::time::Duration,
    /// How long a job's lease lasts without a heartbeat (`runner.lease_s`,
    /// default 30, at least 3): how soon another replica retries the
    /// attempts of one that died. Heartbeats come at a sixth of it.
    pub lease: std::time::Duration,
    /// The largest checkout, in MiB (more: the job fails, not retried).
    pub checkout_max_mb: u64,
    /// The longest a git command of a checkout may run.
    pub checkout_timeout: std::time::Duration,
    /// What Docker keeps of a job container's output (MiB; the engine reads
    /// it as it comes, and again after a restart).
    pub output_kept_mb: u64,
    /// Relabel bind mounts for SELinux; `None`: when the daemon runs it.
    pub selinux_relabel: Option<bool>,
    /// Credentials of private repositories, by host (secret references):
    /// HTTPS tokens and SSH keys.
    pub git_credentials: crate::git_auth::GitCredentials,
    /// Where outbound requests may go (`[outbound]`): repository URLs,
    /// callback URLs and forge APIs are checked against it after DNS.
    pub outbound: std::sync::Arc<crate::outbound::OutboundPolicy>,
    /// Open workspaces at most (more: 429).
    pub workspaces_max_open: usize,
    /// Failed authentications one client address may make per 10 s before
    /// they are answered 429 (default 20).
    pub auth_failure_limit: u32,
    /// `full` validate calls per workspace.
    pub workspaces_max_full_runs: u32,
    /// A workspace step's timeout unless its spec sets `timeout_s`.
    pub workspaces_step_timeout: std::time::Duration,
    /// Third-party plugin registry directories, searched after the bundled plugins.
    pub plugin_dirs: Vec<PathBuf>,
    /// CPU, memory and output limits of plugin calls (`plugins.default_*`,
    /// `plugins.max_*`), validated: each default is between 1 and its maximum.
    pub plugin_limits: LimitsPolicy,
    /// Tie-break among ecosystems detected with equal confidence.
    pub ecosystem_order: Vec<String>,
    /// What third-party plugins are trusted with (`plugins.replace`,
    /// `plugins.prefer`).
    pub plugin_trust: crate::plugins::registry::Trust,
}

/// Default holder image: busybox's official image (`scripts/images.sh`
/// builds a stand-in where no registry is reachable).
pub const DEFAULT_HOLDER_IMAGE: &str = "busybox:1.36";

/// Default tie-break order among ecosystems (docs/design.md, "Choosing among ecosystems").
pub const DEFAULT_ECOSYSTEM_ORDER: &[&str] =
    &["dockerfile", "go", "rust", "ruby", "python", "node"];

impl Config {
    /// Load from `file` (or `SLIPWAY_CONFIG`, or nothing) plus the environment.
    pub fn load(file: Option<&Path>) -> Result<Config, ConfigError> {
        let mut figment = Figment::new();
        let from_env = std::env::var_os("SLIPWAY_CONFIG").map(PathBuf::from);
        let (path, origin) = match (file, from_env) {
            (Some(p), _) => (Some(p.to_path_buf()), "--config"),
            (None, Some(p)) => (Some(p), "SLIPWAY_CONFIG"),
            (None, None) => (None, ""),
        };
        if let Some(path) = path {
            if !path.is_file() {
                return Err(ConfigError::MissingFile { path, origin });
            }
            figment = figment.merge(Toml::file(path));
        }
        figment = figment.merge(Env::prefixed("SLIPWAY_").split("__").filter(|key| {
            // The key arrives split already: `runner.concurrency`.
            let lower = key.as_str().to_ascii_lowercase();
            let top = lower.split('.').next().unwrap_or_default();
            let known = CONFIG_KEYS.contains(&top);
            if !known && !CLIENT_ONLY_VARIABLES.contains(&top) {
                tracing::warn!(
                    "ignoring SLIPWAY_{}: not a configuration key",
                    key.as_str().to_ascii_uppercase()
                );
            }
            known
        }));
        let raw: RawConfig = figment.extract().map_err(Box::new)?;
        Self::resolve(raw)
    }

    fn resolve(raw: RawConfig) -> Result<Config, ConfigError> {
        let state_dir = match raw.state_dir {
            Some(dir) => dir,
            None => default_state_dir().ok_or(ConfigError::NoStateDir)?,
        };
        let plugin_dirs = raw
            .plugins_dir
            .as_deref()
            .map(|s| {
                s.split(':')
                    .filter(|p| !p.is_empty())
                    .map(PathBuf::from)
                    .collect()
            })
            .unwrap_or_default();
        let p = raw.plugins;
        let d = LimitsPolicy::default();
        let policy = LimitsPolicy {
            defaults: Limits {
                cpu_ms: p.default_cpu_ms.unwrap_or(d.defaults.cpu_ms),
                memory_mib: p.default_memory_mib.unwrap_or(d.defaults.memory_mib),
                output_kib: p.default_output_kib.unwrap_or(d.defaults.output_kib),
            },
            maxima: Limits {
                cpu_ms: p.max_cpu_ms.unwrap_or(d.maxima.cpu_ms),
                memory_mib: p.max_memory_mib.unwrap_or(d.maxima.memory_mib),
                output_kib: p.max_output_kib.unwrap_or(d.maxima.output_kib),
            },
        };
        for (key, default, max) in [
            (
                "plugins.default_cpu_ms",
                policy.defaults.cpu_ms,
                policy.maxima.cpu_ms,
            ),
            (
                "plugins.default_memory_mib",
                policy.defaults.memory_mib,
                policy.maxima.memory_mib,
            ),
            (
                "plugins.default_output_kib",
                policy.defaults.output_kib,
                policy.maxima.output_kib,
            ),
        ] {
            if default == 0 || default > max {
                return Err(ConfigError::Value {
                    key,
                    message: format!("{default} must be between 1 and its maximum {max}"),
                });
            }
        }
        let plugin_trust = crate::plugins::registry::Trust {
            replace: p.replace,
            prefer: p.prefer,
        };
        let ecosystem_order = p.ecosystem_order.unwrap_or_else(|| {
            DEFAULT_ECOSYSTEM_ORDER
                .iter()
                .map(|s| s.to_string())
                .collect()
        });
        let listen = raw.listen.as_deref().unwrap_or("127.0.0.1:7878");
        let listen = listen.parse().map_err(|e| ConfigError::Value {
            key: "listen",
            message: format!("`{listen}` is not host:port ({e})"),
        })?;
        let tls = resolve_tls(raw.tls)?;
        let advertise_url = match raw.advertise_url.filter(|u| !u.is_empty()) {
            Some(u) if u.starts_with("http://") || u.starts_with("https://") => {
                Some(u.trim_end_matches('/').to_owned())
            }
            Some(u) => {
                return Err(ConfigError::Value {
                    key: "advertise_url",
                    message: format!(
                        "`{u}` is not an http:// or https:// URL (the address people and forges reach this engine at)"
                    ),
                });
            }
            None => None,
        };
        let store = StoreLocation::parse(raw.store.as_deref().unwrap_or(""))?;
        let node_id = match raw.node_id.filter(|n| !n.is_empty()) {
            Some(n) => n,
            None => default_node_id(),
        };
        if !valid_node_id(&node_id) {
            return Err(ConfigError::Value {
                key: "node_id",
                message: format!(
                    "`{node_id}` is not a node id: 1 to 63 letters, digits, `-`, `_` or `.` (set SLIPWAY_NODE_ID)"
                ),
            });
        }
        let ca_bundle = raw.ca_bundle.filter(|p| !p.as_os_str().is_empty());
        if let Some(path) = &ca_bundle {
            let text = std::fs::read_to_string(path).map_err(|e| ConfigError::Value {
                key: "ca_bundle",
                message: format!("cannot read {}: {e}", path.display()),
            })?;
            if !text.contains("-----BEGIN CERTIFICATE-----") {
                return Err(ConfigError::Value {
                    key: "ca_bundle",
                    message: format!("{} holds no PEM certificate", path.display()),
                });
            }
        }
        let git_credentials =
            crate::git_auth::GitCredentials::new(raw.git_credentials).map_err(|e| {
                ConfigError::Value {
                    key: "git_credentials",
                    message: e.to_string(),
                }
            })?;
        let git_credentials = git_credentials
            .with_ssh_keys(raw.git_ssh_keys, raw.git_known_hosts)
            .map_err(|e| ConfigError::Value {
                key: match e {
                    crate::git_auth::GitAuthError::KnownHosts { .. } => "git_known_hosts",
                    _ => "git_ssh_keys",
                },
                message: e.to_string(),
            })?;
        raw.outbound.validate().map_err(|e| ConfigError::Value {
            key: "outbound",
            message: e.to_string(),
        })?;
        let outbound = std::sync::Arc::new(raw.outbound);
        let git_credentials = git_credentials.with_outbound(outbound.clone());
        Ok(Config {
            listen,
            tls,
            advertise_url,
            store,
            node_id,
            ca_bundle,
            git_credentials,
            outbound,
            token: raw.token.filter(|t| !t.is_empty()),
            token_file: raw.token_file,
            allow_local_paths: raw.allow_local_paths,
            base_images: raw.base_images,
            concurrency: raw.runner.concurrency.unwrap_or(4).max(1),
            per_repository: raw.runner.per_repository.unwrap_or(2),
            total_concurrency: raw.runner.total_concurrency.unwrap_or(0),
            build_network: raw.runner.build_network.unwrap_or_else(|| "host".into()),
            holder_image: raw
                .runner
                .holder_image
                .unwrap_or_else(|| DEFAULT_HOLDER_IMAGE.into()),
            stop_grace: std::time::Duration::from_secs(raw.runner.stop_grace_s.unwrap_or(10)),
            log_cap: raw.runner.log_cap_mb.unwrap_or(64).max(1) << 20,
            cache_budget_mb: raw.runner.cache_budget_mb.unwrap_or(2048).max(1),
            image_budget_mb: raw.runner.image_budget_mb.unwrap_or(20 * 1024).max(1),
            drain: std::time::Duration::from_secs(raw.runner.drain_s.unwrap_or(20)),
            lease: std::time::Duration::from_secs(raw.runner.lease_s.unwrap_or(30).max(3)),
            checkout_max_mb: raw
                .runner
                .checkout_max_mb
                .unwrap_or(crate::checkout::DEFAULT_CHECKOUT_MAX_MB)
                .max(1),
            checkout_timeout: std::time::Duration::from_secs(
                raw.runner.checkout_timeout_s.unwrap_or(600).max(1),
            ),
            output_kept_mb: raw.runner.output_kept_mb.unwrap_or(1024).max(2),
            selinux_relabel: raw.runner.selinux_relabel,
            workspaces_max_open: raw.workspaces.max_open.unwrap_or(8),
            auth_failure_limit: raw
                .auth_failure_limit
                .unwrap_or(crate::api::auth::FAILURES_PER_WINDOW),
            workspaces_max_full_runs: raw.workspaces.max_full_runs.unwrap_or(3),
            workspaces_step_timeout: std::time::Duration::from_secs(
                raw.workspaces.step_timeout_s.unwrap_or(600).max(1),
            ),
            state_dir,
            plugin_dirs,
            plugin_limits: policy,
            ecosystem_order,
            plugin_trust,
        })
    }

    /// Where precompiled plugin components are kept.
    pub fn plugin_cache_dir(&self) -> PathBuf {
        self.state_dir.join("plugin-cache")
    }
}

/// `[tls]`: both files or neither (an empty value is unset).
fn resolve_tls(raw: RawTlsConfig) -> Result<Option<crate::tls::TlsFiles>, ConfigError> {
    let set = |p: Option<PathBuf>| p.filter(|p| !p.as_os_str().is_empty());
    match (set(raw.cert), set(raw.key)) {
        (Some(cert), Some(key)) => Ok(Some(crate::tls::TlsFiles { cert, key })),
        (None, None) => Ok(None),
        (Some(_), None) => Err(ConfigError::Value {
            key: "tls.key",
            message: "not set, but `tls.cert` is: set it to the certificate's PEM private key file (SLIPWAY_TLS__KEY), or unset `tls.cert` to serve plain HTTP".into(),
        }),
        (None, Some(_)) => Err(ConfigError::Value {
            key: "tls.cert",
            message: "not set, but `tls.key` is: set it to the PEM certificate chain file, server certificate first (SLIPWAY_TLS__CERT), or unset `tls.key` to serve plain HTTP".into(),
        }),
    }
}

/// `$XDG_STATE_HOME/slipway`, else `~/.local/state/slipway`.
fn default_state_dir() -> Option<PathBuf> {
    if let Some(x) = std::env::var_os("XDG_STATE_HOME").filter(|v| !v.is_empty()) {
        return Some(PathBuf::from(x).join("slipway"));
    }
    std::env::var_os("HOME")
        .filter(|v| !v.is_empty())
        .map(|h| PathBuf::from(h).join(".local/state/slipway"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults_resolve() {
        let c = Config::resolve(RawConfig {
            state_dir: Some("/tmp/s".into()),
            ..Default::default()
        })
        .unwrap();
        assert_eq!(c.plugin_limits.defaults.cpu_ms, 2000);
        assert_eq!(c.plugin_limits.defaults.memory_mib, 64);
        assert_eq!(c.ecosystem_order[0], "dockerfile");
        assert!(c.plugin_dirs.is_empty());
    }

    #[test]
    fn default_above_maximum_is_refused_with_the_key() {
        let raw = RawConfig {
            state_dir: Some("/tmp/s".into()),
            plugins: RawPluginConfig {
                default_memory_mib: Some(4096),
                ..Default::default()
            },
            ..Default::default()
        };
        let e = Config::resolve(raw).unwrap_err().to_string();
        assert!(
            e.contains("`plugins.default_memory_mib`: 4096 must be between 1 and its maximum 512"),
            "{e}"
        );
    }

    #[test]
    fn tls_needs_both_files_and_names_the_missing_one() {
        let with = |cert: Option<&str>, key: Option<&str>| {
            Config::resolve(RawConfig {
                state_dir: Some("/tmp/s".into()),
                tls: RawTlsConfig {
                    cert: cert.map(PathBuf::from),
                    key: key.map(PathBuf::from),
                },
                ..Default::default()
            })
        };
        let e = with(Some("/etc/slipway/fullchain.pem"), None)
            .unwrap_err()
            .to_string();
        assert!(
            e.contains("`tls.key`: not set, but `tls.cert` is") && e.contains("SLIPWAY_TLS__KEY"),
            "{e}"
        );
        let e = with(None, Some("/etc/slipway/key.pem"))
            .unwrap_err()
            .to_string();
        assert!(e.contains("`tls.cert`: not set, but `tls.key` is"), "{e}");
        assert_eq!(with(None, None).unwrap().tls, None);
        assert_eq!(with(Some(""), Some("")).unwrap().tls, None);
        let both = with(Some("/c.pem"), Some("/k.pem")).unwrap().tls.unwrap();
        assert_eq!(both.cert, PathBuf::from("/c.pem"));
        assert_eq!(both.key, PathBuf::from("/k.pem"));
    }

    #[test]
    fn runner_limits_parse_from_the_file_and_default_to_none_store_wide() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("slipway.toml");
        std::fs::write(&path, "state_dir = \"/x\"\n").unwrap();
        let c = Config::load(Some(&path)).unwrap();
        assert_eq!(
            (c.concurrency, c.per_repository, c.total_concurrency),
            (4, 2, 0)
        );
        std::fs::write(
            &path,
            "state_dir = \"/x\"\n[runner]\nconcurrency = 8\ntotal_concurrency = 20\n",
        )
        .unwrap();
        let c = Config::load(Some(&path)).unwrap();
        assert_eq!((c.concurrency, c.total_concurrency), (8, 20));
    }

    #[test]
    fn tls_table_parses_from_the_file() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("slipway.toml");
        std::fs::write(
            &path,
            "state_dir = \"/x\"\n[tls]\ncert = \"/c.pem\"\nkey = \"/k.pem\"\n",
        )
        .unwrap();
        let tls = Config::load(Some(&path)).unwrap().tls.unwrap();
        assert_eq!(tls.cert, PathBuf::from("/c.pem"));
        std::fs::write(
            &path,
            "state_dir = \"/x\"\n[tls]\ncertificate = \"/c.pem\"\n",
        )
        .unwrap();
        let e = Config::load(Some(&path)).unwrap_err().to_string();
        assert!(e.contains("certificate"), "{e}");
    }

    #[test]
    fn unknown_key_in_file_is_an_error() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("slipway.toml");
        std::fs::write(&path, "state_dir = \"/x\"\n[plugins]\ndefault_cpu = 5\n").unwrap();
        let e = Config::load(Some(&path)).unwrap_err().to_string();
        assert!(e.contains("default_cpu"), "{e}");
    }
}

/// Where the engine's state is kept (config `store`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum StoreLocation {
    /// `<state_dir>/store.redb`: one engine, no server (`store = "redb"`,
    /// the default).
    Redb,
    /// A PostgreSQL database, as a URL (`postgres://…`) or a secret
    /// reference to one (`env:NAME`, `file:/path`), resolved when the store
    /// is opened.
    Postgres(String),
}

impl StoreLocation {
    fn parse(value: &str) -> Result<StoreLocation, ConfigError> {
        let value = value.trim();
        if value.is_empty() || value == "redb" {
            return Ok(StoreLocation::Redb);
        }
        if value.starts_with("postgres://") || value.starts_with("postgresql://") {
            return Ok(StoreLocation::Postgres(value.to_owned()));
        }
        if crate::secrets::check_reference("store", value).is_ok() {
            return Ok(StoreLocation::Postgres(value.to_owned()));
        }
        Err(ConfigError::Value {
            key: "store",
            // Not echoed: a mistyped URL may hold a password.
            message: "is neither `redb` nor a PostgreSQL URL (postgres://user:password@host/db) nor a secret reference to one (env:NAME, file:/path)".into(),
        })
    }

    /// The PostgreSQL URL, its reference resolved (`None` for redb).
    pub fn postgres_url(
        &self,
    ) -> Result<Option<zeroize::Zeroizing<String>>, crate::secrets::SecretError> {
        match self {
            StoreLocation::Redb => Ok(None),
            StoreLocation::Postgres(v) if v.starts_with("postgres") => {
                Ok(Some(zeroize::Zeroizing::new(v.clone())))
            }
            StoreLocation::Postgres(reference) => {
                crate::secrets::resolve_value("store", reference).map(Some)
            }
        }
    }
}

/// The host name, else `slipway`.
fn default_node_id() -> String {
    std::fs::read_to_string("/proc/sys/kernel/hostname")
        .ok()
        .map(|h| h.trim().to_owned())
        .filter(|h| valid_node_id(h))
        .unwrap_or_else(|| "slipway".into())
}

/// 1 to 63 of `[A-Za-z0-9._-]`: safe in a label, a worker name and a log.
fn valid_node_id(id: &str) -> bool {
    !id.is_empty()
        && id.len() <= 63
        && id
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.'))
}

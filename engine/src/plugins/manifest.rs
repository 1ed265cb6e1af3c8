//! `plugin.toml`: what a plugin says about itself.
//!
//! ```toml
//! name = "node"                 # [a-z][a-z0-9-]*, the registry folder's name
//! version = "1.2.0"             # semver, the registry subfolder's name
//! world = "ecosystem"           # ecosystem | validator | readiness
//! api = "^1.0"                  # semver requirement on slipway:plugin
//! sha256 = "…"                  # of plugin.wasm; written by `slipway plugins install`
//! description = "Node.js: …"
//! detect-files = ["package.json", ".nvmrc"]   # optional: root files that make detect worth calling
//! [limits]                      # optional, each within the engine's maxima
//! cpu-ms = 2000
//! memory-mib = 64
//! output-kib = 1024
//! ```

use std::fmt;

use serde::{Deserialize, Serialize};

use super::{HOST_API_VERSION, Limits, LimitsPolicy, World};

/// A manifest problem, naming the file and (where known) the field or line.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub struct ManifestError {
    /// The manifest's path (or another description of where it came from).
    pub origin: String,
    /// The offending key as written, e.g. `detect-files` or `limits.cpu-ms`;
    /// `None` when the TOML itself does not parse.
    pub field: Option<String>,
    /// 1-based line of a TOML parse error; `None` for a field that parsed but
    /// is invalid.
    pub line: Option<usize>,
    /// What is wrong, for the plugin's author.
    pub message: String,
}

impl fmt::Display for ManifestError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.origin)?;
        if let Some(line) = self.line {
            write!(f, ":{line}")?;
        }
        if let Some(field) = &self.field {
            write!(f, ": field `{field}`")?;
        }
        write!(f, ": {}", self.message)
    }
}

/// `plugin.toml` as written (a wire type: field names are the contract).
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
struct RawManifest {
    name: String,
    version: String,
    world: String,
    api: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    sha256: Option<String>,
    description: String,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    detect_files: Vec<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    limits: Option<RawLimits>,
}

/// A manifest's `[limits]` as written: what the plugin asks for, each at most
/// the engine's default (see [`Manifest::effective_limits`]); `None`: the default.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize, Serialize)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
pub struct RawLimits {
    /// `cpu-ms`: wall-clock budget of one call, in ms (greater than 0).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub cpu_ms: Option<u32>,
    /// `memory-mib`: linear memory cap, in MiB (greater than 0).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub memory_mib: Option<u32>,
    /// `output-kib`: cap on the size of what a call returns, in KiB (greater than 0).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub output_kib: Option<u32>,
}

/// A validated manifest.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Manifest {
    /// `[a-z][a-z0-9-]*`, at most 64; also the plugin's folder in a registry.
    pub name: String,
    /// The plugin's own version (the registry subfolder's name); the highest
    /// compatible one of a name is used.
    pub version: semver::Version,
    /// Which WIT world the component implements: what the engine calls it for.
    pub world: World,
    /// Requirement on the host's `slipway:plugin` WIT version, e.g. `^1.0`
    /// (see [`Manifest::api_compatible`]).
    pub api: semver::VersionReq,
    /// Lowercase hex; required for installed plugins, optional in a plugin's
    /// source folder (where `plugins install` fills it in).
    pub sha256: Option<String>,
    /// One line on what the plugin does (never empty), shown by `plugins list`.
    pub description: String,
    /// Root file names that make `detect` worth calling: when none exists
    /// the plugin is skipped uninstantiated; empty: `detect` always runs.
    pub detect_files: Vec<String>,
    /// The `[limits]` the manifest asks for; all `None` when it has none.
    pub limits: RawLimits,
}

/// A manifest's `[limits]` value above the engine's default: a manifest
/// may only lower its limits.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error(
    "`limits.{field}` = {value} is above the engine's default of {default}: a manifest may only lower its limits (an operator raises them with `plugins.{key}`)"
)]
pub struct RaisedLimit {
    /// The key under `[limits]`: `cpu-ms`, `memory-mib` or `output-kib`.
    pub field: &'static str,
    /// What the manifest asks for.
    pub value: u32,
    /// The engine's default for it, which the manifest may not exceed.
    pub default: u32,
    /// The configuration key that raises the default.
    pub key: &'static str,
}

impl Manifest {
    /// Parse and validate a manifest; `origin` names it in errors.
    pub fn parse(text: &str, origin: &str) -> Result<Manifest, ManifestError> {
        let raw: RawManifest = toml::from_str(text).map_err(|e| ManifestError {
            origin: origin.to_owned(),
            field: None,
            line: e
                .span()
                .map(|s| text[..s.start.min(text.len())].matches('\n').count() + 1),
            message: e.message().trim().to_owned(),
        })?;
        Manifest::checked(raw, origin)
    }

    /// A manifest the build script turned into JSON (bundled plugins: a
    /// JSON read costs a fraction of a TOML parse, at every start).
    pub(crate) fn from_json(text: &str, origin: &str) -> Result<Manifest, ManifestError> {
        let raw: RawManifest = serde_json::from_str(text).map_err(|e| ManifestError {
            origin: origin.to_owned(),
            field: None,
            line: Some(e.line()),
            message: e.to_string(),
        })?;
        Manifest::checked(raw, origin)
    }

    /// `raw`'s fields checked and typed.
    fn checked(raw: RawManifest, origin: &str) -> Result<Manifest, ManifestError> {
        let err = |field: Option<&str>, message: String| ManifestError {
            origin: origin.to_owned(),
            field: field.map(str::to_owned),
            line: None,
            message,
        };
        if !valid_name(&raw.name) {
            return Err(err(
                Some("name"),
                format!(
                    "`{}` is not a plugin name: use lowercase letters, digits and `-`, starting with a letter, at most 64",
                    raw.name
                ),
            ));
        }
        let version = semver::Version::parse(&raw.version).map_err(|e| {
            err(
                Some("version"),
                format!("`{}` is not a semver version: {e}", raw.version),
            )
        })?;
        let world = World::parse(&raw.world).ok_or_else(|| {
            err(
                Some("world"),
                format!(
                    "unknown world `{}` (known: ecosystem, validator, readiness)",
                    raw.world
                ),
            )
        })?;
        let api = semver::VersionReq::parse(&raw.api).map_err(|e| {
            err(
                Some("api"),
                format!(
                    "`{}` is not a semver requirement (e.g. \"^1.0\"): {e}",
                    raw.api
                ),
            )
        })?;
        if let Some(sha) = &raw.sha256
            && (sha.len() != 64
                || !sha
                    .bytes()
                    .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b)))
        {
            return Err(err(
                Some("sha256"),
                format!("`{sha}` is not 64 lowercase hex digits"),
            ));
        }
        if raw.description.trim().is_empty() {
            return Err(err(
                Some("description"),
                "is empty; say in one line what the plugin does".into(),
            ));
        }
        if let Some(bad) = raw.detect_files.iter().find(|f| {
            f.is_empty()
                || f.contains('/')
                || f.starts_with('.') && f.trim_start_matches('.').is_empty()
        }) {
            return Err(err(
                Some("detect-files"),
                format!("`{bad}` is not a file name at the repository root"),
            ));
        }
        let limits = raw.limits.unwrap_or_default();
        for (field, value) in [
            ("limits.cpu-ms", limits.cpu_ms),
            ("limits.memory-mib", limits.memory_mib),
            ("limits.output-kib", limits.output_kib),
        ] {
            if value == Some(0) {
                return Err(err(Some(field), "must be greater than 0".into()));
            }
        }
        Ok(Manifest {
            name: raw.name,
            version,
            world,
            api,
            sha256: raw.sha256,
            description: raw.description,
            detect_files: raw.detect_files,
            limits,
        })
    }

    /// Does the host's WIT version satisfy the manifest's `api` requirement?
    pub fn api_compatible(&self) -> bool {
        self.api.matches(&HOST_API_VERSION)
    }

    /// The limits a call of this plugin runs under: the manifest's own
    /// where it lowers them, else the engine's defaults. A manifest cannot
    /// raise its limits: only the operator's configuration can (the
    /// error names the setting).
    pub fn effective_limits(&self, policy: &LimitsPolicy) -> Result<Limits, RaisedLimit> {
        let pick =
            |field: &'static str, key: &'static str, own: Option<u32>, default: u32| match own {
                Some(value) if value > default => Err(RaisedLimit {
                    field,
                    value,
                    default,
                    key,
                }),
                Some(v) => Ok(v),
                None => Ok(default),
            };
        let d = policy.defaults;
        Ok(Limits {
            cpu_ms: pick("cpu-ms", "default_cpu_ms", self.limits.cpu_ms, d.cpu_ms)?,
            memory_mib: pick(
                "memory-mib",
                "default_memory_mib",
                self.limits.memory_mib,
                d.memory_mib,
            )?,
            output_kib: pick(
                "output-kib",
                "default_output_kib",
                self.limits.output_kib,
                d.output_kib,
            )?,
        })
    }

    /// The manifest as TOML, with `sha256` set (what `plugins install` writes).
    pub fn to_toml_with_sha256(&self, sha256: &str) -> String {
        let raw = RawManifest {
            name: self.name.clone(),
            version: self.version.to_string(),
            world: self.world.name().to_owned(),
            api: self.api.to_string(),
            sha256: Some(sha256.to_owned()),
            description: self.description.clone(),
            detect_files: self.detect_files.clone(),
            limits: (self.limits != RawLimits::default()).then_some(self.limits),
        };
        toml::to_string(&raw)
            .unwrap_or_else(|e| unreachable!("a RawManifest always serializes: {e}"))
    }
}

fn valid_name(name: &str) -> bool {
    let mut chars = name.chars();
    matches!(chars.next(), Some('a'..='z'))
        && name.len() <= 64
        && chars.all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-')
}

#[cfg(test)]
mod tests {
    use super::*;

    const GOOD: &str = r#"
name = "node"
version = "1.2.0"
world = "ecosystem"
api = "^1.0"
description = "Node.js"
detect-files = ["package.json"]
[limits]
memory-mib = 128
"#;

    #[test]
    fn parses_and_round_trips() {
        let m = Manifest::parse(GOOD, "plugin.toml").unwrap();
        assert_eq!(m.name, "node");
        assert_eq!(m.world, World::Ecosystem);
        assert!(m.api_compatible());
        let sha = "a".repeat(64);
        let again = Manifest::parse(&m.to_toml_with_sha256(&sha), "x").unwrap();
        assert_eq!(again.sha256.as_deref(), Some(sha.as_str()));
        assert_eq!(again.limits.memory_mib, Some(128));
    }

    fn error_of(text: &str) -> String {
        Manifest::parse(text, "p/plugin.toml")
            .unwrap_err()
            .to_string()
    }

    #[test]
    fn errors_name_file_and_field() {
        assert!(error_of(&GOOD.replace("name = \"node\"\n", "")).contains("missing field `name`"));
        assert!(
            error_of(&GOOD.replace("\"1.2.0\"", "\"1.2\""))
                .starts_with("p/plugin.toml: field `version`: `1.2` is not a semver version")
        );
        assert!(
            error_of(&GOOD.replace("\"ecosystem\"", "\"ecosytem\"")).contains(
                "field `world`: unknown world `ecosytem` (known: ecosystem, validator, readiness)"
            )
        );
        assert!(error_of(&GOOD.replace("\"^1.0\"", "\"one\"")).contains("field `api`"));
        assert!(error_of(&GOOD.replace("\"node\"", "\"Node\"")).contains("field `name`"));
        assert!(error_of(&format!("{GOOD}\nsha256 = \"xyz\"")).contains("field `sha256`"));
        let unknown = error_of(&GOOD.replace("description", "descripton"));
        assert!(
            unknown.starts_with("p/plugin.toml:6: unknown field `descripton`"),
            "{unknown}"
        );
    }

    #[test]
    fn a_manifest_may_lower_its_limits_never_raise_them() {
        let m = Manifest::parse(GOOD, "x").unwrap();
        let e = m
            .effective_limits(&LimitsPolicy::default())
            .unwrap_err()
            .to_string();
        assert!(e.contains("`limits.memory-mib` = 128 is above the engine's default of 64: a manifest may only lower its limits (an operator raises them with `plugins.default_memory_mib`)"), "{e}");
        let lower = Manifest::parse(&GOOD.replace("128", "32"), "x")
            .unwrap()
            .effective_limits(&LimitsPolicy::default())
            .unwrap();
        assert_eq!((lower.cpu_ms, lower.memory_mib), (2000, 32));
        // The operator's defaults are what a manifest is measured against.
        let mut raised = LimitsPolicy::default();
        raised.defaults.memory_mib = 256;
        assert_eq!(m.effective_limits(&raised).unwrap().memory_mib, 128);
    }

    #[test]
    fn incompatible_api() {
        let m = Manifest::parse(&GOOD.replace("^1.0", "^2.0"), "x").unwrap();
        assert!(!m.api_compatible());
    }
}

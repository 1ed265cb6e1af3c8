//! Finding plugins and picking one version per name.
//!
//! Sources, in order: the plugins bundled into the binary, then each plugin
//! directory (`<dir>/<name>/<version>/plugin.toml` + `plugin.wasm`). Every
//! candidate is checked cheaply at load (manifest, folder names, sha256, API
//! range, limits, component header); compiling and linking happen on first
//! use, or for all with [`Registry::prepare_all`]. Per name, the highest
//! version that passes wins; a bad candidate is reported with its reason and
//! never stops the others from loading.
//!
//! Trust is explicit: the names of bundled plugins are reserved across all
//! worlds. A third-party plugin of such a name is rejected, unless the
//! configuration lists the name in `plugins.replace`; then it replaces the
//! bundled one, whatever the versions, and says so.

use std::path::{Path, PathBuf};
use std::sync::{Arc, OnceLock};

use sha2::{Digest, Sha256};

use std::collections::BTreeMap;

use super::sandbox::{LoadError, PluginSandbox, PreparedPlugin};
use super::{Manifest, World, bundled};

/// Where a candidate came from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Origin {
    /// Compiled into the `slipway` binary.
    Bundled,
    /// A folder `<dir>/<name>/<version>/`, or a file given to `plugins verify`.
    Path(PathBuf),
}

impl std::fmt::Display for Origin {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Origin::Bundled => f.write_str("bundled"),
            Origin::Path(p) => write!(f, "{}", p.display()),
        }
    }
}

/// Whether a candidate is the one in use for its name.
#[derive(Debug, Clone)]
pub enum Status {
    /// The version in use for this name.
    Active,
    /// Valid, but a higher version of the same name is in use.
    Shadowed {
        /// The version in use.
        by: semver::Version,
    },
    /// A bundled plugin the configuration replaced (`plugins.replace`) by
    /// the third-party plugin `by` (`name@version`).
    Replaced {
        /// The replacing plugin, as `name@version`.
        by: String,
    },
    /// Not usable; the reason says why and what to do.
    Rejected(LoadError),
}

enum WasmBytes {
    Static(&'static [u8]),
    Owned(Vec<u8>),
}

impl WasmBytes {
    fn bytes(&self) -> &[u8] {
        match self {
            WasmBytes::Static(b) => b,
            WasmBytes::Owned(v) => v,
        }
    }
}

/// One plugin version found in a source.
pub struct Candidate {
    /// Bundled, or the folder (or file) it was read from.
    pub origin: Origin,
    /// From the manifest, or the folder name when the manifest is unusable.
    pub name: String,
    /// The validated manifest; `None` when it could not be read or parsed.
    pub manifest: Option<Manifest>,
    /// Lowercase hex SHA-256 of the wasm; empty for a rejected candidate.
    pub sha256: String,
    /// In use, shadowed, replaced or rejected, as decided at load.
    pub status: Status,
    wasm: Option<WasmBytes>,
    prepared: OnceLock<Result<Arc<PreparedPlugin>, LoadError>>,
}

impl Candidate {
    fn rejected(
        origin: Origin,
        name: String,
        manifest: Option<Manifest>,
        error: LoadError,
    ) -> Candidate {
        Candidate {
            origin,
            name,
            manifest,
            sha256: String::new(),
            status: Status::Rejected(error),
            wasm: None,
            prepared: OnceLock::new(),
        }
    }

    fn checked(
        origin: Origin,
        manifest: Manifest,
        wasm: WasmBytes,
        sha256: String,
        policy: &super::LimitsPolicy,
    ) -> Candidate {
        let mut c = Candidate {
            origin,
            name: manifest.name.clone(),
            manifest: Some(manifest),
            sha256,
            status: Status::Active,
            wasm: None,
            prepared: OnceLock::new(),
        };
        let manifest = c.manifest.as_ref().expect("set just above");
        let problem = if !manifest.api_compatible() {
            Some(LoadError::ApiIncompatible {
                required: manifest.api.to_string(),
            })
        } else if let Err(limit) = manifest.effective_limits(policy) {
            Some(LoadError::Limits(limit))
        } else {
            None
        };
        match problem {
            Some(e) => c.status = Status::Rejected(e),
            None => c.wasm = Some(wasm),
        }
        c
    }

    /// Read and check `manifest_path` and `wasm_path`. With `require_sha256`
    /// (an installed plugin), the manifest must carry the wasm's sha256.
    pub fn from_files(
        manifest_path: &Path,
        wasm_path: &Path,
        require_sha256: bool,
        sandbox: &PluginSandbox,
    ) -> Candidate {
        let origin = Origin::Path(
            manifest_path
                .parent()
                .unwrap_or(manifest_path)
                .to_path_buf(),
        );
        let fallback_name = manifest_path
            .parent()
            .and_then(|p| p.parent())
            .and_then(|p| p.file_name())
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_default();
        let text = match std::fs::read_to_string(manifest_path) {
            Ok(t) => t,
            Err(e) => {
                let err = LoadError::Io {
                    path: manifest_path.display().to_string(),
                    message: e.to_string(),
                };
                return Candidate::rejected(origin, fallback_name, None, err);
            }
        };
        let manifest = match Manifest::parse(&text, &manifest_path.display().to_string()) {
            Ok(m) => m,
            Err(e) => return Candidate::rejected(origin, fallback_name, None, e.into()),
        };
        let wasm = match std::fs::read(wasm_path) {
            Ok(w) => w,
            Err(e) => {
                let err = LoadError::Io {
                    path: wasm_path.display().to_string(),
                    message: e.to_string(),
                };
                return Candidate::rejected(origin, manifest.name.clone(), Some(manifest), err);
            }
        };
        let actual = hex::encode(Sha256::digest(&wasm));
        match &manifest.sha256 {
            Some(expected) if *expected != actual => {
                let err = LoadError::HashMismatch {
                    expected: expected.clone(),
                    actual,
                };
                return Candidate::rejected(origin, manifest.name.clone(), Some(manifest), err);
            }
            None if require_sha256 => {
                return Candidate::rejected(
                    origin,
                    manifest.name.clone(),
                    Some(manifest),
                    LoadError::MissingHash,
                );
            }
            _ => {}
        }
        Candidate::checked(
            origin,
            manifest,
            WasmBytes::Owned(wasm),
            actual,
            sandbox.policy(),
        )
    }

    fn bundled(plugin: &'static bundled::BundledPlugin, sandbox: &PluginSandbox) -> Candidate {
        let origin = Origin::Bundled;
        let manifest = match Manifest::from_json(
            plugin.manifest,
            &format!("bundled plugin `{}`", plugin.dir_name),
        ) {
            Ok(m) => m,
            Err(e) => {
                return Candidate::rejected(origin, plugin.dir_name.to_owned(), None, e.into());
            }
        };
        // build.rs wrote this sha256 from these very bytes; no need to rehash.
        let sha256 = manifest.sha256.clone().unwrap_or_default();
        Candidate::checked(
            origin,
            manifest,
            WasmBytes::Static(plugin.wasm),
            sha256,
            sandbox.policy(),
        )
    }

    /// Not compiled into the binary: someone installed it.
    pub fn is_third_party(&self) -> bool {
        self.origin != Origin::Bundled
    }

    /// The manifest's version; `None` when the manifest is unusable.
    pub fn version(&self) -> Option<&semver::Version> {
        self.manifest.as_ref().map(|m| &m.version)
    }

    /// The manifest's world; `None` when the manifest is unusable.
    pub fn world(&self) -> Option<World> {
        self.manifest.as_ref().map(|m| m.world)
    }

    /// `name@version@sha256` (as job records name plugins), or the name alone.
    pub fn full_id(&self) -> String {
        match self.version() {
            Some(v) => format!("{}@{v}@{}", self.name, self.sha256),
            None => self.name.clone(),
        }
    }

    /// Compile (or load from the cache) and link; the result is kept.
    pub fn prepare(&self, sandbox: &PluginSandbox) -> Result<Arc<PreparedPlugin>, LoadError> {
        if let Status::Rejected(e) = &self.status {
            return Err(e.clone());
        }
        self.prepared
            .get_or_init(|| {
                let (Some(manifest), Some(wasm)) = (&self.manifest, &self.wasm) else {
                    unreachable!("a candidate that is not rejected has a manifest and wasm")
                };
                sandbox
                    .prepare(manifest, wasm.bytes(), &self.sha256)
                    .map(Arc::new)
            })
            .clone()
    }
}

/// What the operator trusts third-party plugins with (`[plugins]` in the
/// configuration).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Trust {
    /// Bundled plugin names a third-party plugin may replace.
    pub replace: Vec<String>,
    /// Third-party ecosystem plugins that may outrank a first-party one
    /// that matched the same repository.
    pub prefer: Vec<String>,
}

/// All candidates found, with one active version per name.
pub struct Registry {
    sandbox: Arc<PluginSandbox>,
    candidates: Vec<Candidate>,
    trust: Trust,
    /// Problems with a source as a whole (e.g. a plugins dir that is missing).
    pub source_problems: Vec<String>,
    /// Each report format and the validator that reads it, worked out on
    /// first use (it calls every validator's `formats`).
    format_owners: std::sync::OnceLock<BTreeMap<String, String>>,
}

impl Registry {
    /// The bundled plugins (when `bundled`) plus every plugin under `dirs`,
    /// trusting third-party plugins with nothing.
    pub fn load(sandbox: Arc<PluginSandbox>, bundled: bool, dirs: &[PathBuf]) -> Registry {
        Registry::load_trusting(sandbox, bundled, dirs, Trust::default())
    }

    /// [`Registry::load`], with what the configuration trusts.
    pub fn load_trusting(
        sandbox: Arc<PluginSandbox>,
        bundled: bool,
        dirs: &[PathBuf],
        trust: Trust,
    ) -> Registry {
        let mut candidates = Vec::new();
        if bundled {
            candidates.extend(
                bundled::BUNDLED
                    .iter()
                    .map(|p| Candidate::bundled(p, &sandbox)),
            );
        }
        let mut source_problems = Vec::new();
        for dir in dirs {
            match scan_dir(dir, &sandbox) {
                Ok(found) => candidates.extend(found),
                Err(problem) => source_problems.push(problem),
            }
        }
        let mut registry = Registry {
            sandbox,
            candidates,
            trust,
            source_problems,
            format_owners: Default::default(),
        };
        registry.select();
        registry
    }

    /// A registry of exactly the given candidates (e.g. for `plugins verify`).
    pub fn from_candidates(sandbox: Arc<PluginSandbox>, candidates: Vec<Candidate>) -> Registry {
        let mut registry = Registry {
            sandbox,
            candidates,
            trust: Trust::default(),
            source_problems: Vec::new(),
            format_owners: Default::default(),
        };
        registry.select();
        registry
    }

    /// The sandbox (engine, limits policy, compiled cache) the plugins run in.
    pub fn sandbox(&self) -> &Arc<PluginSandbox> {
        &self.sandbox
    }

    /// What the configuration trusts third-party plugins with.
    pub fn trust(&self) -> &Trust {
        &self.trust
    }

    /// May this candidate's detection outrank a first-party plugin's?
    pub fn ranks_as_first_party(&self, c: &Candidate) -> bool {
        !c.is_third_party() || self.trust.prefer.contains(&c.name)
    }

    /// Every candidate, sorted by name, then version (highest first).
    pub fn candidates(&self) -> &[Candidate] {
        &self.candidates
    }

    /// Compile and link every usable candidate now; a candidate that fails,
    /// or a validator that claims a report format another one reads,
    /// becomes `Rejected` and the next version of its name takes over.
    pub fn prepare_all(&mut self) {
        loop {
            for c in &mut self.candidates {
                if matches!(c.status, Status::Rejected(_)) {
                    continue;
                }
                if let Err(e) = c.prepare(&self.sandbox) {
                    c.status = Status::Rejected(e);
                }
            }
            self.select();
            let (_, conflicts) = self.claim_formats();
            if conflicts.is_empty() {
                break;
            }
            for (index, refused) in conflicts {
                self.candidates[index].status = Status::Rejected(refused);
            }
            self.select();
        }
        self.format_owners = Default::default();
    }

    /// The validator that reads `format` reports: its one owner, or none.
    pub fn validator_for(&self, format: &str) -> Option<&Candidate> {
        let owners = self.format_owners.get_or_init(|| {
            let (owners, conflicts) = self.claim_formats();
            for (index, refused) in conflicts {
                let name = &self.candidates[index].name;
                tracing::warn!(plugin = %name, "validator plugin not used: {refused}");
            }
            owners
        });
        self.get(owners.get(format)?)
    }

    /// Hand each report format to one validator: the bundled ones (and
    /// those the configuration lets replace them) first, then third-party
    /// ones by name. A later claim on a format is a conflict, returned with
    /// the candidate's index. A validator whose `formats` fails claims none.
    fn claim_formats(&self) -> (BTreeMap<String, String>, Vec<(usize, LoadError)>) {
        let mut order: Vec<(usize, &Candidate)> = self
            .candidates
            .iter()
            .enumerate()
            .filter(|(_, c)| {
                matches!(c.status, Status::Active) && c.world() == Some(World::Validator)
            })
            .collect();
        // Stable: name order within each group.
        order.sort_by_key(|(_, c)| c.is_third_party() && !self.trust.replace.contains(&c.name));
        let mut owners: BTreeMap<String, String> = BTreeMap::new();
        let mut conflicts = Vec::new();
        for (index, c) in order {
            let Ok(prepared) = c.prepare(&self.sandbox) else {
                continue;
            };
            let formats = match self.sandbox.formats(&prepared) {
                Ok(formats) => formats,
                Err(e) => {
                    tracing::warn!(plugin = %c.name, error = %e, "validator plugin reads no format: its `formats` failed");
                    continue;
                }
            };
            if let Some((format, owner)) = formats.iter().find_map(|f| Some((f, owners.get(f)?))) {
                conflicts.push((
                    index,
                    LoadError::FormatTaken {
                        format: format.clone(),
                        owner: owner.clone(),
                    },
                ));
                continue;
            }
            for format in formats {
                owners.insert(format, c.name.clone());
            }
        }
        (owners, conflicts)
    }

    /// Reject every build `plugins verify` rejected (by sha256): a plugin
    /// with a broken function is never called, until its wasm changes.
    pub fn apply_verdicts(&mut self) {
        let verdicts = self.sandbox.verdicts().clone();
        for c in &mut self.candidates {
            if matches!(c.status, Status::Rejected(_)) {
                continue;
            }
            if let Some(problem) = verdicts.get(&c.sha256).and_then(|v| v.problem) {
                c.status = Status::Rejected(LoadError::FailedVerify { problem });
            }
        }
        self.select();
    }

    /// The active candidates of `world`, in name order.
    pub fn active(&self, world: World) -> impl Iterator<Item = &Candidate> {
        self.candidates
            .iter()
            .filter(move |c| matches!(c.status, Status::Active) && c.world() == Some(world))
    }

    /// The active candidate called `name`.
    pub fn get(&self, name: &str) -> Option<&Candidate> {
        self.candidates
            .iter()
            .find(|c| c.name == name && matches!(c.status, Status::Active))
    }

    /// Names of the usable plugins, for "unknown plugin `x` (known: …)".
    pub fn names(&self) -> Vec<&str> {
        let mut names: Vec<&str> = self
            .candidates
            .iter()
            .filter(|c| matches!(c.status, Status::Active))
            .map(|c| c.name.as_str())
            .collect();
        names.dedup();
        names
    }

    /// Sort, then mark one usable candidate of each name active: the
    /// highest version, a bundled one before any third-party one of its
    /// name (which is rejected), unless `plugins.replace` names it.
    fn select(&mut self) {
        let reserved: std::collections::BTreeSet<String> = self
            .candidates
            .iter()
            .filter(|c| !c.is_third_party())
            .map(|c| c.name.clone())
            .collect();
        let replace = self.trust.replace.clone();
        for c in &mut self.candidates {
            if c.is_third_party()
                && reserved.contains(&c.name)
                && !replace.contains(&c.name)
                && !matches!(c.status, Status::Rejected(_))
            {
                c.status = Status::Rejected(LoadError::Reserved {
                    name: c.name.clone(),
                });
            }
        }
        // Within a name: the side that wins first (third-party where
        // replaced, else bundled), then the highest version.
        let yields = |c: &Candidate| c.is_third_party() != replace.contains(&c.name);
        self.candidates.sort_by(|a, b| {
            a.name
                .cmp(&b.name)
                .then_with(|| yields(a).cmp(&yields(b)))
                .then_with(|| b.version().cmp(&a.version()))
        });
        let mut winner: Option<(String, semver::Version, bool)> = None;
        for c in &mut self.candidates {
            if matches!(c.status, Status::Rejected(_)) {
                continue;
            }
            let version = c
                .version()
                .cloned()
                .expect("usable candidates have a manifest");
            match &winner {
                Some((name, by, third_party)) if *name == c.name => {
                    c.status = if *third_party && !c.is_third_party() {
                        Status::Replaced {
                            by: format!("{name}@{by}"),
                        }
                    } else {
                        Status::Shadowed { by: by.clone() }
                    }
                }
                _ => {
                    c.status = Status::Active;
                    winner = Some((c.name.clone(), version, c.is_third_party()));
                }
            }
        }
    }
}

/// Scan `<dir>/<name>/<version>/`.
fn scan_dir(dir: &Path, sandbox: &PluginSandbox) -> Result<Vec<Candidate>, String> {
    let names =
        std::fs::read_dir(dir).map_err(|e| format!("plugins directory {}: {e}", dir.display()))?;
    let mut found = Vec::new();
    for name_dir in sorted_dirs(names) {
        let Ok(versions) = std::fs::read_dir(&name_dir) else {
            continue;
        };
        for version_dir in sorted_dirs(versions) {
            let mut c = Candidate::from_files(
                &version_dir.join("plugin.toml"),
                &version_dir.join("plugin.wasm"),
                true,
                sandbox,
            );
            if let Some(m) = &c.manifest {
                let folder_name = name_dir
                    .file_name()
                    .map(|n| n.to_string_lossy().into_owned())
                    .unwrap_or_default();
                let folder_version = version_dir
                    .file_name()
                    .map(|n| n.to_string_lossy().into_owned())
                    .unwrap_or_default();
                let mismatch = if m.name != folder_name {
                    Some(format!(
                        "name `{}` does not match its folder `{folder_name}`",
                        m.name
                    ))
                } else if m.version.to_string() != folder_version {
                    Some(format!(
                        "version `{}` does not match its folder `{folder_version}`",
                        m.version
                    ))
                } else {
                    None
                };
                if let Some(message) = mismatch {
                    let origin = version_dir.join("plugin.toml").display().to_string();
                    c.status = Status::Rejected(LoadError::Manifest(super::ManifestError {
                        origin,
                        field: None,
                        line: None,
                        message,
                    }));
                }
            }
            found.push(c);
        }
    }
    Ok(found)
}

fn sorted_dirs(entries: std::fs::ReadDir) -> Vec<PathBuf> {
    let mut dirs: Vec<PathBuf> = entries
        .filter_map(|e| e.ok())
        .map(|e| e.path())
        .filter(|p| p.is_dir())
        .collect();
    dirs.sort();
    dirs
}

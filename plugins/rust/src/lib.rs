//! `rust`: an ecosystem plugin for Cargo projects.
//!
//! Detects a root `Cargo.toml`, resolves the Rust release line from the
//! repository's hints (pins: `mise.toml`, `.tool-versions`,
//! `rust-toolchain.toml`, `rust-toolchain`; range: `rust-version`), and plans
//! a `rust:<line>-slim` image with the crates fetched outside `/workspace`,
//! clippy (and rustfmt when configured) as the fast tier and `cargo test` as
//! the full tier. See README.md.

use slipway_plugin_sdk::ecosystem::*;
use slipway_plugin_sdk::toolchain::{ReleaseTable, resolve, version_manager_pins};
use slipway_plugin_sdk::{Repo, TextFile, export_ecosystem, malformed, unsupported};

pub struct Rust;

/// Rust release lines this plugin knows, oldest first.
pub const RUST: ReleaseTable = ReleaseTable {
    tool: "rust",
    lines: &[
        "1.63", "1.64", "1.65", "1.66", "1.67", "1.68", "1.69", "1.70", "1.71", "1.72", "1.73",
        "1.74", "1.75", "1.76", "1.77", "1.78", "1.79", "1.80", "1.81", "1.82", "1.83", "1.84",
        "1.85", "1.86", "1.87", "1.88", "1.89", "1.90", "1.91", "1.92", "1.93", "1.94", "1.95",
    ],
    lts: &[],
    default: "1.95",
    prefixes: &[],
};

const HOME: &str = "/home/app";
const CARGO_HOME: &str = "/home/app/.cargo";

/// A toolchain file's channel and what rustup must install for it.
#[derive(Debug)]
struct ToolchainFile {
    file: &'static str,
    line: Option<u32>,
    channel: String,
    components: Vec<String>,
    targets: Vec<String>,
}

fn opt(name: &str, value: &str) -> OptionPair {
    OptionPair {
        name: name.to_owned(),
        value: value.to_owned(),
    }
}

fn line_of_key(file: &TextFile, key: &str) -> Option<u32> {
    file.numbered_lines()
        .find(|(_, l)| {
            let l = l.trim_start();
            l.strip_prefix(key)
                .is_some_and(|rest| rest.trim_start().starts_with('=') || rest.starts_with('.'))
        })
        .map(|(n, _)| n)
}

fn string_list(
    file: &TextFile,
    table: &toml::Table,
    key: &str,
) -> Result<Vec<String>, PluginError> {
    match table.get(key) {
        None => Ok(Vec::new()),
        Some(toml::Value::Array(a)) => a
            .iter()
            .map(|v| {
                v.as_str().map(str::to_owned).ok_or_else(|| {
                    malformed(
                        &file.path,
                        line_of_key(file, key),
                        format!("`toolchain.{key}` must be a list of strings"),
                        None,
                    )
                })
            })
            .collect(),
        Some(_) => Err(malformed(
            &file.path,
            line_of_key(file, key),
            format!("`toolchain.{key}` must be a list of strings"),
            None,
        )),
    }
}

/// `[toolchain]` of a TOML toolchain file; `None` when it names no channel (e.g. `path = ...`).
fn toml_toolchain(
    file: &'static str,
    text: &TextFile,
    table: &toml::Table,
    notes: &mut Vec<String>,
) -> Result<Option<ToolchainFile>, PluginError> {
    let Some(tc) = table.get("toolchain") else {
        return Err(malformed(
            file,
            None,
            "has no [toolchain] table",
            Some("write `[toolchain]` then `channel = \"1.85.0\"`"),
        ));
    };
    let Some(tc) = tc.as_table() else {
        return Err(malformed(
            file,
            line_of_key(text, "toolchain"),
            "`toolchain` must be a table",
            None,
        ));
    };
    let line = line_of_key(text, "channel");
    match tc.get("channel") {
        Some(toml::Value::String(channel)) => Ok(Some(ToolchainFile {
            file,
            line,
            channel: channel.trim().to_owned(),
            components: string_list(text, tc, "components")?,
            targets: string_list(text, tc, "targets")?,
        })),
        Some(_) => Err(malformed(
            file,
            line,
            "`toolchain.channel` must be a string",
            Some("write e.g. `channel = \"1.85.0\"`"),
        )),
        None => {
            notes.push(format!("{file}: [toolchain] names no channel (custom `path` toolchains are not supported); ignored"));
            Ok(None)
        }
    }
}

/// The toolchain files, in precedence order: `rust-toolchain.toml`, then `rust-toolchain`.
fn toolchain_files(
    repo: &Repo,
    notes: &mut Vec<String>,
) -> Result<Vec<ToolchainFile>, PluginError> {
    let mut found = Vec::new();
    if let Some((text, table)) = repo.read_toml("rust-toolchain.toml")? {
        found.extend(toml_toolchain("rust-toolchain.toml", &text, &table, notes)?);
    }
    if let Some(text) = repo.read_text("rust-toolchain")? {
        let looks_toml = text
            .numbered_lines()
            .any(|(_, l)| l.trim_start().starts_with('['));
        if looks_toml {
            let (text, table) = repo.read_toml("rust-toolchain")?.ok_or_else(|| {
                malformed("rust-toolchain", None, "vanished while being read", None)
            })?;
            found.extend(toml_toolchain("rust-toolchain", &text, &table, notes)?);
        } else {
            let Some((line, channel)) = text.first_meaningful_line() else {
                return Err(malformed(
                    "rust-toolchain",
                    None,
                    "is empty",
                    Some("write the channel on the first line, e.g. `1.85.0`"),
                ));
            };
            if channel.contains(char::is_whitespace) {
                return Err(malformed(
                    "rust-toolchain",
                    Some(line),
                    format!("`{channel}` is not a toolchain channel"),
                    Some("write e.g. `1.85.0`, `stable` or `nightly-2024-01-01`"),
                ));
            }
            found.push(ToolchainFile {
                file: "rust-toolchain",
                line: Some(line),
                channel: channel.to_owned(),
                components: vec![],
                targets: vec![],
            });
        }
    }
    Ok(found)
}

/// `stable`, `beta`, `nightly`, `nightly-2024-01-01`, `stable-x86_64-unknown-linux-gnu`: not a version.
fn named_channel(channel: &str) -> Option<&'static str> {
    ["stable", "beta", "nightly"]
        .into_iter()
        .find(|n| channel == *n || channel.starts_with(&format!("{n}-")))
}

fn channel_hint(tf: &ToolchainFile, notes: &mut Vec<String>) -> VersionHint {
    let mut h = VersionHint::from_file(ConstraintKind::Pin, tf.file, tf.line, &tf.channel, &[]);
    match named_channel(&tf.channel) {
        Some("stable") => {
            h.constraint = "stable".into();
            notes.push(format!(
                "{}: channel `{}` is read as the newest known Rust line",
                tf.file, tf.channel
            ));
        }
        Some(other) => {
            h.constraint = "latest".into();
            notes.push(format!(
                "{}: channel `{}` ({other}) is not a release line: the image starts from the newest known line and rustup installs `{}` on top",
                tf.file, tf.channel, tf.channel
            ));
        }
        None => {}
    }
    h
}

/// The manifest facts planning needs.
#[derive(Debug, Default)]
struct Manifest {
    name: Option<(Option<u32>, String)>,
    /// `rust-version`: (line, written).
    rust_version: Option<(Option<u32>, String)>,
    /// The manifest declares `[workspace]` members (or is a virtual manifest).
    workspace: bool,
    /// Dependencies read from paths inside the checkout.
    path_deps: Vec<String>,
    /// Has any dependency at all.
    has_deps: bool,
    /// Files to create so that `cargo fetch` can load the manifest alone.
    stubs: Vec<String>,
    /// Why the manifest cannot be fetched on its own (besides path deps).
    no_stub_reason: Option<String>,
}

fn rust_version_value(
    text: &TextFile,
    table: &toml::Table,
    path: &str,
) -> Result<Option<(Option<u32>, String)>, PluginError> {
    match table.get("rust-version") {
        None => Ok(None),
        Some(toml::Value::String(s)) => Ok(Some((line_of_key(text, "rust-version"), s.clone()))),
        Some(toml::Value::Table(t))
            if t.get("workspace").and_then(|v| v.as_bool()) == Some(true) =>
        {
            Ok(None)
        }
        Some(_) => Err(malformed(
            "Cargo.toml",
            line_of_key(text, "rust-version"),
            format!("`{path}.rust-version` must be a string"),
            Some("write e.g. `rust-version = \"1.75\"`"),
        )),
    }
}

fn dependency_tables(table: &toml::Table) -> Vec<&toml::Table> {
    let mut out = Vec::new();
    for key in [
        "dependencies",
        "dev-dependencies",
        "build-dependencies",
        "dev_dependencies",
        "build_dependencies",
    ] {
        out.extend(table.get(key).and_then(|v| v.as_table()));
    }
    if let Some(targets) = table.get("target").and_then(|v| v.as_table()) {
        for t in targets.values().filter_map(|v| v.as_table()) {
            for key in ["dependencies", "dev-dependencies", "build-dependencies"] {
                out.extend(t.get(key).and_then(|v| v.as_table()));
            }
        }
    }
    if let Some(ws) = table.get("workspace").and_then(|v| v.as_table()) {
        out.extend(ws.get("dependencies").and_then(|v| v.as_table()));
    }
    if let Some(patch) = table.get("patch").and_then(|v| v.as_table()) {
        out.extend(patch.values().filter_map(|v| v.as_table()));
    }
    out
}

fn safe_rel(p: &str) -> bool {
    !p.is_empty()
        && !p.starts_with('/')
        && !p.split(['/', '\\']).any(|c| c == "..")
        && !p.contains(['\'', '\n', '\r', '\0'])
}

fn read_manifest(repo: &Repo) -> Result<Option<Manifest>, PluginError> {
    let Some((text, table)) = repo.read_toml("Cargo.toml")? else {
        return Ok(None);
    };
    let mut m = Manifest::default();
    let package = match table.get("package").or_else(|| table.get("project")) {
        None => None,
        Some(toml::Value::Table(p)) => Some(p),
        Some(_) => {
            return Err(malformed(
                "Cargo.toml",
                line_of_key(&text, "package"),
                "`package` must be a table",
                None,
            ));
        }
    };
    let workspace = match table.get("workspace") {
        None => None,
        Some(toml::Value::Table(w)) => Some(w),
        Some(_) => {
            return Err(malformed(
                "Cargo.toml",
                line_of_key(&text, "workspace"),
                "`workspace` must be a table",
                None,
            ));
        }
    };
    if package.is_none() && workspace.is_none() {
        return Err(malformed(
            "Cargo.toml",
            None,
            "has neither [package] nor [workspace]",
            Some("add a [package] table with `name` and `version`"),
        ));
    }
    if let Some(p) = package {
        if let Some(name) = p.get("name").and_then(|v| v.as_str()) {
            m.name = Some((line_of_key(&text, "name"), name.to_owned()));
        }
        m.rust_version = rust_version_value(&text, p, "package")?;
        if p.get("workspace").is_some() {
            m.no_stub_reason = Some(
                "[package] workspace points to a workspace root outside this directory".into(),
            );
        }
    }
    if let Some(w) = workspace {
        if m.rust_version.is_none()
            && let Some(wp) = w.get("package").and_then(|v| v.as_table())
        {
            m.rust_version = rust_version_value(&text, wp, "workspace.package")?;
        }
        let members = w
            .get("members")
            .and_then(|v| v.as_array())
            .is_some_and(|a| !a.is_empty());
        m.workspace = members || package.is_none();
    }
    for deps in dependency_tables(&table) {
        for (name, spec) in deps {
            m.has_deps = true;
            if let Some(path) = spec
                .as_table()
                .and_then(|t| t.get("path"))
                .and_then(|v| v.as_str())
            {
                m.path_deps.push(format!("{name} (path = \"{path}\")"));
            }
        }
    }
    // Targets cargo must find to load the manifest: stub them for `cargo fetch`.
    m.stubs = vec!["src/main.rs".into(), "src/lib.rs".into()];
    if let Some(lib) = table.get("lib").and_then(|v| v.as_table())
        && let Some(path) = lib.get("path").and_then(|v| v.as_str())
    {
        m.stubs.push(path.to_owned());
    }
    for (kind, dir) in [
        ("bin", "src/bin"),
        ("example", "examples"),
        ("test", "tests"),
        ("bench", "benches"),
    ] {
        for target in table
            .get(kind)
            .and_then(|v| v.as_array())
            .into_iter()
            .flatten()
            .filter_map(|v| v.as_table())
        {
            match (
                target.get("path").and_then(|v| v.as_str()),
                target.get("name").and_then(|v| v.as_str()),
            ) {
                (Some(path), _) => m.stubs.push(path.to_owned()),
                (None, Some(name)) => m.stubs.push(format!("{dir}/{name}.rs")),
                (None, None) => {}
            }
        }
    }
    if let Some(bad) = m.stubs.iter().find(|p| !safe_rel(p)) {
        m.no_stub_reason = Some(format!(
            "target path `{bad}` is outside the package directory"
        ));
    }
    let mut unique: Vec<String> = Vec::new();
    for s in m.stubs.drain(..) {
        if !unique.contains(&s) {
            unique.push(s);
        }
    }
    m.stubs = unique;
    Ok(Some(m))
}

fn sh_quote(s: &str) -> String {
    format!("'{s}'")
}

impl Ecosystem for Rust {
    fn detect(repo: &Repo) -> Result<Option<Detection>, PluginError> {
        if let Some(file) = repo.read_text("Cargo.toml")? {
            // Cheap: a malformed Cargo.toml is reported by `plan`.
            let line = file
                .line_of("[package]")
                .or_else(|| file.line_of("[workspace]"));
            let mut evidence = vec![Evidence::new("Cargo.toml", line, "Cargo manifest")];
            let confidence = if repo.exists("Cargo.lock") {
                evidence.push(Evidence::new("Cargo.lock", None, "Cargo lockfile"));
                90
            } else {
                80
            };
            return Ok(Some(Detection {
                confidence,
                evidence,
            }));
        }
        for file in ["rust-toolchain.toml", "rust-toolchain"] {
            if repo.exists(file) {
                return Ok(Some(Detection {
                    confidence: 50,
                    evidence: vec![Evidence::new(file, None, "Rust toolchain file")],
                }));
            }
        }
        // Only a version-manager pin: a weak hint. A broken mise.toml is not
        // this plugin's business at detection time.
        if let Ok(pins) = version_manager_pins(repo, &["rust"], RUST.prefixes)
            && let Some(source) = pins.into_iter().find_map(|h| h.source)
        {
            return Ok(Some(Detection {
                confidence: 50,
                evidence: vec![source],
            }));
        }
        Ok(None)
    }

    fn plan(repo: &Repo) -> Result<Plan, PluginError> {
        let mut notes: Vec<String> = Vec::new();
        let manifest = read_manifest(repo)?;

        // Pins in order: mise.toml, .tool-versions, rust-toolchain.toml, rust-toolchain; then rust-version.
        let mut hints = version_manager_pins(repo, &["rust"], RUST.prefixes)?;
        for h in hints.iter_mut() {
            if named_channel(&h.constraint) == Some("stable") {
                h.constraint = "stable".into();
            } else if named_channel(&h.constraint).is_some() {
                h.constraint = "latest".into();
            }
        }
        let toolchain_files = toolchain_files(repo, &mut notes)?;
        for tf in &toolchain_files {
            hints.push(channel_hint(tf, &mut notes));
        }
        if let Some(m) = &manifest
            && let Some((line, written)) = &m.rust_version
        {
            hints.push(VersionHint {
                constraint: format!(">={}", written.trim()),
                written_form: written.clone(),
                kind: ConstraintKind::Range,
                source: Some(Evidence::new(
                    "Cargo.toml",
                    *line,
                    format!("rust-version = \"{written}\" (minimum)"),
                )),
            });
        }
        if manifest.is_none() && toolchain_files.is_empty() && hints.is_empty() {
            return Err(unsupported(
                None,
                "no Cargo.toml at the repository root",
                Some("add a Cargo.toml"),
            ));
        }
        let toolchain = resolve(&RUST, hints)?;
        notes.extend(toolchain.notes());
        let line = toolchain.resolved.clone();
        let base = format!("rust:{line}-slim");

        // Dependencies.
        let has_lock = repo.exists("Cargo.lock");
        let fetch = if has_lock {
            "cargo fetch --locked"
        } else {
            "cargo fetch"
        };
        let mut setup = Vec::new();
        let mut fetch_in_image = false;
        let mut workspace = false;
        if let Some(m) = &manifest {
            workspace = m.workspace;
            let setup_reason = if m.workspace {
                Some("Cargo.toml is a workspace: member manifests live in subdirectories the image build does not see".to_owned())
            } else if let Some(dep) = m.path_deps.first() {
                Some(format!("dependency {dep} lives inside the checkout"))
            } else if let Some(reason) = &m.no_stub_reason {
                Some(format!("Cargo.toml cannot be loaded on its own ({reason})"))
            } else if !has_lock && m.has_deps {
                Some(
                    "there is no Cargo.lock, so crates are resolved when the checkout is there"
                        .to_owned(),
                )
            } else {
                None
            };
            match setup_reason {
                Some(reason) => {
                    notes.push(format!("{reason}; dependencies are fetched in setup (`{fetch}`), which needs the network"));
                    setup.push(Step::new("cargo-fetch", fetch));
                }
                None if m.has_deps => fetch_in_image = true,
                None => notes.push("Cargo.toml declares no dependencies; nothing to fetch".into()),
            }
            if !has_lock && m.has_deps {
                notes.push("no Cargo.lock: dependency versions are not frozen".into());
            }
        }

        let mut df = format!("FROM {base}\n");
        // As root: the toolchains rustup needs, so nothing is installed at run time.
        df.push_str("RUN rustup component add clippy rustfmt\n");
        let mut installed: Vec<&str> = Vec::new();
        for tf in &toolchain_files {
            if installed.contains(&tf.channel.as_str()) {
                continue;
            }
            installed.push(&tf.channel);
            let mut components = vec!["clippy".to_owned(), "rustfmt".to_owned()];
            for c in &tf.components {
                if !components.contains(c) {
                    components.push(c.clone());
                }
            }
            let targets: String = tf
                .targets
                .iter()
                .map(|t| format!(" --target {}", sh_quote(t)))
                .collect();
            df.push_str(&format!(
                "RUN rustup toolchain install {} --profile minimal --component {}{targets}\n",
                sh_quote(&tf.channel),
                sh_quote(&components.join(","))
            ));
        }
        df.push_str(&format!(
            "RUN useradd --create-home --uid 1000 --home-dir {HOME} --shell /bin/sh app \\\n \
             && mkdir -p /opt/deps {CARGO_HOME}/registry {CARGO_HOME}/git {CARGO_HOME}/bin /workspace \\\n \
             && chown -R app:app /opt/deps {HOME} /workspace\n"
        ));
        df.push_str(&format!("ENV HOME={HOME} \\\n    CARGO_HOME={CARGO_HOME} \\\n    PATH={CARGO_HOME}/bin:/usr/local/cargo/bin:$PATH\n"));
        df.push_str("USER app\n");
        if let (true, Some(m)) = (fetch_in_image, &manifest) {
            let files = if has_lock {
                "Cargo.toml Cargo.lock"
            } else {
                "Cargo.toml"
            };
            let dirs: Vec<String> = m
                .stubs
                .iter()
                .filter_map(|p| p.rsplit_once('/').map(|(d, _)| d.to_owned()))
                .fold(Vec::new(), |mut acc, d| {
                    if !acc.contains(&d) {
                        acc.push(d);
                    }
                    acc
                });
            let quoted = |v: &[String]| v.iter().map(|s| sh_quote(s)).collect::<Vec<_>>().join(" ");
            df.push_str("WORKDIR /opt/deps\n");
            df.push_str(&format!("COPY --chown=app:app {files} ./\n"));
            df.push_str(&format!(
                "RUN mkdir -p {} && touch {} && {fetch}\n",
                quoted(&dirs),
                quoted(&m.stubs)
            ));
        }
        df.push_str("WORKDIR /workspace\n");

        let ws = if workspace { " --workspace" } else { "" };
        let mut fast = vec![
            Step::new(
                "clippy",
                &format!("cargo clippy{ws} --all-targets --message-format=json -- -D warnings"),
            )
            .with_report("cargo-json", None),
        ];
        match ["rustfmt.toml", ".rustfmt.toml"]
            .into_iter()
            .find(|f| repo.exists(f))
        {
            Some(_) => fast.push(Step::new(
                "fmt",
                &format!("cargo fmt{} --check", if workspace { " --all" } else { "" }),
            )),
            None => notes.push("no rustfmt.toml/.rustfmt.toml: `cargo fmt --check` not run".into()),
        }
        let full = vec![Step::new("test", &format!("cargo test{ws} --all-targets"))];

        let package_manager = manifest.as_ref().map(|m| PackageManager {
            name: "cargo".into(),
            version: None,
            lockfile: has_lock.then(|| "Cargo.lock".to_owned()),
            source: Some(match &m.name {
                Some((line, name)) => Evidence::new("Cargo.toml", *line, format!("package {name}")),
                None => Evidence::new("Cargo.toml", None, "Cargo workspace"),
            }),
        });

        Ok(Plan {
            base_image: base,
            image: ImageSource::Generated(df),
            toolchains: vec![toolchain],
            package_manager,
            setup,
            fast,
            full,
            cache: vec![
                CacheMount {
                    id: "cargo-registry".into(),
                    path: format!("{CARGO_HOME}/registry"),
                },
                CacheMount {
                    id: "cargo-git".into(),
                    path: format!("{CARGO_HOME}/git"),
                },
            ],
            env: vec![opt("CI", "true"), opt("CARGO_TERM_COLOR", "never")],
            notes,
        })
    }
}

export_ecosystem!(Rust);

#[cfg(test)]
mod tests {
    use super::*;
    use slipway_plugin_sdk::testing;

    fn fixture(name: &str) -> String {
        format!("{}/tests/fixtures/{name}", env!("CARGO_MANIFEST_DIR"))
    }

    fn plan(name: &str) -> Plan {
        testing::plan::<Rust>(fixture(name)).unwrap_or_else(|e| panic!("{name}: {}", e.describe()))
    }

    fn dockerfile(p: &Plan) -> &str {
        p.generated_dockerfile().expect("a generated Dockerfile")
    }

    fn plan_err(name: &str) -> String {
        testing::plan::<Rust>(fixture(name)).unwrap_err().describe()
    }

    #[test]
    fn detection_confidence() {
        let d = testing::detect::<Rust>(fixture("locked")).unwrap().unwrap();
        assert_eq!(d.confidence, 90);
        assert_eq!(
            (d.evidence[0].file.as_str(), d.evidence[0].line),
            ("Cargo.toml", Some(1))
        );
        assert_eq!(d.evidence[1].file, "Cargo.lock");
        assert_eq!(
            testing::detect::<Rust>(fixture("no-lock"))
                .unwrap()
                .unwrap()
                .confidence,
            80
        );
        let t = testing::detect::<Rust>(fixture("toolchain-only"))
            .unwrap()
            .unwrap();
        assert_eq!(
            (t.confidence, t.evidence[0].file.as_str()),
            (50, "rust-toolchain.toml")
        );
        assert!(
            testing::detect::<Rust>(fixture("not-rust"))
                .unwrap()
                .is_none()
        );
        assert_eq!(
            testing::detect::<Rust>(fixture("malformed"))
                .unwrap()
                .unwrap()
                .confidence,
            80
        );
    }

    #[test]
    fn rust_version_is_a_minimum_and_crates_are_fetched_in_the_image() {
        let p = plan("locked");
        let t = &p.toolchains[0];
        assert_eq!(
            (t.resolved.as_str(), t.hint.kind),
            ("1.95", ConstraintKind::Range)
        );
        assert_eq!(
            (t.hint.constraint.as_str(), t.hint.written_form.as_str()),
            (">=1.70", "1.70")
        );
        assert_eq!(t.hint.source.as_ref().unwrap().line, Some(5));
        assert_eq!(p.base_image, "rust:1.95-slim");
        let df = dockerfile(&p);
        assert!(df.starts_with("FROM rust:1.95-slim\n"), "{df}");
        assert!(
            df.contains("COPY --chown=app:app Cargo.toml Cargo.lock ./\n"),
            "{df}"
        );
        assert!(df.contains("touch 'src/main.rs' 'src/lib.rs' 'src/bin/tool.rs' 'tests/it/main.rs' && cargo fetch --locked\n"), "{df}");
        assert!(df.contains("mkdir -p 'src' 'src/bin' 'tests/it'"), "{df}");
        assert!(df.contains("useradd --create-home --uid 1000"), "{df}");
        assert!(
            df.contains("USER app\n")
                && df.ends_with("WORKDIR /workspace\n")
                && !df.contains("--mount"),
            "{df}"
        );
        assert!(p.setup.is_empty());
        assert_eq!(
            p.fast[0].command,
            "cargo clippy --all-targets --message-format=json -- -D warnings"
        );
        let r = p.fast[0].report.as_ref().unwrap();
        assert_eq!((r.format.as_str(), r.path.as_deref()), ("cargo-json", None));
        assert_eq!(p.fast.len(), 1);
        assert_eq!(p.full[0].command, "cargo test --all-targets");
        let pm = p.package_manager.as_ref().unwrap();
        assert_eq!(
            (pm.name.as_str(), pm.lockfile.as_deref()),
            ("cargo", Some("Cargo.lock"))
        );
        let cache: Vec<(&str, &str)> = p
            .cache
            .iter()
            .map(|c| (c.id.as_str(), c.path.as_str()))
            .collect();
        assert_eq!(
            cache,
            vec![
                ("cargo-registry", "/home/app/.cargo/registry"),
                ("cargo-git", "/home/app/.cargo/git")
            ]
        );
        assert!(p.env.iter().any(|e| e.name == "CI" && e.value == "true"));
    }

    #[test]
    fn no_lock_fetches_in_setup_and_default_applies() {
        let p = plan("no-lock");
        let t = &p.toolchains[0];
        assert_eq!(
            (t.resolved.as_str(), t.hint.kind),
            ("1.95", ConstraintKind::Default)
        );
        assert_eq!(p.setup[0].command, "cargo fetch");
        assert!(!dockerfile(&p).contains("COPY"));
        assert_eq!(p.package_manager.as_ref().unwrap().lockfile, None);
        assert!(
            p.notes.iter().any(|n| n.contains("no Cargo.lock")),
            "{:?}",
            p.notes
        );
        // rustfmt.toml adds the format check.
        assert_eq!(p.fast[1].command, "cargo fmt --check");
    }

    #[test]
    fn toolchain_toml_pins_and_is_installed() {
        let p = plan("toolchain-toml");
        let t = &p.toolchains[0];
        assert_eq!(
            (t.resolved.as_str(), t.hint.written_form.as_str()),
            ("1.75", "1.75.0")
        );
        assert_eq!(t.hint.source.as_ref().unwrap().file, "rust-toolchain.toml");
        assert_eq!(t.overruled.len(), 1);
        assert_eq!(
            t.overruled[0].reason,
            "a pin (rust-toolchain.toml) beats a range; conflicts: 1.75 does not satisfy `1.80`"
        );
        let df = dockerfile(&p);
        assert!(df.contains("RUN rustup toolchain install '1.75.0' --profile minimal --component 'clippy,rustfmt,llvm-tools' --target 'wasm32-unknown-unknown'\n"), "{df}");
        assert_eq!(p.base_image, "rust:1.75-slim");
    }

    #[test]
    fn legacy_file_nightly_and_stable() {
        let p = plan("legacy-nightly");
        let t = &p.toolchains[0];
        assert_eq!(
            (
                t.resolved.as_str(),
                t.hint.written_form.as_str(),
                t.hint.constraint.as_str()
            ),
            ("1.95", "nightly-2024-01-01", "latest")
        );
        assert!(dockerfile(&p).contains("rustup toolchain install 'nightly-2024-01-01'"));
        assert!(
            p.notes
                .iter()
                .any(|n| n.contains("rustup installs `nightly-2024-01-01`")),
            "{:?}",
            p.notes
        );
        let p = plan("legacy-toml-stable");
        let t = &p.toolchains[0];
        assert_eq!(
            (
                t.resolved.as_str(),
                t.hint.source.as_ref().unwrap().file.as_str()
            ),
            ("1.95", "rust-toolchain")
        );
        assert!(
            p.notes
                .iter()
                .any(|n| n.contains("channel `stable` is read as the newest known Rust line")),
            "{:?}",
            p.notes
        );
    }

    #[test]
    fn mise_beats_tool_versions_beats_toolchain_file() {
        let p = plan("mise");
        let t = &p.toolchains[0];
        assert_eq!(
            (
                t.resolved.as_str(),
                t.hint.source.as_ref().unwrap().file.as_str()
            ),
            ("1.85", "mise.toml")
        );
        let files: Vec<&str> = t
            .overruled
            .iter()
            .map(|o| o.hint.source.as_ref().unwrap().file.as_str())
            .collect();
        assert_eq!(
            files,
            vec![".tool-versions", "rust-toolchain", "Cargo.toml"]
        );
        assert!(
            t.overruled[0]
                .reason
                .starts_with("an earlier pin (mise.toml) wins"),
            "{:?}",
            t.overruled
        );
    }

    #[test]
    fn workspace_fetches_in_setup() {
        let p = plan("workspace");
        let t = &p.toolchains[0];
        assert_eq!(
            (t.resolved.as_str(), t.hint.constraint.as_str()),
            ("1.95", ">=1.88")
        );
        assert_eq!(t.hint.source.as_ref().unwrap().line, Some(5));
        assert_eq!(p.setup[0].command, "cargo fetch --locked");
        assert!(!dockerfile(&p).contains("COPY"));
        assert_eq!(
            p.fast[0].command,
            "cargo clippy --workspace --all-targets --message-format=json -- -D warnings"
        );
        assert_eq!(p.full[0].command, "cargo test --workspace --all-targets");
        assert!(
            p.notes
                .iter()
                .any(|n| n.starts_with("Cargo.toml is a workspace")),
            "{:?}",
            p.notes
        );
    }

    #[test]
    fn path_dependency_fetches_in_setup() {
        let p = plan("path-dep");
        assert_eq!(p.setup[0].command, "cargo fetch --locked");
        assert!(
            p.notes
                .iter()
                .any(|n| n.contains("shared (path = \"../shared\")")),
            "{:?}",
            p.notes
        );
    }

    #[test]
    fn malformed_inputs_name_file_and_line() {
        let e = plan_err("malformed");
        assert!(
            e.starts_with("malformed input: Cargo.toml:3: is not valid TOML"),
            "{e}"
        );
        let e = plan_err("bad-rust-version");
        assert!(
            e.starts_with("malformed input: Cargo.toml:4: `package.rust-version` must be a string"),
            "{e}"
        );
        let e = plan_err("bad-channel");
        assert!(
            e.starts_with(
                "malformed input: rust-toolchain.toml:2: `toolchain.channel` must be a string"
            ),
            "{e}"
        );
        let e = plan_err("empty-legacy");
        assert!(
            e.starts_with("malformed input: rust-toolchain: is empty"),
            "{e}"
        );
        let e = plan_err("too-old");
        assert!(
            e.contains("rust-toolchain: no rust release line satisfies `1.50.0`"),
            "{e}"
        );
    }
}

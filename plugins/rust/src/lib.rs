//! `rust`: an ecosystem plugin for Cargo projects.
//!
//! Detects a root `Cargo.toml`, resolves the Rust release line from the
//! repository's hints (pins: `mise.toml`, `.tool-versions`,
//! `rust-toolchain.toml`, `rust-toolchain`; range: `rust-version`), and plans
//! a `rust:<line>-slim` image with the crates fetched outside `/workspace`,
//! clippy (and rustfmt when configured) as the fast tier and `cargo test` as
//! the full tier. See README.md.

use slipway_plugin_sdk::ecosystem::*;
use slipway_plugin_sdk::report::truncate;
use slipway_plugin_sdk::shell::quote;
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
/// Outside HOME and outside the cache mounts: what is fetched at image build
/// must stay visible (and readable by any uid) at run time.
const CARGO_HOME: &str = "/opt/cargo";
const DEPS_DIR: &str = "/opt/deps";
/// Shell test for rustup (Debian's rustc and cargo come without it).
const HAS_RUSTUP: &str = "if command -v rustup >/dev/null 2>&1";

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

/// A channel, component or target as rustup names them (`1.85.0`,
/// `nightly-2024-01-01`, `stable-x86_64-unknown-linux-gnu`, `rust-src`,
/// `wasm32-unknown-unknown`): ASCII letters, digits and `._+-`, starting with
/// a letter or digit. They go into a `RUN` line of the generated Dockerfile,
/// where quoting protects the shell but not the Dockerfile (a newline starts
/// a new instruction), so nothing else is let through.
fn is_toolchain_word(s: &str) -> bool {
    s.starts_with(|c: char| c.is_ascii_alphanumeric())
        && s.chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '+' | '-'))
}

/// `value` of `what` (`toolchain.channel`, ...) in `file`, checked with
/// [`is_toolchain_word`].
fn check_toolchain_word(
    file: &str,
    line: Option<u32>,
    what: &str,
    value: &str,
    hint: &str,
) -> Result<(), PluginError> {
    if is_toolchain_word(value) {
        return Ok(());
    }
    // Debug form: quotes, and escapes that keep a newline off the message.
    let shown = truncate(&format!("{value:?}"), 120);
    Err(malformed(
        file,
        line,
        format!(
            "{what} {shown} is not a rustup name: only ASCII letters, digits and `._+-` are allowed, starting with a letter or digit"
        ),
        Some(hint),
    ))
}

const CHANNEL_HINT: &str = "write e.g. `1.85.0`, `stable` or `nightly-2024-01-01`";

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
        Some(toml::Value::String(channel)) => {
            let channel = channel.trim();
            check_toolchain_word(file, line, "`toolchain.channel`", channel, CHANNEL_HINT)?;
            let components = string_list(text, tc, "components")?;
            for c in &components {
                check_toolchain_word(
                    file,
                    line_of_key(text, "components"),
                    "`toolchain.components` entry",
                    c,
                    "write e.g. `components = [\"rust-src\", \"llvm-tools\"]`",
                )?;
            }
            let targets = string_list(text, tc, "targets")?;
            for t in &targets {
                check_toolchain_word(
                    file,
                    line_of_key(text, "targets"),
                    "`toolchain.targets` entry",
                    t,
                    "write e.g. `targets = [\"wasm32-unknown-unknown\"]`",
                )?;
            }
            Ok(Some(ToolchainFile {
                file,
                line,
                channel: channel.to_owned(),
                components,
                targets,
            }))
        }
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
                    Some(CHANNEL_HINT),
                ));
            }
            check_toolchain_word(
                "rust-toolchain",
                Some(line),
                "channel",
                channel,
                CHANNEL_HINT,
            )?;
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

        // Dependencies: resolved and fetched at image build (the job has no
        // network), then used offline.
        let has_lock = repo.exists("Cargo.lock");
        let fetch = if has_lock {
            "cargo fetch --locked"
        } else {
            "cargo fetch"
        };
        let minor: u32 = line
            .split('.')
            .nth(1)
            .and_then(|m| m.parse().ok())
            .unwrap_or(u32::MAX);
        let mut setup = Vec::new();
        let mut fetch_in_image = false;
        let mut workspace = false;
        if let Some(m) = &manifest {
            workspace = m.workspace;
            let setup_reason = if m.workspace {
                Some("Cargo.toml is a workspace: member manifests live in subdirectories the image build does not see".to_owned())
            } else if let Some(dep) = m.path_deps.first() {
                Some(format!("dependency {dep} lives inside the checkout"))
            } else {
                m.no_stub_reason
                    .as_ref()
                    .map(|reason| format!("Cargo.toml cannot be loaded on its own ({reason})"))
            };
            match setup_reason {
                Some(reason) => {
                    notes.push(format!("{reason}; dependencies are fetched in setup (`{fetch}`), which needs the network"));
                    setup.push(Step::new("cargo-fetch", fetch));
                }
                None if m.has_deps => {
                    fetch_in_image = true;
                    if has_lock {
                        notes.push(format!(
                            "dependencies fetched at image build (`cargo fetch --locked`, Cargo.lock) into {CARGO_HOME}; jobs run offline (CARGO_NET_OFFLINE=true)"
                        ));
                    } else {
                        notes.push(format!(
                            "no Cargo.lock: dependencies resolved at image build (cargo generate-lockfile), fixed for this image's content hash; the job uses that lockfile ({DEPS_DIR}/Cargo.lock, copied into the checkout by setup) and runs offline (CARGO_NET_OFFLINE=true)"
                        ));
                        if minor < 84 {
                            notes.push(format!(
                                "cargo before 1.84 resolves the newest dependency versions whatever their rust-version: one that needs a Rust newer than {line} fails the image build; bound it in Cargo.toml or commit Cargo.lock"
                            ));
                        }
                    }
                    if minor < 68 {
                        notes.push(
                            "cargo before 1.68 reads crates.io through its git index (github.com): the image enables cargo's sparse-registry feature (index.crates.io) with __CARGO_TEST_CHANNEL_OVERRIDE_DO_NOT_USE_THIS=nightly and CARGO_UNSTABLE_SPARSE_REGISTRY=true, for the fetch and for the offline job".into());
                    }
                }
                None => notes.push("Cargo.toml declares no dependencies; nothing to fetch".into()),
            }
        }
        if fetch_in_image && !has_lock {
            setup.push(Step::new(
                "lockfile",
                &format!("[ -e Cargo.lock ] || cp {DEPS_DIR}/Cargo.lock Cargo.lock"),
            ));
        }

        let mut df = format!("FROM {base}\n");
        // As root: what rustup must install, so nothing is installed at run
        // time. Images without rustup (Debian's rustc and cargo) skip it: the
        // steps then say what they could not run.
        df.push_str(&format!(
            "RUN {HAS_RUSTUP}; then rustup component add clippy rustfmt; fi\n"
        ));
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
                .map(|t| format!(" --target {}", quote(t)))
                .collect();
            df.push_str(&format!(
                "RUN {HAS_RUSTUP}; then rustup toolchain install {} --profile minimal --component {}{targets}; \
                 else echo {} >&2; fi\n",
                quote(&tf.channel),
                quote(&components.join(",")),
                quote(&format!(
                    "slipway: no rustup in the image: toolchain {} of {} not installed",
                    tf.channel, tf.file
                )),
            ));
        }
        df.push_str(&format!(
            "RUN useradd --create-home --uid {JOB_UID} --home-dir {HOME} --shell /bin/sh app \\\n \
             && mkdir -p {DEPS_DIR} {CARGO_HOME}/bin /workspace \\\n \
             && chown -R app:app {DEPS_DIR} {CARGO_HOME} {HOME} /workspace\n"
        ));
        df.push_str(&format!("ENV HOME={HOME} \\\n    CARGO_HOME={CARGO_HOME} \\\n    PATH={CARGO_HOME}/bin:/usr/local/cargo/bin:$PATH\n"));
        df.push_str("USER app\n");
        if let (true, Some(m)) = (fetch_in_image, &manifest) {
            // What follows the marker can also run as root on top of the
            // repository's own Rust image: it sets its own environment, makes
            // its own directories and names no user.
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
            let quoted = |v: &[String]| v.iter().map(|s| quote(s)).collect::<Vec<_>>().join(" ");
            df.push_str(DEPS_MARKER);
            df.push('\n');
            df.push_str(&format!(
                "ENV CARGO_HOME={CARGO_HOME} \\\n    CARGO_REGISTRIES_CRATES_IO_PROTOCOL=sparse"
            ));
            if minor < 68 {
                df.push_str(" \\\n    __CARGO_TEST_CHANNEL_OVERRIDE_DO_NOT_USE_THIS=nightly \\\n    CARGO_UNSTABLE_SPARSE_REGISTRY=true");
            }
            df.push('\n');
            df.push_str(&format!("WORKDIR {DEPS_DIR}\n"));
            df.push_str(&format!("COPY --chown={JOB_UID}:{JOB_GID} {files} ./\n"));
            let resolve = if has_lock {
                ""
            } else {
                "cargo generate-lockfile && "
            };
            // Fetched by one uid, used by another: readable by all.
            df.push_str(&format!(
                "RUN mkdir -p {CARGO_HOME} {} && touch {} && {resolve}{fetch} \\\n \
                 && chmod -R a+rX {CARGO_HOME} {DEPS_DIR}\n",
                quoted(&dirs),
                quoted(&m.stubs)
            ));
            df.push_str("ENV CARGO_NET_OFFLINE=true\n");
        }
        df.push_str("WORKDIR /workspace\n");

        let ws = if workspace { " --workspace" } else { "" };
        let mut fast = vec![
            Step::new(
                "clippy",
                &format!(
                    "if cargo clippy --version >/dev/null 2>&1; then cargo clippy{ws} --all-targets --message-format=json -- -D warnings; \
                     else echo 'slipway: clippy is not in the image; running cargo check instead' >&2; cargo check{ws} --all-targets --message-format=json; fi"
                ),
            )
            .with_report("cargo-json", None),
        ];
        notes.push("clippy and rustfmt are added with rustup when the image has rustup; without them (e.g. Debian's rustc and cargo) the clippy step runs `cargo check` instead and the fmt step does not check the format (each says so in its output)".into());
        let lint_config = ["clippy.toml", ".clippy.toml"]
            .into_iter()
            .any(|f| repo.exists(f))
            || repo
                .read_text("Cargo.toml")
                .ok()
                .flatten()
                .is_some_and(|t| {
                    t.line_of("[lints").is_some() || t.line_of("[workspace.lints").is_some()
                });
        if !lint_config {
            notes.push("no clippy.toml or [lints]: clippy runs with its defaults (cargo check where clippy is missing), chosen because the project declares no linter configuration".into());
        }
        match ["rustfmt.toml", ".rustfmt.toml"]
            .into_iter()
            .find(|f| repo.exists(f))
        {
            Some(_) => fast.push(Step::new(
                "fmt",
                &format!(
                    "if cargo fmt --version >/dev/null 2>&1; then cargo fmt{} --check; \
                     else echo 'slipway: rustfmt is not in the image; the format was not checked' >&2; fi",
                    if workspace { " --all" } else { "" }
                ),
            )),
            None => notes.push("no rustfmt.toml/.rustfmt.toml: `cargo fmt --check` not run".into()),
        }
        let full = vec![Step::new("test", &format!("cargo test{ws} --all-targets"))];

        let fetch_in_setup = setup.iter().any(|s| s.name == "cargo-fetch");
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
            // Only a setup fetch downloads at run time; a cache mounted over
            // CARGO_HOME/registry would hide what the image fetched.
            cache: if fetch_in_setup {
                vec![
                    CacheMount {
                        id: "cargo-registry".into(),
                        path: format!("{CARGO_HOME}/registry"),
                    },
                    CacheMount {
                        id: "cargo-git".into(),
                        path: format!("{CARGO_HOME}/git"),
                    },
                ]
            } else {
                vec![]
            },
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
            df.contains("COPY --chown=1000:1000 Cargo.toml Cargo.lock ./\n"),
            "{df}"
        );
        assert!(df.contains("touch 'src/main.rs' 'src/lib.rs' 'src/bin/tool.rs' 'tests/it/main.rs' && cargo fetch --locked \\\n && chmod -R a+rX /opt/cargo /opt/deps\n"), "{df}");
        assert!(!df.contains("generate-lockfile"), "{df}");
        assert!(df.contains("ENV CARGO_NET_OFFLINE=true\n"), "{df}");
        assert!(
            df.contains("mkdir -p /opt/cargo 'src' 'src/bin' 'tests/it'"),
            "{df}"
        );
        assert!(df.contains("useradd --create-home --uid 1000"), "{df}");
        assert!(
            df.contains("USER app\n")
                && df.ends_with("WORKDIR /workspace\n")
                && !df.contains("--mount"),
            "{df}"
        );
        assert!(p.setup.is_empty());
        assert!(
            p.fast[0]
                .command
                .contains("then cargo clippy --all-targets --message-format=json -- -D warnings;"),
            "{}",
            p.fast[0].command
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
        // Nothing is downloaded at run time: no cache mount may hide the
        // registry the image fetched.
        assert!(p.cache.is_empty(), "{:?}", p.cache);
        assert!(p.env.iter().any(|e| e.name == "CI" && e.value == "true"));
    }

    #[test]
    fn no_lock_resolves_at_image_build_and_runs_offline() {
        let p = plan("no-lock");
        let t = &p.toolchains[0];
        assert_eq!(
            (t.resolved.as_str(), t.hint.kind),
            ("1.95", ConstraintKind::Default)
        );
        let df = dockerfile(&p);
        // Resolved and fetched when the image is built (network), not in setup.
        assert!(
            df.contains("COPY --chown=1000:1000 Cargo.toml ./\n"),
            "{df}"
        );
        assert!(
            df.contains("&& cargo generate-lockfile && cargo fetch \\\n && chmod -R a+rX /opt/cargo /opt/deps\n"),
            "{df}"
        );
        assert!(df.contains("ENV CARGO_NET_OFFLINE=true\n"), "{df}");
        assert!(
            !df.contains("CHANNEL_OVERRIDE"),
            "1.95 has the sparse index: {df}"
        );
        assert!(
            p.setup.iter().all(|s| s.name != "cargo-fetch"),
            "{:?}",
            p.setup
        );
        assert_eq!(
            p.setup
                .iter()
                .map(|s| s.command.as_str())
                .collect::<Vec<_>>(),
            ["[ -e Cargo.lock ] || cp /opt/deps/Cargo.lock Cargo.lock"]
        );
        assert_eq!(p.package_manager.as_ref().unwrap().lockfile, None);
        assert!(
            p.notes.iter().any(|n| n.starts_with(
                "no Cargo.lock: dependencies resolved at image build (cargo generate-lockfile), fixed for this image's content hash; the job uses that lockfile"
            )),
            "{:?}",
            p.notes
        );
        assert!(p.cache.is_empty(), "{:?}", p.cache);
        // rustfmt.toml adds the format check, guarded for images without rustfmt.
        assert_eq!(
            p.fast[1].command,
            "if cargo fmt --version >/dev/null 2>&1; then cargo fmt --check; else echo 'slipway: rustfmt is not in the image; the format was not checked' >&2; fi"
        );
    }

    #[test]
    fn images_without_rustup_clippy_or_rustfmt_are_handled() {
        let p = plan("no-lock");
        let df = dockerfile(&p);
        assert!(
            df.contains("RUN if command -v rustup >/dev/null 2>&1; then rustup component add clippy rustfmt; fi\n"),
            "{df}"
        );
        assert!(!df.contains("RUN rustup"), "{df}");
        let clippy = &p.fast[0];
        assert_eq!(clippy.name, "clippy");
        assert!(
            clippy
                .command
                .starts_with("if cargo clippy --version >/dev/null 2>&1; then cargo clippy"),
            "{}",
            clippy.command
        );
        assert!(
            clippy.command.contains("else echo 'slipway: clippy is not in the image; running cargo check instead' >&2; cargo check --all-targets --message-format=json; fi"),
            "{}",
            clippy.command
        );
        assert!(
            p.notes
                .iter()
                .any(|n| n.contains("the fmt step does not check the format")),
            "{:?}",
            p.notes
        );
        assert!(
            p.notes
                .iter()
                .any(|n| n.contains("chosen because the project declares no linter")),
            "{:?}",
            p.notes
        );
    }

    #[test]
    fn old_cargo_reads_the_sparse_index_and_the_marker_section_is_self_contained() {
        let dir = std::env::temp_dir().join(format!("slipway-rust-old-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        std::fs::write(
            dir.join("Cargo.toml"),
            "[package]\nname = \"x\"\nversion = \"0.1.0\"\nrust-version = \"1.63\"\n\n[dependencies]\nitoa = \"1\"\n",
        )
        .unwrap();
        std::fs::write(dir.join(".tool-versions"), "rust 1.63.0\n").unwrap();
        let p = testing::plan::<Rust>(&dir).unwrap();
        assert_eq!(p.base_image, "rust:1.63-slim");
        let df = dockerfile(&p);
        assert!(df.contains("useradd") && df.contains("\nUSER app"), "{df}");
        let after = testing::layerable_section(df, "app");
        assert!(after.starts_with("ENV CARGO_HOME=/opt/cargo"), "{df}");
        assert!(
            after.contains("__CARGO_TEST_CHANNEL_OVERRIDE_DO_NOT_USE_THIS=nightly"),
            "{df}"
        );
        assert!(
            after.contains("CARGO_UNSTABLE_SPARSE_REGISTRY=true"),
            "{df}"
        );
        assert!(after.contains("mkdir -p /opt/cargo"), "{df}");
        assert!(
            after.contains("cargo generate-lockfile && cargo fetch"),
            "{df}"
        );
        assert!(
            p.notes
                .iter()
                .any(|n| n.starts_with("cargo before 1.84 resolves the newest")),
            "{:?}",
            p.notes
        );
        let _ = std::fs::remove_dir_all(&dir);
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
        assert!(df.contains("RUN if command -v rustup >/dev/null 2>&1; then rustup toolchain install '1.75.0' --profile minimal --component 'clippy,rustfmt,llvm-tools' --target 'wasm32-unknown-unknown'; else echo"), "{df}");
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
        assert!(
            p.fast[0].command.contains(
                "cargo clippy --workspace --all-targets --message-format=json -- -D warnings;"
            ) && p.fast[0]
                .command
                .contains("cargo check --workspace --all-targets --message-format=json;"),
            "{}",
            p.fast[0].command
        );
        // The setup fetch downloads at run time: its caches are mounted.
        assert_eq!(p.cache.len(), 2);
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
    fn examples_plan() {
        let root = format!("{}/../../examples", env!("CARGO_MANIFEST_DIR"));
        let lib = format!("{root}/rust-lib");
        if std::path::Path::new(&lib).exists() {
            let p = testing::plan::<Rust>(&lib).unwrap_or_else(|e| panic!("{}", e.describe()));
            assert_eq!(p.base_image, "rust:1.63-slim");
            let df = dockerfile(&p);
            assert!(
                df.contains("cargo generate-lockfile && cargo fetch"),
                "{df}"
            );
            assert_eq!(p.setup[0].name, "lockfile");
            println!(
                "{df}\n{:?}\n{:?}\n{:?}\n{:?}",
                p.setup, p.fast, p.full, p.notes
            );
        }
        let app = format!("{root}/rust-app");
        if std::path::Path::new(&app).exists() {
            let p = testing::plan::<Rust>(&app).unwrap_or_else(|e| panic!("{}", e.describe()));
            assert_eq!(p.base_image, "rust:1.63-slim");
            // Cargo.lock and no dependencies: nothing to fetch, nothing to copy.
            assert!(p.setup.is_empty(), "{:?}", p.setup);
            assert!(!dockerfile(&p).contains(DEPS_MARKER));
            println!(
                "{}\n{:?}\n{:?}\n{:?}",
                dockerfile(&p),
                p.fast,
                p.full,
                p.notes
            );
        }
    }

    /// Plans a temporary repository holding `files`.
    fn plan_files(name: &str, files: &[(&str, &str)]) -> Result<Plan, PluginError> {
        let dir = std::env::temp_dir().join(format!("slipway-rust-{name}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        for (file, text) in files {
            std::fs::write(dir.join(file), text).unwrap();
        }
        let p = testing::plan::<Rust>(&dir);
        let _ = std::fs::remove_dir_all(&dir);
        p
    }

    /// clippy never fixes and rustfmt only checks, for packages and
    /// workspaces alike.
    #[test]
    fn fast_tier_only_checks() {
        for (name, manifest) in [
            (
                "check-package",
                "[package]\nname = \"a\"\nversion = \"0.1.0\"\n",
            ),
            ("check-workspace", "[workspace]\nmembers = [\"crates/*\"]\n"),
        ] {
            let p = plan_files(
                name,
                &[
                    ("Cargo.toml", manifest),
                    ("rustfmt.toml", "edition = \"2021\"\n"),
                    ("clippy.toml", "msrv = \"1.70\"\n"),
                ],
            )
            .unwrap_or_else(|e| panic!("{name}: {}", e.describe()));
            let step = |n: &str| &p.fast.iter().find(|s| s.name == n).unwrap().command;
            let fmt = step("fmt");
            assert!(
                fmt.contains("then cargo fmt --check;")
                    || fmt.contains("then cargo fmt --all --check;"),
                "{name}: {fmt}"
            );
            for s in p.fast.iter().chain(&p.full) {
                assert!(!s.command.contains("--fix"), "{name}: {}", s.command);
            }
            assert!(step("clippy").contains("cargo clippy"), "{name}");
        }
    }

    #[test]
    fn hostile_toolchain_values_are_refused_not_put_in_the_dockerfile() {
        // The fixture: a quote in the channel, `$(...)` in a component and a
        // newline (TOML escape) in a target.
        match testing::plan::<Rust>(fixture("hostile-toolchain")) {
            Ok(p) => panic!("planned: {:?}", p.generated_dockerfile()),
            Err(e) => {
                let e = e.describe();
                assert!(
                    e.starts_with(
                        "malformed input: rust-toolchain.toml:5: `toolchain.channel` \"nightly-2024-01-01'; touch /tmp/slipway-pwned; echo '\" is not a rustup name"
                    ),
                    "{e}"
                );
                assert!(e.contains("(hint: write e.g. `1.85.0`"), "{e}");
            }
        }
        // Each field on its own, and the legacy file.
        let cargo = (
            "Cargo.toml",
            "[package]\nname = \"x\"\nversion = \"0.1.0\"\n",
        );
        let cases: &[(&str, &str, &str)] = &[
            (
                "rust-toolchain.toml",
                "[toolchain]\nchannel = \"1.85.0\"\ncomponents = [\"rust-src\", \"$(touch /tmp/x)\"]\n",
                "malformed input: rust-toolchain.toml:3: `toolchain.components` entry \"$(touch /tmp/x)\" is not a rustup name",
            ),
            (
                "rust-toolchain.toml",
                "[toolchain]\nchannel = \"1.85.0\"\ncomponents = [\"rust'src\"]\n",
                "malformed input: rust-toolchain.toml:3: `toolchain.components` entry \"rust'src\" is not a rustup name",
            ),
            (
                "rust-toolchain.toml",
                "[toolchain]\nchannel = \"1.85.0\"\ntargets = [\"wasm32-unknown-unknown\\nRUN id\"]\n",
                "malformed input: rust-toolchain.toml:3: `toolchain.targets` entry \"wasm32-unknown-unknown\\nRUN id\" is not a rustup name",
            ),
            (
                "rust-toolchain.toml",
                "[toolchain]\nchannel = \"`id`\"\n",
                "malformed input: rust-toolchain.toml:2: `toolchain.channel` \"`id`\" is not a rustup name",
            ),
            (
                "rust-toolchain.toml",
                "[toolchain]\nchannel = \"--force\"\n",
                "malformed input: rust-toolchain.toml:2: `toolchain.channel` \"--force\" is not a rustup name",
            ),
            (
                "rust-toolchain.toml",
                "[toolchain]\nchannel = \"1.85.0\\u0000\"\n",
                "malformed input: rust-toolchain.toml:2: `toolchain.channel` \"1.85.0\\0\" is not a rustup name",
            ),
            (
                "rust-toolchain",
                "# pinned\nnightly'$(id)'\n",
                "malformed input: rust-toolchain:2: channel \"nightly'$(id)'\" is not a rustup name",
            ),
        ];
        for (i, (file, text, want)) in cases.iter().enumerate() {
            match plan_files(&format!("hostile-{i}"), &[cargo, (file, text)]) {
                Ok(p) => panic!("{text:?} planned: {:?}", p.generated_dockerfile()),
                Err(e) => {
                    let e = e.describe();
                    assert!(e.starts_with(want), "{text:?}: {e}");
                    assert!(!e.contains('\n'), "one line: {e}");
                }
            }
        }
        // What rustup really names still plans, each word quoted.
        let p = plan_files(
            "friendly",
            &[
                cargo,
                (
                    "rust-toolchain.toml",
                    "[toolchain]\nchannel = \"stable-x86_64-unknown-linux-gnu\"\ncomponents = [\"rust-src\", \"llvm-tools-preview\"]\ntargets = [\"thumbv7em-none-eabihf\", \"x86_64-unknown-linux-musl\"]\n",
                ),
            ],
        )
        .unwrap_or_else(|e| panic!("{}", e.describe()));
        assert!(
            dockerfile(&p).contains(
                "rustup toolchain install 'stable-x86_64-unknown-linux-gnu' --profile minimal --component 'clippy,rustfmt,rust-src,llvm-tools-preview' --target 'thumbv7em-none-eabihf' --target 'x86_64-unknown-linux-musl'; else echo 'slipway: no rustup in the image: toolchain stable-x86_64-unknown-linux-gnu of rust-toolchain.toml not installed' >&2; fi\n"
            ),
            "{}",
            dockerfile(&p)
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

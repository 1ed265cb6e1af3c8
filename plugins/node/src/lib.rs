//! `node`: the Slipway ecosystem plugin for Node.js repositories.
//!
//! Detection: a root `package.json` (confidence 70, 75 with a lockfile); only
//! a node version file (`.nvmrc`, `.node-version`, a node entry in `mise.toml`
//! or `.tool-versions`) gives 50. The confidences are deliberately below the
//! Python and Ruby plugins': a `package.json` beside a Python or Ruby app is
//! usually asset tooling.
//!
//! Node version: pins (`mise.toml`, `.tool-versions`, `.nvmrc`,
//! `.node-version`, in that order) beat the range `engines.node` of
//! `package.json`, which beats the default `lts/*`.
//!
//! Package manager: `packageManager` of `package.json` first, else the
//! lockfile; dependencies are installed frozen in `/opt/deps` and linked into
//! the checkout by the `deps` setup step.
//!
//! Steps: the `lint`, typecheck and `test` scripts, except one that would
//! change the checkout (`eslint --fix`, `prettier --write`, ...; see
//! `scripts.rs`), which is skipped with a note. See README.md.

use serde_json::{Map, Value};
use slipway_plugin_sdk::ecosystem::*;
use slipway_plugin_sdk::shell::quote;
use slipway_plugin_sdk::toolchain::{
    ReleaseTable, resolve, version_file_pin, version_manager_pins,
};
use slipway_plugin_sdk::{Repo, TextFile, export_ecosystem, malformed};

mod scripts;

/// The plugin.
pub struct Node;

/// The node release lines this plugin knows, oldest first.
pub const NODE: ReleaseTable = ReleaseTable {
    tool: "node",
    lines: &["18", "20", "22", "24"],
    lts: &["18", "20", "22", "24"],
    default: "lts/*",
    prefixes: &[],
};

/// Names of node in `mise.toml` / `.tool-versions`, in order.
const TOOL_NAMES: &[&str] = &["node", "nodejs"];
/// node's own one-line pin files, in order of authority.
const VERSION_FILES: &[&str] = &[".nvmrc", ".node-version"];
/// Lockfiles, in the order they decide when `packageManager` is absent.
const LOCKFILES: &[(&str, Pm)] = &[
    ("npm-shrinkwrap.json", Pm::Npm),
    ("package-lock.json", Pm::Npm),
    ("pnpm-lock.yaml", Pm::Pnpm),
    ("yarn.lock", Pm::Yarn),
    ("bun.lock", Pm::Bun),
    ("bun.lockb", Pm::Bun),
];
/// ESLint configuration files (flat config and legacy eslintrc).
const ESLINT_CONFIGS: &[&str] = &[
    "eslint.config.js",
    "eslint.config.mjs",
    "eslint.config.cjs",
    "eslint.config.ts",
    "eslint.config.mts",
    "eslint.config.cts",
    ".eslintrc",
    ".eslintrc.js",
    ".eslintrc.cjs",
    ".eslintrc.json",
    ".eslintrc.yml",
    ".eslintrc.yaml",
];
/// Scripts that typecheck, first present wins.
const TYPECHECK_SCRIPTS: &[&str] = &["typecheck", "type-check", "tsc"];
/// The cheap check when the project declares no linter: `node --check` (a
/// syntax check that runs nothing) on every .js/.mjs/.cjs file outside
/// node_modules and .git, one file per call.
const SYNTAX_CHECK: &str = "find . \\( -name node_modules -o -name .git \\) -prune -o -type f \\( -name '*.js' -o -name '*.mjs' -o -name '*.cjs' \\) -print0 | xargs -0 -r -n1 node --check";
const SYNTAX_NOTE: &str = "no `lint` script or ESLint configuration: the fast tier runs `node --check` (syntax only) on the project's .js/.mjs/.cjs files, chosen because the project declares no linter";
const SYNTAX_INSTEAD_NOTE: &str = "the fast tier runs `node --check` (syntax only) on the project's .js/.mjs/.cjs files instead of the `lint` script";
/// ESLint run directly: it only fixes with `--fix`, which no configuration
/// file can turn on.
const ESLINT_CHECK: &str = "npx eslint . -f json";

/// npm's placeholder `test` script written by `npm init`.
const NPM_TEST_PLACEHOLDER: &str = "no test specified";

/// The package.json fields whose packages an install puts in node_modules.
const DEPENDENCY_FIELDS: &[&str] = &["dependencies", "devDependencies", "optionalDependencies"];

/// Where dependencies are installed in the image (outside `/workspace`).
const DEPS_DIR: &str = "/opt/deps";
/// The base image's own non-root user: its uid is the job's ([`JOB_UID`]), so
/// the image needs no user of its own.
const USER: &str = "node";
const HOME: &str = "/home/node";

/// Default majors installed when the repository names no version.
const PNPM_DEFAULT_MAJOR: &str = "10";
const YARN_CLASSIC_DEFAULT: &str = "1";
const YARN_BERRY_DEFAULT: &str = "4";
const BUN_DEFAULT: &str = "1";

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Pm {
    Npm,
    Pnpm,
    Yarn,
    Bun,
}

impl Pm {
    fn name(self) -> &'static str {
        match self {
            Pm::Npm => "npm",
            Pm::Pnpm => "pnpm",
            Pm::Yarn => "yarn",
            Pm::Bun => "bun",
        }
    }

    fn from_name(name: &str) -> Option<Pm> {
        [Pm::Npm, Pm::Pnpm, Pm::Yarn, Pm::Bun]
            .into_iter()
            .find(|p| p.name() == name)
    }

    /// The command that runs a `package.json` script.
    fn run(self, script: &str) -> String {
        match self {
            Pm::Npm => format!("npm run {script}"),
            Pm::Pnpm => format!("pnpm run {script}"),
            Pm::Yarn => format!("yarn {script}"),
            Pm::Bun => format!("bun run {script}"),
        }
    }
}

/// `package.json`, parsed, with its text for line numbers.
struct Manifest {
    file: TextFile,
    obj: Map<String, Value>,
}

fn read_manifest(repo: &Repo) -> Result<Option<Manifest>, PluginError> {
    let Some((file, value)) = repo.read_json("package.json")? else {
        return Ok(None);
    };
    let Value::Object(obj) = value else {
        return Err(malformed(
            "package.json",
            Some(1),
            "is not a JSON object",
            Some("package.json must be an object, e.g. {\"name\": \"app\", \"scripts\": {}}"),
        ));
    };
    Ok(Some(Manifest { file, obj }))
}

impl Manifest {
    /// Line of the first `"key"` in the file.
    fn line_of_key(&self, key: &str) -> Option<u32> {
        self.file.line_of(&format!("\"{key}\""))
    }

    /// Line of `"inner"` at or after the line of `"outer"`.
    fn nested_line(&self, outer: &str, inner: &str) -> Option<u32> {
        let start = self.line_of_key(outer)?;
        let needle = format!("\"{inner}\"");
        self.file
            .numbered_lines()
            .find(|(n, l)| *n >= start && l.contains(&needle))
            .map(|(n, _)| n)
    }

    /// A top-level string field; an error naming the line when it is another type.
    fn string_field(&self, key: &str) -> Result<Option<&str>, PluginError> {
        match self.obj.get(key) {
            None | Some(Value::Null) => Ok(None),
            Some(Value::String(s)) => Ok(Some(s)),
            Some(_) => Err(malformed(
                "package.json",
                self.line_of_key(key),
                format!("`{key}` must be a string"),
                None,
            )),
        }
    }

    /// A top-level object field; an error naming the line when it is another type.
    fn object_field(&self, key: &str) -> Result<Option<&Map<String, Value>>, PluginError> {
        match self.obj.get(key) {
            None | Some(Value::Null) => Ok(None),
            Some(Value::Object(m)) => Ok(Some(m)),
            Some(_) => Err(malformed(
                "package.json",
                self.line_of_key(key),
                format!("`{key}` must be an object"),
                None,
            )),
        }
    }

    /// `engines.node`, with its line.
    fn engines_node(&self) -> Result<Option<(&str, Option<u32>)>, PluginError> {
        let Some(engines) = self.object_field("engines")? else {
            return Ok(None);
        };
        let line = self.nested_line("engines", "node");
        match engines.get("node") {
            None | Some(Value::Null) => Ok(None),
            Some(Value::String(s)) => Ok(Some((s, line))),
            Some(_) => Err(malformed(
                "package.json",
                line,
                "`engines.node` must be a string",
                Some("write a range such as \">=20\""),
            )),
        }
    }

    /// The scripts that are non-empty strings.
    fn scripts(&self) -> Result<Vec<(String, String)>, PluginError> {
        let Some(scripts) = self.object_field("scripts")? else {
            return Ok(Vec::new());
        };
        Ok(scripts
            .iter()
            .filter_map(|(k, v)| {
                v.as_str()
                    .filter(|s| !s.trim().is_empty())
                    .map(|s| (k.clone(), s.to_owned()))
            })
            .collect())
    }
}

/// `packageManager` split into a known manager and an optional version.
struct Declared {
    pm: Pm,
    version: Option<String>,
    evidence: Evidence,
}

/// Parse `packageManager` (`pnpm@9.1.0+sha512.…`). Unknown managers are
/// noted and ignored; versions that are not plain versions are errors,
/// because they end up in a Dockerfile command.
fn declared_pm(
    manifest: &Manifest,
    notes: &mut Vec<String>,
) -> Result<Option<Declared>, PluginError> {
    let Some(written) = manifest.string_field("packageManager")? else {
        return Ok(None);
    };
    let line = manifest.line_of_key("packageManager");
    let written = written.trim();
    let (name, version) = match written.split_once('@') {
        Some((n, v)) => (n, Some(v.split('+').next().unwrap_or(v))),
        None => (written, None),
    };
    let Some(pm) = Pm::from_name(name) else {
        notes.push(format!(
            "package.json packageManager `{written}` ignored: not one of npm, pnpm, yarn, bun; the lockfile decides"
        ));
        return Ok(None);
    };
    let version = version.filter(|v| !v.is_empty());
    if let Some(v) = version {
        let plain = v.starts_with(|c: char| c.is_ascii_digit())
            && v.chars()
                .all(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '-' | '_'));
        if !plain {
            return Err(malformed(
                "package.json",
                line,
                format!("packageManager `{written}` does not name a plain version"),
                Some("write e.g. \"pnpm@9.1.0\""),
            ));
        }
    }
    Ok(Some(Declared {
        pm,
        version: version.map(str::to_owned),
        evidence: Evidence::new(
            "package.json",
            line,
            format!("packageManager = \"{written}\""),
        ),
    }))
}

/// The package manager decision and everything the image needs for it.
struct PmChoice {
    pm: Pm,
    version: Option<String>,
    lockfile: Option<&'static str>,
    source: Option<Evidence>,
    /// yarn 2+ (`--immutable`, `@yarnpkg/cli-dist`).
    berry: bool,
}

fn choose_pm(
    repo: &Repo,
    manifest: &Manifest,
    notes: &mut Vec<String>,
) -> Result<PmChoice, PluginError> {
    let present: Vec<(&'static str, Pm)> = LOCKFILES
        .iter()
        .copied()
        .filter(|(f, _)| repo.exists(f))
        .collect();
    let declared = declared_pm(manifest, notes)?;
    let (pm, version, lockfile, source) = match declared {
        Some(d) => {
            let lockfile = present.iter().find(|(_, p)| *p == d.pm).map(|(f, _)| *f);
            if lockfile.is_none() {
                notes.push(format!(
                    "packageManager names {} but there is no {} lockfile: the install is not frozen",
                    d.pm.name(),
                    d.pm.name()
                ));
            }
            (d.pm, d.version, lockfile, Some(d.evidence))
        }
        None => match present.first() {
            Some((f, p)) => (
                *p,
                None,
                Some(*f),
                Some(Evidence::new(f, None, format!("{} lockfile", p.name()))),
            ),
            None => {
                notes.push(
                    "no lockfile (package-lock.json, pnpm-lock.yaml, yarn.lock, bun.lock): npm installs without one; the install is not frozen"
                        .to_owned(),
                );
                (Pm::Npm, None, None, None)
            }
        },
    };
    for (f, p) in present.iter().filter(|(f, _)| Some(*f) != lockfile) {
        let note = match (&source, lockfile) {
            (_, Some(l)) if *p == pm => format!("{f} ignored: {l} takes precedence"),
            (Some(e), _) if e.file == "package.json" => {
                format!(
                    "{f} ignored: packageManager in package.json chooses {}",
                    pm.name()
                )
            }
            (_, Some(l)) => format!("{f} ignored: {l} comes first, so {} installs", pm.name()),
            _ => format!("{f} ignored"),
        };
        notes.push(note);
    }
    let berry = pm == Pm::Yarn && yarn_is_berry(repo, version.as_deref(), lockfile, notes);
    Ok(PmChoice {
        pm,
        version,
        lockfile,
        source,
        berry,
    })
}

/// yarn 2+ ("berry") or yarn 1 ("classic")?
fn yarn_is_berry(
    repo: &Repo,
    version: Option<&str>,
    lockfile: Option<&str>,
    notes: &mut Vec<String>,
) -> bool {
    if let Some(v) = version {
        return !(v == "1" || v.starts_with("1.") || v.starts_with("0."));
    }
    if repo.exists(".yarnrc.yml") {
        return true;
    }
    let Some(lock) = lockfile else { return false };
    match repo.read_text(lock) {
        Ok(Some(text)) => text.text.contains("__metadata:"),
        Ok(None) => false,
        Err(e) => {
            notes.push(format!(
                "{lock} not inspected ({}): assuming yarn 1",
                e.describe()
            ));
            false
        }
    }
}

/// The pnpm major to install when `packageManager` names no version, from
/// the lockfile format.
fn pnpm_major(repo: &Repo, lockfile: Option<&str>, notes: &mut Vec<String>) -> &'static str {
    let Some(lock) = lockfile else {
        return PNPM_DEFAULT_MAJOR;
    };
    let text = match repo.read_text(lock) {
        Ok(Some(t)) => t,
        Ok(None) => return PNPM_DEFAULT_MAJOR,
        Err(e) => {
            notes.push(format!(
                "{lock} not inspected ({}): installing pnpm {PNPM_DEFAULT_MAJOR}",
                e.describe()
            ));
            return PNPM_DEFAULT_MAJOR;
        }
    };
    let version = text
        .numbered_lines()
        .find_map(|(_, l)| l.trim().strip_prefix("lockfileVersion:").map(str::to_owned));
    let major = version
        .as_deref()
        .map(|v| v.trim().trim_matches(|c| c == '\'' || c == '"'))
        .and_then(|v| v.split('.').next().map(str::to_owned));
    match major.as_deref() {
        Some("5") => "7",
        Some("6") => "8",
        _ => PNPM_DEFAULT_MAJOR,
    }
}

/// Hints for node, in order of authority within each kind.
fn node_hints(repo: &Repo, manifest: Option<&Manifest>) -> Result<Vec<VersionHint>, PluginError> {
    let mut hints = version_manager_pins(repo, TOOL_NAMES, NODE.prefixes)?;
    for file in VERSION_FILES {
        hints.extend(version_file_pin(repo, file, NODE.prefixes)?);
    }
    if let Some(m) = manifest
        && let Some((written, line)) = m.engines_node()?
    {
        hints.push(VersionHint::from_file(
            ConstraintKind::Range,
            "package.json",
            line,
            written,
            NODE.prefixes,
        ));
    }
    Ok(hints)
}

/// A package manager installed globally with npm, and how to tell that the
/// wanted version is already there.
struct Tool {
    install: String,
    present: String,
}

impl Tool {
    fn new(bin: &str, version: &str, install: String) -> Tool {
        Tool {
            install,
            present: format!(
                "{bin} --version 2>/dev/null | grep -Eq {}",
                quote(&format!("^{}([.]|$)", version.replace('.', "[.]")))
            ),
        }
    }
}

/// Everything the Dockerfile needs to install dependencies.
struct Install {
    /// The package manager to put in the image (as root).
    tool: Option<Tool>,
    /// Files copied into /opt/deps.
    files: Vec<String>,
    /// Extra environment for the install (and later runs).
    env: Vec<(&'static str, &'static str)>,
    command: String,
}

fn install(repo: &Repo, choice: &PmChoice, notes: &mut Vec<String>) -> Install {
    let frozen = choice.lockfile.is_some();
    let v = choice.version.as_deref();
    let mut files = vec!["package.json".to_owned()];
    // npm-shrinkwrap.json and package-lock.json: copy both; npm picks shrinkwrap.
    for (f, p) in LOCKFILES {
        if *p == choice.pm
            && repo.exists(f)
            && !(choice.pm == Pm::Bun && Some(*f) != choice.lockfile)
        {
            files.push((*f).to_owned());
        }
    }
    let mut extras: Vec<&str> = vec![".npmrc"];
    let mut env = Vec::new();
    let (tool, command) = match choice.pm {
        Pm::Npm => (
            v.map(|v| Tool::new("npm", v, format!("npm install -g npm@{v}"))),
            if frozen {
                "npm ci --no-audit --no-fund"
            } else {
                "npm install --no-audit --no-fund"
            }
            .to_owned(),
        ),
        Pm::Pnpm => {
            extras.push("pnpm-workspace.yaml");
            let version = match v {
                Some(v) => v.to_owned(),
                None => pnpm_major(repo, choice.lockfile, notes).to_owned(),
            };
            (
                Some(Tool::new(
                    "pnpm",
                    &version,
                    format!("npm install -g pnpm@{version}"),
                )),
                if frozen {
                    "pnpm install --frozen-lockfile"
                } else {
                    "pnpm install --no-frozen-lockfile"
                }
                .to_owned(),
            )
        }
        Pm::Yarn if choice.berry => {
            match repo.read_text(".yarnrc.yml") {
                Ok(Some(rc)) if rc.text.contains("yarnPath:") || rc.text.contains("plugins:") => notes.push(
                    ".yarnrc.yml not copied into the image: its yarnPath/plugins point into .yarn/, which is not; yarn comes from @yarnpkg/cli-dist"
                        .to_owned(),
                ),
                Ok(Some(_)) => extras.push(".yarnrc.yml"),
                Ok(None) => {}
                Err(e) => notes.push(format!(".yarnrc.yml ignored: {}", e.describe())),
            }
            env.push(("YARN_NODE_LINKER", "node-modules"));
            notes.push("yarn 2+ installs with nodeLinker node-modules (YARN_NODE_LINKER), so node_modules can be linked into the checkout".to_owned());
            (
                // The image may ship yarn 1 as /usr/local/bin/yarn: --force replaces it.
                Some(Tool::new(
                    "yarn",
                    v.unwrap_or(YARN_BERRY_DEFAULT),
                    format!(
                        "npm install -g --force @yarnpkg/cli-dist@{}",
                        v.unwrap_or(YARN_BERRY_DEFAULT)
                    ),
                )),
                if frozen {
                    "yarn install --immutable"
                } else {
                    "yarn install"
                }
                .to_owned(),
            )
        }
        Pm::Yarn => {
            extras.push(".yarnrc");
            (
                Some(Tool::new(
                    "yarn",
                    v.unwrap_or(YARN_CLASSIC_DEFAULT),
                    format!(
                        "npm install -g --force yarn@{}",
                        v.unwrap_or(YARN_CLASSIC_DEFAULT)
                    ),
                )),
                if frozen {
                    "yarn install --frozen-lockfile --non-interactive"
                } else {
                    "yarn install --non-interactive"
                }
                .to_owned(),
            )
        }
        Pm::Bun => {
            extras.push("bunfig.toml");
            (
                Some(Tool::new(
                    "bun",
                    v.unwrap_or(BUN_DEFAULT),
                    format!("npm install -g bun@{}", v.unwrap_or(BUN_DEFAULT)),
                )),
                if frozen {
                    "bun install --frozen-lockfile"
                } else {
                    "bun install"
                }
                .to_owned(),
            )
        }
    };
    files.extend(
        extras
            .into_iter()
            .filter(|f| repo.exists(f))
            .map(str::to_owned),
    );
    Install {
        tool,
        files,
        env,
        command,
    }
}

/// `layerable`: mark the install for layering on a repository's own image
/// (only when there is something to install). What follows [`DEPS_MARKER`]
/// can also run, as root, on top of another node image (a repository's own),
/// so it creates what it needs and names no user.
fn dockerfile(base: &str, install: Option<&Install>, layerable: bool) -> String {
    let mut d = format!("FROM {base}\n");
    let Some(i) = install else {
        d.push_str(&format!(
            "RUN mkdir -p /workspace && chown {USER}:{USER} /workspace\nUSER {USER}\nENV HOME={HOME}\nWORKDIR /workspace\n"
        ));
        return d;
    };
    if let Some(tool) = &i.tool {
        d.push_str(&format!("RUN {}\n", tool.install));
    }
    d.push_str(&format!(
        "RUN mkdir -p {DEPS_DIR} /workspace && chown {USER}:{USER} {DEPS_DIR} /workspace\n"
    ));
    d.push_str(&format!("USER {USER}\nENV HOME={HOME}\n"));
    // Layered on a repository's image (as root), the package manager may be
    // missing: install it there only when it is (here it is already).
    if layerable {
        d.push_str(DEPS_MARKER);
        d.push('\n');
    }
    if let Some(tool) = &i.tool {
        d.push_str(&format!("RUN {} || {}\n", tool.present, tool.install));
    }
    for (k, v) in &i.env {
        d.push_str(&format!("ENV {k}={v}\n"));
    }
    d.push_str(&format!("WORKDIR {DEPS_DIR}\n"));
    d.push_str(&format!(
        "COPY --chown={JOB_UID}:{JOB_GID} {} ./\n",
        i.files.join(" ")
    ));
    // An install with nothing to install creates no node_modules: the
    // setup step links it into the checkout, so it must exist.
    d.push_str(&format!(
        "RUN {} && mkdir -p {DEPS_DIR}/node_modules\n",
        i.command
    ));
    d.push_str(&format!("ENV PATH={DEPS_DIR}/node_modules/.bin:$PATH\n"));
    d.push_str("WORKDIR /workspace\n");
    d
}

fn cache_for(choice: &PmChoice) -> CacheMount {
    let (id, path) = match choice.pm {
        Pm::Npm => ("npm", format!("{HOME}/.npm")),
        Pm::Pnpm => ("pnpm-store", format!("{HOME}/.local/share/pnpm/store")),
        Pm::Yarn if choice.berry => ("yarn-berry", format!("{HOME}/.yarn/berry/cache")),
        Pm::Yarn => ("yarn", format!("{HOME}/.cache/yarn")),
        Pm::Bun => ("bun", format!("{HOME}/.bun/install/cache")),
    };
    CacheMount {
        id: id.to_owned(),
        path,
    }
}

/// Fast and full tiers from the scripts and the ESLint configuration.
fn steps(
    repo: &Repo,
    manifest: &Manifest,
    pm: Pm,
    notes: &mut Vec<String>,
) -> Result<(Vec<Step>, Vec<Step>), PluginError> {
    let scripts = manifest.scripts()?;
    let script = |name: &str| {
        scripts
            .iter()
            .find(|(k, _)| k == name)
            .map(|(_, v)| v.as_str())
    };
    // Validation judges the code as it is: a script that would change the
    // checkout (`eslint --fix`, `prettier --write`, ...) is not run.
    let writes = |name: &str| {
        let why = scripts::writes(&scripts, name)?;
        Some(format!(
            "package.json `{name}` script not run: {why} would change the checkout"
        ))
    };
    let eslint_config = ESLINT_CONFIGS
        .iter()
        .find(|f| repo.exists(f))
        .copied()
        .or_else(|| {
            manifest
                .obj
                .contains_key("eslintConfig")
                .then_some("package.json eslintConfig")
        });
    let eslint = || Step::new("eslint", ESLINT_CHECK).with_report("eslint-json", None);
    let mut fast = Vec::new();
    let mut full = Vec::new();
    let mut lint_not_run = false;
    if script("lint").is_some() {
        match writes("lint") {
            None => fast.push(Step::new("lint", &pm.run("lint"))),
            Some(why) => {
                lint_not_run = true;
                if let Some(config) = eslint_config {
                    notes.push(format!(
                        "{why}; running ESLint directly without --fix (`{ESLINT_CHECK}`), as {config} configures it"
                    ));
                    fast.push(eslint());
                } else {
                    notes.push(format!("{why}; no lint step"));
                }
            }
        }
    } else if let Some(config) = eslint_config {
        notes.push(format!(
            "no `lint` script: running ESLint directly, as {config} configures it"
        ));
        fast.push(eslint());
    } else {
        notes.push("no `lint` script and no ESLint configuration: no lint step".to_owned());
    }
    if let Some(name) = TYPECHECK_SCRIPTS.iter().find(|n| script(n).is_some()) {
        match writes(name) {
            None => fast.push(Step::new("typecheck", &pm.run(name))),
            Some(why) => notes.push(format!("{why}; no typecheck step")),
        }
    }
    if fast.is_empty() {
        fast.push(Step::new("syntax", SYNTAX_CHECK));
        notes.push(if lint_not_run {
            SYNTAX_INSTEAD_NOTE.to_owned()
        } else {
            SYNTAX_NOTE.to_owned()
        });
    }
    match script("test") {
        Some(t) if t.contains(NPM_TEST_PLACEHOLDER) => notes.push(
            "package.json `test` script is npm's placeholder (\"no test specified\"): no test step"
                .to_owned(),
        ),
        Some(_) => match writes("test") {
            None => full.push(Step::new("test", &pm.run("test"))),
            Some(why) => notes.push(format!("{why}; the full tier is empty")),
        },
        None => notes.push("no `test` script in package.json: the full tier is empty".to_owned()),
    }
    Ok((fast, full))
}

impl Ecosystem for Node {
    fn detect(repo: &Repo) -> Result<Option<Detection>, PluginError> {
        let mut evidence = Vec::new();
        if let Some(manifest) = read_manifest(repo)? {
            let name = manifest
                .obj
                .get("name")
                .and_then(Value::as_str)
                .unwrap_or("(unnamed)");
            evidence.push(Evidence::new(
                "package.json",
                None,
                format!("package `{name}`"),
            ));
            if let Ok(Some(pm)) = manifest.string_field("packageManager") {
                evidence.push(Evidence::new(
                    "package.json",
                    manifest.line_of_key("packageManager"),
                    format!("packageManager = \"{pm}\""),
                ));
            }
            let lock = LOCKFILES.iter().find(|(f, _)| repo.exists(f));
            if let Some((f, pm)) = lock {
                evidence.push(Evidence::new(f, None, format!("{} lockfile", pm.name())));
            }
            for f in VERSION_FILES.iter().filter(|f| repo.exists(f)) {
                evidence.push(Evidence::new(f, None, "node version file"));
            }
            let confidence = if lock.is_some() { 75 } else { 70 };
            return Ok(Some(Detection {
                confidence,
                evidence,
            }));
        }
        for f in VERSION_FILES.iter().filter(|f| repo.exists(f)) {
            evidence.push(Evidence::new(f, None, "node version file"));
        }
        // A node entry in a version manager's file also counts; a broken file
        // there is not node's to report at detection time.
        if let Ok(pins) = version_manager_pins(repo, TOOL_NAMES, NODE.prefixes) {
            evidence.extend(pins.into_iter().filter_map(|h| {
                h.source.map(|s| Evidence {
                    note: format!("node {}", s.note),
                    ..s
                })
            }));
        }
        if evidence.is_empty() {
            return Ok(None);
        }
        Ok(Some(Detection {
            confidence: 50,
            evidence,
        }))
    }

    fn plan(repo: &Repo) -> Result<Plan, PluginError> {
        let manifest = read_manifest(repo)?;
        let mut notes = Vec::new();
        let toolchain = resolve(&NODE, node_hints(repo, manifest.as_ref())?)?;
        notes.extend(toolchain.notes());
        let base_image = format!("node:{}-slim", toolchain.resolved);
        let env = vec![OptionPair {
            name: "CI".into(),
            value: "true".into(),
        }];

        let Some(manifest) = manifest else {
            notes.push("no package.json: nothing to install and no scripts to run".to_owned());
            notes.push(SYNTAX_NOTE.to_owned());
            return Ok(Plan {
                image: ImageSource::Generated(dockerfile(&base_image, None, false)),
                base_image,
                toolchains: vec![toolchain],
                package_manager: None,
                setup: vec![],
                fast: vec![Step::new("syntax", SYNTAX_CHECK)],
                full: vec![],
                cache: vec![],
                env,
                notes,
            });
        };

        let choice = choose_pm(repo, &manifest, &mut notes)?;
        let pnpm_workspace = choice.pm == Pm::Pnpm
            && matches!(repo.read_text("pnpm-workspace.yaml"), Ok(Some(t)) if t.numbered_lines().any(|(_, l)| l.starts_with("packages:")));
        if manifest.obj.contains_key("workspaces") || pnpm_workspace {
            notes.push(
                "workspaces declared: only the root package.json and lockfile are copied into the image, so workspace packages are not installed; use a repository Dockerfile if the install fails"
                    .to_owned(),
            );
        }
        if let Ok(Some(scripts)) = manifest.object_field("scripts") {
            for hook in ["preinstall", "install", "postinstall", "prepare"]
                .into_iter()
                .filter(|h| scripts.contains_key(*h))
            {
                notes.push(format!(
                    "package.json `{hook}` script runs at image build in {DEPS_DIR}, where only package.json and the lockfile are present"
                ));
            }
        }
        let (fast, full) = steps(repo, &manifest, choice.pm, &mut notes)?;
        // Nothing declared, nothing worth layering on a repository's own
        // image (which may not even have the package manager).
        let declares_deps = DEPENDENCY_FIELDS
            .iter()
            .any(|f| matches!(manifest.object_field(f), Ok(Some(m)) if !m.is_empty()))
            || manifest.obj.contains_key("workspaces");
        if !declares_deps {
            notes.push(
                "package.json declares no dependencies: the install creates an empty node_modules, and nothing is layered on a repository's own image".to_owned(),
            );
        }
        let inst = install(repo, &choice, &mut notes);
        Ok(Plan {
            image: ImageSource::Generated(dockerfile(&base_image, Some(&inst), declares_deps)),
            base_image,
            toolchains: vec![toolchain],
            package_manager: Some(PackageManager {
                name: choice.pm.name().to_owned(),
                version: choice.version.clone(),
                lockfile: choice.lockfile.map(str::to_owned),
                source: choice.source.clone(),
            }),
            setup: vec![Step::new(
                "deps",
                &format!("ln -sfn {DEPS_DIR}/node_modules node_modules"),
            )],
            fast,
            full,
            cache: vec![cache_for(&choice)],
            env,
            notes,
        })
    }
}

export_ecosystem!(Node);

#[cfg(test)]
mod tests;

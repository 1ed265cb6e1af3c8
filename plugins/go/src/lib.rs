//! `go`: an ecosystem plugin for Go modules and Go workspaces.
//!
//! Detects a root `go.mod` (or `go.work`), resolves the Go release line from
//! the repository's hints (pins: `mise.toml`, `.tool-versions`, `go.work`,
//! the `go.mod` `toolchain` line; range: the `go.mod` `go` directive), and
//! plans a `golang:<line>` image with the modules downloaded outside
//! `/workspace`, `go vet` (and `golangci-lint` when configured) as the fast
//! tier and `go test -json` as the full tier. See README.md.

use slipway_plugin_sdk::ecosystem::*;
use slipway_plugin_sdk::toolchain::{ReleaseTable, resolve, version_manager_pins};
use slipway_plugin_sdk::{Repo, TextFile, export_ecosystem, malformed, unsupported};

pub struct Go;

/// Go release lines this plugin knows, oldest first.
pub const GO: ReleaseTable = ReleaseTable {
    tool: "go",
    lines: &["1.19", "1.20", "1.21", "1.22", "1.23", "1.24", "1.25"],
    lts: &[],
    default: "1.25",
    prefixes: &["go"],
};

/// Names of Go in `mise.toml` / `.tool-versions`.
const VERSION_MANAGER_NAMES: &[&str] = &["go", "golang"];

const HOME: &str = "/home/app";
const GOMODCACHE: &str = "/home/app/go/pkg/mod";
const GOCACHE: &str = "/home/app/.cache/go-build";
/// Where the image keeps the modules downloaded at build time; served to the
/// job as a local module proxy, so a cache volume mounted over `GOMODCACHE`
/// can never hide them.
const IMAGE_MODULES: &str = "/opt/deps/gomod";

const GOLANGCI_CONFIGS: &[&str] = &[
    ".golangci.yml",
    ".golangci.yaml",
    ".golangci.toml",
    ".golangci.json",
];
/// golangci-lint in check mode: `--fix=false` overrides a configured
/// `issues.fix: true` (v1 and v2; a flag beats the configuration).
const GOLANGCI_RUN: &str = "golangci-lint run --fix=false";
/// Last golangci-lint v1 release (configs without `version: "2"`).
const GOLANGCI_V1: &str = "v1.64.8";

/// What a `go.mod` or `go.work` says, as far as planning needs.
#[derive(Debug, Default)]
struct ModFile {
    module: Option<(u32, String)>,
    go: Option<(u32, String)>,
    toolchain: Option<(u32, String)>,
    requires: usize,
    local_replaces: Vec<(u32, String)>,
    uses: Vec<String>,
}

fn strip_comment(line: &str) -> &str {
    match line.find("//") {
        Some(i) => &line[..i],
        None => line,
    }
}

/// `1.21`, `1.21.3`, `1.22rc1`: what the `go` directive accepts.
fn valid_go_version(s: &str) -> bool {
    let split = s.find(|c: char| c.is_ascii_alphabetic()).unwrap_or(s.len());
    let (num, pre) = s.split_at(split);
    let parts: Vec<&str> = num.split('.').collect();
    let num_ok = (2..=3).contains(&parts.len())
        && parts
            .iter()
            .all(|p| !p.is_empty() && p.bytes().all(|b| b.is_ascii_digit()));
    let pre_ok = pre.is_empty() || {
        let letters = pre.find(|c: char| c.is_ascii_digit()).unwrap_or(pre.len());
        let (l, d) = pre.split_at(letters);
        !l.is_empty()
            && !d.is_empty()
            && l.bytes().all(|b| b.is_ascii_lowercase())
            && d.bytes().all(|b| b.is_ascii_digit())
    };
    num_ok && pre_ok
}

/// The release part of a Go version (`1.22rc1` -> `1.22`, `1.22.3-custom` -> `1.22.3`).
fn numeric_part(s: &str) -> String {
    s.chars()
        .take_while(|c| c.is_ascii_digit() || *c == '.')
        .collect::<String>()
        .trim_end_matches('.')
        .to_owned()
}

fn parse_modfile(file: &TextFile) -> Result<ModFile, PluginError> {
    let path = file.path.as_str();
    let mut m = ModFile::default();
    let mut block: Option<(String, u32)> = None;
    for (n, raw) in file.numbered_lines() {
        let line = strip_comment(raw).trim();
        if line.is_empty() {
            continue;
        }
        if let Some((kw, _)) = &block {
            if line == ")" {
                block = None;
            } else {
                let kw = kw.clone();
                entry(&mut m, &kw, line, n);
            }
            continue;
        }
        let (kw, rest) = match line.split_once(char::is_whitespace) {
            Some((k, r)) => (k, r.trim()),
            None => (line, ""),
        };
        if kw == ")" {
            return Err(malformed(
                path,
                Some(n),
                "`)` closes no block",
                Some("remove it or add the `(` that opens the block"),
            ));
        }
        if rest == "(" {
            block = Some((kw.to_owned(), n));
            continue;
        }
        match kw {
            "module" => {
                if rest.is_empty() {
                    return Err(malformed(
                        path,
                        Some(n),
                        "`module` directive has no module path",
                        Some("write e.g. `module example.com/app`"),
                    ));
                }
                m.module = Some((n, rest.trim_matches('"').to_owned()));
            }
            "go" => {
                if m.go.is_some() {
                    return Err(malformed(
                        path,
                        Some(n),
                        "repeated `go` directive",
                        Some("keep one `go` line"),
                    ));
                }
                if !valid_go_version(rest) {
                    return Err(malformed(
                        path,
                        Some(n),
                        format!("`go {rest}` is not a valid go directive"),
                        Some("write the minimum Go version, e.g. `go 1.22` or `go 1.22.3`"),
                    ));
                }
                m.go = Some((n, rest.to_owned()));
            }
            "toolchain" => {
                if m.toolchain.is_some() {
                    return Err(malformed(
                        path,
                        Some(n),
                        "repeated `toolchain` directive",
                        Some("keep one `toolchain` line"),
                    ));
                }
                let ok = rest == "default"
                    || rest.strip_prefix("go").is_some_and(|v| {
                        let core = v.split(['-', '+']).next().unwrap_or(v);
                        valid_go_version(core)
                    });
                if !ok {
                    return Err(malformed(
                        path,
                        Some(n),
                        format!("`toolchain {rest}` is not a valid toolchain directive"),
                        Some("write e.g. `toolchain go1.22.3`"),
                    ));
                }
                m.toolchain = Some((n, rest.to_owned()));
            }
            "require" | "replace" | "use" | "exclude" | "retract" | "tool" | "godebug"
            | "ignore" => {
                if rest.is_empty() {
                    return Err(malformed(
                        path,
                        Some(n),
                        format!("`{kw}` directive is empty"),
                        None,
                    ));
                }
                entry(&mut m, kw, rest, n);
            }
            // Directives added by later Go releases: not needed for planning.
            _ => {}
        }
    }
    if let Some((kw, n)) = block {
        return Err(malformed(
            path,
            Some(n),
            format!("`{kw} (` block is never closed"),
            Some("add the closing `)`"),
        ));
    }
    Ok(m)
}

fn entry(m: &mut ModFile, kw: &str, line: &str, n: u32) {
    match kw {
        "require" => m.requires += 1,
        "replace" => {
            if let Some((_, target)) = line.split_once("=>") {
                let target = target
                    .split_whitespace()
                    .next()
                    .unwrap_or("")
                    .trim_matches('"');
                if target.starts_with("./")
                    || target.starts_with("../")
                    || target.starts_with('/')
                    || target == "."
                    || target == ".."
                {
                    m.local_replaces.push((n, target.to_owned()));
                }
            }
        }
        "use" => m.uses.push(line.trim_matches('"').to_owned()),
        _ => {}
    }
}

fn read_modfile(repo: &Repo, rel: &str) -> Result<Option<ModFile>, PluginError> {
    repo.read_text(rel)?.map(|f| parse_modfile(&f)).transpose()
}

fn hint(
    kind: ConstraintKind,
    file: &str,
    line: u32,
    written: &str,
    constraint: String,
    note: String,
) -> VersionHint {
    VersionHint {
        constraint,
        written_form: written.to_owned(),
        kind,
        source: Some(Evidence::new(file, Some(line), note)),
    }
}

/// The golangci-lint config, and whether it is a v2 config (`version: "2"`).
fn golangci_config(repo: &Repo) -> Result<Option<(String, bool)>, PluginError> {
    for name in GOLANGCI_CONFIGS {
        if let Some(file) = repo.read_text(name)? {
            let v2 = file.numbered_lines().any(|(_, l)| {
                let l = l.trim().trim_start_matches('"');
                let Some(rest) = l.strip_prefix("version") else {
                    return false;
                };
                let rest = rest
                    .trim_start_matches('"')
                    .trim_start()
                    .trim_start_matches([':', '=']);
                rest.trim()
                    .trim_end_matches(',')
                    .trim_matches(|c| c == '"' || c == '\'')
                    == "2"
            });
            return Ok(Some((name.to_string(), v2)));
        }
    }
    Ok(None)
}

fn opt(name: &str, value: &str) -> OptionPair {
    OptionPair {
        name: name.to_owned(),
        value: value.to_owned(),
    }
}

impl Ecosystem for Go {
    fn detect(repo: &Repo) -> Result<Option<Detection>, PluginError> {
        if let Some(file) = repo.read_text("go.mod")? {
            // Cheap: only the module line; a malformed go.mod is reported by `plan`.
            let module = file
                .numbered_lines()
                .find(|(_, l)| l.trim_start().starts_with("module"));
            let note = module
                .map(|(_, l)| l.trim().to_owned())
                .unwrap_or_else(|| "Go module".to_owned());
            let mut evidence = vec![Evidence::new("go.mod", module.map(|(n, _)| n), note)];
            let confidence = if repo.exists("go.sum") {
                evidence.push(Evidence::new("go.sum", None, "module checksums (lockfile)"));
                90
            } else {
                80
            };
            if repo.exists("go.work") {
                evidence.push(Evidence::new("go.work", None, "Go workspace"));
            }
            return Ok(Some(Detection {
                confidence,
                evidence,
            }));
        }
        if repo.exists("go.work") {
            return Ok(Some(Detection {
                confidence: 80,
                evidence: vec![Evidence::new("go.work", None, "Go workspace")],
            }));
        }
        // Only a version-manager pin: a weak hint. A broken mise.toml is not
        // this plugin's business at detection time.
        if let Ok(pins) = version_manager_pins(repo, VERSION_MANAGER_NAMES, GO.prefixes)
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
        let gomod = read_modfile(repo, "go.mod")?;
        let gowork = read_modfile(repo, "go.work")?;
        if gomod.is_none()
            && gowork.is_none()
            && !repo.exists("mise.toml")
            && !repo.exists(".tool-versions")
        {
            return Err(unsupported(
                None,
                "no go.mod or go.work at the repository root",
                Some("run `go mod init` or add go.mod"),
            ));
        }
        let mut notes: Vec<String> = Vec::new();

        // Hints: pins in order mise.toml, .tool-versions, go.work, go.mod toolchain; then the go.mod range.
        let mut hints = version_manager_pins(repo, VERSION_MANAGER_NAMES, GO.prefixes)?;
        if let Some(w) = &gowork {
            if let Some((n, tc)) = &w.toolchain {
                if tc == "default" {
                    notes.push(format!(
                        "go.work:{n}: `toolchain default` ignored: it names no version"
                    ));
                } else {
                    let v = tc.strip_prefix("go").unwrap_or(tc);
                    hints.push(hint(
                        ConstraintKind::Pin,
                        "go.work",
                        *n,
                        tc,
                        numeric_part(v),
                        format!("toolchain {tc}"),
                    ));
                }
            }
            if let Some((n, v)) = &w.go {
                hints.push(hint(
                    ConstraintKind::Pin,
                    "go.work",
                    *n,
                    v,
                    numeric_part(v),
                    format!("go {v}"),
                ));
            }
        }
        if let Some(m) = &gomod {
            if let Some((n, tc)) = &m.toolchain {
                if tc == "default" {
                    notes.push(format!(
                        "go.mod:{n}: `toolchain default` ignored: it names no version"
                    ));
                } else {
                    let v = tc.strip_prefix("go").unwrap_or(tc);
                    hints.push(hint(
                        ConstraintKind::Pin,
                        "go.mod",
                        *n,
                        tc,
                        numeric_part(v),
                        format!("toolchain {tc}"),
                    ));
                }
            }
            if let Some((n, v)) = &m.go {
                // The go directive is a minimum: `go 1.21` means `>=1.21`.
                hints.push(hint(
                    ConstraintKind::Range,
                    "go.mod",
                    *n,
                    v,
                    format!(">={}", numeric_part(v)),
                    format!("go {v} (minimum)"),
                ));
            }
        }
        let toolchain = resolve(&GO, hints)?;
        notes.extend(toolchain.notes());
        let line = toolchain.resolved.clone();
        let base = format!("golang:{line}");

        // Dependencies: downloaded into the image when go.mod alone describes them.
        let has_sum = repo.exists("go.sum");
        // vendor/modules.txt: the modules are in the checkout. Go builds from
        // vendor/ by default when go.mod says go >= 1.14; GOFLAGS makes it
        // explicit for older go directives too. Nothing is downloaded.
        let vendored = gomod.is_some() && gowork.is_none() && repo.exists("vendor/modules.txt");
        let mut setup = Vec::new();
        let mut download_in_image = false;
        let mut lockfile = None;
        let mut pm_source = None;
        if let Some(m) = &gomod {
            pm_source = Some(match &m.module {
                Some((n, path)) => Evidence::new("go.mod", Some(*n), format!("module {path}")),
                None => Evidence::new("go.mod", None, "Go module"),
            });
            if has_sum {
                lockfile = Some("go.sum".to_owned());
            } else if m.requires > 0 {
                notes.push("go.sum is missing: module downloads are not checked against recorded checksums".into());
            }
            if vendored {
                notes.push(
                    "vendor/modules.txt: modules come from vendor/ in the checkout (-mod=vendor); nothing is downloaded, at image build or in setup"
                        .into(),
                );
            } else if let Some((n, target)) = m.local_replaces.first() {
                notes.push(format!(
                    "go.mod:{n}: replace => {target} points inside the checkout; modules are downloaded in setup (`go mod download`), which needs the network"
                ));
            } else if m.requires == 0 {
                notes.push("go.mod requires no modules; nothing to download".into());
            } else {
                download_in_image = true;
            }
        }
        if let Some(w) = &gowork {
            if pm_source.is_none() {
                pm_source = Some(Evidence::new(
                    "go.work",
                    None,
                    format!("Go workspace ({} modules)", w.uses.len()),
                ));
            }
            if lockfile.is_none() && repo.exists("go.work.sum") {
                lockfile = Some("go.work.sum".to_owned());
            }
            notes.push(
                "go.work: the workspace's modules live in subdirectories the image build does not see; \
                 their dependencies are downloaded in setup (`go mod download`), which needs the network"
                    .into(),
            );
        }
        let needs_setup_download = !vendored
            && (gowork.is_some() || gomod.as_ref().is_some_and(|m| !m.local_replaces.is_empty()));
        if needs_setup_download {
            setup.push(Step::new("go-mod-download", "go mod download"));
        }

        let golangci = golangci_config(repo)?;

        let mut df = String::new();
        df.push_str(&format!("FROM {base}\n"));
        df.push_str(&format!(
            "RUN useradd --create-home --uid {JOB_UID} --home-dir {HOME} --shell /bin/sh app \\\n \
             && mkdir -p /opt/deps {GOMODCACHE} {GOCACHE} {HOME}/go/bin /workspace \\\n \
             && chown -R app:app /opt/deps {HOME} /workspace\n"
        ));
        df.push_str(&format!(
            "ENV HOME={HOME} \\\n    GOPATH={HOME}/go \\\n    GOMODCACHE={GOMODCACHE} \\\n    GOCACHE={GOCACHE} \\\n    \
             GOTOOLCHAIN=local \\\n    PATH={HOME}/go/bin:/usr/local/go/bin:$PATH\n"
        ));
        df.push_str("USER app\n");
        if let Some((_, v2)) = &golangci {
            let version = if *v2 {
                String::new()
            } else {
                format!(" {GOLANGCI_V1}")
            };
            df.push_str(&format!(
                "RUN curl -sSfL https://raw.githubusercontent.com/golangci/golangci-lint/HEAD/install.sh | sh -s -- -b {HOME}/go/bin{version}\n"
            ));
        }
        if download_in_image {
            // What follows the marker can also run as root on top of the
            // repository's own Go image: it makes its own directory and names
            // no user.
            let files = if has_sum { "go.mod go.sum" } else { "go.mod" };
            df.push_str(DEPS_MARKER);
            df.push('\n');
            df.push_str("WORKDIR /opt/deps\n");
            df.push_str(&format!("COPY --chown={JOB_UID}:{JOB_GID} {files} ./\n"));
            df.push_str(&format!("RUN GOMODCACHE={IMAGE_MODULES} go mod download\n"));
            df.push_str(&format!(
                "ENV GOPROXY=file://{IMAGE_MODULES}/cache/download,https://proxy.golang.org,direct \\\n    GOSUMDB=sum.golang.org\n"
            ));
            notes.push(format!(
                "modules are downloaded into the image at {IMAGE_MODULES} and served to jobs as a local module proxy (GOPROXY=file://...)"
            ));
        }
        df.push_str("WORKDIR /workspace\n");

        let mut fast = vec![Step::new("vet", "go vet ./...")];
        match &golangci {
            Some((name, v2)) => {
                fast.push(Step::new("golangci-lint", GOLANGCI_RUN));
                notes.push(format!(
                    "{name}: golangci-lint {} installed",
                    if *v2 { "v2 (latest)" } else { GOLANGCI_V1 }
                ));
            }
            None => notes.push("no .golangci.yml/.yaml/.toml/.json: golangci-lint not run; the fast tier is `go vet ./...`, chosen because the project declares no linter".into()),
        }
        let full = vec![Step::new("test", "go test -json ./...").with_report("go-test-json", None)];

        Ok(Plan {
            base_image: base,
            image: ImageSource::Generated(df),
            toolchains: vec![toolchain],
            package_manager: pm_source.map(|source| PackageManager {
                name: "go".into(),
                version: None,
                lockfile,
                source: Some(source),
            }),
            setup,
            fast,
            full,
            cache: vec![
                CacheMount {
                    id: "go-mod".into(),
                    path: GOMODCACHE.into(),
                },
                CacheMount {
                    id: "go-build".into(),
                    path: GOCACHE.into(),
                },
            ],
            env: if vendored {
                vec![opt("CI", "true"), opt("GOFLAGS", "-mod=vendor")]
            } else {
                vec![opt("CI", "true")]
            },
            notes,
        })
    }
}

export_ecosystem!(Go);

#[cfg(test)]
mod tests {
    use super::*;
    use slipway_plugin_sdk::testing;

    fn fixture(name: &str) -> String {
        format!("{}/tests/fixtures/{name}", env!("CARGO_MANIFEST_DIR"))
    }

    fn plan(name: &str) -> Plan {
        testing::plan::<Go>(fixture(name)).unwrap_or_else(|e| panic!("{name}: {}", e.describe()))
    }

    fn dockerfile(p: &Plan) -> &str {
        p.generated_dockerfile().expect("a generated Dockerfile")
    }

    #[test]
    fn detection_confidence() {
        let d = testing::detect::<Go>(fixture("mod-sum")).unwrap().unwrap();
        assert_eq!(d.confidence, 90);
        assert_eq!(d.evidence[0].file, "go.mod");
        assert_eq!(d.evidence[0].line, Some(1));
        assert_eq!(d.evidence[1].file, "go.sum");
        assert_eq!(
            testing::detect::<Go>(fixture("mod-only"))
                .unwrap()
                .unwrap()
                .confidence,
            80
        );
        let w = testing::detect::<Go>(fixture("work")).unwrap().unwrap();
        assert_eq!((w.confidence, w.evidence[0].file.as_str()), (80, "go.work"));
        let pin = testing::detect::<Go>(fixture("pin-only")).unwrap().unwrap();
        assert_eq!(
            (pin.confidence, pin.evidence[0].file.as_str()),
            (50, ".tool-versions")
        );
        assert!(testing::detect::<Go>(fixture("not-go")).unwrap().is_none());
        // A malformed go.mod is still a Go repository; plan reports the problem.
        assert_eq!(
            testing::detect::<Go>(fixture("malformed-go"))
                .unwrap()
                .unwrap()
                .confidence,
            80
        );
    }

    #[test]
    fn go_directive_is_a_minimum() {
        let p = plan("mod-sum");
        let t = &p.toolchains[0];
        assert_eq!(t.resolved, "1.25");
        assert_eq!(t.hint.kind, ConstraintKind::Range);
        assert_eq!(t.hint.constraint, ">=1.21");
        assert_eq!(t.hint.written_form, "1.21");
        assert_eq!(t.hint.source.as_ref().unwrap().line, Some(3));
        assert_eq!(p.base_image, "golang:1.25");
        let df = dockerfile(&p);
        assert!(df.starts_with("FROM golang:1.25\n"), "{df}");
        assert!(
            df.contains("COPY --chown=1000:1000 go.mod go.sum ./\n"),
            "{df}"
        );
        assert!(df.contains("go mod download"), "{df}");
        assert!(df.contains("useradd --create-home --uid 1000"), "{df}");
        assert!(df.contains("USER app\n"), "{df}");
        assert!(df.ends_with("WORKDIR /workspace\n"), "{df}");
        assert!(!df.contains("--mount"), "{df}");
        assert!(!df.contains("golangci"), "{df}");
        let pm = p.package_manager.as_ref().unwrap();
        assert_eq!(
            (pm.name.as_str(), pm.lockfile.as_deref()),
            ("go", Some("go.sum"))
        );
        assert_eq!(p.fast.len(), 1);
        assert_eq!(p.fast[0].command, "go vet ./...");
        assert_eq!(p.full[0].command, "go test -json ./...");
        let report = p.full[0].report.as_ref().unwrap();
        assert_eq!(
            (report.format.as_str(), report.path.as_deref()),
            ("go-test-json", None)
        );
        let cache: Vec<(&str, &str)> = p
            .cache
            .iter()
            .map(|c| (c.id.as_str(), c.path.as_str()))
            .collect();
        assert_eq!(
            cache,
            vec![
                ("go-mod", "/home/app/go/pkg/mod"),
                ("go-build", "/home/app/.cache/go-build")
            ]
        );
        assert!(p.env.iter().any(|e| e.name == "CI" && e.value == "true"));
        assert!(p.setup.is_empty());
    }

    #[test]
    fn no_go_sum_and_no_requires() {
        let p = plan("mod-only");
        let t = &p.toolchains[0];
        assert_eq!(
            (t.resolved.as_str(), t.hint.kind),
            ("1.25", ConstraintKind::Default)
        );
        assert!(
            p.notes.iter().any(|n| n.contains("default 1.25")),
            "{:?}",
            p.notes
        );
        let df = dockerfile(&p);
        assert!(!df.contains("COPY"), "{df}");
        assert_eq!(p.package_manager.as_ref().unwrap().lockfile, None);
    }

    #[test]
    fn toolchain_line_pins_over_go_directive() {
        let p = plan("toolchain");
        let t = &p.toolchains[0];
        assert_eq!(
            (t.resolved.as_str(), t.hint.kind),
            ("1.22", ConstraintKind::Pin)
        );
        assert_eq!(t.hint.written_form, "go1.22.3");
        assert_eq!(t.hint.constraint, "1.22.3");
        assert_eq!(t.overruled.len(), 1);
        assert_eq!(t.overruled[0].hint.written_form, "1.21");
        assert_eq!(t.overruled[0].reason, "a pin (go.mod) beats a range");
        assert_eq!(p.base_image, "golang:1.22");
        // Without go.sum, only go.mod is copied.
        assert!(dockerfile(&p).contains("COPY --chown=1000:1000 go.mod ./\n"));
        assert!(
            p.notes.iter().any(|n| n.contains("go.sum is missing")),
            "{:?}",
            p.notes
        );
    }

    #[test]
    fn tool_versions_pin_beats_go_mod_and_conflict_is_noted() {
        let p = plan("tool-versions");
        let t = &p.toolchains[0];
        assert_eq!(
            (t.resolved.as_str(), t.hint.written_form.as_str()),
            ("1.20", "1.20.5")
        );
        assert_eq!(t.hint.source.as_ref().unwrap().file, ".tool-versions");
        assert_eq!(t.overruled.len(), 1);
        assert!(
            t.overruled
                .iter()
                .any(|o| o.reason.contains("conflicts: 1.20 does not satisfy `1.21`")),
            "{:?}",
            t.overruled
        );
        assert!(
            p.notes
                .iter()
                .any(|n| n.starts_with("go `1.21` from go.mod ignored")),
            "{:?}",
            p.notes
        );
    }

    #[test]
    fn mise_beats_tool_versions() {
        let p = plan("mise");
        let t = &p.toolchains[0];
        assert_eq!(
            (
                t.resolved.as_str(),
                t.hint.source.as_ref().unwrap().file.as_str()
            ),
            ("1.23", "mise.toml")
        );
        assert!(
            t.overruled.iter().any(|o| o.reason
                == "an earlier pin (mise.toml) wins; conflicts: 1.23 does not satisfy `1.19`"),
            "{:?}",
            t.overruled
        );
    }

    #[test]
    fn workspace_downloads_in_setup() {
        let p = plan("work");
        let t = &p.toolchains[0];
        assert_eq!(
            (t.resolved.as_str(), t.hint.kind),
            ("1.22", ConstraintKind::Pin)
        );
        assert_eq!(t.hint.source.as_ref().unwrap().file, "go.work");
        assert_eq!(p.setup[0].command, "go mod download");
        assert!(!dockerfile(&p).contains("COPY"));
        assert_eq!(
            p.package_manager.as_ref().unwrap().lockfile.as_deref(),
            Some("go.work.sum")
        );
        assert!(
            p.notes.iter().any(|n| n.starts_with("go.work:")),
            "{:?}",
            p.notes
        );
    }

    #[test]
    fn local_replace_downloads_in_setup() {
        let p = plan("local-replace");
        assert_eq!(p.setup[0].command, "go mod download");
        assert!(!dockerfile(&p).contains("go mod download"));
        assert!(
            p.notes.iter().any(|n| n.contains("replace => ../shared")),
            "{:?}",
            p.notes
        );
    }

    #[test]
    fn golangci_config_adds_lint() {
        let p = plan("golangci");
        assert_eq!(p.fast[1].command, "golangci-lint run --fix=false");
        let df = dockerfile(&p);
        assert!(
            df.contains("golangci-lint/HEAD/install.sh | sh -s -- -b /home/app/go/bin\n"),
            "{df}"
        );
        let p = plan("golangci-v1");
        assert!(dockerfile(&p).contains("-b /home/app/go/bin v1.64.8\n"));
        assert_eq!(p.fast[1].command, "golangci-lint run --fix=false");
    }

    /// A configured `issues.fix: true` (v1 or v2) never applies fixes, and
    /// no step formats in place.
    #[test]
    fn golangci_lint_never_fixes() {
        for (version, config) in [
            (
                "v2",
                "version: \"2\"\nissues:\n  fix: true\nformatters:\n  enable: [gofmt]\n",
            ),
            ("v1", "issues:\n  fix: true\n"),
        ] {
            let dir = std::env::temp_dir().join(format!(
                "slipway-go-golangci-fix-{version}-{}",
                std::process::id()
            ));
            let _ = std::fs::remove_dir_all(&dir);
            std::fs::create_dir_all(&dir).unwrap();
            std::fs::write(dir.join("go.mod"), "module example.com/fix\n\ngo 1.24\n").unwrap();
            std::fs::write(dir.join(".golangci.yml"), config).unwrap();
            let p = testing::plan::<Go>(&dir).unwrap();
            let _ = std::fs::remove_dir_all(&dir);
            let lint = p.fast.iter().find(|s| s.name == "golangci-lint").unwrap();
            assert_eq!(lint.command, "golangci-lint run --fix=false", "{version}");
            for s in p.fast.iter().chain(&p.full) {
                let words: Vec<&str> = s.command.split_whitespace().collect();
                assert!(
                    !words.iter().any(|w| *w == "--fix" || *w == "-w"),
                    "{version}: {}",
                    s.command
                );
            }
        }
    }

    #[test]
    fn malformed_go_mod_names_file_and_line() {
        let e = testing::plan::<Go>(fixture("malformed-go"))
            .unwrap_err()
            .describe();
        assert!(
            e.starts_with("malformed input: go.mod:3: `go one.twenty` is not a valid go directive"),
            "{e}"
        );
        let e = testing::plan::<Go>(fixture("malformed-block"))
            .unwrap_err()
            .describe();
        assert!(
            e.starts_with("malformed input: go.mod:5: `require (` block is never closed"),
            "{e}"
        );
    }

    #[test]
    fn unknown_go_version_is_unsupported() {
        let e = testing::plan::<Go>(fixture("too-new"))
            .unwrap_err()
            .describe();
        assert!(
            e.contains("go.mod: no go release line satisfies `1.99`"),
            "{e}"
        );
    }

    #[test]
    fn vendored_modules_need_no_download() {
        let p = plan("vendored");
        // Neither in the image nor in setup: the job has no network.
        assert!(p.setup.is_empty(), "{:?}", p.setup);
        let df = dockerfile(&p);
        assert!(
            !df.contains("go mod download") && !df.contains("COPY"),
            "{df}"
        );
        assert!(!df.contains(DEPS_MARKER), "{df}");
        assert!(
            p.env
                .iter()
                .any(|e| e.name == "GOFLAGS" && e.value == "-mod=vendor"),
            "{:?}",
            p.env
        );
        assert!(
            p.notes.iter().any(|n| n.starts_with("vendor/modules.txt")),
            "{:?}",
            p.notes
        );
        assert_eq!(p.fast[0].command, "go vet ./...");
        assert_eq!(p.full[0].command, "go test -json ./...");
        // GOCACHE is the go-build cache mount (handed to the job's uid).
        let env_line = df.lines().find(|l| l.contains("GOCACHE=")).unwrap();
        assert!(env_line.contains(GOCACHE), "{df}");
        assert!(p.cache.iter().any(|c| c.path == GOCACHE));
    }

    #[test]
    fn download_section_after_the_marker_is_self_contained() {
        let p = plan("mod-sum");
        let df = dockerfile(&p);
        assert!(df.contains("\nUSER app\n"), "{df}");
        let after = testing::layerable_section(df, "app");
        assert!(after.contains("go mod download"), "{df}");
        assert!(
            p.notes.iter().any(|n| n.contains("declares no linter")),
            "{:?}",
            p.notes
        );
    }

    #[test]
    fn go_versions() {
        for ok in ["1.21", "1.21.3", "1.22rc1", "1.0"] {
            assert!(valid_go_version(ok), "{ok}");
        }
        for bad in ["1", "banana", "1.x", "1.21.", "1.21.3.4", "1.22RC1", ""] {
            assert!(!valid_go_version(bad), "{bad}");
        }
        assert_eq!(numeric_part("1.22rc1"), "1.22");
        assert_eq!(numeric_part("1.22.3-custom"), "1.22.3");
    }
}

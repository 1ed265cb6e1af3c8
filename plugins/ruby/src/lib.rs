//! `ruby`: an ecosystem plugin for Bundler projects.
//!
//! Detects a root `Gemfile` (or a lone `.ruby-version`), resolves the Ruby
//! release line from the repository's hints (pins: `mise.toml`,
//! `.tool-versions`, `.ruby-version`; ranges: the `Gemfile` `ruby` line, then
//! `Gemfile.lock` `RUBY VERSION`), and plans a `ruby:<line>-slim` image with
//! the gems installed frozen outside `/workspace`, rubocop (never
//! autocorrecting) as the fast tier and rspec or `rake test` as the full
//! tier. See README.md.

use slipway_plugin_sdk::ecosystem::*;
use slipway_plugin_sdk::shell::quote;
use slipway_plugin_sdk::toolchain::{
    ReleaseTable, resolve, version_file_pin, version_manager_pins,
};
use slipway_plugin_sdk::{Repo, TextFile, export_ecosystem, unsupported};

pub struct Ruby;

/// Ruby release lines this plugin knows, oldest first.
pub const RUBY: ReleaseTable = ReleaseTable {
    tool: "ruby",
    lines: &["3.1", "3.2", "3.3", "3.4"],
    lts: &[],
    default: "3.4",
    prefixes: &["ruby-"],
};

const HOME: &str = "/home/app";
const BUNDLE_PATH: &str = "/usr/local/bundle";
const JUNIT: &str = ".slipway/junit.xml";
/// The cheap check when the project declares no linter: `ruby -wc` (syntax
/// and warnings, runs nothing) on every .rb file outside vendor/ and .git,
/// one file per call (`ruby -c` checks only its first file).
const SYNTAX_CHECK: &str = "find . \\( -name .git -o -name vendor -o -name node_modules \\) -prune -o -type f -name '*.rb' -print0 | xargs -0 -r -n1 ruby -wc >/dev/null";
/// Without a Gemfile: run every `test/**/*_test.rb` and `test/**/test_*.rb`
/// with the standard library's minitest/test-unit, `lib` and `test` on the load path.
const PLAIN_TEST: &str = "ruby -w -Ilib -Itest -e 'Dir.glob(\"test/**/{*_test,test_*}.rb\").sort.each { |f| require File.expand_path(f) }'";

/// Does the Rakefile define a `test` task (`Rake::TestTask`, `task :test`, ...)?
fn rakefile_has_test_task(text: &str) -> bool {
    text.lines().map(str::trim).any(|l| {
        !l.starts_with('#')
            && (l.contains("TestTask")
                || [
                    "task :test",
                    "task(:test",
                    "task test:",
                    "task \"test\"",
                    "task 'test'",
                ]
                .iter()
                .any(|p| l.starts_with(p)))
    })
}

/// rubocop in check mode. rubocop has no option that turns autocorrect off
/// (no `--no-autocorrect`, in any release), and it prepends the options of
/// `RUBOCOP_OPTS` and of a `.rubocop` file to its command line: the step
/// clears the first, and [`rubocop_autocorrects`] reads the second.
const RUBOCOP: &str = "RUBOCOP_OPTS= bundle exec rubocop --format json";
/// rubocop's autocorrect options (Ruby's OptionParser also takes any
/// unambiguous abbreviation, such as `--autoc`).
const RUBOCOP_AUTOCORRECT: &[&str] = &[
    "autocorrect",
    "autocorrect-all",
    "auto-correct",
    "auto-correct-all",
    "safe-auto-correct",
    "safe-autocorrect",
    "fix-layout",
];

/// The first word of a `.rubocop` file that turns autocorrect on: `-a`, `-A`,
/// `-x` (also in a group such as `-Da`), or a long autocorrect option or an
/// abbreviation of one. Errs towards autocorrect.
fn rubocop_autocorrects(text: &str) -> Option<&str> {
    text.split_whitespace().find(|word| {
        let word = word.trim_matches(['"', '\'']);
        if let Some(long) = word.strip_prefix("--") {
            let key = long
                .split('=')
                .next()
                .unwrap_or(long)
                .to_ascii_lowercase()
                .replace('_', "-");
            // `--safe` is an option of its own, not an abbreviation.
            let parts: Vec<&str> = key.split('-').collect();
            key != "safe"
                && !key.is_empty()
                && RUBOCOP_AUTOCORRECT.iter().any(|name| {
                    let names: Vec<&str> = name.split('-').collect();
                    parts.len() <= names.len()
                        && parts.iter().zip(&names).all(|(p, n)| n.starts_with(p))
                })
        } else if let Some(short) = word.strip_prefix('-') {
            // The rest of the group after an option that takes a value is
            // that value (`-fa`: format `a`).
            short
                .chars()
                .take_while(|c| !"fcorsC".contains(*c))
                .any(|c| "aAx".contains(c))
        } else {
            false
        }
    })
}

fn opt(name: &str, value: &str) -> OptionPair {
    OptionPair {
        name: name.to_owned(),
        value: value.to_owned(),
    }
}

/// The string literals of a Ruby argument list, up to the first keyword argument.
fn string_literals(args: &str) -> Vec<String> {
    let mut out = Vec::new();
    let mut chars = args.chars().peekable();
    while let Some(c) = chars.next() {
        match c {
            '"' | '\'' => {
                let mut s = String::new();
                for d in chars.by_ref() {
                    if d == c {
                        break;
                    }
                    s.push(d);
                }
                out.push(s);
            }
            // `engine: "jruby"`: keyword arguments end the version list.
            ':' if chars.peek().is_some_and(|n| n.is_whitespace()) => break,
            '#' => break,
            _ => {}
        }
    }
    out
}

/// What the Gemfile says about Ruby and its dependencies.
#[derive(Debug, Default)]
struct Gemfile {
    /// (line, the `ruby` line's arguments as written).
    ruby_line: Option<(u32, String)>,
    /// Gems resolved from the checkout itself (`gemspec`, `path:`, `eval_gemfile`).
    local_source: Option<(u32, String)>,
    has_rspec: bool,
}

fn read_gemfile(file: &TextFile) -> Gemfile {
    let mut g = Gemfile::default();
    for (n, line) in file.numbered_lines() {
        let t = line.trim();
        if t.starts_with('#') {
            continue;
        }
        if let Some(rest) = t.strip_prefix("ruby").filter(|r| r.starts_with([' ', '('])) {
            if g.ruby_line.is_none() {
                g.ruby_line = Some((
                    n,
                    rest.trim()
                        .trim_start_matches('(')
                        .trim_end_matches(')')
                        .trim()
                        .to_owned(),
                ));
            }
        } else if g.local_source.is_none()
            && (t == "gemspec"
                || t.starts_with("gemspec ")
                || t.starts_with("gemspec(")
                || t.starts_with("eval_gemfile")
                || t.contains("path:")
                || t.contains(":path =>"))
        {
            g.local_source = Some((n, t.to_owned()));
        }
        if t.starts_with("gem ") || t.starts_with("gem(") {
            let names = string_literals(&t[3..]);
            if names
                .first()
                .is_some_and(|name| name == "rspec" || name.starts_with("rspec-"))
            {
                g.has_rspec = true;
            }
        }
    }
    g
}

/// What Gemfile.lock says: the locked Ruby, Bundler, and a few gems.
#[derive(Debug, Default)]
struct Lockfile {
    ruby: Option<(u32, String)>,
    bundler: Option<String>,
    junit_formatter: bool,
    rspec: bool,
}

fn read_lockfile(file: &TextFile) -> Lockfile {
    let mut l = Lockfile::default();
    let mut section = "";
    for (n, line) in file.numbered_lines() {
        if !line.starts_with(' ') && !line.trim().is_empty() {
            section = match line.trim() {
                "RUBY VERSION" => "ruby",
                "BUNDLED WITH" => "bundler",
                _ => "other",
            };
            continue;
        }
        let t = line.trim();
        match section {
            "ruby" if l.ruby.is_none() => {
                if let Some(v) = t.strip_prefix("ruby ") {
                    l.ruby = Some((n, v.trim().to_owned()));
                }
            }
            "bundler" if l.bundler.is_none() && !t.is_empty() => l.bundler = Some(t.to_owned()),
            _ => {}
        }
        let gem = t.split_whitespace().next().unwrap_or("");
        if gem == "rspec_junit_formatter" {
            l.junit_formatter = true;
        }
        if gem == "rspec-core" || gem == "rspec" {
            l.rspec = true;
        }
    }
    l
}

/// `3.3.0p0` -> `3.3.0`.
fn strip_patchlevel(v: &str) -> &str {
    match v.find('p') {
        Some(i) if v[i + 1..].bytes().all(|b| b.is_ascii_digit()) => &v[..i],
        _ => v,
    }
}

fn valid_bundler_version(v: &str) -> bool {
    !v.is_empty() && v.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'.')
}

impl Ecosystem for Ruby {
    fn detect(repo: &Repo) -> Result<Option<Detection>, PluginError> {
        if repo.exists("Gemfile") {
            let mut evidence = vec![Evidence::new("Gemfile", None, "Bundler Gemfile")];
            let confidence = if repo.exists("Gemfile.lock") {
                evidence.push(Evidence::new("Gemfile.lock", None, "Bundler lockfile"));
                90
            } else {
                80
            };
            return Ok(Some(Detection {
                confidence,
                evidence,
            }));
        }
        if let Some(file) = repo.read_text(".ruby-version")? {
            let (line, note) = match file.first_meaningful_line() {
                Some((n, v)) => (Some(n), v.to_owned()),
                None => (None, "empty".to_owned()),
            };
            return Ok(Some(Detection {
                confidence: 50,
                evidence: vec![Evidence::new(".ruby-version", line, note)],
            }));
        }
        // Only a version-manager pin: a weak hint. A broken mise.toml is not
        // this plugin's business at detection time.
        if let Ok(pins) = version_manager_pins(repo, &["ruby"], RUBY.prefixes)
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
        let gemfile_text = repo.read_text("Gemfile")?;
        let gemfile = gemfile_text.as_ref().map(read_gemfile);
        // A lockfile that cannot be read is noted, not fatal: the frozen install reports it.
        let lock_text = match repo.read_text("Gemfile.lock") {
            Ok(t) => t,
            Err(e) => {
                notes.push(format!("Gemfile.lock ignored: {}", e.describe()));
                None
            }
        };
        let lock = lock_text.as_ref().map(read_lockfile);
        let has_lock = repo.exists("Gemfile.lock");

        // Pins: mise.toml, .tool-versions, .ruby-version.
        let mut hints = version_manager_pins(repo, &["ruby"], RUBY.prefixes)?;
        let ruby_version_pin = version_file_pin(repo, ".ruby-version", RUBY.prefixes)?;
        hints.extend(ruby_version_pin.clone());
        // Ranges: the Gemfile `ruby` line, then Gemfile.lock RUBY VERSION.
        let mut copy_ruby_version = false;
        if let Some((n, args)) = gemfile.as_ref().and_then(|g| g.ruby_line.clone()) {
            if args.contains("file:") || args.contains(":file =>") || args.contains("File.read") {
                let literals =
                    string_literals(args.split_once("file:").map(|(_, f)| f).unwrap_or(&args));
                let target = literals
                    .first()
                    .cloned()
                    .unwrap_or_else(|| ".ruby-version".into());
                if target.trim_start_matches("./") == ".ruby-version" {
                    copy_ruby_version = ruby_version_pin.is_some();
                    notes.push(format!("Gemfile:{n}: `ruby {args}` reads .ruby-version; that file is used as the pin"));
                } else {
                    notes.push(format!(
                        "Gemfile:{n}: `ruby {args}` reads {target}, which is not followed; ignored"
                    ));
                }
            } else {
                let literals = string_literals(&args);
                if literals.is_empty() {
                    notes.push(format!(
                        "Gemfile:{n}: `ruby {args}` is not a string literal; ignored"
                    ));
                } else {
                    let written = literals.join(", ");
                    hints.push(VersionHint::from_file(
                        ConstraintKind::Range,
                        "Gemfile",
                        Some(n),
                        &written,
                        RUBY.prefixes,
                    ));
                }
                if args.contains("engine:")
                    && !args.contains("\"ruby\"")
                    && !args.contains("'ruby'")
                {
                    notes.push(format!(
                        "Gemfile:{n}: the `engine:` option is ignored; the image runs CRuby"
                    ));
                }
            }
        }
        if let Some((n, v)) = lock.as_ref().and_then(|l| l.ruby.clone()) {
            let mut h = VersionHint::from_file(
                ConstraintKind::Range,
                "Gemfile.lock",
                Some(n),
                &v,
                RUBY.prefixes,
            );
            h.constraint = strip_patchlevel(&h.constraint).to_owned();
            if let Some(s) = h.source.as_mut() {
                s.note = format!("RUBY VERSION ruby {v}");
            }
            hints.push(h);
        }
        if gemfile.is_none() && hints.is_empty() {
            return Err(unsupported(
                None,
                "no Gemfile or .ruby-version at the repository root",
                Some("add a Gemfile"),
            ));
        }
        let toolchain = resolve(&RUBY, hints)?;
        notes.extend(toolchain.notes());
        let line = toolchain.resolved.clone();
        let base = format!("ruby:{line}-slim");

        // Dependencies.
        let bundler = lock.as_ref().and_then(|l| l.bundler.clone());
        let bundler = match bundler {
            Some(v) if valid_bundler_version(&v) => Some(v),
            Some(v) => {
                notes.push(format!(
                    "Gemfile.lock: BUNDLED WITH `{v}` is not a version; ignored"
                ));
                None
            }
            None => None,
        };
        let mut setup = Vec::new();
        let mut install_in_image = false;
        if let Some(g) = &gemfile {
            if let Some((n, what)) = &g.local_source {
                notes.push(format!(
                    "Gemfile:{n}: `{what}` needs files from the checkout; gems are installed in setup (`bundle install`), which needs the network"
                ));
                setup.push(Step::new("bundle-install", "bundle install"));
            } else {
                install_in_image = true;
                setup.push(Step::new("bundle-check", "bundle check"));
            }
            if !has_lock {
                notes.push(
                    "no Gemfile.lock: gems are resolved at image build time, not frozen".into(),
                );
            }
        }

        let mut df = format!("FROM {base}\n");
        df.push_str(
            "RUN apt-get update \\\n \
             && apt-get install -y --no-install-recommends build-essential git libyaml-dev pkg-config \\\n \
             && rm -rf /var/lib/apt/lists/*\n",
        );
        df.push_str(&format!(
            "RUN useradd --create-home --uid {JOB_UID} --home-dir {HOME} --shell /bin/sh app \\\n \
             && mkdir -p /opt/deps {BUNDLE_PATH} /workspace \\\n \
             && chown -R app:app /opt/deps {BUNDLE_PATH} /workspace\n"
        ));
        df.push_str(&format!(
            "ENV HOME={HOME} \\\n    GEM_HOME={BUNDLE_PATH} \\\n    BUNDLE_PATH={BUNDLE_PATH} \\\n    BUNDLE_APP_CONFIG={BUNDLE_PATH} \\\n    \
             PATH={BUNDLE_PATH}/bin:$PATH\n"
        ));
        df.push_str("USER app\n");
        let bundler_quoted = bundler.as_deref().map(quote);
        if let Some(v) = &bundler_quoted {
            df.push_str(&format!("RUN gem install bundler -v {v} --no-document\n"));
        }
        if install_in_image {
            // What follows the marker can also run as root on top of the
            // repository's own Ruby image: it names no user, and the bundler
            // version is installed there only when missing.
            df.push_str(DEPS_MARKER);
            df.push('\n');
            if let Some(v) = &bundler_quoted {
                df.push_str(&format!(
                    "RUN gem list -i bundler -v {v} >/dev/null || gem install bundler -v {v} --no-document\n"
                ));
            }
            let mut files = vec!["Gemfile"];
            if has_lock {
                files.push("Gemfile.lock");
            }
            if copy_ruby_version {
                files.push(".ruby-version");
            }
            df.push_str("WORKDIR /opt/deps\n");
            df.push_str(&format!(
                "COPY --chown={JOB_UID}:{JOB_GID} {} ./\n",
                files.join(" ")
            ));
            let frozen = if has_lock { "BUNDLE_FROZEN=true " } else { "" };
            df.push_str(&format!("RUN {frozen}bundle install --jobs 4 --retry 3\n"));
        }
        df.push_str("WORKDIR /workspace\n");

        // Steps.
        let mut fast = Vec::new();
        let mut rubocop_skipped = false;
        let rakefile = repo.read_text("Rakefile").ok().flatten();
        let test_task = rakefile
            .as_ref()
            .is_some_and(|r| rakefile_has_test_task(&r.text));
        if gemfile.is_none() {
            notes.push("no Gemfile: nothing is installed; steps use only the Ruby of the image and its default gems (rake, minitest, test-unit), without Bundler".into());
        }
        if repo.exists(".rubocop.yml") && gemfile.is_none() {
            notes.push(".rubocop.yml ignored: without a Gemfile rubocop is not installed".into());
        } else if repo.exists(".rubocop.yml") {
            // Validation judges the code as it is: never autocorrect.
            let autocorrects = match repo.read_text(".rubocop") {
                Ok(file) => file
                    .as_ref()
                    .and_then(|f| rubocop_autocorrects(&f.text))
                    .map(|o| format!("`.rubocop` passes `{o}` (autocorrect) to every run")),
                Err(e) => Some(format!(
                    "`.rubocop` (options for every run) could not be read ({})",
                    e.describe()
                )),
            };
            match autocorrects {
                None => fast.push(Step::new("rubocop", RUBOCOP).with_report("rubocop-json", None)),
                Some(why) => {
                    rubocop_skipped = true;
                    notes.push(format!(
                        "rubocop not run: {why}, and rubocop has no option that turns autocorrect off"
                    ));
                }
            }
        } else {
            notes.push("no .rubocop.yml: rubocop not run".into());
        }
        if fast.is_empty() {
            fast.push(Step::new("syntax", SYNTAX_CHECK));
            notes.push(if rubocop_skipped {
                "the fast tier runs `ruby -wc` (syntax only) on the project's .rb files instead of rubocop".into()
            } else {
                "the fast tier runs `ruby -wc` (syntax only) on the project's .rb files, chosen because the project declares no linter (.rubocop.yml)".into()
            });
        }
        let rspec = gemfile.is_some()
            && (gemfile.as_ref().is_some_and(|g| g.has_rspec)
                || lock.as_ref().is_some_and(|l| l.rspec)
                || repo.exists("spec"));
        let junit = lock.as_ref().is_some_and(|l| l.junit_formatter);
        let mut full = Vec::new();
        if rspec && junit {
            full.push(
                Step::new(
                    "rspec",
                    &format!("mkdir -p .slipway && bundle exec rspec --format progress --format RspecJunitFormatter --out {JUNIT}"),
                )
                .with_report("junit-xml", Some(JUNIT)),
            );
        } else if rspec {
            full.push(Step::new("rspec", "bundle exec rspec"));
            notes.push(
                "rspec_junit_formatter is not in Gemfile.lock: rspec runs without a JUnit report"
                    .into(),
            );
        } else if gemfile.is_some() && repo.exists("Rakefile") {
            full.push(Step::new("test", "bundle exec rake test"));
        } else if test_task {
            full.push(Step::new("test", "rake test"));
            notes.push("Rakefile defines a `test` task: the full tier runs `rake test` (rake ships with Ruby; no Gemfile, so no Bundler)".into());
        } else if repo.exists("test") {
            full.push(Step::new("test", PLAIN_TEST));
            notes.push("no Gemfile and no Rakefile `test` task: the full tier loads test/**/*_test.rb and test/**/test_*.rb with plain ruby (-Ilib -Itest)".into());
        } else {
            if gemfile.is_none() && repo.exists("spec") {
                notes.push("spec/ ignored: without a Gemfile rspec is not installed".into());
            }
            notes.push("no spec/, rspec gem or Rakefile: no test step".into());
        }

        let package_manager = gemfile.as_ref().map(|_| PackageManager {
            name: "bundler".into(),
            version: bundler.clone(),
            lockfile: has_lock.then(|| "Gemfile.lock".to_owned()),
            source: Some(Evidence::new("Gemfile", None, "Bundler Gemfile")),
        });
        let mut env = vec![opt("CI", "true")];
        if has_lock && install_in_image {
            env.push(opt("BUNDLE_FROZEN", "true"));
        }

        Ok(Plan {
            base_image: base,
            image: ImageSource::Generated(df),
            toolchains: vec![toolchain],
            package_manager,
            setup,
            fast,
            full,
            cache: vec![CacheMount {
                id: "bundler".into(),
                path: format!("{BUNDLE_PATH}/cache"),
            }],
            env,
            notes,
        })
    }
}

export_ecosystem!(Ruby);

#[cfg(test)]
mod tests {
    use super::*;
    use slipway_plugin_sdk::testing;

    fn fixture(name: &str) -> String {
        format!("{}/tests/fixtures/{name}", env!("CARGO_MANIFEST_DIR"))
    }

    fn plan(name: &str) -> Plan {
        testing::plan::<Ruby>(fixture(name)).unwrap_or_else(|e| panic!("{name}: {}", e.describe()))
    }

    fn dockerfile(p: &Plan) -> &str {
        p.generated_dockerfile().expect("a generated Dockerfile")
    }

    #[test]
    fn detection_confidence() {
        let d = testing::detect::<Ruby>(fixture("rspec-junit"))
            .unwrap()
            .unwrap();
        assert_eq!(d.confidence, 90);
        assert_eq!(
            (d.evidence[0].file.as_str(), d.evidence[1].file.as_str()),
            ("Gemfile", "Gemfile.lock")
        );
        assert_eq!(
            testing::detect::<Ruby>(fixture("no-lock"))
                .unwrap()
                .unwrap()
                .confidence,
            80
        );
        let v = testing::detect::<Ruby>(fixture("version-only"))
            .unwrap()
            .unwrap();
        assert_eq!(
            (
                v.confidence,
                v.evidence[0].file.as_str(),
                v.evidence[0].note.as_str()
            ),
            (50, ".ruby-version", "ruby-3.2.2")
        );
        assert!(
            testing::detect::<Ruby>(fixture("not-ruby"))
                .unwrap()
                .is_none()
        );
    }

    #[test]
    fn ruby_version_pin_beats_gemfile_and_lock() {
        let p = plan("rspec-junit");
        let t = &p.toolchains[0];
        assert_eq!(
            (
                t.resolved.as_str(),
                t.hint.written_form.as_str(),
                t.hint.constraint.as_str()
            ),
            ("3.3", "ruby-3.3.0", "3.3.0")
        );
        assert_eq!(t.hint.source.as_ref().unwrap().file, ".ruby-version");
        let files: Vec<&str> = t
            .overruled
            .iter()
            .map(|o| o.hint.source.as_ref().unwrap().file.as_str())
            .collect();
        assert_eq!(files, vec!["Gemfile", "Gemfile.lock"]);
        assert_eq!(t.overruled[1].hint.constraint, "3.3.0");
        assert_eq!(t.overruled[1].reason, "a pin (.ruby-version) beats a range");
        assert_eq!(p.base_image, "ruby:3.3-slim");
        let df = dockerfile(&p);
        assert!(df.starts_with("FROM ruby:3.3-slim\n"), "{df}");
        assert!(
            df.contains("COPY --chown=1000:1000 Gemfile Gemfile.lock ./\n"),
            "{df}"
        );
        assert!(df.contains("RUN BUNDLE_FROZEN=true bundle install"), "{df}");
        assert!(
            df.contains("RUN gem install bundler -v '2.5.6' --no-document\n"),
            "{df}"
        );
        assert!(
            df.contains("useradd --create-home --uid 1000") && df.contains("USER app\n"),
            "{df}"
        );
        assert!(
            df.ends_with("WORKDIR /workspace\n") && !df.contains("--mount"),
            "{df}"
        );
        assert_eq!(p.setup[0].command, "bundle check");
        assert_eq!(
            p.fast[0].command,
            "RUBOCOP_OPTS= bundle exec rubocop --format json"
        );
        assert_eq!(p.fast[0].report.as_ref().unwrap().format, "rubocop-json");
        assert_eq!(
            p.full[0].command,
            "mkdir -p .slipway && bundle exec rspec --format progress --format RspecJunitFormatter --out .slipway/junit.xml"
        );
        let r = p.full[0].report.as_ref().unwrap();
        assert_eq!(
            (r.format.as_str(), r.path.as_deref()),
            ("junit-xml", Some(".slipway/junit.xml"))
        );
        let pm = p.package_manager.as_ref().unwrap();
        assert_eq!(
            (
                pm.name.as_str(),
                pm.version.as_deref(),
                pm.lockfile.as_deref()
            ),
            ("bundler", Some("2.5.6"), Some("Gemfile.lock"))
        );
        assert_eq!(p.cache[0].path, "/usr/local/bundle/cache");
        assert!(p.env.iter().any(|e| e.name == "CI" && e.value == "true"));
    }

    #[test]
    fn gemfile_range_and_rake_test() {
        let p = plan("rake");
        let t = &p.toolchains[0];
        assert_eq!(
            (t.resolved.as_str(), t.hint.kind, t.hint.constraint.as_str()),
            ("3.4", ConstraintKind::Range, "~> 3.1")
        );
        assert_eq!(t.hint.source.as_ref().unwrap().line, Some(3));
        assert_eq!(
            t.overruled[0].hint.source.as_ref().unwrap().file,
            "Gemfile.lock"
        );
        assert!(
            t.overruled[0]
                .reason
                .contains("conflicts: 3.4 does not satisfy `3.1.4p223`"),
            "{:?}",
            t.overruled
        );
        assert_eq!(p.full[0].command, "bundle exec rake test");
        // No .rubocop.yml: the syntax check stands in.
        assert_eq!(p.fast.len(), 1);
        assert_eq!(p.fast[0].name, "syntax");
    }

    #[test]
    fn lock_ruby_version_when_gemfile_has_none() {
        let p = plan("lock-only-ruby");
        let t = &p.toolchains[0];
        assert_eq!(
            (
                t.resolved.as_str(),
                t.hint.constraint.as_str(),
                t.hint.written_form.as_str()
            ),
            ("3.2", "3.2.2", "3.2.2p53")
        );
        assert_eq!(p.full[0].command, "bundle exec rspec");
        assert!(
            p.notes
                .iter()
                .any(|n| n.contains("rspec_junit_formatter is not in Gemfile.lock")),
            "{:?}",
            p.notes
        );
    }

    #[test]
    fn mise_and_tool_versions_pins() {
        let p = plan("mise");
        let t = &p.toolchains[0];
        assert_eq!(
            (
                t.resolved.as_str(),
                t.hint.source.as_ref().unwrap().file.as_str()
            ),
            ("3.1", "mise.toml")
        );
        let files: Vec<&str> = t
            .overruled
            .iter()
            .map(|o| o.hint.source.as_ref().unwrap().file.as_str())
            .collect();
        assert_eq!(files, vec![".tool-versions", ".ruby-version", "Gemfile"]);
    }

    #[test]
    fn ruby_file_directive_uses_ruby_version() {
        let p = plan("ruby-file");
        let t = &p.toolchains[0];
        assert_eq!(
            (
                t.resolved.as_str(),
                t.hint.source.as_ref().unwrap().file.as_str()
            ),
            ("3.2", ".ruby-version")
        );
        assert!(t.overruled.is_empty());
        assert!(
            p.notes.iter().any(|n| n.contains("reads .ruby-version")),
            "{:?}",
            p.notes
        );
        assert!(
            dockerfile(&p)
                .contains("COPY --chown=1000:1000 Gemfile Gemfile.lock .ruby-version ./\n")
        );
    }

    #[test]
    fn no_lock_and_default() {
        let p = plan("no-lock");
        let t = &p.toolchains[0];
        assert_eq!(
            (t.resolved.as_str(), t.hint.kind),
            ("3.4", ConstraintKind::Default)
        );
        let df = dockerfile(&p);
        assert!(
            df.contains("COPY --chown=1000:1000 Gemfile ./\nRUN bundle install"),
            "{df}"
        );
        assert!(
            p.notes.iter().any(|n| n.starts_with("no Gemfile.lock")),
            "{:?}",
            p.notes
        );
        assert_eq!(p.package_manager.as_ref().unwrap().lockfile, None);
        assert!(p.full.is_empty());
    }

    #[test]
    fn gemspec_installs_in_setup() {
        let p = plan("gemspec");
        assert_eq!(p.setup[0].command, "bundle install");
        assert!(!dockerfile(&p).contains("COPY"));
        assert!(
            p.notes.iter().any(|n| n.contains("`gemspec`")),
            "{:?}",
            p.notes
        );
        // spec/ exists: rspec runs.
        assert_eq!(p.full[0].command, "bundle exec rspec");
    }

    #[test]
    fn bad_inputs() {
        let e = testing::plan::<Ruby>(fixture("bad-version"))
            .unwrap_err()
            .describe();
        assert!(
            e.starts_with(
                "malformed input: .ruby-version:1: cannot read version constraint `banana`"
            ),
            "{e}"
        );
        let e = testing::plan::<Ruby>(fixture("too-new"))
            .unwrap_err()
            .describe();
        assert!(
            e.contains("Gemfile: no ruby release line satisfies `>= 4.0`"),
            "{e}"
        );
        // A binary Gemfile.lock is noted, not a panic.
        let p = plan("binary-lock");
        assert!(
            p.notes.iter().any(|n| n
                .starts_with("Gemfile.lock ignored: malformed input: Gemfile.lock: is not UTF-8")),
            "{:?}",
            p.notes
        );
    }

    fn scratch(name: &str) -> std::path::PathBuf {
        let dir = std::env::temp_dir().join(format!("slipway-ruby-{name}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(dir.join("lib")).unwrap();
        std::fs::create_dir_all(dir.join("test")).unwrap();
        std::fs::write(dir.join(".ruby-version"), "3.1.2\n").unwrap();
        std::fs::write(dir.join("lib/a.rb"), "module A; end\n").unwrap();
        std::fs::write(dir.join("test/a_test.rb"), "require \"minitest/autorun\"\n").unwrap();
        dir
    }

    #[test]
    fn without_gemfile_steps_need_no_bundler_and_no_network() {
        let dir = scratch("rake");
        std::fs::write(
            dir.join("Rakefile"),
            "require \"rake/testtask\"\n\nRake::TestTask.new(:test) do |t|\n  t.libs << \"lib\"\nend\n",
        )
        .unwrap();
        let p = testing::plan::<Ruby>(&dir).unwrap();
        assert_eq!(p.base_image, "ruby:3.1-slim");
        assert!(p.setup.is_empty(), "{:?}", p.setup);
        assert!(p.package_manager.is_none());
        let all: Vec<&str> = p
            .setup
            .iter()
            .chain(&p.fast)
            .chain(&p.full)
            .map(|s| s.command.as_str())
            .collect();
        assert!(all.iter().all(|c| !c.contains("bundle")), "{all:?}");
        assert_eq!(p.full[0].command, "rake test");
        let df = dockerfile(&p);
        assert!(
            !df.contains("bundle install") && !df.contains("COPY"),
            "{df}"
        );
        assert!(!df.contains(DEPS_MARKER), "{df}");
        assert!(
            p.notes.iter().any(|n| n.starts_with("no Gemfile")),
            "{:?}",
            p.notes
        );

        // No Rakefile test task: plain ruby loads the tests.
        std::fs::write(dir.join("Rakefile"), "task :default do\nend\n").unwrap();
        let p = testing::plan::<Ruby>(&dir).unwrap();
        assert_eq!(p.full[0].command, PLAIN_TEST);
        assert!(p.full[0].command.starts_with("ruby -w -Ilib -Itest -e "));
        let _ = std::fs::remove_dir_all(&dir);
    }

    #[test]
    fn no_linter_declared_runs_ruby_wc() {
        let dir = scratch("syntax");
        let p = testing::plan::<Ruby>(&dir).unwrap();
        assert_eq!(p.fast.len(), 1);
        assert_eq!(p.fast[0].name, "syntax");
        assert!(p.fast[0].command.contains("-name '*.rb'"));
        assert!(p.fast[0].command.contains("xargs -0 -r -n1 ruby -wc"));
        assert!(
            p.notes
                .iter()
                .any(|n| n.contains("chosen because the project declares no linter")),
            "{:?}",
            p.notes
        );
        // rubocop configured (with a Gemfile): rubocop, no syntax step.
        let p = plan("rspec-junit");
        assert_eq!(p.fast.len(), 1);
        assert_eq!(p.fast[0].name, "rubocop");
        let _ = std::fs::remove_dir_all(&dir);
    }

    /// rubocop never autocorrects: the step clears `RUBOCOP_OPTS`, and a
    /// `.rubocop` file that asks for autocorrect keeps rubocop from running.
    #[test]
    fn rubocop_never_autocorrects() {
        let dir = scratch("rubocop-autocorrect");
        std::fs::write(
            dir.join("Gemfile"),
            "source \"https://rubygems.org\"\ngem \"rubocop\"\n",
        )
        .unwrap();
        std::fs::write(dir.join(".rubocop.yml"), "AllCops:\n  NewCops: enable\n").unwrap();
        let p = testing::plan::<Ruby>(&dir).unwrap();
        assert_eq!(
            p.fast[0].command,
            "RUBOCOP_OPTS= bundle exec rubocop --format json"
        );
        assert_eq!(p.fast[0].report.as_ref().unwrap().format, "rubocop-json");

        // Options that autocorrect nothing keep rubocop.
        std::fs::write(
            dir.join(".rubocop"),
            "--format progress\n--safe -D --fail-level W\n",
        )
        .unwrap();
        let p = testing::plan::<Ruby>(&dir).unwrap();
        assert_eq!(p.fast[0].name, "rubocop");

        std::fs::write(
            dir.join(".rubocop"),
            "--display-cop-names\n--autocorrect-all\n",
        )
        .unwrap();
        let p = testing::plan::<Ruby>(&dir).unwrap();
        let _ = std::fs::remove_dir_all(&dir);
        assert_eq!(p.fast.len(), 1);
        assert_eq!(p.fast[0].name, "syntax");
        assert!(
            p.notes.iter().any(|n| n == "rubocop not run: `.rubocop` passes `--autocorrect-all` (autocorrect) to every run, and rubocop has no option that turns autocorrect off"),
            "{:?}",
            p.notes
        );
        assert!(
            p.notes.iter().any(|n| n.ends_with("instead of rubocop")),
            "{:?}",
            p.notes
        );
    }

    #[test]
    fn rubocop_autocorrect_options_are_recognised() {
        for text in [
            "-a",
            "-A",
            "-x",
            "-Da",
            "--autocorrect",
            "--auto-correct",
            "--autocorrect-all",
            "--auto_correct_all",
            "--safe-auto-correct",
            "--fix-layout",
            "--autoc",
            "--fix",
            "'-a'",
            "--format json\n-A",
        ] {
            assert!(rubocop_autocorrects(text).is_some(), "{text}");
        }
        for text in [
            "",
            "--safe",
            "-D -E -S -P",
            "-fa",
            "-c config/a.yml",
            "--format json --out x --fail-level A",
            "--auto-gen-config",
            "--display-only-correctable",
            "--require rubocop-rails",
        ] {
            assert_eq!(rubocop_autocorrects(text), None, "{text}");
        }
    }

    #[test]
    fn install_section_after_the_marker_is_self_contained() {
        let p = plan("rspec-junit");
        let df = dockerfile(&p);
        assert!(df.contains("useradd") && df.contains("\nUSER app"), "{df}");
        let after = testing::layerable_section(df, "app");
        assert!(after.contains("RUN gem list -i bundler -v '2.5.6' >/dev/null || gem install bundler -v '2.5.6' --no-document\n"), "{df}");
        assert!(after.contains("WORKDIR /opt/deps\nCOPY --chown=1000:1000 Gemfile Gemfile.lock ./\nRUN BUNDLE_FROZEN=true bundle install"), "{df}");
        assert!(after.ends_with("WORKDIR /workspace\n"), "{df}");
    }

    #[test]
    fn example_ruby_app_runs_offline() {
        let dir = format!("{}/../../examples/ruby-app", env!("CARGO_MANIFEST_DIR"));
        if std::path::Path::new(&dir).exists() {
            let p = testing::plan::<Ruby>(&dir).unwrap_or_else(|e| panic!("{}", e.describe()));
            assert_eq!(p.base_image, "ruby:3.1-slim");
            assert!(p.setup.is_empty(), "{:?}", p.setup);
            assert_eq!(p.full[0].command, "rake test");
            assert!(!dockerfile(&p).contains("bundle install"));
            println!(
                "{}\n{:?}\n{:?}\n{:?}",
                dockerfile(&p),
                p.fast,
                p.full,
                p.notes
            );
        }
    }

    #[test]
    fn helpers() {
        assert_eq!(
            string_literals(r#""~> 3.2", engine: "jruby""#),
            vec!["~> 3.2"]
        );
        assert_eq!(
            string_literals(r#"'>= 3.1', '< 3.4'"#),
            vec![">= 3.1", "< 3.4"]
        );
        assert_eq!(strip_patchlevel("3.3.0p0"), "3.3.0");
        assert_eq!(strip_patchlevel("3.3.0-preview1"), "3.3.0-preview1");
    }
}

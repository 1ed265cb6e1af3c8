//! Planning a repository: which ecosystem it is, and how to build and
//! validate it, entirely through the ecosystem plugins.
//!
//! Owns the choice among plugins (highest confidence, ties broken by the
//! configured order), the merge of a repository Dockerfile's image with the
//! best generated plan's steps, and the report `slipway plan` prints. It does
//! not read repository files itself: everything it knows came from plugins.

use std::path::Path;

use serde::Serialize;

use crate::plugins::bindings::{
    ConstraintKind, Detection, Evidence, ImageSource, OptionPair, Plan, PluginError, Toolchain,
};
use crate::plugins::quote::quote;
use crate::plugins::{CallError, Candidate, LoadError, Registry, World};

/// Why a repository could not be planned.
#[derive(Debug, thiserror::Error)]
pub enum PlanError {
    /// The path to plan is missing or not a directory (an input problem).
    #[error("{} is not a directory", .0.display())]
    NotADirectory(std::path::PathBuf),
    /// No ecosystem plugin recognised the repository (an input problem).
    #[error("no ecosystem detected in {repo}; looked for: {looked_for}")]
    NothingDetected {
        /// The repository's path on the host.
        repo: String,
        /// Every active ecosystem plugin with its trigger files,
        /// `;`-separated (e.g. `node (package.json); python (pyproject.toml)`).
        looked_for: String,
    },
    /// A problem the plugin reported (usually a hint file it could not
    /// understand: the user's to fix).
    #[error("{plugin}: {}", .error.describe())]
    Input {
        /// Name of the plugin that reported it.
        plugin: String,
        /// The plugin's error, with the file, line and hint it gave.
        error: PluginError,
    },
    /// A plugin call failed without a problem of the plugin's own (a limit
    /// hit, a trap, an invalid answer): not the repository's problem.
    #[error(transparent)]
    Plugin(#[from] CallError),
    /// An ecosystem plugin needed for the plan could not be loaded.
    #[error("plugin {plugin} cannot be loaded: {error}")]
    Load {
        /// `name@version@sha256` of the plugin.
        plugin: String,
        /// Why it could not be loaded.
        error: LoadError,
    },
}

impl PlanError {
    /// Whether the problem is in the repository (exit code 2) rather than in
    /// Slipway or a plugin.
    pub fn is_input_problem(&self) -> bool {
        match self {
            PlanError::NotADirectory(_) | PlanError::NothingDetected { .. } => true,
            // A plugin's own bug is not the repository's problem.
            PlanError::Input { error, .. } => !matches!(error, PluginError::Internal(_)),
            PlanError::Plugin(_) | PlanError::Load { .. } => false,
        }
    }
}

/// One ecosystem that matched.
#[derive(Debug, Clone, Serialize)]
pub struct Match {
    /// Name of the ecosystem plugin that matched (e.g. `node`).
    pub ecosystem: String,
    /// `name@version@sha256` of the plugin.
    pub plugin: String,
    /// How sure the plugin is, 0..=100 (100: certain, below 50: a weak hint).
    pub confidence: u8,
    /// The files (and lines) that led the plugin to match.
    pub evidence: Vec<Evidence>,
}

/// What `slipway plan` reports (and job records keep). A wire type: its
/// field names are the `plan --json` contract.
#[derive(Debug, Clone, Serialize)]
pub struct PlanReport {
    /// Name of the winning ecosystem plugin (e.g. `node`, `python`).
    pub ecosystem: String,
    /// `name@version@sha256` of the winning plugin (just the name for a plugin
    /// without a manifest).
    pub plugin: String,
    /// The winner's detection confidence, 0..=100.
    pub confidence: u8,
    /// The files (and lines) that led the winner to match.
    pub evidence: Vec<Evidence>,
    /// The image the winner's Dockerfile starts from (e.g. `node:18-slim`).
    pub base_image: String,
    /// The generated Dockerfile; `null` when the repository brings its own.
    pub dockerfile: Option<String>,
    /// The repository's own Dockerfile (relative path), when it brings one.
    pub dockerfile_path: Option<String>,
    /// Tools the image pins, one version each, with the hints that decided it.
    pub toolchain: Vec<ToolchainReport>,
    /// The package manager that installs dependencies; `null` when the plugin
    /// names none.
    pub package_manager: Option<crate::plugins::bindings::PackageManager>,
    /// Commands run once in a fresh job container before validation.
    pub setup: Vec<Step>,
    /// The steps of each validation tier.
    pub validation: Validation,
    /// Cache volumes mounted into job containers.
    pub cache: Vec<crate::plugins::bindings::CacheMount>,
    /// Environment of job containers (e.g. `CI=true`).
    pub env: Vec<OptionPair>,
    /// Remarks for the user: what the plugins ignored or skipped, and why, and
    /// the tiers that check nothing.
    pub notes: Vec<String>,
    /// The plugin whose steps are used when the image comes from the
    /// repository's Dockerfile.
    pub steps_from: Option<String>,
    /// `name@version@sha256` of every third-party plugin whose answer this
    /// plan uses (the steps, the image): empty when all are bundled.
    pub third_party: Vec<String>,
    /// With a repository's Dockerfile: the dependency installation of the
    /// plugin the steps come from, built on top of the repository's image
    /// so those steps find their tools (see [`DEPS_MARKER`]).
    pub deps_layer: Option<String>,
    /// The other ecosystems that matched, best first.
    pub alternatives: Vec<Match>,
}

/// One command run in the job container, as the engine keeps it: the
/// plugin's `step` record, converted once when the plan is made, so the
/// runner, the store and container labels never hold generated WIT types.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, serde::Deserialize)]
pub struct Step {
    /// Short name shown in logs and results (`lint`, `test`).
    pub name: String,
    /// A shell command, run with `sh -c` in the repository root.
    pub command: String,
    /// The report the command writes, if any.
    pub report: Option<StepReport>,
}

/// The report a step produces: its format (read by the validator plugin
/// of that format) and its file (`None`: the step's stdout).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, serde::Deserialize)]
pub struct StepReport {
    /// The report format, which picks the validator plugin (e.g. `junit-xml`).
    pub format: String,
    /// The report file, relative to the repository root; `None`: the step's
    /// stdout.
    pub path: Option<String>,
}

impl From<&crate::plugins::bindings::Step> for Step {
    fn from(s: &crate::plugins::bindings::Step) -> Step {
        Step {
            name: s.name.clone(),
            command: s.command.clone(),
            report: s.report.as_ref().map(|r| StepReport {
                format: r.format.clone(),
                path: r.path.clone(),
            }),
        }
    }
}

/// The engine's copies of a plugin's steps.
fn steps(list: &[crate::plugins::bindings::Step]) -> Vec<Step> {
    list.iter().map(Step::from).collect()
}

/// The validation steps of a plan, by tier: a `fast` job runs `fast`, a `full`
/// job runs `fast` then `full`.
#[derive(Debug, Clone, Serialize)]
pub struct Validation {
    /// The fast tier: lint, typecheck.
    pub fast: Vec<Step>,
    /// The full tier: tests.
    pub full: Vec<Step>,
}

/// A toolchain flattened for people and tools: the version, the constraint
/// it came from, and the file.
#[derive(Debug, Clone, Serialize)]
pub struct ToolchainReport {
    /// The tool (e.g. `node`, `python`, `rust`).
    pub tool: String,
    /// The version the image pins (e.g. `18`, `3.11`).
    pub version: String,
    /// The normalised constraint that won (e.g. `18.17.0`, `>=3.10`, `lts`).
    pub constraint: String,
    /// The constraint exactly as the file writes it (e.g. `v18.17.0`).
    pub written_form: String,
    /// Strength of the winning constraint: `pin`, `range` or `default`.
    pub kind: &'static str,
    /// `file` or `file:line`; `null` for a default.
    pub source: Option<String>,
    /// Hints for the same tool that lost to the winning one, with the reason.
    pub overruled: Vec<Overruled>,
}

/// A version hint that lost to the one a toolchain was resolved from.
#[derive(Debug, Clone, Serialize)]
pub struct Overruled {
    /// The normalised constraint (e.g. `>=16`).
    pub constraint: String,
    /// The constraint exactly as the file writes it.
    pub written_form: String,
    /// `file` or `file:line` the hint came from; `null` for a default.
    pub source: Option<String>,
    /// Why it lost, as the plugin words it.
    pub reason: String,
}

impl PlanReport {
    /// What the plan decided, each with the file it came from (what a job
    /// record keeps of its plan).
    pub fn facts(&self) -> Vec<crate::job::PlanFact> {
        use crate::job::PlanFact;
        let mut out = vec![PlanFact {
            what: "ecosystem".into(),
            value: format!("{} ({}% sure)", self.ecosystem, self.confidence),
            source: place(&self.evidence.first().cloned()),
            note: self.evidence.first().map(|e| e.note.clone()),
        }];
        out.extend(self.toolchain.iter().map(|t| PlanFact {
            what: t.tool.clone(),
            value: t.version.clone(),
            source: t.source.clone(),
            note: Some(format!("{} {}", t.kind, t.written_form)),
        }));
        if let Some(pm) = &self.package_manager {
            out.push(PlanFact {
                what: "package manager".into(),
                value: match &pm.version {
                    Some(v) => format!("{} {v}", pm.name),
                    None => pm.name.clone(),
                },
                source: place(&pm.source),
                note: pm
                    .lockfile
                    .as_ref()
                    .map(|l| format!("frozen install from {l}")),
            });
        }
        out.push(PlanFact {
            what: "image".into(),
            value: self.base_image.clone(),
            source: self.dockerfile_path.clone(),
            note: Some(if self.dockerfile_path.is_some() {
                "the repository's own Dockerfile".into()
            } else {
                "a generated Dockerfile".into()
            }),
        });
        out
    }
}

fn place(e: &Option<Evidence>) -> Option<String> {
    e.as_ref().map(|e| match e.line {
        Some(line) => format!("{}:{line}", e.file),
        None => e.file.clone(),
    })
}

fn kind_name(k: ConstraintKind) -> &'static str {
    match k {
        ConstraintKind::Pin => "pin",
        ConstraintKind::Range => "range",
        ConstraintKind::Default => "default",
    }
}

impl From<&Toolchain> for ToolchainReport {
    fn from(t: &Toolchain) -> Self {
        ToolchainReport {
            tool: t.tool.clone(),
            version: t.resolved.clone(),
            constraint: t.hint.constraint.clone(),
            written_form: t.hint.written_form.clone(),
            kind: kind_name(t.hint.kind),
            source: place(&t.hint.source),
            overruled: t
                .overruled
                .iter()
                .map(|o| Overruled {
                    constraint: o.hint.constraint.clone(),
                    written_form: o.hint.written_form.clone(),
                    source: place(&o.hint.source),
                    reason: o.reason.clone(),
                })
                .collect(),
        }
    }
}

/// The line of a generated Dockerfile after which its dependency
/// installation begins. What follows it runs as root on any image of the
/// same ecosystem, so it can be layered on a repository's own image.
pub const DEPS_MARKER: &str = "# slipway:deps";

/// The lines after [`DEPS_MARKER`], if the Dockerfile has it.
pub fn deps_layer_of(dockerfile: &str) -> Option<String> {
    let (_, after) = dockerfile.split_once(&format!("{DEPS_MARKER}\n"))?;
    Some(after.to_owned()).filter(|a| !a.trim().is_empty())
}

/// Plan the repository at `repo` with the registry's ecosystem plugins.
/// `order` breaks ties in confidence (earlier wins).
pub fn plan_repository(
    registry: &Registry,
    order: &[String],
    repo: &Path,
    options: &[OptionPair],
) -> Result<PlanReport, PlanError> {
    if !repo.is_dir() {
        return Err(PlanError::NotADirectory(repo.to_path_buf()));
    }
    let sandbox = registry.sandbox();
    let mut matches: Vec<(&Candidate, Detection)> = Vec::new();
    // Notes on third-party plugins that were passed over, for the report.
    let mut skipped: Vec<String> = Vec::new();
    let mut looked_for = Vec::new();
    for candidate in registry.active(World::Ecosystem) {
        let files = candidate
            .manifest
            .as_ref()
            .map(|m| m.detect_files.as_slice())
            .unwrap_or_default();
        looked_for.push(if files.is_empty() {
            candidate.name.clone()
        } else {
            format!("{} ({})", candidate.name, files.join(", "))
        });
        // Skip plugins whose trigger files are all absent, without instantiating them.
        if !files.is_empty()
            && !files
                .iter()
                .any(|f| repo.join(f).symlink_metadata().is_ok())
        {
            continue;
        }
        // A third-party plugin that cannot load or fails `detect` is
        // skipped with a note: it must not break planning for everyone.
        let prepared = match candidate.prepare(sandbox) {
            Ok(p) => p,
            Err(error) if candidate.is_third_party() => {
                skipped.push(format!(
                    "third-party plugin {} skipped: it cannot be loaded: {}",
                    candidate.name,
                    quote(&error.to_string())
                ));
                continue;
            }
            Err(error) => {
                return Err(PlanError::Load {
                    plugin: candidate.full_id(),
                    error,
                });
            }
        };
        match sandbox.detect(&prepared, repo, options) {
            Ok(Some(d)) => matches.push((candidate, d)),
            Ok(None) => {}
            Err(e) if candidate.is_third_party() => skipped.push(format!(
                "third-party plugin {} skipped: its detect failed: {}",
                candidate.name,
                quote(&e.to_string())
            )),
            Err(CallError::Reported { error, .. }) => {
                return Err(PlanError::Input {
                    plugin: candidate.name.clone(),
                    error,
                });
            }
            Err(e) => return Err(e.into()),
        }
    }
    let rank = |name: &str| order.iter().position(|o| o == name).unwrap_or(order.len());
    // First-party plugins (and third-party ones the configuration prefers)
    // outrank the others whatever confidence those claim.
    let trusted = |c: &Candidate| registry.ranks_as_first_party(c);
    matches.sort_by(|(a, da), (b, db)| {
        trusted(b)
            .cmp(&trusted(a))
            .then_with(|| db.confidence.cmp(&da.confidence))
            .then_with(|| rank(&a.name).cmp(&rank(&b.name)))
            .then_with(|| a.name.cmp(&b.name))
    });
    if let Some((best, _)) = matches.first()
        && trusted(best)
    {
        for (c, d) in matches.iter().filter(|(c, _)| !trusted(c)) {
            skipped.push(format!(
                "third-party plugin {} (confidence {}) ranks below the bundled plugins that matched; list it in `plugins.prefer` to let it win",
                c.name, d.confidence
            ));
        }
    }
    if matches.is_empty() {
        return Err(PlanError::NothingDetected {
            repo: repo.display().to_string(),
            looked_for: looked_for.join("; "),
        });
    }
    let plan_of = |candidate: &Candidate| -> Result<Plan, PlanError> {
        let prepared = candidate
            .prepare(sandbox)
            .map_err(|error| PlanError::Load {
                plugin: candidate.full_id(),
                error,
            })?;
        sandbox.plan(&prepared, repo, options).map_err(|e| match e {
            CallError::Reported { error, .. } => PlanError::Input {
                plugin: candidate.name.clone(),
                error,
            },
            other => other.into(),
        })
    };
    // A third-party winner whose `plan` fails gives way to the next match.
    let mut chosen = None;
    for (i, (candidate, _)) in matches.iter().enumerate() {
        match plan_of(candidate) {
            Ok(plan) => {
                chosen = Some((i, plan));
                break;
            }
            Err(e) if candidate.is_third_party() && i + 1 < matches.len() => {
                skipped.push(format!(
                    "third-party plugin {} skipped: its plan failed: {}",
                    candidate.name,
                    quote(&e.to_string())
                ));
            }
            Err(e) => return Err(e),
        }
    }
    let (index, plan) = chosen.expect("the loop returns or chooses");
    let (winner, detection) = &matches[index];
    let mut steps_plugin_used: Option<&Candidate> = None;
    let mut report = PlanReport {
        ecosystem: winner.name.clone(),
        plugin: winner.full_id(),
        confidence: detection.confidence,
        evidence: detection.evidence.clone(),
        base_image: plan.base_image.clone(),
        dockerfile: None,
        dockerfile_path: None,
        toolchain: plan.toolchains.iter().map(ToolchainReport::from).collect(),
        package_manager: plan.package_manager.clone(),
        setup: steps(&plan.setup),
        validation: Validation {
            fast: steps(&plan.fast),
            full: steps(&plan.full),
        },
        cache: plan.cache.clone(),
        env: plan.env.clone(),
        notes: plan.notes.clone(),
        steps_from: None,
        third_party: Vec::new(),
        deps_layer: None,
        alternatives: matches[index + 1..]
            .iter()
            .map(|(c, d)| Match {
                ecosystem: c.name.clone(),
                plugin: c.full_id(),
                confidence: d.confidence,
                evidence: d.evidence.clone(),
            })
            .collect(),
    };
    match plan.image {
        ImageSource::Generated(text) => report.dockerfile = Some(text),
        ImageSource::Repository(path) => {
            report.dockerfile_path = Some(path);
            // The repository's Dockerfile decides the image only; steps come
            // from the best generated plan for the same repository.
            if let Some((steps_plugin, _)) = matches[index + 1..].first() {
                let steps = plan_of(steps_plugin)?;
                if let ImageSource::Generated(generated) = &steps.image {
                    steps_plugin_used = Some(*steps_plugin);
                    report.steps_from = Some(steps_plugin.full_id());
                    report.deps_layer = deps_layer_of(generated);
                    report.validation = Validation {
                        fast: self::steps(&steps.fast),
                        full: self::steps(&steps.full),
                    };
                    report.cache = steps.cache;
                    report.env = steps.env;
                    if report.deps_layer.is_some() {
                        // Its setup steps prepare what the layer installs.
                        report.setup = self::steps(&steps.setup);
                        report.notes.push(format!(
                            "dependencies of {} layered on the repository's image: the steps' tools are installed on top of it, as its generated image would have them",
                            steps_plugin.name
                        ));
                    } else if !steps.setup.is_empty() {
                        // Setup steps prepare the plugin's own generated image
                        // (e.g. link preinstalled dependencies); the
                        // repository's image has its own layout.
                        report.notes.push(format!(
                            "setup steps of {} not used: they prepare its generated image, not this Dockerfile's",
                            steps_plugin.name
                        ));
                    }
                }
            }
        }
    }
    report.third_party = [Some(*winner), steps_plugin_used]
        .into_iter()
        .flatten()
        .filter(|c| c.is_third_party())
        .map(Candidate::full_id)
        .collect();
    for id in &report.third_party {
        report
            .notes
            .push(format!("uses the third-party plugin {id}"));
    }
    report.notes.extend(skipped);
    for (tier, steps) in [
        ("fast", &report.validation.fast),
        ("full", &report.validation.full),
    ] {
        if steps.is_empty() {
            report.notes.push(empty_tier_note(tier));
        }
    }
    Ok(report)
}

/// What a plan, a job record and a validate result say of a tier with no
/// steps: running it checks nothing, which is not the same as passing.
pub fn empty_tier_note(tier: &str) -> String {
    format!("the {tier} tier has no steps: running it checks nothing")
}

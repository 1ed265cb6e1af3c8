//! `slipway plan <dir> [--json]`.

use std::fmt::Write as _;
use std::path::PathBuf;
use std::process::ExitCode;

use clap::Args;
use slipway::config::Config;
use slipway::plan::Step;
use slipway::plan::{PlanReport, plan_repository};
use slipway::plugins::bindings::OptionPair;

#[derive(Debug, Args)]
pub struct PlanArgs {
    /// The repository to plan (a local directory).
    pub dir: PathBuf,
    /// Print one JSON object instead of text.
    #[arg(long)]
    pub json: bool,
    /// Use this Dockerfile (relative to DIR) instead of looking for one.
    #[arg(long)]
    pub dockerfile: Option<String>,
}

pub fn run(args: PlanArgs, config: &Config) -> anyhow::Result<ExitCode> {
    let registry = super::registry_for(config, super::Calls::Few)?;
    let options: Vec<OptionPair> = args
        .dockerfile
        .iter()
        .map(|d| OptionPair {
            name: "dockerfile".into(),
            value: d.clone(),
        })
        .collect();
    let planned = plan_repository(&registry, &config.ecosystem_order, &args.dir, &options);
    // The process ends right after: unmapping every loaded plugin's code
    // would only slow the exit down.
    std::mem::forget(registry);
    match planned {
        Ok(report) => {
            if args.json {
                println!("{}", serde_json::to_string_pretty(&report)?);
            } else {
                print!("{}", human(&report));
            }
            Ok(ExitCode::SUCCESS)
        }
        Err(e) => {
            eprintln!("error: {e}");
            Ok(ExitCode::from(if e.is_input_problem() { 2 } else { 1 }))
        }
    }
}

fn steps(out: &mut String, label: &str, steps: &[Step]) {
    if steps.is_empty() {
        let none = if label == "setup:" {
            "(none)"
        } else {
            "(none: this tier checks nothing)"
        };
        let _ = writeln!(out, "{label:<17}{none}");
    }
    for (i, s) in steps.iter().enumerate() {
        let report = s
            .report
            .as_ref()
            .map(|r| {
                format!(
                    "  [report: {} {}]",
                    r.format,
                    r.path.as_deref().unwrap_or("on stdout")
                )
            })
            .unwrap_or_default();
        let _ = writeln!(
            out,
            "{:<17}{}: {}{report}",
            if i == 0 { label } else { "" },
            s.name,
            s.command
        );
    }
}

fn human(r: &PlanReport) -> String {
    let mut out = String::new();
    let _ = writeln!(
        out,
        "{:<17}{} (confidence {}, plugin {})",
        "ecosystem:",
        r.ecosystem,
        r.confidence,
        r.plugin
            .rsplit_once('@')
            .map(|(id, _)| id)
            .unwrap_or(&r.plugin)
    );
    for e in &r.evidence {
        let at = e.line.map(|l| format!(":{l}")).unwrap_or_default();
        let _ = writeln!(out, "{:<17}{}{at}  {}", "  evidence:", e.file, e.note);
    }
    for t in &r.toolchain {
        let from = t
            .source
            .as_deref()
            .map(|s| format!("from {s}"))
            .unwrap_or_else(|| "default".into());
        let _ = writeln!(
            out,
            "{:<17}{} {}  ({} `{}`, {from})",
            "toolchain:", t.tool, t.version, t.kind, t.written_form
        );
        for o in &t.overruled {
            let _ = writeln!(
                out,
                "{:<17}`{}` from {}: {}",
                "  overruled:",
                o.written_form,
                o.source.as_deref().unwrap_or("?"),
                o.reason
            );
        }
    }
    if let Some(pm) = &r.package_manager {
        let lock = pm
            .lockfile
            .as_deref()
            .map(|l| format!(", lockfile {l}"))
            .unwrap_or_else(|| ", no lockfile".into());
        let version = pm
            .version
            .as_deref()
            .map(|v| format!("@{v}"))
            .unwrap_or_default();
        let _ = writeln!(out, "{:<17}{}{version}{lock}", "package manager:", pm.name);
    }
    let _ = writeln!(out, "{:<17}{}", "base image:", r.base_image);
    if let Some(path) = &r.dockerfile_path {
        let _ = writeln!(out, "{:<17}the repository's own {path}", "image:");
    }
    if let Some(layer) = &r.deps_layer {
        let _ = writeln!(
            out,
            "{:<17}{} line(s) of dependency installation on top of it",
            "layered:",
            layer.lines().count()
        );
    }
    steps(&mut out, "setup:", &r.setup);
    steps(&mut out, "fast:", &r.validation.fast);
    steps(&mut out, "full:", &r.validation.full);
    for id in &r.third_party {
        let _ = writeln!(
            out,
            "{:<17}{}",
            "third-party:",
            id.rsplit_once('@').map(|(id, _)| id).unwrap_or(id)
        );
    }
    if let Some(from) = &r.steps_from {
        let _ = writeln!(
            out,
            "{:<17}{}",
            "steps from:",
            from.rsplit_once('@').map(|(id, _)| id).unwrap_or(from)
        );
    }
    for c in &r.cache {
        let _ = writeln!(out, "{:<17}{} -> {}", "cache:", c.id, c.path);
    }
    for a in &r.alternatives {
        let _ = writeln!(
            out,
            "{:<17}{} (confidence {})",
            "alternative:", a.ecosystem, a.confidence
        );
    }
    for n in &r.notes {
        let _ = writeln!(out, "{:<17}{n}", "note:");
    }
    if let Some(dockerfile) = &r.dockerfile {
        let _ = writeln!(out, "\n--- generated Dockerfile\n{}", dockerfile.trim_end());
    }
    out
}

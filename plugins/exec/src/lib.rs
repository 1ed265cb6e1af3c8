//! `exec` readiness: ready once a shell command run inside the service
//! container exits 0.

use slipway_plugin_sdk::readiness::*;
use slipway_plugin_sdk::{export_readiness, malformed, unsupported};

pub struct Exec;

impl Readiness for Exec {
    fn probe(service: &Service) -> Result<Probe, PluginError> {
        let command = service.option("command").ok_or_else(|| {
            unsupported(
                None,
                format!(
                    "service `{}` uses exec readiness without a command",
                    service.name
                ),
                Some(
                    "set readiness.options.command to a shell command that exits 0 once the \
                     service is ready, e.g. `curl -fsS http://127.0.0.1:8080/health`",
                ),
            )
        })?;
        if command.trim().is_empty() {
            return Err(malformed(
                &option_path(service, "command"),
                None,
                "the command is empty",
                None,
            ));
        }
        probe_with(
            service,
            ProbeAction::Exec(vec!["sh".into(), "-c".into(), command.to_owned()]),
            Timing {
                period_ms: 500,
                timeout_ms: 5000,
                success_threshold: 1,
                failure_threshold: 3,
                startup_deadline_ms: 60_000,
            },
        )
    }

    fn judge(_service: &Service, output: &ProbeOutput) -> Verdict {
        let detail = said(output, 500);
        let what = match output.exit_code {
            Some(0) => return Verdict::Ready,
            Some(code) => format!("command exited with {code}"),
            None => "command did not finish".to_owned(),
        };
        Verdict::NotReady(if detail.is_empty() {
            what
        } else {
            format!("{what}: {detail}")
        })
    }
}

export_readiness!(Exec);

#[cfg(test)]
mod tests {
    use super::*;
    use slipway_plugin_sdk::testing::{judge, not_ready, probe_output as output, service};

    #[test]
    fn probes_sh_c_command() {
        let s = service(&[], vec![], &[("command", "mysqladmin ping -h 127.0.0.1")]);
        let p = Exec::probe(&s).unwrap();
        assert!(matches!(
            &p.action,
            ProbeAction::Exec(argv) if argv == &["sh", "-c", "mysqladmin ping -h 127.0.0.1"]
        ));
        assert_eq!((p.period_ms, p.timeout_ms), (500, 5000));
    }

    #[test]
    fn missing_or_empty_command() {
        let e = Exec::probe(&service(&[], vec![], &[]))
            .unwrap_err()
            .describe();
        assert!(
            e.starts_with("unsupported:")
                && e.contains("without a command")
                && e.contains("readiness.options.command"),
            "{e}"
        );
        let e = Exec::probe(&service(&[], vec![], &[("command", "  ")]))
            .unwrap_err()
            .describe();
        assert!(
            e.contains("services.svc.readiness.options.command: the command is empty"),
            "{e}"
        );
    }

    #[test]
    fn judges_exit_code_with_output_tail() {
        let s = service(&[], vec![], &[("command", "check")]);
        assert!(matches!(
            judge::<Exec>(&s, &output(Some(0), "fine", "")),
            Verdict::Ready
        ));
        let m = not_ready(judge::<Exec>(
            &s,
            &output(Some(1), "stdout text", "  boom \n"),
        ));
        assert_eq!(m, "command exited with 1: boom");
        let m = not_ready(judge::<Exec>(&s, &output(Some(2), " only stdout\n", "")));
        assert_eq!(m, "command exited with 2: only stdout");
        let m = not_ready(judge::<Exec>(&s, &output(Some(3), "", "")));
        assert_eq!(m, "command exited with 3");
        let m = not_ready(judge::<Exec>(&s, &output(None, "", "")));
        assert_eq!(m, "command did not finish");
        let long = format!("start{}end", "x".repeat(2000));
        let m = not_ready(judge::<Exec>(&s, &output(Some(1), "", &long)));
        let detail = m.strip_prefix("command exited with 1: ").unwrap();
        assert!(
            detail.chars().count() <= 500 && detail.ends_with("end") && detail.starts_with('…'),
            "{m}"
        );
    }
}

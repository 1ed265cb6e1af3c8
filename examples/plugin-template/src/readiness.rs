//! `{{name}}`: a readiness plugin that runs a command in the service
//! container (option `command`, default `true`) until it exits 0.

use slipway_plugin_sdk::export_readiness;
use slipway_plugin_sdk::readiness::*;

pub struct Plugin;

impl Readiness for Plugin {
    fn probe(service: &Service) -> Result<Probe, PluginError> {
        let command = service.option("command").unwrap_or("true");
        Ok(Probe {
            action: ProbeAction::Exec(vec!["sh".into(), "-c".into(), command.into()]),
            period_ms: 500,
            timeout_ms: 2000,
            success_threshold: 1,
            failure_threshold: 3,
            startup_deadline_ms: 60_000,
        })
    }

    fn judge(_service: &Service, output: &ProbeOutput) -> Verdict {
        match output.exit_code {
            Some(0) => Verdict::Ready,
            code => Verdict::NotReady(format!("command exited with {code:?}: {}", output.stderr.trim())),
        }
    }
}

export_readiness!(Plugin);

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn exit_zero_is_ready() {
        let service = Service { name: "s".into(), image: "i".into(), env: vec![], ports: vec![], options: vec![] };
        let out = ProbeOutput { exit_code: Some(0), stdout: String::new(), stderr: String::new(), connected: false, http_status: None, elapsed_ms: 1 };
        assert!(matches!(Plugin::judge(&service, &out), Verdict::Ready));
    }
}

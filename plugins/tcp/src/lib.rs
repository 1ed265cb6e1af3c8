//! `tcp` readiness: a service is ready once it accepts a TCP connection.

use slipway_plugin_sdk::readiness::*;
use slipway_plugin_sdk::{export_readiness, unsupported};

pub struct Tcp;

impl Readiness for Tcp {
    fn probe(service: &Service) -> Result<Probe, PluginError> {
        let port = match service.option("port") {
            Some(_) => number::<u16>(service, "port", 0)?,
            None => *service.ports.first().ok_or_else(|| {
                unsupported(
                    None,
                    format!("service `{}` declares no port to probe", service.name),
                    Some("add `ports: [<port>]` to the service or set readiness.options.port"),
                )
            })?,
        };
        Ok(Probe {
            action: ProbeAction::Tcp(port),
            period_ms: number(service, "period_ms", 250)?,
            timeout_ms: number(service, "timeout_ms", 1000)?,
            success_threshold: 1,
            failure_threshold: 3,
            startup_deadline_ms: number(service, "startup_deadline_ms", 60_000)?,
        })
    }

    fn judge(_service: &Service, output: &ProbeOutput) -> Verdict {
        if output.connected {
            Verdict::Ready
        } else {
            Verdict::NotReady(format!(
                "connection refused or timed out after {} ms",
                output.elapsed_ms
            ))
        }
    }
}

export_readiness!(Tcp);

#[cfg(test)]
mod tests {
    use super::*;

    fn service(ports: Vec<u16>, options: &[(&str, &str)]) -> Service {
        Service {
            name: "db".into(),
            image: "postgres:15".into(),
            env: vec![],
            ports,
            options: options
                .iter()
                .map(|(n, v)| OptionPair {
                    name: n.to_string(),
                    value: v.to_string(),
                })
                .collect(),
        }
    }

    #[test]
    fn probes_first_port_or_option() {
        assert!(matches!(
            Tcp::probe(&service(vec![5432], &[])).unwrap().action,
            ProbeAction::Tcp(5432)
        ));
        let p = Tcp::probe(&service(
            vec![5432],
            &[("port", "6543"), ("period_ms", "50")],
        ))
        .unwrap();
        assert!(matches!(p.action, ProbeAction::Tcp(6543)));
        assert_eq!(p.period_ms, 50);
    }

    #[test]
    fn no_port_and_bad_numbers_are_errors() {
        let e = Tcp::probe(&service(vec![], &[])).unwrap_err().describe();
        assert!(e.contains("declares no port"), "{e}");
        let e = Tcp::probe(&service(vec![1], &[("timeout_ms", "soon")]))
            .unwrap_err()
            .describe();
        assert!(
            e.contains("services.db.readiness.options.timeout_ms: `soon` is not a valid number"),
            "{e}"
        );
    }

    #[test]
    fn judges_connection() {
        let out = ProbeOutput {
            exit_code: None,
            stdout: String::new(),
            stderr: String::new(),
            connected: true,
            http_status: None,
            elapsed_ms: 3,
        };
        assert!(matches!(
            slipway_plugin_sdk::testing::judge::<Tcp>(&service(vec![1], &[]), &out),
            Verdict::Ready
        ));
    }
}

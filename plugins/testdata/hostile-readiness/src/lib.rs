//! A readiness plugin that misbehaves on command, for the engine's tests:
//! `readiness.options.mode` is `trap-judge` (panics in `judge`),
//! `loop-judge` (never returns from `judge`), `bad-probe` (returns a probe
//! the host must refuse), or anything else: a plain TCP check on the first
//! port. `reset` always traps: a broken function that only a check of
//! every function (`slipway plugins verify`) finds.

use slipway_plugin_sdk::export_readiness;
use slipway_plugin_sdk::readiness::*;

pub struct Hostile;

fn mode(service: &Service) -> &str {
    service.option("mode").unwrap_or("")
}

impl Readiness for Hostile {
    fn probe(service: &Service) -> Result<Probe, PluginError> {
        let port = service.ports.first().copied().unwrap_or(1);
        Ok(Probe {
            action: ProbeAction::Tcp(port),
            period_ms: if mode(service) == "bad-probe" { 0 } else { 100 },
            timeout_ms: 1000,
            success_threshold: 1,
            failure_threshold: 3,
            startup_deadline_ms: 3000,
        })
    }

    fn judge(service: &Service, output: &ProbeOutput) -> Verdict {
        match mode(service) {
            "trap-judge" => panic!("hostile-readiness: judge traps on purpose"),
            "loop-judge" => {
                let mut n: u64 = 0;
                loop {
                    n = std::hint::black_box(n.wrapping_add(1));
                }
            }
            _ if output.connected => Verdict::Ready,
            _ => Verdict::NotReady("not connected".into()),
        }
    }

    fn reset(_service: &Service) -> Option<Vec<String>> {
        panic!("hostile-readiness: reset traps on purpose")
    }
}

export_readiness!(Hostile);

//! A readiness plugin's probe, said two ways for a Pod:
//!
//! - as a Kubernetes [`Probe`] on the service's
//!   container ([`kube_probe`]): `exec` stays an exec in the service,
//!   `tcp` a `tcpSocket`, `http` an `httpGet`; the plugin's timing becomes
//!   the probe's (seconds, rounded up). A `log-line` probe has no
//!   Kubernetes form: the service's first port is probed over TCP instead,
//!   or nothing when it declares none.
//! - as a wait the workload runs before its steps ([`wait_script`]), for
//!   Pods whose services are plain containers beside the workload (no
//!   native sidecars, so nothing orders them): the exec probe's argv run
//!   from the workload when the workload's image has that program (the
//!   probes of the bundled plugins name `127.0.0.1`, the Pod's shared
//!   loopback), else a TCP connection to the first port; `tcp` and `http`
//!   with whatever the image has (`nc`, `bash`, `wget`, `curl`, `python3`).
//!
//! What is not translated, either way: the plugin's `judge` (Kubernetes
//! and the wait count exit code 0, a connection, or a 2xx/3xx answer as
//! ready; the plugin would read the output) and its "will never be ready"
//! verdict (the probe simply keeps failing until its deadline).

use super::objects::{ExecAction, HttpGetAction, Probe, TcpSocketAction};
use crate::plugins::bindings::{self, ProbeAction};

/// A service's probe as a Kubernetes probe, and what was changed on the
/// way (a note for the manifest's reader).
#[derive(Debug, Clone, PartialEq)]
pub struct Translated {
    /// The probe; `None`: nothing to probe with.
    pub probe: Option<Probe>,
    /// What differs from the engine's own probing, when something does.
    pub note: Option<String>,
}

/// Whole seconds, at least 1, from milliseconds (rounded up).
fn seconds(ms: u32) -> u32 {
    ms.div_ceil(1000).max(1)
}

/// `probe` (of service `service`, listening on `ports`) as a Kubernetes
/// probe. `startup`: a startup probe (its success threshold must be 1,
/// and its failure threshold covers the plugin's startup deadline); else a
/// readiness probe with the plugin's thresholds.
pub fn kube_probe(
    service: &str,
    probe: &bindings::Probe,
    ports: &[u16],
    startup: bool,
) -> Translated {
    let period = seconds(probe.period_ms);
    let mut note = None;
    let mut out = Probe {
        period_seconds: period,
        timeout_seconds: seconds(probe.timeout_ms),
        success_threshold: if startup {
            1
        } else {
            probe.success_threshold.max(1)
        },
        failure_threshold: if startup {
            probe.startup_deadline_ms.div_ceil(period * 1000).max(1)
        } else {
            probe.failure_threshold.max(1)
        },
        ..Probe::default()
    };
    match &probe.action {
        ProbeAction::Exec(argv) => {
            out.exec = Some(ExecAction {
                command: argv.clone(),
            })
        }
        ProbeAction::Tcp(port) => out.tcp_socket = Some(TcpSocketAction { port: *port }),
        ProbeAction::Http(check) => {
            out.http_get = Some(HttpGetAction {
                path: check.path.clone(),
                port: check.port,
            })
        }
        ProbeAction::LogLine(pattern) => match ports.first() {
            Some(port) => {
                out.tcp_socket = Some(TcpSocketAction { port: *port });
                note = Some(format!(
                    "service `{service}`: its readiness is a log line (`{pattern}`), which Kubernetes cannot probe; port {port} is probed over TCP instead"
                ));
            }
            None => {
                return Translated {
                    probe: None,
                    note: Some(format!(
                        "service `{service}`: its readiness is a log line (`{pattern}`), which Kubernetes cannot probe, and it declares no port: nothing waits for it"
                    )),
                };
            }
        },
    }
    if startup && probe.success_threshold > 1 {
        let extra = format!(
            "service `{service}`: a startup probe passes once; the plugin asks for {} passes in a row",
            probe.success_threshold
        );
        note = Some(match note {
            Some(n) => format!("{n}; {extra}"),
            None => extra,
        });
    }
    Translated {
        probe: Some(out),
        note,
    }
}

/// `s` quoted for `sh` (single quotes).
pub fn sh_quote(s: &str) -> String {
    format!("'{}'", s.replace('\'', r"'\''"))
}

/// The shell functions the waits use. `slipway_wait NAME DEADLINE_S
/// PERIOD_S PASSES CMD...` runs CMD until it passes PASSES times in a row,
/// or fails the workload (exit 1) past the deadline.
const FUNCTIONS: &str = r#"slipway_wait() {
  n=$1 d=$2 p=$3 k=$4; shift 4
  end=$(( $(date +%s) + d )); ok=0
  while :; do
    if "$@" >/dev/null 2>&1; then ok=$((ok + 1)); [ "$ok" -ge "$k" ] && break; else ok=0; fi
    if [ "$(date +%s)" -ge "$end" ]; then
      echo "slipway: service \`$n\` was not ready within $d s (probe: $*)" >&2; exit 1
    fi
    sleep "$p"
  done
  echo "slipway: service \`$n\` is ready"
}
slipway_tcp() {
  if command -v nc >/dev/null 2>&1; then nc -z 127.0.0.1 "$1"
  elif command -v bash >/dev/null 2>&1; then bash -c ": </dev/tcp/127.0.0.1/$1"
  elif command -v python3 >/dev/null 2>&1; then python3 -c 'import socket, sys; socket.create_connection(("127.0.0.1", int(sys.argv[1])), 2)' "$1"
  else echo "slipway: the job image has none of nc, bash, python3 to wait for port $1 with" >&2; exit 1
  fi
}
slipway_http() {
  if command -v curl >/dev/null 2>&1; then curl -fsS -o /dev/null "http://127.0.0.1:$1$2"
  elif command -v wget >/dev/null 2>&1; then wget -q -O /dev/null "http://127.0.0.1:$1$2"
  elif command -v python3 >/dev/null 2>&1; then python3 -c 'import sys, urllib.request; urllib.request.urlopen("http://127.0.0.1:" + sys.argv[1] + sys.argv[2], timeout=2)' "$1" "$2"
  else echo "slipway: the job image has none of curl, wget, python3 to wait for port $1 with" >&2; exit 1
  fi
}
"#;

/// One service the workload waits for: its name, declared ports and the
/// plugin's probe (`None`: no readiness plugin, nothing to wait for).
#[derive(Debug, Clone)]
pub struct Wait<'a> {
    /// The service's name.
    pub service: &'a str,
    /// Its declared ports.
    pub ports: &'a [u16],
    /// Its readiness plugin's probe.
    pub probe: Option<&'a bindings::Probe>,
}

/// The `sh` text that waits for every service of `waits` in turn (the
/// workload runs it before its steps). Empty when nothing is waited for.
pub fn wait_script(waits: &[Wait<'_>]) -> String {
    let mut body = String::new();
    for w in waits {
        let Some(probe) = w.probe else { continue };
        let head = format!(
            "slipway_wait {} {} {} {}",
            sh_quote(w.service),
            seconds(probe.startup_deadline_ms),
            format_period(probe.period_ms),
            probe.success_threshold.max(1)
        );
        let tcp = |port: u16| format!("{head} slipway_tcp {port}\n");
        match &probe.action {
            ProbeAction::Exec(argv) if !argv.is_empty() => {
                let quoted: Vec<String> = argv.iter().map(|a| sh_quote(a)).collect();
                let exec = format!("{head} {}\n", quoted.join(" "));
                match w.ports.first() {
                    Some(port) => body.push_str(&format!(
                        "if command -v {} >/dev/null 2>&1; then\n  {exec}else\n  {}fi\n",
                        sh_quote(&argv[0]),
                        tcp(*port)
                    )),
                    None => body.push_str(&exec),
                }
            }
            ProbeAction::Exec(_) => {}
            ProbeAction::Tcp(port) => body.push_str(&tcp(*port)),
            ProbeAction::Http(check) => body.push_str(&format!(
                "{head} slipway_http {} {}\n",
                check.port,
                sh_quote(&check.path)
            )),
            ProbeAction::LogLine(_) => {
                if let Some(port) = w.ports.first() {
                    body.push_str(&tcp(*port));
                }
            }
        }
    }
    if body.is_empty() {
        return body;
    }
    format!("{FUNCTIONS}{body}")
}

/// A period for `sleep`: seconds with up to three decimals.
fn format_period(ms: u32) -> String {
    let ms = ms.max(10);
    if ms.is_multiple_of(1000) {
        (ms / 1000).to_string()
    } else {
        format!("{}.{:03}", ms / 1000, ms % 1000)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::plugins::bindings::HttpCheck;

    fn probe(action: ProbeAction) -> bindings::Probe {
        bindings::Probe {
            action,
            period_ms: 250,
            timeout_ms: 2000,
            success_threshold: 2,
            failure_threshold: 3,
            startup_deadline_ms: 60_000,
        }
    }

    #[test]
    fn exec_probes_stay_execs_with_the_plugins_timing() {
        let p = probe(ProbeAction::Exec(vec!["pg_isready".into(), "-q".into()]));
        let t = kube_probe("db", &p, &[5432], true);
        let k = t.probe.unwrap();
        assert_eq!(k.exec.unwrap().command, ["pg_isready", "-q"]);
        assert_eq!((k.period_seconds, k.timeout_seconds), (1, 2));
        // A startup probe passes once and covers the 60 s deadline.
        assert_eq!((k.success_threshold, k.failure_threshold), (1, 60));
        assert!(t.note.unwrap().contains("2 passes in a row"));
        let k = kube_probe("db", &p, &[5432], false).probe.unwrap();
        assert_eq!((k.success_threshold, k.failure_threshold), (2, 3));
    }

    #[test]
    fn tcp_http_and_log_line_probes() {
        let k = kube_probe("c", &probe(ProbeAction::Tcp(6379)), &[], false);
        assert_eq!(k.probe.unwrap().tcp_socket.unwrap().port, 6379);
        let http = ProbeAction::Http(HttpCheck {
            port: 8080,
            path: "/health".into(),
        });
        let k = kube_probe("w", &probe(http), &[], false).probe.unwrap();
        assert_eq!(k.http_get.unwrap().path, "/health");
        let log = probe(ProbeAction::LogLine("ready".into()));
        let k = kube_probe("l", &log, &[9000], false);
        assert_eq!(k.probe.unwrap().tcp_socket.unwrap().port, 9000);
        assert!(k.note.unwrap().contains("cannot probe"));
        let k = kube_probe("l", &log, &[], false);
        assert!(k.probe.is_none());
        assert!(k.note.unwrap().contains("nothing waits"));
    }

    #[test]
    fn the_wait_runs_the_exec_probe_or_falls_back_to_tcp() {
        let p = probe(ProbeAction::Exec(vec![
            "pg_isready".into(),
            "-h".into(),
            "127.0.0.1".into(),
        ]));
        let script = wait_script(&[
            Wait {
                service: "db",
                ports: &[5432],
                probe: Some(&p),
            },
            Wait {
                service: "none",
                ports: &[],
                probe: None,
            },
        ]);
        assert!(script.starts_with("slipway_wait() {"), "{script}");
        assert!(
            script.contains("if command -v 'pg_isready' >/dev/null 2>&1; then\n  slipway_wait 'db' 60 0.250 2 'pg_isready' '-h' '127.0.0.1'\nelse\n  slipway_wait 'db' 60 0.250 2 slipway_tcp 5432\nfi\n"),
            "{script}"
        );
        assert_eq!(
            wait_script(&[Wait {
                service: "none",
                ports: &[],
                probe: None
            }]),
            ""
        );
        assert_eq!(sh_quote("it's"), r"'it'\''s'");
    }
}

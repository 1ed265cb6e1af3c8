//! `http` readiness: ready once `GET 127.0.0.1:<port><path>` answers with an
//! accepted status (any 2xx or 3xx unless options say otherwise).

use slipway_plugin_sdk::readiness::*;
use slipway_plugin_sdk::{export_readiness, malformed};

pub struct Http;

/// Inclusive ranges of accepted status codes.
type Statuses = Vec<(u16, u16)>;

/// One entry of `expect_status`/`ready_statuses`: `204` or a class like `2xx`.
fn status_entry(entry: &str) -> Option<(u16, u16)> {
    let e = entry.trim().to_ascii_lowercase();
    if let Some(class) = e.strip_suffix("xx") {
        let c: u16 = class.parse().ok().filter(|c| (1..=5).contains(c))?;
        return Some((c * 100, c * 100 + 99));
    }
    let code: u16 = e.parse().ok().filter(|c| (100..=599).contains(c))?;
    (e.len() == 3).then_some((code, code))
}

/// The accepted statuses from options `expect_status` and `ready_statuses`
/// (together: their union); `None` when neither is set.
fn accepted(service: &Service) -> Result<Option<Statuses>, PluginError> {
    let mut set = Vec::new();
    let mut any = false;
    for name in ["expect_status", "ready_statuses"] {
        let Some(value) = service.option(name) else {
            continue;
        };
        any = true;
        let entries: Vec<&str> = if name == "expect_status" {
            vec![value]
        } else {
            value.split(',').collect()
        };
        for entry in entries {
            set.push(status_entry(entry).ok_or_else(|| {
                malformed(
                    &option_path(service, name),
                    None,
                    format!(
                        "`{}` is not an HTTP status (100-599) or class (`2xx`)",
                        entry.trim()
                    ),
                    Some("e.g. expect_status = \"204\" or ready_statuses = \"200,401\""),
                )
            })?);
        }
    }
    Ok(any.then_some(set))
}

fn path(service: &Service) -> Result<String, PluginError> {
    let path = service.option("path").unwrap_or("/");
    if !path.starts_with('/') || path.chars().any(|c| c.is_whitespace() || c.is_control()) {
        return Err(malformed(
            &option_path(service, "path"),
            None,
            format!("`{path}` is not a request path"),
            Some("use a path that starts with `/` and has no spaces, e.g. `/health`"),
        ));
    }
    Ok(path.to_owned())
}

/// The start of a response body, on one line.
fn snippet(body: &str) -> String {
    let line = body.split_whitespace().collect::<Vec<_>>().join(" ");
    match line.char_indices().nth(200) {
        Some((i, _)) => format!("{}…", &line[..i]),
        None => line,
    }
}

impl Readiness for Http {
    fn probe(service: &Service) -> Result<Probe, PluginError> {
        accepted(service)?;
        let check = HttpCheck {
            port: port(service, None)?,
            path: path(service)?,
        };
        probe_with(
            service,
            ProbeAction::Http(check),
            Timing {
                period_ms: 500,
                timeout_ms: 2000,
                success_threshold: 1,
                failure_threshold: 3,
                startup_deadline_ms: 60_000,
            },
        )
    }

    fn judge(service: &Service, output: &ProbeOutput) -> Verdict {
        if !output.connected {
            return Verdict::NotReady(format!(
                "connection refused or timed out after {} ms",
                output.elapsed_ms
            ));
        }
        let Some(status) = output.http_status else {
            return Verdict::NotReady(format!(
                "connected but no HTTP response after {} ms",
                output.elapsed_ms
            ));
        };
        // `probe` has checked the options; a bad value cannot get here.
        let explicit = accepted(service).ok().flatten();
        let ok = match &explicit {
            Some(set) => set.iter().any(|&(lo, hi)| (lo..=hi).contains(&status)),
            None => (200..=399).contains(&status),
        };
        if ok {
            return Verdict::Ready;
        }
        let mut message = match status {
            500..=599 => format!("server error: HTTP {status}"),
            400..=499 => format!("client error: HTTP {status}"),
            _ => format!("HTTP {status} is not an accepted status"),
        };
        let body = snippet(&output.stdout);
        if !body.is_empty() {
            message.push_str(&format!(": {body}"));
        }
        if explicit.is_none() && matches!(status, 401 | 403) {
            message.push_str(&format!(
                " (if a protected endpoint answering {status} means the service is up, \
                 set readiness.options.ready_statuses = \"2xx,{status}\")"
            ));
        }
        Verdict::NotReady(message)
    }
}

export_readiness!(Http);

#[cfg(test)]
mod tests {
    use super::*;
    use slipway_plugin_sdk::testing::{judge, not_ready, probe_output as output, service};

    fn check(p: Probe) -> (u16, String) {
        match p.action {
            ProbeAction::Http(h) => (h.port, h.path),
            other => panic!("expected http, got {other:?}"),
        }
    }

    fn response(status: Option<u16>, body: &str) -> ProbeOutput {
        ProbeOutput {
            connected: true,
            http_status: status,
            ..output(None, body, "")
        }
    }

    #[test]
    fn probes_port_and_path() {
        let p = Http::probe(&service(&[], vec![8080, 9090], &[])).unwrap();
        assert_eq!(check(p), (8080, "/".to_owned()));
        let p = Http::probe(&service(
            &[],
            vec![8080],
            &[("port", "9000"), ("path", "/health?full=1")],
        ))
        .unwrap();
        assert_eq!(check(p), (9000, "/health?full=1".to_owned()));
    }

    #[test]
    fn option_errors() {
        let e = Http::probe(&service(&[], vec![], &[]))
            .unwrap_err()
            .describe();
        assert!(
            e.starts_with("unsupported:") && e.contains("declares no port"),
            "{e}"
        );
        let e = Http::probe(&service(&[], vec![], &[("port", "0")]))
            .unwrap_err()
            .describe();
        assert!(
            e.contains("services.svc.readiness.options.port: `0` is not a valid port"),
            "{e}"
        );
        for bad in ["health", "/a b", ""] {
            let e = Http::probe(&service(&[], vec![1], &[("path", bad)]))
                .unwrap_err()
                .describe();
            assert!(e.contains("services.svc.readiness.options.path:"), "{e}");
        }
        for (opt, bad) in [
            ("expect_status", "ok"),
            ("expect_status", "600"),
            ("expect_status", "200,201"),
            ("ready_statuses", "200,,401"),
            ("ready_statuses", "6xx"),
            ("ready_statuses", "0200"),
        ] {
            let e = Http::probe(&service(&[], vec![1], &[(opt, bad)]))
                .unwrap_err()
                .describe();
            assert!(
                e.contains(&format!("services.svc.readiness.options.{opt}:"))
                    && e.contains("is not an HTTP status"),
                "{e}"
            );
        }
    }

    #[test]
    fn default_accepts_2xx_and_3xx() {
        let s = service(&[], vec![1], &[]);
        for status in [200, 204, 301, 399] {
            assert!(matches!(
                judge::<Http>(&s, &response(Some(status), "")),
                Verdict::Ready
            ));
        }
        let m = not_ready(judge::<Http>(
            &s,
            &response(Some(503), "  upstream\n not ready "),
        ));
        assert_eq!(m, "server error: HTTP 503: upstream not ready");
        let m = not_ready(judge::<Http>(&s, &response(Some(404), "")));
        assert_eq!(m, "client error: HTTP 404");
        let m = not_ready(judge::<Http>(&s, &response(Some(401), "")));
        assert!(m.contains("ready_statuses = \"2xx,401\""), "{m}");
        let m = not_ready(judge::<Http>(&s, &response(Some(101), "")));
        assert!(m.contains("HTTP 101 is not an accepted status"), "{m}");
    }

    #[test]
    fn not_connected_or_no_response() {
        let s = service(&[], vec![1], &[]);
        let m = not_ready(judge::<Http>(&s, &output(None, "", "")));
        assert!(m.contains("connection refused"), "{m}");
        let m = not_ready(judge::<Http>(&s, &response(None, "")));
        assert!(m.contains("no HTTP response"), "{m}");
    }

    #[test]
    fn explicit_statuses_replace_the_default() {
        let s = service(&[], vec![1], &[("expect_status", "204")]);
        assert!(matches!(
            judge::<Http>(&s, &response(Some(204), "")),
            Verdict::Ready
        ));
        let m = not_ready(judge::<Http>(&s, &response(Some(200), "")));
        assert!(m.contains("HTTP 200 is not an accepted status"), "{m}");
        let s = service(&[], vec![1], &[("ready_statuses", "2xx, 401")]);
        assert!(Http::probe(&s).is_ok());
        for status in [200, 299, 401] {
            assert!(matches!(
                judge::<Http>(&s, &response(Some(status), "")),
                Verdict::Ready
            ));
        }
        let m = not_ready(judge::<Http>(&s, &response(Some(403), "")));
        assert_eq!(m, "client error: HTTP 403");
        let s = service(
            &[],
            vec![1],
            &[("expect_status", "204"), ("ready_statuses", "401")],
        );
        assert!(matches!(
            judge::<Http>(&s, &response(Some(401), "")),
            Verdict::Ready
        ));
        assert!(matches!(
            judge::<Http>(&s, &response(Some(204), "")),
            Verdict::Ready
        ));
    }

    #[test]
    fn body_snippet_is_short() {
        let s = service(&[], vec![1], &[]);
        let m = not_ready(judge::<Http>(&s, &response(Some(500), &"é".repeat(1000))));
        assert!(m.ends_with('…') && m.chars().count() < 240, "{m}");
    }
}

//! `redis` readiness: ready once `redis-cli ping` inside the service container
//! answers `PONG`; snapshot saves the dataset to the RDB file and reset loads
//! it back.

use slipway_plugin_sdk::export_readiness;
use slipway_plugin_sdk::readiness::*;
use slipway_plugin_sdk::shell::quote_if_needed;

pub struct Redis;

/// Option `password`, else the service's `REDIS_PASSWORD`; empty means none.
fn password(service: &Service) -> Option<&str> {
    service
        .option("password")
        .or_else(|| service.env_var("REDIS_PASSWORD"))
        .filter(|p| !p.is_empty())
}

/// `redis-cli` for the service's port, with the password when there is one.
fn cli(service: &Service) -> Result<Vec<String>, PluginError> {
    let mut argv = vec![
        "redis-cli".to_owned(),
        "-p".to_owned(),
        port(service, Some(6379))?.to_string(),
    ];
    if let Some(pw) = password(service) {
        argv.extend([
            "--no-auth-warning".to_owned(),
            "-a".to_owned(),
            pw.to_owned(),
        ]);
    }
    Ok(argv)
}

/// `sh -c` that runs one redis command and fails unless it answers `OK`
/// (`redis-cli` exits 0 on some error replies, so the reply is checked).
fn checked(service: &Service, command: &str, on_error: &str) -> Option<Vec<String>> {
    let cli = cli(service).ok()?;
    let cli: Vec<String> = cli.iter().map(|w| quote_if_needed(w)).collect();
    let script = format!(
        "out=$({} {command} 2>&1); [ \"$out\" = OK ] || {{ echo \"redis {command}: $out{on_error}\" >&2; exit 1; }}",
        cli.join(" ")
    );
    Some(vec!["sh".into(), "-c".into(), script])
}

const AUTH_ERRORS: [&str; 5] = [
    "NOAUTH",
    "WRONGPASS",
    "invalid password",
    "invalid username-password",
    "NOPERM",
];

impl Readiness for Redis {
    fn probe(service: &Service) -> Result<Probe, PluginError> {
        let mut argv = cli(service)?;
        argv.push("ping".into());
        probe_with(
            service,
            ProbeAction::Exec(argv),
            Timing {
                period_ms: 250,
                timeout_ms: 1000,
                success_threshold: 1,
                failure_threshold: 3,
                startup_deadline_ms: 60_000,
            },
        )
    }

    fn judge(service: &Service, output: &ProbeOutput) -> Verdict {
        if output.stdout.trim() == "PONG" {
            return Verdict::Ready;
        }
        let detail = said(output, 500);
        if matches!(output.exit_code, Some(126 | 127)) {
            return Verdict::Failed(format!(
                "redis-cli cannot run in image `{}` (is it a Redis image?): {detail}",
                service.image
            ));
        }
        let text = format!("{}\n{}", output.stdout, output.stderr);
        if AUTH_ERRORS.iter().any(|e| text.contains(e)) {
            let hint = if password(service).is_some() {
                "the password from readiness.options.password or REDIS_PASSWORD was refused; check it"
            } else {
                "the server wants a password: set REDIS_PASSWORD in the service env or readiness.options.password"
            };
            return Verdict::Failed(format!("authentication failed: {detail} ({hint})"));
        }
        if text.contains("LOADING") {
            return Verdict::NotReady(format!("loading the dataset into memory: {detail}"));
        }
        if detail.is_empty() {
            Verdict::NotReady(match output.exit_code {
                Some(code) => format!("redis-cli ping exited with {code} and no output"),
                None => "redis-cli ping did not finish".to_owned(),
            })
        } else {
            Verdict::NotReady(format!("no PONG: {detail}"))
        }
    }

    fn snapshot(service: &Service) -> Option<Vec<String>> {
        checked(service, "SAVE", "")
    }

    fn reset(service: &Service) -> Option<Vec<String>> {
        checked(
            service,
            "DEBUG RELOAD NOSAVE",
            " (Redis 7+ refuses DEBUG unless the server runs with --enable-debug-command local)",
        )
    }
}

export_readiness!(Redis);

#[cfg(test)]
mod tests {
    use super::*;
    use slipway_plugin_sdk::testing::{failed, judge, not_ready, probe_output as output, service};

    fn argv(p: Probe) -> Vec<String> {
        match p.action {
            ProbeAction::Exec(argv) => argv,
            other => panic!("expected exec, got {other:?}"),
        }
    }

    #[test]
    fn probes_redis_cli_ping() {
        let p = Redis::probe(&service(&[], vec![], &[])).unwrap();
        assert_eq!(argv(p), ["redis-cli", "-p", "6379", "ping"]);
        let p = Redis::probe(&service(&[], vec![7000], &[])).unwrap();
        assert_eq!(argv(p), ["redis-cli", "-p", "7000", "ping"]);
        let p = Redis::probe(&service(&[], vec![7000], &[("port", "7001")])).unwrap();
        assert_eq!(argv(p), ["redis-cli", "-p", "7001", "ping"]);
        let e = Redis::probe(&service(&[], vec![], &[("port", "x")]))
            .unwrap_err()
            .describe();
        assert!(
            e.contains("services.svc.readiness.options.port: `x` is not a valid port"),
            "{e}"
        );
    }

    #[test]
    fn password_from_option_or_env() {
        let p = Redis::probe(&service(&[("REDIS_PASSWORD", "s3cret")], vec![], &[])).unwrap();
        assert_eq!(
            argv(p),
            [
                "redis-cli",
                "-p",
                "6379",
                "--no-auth-warning",
                "-a",
                "s3cret",
                "ping"
            ]
        );
        let p = Redis::probe(&service(
            &[("REDIS_PASSWORD", "s3cret")],
            vec![],
            &[("password", "other")],
        ))
        .unwrap();
        assert_eq!(argv(p)[5], "other");
        let p = Redis::probe(&service(&[("REDIS_PASSWORD", "")], vec![], &[])).unwrap();
        assert_eq!(argv(p).len(), 4);
    }

    #[test]
    fn judges_replies() {
        let s = service(&[], vec![], &[]);
        assert!(matches!(
            judge::<Redis>(&s, &output(Some(0), "PONG\n", "")),
            Verdict::Ready
        ));
        let m = not_ready(judge::<Redis>(
            &s,
            &output(
                Some(1),
                "LOADING Redis is loading the dataset in memory\n",
                "",
            ),
        ));
        assert!(m.starts_with("loading the dataset"), "{m}");
        let m = failed(judge::<Redis>(
            &s,
            &output(Some(1), "NOAUTH Authentication required.\n", ""),
        ));
        assert!(m.contains("set REDIS_PASSWORD"), "{m}");
        let with_pw = service(&[], vec![], &[("password", "bad")]);
        let m = failed(judge::<Redis>(
            &with_pw,
            &output(
                Some(1),
                "",
                "AUTH failed: WRONGPASS invalid username-password pair or user is disabled.",
            ),
        ));
        assert!(m.contains("was refused"), "{m}");
        let m = not_ready(judge::<Redis>(
            &s,
            &output(
                Some(1),
                "",
                "Could not connect to Redis at 127.0.0.1:6379: Connection refused",
            ),
        ));
        assert!(m.contains("Connection refused"), "{m}");
        let m = failed(judge::<Redis>(&s, &output(Some(127), "", "")));
        assert!(m.contains("image `image:1`"), "{m}");
        let m = not_ready(judge::<Redis>(&s, &output(Some(1), "", "")));
        assert!(m.contains("exited with 1"), "{m}");
        let m = not_ready(judge::<Redis>(&s, &output(None, "", "")));
        assert!(m.contains("did not finish"), "{m}");
    }

    #[test]
    fn snapshot_saves_and_reset_reloads_without_saving() {
        let s = service(&[("REDIS_PASSWORD", "it's")], vec![6380], &[]);
        let snap = Redis::snapshot(&s).unwrap();
        assert_eq!(snap[..2], ["sh", "-c"]);
        assert_eq!(
            snap[2],
            "out=$(redis-cli -p 6380 --no-auth-warning -a 'it'\\''s' SAVE 2>&1); \
             [ \"$out\" = OK ] || { echo \"redis SAVE: $out\" >&2; exit 1; }"
        );
        let reset = Redis::reset(&s).unwrap();
        assert!(
            reset[2].starts_with(
                "out=$(redis-cli -p 6380 --no-auth-warning -a 'it'\\''s' DEBUG RELOAD NOSAVE 2>&1);"
            ),
            "{}",
            reset[2]
        );
        assert!(reset[2].contains("--enable-debug-command local"));
        assert!(Redis::reset(&service(&[], vec![], &[("port", "0")])).is_none());
    }
}

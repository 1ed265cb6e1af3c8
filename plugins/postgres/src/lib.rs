//! `postgres` readiness: ready once `pg_isready` inside the service container
//! reports that the server accepts TCP connections on 127.0.0.1; snapshot and
//! reset copy the working database to and from a template database.

use slipway_plugin_sdk::readiness::*;
use slipway_plugin_sdk::{export_readiness, unsupported};

pub struct Postgres;

/// Suffix of the template database that `snapshot` creates.
const TEMPLATE_SUFFIX: &str = "_slipway_template";
/// PostgreSQL truncates identifiers past 63 bytes; the template name must fit.
const MAX_DB_NAME: usize = 63 - TEMPLATE_SUFFIX.len();

/// Port, user and database of the service.
struct Target {
    port: u16,
    user: String,
    db: String,
}

fn env_or<'a>(service: &'a Service, name: &str, default: &'a str) -> &'a str {
    service
        .env_var(name)
        .filter(|v| !v.is_empty())
        .unwrap_or(default)
}

/// Letters, digits and `_`, not starting with a digit, short enough that the
/// template's name fits in 63 bytes.
fn simple_identifier(name: &str) -> bool {
    let mut chars = name.chars();
    chars
        .next()
        .is_some_and(|c| c.is_ascii_alphabetic() || c == '_')
        && chars.all(|c| c.is_ascii_alphanumeric() || c == '_')
        && name.len() <= MAX_DB_NAME
}

fn target(service: &Service) -> Result<Target, PluginError> {
    let port = port(service, Some(5432))?;
    let user = env_or(service, "POSTGRES_USER", "postgres");
    let db = env_or(service, "POSTGRES_DB", user);
    if !simple_identifier(db) || db == "template0" || db == "template1" {
        return Err(unsupported(
            None,
            format!(
                "database `{db}` of service `{}` is not a simple identifier, so snapshot and reset cannot name its template",
                service.name
            ),
            Some(
                "set POSTGRES_DB (or POSTGRES_USER, its default) to letters, digits and `_`, \
                 starting with a letter or `_`, at most 46 characters, and not template0/template1",
            ),
        ));
    }
    Ok(Target {
        port,
        user: user.to_owned(),
        db: db.to_owned(),
    })
}

fn quote_ident(name: &str) -> String {
    format!("\"{}\"", name.replace('"', "\"\""))
}

fn quote_literal(text: &str) -> String {
    format!("'{}'", text.replace('\'', "''"))
}

/// Statement that ends every other session connected to `db`.
fn terminate(db: &str) -> String {
    format!(
        "SELECT count(pg_terminate_backend(pid)) FROM pg_stat_activity \
         WHERE datname = {} AND pid <> pg_backend_pid()",
        quote_literal(db)
    )
}

/// `psql` over the container's Unix socket (trusted by the official image),
/// connected to `template1` so the working database can be dropped, running
/// `statements` one by one and stopping at the first error.
fn psql(t: &Target, statements: &[String]) -> Vec<String> {
    let mut argv: Vec<String> = [
        "psql",
        "-X",
        "-q",
        "-v",
        "ON_ERROR_STOP=1",
        "-p",
        &t.port.to_string(),
        "-U",
        &t.user,
        "-d",
        "template1",
    ]
    .iter()
    .map(|s| s.to_string())
    .collect();
    for s in statements {
        argv.push("-c".into());
        argv.push(s.clone());
    }
    argv
}

impl Readiness for Postgres {
    fn probe(service: &Service) -> Result<Probe, PluginError> {
        let t = target(service)?;
        let argv = [
            "pg_isready",
            "-h",
            "127.0.0.1",
            "-p",
            &t.port.to_string(),
            "-U",
            &t.user,
            "-d",
            &t.db,
        ]
        .iter()
        .map(|s| s.to_string())
        .collect();
        probe_with(
            service,
            ProbeAction::Exec(argv),
            Timing {
                period_ms: 250,
                timeout_ms: 2000,
                success_threshold: 2,
                failure_threshold: 3,
                startup_deadline_ms: 60_000,
            },
        )
    }

    fn judge(service: &Service, output: &ProbeOutput) -> Verdict {
        let detail = said(output, 500);
        match output.exit_code {
            Some(0) => Verdict::Ready,
            Some(1) => Verdict::NotReady(format!(
                "server is rejecting connections (starting up or shutting down): {detail}"
            )),
            Some(2) => Verdict::NotReady(format!("no response from the server: {detail}")),
            Some(3) => Verdict::Failed(format!(
                "pg_isready made no attempt to connect (bad parameters): {detail}"
            )),
            Some(126 | 127) => Verdict::Failed(format!(
                "pg_isready cannot run in image `{}` (is it a PostgreSQL image?): {detail}",
                service.image
            )),
            Some(code) => Verdict::NotReady(format!("pg_isready exited with {code}: {detail}")),
            None => Verdict::NotReady(format!("pg_isready did not finish: {detail}")),
        }
    }

    fn snapshot(service: &Service) -> Option<Vec<String>> {
        let t = target(service).ok()?;
        let template = format!("{}{TEMPLATE_SUFFIX}", t.db);
        Some(psql(
            &t,
            &[
                terminate(&t.db),
                format!("DROP DATABASE IF EXISTS {}", quote_ident(&template)),
                format!(
                    "CREATE DATABASE {} TEMPLATE {}",
                    quote_ident(&template),
                    quote_ident(&t.db)
                ),
                format!(
                    "ALTER DATABASE {} ALLOW_CONNECTIONS false",
                    quote_ident(&template)
                ),
            ],
        ))
    }

    fn reset(service: &Service) -> Option<Vec<String>> {
        let t = target(service).ok()?;
        let template = format!("{}{TEMPLATE_SUFFIX}", t.db);
        Some(psql(
            &t,
            &[
                terminate(&t.db),
                format!("DROP DATABASE IF EXISTS {}", quote_ident(&t.db)),
                format!(
                    "CREATE DATABASE {} TEMPLATE {}",
                    quote_ident(&t.db),
                    quote_ident(&template)
                ),
            ],
        ))
    }
}

export_readiness!(Postgres);

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
    fn probes_pg_isready_over_tcp_with_env_defaults() {
        let p = Postgres::probe(&service(&[], vec![], &[])).unwrap();
        assert_eq!(p.success_threshold, 2);
        assert_eq!(
            argv(p),
            [
                "pg_isready",
                "-h",
                "127.0.0.1",
                "-p",
                "5432",
                "-U",
                "postgres",
                "-d",
                "postgres"
            ]
        );
        // POSTGRES_DB defaults to the user; the first declared port wins over 5432.
        let p = Postgres::probe(&service(&[("POSTGRES_USER", "app")], vec![6000], &[])).unwrap();
        assert_eq!(argv(p)[4..], ["6000", "-U", "app", "-d", "app"]);
        let p = Postgres::probe(&service(
            &[("POSTGRES_USER", "app"), ("POSTGRES_DB", "shop")],
            vec![6000],
            &[("port", "6543")],
        ))
        .unwrap();
        assert_eq!(argv(p)[4..], ["6543", "-U", "app", "-d", "shop"]);
    }

    #[test]
    fn bad_port_and_database_names_are_errors() {
        let e = Postgres::probe(&service(&[], vec![], &[("port", "99999")]))
            .unwrap_err()
            .describe();
        assert!(
            e.contains("services.svc.readiness.options.port: `99999` is not a valid port"),
            "{e}"
        );
        for db in [
            "my-db",
            "1db",
            "db\"; DROP",
            "template1",
            &"d".repeat(MAX_DB_NAME + 1),
        ] {
            let s = service(&[("POSTGRES_DB", db)], vec![], &[]);
            let e = Postgres::probe(&s).unwrap_err().describe();
            assert!(
                e.starts_with("unsupported:") && e.contains("not a simple identifier"),
                "{e}"
            );
            assert!(Postgres::snapshot(&s).is_none() && Postgres::reset(&s).is_none());
        }
        assert!(
            Postgres::probe(&service(
                &[("POSTGRES_DB", &"d".repeat(MAX_DB_NAME))],
                vec![],
                &[]
            ))
            .is_ok()
        );
    }

    #[test]
    fn judges_every_exit_code() {
        let s = service(&[], vec![], &[]);
        assert!(matches!(
            judge::<Postgres>(
                &s,
                &output(Some(0), "127.0.0.1:5432 - accepting connections", "")
            ),
            Verdict::Ready
        ));
        let m = not_ready(judge::<Postgres>(
            &s,
            &output(Some(1), "127.0.0.1:5432 - rejecting connections", ""),
        ));
        assert!(m.contains("rejecting connections"), "{m}");
        let m = not_ready(judge::<Postgres>(
            &s,
            &output(Some(2), "127.0.0.1:5432 - no response", ""),
        ));
        assert!(m.contains("no response"), "{m}");
        let m = failed(judge::<Postgres>(
            &s,
            &output(Some(3), "", "pg_isready: invalid port"),
        ));
        assert!(
            m.contains("bad parameters") && m.contains("invalid port"),
            "{m}"
        );
        let m = failed(judge::<Postgres>(&s, &output(Some(127), "", "not found")));
        assert!(m.contains("image `image:1`"), "{m}");
        let m = not_ready(judge::<Postgres>(&s, &output(Some(9), "", "")));
        assert!(m.contains("exited with 9"), "{m}");
        let m = not_ready(judge::<Postgres>(&s, &output(None, "", "")));
        assert!(m.contains("did not finish"), "{m}");
    }

    #[test]
    fn snapshot_and_reset_copy_through_a_template() {
        let s = service(
            &[("POSTGRES_USER", "app"), ("POSTGRES_DB", "Shop")],
            vec![5433],
            &[],
        );
        let snap = Postgres::snapshot(&s).unwrap();
        assert_eq!(
            snap[..11],
            [
                "psql",
                "-X",
                "-q",
                "-v",
                "ON_ERROR_STOP=1",
                "-p",
                "5433",
                "-U",
                "app",
                "-d",
                "template1"
            ]
        );
        let statements: Vec<&str> = snap[11..]
            .chunks(2)
            .map(|c| {
                assert_eq!(c[0], "-c");
                c[1].as_str()
            })
            .collect();
        assert_eq!(
            statements,
            [
                "SELECT count(pg_terminate_backend(pid)) FROM pg_stat_activity \
                 WHERE datname = 'Shop' AND pid <> pg_backend_pid()",
                "DROP DATABASE IF EXISTS \"Shop_slipway_template\"",
                "CREATE DATABASE \"Shop_slipway_template\" TEMPLATE \"Shop\"",
                "ALTER DATABASE \"Shop_slipway_template\" ALLOW_CONNECTIONS false",
            ]
        );
        let reset = Postgres::reset(&s).unwrap();
        assert_eq!(reset[..11], snap[..11]);
        let statements: Vec<&str> = reset[11..]
            .iter()
            .skip(1)
            .step_by(2)
            .map(String::as_str)
            .collect();
        assert_eq!(
            statements,
            [
                "SELECT count(pg_terminate_backend(pid)) FROM pg_stat_activity \
                 WHERE datname = 'Shop' AND pid <> pg_backend_pid()",
                "DROP DATABASE IF EXISTS \"Shop\"",
                "CREATE DATABASE \"Shop\" TEMPLATE \"Shop_slipway_template\"",
            ]
        );
    }

    #[test]
    fn quoting_doubles_quotes() {
        assert_eq!(quote_ident("a\"b"), "\"a\"\"b\"");
        assert_eq!(quote_literal("it's"), "'it''s'");
    }
}

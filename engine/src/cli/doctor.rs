//! `slipway doctor`: preflight checks of the host, each failure with the
//! command that fixes it. Exit code 1 when a check fails (warnings do not).

use std::path::Path;
use std::process::ExitCode;

use clap::Args;
use serde::Serialize;
use slipway::config::Config;

#[derive(Debug, Args)]
pub struct DoctorArgs {
    /// One JSON array of `{check, status, detail, fix}`.
    #[arg(long)]
    pub json: bool,
    /// A package registry (`host[:port]`) to check outbound TLS against,
    /// repeatable (default: the registries the bundled plugins fetch from:
    /// pypi.org, registry.npmjs.org, index.crates.io, rubygems.org,
    /// proxy.golang.org).
    #[arg(long = "registry", value_name = "HOST[:PORT]")]
    pub registries: Vec<String>,
}

#[derive(Debug, Serialize)]
#[serde(rename_all = "lowercase")]
enum Status {
    Ok,
    Warn,
    Fail,
    Info,
}

#[derive(Debug, Serialize)]
struct Check {
    check: &'static str,
    status: Status,
    detail: String,
    fix: Option<String>,
}

fn check(
    check: &'static str,
    status: Status,
    detail: impl Into<String>,
    fix: Option<String>,
) -> Check {
    Check {
        check,
        status,
        detail: detail.into(),
        fix,
    }
}

pub fn run(args: DoctorArgs, config: &Config) -> anyhow::Result<ExitCode> {
    let rt = tokio::runtime::Runtime::new()?;
    let mut checks = Vec::new();
    rt.block_on(async {
        docker_checks(config, &mut checks).await;
        store_checks(config, &mut checks).await;
    });
    let state = state_dir(&config.state_dir);
    let writable = matches!(state.status, Status::Ok);
    checks.push(state);
    checks.extend(writable.then(|| {
        match slipway::runner::prepare::check_can_hand_over(&config.state_dir) {
            Ok(()) => check(
                "job user",
                Status::Ok,
                "checkouts can be handed to uid 1000 and removed",
                None,
            ),
            Err(why) => {
                let why = why.to_string();
                let (detail, fix) = why.split_once("; fix: ").unwrap_or((&why, ""));
                check(
                    "job user",
                    Status::Fail,
                    detail,
                    Some(fix.to_owned()).filter(|f| !f.is_empty()),
                )
            }
        }
    }));
    checks.push(disk("free disk (state directory)", &config.state_dir));
    checks.push(selinux());
    checks.push(plugins(config));
    let registries: Vec<String> = if args.registries.is_empty() {
        slipway::tls_probe::DEFAULT_REGISTRIES
            .iter()
            .map(|s| s.to_string())
            .collect()
    } else {
        args.registries.clone()
    };
    checks.push(outbound_tls(&registries, config.ca_bundle.as_deref()));
    checks.extend(config.tls.as_ref().map(serve_tls));
    let failed = checks.iter().any(|c| matches!(c.status, Status::Fail));
    if args.json {
        println!("{}", serde_json::to_string_pretty(&checks)?);
    } else {
        for c in &checks {
            let mark = match c.status {
                Status::Ok => "ok  ",
                Status::Warn => "warn",
                Status::Fail => "FAIL",
                Status::Info => "info",
            };
            println!("{mark} {:<28} {}", c.check, c.detail);
            if let Some(fix) = &c.fix {
                println!("     {:<28} fix: {fix}", "");
            }
        }
    }
    Ok(if failed {
        ExitCode::from(1)
    } else {
        ExitCode::SUCCESS
    })
}

async fn docker_checks(config: &Config, checks: &mut Vec<Check>) {
    let runtime = match slipway::runtime::connect().await {
        Ok(d) => d,
        Err(e) => {
            let permission = e.to_string().contains("ermission denied");
            let fix = if permission {
                "add this user to the socket's group (`sudo usermod -aG docker $USER`, then log in again), or run Slipway as a user that may use the socket".to_owned()
            } else {
                "start the daemon (`sudo systemctl start docker`, or `dockerd &`), or point DOCKER_HOST at it (Podman: `podman system service --time=0 unix:///run/podman/podman.sock &`)".to_owned()
            };
            checks.push(check(
                "container engine",
                Status::Fail,
                e.to_string(),
                Some(fix),
            ));
            return;
        }
    };
    let facts = match runtime.host_facts().await {
        Ok(f) => f,
        Err(e) => {
            checks.push(check(
                "container engine",
                Status::Fail,
                format!("it answered a ping but not `info`: {e}"),
                None,
            ));
            return;
        }
    };
    checks.push(check(
        "container engine",
        Status::Ok,
        format!(
            "{} {} (API {}), {}{}",
            facts.engine,
            facts.version,
            facts.api_version,
            facts.os,
            if facts.rootless {
                ", rootless"
            } else {
                ", rootful"
            }
        ),
        None,
    ));
    let limits: Vec<&str> = [
        ("memory", facts.memory_limit),
        ("pids", facts.pids_limit),
        ("cpu", facts.cpu_limit),
    ]
    .iter()
    .filter(|(_, ok)| !ok)
    .map(|(n, _)| *n)
    .collect();
    checks.push(if limits.is_empty() {
        check(
            "resource limits",
            Status::Ok,
            format!("cgroup v{}: memory, pids and CPU limits work", facts.cgroup_version),
            None,
        )
    } else {
        check(
            "resource limits",
            Status::Warn,
            format!("cgroup v{}: no {} limits; jobs run without them", facts.cgroup_version, limits.join(", ")),
            Some("enable the cgroup controllers (e.g. `systemd.unified_cgroup_hierarchy=1` and delegation for rootless)".into()),
        )
    });
    let holder = &config.holder_image;
    checks.push(if matches!(runtime.image_id(holder).await, Ok(Some(_))) {
        check(
            "holder image",
            Status::Ok,
            format!("`{holder}` is present"),
            None,
        )
    } else {
        check(
            "holder image",
            Status::Fail,
            format!("`{holder}` (runner.holder_image) is missing: every job's pod starts from it"),
            Some(format!(
                "`docker pull {holder}`, or without a registry `bash scripts/images.sh`"
            )),
        )
    });
    if !facts.root_dir.is_empty() {
        checks.push(disk("free disk (images)", Path::new(&facts.root_dir)));
    }
    checks.push(match slipway::runner::gpu::offer(&runtime).await {
        Ok(offer) if offer.available() => check(
            "gpu",
            Status::Ok,
            format!(
                "the `{}` runtime gives containers GPUs: jobs asking for `gpus` get them",
                offer.runtime.as_deref().unwrap_or_default()
            ),
            None,
        ),
        Ok(offer) => check(
            "gpu",
            Status::Info,
            format!(
                "no GPU: jobs with gpu = \"required\" fail, gpu = \"preferred\" runs on the CPU ({})",
                offer.missing()
            ),
            None,
        ),
        Err(e) => check("gpu", Status::Warn, format!("`info` did not answer: {e}"), None),
    });
}

fn state_dir(dir: &Path) -> Check {
    let probe = dir.join(format!(".doctor-{}", std::process::id()));
    let result = std::fs::create_dir_all(dir).and_then(|()| std::fs::write(&probe, b"x"));
    let _ = std::fs::remove_file(&probe);
    match result {
        Ok(()) => check("state directory", Status::Ok, format!("{} is writable", dir.display()), None),
        Err(e) => check(
            "state directory",
            Status::Fail,
            format!("{} is not writable: {e}", dir.display()),
            Some("set SLIPWAY_STATE_DIR to a writable directory, or fix its owner and mode (and a read-only volume)".into()),
        ),
    }
}

/// Free space from `df` (POSIX output), warn below 5 GiB.
fn disk(name: &'static str, path: &Path) -> Check {
    let existing = path
        .ancestors()
        .find(|p| p.exists())
        .unwrap_or(Path::new("/"));
    let out = std::process::Command::new("df")
        .args(["-Pk"])
        .arg(existing)
        .output();
    let free_kib = out.ok().and_then(|o| {
        let text = String::from_utf8_lossy(&o.stdout).into_owned();
        text.lines()
            .nth(1)?
            .split_whitespace()
            .nth(3)?
            .parse::<u64>()
            .ok()
    });
    match free_kib {
        Some(kib) if kib >= 5 << 20 => check(name, Status::Ok, format!("{:.1} GiB free at {}", kib as f64 / 1048576.0, existing.display()), None),
        Some(kib) => check(
            name,
            Status::Warn,
            format!("only {:.1} GiB free at {}", kib as f64 / 1048576.0, existing.display()),
            Some("free space (`docker image prune`, old checkouts and logs under the state directory)".into()),
        ),
        None => check(name, Status::Warn, format!("could not read free space at {}", existing.display()), None),
    }
}

/// Outbound TLS to package registries: probed in parallel; any one that
/// answers with a chain the public roots do not verify is interception.
fn outbound_tls(registries: &[String], bundle: Option<&Path>) -> Check {
    use slipway::tls_probe::{Verdict, probe};
    let timeout = std::time::Duration::from_secs(3);
    let verdicts: Vec<(String, Result<Verdict, String>)> = std::thread::scope(|s| {
        let handles: Vec<_> = registries
            .iter()
            .map(|r| {
                s.spawn(move || {
                    (
                        r.clone(),
                        probe(r, bundle, timeout).map_err(|e| e.to_string()),
                    )
                })
            })
            .collect();
        handles
            .into_iter()
            .map(|h| h.join().expect("a probe thread panicked"))
            .collect()
    });
    let name = "outbound tls";
    if let Some((r, Err(e))) = verdicts.iter().find(|(_, v)| v.is_err()) {
        return check(
            name,
            Status::Fail,
            format!("{r}: {e}"),
            Some("fix `ca_bundle` (SLIPWAY_CA_BUNDLE): a readable PEM bundle".into()),
        );
    }
    let of = |want: fn(&Verdict) -> bool| -> Vec<String> {
        verdicts
            .iter()
            .filter(|(_, v)| v.as_ref().is_ok_and(want))
            .map(|(r, v)| match v {
                Ok(
                    Verdict::Intercepted { reason }
                    | Verdict::CoveredByBundle { reason }
                    | Verdict::Unreachable { reason },
                ) => format!("{r} ({reason})"),
                _ => r.clone(),
            })
            .collect()
    };
    let intercepted = of(|v| matches!(v, Verdict::Intercepted { .. }));
    let covered = of(|v| matches!(v, Verdict::CoveredByBundle { .. }));
    let unreachable = of(|v| matches!(v, Verdict::Unreachable { .. }));
    let public = of(|v| matches!(v, Verdict::Public));
    if !intercepted.is_empty() {
        let fix = match bundle {
            None => "set `ca_bundle` (SLIPWAY_CA_BUNDLE) to a PEM bundle holding the inspecting proxy's CA (often the host's own bundle, /etc/ssl/certs/ca-certificates.crt), so image builds and jobs trust it".to_owned(),
            Some(p) => format!("add the inspecting proxy's CA to {}", p.display()),
        };
        return check(
            name,
            Status::Warn,
            format!(
                "TLS is intercepted (the chain is not from a public CA): {}; image builds that fetch from it fail",
                intercepted.join(", ")
            ),
            Some(fix),
        );
    }
    let mut parts = Vec::new();
    if !public.is_empty() {
        parts.push(format!(
            "verified against public roots: {}",
            public.join(", ")
        ));
    }
    if !covered.is_empty() {
        parts.push(format!(
            "intercepted, trusted through ca_bundle: {}",
            covered.join(", ")
        ));
    }
    if !unreachable.is_empty() {
        parts.push(format!(
            "not reachable (builds that fetch from it fail; see `runner.build_network`): {}",
            unreachable.join(", ")
        ));
    }
    let status = if public.is_empty() && covered.is_empty() {
        Status::Info
    } else {
        Status::Ok
    };
    check(name, status, parts.join("; "), None)
}

fn selinux() -> Check {
    match std::fs::read_to_string("/sys/fs/selinux/enforce") {
        Ok(v) if v.trim() == "1" => check(
            "selinux",
            Status::Warn,
            "SELinux is enforcing: job mounts are relabelled (checkout `Z`, caches `z`) when the daemon runs with SELinux, or with runner.selinux_relabel = true",
            Some("if the daemon does not report SELinux (`docker info`), set runner.selinux_relabel = true; keep ca_bundle readable by containers (`chcon -t container_file_t <file>`)".into()),
        ),
        Ok(_) => check("selinux", Status::Ok, "SELinux is permissive", None),
        Err(_) => check("selinux", Status::Ok, "SELinux is not enabled", None),
    }
}

fn plugins(config: &Config) -> Check {
    match super::registry_for(config, super::Calls::Few) {
        Ok(registry) => {
            let rejected: Vec<String> = registry
                .candidates()
                .iter()
                .filter_map(|c| match &c.status {
                    slipway::plugins::Status::Rejected(e) => Some(format!("{}: {e}", c.name)),
                    _ => None,
                })
                .collect();
            let active = registry.names().len();
            if rejected.is_empty() {
                check(
                    "plugins",
                    Status::Ok,
                    format!("{active} plugins usable"),
                    None,
                )
            } else {
                check(
                    "plugins",
                    Status::Warn,
                    format!("{active} usable; rejected: {}", rejected.join("; ")),
                    Some("`slipway plugins verify <dir>` shows why; reinstall with `slipway plugins install`".into()),
                )
            }
        }
        Err(e) => check("plugins", Status::Fail, format!("{e:#}"), None),
    }
}

/// With `[tls]` set: would `serve` start with this certificate pair?
fn serve_tls(files: &slipway::tls::TlsFiles) -> Check {
    match files.load() {
        Ok(pair) => check(
            "serve TLS",
            Status::Ok,
            format!(
                "HTTPS with {} ({} certificate(s)) and its key",
                files.cert.display(),
                pair.cert.len()
            ),
            None,
        ),
        Err(e) => check(
            "serve TLS",
            Status::Fail,
            e.to_string(),
            Some(
                "fix the file named (`tls.cert`, `tls.key`); `serve` refuses to start until then"
                    .into(),
            ),
        ),
    }
}

/// With a shared store: the connection, the schema version against this
/// build's, and the clocks of this host, the database and the replicas
/// (leases and retries are timed by each replica's clock).
async fn store_checks(config: &Config, checks: &mut Vec<Check>) {
    let url = match config.store.postgres_url() {
        Ok(None) => {
            checks.push(check(
                "store",
                Status::Ok,
                format!("redb, {}", config.state_dir.join("store.redb").display()),
                None,
            ));
            return;
        }
        Ok(Some(url)) => url,
        Err(e) => {
            checks.push(check(
                "store",
                Status::Fail,
                e.to_string(),
                Some("make the `store` reference resolvable (SLIPWAY_STORE)".into()),
            ));
            return;
        }
    };
    // The check must not migrate anything: read the version on a plain
    // connection first, and open the store only when it is current.
    let store = match slipway::queue::postgres_store::inspect(&url).await {
        Ok(found) => found,
        Err(e) => {
            checks.push(check(
                "store",
                Status::Fail,
                e.to_string(),
                Some("check that PostgreSQL runs, and the URL's host, port, user, password and database".into()),
            ));
            return;
        }
    };
    let known = slipway::queue::postgres_store::schema::SCHEMA_VERSION;
    checks.push(check(
        "store",
        Status::Ok,
        format!("PostgreSQL, {}", store.target),
        None,
    ));
    checks.push(match store.schema {
        v if v == known => check(
            "store schema",
            Status::Ok,
            format!("version {v}, current"),
            None,
        ),
        0 => check(
            "store schema",
            Status::Info,
            format!("empty: the first `serve` creates schema {known}"),
            None,
        ),
        v if v < known => check(
            "store schema",
            Status::Info,
            format!("version {v}: the next `serve` migrates it to {known}"),
            None,
        ),
        v => check(
            "store schema",
            Status::Fail,
            format!("version {v}, written by a newer Slipway (this one knows up to {known})"),
            Some("upgrade this Slipway to the replicas' version".into()),
        ),
    });
    // Skew: this host against the database, and each replica's last
    // renewal (renewed every 5 s) against the database's clock.
    let local = slipway::job::now_ms() as i64;
    let skew = local - store.database_ms as i64;
    checks.push(if skew.abs() > 2_000 {
        check(
            "clock skew",
            Status::Warn,
            format!("this host's clock is {skew} ms off the database's"),
            Some("run NTP (chrony, systemd-timesyncd) on every replica's host".into()),
        )
    } else {
        check(
            "clock skew",
            Status::Ok,
            format!("{skew} ms against the database"),
            None,
        )
    });
    for node in &store.nodes {
        let behind = store.database_ms as i64 - node.seen_ms as i64;
        let live = behind < 15_000;
        checks.push(check(
            "replica",
            if live || behind > 5 * 60_000 { Status::Info } else { Status::Warn },
            format!(
                "{} ({}){}{}, last seen {} s ago by its clock",
                node.node_id,
                node.version,
                if node.duties { ", holds the duties" } else { "" },
                node.advertise_url.as_deref().map(|u| format!(" at {u}")).unwrap_or_default(),
                behind / 1000
            ),
            (!live && behind <= 5 * 60_000).then(|| {
                "a replica that stopped renewing its record is down, or its clock is off: check it".to_owned()
            }),
        ));
    }
}

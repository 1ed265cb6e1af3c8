//! Several `slipway serve` replicas on one PostgreSQL database (started by
//! the tests), with real Docker jobs: they share the queue, a node id is
//! one replica's, a replica killed with `kill -9` has its attempts retried
//! by the others once their leases run out (each job ends once), requests
//! for the duties' routes are forwarded to their holder, and a restarted
//! replica cleans up only its own containers.

use std::collections::BTreeMap;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use serde_json::{Value, json};

use crate::support::postgres::TestPostgres;
use crate::support::serve::{
    BUSYBOX, Server, TOKEN, dockerfile_repo, free_port, get, job, post_json, slipway, wait_until,
};

/// Replica `node` on `database`, listening on a port of its own that it
/// also advertises; lease 6 s so a dead replica's attempts come back soon.
fn replica(database: &str, node: &str, state: tempfile::TempDir) -> Server {
    let port = free_port();
    let url = format!("http://127.0.0.1:{port}");
    let child = slipway(state.path(), &url)
        .arg("serve")
        .env("SLIPWAY_ALLOW_LOCAL_PATHS", "true")
        .env("SLIPWAY_STORE", database)
        .env("SLIPWAY_NODE_ID", node)
        .env("SLIPWAY_ADVERTISE_URL", &url)
        .env("SLIPWAY_LISTEN", format!("127.0.0.1:{port}"))
        .env("SLIPWAY_RUNNER__LEASE_S", "6")
        .env("SLIPWAY_RUNNER__PER_REPOSITORY", "0")
        .env("SLIPWAY_RUNNER__CONCURRENCY", "3")
        // Generated images fetch from registries through this network's proxy.
        .env("SLIPWAY_CA_BUNDLE", "/etc/ssl/certs/ca-certificates.crt")
        .stdout(Stdio::null())
        .stderr(std::fs::File::create(state.path().join("serve.log")).unwrap())
        .spawn()
        .unwrap();
    let server = Server::adopt(child, state, url);
    let deadline = Instant::now() + Duration::from_secs(60);
    while Instant::now() < deadline {
        if get(&server, "/readyz").0 == 200 {
            return server;
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    panic!("replica {node} did not come up; its log:\n{}", server.log());
}

/// The node that leased each attempt of a job, from its events.
fn leased_by(record: &Value) -> Vec<String> {
    record["events"]
        .as_array()
        .unwrap()
        .iter()
        .filter_map(|e| e["reason"].as_str())
        .filter_map(|r| r.split(" leased by ").nth(1))
        .map(|w| w.split('/').next().unwrap().to_owned())
        .collect()
}

/// Wait (4 min at most) until every job of `ids` has ended; each must have
/// succeeded, with exactly one event into a final state. Their records.
fn all_succeed_once(server: &Server, ids: &[u64]) -> BTreeMap<u64, Value> {
    let mut records: BTreeMap<u64, Value> = BTreeMap::new();
    wait_until("every job ends", 240, || {
        records = ids.iter().map(|id| (*id, job(server, *id))).collect();
        records
            .values()
            .all(|r| r["state"].as_str().is_some_and(is_final))
    });
    for (id, r) in &records {
        assert_eq!(r["state"], "succeeded", "job {id}: {r}");
        let finals = r["events"]
            .as_array()
            .unwrap()
            .iter()
            .filter(|e| e["to"].as_str().is_some_and(is_final))
            .count();
        assert_eq!(finals, 1, "job {id}: {r}");
    }
    records
}

fn is_final(state: &str) -> bool {
    matches!(
        state,
        "succeeded" | "failed" | "cancelled" | "timed_out" | "dead"
    )
}

#[test]
fn three_replicas_share_the_queue_and_a_killed_ones_jobs_end_once_elsewhere() {
    let pg = TestPostgres::shared();
    let database = pg.database();
    let a = replica(&database, "node-a", tempfile::tempdir().unwrap());
    let b = replica(&database, "node-b", tempfile::tempdir().unwrap());
    let c = replica(&database, "node-c", tempfile::tempdir().unwrap());

    // A second replica with a taken node id is refused, and says why.
    let taken = tempfile::tempdir().unwrap();
    let out = slipway(taken.path(), "http://127.0.0.1:1")
        .arg("serve")
        .env("SLIPWAY_STORE", &database)
        .env("SLIPWAY_NODE_ID", "node-b")
        .env("SLIPWAY_LISTEN", format!("127.0.0.1:{}", free_port()))
        .output()
        .unwrap();
    let said = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success(), "{said}");
    assert!(said.contains("node id `node-b`"), "{said}");

    // Forwarding: a services request to any replica reaches the duties
    // holder, so all three give the same answer (one declared service).
    let (code, body) = post_json(
        &a,
        "/api/v1/services",
        &json!({"name": "pinger", "image": BUSYBOX, "command": ["sleep", "3600"]}),
    );
    assert_eq!(code, 201, "{body}");
    for server in [&a, &b, &c] {
        wait_until("the service is listed through every replica", 30, || {
            let (code, text) = get(server, "/api/v1/services");
            code == 200 && text.contains("\"pinger\"")
        });
    }

    // One dashboard login serves every replica (sessions are in the
    // store), and the services page is the holder's whichever replica the
    // browser asks (the live status is in the holder's memory; the others'
    // supervisors are idle and list nothing).
    let browser: ureq::Agent = ureq::Agent::config_builder()
        .http_status_as_error(false)
        .max_redirects(0)
        .build()
        .into();
    let r = browser
        .post(format!("{}/ui/login", a.url))
        .content_type("application/x-www-form-urlencoded")
        .send(format!("token={TOKEN}"))
        .unwrap();
    assert_eq!(r.status(), 303);
    let cookie = r.headers()["set-cookie"]
        .to_str()
        .unwrap()
        .split(';')
        .next()
        .unwrap()
        .to_owned();
    let services_page = |server: &Server| {
        let mut r = browser
            .get(format!("{}/ui/services", server.url))
            .header("cookie", &cookie)
            .call()
            .unwrap();
        (r.status().as_u16(), r.body_mut().read_to_string().unwrap())
    };
    let mut csrf = String::new();
    for server in [&a, &b, &c] {
        wait_until("every replica shows the holder's services page", 30, || {
            let (code, page) = services_page(server);
            if let Some(at) = page.find(r#"name="csrf" value=""#) {
                let rest = &page[at + r#"name="csrf" value=""#.len()..];
                csrf = rest[..rest.find('"').unwrap()].to_owned();
            }
            code == 200 && page.contains("/ui/services/pinger")
        });
    }
    // A logout at one replica ends the session at all of them.
    let r = browser
        .post(format!("{}/ui/logout", c.url))
        .header("cookie", &cookie)
        .content_type("application/x-www-form-urlencoded")
        .send(format!("csrf={csrf}"))
        .unwrap();
    assert_eq!(r.status(), 303);
    for server in [&a, &b, &c] {
        let r = browser
            .get(format!("{}/ui/", server.url))
            .header("cookie", &cookie)
            .call()
            .unwrap();
        assert_eq!(r.status(), 303, "{}", server.url);
        assert_eq!(r.headers()["location"], "/ui/login", "{}", server.url);
    }

    // Twelve jobs of 4 s each, submitted through one replica.
    let repo = dockerfile_repo(&format!("FROM {BUSYBOX}\n"));
    let (code, body) = post_json(
        &b,
        "/api/v1/profiles",
        &json!({"name": "slow", "validation": {"fast": ["sleep 4; echo done-$((6*7))"]}}),
    );
    assert_eq!(code, 201, "{body}");
    let ids: Vec<u64> = (0..12)
        .map(|_| {
            let (code, body) = post_json(
                &b,
                "/api/v1/jobs",
                &json!({"repository": repo.path(), "commit": "HEAD", "profile": "slow"}),
            );
            assert_eq!(code, 201, "{body}");
            body["id"].as_u64().unwrap()
        })
        .collect();

    // Wait until node-c runs something, then kill it mid-job.
    let mut on_c = Vec::new();
    wait_until("node-c runs a job", 120, || {
        on_c = ids
            .iter()
            .copied()
            .filter(|id| {
                let r = job(&b, *id);
                r["state"] == "running"
                    && leased_by(&r).last().map(String::as_str) == Some("node-c")
            })
            .collect();
        !on_c.is_empty()
    });
    let c_state = c.crash();

    let records = all_succeed_once(&a, &ids);
    let mut nodes_used = std::collections::BTreeSet::new();
    for r in records.values() {
        nodes_used.extend(leased_by(r));
    }
    assert!(
        nodes_used.len() >= 2,
        "the queue was shared: {nodes_used:?}"
    );
    for id in &on_c {
        let r = &records[id];
        let by = leased_by(r);
        assert_eq!(
            by.first().map(String::as_str),
            Some("node-c"),
            "job {id}: {r}"
        );
        assert_ne!(
            by.last().map(String::as_str),
            Some("node-c"),
            "job {id}: {r}"
        );
        assert_eq!(r["attempt"], 2, "job {id}: {r}");
    }

    // node-c comes back: its leftovers (the killed attempts' containers)
    // are removed, the others' containers are left alone.
    let others_before = running_containers_of(&[a.state(), b.state()]);
    let c = replica(&database, "node-c", c_state);
    wait_until("node-c's killed attempts leave no container", 60, || {
        on_c.iter()
            .all(|id| crate::support::serve::job_containers(c.state(), *id).is_empty())
    });
    assert_eq!(
        running_containers_of(&[a.state(), b.state()]),
        others_before
    );
    // Each replica's containers carry its node id (the service's, at least,
    // run where the duties are: on node-a or node-b).
    let mut checked = 0;
    for (server, node) in [(&a, "node-a"), (&b, "node-b")] {
        let engine = crate::support::serve::engine_id_of(server.state());
        for id in crate::support::serve::containers_labelled(&format!("io.slipway.engine={engine}"))
        {
            let out = Command::new("docker")
                .args([
                    "inspect",
                    "-f",
                    "{{index .Config.Labels \"io.slipway.node\"}}",
                    &id,
                ])
                .output()
                .unwrap();
            assert_eq!(String::from_utf8_lossy(&out.stdout).trim(), node, "{id}");
            checked += 1;
        }
    }
    assert!(
        checked >= 2,
        "the service's holder and container carry node labels"
    );
    // Remove the service through a replica (maybe one that does not hold the duties).
    let deleted = crate::support::serve::request(&b, "DELETE", "/api/v1/services/pinger", None);
    assert!(deleted.0 == 204 || deleted.0 == 200, "{deleted:?}");
    drop((a, b, c));
}

/// The ids of the running containers of the engines of these state dirs.
fn running_containers_of(states: &[&std::path::Path]) -> Vec<String> {
    let mut ids = Vec::new();
    for state in states {
        let engine = crate::support::serve::engine_id_of(state);
        let out = Command::new("docker")
            .args(["ps", "-q", "--filter"])
            .arg(format!("label=io.slipway.engine={engine}"))
            .output()
            .unwrap();
        ids.extend(
            String::from_utf8_lossy(&out.stdout)
                .lines()
                .map(str::to_owned),
        );
    }
    ids.sort();
    ids
}

/// Three replicas on one database run every bundled example's full tier
/// (submitted through two of them), and each shows its tests ran.
#[test]
fn three_replicas_run_every_example() {
    let database = TestPostgres::shared().database();
    let servers: Vec<Server> = ["node-a", "node-b", "node-c"]
        .iter()
        .map(|node| replica(&database, node, tempfile::tempdir().unwrap()))
        .collect();
    let examples = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../examples");
    // `tmp-…`: the images and caches of throwaway repositories that
    // `.ci/run` removes before a run.
    let copies = tempfile::Builder::new().prefix("tmp-").tempdir().unwrap();
    let mut jobs = Vec::new();
    for (i, (name, wanted)) in crate::examples::EXPECTED.iter().enumerate() {
        // A copy outside this repository: the job runs it as a snapshot.
        let copy = copies.path().join(name);
        let status = Command::new("cp")
            .arg("-r")
            .arg(examples.join(name))
            .arg(&copy)
            .status()
            .unwrap();
        assert!(status.success());
        let (code, body) = post_json(
            &servers[i % 2],
            "/api/v1/jobs",
            &json!({"repository": copy, "commit": "HEAD", "tier": "full", "timeout_s": 900}),
        );
        assert_eq!(code, 201, "{name}: {body}");
        jobs.push((body["id"].as_u64().unwrap(), *name, *wanted));
    }
    let ids: Vec<u64> = jobs.iter().map(|(id, _, _)| *id).collect();
    let mut nodes = std::collections::BTreeSet::new();
    for r in all_succeed_once(&servers[2], &ids).values() {
        nodes.extend(leased_by(r));
    }
    for (id, name, wanted) in &jobs {
        // Asked of a replica that may not have run it: forwarded to the one
        // whose disk holds the log. (The first expectation is the tests'
        // own output; later ones may be `slipway run`'s plan report.)
        let log = crate::support::serve::job_log(&servers[2], *id);
        let w = wanted[0];
        assert!(log.contains(w), "{name}: missing `{w}` in:\n{log}");
    }
    assert!(
        nodes.len() >= 2,
        "the examples ran on several replicas: {nodes:?}"
    );
}

/// The database stopped for 30 s (five leases) while jobs run on two
/// replicas: `/readyz` says so and recovers by itself; every acknowledged
/// job still ends, once; what leases ran out is retried under a new fence.
#[test]
fn a_database_outage_longer_than_a_lease_loses_nothing_and_runs_nothing_twice() {
    let pg = TestPostgres::start();
    let database = pg.database();
    let a = replica(&database, "node-a", tempfile::tempdir().unwrap());
    let b = replica(&database, "node-b", tempfile::tempdir().unwrap());
    let repo = dockerfile_repo(&format!("FROM {BUSYBOX}\n"));
    let (code, body) = post_json(
        &a,
        "/api/v1/profiles",
        &json!({"name": "slow", "validation": {"fast": ["sleep 3; echo done-$((6*7))"]}}),
    );
    assert_eq!(code, 201, "{body}");
    let ids: Vec<u64> = (0..8)
        .map(|i| {
            let server = if i % 2 == 0 { &a } else { &b };
            let (code, body) = post_json(
                server,
                "/api/v1/jobs",
                &json!({"repository": repo.path(), "commit": "HEAD", "profile": "slow"}),
            );
            assert_eq!(code, 201, "{body}");
            body["id"].as_u64().unwrap()
        })
        .collect();
    wait_until("jobs run", 120, || {
        ids.iter().any(|id| job(&a, *id)["state"] == "running")
    });

    pg.stop();
    let stopped = Instant::now();
    wait_until("readyz reports the database", 30, || {
        let (code, text) = get(&a, "/readyz");
        code == 503 && text.contains("store")
    });
    // A 30 s partition, five leases long.
    std::thread::sleep(Duration::from_secs(30).saturating_sub(stopped.elapsed()));
    pg.resume();
    wait_until("readyz recovers by itself", 60, || {
        get(&a, "/readyz").0 == 200
    });
    wait_until("readyz recovers on the other replica", 60, || {
        get(&b, "/readyz").0 == 200
    });

    all_succeed_once(&b, &ids);
}

/// A database a newer Slipway wrote is refused, naming both versions;
/// replicas starting together apply each migration once.
#[test]
fn a_newer_schema_is_refused_and_migrations_run_once() {
    use slipway::queue::PostgresStore;
    use slipway::queue::postgres_store::schema::SCHEMA_VERSION;
    let pg = TestPostgres::shared();
    let database = pg.database();
    let rt = tokio::runtime::Runtime::new().unwrap();
    rt.block_on(async {
        let opens: Vec<_> = (0..4)
            .map(|_| {
                let url = database.clone();
                tokio::spawn(async move {
                    PostgresStore::open(&url, slipway::job::SpecPolicy::default()).await
                })
            })
            .collect();
        for open in opens {
            let store = open.await.unwrap().unwrap();
            assert_eq!(store.schema_version().await.unwrap(), SCHEMA_VERSION);
        }
    });
    let name = database.rsplit('/').next().unwrap();
    assert_eq!(
        pg.psql(name, "SELECT count(*) FROM slipway_schema"),
        SCHEMA_VERSION.to_string()
    );
    // `doctor` reads the store without changing it.
    let doctor = |expect: &str| {
        let state = tempfile::tempdir().unwrap();
        let out = slipway(state.path(), "http://127.0.0.1:1")
            .args(["doctor", "--json"])
            .env("SLIPWAY_STORE", &database)
            .output()
            .unwrap();
        let checks: Value = serde_json::from_slice(&out.stdout)
            .unwrap_or_else(|e| panic!("{e}: {}", String::from_utf8_lossy(&out.stderr)));
        let schema = checks
            .as_array()
            .unwrap()
            .iter()
            .find(|c| c["check"] == "store schema")
            .cloned()
            .unwrap_or_else(|| panic!("no store schema check: {checks}"));
        assert!(
            schema["detail"].as_str().unwrap().contains(expect),
            "{schema}"
        );
        schema["status"].as_str().unwrap().to_owned()
    };
    assert_eq!(doctor("current"), "ok");
    pg.psql(
        name,
        &format!(
            "INSERT INTO slipway_schema VALUES ({}, 0)",
            SCHEMA_VERSION + 1
        ),
    );
    assert_eq!(doctor("newer Slipway"), "fail");
    let refused = rt
        .block_on(PostgresStore::open(
            &database,
            slipway::job::SpecPolicy::default(),
        ))
        .err()
        .expect("a newer schema is refused")
        .to_string();
    assert!(
        refused.contains(&format!("schema {}", SCHEMA_VERSION + 1))
            && refused.contains(&format!("knows up to {SCHEMA_VERSION}")),
        "{refused}"
    );
    assert!(!refused.contains("password"), "{refused}");
}

/// `slipway admin export` of a redb state directory, `import` into
/// PostgreSQL: the history moves; a line that is not a record is refused
/// with its number, and nothing is imported.
#[test]
fn admin_export_and_import_move_a_redb_store_to_postgres() {
    use slipway::queue::{JobQueue, PostgresStore, RedbStore};
    let state = tempfile::tempdir().unwrap();
    let rt = tokio::runtime::Runtime::new().unwrap();
    let ids: Vec<u64> = rt.block_on(async {
        let store = RedbStore::open(
            &state.path().join("store.redb"),
            slipway::job::SpecPolicy::default(),
        )
        .unwrap();
        let mut ids = Vec::new();
        for _ in 0..3 {
            ids.push(
                store
                    .submit(crate::support::spec("succeed"))
                    .await
                    .unwrap()
                    .record
                    .id,
            );
        }
        ids
    });
    // The redb file is free once its writer thread has let go.
    let dump = state.path().join("dump.jsonl");
    let mut exported = None;
    for _ in 0..50 {
        let out = slipway(state.path(), "http://127.0.0.1:1")
            .args(["admin", "export", "--out"])
            .arg(&dump)
            .output()
            .unwrap();
        if out.status.success() {
            exported = Some(String::from_utf8_lossy(&out.stderr).into_owned());
            break;
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    let exported = exported.expect("export succeeds");
    assert!(exported.contains("exported"), "{exported}");
    let database = TestPostgres::shared().database();
    let import = |file: &std::path::Path| {
        slipway(state.path(), "http://127.0.0.1:1")
            .args(["admin", "import"])
            .arg(file)
            .env("SLIPWAY_STORE", &database)
            .output()
            .unwrap()
    };
    let bad = state.path().join("bad.jsonl");
    let mut text = std::fs::read_to_string(&dump).unwrap();
    text.push_str("not json\n");
    std::fs::write(&bad, text).unwrap();
    let out = import(&bad);
    let said = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success(), "{said}");
    let lines = std::fs::read_to_string(&dump).unwrap().lines().count();
    assert!(said.contains(&format!("line {}", lines + 1)), "{said}");
    let out = import(&dump);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    rt.block_on(async {
        let pg = PostgresStore::open(&database, slipway::job::SpecPolicy::default())
            .await
            .unwrap();
        for id in &ids {
            assert!(pg.get(*id).await.unwrap().is_some(), "job {id}");
        }
    });
}

/// Replica `node` on `database` terminating TLS with `certs` (`cert.pem`,
/// `key.pem`), advertising `https://localhost:<port>`, trusting the
/// authorities in `ca_bundle` (none: the public roots only). Its port.
fn tls_replica(
    database: &str,
    node: &str,
    certs: &std::path::Path,
    ca_bundle: Option<&std::path::Path>,
    root: &rustls::pki_types::CertificateDer<'static>,
) -> (Server, u16) {
    let port = free_port();
    let url = format!("https://localhost:{port}");
    let state = tempfile::tempdir().unwrap();
    let mut cmd = slipway(state.path(), &url);
    cmd.arg("serve")
        .env("SLIPWAY_STORE", database)
        .env("SLIPWAY_NODE_ID", node)
        .env("SLIPWAY_ADVERTISE_URL", &url)
        .env("SLIPWAY_LISTEN", format!("127.0.0.1:{port}"))
        .env("SLIPWAY_TLS__CERT", certs.join("cert.pem"))
        .env("SLIPWAY_TLS__KEY", certs.join("key.pem"))
        .stdout(Stdio::null())
        .stderr(std::fs::File::create(state.path().join("serve.log")).unwrap());
    if let Some(bundle) = ca_bundle {
        cmd.env("SLIPWAY_CA_BUNDLE", bundle);
    }
    let server = Server::adopt(cmd.spawn().unwrap(), state, url);
    wait_until("a TLS replica is ready", 60, || {
        crate::cli_serve_tls::https_get(port, root, "/readyz", None)
            .is_ok_and(|(code, _)| code == 200)
    });
    (server, port)
}

/// Replicas that terminate TLS advertise `https://` URLs and forward to
/// each other over HTTPS, verifying the holder's certificate with the
/// authorities in `ca_bundle`; a replica that does not trust that
/// authority refuses to forward, and says why.
#[test]
fn replicas_forward_to_each_other_over_verified_https() {
    let ca = crate::cli_serve_tls::Ca::new("Slipway test replicas CA");
    let (chain, key) = ca.issue();
    let root = ca.root();
    let certs = tempfile::tempdir().unwrap();
    std::fs::write(certs.path().join("cert.pem"), chain).unwrap();
    std::fs::write(certs.path().join("key.pem"), key).unwrap();
    std::fs::write(certs.path().join("ca.pem"), ca.pem()).unwrap();
    let bundle = certs.path().join("ca.pem");

    let pg = TestPostgres::shared();
    let database = pg.database();
    let (_a, a) = tls_replica(&database, "tls-a", certs.path(), Some(&bundle), &root);
    let (_b, b) = tls_replica(&database, "tls-b", certs.path(), Some(&bundle), &root);
    // One of the two holds the duties; the other forwards `/api/v1/services`
    // to it over HTTPS. Both answer the holder's list.
    for port in [a, b] {
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            let answer =
                crate::cli_serve_tls::https_get(port, &root, "/api/v1/services", Some(TOKEN));
            if answer
                .as_ref()
                .is_ok_and(|(code, body)| *code == 200 && body.contains(r#""services":[]"#))
            {
                break;
            }
            assert!(
                Instant::now() < deadline,
                "no services list through the replica on port {port}: {answer:?}"
            );
            std::thread::sleep(Duration::from_millis(200));
        }
    }
    // A third replica, which trusts only the public roots, cannot verify
    // the holder (it holds no duties: the first two took them).
    let (_c, c) = tls_replica(&database, "tls-c", certs.path(), None, &root);
    let (code, body) =
        crate::cli_serve_tls::https_get(c, &root, "/api/v1/services", Some(TOKEN)).unwrap();
    assert_eq!(code, 502, "{body}");
    assert!(
        body.contains("owner_unreachable") && body.to_lowercase().contains("certificate"),
        "{body}"
    );
}

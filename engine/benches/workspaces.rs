//! Workspace benchmarks against the real Docker engine; prints its figures.
//! `cargo bench -p slipway --bench workspaces`.
//!
//! - validate overhead: a workspace whose fast tier is one step, `true`;
//!   the engine's whole validate call (diff hash, exec, findings, history
//!   persisted) against a raw Docker exec of `sh -c true` in the same
//!   container, interleaved, in the same run;
//! - create on a cache hit (image built, nothing to build) → `ready`;
//! - reset of a workspace with PostgreSQL and Redis (the services example),
//!   against the services' own reset commands by raw exec, interleaved;
//! - the engine's memory with 20 workspaces open.

mod common;

use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, Instant};

use slipway::job::{SpecPolicy, Tier};
use slipway::profile::Profile;
use slipway::queue::ProfileStore;
use slipway::queue::RedbStore;
use slipway::queue::WorkspaceStore;
use slipway::workspace::{WorkspaceRequest, WorkspaceState};
use slipway::workspaces::{WorkspaceSettings, Workspaces};

fn percentile(sorted: &[f64], p: f64) -> f64 {
    sorted[((sorted.len() as f64 - 1.0) * p).round() as usize]
}

fn rss_mib() -> f64 {
    let status = std::fs::read_to_string("/proc/self/status").unwrap();
    let kb: f64 = status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.split_whitespace().next()?.parse().ok())
        .unwrap();
    kb / 1024.0
}

async fn ready(ws: &Workspaces, id: &str) {
    loop {
        let r = ws.get(id).await.unwrap();
        match r.state {
            WorkspaceState::Ready => return,
            WorkspaceState::Preparing => tokio::time::sleep(Duration::from_millis(20)).await,
            other => panic!("workspace {id} is {other:?}: {:?}", r.reason),
        }
    }
}

fn request(repo: &Path, profile: &str) -> WorkspaceRequest {
    WorkspaceRequest::from_json(serde_json::json!({
        "repository": repo.to_str().unwrap(), "commit": "HEAD", "profile": profile,
    }))
    .unwrap()
}

fn main() {
    let rt = tokio::runtime::Runtime::new().unwrap();
    rt.block_on(async {
        let state = tempfile::tempdir().unwrap();
        let docker = slipway::runner::connect().await.expect("Docker (bash scripts/setup.sh)");
        let policy = SpecPolicy {
            allow_local_paths: true,
            ..SpecPolicy::default()
        };
        let store = Arc::new(RedbStore::open(&state.path().join("store.redb"), policy.clone()).unwrap());
        let executor = common::docker_executor(
            &docker,
            state.path(),
            store.clone(),
            format!("bench-ws-{}", std::process::id()),
        );
        let ws = Workspaces::new(
            executor.runner(),
            WorkspaceSettings {
                max_open: 64,
                max_full_runs: 1000,
                step_timeout: Duration::from_secs(60),
                output_cap: 64 * 1024,
                logs_dir: state.path().join("workspace-logs"),
                policy,
            },
        )
        .await;

        // A busybox repository whose fast tier is `true`.
        let repo = tempfile::tempdir().unwrap();
        std::fs::write(repo.path().join("Dockerfile"), "FROM slipway-test/busybox:1\nWORKDIR /workspace\n").unwrap();
        std::fs::write(repo.path().join("app.txt"), "app\n").unwrap();
        let profile: Profile = serde_json::from_value(serde_json::json!({
            "name": "true", "validation": {"fast": ["true"]},
        }))
        .unwrap();
        store.put_profile(profile, false).await.unwrap();

        // Create on a cache hit: the first create builds the image.
        let first = ws.create(request(repo.path(), "true")).await.unwrap();
        ready(&ws, &first.id).await;
        let mut creates = Vec::new();
        let mut ids = vec![first.id.clone()];
        for _ in 0..5 {
            let t = Instant::now();
            let r = ws.create(request(repo.path(), "true")).await.unwrap();
            ready(&ws, &r.id).await;
            creates.push(t.elapsed().as_secs_f64() * 1000.0);
            ids.push(r.id);
        }
        creates.sort_by(f64::total_cmp);
        println!(
            "create on a cache hit → ready (busybox image, no services), 5 runs: p50 {:.0} ms, max {:.0} ms",
            percentile(&creates, 0.5),
            creates[creates.len() - 1]
        );

        // Validate overhead against a raw exec, interleaved.
        let container = {
            let labels = [format!("io.slipway.workspace={}", first.id), "io.slipway.role=workspace".into()];
            docker.list_containers(&labels).await.unwrap()[0].id.clone()
        };
        let argv = ["sh".to_owned(), "-c".to_owned(), "true".to_owned()];
        let (mut engine, mut raw) = (Vec::new(), Vec::new());
        let samples = 60;
        for i in 0..samples + 5 {
            let t = Instant::now();
            let result = ws.validate(&first.id, Tier::Fast).await.unwrap();
            let e = t.elapsed().as_secs_f64() * 1000.0;
            assert!(result.ok);
            let t = Instant::now();
            let c = slipway::runner::exec::capture(&docker, &container, &argv, Some("1000:1000"), Duration::from_secs(10), 1024)
                .await
                .unwrap();
            let r = t.elapsed().as_secs_f64() * 1000.0;
            assert_eq!(c.exit_code, Some(0));
            if i >= 5 {
                engine.push(e);
                raw.push(r);
            }
        }
        engine.sort_by(f64::total_cmp);
        raw.sort_by(f64::total_cmp);
        println!(
            "validate (fast tier = `true`), {samples} interleaved samples: engine p50 {:.1} ms / p99 {:.1} ms; raw docker exec p50 {:.1} ms / p99 {:.1} ms; ratio p50 {:.2}× (target ≤ 1.1×)",
            percentile(&engine, 0.5),
            percentile(&engine, 0.99),
            percentile(&raw, 0.5),
            percentile(&raw, 0.99),
            percentile(&engine, 0.5) / percentile(&raw, 0.5)
        );

        // Memory with 20 open workspaces.
        let before = rss_mib();
        while ids.len() < 20 {
            let r = ws.create(request(repo.path(), "true")).await.unwrap();
            ready(&ws, &r.id).await;
            ids.push(r.id);
        }
        println!(
            "engine memory with {} workspaces open: RSS {:.1} MiB (it was {:.1} MiB with 6; bench process, plugins loaded)",
            ids.len(),
            rss_mib(),
            before
        );
        for id in &ids {
            ws.delete(id).await.unwrap();
        }

        // Reset with PostgreSQL and Redis: the services example.
        let example = Path::new(env!("CARGO_MANIFEST_DIR")).join("../examples/services-app").canonicalize().unwrap();
        let table: toml::Table = toml::from_str(&std::fs::read_to_string(example.join("slipway.toml")).unwrap()).unwrap();
        let mut value = serde_json::to_value(table).unwrap();
        value["name"] = "services".into();
        store.put_profile(serde_json::from_value(value).unwrap(), false).await.unwrap();
        let r = ws.create(request(&example, "services")).await.unwrap();
        ready(&ws, &r.id).await;
        // The anchor, interleaved: the services' own reset commands by raw
        // exec in the same containers; what is left is the engine's part
        // (git reset and clean, bytecode sweep, hand-over, diff refresh).
        let services = store.get_workspace_runtime(&r.id).await.unwrap().unwrap().services;
        let (mut resets, mut raw) = (Vec::new(), Vec::new());
        for _ in 0..10 {
            let result = ws.validate(&r.id, Tier::Full).await.unwrap();
            assert!(result.ok, "{result:?}");
            let t = Instant::now();
            ws.reset(&r.id).await.unwrap();
            resets.push(t.elapsed().as_secs_f64() * 1000.0);
            let t = Instant::now();
            for s in &services {
                let argv = s.reset.as_ref().expect("both services have a reset command");
                let c = slipway::runner::exec::capture(&docker, &s.container, argv, None, Duration::from_secs(60), 64 * 1024)
                    .await
                    .unwrap();
                assert_eq!(c.exit_code, Some(0), "{}: {}", s.name, c.stderr);
            }
            raw.push(t.elapsed().as_secs_f64() * 1000.0);
        }
        resets.sort_by(f64::total_cmp);
        raw.sort_by(f64::total_cmp);
        println!(
            "reset with PostgreSQL (template database) and Redis (reload), 10 interleaved runs: engine p50 {:.0} ms / max {:.0} ms; the services' reset commands by raw exec p50 {:.0} ms / max {:.0} ms; engine's own part p50 {:.0} ms",
            percentile(&resets, 0.5),
            resets[resets.len() - 1],
            percentile(&raw, 0.5),
            raw[raw.len() - 1],
            percentile(&resets, 0.5) - percentile(&raw, 0.5)
        );
        ws.delete(&r.id).await.unwrap();
    });
}

//! The plugin host against real compiled plugins: the hostile test plugin
//! (`plugins/testdata/hostile`), the bundled `tcp` plugin, and broken
//! registry entries built from them. Every hostile case is followed by a call
//! to a good plugin, which must still work.

use std::io::ErrorKind;
use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::sync::{Arc, OnceLock};

use slipway::plugins::bindings::{ProbeAction, Service};
use slipway::plugins::compile_cache::CacheOutcome;
use slipway::plugins::registry::Trust;
use slipway::plugins::sandbox::SandboxOptions;
use slipway::plugins::{
    CallError, Candidate, LimitsPolicy, LoadError, PluginSandbox, Registry, Status, World,
};

const TESTDATA_WASM: &str = env!("TEST_PLUGINS_WASM_DIR");

fn wasm(name: &str) -> Vec<u8> {
    let path = Path::new(TESTDATA_WASM).join(format!("{name}.wasm"));
    std::fs::read(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

fn source_manifest(dir: &str) -> String {
    let path = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../plugins")
        .join(dir)
        .join("plugin.toml");
    std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

fn sha256(bytes: &[u8]) -> String {
    use sha2::Digest;
    hex::encode(sha2::Sha256::digest(bytes))
}

/// The engine's limits as an operator who raised the default memory cap
/// (the hostile plugin asks for 256 MiB: a manifest alone may not).
fn operator_policy() -> LimitsPolicy {
    let mut policy = LimitsPolicy::default();
    policy.defaults.memory_mib = 256;
    policy
}

/// One sandbox for the whole test binary, with a cache shared across runs.
fn sandbox() -> Arc<PluginSandbox> {
    static SANDBOX: OnceLock<Arc<PluginSandbox>> = OnceLock::new();
    SANDBOX
        .get_or_init(|| {
            let cache_dir = Some(PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join("plugin-cache"));
            Arc::new(
                PluginSandbox::new(SandboxOptions {
                    cache_dir,
                    policy: operator_policy(),
                    pooling: true,
                    single_caller: false,
                })
                .unwrap(),
            )
        })
        .clone()
}

/// Write `<dir>/<name>/<version>/` with `manifest` (sha256 prepended unless `None`).
fn install(dir: &Path, name: &str, version: &str, manifest: &str, wasm: &[u8], sha: Option<&str>) {
    let d = dir.join(name).join(version);
    std::fs::create_dir_all(&d).unwrap();
    let text = match sha {
        Some(sha) => format!("sha256 = \"{sha}\"\n{manifest}"),
        None => manifest.to_owned(),
    };
    std::fs::write(d.join("plugin.toml"), text).unwrap();
    std::fs::write(d.join("plugin.wasm"), wasm).unwrap();
}

/// A plugins directory with the hostile plugin installed.
fn hostile_dir() -> tempfile::TempDir {
    let dir = tempfile::tempdir().unwrap();
    let bytes = wasm("hostile");
    install(
        dir.path(),
        "hostile",
        "0.1.0",
        &source_manifest("testdata/hostile"),
        &bytes,
        Some(&sha256(&bytes)),
    );
    dir
}

fn hostile_registry() -> (tempfile::TempDir, Registry) {
    let dir = hostile_dir();
    let registry = Registry::load(sandbox(), true, &[dir.path().to_path_buf()]);
    (dir, registry)
}

fn repo_with(mode: &str) -> tempfile::TempDir {
    let repo = tempfile::tempdir().unwrap();
    std::fs::write(repo.path().join(".hostile"), format!("{mode}\n")).unwrap();
    repo
}

// The sandbox's own error type, as the engine receives it.
#[allow(clippy::result_large_err)]
fn detect(registry: &Registry, repo: &Path) -> Result<Option<String>, CallError> {
    let sandbox = registry.sandbox();
    let plugin = registry
        .get("hostile")
        .expect("hostile is active")
        .prepare(sandbox)
        .unwrap();
    sandbox
        .detect(&plugin, repo, &[])
        .map(|d| d.map(|d| d.evidence[0].note.clone()))
}

/// A service as a readiness plugin sees it: PostgreSQL on 5432.
fn postgres_service() -> Service {
    Service {
        name: "db".into(),
        image: "postgres".into(),
        env: vec![],
        ports: vec![5432],
        options: vec![],
    }
}

/// A good plugin still answers right after a hostile call.
fn assert_good_plugins_still_work(registry: &Registry) {
    let sandbox = registry.sandbox();
    let tcp = registry
        .get("tcp")
        .expect("bundled tcp plugin")
        .prepare(sandbox)
        .unwrap();
    let service = postgres_service();
    let probe = sandbox
        .probe(&tcp, &service)
        .expect("tcp probe after a hostile call");
    assert!(matches!(probe.action, ProbeAction::Tcp(5432)));
    let calm = tempfile::tempdir().unwrap();
    assert_eq!(
        detect(registry, calm.path()).unwrap().as_deref(),
        Some("behaving")
    );
}

fn reported_message(e: &CallError) -> String {
    match e {
        CallError::Reported { error, .. } => error.describe(),
        other => panic!("expected the plugin to report the refusal, got: {other}"),
    }
}

#[test]
fn runaway_plugin_is_stopped_within_its_budget() {
    let (_dir, registry) = hostile_registry();
    let err = detect(&registry, repo_with("loop").path()).unwrap_err();
    match &err {
        CallError::CpuLimit {
            plugin,
            limit_ms,
            elapsed_ms,
        } => {
            assert_eq!(plugin.to_string(), "hostile@0.1.0");
            assert_eq!(*limit_ms, 300);
            // The deadline counts 5 ms epoch ticks; the first tick after
            // the start can come up to one tick early.
            assert!(
                (295..2_000).contains(elapsed_ms),
                "stopped after {elapsed_ms} ms"
            );
        }
        other => panic!("expected a CPU limit, got {other}"),
    }
    assert!(
        err.to_string()
            .contains("hostile@0.1.0 ran past its time budget of 300 ms"),
        "{err}"
    );
    let mut metrics = String::new();
    registry.sandbox().render_metrics(&mut metrics);
    assert!(
        metrics.contains("slipway_plugin_failures_total{kind=\"cpu_limit\"}"),
        "the stop is counted by kind: {metrics}"
    );
    assert_good_plugins_still_work(&registry);
}

#[test]
fn gigabyte_allocation_hits_the_memory_cap() {
    let (_dir, registry) = hostile_registry();
    let err = detect(&registry, repo_with("alloc").path()).unwrap_err();
    assert!(
        matches!(err, CallError::MemoryLimit { limit_mib: 256, .. }),
        "{err}"
    );
    assert!(
        err.to_string().contains("over its limit of 256 MiB"),
        "{err}"
    );
    assert_good_plugins_still_work(&registry);
}

#[test]
fn writing_into_the_repo_is_refused() {
    let (_dir, registry) = hostile_registry();
    let repo = repo_with("write");
    let err = detect(&registry, repo.path()).unwrap_err();
    assert!(
        reported_message(&err).contains("write into the repo: refused"),
        "{err}"
    );
    assert!(
        !repo.path().join("pwned").exists(),
        "the plugin wrote into the repository"
    );
    assert_good_plugins_still_work(&registry);
}

#[test]
fn reading_outside_the_repo_is_refused() {
    let (_dir, registry) = hostile_registry();
    let repo = repo_with("read-outside");
    std::os::unix::fs::symlink("/etc/passwd", repo.path().join("escape")).unwrap();
    let err = detect(&registry, repo.path()).unwrap_err();
    let message = reported_message(&err);
    assert!(message.contains("read outside: refused"), "{message}");
    assert!(message.contains("symlink:"), "{message}");
    assert_good_plugins_still_work(&registry);
}

#[test]
fn opening_a_socket_is_refused() {
    let (_dir, registry) = hostile_registry();
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    listener.set_nonblocking(true).unwrap();
    let port = listener.local_addr().unwrap().port();
    let err = detect(&registry, repo_with(&format!("socket {port}")).path()).unwrap_err();
    assert!(
        reported_message(&err).contains("open a socket: refused"),
        "{err}"
    );
    assert_eq!(
        listener.accept().map(|_| ()).unwrap_err().kind(),
        ErrorKind::WouldBlock,
        "a connection got through"
    );
    assert_good_plugins_still_work(&registry);
}

/// 16 MiB, sixteen times the output cap: refused by size, never held.
/// `detect` in hostile `mode` is refused as an oversized result, and good
/// plugins still work after it.
fn assert_refused_as_oversized(mode: &str) {
    let (_dir, registry) = hostile_registry();
    let err = detect(&registry, repo_with(mode).path()).unwrap_err();
    assert!(
        matches!(
            err,
            CallError::OutputTooLarge {
                function: "detect",
                limit_kib: 1024,
                ..
            }
        ),
        "{mode}: {err}"
    );
    assert_good_plugins_still_work(&registry);
}

#[test]
fn an_oversized_result_is_refused() {
    assert_refused_as_oversized("big-string");
}

/// 4,096 notes aliasing one 1 MiB string: 64 KiB of guest memory, 4 GiB
/// if the host copied each. The copy budget (4x the 1 MiB output limit)
/// stops the lifting after a few MiB, and the call reads as an oversized
/// result, not as a crash (wasmtime's own default let 128 MiB through
/// before failing the call as a trap).
#[test]
fn aliased_strings_are_refused_before_the_host_copies_them() {
    assert_refused_as_oversized("alias");
}

#[test]
fn panic_is_a_crash_with_the_panic_message() {
    let (_dir, registry) = hostile_registry();
    let err = detect(&registry, repo_with("panic").path()).unwrap_err();
    assert!(matches!(err, CallError::Trapped { .. }), "{err}");
    assert!(
        err.to_string()
            .contains("hostile plugin panicked on purpose"),
        "{err}"
    );
    assert_good_plugins_still_work(&registry);
}

#[test]
fn garbage_result_is_invalid_output() {
    let (_dir, registry) = hostile_registry();
    let err = detect(&registry, repo_with("garbage").path()).unwrap_err();
    assert!(
        err.to_string().contains(
            "returned invalid data from `detect`: confidence 250 is out of range 0..=100"
        ),
        "{err}"
    );
    assert_good_plugins_still_work(&registry);
}

#[test]
fn floods_of_logs_and_stdout_are_capped_not_fatal() {
    let (_dir, registry) = hostile_registry();
    assert_eq!(
        detect(&registry, repo_with("log-flood").path())
            .unwrap()
            .as_deref(),
        Some("logged a lot")
    );
    assert_eq!(
        detect(&registry, repo_with("stdout-flood").path())
            .unwrap()
            .as_deref(),
        Some("printed a lot")
    );
}

#[test]
fn every_call_gets_a_fresh_instance() {
    let (_dir, registry) = hostile_registry();
    let repo = repo_with("count");
    for _ in 0..3 {
        assert_eq!(
            detect(&registry, repo.path()).unwrap().as_deref(),
            Some("call number 1")
        );
    }
}

#[test]
fn calling_a_plugin_through_the_wrong_world_is_an_error() {
    let (_dir, registry) = hostile_registry();
    let sandbox = registry.sandbox();
    let tcp = registry.get("tcp").unwrap().prepare(sandbox).unwrap();
    let err = sandbox.detect(&tcp, Path::new("/"), &[]).unwrap_err();
    assert_eq!(
        err.to_string(),
        "plugin tcp@1.0.0 is a readiness plugin, not a ecosystem plugin"
    );
}

/// Each broken registry entry is rejected with its own reason; the good
/// entries beside them load, and the highest working version wins.
#[test]
fn registry_rejects_each_bad_plugin_with_its_reason() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let hostile = wasm("hostile");
    let tcp = wasm("tcp");
    let core = std::fs::read(
        Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/testdata/core-module.wasm"),
    )
    .unwrap();
    let junk =
        std::fs::read(Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/testdata/garbage.wasm"))
            .unwrap();
    let manifest = |name: &str, version: &str, world: &str| {
        format!(
            "name = \"{name}\"\nversion = \"{version}\"\nworld = \"{world}\"\napi = \"^1.0\"\ndescription = \"test\"\n"
        )
    };
    install(
        d,
        "good",
        "0.1.0",
        &manifest("good", "0.1.0", "ecosystem"),
        &hostile,
        Some(&sha256(&hostile)),
    );
    install(
        d,
        "good",
        "0.2.0",
        &manifest("good", "0.2.0", "ecosystem"),
        &hostile,
        Some(&sha256(&hostile)),
    );
    install(
        d,
        "good",
        "0.3.0",
        &manifest("good", "0.3.0", "ecosystem"),
        &core,
        Some(&sha256(&core)),
    );
    install(
        d,
        "core",
        "1.0.0",
        &manifest("core", "1.0.0", "ecosystem"),
        &core,
        Some(&sha256(&core)),
    );
    install(
        d,
        "junk",
        "1.0.0",
        &manifest("junk", "1.0.0", "ecosystem"),
        &junk,
        Some(&sha256(&junk)),
    );
    install(
        d,
        "wrongworld",
        "1.0.0",
        &manifest("wrongworld", "1.0.0", "ecosystem"),
        &tcp,
        Some(&sha256(&tcp)),
    );
    install(
        d,
        "nofield",
        "1.0.0",
        "name = \"nofield\"\nversion = \"1.0.0\"\nworld = \"ecosystem\"\ndescription = \"x\"\n",
        &tcp,
        Some(&sha256(&tcp)),
    );
    install(
        d,
        "badworld",
        "1.0.0",
        &manifest("badworld", "1.0.0", "ecosytem"),
        &tcp,
        Some(&sha256(&tcp)),
    );
    install(
        d,
        "tampered",
        "1.0.0",
        &manifest("tampered", "1.0.0", "readiness"),
        &tcp,
        Some(&"0".repeat(64)),
    );
    install(
        d,
        "unhashed",
        "1.0.0",
        &manifest("unhashed", "1.0.0", "readiness"),
        &tcp,
        None,
    );
    install(
        d,
        "future",
        "1.0.0",
        &manifest("future", "1.0.0", "readiness").replace("^1.0", "^2.0"),
        &tcp,
        Some(&sha256(&tcp)),
    );
    install(
        d,
        "greedy",
        "1.0.0",
        &format!(
            "{}[limits]\nmemory-mib = 4096\n",
            manifest("greedy", "1.0.0", "readiness")
        ),
        &tcp,
        Some(&sha256(&tcp)),
    );
    install(
        d,
        "misfiled",
        "1.0.0",
        &manifest("other-name", "1.0.0", "readiness"),
        &tcp,
        Some(&sha256(&tcp)),
    );

    let mut registry = Registry::load(sandbox(), false, &[d.to_path_buf()]);
    registry.prepare_all();
    let reason = |name: &str, version: &str| -> String {
        let c = registry
            .candidates()
            .iter()
            .find(|c| {
                c.name == name
                    && c.version()
                        .map(|v| v.to_string())
                        .as_deref()
                        .unwrap_or(version)
                        == version
            })
            .unwrap_or_else(|| panic!("no candidate {name}@{version}"));
        match &c.status {
            Status::Rejected(e) => e.to_string(),
            other => panic!("{name}@{version} should be rejected, is {other:?}"),
        }
    };
    assert!(
        reason("core", "1.0.0")
            .contains("not a WebAssembly component: it is a core WebAssembly module")
    );
    assert!(reason("junk", "1.0.0").contains("does not start with the WebAssembly magic bytes"));
    assert!(reason("good", "0.3.0").contains("core WebAssembly module"));
    assert!(
        reason("wrongworld", "1.0.0").contains(
            "manifest says world `ecosystem` but the component is a `readiness` component"
        )
    );
    assert!(reason("nofield", "1.0.0").contains("missing field `api`"));
    assert!(reason("badworld", "1.0.0").contains("field `world`: unknown world `ecosytem`"));
    assert!(reason("tampered", "1.0.0").starts_with("sha256 mismatch: the manifest says 0000"));
    assert!(reason("unhashed", "1.0.0").starts_with("no sha256 in the manifest"));
    assert!(
        reason("future", "1.0.0").contains("needs slipway:plugin >=2.0.0, <3.0.0")
            || reason("future", "1.0.0").contains("needs slipway:plugin ^2.0")
    );
    assert!(
        reason("greedy", "1.0.0")
            .contains("`limits.memory-mib` = 4096 is above the engine's default of 256: a manifest may only lower its limits")
    );
    assert!(
        reason("other-name", "1.0.0")
            .contains("name `other-name` does not match its folder `misfiled`")
    );

    let good: Vec<(String, String)> = registry
        .candidates()
        .iter()
        .filter(|c| c.name == "good")
        .map(|c| {
            (
                c.version().unwrap().to_string(),
                format!("{:?}", c.status)
                    .split([' ', '(', '{'])
                    .next()
                    .unwrap()
                    .to_owned(),
            )
        })
        .collect();
    assert_eq!(
        good,
        vec![
            ("0.3.0".into(), "Rejected".into()),
            ("0.2.0".into(), "Active".into()),
            ("0.1.0".into(), "Shadowed".into())
        ]
    );
    let active = registry.get("good").unwrap();
    let prepared = active.prepare(registry.sandbox()).unwrap();
    let calm = tempfile::tempdir().unwrap();
    assert!(
        registry
            .sandbox()
            .detect(&prepared, calm.path(), &[])
            .unwrap()
            .is_some()
    );
    assert_eq!(registry.active(World::Ecosystem).count(), 1);
}

#[test]
fn missing_plugins_directory_is_reported_not_fatal() {
    let registry = Registry::load(
        sandbox(),
        true,
        &[PathBuf::from("/nonexistent/slipway-plugins")],
    );
    assert_eq!(registry.source_problems.len(), 1);
    assert!(registry.source_problems[0].contains("/nonexistent/slipway-plugins"));
    assert!(registry.get("tcp").is_some(), "bundled plugins still load");
}

#[test]
fn precompiled_cache_survives_a_restart_and_replaces_corrupt_files() {
    let cache = tempfile::tempdir().unwrap();
    let options = SandboxOptions {
        cache_dir: Some(cache.path().to_path_buf()),
        policy: LimitsPolicy::default(),
        pooling: true,
        single_caller: false,
    };
    let outcome = || {
        let sandbox = Arc::new(PluginSandbox::new(options.clone()).unwrap());
        let registry = Registry::load(sandbox.clone(), true, &[]);
        registry
            .get("tcp")
            .unwrap()
            .prepare(&sandbox)
            .unwrap()
            .compile
    };
    assert_eq!(outcome(), CacheOutcome::Compiled);
    assert_eq!(
        outcome(),
        CacheOutcome::Disk,
        "a second engine loads the precompiled file"
    );
    let files: Vec<PathBuf> = std::fs::read_dir(cache.path())
        .unwrap()
        .map(|e| e.unwrap().path())
        .collect();
    assert_eq!(files.len(), 1);
    std::fs::write(&files[0], b"truncated").unwrap();
    assert_eq!(
        outcome(),
        CacheOutcome::Compiled,
        "a corrupt artifact is recompiled, not trusted"
    );
    assert_eq!(outcome(), CacheOutcome::Disk);
}

#[test]
fn from_files_accepts_a_source_manifest_without_sha256() {
    let dir = tempfile::tempdir().unwrap();
    let bytes = wasm("tcp");
    std::fs::write(dir.path().join("plugin.toml"), source_manifest("tcp")).unwrap();
    std::fs::write(dir.path().join("tcp.wasm"), &bytes).unwrap();
    let c = Candidate::from_files(
        &dir.path().join("plugin.toml"),
        &dir.path().join("tcp.wasm"),
        false,
        &sandbox(),
    );
    assert!(matches!(c.status, Status::Active), "{:?}", c.status);
    assert_eq!(c.sha256, sha256(&bytes));
    let installed = Candidate::from_files(
        &dir.path().join("plugin.toml"),
        &dir.path().join("tcp.wasm"),
        true,
        &sandbox(),
    );
    assert!(matches!(
        installed.status,
        Status::Rejected(LoadError::MissingHash)
    ));
}

/// The hostile plugin's manifest under another name and version.
fn hostile_as(name: &str, version: &str) -> String {
    source_manifest("testdata/hostile")
        .replace("name = \"hostile\"", &format!("name = \"{name}\""))
        .replace("version = \"0.1.0\"", &format!("version = \"{version}\""))
}

#[test]
fn bundled_names_are_reserved_across_worlds_unless_the_configuration_replaces_them() {
    let dir = tempfile::tempdir().unwrap();
    let bytes = wasm("hostile");
    for name in ["node", "postgres"] {
        install(
            dir.path(),
            name,
            "9.9.9",
            &hostile_as(name, "9.9.9"),
            &bytes,
            Some(&sha256(&bytes)),
        );
    }
    let registry = Registry::load(sandbox(), true, &[dir.path().to_path_buf()]);
    for name in ["node", "postgres"] {
        let active = registry.get(name).unwrap();
        assert!(!active.is_third_party(), "the bundled {name} stays in use");
        let intruder = registry
            .candidates()
            .iter()
            .find(|c| c.name == name && c.is_third_party())
            .unwrap();
        match &intruder.status {
            Status::Rejected(e @ LoadError::Reserved { .. }) => {
                assert!(
                    e.to_string()
                        .contains(&format!("plugins.replace = [\"{name}\"]")),
                    "{e}"
                );
            }
            other => panic!("{name}: {other:?}"),
        }
    }
    // Replacing is explicit, and shows.
    let trust = Trust {
        replace: vec!["node".into()],
        prefer: vec![],
    };
    let registry = Registry::load_trusting(sandbox(), true, &[dir.path().to_path_buf()], trust);
    assert!(registry.get("node").unwrap().is_third_party());
    let bundled = registry
        .candidates()
        .iter()
        .find(|c| c.name == "node" && !c.is_third_party())
        .unwrap();
    assert!(
        matches!(&bundled.status, Status::Replaced { by } if by == "node@9.9.9"),
        "{:?}",
        bundled.status
    );
    assert!(
        !registry.get("postgres").unwrap().is_third_party(),
        "only what is named is replaced"
    );
}

fn node_repo_with(mode: &str) -> tempfile::TempDir {
    let repo = repo_with(mode);
    std::fs::write(repo.path().join("package.json"), r#"{"name": "x"}"#).unwrap();
    repo
}

fn plan(registry: &Registry, repo: &Path) -> slipway::plan::PlanReport {
    let order: Vec<String> = slipway::config::DEFAULT_ECOSYSTEM_ORDER
        .iter()
        .map(|s| s.to_string())
        .collect();
    slipway::plan::plan_repository(registry, &order, repo, &[])
        .unwrap_or_else(|e| panic!("plan failed: {e}"))
}

#[test]
fn a_broken_or_greedy_third_party_plugin_never_breaks_or_steals_planning() {
    let (_dir, registry) = hostile_registry();
    // detect traps, panics, loops: skipped with a note; node plans.
    for mode in ["panic", "loop", "garbage", "error-escape"] {
        let repo = node_repo_with(mode);
        let report = plan(&registry, repo.path());
        assert_eq!(report.ecosystem, "node", "{mode}");
        assert!(
            report
                .notes
                .iter()
                .any(|n| n.starts_with("third-party plugin hostile skipped: its detect failed")),
            "{mode}: {:?}",
            report.notes
        );
        assert!(report.third_party.is_empty(), "{mode}");
    }
    // Confidence 100 does not outrank the bundled plugin that matched.
    let repo = node_repo_with("claim-all");
    let report = plan(&registry, repo.path());
    assert_eq!(report.ecosystem, "node");
    assert!(
        report.notes.iter().any(|n| n.contains(
            "third-party plugin hostile (confidence 100) ranks below the bundled plugins"
        )),
        "{:?}",
        report.notes
    );
    // Unless the configuration prefers it; then the plan says whose it is.
    let dir = hostile_dir();
    let trust = Trust {
        replace: vec![],
        prefer: vec!["hostile".into()],
    };
    let preferring = Registry::load_trusting(sandbox(), true, &[dir.path().to_path_buf()], trust);
    let report = plan(&preferring, repo.path());
    assert_eq!(report.ecosystem, "hostile");
    assert_eq!(report.third_party.len(), 1, "{:?}", report.third_party);
    assert!(report.third_party[0].starts_with("hostile@0.1.0@"));
    assert!(
        report
            .notes
            .iter()
            .any(|n| n.starts_with("uses the third-party plugin hostile@0.1.0")),
        "{:?}",
        report.notes
    );
    // A preferred plugin whose plan fails gives way to the next match.
    std::fs::write(repo.path().join(".hostile"), "plan-fail\n").unwrap();
    let report = plan(&preferring, repo.path());
    assert_eq!(report.ecosystem, "node");
    assert!(
        report
            .notes
            .iter()
            .any(|n| n.starts_with("third-party plugin hostile skipped: its plan failed")),
        "{:?}",
        report.notes
    );
}

#[test]
fn plan_output_a_host_must_not_use_is_refused() {
    let (_dir, registry) = hostile_registry();
    let sandbox = registry.sandbox();
    let plugin = registry.get("hostile").unwrap().prepare(sandbox).unwrap();
    for (mode, problem) in [
        (
            "plan-nul",
            "the generated Dockerfile contains the control character '\\0'",
        ),
        (
            "plan-step-newline",
            "fast step 0's name `lint\\nslipway: step `lint` passed`",
        ),
        (
            "plan-env-name",
            "environment variable name `PATH=/evil\\nX`",
        ),
        ("plan-cache-root", "cache path `/` must be"),
        ("plan-cache-workspace", "cache path `/workspace` must be"),
        ("plan-cache-dotdot", "cache path `/etc/../etc` must be"),
        (
            "plan-lockfile-outside",
            "package manager lockfile `../../etc/passwd`",
        ),
        (
            "plan-note-escape",
            "a note contains the control character '\\u{1b}'",
        ),
    ] {
        let repo = repo_with(mode);
        match sandbox.plan(&plugin, repo.path(), &[]) {
            Err(e @ CallError::InvalidOutput { .. }) => {
                assert!(e.to_string().contains(problem), "{mode}: {e}")
            }
            other => panic!("{mode}: {other:?}"),
        }
    }
}

#[test]
fn a_plugins_own_words_reach_a_terminal_quoted() {
    let (_dir, registry) = hostile_registry();
    let repo = repo_with("error-escape");
    let e = detect(&registry, repo.path()).unwrap_err();
    let text = e.to_string();
    assert!(
        !text.contains('\u{1b}') && !text.contains('\n') && !text.contains('\u{7}'),
        "{text:?}"
    );
    assert!(
        text.contains("\\u{1b}[2K\\u{1b}[1Gslipway: job succeeded\\nnothing to see"),
        "{text}"
    );
    // A panic's message comes through stderr: quoted too.
    let repo = repo_with("panic");
    let text = detect(&registry, repo.path()).unwrap_err().to_string();
    assert!(!text.contains('\n'), "{text:?}");
}

#[test]
fn a_manifest_alone_cannot_raise_its_limits() {
    let dir = hostile_dir();
    // An engine whose operator left the defaults (64 MiB) as they are.
    let strict = Arc::new(
        PluginSandbox::new(SandboxOptions {
            cache_dir: None,
            policy: LimitsPolicy::default(),
            pooling: false,
            single_caller: false,
        })
        .unwrap(),
    );
    let registry = Registry::load(strict, false, &[dir.path().to_path_buf()]);
    let c = &registry.candidates()[0];
    match &c.status {
        Status::Rejected(LoadError::Limits(raised)) => {
            let limit = raised.to_string();
            assert!(
                limit.contains("`limits.memory-mib` = 256 is above the engine's default of 64")
                    && limit.contains("plugins.default_memory_mib"),
                "{limit}"
            );
            assert_eq!(
                (raised.field, raised.value, raised.default),
                ("memory-mib", 256, 64)
            );
        }
        other => panic!("{other:?}"),
    }
}

/// A FIFO at `path` under `dir` (`mkfifo`; opening it for reading blocks
/// until a writer comes).
fn mkfifo(dir: &Path, path: &str) {
    let status = std::process::Command::new("mkfifo")
        .arg(dir.join(path))
        .status()
        .unwrap();
    assert!(status.success(), "mkfifo {path}");
}

#[test]
fn a_plugin_waiting_in_a_host_call_is_stopped_within_its_budget() {
    let (_dir, registry) = hostile_registry();
    stuck_calls_are_stopped_within_their_budget(&registry);
}

/// The same, with calls driven on the caller's thread (a one-shot command
/// such as `slipway plan`): the caller's thread runs the timer then.
#[test]
fn a_plugin_waiting_in_a_host_call_of_a_one_shot_command_is_stopped_within_its_budget() {
    let dir = hostile_dir();
    let sandbox = Arc::new(
        PluginSandbox::new(SandboxOptions {
            cache_dir: Some(PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join("plugin-cache")),
            policy: operator_policy(),
            pooling: false,
            single_caller: true,
        })
        .unwrap(),
    );
    let registry = Registry::load(sandbox, true, &[dir.path().to_path_buf()]);
    stuck_calls_are_stopped_within_their_budget(&registry);
}

fn stuck_calls_are_stopped_within_their_budget(registry: &Registry) {
    let sandbox = registry.sandbox();
    // Compiled before the clock starts (a cold cache compiles it here).
    let hostile = registry.get("hostile").unwrap().prepare(sandbox).unwrap();
    for mode in ["sleep", "poll-forever"] {
        let repo = repo_with(mode);
        let started = std::time::Instant::now();
        let err = sandbox.detect(&hostile, repo.path(), &[]).unwrap_err();
        let took = started.elapsed();
        let CallError::CpuLimit { limit_ms, .. } = &err else {
            panic!("{mode}: expected the time budget to stop it, got {err}");
        };
        assert_eq!(*limit_ms, 300);
        // Budget + 50 ms, whatever the plugin waits on.
        assert!(
            took < std::time::Duration::from_millis(350),
            "{mode}: stopped after {took:?}"
        );
        assert!(err.to_string().contains("time budget of 300 ms"), "{err}");
    }
    assert_good_plugins_still_work(registry);
}

#[test]
fn stuck_calls_of_one_plugin_hold_only_its_share_of_slots() {
    // A budget longer than the slot wait, so the 17th call finds the
    // plugin's share full for the whole wait.
    let mut policy = operator_policy();
    policy.defaults.cpu_ms = 3000;
    policy.maxima.cpu_ms = policy.maxima.cpu_ms.max(3000);
    let sandbox = Arc::new(
        PluginSandbox::new(SandboxOptions {
            cache_dir: Some(PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join("plugin-cache")),
            policy,
            pooling: true,
            single_caller: false,
        })
        .unwrap(),
    );
    let dir = tempfile::tempdir().unwrap();
    let bytes = wasm("hostile");
    // Its own manifest lowers the budget to 300 ms: install it without that.
    let manifest = source_manifest("testdata/hostile").replace("cpu-ms = 300\n", "");
    install(
        dir.path(),
        "hostile",
        "0.1.0",
        &manifest,
        &bytes,
        Some(&sha256(&bytes)),
    );
    let registry = Arc::new(Registry::load(
        sandbox.clone(),
        true,
        &[dir.path().to_path_buf()],
    ));
    let hostile = Arc::new(registry.get("hostile").unwrap().prepare(&sandbox).unwrap());
    let repo = repo_with("sleep");

    let stuck = slipway::plugins::sandbox::PER_PLUGIN_SLOTS + 1;
    let calls: Vec<_> = (0..stuck)
        .map(|_| {
            let (sandbox, hostile, repo) =
                (sandbox.clone(), hostile.clone(), repo.path().to_owned());
            std::thread::spawn(move || {
                let started = std::time::Instant::now();
                let err = sandbox.detect(&hostile, &repo, &[]).unwrap_err();
                (err, started.elapsed())
            })
        })
        .collect();
    // While they hang, another plugin is called at once.
    let tcp = registry.get("tcp").unwrap().prepare(&sandbox).unwrap();
    std::thread::sleep(std::time::Duration::from_millis(300));
    let started = std::time::Instant::now();
    let service = postgres_service();
    let probe = sandbox
        .probe(&tcp, &service)
        .expect("tcp probe while hostile hangs");
    assert!(matches!(probe.action, ProbeAction::Tcp(5432)));
    assert!(started.elapsed() < std::time::Duration::from_millis(100));

    let results: Vec<_> = calls.into_iter().map(|c| c.join().unwrap()).collect();
    let busy: Vec<_> = results
        .iter()
        .filter(|(e, _)| matches!(e, CallError::Busy { .. }))
        .collect();
    assert_eq!(busy.len(), 1, "{results:?}");
    let (err, waited) = busy[0];
    assert!(
        matches!(
            err,
            CallError::Busy {
                scope: "this plugin",
                held: 16,
                ..
            }
        ),
        "{err}"
    );
    assert!(
        err.to_string()
            .contains("16 calls of this plugin are already running"),
        "{err}"
    );
    // Refused after the slot wait, not left hanging.
    assert!(
        *waited >= slipway::plugins::sandbox::SLOT_WAIT,
        "{waited:?}"
    );
    assert!(*waited < slipway::plugins::sandbox::SLOT_WAIT + std::time::Duration::from_millis(500));
    for (err, took) in results
        .iter()
        .filter(|(e, _)| !matches!(e, CallError::Busy { .. }))
    {
        assert!(
            matches!(err, CallError::CpuLimit { limit_ms: 3000, .. }),
            "{err}"
        );
        assert!(*took < std::time::Duration::from_millis(3300), "{took:?}");
    }
}

#[test]
fn a_fifo_or_socket_in_the_repository_reads_as_unreadable() {
    let (_dir, registry) = hostile_registry();
    let repo = repo_with("read fifo");
    mkfifo(repo.path(), "fifo");
    let sandbox = registry.sandbox();
    let hostile = registry.get("hostile").unwrap().prepare(sandbox).unwrap();
    let started = std::time::Instant::now();
    let err = sandbox.detect(&hostile, repo.path(), &[]).unwrap_err();
    assert!(
        started.elapsed() < std::time::Duration::from_millis(300),
        "{err}"
    );
    let said = reported_message(&err);
    assert!(
        said.contains("read fifo: refused") && said.contains("PermissionDenied"),
        "{said}"
    );

    let socket = repo.path().join("sock");
    let _listener = std::os::unix::net::UnixListener::bind(&socket).unwrap();
    std::fs::write(repo.path().join(".hostile"), "read sock\n").unwrap();
    let said = reported_message(&detect(&registry, repo.path()).unwrap_err());
    assert!(said.contains("PermissionDenied"), "{said}");

    // A regular file still reads.
    std::fs::write(repo.path().join("plain"), "x").unwrap();
    std::fs::write(repo.path().join(".hostile"), "read plain\n").unwrap();
    assert_eq!(
        detect(&registry, repo.path()).unwrap().as_deref(),
        Some("read plain: succeeded")
    );

    // The first-party node plugin on a package.json that is a FIFO: an
    // answer at once, not a hang.
    let node = tempfile::tempdir().unwrap();
    mkfifo(node.path(), "package.json");
    let order: Vec<String> = slipway::config::DEFAULT_ECOSYSTEM_ORDER
        .iter()
        .map(|s| s.to_string())
        .collect();
    registry
        .active(World::Ecosystem)
        .for_each(|c| drop(c.prepare(sandbox)));
    let started = std::time::Instant::now();
    let planned = slipway::plan::plan_repository(&registry, &order, node.path(), &[]);
    assert!(started.elapsed() < std::time::Duration::from_secs(1));
    let said = match planned {
        Ok(report) => format!("{:?}", report.notes),
        Err(e) => e.to_string(),
    };
    assert!(said.contains("package.json"), "{said}");
}

#[test]
fn a_report_format_has_one_reader_and_a_second_claim_is_refused() {
    // Two third-party copies of the bundled JUnit reader under names of their own.
    let dir = tempfile::tempdir().unwrap();
    let bytes = wasm("junit_xml");
    for name in ["aaa-junit", "zzz-junit"] {
        let manifest = source_manifest("junit-xml")
            .replace("name = \"junit-xml\"", &format!("name = \"{name}\""));
        install(
            dir.path(),
            name,
            "1.0.0",
            &manifest,
            &bytes,
            Some(&sha256(&bytes)),
        );
    }
    let taken = |registry: &Registry, name: &str| -> (String, String) {
        let c = registry
            .candidates()
            .iter()
            .find(|c| c.name == name)
            .unwrap();
        match &c.status {
            Status::Rejected(e @ LoadError::FormatTaken { format, owner }) => {
                assert!(
                    e.to_string().contains("a report format has one reader"),
                    "{e}"
                );
                (format.clone(), owner.clone())
            }
            other => panic!("{name}: {other:?}"),
        }
    };

    // Beside the bundled reader, the bundled one reads `junit-xml` (before
    // and after every plugin is loaded) and both copies are refused.
    let mut registry = Registry::load(sandbox(), true, &[dir.path().to_path_buf()]);
    assert_eq!(
        registry.validator_for("junit-xml").unwrap().name,
        "junit-xml"
    );
    registry.prepare_all();
    for name in ["aaa-junit", "zzz-junit"] {
        assert_eq!(
            taken(&registry, name),
            ("junit-xml".into(), "junit-xml".into())
        );
        assert!(registry.get(name).is_none(), "{name} is not active");
    }
    assert_eq!(
        registry.validator_for("junit-xml").unwrap().name,
        "junit-xml"
    );

    // Between third-party readers alone: the first by name reads it.
    let mut alone = Registry::load(sandbox(), false, &[dir.path().to_path_buf()]);
    alone.prepare_all();
    assert_eq!(alone.validator_for("junit-xml").unwrap().name, "aaa-junit");
    assert_eq!(
        taken(&alone, "zzz-junit"),
        ("junit-xml".into(), "aaa-junit".into())
    );
    assert!(alone.validator_for("no-such-format").is_none());
}

//! `slipway pod-manifest`: the Pod YAML of the services example (a
//! repository of its own, at a commit) parses back into a Pod with the
//! checkout at that commit, the services as native sidecars, and the
//! runner image under the given registry; a subdirectory is refused.
//! `tests/kube-play.sh` runs such a manifest under `podman kube play`.

use std::path::Path;
use std::process::{Command, Output};

use slipway::kube::objects::Pod;

fn slipway(state: &Path, args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_slipway"))
        .args(args)
        .env_remove("SLIPWAY_CONFIG")
        .env("SLIPWAY_STATE_DIR", state)
        .output()
        .unwrap()
}

fn git(dir: &Path, args: &[&str]) -> String {
    let out = Command::new("git")
        .arg("-C")
        .arg(dir)
        .args(args)
        .output()
        .unwrap();
    assert!(out.status.success(), "git {args:?}");
    String::from_utf8_lossy(&out.stdout).trim().to_owned()
}

#[test]
fn pod_manifest_prints_a_pod_that_parses_back() {
    let tmp = tempfile::tempdir().unwrap();
    let example = Path::new(env!("CARGO_MANIFEST_DIR")).join("../examples/services-app");
    let repo = tmp.path().join("services-app");
    std::fs::create_dir_all(repo.join("tests")).unwrap();
    for file in [
        "Dockerfile",
        "app.py",
        "slipway.toml",
        "tests/test_services.py",
    ] {
        std::fs::copy(example.join(file), repo.join(file)).unwrap();
    }
    git(&repo, &["init", "-q"]);
    git(&repo, &["add", "-A"]);
    git(
        &repo,
        &[
            "-c",
            "user.name=t",
            "-c",
            "user.email=t@l",
            "commit",
            "-qm",
            "app",
        ],
    );
    let sha = git(&repo, &["rev-parse", "HEAD"]);
    let state = tmp.path().join("state");
    let profile = example.join("slipway.toml");
    let out = slipway(
        &state,
        &[
            "pod-manifest",
            repo.to_str().unwrap(),
            "--profile",
            profile.to_str().unwrap(),
            "--registry",
            "registry.example/ci/",
            "--checkout-from",
            "https://git.example/services-app.git",
        ],
    );
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{stdout}{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let pod: Pod = serde_yaml_ng::from_str(&stdout).unwrap();
    assert_eq!((pod.api_version.as_str(), pod.kind.as_str()), ("v1", "Pod"));
    assert_eq!(pod.metadata.labels["io.slipway.role"], "job");
    assert_eq!(pod.metadata.annotations["io.slipway.commit"], sha);
    let names: Vec<_> = pod
        .spec
        .init_containers
        .iter()
        .map(|c| c.name.as_str())
        .collect();
    assert_eq!(names, ["checkout", "db", "cache"]);
    let checkout = &pod.spec.init_containers[0];
    let env = |name: &str| {
        checkout
            .env
            .iter()
            .find(|e| e.name == name)
            .map(|e| e.value.clone())
    };
    assert_eq!(env("SLIPWAY_CHECKOUT_SHA"), Some(sha));
    assert_eq!(
        env("SLIPWAY_CHECKOUT_URL").as_deref(),
        Some("https://git.example/services-app.git")
    );
    for sidecar in &pod.spec.init_containers[1..] {
        assert_eq!(sidecar.restart_policy.as_deref(), Some("Always"));
        assert!(sidecar.startup_probe.as_ref().unwrap().exec.is_some());
    }
    let cache = &pod.spec.init_containers[2];
    // `--protected-mode no`: a string, not YAML 1.1's false.
    assert!(stdout.contains("- 'no'\n"), "{stdout}");
    assert_eq!(cache.args.as_ref().unwrap()[2], "no");
    let job = &pod.spec.containers[0];
    assert!(
        job.image.starts_with("registry.example/ci/slipway-runner/"),
        "{}",
        job.image
    );
    let command = job.command.as_ref().unwrap();
    assert_eq!(
        command.last().map(String::as_str),
        Some("python3 -m unittest -v tests.test_services")
    );
    let hardening = job.security_context.as_ref().unwrap();
    assert_eq!(hardening.run_as_user, Some(1000));
    assert_eq!(hardening.read_only_root_filesystem, Some(true));
    assert!(
        job.env
            .iter()
            .any(|e| e.name == "PGHOST" && e.value == "127.0.0.1")
    );

    // A subdirectory is not a repository a Pod can check out.
    let out = slipway(
        &state,
        &["pod-manifest", repo.join("tests").to_str().unwrap()],
    );
    assert_eq!(out.status.code(), Some(2));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains("is not the top of a git repository"),
        "{stderr}"
    );
}

//! Pods, the workload container and steps as execs, against the real
//! Docker engine (started by `scripts/setup.sh`; these tests fail, loudly,
//! when it is not there) with the local images from `scripts/images.sh`.

use std::collections::HashMap;
use std::time::Duration;

use slipway::logs::JobLogs;
use slipway::runner::{
    self, ContainerLimits, Pod, PodSpec, RunnerError, StepEnd, StepExec, StepOutcome, WorkloadSpec,
};
use tokio_util::sync::CancellationToken;

use crate::support::docker;

const IMAGE: &str = "slipway-test/busybox:1";

/// Docker's own API, to check what the engine asked of it.
async fn raw() -> bollard::Docker {
    slipway::runtime::docker::connect()
        .await
        .expect("Docker")
        .client()
        .clone()
}

/// A pod whose containers carry a label unique to `test`, to find leftovers.
fn pod_spec(test: &str) -> PodSpec {
    PodSpec {
        name: format!("slipway-test-{test}-{}", std::process::id()),
        labels: HashMap::from([
            (runner::LABEL_MANAGED.to_owned(), "true".to_owned()),
            ("io.slipway.test".to_owned(), run_label(test)),
        ]),
        holder_image: slipway::config::DEFAULT_HOLDER_IMAGE.into(),
        network: "none".into(),
        reach: Default::default(),
    }
}

fn workload() -> WorkloadSpec {
    WorkloadSpec {
        image: IMAGE.into(),
        env: vec![("GREETING".into(), "hello".into())],
        workdir: Some("/tmp".into()),
        user: "1000:1000".into(),
        binds: vec![],
        limits: ContainerLimits {
            memory_mb: Some(128),
            pids: Some(64),
            cpus: Some(1.0),
        },
        role: slipway::runner::Role::Job,
        output_kept_mb: None,
        gpus: None,
    }
}

fn step(script: &str) -> StepExec {
    StepExec {
        command: script.into(),
        env: vec![],
        workdir: Some("/tmp".into()),
        user: "1000:1000".into(),
    }
}

/// Unique to this test in this run, so an earlier run's leftovers (a
/// panicking test removes nothing) never fail this one.
fn run_label(test: &str) -> String {
    format!("{test}-{}", std::process::id())
}

async fn leftovers(docker: &runner::Runtime, test: &str) -> usize {
    let label = format!("io.slipway.test={}", run_label(test));
    docker.list_containers(&[label]).await.unwrap().len()
}

/// A started pod with its workload, and a job log to run steps into.
struct Harness {
    docker: runner::Runtime,
    pod: Option<Pod>,
    workload: String,
    logs: JobLogs,
    _dir: tempfile::TempDir,
    test: &'static str,
}

impl Harness {
    async fn start(test: &'static str) -> Harness {
        let docker = docker().await;
        let pod = Pod::create(&docker, pod_spec(test)).await.unwrap();
        let workload = pod.start_workload(&workload()).await.unwrap();
        let dir = tempfile::tempdir().unwrap();
        Harness {
            docker,
            pod: Some(pod),
            workload,
            logs: JobLogs::new(dir.path()).unwrap(),
            _dir: dir,
            test,
        }
    }

    async fn run(
        &self,
        script: &str,
        timeout: Duration,
        cancel: &CancellationToken,
    ) -> (Result<StepOutcome, RunnerError>, String) {
        let before = self.text().len();
        let outcome = runner::exec_step(
            &self.docker,
            &self.workload,
            &step(script),
            &self.logs.writer(1),
            timeout,
            Duration::from_secs(1),
            cancel,
        )
        .await;
        (outcome, self.text()[before..].to_owned())
    }

    fn text(&self) -> String {
        String::from_utf8(self.logs.read(1, 0, 1 << 20).unwrap().0).unwrap()
    }

    /// Remove the pod and check nothing of it is left.
    async fn finish(mut self) {
        self.pod.take().unwrap().remove().await;
        assert_eq!(
            leftovers(&self.docker, self.test).await,
            0,
            "the pod is removed"
        );
    }
}

#[tokio::test]
async fn a_step_streams_both_outputs_and_reports_its_exit_code() {
    let h = Harness::start("exit-code").await;
    let script = "echo \"$GREETING out\"; echo oops >&2; printf 'no newline'; exit 3";
    let (outcome, text) = h
        .run(script, Duration::from_secs(30), &CancellationToken::new())
        .await;
    assert_eq!(outcome.unwrap().end, StepEnd::Exited(3));
    assert!(text.contains(" stdout hello out\n"), "{text}");
    assert!(text.contains(" stderr oops\n"), "{text}");
    assert!(
        text.contains(" stdout no newline\n"),
        "a last partial line is kept: {text}"
    );
    let (second, _) = h
        .run("true", Duration::from_secs(30), &CancellationToken::new())
        .await;
    assert_eq!(
        second.unwrap().end,
        StepEnd::Exited(0),
        "the next step runs in the same container"
    );
    h.finish().await;
}

#[tokio::test]
async fn steps_are_hardened() {
    let h = Harness::start("hardened").await;
    let script = "id -u; grep CapEff /proc/self/status; \
                  touch /etc/x 2>/dev/null && echo root-writable || echo root-read-only; \
                  touch /tmp/x && echo tmp-writable; \
                  ls /sys/class/net; \
                  cat /sys/fs/cgroup/pids/pids.max 2>/dev/null || cat /sys/fs/cgroup/pids.max; \
                  grep NoNewPrivs /proc/self/status";
    let (outcome, text) = h
        .run(script, Duration::from_secs(30), &CancellationToken::new())
        .await;
    assert_eq!(outcome.unwrap().end, StepEnd::Exited(0), "{text}");
    for expected in [
        " stdout 1000\n",
        "CapEff:\t0000000000000000",
        " stdout root-read-only\n",
        " stdout tmp-writable\n",
        " stdout lo\n",
        " stdout 64\n",
        "NoNewPrivs:\t1",
    ] {
        assert!(
            text.contains(expected),
            "missing `{}` in:\n{text}",
            expected.trim()
        );
    }
    assert!(!text.contains("eth0"), "no network but loopback: {text}");
    h.finish().await;
}

#[tokio::test]
async fn timeout_stops_the_steps_processes_and_the_container_stays_usable() {
    let h = Harness::start("timeout").await;
    // A child that ignores SIGTERM: the grace period ends in SIGKILL.
    let (outcome, text) = h
        .run(
            "echo started; sh -c 'trap \"\" TERM; sleep 60' & sleep 60",
            Duration::from_secs(1),
            &CancellationToken::new(),
        )
        .await;
    let outcome = outcome.unwrap();
    assert_eq!(outcome.end, StepEnd::TimedOut);
    assert!(
        outcome.duration < Duration::from_secs(10),
        "stopped after {:?}",
        outcome.duration
    );
    assert!(text.contains(" stdout started\n"), "{text}");
    let (after, text) = h
        .run(
            "ps -o args | grep -cx 'sleep 60' || true",
            Duration::from_secs(10),
            &CancellationToken::new(),
        )
        .await;
    assert_eq!(after.unwrap().end, StepEnd::Exited(0));
    assert!(
        text.contains(" stdout 0\n"),
        "the step's whole process group is gone: {text}"
    );
    h.finish().await;
}

#[tokio::test]
async fn cancel_stops_the_step() {
    let h = Harness::start("cancel").await;
    let cancel = CancellationToken::new();
    let trigger = cancel.clone();
    tokio::spawn(async move {
        tokio::time::sleep(Duration::from_millis(500)).await;
        trigger.cancel();
    });
    let (outcome, _) = h.run("sleep 60", Duration::from_secs(60), &cancel).await;
    let outcome = outcome.unwrap();
    assert_eq!(outcome.end, StepEnd::Cancelled);
    assert!(outcome.duration < Duration::from_secs(10));
    h.finish().await;
}

#[tokio::test]
async fn memory_limit_kills_a_step_that_exceeds_it() {
    let h = Harness::start("oom").await;
    // /tmp is a tmpfs charged to the container's memory: fill past 128 MiB.
    let script = "dd if=/dev/zero of=/tmp/fill bs=1M count=200 && echo survived";
    let (outcome, text) = h
        .run(script, Duration::from_secs(60), &CancellationToken::new())
        .await;
    let end = outcome.unwrap().end;
    assert!(!text.contains("stdout survived"), "{text}");
    assert!(
        matches!(end, StepEnd::Exited(code) if code != 0),
        "{end:?}: {text}"
    );
    h.finish().await;
}

#[tokio::test]
async fn the_pod_shares_loopback_and_nothing_else() {
    let docker = docker().await;
    let pod = Pod::create(&docker, pod_spec("loopback")).await.unwrap();
    pod.start_service(&runner::ServiceContainer {
        name: "echo".into(),
        image: IMAGE.into(),
        env: vec![],
        command: vec!["sh".into(), "-c".into(), "echo pong | nc -l -p 7000".into()],
        limits: ContainerLimits::default(),
        role: slipway::runner::Role::Service,
        binds: vec![],
        labels: HashMap::new(),
        gpus: None,
        entrypoint: None,
        user: None,
        workdir: None,
    })
    .await
    .unwrap();
    let workload = pod.start_workload(&workload()).await.unwrap();
    let dir = tempfile::tempdir().unwrap();
    let logs = JobLogs::new(dir.path()).unwrap();
    let outcome = runner::exec_step(
        &docker,
        &workload,
        &step("sleep 0.3; nc 127.0.0.1 7000 </dev/null; ls /sys/class/net"),
        &logs.writer(1),
        Duration::from_secs(20),
        Duration::from_secs(1),
        &CancellationToken::new(),
    )
    .await
    .unwrap();
    let text = String::from_utf8(logs.read(1, 0, 1 << 20).unwrap().0).unwrap();
    assert_eq!(outcome.end, StepEnd::Exited(0), "{text}");
    assert!(
        text.contains(" stdout pong\n"),
        "the service answers on 127.0.0.1: {text}"
    );
    assert!(!text.contains("eth0"), "{text}");
    pod.remove().await;
    assert_eq!(leftovers(&docker, "loopback").await, 0);
}

#[tokio::test]
async fn missing_image_no_shell_and_root_user_are_clear_errors() {
    let docker = docker().await;
    let pod = Pod::create(&docker, pod_spec("errors")).await.unwrap();
    let mut missing = workload();
    missing.image = "slipway-test/does-not-exist:1".into();
    let e = pod.start_workload(&missing).await.unwrap_err();
    assert!(
        e.to_string()
            .contains("image `slipway-test/does-not-exist:1` is not available"),
        "{e}"
    );
    let mut root = workload();
    root.user = "0:0".into();
    let e = pod.start_workload(&root).await.unwrap_err();
    assert!(
        e.to_string().contains("refusing to run a step as root"),
        "{e}"
    );

    // An image with one file and no shell, like `FROM scratch`.
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("hello"), "hi").unwrap();
    let import = std::process::Command::new("sh")
        .arg("-c")
        .arg(format!(
            "docker image inspect slipway-test/no-shell:1 >/dev/null 2>&1 \
             || tar -C {} -c hello | docker import - slipway-test/no-shell:1",
            dir.path().display()
        ))
        .output()
        .unwrap();
    assert!(import.status.success(), "{import:?}");
    let mut shellless = workload();
    shellless.image = "slipway-test/no-shell:1".into();
    let e = pod.start_workload(&shellless).await.unwrap_err();
    assert!(e.to_string().contains("has no shell (`sh`)"), "{e}");
    pod.remove().await;
    assert_eq!(leftovers(&docker, "errors").await, 0);
}

#[tokio::test]
async fn unreachable_engine_names_what_was_tried() {
    let e = slipway::runtime::docker::connect_any(vec![
        "unix:///nonexistent/docker.sock".into(),
        "ftp://example.invalid".into(),
    ])
    .await
    .expect_err("nothing answers")
    .to_string();
    assert!(
        e.starts_with(
            "no Docker or Podman engine answered; tried: unix:///nonexistent/docker.sock ("
        ),
        "{e}"
    );
    assert!(
        e.contains("ftp://example.invalid (unsupported scheme"),
        "{e}"
    );
    assert!(e.contains("hint: start the daemon"), "{e}");
}

mod images {
    use std::collections::BTreeMap;
    use std::path::PathBuf;

    use slipway::logs::JobLogs;
    use slipway::runner::image::{self, DockerfileSource, ImageRequest};

    const GENERATED: &str = "FROM python:3.11-slim\nCOPY requirements.txt /opt/deps/\nRUN cat /opt/deps/requirements.txt\n";

    fn base_map() -> BTreeMap<String, String> {
        // The official name, pointed at the local image (as a mirror would be).
        BTreeMap::from([("python:3.11-slim".to_owned(), super::IMAGE.to_owned())])
    }

    #[tokio::test]
    async fn built_once_then_reused_and_rebuilt_when_an_input_changes() {
        let docker = super::docker().await;
        let repo = tempfile::tempdir().unwrap();
        std::fs::write(repo.path().join("requirements.txt"), "flask==2.2.2\n").unwrap();
        std::fs::write(repo.path().join("unrelated.txt"), "not an input").unwrap();
        let dir = tempfile::tempdir().unwrap();
        let logs = JobLogs::new(dir.path()).unwrap();
        let map = base_map();
        let slug = format!("test-{}", std::process::id());
        let request = ImageRequest {
            repo_slug: &slug,
            dockerfile: DockerfileSource::Generated(GENERATED.into()),
            checkout: repo.path(),
            base_images: &map,
            network: "none",
            ca_bundle: None,
            build: Default::default(),
        };
        let first = image::resolve(&docker, &request, &logs.writer(1))
            .await
            .unwrap();
        assert!(
            !first.hit && first.tag.starts_with(&format!("slipway-runner/{slug}:")),
            "{first:?}"
        );
        let log = String::from_utf8(logs.read(1, 0, 1 << 20).unwrap().0).unwrap();
        assert!(
            log.contains("build flask==2.2.2"),
            "the build ran and its output was logged: {log}"
        );

        std::fs::write(repo.path().join("unrelated.txt"), "changed, but not copied").unwrap();
        let second = image::resolve(&docker, &request, &logs.writer(2))
            .await
            .unwrap();
        assert_eq!(
            (second.hit, &second.tag),
            (true, &first.tag),
            "no input changed: a cache hit"
        );

        std::fs::write(repo.path().join("requirements.txt"), "flask==3.0.0\n").unwrap();
        let third = image::resolve(&docker, &request, &logs.writer(3))
            .await
            .unwrap();
        assert!(
            !third.hit && third.tag != first.tag,
            "a lockfile change is a new image"
        );

        // An extra CA bundle: in every stage of the image, pointed at by
        // the package managers' variables; a new bundle is a new image.
        let bundle = b"-----BEGIN CERTIFICATE-----\nslipway test\n-----END CERTIFICATE-----\n";
        let with_ca = ImageRequest {
            ca_bundle: Some(bundle),
            ..request.clone()
        };
        let fourth = image::resolve(&docker, &with_ca, &logs.writer(4))
            .await
            .unwrap();
        assert!(!fourth.hit && fourth.tag != third.tag, "{fourth:?}");
        let inspect = super::raw().await.inspect_image(&fourth.tag).await.unwrap();
        let env = inspect.config.and_then(|c| c.env).unwrap_or_default();
        for variable in ["PIP_CERT", "NODE_EXTRA_CA_CERTS", "SSL_CERT_FILE"] {
            assert!(
                env.contains(&format!("{variable}={}", image::CA_BUNDLE_PATH)),
                "{variable} in {env:?}"
            );
        }

        for tag in [&first.tag, &third.tag, &fourth.tag] {
            let _ = docker.remove_image(tag).await;
        }
    }

    #[tokio::test]
    async fn dockerignore_keeps_files_out_of_the_context_and_the_hash() {
        let docker = super::docker().await;
        let repo = tempfile::tempdir().unwrap();
        std::fs::write(
            repo.path().join("Dockerfile"),
            format!(
                "FROM {}\nCOPY . /src\nRUN test -f /src/keep.txt && test ! -e /src/secret.txt && test ! -e /src/node_modules\n",
                super::IMAGE
            ),
        )
        .unwrap();
        std::fs::write(
            repo.path().join(".dockerignore"),
            "secret.txt\nnode_modules\n",
        )
        .unwrap();
        std::fs::write(repo.path().join("keep.txt"), "kept").unwrap();
        std::fs::write(repo.path().join("secret.txt"), "token=1").unwrap();
        std::fs::create_dir(repo.path().join("node_modules")).unwrap();
        std::fs::write(repo.path().join("node_modules/big.js"), "x").unwrap();
        let dir = tempfile::tempdir().unwrap();
        let logs = JobLogs::new(dir.path()).unwrap();
        let map = BTreeMap::new();
        let slug = format!("ignore-{}", std::process::id());
        let request = ImageRequest {
            repo_slug: &slug,
            dockerfile: DockerfileSource::Repository(PathBuf::from("Dockerfile")),
            checkout: repo.path(),
            base_images: &map,
            network: "none",
            ca_bundle: None,
            build: Default::default(),
        };
        let built = image::resolve(&docker, &request, &logs.writer(1)).await;
        let log = String::from_utf8(logs.read(1, 0, 1 << 20).unwrap().0).unwrap();
        let built = built.unwrap_or_else(|e| panic!("{e}\n{log}"));
        std::fs::write(repo.path().join("secret.txt"), "token=2").unwrap();
        let again = image::resolve(&docker, &request, &logs.writer(2))
            .await
            .unwrap();
        assert_eq!(
            (again.hit, &again.tag),
            (true, &built.tag),
            "an ignored file does not change the image"
        );
        let _ = docker.remove_image(&built.tag).await;
    }

    #[tokio::test]
    async fn repository_dockerfile_and_build_failures() {
        let docker = super::docker().await;
        let repo = tempfile::tempdir().unwrap();
        std::fs::create_dir(repo.path().join("ci")).unwrap();
        std::fs::write(
            repo.path().join("ci/Dockerfile"),
            format!(
                "FROM {}\nCOPY . /src\nRUN test -f /src/app.txt\n",
                super::IMAGE
            ),
        )
        .unwrap();
        std::fs::write(repo.path().join("app.txt"), "x").unwrap();
        let dir = tempfile::tempdir().unwrap();
        let logs = JobLogs::new(dir.path()).unwrap();
        let map = BTreeMap::new();
        let slug = format!("repo-{}", std::process::id());
        let own = ImageRequest {
            repo_slug: &slug,
            dockerfile: DockerfileSource::Repository(PathBuf::from("ci/Dockerfile")),
            checkout: repo.path(),
            base_images: &map,
            network: "none",
            ca_bundle: None,
            build: Default::default(),
        };
        let built = image::resolve(&docker, &own, &logs.writer(1))
            .await
            .unwrap();
        assert!(!built.hit);
        let _ = docker.remove_image(&built.tag).await;

        let failing = ImageRequest {
            dockerfile: DockerfileSource::Generated(format!(
                "FROM {}\nRUN echo about to fail && false\n",
                super::IMAGE
            )),
            ..own.clone()
        };
        let e = image::resolve(&docker, &failing, &logs.writer(2))
            .await
            .unwrap_err()
            .to_string();
        assert!(
            e.contains("failed") && e.contains("about to fail"),
            "the error carries the build's last output: {e}"
        );

        let escaping = ImageRequest {
            dockerfile: DockerfileSource::Generated(format!(
                "FROM {}\nCOPY ../secret /x\n",
                super::IMAGE
            )),
            ..own
        };
        let e = image::resolve(&docker, &escaping, &logs.writer(3))
            .await
            .unwrap_err()
            .to_string();
        assert!(e.contains("leaves the repository"), "{e}");
    }
}

#[tokio::test]
async fn reconcile_removes_only_this_engines_leftovers() {
    use bollard::models::ContainerCreateBody;
    use bollard::query_parameters::CreateContainerOptions;
    let docker = docker().await;
    let mine = format!("reconcile-{}", std::process::id());
    let theirs = format!("{mine}-other");
    let mut ids = Vec::new();
    for (engine, service) in [(&mine, ""), (&mine, ""), (&theirs, ""), (&mine, "kept")] {
        let mut labels = HashMap::from([
            (runner::LABEL_MANAGED.to_owned(), "true".to_owned()),
            (runner::LABEL_ENGINE.to_owned(), engine.to_string()),
            ("io.slipway.test".to_owned(), run_label("reconcile")),
        ]);
        if !service.is_empty() {
            labels.insert(runner::LABEL_SERVICE.to_owned(), service.to_owned());
        }
        let body = ContainerCreateBody {
            image: Some(IMAGE.into()),
            cmd: Some(vec!["sleep".into(), "60".into()]),
            labels: Some(labels),
            ..Default::default()
        };
        ids.push(
            raw()
                .await
                .create_container(None::<CreateContainerOptions>, body)
                .await
                .unwrap()
                .id,
        );
    }
    raw().await.start_container(&ids[0], None).await.unwrap();
    let declared = |labels: &HashMap<String, String>| {
        labels.get(runner::LABEL_SERVICE).map(String::as_str) == Some("kept")
    };
    assert_eq!(
        runner::reconcile(&docker, &mine, declared).await.unwrap(),
        2,
        "running and stopped leftovers of this engine"
    );
    assert_eq!(
        leftovers(&docker, "reconcile").await,
        2,
        "another engine's container and a kept one are left alone"
    );
    runner::reconcile(&docker, &theirs, |_| false)
        .await
        .unwrap();
    runner::reconcile(&docker, &mine, |_| false).await.unwrap();
    assert_eq!(leftovers(&docker, "reconcile").await, 0);
}

/// The check `serve` runs when it finds itself in a container, against
/// stand-in "engine" containers with the state directory mounted right and
/// wrong.
#[tokio::test]
async fn a_state_directory_the_daemon_cannot_see_is_refused_with_the_fix() {
    use bollard::models::{ContainerCreateBody, HostConfig};
    use bollard::query_parameters::CreateContainerOptions;
    let docker = docker().await;
    let host = tempfile::tempdir().unwrap();
    let same = host.path().to_str().unwrap().to_owned();
    let cases = [
        (format!("{same}:{same}"), same.clone(), None),
        (
            format!("{same}:/var/lib/slipway"),
            "/var/lib/slipway".to_owned(),
            Some("mounted from"),
        ),
        (
            format!("{same}:/data"),
            "/var/lib/slipway".to_owned(),
            Some("is inside the engine's container"),
        ),
    ];
    for (bind, state_dir, problem) in cases {
        let body = ContainerCreateBody {
            image: Some(IMAGE.into()),
            cmd: Some(vec!["true".into()]),
            labels: Some(HashMap::from([
                (runner::LABEL_MANAGED.to_owned(), "true".to_owned()),
                ("io.slipway.test".to_owned(), run_label("sibling")),
            ])),
            host_config: Some(HostConfig {
                binds: Some(vec![bind.clone()]),
                ..Default::default()
            }),
            ..Default::default()
        };
        let id = raw()
            .await
            .create_container(None::<CreateContainerOptions>, body)
            .await
            .unwrap()
            .id;
        let result = slipway::runtime::host::check_state_dir_is_shared(
            docker.as_ref(),
            &id,
            std::path::Path::new(&state_dir),
        )
        .await;
        runner::container::remove(&docker, &id).await;
        match problem {
            None => assert!(result.is_ok(), "{bind}: {result:?}"),
            Some(words) => {
                let e = result.unwrap_err().to_string();
                assert!(e.contains(words) && e.contains("fix:"), "{bind}: {e}");
            }
        }
    }
    assert_eq!(leftovers(&docker, "sibling").await, 0);
}

/// A workload that gets GPUs carries the device request `docker run --gpus`
/// makes, as `docker inspect` shows it. Created only: starting it needs a
/// GPU runtime this host may not have.
#[tokio::test]
async fn a_gpu_request_is_a_device_request_on_the_container() {
    use slipway::runner::container::{self, ContainerSpec, Hardening};
    let docker = docker().await;
    for (gpus, count) in [(2, 2), (-1, -1)] {
        let spec = ContainerSpec {
            name: format!("slipway-test-gpu-{}-{}", std::process::id(), count + 1),
            image: IMAGE.into(),
            cmd: Some(vec!["true".into()]),
            entrypoint: None,
            env: vec![],
            workdir: None,
            user: Some("1000:1000".into()),
            binds: vec![],
            labels: HashMap::from([
                (runner::LABEL_MANAGED.to_owned(), "true".to_owned()),
                ("io.slipway.test".to_owned(), run_label("gpu")),
            ]),
            limits: ContainerLimits::default(),
            network: "none".into(),
            hardening: Hardening::Full,
            output_kept_mb: None,
            gpus: Some(gpus),
            reach: Default::default(),
        };
        let id = container::create(&docker, &spec).await.unwrap();
        let inspected = raw().await.inspect_container(&id, None).await.unwrap();
        container::remove(&docker, &id).await;
        let requests = inspected
            .host_config
            .and_then(|h| h.device_requests)
            .unwrap_or_default();
        assert_eq!(requests.len(), 1, "{requests:?}");
        assert_eq!(requests[0].count, Some(count), "{requests:?}");
        assert_eq!(
            requests[0].capabilities,
            Some(vec![vec!["gpu".to_owned()]]),
            "{requests:?}"
        );
    }
    assert_eq!(leftovers(&docker, "gpu").await, 0);
}

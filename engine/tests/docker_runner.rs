//! Step containers against the real Docker engine (started by
//! `scripts/setup.sh`; these tests fail, loudly, when it is not there) with
//! the local `slipway-test/busybox:1` image from `scripts/images.sh`.

use std::collections::HashMap;
use std::time::Duration;

use bollard::query_parameters::ListContainersOptionsBuilder;
use slipway::logs::JobLogs;
use slipway::runner::{self, ContainerLimits, StepContainer, StepEnd};
use tokio_util::sync::CancellationToken;

const IMAGE: &str = "slipway-test/busybox:1";

async fn docker() -> bollard::Docker {
    runner::connect().await.unwrap_or_else(|e| {
        panic!("these tests need a Docker engine (run `bash scripts/setup.sh`): {e}")
    })
}

/// A step spec with a label unique to this test, to find leftovers.
fn step(test: &str, script: &str) -> StepContainer {
    StepContainer {
        image: IMAGE.into(),
        argv: vec!["sh".into(), "-c".into(), script.into()],
        env: vec![("GREETING".into(), "hello".into())],
        workdir: Some("/workspace".into()),
        user: "1000:1000".into(),
        binds: vec![],
        labels: HashMap::from([
            (runner::LABEL_MANAGED.to_owned(), "true".to_owned()),
            (runner::LABEL_ROLE.to_owned(), "job".to_owned()),
            ("io.slipway.test".to_owned(), test.to_owned()),
        ]),
        limits: ContainerLimits {
            memory_mb: Some(128),
            pids: Some(64),
            cpus: Some(1.0),
        },
        network: "none".into(),
    }
}

async fn leftovers(docker: &bollard::Docker, test: &str) -> usize {
    let filters = HashMap::from([("label".to_owned(), vec![format!("io.slipway.test={test}")])]);
    let options = ListContainersOptionsBuilder::new()
        .all(true)
        .filters(&filters)
        .build();
    docker.list_containers(Some(options)).await.unwrap().len()
}

/// Run `spec` with its own job log; the outcome and the log's text.
async fn run(
    docker: &bollard::Docker,
    spec: &StepContainer,
    timeout: Duration,
    cancel: &CancellationToken,
) -> (Result<runner::StepOutcome, runner::RunnerError>, String) {
    let dir = tempfile::tempdir().unwrap();
    let logs = JobLogs::new(dir.path()).unwrap();
    let outcome = runner::run_step(
        docker,
        spec,
        &logs.writer(1),
        timeout,
        Duration::from_secs(1),
        cancel,
    )
    .await;
    let text = String::from_utf8(logs.read(1, 0, 1 << 20).unwrap().0).unwrap();
    (outcome, text)
}

#[tokio::test]
async fn a_step_streams_both_outputs_and_reports_its_exit_code() {
    let docker = docker().await;
    let script = "echo \"$GREETING out\"; echo oops >&2; printf 'no newline'; exit 3";
    let (outcome, text) = run(
        &docker,
        &step("exit-code", script),
        Duration::from_secs(30),
        &CancellationToken::new(),
    )
    .await;
    assert_eq!(outcome.unwrap().end, StepEnd::Exited(3));
    assert!(text.contains(" stdout hello out\n"), "{text}");
    assert!(text.contains(" stderr oops\n"), "{text}");
    assert!(
        text.contains(" stdout no newline\n"),
        "a last partial line is kept: {text}"
    );
    assert_eq!(
        leftovers(&docker, "exit-code").await,
        0,
        "the container is removed"
    );
}

#[tokio::test]
async fn steps_are_hardened() {
    let docker = docker().await;
    let script = "id -u; grep CapEff /proc/self/status; \
                  touch /etc/x 2>/dev/null && echo root-writable || echo root-read-only; \
                  touch /tmp/x && echo tmp-writable; \
                  ls /sys/class/net; \
                  cat /sys/fs/cgroup/pids/pids.max 2>/dev/null || cat /sys/fs/cgroup/pids.max; \
                  grep NoNewPrivs /proc/self/status; ps -o pid,comm | head -3";
    let (outcome, text) = run(
        &docker,
        &step("hardened", script),
        Duration::from_secs(30),
        &CancellationToken::new(),
    )
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
}

#[tokio::test]
async fn timeout_stops_the_step_and_removes_the_container() {
    let docker = docker().await;
    let (outcome, text) = run(
        &docker,
        &step("timeout", "echo started; sleep 60"),
        Duration::from_secs(1),
        &CancellationToken::new(),
    )
    .await;
    let outcome = outcome.unwrap();
    assert_eq!(outcome.end, StepEnd::TimedOut);
    assert!(
        outcome.duration < Duration::from_secs(15),
        "stopped after {:?}",
        outcome.duration
    );
    assert!(text.contains(" stdout started\n"));
    assert_eq!(leftovers(&docker, "timeout").await, 0);
}

#[tokio::test]
async fn cancel_stops_the_step() {
    let docker = docker().await;
    let cancel = CancellationToken::new();
    let trigger = cancel.clone();
    tokio::spawn(async move {
        tokio::time::sleep(Duration::from_millis(500)).await;
        trigger.cancel();
    });
    let (outcome, _) = run(
        &docker,
        &step("cancel", "sleep 60"),
        Duration::from_secs(60),
        &cancel,
    )
    .await;
    let outcome = outcome.unwrap();
    assert_eq!(outcome.end, StepEnd::Cancelled);
    assert!(outcome.duration < Duration::from_secs(15));
    assert_eq!(leftovers(&docker, "cancel").await, 0);
}

#[tokio::test]
async fn memory_limit_kills_a_step_that_exceeds_it() {
    let docker = docker().await;
    // /tmp is a tmpfs charged to the container's memory: fill past 128 MiB.
    let script = "dd if=/dev/zero of=/tmp/fill bs=1M count=200 && echo survived";
    let (outcome, text) = run(
        &docker,
        &step("oom", script),
        Duration::from_secs(60),
        &CancellationToken::new(),
    )
    .await;
    let end = outcome.unwrap().end;
    assert!(!text.contains("stdout survived"), "{text}");
    assert!(
        matches!(end, StepEnd::Exited(code) if code != 0),
        "{end:?}: {text}"
    );
}

#[tokio::test]
async fn missing_image_and_root_user_are_clear_errors() {
    let docker = docker().await;
    let mut missing = step("missing", "true");
    missing.image = "slipway-test/does-not-exist:1".into();
    let e = run(
        &docker,
        &missing,
        Duration::from_secs(5),
        &CancellationToken::new(),
    )
    .await
    .0
    .unwrap_err();
    assert!(
        e.to_string()
            .contains("image `slipway-test/does-not-exist:1` is not available"),
        "{e}"
    );
    let mut root = step("root", "true");
    root.user = "0:0".into();
    let e = run(
        &docker,
        &root,
        Duration::from_secs(5),
        &CancellationToken::new(),
    )
    .await
    .0
    .unwrap_err();
    assert!(
        e.to_string().contains("refusing to run a step as root"),
        "{e}"
    );
}

#[tokio::test]
async fn unreachable_engine_names_what_was_tried() {
    let e = runner::docker::connect_any(vec![
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

        for tag in [&first.tag, &third.tag] {
            let _ = docker
                .remove_image(
                    tag,
                    None::<bollard::query_parameters::RemoveImageOptions>,
                    None,
                )
                .await;
        }
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
        };
        let built = image::resolve(&docker, &own, &logs.writer(1))
            .await
            .unwrap();
        assert!(!built.hit);
        let _ = docker
            .remove_image(
                &built.tag,
                None::<bollard::query_parameters::RemoveImageOptions>,
                None,
            )
            .await;

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
    for engine in [&mine, &mine, &theirs] {
        let body = ContainerCreateBody {
            image: Some(IMAGE.into()),
            cmd: Some(vec!["sleep".into(), "60".into()]),
            labels: Some(HashMap::from([
                (runner::LABEL_MANAGED.to_owned(), "true".to_owned()),
                (runner::LABEL_ENGINE.to_owned(), engine.to_string()),
                ("io.slipway.test".to_owned(), mine.clone()),
            ])),
            ..Default::default()
        };
        ids.push(
            docker
                .create_container(None::<CreateContainerOptions>, body)
                .await
                .unwrap()
                .id,
        );
    }
    docker.start_container(&ids[0], None).await.unwrap();
    assert_eq!(
        runner::reconcile(&docker, &mine).await.unwrap(),
        2,
        "running and stopped leftovers of this engine"
    );
    assert_eq!(
        leftovers(&docker, &mine).await,
        1,
        "another engine's container is left alone"
    );
    runner::reconcile(&docker, &theirs).await.unwrap();
    assert_eq!(leftovers(&docker, &mine).await, 0);
}

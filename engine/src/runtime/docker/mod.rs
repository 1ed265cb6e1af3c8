//! The Docker and Podman adapter: [`ContainerRuntime`] over the Docker
//! Engine API (bollard). The only module of the engine that imports
//! bollard.
//!
//! - [`connect`](mod@connect): finding and connecting to Docker or Podman, with the API
//!   version negotiated and an error that names everything tried.
//! - [`engine_container`]: the engine's own container, for self-update
//!   (a worker beside it, the same container recreated on a new image).
//! - [`translate`]: a [`ContainerSpec`] as the engine's create request
//!   (host config, hardening, limits, log rotation, device requests).

pub mod connect;
pub mod engine_container;
pub mod translate;

use std::collections::HashMap;
use std::time::Duration;

use bollard::Docker;
use bollard::container::LogOutput;
use bollard::errors::Error as BollardError;
use bollard::exec::{CreateExecOptions, StartExecResults};
use bollard::query_parameters::{
    CreateContainerOptionsBuilder, EventsOptionsBuilder, KillContainerOptionsBuilder,
    ListContainersOptionsBuilder, ListImagesOptionsBuilder, LogsOptionsBuilder,
    RemoveContainerOptionsBuilder, RemoveImageOptionsBuilder, RemoveVolumeOptionsBuilder,
    RestartContainerOptionsBuilder, StopContainerOptionsBuilder,
};
use futures_util::StreamExt;

pub use connect::{DockerError, connect, connect_any};

use super::{
    BoxStream, BuildEvent, BuildSpec, ContainerInfo, ContainerRuntime, ContainerSpec,
    ContainerSummary, EventFilter, EventKind, Exec, ExecSpec, HostFacts, ImageSummary, LogsOptions,
    Mount, Output, OutputStream, RuntimeError, RuntimeEvent,
};

/// A connected Docker or Podman engine.
#[derive(Clone, Debug)]
pub struct DockerRuntime {
    client: Docker,
}

impl DockerRuntime {
    /// Wrap a bollard client as is (no ping, no version negotiation: that is
    /// [`connect()`]'s job).
    pub fn new(client: Docker) -> DockerRuntime {
        DockerRuntime { client }
    }

    /// The bollard client, for tests and benchmarks that compare the
    /// engine's work with raw calls.
    pub fn client(&self) -> &Docker {
        &self.client
    }
}

/// The engine's error as the runtime's: a 404 is "not found".
fn refused(
    action: &'static str,
    what: &'static str,
    name: &str,
) -> impl Fn(BollardError) -> RuntimeError {
    move |e| match e {
        BollardError::DockerResponseServerError {
            status_code: 404, ..
        } => RuntimeError::NotFound {
            what,
            name: name.to_owned(),
        },
        other => RuntimeError::Engine {
            action,
            message: other.to_string(),
        },
    }
}

fn output(
    item: Result<LogOutput, BollardError>,
    action: &'static str,
) -> Option<Result<Output, RuntimeError>> {
    match item {
        Ok(LogOutput::StdOut { message }) | Ok(LogOutput::Console { message }) => {
            Some(Ok(Output {
                stream: OutputStream::Stdout,
                bytes: message,
            }))
        }
        Ok(LogOutput::StdErr { message }) => Some(Ok(Output {
            stream: OutputStream::Stderr,
            bytes: message,
        })),
        Ok(LogOutput::StdIn { .. }) => None,
        Err(e) => Some(Err(RuntimeError::Engine {
            action,
            message: e.to_string(),
        })),
    }
}

fn label_filters(labels: &[String]) -> HashMap<String, Vec<String>> {
    HashMap::from([("label".to_owned(), labels.to_vec())])
}

/// Docker says "No such image: x"; Podman "x: image not known".
fn is_missing_image(message: &str) -> bool {
    let m = message.to_ascii_lowercase();
    m.contains("no such image") || m.contains("image not known")
}

#[async_trait::async_trait]
impl ContainerRuntime for DockerRuntime {
    async fn create_container(&self, spec: &ContainerSpec) -> Result<String, RuntimeError> {
        let options = CreateContainerOptionsBuilder::new()
            .name(&spec.name)
            .build();
        let created = self
            .client
            .create_container(Some(options), translate::create_body(spec))
            .await
            .map_err(|e| match e {
                BollardError::DockerResponseServerError {
                    status_code: 404,
                    ref message,
                } if is_missing_image(message) => RuntimeError::ImageMissing(spec.image.clone()),
                other => RuntimeError::Engine {
                    action: "create the container",
                    message: other.to_string(),
                },
            })?;
        Ok(created.id)
    }

    async fn start_container(&self, id: &str) -> Result<(), RuntimeError> {
        self.client.start_container(id, None).await.map_err(|e| {
            let text = e.to_string();
            if text.contains("executable file not found") && text.contains("\"sh\"") {
                RuntimeError::NoShell
            } else {
                refused("start the container", "container", id)(e)
            }
        })
    }

    async fn inspect_container(&self, id: &str) -> Result<ContainerInfo, RuntimeError> {
        let c = self
            .client
            .inspect_container(id, None)
            .await
            .map_err(refused("inspect a container", "container", id))?;
        let state = c.state.unwrap_or_default();
        let config = c.config.unwrap_or_default();
        Ok(ContainerInfo {
            id: c.id.unwrap_or_default(),
            running: state.running == Some(true),
            exit_code: state.exit_code,
            oom_killed: state.oom_killed == Some(true),
            labels: config.labels.unwrap_or_default(),
            image: config.image.unwrap_or_default(),
            cmd: config.cmd.unwrap_or_default(),
            user: config.user.unwrap_or_default(),
            started_at: state.started_at,
            mounts: c
                .mounts
                .unwrap_or_default()
                .into_iter()
                .map(|m| Mount {
                    name: m.name,
                    source: m.source.unwrap_or_default(),
                    destination: m.destination.unwrap_or_default(),
                    kind: m.typ.unwrap_or_default(),
                })
                .collect(),
        })
    }

    async fn list_containers(
        &self,
        labels: &[String],
    ) -> Result<Vec<ContainerSummary>, RuntimeError> {
        let filters = label_filters(labels);
        let options = ListContainersOptionsBuilder::new()
            .all(true)
            .filters(&filters)
            .build();
        let found = self
            .client
            .list_containers(Some(options))
            .await
            .map_err(refused("list containers", "container", ""))?;
        Ok(found
            .into_iter()
            .filter_map(|c| {
                Some(ContainerSummary {
                    id: c.id?,
                    running: c.state == Some(bollard::models::ContainerSummaryStateEnum::RUNNING),
                    labels: c.labels.unwrap_or_default(),
                })
            })
            .collect())
    }

    async fn stop_container(&self, id: &str, grace: Duration) -> Result<(), RuntimeError> {
        let options = StopContainerOptionsBuilder::new()
            .t(grace.as_secs() as i32)
            .build();
        self.client
            .stop_container(id, Some(options))
            .await
            .map_err(refused("stop a container", "container", id))
    }

    async fn kill_container(&self, id: &str, signal: &str) -> Result<(), RuntimeError> {
        let options = KillContainerOptionsBuilder::new().signal(signal).build();
        self.client
            .kill_container(id, Some(options))
            .await
            .map_err(refused("kill a container", "container", id))
    }

    async fn restart_container(&self, id: &str, grace: Duration) -> Result<(), RuntimeError> {
        let options = RestartContainerOptionsBuilder::new()
            .t(grace.as_secs() as i32)
            .build();
        self.client
            .restart_container(id, Some(options))
            .await
            .map_err(refused("restart a container", "container", id))
    }

    async fn wait_container(&self, id: &str) -> Option<i64> {
        match self.client.wait_container(id, None).next().await {
            Some(Ok(r)) => Some(r.status_code),
            Some(Err(BollardError::DockerContainerWaitError { code, .. })) => Some(code),
            _ => None,
        }
    }

    async fn remove_container(&self, id: &str) -> Result<(), RuntimeError> {
        let options = RemoveContainerOptionsBuilder::new()
            .force(true)
            .v(true)
            .build();
        match self.client.remove_container(id, Some(options)).await {
            Ok(())
            | Err(BollardError::DockerResponseServerError {
                status_code: 404, ..
            }) => Ok(()),
            Err(e) => Err(RuntimeError::Engine {
                action: "remove a container",
                message: e.to_string(),
            }),
        }
    }

    fn logs(&self, id: &str, options: LogsOptions) -> BoxStream<Result<Output, RuntimeError>> {
        let options = LogsOptionsBuilder::new()
            .follow(options.follow)
            .stdout(true)
            .stderr(true)
            .timestamps(options.timestamps)
            .since(options.since_s.clamp(0, i32::MAX as i64) as i32)
            .build();
        Box::pin(
            self.client
                .logs(id, Some(options))
                .filter_map(|item| std::future::ready(output(item, "read a container's output"))),
        )
    }

    async fn exec(&self, container: &str, spec: ExecSpec) -> Result<Exec, RuntimeError> {
        let options = CreateExecOptions {
            cmd: Some(spec.argv),
            env: (!spec.env.is_empty())
                .then(|| spec.env.iter().map(|(k, v)| format!("{k}={v}")).collect()),
            working_dir: spec.workdir,
            user: spec.user,
            attach_stdout: Some(true),
            attach_stderr: Some(true),
            ..Default::default()
        };
        let exec = self
            .client
            .create_exec(container, options)
            .await
            .map_err(refused("create an exec", "container", container))?;
        match self
            .client
            .start_exec(&exec.id, None)
            .await
            .map_err(refused("start an exec", "exec", &exec.id))?
        {
            StartExecResults::Attached { output: out, .. } => {
                Ok(Exec {
                    id: exec.id,
                    output: Box::pin(out.filter_map(|item| {
                        std::future::ready(output(item, "read an exec's output"))
                    })),
                })
            }
            StartExecResults::Detached => Err(RuntimeError::Engine {
                action: "start an exec",
                message: "the exec was started detached".into(),
            }),
        }
    }

    async fn exec_exit_code(&self, exec: &str) -> Result<Option<i64>, RuntimeError> {
        Ok(self
            .client
            .inspect_exec(exec)
            .await
            .map_err(refused("inspect an exec", "exec", exec))?
            .exit_code)
    }

    fn events(&self, filter: EventFilter) -> BoxStream<Result<RuntimeEvent, RuntimeError>> {
        let mut filters = HashMap::from([("type".to_owned(), vec!["container".to_owned()])]);
        if !filter.containers.is_empty() {
            filters.insert("container".into(), filter.containers.clone());
        }
        if !filter.labels.is_empty() {
            filters.insert("label".into(), filter.labels.clone());
        }
        if !filter.kinds.is_empty() {
            let events = filter
                .kinds
                .iter()
                .map(|k| {
                    match k {
                        EventKind::Died => "die",
                        EventKind::OomKilled => "oom",
                        EventKind::Health => "health_status",
                    }
                    .to_owned()
                })
                .collect();
            filters.insert("event".into(), events);
        }
        let since = filter.since_ms.map(|ms| (ms / 1000).to_string());
        let mut options = EventsOptionsBuilder::new().filters(&filters);
        if let Some(since) = &since {
            options = options.since(since);
        }
        let events = self.client.events(Some(options.build()));
        Box::pin(events.filter_map(|item| {
            std::future::ready(match item {
                Err(e) => Some(Err(RuntimeError::Engine {
                    action: "follow events",
                    message: e.to_string(),
                })),
                Ok(event) => {
                    let action = event.action.unwrap_or_default();
                    let actor = event.actor.unwrap_or_default();
                    let kind = if action == "die" {
                        Some(EventKind::Died)
                    } else if action == "oom" {
                        Some(EventKind::OomKilled)
                    } else if action.starts_with("health_status") {
                        Some(EventKind::Health)
                    } else {
                        None
                    };
                    kind.map(|kind| {
                        Ok(RuntimeEvent {
                            kind,
                            container: actor.id.unwrap_or_default(),
                            labels: actor.attributes.unwrap_or_default(),
                            unhealthy: action.starts_with("health_status: unhealthy"),
                        })
                    })
                }
            })
        }))
    }

    async fn image_id(&self, tag: &str) -> Result<Option<String>, RuntimeError> {
        match self.client.inspect_image(tag).await {
            Ok(image) => Ok(Some(image.id.unwrap_or_default())),
            Err(BollardError::DockerResponseServerError {
                status_code: 404, ..
            }) => Ok(None),
            Err(e) => Err(RuntimeError::Engine {
                action: "inspect an image",
                message: e.to_string(),
            }),
        }
    }

    fn build_image(&self, spec: BuildSpec) -> BoxStream<BuildEvent> {
        let labels: HashMap<&str, &str> = spec
            .labels
            .iter()
            .map(|(k, v)| (k.as_str(), v.as_str()))
            .collect();
        let args: HashMap<&str, &str> = spec
            .args
            .iter()
            .map(|(k, v)| (k.as_str(), v.as_str()))
            .collect();
        let options = bollard::query_parameters::BuildImageOptionsBuilder::new()
            .buildargs(&args)
            .target(spec.target.as_deref().unwrap_or_default())
            .dockerfile(&spec.dockerfile)
            .t(&spec.tag)
            .rm(true)
            .forcerm(true)
            .networkmode(&spec.network)
            .labels(&labels)
            .build();
        let client = self.client.clone();
        let context = bollard::body_full(spec.context.into());
        // bollard's build stream borrows its client: drive it in a task of
        // its own, which ends with the first failure.
        let (tx, rx) = tokio::sync::mpsc::channel(64);
        tokio::spawn(async move {
            let mut stream = client.build_image(options, None, Some(context));
            while let Some(item) = stream.next().await {
                let event = match item {
                    Ok(info) => match info.error_detail.and_then(|d| d.message) {
                        Some(error) => BuildEvent::Failed(error),
                        None => match info.stream {
                            Some(text) => BuildEvent::Output(text),
                            None => continue,
                        },
                    },
                    Err(e) => BuildEvent::Failed(e.to_string()),
                };
                let failed = matches!(event, BuildEvent::Failed(_));
                if tx.send(event).await.is_err() || failed {
                    return;
                }
            }
        });
        Box::pin(futures_util::stream::unfold(rx, |mut rx| async move {
            rx.recv().await.map(|event| (event, rx))
        }))
    }

    async fn list_images(&self, label: &str) -> Result<Vec<ImageSummary>, RuntimeError> {
        let filters = label_filters(&[label.to_owned()]);
        let options = ListImagesOptionsBuilder::new().filters(&filters).build();
        let images = self
            .client
            .list_images(Some(options))
            .await
            .map_err(refused("list images", "image", ""))?;
        Ok(images
            .into_iter()
            .map(|i| ImageSummary {
                tags: i.repo_tags,
                size: i.size.max(0) as u64,
                containers: i.containers.max(0) as u64,
            })
            .collect())
    }

    async fn remove_image(&self, tag: &str) -> Result<(), RuntimeError> {
        let options = RemoveImageOptionsBuilder::new().force(false).build();
        self.client
            .remove_image(tag, Some(options), None)
            .await
            .map(|_| ())
            .map_err(refused("remove an image", "image", tag))
    }

    async fn volume_exists(&self, name: &str) -> bool {
        self.client.inspect_volume(name).await.is_ok()
    }

    async fn create_volume(
        &self,
        name: &str,
        labels: HashMap<String, String>,
    ) -> Result<(), RuntimeError> {
        let request = bollard::models::VolumeCreateRequest {
            name: Some(name.to_owned()),
            labels: Some(labels),
            ..Default::default()
        };
        self.client
            .create_volume(request)
            .await
            .map(|_| ())
            .map_err(refused("create a volume", "volume", name))
    }

    async fn remove_volume(&self, name: &str) -> Result<(), RuntimeError> {
        let options = RemoveVolumeOptionsBuilder::new().force(false).build();
        self.client
            .remove_volume(name, Some(options))
            .await
            .map_err(refused("remove a volume", "volume", name))
    }

    async fn create_network(
        &self,
        name: &str,
        labels: HashMap<String, String>,
    ) -> Result<(), RuntimeError> {
        if self.client.inspect_network(name, None).await.is_ok() {
            return Ok(());
        }
        let request = bollard::models::NetworkCreateRequest {
            name: name.to_owned(),
            driver: Some("bridge".into()),
            labels: Some(labels),
            ..Default::default()
        };
        match self.client.create_network(request).await {
            Ok(_) => Ok(()),
            // Created by another task in between.
            Err(BollardError::DockerResponseServerError {
                status_code: 409, ..
            }) => Ok(()),
            Err(e) => Err(refused("create a network", "network", name)(e)),
        }
    }

    async fn remove_network(&self, name: &str) -> Result<(), RuntimeError> {
        self.client
            .remove_network(name)
            .await
            .map_err(refused("remove a network", "network", name))
    }

    async fn host_facts(&self) -> Result<HostFacts, RuntimeError> {
        connect::host_facts(&self.client)
            .await
            .map_err(|e| RuntimeError::Engine {
                action: "describe itself",
                message: e.to_string(),
            })
    }
}

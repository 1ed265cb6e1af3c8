//! The engine's own container, for self-update: what it runs, a worker
//! started beside it, and the same container recreated from another image.
//!
//! Docker only (a Kubernetes engine updates through its Deployment). The
//! replacement carries what the operator chose, not what the old image
//! said: an env entry, label, command or healthcheck equal to the old
//! image's default is left for the new image to supply, everything else
//! (env set at `docker run`, mounts, network, restart policy, limits,
//! secrets) is copied. Anonymous volumes (an image `VOLUME` nothing was
//! mounted on) are carried by name, so the state inside them stays.

use std::collections::HashMap;
use std::time::Duration;

use bollard::models::{
    ContainerCreateBody, ContainerInspectResponse, EndpointSettings, HostConfig, ImageConfig,
    NetworkingConfig,
};
use bollard::query_parameters::{
    CreateContainerOptionsBuilder, InspectContainerOptions, RemoveContainerOptionsBuilder,
    RenameContainerOptionsBuilder, StopContainerOptionsBuilder, TagImageOptionsBuilder,
};

use super::{DockerRuntime, refused};
use crate::runtime::RuntimeError;

/// The engine's container as self-update needs it.
#[derive(Debug, Clone)]
pub struct EngineContainer {
    /// Full id.
    pub id: String,
    /// Name, without Docker's leading `/`.
    pub name: String,
    /// The image reference it was created from (`slipway:latest`).
    pub image_ref: String,
    /// The image id it runs (`sha256:…`).
    pub image_id: String,
}

/// The update worker: a short-lived container of the new image, with the
/// engine's mounts, env, user, groups and network, so it reaches the same
/// daemon and state directory.
#[derive(Debug, Clone)]
pub struct WorkerSpec {
    /// Container name.
    pub name: String,
    /// Image to run (the new engine's).
    pub image: String,
    /// The full command (entrypoint included).
    pub command: Vec<String>,
    /// Labels (role and engine).
    pub labels: HashMap<String, String>,
}

fn engine_error(action: &'static str) -> impl Fn(bollard::errors::Error) -> RuntimeError {
    move |e| RuntimeError::Engine {
        action,
        message: e.to_string(),
    }
}

impl DockerRuntime {
    async fn inspect_raw(&self, id: &str) -> Result<ContainerInspectResponse, RuntimeError> {
        self.client
            .inspect_container(id, None::<InspectContainerOptions>)
            .await
            .map_err(refused("inspect container", "container", id))
    }

    /// The engine's own container, by id.
    pub async fn engine_container(&self, id: &str) -> Result<EngineContainer, RuntimeError> {
        let c = self.inspect_raw(id).await?;
        Ok(EngineContainer {
            id: c.id.clone().unwrap_or_else(|| id.to_owned()),
            name: c
                .name
                .as_deref()
                .unwrap_or(id)
                .trim_start_matches('/')
                .to_owned(),
            image_ref: c
                .config
                .as_ref()
                .and_then(|c| c.image.clone())
                .unwrap_or_default(),
            image_id: c.image.clone().unwrap_or_default(),
        })
    }

    /// Tag image `id` as `repo:tag`.
    pub async fn tag_image(&self, id: &str, repo: &str, tag: &str) -> Result<(), RuntimeError> {
        let options = TagImageOptionsBuilder::new().repo(repo).tag(tag).build();
        self.client
            .tag_image(id, Some(options))
            .await
            .map_err(refused("tag image", "image", id))
    }

    /// Create and start the update worker beside `engine`; its id.
    pub async fn start_worker(
        &self,
        engine: &str,
        spec: &WorkerSpec,
    ) -> Result<String, RuntimeError> {
        let c = self.inspect_raw(engine).await?;
        let config = c.config.unwrap_or_default();
        let host = c.host_config.unwrap_or_default();
        let (entrypoint, cmd) = match spec.command.split_first() {
            Some((first, rest)) => (vec![first.clone()], rest.to_vec()),
            None => (vec![], vec![]),
        };
        let body = ContainerCreateBody {
            image: Some(spec.image.clone()),
            entrypoint: Some(entrypoint),
            cmd: Some(cmd),
            env: config.env,
            user: config.user,
            labels: Some(spec.labels.clone()),
            // The image's healthcheck is the engine's, not the worker's.
            healthcheck: Some(bollard::models::HealthConfig {
                test: Some(vec!["NONE".into()]),
                ..Default::default()
            }),
            host_config: Some(HostConfig {
                binds: host.binds,
                mounts: host.mounts,
                group_add: host.group_add,
                network_mode: host.network_mode,
                security_opt: host.security_opt,
                auto_remove: Some(true),
                ..Default::default()
            }),
            ..Default::default()
        };
        let options = CreateContainerOptionsBuilder::new()
            .name(&spec.name)
            .build();
        let id = self
            .client
            .create_container(Some(options), body)
            .await
            .map_err(engine_error("create the update worker"))?
            .id;
        self.client
            .start_container(&id, None)
            .await
            .map_err(engine_error("start the update worker"))?;
        Ok(id)
    }

    /// Stop `id`, giving it `grace` after SIGTERM.
    pub async fn stop_for_update(&self, id: &str, grace: Duration) -> Result<(), RuntimeError> {
        let options = StopContainerOptionsBuilder::new()
            .t(grace.as_secs() as i32)
            .build();
        match self.client.stop_container(id, Some(options)).await {
            Ok(()) => Ok(()),
            // 304: already stopped.
            Err(bollard::errors::Error::DockerResponseServerError {
                status_code: 304, ..
            }) => Ok(()),
            Err(e) => Err(refused("stop container", "container", id)(e)),
        }
    }

    /// Rename container `id` to `name`.
    pub async fn rename_container(&self, id: &str, name: &str) -> Result<(), RuntimeError> {
        let options = RenameContainerOptionsBuilder::new().name(name).build();
        self.client
            .rename_container(id, options)
            .await
            .map_err(refused("rename container", "container", id))
    }

    /// Remove container `id` but not its volumes (the engine's state may
    /// live in one).
    pub async fn remove_keeping_volumes(&self, id: &str) -> Result<(), RuntimeError> {
        let options = RemoveContainerOptionsBuilder::new()
            .force(true)
            .v(false)
            .build();
        match self.client.remove_container(id, Some(options)).await {
            Ok(()) => Ok(()),
            Err(bollard::errors::Error::DockerResponseServerError {
                status_code: 404, ..
            }) => Ok(()),
            Err(e) => Err(engine_error("remove container")(e)),
        }
    }

    /// Create (not start) `name` as a copy of container `old` on `image`:
    /// see the module doc for what is carried. Its id.
    pub async fn recreate_on(
        &self,
        old: &str,
        image: &str,
        name: &str,
    ) -> Result<String, RuntimeError> {
        let c = self.inspect_raw(old).await?;
        let old_image = match c.image.as_deref() {
            Some(id) => self
                .client
                .inspect_image(id)
                .await
                .ok()
                .and_then(|i| i.config),
            None => None,
        };
        let body = carried_over(&c, old_image.as_ref(), image);
        let options = CreateContainerOptionsBuilder::new().name(name).build();
        Ok(self
            .client
            .create_container(Some(options), body)
            .await
            .map_err(engine_error("create the updated engine container"))?
            .id)
    }

    /// Whether container `id` is running.
    pub async fn is_running(&self, id: &str) -> bool {
        self.inspect_raw(id)
            .await
            .ok()
            .and_then(|c| c.state)
            .and_then(|s| s.running)
            .unwrap_or(false)
    }
}

/// The create request of a container like `c` on `image`.
fn carried_over(
    c: &ContainerInspectResponse,
    old_image: Option<&ImageConfig>,
    image: &str,
) -> ContainerCreateBody {
    let config = c.config.clone().unwrap_or_default();
    let mut host = c.host_config.clone().unwrap_or_default();
    let id = c.id.clone().unwrap_or_default();
    let from_image =
        |value: &Option<Vec<String>>, default: Option<&Vec<String>>| match (value, default) {
            (Some(v), Some(d)) if v == d => None,
            _ => value.clone(),
        };
    let image_env: Vec<String> = old_image.and_then(|i| i.env.clone()).unwrap_or_default();
    let env: Vec<String> = config
        .env
        .clone()
        .unwrap_or_default()
        .into_iter()
        .filter(|e| !image_env.contains(e))
        .collect();
    let image_labels = old_image.and_then(|i| i.labels.clone()).unwrap_or_default();
    let labels: HashMap<String, String> = config
        .labels
        .clone()
        .unwrap_or_default()
        .into_iter()
        .filter(|(k, v)| image_labels.get(k) != Some(v))
        .collect();
    let same = |a: &Option<String>, b: Option<&String>| match (a, b) {
        (Some(a), Some(b)) if a == b => None,
        _ => a.clone(),
    };
    let network_mode = host.network_mode.clone().unwrap_or_default();
    // Docker names an unset hostname after the id; host networking uses the
    // host's. Neither is the operator's choice.
    let hostname = config
        .hostname
        .clone()
        .filter(|h| !id.starts_with(h.as_str()) && network_mode != "host");
    // Anonymous volumes, carried by name.
    let mut binds = host.binds.clone().unwrap_or_default();
    for m in c.mounts.clone().unwrap_or_default() {
        let (Some(name), Some(dest)) = (m.name.as_ref(), m.destination.as_ref()) else {
            continue;
        };
        if m.typ.as_deref() != Some("volume") {
            continue;
        }
        let covered = binds
            .iter()
            .any(|b| b.split(':').nth(1) == Some(dest.as_str()))
            || host
                .mounts
                .as_ref()
                .is_some_and(|ms| ms.iter().any(|x| x.target.as_deref() == Some(dest)));
        if !covered {
            binds.push(format!("{name}:{dest}"));
        }
    }
    host.binds = Some(binds);
    let networking_config = user_network(c, &network_mode, &id);
    ContainerCreateBody {
        image: Some(image.to_owned()),
        hostname,
        domainname: config.domainname,
        user: same(&config.user, old_image.and_then(|i| i.user.as_ref())),
        env: Some(env),
        cmd: from_image(&config.cmd, old_image.and_then(|i| i.cmd.as_ref())),
        entrypoint: from_image(
            &config.entrypoint,
            old_image.and_then(|i| i.entrypoint.as_ref()),
        ),
        working_dir: same(
            &config.working_dir,
            old_image.and_then(|i| i.working_dir.as_ref()),
        ),
        healthcheck: match (
            &config.healthcheck,
            old_image.and_then(|i| i.healthcheck.as_ref()),
        ) {
            (Some(a), Some(b)) if a == b => None,
            (a, _) => a.clone(),
        },
        stop_signal: same(
            &config.stop_signal,
            old_image.and_then(|i| i.stop_signal.as_ref()),
        ),
        stop_timeout: config.stop_timeout,
        labels: Some(labels),
        tty: config.tty,
        open_stdin: config.open_stdin,
        host_config: Some(host),
        networking_config,
        ..Default::default()
    }
}

/// A user-defined network's endpoint (aliases included), carried over.
fn user_network(c: &ContainerInspectResponse, mode: &str, id: &str) -> Option<NetworkingConfig> {
    if matches!(mode, "" | "default" | "bridge" | "host" | "none") || mode.starts_with("container:")
    {
        return None;
    }
    let old = c
        .network_settings
        .as_ref()
        .and_then(|n| n.networks.as_ref())
        .and_then(|n| n.get(mode))?;
    let aliases = old.aliases.clone().map(|a| {
        a.into_iter()
            .filter(|x| !id.starts_with(x.as_str()))
            .collect()
    });
    Some(NetworkingConfig {
        endpoints_config: Some(HashMap::from([(
            mode.to_owned(),
            EndpointSettings {
                aliases,
                ..Default::default()
            },
        )])),
    })
}

#[cfg(test)]
mod tests {
    use bollard::models::{ContainerConfig, MountPoint};

    use super::*;

    /// An engine started with `docker run -e SLIPWAY_LISTEN=… -v state:state
    /// --network host --restart unless-stopped` from an image that sets
    /// PATH, a label, the entrypoint, command and a VOLUME.
    fn engine() -> (ContainerInspectResponse, ImageConfig) {
        let image = ImageConfig {
            env: Some(vec![
                "PATH=/usr/bin".into(),
                "SLIPWAY_STATE_DIR=/var/lib/slipway".into(),
            ]),
            labels: Some(HashMap::from([(
                "org.opencontainers.image.version".into(),
                "1".into(),
            )])),
            entrypoint: Some(vec!["slipway".into()]),
            cmd: Some(vec!["serve".into()]),
            user: Some("slipway".into()),
            ..Default::default()
        };
        let container = ContainerInspectResponse {
            id: Some("0123456789abcdef".into()),
            config: Some(ContainerConfig {
                hostname: Some("buildhost".into()),
                env: Some(vec![
                    "PATH=/usr/bin".into(),
                    "SLIPWAY_STATE_DIR=/srv/slipway".into(),
                    "SLIPWAY_LISTEN=127.0.0.1:7878".into(),
                ]),
                labels: Some(HashMap::from([
                    ("org.opencontainers.image.version".into(), "1".into()),
                    ("io.slipway.test".into(), "x".into()),
                ])),
                entrypoint: Some(vec!["slipway".into()]),
                cmd: Some(vec!["serve".into()]),
                user: Some("slipway".into()),
                ..Default::default()
            }),
            host_config: Some(HostConfig {
                binds: Some(vec!["/srv/slipway:/srv/slipway".into()]),
                network_mode: Some("host".into()),
                restart_policy: Some(bollard::models::RestartPolicy {
                    name: Some(bollard::models::RestartPolicyNameEnum::UNLESS_STOPPED),
                    maximum_retry_count: None,
                }),
                ..Default::default()
            }),
            mounts: Some(vec![
                MountPoint {
                    typ: Some("bind".into()),
                    source: Some("/srv/slipway".into()),
                    destination: Some("/srv/slipway".into()),
                    ..Default::default()
                },
                MountPoint {
                    typ: Some("volume".into()),
                    name: Some("a1b2".into()),
                    destination: Some("/var/lib/slipway".into()),
                    ..Default::default()
                },
            ]),
            ..Default::default()
        };
        (container, image)
    }

    #[test]
    fn what_the_operator_chose_is_carried_and_the_old_images_defaults_are_not() {
        let (c, image) = engine();
        let body = carried_over(&c, Some(&image), "slipway:next");
        assert_eq!(body.image.as_deref(), Some("slipway:next"));
        // Set at `docker run`, or changed from the image's value: kept.
        assert_eq!(
            body.env.unwrap(),
            vec![
                "SLIPWAY_STATE_DIR=/srv/slipway",
                "SLIPWAY_LISTEN=127.0.0.1:7878"
            ]
        );
        let labels = body.labels.unwrap();
        assert_eq!(labels.get("io.slipway.test").map(String::as_str), Some("x"));
        assert!(!labels.contains_key("org.opencontainers.image.version"));
        // The image's own entrypoint, command and user: the new image's.
        assert!(body.entrypoint.is_none() && body.cmd.is_none() && body.user.is_none());
        // Host networking: the host's name is not the operator's choice.
        assert!(body.hostname.is_none());
        let host = body.host_config.unwrap();
        assert_eq!(host.network_mode.as_deref(), Some("host"));
        assert!(host.restart_policy.is_some());
        // The bind stays; the anonymous volume is carried by name.
        assert_eq!(
            host.binds.unwrap(),
            vec!["/srv/slipway:/srv/slipway", "a1b2:/var/lib/slipway"]
        );
        assert!(body.networking_config.is_none());
    }

    #[test]
    fn an_overridden_command_and_a_user_network_are_carried() {
        let (mut c, image) = engine();
        let config = c.config.as_mut().unwrap();
        config.cmd = Some(vec!["serve".into(), "--verbose".into()]);
        config.hostname = Some("0123456789ab".into());
        c.host_config.as_mut().unwrap().network_mode = Some("ops".into());
        c.network_settings = Some(bollard::models::NetworkSettings {
            networks: Some(HashMap::from([(
                "ops".into(),
                EndpointSettings {
                    aliases: Some(vec!["slipway".into(), "0123456789ab".into()]),
                    ..Default::default()
                },
            )])),
            ..Default::default()
        });
        let body = carried_over(&c, Some(&image), "slipway:next");
        assert_eq!(body.cmd.unwrap(), vec!["serve", "--verbose"]);
        // Docker's name for the old container is not carried.
        assert!(body.hostname.is_none());
        let endpoints = body.networking_config.unwrap().endpoints_config.unwrap();
        assert_eq!(
            endpoints["ops"].aliases.as_deref(),
            Some(&["slipway".to_owned()][..])
        );
    }
}

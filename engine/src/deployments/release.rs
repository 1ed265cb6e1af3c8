//! A commit's Compose stack as managed services: one per Compose service,
//! named `<deployment>-<service>-<hash>` where the hash covers everything
//! that shapes its container. A service whose declaration did not change
//! between two commits keeps its name, so a rollout leaves it running.

use std::collections::BTreeMap;

use sha2::{Digest, Sha256};

use super::record::ReleasedService;
use super::secrets::ServiceSecrets;
use crate::compose::{self, Stack};
use crate::job::{Network, ReadinessSpec};
use crate::runtime::spec::{PublishedPort, Reach};
use crate::service::{DeploymentBinding, ManagedServiceSpec, RestartMode, RestartPolicy};

/// The deployment's user-defined network (engines sharing a daemon each
/// have their own: the engine id is in the name).
pub fn network_name(engine: &str, deployment: &str) -> String {
    format!("slipway-deploy-{engine}-{deployment}")
}

/// The Docker volume behind a Compose named volume.
pub fn volume_name(engine: &str, deployment: &str, volume: &str) -> String {
    format!("slipway-deploy-{engine}-{deployment}-{volume}")
}

/// The managed services of `stack` at `commit`: `images` holds the image
/// built for each service with `build:`, `secrets` each service's secret
/// variables (by reference); binds resolve inside `checkout`.
pub fn services(
    engine: &str,
    deployment: &str,
    commit: &str,
    stack: &Stack,
    images: &BTreeMap<String, String>,
    secrets: &ServiceSecrets,
) -> Result<Vec<ReleasedService>, String> {
    stack
        .services
        .iter()
        .map(|s| {
            let image = match (images.get(&s.name), &s.image) {
                (Some(built), _) => built.clone(),
                (None, Some(image)) => image.clone(),
                (None, None) => return Err(format!("service `{}` has neither image nor build", s.name)),
            };
            let readiness = s.healthcheck.as_ref().map(|h| ReadinessSpec {
                plugin: "exec".into(),
                options: BTreeMap::from([
                    ("command".to_owned(), sh_join(&h.test)),
                    ("period_ms".to_owned(), h.interval.as_millis().max(100).to_string()),
                    ("timeout_ms".to_owned(), h.timeout.as_millis().max(100).to_string()),
                    ("failure_threshold".to_owned(), h.retries.max(1).to_string()),
                ]),
            });
            let binds = s
                .volumes
                .iter()
                .map(|m| match m {
                    compose::Mount::Named { volume, target, read_only } => {
                        bind(&volume_name(engine, deployment, volume), target, *read_only)
                    }
                    compose::Mount::Bind { source, target, read_only } => {
                        bind(&source.display().to_string(), target, *read_only)
                    }
                })
                .collect();
            let publish = s
                .ports
                .iter()
                .filter(|p| p.published.is_some() || p.host_ip.is_some())
                .map(|p| PublishedPort {
                    host_ip: p.host_ip.clone(),
                    host_port: p.published,
                    container_port: p.target,
                    protocol: p.protocol.name().to_owned(),
                })
                .collect();
            let restart = RestartPolicy {
                mode: match s.restart {
                    compose::Restart::No => RestartMode::Never,
                    compose::Restart::OnFailure { .. } => RestartMode::OnFailure,
                    compose::Restart::Always | compose::Restart::UnlessStopped => RestartMode::Always,
                },
                max_restarts: match s.restart {
                    compose::Restart::OnFailure { max_retries: Some(n) } => n,
                    _ => RestartPolicy::default().max_restarts,
                },
                ..RestartPolicy::default()
            };
            let mut spec = ManagedServiceSpec {
                name: String::new(),
                image,
                command: s.command.clone().unwrap_or_default(),
                env: s.environment.clone(),
                secrets: secrets.get(&s.name).cloned().unwrap_or_default(),
                ports: s.ports.iter().map(|p| p.target).collect(),
                resources: Default::default(),
                liveness: readiness.clone(),
                readiness,
                restart,
                volumes: Vec::new(),
                network: Network::None,
                gpus: None,
                gpu: None,
                deployment: Some(DeploymentBinding {
                    deployment: deployment.to_owned(),
                    commit: String::new(),
                    network: network_name(engine, deployment),
                    reach: Reach {
                        aliases: vec![s.name.clone()],
                        publish,
                    },
                    binds,
                    entrypoint: s.entrypoint.clone(),
                    user: s.user.clone(),
                    workdir: s.working_dir.clone(),
                    labels: s.labels.clone(),
                }),
            };
            // Named by what shapes the container, commit left out: an
            // unchanged service keeps its name (and keeps running).
            let hash = hex::encode(Sha256::digest(
                serde_json::to_vec(&spec).map_err(|e| e.to_string())?,
            ));
            spec.name = format!("{deployment}-{}-{}", s.name.replace('_', "-"), &hash[..8]);
            if let Some(d) = &mut spec.deployment {
                d.commit = commit.to_owned();
            }
            if spec.name.len() > 63 {
                return Err(format!(
                    "service `{}`: `{}` is longer than 63 characters; shorten the deployment's or the service's name",
                    s.name, spec.name
                ));
            }
            Ok(ReleasedService {
                name: s.name.clone(),
                spec,
                healthy_deps: s
                    .depends_on
                    .iter()
                    .filter(|(_, c)| *c == compose::Condition::Healthy)
                    .map(|(dep, _)| dep.clone())
                    .collect(),
            })
        })
        .collect()
}

fn bind(source: &str, target: &str, read_only: bool) -> String {
    if read_only {
        format!("{source}:{target}:ro")
    } else {
        format!("{source}:{target}")
    }
}

/// argv as one `sh -c` command line, each word single-quoted.
fn sh_join(argv: &[String]) -> String {
    // `sh -c <script>` from the healthcheck's CMD-SHELL: the script as is.
    if let [sh, c, script] = argv
        && sh == "sh"
        && c == "-c"
    {
        return script.clone();
    }
    argv.iter()
        .map(|a| format!("'{}'", a.replace('\'', r"'\''")))
        .collect::<Vec<_>>()
        .join(" ")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn healthcheck_commands_become_one_shell_line() {
        let words = |w: &[&str]| w.iter().map(|s| s.to_string()).collect::<Vec<_>>();
        assert_eq!(
            sh_join(&words(&["sh", "-c", "curl -f x || exit 1"])),
            "curl -f x || exit 1"
        );
        assert_eq!(
            sh_join(&words(&["pg_isready", "-U", "it's"])),
            r"'pg_isready' '-U' 'it'\''s'"
        );
    }
}

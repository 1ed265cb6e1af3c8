//! A job as one Kubernetes Pod (docs/kubernetes.md): the checkout as an
//! init container that fetches the exact SHA into an `emptyDir`, the
//! services as native sidecars (or plain containers beside the workload),
//! the workload running the tier's steps with the same driver a Docker job
//! runs, the hardening as `securityContext` and the limits as `resources`.
//!
//! [`JobPod`] is what the job would get on the Docker runtime (image tag,
//! steps, env, services with their plugins' probes, limits, labels);
//! [`pod`] turns it into a [`Pod`], [`to_yaml`] into text.

use std::collections::BTreeMap;

use super::objects::{
    Capabilities, Container, ContainerPort, EmptyDir, EnvVar, HostPath, ObjectMeta, Pod,
    PodSecurityContext, PodSpec, Resources, SeccompProfile, SecurityContext, Volume, VolumeMount,
};
use super::readiness::{self, Wait, kube_probe};
use crate::job::ServiceSpec;
use crate::plugins::bindings;
use crate::runtime::SERVICE_CAPABILITIES;

/// Where the checkout lands, and the workload's working directory.
pub const WORKSPACE: &str = "/workspace";
/// Where a local checkout source (a `hostPath`) is mounted in the checkout
/// init container.
pub const SOURCE_MOUNT: &str = "/slipway-source";
/// The size of the `/tmp` tmpfs, as the Docker runtime's (`TMP_OPTIONS`).
const TMP_SIZE: &str = "256Mi";

/// The checkout init container's script: fetch `$SLIPWAY_CHECKOUT_SHA`
/// from `$SLIPWAY_CHECKOUT_URL` (by SHA, else every branch and tag), check
/// it out detached, and refuse anything but that exact commit.
const CHECKOUT_SCRIPT: &str = r#"set -eu
if [ -n "${SLIPWAY_CHECKOUT_SAFE:-}" ]; then
  git config --global --add safe.directory "$SLIPWAY_CHECKOUT_SAFE"
  git config --global --add safe.directory "$SLIPWAY_CHECKOUT_SAFE/.git"
fi
cd /workspace
git init -q .
if ! git fetch -q --depth 1 "$SLIPWAY_CHECKOUT_URL" "$SLIPWAY_CHECKOUT_SHA" 2>/dev/null; then
  git fetch -q "$SLIPWAY_CHECKOUT_URL" '+refs/heads/*:refs/remotes/origin/*' '+refs/tags/*:refs/tags/*'
fi
git -c advice.detachedHead=false checkout -q --detach "$SLIPWAY_CHECKOUT_SHA"
head=$(git rev-parse HEAD)
if [ "$head" != "$SLIPWAY_CHECKOUT_SHA" ]; then
  echo "slipway: checked out $head, not $SLIPWAY_CHECKOUT_SHA" >&2; exit 1
fi
echo "slipway: checked out $SLIPWAY_CHECKOUT_URL at $head""#;

/// How services run beside the workload.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Sidecars {
    /// Init containers with `restartPolicy: Always` and a startup probe
    /// (Kubernetes 1.29+): the workload starts once every service passed
    /// its probe, and the Pod ends with the workload.
    #[default]
    Native,
    /// Ordinary containers beside the workload, which waits for them
    /// itself ([`readiness::wait_script`]); for runtimes without native
    /// sidecars (`podman kube play`). The services outlive the workload:
    /// whoever runs the Pod deletes it once the workload has exited.
    Plain,
}

/// Where the checkout init container fetches the commit from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CheckoutSource {
    /// A git URL (`https://…`, `ssh://…`, `file:///…`).
    pub url: String,
    /// The exact commit (40 or 64 hex digits).
    pub sha: String,
    /// An image with `git` and `sh`, run as the job user.
    pub image: String,
    /// A node directory holding the repository: mounted read-only at
    /// [`SOURCE_MOUNT`] (then `url` should be `file:///slipway-source`).
    pub host_path: Option<String>,
}

/// One service of the job, with its readiness plugin's probe.
#[derive(Debug, Clone)]
pub struct PodService {
    /// The service as the profile (or job) declares it.
    pub spec: ServiceSpec,
    /// The plugin's probe; `None`: no readiness plugin (no ports, none named).
    pub probe: Option<bindings::Probe>,
}

/// What a job's Pod is made of: the same data its Docker pod is made of.
#[derive(Debug, Clone)]
pub struct JobPod {
    /// The Pod's name (a DNS-1123 label; see [`pod_name`]).
    pub name: String,
    /// Labels of the Pod (`io.slipway.*`).
    pub labels: BTreeMap<String, String>,
    /// Annotations of the Pod (the steps, the tier, ...).
    pub annotations: BTreeMap<String, String>,
    /// The runner image (`[<registry>/]slipway-runner/<slug>:<hash>`).
    pub image: String,
    /// The workload's argv: the steps' driver (`jobs::batch::Script::command`).
    pub command: Vec<String>,
    /// The workload's environment (plan, profile), later entries winning.
    pub env: Vec<(String, String)>,
    /// Working directory of the workload (the checkout).
    pub workdir: String,
    /// The job user, `(uid, gid)`; never 0.
    pub user: (u32, u32),
    /// The workload's limits.
    pub resources: crate::job::Resources,
    /// The job's services.
    pub services: Vec<PodService>,
    /// Where the checkout comes from.
    pub checkout: CheckoutSource,
    /// Native sidecars or plain containers.
    pub sidecars: Sidecars,
    /// What the assembly could not carry over (the manifest keeps them).
    pub notes: Vec<String>,
}

/// A Pod and what the manifest could not say as the Docker runtime does.
#[derive(Debug, Clone, PartialEq)]
pub struct Manifest {
    /// The Pod.
    pub pod: Pod,
    /// One line per thing translated with a difference, or not at all.
    pub notes: Vec<String>,
}

/// Why a job cannot be said as a Pod.
#[derive(Debug, thiserror::Error)]
pub enum ManifestError {
    /// The commit is not a full SHA.
    #[error(
        "`{0}` is not a full commit SHA (40 or 64 hex digits); a Pod checks out an exact commit"
    )]
    Sha(String),
    /// The job would run as root.
    #[error("the job user is uid {0}; a job never runs as root")]
    Root(u32),
    /// A name is not a DNS-1123 label, or two services share one.
    #[error("{what} `{name}`: {problem}")]
    Name {
        /// What is named (`pod`, `service`).
        what: &'static str,
        /// The name.
        name: String,
        /// What is wrong with it.
        problem: String,
    },
}

/// `slipway-<slug>-<first 12 digits of sha>`, as a DNS-1123 label.
pub fn pod_name(slug: &str, sha: &str) -> String {
    let slug = crate::runner::image::name_component(slug);
    let short: String = sha.chars().take(12).collect();
    let mut slug: String = slug
        .chars()
        .take(63 - "slipway--".len() - short.len())
        .collect();
    while slug.ends_with('-') {
        slug.pop();
    }
    format!("slipway-{slug}-{short}")
}

fn dns_label(what: &'static str, name: &str) -> Result<(), ManifestError> {
    let problem = if name.is_empty() || name.len() > 63 {
        Some("must be 1 to 63 characters".to_owned())
    } else if !name
        .chars()
        .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-')
        || name.starts_with('-')
        || name.ends_with('-')
    {
        Some("must be lowercase letters, digits and `-`, starting and ending with a letter or digit (a DNS-1123 label)".to_owned())
    } else {
        None
    };
    match problem {
        Some(problem) => Err(ManifestError::Name {
            what,
            name: name.to_owned(),
            problem,
        }),
        None => Ok(()),
    }
}

/// The `securityContext` of the workload and the checkout: what
/// `Hardening::Full` is on Docker.
fn hardened(user: (u32, u32)) -> SecurityContext {
    SecurityContext {
        run_as_non_root: Some(true),
        run_as_user: Some(user.0),
        run_as_group: Some(user.1),
        read_only_root_filesystem: Some(true),
        allow_privilege_escalation: Some(false),
        privileged: Some(false),
        capabilities: Some(Capabilities {
            drop: vec!["ALL".into()],
            add: vec![],
        }),
        seccomp_profile: Some(runtime_default()),
    }
}

/// A service's `securityContext`: what `Hardening::Service` is on Docker
/// (the image's own user, its root filesystem writable, only the
/// capabilities a root entrypoint needs to drop to its user).
fn service_hardening() -> SecurityContext {
    SecurityContext {
        allow_privilege_escalation: Some(false),
        privileged: Some(false),
        capabilities: Some(Capabilities {
            drop: vec!["ALL".into()],
            add: SERVICE_CAPABILITIES.map(str::to_owned).to_vec(),
        }),
        seccomp_profile: Some(runtime_default()),
        ..SecurityContext::default()
    }
}

fn runtime_default() -> SeccompProfile {
    SeccompProfile {
        kind: "RuntimeDefault".into(),
    }
}

/// Limits (and equal requests) from a job's or service's resources; the
/// process cap has no per-container form (notes say so).
fn resources(r: &crate::job::Resources) -> Option<Resources> {
    let mut limits = BTreeMap::new();
    if let Some(mb) = r.memory_mb {
        limits.insert("memory".to_owned(), format!("{mb}Mi"));
    }
    if let Some(cpus) = r.cpus {
        limits.insert(
            "cpu".to_owned(),
            format!("{}m", (cpus * 1000.0).ceil() as u64),
        );
    }
    (!limits.is_empty()).then(|| Resources {
        requests: limits.clone(),
        limits,
    })
}

/// `(name, value)` pairs as `env`, one entry per name (the last value, at
/// the first one's place: what the Docker runtime makes of duplicates).
fn env_vars(pairs: &[(String, String)]) -> Vec<EnvVar> {
    let mut out: Vec<EnvVar> = Vec::new();
    for (name, value) in pairs {
        match out.iter_mut().find(|e| &e.name == name) {
            Some(e) => e.value = value.clone(),
            None => out.push(EnvVar {
                name: name.clone(),
                value: value.clone(),
            }),
        }
    }
    out
}

fn mount(name: &str, path: &str, read_only: bool) -> VolumeMount {
    VolumeMount {
        name: name.into(),
        mount_path: path.into(),
        read_only,
    }
}

fn is_sha(s: &str) -> bool {
    (s.len() == 40 || s.len() == 64) && s.chars().all(|c| c.is_ascii_hexdigit())
}

/// The checkout init container.
fn checkout_container(job: &JobPod) -> Container {
    let c = &job.checkout;
    let mut env = vec![
        ("SLIPWAY_CHECKOUT_URL".to_owned(), c.url.clone()),
        (
            "SLIPWAY_CHECKOUT_SHA".to_owned(),
            c.sha.to_ascii_lowercase(),
        ),
        ("HOME".to_owned(), "/tmp".to_owned()),
    ];
    let mut mounts = vec![
        mount("workspace", WORKSPACE, false),
        mount("tmp", "/tmp", false),
    ];
    if c.host_path.is_some() {
        // The node's directory belongs to someone else: git refuses to
        // read it ("dubious ownership") unless its global configuration
        // (in this container's `/tmp` home) says it is safe; the `-c` and
        // GIT_CONFIG_* forms do not reach the local upload-pack.
        env.push(("SLIPWAY_CHECKOUT_SAFE".to_owned(), SOURCE_MOUNT.to_owned()));
        mounts.push(mount("source", SOURCE_MOUNT, true));
    }
    Container {
        name: "checkout".into(),
        image: c.image.clone(),
        image_pull_policy: Some("IfNotPresent".into()),
        command: Some(vec!["sh".into(), "-c".into(), CHECKOUT_SCRIPT.into()]),
        env: env_vars(&env),
        security_context: Some(hardened(job.user)),
        volume_mounts: mounts,
        ..Container::default()
    }
}

/// The job as a Pod.
pub fn pod(job: &JobPod) -> Result<Manifest, ManifestError> {
    if !is_sha(&job.checkout.sha) {
        return Err(ManifestError::Sha(job.checkout.sha.clone()));
    }
    if job.user.0 == 0 {
        return Err(ManifestError::Root(0));
    }
    dns_label("pod", &job.name)?;
    let mut notes = job.notes.clone();
    if job.resources.pids.is_some() {
        notes.push(
            "the job's process cap (`resources.pids`) has no per-container field in Kubernetes: it is the node's `podPidsLimit`".to_owned(),
        );
    }
    let native = job.sidecars == Sidecars::Native;
    let mut services = Vec::new();
    let mut names = vec!["checkout".to_owned(), "job".to_owned()];
    for s in &job.services {
        let name = s.spec.name.to_ascii_lowercase();
        dns_label("service", &name)?;
        if names.contains(&name) {
            return Err(ManifestError::Name {
                what: "service",
                name,
                problem: "its container name is taken (by `checkout`, `job` or another service, letter case aside)".into(),
            });
        }
        names.push(name.clone());
        let translated = s
            .probe
            .as_ref()
            .map(|p| kube_probe(&s.spec.name, p, &s.spec.ports, native));
        let probe = translated.as_ref().and_then(|t| t.probe.clone());
        notes.extend(translated.and_then(|t| t.note));
        if s.spec.resources.pids.is_some() {
            notes.push(format!(
                "service `{}`: its process cap has no per-container field in Kubernetes",
                s.spec.name
            ));
        }
        let env: Vec<(String, String)> = s
            .spec
            .env
            .iter()
            .map(|(k, v)| (k.clone(), v.clone()))
            .collect();
        services.push(Container {
            name,
            image: s.spec.image.clone(),
            image_pull_policy: Some("IfNotPresent".into()),
            args: (!s.spec.command.is_empty()).then(|| s.spec.command.clone()),
            env: env_vars(&env),
            ports: s
                .spec
                .ports
                .iter()
                .map(|p| ContainerPort {
                    container_port: *p,
                    protocol: "TCP".into(),
                })
                .collect(),
            restart_policy: native.then(|| "Always".to_owned()),
            resources: resources(&s.spec.resources),
            security_context: Some(service_hardening()),
            startup_probe: if native { probe.clone() } else { None },
            readiness_probe: if native { None } else { probe },
            ..Container::default()
        });
    }

    let mut command = job.command.clone();
    if !native {
        let waits: Vec<Wait<'_>> = job
            .services
            .iter()
            .map(|s| Wait {
                service: &s.spec.name,
                ports: &s.spec.ports,
                probe: s.probe.as_ref(),
            })
            .collect();
        let script = readiness::wait_script(&waits);
        if !script.is_empty() {
            let mut wrapped = vec![
                "sh".to_owned(),
                "-c".to_owned(),
                format!("{script}exec \"$@\""),
                "slipway-wait".to_owned(),
            ];
            wrapped.extend(command);
            command = wrapped;
        }
    }
    let workload = Container {
        name: "job".into(),
        image: job.image.clone(),
        image_pull_policy: Some("IfNotPresent".into()),
        command: Some(command),
        working_dir: Some(job.workdir.clone()),
        env: env_vars(&job.env),
        resources: resources(&job.resources),
        security_context: Some(hardened(job.user)),
        volume_mounts: vec![
            mount("workspace", WORKSPACE, false),
            mount("tmp", "/tmp", false),
        ],
        ..Container::default()
    };

    let mut init_containers = vec![checkout_container(job)];
    let mut containers = Vec::new();
    if native {
        init_containers.extend(services);
    } else {
        containers.extend(services);
    }
    containers.insert(0, workload);

    let mut volumes = vec![
        Volume {
            name: "workspace".into(),
            empty_dir: Some(EmptyDir::default()),
            host_path: None,
        },
        Volume {
            name: "tmp".into(),
            empty_dir: Some(EmptyDir {
                medium: Some("Memory".into()),
                size_limit: Some(TMP_SIZE.into()),
            }),
            host_path: None,
        },
    ];
    if let Some(path) = &job.checkout.host_path {
        volumes.push(Volume {
            name: "source".into(),
            empty_dir: None,
            host_path: Some(HostPath {
                path: path.clone(),
                kind: "Directory".into(),
            }),
        });
    }
    let pod = Pod {
        api_version: "v1".into(),
        kind: "Pod".into(),
        metadata: ObjectMeta {
            name: job.name.clone(),
            labels: job.labels.clone(),
            annotations: job.annotations.clone(),
        },
        spec: PodSpec {
            restart_policy: "Never".into(),
            automount_service_account_token: false,
            security_context: PodSecurityContext {
                fs_group: Some(job.user.1),
                seccomp_profile: Some(runtime_default()),
            },
            init_containers,
            containers,
            volumes,
        },
    };
    Ok(Manifest { pod, notes })
}

/// Strings YAML 1.1 reads as booleans (the parser of Kubernetes and
/// Podman does), which a YAML 1.2 emitter leaves unquoted.
fn yaml11_bool(s: &str) -> bool {
    matches!(
        s.to_ascii_lowercase().as_str(),
        "y" | "yes" | "n" | "no" | "on" | "off"
    )
}

/// The tag [`yaml11_strings`] marks such strings with, replaced by quotes
/// once emitted.
const QUOTE_TAG: &str = "slipway-quote";

/// `value` with every string a YAML 1.1 parser would take for a boolean
/// tagged [`QUOTE_TAG`].
fn yaml11_strings(value: serde_yaml_ng::Value) -> serde_yaml_ng::Value {
    use serde_yaml_ng::Value;
    use serde_yaml_ng::value::{Tag, TaggedValue};
    match value {
        Value::String(s) if yaml11_bool(&s) => Value::Tagged(Box::new(TaggedValue {
            tag: Tag::new(QUOTE_TAG),
            value: Value::String(s),
        })),
        Value::Sequence(items) => Value::Sequence(items.into_iter().map(yaml11_strings).collect()),
        Value::Mapping(map) => Value::Mapping(
            map.into_iter()
                .map(|(k, v)| (k, yaml11_strings(v)))
                .collect(),
        ),
        other => other,
    }
}

/// The manifest as YAML: its notes as comments first, then the Pod.
/// Strings YAML 1.1 would read as booleans (Redis's `--protected-mode
/// no`) are single-quoted.
pub fn to_yaml(manifest: &Manifest) -> Result<String, serde_yaml_ng::Error> {
    let mut out = String::from("# Written by `slipway pod-manifest` (docs/kubernetes.md).\n");
    for note in &manifest.notes {
        for (i, line) in note.lines().enumerate() {
            out.push_str(if i == 0 { "# note: " } else { "#       " });
            out.push_str(line);
            out.push('\n');
        }
    }
    let value = serde_yaml_ng::to_value(&manifest.pod)?;
    let plain = serde_yaml_ng::to_string(&value)?;
    let marker = format!("!{QUOTE_TAG} ");
    if plain.contains(&marker) {
        // The marker is in the Pod's own text: leave the YAML as emitted.
        out.push_str(&plain);
        return Ok(out);
    }
    let text = serde_yaml_ng::to_string(&yaml11_strings(value))?;
    // Each marked scalar is one of the words above, then the line's end.
    let mut rest = text.as_str();
    while let Some(at) = rest.find(&marker) {
        out.push_str(&rest[..at]);
        rest = &rest[at + marker.len()..];
        let end = rest.find('\n').unwrap_or(rest.len());
        out.push('\'');
        out.push_str(&rest[..end]);
        out.push('\'');
        rest = &rest[end..];
    }
    out.push_str(rest);
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::plugins::bindings::ProbeAction;

    fn service(name: &str, image: &str, port: u16, argv: &[&str]) -> PodService {
        PodService {
            spec: serde_json::from_value(serde_json::json!({
                "name": name, "image": image, "ports": [port],
                "env": {"POSTGRES_USER": "app"}
            }))
            .unwrap(),
            probe: Some(bindings::Probe {
                action: ProbeAction::Exec(argv.iter().map(|s| s.to_string()).collect()),
                period_ms: 250,
                timeout_ms: 2000,
                success_threshold: 1,
                failure_threshold: 3,
                startup_deadline_ms: 60_000,
            }),
        }
    }

    const SHA: &str = "0123456789abcdef0123456789abcdef01234567";

    fn job(sidecars: Sidecars) -> JobPod {
        JobPod {
            name: pod_name("tmp-services-app", SHA),
            labels: BTreeMap::from([("io.slipway.managed".into(), "true".into())]),
            annotations: BTreeMap::new(),
            image: "registry.example/slipway-runner/services-app:00ff".into(),
            command: vec!["sh".into(), "-c".into(), "true".into()],
            env: vec![
                ("HOME".into(), "/root".into()),
                ("PGHOST".into(), "127.0.0.1".into()),
                ("HOME".into(), "/tmp".into()),
            ],
            workdir: WORKSPACE.into(),
            user: (1000, 1000),
            resources: crate::job::Resources {
                cpus: Some(1.5),
                memory_mb: Some(512),
                pids: None,
            },
            services: vec![
                service(
                    "db",
                    "postgres:15",
                    5432,
                    &["pg_isready", "-h", "127.0.0.1"],
                ),
                service("cache", "redis:7", 6379, &["redis-cli", "ping"]),
            ],
            checkout: CheckoutSource {
                url: "https://git.example/app.git".into(),
                sha: SHA.into(),
                image: "alpine/git".into(),
                host_path: None,
            },
            sidecars,
            notes: vec![],
        }
    }

    #[test]
    fn the_workload_and_the_checkout_are_hardened() {
        let m = pod(&job(Sidecars::Native)).unwrap();
        let spec = &m.pod.spec;
        assert_eq!(spec.restart_policy, "Never");
        assert!(!spec.automount_service_account_token);
        assert_eq!(
            spec.security_context.seccomp_profile.as_ref().unwrap().kind,
            "RuntimeDefault"
        );
        let workload = &spec.containers[0];
        assert_eq!(workload.name, "job");
        for c in [workload, &spec.init_containers[0]] {
            let sc = c.security_context.as_ref().unwrap();
            assert_eq!(sc.run_as_non_root, Some(true), "{}", c.name);
            assert_eq!(sc.run_as_user, Some(1000));
            assert_eq!(sc.read_only_root_filesystem, Some(true));
            assert_eq!(sc.allow_privilege_escalation, Some(false));
            assert_eq!(sc.capabilities.as_ref().unwrap().drop, ["ALL"]);
            assert!(sc.capabilities.as_ref().unwrap().add.is_empty());
            assert!(c.volume_mounts.iter().any(|v| v.mount_path == "/tmp"));
            assert!(c.volume_mounts.iter().any(|v| v.mount_path == WORKSPACE));
        }
        let limits = &workload.resources.as_ref().unwrap().limits;
        assert_eq!(limits["memory"], "512Mi");
        assert_eq!(limits["cpu"], "1500m");
        // One HOME, the later value.
        let homes: Vec<_> = workload.env.iter().filter(|e| e.name == "HOME").collect();
        assert_eq!(homes.len(), 1);
        assert_eq!(homes[0].value, "/tmp");
        let tmp = spec.volumes.iter().find(|v| v.name == "tmp").unwrap();
        assert_eq!(
            tmp.empty_dir.as_ref().unwrap().medium.as_deref(),
            Some("Memory")
        );
    }

    #[test]
    fn the_checkout_fetches_the_exact_sha() {
        let m = pod(&job(Sidecars::Native)).unwrap();
        let checkout = &m.pod.spec.init_containers[0];
        assert_eq!(checkout.name, "checkout");
        assert!(checkout.restart_policy.is_none());
        let sha = checkout
            .env
            .iter()
            .find(|e| e.name == "SLIPWAY_CHECKOUT_SHA")
            .unwrap();
        assert_eq!(sha.value, SHA);
        let script = &checkout.command.as_ref().unwrap()[2];
        assert!(script.contains("checkout -q --detach \"$SLIPWAY_CHECKOUT_SHA\""));
        assert!(script.contains("!= \"$SLIPWAY_CHECKOUT_SHA\""));
        let mut bad = job(Sidecars::Native);
        bad.checkout.sha = "main".into();
        assert!(matches!(pod(&bad), Err(ManifestError::Sha(_))));
        // A local source: a read-only hostPath, and git told to read it.
        let mut local = job(Sidecars::Plain);
        local.checkout.host_path = Some("/srv/repo".into());
        local.checkout.url = format!("file://{SOURCE_MOUNT}");
        let m = pod(&local).unwrap();
        let c = &m.pod.spec.init_containers[0];
        assert!(
            c.volume_mounts
                .iter()
                .any(|v| v.mount_path == SOURCE_MOUNT && v.read_only)
        );
        assert!(
            c.env
                .iter()
                .any(|e| e.name == "SLIPWAY_CHECKOUT_SAFE" && e.value == SOURCE_MOUNT)
        );
        let source = m.pod.spec.volumes.iter().find(|v| v.name == "source");
        assert_eq!(
            source.unwrap().host_path.as_ref().unwrap().path,
            "/srv/repo"
        );
    }

    #[test]
    fn native_sidecars_are_init_containers_that_restart_always() {
        let m = pod(&job(Sidecars::Native)).unwrap();
        let spec = &m.pod.spec;
        assert_eq!(spec.containers.len(), 1);
        let names: Vec<_> = spec
            .init_containers
            .iter()
            .map(|c| c.name.as_str())
            .collect();
        assert_eq!(names, ["checkout", "db", "cache"]);
        for s in &spec.init_containers[1..] {
            assert_eq!(s.restart_policy.as_deref(), Some("Always"));
            let probe = s.startup_probe.as_ref().unwrap();
            assert_eq!(probe.success_threshold, 1);
            assert!(probe.exec.is_some());
            let sc = s.security_context.as_ref().unwrap();
            assert_eq!(sc.capabilities.as_ref().unwrap().add.len(), 5);
            assert_eq!(sc.allow_privilege_escalation, Some(false));
        }
        // The workload runs its steps as they are: the sidecars are ready first.
        assert_eq!(spec.containers[0].command.as_ref().unwrap()[2], "true");
    }

    #[test]
    fn plain_services_sit_beside_the_workload_which_waits_on_localhost() {
        let m = pod(&job(Sidecars::Plain)).unwrap();
        let spec = &m.pod.spec;
        assert_eq!(spec.init_containers.len(), 1);
        let names: Vec<_> = spec.containers.iter().map(|c| c.name.as_str()).collect();
        assert_eq!(names, ["job", "db", "cache"]);
        for s in &spec.containers[1..] {
            assert!(s.restart_policy.is_none());
            assert!(s.startup_probe.is_none());
            assert!(s.readiness_probe.is_some());
        }
        let command = spec.containers[0].command.as_ref().unwrap();
        assert!(command[2].contains("slipway_wait 'db'"), "{}", command[2]);
        assert!(command[2].contains("'127.0.0.1'"));
        assert!(command[2].contains("slipway_tcp 6379"));
        assert!(command[2].ends_with("exec \"$@\""));
        // The steps' argv follows, untouched.
        assert_eq!(&command[4..], ["sh", "-c", "true"]);
    }

    #[test]
    fn names_are_dns_labels() {
        assert_eq!(
            pod_name("tmp-services-app", SHA),
            "slipway-tmp-services-app-0123456789ab"
        );
        assert!(pod_name(&"x".repeat(100), SHA).len() <= 63);
        let mut clash = job(Sidecars::Native);
        clash.services[1].spec.name = "JOB".into();
        let e = pod(&clash).unwrap_err().to_string();
        assert!(e.contains("taken"), "{e}");
    }

    #[test]
    fn the_yaml_parses_back_into_the_same_pod() {
        let mut native = job(Sidecars::Native);
        native.services[1].spec.command = vec![
            "redis-server".into(),
            "--protected-mode".into(),
            "no".into(),
        ];
        let m = pod(&native).unwrap();
        let text = to_yaml(&m).unwrap();
        assert!(text.contains("restartPolicy: Always"));
        // YAML 1.1 (Kubernetes, Podman) would read a bare `no` as false.
        assert!(text.contains("- 'no'\n"), "{text}");
        assert!(text.contains("readOnlyRootFilesystem: true"));
        let back: Pod = serde_yaml_ng::from_str(&text).unwrap();
        assert_eq!(back, m.pod);
    }
}

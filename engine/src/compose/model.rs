//! A Compose file once resolved: typed, checked, with paths made safe.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::time::Duration;

/// A Compose file, resolved.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Stack {
    /// The project name, when the file gives one.
    pub name: Option<String>,
    /// Every service, in a start order: dependencies first, ties by name.
    pub services: Vec<Service>,
    /// The named volumes the file declares, by name.
    pub volumes: Vec<String>,
}

/// One service, resolved.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Service {
    /// Its name in the file (`^[a-z0-9][a-z0-9_-]{0,62}$`).
    pub name: String,
    /// The image to run; with `build`, the tag the built image is given.
    pub image: Option<String>,
    /// How to build its image from the checkout.
    pub build: Option<Build>,
    /// Replaces the image's command.
    pub command: Option<Vec<String>>,
    /// Replaces the image's entrypoint.
    pub entrypoint: Option<Vec<String>>,
    /// The `env_file` values, then `environment` over them.
    pub environment: BTreeMap<String, String>,
    /// The ports it listens on, and where they are published.
    pub ports: Vec<Port>,
    /// Named volumes and bind mounts.
    pub volumes: Vec<Mount>,
    /// The services that start before it, and what it waits for.
    pub depends_on: Vec<(String, Condition)>,
    /// How its health is checked; `None`: no check.
    pub healthcheck: Option<Healthcheck>,
    /// When it is restarted.
    pub restart: Restart,
    /// The user it runs as.
    pub user: Option<String>,
    /// Its working directory (absolute).
    pub working_dir: Option<String>,
    /// Its labels.
    pub labels: BTreeMap<String, String>,
}

/// `build:`, resolved.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Build {
    /// The context, relative to the checkout, normalised and inside it
    /// (`.` for the checkout itself).
    pub context: PathBuf,
    /// The Dockerfile, relative to the context; `None`: `Dockerfile`.
    pub dockerfile: Option<String>,
    /// Build arguments.
    pub args: BTreeMap<String, String>,
    /// The stage to build.
    pub target: Option<String>,
}

/// A port of a service.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Port {
    /// The host address it is published on; `None`: every address.
    pub host_ip: Option<String>,
    /// The host port; `None`: not published, or (with `host_ip`) a port
    /// the daemon picks.
    pub published: Option<u16>,
    /// The port inside the container.
    pub target: u16,
    /// TCP or UDP.
    pub protocol: Protocol,
}

/// A port's protocol.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Protocol {
    /// TCP, the default.
    #[default]
    Tcp,
    /// UDP.
    Udp,
}

impl Protocol {
    /// `tcp` or `udp`, as Docker spells it.
    pub fn name(self) -> &'static str {
        match self {
            Protocol::Tcp => "tcp",
            Protocol::Udp => "udp",
        }
    }
}

/// A mount of a service.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Mount {
    /// A named volume declared at the top level.
    Named {
        /// The volume's name in the file.
        volume: String,
        /// Where it is mounted (absolute).
        target: String,
        /// Mounted read-only.
        read_only: bool,
    },
    /// A directory or file of the checkout.
    Bind {
        /// Absolute, inside the checkout, symlinks resolved.
        source: PathBuf,
        /// Where it is mounted (absolute).
        target: String,
        /// Mounted read-only.
        read_only: bool,
    },
}

/// What a service waits for, of a dependency, before it starts.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Condition {
    /// The dependency's container has started (`service_started`).
    Started,
    /// The dependency's healthcheck passes (`service_healthy`).
    Healthy,
}

/// A health check, resolved.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Healthcheck {
    /// The command to run in the container, as argv; `CMD-SHELL s` (and a
    /// plain string) becomes `["sh", "-c", s]`.
    pub test: Vec<String>,
    /// Time between two checks (default 30s).
    pub interval: Duration,
    /// Time one check may take (default 30s).
    pub timeout: Duration,
    /// Failures in a row that make the service unhealthy (default 3).
    pub retries: u32,
    /// Time after the start during which failures do not count (default 0).
    pub start_period: Duration,
}

/// `restart:`: when the service is restarted.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Restart {
    /// Never (`no`, Compose's default).
    #[default]
    No,
    /// Always (`always`).
    Always,
    /// After a failure (`on-failure[:N]`).
    OnFailure {
        /// At most this many times, when given.
        max_retries: Option<u32>,
    },
    /// Always, unless it was stopped on purpose (`unless-stopped`).
    UnlessStopped,
}

//! A Compose file, read against the subset Slipway deploys (`docs/compose.md`).
//!
//! In three passes, so nothing is touched before the whole file is known
//! good: variables are interpolated into the text (`${VAR}`, `${VAR:-default}`,
//! `${VAR:?message}`, `$$`; an unset variable without a default is an error,
//! not a blank); the YAML is read into strict types, so any key outside the
//! subset is refused with its path and line; then each service is resolved
//! (both syntaxes of ports, volumes, environment, depends_on, healthcheck)
//! and checked: binds and build contexts stay inside the checkout, named
//! volumes are declared, `depends_on` names real services without a cycle.
//! The services come out in a start order: dependencies first, then by name.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Component, Path, PathBuf};
use std::time::Duration;

use serde::Deserialize;

/// The file names looked for, in order, when a deployment names none.
pub const DEFAULT_FILES: &[&str] = &[
    "compose.yaml",
    "compose.yml",
    "docker-compose.yaml",
    "docker-compose.yml",
];

/// Why a Compose file cannot be deployed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ComposeError {
    /// No Compose file where one was looked for.
    #[error("no Compose file in the repository: looked for {looked_for}")]
    Missing {
        /// The names tried.
        looked_for: String,
    },
    /// The file could not be read.
    #[error("{file}: cannot read it: {message}")]
    Read {
        /// The file, relative to the repository.
        file: String,
        /// The I/O error.
        message: String,
    },
    /// A `${VAR}` without a value or a default, or a malformed one.
    #[error("{file}:{line}: {message}")]
    Variable {
        /// The file.
        file: String,
        /// Its line, from 1.
        line: usize,
        /// What is wrong and what to do.
        message: String,
    },
    /// YAML syntax, a key outside the supported subset, or a value of the
    /// wrong type; the message names the key's path and line.
    #[error("{file}: {message} (the keys Slipway reads are listed in docs/compose.md)")]
    Yaml {
        /// The file.
        file: String,
        /// The YAML reader's words: path, what is wrong, line and column.
        message: String,
    },
    /// A value that parses but cannot be deployed.
    #[error("{file}: {path}: {message}")]
    Invalid {
        /// The file.
        file: String,
        /// Where, e.g. `services.web.volumes[1]`.
        path: String,
        /// What is wrong and what to do.
        message: String,
    },
}

/// A Compose file, resolved.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Stack {
    /// The project name, when the file gives one.
    pub name: Option<String>,
    /// Every service, dependencies first.
    pub services: Vec<Service>,
    /// The named volumes the file declares.
    pub volumes: Vec<String>,
}

/// One service, resolved.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Service {
    /// Its name in the file.
    pub name: String,
    /// The image to run (or, with `build`, the tag Compose would give it).
    pub image: Option<String>,
    /// How to build its image at the commit.
    pub build: Option<Build>,
    /// Replaces the image's command.
    pub command: Option<Vec<String>>,
    /// Replaces the image's entrypoint.
    pub entrypoint: Option<Vec<String>>,
    /// `env_file` values, then `environment` over them.
    pub environment: BTreeMap<String, String>,
    /// Ports it listens on, and where they are published.
    pub ports: Vec<Port>,
    /// Named volumes and binds.
    pub volumes: Vec<Mount>,
    /// Services that start before it, and what it waits for.
    pub depends_on: Vec<(String, Condition)>,
    /// How its health is checked; `None`: no check (or `disable: true`).
    pub healthcheck: Option<Healthcheck>,
    /// When it is restarted.
    pub restart: Restart,
    /// The user it runs as.
    pub user: Option<String>,
    /// Its working directory.
    pub working_dir: Option<String>,
    /// Its labels.
    pub labels: BTreeMap<String, String>,
}

/// `build:`, resolved.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Build {
    /// The context, relative to the checkout (normalised, inside it).
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
    /// The host port; `None`: not published, or a port the daemon picks
    /// when `host_ip` is given.
    pub published: Option<u16>,
    /// The port inside the container.
    pub target: u16,
    /// `tcp` or `udp`.
    pub protocol: Protocol,
}

/// A port's protocol.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Protocol {
    /// TCP (the default).
    Tcp,
    /// UDP.
    Udp,
}

impl Protocol {
    /// `tcp` or `udp`.
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
        /// Where it is mounted.
        target: String,
        /// Mounted read-only.
        read_only: bool,
    },
    /// A directory or file of the checkout.
    Bind {
        /// Absolute, inside the checkout.
        source: PathBuf,
        /// Where it is mounted.
        target: String,
        /// Mounted read-only.
        read_only: bool,
    },
}

/// What a service waits for before it starts.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Condition {
    /// The dependency's container has started.
    Started,
    /// The dependency is healthy.
    Healthy,
}

/// A health check, resolved.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Healthcheck {
    /// The command, as argv (`CMD-SHELL s` is `sh -c s`).
    pub test: Vec<String>,
    /// Time between checks.
    pub interval: Duration,
    /// Time one check may take.
    pub timeout: Duration,
    /// Failures in a row that make it unhealthy.
    pub retries: u32,
    /// Time after the start when failures do not count.
    pub start_period: Duration,
}

/// `restart:`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Restart {
    /// Never restarted (Compose's default).
    #[default]
    No,
    /// Always restarted.
    Always,
    /// Restarted after a failure, at most `max_retries` times when given.
    OnFailure {
        /// `on-failure:N`.
        max_retries: Option<u32>,
    },
    /// Always restarted, unless a user stopped it (`down`).
    UnlessStopped,
}

/// The Compose file of `checkout`: `explicit` when given (it must exist),
/// else the first of [`DEFAULT_FILES`] that exists.
pub fn find_file(checkout: &Path, explicit: Option<&str>) -> Result<String, ComposeError> {
    let candidates: Vec<&str> = match explicit {
        Some(f) => vec![f],
        None => DEFAULT_FILES.to_vec(),
    };
    candidates
        .iter()
        .find(|f| checkout.join(f).is_file())
        .map(|f| f.to_string())
        .ok_or_else(|| ComposeError::Missing {
            looked_for: candidates.join(", "),
        })
}

/// Read and resolve `file` of `checkout`, `${VAR}` taken from `vars`.
pub fn load(
    checkout: &Path,
    file: &str,
    vars: &BTreeMap<String, String>,
) -> Result<Stack, ComposeError> {
    let text = std::fs::read_to_string(checkout.join(file)).map_err(|e| ComposeError::Read {
        file: file.to_owned(),
        message: e.to_string(),
    })?;
    parse(&text, file, checkout, vars)
}

/// [`load`] of a text already read.
pub fn parse(
    text: &str,
    file: &str,
    checkout: &Path,
    vars: &BTreeMap<String, String>,
) -> Result<Stack, ComposeError> {
    let text = interpolate(text, file, vars)?;
    let raw: RawFile = serde_yaml_ng::from_str(&text).map_err(|e| ComposeError::Yaml {
        file: file.to_owned(),
        message: e.to_string(),
    })?;
    Resolver {
        file,
        checkout,
        vars,
    }
    .stack(raw)
}

// --- interpolation ---

fn interpolate(
    text: &str,
    file: &str,
    vars: &BTreeMap<String, String>,
) -> Result<String, ComposeError> {
    let mut out = String::with_capacity(text.len());
    for (n, line) in text.split_inclusive('\n').enumerate() {
        if line.trim_start().starts_with('#') {
            out.push_str(line);
            continue;
        }
        let error = |message: String| ComposeError::Variable {
            file: file.to_owned(),
            line: n + 1,
            message,
        };
        let mut rest = line;
        while let Some(at) = rest.find('$') {
            out.push_str(&rest[..at]);
            let after = &rest[at + 1..];
            if let Some(tail) = after.strip_prefix('$') {
                out.push('$');
                rest = tail;
            } else if let Some(inner) = after.strip_prefix('{') {
                let Some(end) = inner.find('}') else {
                    return Err(error("`${` without its `}`".into()));
                };
                out.push_str(&expand(&inner[..end], vars).map_err(error)?);
                rest = &inner[end + 1..];
            } else {
                let len = after
                    .find(|c: char| !(c.is_ascii_alphanumeric() || c == '_'))
                    .unwrap_or(after.len());
                if len == 0 {
                    out.push('$');
                    rest = after;
                    continue;
                }
                out.push_str(&expand(&after[..len], vars).map_err(error)?);
                rest = &after[len..];
            }
        }
        out.push_str(rest);
    }
    Ok(out)
}

/// One `${...}` body: `NAME`, `NAME:-default`, `NAME-default`,
/// `NAME:?message`, `NAME?message`.
fn expand(body: &str, vars: &BTreeMap<String, String>) -> Result<String, String> {
    let name_len = body
        .find(|c: char| !(c.is_ascii_alphanumeric() || c == '_'))
        .unwrap_or(body.len());
    let (name, op) = body.split_at(name_len);
    if name.is_empty() {
        return Err(format!("`${{{body}}}` names no variable"));
    }
    let value = vars.get(name);
    let set_nonempty = value.filter(|v| !v.is_empty());
    match op {
        "" => value.cloned().ok_or_else(|| {
            format!(
                "variable `{name}` is not set (set it in the deployment's env, or give a default: ${{{name}:-value}})"
            )
        }),
        _ if op.starts_with(":-") => Ok(set_nonempty.cloned().unwrap_or_else(|| op[2..].to_owned())),
        _ if op.starts_with('-') => Ok(value.cloned().unwrap_or_else(|| op[1..].to_owned())),
        _ if op.starts_with(":?") => set_nonempty
            .cloned()
            .ok_or_else(|| format!("variable `{name}` is required: {}", &op[2..])),
        _ if op.starts_with('?') => value
            .cloned()
            .ok_or_else(|| format!("variable `{name}` is required: {}", &op[1..])),
        _ => Err(format!("`${{{body}}}` is not a form Slipway reads (`${{NAME}}`, `${{NAME:-default}}`, `${{NAME:?message}}`)")),
    }
}

// --- the file as written ---

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawFile {
    /// Accepted and ignored, as Compose does.
    #[serde(default)]
    #[allow(dead_code)]
    version: Option<serde_yaml_ng::Value>,
    name: Option<String>,
    services: BTreeMap<String, RawService>,
    #[serde(default)]
    volumes: BTreeMap<String, Option<RawVolume>>,
}

/// A top-level volume: options (driver, external, ...) are refused.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawVolume {}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawService {
    image: Option<String>,
    build: Option<TextOr<BuildLong>>,
    command: Option<Words>,
    entrypoint: Option<Words>,
    environment: Option<KeyValues>,
    env_file: Option<OneOrMany>,
    #[serde(default)]
    ports: Vec<TextOr<PortLong>>,
    #[serde(default)]
    volumes: Vec<TextOr<MountLong>>,
    depends_on: Option<RawDepends>,
    healthcheck: Option<RawHealth>,
    restart: Option<String>,
    user: Option<Scalar>,
    working_dir: Option<String>,
    labels: Option<KeyValues>,
}

/// A short form (a string or a number) or a long one (a map). Not an
/// untagged enum: that would swallow the long form's "unknown field" error,
/// its path and its line.
enum TextOr<T> {
    Text(String),
    Long(T),
}

impl<'de, T: Deserialize<'de>> Deserialize<'de> for TextOr<T> {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct Visit<T>(std::marker::PhantomData<T>);
        impl<'de, T: Deserialize<'de>> serde::de::Visitor<'de> for Visit<T> {
            type Value = TextOr<T>;
            fn expecting(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
                f.write_str("a string or a map")
            }
            fn visit_str<E: serde::de::Error>(self, v: &str) -> Result<Self::Value, E> {
                Ok(TextOr::Text(v.to_owned()))
            }
            fn visit_u64<E: serde::de::Error>(self, v: u64) -> Result<Self::Value, E> {
                Ok(TextOr::Text(v.to_string()))
            }
            fn visit_i64<E: serde::de::Error>(self, v: i64) -> Result<Self::Value, E> {
                Ok(TextOr::Text(v.to_string()))
            }
            fn visit_map<M: serde::de::MapAccess<'de>>(
                self,
                m: M,
            ) -> Result<Self::Value, M::Error> {
                T::deserialize(serde::de::value::MapAccessDeserializer::new(m)).map(TextOr::Long)
            }
        }
        d.deserialize_any(Visit(std::marker::PhantomData))
    }
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct BuildLong {
    context: Option<String>,
    dockerfile: Option<String>,
    args: Option<KeyValues>,
    target: Option<String>,
}

#[derive(Deserialize)]
#[serde(untagged)]
enum Words {
    Line(String),
    List(Vec<String>),
}

#[derive(Deserialize)]
#[serde(untagged)]
enum OneOrMany {
    One(String),
    Many(Vec<String>),
}

#[derive(Deserialize)]
#[serde(untagged)]
enum Scalar {
    Text(String),
    Int(i64),
    Float(f64),
    Bool(bool),
}

impl Scalar {
    fn text(&self) -> String {
        match self {
            Scalar::Text(s) => s.clone(),
            Scalar::Int(i) => i.to_string(),
            Scalar::Float(f) => f.to_string(),
            Scalar::Bool(b) => b.to_string(),
        }
    }
}

#[derive(Deserialize)]
#[serde(untagged)]
enum KeyValues {
    Map(BTreeMap<String, Option<Scalar>>),
    List(Vec<String>),
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct PortLong {
    target: u16,
    published: Option<Scalar>,
    host_ip: Option<String>,
    protocol: Option<String>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct MountLong {
    #[serde(rename = "type")]
    kind: String,
    source: Option<String>,
    target: String,
    read_only: Option<bool>,
}

/// `depends_on`: a list of names, or a map of names to their condition.
enum RawDepends {
    List(Vec<String>),
    Map(BTreeMap<String, DependsLong>),
}

impl<'de> Deserialize<'de> for RawDepends {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct Visit;
        impl<'de> serde::de::Visitor<'de> for Visit {
            type Value = RawDepends;
            fn expecting(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
                f.write_str("a list of services or a map of services to their condition")
            }
            fn visit_seq<S: serde::de::SeqAccess<'de>>(
                self,
                s: S,
            ) -> Result<Self::Value, S::Error> {
                Deserialize::deserialize(serde::de::value::SeqAccessDeserializer::new(s))
                    .map(RawDepends::List)
            }
            fn visit_map<M: serde::de::MapAccess<'de>>(
                self,
                m: M,
            ) -> Result<Self::Value, M::Error> {
                Deserialize::deserialize(serde::de::value::MapAccessDeserializer::new(m))
                    .map(RawDepends::Map)
            }
        }
        d.deserialize_any(Visit)
    }
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct DependsLong {
    condition: Option<String>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawHealth {
    test: Option<Words>,
    interval: Option<String>,
    timeout: Option<String>,
    retries: Option<u32>,
    start_period: Option<String>,
    disable: Option<bool>,
}

// --- resolution ---

struct Resolver<'a> {
    file: &'a str,
    checkout: &'a Path,
    vars: &'a BTreeMap<String, String>,
}

impl Resolver<'_> {
    fn invalid(&self, path: impl Into<String>, message: impl Into<String>) -> ComposeError {
        ComposeError::Invalid {
            file: self.file.to_owned(),
            path: path.into(),
            message: message.into(),
        }
    }

    fn stack(&self, raw: RawFile) -> Result<Stack, ComposeError> {
        if raw.services.is_empty() {
            return Err(self.invalid("services", "no services: a stack needs at least one"));
        }
        let volumes: Vec<String> = raw.volumes.keys().cloned().collect();
        let mut services = Vec::new();
        for (name, s) in raw.services {
            services.push(self.service(name, s, &volumes)?);
        }
        let services = self.start_order(services)?;
        Ok(Stack {
            name: raw.name,
            services,
            volumes,
        })
    }

    fn service(
        &self,
        name: String,
        s: RawService,
        volumes: &[String],
    ) -> Result<Service, ComposeError> {
        let at = |key: &str| format!("services.{name}.{key}");
        let mut chars = name.chars();
        if !(matches!(chars.next(), Some('a'..='z' | '0'..='9'))
            && name.len() <= 63
            && chars.all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-' || c == '_'))
        {
            return Err(self.invalid(
                format!("services.{name}"),
                "a service name is 1 to 63 lowercase letters, digits, `-` and `_`, starting with a letter or digit",
            ));
        }
        if s.image.is_none() && s.build.is_none() {
            return Err(self.invalid(format!("services.{name}"), "needs `image` or `build`"));
        }
        let build = s.build.map(|b| self.build(&at("build"), b)).transpose()?;
        let mut environment = BTreeMap::new();
        for (i, f) in s
            .env_file
            .map(one_or_many)
            .unwrap_or_default()
            .iter()
            .enumerate()
        {
            environment.extend(self.env_file(&format!("{}[{i}]", at("env_file")), f)?);
        }
        if let Some(env) = s.environment {
            environment.extend(self.key_values(&at("environment"), env, true)?);
        }
        let ports = s
            .ports
            .into_iter()
            .enumerate()
            .map(|(i, p)| self.port(&format!("{}[{i}]", at("ports")), p))
            .collect::<Result<_, _>>()?;
        let mounts = s
            .volumes
            .into_iter()
            .enumerate()
            .map(|(i, m)| self.mount(&format!("{}[{i}]", at("volumes")), m, volumes))
            .collect::<Result<_, _>>()?;
        let depends_on = match s.depends_on {
            None => Vec::new(),
            Some(RawDepends::List(list)) => list.into_iter().map(|d| (d, Condition::Started)).collect(),
            Some(RawDepends::Map(map)) => map
                .into_iter()
                .map(|(d, long)| {
                    let condition = match long.condition.as_deref() {
                        None | Some("service_started") => Condition::Started,
                        Some("service_healthy") => Condition::Healthy,
                        Some(other) => {
                            return Err(self.invalid(
                                format!("{}.{d}.condition", at("depends_on")),
                                format!("`{other}` is not supported (supported: service_started, service_healthy)"),
                            ));
                        }
                    };
                    Ok((d, condition))
                })
                .collect::<Result<_, _>>()?,
        };
        let healthcheck = s
            .healthcheck
            .map(|h| self.healthcheck(&at("healthcheck"), h))
            .transpose()?
            .flatten();
        let restart = match s.restart.as_deref() {
            None | Some("no") => Restart::No,
            Some("always") => Restart::Always,
            Some("unless-stopped") => Restart::UnlessStopped,
            Some("on-failure") => Restart::OnFailure { max_retries: None },
            Some(other) => match other.strip_prefix("on-failure:").map(str::parse::<u32>) {
                Some(Ok(n)) => Restart::OnFailure {
                    max_retries: Some(n),
                },
                _ => {
                    return Err(self.invalid(
                        at("restart"),
                        format!("`{other}` is not a restart policy (no, always, on-failure[:N], unless-stopped)"),
                    ));
                }
            },
        };
        Ok(Service {
            image: s.image,
            build,
            command: s
                .command
                .map(|w| self.words(&at("command"), w))
                .transpose()?,
            entrypoint: s
                .entrypoint
                .map(|w| self.words(&at("entrypoint"), w))
                .transpose()?,
            environment,
            ports,
            volumes: mounts,
            depends_on,
            healthcheck,
            restart,
            user: s.user.map(|u| u.text()),
            working_dir: s.working_dir,
            labels: s
                .labels
                .map(|l| self.key_values(&at("labels"), l, false))
                .transpose()?
                .unwrap_or_default(),
            name,
        })
    }

    fn build(&self, path: &str, b: TextOr<BuildLong>) -> Result<Build, ComposeError> {
        let long = match b {
            TextOr::Text(context) => BuildLong {
                context: Some(context),
                dockerfile: None,
                args: None,
                target: None,
            },
            TextOr::Long(long) => long,
        };
        let context = long.context.unwrap_or_else(|| ".".into());
        let context = self.inside(&context).ok_or_else(|| {
            self.invalid(
                format!("{path}.context"),
                format!("`{context}` is outside the repository"),
            )
        })?;
        if !self.checkout.join(&context).is_dir() {
            return Err(self.invalid(
                format!("{path}.context"),
                format!(
                    "`{}` is not a directory of the repository",
                    context.display()
                ),
            ));
        }
        if let Some(d) = &long.dockerfile
            && self.inside(&context.join(d).to_string_lossy()).is_none()
        {
            return Err(self.invalid(
                format!("{path}.dockerfile"),
                format!("`{d}` is outside the repository"),
            ));
        }
        Ok(Build {
            context,
            dockerfile: long.dockerfile,
            args: long
                .args
                .map(|a| self.key_values(&format!("{path}.args"), a, true))
                .transpose()?
                .unwrap_or_default(),
            target: long.target,
        })
    }

    /// `rel` as a normalised path relative to the checkout, or `None` when
    /// it leaves it (absolute, `..` above the root, or through a symlink).
    fn inside(&self, rel: &str) -> Option<PathBuf> {
        let rel = Path::new(rel);
        if rel.is_absolute() {
            return None;
        }
        let mut normal = PathBuf::new();
        for part in rel.components() {
            match part {
                Component::CurDir => {}
                Component::Normal(p) => normal.push(p),
                Component::ParentDir => {
                    if !normal.pop() {
                        return None;
                    }
                }
                Component::RootDir | Component::Prefix(_) => return None,
            }
        }
        // Symlinks: what exists must resolve inside the checkout too.
        let root = self.checkout.canonicalize().ok()?;
        let mut probe = root.clone();
        for part in normal.components() {
            probe.push(part);
            if let Ok(real) = probe.canonicalize() {
                if !real.starts_with(&root) {
                    return None;
                }
                probe = real;
            }
        }
        Some(normal)
    }

    fn words(&self, path: &str, w: Words) -> Result<Vec<String>, ComposeError> {
        match w {
            Words::List(list) => Ok(list),
            Words::Line(line) => shell_words(&line).map_err(|m| self.invalid(path, m)),
        }
    }

    /// Map or `KEY=VALUE` list; with `from_env`, a bare `KEY` (or a map key
    /// without a value) takes its value from the deployment's env, or is left out.
    fn key_values(
        &self,
        path: &str,
        kv: KeyValues,
        from_env: bool,
    ) -> Result<BTreeMap<String, String>, ComposeError> {
        let mut out = BTreeMap::new();
        let pairs: Vec<(String, Option<String>)> = match kv {
            KeyValues::Map(map) => map
                .into_iter()
                .map(|(k, v)| (k, v.map(|v| v.text())))
                .collect(),
            KeyValues::List(list) => list
                .into_iter()
                .map(|item| match item.split_once('=') {
                    Some((k, v)) => (k.to_owned(), Some(v.to_owned())),
                    None => (item, None),
                })
                .collect(),
        };
        for (k, v) in pairs {
            if k.is_empty() || k.contains(char::is_whitespace) {
                return Err(self.invalid(path, format!("`{k}` is not a name")));
            }
            match v {
                Some(v) => {
                    out.insert(k, v);
                }
                None if from_env => {
                    if let Some(v) = self.vars.get(&k) {
                        out.insert(k, v.clone());
                    }
                }
                None => {
                    out.insert(k, String::new());
                }
            }
        }
        Ok(out)
    }

    fn env_file(&self, path: &str, f: &str) -> Result<BTreeMap<String, String>, ComposeError> {
        let rel = self
            .inside(f)
            .ok_or_else(|| self.invalid(path, format!("`{f}` is outside the repository")))?;
        let text = std::fs::read_to_string(self.checkout.join(&rel))
            .map_err(|e| self.invalid(path, format!("cannot read `{f}`: {e}")))?;
        let mut out = BTreeMap::new();
        for (n, line) in text.lines().enumerate() {
            let line = line.trim();
            if line.is_empty() || line.starts_with('#') {
                continue;
            }
            let line = line.strip_prefix("export ").unwrap_or(line);
            let Some((k, v)) = line.split_once('=') else {
                return Err(self.invalid(path, format!("`{f}` line {}: write KEY=VALUE", n + 1)));
            };
            let v = v.trim();
            let v = v
                .strip_prefix('"')
                .and_then(|v| v.strip_suffix('"'))
                .or_else(|| v.strip_prefix('\'').and_then(|v| v.strip_suffix('\'')))
                .unwrap_or(v);
            out.insert(k.trim().to_owned(), v.to_owned());
        }
        Ok(out)
    }

    fn port(&self, path: &str, p: TextOr<PortLong>) -> Result<Port, ComposeError> {
        let number = |s: &str| -> Result<u16, ComposeError> {
            if s.contains('-') {
                return Err(self.invalid(
                    path,
                    format!("`{s}`: port ranges are not supported; list each port"),
                ));
            }
            s.parse::<u16>()
                .ok()
                .filter(|p| *p > 0)
                .ok_or_else(|| self.invalid(path, format!("`{s}` is not a port (1 to 65535)")))
        };
        let protocol = |s: Option<&str>| match s {
            None | Some("tcp") => Ok(Protocol::Tcp),
            Some("udp") => Ok(Protocol::Udp),
            Some(other) => {
                Err(self.invalid(path, format!("`{other}` is not a protocol (tcp, udp)")))
            }
        };
        match p {
            TextOr::Long(l) => Ok(Port {
                host_ip: l.host_ip,
                published: l.published.map(|p| number(&p.text())).transpose()?,
                target: l.target,
                protocol: protocol(l.protocol.as_deref())?,
            }),
            TextOr::Text(text) => {
                let (spec, proto) = match text.split_once('/') {
                    Some((spec, proto)) => (spec.to_owned(), Some(proto.to_owned())),
                    None => (text.clone(), None),
                };
                // host_ip:published:target, published:target or target; an
                // IPv6 host address is bracketed.
                let (host_ip, rest) = match spec.strip_prefix('[') {
                    Some(v6) => match v6.split_once("]:") {
                        Some((ip, rest)) => (Some(ip.to_owned()), rest.to_owned()),
                        None => {
                            return Err(self.invalid(
                                path,
                                format!("`{text}`: an IPv6 address needs `[addr]:port`"),
                            ));
                        }
                    },
                    None => match spec.matches(':').count() {
                        2 => {
                            let (ip, rest) = spec.split_once(':').unwrap_or_default();
                            (Some(ip.to_owned()), rest.to_owned())
                        }
                        _ => (None, spec.clone()),
                    },
                };
                let (published, target) = match rest.split_once(':') {
                    Some((p, t)) => (
                        if p.is_empty() { None } else { Some(number(p)?) },
                        number(t)?,
                    ),
                    None => (None, number(&rest)?),
                };
                Ok(Port {
                    host_ip,
                    published,
                    target,
                    protocol: protocol(proto.as_deref())?,
                })
            }
        }
    }

    fn mount(
        &self,
        path: &str,
        m: TextOr<MountLong>,
        volumes: &[String],
    ) -> Result<Mount, ComposeError> {
        let (kind, source, target, read_only) = match m {
            TextOr::Long(l) => (l.kind, l.source, l.target, l.read_only.unwrap_or(false)),
            TextOr::Text(s) => {
                let parts: Vec<&str> = s.split(':').collect();
                let (source, target, mode) = match parts.as_slice() {
                    [t] => (None, t.to_string(), None),
                    [s, t] => (Some(s.to_string()), t.to_string(), None),
                    [s, t, m] => (Some(s.to_string()), t.to_string(), Some(*m)),
                    _ => return Err(self.invalid(path, format!("`{s}`: write source:target[:ro]"))),
                };
                let read_only = match mode {
                    None | Some("rw") => false,
                    Some("ro") => true,
                    Some(other) => {
                        return Err(self.invalid(path, format!("`{other}` is not a mode (ro, rw)")));
                    }
                };
                let kind = match &source {
                    Some(s) if s.starts_with('.') || s.starts_with('/') || s.starts_with('~') => "bind",
                    Some(_) => "volume",
                    None => return Err(self.invalid(path, format!("`{s}`: an anonymous volume has no name to keep its data under; declare a named volume"))),
                };
                (kind.to_owned(), source, target, read_only)
            }
        };
        if !target.starts_with('/') {
            return Err(self.invalid(path, format!("target `{target}` must be an absolute path")));
        }
        let source = source.ok_or_else(|| self.invalid(path, "needs a source"))?;
        match kind.as_str() {
            "volume" => {
                if !volumes.contains(&source) {
                    return Err(self.invalid(
                        path,
                        format!("volume `{source}` is not declared under the top-level `volumes:`"),
                    ));
                }
                Ok(Mount::Named {
                    volume: source,
                    target,
                    read_only,
                })
            }
            "bind" => {
                let rel = self.inside(&source).ok_or_else(|| {
                    self.invalid(path, format!("bind source `{source}` is outside the repository; a deployment binds files of its checkout only"))
                })?;
                Ok(Mount::Bind {
                    source: self.checkout.join(rel),
                    target,
                    read_only,
                })
            }
            other => Err(self.invalid(
                path,
                format!("type `{other}` is not supported (volume, bind)"),
            )),
        }
    }

    fn healthcheck(&self, path: &str, h: RawHealth) -> Result<Option<Healthcheck>, ComposeError> {
        if h.disable == Some(true) {
            return Ok(None);
        }
        let test = match h.test {
            None => return Err(self.invalid(path, "needs `test` (or `disable: true`)")),
            Some(Words::Line(line)) => vec!["sh".into(), "-c".into(), line],
            Some(Words::List(list)) => match list.split_first() {
                Some((first, rest)) if first == "CMD" && !rest.is_empty() => rest.to_vec(),
                Some((first, rest)) if first == "CMD-SHELL" && rest.len() == 1 => {
                    vec!["sh".into(), "-c".into(), rest[0].clone()]
                }
                Some((first, _)) if first == "NONE" => return Ok(None),
                _ => return Err(self.invalid(
                    format!("{path}.test"),
                    "write [\"CMD\", program, args...], [\"CMD-SHELL\", \"command\"] or a string",
                )),
            },
        };
        let duration =
            |key: &str, v: Option<String>, default: Duration| -> Result<Duration, ComposeError> {
                v.map(|v| parse_duration(&v).map_err(|m| self.invalid(format!("{path}.{key}"), m)))
                    .unwrap_or(Ok(default))
            };
        Ok(Some(Healthcheck {
            test,
            interval: duration("interval", h.interval, Duration::from_secs(30))?,
            timeout: duration("timeout", h.timeout, Duration::from_secs(30))?,
            retries: h.retries.unwrap_or(3),
            start_period: duration("start_period", h.start_period, Duration::ZERO)?,
        }))
    }

    /// Dependencies first, then by name; unknown services, a service that
    /// depends on itself and cycles are refused.
    fn start_order(&self, services: Vec<Service>) -> Result<Vec<Service>, ComposeError> {
        let names: BTreeSet<&str> = services.iter().map(|s| s.name.as_str()).collect();
        for s in &services {
            for (d, _) in &s.depends_on {
                if d == &s.name {
                    return Err(self.invalid(
                        format!("services.{}.depends_on", s.name),
                        "a service cannot depend on itself",
                    ));
                }
                if !names.contains(d.as_str()) {
                    return Err(self.invalid(
                        format!("services.{}.depends_on", s.name),
                        format!("no service `{d}` in this file"),
                    ));
                }
            }
        }
        let mut placed: Vec<Service> = Vec::new();
        let mut left = services;
        while !left.is_empty() {
            let ready = left.iter().position(|s| {
                s.depends_on
                    .iter()
                    .all(|(d, _)| placed.iter().any(|p| &p.name == d))
            });
            match ready {
                Some(i) => placed.push(left.remove(i)),
                None => {
                    let cycle = self.cycle(&left);
                    return Err(self.invalid(
                        "services",
                        format!("depends_on goes round in a circle: {cycle}"),
                    ));
                }
            }
        }
        Ok(placed)
    }

    /// A cycle among `left` (each of which waits for another of them), as
    /// `a -> b -> a`.
    fn cycle(&self, left: &[Service]) -> String {
        let next = |name: &str| -> Option<&str> {
            left.iter()
                .find(|s| s.name == name)?
                .depends_on
                .iter()
                .map(|(d, _)| d.as_str())
                .find(|d| left.iter().any(|s| s.name == *d))
        };
        let mut path: Vec<&str> = vec![left[0].name.as_str()];
        while let Some(n) = next(path[path.len() - 1]) {
            if let Some(at) = path.iter().position(|p| *p == n) {
                let mut cycle: Vec<&str> = path[at..].to_vec();
                cycle.push(n);
                return cycle.join(" -> ");
            }
            path.push(n);
        }
        path.join(" -> ")
    }
}

fn one_or_many(o: OneOrMany) -> Vec<String> {
    match o {
        OneOrMany::One(s) => vec![s],
        OneOrMany::Many(v) => v,
    }
}

/// Compose's durations: `1h30m`, `10s`, `500ms`, `1.5s`, `2m`.
fn parse_duration(text: &str) -> Result<Duration, String> {
    let bad = || format!("`{text}` is not a duration (e.g. 10s, 1m30s, 500ms)");
    let mut rest = text.trim();
    if rest.is_empty() {
        return Err(bad());
    }
    let mut total = 0f64;
    while !rest.is_empty() {
        let num_len = rest
            .find(|c: char| !(c.is_ascii_digit() || c == '.'))
            .ok_or_else(bad)?;
        let value: f64 = rest[..num_len].parse().map_err(|_| bad())?;
        rest = &rest[num_len..];
        let unit_len = rest
            .find(|c: char| c.is_ascii_digit())
            .unwrap_or(rest.len());
        let scale = match &rest[..unit_len] {
            "h" => 3600.0,
            "m" => 60.0,
            "s" => 1.0,
            "ms" => 0.001,
            "us" | "µs" => 0.000_001,
            _ => return Err(bad()),
        };
        total += value * scale;
        rest = &rest[unit_len..];
    }
    Ok(Duration::from_secs_f64(total))
}

/// A command line split as `sh` would split words: spaces separate,
/// quotes group, a backslash escapes (outside single quotes).
fn shell_words(line: &str) -> Result<Vec<String>, String> {
    let mut words = Vec::new();
    let mut word = String::new();
    let mut in_word = false;
    let mut chars = line.chars();
    while let Some(c) = chars.next() {
        match c {
            '\'' => {
                in_word = true;
                loop {
                    match chars.next() {
                        Some('\'') => break,
                        Some(c) => word.push(c),
                        None => return Err(format!("`{line}`: a quote ' is not closed")),
                    }
                }
            }
            '"' => {
                in_word = true;
                loop {
                    match chars.next() {
                        Some('"') => break,
                        Some('\\') => match chars.next() {
                            Some(c @ ('"' | '\\' | '$' | '`')) => word.push(c),
                            Some(c) => {
                                word.push('\\');
                                word.push(c);
                            }
                            None => return Err(format!("`{line}`: a quote \" is not closed")),
                        },
                        Some(c) => word.push(c),
                        None => return Err(format!("`{line}`: a quote \" is not closed")),
                    }
                }
            }
            '\\' => {
                in_word = true;
                if let Some(c) = chars.next() {
                    word.push(c);
                }
            }
            c if c.is_whitespace() => {
                if in_word {
                    words.push(std::mem::take(&mut word));
                    in_word = false;
                }
            }
            c => {
                in_word = true;
                word.push(c);
            }
        }
    }
    if in_word {
        words.push(word);
    }
    Ok(words)
}

#[cfg(test)]
mod tests;

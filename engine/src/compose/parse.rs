//! The tree of a Compose file resolved into a [`Stack`]: each key in each of
//! its syntaxes, checked, and the services put in a start order.

use std::collections::{BTreeMap, BTreeSet};
use std::net::IpAddr;
use std::path::{Path, PathBuf};
use std::str::FromStr;
use std::time::Duration;

use super::error::{Fault, KeyPath};
use super::model::{Build, Condition, Healthcheck, Mount, Port, Protocol, Restart, Service, Stack};
use super::yaml::{self, Value};
use super::{interpolate, paths, words};

/// What every service is resolved against.
struct Context<'a> {
    checkout: &'a Path,
    vars: &'a BTreeMap<String, String>,
    volumes: &'a BTreeSet<String>,
}

/// A service, its dependencies kept with their paths until all services
/// are known.
struct Resolved {
    service: Service,
    deps: Vec<(String, Condition, KeyPath)>,
}

/// The whole file: keys checked first, then values interpolated, then
/// each service resolved, then the dependencies checked and ordered.
pub(crate) fn stack(
    mut root: Value,
    checkout: &Path,
    vars: &BTreeMap<String, String>,
) -> Result<Stack, Fault> {
    let top = KeyPath::default();
    match &root {
        Value::Map(_) => {}
        Value::Null => {
            return Err(Fault::invalid(
                &top,
                "the file is empty: it needs a `services:` mapping",
            ));
        }
        other => {
            return Err(Fault::invalid(
                &top,
                format!(
                    "the file must be a mapping with `services:`, not {}",
                    other.kind()
                ),
            ));
        }
    }
    yaml::check_keys(&root, &yaml::TOP, &top)?;
    interpolate::tree(&mut root, vars, &top)?;

    let name = match present(&root, "name") {
        None => None,
        Some(v) => {
            let at = top.key("name");
            let name = text(v, &at)?;
            if !valid_name(&name) {
                return Err(Fault::invalid(
                    &at,
                    format!(
                        "`{name}` is not a valid project name: lowercase letters, digits, `_` and `-`, starting with a letter or a digit, at most 63 characters"
                    ),
                ));
            }
            Some(name)
        }
    };
    let volumes = declared_volumes(present(&root, "volumes"), &top.key("volumes"))?;
    let at = top.key("services");
    let services = match present(&root, "services") {
        Some(Value::Map(entries)) if !entries.is_empty() => entries,
        None | Some(Value::Map(_)) => {
            return Err(Fault::invalid(
                &at,
                "at least one service is needed: `services:` with a mapping of services",
            ));
        }
        Some(other) => {
            return Err(Fault::invalid(
                &at,
                format!(
                    "expected a mapping of service names to services, not {}",
                    other.kind()
                ),
            ));
        }
    };
    let context = Context {
        checkout,
        vars,
        volumes: &volumes,
    };
    let mut resolved = Vec::with_capacity(services.len());
    for (name, value) in services {
        resolved.push(service(name, value, &context, &at.key(name))?);
    }
    Ok(Stack {
        name,
        services: start_order(resolved, &at)?,
        volumes: volumes.into_iter().collect(),
    })
}

/// The value of `key` in `map`, a null value counting as absent (as
/// `image:` with nothing after it does in Compose).
fn present<'v>(map: &'v Value, key: &str) -> Option<&'v Value> {
    map.get(key).filter(|v| !matches!(v, Value::Null))
}

/// `^[a-z0-9][a-z0-9_-]{0,62}$`: service and project names.
fn valid_name(name: &str) -> bool {
    let bytes = name.as_bytes();
    let allowed = |b: &u8| b.is_ascii_lowercase() || b.is_ascii_digit();
    bytes.first().is_some_and(allowed)
        && bytes.len() <= 63
        && bytes.iter().all(|b| allowed(b) || *b == b'_' || *b == b'-')
}

fn declared_volumes(value: Option<&Value>, at: &KeyPath) -> Result<BTreeSet<String>, Fault> {
    let entries = match value {
        None => return Ok(BTreeSet::new()),
        Some(Value::Map(entries)) => entries,
        Some(other) => {
            return Err(Fault::invalid(
                at,
                format!("expected a mapping of volume names, not {}", other.kind()),
            ));
        }
    };
    let mut names = BTreeSet::new();
    for (name, options) in entries {
        let here = at.key(name);
        let valid = name
            .bytes()
            .next()
            .is_some_and(|b| b.is_ascii_alphanumeric())
            && name
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'_' | b'.' | b'-'));
        if !valid {
            return Err(Fault::invalid(
                &here,
                format!(
                    "`{name}` is not a valid volume name: letters, digits, `_`, `.` and `-`, starting with a letter or a digit"
                ),
            ));
        }
        // Options are refused as unknown keys already; only the kind of
        // value is left to check.
        if !matches!(options, Value::Null | Value::Map(_)) {
            return Err(Fault::invalid(
                &here,
                format!(
                    "declare a volume as `{name}:` or `{name}: {{}}`, not with {}",
                    options.kind()
                ),
            ));
        }
        names.insert(name.clone());
    }
    Ok(names)
}

fn service(name: &str, v: &Value, cx: &Context<'_>, at: &KeyPath) -> Result<Resolved, Fault> {
    if !valid_name(name) {
        return Err(Fault::invalid(
            at,
            format!(
                "`{name}` is not a valid service name: lowercase letters, digits, `_` and `-`, starting with a letter or a digit, at most 63 characters"
            ),
        ));
    }
    if !matches!(v, Value::Map(_)) {
        return Err(Fault::invalid(
            at,
            format!("a service is a mapping of its settings, not {}", v.kind()),
        ));
    }
    let field = |key: &str| present(v, key).map(|value| (value, at.key(key)));

    let image = field("image").map(|(v, p)| text(v, &p)).transpose()?;
    let build = field("build").map(|(v, p)| build(v, cx, &p)).transpose()?;
    if image.is_none() && build.is_none() {
        return Err(Fault::invalid(
            at,
            "needs `image` or `build`: name the image to run, or how to build it",
        ));
    }
    let command = field("command").map(|(v, p)| argv(v, &p)).transpose()?;
    let entrypoint = field("entrypoint").map(|(v, p)| argv(v, &p)).transpose()?;
    // Env file values first, `environment` over them, as Compose does.
    let mut environment = BTreeMap::new();
    if let Some((v, p)) = field("env_file") {
        environment.extend(env_files(v, cx, &p)?);
    }
    if let Some((v, p)) = field("environment") {
        environment.extend(key_values(v, &p, |key| cx.vars.get(key).cloned())?);
    }
    let ports = field("ports")
        .map(|(v, p)| ports(v, &p))
        .transpose()?
        .unwrap_or_default();
    let volumes = field("volumes")
        .map(|(v, p)| mounts(v, cx, &p))
        .transpose()?
        .unwrap_or_default();
    let deps = field("depends_on")
        .map(|(v, p)| depends_on(v, &p))
        .transpose()?
        .unwrap_or_default();
    let healthcheck = match field("healthcheck") {
        Some((v, p)) => healthcheck(v, &p)?,
        None => None,
    };
    let restart = field("restart")
        .map(|(v, p)| restart(v, &p))
        .transpose()?
        .unwrap_or_default();
    let user = field("user").map(|(v, p)| text(v, &p)).transpose()?;
    let working_dir = match field("working_dir") {
        None => None,
        Some((v, p)) => {
            let dir = text(v, &p)?;
            if !dir.starts_with('/') {
                return Err(Fault::invalid(
                    &p,
                    format!("`{dir}` is not an absolute path: a working directory starts with `/`"),
                ));
            }
            Some(dir)
        }
    };
    // A bare label (list form) or a null value is an empty label, as in
    // Compose.
    let labels = field("labels")
        .map(|(v, p)| key_values(v, &p, |_| Some(String::new())))
        .transpose()?
        .unwrap_or_default();
    Ok(Resolved {
        service: Service {
            name: name.to_owned(),
            image,
            build,
            command,
            entrypoint,
            environment,
            ports,
            volumes,
            depends_on: deps.iter().map(|(n, c, _)| (n.clone(), *c)).collect(),
            healthcheck,
            restart,
            user,
            working_dir,
            labels,
        },
        deps,
    })
}

// --- scalars ---

/// A scalar as text: numbers and booleans as written (`1000`, `true`).
fn scalar(v: &Value, at: &KeyPath) -> Result<String, Fault> {
    match v {
        Value::String(s) | Value::Number(s) => Ok(s.clone()),
        Value::Bool(b) => Ok(b.to_string()),
        other => Err(Fault::invalid(
            at,
            format!("expected a string, not {}", other.kind()),
        )),
    }
}

/// A scalar that must not be blank.
fn text(v: &Value, at: &KeyPath) -> Result<String, Fault> {
    let s = scalar(v, at)?;
    if s.trim().is_empty() {
        return Err(Fault::invalid(at, "must not be empty"));
    }
    Ok(s)
}

/// A boolean, or (after interpolation) the string `true` or `false`.
fn boolean(v: &Value, at: &KeyPath) -> Result<bool, Fault> {
    match v {
        Value::Bool(b) => Ok(*b),
        Value::String(s) if s == "true" => Ok(true),
        Value::String(s) if s == "false" => Ok(false),
        other => Err(Fault::invalid(
            at,
            format!("expected `true` or `false`, not {}", other.kind()),
        )),
    }
}

/// A number, or a string holding one (from a variable).
fn number<T: FromStr>(v: &Value, at: &KeyPath, what: &str) -> Result<T, Fault> {
    match v {
        Value::Number(s) | Value::String(s) => s
            .trim()
            .parse()
            .map_err(|_| Fault::invalid(at, format!("`{s}` is not {what}"))),
        other => Err(Fault::invalid(
            at,
            format!("expected {what}, not {}", other.kind()),
        )),
    }
}

/// `command` and `entrypoint`: a list, or a string split into words as a
/// shell would.
fn argv(v: &Value, at: &KeyPath) -> Result<Vec<String>, Fault> {
    match v {
        Value::String(s) => words::shell_words(s).map_err(|m| Fault::invalid(at, m)),
        Value::Seq(items) => items
            .iter()
            .enumerate()
            .map(|(i, item)| scalar(item, &at.index(i)))
            .collect(),
        Value::Number(s) => Ok(vec![s.clone()]),
        other => Err(Fault::invalid(
            at,
            format!(
                "expected a string or a list of strings, not {}",
                other.kind()
            ),
        )),
    }
}

/// A mapping, or a list of `KEY=value`, as a map; `bare` gives the value of
/// a key without one (a null value, or no `=`), `None` leaving it out.
fn key_values(
    v: &Value,
    at: &KeyPath,
    bare: impl Fn(&str) -> Option<String>,
) -> Result<BTreeMap<String, String>, Fault> {
    let mut out = BTreeMap::new();
    match v {
        Value::Map(entries) => {
            for (key, value) in entries {
                let here = at.key(key);
                if key.is_empty() {
                    return Err(Fault::invalid(&here, "a key must not be empty"));
                }
                match value {
                    Value::Null => {
                        if let Some(value) = bare(key) {
                            out.insert(key.clone(), value);
                        }
                    }
                    Value::Seq(_) | Value::Map(_) => {
                        return Err(Fault::invalid(
                            &here,
                            format!(
                                "expected a string, a number or a boolean, not {}",
                                value.kind()
                            ),
                        ));
                    }
                    scalar_value => {
                        out.insert(key.clone(), scalar(scalar_value, &here)?);
                    }
                }
            }
        }
        Value::Seq(items) => {
            for (i, item) in items.iter().enumerate() {
                let here = at.index(i);
                let entry = scalar(item, &here)?;
                match entry.split_once('=') {
                    Some(("", _)) => {
                        return Err(Fault::invalid(
                            &here,
                            format!("`{entry}` has no key before `=`"),
                        ));
                    }
                    Some((key, value)) => {
                        out.insert(key.to_owned(), value.to_owned());
                    }
                    None if entry.is_empty() => {
                        return Err(Fault::invalid(&here, "an entry must not be empty"));
                    }
                    None => {
                        if let Some(value) = bare(&entry) {
                            out.insert(entry, value);
                        }
                    }
                }
            }
        }
        other => {
            return Err(Fault::invalid(
                at,
                format!(
                    "expected a mapping or a list of `KEY=value`, not {}",
                    other.kind()
                ),
            ));
        }
    }
    Ok(out)
}

// --- build ---

fn build(v: &Value, cx: &Context<'_>, at: &KeyPath) -> Result<Build, Fault> {
    let (context, context_at) = match v {
        Value::Map(_) => match present(v, "context") {
            Some(c) => (text(c, &at.key("context"))?, at.key("context")),
            None => (".".to_owned(), at.clone()),
        },
        other => (text(other, at)?, at.clone()),
    };
    if context.contains("://") || context.starts_with("git@") {
        return Err(Fault::invalid(
            &context_at,
            format!(
                "`{context}` is a remote build context: Slipway builds from the repository; use a directory of it"
            ),
        ));
    }
    let inside = paths::inside(cx.checkout, &context)
        .map_err(|m| Fault::invalid(&context_at, format!("build context: {m}")))?;
    if !inside.real.is_dir() {
        return Err(Fault::invalid(
            &context_at,
            format!("build context `{context}` is not a directory of the repository"),
        ));
    }
    let dockerfile = match present(v, "dockerfile") {
        Some(d) => Some((text(d, &at.key("dockerfile"))?, at.key("dockerfile"))),
        None => None,
    };
    // The Dockerfile may sit outside the context, but not outside the
    // checkout; and a missing one is better reported now than mid-build.
    let (name, name_at) = match &dockerfile {
        Some((name, p)) => (name.as_str(), p.clone()),
        None => ("Dockerfile", context_at.clone()),
    };
    let file = paths::inside(cx.checkout, inside.relative.join(name))
        .map_err(|m| Fault::invalid(&name_at, format!("Dockerfile: {m}")))?;
    if !file.real.is_file() {
        return Err(Fault::invalid(
            &name_at,
            format!(
                "there is no `{name}` in the build context `{context}`: add it, or name the Dockerfile with `dockerfile:`"
            ),
        ));
    }
    let (args, target) = match v {
        Value::Map(_) => (
            present(v, "args")
                .map(|a| key_values(a, &at.key("args"), |key| cx.vars.get(key).cloned()))
                .transpose()?
                .unwrap_or_default(),
            present(v, "target")
                .map(|t| text(t, &at.key("target")))
                .transpose()?,
        ),
        _ => (BTreeMap::new(), None),
    };
    Ok(Build {
        context: if inside.relative.as_os_str().is_empty() {
            PathBuf::from(".")
        } else {
            inside.relative
        },
        dockerfile: dockerfile.map(|(name, _)| name),
        args,
        target,
    })
}

// --- env files ---

fn env_files(v: &Value, cx: &Context<'_>, at: &KeyPath) -> Result<Vec<(String, String)>, Fault> {
    let entries: Vec<(&Value, KeyPath)> = match v {
        Value::Seq(items) => items
            .iter()
            .enumerate()
            .map(|(i, item)| (item, at.index(i)))
            .collect(),
        other => vec![(other, at.clone())],
    };
    let mut out = Vec::new();
    for (entry, here) in entries {
        let (file, required, file_at) = match entry {
            Value::Map(_) => {
                let Some(path) = present(entry, "path") else {
                    return Err(Fault::invalid(&here, "needs `path`: the env file to read"));
                };
                let required = present(entry, "required")
                    .map(|r| boolean(r, &here.key("required")))
                    .transpose()?
                    .unwrap_or(true);
                (text(path, &here.key("path"))?, required, here.key("path"))
            }
            other => (text(other, &here)?, true, here.clone()),
        };
        let inside = paths::inside(cx.checkout, &file)
            .map_err(|m| Fault::invalid(&file_at, format!("env file: {m}")))?;
        let content = match paths::read_bounded(&inside.real) {
            Ok(content) => content,
            Err(paths::ReadError::Io(e))
                if e.kind() == std::io::ErrorKind::NotFound && !required =>
            {
                continue;
            }
            Err(paths::ReadError::Io(e)) => {
                return Err(Fault::invalid(
                    &file_at,
                    format!("cannot read the env file `{file}`: {e}"),
                ));
            }
            Err(paths::ReadError::Other(m)) => {
                return Err(Fault::invalid(&file_at, format!("env file `{file}`: {m}")));
            }
        };
        out.extend(
            words::env_file(&content, cx.vars)
                .map_err(|m| Fault::invalid(&file_at, format!("env file `{file}`, {m}")))?,
        );
    }
    Ok(out)
}

// --- ports ---

fn ports(v: &Value, at: &KeyPath) -> Result<Vec<Port>, Fault> {
    let Value::Seq(items) = v else {
        return Err(Fault::invalid(
            at,
            format!("expected a list of ports, not {}", v.kind()),
        ));
    };
    let mut out = Vec::with_capacity(items.len());
    for (i, item) in items.iter().enumerate() {
        let here = at.index(i);
        let port = match item {
            Value::Map(_) => long_port(item, &here)?,
            Value::String(s) | Value::Number(s) => {
                short_port(s).map_err(|m| Fault::invalid(&here, m))?
            }
            other => {
                return Err(Fault::invalid(
                    &here,
                    format!(
                        "expected `8080:80` or a mapping with `target`, not {}",
                        other.kind()
                    ),
                ));
            }
        };
        out.push(port);
    }
    Ok(out)
}

/// `80`, `8080:80`, `127.0.0.1:8080:80`, `127.0.0.1::80`, `[::1]:8080:80`,
/// each with an optional `/tcp` or `/udp`.
fn short_port(spec: &str) -> Result<Port, String> {
    let s = spec.trim();
    let (address, protocol) = match s.rsplit_once('/') {
        Some((a, p)) => (a, protocol(p)?),
        None => (s, Protocol::Tcp),
    };
    let bad = || {
        format!(
            "`{spec}` is not a port: write `80`, `8080:80`, `127.0.0.1:8080:80` or `8080:80/udp` (an IPv6 address in brackets)"
        )
    };
    let (bracketed, rest) = match address.strip_prefix('[') {
        Some(after) => {
            let (ip, rest) = after.split_once(']').ok_or_else(bad)?;
            (Some(ip), rest.strip_prefix(':').ok_or_else(bad)?)
        }
        None => (None, address),
    };
    let parts: Vec<&str> = rest.split(':').collect();
    let (host_ip, published, target) = match (bracketed, parts.as_slice()) {
        (None, [target]) => (None, None, *target),
        (None, [published, target]) => (None, Some(*published), *target),
        (None, [ip, published, target]) => (Some(*ip), Some(*published), *target),
        (Some(ip), [published, target]) => (Some(ip), Some(*published), *target),
        _ => return Err(bad()),
    };
    Ok(Port {
        host_ip: host_ip.map(ip_address).transpose()?,
        published: match published {
            None | Some("") => None,
            Some(p) => Some(port_number(p)?),
        },
        target: port_number(target)?,
        protocol,
    })
}

fn long_port(v: &Value, at: &KeyPath) -> Result<Port, Fault> {
    let Some(target) = present(v, "target") else {
        return Err(Fault::invalid(
            at,
            "needs `target`: the port inside the container",
        ));
    };
    let number_at = |key: &str, value: &Value| -> Result<u16, Fault> {
        let here = at.key(key);
        port_number(&scalar(value, &here)?).map_err(|m| Fault::invalid(&here, m))
    };
    let published = match present(v, "published") {
        None => None,
        Some(Value::String(s)) if s.is_empty() => None,
        Some(p) => Some(number_at("published", p)?),
    };
    let host_ip = match present(v, "host_ip") {
        None => None,
        Some(ip) => {
            let here = at.key("host_ip");
            Some(ip_address(&text(ip, &here)?).map_err(|m| Fault::invalid(&here, m))?)
        }
    };
    let protocol = match present(v, "protocol") {
        None => Protocol::Tcp,
        Some(p) => {
            let here = at.key("protocol");
            protocol(&text(p, &here)?).map_err(|m| Fault::invalid(&here, m))?
        }
    };
    Ok(Port {
        host_ip,
        published,
        target: number_at("target", target)?,
        protocol,
    })
}

fn port_number(s: &str) -> Result<u16, String> {
    let s = s.trim();
    if s.contains('-') {
        return Err(format!(
            "port ranges (`{s}`) are not supported: list each port on its own"
        ));
    }
    match s.parse::<u16>() {
        Ok(n) if n > 0 => Ok(n),
        _ => Err(format!("`{s}` is not a port number (1 to 65535)")),
    }
}

fn protocol(p: &str) -> Result<Protocol, String> {
    match p.to_ascii_lowercase().as_str() {
        "tcp" => Ok(Protocol::Tcp),
        "udp" => Ok(Protocol::Udp),
        _ => Err(format!(
            "protocol `{p}` is not supported: use `tcp` or `udp`"
        )),
    }
}

fn ip_address(ip: &str) -> Result<String, String> {
    ip.parse::<IpAddr>()
        .map(|_| ip.to_owned())
        .map_err(|_| format!("`{ip}` is not an IP address"))
}

// --- volumes ---

fn mounts(v: &Value, cx: &Context<'_>, at: &KeyPath) -> Result<Vec<Mount>, Fault> {
    let Value::Seq(items) = v else {
        return Err(Fault::invalid(
            at,
            format!("expected a list of volumes, not {}", v.kind()),
        ));
    };
    let mut out = Vec::with_capacity(items.len());
    for (i, item) in items.iter().enumerate() {
        let here = at.index(i);
        let mount = match item {
            Value::Map(_) => long_mount(item, cx, &here)?,
            Value::String(s) => short_mount(s, cx, &here)?,
            other => {
                return Err(Fault::invalid(
                    &here,
                    format!(
                        "expected `name:/path`, `./dir:/path` or a mapping with `type`, not {}",
                        other.kind()
                    ),
                ));
            }
        };
        out.push(mount);
    }
    Ok(out)
}

/// `name:/path[:ro]` or `./dir:/path[:ro]`; as in Compose, a source that
/// starts with `.`, `/` or `~` is a path, anything else a volume name.
fn short_mount(spec: &str, cx: &Context<'_>, at: &KeyPath) -> Result<Mount, Fault> {
    let parts: Vec<&str> = spec.split(':').collect();
    let (source, target, options) = match parts.as_slice() {
        [target] => {
            return Err(Fault::invalid(
                at,
                format!(
                    "`{target}` is an anonymous volume, which is not supported: name it (`data:{target}`) and declare it under the top-level `volumes:`"
                ),
            ));
        }
        [source, target] => (*source, *target, None),
        [source, target, options] => (*source, *target, Some(*options)),
        _ => {
            return Err(Fault::invalid(
                at,
                format!(
                    "`{spec}` is not a volume: write `name:/path`, `./dir:/path`, and `:ro` for read-only"
                ),
            ));
        }
    };
    let mut read_only = false;
    for option in options.into_iter().flat_map(|o| o.split(',')) {
        match option {
            "ro" => read_only = true,
            "rw" => read_only = false,
            other => {
                return Err(Fault::invalid(
                    at,
                    format!("volume option `{other}` is not supported: only `ro` and `rw` are"),
                ));
            }
        }
    }
    if source.is_empty() {
        return Err(Fault::invalid(at, format!("`{spec}` has no source")));
    }
    if source.starts_with(['.', '/', '~']) {
        bind(source, target, read_only, cx, at)
    } else {
        named(source, target, read_only, cx, at)
    }
}

fn long_mount(v: &Value, cx: &Context<'_>, at: &KeyPath) -> Result<Mount, Fault> {
    let kind = match present(v, "type") {
        Some(t) => text(t, &at.key("type"))?,
        None => {
            return Err(Fault::invalid(
                at,
                "needs `type`: `volume` for a named volume, `bind` for a path of the repository",
            ));
        }
    };
    let Some(source) = present(v, "source") else {
        return Err(Fault::invalid(
            at,
            "needs `source`: anonymous volumes are not supported; name the volume and declare it under the top-level `volumes:`",
        ));
    };
    let source = text(source, &at.key("source"))?;
    let Some(target) = present(v, "target") else {
        return Err(Fault::invalid(at, "needs `target`: where it is mounted"));
    };
    let target = text(target, &at.key("target"))?;
    let read_only = present(v, "read_only")
        .map(|r| boolean(r, &at.key("read_only")))
        .transpose()?
        .unwrap_or(false);
    match kind.as_str() {
        "volume" => named(&source, &target, read_only, cx, &at.key("source")),
        "bind" => bind(&source, &target, read_only, cx, &at.key("source")),
        other => Err(Fault::invalid(
            &at.key("type"),
            format!("volume type `{other}` is not supported: use `volume` or `bind`"),
        )),
    }
}

fn mount_target(target: &str, at: &KeyPath) -> Result<String, Fault> {
    if !target.starts_with('/') {
        return Err(Fault::invalid(
            at,
            format!("the target `{target}` is not an absolute path: it starts with `/`"),
        ));
    }
    Ok(target.to_owned())
}

fn named(
    volume: &str,
    target: &str,
    read_only: bool,
    cx: &Context<'_>,
    at: &KeyPath,
) -> Result<Mount, Fault> {
    if !cx.volumes.contains(volume) {
        return Err(Fault::invalid(
            at,
            format!(
                "volume `{volume}` is not declared: add it under the top-level `volumes:` (`{volume}: {{}}`)"
            ),
        ));
    }
    Ok(Mount::Named {
        volume: volume.to_owned(),
        target: mount_target(target, at)?,
        read_only,
    })
}

fn bind(
    source: &str,
    target: &str,
    read_only: bool,
    cx: &Context<'_>,
    at: &KeyPath,
) -> Result<Mount, Fault> {
    let inside = paths::inside(cx.checkout, source)
        .map_err(|m| Fault::invalid(at, format!("bind mount: {m}")))?;
    Ok(Mount::Bind {
        source: inside.real,
        target: mount_target(target, at)?,
        read_only,
    })
}

// --- depends_on ---

fn depends_on(v: &Value, at: &KeyPath) -> Result<Vec<(String, Condition, KeyPath)>, Fault> {
    let mut out: Vec<(String, Condition, KeyPath)> = Vec::new();
    match v {
        Value::Seq(items) => {
            for (i, item) in items.iter().enumerate() {
                let here = at.index(i);
                let name = text(item, &here)?;
                if out.iter().any(|(n, _, _)| *n == name) {
                    return Err(Fault::invalid(&here, format!("`{name}` is listed twice")));
                }
                out.push((name, Condition::Started, here));
            }
        }
        Value::Map(entries) => {
            for (name, spec) in entries {
                let here = at.key(name);
                let condition = match spec {
                    Value::Null => Condition::Started,
                    Value::Map(_) => match present(spec, "condition") {
                        None => Condition::Started,
                        Some(c) => {
                            let c_at = here.key("condition");
                            condition(&text(c, &c_at)?).map_err(|m| Fault::invalid(&c_at, m))?
                        }
                    },
                    other => {
                        return Err(Fault::invalid(
                            &here,
                            format!("expected a mapping with `condition`, not {}", other.kind()),
                        ));
                    }
                };
                out.push((name.clone(), condition, here));
            }
        }
        other => {
            return Err(Fault::invalid(
                at,
                format!(
                    "expected a list of services, or a mapping of services to a `condition`, not {}",
                    other.kind()
                ),
            ));
        }
    }
    Ok(out)
}

fn condition(c: &str) -> Result<Condition, String> {
    match c {
        "service_started" => Ok(Condition::Started),
        "service_healthy" => Ok(Condition::Healthy),
        "service_completed_successfully" => Err(
            "`service_completed_successfully` is not supported: Slipway runs long-lived services, not one-off tasks; use `service_started` or `service_healthy`".to_owned(),
        ),
        other => Err(format!(
            "condition `{other}` is not known: use `service_started` or `service_healthy`"
        )),
    }
}

// --- healthcheck ---

const DEFAULT_INTERVAL: Duration = Duration::from_secs(30);
const DEFAULT_TIMEOUT: Duration = Duration::from_secs(30);
const DEFAULT_RETRIES: u32 = 3;

fn healthcheck(v: &Value, at: &KeyPath) -> Result<Option<Healthcheck>, Fault> {
    if !matches!(v, Value::Map(_)) {
        return Err(Fault::invalid(
            at,
            format!("expected a mapping with `test`, not {}", v.kind()),
        ));
    }
    let disable = present(v, "disable")
        .map(|d| boolean(d, &at.key("disable")))
        .transpose()?
        .unwrap_or(false);
    let test_at = at.key("test");
    let test = match present(v, "test") {
        None if disable => return Ok(None),
        None => {
            return Err(Fault::invalid(
                at,
                "needs `test`: Slipway does not read the image's own HEALTHCHECK",
            ));
        }
        Some(t) => test_argv(t, &test_at)?,
    };
    let Some(test) = test else {
        return Ok(None);
    };
    if disable {
        return Err(Fault::invalid(
            at,
            "`disable: true` and a `test` contradict each other: keep one",
        ));
    }
    let duration_at = |key: &str, default: Duration| -> Result<Duration, Fault> {
        match present(v, key) {
            None => Ok(default),
            Some(d) => {
                let d = duration(d, &at.key(key))?;
                // Zero means the default, as it does to Docker.
                Ok(if d.is_zero() { default } else { d })
            }
        }
    };
    Ok(Some(Healthcheck {
        test,
        interval: duration_at("interval", DEFAULT_INTERVAL)?,
        timeout: duration_at("timeout", DEFAULT_TIMEOUT)?,
        retries: present(v, "retries")
            .map(|r| number(r, &at.key("retries"), "a count of retries"))
            .transpose()?
            .unwrap_or(DEFAULT_RETRIES),
        start_period: duration_at("start_period", Duration::ZERO)?,
    }))
}

/// The argv of `test`; `None` for `["NONE"]`.
fn test_argv(v: &Value, at: &KeyPath) -> Result<Option<Vec<String>>, Fault> {
    let shell = |script: String| Some(vec!["sh".to_owned(), "-c".to_owned(), script]);
    match v {
        Value::String(s) if s.trim().is_empty() => Err(Fault::invalid(at, "must not be empty")),
        Value::String(s) => Ok(shell(s.clone())),
        Value::Seq(items) => {
            let words = items
                .iter()
                .enumerate()
                .map(|(i, item)| scalar(item, &at.index(i)))
                .collect::<Result<Vec<_>, _>>()?;
            match words.split_first() {
                Some((first, [])) if first == "NONE" => Ok(None),
                Some((first, rest)) if first == "CMD" && !rest.is_empty() => {
                    Ok(Some(rest.to_vec()))
                }
                Some((first, rest)) if first == "CMD-SHELL" && !rest.is_empty() => {
                    Ok(shell(rest.join(" ")))
                }
                _ => Err(Fault::invalid(
                    at,
                    "expected `[\"CMD\", \"prog\", \"arg\", ...]`, `[\"CMD-SHELL\", \"command\"]`, `[\"NONE\"]` or a command string",
                )),
            }
        }
        other => Err(Fault::invalid(
            at,
            format!(
                "expected a command (a list or a string), not {}",
                other.kind()
            ),
        )),
    }
}

fn duration(v: &Value, at: &KeyPath) -> Result<Duration, Fault> {
    match v {
        Value::String(s) => words::duration(s).map_err(|m| Fault::invalid(at, m)),
        Value::Number(n) if n == "0" => Ok(Duration::ZERO),
        Value::Number(n) => Err(Fault::invalid(
            at,
            format!("`{n}` has no unit: write `{n}s` for seconds (or `ms`, `m`, `h`)"),
        )),
        other => Err(Fault::invalid(
            at,
            format!("expected a duration like `30s`, not {}", other.kind()),
        )),
    }
}

// --- restart ---

fn restart(v: &Value, at: &KeyPath) -> Result<Restart, Fault> {
    // `restart: no` unquoted is the string "no" to this YAML reader (YAML
    // 1.2); a boolean false is read the same, for YAML 1.1 habits.
    if matches!(v, Value::Bool(false)) {
        return Ok(Restart::No);
    }
    let policy = text(v, at)?;
    match policy.as_str() {
        "no" => Ok(Restart::No),
        "always" => Ok(Restart::Always),
        "unless-stopped" => Ok(Restart::UnlessStopped),
        "on-failure" => Ok(Restart::OnFailure { max_retries: None }),
        other => match other.strip_prefix("on-failure:") {
            Some(n) => n
                .parse()
                .map(|n| Restart::OnFailure {
                    max_retries: Some(n),
                })
                .map_err(|_| {
                    Fault::invalid(at, format!("`{n}` is not a count of restarts in `{other}`"))
                }),
            None => Err(Fault::invalid(
                at,
                format!(
                    "`{other}` is not a restart policy: use `no`, `always`, `on-failure`, `on-failure:N` or `unless-stopped`"
                ),
            )),
        },
    }
}

// --- start order ---

/// The services, dependencies first and ties by name, once every
/// dependency is known to be another service of the file, without a cycle.
fn start_order(resolved: Vec<Resolved>, at: &KeyPath) -> Result<Vec<Service>, Fault> {
    let by_name: BTreeMap<&str, &Resolved> = resolved
        .iter()
        .map(|r| (r.service.name.as_str(), r))
        .collect();
    for r in &resolved {
        let name = &r.service.name;
        for (dep, condition, here) in &r.deps {
            if dep == name {
                return Err(Fault::invalid(
                    here,
                    format!("`{name}` depends on itself: remove it from its own `depends_on`"),
                ));
            }
            let Some(target) = by_name.get(dep.as_str()) else {
                let known: Vec<&str> = by_name.keys().copied().collect();
                return Err(Fault::invalid(
                    here,
                    format!(
                        "`{dep}` is not a service of this file (services: {})",
                        known.join(", ")
                    ),
                ));
            };
            if *condition == Condition::Healthy && target.service.healthcheck.is_none() {
                return Err(Fault::invalid(
                    here,
                    format!(
                        "`{dep}` has no healthcheck, so `service_healthy` could never be met: give `{dep}` a healthcheck, or use `service_started`"
                    ),
                ));
            }
        }
    }
    // Kahn's algorithm, the ready services taken by name.
    let mut waiting: BTreeMap<&str, usize> = BTreeMap::new();
    let mut dependents: BTreeMap<&str, Vec<&str>> = BTreeMap::new();
    for r in &resolved {
        waiting.insert(&r.service.name, r.deps.len());
        for (dep, _, _) in &r.deps {
            dependents.entry(dep).or_default().push(&r.service.name);
        }
    }
    let mut ready: BTreeSet<&str> = waiting
        .iter()
        .filter(|(_, n)| **n == 0)
        .map(|(name, _)| *name)
        .collect();
    let mut order: Vec<String> = Vec::with_capacity(resolved.len());
    while let Some(name) = ready.pop_first() {
        order.push(name.to_owned());
        for dependent in dependents.get(name).into_iter().flatten() {
            if let Some(n) = waiting.get_mut(dependent) {
                *n = n.saturating_sub(1);
                if *n == 0 {
                    ready.insert(dependent);
                }
            }
        }
    }
    if order.len() < resolved.len() {
        let left: BTreeSet<&str> = waiting
            .iter()
            .filter(|(_, n)| **n > 0)
            .map(|(name, _)| *name)
            .collect();
        let cycle = find_cycle(&left, &by_name);
        let first = cycle.first().copied().unwrap_or_default();
        return Err(Fault::invalid(
            &at.key(first).key("depends_on"),
            format!(
                "services depend on each other in a cycle: {}; remove one of these dependencies",
                cycle.join(" -> ")
            ),
        ));
    }
    let mut services: BTreeMap<String, Service> = resolved
        .into_iter()
        .map(|r| (r.service.name.clone(), r.service))
        .collect();
    Ok(order
        .iter()
        .filter_map(|name| services.remove(name))
        .collect())
}

/// A cycle among `left` (services that still wait, each on another of
/// them), as `a -> b -> c -> a`, starting at its first name.
fn find_cycle<'a>(
    left: &BTreeSet<&'a str>,
    by_name: &BTreeMap<&str, &'a Resolved>,
) -> Vec<&'a str> {
    let next = |name: &str| -> Option<&'a str> {
        by_name.get(name).and_then(|r| {
            r.deps
                .iter()
                .map(|(d, _, _)| d.as_str())
                .filter(|d| left.contains(d))
                .min()
        })
    };
    let mut path: Vec<&'a str> = Vec::new();
    let mut current = left.first().copied();
    while let Some(name) = current {
        if let Some(start) = path.iter().position(|n| *n == name) {
            let mut cycle = path.split_off(start);
            // Start at the smallest name, so the message does not depend on
            // where the walk began.
            if let Some(min) = cycle
                .iter()
                .enumerate()
                .min_by_key(|(_, n)| **n)
                .map(|(i, _)| i)
            {
                cycle.rotate_left(min);
            }
            if let Some(first) = cycle.first().copied() {
                cycle.push(first);
            }
            return cycle;
        }
        path.push(name);
        current = next(name);
    }
    path
}

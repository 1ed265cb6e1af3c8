//! What can be wrong with a Compose file, and where.

use std::fmt;

use super::yaml;

/// Why a Compose file cannot be deployed. Each variant names the file, the
/// line when it is known, and the path to the key (`services.web.ports[1]`).
#[derive(Debug, thiserror::Error)]
pub enum ComposeError {
    /// No Compose file where one was looked for.
    #[error(
        "no Compose file in the repository (looked for {}): add one, or name the file in the deployment",
        .looked_for.join(", ")
    )]
    NotFound {
        /// The file names tried, in order.
        looked_for: Vec<String>,
    },
    /// The file could not be read.
    #[error("{file}: cannot read it: {source}")]
    Read {
        /// The file, relative to the checkout.
        file: String,
        /// The I/O error.
        source: std::io::Error,
    },
    /// The text is not valid YAML (or uses YAML that Slipway does not read:
    /// tags, duplicate keys, keys that are not strings).
    #[error("{}: not valid YAML: {message}", place_column(.file, *.line, *.column))]
    Syntax {
        /// The file.
        file: String,
        /// The line, from 1, when the YAML reader knows it.
        line: Option<usize>,
        /// The column, from 1, when the YAML reader knows it.
        column: Option<usize>,
        /// The YAML reader's words.
        message: String,
    },
    /// A key outside the subset Slipway supports.
    #[error(
        "{}: `{key}` is not supported by Slipway (supported: {supported})",
        place(.file, *.line, parent(.path, .key))
    )]
    Unsupported {
        /// The file.
        file: String,
        /// The key's line, from 1, when known.
        line: Option<usize>,
        /// The path to the key, the key included: `services.web.deploy`.
        path: String,
        /// The key.
        key: String,
        /// The keys supported where it stands.
        supported: String,
    },
    /// A variable without a value or a default, required with `${VAR:?msg}`,
    /// or a malformed `$` expression.
    #[error("{}: {message}", place(.file, *.line, .path))]
    Variable {
        /// The file.
        file: String,
        /// The line of the value, from 1, when known.
        line: Option<usize>,
        /// The path to the value: `services.web.environment.DB_URL`.
        path: String,
        /// The variable, when one is to blame.
        name: Option<String>,
        /// What is wrong and what to do.
        message: String,
    },
    /// A value that cannot be deployed: a wrong type or format, a path
    /// outside the checkout, an unknown service, a cycle.
    #[error("{}: {message}", place(.file, *.line, .path))]
    Invalid {
        /// The file.
        file: String,
        /// The line, from 1, when known.
        line: Option<usize>,
        /// The path to the value (empty for the file as a whole).
        path: String,
        /// What is wrong and what to do.
        message: String,
    },
}

impl ComposeError {
    /// The line the error points at, when known.
    pub fn line(&self) -> Option<usize> {
        match self {
            ComposeError::NotFound { .. } | ComposeError::Read { .. } => None,
            ComposeError::Syntax { line, .. }
            | ComposeError::Unsupported { line, .. }
            | ComposeError::Variable { line, .. }
            | ComposeError::Invalid { line, .. } => *line,
        }
    }

    pub(crate) fn from_yaml(file: &str, e: &serde_yaml_ng::Error) -> ComposeError {
        let location = e.location();
        let mut message = e.to_string();
        // The reader ends its words with the place; it is shown up front.
        if let Some(l) = &location {
            let suffix = format!(" at line {} column {}", l.line(), l.column());
            message = message.replacen(&suffix, "", 1);
        }
        ComposeError::Syntax {
            file: file.to_owned(),
            line: location.as_ref().map(|l| l.line()),
            column: location.as_ref().map(|l| l.column()),
            message,
        }
    }
}

/// `compose.yaml:12: services.web`, leaving out what is not known.
fn place(file: &str, line: Option<usize>, path: &str) -> String {
    let mut out = file.to_owned();
    if let Some(line) = line {
        out.push_str(&format!(":{line}"));
    }
    if !path.is_empty() {
        out.push_str(": ");
        out.push_str(path);
    }
    out
}

fn place_column(file: &str, line: Option<usize>, column: Option<usize>) -> String {
    match (line, column) {
        (Some(l), Some(c)) => format!("{file}:{l}:{c}"),
        (Some(l), None) => format!("{file}:{l}"),
        _ => file.to_owned(),
    }
}

/// The path of the mapping a key stands in: `services.web` for
/// `services.web.deploy`.
fn parent<'a>(path: &'a str, key: &str) -> &'a str {
    path.strip_suffix(key)
        .map(|p| p.strip_suffix('.').unwrap_or(p))
        .unwrap_or(path)
}

/// One step of a path into the file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Seg {
    /// A key of a mapping.
    Key(String),
    /// An item of a sequence, from 0.
    Index(usize),
}

/// A path into the file, kept as steps so that the line of the value can be
/// found again in the text.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub(crate) struct KeyPath(pub(crate) Vec<Seg>);

impl KeyPath {
    pub(crate) fn key(&self, key: &str) -> KeyPath {
        let mut steps = self.0.clone();
        steps.push(Seg::Key(key.to_owned()));
        KeyPath(steps)
    }

    pub(crate) fn index(&self, index: usize) -> KeyPath {
        let mut steps = self.0.clone();
        steps.push(Seg::Index(index));
        KeyPath(steps)
    }
}

impl fmt::Display for KeyPath {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (i, seg) in self.0.iter().enumerate() {
            match seg {
                Seg::Key(k) if i == 0 => f.write_str(k)?,
                Seg::Key(k) => write!(f, ".{k}")?,
                Seg::Index(n) => write!(f, "[{n}]")?,
            }
        }
        Ok(())
    }
}

/// An error found while resolving the tree, before its line is known.
#[derive(Debug)]
pub(crate) struct Fault {
    pub(crate) path: KeyPath,
    pub(crate) kind: FaultKind,
}

#[derive(Debug)]
pub(crate) enum FaultKind {
    Invalid(String),
    Variable {
        name: Option<String>,
        message: String,
    },
    Unsupported {
        key: String,
        supported: String,
    },
}

impl Fault {
    pub(crate) fn invalid(path: &KeyPath, message: impl Into<String>) -> Fault {
        Fault {
            path: path.clone(),
            kind: FaultKind::Invalid(message.into()),
        }
    }

    /// The public error, its line looked up in `text`.
    pub(crate) fn into_error(self, file: &str, text: &str) -> ComposeError {
        let line = yaml::locate(text, &self.path.0);
        let file = file.to_owned();
        let path = self.path.to_string();
        match self.kind {
            FaultKind::Invalid(message) => ComposeError::Invalid {
                file,
                line,
                path,
                message,
            },
            FaultKind::Variable { name, message } => ComposeError::Variable {
                file,
                line,
                path,
                name,
                message,
            },
            FaultKind::Unsupported { key, supported } => ComposeError::Unsupported {
                file,
                line,
                path,
                key,
                supported,
            },
        }
    }
}

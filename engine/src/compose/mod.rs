//! A Compose file, read against the subset Slipway deploys (`docs/compose.md`).
//!
//! Reading goes in passes, so that nothing is interpolated, read from the
//! checkout or checked before the whole file is known to use only supported
//! keys:
//! 1. the YAML is read into a plain tree (syntax errors keep the YAML
//!    reader's line and column);
//! 2. every key is checked against the subset: the first unknown one is
//!    refused with its path and line;
//! 3. variables are interpolated into the values, never into the text, so a
//!    value cannot change the structure of the file;
//! 4. each service is resolved into typed fields (both syntaxes of ports,
//!    volumes, environment, `depends_on`, healthcheck): bind mounts, build
//!    contexts and env files stay inside the checkout, named volumes are
//!    declared, `depends_on` names real services without a cycle.
//!
//! The services come out in a start order: dependencies first, ties by name.
//! Errors carry the file, the line when known and the path to the key; the
//! line of a resolved value is found again in the text only when an error
//! needs it.

mod error;
mod interpolate;
mod model;
mod parse;
mod paths;
mod words;
mod yaml;

#[cfg(test)]
mod load_tests;

use std::collections::BTreeMap;
use std::path::Path;

pub use error::ComposeError;
pub use model::{Build, Condition, Healthcheck, Mount, Port, Protocol, Restart, Service, Stack};

/// The file names tried, in order, when a deployment names none.
pub const DEFAULT_FILES: [&str; 4] = [
    "compose.yaml",
    "compose.yml",
    "docker-compose.yaml",
    "docker-compose.yml",
];

/// The largest Compose or env file read; real ones are a few KiB, and a
/// bound keeps a hostile repository from making the engine read gigabytes.
const MAX_FILE_BYTES: u64 = 1024 * 1024;

/// The Compose file of `checkout`, relative to it: `explicit` when given (it
/// must exist inside the checkout), else the first of [`DEFAULT_FILES`] that
/// exists.
pub fn find_file(checkout: &Path, explicit: Option<&str>) -> Result<String, ComposeError> {
    if let Some(file) = explicit {
        let inside = paths::inside(checkout, file).map_err(|message| ComposeError::Invalid {
            file: file.to_owned(),
            line: None,
            path: String::new(),
            message: format!("cannot be the Compose file: {message}"),
        })?;
        return if inside.real.is_file() {
            Ok(file.to_owned())
        } else {
            Err(ComposeError::NotFound {
                looked_for: vec![file.to_owned()],
            })
        };
    }
    DEFAULT_FILES
        .iter()
        .find(|name| checkout.join(name).is_file())
        .map(|name| (*name).to_owned())
        .ok_or_else(|| ComposeError::NotFound {
            looked_for: DEFAULT_FILES.iter().map(|n| (*n).to_owned()).collect(),
        })
}

/// Reads `file` (relative to `checkout`, and inside it) and resolves it:
/// `${VAR}` values come from `vars`, paths are resolved against `checkout`.
pub fn load(
    checkout: &Path,
    file: &str,
    vars: &BTreeMap<String, String>,
) -> Result<Stack, ComposeError> {
    let invalid = |message: String| ComposeError::Invalid {
        file: file.to_owned(),
        line: None,
        path: String::new(),
        message,
    };
    // The file name comes from the deployment's spec: it must not lead
    // the engine to read a file outside the checkout.
    let inside = paths::inside(checkout, file)
        .map_err(|message| invalid(format!("cannot be the Compose file: {message}")))?;
    let text = paths::read_bounded(&inside.real).map_err(|e| match e {
        paths::ReadError::Io(source) => ComposeError::Read {
            file: file.to_owned(),
            source,
        },
        paths::ReadError::Other(message) => invalid(message),
    })?;
    parse(&text, file, checkout, vars)
}

/// Resolves the Compose text `text`, read from `file` of `checkout`, with
/// `${VAR}` values from `vars`; [`load`] without the reading.
pub fn parse(
    text: &str,
    file: &str,
    checkout: &Path,
    vars: &BTreeMap<String, String>,
) -> Result<Stack, ComposeError> {
    let tree = yaml::read(text).map_err(|e| ComposeError::from_yaml(file, &e))?;
    parse::stack(tree, checkout, vars).map_err(|fault| fault.into_error(file, text))
}

//! Short constructors for [`PluginError`], so plugins report problems with the
//! file and hint the user needs.

use crate::types::{PluginError, Problem};

fn problem(file: Option<&str>, line: Option<u32>, message: String, hint: Option<&str>) -> Problem {
    Problem {
        message,
        file: file.map(str::to_owned),
        line,
        hint: hint.map(str::to_owned),
    }
}

/// An input file that cannot be understood.
pub fn malformed(
    file: &str,
    line: Option<u32>,
    message: impl Into<String>,
    hint: Option<&str>,
) -> PluginError {
    PluginError::MalformedInput(problem(Some(file), line, message.into(), hint))
}

/// A request the plugin understands but cannot serve.
pub fn unsupported(
    file: Option<&str>,
    message: impl Into<String>,
    hint: Option<&str>,
) -> PluginError {
    PluginError::Unsupported(problem(file, None, message.into(), hint))
}

/// A bug or unexpected condition inside the plugin.
pub fn internal(message: impl Into<String>) -> PluginError {
    PluginError::Internal(problem(None, None, message.into(), None))
}

impl PluginError {
    /// One line for people: `malformed input: package.json:3: is not valid JSON: ... (hint: ...)`.
    pub fn describe(&self) -> String {
        use std::fmt::Write;
        let mut f = String::new();
        let (kind, p) = match self {
            PluginError::MalformedInput(p) => ("malformed input", p),
            PluginError::Unsupported(p) => ("unsupported", p),
            PluginError::Internal(p) => ("internal error", p),
        };
        let _ = write!(f, "{kind}: ");
        if let Some(file) = &p.file {
            let _ = write!(f, "{file}");
            if let Some(line) = p.line {
                let _ = write!(f, ":{line}");
            }
            let _ = write!(f, ": ");
        }
        let _ = write!(f, "{}", p.message);
        if let Some(hint) = &p.hint {
            let _ = write!(f, " (hint: {hint})");
        }
        f
    }
}

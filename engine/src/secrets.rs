//! Secrets: a job names them by reference (`env:NAME` in the engine's
//! environment, `file:/path` such as a Docker or Kubernetes secret); they
//! are resolved only when the job runs, passed to its container as
//! environment variables, and redacted from everything its log keeps, also
//! in their base64 and URL-encoded forms.

use std::collections::BTreeMap;

use base64::Engine as _;
use zeroize::Zeroizing;

/// Shorter values are not redacted: they would match everywhere.
pub const MIN_REDACTED_LEN: usize = 4;
const MARK: &str = "[redacted]";

/// Why a secret reference was refused or could not be resolved.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum SecretError {
    /// The reference is neither `env:VARIABLE` nor `file:/absolute/path`
    /// (refused at submit).
    #[error(
        "secret `{name}`: `{reference}` is not a reference (hint: `env:VARIABLE` or `file:/absolute/path`)"
    )]
    BadReference {
        /// The secret's name (for a git credential, the host).
        name: String,
        /// The reference, as given.
        reference: String,
    },
    /// An `env:` reference names a variable the engine's environment lacks.
    #[error("secret `{name}`: the engine's environment has no `{variable}`")]
    MissingVariable {
        /// The secret's name (for a git credential, the host).
        name: String,
        /// The environment variable the reference names.
        variable: String,
    },
    /// A `file:` reference names a file the engine cannot read.
    #[error("secret `{name}`: cannot read {path}: {message}")]
    File {
        /// The secret's name (for a git credential, the host).
        name: String,
        /// The file's absolute path.
        path: String,
        /// The I/O error.
        message: String,
    },
}

/// Check a reference's form (at submit); resolving happens at run time.
pub fn check_reference(name: &str, reference: &str) -> Result<(), SecretError> {
    match reference.split_once(':') {
        Some(("env", v)) if !v.is_empty() && !v.contains('=') => Ok(()),
        Some(("file", p)) if p.starts_with('/') => Ok(()),
        _ => Err(SecretError::BadReference {
            name: name.into(),
            reference: reference.into(),
        }),
    }
}

/// The problems of a spec's `secrets` map (variable name → reference)
/// beside its `env`: a name `name_ok` refuses (`rule` says what it
/// wants), a name also in `env`, a reference that is not one. Each as
/// `(field, message)`, the field `secrets.<name>`.
pub fn spec_problems(
    secrets: &BTreeMap<String, String>,
    env: &BTreeMap<String, String>,
    name_ok: impl Fn(&str) -> bool,
    rule: &str,
) -> Vec<(String, String)> {
    secrets
        .iter()
        .filter_map(|(name, reference)| {
            let message = if !name_ok(name) {
                rule.to_owned()
            } else if env.contains_key(name) {
                "is also in `env`: give the variable one source".to_owned()
            } else {
                check_reference(name, reference).err()?.to_string()
            };
            Some((format!("secrets.{name}"), message))
        })
        .collect()
}

/// Resolve every secret to its value: `(name, value)`. The values go on
/// to a job's environment, where they are copied anyway; see
/// [`resolve_value`] for one kept in the engine.
pub fn resolve(secrets: &BTreeMap<String, String>) -> Result<Vec<(String, String)>, SecretError> {
    secrets
        .iter()
        // The buffer is moved out, not copied.
        .map(|(name, reference)| {
            Ok((
                name.clone(),
                std::mem::take(&mut *resolve_value(name, reference)?),
            ))
        })
        .collect()
}

/// The value of the secret `name` (a file's final line break left out),
/// in memory that is zeroed when it is dropped.
pub fn resolve_value(name: &str, reference: &str) -> Result<Zeroizing<String>, SecretError> {
    check_reference(name, reference)?;
    match reference.split_once(':') {
        Some(("env", variable)) => {
            std::env::var(variable)
                .map(Zeroizing::new)
                .map_err(|_| SecretError::MissingVariable {
                    name: name.to_owned(),
                    variable: variable.into(),
                })
        }
        Some((_, path)) => {
            let mut value =
                Zeroizing::new(
                    std::fs::read_to_string(path).map_err(|e| SecretError::File {
                        name: name.to_owned(),
                        path: path.into(),
                        message: e.to_string(),
                    })?,
                );
            // In place: only line breaks are left behind in the spare bytes.
            let kept = value.trim_end_matches(['\n', '\r']).len();
            value.truncate(kept);
            Ok(value)
        }
        None => unreachable!("checked above"),
    }
}

/// Replaces secret values (and their encoded forms) in log text. Its
/// `Debug` shows how many forms it holds, never one of them.
#[derive(Clone, Default)]
pub struct Redactor {
    /// Longest first, so a value that contains another is replaced whole;
    /// zeroed when the redactor is dropped.
    patterns: Vec<Zeroizing<String>>,
}

impl std::fmt::Debug for Redactor {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Redactor")
            .field("patterns", &self.patterns.len())
            .finish()
    }
}

impl Redactor {
    /// A redactor of `values`: each value, each of its lines, and their
    /// base64 and URL-encoded forms; forms shorter than [`MIN_REDACTED_LEN`]
    /// bytes are left alone.
    pub fn new<'a>(values: impl IntoIterator<Item = &'a str>) -> Redactor {
        let mut patterns = Vec::new();
        for value in values {
            // Logs are kept line by line: a multi-line secret is redacted
            // line by line too.
            let mut forms: Vec<String> = value.lines().map(str::to_owned).collect();
            forms.push(value.to_owned());
            let b64 = base64::engine::general_purpose::STANDARD;
            let b64url = base64::engine::general_purpose::URL_SAFE_NO_PAD;
            let padded = b64.encode(value);
            forms.push(padded.trim_end_matches('=').to_owned());
            forms.push(padded);
            forms.push(b64url.encode(value));
            forms.push(
                percent_encoding::utf8_percent_encode(value, percent_encoding::NON_ALPHANUMERIC)
                    .to_string(),
            );
            forms.push(percent_encoding::utf8_percent_encode(value, FORM_SAFE).to_string());
            patterns.extend(
                forms
                    .into_iter()
                    .map(Zeroizing::new)
                    .filter(|f| f.len() >= MIN_REDACTED_LEN),
            );
        }
        patterns.sort_by_key(|p| std::cmp::Reverse(p.len()));
        patterns.dedup();
        Redactor { patterns }
    }

    /// Whether there is nothing to redact (no values, or all too short).
    pub fn is_empty(&self) -> bool {
        self.patterns.is_empty()
    }

    /// `text` with every redacted form replaced by `[redacted]`, longest first.
    pub fn redact(&self, text: &str) -> String {
        let mut out = text.to_owned();
        for p in &self.patterns {
            if out.contains(p.as_str()) {
                out = out.replace(p.as_str(), MARK);
            }
        }
        out
    }
}

/// What URL encoders usually leave alone (`-`, `.`, `_`, `~`).
const FORM_SAFE: &percent_encoding::AsciiSet = &percent_encoding::NON_ALPHANUMERIC
    .remove(b'-')
    .remove(b'.')
    .remove(b'_')
    .remove(b'~');

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn values_and_their_encodings_are_redacted() {
        let r = Redactor::new(["s3cr3t/p@ss word", "ab"]);
        let b64 = base64::engine::general_purpose::STANDARD.encode("s3cr3t/p@ss word");
        let text = format!(
            "plain s3cr3t/p@ss word, b64 {b64}, url s3cr3t%2Fp%40ss%20word, short ab stays"
        );
        let out = r.redact(&text);
        assert!(!out.contains("s3cr3t"), "{out}");
        assert!(!out.contains(&b64), "{out}");
        assert_eq!(out.matches("[redacted]").count(), 3, "{out}");
        assert!(out.contains("short ab stays"), "too short to redact: {out}");
        let multi = Redactor::new(["line-one-secret\nline-two-secret"]);
        assert_eq!(multi.redact("x line-two-secret y"), "x [redacted] y");
    }

    #[test]
    fn references_are_checked_and_resolved() {
        assert!(check_reference("a", "env:TOKEN").is_ok());
        assert!(check_reference("a", "file:/run/secrets/a").is_ok());
        for bad in ["TOKEN", "env:", "file:relative", "vault:x"] {
            assert!(check_reference("a", bad).is_err(), "{bad}");
        }
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("s");
        std::fs::write(&file, "from-a-file\n").unwrap();
        let secrets = BTreeMap::from([("F".to_owned(), format!("file:{}", file.display()))]);
        assert_eq!(
            resolve(&secrets).unwrap(),
            [("F".to_owned(), "from-a-file".to_owned())]
        );
        let missing = BTreeMap::from([("M".to_owned(), "env:SLIPWAY_SURELY_UNSET_VAR".to_owned())]);
        assert!(
            resolve(&missing)
                .unwrap_err()
                .to_string()
                .contains("has no `SLIPWAY_SURELY_UNSET_VAR`")
        );
    }
}

//! Reading the repository from inside the sandbox.
//!
//! Inside the engine the repository is a read-only WASI preopen; this type is
//! the one way plugins read it, so every read is size-capped, every path stays
//! relative to the root, and every error names the file. Under `cargo test` on
//! the host the same type reads a fixture directory and refuses symlinks that
//! leave it, as the sandbox would.

use std::io::Read;
use std::path::{Component, Path, PathBuf};

use crate::errors::malformed;
use crate::types::{OptionPair, PluginError};

/// Largest file [`Repo::read_text`] reads by default: hint files and
/// manifests are small; a multi-megabyte `.nvmrc` is garbage, not a hint.
pub const DEFAULT_MAX_FILE_BYTES: u64 = 1024 * 1024;

/// The repository a plugin call is about.
#[derive(Debug, Clone)]
pub struct Repo {
    root: PathBuf,
    options: Vec<(String, String)>,
    max_file_bytes: u64,
}

/// A text file read from the repository: BOM stripped, line endings as written.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TextFile {
    /// Path relative to the repository root.
    pub path: String,
    pub text: String,
}

impl TextFile {
    /// Lines without their `\n` / `\r\n` endings, with 1-based numbers.
    pub fn numbered_lines(&self) -> impl Iterator<Item = (u32, &str)> {
        self.text
            .lines()
            .enumerate()
            .map(|(i, l)| (i as u32 + 1, l.strip_suffix('\r').unwrap_or(l)))
    }

    /// The first line that is neither blank nor a `#` comment, trimmed, with its number.
    pub fn first_meaningful_line(&self) -> Option<(u32, &str)> {
        self.numbered_lines()
            .map(|(n, l)| (n, l.trim()))
            .find(|(_, l)| !l.is_empty() && !l.starts_with('#'))
    }

    /// 1-based number of the first line that contains `needle`.
    pub fn line_of(&self, needle: &str) -> Option<u32> {
        self.numbered_lines()
            .find(|(_, l)| l.contains(needle))
            .map(|(n, _)| n)
    }
}

impl Repo {
    /// The repository as the engine hands it to a plugin call.
    pub fn from_request(root: &str, options: &[OptionPair]) -> Self {
        Repo {
            root: PathBuf::from(root),
            options: options
                .iter()
                .map(|o| (o.name.clone(), o.value.clone()))
                .collect(),
            max_file_bytes: DEFAULT_MAX_FILE_BYTES,
        }
    }

    /// A repository at a directory of the host (for tests).
    pub fn at(root: impl Into<PathBuf>) -> Self {
        Repo {
            root: root.into(),
            options: Vec::new(),
            max_file_bytes: DEFAULT_MAX_FILE_BYTES,
        }
    }

    /// The same repository with a caller option set (as a repo profile would).
    pub fn with_option(mut self, name: &str, value: &str) -> Self {
        self.options.push((name.to_owned(), value.to_owned()));
        self
    }

    /// The value of the caller option `name`.
    pub fn option(&self, name: &str) -> Option<&str> {
        self.options
            .iter()
            .find(|(n, _)| n == name)
            .map(|(_, v)| v.as_str())
    }

    /// Does `rel` exist (as a file or directory)? Paths that leave the
    /// repository never exist.
    pub fn exists(&self, rel: &str) -> bool {
        self.resolve(rel)
            .is_ok_and(|p| p.symlink_metadata().is_ok())
    }

    /// The names of the entries at the repository root, sorted.
    pub fn root_entries(&self) -> Vec<String> {
        let mut names: Vec<String> = std::fs::read_dir(&self.root)
            .map(|rd| {
                rd.filter_map(|e| e.ok()?.file_name().into_string().ok())
                    .collect()
            })
            .unwrap_or_default();
        names.sort();
        names
    }

    /// Read `rel` as UTF-8 text. `Ok(None)` when it does not exist; an error
    /// naming the file when it is too large, not text, or unreadable (for
    /// example a symlink that leaves the repository).
    pub fn read_text(&self, rel: &str) -> Result<Option<TextFile>, PluginError> {
        let path = self.resolve(rel)?;
        self.check_symlink(rel, &path)?;
        let file = match std::fs::File::open(&path) {
            Ok(f) => f,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
            Err(e) => {
                return Err(malformed(
                    rel,
                    None,
                    format!("cannot be read: {e}"),
                    Some("a symlink that leaves the repository is never followed"),
                ));
            }
        };
        let mut bytes = Vec::new();
        file.take(self.max_file_bytes + 1)
            .read_to_end(&mut bytes)
            .map_err(|e| malformed(rel, None, format!("cannot be read: {e}"), None))?;
        if bytes.len() as u64 > self.max_file_bytes {
            return Err(malformed(
                rel,
                None,
                format!(
                    "is larger than {} bytes; not a hint file",
                    self.max_file_bytes
                ),
                Some("remove it or move it out of the repository root"),
            ));
        }
        let text = String::from_utf8(bytes).map_err(|e| {
            malformed(
                rel,
                None,
                format!(
                    "is not UTF-8 text (invalid byte at offset {})",
                    e.utf8_error().valid_up_to()
                ),
                None,
            )
        })?;
        let text = text
            .strip_prefix('\u{feff}')
            .map(str::to_owned)
            .unwrap_or(text);
        Ok(Some(TextFile {
            path: rel.to_owned(),
            text,
        }))
    }

    /// Read and parse `rel` as JSON; syntax errors carry the line.
    pub fn read_json(
        &self,
        rel: &str,
    ) -> Result<Option<(TextFile, serde_json::Value)>, PluginError> {
        let Some(file) = self.read_text(rel)? else {
            return Ok(None);
        };
        match serde_json::from_str(&file.text) {
            Ok(value) => Ok(Some((file, value))),
            Err(e) => Err(malformed(
                rel,
                Some(e.line() as u32),
                format!("is not valid JSON: {e}"),
                None,
            )),
        }
    }

    /// Read and parse `rel` as TOML; syntax errors carry the line.
    pub fn read_toml(&self, rel: &str) -> Result<Option<(TextFile, toml::Table)>, PluginError> {
        let Some(file) = self.read_text(rel)? else {
            return Ok(None);
        };
        match file.text.parse::<toml::Table>() {
            Ok(table) => Ok(Some((file, table))),
            Err(e) => {
                let line = e.span().map(|s| {
                    file.text[..s.start.min(file.text.len())]
                        .matches('\n')
                        .count() as u32
                        + 1
                });
                Err(malformed(
                    rel,
                    line,
                    format!("is not valid TOML: {}", e.message()),
                    None,
                ))
            }
        }
    }

    /// Join `rel` to the root, refusing absolute paths and `..`.
    fn resolve(&self, rel: &str) -> Result<PathBuf, PluginError> {
        let rel_path = Path::new(rel);
        if rel_path
            .components()
            .any(|c| !matches!(c, Component::Normal(_) | Component::CurDir))
        {
            return Err(malformed(
                rel,
                None,
                "is not a path inside the repository",
                None,
            ));
        }
        Ok(self.root.join(rel_path))
    }

    /// On the host (tests), refuse a symlink whose target leaves the root, as
    /// the sandbox does. Inside the sandbox the WASI preopen already refuses.
    fn check_symlink(&self, rel: &str, path: &Path) -> Result<(), PluginError> {
        if cfg!(target_arch = "wasm32") {
            return Ok(());
        }
        let is_link = path
            .symlink_metadata()
            .is_ok_and(|m| m.file_type().is_symlink());
        if !is_link {
            return Ok(());
        }
        let (Ok(target), Ok(root)) = (path.canonicalize(), self.root.canonicalize()) else {
            return Ok(()); // dangling: open() reports it as not found
        };
        if target.starts_with(&root) {
            Ok(())
        } else {
            Err(malformed(
                rel,
                None,
                "cannot be read: it is a symlink that leaves the repository",
                Some("a symlink that leaves the repository is never followed"),
            ))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_text_strips_bom_and_numbers_crlf_lines() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(
            dir.path().join(".nvmrc"),
            "\u{feff}# comment\r\nv18.17.0\r\n",
        )
        .unwrap();
        let file = Repo::at(dir.path()).read_text(".nvmrc").unwrap().unwrap();
        assert_eq!(file.first_meaningful_line(), Some((2, "v18.17.0")));
    }

    #[test]
    fn missing_file_is_none_and_dotdot_is_refused() {
        let dir = tempfile::tempdir().unwrap();
        let repo = Repo::at(dir.path());
        assert_eq!(repo.read_text("nope").unwrap(), None);
        let err = repo.read_text("../etc/passwd").unwrap_err().describe();
        assert!(
            err.contains("../etc/passwd: is not a path inside the repository"),
            "{err}"
        );
    }

    #[test]
    fn oversized_and_binary_files_are_errors_naming_the_file() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("big"), vec![b'1'; 2 * 1024 * 1024]).unwrap();
        std::fs::write(dir.path().join("bin"), [0xff, 0xfe, 0x00]).unwrap();
        let repo = Repo::at(dir.path());
        assert!(
            repo.read_text("big")
                .unwrap_err()
                .describe()
                .contains("big: is larger than")
        );
        assert!(
            repo.read_text("bin")
                .unwrap_err()
                .describe()
                .contains("bin: is not UTF-8")
        );
    }

    #[test]
    fn symlink_leaving_the_repo_is_refused() {
        let outside = tempfile::tempdir().unwrap();
        std::fs::write(outside.path().join("secret"), "18").unwrap();
        let dir = tempfile::tempdir().unwrap();
        std::os::unix::fs::symlink(outside.path().join("secret"), dir.path().join(".nvmrc"))
            .unwrap();
        let err = Repo::at(dir.path())
            .read_text(".nvmrc")
            .unwrap_err()
            .describe();
        assert!(err.contains("symlink that leaves the repository"), "{err}");
    }

    #[test]
    fn json_and_toml_errors_carry_the_line() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(
            dir.path().join("package.json"),
            "{\n  \"name\": \"x\",\n  oops\n}",
        )
        .unwrap();
        std::fs::write(
            dir.path().join("Cargo.toml"),
            "[package]\nname = \"x\"\nversion = \n",
        )
        .unwrap();
        let repo = Repo::at(dir.path());
        let json = repo.read_json("package.json").unwrap_err().describe();
        assert!(
            json.starts_with("malformed input: package.json:3: is not valid JSON"),
            "{json}"
        );
        let toml = repo.read_toml("Cargo.toml").unwrap_err().describe();
        assert!(
            toml.starts_with("malformed input: Cargo.toml:3: is not valid TOML"),
            "{toml}"
        );
    }
}

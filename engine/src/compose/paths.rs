//! Paths of the checkout named by the file: bind sources, build contexts,
//! env files. Each must stay inside the checkout, symlinks included: the
//! file comes from the repository, and the repository must not get the
//! engine to mount or read the host's files.

use std::io::Read;
use std::path::{Component, Path, PathBuf};

use super::MAX_FILE_BYTES;

/// A relative path checked to stay inside the checkout.
#[derive(Debug)]
pub(crate) struct Inside {
    /// Normalised and relative to the checkout (`web`, not `./web/`); empty
    /// for the checkout itself.
    pub(crate) relative: PathBuf,
    /// Absolute, symlinks resolved for the part that exists: what Docker
    /// would mount, or the engine read.
    pub(crate) real: PathBuf,
}

/// `rel` resolved against `checkout`, refused when it is absolute, leaves
/// the checkout through `..`, or reaches outside through a symlink.
pub(crate) fn inside(checkout: &Path, rel: impl AsRef<Path>) -> Result<Inside, String> {
    let path = rel.as_ref();
    let rel = path.display();
    if path.as_os_str().is_empty() {
        return Err("the path is empty".to_owned());
    }
    if path.to_string_lossy().starts_with('~') {
        return Err(format!(
            "`{rel}` is in a home directory, outside the repository: use a path relative to the repository (`./dir`)"
        ));
    }
    let mut relative = PathBuf::new();
    for component in path.components() {
        match component {
            Component::CurDir => {}
            Component::Normal(part) => relative.push(part),
            Component::ParentDir => {
                if !relative.pop() {
                    return Err(format!(
                        "`{rel}` leads outside the repository (through `..`): use a path inside it"
                    ));
                }
            }
            Component::RootDir | Component::Prefix(_) => {
                return Err(format!(
                    "`{rel}` is an absolute path, outside the repository: use a path relative to the repository (`./dir`)"
                ));
            }
        }
    }
    let root = checkout
        .canonicalize()
        .map_err(|e| format!("cannot resolve the checkout `{}`: {e}", checkout.display()))?;
    // Walk the path one component at a time, so that a symlink anywhere on
    // it (even one whose target does not exist) is seen.
    let mut real = root.clone();
    let mut components = relative.components();
    while let Some(component) = components.next() {
        let next = real.join(component);
        match std::fs::symlink_metadata(&next) {
            Ok(_) => {
                real = next.canonicalize().map_err(|_| {
                    format!(
                        "`{rel}` goes through a symlink whose target does not exist (or a loop): point it inside the repository"
                    )
                })?;
                if !real.starts_with(&root) {
                    return Err(format!(
                        "`{rel}` leads outside the repository through a symlink: use a path inside it"
                    ));
                }
            }
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                // Nothing below a missing entry can be a symlink, and `..`
                // is gone already: the rest stays where it is.
                real = next;
                real.extend(components);
                break;
            }
            Err(e) => return Err(format!("cannot inspect `{rel}`: {e}")),
        }
    }
    Ok(Inside { relative, real })
}

/// Why a file was not read.
#[derive(Debug)]
pub(crate) enum ReadError {
    /// The operating system's error.
    Io(std::io::Error),
    /// Too large, or not UTF-8.
    Other(String),
}

/// The text of `path`, at most [`MAX_FILE_BYTES`] of it.
pub(crate) fn read_bounded(path: &Path) -> Result<String, ReadError> {
    let file = std::fs::File::open(path).map_err(ReadError::Io)?;
    let mut bytes = Vec::new();
    file.take(MAX_FILE_BYTES + 1)
        .read_to_end(&mut bytes)
        .map_err(ReadError::Io)?;
    if bytes.len() as u64 > MAX_FILE_BYTES {
        return Err(ReadError::Other(format!(
            "larger than {} KiB; a Compose or env file is expected to be small",
            MAX_FILE_BYTES / 1024
        )));
    }
    String::from_utf8(bytes).map_err(|_| ReadError::Other("not UTF-8 text".to_owned()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn relative_paths_are_normalised_inside() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::create_dir_all(dir.path().join("a/b")).unwrap();
        let root = dir.path().canonicalize().unwrap();
        let got = inside(dir.path(), "./a/./b/../b/").unwrap();
        assert_eq!(got.relative, PathBuf::from("a/b"));
        assert_eq!(got.real, root.join("a/b"));
        let got = inside(dir.path(), "a/missing/deeper").unwrap();
        assert_eq!(got.real, root.join("a/missing/deeper"));
        let got = inside(dir.path(), ".").unwrap();
        assert_eq!(got.relative, PathBuf::new());
        assert_eq!(got.real, root);
    }

    #[test]
    fn escapes_are_refused() {
        let dir = tempfile::tempdir().unwrap();
        assert!(
            inside(dir.path(), "/etc")
                .unwrap_err()
                .contains("absolute path")
        );
        assert!(
            inside(dir.path(), "../x")
                .unwrap_err()
                .contains("through `..`")
        );
        assert!(
            inside(dir.path(), "a/../../x")
                .unwrap_err()
                .contains("through `..`")
        );
        assert!(
            inside(dir.path(), "~/x")
                .unwrap_err()
                .contains("home directory")
        );
        assert!(inside(dir.path(), "").is_err());
    }

    #[cfg(unix)]
    #[test]
    fn symlinks_out_are_refused_and_in_are_followed() {
        let outside = tempfile::tempdir().unwrap();
        let dir = tempfile::tempdir().unwrap();
        std::fs::create_dir(dir.path().join("real")).unwrap();
        std::os::unix::fs::symlink(outside.path(), dir.path().join("out")).unwrap();
        std::os::unix::fs::symlink("real", dir.path().join("in")).unwrap();
        std::os::unix::fs::symlink("/nonexistent/x", dir.path().join("dangling")).unwrap();
        assert!(
            inside(dir.path(), "out/data")
                .unwrap_err()
                .contains("through a symlink")
        );
        assert!(
            inside(dir.path(), "dangling")
                .unwrap_err()
                .contains("does not exist")
        );
        let got = inside(dir.path(), "in/sub").unwrap();
        assert_eq!(got.relative, PathBuf::from("in/sub"));
        assert_eq!(
            got.real,
            dir.path().canonicalize().unwrap().join("real/sub")
        );
    }

    #[test]
    fn large_files_are_not_read() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("big");
        std::fs::write(&path, vec![b'a'; MAX_FILE_BYTES as usize + 1]).unwrap();
        assert!(matches!(read_bounded(&path), Err(ReadError::Other(m)) if m.contains("larger")));
        std::fs::write(&path, "ok").unwrap();
        assert_eq!(read_bounded(&path).unwrap(), "ok");
    }
}

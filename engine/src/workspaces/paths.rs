//! Paths a client names in a workspace: relative, without `..` or the
//! repository's `.git`, and never through a symlink out of the checkout.

use std::path::{Component, Path, PathBuf};

use super::WorkspaceError;

/// Refuse absolute paths, `..`, and the repository's `.git`.
pub(super) fn check_relative(path: &str) -> Result<(), WorkspaceError> {
    let bad = |why: &str| WorkspaceError::BadPath {
        path: path.to_owned(),
        why: why.to_owned(),
    };
    if path.is_empty() {
        return Err(bad("is empty"));
    }
    let p = Path::new(path);
    if p.is_absolute() {
        return Err(bad(
            "absolute paths are refused; paths are relative to the checkout",
        ));
    }
    for c in p.components() {
        match c {
            Component::ParentDir => {
                return Err(bad("`..` is refused: paths stay inside the checkout"));
            }
            Component::Normal(n) if n == ".git" => {
                return Err(bad("`.git` is the workspace's own; it cannot be edited"));
            }
            Component::Normal(_) | Component::CurDir => {}
            _ => return Err(bad("not a plain relative path")),
        }
    }
    Ok(())
}

/// `path` inside `root`, refusing anything that leaves it, also through
/// symlinks. With `create`, the file (and its folders) may not exist yet.
pub(super) fn confine(root: &Path, path: &str, create: bool) -> Result<PathBuf, WorkspaceError> {
    check_relative(path)?;
    let root = root.canonicalize().map_err(super::internal)?;
    let joined = root.join(path);
    // The deepest part that exists must resolve inside the root.
    let mut existing = joined.clone();
    while !existing.exists() && existing.symlink_metadata().is_err() {
        match existing.parent() {
            Some(p) => existing = p.to_path_buf(),
            None => break,
        }
    }
    let resolved = existing
        .canonicalize()
        .map_err(|_| WorkspaceError::BadPath {
            path: path.to_owned(),
            why: "a symlink on the way points nowhere".into(),
        })?;
    if !resolved.starts_with(&root) {
        return Err(WorkspaceError::BadPath {
            path: path.to_owned(),
            why: "it leaves the checkout through a symlink".into(),
        });
    }
    if !create && !joined.exists() {
        return Err(WorkspaceError::NoFile(path.to_owned()));
    }
    Ok(joined)
}

/// The paths a unified diff touches (from `---`/`+++` and `diff --git`).
pub(super) fn patch_paths(patch: &str) -> Vec<String> {
    let mut paths = Vec::new();
    for line in patch.lines() {
        let names: Vec<&str> = if let Some(rest) = line.strip_prefix("diff --git ") {
            rest.split_whitespace().collect()
        } else if let Some(rest) = line
            .strip_prefix("--- ")
            .or_else(|| line.strip_prefix("+++ "))
        {
            vec![rest.split('\t').next().unwrap_or(rest).trim()]
        } else {
            continue;
        };
        for name in names {
            if name == "/dev/null" {
                continue;
            }
            let name = name
                .strip_prefix("a/")
                .or_else(|| name.strip_prefix("b/"))
                .unwrap_or(name);
            paths.push(name.to_owned());
        }
    }
    paths
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn paths_stay_inside_the_checkout() {
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path();
        std::fs::create_dir(root.join("src")).unwrap();
        std::fs::write(root.join("src/app.py"), "x").unwrap();
        std::os::unix::fs::symlink("/etc", root.join("out")).unwrap();
        assert!(confine(root, "src/app.py", false).is_ok());
        assert!(confine(root, "src/new/deep.py", true).is_ok());
        for (path, why) in [
            ("/etc/passwd", "absolute"),
            ("src/../../x", "`..`"),
            (".git/config", "`.git`"),
            ("out/passwd", "symlink"),
            ("out/new.txt", "symlink"),
        ] {
            let e = confine(root, path, true).unwrap_err().to_string();
            assert!(e.contains(why), "{path}: {e}");
        }
        assert!(matches!(
            confine(root, "missing.py", false),
            Err(WorkspaceError::NoFile(_))
        ));
    }

    #[test]
    fn patch_paths_are_found_in_every_header() {
        let patch = "diff --git a/app.py b/app.py\n--- a/app.py\n+++ b/app.py\n@@ -1 +1 @@\n-a\n+b\n\
                     --- /dev/null\n+++ b/../evil\n";
        assert_eq!(
            patch_paths(patch),
            ["app.py", "app.py", "app.py", "app.py", "../evil"]
        );
    }
}

//! Validation judges the code as it is: the working tree is fingerprinted
//! before and after each validate step, and a step that changed files
//! (a linter whose project config turns fixing on, a formatter run in
//! write mode) has its changes undone and reported, file by file.
//!
//! The fingerprint is a git tree id of the work tree, made through an
//! index of its own (`.git/slipway-guard-index`), so git's stat cache
//! spares rehashing files that did not change. Ignored files (caches,
//! build outputs) are not part of it: steps may write those.
//!
//! The check after a step must cost little next to the step, so it has a
//! fast path in process: a [`Stamp`] of every file the fingerprint holds
//! (size, mtime, inode) and of their directories (mtime: an entry added or
//! removed changes it). Only when a stamp differs does `git status` against
//! the guard's index say what changed, if anything the repository does not
//! ignore.

use std::path::{Path, PathBuf};

use crate::checkout::{CheckoutError, Checkouts};

const INDEX: &str = ".git/slipway-guard-index";

/// The work tree of one checkout, fingerprinted and restored.
#[derive(Clone)]
pub struct TreeGuard {
    checkouts: Checkouts,
    dir: PathBuf,
    job_user: (u32, u32),
}

impl TreeGuard {
    /// A guard of the checkout at `dir`, whose files belong to `job_user`.
    pub fn new(checkouts: Checkouts, dir: &Path, job_user: (u32, u32)) -> TreeGuard {
        TreeGuard {
            checkouts,
            dir: dir.to_path_buf(),
            job_user,
        }
    }

    fn git(&self, args: &[&str]) -> Result<String, CheckoutError> {
        self.checkouts
            .git_env(Some(&self.dir), &[("GIT_INDEX_FILE", INDEX)], args)
    }

    /// The tree id of the work tree as it is now; `None` for a checkout
    /// that is not a git repository (a plain directory's snapshot), which
    /// is not guarded.
    pub fn fingerprint(&self) -> Result<Option<String>, CheckoutError> {
        if !self.dir.join(".git").exists() {
            return Ok(None);
        }
        self.git(&["add", "-A"])?;
        self.git(&["write-tree"]).map(Some)
    }

    /// The stamp of the files the last [`Self::fingerprint`] holds.
    pub fn stamp(&self) -> Result<Stamp, CheckoutError> {
        let listed = self.checkouts.git_env_raw(
            Some(&self.dir),
            &[("GIT_INDEX_FILE", INDEX)],
            &["ls-files", "-z"],
        )?;
        let mut files = Vec::new();
        let mut dirs = std::collections::BTreeSet::from([self.dir.clone()]);
        for path in listed.split('\0').filter(|p| !p.is_empty()) {
            let file = self.dir.join(path);
            let mut parent = file.parent();
            while let Some(dir) = parent.filter(|d| d.starts_with(&self.dir)) {
                if !dirs.insert(dir.to_path_buf()) {
                    break;
                }
                parent = dir.parent();
            }
            files.push(file);
        }
        let mut stamp = Stamp {
            files: files.into_iter().map(|f| (f, None)).collect(),
            dirs: dirs.into_iter().map(|d| (d, None)).collect(),
        };
        stamp.refresh();
        Ok(stamp)
    }

    /// What changed in the work tree since the last [`Self::fingerprint`]
    /// (its index holds that state): nothing, or the files.
    pub fn changes_since_fingerprint(&self) -> Result<Changes, CheckoutError> {
        let out = self.checkouts.git_env_raw(
            Some(&self.dir),
            &[("GIT_INDEX_FILE", INDEX)],
            &[
                "status",
                "--porcelain",
                "-z",
                "--untracked-files=all",
                "--no-renames",
            ],
        )?;
        Ok(parse_status(&out))
    }

    /// Put the work tree back as it was at `before`: changed and removed
    /// files rewritten from it, added ones deleted; handed back to the job
    /// user.
    pub fn restore(&self, before: &str, changes: &Changes) -> Result<(), CheckoutError> {
        self.git(&["read-tree", before])?;
        for path in &changes.added {
            let file = self.dir.join(path);
            match std::fs::remove_file(&file) {
                Err(e) if e.kind() != std::io::ErrorKind::NotFound => {
                    return Err(CheckoutError::Io {
                        path: file.display().to_string(),
                        message: e.to_string(),
                    });
                }
                _ => {}
            }
        }
        let kept: Vec<&str> = changes
            .files
            .iter()
            .filter(|f| !changes.added.contains(f))
            .map(String::as_str)
            .collect();
        if !kept.is_empty() {
            let mut args = vec!["checkout-index", "-f", "--"];
            args.extend(kept.iter().copied());
            self.git(&args)?;
            let (uid, gid) = self.job_user;
            for path in kept {
                let file = self.dir.join(path);
                std::os::unix::fs::lchown(&file, Some(uid), Some(gid)).map_err(|e| {
                    CheckoutError::Io {
                        path: file.display().to_string(),
                        message: e.to_string(),
                    }
                })?;
            }
        }
        Ok(())
    }
}

/// The work-tree side of `git status --porcelain -z`: `??` entries are
/// new files; a second column other than a space, a file changed or gone.
/// The first column (the index against the base commit: the workspace's
/// own edits) is not a change of the step's.
fn parse_status(out: &str) -> Changes {
    let mut changes = Changes::default();
    for entry in out.split('\0').filter(|e| e.len() > 3) {
        let (code, path) = entry.split_at(3);
        let mut chars = code.chars();
        let (x, y) = (chars.next().unwrap_or(' '), chars.next().unwrap_or(' '));
        if x == '?' && y == '?' {
            changes.added.push(path.to_owned());
            changes.files.push(path.to_owned());
        } else if y != ' ' {
            changes.files.push(path.to_owned());
        }
    }
    changes.files.sort();
    changes.added.sort();
    changes
}

/// What the file system says of a path: size, mtime (ns) and inode.
type Seen = Option<(u64, i128, u64)>;

fn seen(path: &Path) -> Seen {
    use std::os::unix::fs::MetadataExt as _;
    let m = std::fs::symlink_metadata(path).ok()?;
    Some((
        m.size(),
        i128::from(m.mtime()) * 1_000_000_000 + i128::from(m.mtime_nsec()),
        m.ino(),
    ))
}

/// The fast check: what the guarded files and their directories looked
/// like. A change it cannot see (a file rewritten within the same
/// nanosecond, to the same size) is beyond what a step can do unnoticed
/// by accident.
#[derive(Debug, Clone, Default)]
pub struct Stamp {
    files: Vec<(PathBuf, Seen)>,
    dirs: Vec<(PathBuf, Seen)>,
}

impl Stamp {
    /// Whether every file and directory looks as it did.
    pub fn unchanged(&self) -> bool {
        self.files
            .iter()
            .chain(self.dirs.iter())
            .all(|(path, was)| seen(path) == *was)
    }

    /// Look again (after a step that only wrote what the repository ignores,
    /// or after a restore).
    pub fn refresh(&mut self) {
        for (path, was) in self.files.iter_mut().chain(self.dirs.iter_mut()) {
            *was = seen(path);
        }
    }
}

/// What a step changed in the work tree.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct Changes {
    /// Every file that differs (added, modified, removed), repository-relative.
    pub files: Vec<String>,
    /// Those of them the step created.
    pub added: Vec<String>,
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A real git repository: the stamp sees a change, status names it,
    /// restore undoes it; ignored files are the step's to write.
    #[test]
    fn a_change_is_seen_named_and_undone() {
        let dir = tempfile::tempdir().unwrap();
        let git = |args: &[&str]| {
            let out = std::process::Command::new("git")
                .args(["-c", "user.name=t", "-c", "user.email=t@t"])
                .args(args)
                .current_dir(dir.path())
                .output()
                .unwrap();
            assert!(out.status.success(), "{out:?}");
        };
        std::fs::create_dir(dir.path().join("src")).unwrap();
        std::fs::write(dir.path().join("src/app.txt"), "app\n").unwrap();
        std::fs::write(dir.path().join(".gitignore"), "build/\n").unwrap();
        git(&["init", "-q"]);
        git(&["add", "-A"]);
        git(&["commit", "-q", "-m", "base"]);
        let (uid, gid) = {
            use std::os::unix::fs::MetadataExt as _;
            let m = std::fs::metadata(dir.path()).unwrap();
            (m.uid(), m.gid())
        };
        let guard = TreeGuard::new(
            Checkouts::new(dir.path(), std::time::Duration::from_secs(30)),
            dir.path(),
            (uid, gid),
        );
        let before = guard.fingerprint().unwrap().unwrap();
        let mut stamp = guard.stamp().unwrap();
        assert!(stamp.unchanged());

        // Ignored output: the stamp sees the new directory, status finds
        // nothing of the repository's.
        std::fs::create_dir(dir.path().join("build")).unwrap();
        std::fs::write(dir.path().join("build/out"), "x").unwrap();
        assert!(!stamp.unchanged());
        assert!(guard.changes_since_fingerprint().unwrap().files.is_empty());
        stamp.refresh();
        assert!(stamp.unchanged());

        // A rewritten file and a new one: named, then undone.
        std::fs::write(dir.path().join("src/app.txt"), "fixed\n").unwrap();
        std::fs::write(dir.path().join("src/new.txt"), "new\n").unwrap();
        assert!(!stamp.unchanged());
        let changes = guard.changes_since_fingerprint().unwrap();
        assert_eq!(changes.files, ["src/app.txt", "src/new.txt"]);
        assert_eq!(changes.added, ["src/new.txt"]);
        guard.restore(&before, &changes).unwrap();
        assert_eq!(
            std::fs::read_to_string(dir.path().join("src/app.txt")).unwrap(),
            "app\n"
        );
        assert!(!dir.path().join("src/new.txt").exists());
        assert_eq!(guard.fingerprint().unwrap().unwrap(), before);
    }

    #[test]
    fn status_reads_the_work_tree_side_only() {
        let out = "M  edited-before.txt\0 M app.txt\0?? added.txt\0 D gone.txt\0MM both.txt\0";
        let c = parse_status(out);
        assert_eq!(c.files, ["added.txt", "app.txt", "both.txt", "gone.txt"]);
        assert_eq!(c.added, ["added.txt"]);
        assert!(parse_status("M  edited-before.txt\0").files.is_empty());
    }
}

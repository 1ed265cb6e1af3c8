//! Validation judges the code as it is: the working tree is fingerprinted
//! before and after each validate step, and a step that changed files
//! (a linter whose project config turns fixing on, a formatter run in
//! write mode) has its changes undone and reported, file by file.
//!
//! The fingerprint is a git tree id of the work tree, made through an
//! index of its own (`.git/slipway-guard-index`), so git's stat cache
//! spares rehashing files that did not change. After a step one `git
//! status` against that index tells whether anything changed (a single
//! process: the check must cost little next to the step). Ignored files
//! (caches, build outputs) are not part of it: steps may write those.

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

    #[test]
    fn status_reads_the_work_tree_side_only() {
        let out = "M  edited-before.txt\0 M app.txt\0?? added.txt\0 D gone.txt\0MM both.txt\0";
        let c = parse_status(out);
        assert_eq!(c.files, ["added.txt", "app.txt", "both.txt", "gone.txt"]);
        assert_eq!(c.added, ["added.txt"]);
        assert!(parse_status("M  edited-before.txt\0").files.is_empty());
    }
}

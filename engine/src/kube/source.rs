//! The local repository a manifest is written for: its commit, where a
//! Pod would fetch it from, and its files at that commit (what a job's
//! checkout holds, so the plan and the image's hash are the job's).

use std::path::{Path, PathBuf};
use std::process::Command;

/// A local git repository at one commit.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LocalRepo {
    /// The repository's top directory, canonical (what `slipway run <dir>`
    /// names as the job's repository).
    pub dir: PathBuf,
    /// The exact commit.
    pub sha: String,
    /// `remote.origin.url`, when there is one.
    pub origin: Option<String>,
}

/// Why the repository could not be read.
#[derive(Debug, thiserror::Error)]
pub enum SourceError {
    /// The directory does not exist or is unreadable.
    #[error("{path}: {source}")]
    Io {
        /// The path.
        path: String,
        /// What failed.
        source: std::io::Error,
    },
    /// `git` could not be run.
    #[error("running git: {0} (is git installed?)")]
    Git(std::io::Error),
    /// Not a git repository's top directory.
    #[error(
        "{dir} is not the top of a git repository{inside}; a Pod checks out a whole repository at a commit: give its top directory"
    )]
    NotTop {
        /// The directory given.
        dir: String,
        /// ` (it is inside <top>)` when it is in one.
        inside: String,
    },
    /// The revision does not name a commit of the repository.
    #[error("{dir}: `{rev}` is not a commit of this repository: {message}")]
    UnknownRevision {
        /// The repository.
        dir: String,
        /// The revision asked for.
        rev: String,
        /// What git said.
        message: String,
    },
    /// `git archive` failed or its output was not a tar.
    #[error("{dir}: exporting commit {sha}: {message}")]
    Export {
        /// The repository.
        dir: String,
        /// The commit.
        sha: String,
        /// What failed.
        message: String,
    },
}

fn git(dir: &Path, args: &[&str]) -> Result<std::process::Output, SourceError> {
    Command::new("git")
        .arg("-C")
        .arg(dir)
        .args(args)
        .env("GIT_TERMINAL_PROMPT", "0")
        .output()
        .map_err(SourceError::Git)
}

fn text(out: &std::process::Output) -> String {
    String::from_utf8_lossy(&out.stdout).trim().to_owned()
}

impl LocalRepo {
    /// The repository at `dir` (its top directory), at `rev` (a SHA, a
    /// branch, a tag; `HEAD` when `None`) resolved to its commit.
    pub fn open(dir: &Path, rev: Option<&str>) -> Result<LocalRepo, SourceError> {
        let canonical = dir.canonicalize().map_err(|source| SourceError::Io {
            path: dir.display().to_string(),
            source,
        })?;
        let top = git(&canonical, &["rev-parse", "--show-toplevel"])?;
        let top_dir = PathBuf::from(text(&top));
        let is_top = top.status.success() && top_dir.canonicalize().is_ok_and(|t| t == canonical);
        if !is_top {
            return Err(SourceError::NotTop {
                dir: canonical.display().to_string(),
                inside: if top.status.success() {
                    format!(" (it is inside {})", top_dir.display())
                } else {
                    String::new()
                },
            });
        }
        let rev = rev.unwrap_or("HEAD");
        let resolved = git(
            &canonical,
            &[
                "rev-parse",
                "--verify",
                "--quiet",
                &format!("{rev}^{{commit}}"),
            ],
        )?;
        if !resolved.status.success() {
            return Err(SourceError::UnknownRevision {
                dir: canonical.display().to_string(),
                rev: rev.to_owned(),
                message: "git rev-parse found no such commit".into(),
            });
        }
        let origin = git(&canonical, &["remote", "get-url", "origin"])?;
        let origin = (origin.status.success() && !text(&origin).is_empty()).then(|| text(&origin));
        Ok(LocalRepo {
            sha: text(&resolved),
            origin,
            dir: canonical,
        })
    }

    /// Write the files of the commit (not the working tree) into `into`,
    /// as a job's checkout has them.
    pub fn export(&self, into: &Path) -> Result<(), SourceError> {
        let fail = |message: String| SourceError::Export {
            dir: self.dir.display().to_string(),
            sha: self.sha.clone(),
            message,
        };
        let out = git(&self.dir, &["archive", "--format=tar", &self.sha])?;
        if !out.status.success() {
            return Err(fail(String::from_utf8_lossy(&out.stderr).trim().to_owned()));
        }
        tar::Archive::new(out.stdout.as_slice())
            .unpack(into)
            .map_err(|e| fail(e.to_string()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn run(dir: &Path, args: &[&str]) {
        let ok = Command::new("git")
            .arg("-C")
            .arg(dir)
            .args(args)
            .output()
            .unwrap()
            .status
            .success();
        assert!(ok, "git {args:?}");
    }

    #[test]
    fn a_repository_at_a_commit_and_its_files_there() {
        let tmp = tempfile::tempdir().unwrap();
        let dir = tmp.path().join("app");
        std::fs::create_dir_all(dir.join("sub")).unwrap();
        std::fs::write(dir.join("a.txt"), "one").unwrap();
        run(&dir, &["init", "-q"]);
        run(&dir, &["add", "-A"]);
        run(
            &dir,
            &[
                "-c",
                "user.name=t",
                "-c",
                "user.email=t@l",
                "commit",
                "-qm",
                "one",
            ],
        );
        // Uncommitted changes are not the commit's.
        std::fs::write(dir.join("a.txt"), "changed").unwrap();
        std::fs::write(dir.join("untracked"), "x").unwrap();
        let repo = LocalRepo::open(&dir, None).unwrap();
        assert_eq!(repo.sha.len(), 40);
        assert_eq!(repo.origin, None);
        let out = tmp.path().join("out");
        std::fs::create_dir_all(&out).unwrap();
        repo.export(&out).unwrap();
        assert_eq!(std::fs::read_to_string(out.join("a.txt")).unwrap(), "one");
        assert!(!out.join("untracked").exists());
        let e = LocalRepo::open(&dir.join("sub"), None).unwrap_err();
        assert!(matches!(e, SourceError::NotTop { .. }), "{e}");
        let e = LocalRepo::open(&dir, Some("nope")).unwrap_err();
        assert!(e.to_string().contains("`nope` is not a commit"), "{e}");
    }
}

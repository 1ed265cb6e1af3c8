//! A job's checkout: its private copy of the repository at one exact commit.
//!
//! Git sources go through a cached bare mirror per repository (fetched, not
//! cloned again, for later jobs); each job gets its own clone of the mirror
//! at the commit, and `HEAD` is verified to equal the SHA before anything
//! runs. A plain local directory is copied (symlinks kept as links, never
//! followed), so the job cannot change the source and later edits of the
//! source cannot change the job. Git runs with a timeout, without prompts,
//! and never with the user's global configuration.

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use sha2::{Digest, Sha256};

use crate::git_auth::{GitAuth, GitCredentials};

/// Why a repository could not be checked out (or a ref resolved).
#[derive(Debug, thiserror::Error)]
pub enum CheckoutError {
    /// git could not be started, or exited with an error.
    #[error("`git {args}` failed: {stderr}")]
    Git {
        /// The git arguments, space-separated.
        args: String,
        /// What git wrote to stderr (or the spawn error), with a hint when
        /// the repository asked for a credential.
        stderr: String,
    },
    /// git ran past the checkout timeout and was killed.
    #[error(
        "`git {args}` took longer than {seconds} s and was stopped (hint: raise the checkout timeout, or check the repository's size and reachability)"
    )]
    Timeout {
        /// The git arguments, space-separated.
        args: String,
        /// The timeout, in seconds.
        seconds: u64,
    },
    /// The commit or ref is not in the repository (or is not a valid name).
    #[error(
        "commit `{commit}` is not in {repository} (hint: push it, or give a full SHA or a branch/tag that exists)"
    )]
    UnknownCommit {
        /// The repository's source (URL or path), as given.
        repository: String,
        /// The commit or ref asked for, as given.
        commit: String,
    },
    /// The clone's `HEAD` is not the resolved commit; the job does not run.
    #[error("the checkout's HEAD is {actual}, not the requested {expected}; nothing was run")]
    HeadMismatch {
        /// The commit the job's `commit` resolved to, a full SHA.
        expected: String,
        /// The full SHA the clone's `HEAD` names.
        actual: String,
    },
    /// A file system operation on the state directory or a copied source
    /// failed.
    #[error("{path}: {message}")]
    Io {
        /// The file or directory.
        path: String,
        /// The I/O error.
        message: String,
    },
    /// The checkout is over `runner.checkout_max_mb`; it is removed and the
    /// job does not run.
    #[error(
        "the checkout of {repository} is larger than the limit of {limit_mb} MiB (runner.checkout_max_mb); nothing was run (hint: raise runner.checkout_max_mb, or keep large files out of the repository)"
    )]
    TooLarge {
        /// The repository's source (URL or path), as given.
        repository: String,
        /// The limit, in MiB.
        limit_mb: u64,
    },
    /// The credential configured for the repository's host could not be
    /// resolved.
    #[error("the credential for {repository}: {source}")]
    Credentials {
        /// The repository's source (URL or path), as given.
        repository: String,
        /// Why the credential could not be used.
        source: crate::git_auth::GitAuthError,
    },
}

fn io_error(path: &Path, e: std::io::Error) -> CheckoutError {
    CheckoutError::Io {
        path: path.display().to_string(),
        message: e.to_string(),
    }
}

/// Where mirrors and checkouts live.
#[derive(Debug, Clone)]
pub struct Checkouts {
    mirrors: PathBuf,
    jobs: PathBuf,
    timeout: Duration,
    /// The largest checkout (work tree and `.git`, or a copied directory).
    max_bytes: u64,
    credentials: GitCredentials,
}

/// The default of `runner.checkout_max_mb`.
pub const DEFAULT_CHECKOUT_MAX_MB: u64 = 4096;

/// A prepared checkout.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Checkout {
    /// The checkout's directory on the host, under the state directory.
    pub path: PathBuf,
    /// The exact commit (`None` for a plain directory snapshot).
    pub sha: Option<String>,
}

impl Checkouts {
    /// Mirrors under `<state_dir>/mirrors`, checkouts under
    /// `<state_dir>/checkouts`; each git command may take `timeout`. No
    /// credentials, and [`DEFAULT_CHECKOUT_MAX_MB`] as the size limit.
    pub fn new(state_dir: &Path, timeout: Duration) -> Checkouts {
        Checkouts {
            mirrors: state_dir.join("mirrors"),
            jobs: state_dir.join("checkouts"),
            timeout,
            max_bytes: DEFAULT_CHECKOUT_MAX_MB << 20,
            credentials: GitCredentials::default(),
        }
    }

    /// The commit `reference` names in `source` now (see [`resolve_ref`]),
    /// with these checkouts' credentials and time limit.
    pub fn head_of(&self, source: &str, reference: &str) -> Result<String, CheckoutError> {
        resolve_ref(source, reference, self.timeout, &self.credentials)
    }

    /// Talk to private repositories with these credentials.
    pub fn with_credentials(mut self, credentials: GitCredentials) -> Checkouts {
        self.credentials = credentials;
        self
    }

    /// What git is given for `source`: its credential, if one is configured.
    pub fn auth_for(&self, source: &str) -> Result<GitAuth, CheckoutError> {
        self.credentials
            .for_url(source)
            .map_err(|source_error| CheckoutError::Credentials {
                repository: source.to_owned(),
                source: source_error,
            })
    }

    /// Refuse checkouts larger than `max_mb` MiB.
    pub fn with_max_mb(mut self, max_mb: u64) -> Checkouts {
        self.max_bytes = max_mb.saturating_mul(1 << 20);
        self
    }

    /// Check out `source` (a git URL, a local git repository, or a plain
    /// directory) at `commit` (a full SHA, or a ref resolved now) for `name`.
    pub fn prepare(
        &self,
        source: &str,
        commit: &str,
        name: &str,
    ) -> Result<Checkout, CheckoutError> {
        let dest = self.jobs.join(name);
        if dest.exists() {
            std::fs::remove_dir_all(&dest).map_err(|e| io_error(&dest, e))?;
        }
        std::fs::create_dir_all(&self.jobs).map_err(|e| io_error(&self.jobs, e))?;
        let local = Path::new(source);
        let too_large = || CheckoutError::TooLarge {
            repository: source.into(),
            limit_mb: self.max_bytes >> 20,
        };
        if is_plain_directory(source) {
            let mut budget = Budget::new(self.max_bytes);
            let copied = copy_tree(local, &dest, None, &mut budget);
            if copied.is_err() || budget.exceeded() {
                let _ = std::fs::remove_dir_all(&dest);
            }
            copied?;
            if budget.exceeded() {
                return Err(too_large());
            }
            return Ok(Checkout {
                path: dest,
                sha: None,
            });
        }
        // The mirror stays locked until the job's clone has what it needs
        // (a concurrent fetch with `--prune` could drop the commit's ref).
        let (mirror, lock) = self.mirror(source)?;
        let sha = self.resolve(&mirror, source, commit)?;
        self.git(
            None,
            &[
                "clone",
                "--quiet",
                "--no-checkout",
                "--no-hardlinks",
                path_str(&mirror),
                path_str(&dest),
            ],
        )?;
        drop(lock);
        self.git(
            Some(&dest),
            &[
                "-c",
                "advice.detachedHead=false",
                "checkout",
                "--quiet",
                "--detach",
                &sha,
            ],
        )?;
        let head = self.git(Some(&dest), &["rev-parse", "HEAD"])?;
        if head != sha {
            return Err(CheckoutError::HeadMismatch {
                expected: sha,
                actual: head,
            });
        }
        if tree_bytes(&dest, self.max_bytes) > self.max_bytes {
            let _ = std::fs::remove_dir_all(&dest);
            return Err(too_large());
        }
        Ok(Checkout {
            path: dest,
            sha: Some(sha),
        })
    }

    /// Remove a job's checkout.
    /// The checkout `name` if it is still on disk (a job adopted after an
    /// engine restart goes on in it).
    pub fn existing(&self, name: &str) -> Option<PathBuf> {
        let dest = self.jobs.join(name);
        dest.is_dir().then_some(dest)
    }

    /// The names of the checkouts on disk that start with `prefix`.
    pub fn names_with_prefix(&self, prefix: &str) -> Vec<String> {
        std::fs::read_dir(&self.jobs)
            .into_iter()
            .flatten()
            .flatten()
            .filter_map(|e| e.file_name().into_string().ok())
            .filter(|n| n.starts_with(prefix))
            .collect()
    }

    /// Remove the checkout `name`; one already gone is no error.
    pub fn remove(&self, name: &str) -> Result<(), CheckoutError> {
        let dest = self.jobs.join(name);
        match std::fs::remove_dir_all(&dest) {
            Ok(()) => Ok(()),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(()),
            Err(e) => Err(io_error(&dest, e)),
        }
    }

    /// The bare mirror of `source`, created or fetched, and the lock that
    /// keeps it: one caller at a time per mirror, across the jobs of an
    /// engine and the engines sharing a state directory (concurrent first
    /// clones would share the partial folder, concurrent fetches fight
    /// over ref locks). The lock is released when the file is dropped.
    fn mirror(&self, source: &str) -> Result<(PathBuf, std::fs::File), CheckoutError> {
        let key = hex::encode(&Sha256::digest(source.as_bytes())[..8]);
        let slug: String = source
            .rsplit(['/', ':'])
            .find(|s| !s.is_empty())
            .unwrap_or("repo")
            .trim_end_matches(".git")
            .chars()
            .map(|c| {
                if c.is_ascii_alphanumeric() || c == '-' || c == '_' {
                    c
                } else {
                    '-'
                }
            })
            .collect();
        let mirror = self.mirrors.join(format!("{slug}-{key}.git"));
        std::fs::create_dir_all(&self.mirrors).map_err(|e| io_error(&self.mirrors, e))?;
        // Beside the mirrors, not among them: that folder holds mirrors only.
        let locks = self.mirrors.with_file_name("locks");
        std::fs::create_dir_all(&locks).map_err(|e| io_error(&locks, e))?;
        let lock_path = locks.join(format!("mirror-{slug}-{key}.lock"));
        let lock = std::fs::OpenOptions::new()
            .create(true)
            .truncate(false)
            .write(true)
            .open(&lock_path)
            .map_err(|e| io_error(&lock_path, e))?;
        lock.lock().map_err(|e| io_error(&lock_path, e))?;
        let auth = self.auth_for(source)?;
        let env: Vec<(&str, &str)> = auth
            .env
            .iter()
            .map(|(k, v)| (k.as_str(), v.as_str()))
            .collect();
        if mirror.join("HEAD").exists() {
            self.git_env(
                Some(&mirror),
                &env,
                &[
                    "fetch",
                    "--quiet",
                    "--prune",
                    "--force",
                    "origin",
                    "+refs/*:refs/*",
                ],
            )?;
        } else {
            // Clone next to the final name, then rename: a crash never leaves
            // a half mirror that looks complete.
            let partial = self.mirrors.join(format!(".{slug}-{key}.partial"));
            let _ = std::fs::remove_dir_all(&partial);
            self.git_env(
                None,
                &env,
                &["clone", "--quiet", "--mirror", source, path_str(&partial)],
            )?;
            std::fs::rename(&partial, &mirror).map_err(|e| io_error(&mirror, e))?;
        }
        Ok((mirror, lock))
    }

    /// `commit` as a full SHA that exists in the mirror.
    fn resolve(&self, mirror: &Path, source: &str, commit: &str) -> Result<String, CheckoutError> {
        if commit.starts_with('-') || commit.contains("..") || commit.is_empty() {
            return Err(CheckoutError::UnknownCommit {
                repository: source.into(),
                commit: commit.into(),
            });
        }
        match self.git(
            Some(mirror),
            &[
                "rev-parse",
                "--verify",
                "--quiet",
                &format!("{commit}^{{commit}}"),
            ],
        ) {
            Ok(sha) if !sha.is_empty() => Ok(sha),
            _ => Err(CheckoutError::UnknownCommit {
                repository: source.into(),
                commit: commit.into(),
            }),
        }
    }

    /// Run git without prompts or user configuration; stdout, trimmed.
    /// Checkouts belong to the job user, so ownership checks are off here.
    pub fn git(&self, cwd: Option<&Path>, args: &[&str]) -> Result<String, CheckoutError> {
        self.git_env(cwd, &[], args)
    }

    /// `git` with extra environment (e.g. `GIT_INDEX_FILE`).
    pub fn git_env(
        &self,
        cwd: Option<&Path>,
        env: &[(&str, &str)],
        args: &[&str],
    ) -> Result<String, CheckoutError> {
        run_git(cwd, env, args, self.timeout)
    }

    /// [`Self::git_env`] with the output as git wrote it (untrimmed: a
    /// `status --porcelain` entry may start with a space).
    pub fn git_env_raw(
        &self,
        cwd: Option<&Path>,
        env: &[(&str, &str)],
        args: &[&str],
    ) -> Result<String, CheckoutError> {
        run_git_raw(cwd, env, args, self.timeout)
    }
}

/// The commit a ref names in `source` (a git URL or a local repository),
/// asked of the repository without fetching it: `git ls-remote` for a URL,
/// `git rev-parse` in a local repository (which also takes abbreviated
/// SHAs). A branch wins over a tag of the same name, as in git; an
/// annotated tag resolves to its commit. A full SHA is returned as is.
pub fn resolve_ref(
    source: &str,
    reference: &str,
    timeout: Duration,
    credentials: &GitCredentials,
) -> Result<String, CheckoutError> {
    let unknown = || CheckoutError::UnknownCommit {
        repository: source.into(),
        commit: reference.into(),
    };
    if reference.len() == 40 && reference.bytes().all(|b| b.is_ascii_hexdigit()) {
        return Ok(reference.to_ascii_lowercase());
    }
    if reference.is_empty() || reference.starts_with('-') || reference.contains("..") {
        return Err(unknown());
    }
    let local = Path::new(source);
    if local.is_dir() {
        // A plain directory inside some other repository must not resolve
        // against that one.
        if is_plain_directory(source) {
            return Err(unknown());
        }
        let spec = format!("{reference}^{{commit}}");
        return match run_git(
            Some(local),
            &[],
            &["rev-parse", "--verify", "--quiet", &spec],
            timeout,
        ) {
            Ok(sha) if !sha.is_empty() => Ok(sha),
            Ok(_) | Err(CheckoutError::Git { .. }) => Err(unknown()),
            Err(e) => Err(e),
        };
    }
    // The second pattern brings the peeled line of an annotated tag.
    let peeled = format!("{reference}^{{}}");
    let listing = ls_remote(source, &[reference, &peeled], timeout, credentials)?;
    pick_ref(&listing, reference).ok_or_else(unknown)
}

/// `git ls-remote` of `patterns` in `source`, with the repository's
/// credentials: its output.
fn ls_remote(
    source: &str,
    patterns: &[&str],
    timeout: Duration,
    credentials: &GitCredentials,
) -> Result<String, CheckoutError> {
    let auth = credentials
        .for_url(source)
        .map_err(|e| CheckoutError::Credentials {
            repository: source.to_owned(),
            source: e,
        })?;
    let env: Vec<(&str, &str)> = auth
        .env
        .iter()
        .map(|(k, v)| (k.as_str(), v.as_str()))
        .collect();
    let mut args = vec!["ls-remote", "--", source];
    args.extend_from_slice(patterns);
    run_git(None, &env, &args, timeout)
}

/// Every ref of `source` under `prefix` (`refs/heads/`, `refs/tags/`) and
/// the commit it names (a tag peeled to its commit), without fetching:
/// what a watch asks on each look. A directory that is not a git
/// repository has no refs.
pub fn list_refs(
    source: &str,
    prefix: &str,
    timeout: Duration,
    credentials: &GitCredentials,
) -> Result<Vec<(String, String)>, CheckoutError> {
    let pattern = format!("{prefix}*");
    let listing = ls_remote(source, &[&pattern], timeout, credentials)?;
    let mut refs = std::collections::BTreeMap::<String, String>::new();
    for (sha, name) in listing.lines().filter_map(|l| l.split_once('\t')) {
        match name.strip_suffix("^{}") {
            // The commit an annotated tag points at wins over the tag object.
            Some(tag) => {
                refs.insert(tag.to_owned(), sha.to_owned());
            }
            None => {
                refs.entry(name.to_owned())
                    .or_insert_with(|| sha.to_owned());
            }
        }
    }
    Ok(refs.into_iter().collect())
}

/// From `git ls-remote` output, the commit `reference` names: the exact ref
/// (`HEAD`, `refs/...`), else the branch, else the tag (peeled).
fn pick_ref(listing: &str, reference: &str) -> Option<String> {
    let refs: Vec<(&str, &str)> = listing
        .lines()
        .filter_map(|line| line.split_once('\t'))
        .collect();
    let find = |name: &str| {
        refs.iter()
            .find(|(_, r)| *r == name)
            .map(|(sha, _)| (*sha).to_owned())
    };
    let (exact, branch, tag) = (
        reference.to_owned(),
        format!("refs/heads/{reference}"),
        format!("refs/tags/{reference}"),
    );
    find(&format!("{exact}^{{}}"))
        .or_else(|| find(&exact))
        .or_else(|| find(&branch))
        .or_else(|| find(&format!("{tag}^{{}}")))
        .or_else(|| find(&tag))
}

/// Run git without prompts or user configuration; stdout, trimmed.
fn run_git(
    cwd: Option<&Path>,
    env: &[(&str, &str)],
    args: &[&str],
    timeout: Duration,
) -> Result<String, CheckoutError> {
    run_git_raw(cwd, env, args, timeout).map(|out| out.trim().to_owned())
}

/// [`run_git`], its output untrimmed.
fn run_git_raw(
    cwd: Option<&Path>,
    env: &[(&str, &str)],
    args: &[&str],
    timeout: Duration,
) -> Result<String, CheckoutError> {
    let mut cmd = Command::new("git");
    cmd.envs(env.iter().copied());
    if let Some(dir) = cwd {
        cmd.current_dir(dir);
    }
    // No redirects (the outbound policy checked the URL's own host, not
    // where a redirect would lead) and no `ext::` transport.
    cmd.args(["-c", "safe.directory=*", "-c", "core.hooksPath=/dev/null"])
        .args([
            "-c",
            "http.followRedirects=false",
            "-c",
            "protocol.ext.allow=never",
        ])
        .args(args)
        .env("GIT_TERMINAL_PROMPT", "0")
        .env("GIT_CONFIG_NOSYSTEM", "1")
        .env("GIT_CONFIG_GLOBAL", "/dev/null")
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    let shown = args.join(" ");
    let mut child = cmd.spawn().map_err(|e| CheckoutError::Git {
        args: shown.clone(),
        stderr: e.to_string(),
    })?;
    // Drained as git writes: a listing past the pipe's 64 KiB (`ls-remote`
    // of a repository with many refs) must not stall git until the timeout.
    let drain = |pipe: Option<Box<dyn std::io::Read + Send>>| {
        std::thread::spawn(move || {
            let mut bytes = Vec::new();
            if let Some(mut pipe) = pipe {
                let _ = std::io::Read::read_to_end(&mut pipe, &mut bytes);
            }
            bytes
        })
    };
    let stdout = drain(child.stdout.take().map(|p| Box::new(p) as _));
    let stderr = drain(child.stderr.take().map(|p| Box::new(p) as _));
    let deadline = Instant::now() + timeout;
    // Most git calls here take a few milliseconds: poll often at first.
    let mut pause = Duration::from_micros(200);
    loop {
        match child.try_wait() {
            Ok(Some(_)) => break,
            Ok(None) if Instant::now() < deadline => {
                std::thread::sleep(pause);
                pause = (pause * 2).min(Duration::from_millis(10));
            }
            Ok(None) => {
                let _ = child.kill();
                let _ = child.wait();
                return Err(CheckoutError::Timeout {
                    args: shown,
                    seconds: timeout.as_secs(),
                });
            }
            Err(e) => {
                return Err(CheckoutError::Git {
                    args: shown,
                    stderr: e.to_string(),
                });
            }
        }
    }
    let status = child.wait().map_err(|e| CheckoutError::Git {
        args: shown.clone(),
        stderr: e.to_string(),
    })?;
    let (stdout, stderr) = (
        stdout.join().unwrap_or_default(),
        stderr.join().unwrap_or_default(),
    );
    if !status.success() {
        let mut stderr = String::from_utf8_lossy(&stderr).trim().to_owned();
        if stderr.contains("could not read Username") || stderr.contains("Authentication failed") {
            stderr.push_str(
                " (hint: the repository needs a credential: map its host to a secret reference under `git_credentials` in slipway.toml)",
            );
        }
        return Err(CheckoutError::Git {
            args: shown,
            stderr,
        });
    }
    Ok(String::from_utf8_lossy(&stdout).into_owned())
}

fn path_str(p: &Path) -> &str {
    p.to_str().unwrap_or_default()
}

/// A local directory that is not a git repository: it runs as a snapshot,
/// and a job's `commit` means nothing for it.
pub fn is_plain_directory(source: &str) -> bool {
    let dir = Path::new(source);
    dir.is_dir() && !dir.join(".git").exists() && !is_bare_repo(dir)
}

fn is_bare_repo(dir: &Path) -> bool {
    dir.join("HEAD").is_file() && dir.join("objects").is_dir() && dir.join("refs").is_dir()
}

/// A copy of a repository's working tree as it is, uncommitted changes
/// included and `.git` left out (`slipway run --dirty`): it then runs as a
/// plain directory.
pub fn copy_working_tree(from: &Path, to: &Path) -> Result<(), CheckoutError> {
    copy_tree(from, to, Some(".git"), &mut Budget::new(u64::MAX))
}

/// Bytes a copy may still write; copying stops once it is spent.
struct Budget {
    left: u64,
    over: bool,
}

impl Budget {
    fn new(max_bytes: u64) -> Budget {
        Budget {
            left: max_bytes,
            over: false,
        }
    }

    /// Take `bytes`; false (and spent for good) when they do not fit.
    fn take(&mut self, bytes: u64) -> bool {
        match self.left.checked_sub(bytes) {
            Some(left) if !self.over => {
                self.left = left;
                true
            }
            _ => {
                self.over = true;
                false
            }
        }
    }

    fn exceeded(&self) -> bool {
        self.over
    }
}

/// The bytes of the files under `dir` (links not followed), counting no
/// further than just past `stop_after`.
fn tree_bytes(dir: &Path, stop_after: u64) -> u64 {
    let mut total = 0u64;
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        let Ok(entries) = std::fs::read_dir(&d) else {
            continue;
        };
        for entry in entries.flatten() {
            let Ok(meta) = entry.path().symlink_metadata() else {
                continue;
            };
            if meta.is_dir() {
                stack.push(entry.path());
            } else {
                total = total.saturating_add(meta.len());
                if total > stop_after {
                    return total;
                }
            }
        }
    }
    total
}

/// Copy a directory tree (less a top-level `leave_out`); symlinks are
/// recreated as links, never followed.
fn copy_tree(
    from: &Path,
    to: &Path,
    leave_out: Option<&str>,
    budget: &mut Budget,
) -> Result<(), CheckoutError> {
    std::fs::create_dir_all(to).map_err(|e| io_error(to, e))?;
    for entry in std::fs::read_dir(from).map_err(|e| io_error(from, e))? {
        let entry = entry.map_err(|e| io_error(from, e))?;
        if leave_out.is_some_and(|name| entry.file_name() == name) {
            continue;
        }
        let (src, dst) = (entry.path(), to.join(entry.file_name()));
        let kind = entry.file_type().map_err(|e| io_error(&src, e))?;
        if kind.is_symlink() {
            let target = std::fs::read_link(&src).map_err(|e| io_error(&src, e))?;
            std::os::unix::fs::symlink(target, &dst).map_err(|e| io_error(&dst, e))?;
        } else if kind.is_dir() {
            copy_tree(&src, &dst, None, budget)?;
        } else if kind.is_file() {
            let size = entry.metadata().map_err(|e| io_error(&src, e))?.len();
            if !budget.take(size) {
                return Ok(());
            }
            std::fs::copy(&src, &dst).map_err(|e| io_error(&src, e))?;
        }
        if budget.exceeded() {
            return Ok(());
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::{pick_ref, resolve_ref, run_git};
    use std::process::Command;
    use std::time::{Duration, Instant};

    const LISTING: &str = "\
1111111111111111111111111111111111111111\tHEAD
2222222222222222222222222222222222222222\trefs/heads/same
3333333333333333333333333333333333333333\trefs/tags/same
4444444444444444444444444444444444444444\trefs/tags/v1
5555555555555555555555555555555555555555\trefs/tags/v1^{}
6666666666666666666666666666666666666666\trefs/heads/feature/v1";

    #[test]
    fn branch_beats_tag_and_annotated_tags_are_peeled() {
        let pick = |r: &str| pick_ref(LISTING, r).map(|s| s[..1].to_owned());
        assert_eq!(pick("HEAD").as_deref(), Some("1"));
        assert_eq!(pick("same").as_deref(), Some("2"));
        assert_eq!(pick("refs/tags/same").as_deref(), Some("3"));
        assert_eq!(pick("v1").as_deref(), Some("5"));
        assert_eq!(pick("refs/tags/v1").as_deref(), Some("5"));
        // A pattern's tail match (`feature/v1` for `v1`) is not a match.
        assert_eq!(pick("feature/v1").as_deref(), Some("6"));
        assert_eq!(pick("nothing"), None);
    }

    #[test]
    fn a_listing_larger_than_a_pipe_does_not_stall_git() {
        let repo = tempfile::tempdir().unwrap();
        let git = |args: &[&str]| run_git(Some(repo.path()), &[], args, Duration::from_secs(30));
        git(&["init", "--quiet"]).unwrap();
        git(&[
            "-c",
            "user.name=t",
            "-c",
            "user.email=t@t",
            "commit",
            "--quiet",
            "--allow-empty",
            "-m",
            "c",
        ])
        .unwrap();
        // 3,000 tags: `ls-remote` prints about 200 KiB.
        let lines: String = (0..3000)
            .map(|i| format!("create refs/tags/release-{i:04} HEAD\n"))
            .collect();
        let list = repo.path().join("refs.txt");
        std::fs::write(&list, lines).unwrap();
        let script = format!("git update-ref --stdin < {}", list.display());
        let made = Command::new("sh")
            .arg("-c")
            .arg(&script)
            .current_dir(repo.path())
            .status()
            .unwrap();
        assert!(made.success());
        let url = format!("file://{}", repo.path().display());
        let started = Instant::now();
        let sha = resolve_ref(
            &url,
            "release-2999",
            Duration::from_secs(20),
            &Default::default(),
        )
        .unwrap();
        assert_eq!(sha, git(&["rev-parse", "HEAD"]).unwrap());
        assert!(
            started.elapsed() < Duration::from_secs(10),
            "{:?}",
            started.elapsed()
        );
    }
}

//! The calls a client makes on an open workspace: validate (steps and
//! findings, kept in its history), diff, patch, files, and reset. Each
//! holds the workspace's lock for its whole run.

use super::paths::{check_relative, confine, patch_paths};
use super::{Live, WorkspaceError, Workspaces, internal};
use crate::job::{Outcome, Tier, now_ms};
use crate::plan::Step;
use crate::runner::exec::{StepEnd, capture};
use crate::runner::prepare::{Environment, Runner, Steps, hand_over, step_output};
use crate::workspace::{HISTORY_KEPT, StepResult, ValidateResult, WorkspaceRecord};
use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, Instant};

impl Workspaces {
    /// Run the `fast` (or `fast` then `full`) steps; stop at the first
    /// failure. Every result is kept in the workspace's history.
    pub async fn validate(&self, id: &str, tier: Tier) -> Result<ValidateResult, WorkspaceError> {
        let (live, guard) = self.lock(id).await?;
        let env = guard.as_ref().expect("checked by lock");
        if tier == Tier::Full {
            let used = live.snapshot().full_runs;
            if used >= self.settings.max_full_runs {
                return Err(WorkspaceError::FullRunsUsed {
                    id: id.to_owned(),
                    max: self.settings.max_full_runs,
                });
            }
            live.update(|r| r.full_runs += 1);
        }
        let started = Instant::now();
        // What the steps run on (usually known already: edits refresh it).
        let diff = self.current_diff(env, &live).await?;
        let mut steps: Vec<Step> = env.steps.fast.clone();
        if tier == Tier::Full {
            steps.extend(env.steps.full.clone());
        }
        let mut results = Vec::new();
        let mut ok = true;
        let guard_tree = super::tree_guard::TreeGuard::new(
            self.runner.checkouts.clone(),
            &env.checkout.path,
            self.runner.settings.job_user,
        );
        let mut before = self.guarded_fingerprint(&live, &guard_tree).await?;
        for step in &steps {
            let mut result = self.run_step(&live, env, step).await;
            if let Some((tree, stamp)) = before.take() {
                let (g, b) = (guard_tree.clone(), tree.clone());
                let (changes, stamp) = tokio::task::spawn_blocking(move || {
                    let mut stamp = stamp;
                    if stamp.unchanged() {
                        return Ok((super::tree_guard::Changes::default(), stamp));
                    }
                    let changes = g.changes_since_fingerprint()?;
                    if !changes.files.is_empty() {
                        // The step changed the code it was to judge:
                        // undone, and the step fails with a finding per file.
                        g.restore(&b, &changes)?;
                    }
                    stamp.refresh();
                    Ok::<_, crate::checkout::CheckoutError>((changes, stamp))
                })
                .await
                .map_err(internal)?
                .map_err(internal)?;
                if let Some(kept) = live
                    .guarded
                    .lock()
                    .unwrap_or_else(|p| p.into_inner())
                    .as_mut()
                {
                    kept.2 = stamp.clone();
                }
                before = Some((tree, stamp));
                if !changes.files.is_empty() {
                    changed_files_found(&mut result, changes.files);
                }
            }
            let passed = result.exit_code == Some(0) && result.changed_files.is_empty();
            results.push(result);
            if !passed {
                ok = false;
                break;
            }
        }
        // The tree is as it was (a step's changes are undone; ignored
        // files are not part of the diff): the kept diff still holds.
        let result = ValidateResult {
            tier,
            ok,
            duration_ms: started.elapsed().as_millis() as u64,
            at_ms: now_ms(),
            diff_sha256: sha256_hex(diff.as_bytes()),
            steps: results,
            note: empty_tiers(&env.steps, tier),
        };
        let record = live.update(|r| {
            r.history.push(result.clone());
            let extra = r.history.len().saturating_sub(HISTORY_KEPT);
            r.history.drain(..extra);
            r.last_used_ms = now_ms();
        });
        drop(guard);
        // Kept durably, but the caller does not wait for the commit.
        let store = self.runner.store.clone();
        tokio::spawn(async move {
            if let Err(e) = store.put_workspace(record).await {
                tracing::warn!(error = %e, "a validate result was not stored");
            }
        });
        Ok(result)
    }

    async fn run_step(&self, live: &Live, env: &Environment, step: &Step) -> StepResult {
        let mut ran = None;
        let outcome = self
            .runner
            .run_steps(
                env,
                std::slice::from_ref(step),
                &live.log,
                &live.cancel,
                live.step_timeout,
                |r| ran = Some(r.clone()),
            )
            .await;
        let (stdout, mut output) = match &ran {
            Some(r) => step_output(live.log.path(), r.log_start, r.log_end),
            None => Default::default(),
        };
        if let Err(Outcome::Failed { reason }) = &outcome
            && ran.is_none()
        {
            // Not the step itself: a service exited while it ran.
            output.push_str(&format!("\n[slipway] {reason}"));
        }
        let (exit_code, timed_out, duration) = match &ran {
            Some(r) => match r.end {
                StepEnd::Exited(code) => (Some(code), false, r.duration),
                StepEnd::TimedOut => (None, true, r.duration),
                StepEnd::Cancelled => (None, false, r.duration),
            },
            None => (None, false, Duration::ZERO),
        };
        let (findings, findings_error) = match &step.report {
            None => (Vec::new(), None),
            Some(report) => match self
                .runner
                .findings(&env.checkout.path, report, &stdout)
                .await
            {
                Ok(f) => (f, None),
                Err(e) => (Vec::new(), Some(e)),
            },
        };
        StepResult {
            name: step.name.clone(),
            command: step.command.clone(),
            exit_code,
            duration_ms: duration.as_millis() as u64,
            output: keep_end(output, self.settings.output_cap),
            findings,
            findings_error,
            timed_out,
            changed_files: Vec::new(),
        }
    }

    /// The work tree's fingerprint: the one kept from an earlier validate
    /// when no edit came between, else made now (off the async threads).
    async fn guarded_fingerprint(
        &self,
        live: &Live,
        guard: &super::tree_guard::TreeGuard,
    ) -> Result<Option<(String, super::tree_guard::Stamp)>, WorkspaceError> {
        use std::sync::atomic::Ordering;
        let generation = live.generation.load(Ordering::SeqCst);
        if let Some((g, tree, stamp)) = live
            .guarded
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .as_ref()
            && *g == generation
        {
            return Ok(Some((tree.clone(), stamp.clone())));
        }
        let g = guard.clone();
        let made = tokio::task::spawn_blocking(move || {
            let Some(tree) = g.fingerprint()? else {
                return Ok(None);
            };
            let stamp = g.stamp()?;
            Ok::<_, crate::checkout::CheckoutError>(Some((tree, stamp)))
        })
        .await
        .map_err(internal)?
        .map_err(internal)?;
        if let Some((tree, stamp)) = &made {
            *live.guarded.lock().unwrap_or_else(|p| p.into_inner()) =
                Some((generation, tree.clone(), stamp.clone()));
        }
        Ok(made)
    }

    /// The workspace's changes against its base commit, as a unified diff.
    pub async fn diff(&self, id: &str) -> Result<String, WorkspaceError> {
        let (live, guard) = self.lock(id).await?;
        let env = guard.as_ref().expect("checked by lock");
        self.current_diff(env, &live).await
    }

    /// The diff against the base commit as the files are now: the kept one
    /// when nothing changed since it was made, else made now.
    async fn current_diff(&self, env: &Environment, live: &Live) -> Result<String, WorkspaceError> {
        use std::sync::atomic::Ordering;
        let generation = live.generation.load(Ordering::SeqCst);
        if let Some((g, diff)) = live.tree.lock().unwrap_or_else(|p| p.into_inner()).as_ref()
            && *g == generation
        {
            return Ok(diff.clone());
        }
        let job = diff_job(&self.runner, env, live);
        let diff = tokio::task::spawn_blocking(job)
            .await
            .map_err(internal)?
            .map_err(internal)?;
        keep_diff(live, generation, &diff);
        Ok(diff)
    }

    /// The files may have changed: a new generation, whose diff is made in
    /// the background (the caller holds the workspace; nothing else writes).
    fn refresh_diff(&self, env: &Environment, live: &Arc<Live>) {
        use std::sync::atomic::Ordering;
        let generation = live.generation.fetch_add(1, Ordering::SeqCst) + 1;
        let job = diff_job(&self.runner, env, live);
        let live = live.clone();
        tokio::task::spawn_blocking(move || {
            if let Ok(diff) = job() {
                keep_diff(&live, generation, &diff);
            }
        });
    }

    /// Apply a unified diff: all of it or nothing.
    pub async fn patch(&self, id: &str, patch: &str) -> Result<WorkspaceRecord, WorkspaceError> {
        let (live, guard) = self.lock(id).await?;
        let env = guard.as_ref().expect("checked by lock");
        for path in patch_paths(patch) {
            check_relative(&path)?;
        }
        let file = self.settings.logs_dir.join(format!("{id}.patch"));
        std::fs::write(&file, patch).map_err(internal)?;
        let (checkouts, dir, (uid, gid)) = (
            self.runner.checkouts.clone(),
            env.checkout.path.clone(),
            self.runner.settings.job_user,
        );
        let target = file.clone();
        let applied = tokio::task::spawn_blocking(move || {
            let f = target.to_string_lossy().to_string();
            // `--check` first: git applies all hunks or none, and says which failed.
            checkouts.git(Some(&dir), &["apply", "--check", "--whitespace=nowarn", &f])?;
            checkouts.git(Some(&dir), &["apply", "--whitespace=nowarn", &f])?;
            drop_bytecode(&checkouts, &dir)?;
            hand_over(&dir, uid, gid)
        })
        .await
        .map_err(internal)?;
        let _ = std::fs::remove_file(&file);
        if let Err(e) = applied {
            let text = match e {
                crate::checkout::CheckoutError::Git { stderr, .. } => stderr,
                other => other.to_string(),
            };
            return Err(WorkspaceError::PatchFailed(
                text.replace(&*file.to_string_lossy(), "patch"),
            ));
        }
        self.refresh_diff(env, &live);
        Ok(live.snapshot())
    }

    /// The bytes of `path` (relative to the checkout, confined to it);
    /// [`WorkspaceError::NoFile`] for a missing file or a directory.
    pub async fn read_file(&self, id: &str, path: &str) -> Result<Vec<u8>, WorkspaceError> {
        let (_live, guard) = self.lock(id).await?;
        let env = guard.as_ref().expect("checked by lock");
        let file = confine(&env.checkout.path, path, false)?;
        match std::fs::read(&file) {
            Ok(bytes) => Ok(bytes),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                Err(WorkspaceError::NoFile(path.into()))
            }
            Err(e) if e.kind() == std::io::ErrorKind::IsADirectory => {
                Err(WorkspaceError::NoFile(path.into()))
            }
            Err(e) => Err(internal(e)),
        }
    }

    /// Write a file (creating its folders); `Ok(true)` when it existed.
    pub async fn write_file(
        &self,
        id: &str,
        path: &str,
        bytes: &[u8],
    ) -> Result<bool, WorkspaceError> {
        let (live, guard) = self.lock(id).await?;
        let env = guard.as_ref().expect("checked by lock");
        let file = confine(&env.checkout.path, path, true)?;
        let existed = file.exists();
        let (uid, gid) = self.runner.settings.job_user;
        if let Some(parent) = file.parent() {
            std::fs::create_dir_all(parent).map_err(internal)?;
            hand_over(&env.checkout.path, uid, gid).map_err(internal)?;
        }
        std::fs::write(&file, bytes).map_err(internal)?;
        std::os::unix::fs::lchown(&file, Some(uid), Some(gid)).map_err(internal)?;
        self.refresh_diff(env, &live);
        Ok(existed)
    }

    /// Delete the file `path` (relative to the checkout, confined to it);
    /// [`WorkspaceError::NoFile`] when there is none.
    pub async fn delete_file(&self, id: &str, path: &str) -> Result<(), WorkspaceError> {
        let (live, guard) = self.lock(id).await?;
        let env = guard.as_ref().expect("checked by lock");
        let file = confine(&env.checkout.path, path, false)?;
        match std::fs::remove_file(&file) {
            Ok(()) => {
                self.refresh_diff(env, &live);
                Ok(())
            }
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                Err(WorkspaceError::NoFile(path.into()))
            }
            Err(e) => Err(internal(e)),
        }
    }

    /// Files back to the base commit, services back to their snapshot.
    pub async fn reset(&self, id: &str) -> Result<WorkspaceRecord, WorkspaceError> {
        let (live, guard) = self.lock(id).await?;
        let env = guard.as_ref().expect("checked by lock");
        let base = live.snapshot().base_sha.unwrap_or_default();
        let (checkouts, dir, (uid, gid)) = (
            self.runner.checkouts.clone(),
            env.checkout.path.clone(),
            self.runner.settings.job_user,
        );
        tokio::task::spawn_blocking(move || {
            checkouts.git(Some(&dir), &["reset", "-q", "--hard", &base])?;
            // Untracked files go; ignored ones (what setup built) stay.
            checkouts.git(Some(&dir), &["clean", "-q", "-f", "-d"])?;
            drop_bytecode(&checkouts, &dir)?;
            hand_over(&dir, uid, gid)
        })
        .await
        .map_err(internal)?
        .map_err(internal)?;
        self.refresh_diff(env, &live);
        let resets = live
            .resets
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .clone();
        for (name, container, argv) in resets {
            let c = capture(
                &self.runner.runtime,
                &container,
                &argv,
                None,
                Duration::from_secs(120),
                64 * 1024,
            )
            .await
            .map_err(internal)?;
            if c.exit_code != Some(0) {
                return Err(WorkspaceError::ServiceReset(format!(
                    "service `{name}`: its reset command failed (exit {:?}): {}",
                    c.exit_code,
                    c.stderr.trim()
                )));
            }
            live.log.line(
                crate::logs::LogStream::Engine,
                &format!("service `{name}`: reset to its snapshot"),
            );
        }
        Ok(live.snapshot())
    }
}

/// The note of a validate result whose tier (or the fast tier a full run
/// starts with) has no steps.
fn empty_tiers(steps: &Steps, tier: Tier) -> Option<String> {
    let mut empty = Vec::new();
    if steps.fast.is_empty() {
        empty.push(crate::plan::empty_tier_note("fast"));
    }
    if tier == Tier::Full && steps.full.is_empty() {
        empty.push(crate::plan::empty_tier_note("full"));
    }
    (!empty.is_empty()).then(|| empty.join("; "))
}

/// Numbers the private git indexes, so diffs never share one.
static INDEX_SERIAL: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);

/// A blocking job that stages the files in a private git index (the
/// repository's own index is left alone) and diffs them against the base.
fn diff_job(
    runner: &Runner,
    env: &Environment,
    live: &Live,
) -> impl FnOnce() -> Result<String, crate::checkout::CheckoutError> + Send + 'static {
    let base = live.snapshot().base_sha.unwrap_or_default();
    let (checkouts, path) = (runner.checkouts.clone(), env.checkout.path.clone());
    move || {
        let n = INDEX_SERIAL.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        let index = format!(".git/slipway-index-{}-{n}", std::process::id());
        let with_index = [("GIT_INDEX_FILE", index.as_str())];
        let result = checkouts
            .git_env(Some(&path), &with_index, &["add", "-A"])
            .and_then(|_| {
                checkouts.git_env(
                    Some(&path),
                    &with_index,
                    &["diff", "--cached", "--no-color", "--no-ext-diff", &base],
                )
            });
        let _ = std::fs::remove_file(path.join(&index));
        result.map(|d| if d.is_empty() { d } else { d + "\n" })
    }
}

/// `result` changed `files`: say so, one finding per file.
fn changed_files_found(result: &mut StepResult, files: Vec<String>) {
    for file in &files {
        result.findings.push(crate::job::FindingView {
            file: Some(file.clone()),
            line: None,
            column: None,
            severity: "error".into(),
            rule: Some("slipway/changed-files".into()),
            message: format!(
                "step `{}` changed this file while validating; the change was undone (validation judges the code as it is: run the tool in check mode, or apply its fix as an edit)",
                result.name
            ),
        });
    }
    result.changed_files = files;
}

/// Keep `diff` as the one of `generation`, unless a newer one began.
fn keep_diff(live: &Live, generation: u64, diff: &str) {
    if live.generation.load(std::sync::atomic::Ordering::SeqCst) == generation {
        *live.tree.lock().unwrap_or_else(|p| p.into_inner()) = Some((generation, diff.to_owned()));
    }
}

/// Python's bytecode cache trusts a source file's size and mtime in whole
/// seconds: a file edited back and forth within a second would run stale.
fn drop_bytecode(
    checkouts: &crate::checkout::Checkouts,
    dir: &Path,
) -> Result<(), crate::checkout::CheckoutError> {
    checkouts
        .git(Some(dir), &["clean", "-q", "-f", "-X", "--", "*.pyc"])
        .map(|_| ())
}

fn sha256_hex(bytes: &[u8]) -> String {
    use sha2::Digest;
    hex::encode(sha2::Sha256::digest(bytes))
}

/// The last `cap` bytes of `text` (on a character boundary), marked.
fn keep_end(text: String, cap: usize) -> String {
    if text.len() <= cap {
        return text;
    }
    let mut start = text.len() - cap;
    while !text.is_char_boundary(start) {
        start += 1;
    }
    format!("[… {start} bytes cut …]\n{}", &text[start..])
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn output_keeps_its_end() {
        assert_eq!(keep_end("short".into(), 10), "short");
        let cut = keep_end("0123456789abcdef".into(), 6);
        assert!(
            cut.ends_with("\nabcdef") && cut.contains("10 bytes cut"),
            "{cut}"
        );
    }
}

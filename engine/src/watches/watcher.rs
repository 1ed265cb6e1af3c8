//! The watcher: looks at watched repositories (on each watch's poll
//! interval, and at once when a signed webhook says so) and submits a job
//! for each new head of a followed ref.
//!
//! A look is one `git ls-remote` of the followed refs. Per ref it decides
//! one of: a baseline (the first look records heads without running
//! them), unchanged, a new head submitted, a new head waiting for the ref's
//! running job (the newest waits; the one it replaces is skipped), or a
//! deletion. Jobs carry the idempotency key `watch/<id>/<ref>/<sha>`, so a
//! commit is submitted once per watch whatever restarts in between. A look
//! that fails backs the poll off (doubling, at most an hour) with the
//! reason on the watch until one succeeds.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio_util::sync::CancellationToken;

use super::event::{self, HookEvent};
use super::record::SKIPPED_KEPT;
use super::secret::{self, SealingKey, SecretError};
use super::signature::{self, Headers};
use super::{Delivery, LABEL_REF, LABEL_WATCH, RefState, Watch, WatchSpec};
use crate::job::{JobId, Trigger, TriggerKind, now_ms};
use crate::queue::{JobStore, Scheduler, StoreError};

/// The longest a failing watch waits between polls.
const MAX_BACKOFF_MS: u64 = 3_600_000;

/// What a look decided for one ref.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Decision {
    /// The first look: the head is recorded, nothing runs.
    Baseline {
        /// The head.
        sha: String,
    },
    /// The head is the one last seen.
    Unchanged {
        /// The head.
        sha: String,
    },
    /// A job was submitted for the new head.
    Submitted {
        /// The new head.
        sha: String,
        /// Its job.
        job: JobId,
    },
    /// The commit had a job already (a repeated look, or after a restart).
    AlreadySubmitted {
        /// The head.
        sha: String,
        /// The job it had.
        job: JobId,
    },
    /// The ref's previous job still runs: this head runs when it ends.
    Waiting {
        /// The head that waits.
        sha: String,
        /// The job it waits for.
        behind: JobId,
    },
    /// The ref is gone.
    Deleted,
}

impl std::fmt::Display for Decision {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let short = |sha: &str| sha.chars().take(12).collect::<String>();
        match self {
            Decision::Baseline { sha } => write!(
                f,
                "baseline: {} is the head now; the next new commit runs",
                short(sha)
            ),
            Decision::Unchanged { sha } => write!(f, "unchanged: still {}", short(sha)),
            Decision::Submitted { sha, job } => {
                write!(f, "submitted job {job} for {}", short(sha))
            }
            Decision::AlreadySubmitted { sha, job } => {
                write!(f, "already submitted: job {job} is for {}", short(sha))
            }
            Decision::Waiting { sha, behind } => write!(
                f,
                "waiting: job {behind} still runs; {} runs when it ends",
                short(sha)
            ),
            Decision::Deleted => f.write_str("deleted: nothing to run"),
        }
    }
}

/// Why a watch operation failed.
#[derive(Debug, thiserror::Error)]
pub enum WatchError {
    /// No watch has this id.
    #[error("no watch `{0}`")]
    Unknown(String),
    /// The store failed.
    #[error(transparent)]
    Store(#[from] StoreError),
    /// A secret could not be made, sealed or opened.
    #[error(transparent)]
    Secret(#[from] SecretError),
    /// `git ls-remote` of the repository failed.
    #[error("looking at {repository}: {reason}")]
    Look {
        /// The watched repository.
        repository: String,
        /// git's words (unreachable, refused, timed out, ...).
        reason: String,
    },
    /// The watch's job template no longer makes a job spec.
    #[error("the watch's job template does not make a job: {0}")]
    Template(String),
}

/// How the watcher reaches git and the queue.
#[derive(Clone)]
pub struct WatcherSettings {
    /// Credentials for private repositories (as checkouts use them).
    pub credentials: crate::git_auth::GitCredentials,
    /// The longest one `ls-remote` may take.
    pub git_timeout: Duration,
}

/// Looks at watched repositories and submits their jobs.
pub struct Watcher {
    store: Arc<dyn JobStore>,
    scheduler: Arc<Scheduler>,
    key: SealingKey,
    settings: WatcherSettings,
    /// One look (or state change) at a time per watch.
    locks: Mutex<HashMap<String, Arc<tokio::sync::Mutex<()>>>>,
    /// Watches with a poll in flight, so the loop starts one at a time.
    polling: Arc<Mutex<HashSet<String>>>,
}

/// What a webhook delivery got: its HTTP status, the verdict, the job.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Answer {
    /// 202 when a job was submitted; 200 read; 400, 401, 404, 502 refused.
    pub status: u16,
    /// What became of it, in words (also kept on the delivery).
    pub verdict: String,
    /// The job submitted, if one was.
    pub job: Option<JobId>,
}

impl Watcher {
    /// A watcher over `store`, waking `scheduler` on each submit.
    pub fn new(
        store: Arc<dyn JobStore>,
        scheduler: Arc<Scheduler>,
        key: SealingKey,
        settings: WatcherSettings,
    ) -> Arc<Watcher> {
        Arc::new(Watcher {
            store,
            scheduler,
            key,
            settings,
            locks: Mutex::new(HashMap::new()),
            polling: Arc::new(Mutex::new(HashSet::new())),
        })
    }

    fn lock_of(&self, id: &str) -> Arc<tokio::sync::Mutex<()>> {
        self.locks
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .entry(id.to_owned())
            .or_default()
            .clone()
    }

    async fn load(&self, id: &str) -> Result<Watch, WatchError> {
        self.store
            .get_watch(id)
            .await?
            .ok_or_else(|| WatchError::Unknown(id.to_owned()))
    }

    /// Store a new watch with a fresh secret; the secret is returned once.
    pub async fn create(&self, spec: WatchSpec) -> Result<(Watch, String), WatchError> {
        let secret = secret::generate()?;
        let now = now_ms();
        let watch = Watch {
            id: new_id()?,
            spec,
            created_ms: now,
            updated_ms: now,
            paused: false,
            secret_sealed: self.key.seal(&secret)?,
            state: Default::default(),
        };
        self.store.put_watch(watch.clone()).await?;
        Ok((watch, secret))
    }

    /// Replace a watch's declaration; its state and secret stay (refs it no
    /// longer follows are forgotten at the next look).
    pub async fn update(&self, id: &str, spec: WatchSpec) -> Result<Watch, WatchError> {
        self.change(id, |w| {
            w.spec = spec;
            w.state.next_poll_ms = 0;
        })
        .await
    }

    /// Pause (no polls; deliveries start nothing) or resume.
    pub async fn set_paused(&self, id: &str, paused: bool) -> Result<Watch, WatchError> {
        self.change(id, |w| {
            w.paused = paused;
            w.state.next_poll_ms = 0;
        })
        .await
    }

    /// A new secret for the watch; the old one stops verifying at once.
    pub async fn rotate_secret(&self, id: &str) -> Result<String, WatchError> {
        let secret = secret::generate()?;
        let sealed = self.key.seal(&secret)?;
        self.change(id, |w| w.secret_sealed = sealed).await?;
        Ok(secret)
    }

    /// Remove a watch and its deliveries; its jobs stay.
    pub async fn delete(&self, id: &str) -> Result<bool, WatchError> {
        let lock = self.lock_of(id);
        let _one = lock.lock().await;
        Ok(self.store.delete_watch(id).await?)
    }

    async fn change(&self, id: &str, f: impl FnOnce(&mut Watch)) -> Result<Watch, WatchError> {
        let lock = self.lock_of(id);
        let _one = lock.lock().await;
        let mut watch = self.load(id).await?;
        f(&mut watch);
        watch.updated_ms = now_ms();
        self.store.put_watch(watch.clone()).await?;
        Ok(watch)
    }

    /// Ask the repository for the followed refs now and act on what changed;
    /// each followed ref's decision.
    pub async fn look(
        &self,
        id: &str,
        delivery: Option<&str>,
    ) -> Result<BTreeMap<String, Decision>, WatchError> {
        let lock = self.lock_of(id);
        let _one = lock.lock().await;
        let mut watch = self.load(id).await?;
        let prefix = if watch.spec.tag.is_some() {
            "refs/tags/"
        } else {
            "refs/heads/"
        };
        let (repository, settings) = (watch.spec.repository.clone(), self.settings.clone());
        let listed = tokio::task::spawn_blocking(move || {
            crate::checkout::list_refs(
                &repository,
                prefix,
                settings.git_timeout,
                &settings.credentials,
            )
        })
        .await
        .map_err(|e| e.to_string())
        .and_then(|r| r.map_err(|e| e.to_string()));
        let now = now_ms();
        watch.state.last_look_ms = Some(now);
        let heads = match listed {
            Ok(heads) => heads,
            Err(reason) => {
                watch.state.failures += 1;
                watch.state.error = Some(reason.clone());
                let interval = watch
                    .spec
                    .poll_interval()
                    .unwrap_or(60)
                    .saturating_mul(1000);
                let backoff = interval
                    .saturating_mul(1 << watch.state.failures.min(16))
                    .min(MAX_BACKOFF_MS);
                watch.state.next_poll_ms = now + backoff;
                self.store.put_watch(watch.clone()).await?;
                return Err(WatchError::Look {
                    repository: watch.spec.repository,
                    reason,
                });
            }
        };
        watch.state.failures = 0;
        watch.state.error = None;
        if let Some(s) = watch.spec.poll_interval() {
            // Up to a tenth more, so watches created together spread out.
            let jitter = fastrand::u64(0..=s * 100);
            watch.state.next_poll_ms = now
                .saturating_add(s.saturating_mul(1000))
                .saturating_add(jitter);
        }
        let first_look = !watch.state.looked;
        watch.state.looked = true;
        let followed: BTreeMap<String, String> = heads
            .into_iter()
            .filter(|(name, _)| watch.spec.follows(name))
            .collect();
        let mut decisions = BTreeMap::new();
        // Refs that went away.
        for (name, state) in watch.state.refs.iter_mut() {
            if !followed.contains_key(name) && state.head.is_some() {
                state.head = None;
                state.pending = None;
                decisions.insert(name.clone(), Decision::Deleted);
            }
        }
        for (name, sha) in followed {
            let state = watch.state.refs.entry(name.clone()).or_default();
            let decision = if first_look {
                state.head = Some(sha.clone());
                Decision::Baseline { sha }
            } else {
                state.head = Some(sha.clone());
                self.advance(&watch.id, &watch.spec, &name, state, delivery)
                    .await?
            };
            decisions.insert(name, decision);
        }
        self.store.put_watch(watch).await?;
        Ok(decisions)
    }

    /// Bring one ref's jobs up to its head: submit it, or queue it behind a
    /// job that still runs.
    async fn advance(
        &self,
        id: &str,
        spec: &WatchSpec,
        reference: &str,
        state: &mut RefState,
        delivery: Option<&str>,
    ) -> Result<Decision, WatchError> {
        let Some(head) = state.head.clone() else {
            return Ok(Decision::Deleted);
        };
        if let Some((sha, job)) = &state.submitted {
            if *sha == head {
                state.pending = None;
                return Ok(Decision::Unchanged { sha: head });
            }
            let running = self
                .store
                .get(*job)
                .await?
                .is_some_and(|r| !r.state.is_final());
            if running {
                if let Some(older) = state.pending.replace(head.clone())
                    && older != head
                {
                    state.skipped.push(older);
                    let excess = state.skipped.len().saturating_sub(SKIPPED_KEPT);
                    state.skipped.drain(..excess);
                }
                return Ok(Decision::Waiting {
                    sha: head,
                    behind: *job,
                });
            }
        }
        state.pending = None;
        let mut job = spec
            .job_for(&head)
            .map_err(|e| WatchError::Template(e.to_string()))?;
        job.labels.insert(LABEL_WATCH.into(), id.to_owned());
        job.labels.insert(LABEL_REF.into(), reference.to_owned());
        job.idempotency_key = Some(format!("watch/{id}/{reference}/{head}"));
        job.resolved_from = Some(reference.to_owned());
        job.trigger = Some(Trigger {
            kind: TriggerKind::Watch,
            watch: Some(id.to_owned()),
            delivery: delivery.map(str::to_owned),
        });
        let submitted = self.store.submit(job).await?;
        self.scheduler.wake();
        state.submitted = Some((head.clone(), submitted.record.id));
        Ok(if submitted.created {
            crate::metrics::Metrics::add(&self.scheduler.metrics().jobs_submitted, 1);
            Decision::Submitted {
                sha: head,
                job: submitted.record.id,
            }
        } else {
            Decision::AlreadySubmitted {
                sha: head,
                job: submitted.record.id,
            }
        })
    }

    /// Submit the waiting head of every ref whose job has ended (no look
    /// needed: the head is known).
    pub async fn advance_waiting(&self) -> Result<(), WatchError> {
        for watch in self.store.list_watches().await? {
            let waiting = watch.state.refs.values().any(|r| r.pending.is_some());
            if !waiting || watch.paused {
                continue;
            }
            let lock = self.lock_of(&watch.id);
            let _one = lock.lock().await;
            let Some(mut watch) = self.store.get_watch(&watch.id).await? else {
                continue;
            };
            let mut changed = false;
            let (id, spec) = (watch.id.clone(), watch.spec.clone());
            for (name, state) in watch.state.refs.iter_mut() {
                // A waiting head is the ref's head: the look that saw it set both.
                if state.pending.is_some()
                    && let Decision::Submitted { .. } | Decision::AlreadySubmitted { .. } =
                        self.advance(&id, &spec, name, state, None).await?
                {
                    changed = true;
                }
            }
            if changed {
                self.store.put_watch(watch).await?;
            }
        }
        Ok(())
    }

    /// A webhook delivery for watch `id`: verified, deduplicated, read, and
    /// (for a push of a followed ref) a look. Every delivery is recorded
    /// with its verdict, refused ones included.
    pub async fn deliver(
        &self,
        id: &str,
        headers: &(impl Headers + ?Sized),
        body: &[u8],
    ) -> Answer {
        let watch = match self.store.get_watch(id).await {
            Ok(Some(w)) => w,
            Ok(None) => {
                return Answer {
                    status: 404,
                    verdict: format!("rejected: no watch `{id}`"),
                    job: None,
                };
            }
            Err(e) => {
                return Answer {
                    status: 503,
                    verdict: format!("the store failed: {e}"),
                    job: None,
                };
            }
        };
        let mut delivery = Delivery {
            seq: 0,
            at_ms: now_ms(),
            forge: None,
            event: String::new(),
            reference: None,
            delivery_id: None,
            status: 0,
            verdict: String::new(),
        };
        let answer = self.judge(&watch, headers, body, &mut delivery).await;
        delivery.status = answer.status;
        delivery.verdict = answer.verdict.clone();
        if let Err(e) = self.store.add_delivery(id, delivery).await {
            tracing::warn!(watch = %id, error = %e, "a delivery was not recorded");
        }
        answer
    }

    async fn judge(
        &self,
        watch: &Watch,
        headers: &(impl Headers + ?Sized),
        body: &[u8],
        delivery: &mut Delivery,
    ) -> Answer {
        let answer = |status: u16, verdict: String| Answer {
            status,
            verdict,
            job: None,
        };
        let secret = match self.key.open(&watch.secret_sealed) {
            Ok(s) => s,
            Err(e) => return answer(500, format!("rejected: {e}")),
        };
        let now_s = (now_ms() / 1000) as i64;
        let verified =
            match signature::verify(headers, body, &secret, &watch.spec.accepted(), now_s) {
                Ok(v) => v,
                Err(e) => return answer(401, format!("rejected: {e}")),
            };
        delivery.forge = Some(verified.forge);
        delivery.event = verified.event.clone();
        delivery.delivery_id = verified.delivery.clone();
        if let Some(d) = &verified.delivery {
            let seen = self
                .store
                .list_deliveries(&watch.id)
                .await
                .unwrap_or_default()
                .iter()
                .any(|old| old.delivery_id.as_deref() == Some(d.as_str()) && old.status < 300);
            if seen {
                return answer(200, format!("ignored: duplicate delivery {d}"));
            }
        }
        let (reference, deleted) = match event::parse(verified.forge, &verified.event, body) {
            Err(e) => return answer(400, format!("rejected: {e}")),
            Ok(HookEvent::Ping) => return answer(200, "pong: the hook reaches this watch".into()),
            Ok(HookEvent::Other(name)) => {
                return answer(200, format!("ignored: `{name}` events start nothing"));
            }
            Ok(HookEvent::Push { reference, deleted }) => (reference, deleted),
        };
        delivery.reference = Some(reference.clone());
        if watch.paused {
            return answer(200, "ignored: the watch is paused".into());
        }
        if !watch.spec.follows(&reference) {
            let (kind, name) = match reference.strip_prefix("refs/tags/") {
                Some(tag) => ("tag", tag),
                None => ("branch", reference.trim_start_matches("refs/heads/")),
            };
            let wanted = watch.spec.ref_glob();
            return answer(
                200,
                format!(
                    "ignored: {kind} {name} does not match {}",
                    wanted
                        .trim_start_matches("refs/heads/")
                        .trim_start_matches("refs/tags/")
                ),
            );
        }
        match self.look(&watch.id, verified.delivery.as_deref()).await {
            Err(e) => answer(502, format!("failed: {e}")),
            Ok(decisions) => match decisions.get(&reference) {
                Some(Decision::Submitted { job, .. }) => Answer {
                    status: 202,
                    verdict: decisions[&reference].to_string(),
                    job: Some(*job),
                },
                Some(d) => answer(200, d.to_string()),
                None if deleted => answer(200, format!("ignored: {reference} was deleted")),
                None => answer(
                    200,
                    format!("ignored: the repository has no {reference} (yet)"),
                ),
            },
        }
    }

    /// Poll every due watch (each in a task of its own) and start waiting
    /// heads whose job ended, every second until `shutdown`.
    pub async fn run(self: Arc<Self>, shutdown: CancellationToken) {
        loop {
            tokio::select! {
                _ = tokio::time::sleep(Duration::from_secs(1)) => {}
                _ = shutdown.cancelled() => return,
            }
            if let Err(e) = self.advance_waiting().await {
                tracing::warn!(error = %e, "watches: starting waiting commits failed");
            }
            let watches = match self.store.list_watches().await {
                Ok(w) => w,
                Err(e) => {
                    tracing::warn!(error = %e, "watches: cannot list");
                    continue;
                }
            };
            let now = now_ms();
            for w in watches {
                let due =
                    !w.paused && w.spec.poll_interval().is_some() && w.state.next_poll_ms <= now;
                if !due
                    || !self
                        .polling
                        .lock()
                        .unwrap_or_else(|p| p.into_inner())
                        .insert(w.id.clone())
                {
                    continue;
                }
                let (this, polling) = (self.clone(), self.polling.clone());
                tokio::spawn(async move {
                    if let Err(e) = this.look(&w.id, None).await {
                        tracing::info!(watch = %w.id, error = %e, "watch: look failed");
                    }
                    polling
                        .lock()
                        .unwrap_or_else(|p| p.into_inner())
                        .remove(&w.id);
                });
            }
        }
    }
}

/// `w` and 12 random hex digits.
fn new_id() -> Result<String, SecretError> {
    Ok(format!("w{}", hex::encode(secret::random::<6>()?)))
}

//! The outbox's sender: posts each due message, signed, and records the
//! attempt. A 2xx answer delivers it; anything else (an error status, no
//! answer within 10 s, a refused connection) is retried after a doubling
//! backoff (1 s, 2 s, ... at most an hour) until a day has passed since
//! the event. Redirects are not followed: a receiver answers itself.
//! A job's messages to one receiver go in order: one waits while an
//! earlier one is still undelivered (a `pending` status must not land
//! after `success`).

use std::collections::{BTreeMap, HashSet};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use tokio_util::sync::CancellationToken;

use super::{Attempt, ForgeKind, MessageKind, OutboxEntry, RETRY_FOR_MS};
use crate::job::now_ms;
use crate::queue::JobStore;

/// The longest one attempt may take, connection included.
const ATTEMPT_TIMEOUT: Duration = Duration::from_secs(10);
/// Messages sent at once.
const PARALLEL: usize = 8;
/// The longest wait between attempts.
const MAX_BACKOFF_MS: u64 = 3_600_000;

/// Sends the outbox's due messages until shut down.
pub struct CallbackSender {
    store: Arc<dyn JobStore>,
    /// Where statuses link their job (`<advertise_url>/api/v1/jobs/<id>`).
    advertise_url: Option<String>,
    /// Callbacks, and forge APIs: each checked against the outbound
    /// policy at connect time (after DNS, on every hop).
    agent: ureq::Agent,
    forge_agent: ureq::Agent,
    in_flight: Arc<Mutex<HashSet<String>>>,
}

impl CallbackSender {
    /// A sender over `store`'s outbox; statuses link jobs under
    /// `advertise_url` when set; receivers and forges only where `outbound`
    /// allows.
    pub fn new(
        store: Arc<dyn JobStore>,
        advertise_url: Option<String>,
        outbound: &crate::outbound::OutboundPolicy,
    ) -> Arc<CallbackSender> {
        let config = || {
            ureq::Agent::config_builder()
                .http_status_as_error(false)
                .timeout_global(Some(ATTEMPT_TIMEOUT))
                .max_redirects(0)
                .user_agent("slipway-callbacks")
                .build()
        };
        use crate::outbound::Purpose;
        Arc::new(CallbackSender {
            store,
            advertise_url,
            agent: outbound.agent(config(), Purpose::Callback),
            forge_agent: outbound.agent(config(), Purpose::Forge),
            in_flight: Arc::new(Mutex::new(HashSet::new())),
        })
    }

    /// Every 250 ms, start the due messages not already in flight.
    pub async fn run(self: Arc<Self>, shutdown: CancellationToken) {
        loop {
            tokio::select! {
                _ = tokio::time::sleep(Duration::from_millis(250)) => {}
                _ = shutdown.cancelled() => return,
            }
            let due = match self.store.due_callbacks(now_ms(), 64).await {
                Ok(due) => due,
                Err(e) => {
                    tracing::warn!(error = %e, "callbacks: cannot read the outbox");
                    continue;
                }
            };
            for entry in due {
                if self.behind_an_earlier_one(&entry).await {
                    continue;
                }
                let mut flying = self.in_flight.lock().unwrap_or_else(|p| p.into_inner());
                if flying.len() >= PARALLEL || !flying.insert(entry.key.clone()) {
                    continue;
                }
                drop(flying);
                let this = self.clone();
                tokio::spawn(async move {
                    let key = entry.key.clone();
                    let sent = {
                        let this = this.clone();
                        tokio::task::spawn_blocking(move || this.attempt(entry)).await
                    };
                    match sent {
                        Ok(entry) => {
                            if let Err(e) = this.store.update_callback(entry).await {
                                tracing::warn!(callback = %key, error = %e, "callbacks: attempt not recorded");
                            }
                        }
                        Err(e) => {
                            tracing::warn!(callback = %key, error = %e, "callbacks: attempt failed")
                        }
                    }
                    this.in_flight
                        .lock()
                        .unwrap_or_else(|p| p.into_inner())
                        .remove(&key);
                });
            }
        }
    }

    /// Whether an earlier message of the same job to the same receiver is
    /// still undelivered.
    async fn behind_an_earlier_one(&self, entry: &OutboxEntry) -> bool {
        let slot = |key: &str| key.rsplit('/').next().map(str::to_owned);
        let all = match &entry.deployment {
            Some(name) => {
                self.store
                    .callbacks_with_prefix(&crate::deployments::announce::prefix(name))
                    .await
            }
            None => self.store.job_callbacks(entry.job).await,
        };
        let Ok(all) = all else {
            return false;
        };
        all.iter().any(|other| {
            other.key < entry.key
                && slot(&other.key) == slot(&entry.key)
                && other.delivered_ms.is_none()
                && other.gave_up.is_none()
        })
    }

    /// One try: sign, post, and put what happened in the entry.
    fn attempt(&self, mut entry: OutboxEntry) -> OutboxEntry {
        let started = Instant::now();
        let at_ms = now_ms();
        let outcome = self.post(&entry, at_ms);
        let took_ms = started.elapsed().as_millis() as u64;
        let (status, error) = match outcome {
            Ok(status) => (Some(status), None),
            Err(e) => (None, Some(e)),
        };
        entry.attempts.push(Attempt {
            at_ms,
            status,
            error: error.clone(),
            took_ms,
        });
        let now = now_ms();
        if status.is_some_and(|s| (200..300).contains(&s)) {
            entry.delivered_ms = Some(now);
            entry.next_attempt_ms = None;
        } else if now.saturating_sub(entry.created_ms) >= RETRY_FOR_MS {
            entry.gave_up = Some(format!(
                "no 2xx answer in {} attempts over a day; the last: {}",
                entry.attempts.len(),
                match (status, &error) {
                    (Some(s), _) => format!("HTTP {s}"),
                    (None, Some(e)) => e.clone(),
                    (None, None) => "no answer".into(),
                }
            ));
            entry.next_attempt_ms = None;
        } else {
            let n = entry.attempts.len().min(32) as u32 - 1;
            let backoff = 1000u64.saturating_mul(1 << n.min(30)).min(MAX_BACKOFF_MS);
            entry.next_attempt_ms = Some(now + backoff);
        }
        entry
    }

    /// The receiver's status, or why there was none.
    fn post(&self, entry: &OutboxEntry, at_ms: u64) -> Result<u16, String> {
        let secrets = BTreeMap::from([("callback".to_owned(), entry.secret.clone())]);
        let secret = crate::secrets::resolve(&secrets)
            .map_err(|e| format!("its secret: {e}"))?
            .pop()
            .map(|(_, v)| v)
            .unwrap_or_default();
        if let MessageKind::Status(forge) = entry.kind {
            return self.post_status(entry, forge, &secret);
        }
        let body = serde_json::to_vec(&entry.payload).map_err(|e| e.to_string())?;
        let timestamp = (at_ms / 1000) as i64;
        let signature =
            crate::watches::signature::standard_signature(&secret, &entry.key, timestamp, &body);
        self.agent
            .post(&entry.url)
            .header("Content-Type", "application/json")
            .header("webhook-id", &entry.key)
            .header("webhook-timestamp", timestamp.to_string())
            .header("webhook-signature", &signature)
            .send(&body[..])
            .map(|r| r.status().as_u16())
            .map_err(|e| e.to_string())
    }

    /// A commit status, authenticated as the forge wants its token.
    fn post_status(
        &self,
        entry: &OutboxEntry,
        forge: ForgeKind,
        token: &str,
    ) -> Result<u16, String> {
        let mut payload = entry.payload.clone();
        if let Some(base) = &self.advertise_url {
            payload["target_url"] = match &entry.deployment {
                Some(name) => format!("{base}/api/v1/deployments/{name}"),
                None => format!("{base}/api/v1/jobs/{}", entry.job),
            }
            .into();
        }
        let request = self
            .forge_agent
            .post(&entry.url)
            .header("Content-Type", "application/json")
            .header("Accept", "application/json");
        let request = match forge {
            ForgeKind::Github => request.header("Authorization", format!("Bearer {token}")),
            ForgeKind::Gitlab => request.header("PRIVATE-TOKEN", token),
            ForgeKind::Gitea => request.header("Authorization", format!("token {token}")),
        };
        request
            .send(payload.to_string())
            .map(|r| r.status().as_u16())
            .map_err(|e| e.to_string())
    }
}

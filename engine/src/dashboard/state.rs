//! What the dashboard keeps beside the API's state: whether its cookie
//! must be `Secure`, the plugin registry it lists, and a short history of
//! the queue's depth for the overview's chart. (Its sessions are in the
//! store: see `session`.)

use std::collections::VecDeque;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio_util::sync::CancellationToken;

use crate::job::{JobState, now_ms};
use crate::plugins::Registry;
use crate::queue::JobStore;

/// Samples of the queue kept for the chart (at [`SAMPLE_EVERY`], one hour).
pub const HISTORY_LEN: usize = 360;
/// How often the queue is sampled.
pub const SAMPLE_EVERY: Duration = Duration::from_secs(10);

/// The queue at one moment.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct QueueSample {
    /// When (Unix ms).
    pub at_ms: u64,
    /// Jobs waiting to run (queued or retrying), as `/metrics` counts them.
    pub waiting: u64,
    /// Jobs running.
    pub running: u64,
}

/// The dashboard's own state, shared by its handlers.
#[derive(Default)]
pub struct DashboardState {
    /// The session cookie carries `Secure` (serve terminates TLS).
    pub secure_cookie: bool,
    /// The plugins the engine found, for the plugins page; `None` outside
    /// `serve`.
    pub registry: Option<Arc<Registry>>,
    history: Mutex<VecDeque<QueueSample>>,
}

impl std::fmt::Debug for DashboardState {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("DashboardState")
            .field("secure_cookie", &self.secure_cookie)
            .field("registry", &self.registry.is_some())
            .finish_non_exhaustive()
    }
}

impl DashboardState {
    /// The state of `serve`'s dashboard: a `Secure` cookie when it
    /// terminates TLS, and the engine's plugin registry.
    pub fn new(secure_cookie: bool, registry: Option<Arc<Registry>>) -> DashboardState {
        DashboardState {
            secure_cookie,
            registry,
            ..DashboardState::default()
        }
    }

    /// Keep `sample`, dropping the oldest beyond [`HISTORY_LEN`].
    pub fn record(&self, sample: QueueSample) {
        let mut h = self.history.lock().unwrap_or_else(|p| p.into_inner());
        if h.len() >= HISTORY_LEN {
            h.pop_front();
        }
        h.push_back(sample);
    }

    /// The samples kept, oldest first.
    pub fn history(&self) -> Vec<QueueSample> {
        self.history
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .iter()
            .copied()
            .collect()
    }
}

/// The queue as the store counts it now.
pub async fn sample(store: &dyn JobStore) -> Option<QueueSample> {
    let counts = match store.counts().await {
        Ok(c) => c,
        Err(e) => {
            tracing::warn!(error = %e, "dashboard: counting jobs");
            return None;
        }
    };
    let n = |s: JobState| counts.get(&s).copied().unwrap_or(0);
    Some(QueueSample {
        at_ms: now_ms(),
        waiting: n(JobState::Queued) + n(JobState::Retrying),
        running: n(JobState::Running),
    })
}

/// Sample the queue every [`SAMPLE_EVERY`] until `shutdown`.
pub async fn sample_queue(
    dashboard: Arc<DashboardState>,
    store: Arc<dyn JobStore>,
    shutdown: CancellationToken,
) {
    let mut tick = tokio::time::interval(SAMPLE_EVERY);
    loop {
        tokio::select! {
            _ = shutdown.cancelled() => return,
            _ = tick.tick() => {}
        }
        if let Some(s) = sample(store.as_ref()).await {
            dashboard.record(s);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_history_keeps_the_newest_samples_in_order() {
        let d = DashboardState::default();
        for i in 0..(HISTORY_LEN as u64 + 5) {
            d.record(QueueSample {
                at_ms: i,
                waiting: i,
                running: 0,
            });
        }
        let h = d.history();
        assert_eq!(h.len(), HISTORY_LEN);
        assert_eq!(h[0].at_ms, 5);
        assert_eq!(h.last().unwrap().at_ms, HISTORY_LEN as u64 + 4);
    }
}

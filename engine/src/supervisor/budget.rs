//! A managed service's restart budget: restarts after failures within a
//! sliding window, and the doubling backoff before each.

use std::collections::VecDeque;
use std::time::{Duration, Instant};

use crate::service::RestartPolicy;

/// Restarts within a sliding window, and the backoff before the next one.
#[derive(Debug)]
pub struct RestartBudget {
    max: u32,
    window: Duration,
    first: Duration,
    cap: Duration,
    recent: VecDeque<Instant>,
}

impl RestartBudget {
    /// An empty budget under `policy`: its limit, window and backoff bounds.
    pub fn new(policy: &RestartPolicy) -> RestartBudget {
        RestartBudget {
            max: policy.max_restarts,
            window: Duration::from_secs(policy.window_s),
            first: Duration::from_millis(policy.backoff_ms),
            cap: Duration::from_millis(policy.max_backoff_ms),
            recent: VecDeque::new(),
        }
    }

    /// Count a restart at `now`; `None` when it would exceed the budget.
    pub fn record(&mut self, now: Instant) -> Option<Duration> {
        while let Some(t) = self.recent.front() {
            if now.duration_since(*t) > self.window {
                self.recent.pop_front();
            } else {
                break;
            }
        }
        if self.recent.len() as u32 >= self.max {
            return None;
        }
        self.recent.push_back(now);
        Some(self.backoff())
    }

    /// Backoff before the restart just recorded: doubling, capped.
    pub fn backoff(&self) -> Duration {
        let n = self.recent.len().saturating_sub(1).min(30) as u32;
        self.first.saturating_mul(1 << n).min(self.cap)
    }

    /// Forget past restarts: a restart a user asked for starts the budget over.
    pub fn reset(&mut self) {
        self.recent.clear();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn restarts_back_off_and_stop_at_the_budget() {
        let policy = RestartPolicy {
            max_restarts: 3,
            window_s: 60,
            backoff_ms: 100,
            max_backoff_ms: 250,
            ..RestartPolicy::default()
        };
        let mut b = RestartBudget::new(&policy);
        let t0 = Instant::now();
        assert_eq!(b.record(t0), Some(Duration::from_millis(100)));
        assert_eq!(b.record(t0), Some(Duration::from_millis(200)));
        assert_eq!(b.record(t0), Some(Duration::from_millis(250)), "capped");
        assert_eq!(
            b.record(t0),
            None,
            "the fourth within the window is refused"
        );
        let later = t0 + Duration::from_secs(61);
        assert_eq!(
            b.record(later),
            Some(Duration::from_millis(100)),
            "old restarts leave the window"
        );
        b.reset();
        assert_eq!(b.record(later), Some(Duration::from_millis(100)));
    }
}

//! Engine metrics: counters and fixed-bucket histograms kept with atomics,
//! rendered in the Prometheus text format by the API's `/metrics`.

use std::fmt::Write as _;
use std::sync::atomic::{AtomicU64, Ordering};

/// A histogram with fixed upper bounds (seconds), Prometheus-style.
pub struct Histogram {
    bounds: &'static [f64],
    buckets: Vec<AtomicU64>,
    count: AtomicU64,
    sum_micros: AtomicU64,
}

impl Histogram {
    /// An empty histogram with these bucket upper bounds, in seconds, ascending.
    pub fn new(bounds: &'static [f64]) -> Histogram {
        Histogram {
            bounds,
            buckets: bounds.iter().map(|_| AtomicU64::new(0)).collect(),
            count: AtomicU64::new(0),
            sum_micros: AtomicU64::new(0),
        }
    }

    /// Count one observation of `seconds` in every bucket whose bound it does
    /// not exceed (the buckets are cumulative).
    pub fn observe(&self, seconds: f64) {
        for (bound, bucket) in self.bounds.iter().zip(&self.buckets) {
            if seconds <= *bound {
                bucket.fetch_add(1, Ordering::Relaxed);
            }
        }
        self.count.fetch_add(1, Ordering::Relaxed);
        self.sum_micros
            .fetch_add((seconds * 1e6) as u64, Ordering::Relaxed);
    }

    /// Each bucket's upper bound (seconds) with its cumulative count, and
    /// the count of all observations (the `+Inf` bucket).
    pub fn buckets(&self) -> (Vec<(f64, u64)>, u64) {
        let buckets = self
            .bounds
            .iter()
            .zip(&self.buckets)
            .map(|(bound, n)| (*bound, n.load(Ordering::Relaxed)))
            .collect();
        (buckets, self.count.load(Ordering::Relaxed))
    }

    /// Write the histogram as metric `name` (`_bucket`, `_sum`, `_count`) with
    /// its `# HELP` and `# TYPE` lines.
    pub fn render(&self, out: &mut String, name: &str, help: &str) {
        let _ = writeln!(out, "# HELP {name} {help}");
        let _ = writeln!(out, "# TYPE {name} histogram");
        for (bound, bucket) in self.bounds.iter().zip(&self.buckets) {
            let _ = writeln!(
                out,
                "{name}_bucket{{le=\"{bound}\"}} {}",
                bucket.load(Ordering::Relaxed)
            );
        }
        let count = self.count.load(Ordering::Relaxed);
        let _ = writeln!(out, "{name}_bucket{{le=\"+Inf\"}} {count}");
        let _ = writeln!(
            out,
            "{name}_sum {}",
            self.sum_micros.load(Ordering::Relaxed) as f64 / 1e6
        );
        let _ = writeln!(out, "{name}_count {count}");
    }
}

const ATTEMPT_BOUNDS: &[f64] = &[0.01, 0.1, 1.0, 5.0, 15.0, 60.0, 300.0, 900.0, 3600.0];

/// Everything the engine counts.
pub struct Metrics {
    /// Jobs created by submit (the API or a watch); a repeated idempotency key
    /// is not counted.
    pub jobs_submitted: AtomicU64,
    /// Attempts handed to the executor.
    pub attempts_started: AtomicU64,
    /// Attempts that ended in `retrying` (an infrastructure failure).
    pub retries: AtomicU64,
    /// Running jobs whose lease expired (no heartbeat renewed it in time).
    pub lease_expiries: AtomicU64,
    /// Reports refused because their fence was stale.
    pub stale_reports: AtomicU64,
    /// Duration of job attempts in seconds, from lease to recorded outcome.
    pub attempt_duration: Histogram,
    /// Steps of jobs, as the runner reports them.
    pub step_duration: Histogram,
}

impl Default for Metrics {
    fn default() -> Self {
        Metrics {
            jobs_submitted: AtomicU64::new(0),
            attempts_started: AtomicU64::new(0),
            retries: AtomicU64::new(0),
            lease_expiries: AtomicU64::new(0),
            stale_reports: AtomicU64::new(0),
            attempt_duration: Histogram::new(ATTEMPT_BOUNDS),
            step_duration: Histogram::new(ATTEMPT_BOUNDS),
        }
    }
}

impl Metrics {
    /// Add `n` to `counter`; relaxed ordering is enough for a metric.
    pub fn add(counter: &AtomicU64, n: u64) {
        counter.fetch_add(n, Ordering::Relaxed);
    }

    /// Counters and histograms in the Prometheus text format.
    pub fn render(&self, out: &mut String) {
        for (name, help, value) in [
            (
                "slipway_jobs_submitted_total",
                "Jobs accepted by submit.",
                &self.jobs_submitted,
            ),
            (
                "slipway_attempts_started_total",
                "Attempts handed to the executor.",
                &self.attempts_started,
            ),
            (
                "slipway_retries_total",
                "Attempts that ended in an infrastructure failure and were scheduled again.",
                &self.retries,
            ),
            (
                "slipway_lease_expiries_total",
                "Running jobs whose lease expired.",
                &self.lease_expiries,
            ),
            (
                "slipway_stale_reports_total",
                "Reports refused because the attempt no longer held the lease.",
                &self.stale_reports,
            ),
        ] {
            let _ = writeln!(out, "# HELP {name} {help}");
            let _ = writeln!(out, "# TYPE {name} counter");
            let _ = writeln!(out, "{name} {}", value.load(Ordering::Relaxed));
        }
        self.attempt_duration.render(
            out,
            "slipway_attempt_duration_seconds",
            "Duration of job attempts, from lease to recorded outcome.",
        );
        self.step_duration.render(
            out,
            "slipway_step_duration_seconds",
            "Duration of job steps (setup and validation), each in the job container.",
        );
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn histogram_buckets_are_cumulative() {
        let h = Histogram::new(&[0.1, 1.0]);
        h.observe(0.05);
        h.observe(0.5);
        h.observe(5.0);
        let mut out = String::new();
        h.render(&mut out, "x", "help");
        assert!(out.contains("x_bucket{le=\"0.1\"} 1\n"), "{out}");
        assert_eq!(h.buckets(), (vec![(0.1, 1), (1.0, 2)], 3));
        assert!(out.contains("x_bucket{le=\"1\"} 2\n"), "{out}");
        assert!(
            out.contains("x_bucket{le=\"+Inf\"} 3\n")
                && out.contains("x_count 3\n")
                && out.contains("x_sum 5.55\n"),
            "{out}"
        );
    }
}

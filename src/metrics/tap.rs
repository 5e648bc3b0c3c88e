//! The one-shot run's view of the hot path: request latency and errors, lag
//! samples and lost probe events, gathered per sampling interval so a run can
//! chart them over time and judge them over the whole run (or one capacity
//! step) exactly, from HDR histograms rather than Prometheus buckets.
//!
//! The daemon attaches a tap only in one-shot mode; otherwise the hot path
//! pays one atomic load to find there is none. Recording takes a short
//! uncontended mutex (never across an `.await`); the sampler swaps the
//! interval's histogram for a pre-allocated spare, so neither side allocates.

use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use hdrhistogram::Histogram;
use parking_lot::Mutex;

use super::window::new_hist;

/// Latency values are recorded in microseconds (as the latency windows are).
const US: f64 = 1e6;

struct Interval {
    hist: Histogram<u32>,
    errors: u64,
}

/// One series (requests, or lag samples) of the tap.
struct Series {
    current: Mutex<Interval>,
    /// Swapped in at each `take`; only the sampler touches it.
    spare: Mutex<Histogram<u32>>,
}

impl Series {
    fn new() -> Self {
        Series {
            current: Mutex::new(Interval {
                hist: new_hist(),
                errors: 0,
            }),
            spare: Mutex::new(new_hist()),
        }
    }

    fn record(&self, value: Duration, error: bool) {
        let us = u64::try_from(value.as_micros()).unwrap_or(u64::MAX).max(1);
        let mut cur = self.current.lock();
        cur.hist.saturating_record(us);
        cur.errors += u64::from(error);
    }

    /// Moves the interval's data into `into` and starts a new interval.
    fn take(&self, into: &mut IntervalSeries) {
        let mut spare = self.spare.lock();
        spare.reset();
        let errors = {
            let mut cur = self.current.lock();
            std::mem::swap(&mut cur.hist, &mut *spare);
            std::mem::take(&mut cur.errors)
        };
        into.hist.reset();
        // Same bounds, no auto-resize: the addition cannot fail in practice;
        // a lost interval beats a panic if it somehow did.
        let _ = into.hist.add(&*spare);
        into.errors = errors;
    }
}

/// What one interval holds for one series.
#[derive(Clone)]
pub struct IntervalSeries {
    /// Values in microseconds.
    pub hist: Histogram<u32>,
    /// Requests whose outcome was an error (always 0 for lag samples).
    pub errors: u64,
}

impl Default for IntervalSeries {
    fn default() -> Self {
        IntervalSeries {
            hist: new_hist(),
            errors: 0,
        }
    }
}

impl std::fmt::Debug for IntervalSeries {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("IntervalSeries")
            .field("count", &self.hist.len())
            .field("errors", &self.errors)
            .finish()
    }
}

impl IntervalSeries {
    pub fn count(&self) -> u64 {
        self.hist.len()
    }

    /// The `q` quantile in seconds, `None` without data.
    pub fn quantile(&self, q: f64) -> Option<f64> {
        (!self.hist.is_empty()).then(|| self.hist.value_at_quantile(q) as f64 / US)
    }

    /// Values strictly above `limit`.
    pub fn count_above(&self, limit: Duration) -> u64 {
        let us = u64::try_from(limit.as_micros()).unwrap_or(u64::MAX);
        let at_or_below = self.hist.count_between(0, us);
        self.hist.len().saturating_sub(at_or_below)
    }

    /// Adds another interval's data (for run and phase totals).
    pub fn add(&mut self, other: &IntervalSeries) {
        let _ = self.hist.add(&other.hist);
        self.errors += other.errors;
    }

    pub fn reset(&mut self) {
        self.hist.reset();
        self.errors = 0;
    }
}

/// Everything the tap gathered in one interval.
#[derive(Debug, Clone, Default)]
pub struct IntervalData {
    /// Requests to the target's API (health checks excluded, as in the SLOs).
    pub requests: IntervalSeries,
    /// Projection lag samples (late ones included, as in the lag histogram).
    pub lag: IntervalSeries,
    /// Batch probes' full-visibility samples (every event of the batch
    /// visible), the Broadway batch latency.
    pub batch: IntervalSeries,
    /// Probe events declared lost in the interval.
    pub lost: u64,
    /// Probe events that showed up after being declared lost.
    pub late: u64,
}

/// Attached to [`super::Metrics`] and the lag metrics for a one-shot run.
pub struct RunTap {
    requests: Series,
    lag: Series,
    batch: Series,
    lost: AtomicU64,
    late: AtomicU64,
}

impl std::fmt::Debug for RunTap {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RunTap").finish_non_exhaustive()
    }
}

impl Default for RunTap {
    fn default() -> Self {
        RunTap {
            requests: Series::new(),
            lag: Series::new(),
            batch: Series::new(),
            lost: AtomicU64::new(0),
            late: AtomicU64::new(0),
        }
    }
}

impl RunTap {
    pub fn record_request(&self, latency: Duration, error: bool) {
        self.requests.record(latency, error);
    }

    pub fn record_lag(&self, lag: Duration) {
        self.lag.record(lag, false);
    }

    /// One batch probe's time until every event of its batch was visible.
    pub fn record_batch(&self, visible: Duration) {
        self.batch.record(visible, false);
    }

    pub fn lost(&self) {
        self.lost.fetch_add(1, Ordering::Relaxed);
    }

    pub fn late(&self) {
        self.late.fetch_add(1, Ordering::Relaxed);
    }

    /// Ends the current interval: its data goes into `into`, and recording
    /// continues into a fresh one.
    pub fn take(&self, into: &mut IntervalData) {
        self.requests.take(&mut into.requests);
        self.lag.take(&mut into.lag);
        self.batch.take(&mut into.batch);
        into.lost = self.lost.swap(0, Ordering::Relaxed);
        into.late = self.late.swap(0, Ordering::Relaxed);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ms(v: u64) -> Duration {
        Duration::from_millis(v)
    }

    #[test]
    fn intervals_are_disjoint_and_add_up() {
        let tap = RunTap::default();
        for v in 1..=100 {
            tap.record_request(ms(v), v % 10 == 0);
        }
        tap.record_lag(ms(40));
        tap.lost();
        let mut first = IntervalData::default();
        tap.take(&mut first);
        assert_eq!(first.requests.count(), 100);
        assert_eq!(first.requests.errors, 10);
        assert_eq!((first.lag.count(), first.lost, first.late), (1, 1, 0));
        let p95 = first.requests.quantile(0.95).unwrap();
        assert!((p95 - 0.095).abs() < 0.001, "{p95}");
        assert_eq!(first.requests.count_above(ms(90)), 10);

        tap.record_request(ms(500), false);
        tap.late();
        let mut second = IntervalData::default();
        tap.take(&mut second);
        assert_eq!(second.requests.count(), 1);
        assert_eq!(
            (second.requests.errors, second.lost, second.late),
            (0, 0, 1)
        );
        assert_eq!(second.lag.quantile(0.5), None);

        let mut total = first.requests.clone();
        total.add(&second.requests);
        assert_eq!((total.count(), total.errors), (101, 10));
        assert_eq!(total.count_above(ms(400)), 1);
    }
}

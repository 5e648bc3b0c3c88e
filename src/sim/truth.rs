//! Ground-truth metrics of the simulator (`GET /metrics`): what it accepted,
//! applied, dropped and duplicated, and the true projection lag. These are
//! the numbers a canary's own measurements are checked against.

use std::collections::VecDeque;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::Arc;

use parking_lot::Mutex;
use prometheus_client::encoding::{EncodeLabelSet, EncodeLabelValue};
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::Histogram;
use prometheus_client::registry::Registry;

/// Buckets of `rehab_sim_projection_lag_seconds`: fine from 1 ms to 30 s and
/// including the contract's SLO thresholds (0.1 s, 1 s) exactly.
pub const LAG_BUCKETS: [f64; 38] = [
    0.001, 0.002, 0.003, 0.004, 0.005, 0.006, 0.008, 0.010, 0.012, 0.015, 0.020, 0.025, 0.030,
    0.040, 0.050, 0.060, 0.070, 0.080, 0.090, 0.100, 0.120, 0.150, 0.200, 0.250, 0.300, 0.400,
    0.500, 0.750, 1.0, 1.5, 2.0, 3.0, 5.0, 7.5, 10.0, 15.0, 20.0, 30.0,
];

/// True lags kept verbatim (the most recent ones, with their event ids), so
/// tests can compare a canary's samples with the exact truth of the same
/// events: the histogram's buckets are too coarse for that (0.25 s, 0.3 s,
/// 0.4 s). About 500 KiB at most.
pub const RECENT_LAGS: usize = 10_000;

/// Buckets of `rehab_sim_batch_duration_seconds` (Broadway batch latency
/// thresholds 1 s and 2 s included).
pub const BATCH_BUCKETS: [f64; 20] = [
    0.0005, 0.001, 0.002, 0.005, 0.010, 0.020, 0.030, 0.040, 0.050, 0.060, 0.080, 0.100, 0.150,
    0.200, 0.300, 0.500, 1.0, 2.0, 5.0, 10.0,
];

/// Batches' truths kept verbatim (the most recent ones).
pub const RECENT_BATCHES: usize = 2_000;

/// One `/events/batch` request followed from its 201 until every event of
/// it that was queued is visible: the truth of a batch probe.
#[derive(Debug)]
pub struct BatchWatch {
    /// The `event_id` of the batch's first event, as the 201 lists it.
    first_id: Arc<str>,
    events: usize,
    dropped: usize,
    remaining: AtomicUsize,
    /// Smallest and largest lag so far, as `f64` bits.
    first: AtomicU64,
    last: AtomicU64,
}

impl BatchWatch {
    /// `queued` of the batch's `events` will be applied (the rest dropped).
    pub fn new(first_id: Arc<str>, events: usize, queued: usize) -> Arc<Self> {
        Arc::new(BatchWatch {
            first_id,
            events,
            dropped: events - queued,
            remaining: AtomicUsize::new(queued),
            first: AtomicU64::new(f64::INFINITY.to_bits()),
            last: AtomicU64::new(0f64.to_bits()),
        })
    }
}

/// What a batch's truth says once its last queued event is visible.
#[derive(Clone, Debug, PartialEq)]
pub struct BatchTruth {
    pub first_event_id: Arc<str>,
    pub events: usize,
    /// Events answered 201 but dropped: the batch never became whole.
    pub dropped: usize,
    /// Seconds from the 201 to the first event visible.
    pub first_visible: f64,
    /// Seconds from the 201 until every event was visible; `None` when
    /// some were dropped.
    pub visible: Option<f64>,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct RequestLabels {
    pub route: &'static str,
    pub status: u16,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct FaultLabels {
    pub fault: FaultKind,
}

/// Injected faults, as counted in `rehab_sim_faults_injected_total{fault}`.
#[derive(Clone, Copy, Debug, Hash, PartialEq, Eq, EncodeLabelValue)]
#[allow(non_camel_case_types)]
pub enum FaultKind {
    latency,
    response_delay,
    error,
    rate_limit,
    reset,
    garbage,
    huge_body,
    capacity,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct RejectLabels {
    pub reason: RejectReason,
}

/// Why an event was not accepted (`rehab_sim_events_rejected_total{reason}`).
#[derive(Clone, Copy, Debug, Hash, PartialEq, Eq, EncodeLabelValue)]
#[allow(non_camel_case_types)]
pub enum RejectReason {
    malformed,
    invalid,
    unknown_kind,
    too_large,
    queue_full,
    capacity,
}

/// All simulator metrics. Handles are cheap atomics; only `/metrics`
/// formats text.
pub struct Truth {
    registry: Registry,
    pub accepted: Counter,
    pub applied: Counter,
    pub dropped: Counter,
    pub duplicated: Counter,
    pub rejected: Family<RejectLabels, Counter>,
    pub lag: Histogram,
    pub queue_depth: Gauge,
    pub batch_duration: Histogram,
    pub batch_visible: Histogram,
    pub requests: Family<RequestLabels, Counter>,
    pub faults: Family<FaultLabels, Counter>,
    pub patients: Gauge,
    pub retained_events: Gauge,
    pub trimmed_events: Counter,
    pub evicted_patients: Counter,
    pub rebuild_dropped: Counter,
    recent_lags: Mutex<VecDeque<(Arc<str>, f64)>>,
    recent_batches: Mutex<VecDeque<BatchTruth>>,
}

impl Default for Truth {
    fn default() -> Self {
        Self::new()
    }
}

impl Truth {
    pub fn new() -> Self {
        let mut registry = Registry::default();
        let t = Truth {
            registry: Registry::default(),
            accepted: Counter::default(),
            applied: Counter::default(),
            dropped: Counter::default(),
            duplicated: Counter::default(),
            rejected: Family::default(),
            lag: Histogram::new(LAG_BUCKETS),
            queue_depth: Gauge::default(),
            batch_duration: Histogram::new(BATCH_BUCKETS),
            batch_visible: Histogram::new(LAG_BUCKETS),
            requests: Family::default(),
            faults: Family::default(),
            patients: Gauge::default(),
            retained_events: Gauge::default(),
            trimmed_events: Counter::default(),
            evicted_patients: Counter::default(),
            rebuild_dropped: Counter::default(),
            recent_lags: Mutex::new(VecDeque::new()),
            recent_batches: Mutex::new(VecDeque::new()),
        };
        registry.register(
            "rehab_sim_events_accepted",
            "Events answered 201 (including those later dropped by the drop_rate fault)",
            t.accepted.clone(),
        );
        registry.register(
            "rehab_sim_events_applied",
            "Accepted events applied to the store (each once; duplicates counted apart)",
            t.applied.clone(),
        );
        registry.register(
            "rehab_sim_events_dropped",
            "Events answered 201 but never applied (drop_rate fault)",
            t.dropped.clone(),
        );
        registry.register(
            "rehab_sim_events_duplicated",
            "Extra copies applied by the duplicate_rate fault",
            t.duplicated.clone(),
        );
        registry.register(
            "rehab_sim_events_rejected",
            "Events refused at ingestion, by reason",
            t.rejected.clone(),
        );
        registry.register(
            "rehab_sim_projection_lag_seconds",
            "True time from an event's 201 to the first instant reads can see it",
            t.lag.clone(),
        );
        registry.register(
            "rehab_sim_queue_depth",
            "Accepted events waiting to be applied",
            t.queue_depth.clone(),
        );
        registry.register(
            "rehab_sim_batch_duration_seconds",
            "Time from a batch's first event being taken off the queue to the batch applied",
            t.batch_duration.clone(),
        );
        registry.register(
            "rehab_sim_batch_visible_seconds",
            "True time from a /events/batch request's 201 until every event of it is visible \
             (batches with a dropped event never are, and are not counted)",
            t.batch_visible.clone(),
        );
        registry.register(
            "rehab_sim_requests",
            "Requests answered, by route name and status",
            t.requests.clone(),
        );
        registry.register(
            "rehab_sim_faults_injected",
            "Faults injected, by kind",
            t.faults.clone(),
        );
        registry.register(
            "rehab_sim_patients",
            "Patients held in memory",
            t.patients.clone(),
        );
        registry.register(
            "rehab_sim_retained_events",
            "Events held in patient streams",
            t.retained_events.clone(),
        );
        registry.register(
            "rehab_sim_events_trimmed",
            "Events removed from streams by the retention caps",
            t.trimmed_events.clone(),
        );
        registry.register(
            "rehab_sim_patients_evicted",
            "Idle patients evicted past retention.max_patients",
            t.evicted_patients.clone(),
        );
        registry.register(
            "rehab_sim_rebuild_dropped_events",
            "Old events left out of the stream read model by POST /sim/rebuild",
            t.rebuild_dropped.clone(),
        );
        Truth { registry, ..t }
    }

    /// Observes one event's true projection lag (seconds), in the histogram
    /// and in the bounded record of recent lags.
    pub fn observe_lag(&self, event_id: &Arc<str>, lag: f64) {
        self.lag.observe(lag);
        let mut recent = self.recent_lags.lock();
        if recent.len() == RECENT_LAGS {
            recent.pop_front();
        }
        recent.push_back((event_id.clone(), lag));
    }

    /// One event of `batch` became visible `lag` seconds after its 201.
    pub fn batch_event_visible(&self, batch: &BatchWatch, lag: f64) {
        let bits = lag.to_bits();
        // Non-negative floats order as their bits do.
        batch.first.fetch_min(bits, Ordering::Relaxed);
        batch.last.fetch_max(bits, Ordering::Relaxed);
        if batch.remaining.fetch_sub(1, Ordering::AcqRel) == 1 {
            self.batch_done(batch);
        }
    }

    /// Records a batch whose queued events are all visible (or that had
    /// none to wait for).
    pub fn batch_done(&self, batch: &BatchWatch) {
        let first = f64::from_bits(batch.first.load(Ordering::Acquire));
        let last = f64::from_bits(batch.last.load(Ordering::Acquire));
        let visible = (batch.dropped == 0).then_some(last);
        if let Some(v) = visible {
            self.batch_visible.observe(v);
        }
        let mut recent = self.recent_batches.lock();
        if recent.len() == RECENT_BATCHES {
            recent.pop_front();
        }
        recent.push_back(BatchTruth {
            first_event_id: batch.first_id.clone(),
            events: batch.events,
            dropped: batch.dropped,
            first_visible: first,
            visible,
        });
    }

    /// The most recent batches' truths, oldest first.
    pub fn recent_batches(&self) -> Vec<BatchTruth> {
        self.recent_batches.lock().iter().cloned().collect()
    }

    /// The most recent true lags, oldest first (at most [`RECENT_LAGS`]).
    pub fn recent_lags(&self) -> Vec<f64> {
        self.recent_lags.lock().iter().map(|(_, l)| *l).collect()
    }

    /// The most recent true lags by event id, oldest first.
    pub fn recent_lags_by_id(&self) -> Vec<(Arc<str>, f64)> {
        self.recent_lags.lock().iter().cloned().collect()
    }

    pub fn fault(&self, fault: FaultKind) {
        self.faults.get_or_create(&FaultLabels { fault }).inc();
    }

    pub fn reject(&self, reason: RejectReason) {
        self.rejected.get_or_create(&RejectLabels { reason }).inc();
    }

    pub fn request(&self, route: &'static str, status: u16) {
        self.requests
            .get_or_create(&RequestLabels { route, status })
            .inc();
    }

    /// OpenMetrics text of every metric.
    pub fn encode(&self) -> String {
        let mut out = String::with_capacity(16 * 1024);
        // Writing into a String cannot fail.
        let _ = prometheus_client::encoding::text::encode(&mut out, &self.registry);
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_are_exported() {
        let t = Truth::new();
        t.request("events_create", 201);
        t.fault(FaultKind::reset);
        t.reject(RejectReason::queue_full);
        let text = t.encode();
        for name in [
            "rehab_sim_events_accepted_total",
            "rehab_sim_events_applied_total",
            "rehab_sim_events_dropped_total",
            "rehab_sim_events_duplicated_total",
            "rehab_sim_projection_lag_seconds_bucket{le=\"0.001\"}",
            "rehab_sim_projection_lag_seconds_bucket{le=\"30.0\"}",
            "rehab_sim_queue_depth",
            "rehab_sim_batch_duration_seconds_bucket",
            "rehab_sim_requests_total{route=\"events_create\",status=\"201\"} 1",
            "rehab_sim_faults_injected_total{fault=\"reset\"} 1",
            "rehab_sim_events_rejected_total{reason=\"queue_full\"} 1",
        ] {
            assert!(text.contains(name), "missing {name} in\n{text}");
        }
    }

    #[test]
    fn a_batch_is_whole_when_its_last_queued_event_is_visible() {
        let t = Truth::new();
        let b = BatchWatch::new("e1".into(), 3, 3);
        t.batch_event_visible(&b, 0.05);
        t.batch_event_visible(&b, 0.02);
        assert!(t.recent_batches().is_empty());
        t.batch_event_visible(&b, 0.04);
        let r = &t.recent_batches()[0];
        assert_eq!((r.first_visible, r.visible), (0.02, Some(0.05)));
        // One of three dropped: never whole, its first event still timed.
        let d = BatchWatch::new("e2".into(), 3, 2);
        t.batch_event_visible(&d, 0.03);
        t.batch_event_visible(&d, 0.03);
        let r = &t.recent_batches()[1];
        assert_eq!((r.dropped, r.visible, r.first_visible), (1, None, 0.03));
        assert!(t
            .encode()
            .contains("rehab_sim_batch_visible_seconds_count 1"));
    }

    #[test]
    fn lag_buckets_are_sorted_and_include_slos() {
        assert!(LAG_BUCKETS.windows(2).all(|w| w[0] < w[1]));
        assert!(LAG_BUCKETS.contains(&0.1) && LAG_BUCKETS.contains(&1.0));
        assert_eq!(LAG_BUCKETS[0], 0.001);
        assert_eq!(LAG_BUCKETS[LAG_BUCKETS.len() - 1], 30.0);
    }
}

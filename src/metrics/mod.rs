//! Metrics: every metric family of the daemon, its name and help text in one
//! place, the cached handles the hot path records into, and the OpenMetrics
//! encoding and status snapshot read by the admin server.
//!
//! The hot path (`record_*`, `event_*`, `in_flight`) touches only handles that
//! were resolved when [`Metrics::new`] ran: no label hashing, formatting or
//! allocation for any known label value. The latency windows are rotated by a
//! timer ([`Metrics::rotate_windows`]), never by requests.
//!
//! Metric names are a contract (dashboards and alerts depend on them); they are
//! registered with their full `rehab_canary_` names, and counters are
//! registered without `_total` because the OpenMetrics encoder appends it.

pub mod backpressure;
mod connections;
pub mod exposition;
mod failure_log;
pub mod histogram;
mod ops;
mod process;
mod rate;
mod register;
pub mod tap;
pub mod target_detail;
pub mod window;

use std::borrow::Cow;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, OnceLock};
use std::time::{Duration, Instant};

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::Histogram;
use serde::Serialize;

use crate::api::{Endpoint, EventKind};
use crate::client::trace::TraceId;
use crate::client::Outcome;
pub use exposition::{Exposition, Format};
pub use failure_log::FailureLog;
use histogram::{ExemplarIds, TracedFamily, TracedHistogram};
use process::ProcessCollector;
use rate::RateWindow;
pub(crate) use register::{registered, series};
use tap::RunTap;
use window::{LatencyWindows, WindowSummaries, SLOTS, SLOT_PERIOD};

pub use connections::{ConnectResult, ConnectionMetrics, OpenGuard};
pub use ops::{AuthFailure, OpsMetrics, TRAFFIC_CLASSES};
pub use window::SLOT_PERIOD as WINDOW_ROTATE_EVERY;

/// Build metadata exported as `rehab_canary_build_info{version,revision} 1`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct BuildInfo {
    pub version: &'static str,
    pub revision: &'static str,
}

/// Why a scheduled iteration was not sent.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum DropReason {
    /// The `max_in_flight` bound was full at the scheduled instant.
    MaxInFlight,
    /// A circuit breaker was open.
    CircuitOpen,
    /// Traffic is paused by an operator.
    Paused,
    /// A client-side rate limit refused it.
    RateLimited,
}

impl DropReason {
    pub const ALL: [DropReason; 4] = [
        DropReason::MaxInFlight,
        DropReason::CircuitOpen,
        DropReason::Paused,
        DropReason::RateLimited,
    ];

    /// The `reason` label value.
    pub const fn as_str(self) -> &'static str {
        match self {
            DropReason::MaxInFlight => "max_in_flight",
            DropReason::CircuitOpen => "circuit_open",
            DropReason::Paused => "paused",
            DropReason::RateLimited => "rate_limited",
        }
    }

    pub const fn index(self) -> usize {
        self as usize
    }
}

pub use crate::api::DURATION_BUCKETS;

/// Buckets of `rehab_canary_schedule_delay_seconds`: fine at the low end, where
/// a healthy scheduler lives (the benchmark goal is p99 < 1 ms).
pub const SCHEDULE_DELAY_BUCKETS: [f64; 13] = [
    0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0,
];

/// Status codes with a cached counter handle per endpoint (plus the three
/// transport outcomes after them). Codes outside this list still work; they go
/// through the family's label map on each request, which is fine for rare codes.
const CACHED_CODES: [u16; 17] = [
    200, 201, 202, 204, 400, 401, 403, 404, 408, 409, 413, 422, 429, 500, 502, 503, 504,
];
const N_CACHED: usize = CACHED_CODES.len() + 5;
/// Label values of the cached statuses, in cache-index order.
const CACHED_LABELS: [&str; N_CACHED] = [
    "200",
    "201",
    "202",
    "204",
    "400",
    "401",
    "403",
    "404",
    "408",
    "409",
    "413",
    "422",
    "429",
    "500",
    "502",
    "503",
    "504",
    "timeout",
    "connect_error",
    "io_error",
    "tls_error",
    "body_too_large",
];

/// Failure statuses pre-created at zero for every endpoint, so `rate()` and
/// alerts work before the first failure. With the success status that is
/// 7 × 13 = 91 series at start, under the ~100 per family budget.
const PRECREATED_FAILURES: [Outcome; 6] = [
    Outcome::Status(429),
    Outcome::Status(500),
    Outcome::Status(503),
    Outcome::Timeout,
    Outcome::ConnectError,
    Outcome::IoError,
];

/// Cache slot of an outcome, if it has one.
const fn cache_index(outcome: Outcome) -> Option<usize> {
    Some(match outcome {
        Outcome::Status(code) => {
            let mut i = 0;
            while i < CACHED_CODES.len() {
                if CACHED_CODES[i] == code {
                    return Some(i);
                }
                i += 1;
            }
            return None;
        }
        Outcome::Timeout => CACHED_CODES.len(),
        Outcome::ConnectError => CACHED_CODES.len() + 1,
        Outcome::IoError => CACHED_CODES.len() + 2,
        Outcome::TlsError => CACHED_CODES.len() + 3,
        Outcome::BodyTooLarge => CACHED_CODES.len() + 4,
    })
}

/// The `status` label value of an outcome; allocates only for uncached codes.
fn status_label(outcome: Outcome) -> Cow<'static, str> {
    match (cache_index(outcome), outcome) {
        (Some(k), _) => Cow::Borrowed(CACHED_LABELS[k]),
        (None, Outcome::Status(code)) => Cow::Owned(code.to_string()),
        // Transport outcomes are always cached; keep the match total anyway.
        (None, Outcome::Timeout) => Cow::Borrowed("timeout"),
        (None, Outcome::ConnectError) => Cow::Borrowed("connect_error"),
        (None, Outcome::IoError) => Cow::Borrowed("io_error"),
        (None, Outcome::TlsError) => Cow::Borrowed("tls_error"),
        (None, Outcome::BodyTooLarge) => Cow::Borrowed("body_too_large"),
    }
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct RequestLabels {
    endpoint: &'static str,
    status: Cow<'static, str>,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct KindLabels {
    kind: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct ReasonLabels {
    reason: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct BuildLabels {
    version: &'static str,
    revision: &'static str,
}

fn duration_histogram() -> TracedHistogram {
    TracedHistogram::new(&DURATION_BUCKETS)
}

const N_ENDPOINTS: usize = Endpoint::ALL.len();
const N_KINDS: usize = EventKind::ALL.len();

/// Counts one unit in an in-flight gauge for as long as it lives. It owns a
/// handle to the gauge (an `Arc` inside), so it is `'static` and can live
/// across `.await` in a spawned task, and an abort still decrements.
#[derive(Debug)]
#[must_use = "the work counts as in flight only while the guard lives"]
pub struct InFlightGuard {
    gauge: Gauge,
}

impl InFlightGuard {
    pub fn enter(gauge: &Gauge) -> Self {
        gauge.inc();
        InFlightGuard {
            gauge: gauge.clone(),
        }
    }
}

impl Drop for InFlightGuard {
    fn drop(&mut self) {
        self.gauge.dec();
    }
}

/// Achieved event rates over the window.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct AchievedRates {
    /// Events POSTed per second.
    pub sent: f64,
    /// Events the target accepted per second.
    pub accepted: f64,
}

/// One endpoint's view over the window. Latencies are in seconds, `None` (JSON
/// `null`) when the endpoint had no request in the window.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct EndpointSnapshot {
    pub name: &'static str,
    pub requests: u64,
    pub errors: u64,
    pub p50: Option<f64>,
    pub p95: Option<f64>,
    pub p99: Option<f64>,
}

/// What the daemon sees right now, for `/status` and the landing page.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct Snapshot {
    /// Nominal span of the window, in seconds (the actual span is between
    /// `window_seconds - rotation period` and `window_seconds`).
    pub window_seconds: f64,
    pub target_events_per_second: f64,
    pub achieved_events_per_second: AchievedRates,
    pub burst_active: bool,
    pub in_flight: i64,
    /// Every endpoint, in `Endpoint::ALL` order.
    pub endpoints: Vec<EndpointSnapshot>,
}

/// Every metric family of the daemon, with cached handles for the hot path.
pub struct Metrics {
    exposition: Exposition,
    /// `requests[endpoint][cache_index]`; pre-created series are filled in
    /// `new`, other cached codes on first occurrence.
    requests_cache: [[OnceLock<Counter>; N_CACHED]; N_ENDPOINTS],
    requests: Family<RequestLabels, Counter>,
    durations: [TracedHistogram; N_ENDPOINTS],
    events_sent: [Counter; N_KINDS],
    events_accepted: [Counter; N_KINDS],
    dropped: [Counter; DropReason::ALL.len()],
    schedule_delay: Histogram,
    target_rate: Gauge<f64, AtomicU64>,
    burst_active: Gauge,
    in_flight: Gauge,
    windows: Arc<LatencyWindows>,
    sent_rate: RateWindow,
    accepted_rate: RateWindow,
    /// Size of the last exposition, to allocate the next one in one go.
    last_encoded_len: AtomicUsize,
    /// Failed requests logged, one per second at most.
    failure_log: FailureLog,
    /// Set only in a one-shot run (`run --profile`).
    tap: OnceLock<Arc<RunTap>>,
    /// The canary's own health: reloads, auth, circuit, target up, pause.
    pub ops: OpsMetrics,
    /// The traffic path's connections to the target.
    pub connections: ConnectionMetrics,
    /// 429, 503 and Retry-After waits, by endpoint.
    pub backpressure: backpressure::Backpressure,
    /// The service's own numbers from its detail route.
    pub target_detail: target_detail::TargetDetail,
}

impl std::fmt::Debug for Metrics {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Metrics").finish_non_exhaustive()
    }
}

impl Metrics {
    /// Registers every family and pre-creates the known series at zero.
    pub fn new(build: BuildInfo) -> Self {
        let mut exposition = Exposition::default();
        let registry = &mut exposition.registry;

        // `Registry::register` appends a '.' to help texts, hence none here.
        let requests = registered(
            registry,
            "rehab_canary_requests",
            "HTTP requests sent to the target, by endpoint and status (HTTP code, or \
             timeout / connect_error / io_error)",
            Family::<RequestLabels, Counter>::default(),
        );
        let requests_cache: [[OnceLock<Counter>; N_CACHED]; N_ENDPOINTS] =
            std::array::from_fn(|_| std::array::from_fn(|_| OnceLock::new()));
        for ep in Endpoint::ALL {
            let success = Outcome::Status(ep.success_status());
            for outcome in std::iter::once(success).chain(PRECREATED_FAILURES) {
                let counter = requests.get_or_create_owned(&RequestLabels {
                    endpoint: ep.as_str(),
                    status: status_label(outcome),
                });
                if let Some(k) = cache_index(outcome) {
                    let _ = requests_cache[ep.index()][k].set(counter);
                }
            }
        }

        let duration_family = TracedFamily::new(
            "rehab_canary_request_duration_seconds",
            "Request latency per endpoint, measured from the intended send time (so a late \
             scheduler shows up here too), every outcome included. Classic buckets and a native \
             histogram (schema 3); exemplar: the request's trace id",
            "endpoint",
            Endpoint::ALL.iter().map(|e| e.as_str()).collect(),
            duration_histogram,
        );
        let durations: [TracedHistogram; N_ENDPOINTS] =
            std::array::from_fn(|i| duration_family.histograms[i].clone());

        let kinds = EventKind::ALL.map(|k| KindLabels { kind: k.as_str() });
        let events_sent = series(
            registry,
            "rehab_canary_events_sent",
            "Events POSTed to the target, by event kind",
            kinds.clone(),
        );
        let events_accepted = series(
            registry,
            "rehab_canary_events_accepted",
            "Events the target accepted (2xx), by event kind",
            kinds,
        );
        let dropped = series(
            registry,
            "rehab_canary_iterations_dropped",
            "Scheduled iterations that were not sent, by reason (max_in_flight, circuit_open, \
             paused, rate_limited)",
            DropReason::ALL.map(|r| ReasonLabels { reason: r.as_str() }),
        );
        let schedule_delay = registered(
            registry,
            "rehab_canary_schedule_delay_seconds",
            "How late requests left compared with their intended send time",
            Histogram::new(SCHEDULE_DELAY_BUCKETS),
        );
        let target_rate = registered(
            registry,
            "rehab_canary_target_events_per_second",
            "Current target event rate, bursts and ramps included",
            Gauge::<f64, AtomicU64>::default(),
        );
        let burst_active = registered(
            registry,
            "rehab_canary_burst_active",
            "1 while a traffic burst is in progress, else 0",
            Gauge::default(),
        );
        let in_flight = registered(
            registry,
            "rehab_canary_in_flight_requests",
            "Requests sent and not yet answered",
            Gauge::default(),
        );

        let summaries = WindowSummaries::new(
            "rehab_canary_request_latency_window_seconds",
            "Request latency per endpoint: quantiles over the last minute, from rotating HDR \
             histograms (latency measured from the intended send time; quantiles absent when \
             the endpoint had no request in the window), count and sum since start",
            "endpoint",
            Endpoint::ALL.iter().map(|e| e.as_str()).collect(),
        );
        let windows = summaries.windows.clone();

        // A gauge at 1 rather than an OpenMetrics `info` metric: this is the
        // `*_build_info` shape every Prometheus client and dashboard knows.
        let build_family = registered(
            registry,
            "rehab_canary_build_info",
            "Build metadata; the value is always 1",
            Family::<BuildLabels, Gauge>::default(),
        );
        build_family
            .get_or_create(&BuildLabels {
                version: build.version,
                revision: build.revision,
            })
            .set(1);

        registry.register_collector(Box::new(ProcessCollector::new()));
        let ops = OpsMetrics::register(registry);
        let connections = ConnectionMetrics::register(registry);
        let backpressure = backpressure::Backpressure::register(registry);
        let target_detail = target_detail::TargetDetail::register(registry);
        exposition.add_histograms(duration_family);
        exposition.add_summaries(summaries);

        let now = Instant::now();
        Metrics {
            exposition,
            requests_cache,
            requests,
            durations,
            events_sent,
            events_accepted,
            dropped,
            schedule_delay,
            target_rate,
            burst_active,
            in_flight,
            windows,
            sent_rate: RateWindow::new(now, 0),
            accepted_rate: RateWindow::new(now, 0),
            last_encoded_len: AtomicUsize::new(8 * 1024),
            failure_log: FailureLog::default(),
            tap: OnceLock::new(),
            ops,
            connections,
            backpressure,
            target_detail,
        }
    }

    /// For modules that register their own families (the lag probes) before
    /// the `Metrics` is shared behind an `Arc`.
    pub fn exposition_mut(&mut self) -> &mut Exposition {
        &mut self.exposition
    }

    /// Records one request: `requests_total`, the duration histogram (the
    /// trace id as its exemplar), and the latency window with its error
    /// count. A failed request is logged with its trace id, at most once a
    /// second.
    pub fn record_request(
        &self,
        ep: Endpoint,
        outcome: Outcome,
        latency: Duration,
        trace: TraceId,
    ) {
        let i = ep.index();
        match cache_index(outcome) {
            Some(k) => self.requests_cache[i][k]
                .get_or_init(|| {
                    self.requests.get_or_create_owned(&RequestLabels {
                        endpoint: ep.as_str(),
                        status: Cow::Borrowed(CACHED_LABELS[k]),
                    })
                })
                .inc(),
            // A code outside the cache: bounded by HTTP itself (100..=999).
            None => self
                .requests
                .get_or_create(&RequestLabels {
                    endpoint: ep.as_str(),
                    status: status_label(outcome),
                })
                .inc(),
        };
        let ids = (!trace.is_none()).then_some(ExemplarIds { trace, event: None });
        self.durations[i].observe(latency.as_secs_f64(), ids);
        self.windows.record(i, latency, outcome.is_error());
        if outcome.is_error() {
            self.failure_log
                .failed(ep.as_str(), &status_label(outcome), latency, trace);
        }
        if let Some(tap) = self.tap.get() {
            if ep != Endpoint::Health {
                tap.record_request(latency, outcome.is_error());
            }
        }
    }

    /// Feeds a one-shot run's tap from now on (a second tap is ignored).
    pub fn attach_tap(&self, tap: Arc<RunTap>) {
        let _ = self.tap.set(tap);
    }

    /// The current target rate and whether a burst is on, as the scheduler
    /// last set them.
    pub fn target_state(&self) -> (f64, bool) {
        (self.target_rate.get(), self.burst_active.get() != 0)
    }

    /// How late a request left compared with its intended send time.
    pub fn record_schedule_delay(&self, d: Duration) {
        self.schedule_delay.observe(d.as_secs_f64());
    }

    pub fn event_sent(&self, kind: EventKind) {
        self.events_sent[kind.index()].inc();
    }

    pub fn event_accepted(&self, kind: EventKind) {
        self.events_accepted[kind.index()].inc();
    }

    /// `n` events of `kind` POSTed at once (a batch).
    pub fn events_sent(&self, kind: EventKind, n: u64) {
        self.events_sent[kind.index()].inc_by(n);
    }

    pub fn events_accepted(&self, kind: EventKind, n: u64) {
        self.events_accepted[kind.index()].inc_by(n);
    }

    pub fn iteration_dropped(&self, reason: DropReason) {
        self.dropped[reason.index()].inc();
    }

    pub fn iterations_dropped(&self, reason: DropReason, n: u64) {
        self.dropped[reason.index()].inc_by(n);
    }

    pub fn set_target_rate(&self, events_per_second: f64) {
        self.target_rate.set(events_per_second);
    }

    pub fn set_burst_active(&self, active: bool) {
        self.burst_active.set(i64::from(active));
    }

    /// Marks one request in flight until the returned guard is dropped. The
    /// guard is `'static`, so it can move into a spawned task.
    pub fn in_flight(&self) -> InFlightGuard {
        InFlightGuard::enter(&self.in_flight)
    }

    /// Advances the one-minute windows by one slot. Call every
    /// [`WINDOW_ROTATE_EVERY`] from a timer.
    pub fn rotate_windows(&self) {
        self.rotate_windows_at(Instant::now());
    }

    /// [`Metrics::rotate_windows`], handing each endpoint's finished slot to
    /// `f` (endpoint index, histogram, requests, errors).
    pub fn rotate_windows_with(
        &self,
        f: impl FnMut(usize, &hdrhistogram::Histogram<u32>, u64, u64),
    ) {
        self.windows.rotate_with(f);
        self.mark_rates(Instant::now());
    }

    fn rotate_windows_at(&self, now: Instant) {
        self.windows.rotate();
        self.mark_rates(now);
    }

    fn mark_rates(&self, now: Instant) {
        self.sent_rate.mark(now, sum(&self.events_sent));
        self.accepted_rate.mark(now, sum(&self.events_accepted));
    }

    /// The exposition in `format`. Window quantiles and process metrics
    /// are computed during the encoding.
    pub fn encode_as(&self, format: Format) -> Vec<u8> {
        let out = self
            .exposition
            .encode(format, self.last_encoded_len.load(Ordering::Relaxed) + 1024);
        self.last_encoded_len.store(out.len(), Ordering::Relaxed);
        out
    }

    /// The OpenMetrics text exposition, exemplars and `# EOF` included.
    pub fn encode(&self) -> String {
        String::from_utf8(self.encode_as(Format::OpenMetrics)).unwrap_or_default()
    }

    /// The current state for `/status` and the landing page.
    /// Events sent and accepted since start, over every kind; logged at exit so
    /// a run's tally survives the process.
    pub fn events_totals(&self) -> (u64, u64) {
        let sum = |c: &[Counter]| c.iter().map(Counter::get).sum();
        (sum(&self.events_sent), sum(&self.events_accepted))
    }

    pub fn snapshot(&self) -> Snapshot {
        self.snapshot_at(Instant::now())
    }

    fn snapshot_at(&self, now: Instant) -> Snapshot {
        let endpoints = Endpoint::ALL
            .iter()
            .map(|ep| {
                let s = self.windows.summary(ep.index());
                let q = |k: usize| s.quantiles.map(|qs| qs[k]);
                EndpointSnapshot {
                    name: ep.as_str(),
                    requests: s.requests,
                    errors: s.errors,
                    p50: q(0),
                    p95: q(1),
                    p99: q(2),
                }
            })
            .collect();
        Snapshot {
            window_seconds: (SLOT_PERIOD * SLOTS as u32).as_secs_f64(),
            target_events_per_second: self.target_rate.get(),
            achieved_events_per_second: AchievedRates {
                sent: self.sent_rate.rate(now, sum(&self.events_sent)),
                accepted: self.accepted_rate.rate(now, sum(&self.events_accepted)),
            },
            burst_active: self.burst_active.get() != 0,
            in_flight: self.in_flight.get(),
            endpoints,
        }
    }
}

fn sum(counters: &[Counter]) -> u64 {
    counters.iter().map(Counter::get).sum()
}

#[cfg(test)]
mod tests;

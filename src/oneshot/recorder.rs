//! Samples a one-shot run: every second a point of the over-time charts, and
//! running totals for the whole run and for the current phase (a capacity
//! step), from which thresholds are judged.
//!
//! The scheduled rate is integrated every [`TICK`] from the target-rate gauge,
//! so a burst edge costs at most one tick of error in "events scheduled".

use std::sync::Arc;
use std::time::{Duration, Instant};

use parking_lot::Mutex;
use serde::Serialize;
use tokio::task::JoinHandle;

use crate::metrics::tap::{IntervalData, IntervalSeries, RunTap};
use crate::metrics::Metrics;

/// How often the scheduled rate is integrated.
pub const TICK: Duration = Duration::from_millis(100);
/// Shortest partial point that is charted.
const MIN_POINT: Duration = Duration::from_millis(250);
/// Ticks per chart point (one point per second).
const TICKS_PER_SAMPLE: u32 = 10;

/// One point of the over-time charts (the JSON `timeseries` rows). Rates are
/// per second over the point's interval; quantiles are `null` without data.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Sample {
    /// Seconds since the run started, at the end of the interval.
    pub t: f64,
    pub target_events_per_second: f64,
    pub sent_events_per_second: f64,
    pub accepted_events_per_second: f64,
    pub requests_per_second: f64,
    pub errors_per_second: f64,
    pub latency_p50_seconds: Option<f64>,
    pub latency_p95_seconds: Option<f64>,
    pub latency_p99_seconds: Option<f64>,
    pub lag_p50_seconds: Option<f64>,
    pub lag_p95_seconds: Option<f64>,
    pub lag_samples: u64,
    /// p95 of the batch probes' full visibility in the interval.
    pub batch_visible_p95_seconds: Option<f64>,
    pub lost_events: u64,
    /// 429 and 503 answers per second (`rehab_canary_backpressure_total`).
    pub backpressure_per_second: f64,
    /// The service's queue depth (`target.detail`'s `queue_depth` field) at
    /// the end of the interval; `null` when not read.
    pub queue_depth: Option<f64>,
    /// A burst was on at some tick of the interval.
    pub burst: bool,
}

/// Everything counted over a span of the run.
#[derive(Debug, Clone, Default)]
pub struct Totals {
    /// Seconds of traffic covered.
    pub seconds: f64,
    /// Events the schedule asked for (∫ target rate dt).
    pub scheduled: f64,
    pub sent: u64,
    pub accepted: u64,
    pub requests: IntervalSeries,
    pub lag: IntervalSeries,
    /// Batch probes' full-visibility samples.
    pub batch: IntervalSeries,
    pub lost: u64,
    pub late: u64,
}

impl Totals {
    fn add_data(&mut self, d: &IntervalData) {
        self.requests.add(&d.requests);
        self.lag.add(&d.lag);
        self.batch.add(&d.batch);
        self.lost += d.lost;
        self.late += d.late;
    }

    /// Adds another span's totals (the spans follow each other).
    pub fn absorb(&mut self, o: &Totals) {
        self.seconds += o.seconds;
        self.scheduled += o.scheduled;
        self.sent += o.sent;
        self.accepted += o.accepted;
        self.requests.add(&o.requests);
        self.lag.add(&o.lag);
        self.batch.add(&o.batch);
        self.lost += o.lost;
        self.late += o.late;
    }

    /// Mean scheduled rate over the span.
    pub fn scheduled_rate(&self) -> f64 {
        if self.seconds > 0.0 {
            self.scheduled / self.seconds
        } else {
            0.0
        }
    }

    /// Mean accepted rate over the span.
    pub fn accepted_rate(&self) -> f64 {
        if self.seconds > 0.0 {
            self.accepted as f64 / self.seconds
        } else {
            0.0
        }
    }
}

/// What the sampler has gathered so far.
#[derive(Debug, Default)]
pub struct Recording {
    pub samples: Vec<Sample>,
    pub run: Totals,
    pub phase: Totals,
    /// False once traffic ended: the drain still adds lag samples and losses
    /// to the totals, but no time, schedule or chart points.
    traffic_on: bool,
}

struct Sampler {
    metrics: Arc<Metrics>,
    tap: Arc<RunTap>,
    start: Instant,
    last_tick: Instant,
    last_sample: Instant,
    ticks: u32,
    counts: (u64, u64),
    pushback: u64,
    // The current chart point's accumulation.
    point_scheduled: f64,
    point_burst: bool,
    data: IntervalData,
}

impl Sampler {
    fn tick(&mut self, rec: &Mutex<Recording>, now: Instant) {
        let dt = now.duration_since(self.last_tick).as_secs_f64();
        self.last_tick = now;
        let (target, burst) = self.metrics.target_state();
        let traffic_on = rec.lock().traffic_on;
        if traffic_on {
            self.point_scheduled += target * dt;
            self.point_burst |= burst;
        }
        self.ticks += 1;
        if self.ticks >= TICKS_PER_SAMPLE {
            self.ticks = 0;
            self.flush(rec, now);
        }
    }

    /// Closes the current chart point and adds it to the totals.
    fn flush(&mut self, rec: &Mutex<Recording>, now: Instant) {
        // The schedule since the last tick belongs to this point too (a
        // flush off the tick grid, when traffic ends, would miss it).
        let since_tick = now.duration_since(self.last_tick).as_secs_f64();
        self.last_tick = now;
        let (target, burst) = self.metrics.target_state();
        if rec.lock().traffic_on {
            self.point_scheduled += target * since_tick;
            self.point_burst |= burst && since_tick > 0.0;
        }
        let span = now.duration_since(self.last_sample).as_secs_f64();
        self.last_sample = now;
        self.tap.take(&mut self.data);
        let (sent, accepted) = self.metrics.events_totals();
        let (d_sent, d_acc) = (
            sent.saturating_sub(self.counts.0),
            accepted.saturating_sub(self.counts.1),
        );
        self.counts = (sent, accepted);
        let b = &self.metrics.backpressure;
        let pushback = b.total(0) + b.total(1);
        let d_pushback = pushback.saturating_sub(self.pushback);
        self.pushback = pushback;
        let d = &self.data;
        let mut guard = rec.lock();
        let rec = &mut *guard;
        rec.run.add_data(d);
        rec.phase.add_data(d);
        if rec.traffic_on && span > 0.0 {
            for t in [&mut rec.run, &mut rec.phase] {
                t.seconds += span;
                t.scheduled += self.point_scheduled;
                t.sent += d_sent;
                t.accepted += d_acc;
            }
            let per_s = |n: f64| n / span;
            // A sliver of a point (traffic ending just after a tick) counts in
            // the totals but would chart as noise.
            if span >= MIN_POINT.as_secs_f64() {
                rec.samples.push(Sample {
                    t: now.duration_since(self.start).as_secs_f64(),
                    target_events_per_second: per_s(self.point_scheduled),
                    sent_events_per_second: per_s(d_sent as f64),
                    accepted_events_per_second: per_s(d_acc as f64),
                    requests_per_second: per_s(d.requests.count() as f64),
                    errors_per_second: per_s(d.requests.errors as f64),
                    latency_p50_seconds: d.requests.quantile(0.5),
                    latency_p95_seconds: d.requests.quantile(0.95),
                    latency_p99_seconds: d.requests.quantile(0.99),
                    lag_p50_seconds: d.lag.quantile(0.5),
                    lag_p95_seconds: d.lag.quantile(0.95),
                    lag_samples: d.lag.count(),
                    batch_visible_p95_seconds: d.batch.quantile(0.95),
                    lost_events: d.lost,
                    backpressure_per_second: per_s(d_pushback as f64),
                    queue_depth: self
                        .metrics
                        .target_detail
                        .value(super::broadway::QUEUE_DEPTH_FIELD),
                    burst: self.point_burst,
                });
            }
        }
        self.point_scheduled = 0.0;
        self.point_burst = false;
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum State {
    Traffic,
    Drain,
    Stop,
}

/// The running sampler; [`Recorder::finish`] returns the recording.
pub struct Recorder {
    shared: Arc<Mutex<Recording>>,
    state: tokio::sync::watch::Sender<State>,
    task: JoinHandle<()>,
    start: Instant,
}

impl Recorder {
    /// Starts sampling now; the tap must already be attached to `metrics`.
    pub fn spawn(metrics: Arc<Metrics>, tap: Arc<RunTap>) -> Recorder {
        let start = Instant::now();
        let shared = Arc::new(Mutex::new(Recording {
            traffic_on: true,
            ..Recording::default()
        }));
        // Whatever the tap holds from before the start is not this run's.
        tap.take(&mut IntervalData::default());
        let counts = metrics.events_totals();
        let pushback = metrics.backpressure.total(0) + metrics.backpressure.total(1);
        let mut sampler = Sampler {
            metrics,
            tap,
            start,
            last_tick: start,
            last_sample: start,
            ticks: 0,
            counts,
            pushback,
            point_scheduled: 0.0,
            point_burst: false,
            data: IntervalData::default(),
        };
        let (state, mut state_rx) = tokio::sync::watch::channel(State::Traffic);
        let rec = shared.clone();
        let task = tokio::spawn(async move {
            let first = tokio::time::Instant::from_std(start) + TICK;
            let mut every = tokio::time::interval_at(first, TICK);
            every.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            loop {
                tokio::select! {
                    _ = every.tick() => sampler.tick(&rec, Instant::now()),
                    changed = state_rx.changed() => {
                        let now_state = *state_rx.borrow_and_update();
                        // The partial point up to the change still counts.
                        sampler.flush(&rec, Instant::now());
                        rec.lock().traffic_on = false;
                        if changed.is_err() || now_state == State::Stop {
                            break;
                        }
                    }
                }
            }
        });
        Recorder {
            shared,
            state,
            task,
            start,
        }
    }

    /// Seconds since the run started.
    pub fn elapsed(&self) -> Duration {
        self.start.elapsed()
    }

    /// Reads the recording as it stands.
    pub fn with<T>(&self, f: impl FnOnce(&Recording) -> T) -> T {
        f(&self.shared.lock())
    }

    /// Starts a new phase: the phase totals restart from zero.
    pub fn begin_phase(&self) {
        self.shared.lock().phase = Totals::default();
    }

    /// Traffic stopped: the partial point is closed, and from now on only
    /// lag samples and losses of the drain are added.
    pub fn traffic_ended(&self) {
        self.state.send_replace(State::Drain);
    }

    /// Stops sampling and returns the recording.
    pub async fn finish(self) -> Recording {
        self.state.send_replace(State::Stop);
        let _ = self.task.await;
        std::mem::take(&mut *self.shared.lock())
    }
}

//! The `broadway` mode: the seed's Broadway scenario in four phases of equal
//! length, each judged against every threshold on its own.
//!
//! 1. `sustained`: the profile's rate, `batch_share` of the sessions batched.
//! 2. `bursts`: the same, with bursts uploaded as batches (the seed's sensor
//!    data spikes); at least two bursts fit the phase.
//! 3. `ramp`: batched ingestion only, stepping from the rate up to
//!    `ramp_multiplier` × it; the highest step that passes every threshold
//!    is the batched capacity.
//! 4. `backpressure`: batched ingestion at `backpressure_multiplier` × the
//!    rate, past what the service is expected to take, to see how it pushes
//!    back: 429s, 503s, Retry-After, and its queue depth.
//!
//! The run's verdict is the first two phases (the load the service must
//! carry) plus every lost event of the whole run: pushing back is fine,
//! losing an accepted event never is. The ramp and backpressure phases are
//! reported, not gated on. Rates never pass `traffic.max_events_per_second`.

use std::time::Duration;

use serde::Serialize;

use super::profile::{BroadwayPlan, Profile};
use super::recorder::{Recorder, Totals};
use super::report::SpanTotals;
use super::thresholds::{self, Verdict};
use super::{hold, Ended, Interrupt};
use crate::app::Daemon;
use crate::config::Config;
use crate::metrics::backpressure::KINDS;

/// The `target.detail_fields` entry read as the service's queue depth.
pub const QUEUE_DEPTH_FIELD: &str = "queue_depth";

/// How often the queue depth is looked at within a phase.
const LOOK_EVERY: Duration = Duration::from_millis(250);

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum PhaseName {
    Sustained,
    Bursts,
    Ramp,
    Backpressure,
}

impl PhaseName {
    /// As `summary.json` writes it.
    pub const fn as_str(self) -> &'static str {
        match self {
            PhaseName::Sustained => "sustained",
            PhaseName::Bursts => "bursts",
            PhaseName::Ramp => "ramp",
            PhaseName::Backpressure => "backpressure",
        }
    }
}

/// The target pushing back during a phase (`rehab_canary_backpressure_total`).
#[derive(Debug, Clone, Copy, Default, PartialEq, Serialize)]
pub struct Pushback {
    #[serde(rename = "429")]
    pub too_many_requests: u64,
    #[serde(rename = "503")]
    pub unavailable: u64,
    /// 429s whose Retry-After the canary waited out.
    pub retry_after: u64,
}

impl Pushback {
    fn now(daemon: &Daemon) -> [u64; 3] {
        let b = &daemon.metrics().backpressure;
        std::array::from_fn(|k| b.total(k))
    }

    fn since(before: [u64; 3], daemon: &Daemon) -> Self {
        let now = Pushback::now(daemon);
        debug_assert_eq!(KINDS, ["429", "503", "retry_after"]);
        Pushback {
            too_many_requests: now[0] - before[0],
            unavailable: now[1] - before[1],
            retry_after: now[2] - before[2],
        }
    }

    pub fn total(&self) -> u64 {
        self.too_many_requests + self.unavailable
    }
}

/// The service's queue depth over a phase, as its detail route reported it
/// (`null` without a readable `queue_depth` field).
#[derive(Debug, Clone, Copy, Default, PartialEq, Serialize)]
pub struct QueueDepth {
    pub start: Option<f64>,
    pub max: Option<f64>,
    pub end: Option<f64>,
}

impl QueueDepth {
    fn look(&mut self, v: Option<f64>) {
        if self.start.is_none() {
            self.start = v;
        }
        if let Some(v) = v {
            self.max = Some(self.max.map_or(v, |m| m.max(v)));
        }
        self.end = v.or(self.end);
    }
}

/// One step of the ramp phase.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct RampStep {
    pub events_per_second: f64,
    pub passed: bool,
    pub totals: SpanTotals,
}

/// One phase as it went.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Phase {
    pub name: PhaseName,
    /// Seconds since the run started.
    pub started_at: f64,
    pub ended_at: f64,
    /// The planned rate (the ramp's: its last step).
    pub events_per_second: f64,
    pub batch_share: f64,
    pub bursts_as_batches: bool,
    /// Whether the run's verdict includes this phase.
    pub judged: bool,
    pub totals: SpanTotals,
    pub thresholds: Vec<Verdict>,
    pub backpressure: Pushback,
    pub queue_depth: QueueDepth,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub steps: Vec<RampStep>,
}

/// The `broadway` section of `summary.json`.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Broadway {
    pub phases: Vec<Phase>,
    /// The highest ramp step that passed every threshold; `null` if none.
    pub batched_capacity_events_per_second: Option<f64>,
}

/// What the four phases leave for the run's verdict.
pub(super) struct Outcome {
    pub ended: Ended,
    pub report: Broadway,
    /// `sustained` and `bursts` together.
    pub judged: Totals,
}

/// One span of the run at one traffic setting.
struct Span<'a> {
    daemon: &'a Daemon,
    recorder: &'a Recorder,
}

impl Span<'_> {
    /// Holds `cfg`'s traffic for `d`, watching the queue; the span's totals,
    /// or `None` when interrupted.
    async fn hold(
        &self,
        cfg: &Config,
        d: Duration,
        depth: &mut QueueDepth,
        interrupt: &mut Interrupt,
    ) -> Option<Totals> {
        self.daemon.set_traffic(cfg);
        self.recorder.begin_phase();
        let end = self.recorder.elapsed() + d;
        loop {
            depth.look(self.daemon.metrics().target_detail.value(QUEUE_DEPTH_FIELD));
            let left = end.saturating_sub(self.recorder.elapsed());
            if left.is_zero() {
                break;
            }
            if !hold(left.min(LOOK_EVERY), interrupt).await {
                return None;
            }
        }
        Some(self.recorder.with(|r| r.phase.clone()))
    }
}

/// Runs the four phases.
pub(super) async fn run(
    daemon: &Daemon,
    cfg: &Config,
    recorder: &Recorder,
    profile: &Profile,
    plan: &BroadwayPlan,
    probes: thresholds::Probes,
    interrupt: &mut Interrupt,
) -> Outcome {
    let span = Span { daemon, recorder };
    let quarter = profile.duration / 4;
    let rate = profile.traffic.events_per_second;
    let capped = |r: f64| r.min(plan.ceiling);
    let mut phases = Vec::with_capacity(4);
    let mut judged = Totals::default();
    let mut best: Option<f64> = None;
    let mut ended = Ended::Planned;
    let names = [
        PhaseName::Sustained,
        PhaseName::Bursts,
        PhaseName::Ramp,
        PhaseName::Backpressure,
    ];
    for name in names {
        let started_at = recorder.elapsed().as_secs_f64();
        let mut c = cfg.clone();
        c.traffic = profile.traffic.clone();
        c.traffic.burst.duration = Duration::ZERO;
        c.traffic.batch.share = plan.batch_share;
        match name {
            PhaseName::Sustained => {}
            PhaseName::Bursts => {
                // At least two bursts in the phase, each shorter than its gap.
                let every = plan
                    .burst_every
                    .min(quarter / 2)
                    .max(Duration::from_secs(1));
                c.traffic.burst.every = every;
                c.traffic.burst.duration = plan.burst_duration.min(every / 2);
                c.traffic.burst.multiplier = plan.burst_multiplier;
                c.traffic.burst.as_batches = true;
            }
            PhaseName::Ramp | PhaseName::Backpressure => c.traffic.batch.share = 1.0,
        }
        let mut depth = QueueDepth::default();
        let mut steps = Vec::new();
        let before = Pushback::now(daemon);
        let (planned, totals) = match name {
            PhaseName::Ramp => {
                let n = plan.ramp_steps.max(1);
                let step_len = quarter / n;
                let mut all = Totals::default();
                let mut top = rate;
                let mut interrupted = false;
                for k in 0..n {
                    let share = if n > 1 {
                        f64::from(k) / f64::from(n - 1)
                    } else {
                        1.0
                    };
                    let r = capped(rate * (1.0 + (plan.ramp_multiplier - 1.0) * share));
                    c.traffic.events_per_second = r;
                    top = r;
                    tracing::info!(events_per_second = r, "broadway: ramp step");
                    let Some(t) = span.hold(&c, step_len, &mut depth, interrupt).await else {
                        interrupted = true;
                        break;
                    };
                    // As a capacity step: within every target.
                    let passed = !thresholds::judge(&step_thresholds(profile), &t, probes)
                        .iter()
                        .any(Verdict::missed_target);
                    if passed {
                        best = Some(best.map_or(r, |b: f64| b.max(r)));
                    }
                    steps.push(RampStep {
                        events_per_second: r,
                        passed,
                        totals: SpanTotals::of(&t),
                    });
                    all.absorb(&t);
                }
                if interrupted {
                    ended = Ended::Interrupted;
                }
                (top, Some(all))
            }
            _ => {
                let r = match name {
                    PhaseName::Backpressure => capped(rate * plan.backpressure_multiplier),
                    _ => rate,
                };
                c.traffic.events_per_second = r;
                tracing::info!(phase = ?name, events_per_second = r, "broadway: phase");
                let t = span.hold(&c, quarter, &mut depth, interrupt).await;
                if t.is_none() {
                    ended = Ended::Interrupted;
                }
                (r, t)
            }
        };
        let Some(totals) = totals else { break };
        let is_judged = matches!(name, PhaseName::Sustained | PhaseName::Bursts);
        if is_judged {
            judged.absorb(&totals);
        }
        phases.push(Phase {
            name,
            started_at,
            ended_at: recorder.elapsed().as_secs_f64(),
            events_per_second: planned,
            batch_share: c.traffic.batch.share,
            bursts_as_batches: c.traffic.burst.as_batches && c.traffic.burst.enabled(),
            judged: is_judged,
            thresholds: thresholds::judge(&step_thresholds(profile), &totals, probes),
            totals: SpanTotals::of(&totals),
            backpressure: Pushback::since(before, daemon),
            queue_depth: depth,
            steps,
        });
        if ended == Ended::Interrupted {
            break;
        }
    }
    Outcome {
        ended,
        report: Broadway {
            phases,
            batched_capacity_events_per_second: best,
        },
        judged,
    }
}

/// The phases as terminal rows; the run's own rows follow them.
pub fn table(b: &Broadway) -> String {
    use super::report::table::format_value;
    use super::thresholds::Unit;
    use std::fmt::Write as _;
    let mut out = String::new();
    let _ = writeln!(
        out,
        "{:<13} {:>10}  {:>7}  {:>10}  {:>10}  {:>10}  {:>6}  {:>6}  {:>9}  RESULT",
        "PHASE", "RATE", "BATCHED", "ACCEPTED", "LATENCY", "LAG", "429", "503", "QUEUE MAX"
    );
    for p in &b.phases {
        let q = |id: &str| {
            p.thresholds
                .iter()
                .find(|v| v.id == id)
                .and_then(|v| v.value)
                .map_or_else(|| "-".to_owned(), |x| format_value(x, Unit::Seconds))
        };
        let result = if p.thresholds.iter().any(Verdict::failed) {
            "FAIL"
        } else if p.thresholds.iter().any(Verdict::missed_target) {
            "WARN"
        } else {
            "PASS"
        };
        let name = p.name.as_str();
        let _ = writeln!(
            out,
            "{:<13} {:>10}  {:>6.0}%  {:>10}  {:>10}  {:>10}  {:>6}  {:>6}  {:>9}  {}{}",
            name,
            format_value(p.events_per_second, Unit::EventsPerSecond),
            p.batch_share * 100.0,
            format_value(p.totals.achieved_events_per_second, Unit::EventsPerSecond),
            q(thresholds::id::LATENCY),
            q(thresholds::id::PROJECTION_LAG),
            p.backpressure.too_many_requests,
            p.backpressure.unavailable,
            p.queue_depth
                .max
                .map_or_else(|| "-".to_owned(), |d| format!("{d:.0}")),
            result,
            if p.judged { "" } else { " (not gated)" },
        );
    }
    let _ = writeln!(
        out,
        "batched capacity: {}",
        b.batched_capacity_events_per_second.map_or_else(
            || "none".to_owned(),
            |v| format_value(v, Unit::EventsPerSecond)
        ),
    );
    out
}

/// A phase is judged against its own schedule, not a fixed floor.
fn step_thresholds(profile: &Profile) -> super::profile::Thresholds {
    let mut t = profile.thresholds.clone();
    t.min_events_per_second = None;
    t
}

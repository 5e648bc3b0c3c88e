//! What a one-shot run reports: the summary (the JSON schema, documented in
//! `docs/report-schema.md`), the terminal table and the HTML report, all
//! rendered from the same [`RunReport`].

pub mod html;
pub mod table;

use std::fmt;

use serde::Serialize;

use super::recorder::{Sample, Totals};
use super::thresholds::{FailOn, Status, Verdict};
pub use crate::config::profile::ModeKind;

/// Bumped on any change that could break a reader of `summary.json`;
/// additions of fields do not bump it.
pub const SCHEMA_VERSION: u32 = 1;

/// The whole run's verdict (`outcome` in `summary.json`); each threshold has
/// its own [`Verdict`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum RunVerdict {
    Pass,
    Fail,
}

/// Where a capacity step was taken.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Phase {
    /// Stepping up while everything passes.
    Ramp,
    /// Bisecting between the last passing and the first failing rate.
    Refine,
}

/// Why the capacity ramp stopped.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum StoppedBy {
    /// Bisection done.
    Refined,
    /// Reached `traffic.max_events_per_second`.
    Ceiling,
    /// Ran out of `--for`.
    Budget,
    Interrupted,
}

/// What bounded the capacity figure.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum LimitedBy {
    /// The lowest failing step failed while the canary sent its schedule.
    Target,
    /// The canary could not send the lowest failing rate: give it CPU or
    /// shard to look higher.
    Canary,
    /// `traffic.max_events_per_second`.
    Ceiling,
}

impl Phase {
    pub fn as_str(self) -> &'static str {
        match self {
            Phase::Ramp => "ramp",
            Phase::Refine => "refine",
        }
    }
}

impl StoppedBy {
    pub fn as_str(self) -> &'static str {
        match self {
            StoppedBy::Refined => "refined",
            StoppedBy::Ceiling => "ceiling",
            StoppedBy::Budget => "budget",
            StoppedBy::Interrupted => "interrupted",
        }
    }
}

impl LimitedBy {
    pub fn as_str(self) -> &'static str {
        match self {
            LimitedBy::Target => "target",
            LimitedBy::Canary => "canary",
            LimitedBy::Ceiling => "ceiling",
        }
    }
}

/// The terminal table and the page print the word `summary.json` holds
/// (padded, so table columns still line up).
macro_rules! display_as_str {
    ($($t:ty),+) => {$(
        impl fmt::Display for $t {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.pad(self.as_str())
            }
        }
    )+};
}
display_as_str!(Phase, StoppedBy, LimitedBy);

#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Tool {
    pub name: &'static str,
    pub version: &'static str,
}

/// The traffic the profile asked for.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Planned {
    pub duration_seconds: f64,
    pub events_per_second: f64,
    pub max_events_per_second: f64,
    /// `null` when bursts are off.
    pub burst: Option<PlannedBurst>,
    pub abort_on_fail: bool,
}

#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct PlannedBurst {
    pub every_seconds: f64,
    pub duration_seconds: f64,
    pub multiplier: f64,
}

/// Quantiles in seconds; `null` without data.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Quantiles {
    pub count: u64,
    pub p50: Option<f64>,
    pub p95: Option<f64>,
    pub p99: Option<f64>,
    pub max: Option<f64>,
}

impl Quantiles {
    fn of(s: &crate::metrics::tap::IntervalSeries) -> Self {
        Quantiles {
            count: s.count(),
            p50: s.quantile(0.5),
            p95: s.quantile(0.95),
            p99: s.quantile(0.99),
            max: s.quantile(1.0),
        }
    }
}

/// Counts over a span (the run, or one capacity step).
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct SpanTotals {
    pub seconds: f64,
    pub events_scheduled: f64,
    pub events_sent: u64,
    pub events_accepted: u64,
    pub achieved_events_per_second: f64,
    pub requests: u64,
    pub errors: u64,
    pub latency_seconds: Quantiles,
    pub projection_lag_seconds: Quantiles,
    /// Batch probes: acceptance until every event of the batch is visible.
    pub batch_visible_seconds: Quantiles,
    pub lost_events: u64,
    pub late_events: u64,
}

impl SpanTotals {
    pub fn of(t: &Totals) -> Self {
        SpanTotals {
            seconds: t.seconds,
            events_scheduled: t.scheduled.round(),
            events_sent: t.sent,
            events_accepted: t.accepted,
            achieved_events_per_second: t.accepted_rate(),
            requests: t.requests.count(),
            errors: t.requests.errors,
            latency_seconds: Quantiles::of(&t.requests),
            projection_lag_seconds: Quantiles::of(&t.lag),
            batch_visible_seconds: Quantiles::of(&t.batch),
            lost_events: t.lost,
            late_events: t.late,
        }
    }
}

/// One rate held and judged by the capacity ramp.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct CapacityStep {
    pub events_per_second: f64,
    pub phase: Phase,
    /// Seconds since the run started: the step, and its judged part.
    pub started_at: f64,
    pub judged_from: f64,
    pub ended_at: f64,
    pub passed: bool,
    /// The canary itself sent under the throughput objective's share of the
    /// schedule (it saturated, not necessarily the target).
    pub canary_limited: bool,
    pub totals: SpanTotals,
    pub thresholds: Vec<Verdict>,
}

impl CapacityStep {
    /// The value a threshold row judged in this step: the configured
    /// percentile, not a fixed p95.
    pub fn judged_value(&self, id: &str) -> Option<f64> {
        self.thresholds.iter().find(|v| v.id == id)?.value
    }
}

#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Capacity {
    /// The highest rate that passed every threshold; `null` if none did.
    pub events_per_second: Option<f64>,
    pub stopped_by: StoppedBy,
    /// `null` when no step failed and the ramp ran out of budget or was
    /// interrupted.
    pub limited_by: Option<LimitedBy>,
    pub steps: Vec<CapacityStep>,
}

impl Capacity {
    /// The row name of a threshold in the steps (e.g. "p99 latency").
    pub fn threshold_name(&self, id: &str) -> Option<&str> {
        let step = self.steps.first()?;
        Some(step.thresholds.iter().find(|v| v.id == id)?.name.as_str())
    }
}

/// `summary.json`.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct RunReport {
    pub schema_version: u32,
    pub tool: Tool,
    pub profile: String,
    pub mode: ModeKind,
    pub target: String,
    /// RFC 3339, UTC.
    pub started_at: String,
    pub finished_at: String,
    pub outcome: RunVerdict,
    /// `--fail-on`: whether a WARN row failed the run too.
    pub fail_on: FailOn,
    /// Set when `abort_on_fail` ended the run early: the thresholds that
    /// could no longer pass.
    pub aborted: Option<Vec<&'static str>>,
    /// True when SIGINT/SIGTERM ended the run early (it then fails).
    pub interrupted: bool,
    pub planned: Planned,
    pub thresholds: Vec<Verdict>,
    pub totals: SpanTotals,
    /// `[start, end]` seconds of each burst, from the samples.
    pub bursts: Vec<[f64; 2]>,
    pub capacity: Option<Capacity>,
    /// The `broadway` mode's phases; absent in other modes.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub broadway: Option<super::broadway::Broadway>,
    /// One row per second.
    pub timeseries: Vec<Sample>,
}

impl RunReport {
    /// Pass unless a row fails the run at the `--fail-on` level or the run
    /// was cut short.
    pub fn outcome_of(thresholds: &[Verdict], interrupted: bool, fail_on: FailOn) -> RunVerdict {
        if interrupted || thresholds.iter().any(|v| v.fails_run(fail_on)) {
            RunVerdict::Fail
        } else {
            RunVerdict::Pass
        }
    }

    /// The rows past their target but within critical.
    pub fn warnings(&self) -> impl Iterator<Item = &Verdict> {
        self.thresholds.iter().filter(|v| v.status == Status::Warn)
    }

    /// Burst periods from the per-second `burst` flags.
    pub fn bursts_of(samples: &[Sample]) -> Vec<[f64; 2]> {
        let mut out = Vec::new();
        let mut open: Option<f64> = None;
        let mut prev_t = 0.0;
        for s in samples {
            match (open, s.burst) {
                (None, true) => open = Some(prev_t),
                (Some(start), false) => {
                    out.push([start, prev_t]);
                    open = None;
                }
                _ => {}
            }
            prev_t = s.t;
        }
        if let Some(start) = open {
            out.push([start, prev_t]);
        }
        out
    }

    pub fn to_json(&self) -> String {
        // Every field is plain data; serialization cannot fail.
        serde_json::to_string_pretty(self).unwrap_or_else(|e| format!("{{\"error\":\"{e}\"}}"))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::oneshot::thresholds::{Comparison, Unit};

    #[test]
    fn a_warning_fails_the_run_only_under_fail_on_warn() {
        let row = |status| Verdict {
            id: "latency",
            name: "p95 latency".to_owned(),
            status,
            value: Some(0.3),
            comparison: Comparison::AtMost,
            target: 0.2,
            critical: Some(0.5),
            unit: Unit::Seconds,
            detail: None,
        };
        let warn = [row(Status::Pass), row(Status::Warn), row(Status::Skipped)];
        assert_eq!(
            RunReport::outcome_of(&warn, false, FailOn::Critical),
            RunVerdict::Pass
        );
        assert_eq!(
            RunReport::outcome_of(&warn, false, FailOn::Warn),
            RunVerdict::Fail
        );
        assert_eq!(
            RunReport::outcome_of(&warn, true, FailOn::Critical),
            RunVerdict::Fail,
            "interrupted"
        );
        let fail = [row(Status::Fail)];
        for level in [FailOn::Warn, FailOn::Critical] {
            assert_eq!(RunReport::outcome_of(&fail, false, level), RunVerdict::Fail);
        }
        let pass = [row(Status::Pass), row(Status::Skipped)];
        assert_eq!(
            RunReport::outcome_of(&pass, false, FailOn::Warn),
            RunVerdict::Pass
        );
    }

    /// The words the table and the page print are the words in the JSON.
    #[test]
    fn each_word_is_spelled_as_in_the_summary() {
        fn json(v: impl Serialize) -> String {
            serde_json::to_value(v)
                .unwrap()
                .as_str()
                .unwrap()
                .to_owned()
        }
        for m in [ModeKind::Steady, ModeKind::Capacity] {
            assert_eq!(json(m), m.as_str());
        }
        for p in [Phase::Ramp, Phase::Refine] {
            assert_eq!(json(p), p.as_str());
        }
        for s in [
            StoppedBy::Refined,
            StoppedBy::Ceiling,
            StoppedBy::Budget,
            StoppedBy::Interrupted,
        ] {
            assert_eq!(json(s), s.as_str());
        }
        for f in [FailOn::Warn, FailOn::Critical] {
            assert_eq!(json(f), f.as_str());
        }
        for l in [LimitedBy::Target, LimitedBy::Canary, LimitedBy::Ceiling] {
            assert_eq!(json(l), l.as_str());
            assert_eq!(format!("{l:<8}|"), format!("{:<8}|", l.as_str()));
        }
    }
}

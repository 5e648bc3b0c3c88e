//! Judging a span of a run against the profile's thresholds, k6-style, at
//! the seed's two levels: one row per threshold with its value, its target,
//! its critical level and PASS, WARN (past the target, within critical) or
//! FAIL (past critical); and the `abort_on_fail` test of whether a run can
//! still end without failing.

use std::time::Duration;

use serde::Serialize;

use super::profile::Thresholds;
use super::recorder::Totals;

/// Stable ids of the rows: the JSON schema and CI scripts rely on them.
pub mod id {
    pub const LATENCY: &str = "latency";
    pub const ERROR_RATE: &str = "error_rate";
    pub const EVENTS_PER_SECOND: &str = "events_per_second";
    pub const PROJECTION_LAG: &str = "projection_lag";
    pub const BATCH_LATENCY: &str = "batch_latency";
    pub const LOST_EVENTS: &str = "lost_events";
    pub const CAPACITY: &str = "capacity";
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Status {
    Pass,
    /// Past the target, within the critical level.
    Warn,
    Fail,
    /// Not judged: nothing to judge it on by design (no probe of its kind).
    Skipped,
}

/// `--fail-on`: which level fails a run (exit 1). The seed's "critical
/// threshold" is the gate, so a WARN passes unless asked otherwise.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum FailOn {
    /// A WARN fails the run too.
    Warn,
    /// Only a FAIL (past critical) does.
    #[default]
    Critical,
}

impl FailOn {
    pub const fn as_str(self) -> &'static str {
        match self {
            FailOn::Warn => "warn",
            FailOn::Critical => "critical",
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Unit {
    Seconds,
    Ratio,
    EventsPerSecond,
    Count,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub enum Comparison {
    #[serde(rename = "<=")]
    AtMost,
    #[serde(rename = ">=")]
    AtLeast,
}

impl Comparison {
    fn within(self, v: f64, level: f64) -> bool {
        match self {
            Comparison::AtMost => v <= level,
            Comparison::AtLeast => v >= level,
        }
    }
}

/// One row of the threshold table.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Verdict {
    pub id: &'static str,
    /// Human label, e.g. "p95 latency".
    pub name: String,
    pub status: Status,
    /// `null` when there was no data (which fails the row, or skips it).
    pub value: Option<f64>,
    pub comparison: Comparison,
    pub target: f64,
    /// The critical level, compared the same way; `null` for a row judged
    /// at one level (lost events, capacity), which fails past its target.
    pub critical: Option<f64>,
    pub unit: Unit,
    /// Why a row has no value, or how its target was derived.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub detail: Option<String>,
}

impl Verdict {
    fn new(
        id: &'static str,
        name: String,
        value: Option<f64>,
        comparison: Comparison,
        (target, critical): (f64, Option<f64>),
        unit: Unit,
    ) -> Self {
        let status = match value {
            None => Status::Fail,
            Some(v) if comparison.within(v, target) => Status::Pass,
            Some(v) if critical.is_some_and(|c| comparison.within(v, c)) => Status::Warn,
            Some(_) => Status::Fail,
        };
        Verdict {
            id,
            name,
            status,
            value,
            comparison,
            target,
            critical,
            unit,
            detail: value.is_none().then(|| "no data".to_owned()),
        }
    }

    fn detail(mut self, d: String) -> Self {
        self.detail = Some(d);
        self
    }

    /// Past the critical level (or past the only level).
    pub fn failed(&self) -> bool {
        self.status == Status::Fail
    }

    /// Past the target, at either level: what a capacity step is judged by.
    pub fn missed_target(&self) -> bool {
        matches!(self.status, Status::Warn | Status::Fail)
    }

    /// Whether this row fails the run under `--fail-on`.
    pub fn fails_run(&self, fail_on: FailOn) -> bool {
        match fail_on {
            FailOn::Warn => self.missed_target(),
            FailOn::Critical => self.failed(),
        }
    }
}

/// "p95" for 0.95, "p99.9" for 0.999.
pub fn percentile_label(q: f64) -> String {
    let p = (q * 1000.0).round() / 10.0;
    if p.fract() == 0.0 {
        format!("p{p:.0}")
    } else {
        format!("p{p}")
    }
}

/// The floors of accepted events/s for a span (target, critical), and how
/// they were derived.
fn events_floor(t: &Thresholds, totals: &Totals) -> (f64, f64, String) {
    match t.min_events_per_second {
        Some(min) => (
            min,
            min * t.throughput_critical_share,
            "configured floor".to_owned(),
        ),
        None => {
            let scheduled = totals.scheduled_rate();
            (
                t.throughput_ratio * scheduled,
                t.throughput_critical_share * scheduled,
                format!(
                    "{}% of the {scheduled:.1}/s scheduled; critical {}%",
                    fmt_num(t.throughput_ratio * 100.0),
                    fmt_num(t.throughput_critical_share * 100.0)
                ),
            )
        }
    }
}

fn fmt_num(v: f64) -> String {
    let s = format!("{v:.3}");
    s.trim_end_matches('0').trim_end_matches('.').to_owned()
}

/// Which probes ran: a row whose probe did not run is skipped, not failed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Probes {
    /// Any lag probe enabled.
    pub lag: bool,
    /// The batch probe (`lag.probes.batch.enabled`) enabled.
    pub batch: bool,
    /// Its `lag.probes.batch.interval`: a span shorter than two of them
    /// (a capacity step, a Broadway phase) may hold no batch at all, which
    /// is no failure of the target.
    pub batch_interval: Duration,
}

/// Judges `totals` (a whole run, or one capacity step) at both levels.
pub fn judge(t: &Thresholds, totals: &Totals, probes: Probes) -> Vec<Verdict> {
    let requests = totals.requests.count();
    let ceiling = |id, name, quantile: Option<f64>, max: Duration, critical: Duration| {
        Verdict::new(
            id,
            name,
            quantile,
            Comparison::AtMost,
            (max.as_secs_f64(), Some(critical.as_secs_f64())),
            Unit::Seconds,
        )
    };
    let latency = ceiling(
        id::LATENCY,
        format!("{} latency", percentile_label(t.latency_quantile)),
        totals.requests.quantile(t.latency_quantile),
        t.latency,
        t.latency_critical,
    );
    let error_rate = Verdict::new(
        id::ERROR_RATE,
        "error rate".to_owned(),
        (requests > 0).then(|| totals.requests.errors as f64 / requests as f64),
        Comparison::AtMost,
        (t.max_error_ratio, Some(t.max_error_ratio_critical)),
        Unit::Ratio,
    );
    let (floor, critical_floor, how) = events_floor(t, totals);
    let events = Verdict::new(
        id::EVENTS_PER_SECOND,
        "events/s accepted".to_owned(),
        (totals.seconds > 0.0).then(|| totals.accepted_rate()),
        Comparison::AtLeast,
        (floor, Some(critical_floor)),
        Unit::EventsPerSecond,
    )
    .detail(how);
    let mut lag = ceiling(
        id::PROJECTION_LAG,
        format!("projection lag {}", percentile_label(t.lag_quantile)),
        totals.lag.quantile(t.lag_quantile),
        t.lag,
        t.lag_critical,
    );
    if !probes.lag {
        lag.status = Status::Skipped;
        lag.detail = Some("no lag probe enabled".to_owned());
    } else if lag.value.is_none() {
        lag.detail = Some("no lag sample: no probe event became visible".to_owned());
    }
    let mut batch = ceiling(
        id::BATCH_LATENCY,
        format!("batch latency {}", percentile_label(t.batch_quantile)),
        totals.batch.quantile(t.batch_quantile),
        t.batch,
        t.batch_critical,
    );
    // Samples mean a batch probe ran, whatever the flag says.
    if !probes.batch && batch.value.is_none() {
        batch.status = Status::Skipped;
        batch.detail = Some("no batch probe enabled".to_owned());
    } else if batch.value.is_none()
        && totals.seconds < 2.0 * probes.batch_interval.as_secs_f64()
        && totals.lost == 0
    {
        batch.status = Status::Skipped;
        batch.detail = Some(
            "no probe batch resolved in this span (shorter than two batch intervals)".to_owned(),
        );
    } else if batch.value.is_none() {
        batch.detail = Some("no batch sample: no probe batch became fully visible".to_owned());
    }
    let lost = Verdict::new(
        id::LOST_EVENTS,
        "lost events".to_owned(),
        Some(totals.lost as f64),
        Comparison::AtMost,
        (t.max_lost_events as f64, None),
        Unit::Count,
    );
    vec![latency, error_rate, events, lag, batch, lost]
}

/// The thresholds that can no longer end within `level` by the end of a run
/// of `planned` length, `elapsed` into it: even if every remaining request,
/// probe and event were perfect at the current pace. Used by
/// `abort_on_fail`, at the level that fails the run (`--fail-on`): past
/// critical by default, past the target with `--fail-on warn`.
pub fn doomed(
    t: &Thresholds,
    totals: &Totals,
    elapsed: Duration,
    planned: Duration,
    level: FailOn,
) -> Vec<&'static str> {
    let t = &t.at(level);
    let mut out = Vec::new();
    let (el, plan) = (elapsed.as_secs_f64(), planned.as_secs_f64());
    if el <= 0.0 || plan <= el {
        return out;
    }
    let scale = plan / el;
    if totals.lost > t.max_lost_events {
        out.push(id::LOST_EVENTS);
    }
    let projected = |n: u64| n as f64 * scale;
    let requests = totals.requests.count();
    if requests > 0 {
        let allowed_errors = t.max_error_ratio * projected(requests);
        if totals.requests.errors as f64 > allowed_errors {
            out.push(id::ERROR_RATE);
        }
        let allowed_slow = (1.0 - t.latency_quantile) * projected(requests);
        if totals.requests.count_above(t.latency) as f64 > allowed_slow {
            out.push(id::LATENCY);
        }
    }
    for (id, series, quantile, limit) in [
        (id::PROJECTION_LAG, &totals.lag, t.lag_quantile, t.lag),
        (id::BATCH_LATENCY, &totals.batch, t.batch_quantile, t.batch),
    ] {
        let samples = series.count();
        if samples > 0 {
            let allowed_slow = (1.0 - quantile) * projected(samples);
            if series.count_above(limit) as f64 > allowed_slow {
                out.push(id);
            }
        }
    }
    // Events: even if the rest of the run accepted everything it schedules,
    // the run's mean would stay under the floor.
    let remaining = plan - el;
    let best = totals.accepted as f64 + totals.scheduled_rate() * remaining;
    let (floor, _, _) = events_floor(t, totals);
    if best < floor * plan * 0.999_999 {
        out.push(id::EVENTS_PER_SECOND);
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::metrics::tap::{IntervalData, RunTap};

    const BOTH: Probes = Probes {
        lag: true,
        batch: true,
        batch_interval: Duration::from_secs(5),
    };

    fn ms(v: u64) -> Duration {
        Duration::from_millis(v)
    }

    /// The seed's levels.
    fn thresholds() -> Thresholds {
        Thresholds {
            latency_quantile: 0.95,
            latency: ms(200),
            latency_critical: ms(500),
            max_error_ratio: 0.001,
            max_error_ratio_critical: 0.01,
            min_events_per_second: None,
            throughput_ratio: 0.99,
            throughput_critical_share: 0.5,
            lag_quantile: 0.95,
            lag: ms(100),
            lag_critical: ms(1000),
            batch_quantile: 0.95,
            batch: ms(1000),
            batch_critical: ms(2000),
            max_lost_events: 0,
        }
    }

    /// 1000 requests at `lat_ms` with `errors` failures, 100 lag samples
    /// and 20 batch samples at `batch_ms`, over 10 s with 100 events/s
    /// scheduled and `accepted` accepted.
    fn totals_with_batch(
        lat_ms: u64,
        errors: u64,
        lag_ms: u64,
        batch_ms: u64,
        lost: u64,
        accepted: u64,
    ) -> Totals {
        let tap = RunTap::default();
        for k in 0..1000 {
            tap.record_request(ms(lat_ms), k < errors);
        }
        for _ in 0..100 {
            tap.record_lag(ms(lag_ms));
        }
        for _ in 0..20 {
            tap.record_batch(ms(batch_ms));
        }
        for _ in 0..lost {
            tap.lost();
        }
        let mut d = IntervalData::default();
        tap.take(&mut d);
        Totals {
            seconds: 10.0,
            scheduled: 1000.0,
            sent: 1000,
            accepted,
            requests: d.requests,
            lag: d.lag,
            batch: d.batch,
            lost: d.lost,
            late: 0,
        }
    }

    fn totals(lat_ms: u64, errors: u64, lag_ms: u64, lost: u64, accepted: u64) -> Totals {
        totals_with_batch(lat_ms, errors, lag_ms, 400, lost, accepted)
    }

    fn with(v: &[Verdict], status: Status) -> Vec<&'static str> {
        v.iter()
            .filter(|v| v.status == status)
            .map(|v| v.id)
            .collect()
    }

    #[test]
    fn a_healthy_span_passes_every_row() {
        let v = judge(&thresholds(), &totals(50, 0, 40, 0, 1000), BOTH);
        assert_eq!(with(&v, Status::Pass).len(), 6, "{v:?}");
        let names: Vec<&str> = v.iter().map(|v| v.name.as_str()).collect();
        assert_eq!(
            names,
            [
                "p95 latency",
                "error rate",
                "events/s accepted",
                "projection lag p95",
                "batch latency p95",
                "lost events",
            ]
        );
        assert_eq!(v[0].critical, Some(0.5));
        assert_eq!(v[5].critical, None, "lost events has one level");
    }

    /// Each row past its target but within critical warns; past critical
    /// fails; the other rows pass.
    #[test]
    fn each_row_warns_between_the_levels_and_fails_past_critical() {
        let t = thresholds();
        let cases = [
            // (warn, fail, row)
            (
                totals(300, 0, 40, 0, 1000),
                totals(600, 0, 40, 0, 1000),
                "latency",
            ),
            // 0.5 % and 5 % errors against 0.1 % / 1 %.
            (
                totals(50, 5, 40, 0, 1000),
                totals(50, 50, 40, 0, 1000),
                "error_rate",
            ),
            (
                totals(50, 0, 300, 0, 1000),
                totals(50, 0, 1500, 0, 1000),
                "projection_lag",
            ),
            (
                totals_with_batch(50, 0, 40, 1500, 0, 1000),
                totals_with_batch(50, 0, 40, 2500, 0, 1000),
                "batch_latency",
            ),
        ];
        for (warn, fail, row) in cases {
            let w = judge(&t, &warn, BOTH);
            assert_eq!(with(&w, Status::Warn), [row]);
            assert_eq!(with(&w, Status::Fail), Vec::<&str>::new(), "{row}");
            let f = judge(&t, &fail, BOTH);
            assert_eq!(with(&f, Status::Fail), [row]);
            assert_eq!(with(&f, Status::Warn), Vec::<&str>::new(), "{row}");
        }
    }

    #[test]
    fn events_per_second_is_judged_at_least_at_both_levels() {
        let t = thresholds();
        // 100/s scheduled: target 99/s, critical 50/s.
        let row = |accepted| judge(&t, &totals(50, 0, 40, 0, accepted), BOTH)[2].clone();
        let at_target = row(990);
        assert_eq!((at_target.target, at_target.critical), (99.0, Some(50.0)));
        assert_eq!(at_target.comparison, Comparison::AtLeast);
        assert_eq!(at_target.status, Status::Pass);
        assert_eq!(row(1200).status, Status::Pass, "more is better");
        assert_eq!(row(700).status, Status::Warn);
        assert_eq!(row(500).status, Status::Warn, "at the critical floor");
        assert_eq!(row(400).status, Status::Fail);
        // A configured floor: critical at the same share of it.
        let mut floor = thresholds();
        floor.min_events_per_second = Some(80.0);
        let v = &judge(&floor, &totals(50, 0, 40, 0, 600), BOTH)[2];
        assert_eq!((v.target, v.critical), (80.0, Some(40.0)));
        assert_eq!(v.status, Status::Warn);
    }

    #[test]
    fn one_level_rows_fail_past_their_target() {
        let v = judge(&thresholds(), &totals(50, 0, 40, 1, 1000), BOTH);
        assert_eq!(with(&v, Status::Fail), ["lost_events"]);
    }

    #[test]
    fn fail_on_decides_whether_a_warning_fails_the_run() {
        let v = judge(&thresholds(), &totals(300, 0, 40, 0, 1000), BOTH);
        let latency = &v[0];
        assert_eq!(latency.status, Status::Warn);
        assert!(!latency.fails_run(FailOn::Critical));
        assert!(latency.fails_run(FailOn::Warn));
        assert!(latency.missed_target() && !latency.failed());
        let f = &judge(&thresholds(), &totals(600, 0, 40, 0, 1000), BOTH)[0];
        assert!(f.fails_run(FailOn::Critical) && f.fails_run(FailOn::Warn));
        assert_eq!(FailOn::default(), FailOn::Critical);
    }

    #[test]
    fn no_probe_skips_its_row_but_no_sample_fails_it() {
        let t = thresholds();
        let mut none = totals(50, 0, 40, 0, 1000);
        none.lag.reset();
        none.batch.reset();
        let off = Probes {
            lag: false,
            batch: false,
            batch_interval: Duration::from_secs(5),
        };
        let skipped = judge(&t, &none, off);
        assert_eq!(
            with(&skipped, Status::Skipped),
            ["projection_lag", "batch_latency"]
        );
        assert!(skipped[4]
            .detail
            .as_deref()
            .unwrap()
            .contains("no batch probe"));
        let v = judge(&t, &none, BOTH);
        assert_eq!(with(&v, Status::Fail), ["projection_lag", "batch_latency"]);
        assert!(v[3].detail.as_deref().unwrap().contains("no lag sample"));
        assert!(v[4].detail.as_deref().unwrap().contains("no batch sample"));
        // A span shorter than two batch intervals may hold no batch at all:
        // skipped, not failed (unless a batch lost events in it).
        let mut short = none.clone();
        short.seconds = 6.0;
        let v = judge(&t, &short, BOTH);
        assert_eq!(v[4].status, Status::Skipped, "{:?}", v[4]);
        short.lost = 1;
        assert_eq!(judge(&t, &short, BOTH)[4].status, Status::Fail);
        // Batch samples judge the row even without the flag.
        let sampled = judge(&t, &totals(50, 0, 40, 0, 1000), off);
        assert_eq!(sampled[4].status, Status::Pass);
    }

    #[test]
    fn doomed_only_when_recovery_is_impossible() {
        let t = thresholds();
        let planned = Duration::from_secs(100);
        let at = Duration::from_secs(10);
        let warn = FailOn::Warn;
        // 5 % errors in the first tenth: 50 > 0.1 % of the 10 000 projected.
        assert!(doomed(&t, &totals(50, 50, 40, 0, 1000), at, planned, warn).contains(&"error_rate"));
        // 5 errors: 5 <= 10 allowed over the run, it can still pass.
        assert!(doomed(&t, &totals(50, 5, 40, 0, 1000), at, planned, warn).is_empty());
        // A lost event never comes back.
        assert_eq!(
            doomed(&t, &totals(50, 0, 40, 1, 1000), at, planned, warn),
            ["lost_events"]
        );
        // Slow latency in the first tenth: 1000 slow > 5 % of 10 000.
        assert!(doomed(&t, &totals(300, 0, 40, 0, 1000), at, planned, warn).contains(&"latency"));
        // Half the events missing in the first tenth can be made up? No:
        // 500 + 100/s × 90 s = 9500 < 0.99 × 10 000.
        assert!(doomed(&t, &totals(50, 0, 40, 0, 500), at, planned, warn)
            .contains(&"events_per_second"));
        assert!(doomed(&t, &totals(50, 0, 40, 0, 950), at, planned, warn).is_empty());
        // Slow batches: 20 of 20 past 1 s > 5 % of the 200 projected.
        assert_eq!(
            doomed(
                &t,
                &totals_with_batch(50, 0, 40, 1500, 0, 1000),
                at,
                planned,
                warn
            ),
            ["batch_latency"]
        );
    }

    #[test]
    fn doomed_at_the_critical_level_by_default() {
        let t = thresholds();
        let planned = Duration::from_secs(100);
        let at = Duration::from_secs(10);
        let crit = FailOn::Critical;
        // Past the target but not critical: a warning cannot fail the run.
        for within in [
            totals(300, 0, 40, 0, 1000),
            totals(50, 50, 40, 0, 1000),
            totals(50, 0, 300, 0, 1000),
            totals(50, 0, 40, 0, 500),
            totals_with_batch(50, 0, 40, 1500, 0, 1000),
        ] {
            assert!(doomed(&t, &within, at, planned, crit).is_empty());
        }
        // Past critical: 600 ms > 500 ms, 20 % errors > 1 %, 2.5 s > 2 s,
        // no events at all (0 + 100/s × 90 s < 0.5 × 10 000).
        let past = doomed(&t, &totals(600, 200, 40, 0, 1000), at, planned, crit);
        assert_eq!(past, ["error_rate", "latency"]);
        assert_eq!(
            doomed(
                &t,
                &totals_with_batch(50, 0, 40, 2500, 0, 1000),
                at,
                planned,
                crit
            ),
            ["batch_latency"]
        );
        assert!(doomed(
            &t,
            &totals(50, 0, 40, 0, 0),
            Duration::from_secs(60),
            planned,
            crit
        )
        .contains(&"events_per_second"));
        // One-level rows are doomed at either level.
        assert_eq!(
            doomed(&t, &totals(50, 0, 40, 1, 1000), at, planned, crit),
            ["lost_events"]
        );
    }

    #[test]
    fn percentile_labels() {
        assert_eq!(percentile_label(0.95), "p95");
        assert_eq!(percentile_label(0.999), "p99.9");
    }
}

//! Judging a span of a run against the profile's thresholds, k6-style: one
//! row per threshold with its value, its target and pass/fail; and the
//! `abort_on_fail` test of whether a failing threshold can still recover.

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
    pub const LOST_EVENTS: &str = "lost_events";
    pub const CAPACITY: &str = "capacity";
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Status {
    Pass,
    Fail,
    /// Not judged: nothing to judge it on by design (no lag probe enabled).
    Skipped,
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
        target: f64,
        unit: Unit,
    ) -> Self {
        let pass = value.is_some_and(|v| match comparison {
            Comparison::AtMost => v <= target,
            Comparison::AtLeast => v >= target,
        });
        Verdict {
            id,
            name,
            status: if pass { Status::Pass } else { Status::Fail },
            value,
            comparison,
            target,
            unit,
            detail: value.is_none().then(|| "no data".to_owned()),
        }
    }

    fn detail(mut self, d: String) -> Self {
        self.detail = Some(d);
        self
    }

    pub fn failed(&self) -> bool {
        self.status == Status::Fail
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

/// The floor of accepted events/s for a span, and how it was derived.
fn events_floor(t: &Thresholds, totals: &Totals) -> (f64, String) {
    match t.min_events_per_second {
        Some(min) => (min, "configured floor".to_owned()),
        None => {
            let scheduled = totals.scheduled_rate();
            (
                t.throughput_ratio * scheduled,
                format!(
                    "{}% of the {scheduled:.1}/s scheduled",
                    fmt_num(t.throughput_ratio * 100.0)
                ),
            )
        }
    }
}

fn fmt_num(v: f64) -> String {
    let s = format!("{v:.3}");
    s.trim_end_matches('0').trim_end_matches('.').to_owned()
}

/// Judges `totals` (a whole run, or one capacity step). `lag_enabled` says
/// whether any lag probe ran: without one, the lag row is skipped, not failed.
pub fn judge(t: &Thresholds, totals: &Totals, lag_enabled: bool) -> Vec<Verdict> {
    let requests = totals.requests.count();
    let ceiling = |id, name, quantile: Option<f64>, max: Duration| {
        Verdict::new(
            id,
            name,
            quantile,
            Comparison::AtMost,
            max.as_secs_f64(),
            Unit::Seconds,
        )
    };
    let latency = ceiling(
        id::LATENCY,
        format!("{} latency", percentile_label(t.latency_quantile)),
        totals.requests.quantile(t.latency_quantile),
        t.latency,
    );
    let error_rate = Verdict::new(
        id::ERROR_RATE,
        "error rate".to_owned(),
        (requests > 0).then(|| totals.requests.errors as f64 / requests as f64),
        Comparison::AtMost,
        t.max_error_ratio,
        Unit::Ratio,
    );
    let (floor, how) = events_floor(t, totals);
    let events = Verdict::new(
        id::EVENTS_PER_SECOND,
        "events/s accepted".to_owned(),
        (totals.seconds > 0.0).then(|| totals.accepted_rate()),
        Comparison::AtLeast,
        floor,
        Unit::EventsPerSecond,
    )
    .detail(how);
    let mut lag = ceiling(
        id::PROJECTION_LAG,
        format!("projection lag {}", percentile_label(t.lag_quantile)),
        totals.lag.quantile(t.lag_quantile),
        t.lag,
    );
    if !lag_enabled {
        lag.status = Status::Skipped;
        lag.detail = Some("no lag probe enabled".to_owned());
    } else if lag.value.is_none() {
        lag.detail = Some("no lag sample: no probe event became visible".to_owned());
    }
    let lost = Verdict::new(
        id::LOST_EVENTS,
        "lost events".to_owned(),
        Some(totals.lost as f64),
        Comparison::AtMost,
        t.max_lost_events as f64,
        Unit::Count,
    );
    vec![latency, error_rate, events, lag, lost]
}

/// The thresholds that can no longer pass by the end of a run of `planned`
/// length, `elapsed` into it: even if every remaining request, probe and
/// event were perfect at the current pace. Used by `abort_on_fail`.
pub fn doomed(
    t: &Thresholds,
    totals: &Totals,
    elapsed: Duration,
    planned: Duration,
) -> Vec<&'static str> {
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
    let samples = totals.lag.count();
    if samples > 0 {
        let allowed_slow = (1.0 - t.lag_quantile) * projected(samples);
        if totals.lag.count_above(t.lag) as f64 > allowed_slow {
            out.push(id::PROJECTION_LAG);
        }
    }
    // Events: even if the rest of the run accepted everything it schedules,
    // the run's mean would stay under the floor.
    let remaining = plan - el;
    let best = totals.accepted as f64 + totals.scheduled_rate() * remaining;
    let (floor, _) = events_floor(t, totals);
    if best < floor * plan * 0.999_999 {
        out.push(id::EVENTS_PER_SECOND);
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::metrics::tap::{IntervalData, RunTap};

    fn thresholds() -> Thresholds {
        Thresholds {
            latency_quantile: 0.95,
            latency: Duration::from_millis(200),
            max_error_ratio: 0.001,
            min_events_per_second: None,
            throughput_ratio: 0.99,
            lag_quantile: 0.95,
            lag: Duration::from_millis(100),
            max_lost_events: 0,
        }
    }

    /// 1000 requests at `lat_ms` with `errors` failures, 100 lag samples,
    /// over 10 s with 100 events/s scheduled and `accepted` accepted.
    fn totals(lat_ms: u64, errors: u64, lag_ms: u64, lost: u64, accepted: u64) -> Totals {
        let tap = RunTap::default();
        for k in 0..1000 {
            tap.record_request(Duration::from_millis(lat_ms), k < errors);
        }
        for _ in 0..100 {
            tap.record_lag(Duration::from_millis(lag_ms));
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

    fn failed(v: &[Verdict]) -> Vec<&'static str> {
        v.iter().filter(|v| v.failed()).map(|v| v.id).collect()
    }

    #[test]
    fn a_healthy_span_passes_every_row() {
        let v = judge(&thresholds(), &totals(50, 0, 40, 0, 1000), true);
        assert_eq!(failed(&v), Vec::<&str>::new());
        assert_eq!(v[0].name, "p95 latency");
        assert_eq!(v[3].name, "projection lag p95");
    }

    #[test]
    fn each_breach_fails_its_own_row() {
        let t = thresholds();
        let cases = [
            (totals(300, 0, 40, 0, 1000), "latency"),
            (totals(50, 50, 40, 0, 1000), "error_rate"),
            (totals(50, 0, 40, 0, 900), "events_per_second"),
            (totals(50, 0, 150, 0, 1000), "projection_lag"),
            (totals(50, 0, 40, 1, 1000), "lost_events"),
        ];
        for (totals, row) in cases {
            assert_eq!(failed(&judge(&t, &totals, true)), [row]);
        }
    }

    #[test]
    fn no_lag_probe_skips_the_lag_row_but_no_sample_fails_it() {
        let t = thresholds();
        let mut none = totals(50, 0, 40, 0, 1000);
        none.lag.reset();
        let skipped = judge(&t, &none, false);
        assert_eq!(skipped[3].status, Status::Skipped);
        let v = judge(&t, &none, true);
        assert_eq!(v[3].status, Status::Fail);
        assert!(v[3].detail.as_deref().unwrap().contains("no lag sample"));
    }

    #[test]
    fn doomed_only_when_recovery_is_impossible() {
        let t = thresholds();
        let planned = Duration::from_secs(100);
        let at = Duration::from_secs(10);
        // 5 % errors in the first tenth: 50 > 0.1 % of the 10 000 projected.
        assert!(doomed(&t, &totals(50, 50, 40, 0, 1000), at, planned).contains(&"error_rate"));
        // 5 errors: 5 <= 10 allowed over the run, it can still pass.
        assert!(doomed(&t, &totals(50, 5, 40, 0, 1000), at, planned).is_empty());
        // A lost event never comes back.
        assert_eq!(
            doomed(&t, &totals(50, 0, 40, 1, 1000), at, planned),
            ["lost_events"]
        );
        // Slow latency in the first tenth: 1000 slow > 5 % of 10 000.
        assert!(doomed(&t, &totals(300, 0, 40, 0, 1000), at, planned).contains(&"latency"));
        // Half the events missing in the first tenth can be made up? No:
        // 500 + 100/s × 90 s = 9500 < 0.99 × 10 000.
        assert!(doomed(&t, &totals(50, 0, 40, 0, 500), at, planned).contains(&"events_per_second"));
        assert!(doomed(&t, &totals(50, 0, 40, 0, 950), at, planned).is_empty());
    }

    #[test]
    fn percentile_labels() {
        assert_eq!(percentile_label(0.95), "p95");
        assert_eq!(percentile_label(0.999), "p99.9");
    }
}

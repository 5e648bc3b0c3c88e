//! The "Over time" section: event rates, request latency and projection lag
//! on one time axis, bursts shaded on each.

use std::fmt::Write;

use super::fold::chart_points;
use super::svg::{Chart, Line, Marks, Series, Span, Stroke};
use super::{rate, trim_num};
use crate::oneshot::recorder::Sample;
use crate::oneshot::report::table::{format_critical, format_target};
use crate::oneshot::report::RunReport;
use crate::oneshot::thresholds::{id, Status, Verdict};

const BLUE: &str = "#2563eb";
const GREEN: &str = "#16a34a";
const GREY: &str = "#64748b";
const RED: &str = "#dc2626";
const ORANGE: &str = "#ea580c";
const AMBER: &str = "#d97706";
const PURPLE: &str = "#7c3aed";
const BURST_FILL: &str = "#fdefc3";
const STEP_PASS_FILL: &str = "#dcfce7";
const STEP_FAIL_FILL: &str = "#fee2e2";

/// A quantile charted: its legend, colour and where it is in a sample.
type Quantile = (&'static str, &'static str, fn(&Sample) -> Option<f64>);

const LATENCY: [Quantile; 3] = [
    ("p50", BLUE, |s| s.latency_p50_seconds),
    ("p95", ORANGE, |s| s.latency_p95_seconds),
    ("p99", PURPLE, |s| s.latency_p99_seconds),
];

const LAG: [Quantile; 2] = [
    ("p50", BLUE, |s| s.lag_p50_seconds),
    ("p95", ORANGE, |s| s.lag_p95_seconds),
];

const BATCH: [Quantile; 1] = [("p95", ORANGE, |s| s.batch_visible_p95_seconds)];

pub(super) fn section(out: &mut String, r: &RunReport) {
    let (ts, per_point) = chart_points(&r.timeseries);
    let burst_spans: Vec<Span> = r
        .bursts
        .iter()
        .map(|[from, to]| Span {
            from: *from,
            to: *to,
            legend: "burst".to_owned(),
            fill: BURST_FILL,
            label: None,
        })
        .collect();
    let rates = rates(r, &ts, burst_spans.clone());
    let latency = quantiles(
        "Request latency",
        &ts,
        &LATENCY,
        threshold(r, id::LATENCY),
        burst_spans.clone(),
        None,
    );
    // Losses are counts, marked from every point, however short.
    let lost: Vec<f64> = r
        .timeseries
        .iter()
        .filter(|s| s.lost_events > 0)
        .map(|s| s.t)
        .collect();
    let lost_total: u64 = r.timeseries.iter().map(|s| s.lost_events).sum();
    let lag = quantiles(
        "Projection lag",
        &ts,
        &LAG,
        threshold(r, id::PROJECTION_LAG),
        burst_spans.clone(),
        Some(Marks {
            legend: format!("lost events ({lost_total})"),
            color: RED,
            xs: lost,
        }),
    );

    out.push_str("<section id=\"charts\">\n<h2>Over time</h2>\n");
    let mut all = vec![rates, latency, lag];
    // Charts of what only some runs have: the batch probe's latency, and
    // the service's queue and pushback (Broadway runs, a detail route).
    if ts.iter().any(|s| s.batch_visible_p95_seconds.is_some()) {
        all.push(quantiles(
            "Batch latency (every event of a probe batch visible)",
            &ts,
            &BATCH,
            threshold(r, id::BATCH_LATENCY),
            burst_spans.clone(),
            None,
        ));
    }
    if ts
        .iter()
        .any(|s| s.queue_depth.is_some() || s.backpressure_per_second > 0.0)
    {
        all.push(queue(&ts, burst_spans));
    }
    // One time axis for all, so they line up.
    let x_max = all.iter().map(Chart::x_extent).fold(0.0, f64::max);
    for c in &mut all {
        c.x_max = x_max;
    }
    for c in all {
        let _ = writeln!(out, "<figure>{}</figure>", c.render());
    }
    let resolution = if per_point == 1 {
        "One point per second; a gap means no data in that second.".to_owned()
    } else {
        format!(
            "One point per {per_point} seconds (the run is long): rates are averaged over the \
             point, latency and lag show the worst second of it; a gap means no data."
        )
    };
    let _ = write!(
        out,
        "<p class=\"muted\">{resolution} Rates are per second over each point's interval; the \
         final partial point is not charted when it is shorter than 0.1 s.</p>\n</section>\n"
    );
}

fn series(
    ts: &[Sample],
    name: &str,
    color: &'static str,
    stroke: Stroke,
    f: impl Fn(&Sample) -> Option<f64>,
) -> Series {
    Series {
        name: name.to_owned(),
        color,
        stroke,
        points: ts.iter().map(|s| (s.t, f(s))).collect(),
    }
}

/// Target, sent and accepted events/s and failed requests/s; on capacity
/// runs, each judged step shaded by its verdict and the capacity found.
fn rates(r: &RunReport, ts: &[Sample], mut spans: Vec<Span>) -> Chart {
    let mut lines = Vec::new();
    if let Some(c) = &r.capacity {
        for s in &c.steps {
            spans.push(Span {
                from: s.judged_from,
                to: s.ended_at,
                legend: if s.passed {
                    "judged step: pass"
                } else {
                    "judged step: fail"
                }
                .to_owned(),
                fill: if s.passed {
                    STEP_PASS_FILL
                } else {
                    STEP_FAIL_FILL
                },
                label: Some(trim_num(s.events_per_second.round())),
            });
        }
        if let Some(v) = c.events_per_second {
            lines.push(Line {
                legend: format!("capacity {}", rate(v)),
                value: v,
                color: GREEN,
            });
        }
    }
    Chart {
        title: "Event rates (events/s)".to_owned(),
        unit: "/s",
        series: vec![
            series(ts, "target", GREY, Stroke::Halo, |s| {
                Some(s.target_events_per_second)
            }),
            series(ts, "accepted", GREEN, Stroke::Solid, |s| {
                Some(s.accepted_events_per_second)
            }),
            series(ts, "sent", BLUE, Stroke::Dashed, |s| {
                Some(s.sent_events_per_second)
            }),
            series(ts, "failed requests/s", RED, Stroke::Solid, |s| {
                Some(s.errors_per_second)
            }),
        ],
        lines,
        spans,
        marks: None,
        x_max: 0.0,
    }
}

/// The service's queue depth beside the 429s and 503s it answered.
fn queue(ts: &[Sample], spans: Vec<Span>) -> Chart {
    Chart {
        title: "Target queue depth (events) and pushback (429 + 503 per s)".to_owned(),
        unit: "",
        series: vec![
            series(ts, "queue depth", PURPLE, Stroke::Solid, |s| s.queue_depth),
            series(ts, "pushback/s", RED, Stroke::Solid, |s| {
                Some(s.backpressure_per_second)
            }),
        ],
        lines: Vec::new(),
        spans,
        marks: None,
        x_max: 0.0,
    }
}

/// One chart for request latency and projection lag alike: quantiles of a
/// duration with the judged threshold's target and critical level as dashed
/// lines. Without data the target sets the scale; a skipped threshold (no
/// lag probe) is not drawn.
fn quantiles(
    title: &str,
    ts: &[Sample],
    quantiles: &[Quantile],
    threshold: Option<&Verdict>,
    spans: Vec<Span>,
    marks: Option<Marks>,
) -> Chart {
    let max = ts
        .iter()
        .flat_map(|s| quantiles.iter().map(move |(_, _, q)| q(s)))
        .flatten()
        .fold(0.0, f64::max);
    let (k, unit) = time_scale(if max > 0.0 {
        max
    } else {
        threshold.map_or(0.0, |v| v.target)
    });
    Chart {
        title: title.to_owned(),
        unit,
        series: quantiles
            .iter()
            .map(|&(name, color, q)| {
                series(ts, name, color, Stroke::Solid, |s| q(s).map(|v| v * k))
            })
            .collect(),
        lines: threshold
            .filter(|v| v.status != Status::Skipped)
            .map(|v| {
                let target = Line {
                    legend: format!("target: {} {}", v.name, format_target(v)),
                    value: v.target * k,
                    color: AMBER,
                };
                let critical = v.critical.map(|c| Line {
                    legend: format!("critical: {}", format_critical(v)),
                    value: c * k,
                    color: RED,
                });
                std::iter::once(target).chain(critical)
            })
            .into_iter()
            .flatten()
            .collect(),
        spans,
        marks,
        x_max: 0.0,
    }
}

/// Seconds are charted in ms, or in s when the values reach 10 s.
fn time_scale(max_seconds: f64) -> (f64, &'static str) {
    if max_seconds >= 10.0 {
        (1.0, " s")
    } else {
        (1000.0, " ms")
    }
}

/// The threshold row `id`, from the run's rows or else the first capacity
/// step's (a capacity run judges latency and lag per step).
fn threshold<'a>(r: &'a RunReport, id: &str) -> Option<&'a Verdict> {
    let steps = r
        .capacity
        .iter()
        .flat_map(|c| c.steps.iter().flat_map(|s| s.thresholds.iter()));
    r.thresholds.iter().chain(steps).find(|v| v.id == id)
}

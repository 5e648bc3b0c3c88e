//! The self-contained HTML report: one HTML5 page with inline CSS and inline
//! SVG charts, no script and no external resource of any kind, so it can be
//! archived as a CI artifact and opened anywhere. What it shows, top down:
//! the outcome and the run's plan, the capacity found (capacity runs), the
//! threshold table, over-time charts of rates, latency and projection lag
//! (bursts shaded), and the totals.
//!
//! Every string from the report is escaped: profile names and targets come
//! from the user's config.

use std::fmt::Write;

use super::svg::{Chart, Line, Marks, Series, Span, Stroke};
use super::table::{format_target, format_value, status_label};
use super::{
    mode_name, Capacity, LimitedBy, Outcome, Quantiles, RunReport, Sample, SpanTotals, StoppedBy,
};
// The admin page's escaping: text safe in HTML content and quoted attributes.
use crate::html::escape;
use crate::oneshot::thresholds::{id, Status, Unit, Verdict};

const BLUE: &str = "#2563eb";
const GREEN: &str = "#16a34a";
const GREY: &str = "#64748b";
const RED: &str = "#dc2626";
const ORANGE: &str = "#ea580c";
const PURPLE: &str = "#7c3aed";
const BURST_FILL: &str = "#fdefc3";
const STEP_PASS_FILL: &str = "#dcfce7";
const STEP_FAIL_FILL: &str = "#fee2e2";

const STYLE: &str = r#"
:root { color-scheme: light; }
* { box-sizing: border-box; }
body { margin: 0; background: #f1f5f9; color: #0f172a;
  font: 14px/1.5 system-ui, -apple-system, "Segoe UI", Roboto, "Helvetica Neue", Arial, sans-serif; }
main { max-width: 1040px; margin: 0 auto; padding: 24px 20px 40px; }
section, header.top { background: #fff; border: 1px solid #e2e8f0; border-radius: 10px;
  padding: 18px 22px; margin-bottom: 18px; }
h1 { font-size: 22px; margin: 2px 0 4px; font-weight: 650; }
h2 { font-size: 16px; margin: 0 0 12px; font-weight: 650; }
code { font-family: ui-monospace, "SFMono-Regular", Menlo, Consolas, monospace; font-size: 0.95em; }
.kicker { text-transform: uppercase; letter-spacing: .06em; font-size: 11px; color: #64748b; font-weight: 600; }
.muted { color: #64748b; }
header.top .head { display: flex; justify-content: space-between; align-items: flex-start; gap: 20px; }
.target { margin: 0; color: #334155; word-break: break-all; }
.outcome { font-size: 30px; font-weight: 800; letter-spacing: .04em; color: #fff;
  border-radius: 8px; padding: 6px 22px; line-height: 1.3; }
.outcome.pass { background: #16a34a; }
.outcome.fail { background: #dc2626; }
dl.meta { display: grid; grid-template-columns: repeat(3, 1fr); gap: 10px 24px; margin: 16px 0 0; }
dl.meta div { min-width: 0; }
dl.meta dt { font-size: 11px; text-transform: uppercase; letter-spacing: .05em; color: #64748b; font-weight: 600; }
dl.meta dd { margin: 1px 0 0; font-variant-numeric: tabular-nums; }
.note { margin-top: 14px; padding: 10px 14px; border-radius: 6px; background: #fef2f2;
  border-left: 4px solid #dc2626; color: #7f1d1d; }
table { border-collapse: collapse; width: 100%; font-variant-numeric: tabular-nums; }
th { text-align: left; font-size: 11px; text-transform: uppercase; letter-spacing: .05em;
  color: #64748b; font-weight: 600; padding: 6px 10px; border-bottom: 1px solid #cbd5e1; }
td { padding: 7px 10px; border-bottom: 1px solid #e2e8f0; vertical-align: top; }
tr:last-child td { border-bottom: none; }
th.num, td.num { text-align: right; white-space: nowrap; }
tr.fail td { background: #fef2f2; }
tr.fail td:first-child { box-shadow: inset 3px 0 #dc2626; }
tr.best td { font-weight: 650; }
table.steps td, table.steps th { padding-left: 8px; padding-right: 8px; }
table.steps .detail { display: block; margin: 2px 0 0; }
.pill { display: inline-block; min-width: 52px; text-align: center; font-size: 12px; font-weight: 700;
  border-radius: 999px; padding: 1px 10px; }
.pill.pass { background: #dcfce7; color: #166534; }
.pill.fail { background: #fee2e2; color: #991b1b; }
.pill.skipped { background: #f1f5f9; color: #475569; font-weight: 600; }
.detail { color: #64748b; font-size: 12.5px; margin-left: 8px; }
.capacity-figure { margin-bottom: 14px; }
.capacity-figure .figure { font-size: 34px; font-weight: 800; font-variant-numeric: tabular-nums; line-height: 1.2; }
.capacity-figure .figure.none { color: #dc2626; }
table.thresholds th:nth-child(1) { width: 30%; }
table.thresholds th:nth-child(2), table.thresholds th:nth-child(3) { width: 14%; }
table.thresholds th:nth-child(4) { padding-left: 28px; }
table.thresholds td:nth-child(4) { padding-left: 28px; }
figure { margin: 0 0 10px; }
svg.chart { width: 100%; height: auto; display: block; }
svg.chart text { font-family: system-ui, -apple-system, "Segoe UI", Roboto, "Helvetica Neue", Arial, sans-serif; }
svg.chart .chart-title { font-size: 15px; font-weight: 650; fill: #0f172a; }
svg.chart .legend { font-size: 12px; fill: #334155; }
svg.chart .tick { font-size: 11.5px; fill: #475569; }
svg.chart .axis-title { font-size: 11.5px; fill: #64748b; }
svg.chart .span-label { font-size: 10.5px; fill: #334155; }
svg.chart .no-data { font-size: 14px; fill: #94a3b8; }
svg.chart .axis { stroke: #94a3b8; stroke-width: 1; }
svg.chart .grid-y { stroke: #e2e8f0; stroke-width: 1; }
svg.chart .grid-x { stroke: #f1f5f9; stroke-width: 1; }
.totals { display: grid; grid-template-columns: repeat(3, 1fr); gap: 18px; }
.totals h3 { font-size: 13px; margin: 0 0 4px; color: #334155; }
.totals td { padding: 4px 6px; }
.totals td:first-child { color: #475569; }
footer { color: #64748b; font-size: 12px; text-align: center; }
@media (max-width: 760px) { dl.meta, .totals { grid-template-columns: 1fr; } }
@media print { body { background: #fff; } section, header.top { break-inside: avoid; } }
"#;

/// The whole report page.
pub fn render(r: &RunReport) -> String {
    let mut out = String::new();
    let _ = write!(
        out,
        "<!doctype html>\n<html lang=\"en\">\n<head>\n<meta charset=\"utf-8\">\n\
         <meta name=\"viewport\" content=\"width=device-width, initial-scale=1\">\n\
         <title>{} · {} · rehab-canary</title>\n<style>{STYLE}</style>\n</head>\n<body>\n<main>\n",
        outcome_label(r.outcome),
        escape(&r.profile),
    );
    header(&mut out, r);
    if let Some(c) = &r.capacity {
        capacity(&mut out, c);
    }
    thresholds(&mut out, &r.thresholds);
    charts(&mut out, r);
    totals(&mut out, &r.totals);
    let _ = write!(
        out,
        "<footer>{} {} · schema {} · the same data is in <code>summary.json</code></footer>\n\
         </main>\n</body>\n</html>\n",
        escape(r.tool.name),
        escape(r.tool.version),
        r.schema_version
    );
    out
}

fn outcome_label(o: Outcome) -> &'static str {
    match o {
        Outcome::Pass => "PASS",
        Outcome::Fail => "FAIL",
    }
}

/// `45 s`, `3 min`, `3 min 20 s`, `1 h 5 min`.
fn duration(secs: f64) -> String {
    if !secs.is_finite() || secs < 0.0 {
        return "-".to_owned();
    }
    let s = secs.round() as u64;
    if s < 120 {
        return format!("{s} s");
    }
    match (s / 3600, (s % 3600) / 60, s % 60) {
        (0, 0, s) => format!("{s} s"),
        (0, m, 0) => format!("{m} min"),
        (0, m, s) => format!("{m} min {s} s"),
        (h, 0, _) => format!("{h} h"),
        (h, m, _) => format!("{h} h {m} min"),
    }
}

fn rate(v: f64) -> String {
    format_value(v, Unit::EventsPerSecond)
}

/// `2026-11-24T15:01:02Z` → `2026-11-24 15:01:02 UTC`.
fn timestamp(rfc3339: &str) -> String {
    match rfc3339.strip_suffix('Z') {
        Some(t) if t.len() == 19 && t.as_bytes()[10] == b'T' => {
            format!("{} {} UTC", &t[..10], &t[11..])
        }
        _ => rfc3339.to_owned(),
    }
}

fn header(out: &mut String, r: &RunReport) {
    let o = outcome_label(r.outcome);
    let _ = write!(
        out,
        "<header class=\"top\">\n<div class=\"head\"><div>\
         <div class=\"kicker\">rehab-canary one-shot run · {mode}</div>\
         <h1>Profile <code>{profile}</code></h1>\
         <p class=\"target\">against <code>{target}</code></p></div>\
         <div class=\"outcome {cls}\" title=\"overall outcome\">{o}</div></div>\n<dl class=\"meta\">",
        mode = mode_name(r.mode),
        profile = escape(&r.profile),
        target = escape(&r.target),
        cls = o.to_lowercase(),
    );
    let p = &r.planned;
    let planned_traffic = if r.capacity.is_some() {
        format!(
            "stepped ramp from {}, ceiling {}",
            r.capacity
                .as_ref()
                .and_then(|c| c.steps.first())
                .map_or_else(|| rate(p.events_per_second), |s| rate(s.events_per_second)),
            rate(p.max_events_per_second)
        )
    } else {
        format!(
            "{} (ceiling {})",
            rate(p.events_per_second),
            rate(p.max_events_per_second)
        )
    };
    let bursts = match &p.burst {
        Some(b) => format!(
            "×{} for {} every {} (peak {})",
            trim_num(b.multiplier),
            duration(b.duration_seconds),
            duration(b.every_seconds),
            rate(p.events_per_second * b.multiplier)
        ),
        None => "none".to_owned(),
    };
    let items = [
        ("Started", timestamp(&r.started_at)),
        ("Finished", timestamp(&r.finished_at)),
        (
            "Duration",
            format!(
                "{} of traffic (planned {})",
                duration(r.totals.seconds),
                duration(p.duration_seconds)
            ),
        ),
        ("Planned rate", planned_traffic),
        ("Bursts", bursts),
        match &r.capacity {
            // The ramp judges steps, not the run: abort_on_fail does not apply.
            Some(c) => (
                "Capacity",
                c.events_per_second.map_or_else(|| "none".to_owned(), rate),
            ),
            None => (
                "abort_on_fail",
                if p.abort_on_fail { "on" } else { "off" }.to_owned(),
            ),
        },
    ];
    for (k, v) in items {
        let _ = write!(out, "<div><dt>{k}</dt><dd>{}</dd></div>", escape(&v));
    }
    out.push_str("</dl>\n");
    if let Some(ids) = &r.aborted {
        let names: Vec<String> = ids
            .iter()
            .map(|i| {
                r.thresholds
                    .iter()
                    .find(|v| v.id == *i)
                    .map_or_else(|| (*i).to_owned(), |v| v.name.clone())
            })
            .collect();
        let _ = writeln!(
            out,
            "<div class=\"note\"><strong>Aborted early</strong> (abort_on_fail): {} could no longer pass.</div>",
            escape(&names.join(", "))
        );
    }
    if r.interrupted {
        out.push_str(
            "<div class=\"note\"><strong>Interrupted</strong> (SIGINT/SIGTERM) before the planned end; \
             an interrupted run fails.</div>\n",
        );
    }
    out.push_str("</header>\n");
}

/// `3` for 3.0, `2.5` for 2.5.
fn trim_num(v: f64) -> String {
    let s = format!("{v:.2}");
    s.trim_end_matches('0').trim_end_matches('.').to_owned()
}

fn pill(s: Status) -> String {
    let l = status_label(s);
    format!("<span class=\"pill {}\">{l}</span>", l.to_lowercase())
}

fn thresholds(out: &mut String, rows: &[Verdict]) {
    out.push_str(
        "<section id=\"thresholds\">\n<h2>Thresholds</h2>\n<table class=\"thresholds\">\
         <thead><tr><th>Threshold</th><th class=\"num\">Value</th><th class=\"num\">Target</th>\
         <th>Result</th></tr></thead>\n<tbody>\n",
    );
    for v in rows {
        let value = v
            .value
            .map_or_else(|| "-".to_owned(), |x| format_value(x, v.unit));
        let detail = v.detail.as_deref().map_or_else(String::new, |d| {
            format!("<span class=\"detail\">{}</span>", escape(d))
        });
        let _ = writeln!(
            out,
            "<tr class=\"{cls}\" data-id=\"{id}\"><td>{name}</td><td class=\"num\">{value}</td>\
             <td class=\"num\">{target}</td><td>{pill}{detail}</td></tr>",
            cls = status_label(v.status).to_lowercase(),
            id = escape(v.id),
            name = escape(&v.name),
            value = escape(&value),
            target = escape(&format_target(v)),
            pill = pill(v.status),
        );
    }
    out.push_str("</tbody></table>\n</section>\n");
}

fn stopped_by(s: StoppedBy) -> &'static str {
    match s {
        StoppedBy::Refined => "refined between the last passing and the first failing rate",
        StoppedBy::Ceiling => "reached the rate ceiling (traffic.max_events_per_second)",
        StoppedBy::Budget => "ran out of time (--for)",
        StoppedBy::Interrupted => "interrupted",
    }
}

fn limited_by(s: LimitedBy) -> &'static str {
    match s {
        LimitedBy::Target => "Limited by the target: at the lowest failing rate the canary sent its full schedule.",
        LimitedBy::Canary => {
            "Limited by the canary: it could not send the lowest failing rate (see Sent). Give it more \
             CPU or shard it to measure higher; the target may sustain more."
        }
        LimitedBy::Ceiling => "Limited by the rate ceiling traffic.max_events_per_second; raise it to look higher.",
    }
}

fn capacity(out: &mut String, c: &Capacity) {
    let figure = c.events_per_second.map_or_else(|| "none".to_owned(), rate);
    let _ = write!(
        out,
        "<section id=\"capacity\">\n<h2>Capacity</h2>\n<div class=\"capacity-figure\">\
         <div class=\"figure{}\">{}</div><div>the highest rate that passed every threshold \
         <span class=\"muted\">· ramp stopped: {}</span></div></div>\n",
        if c.events_per_second.is_some() {
            ""
        } else {
            " none"
        },
        escape(&figure),
        escape(stopped_by(c.stopped_by))
    );
    if let Some(note) = c.limited_by.map(limited_by) {
        let _ = writeln!(out, "<p class=\"muted\">{}</p>", escape(note));
    }
    // Headers name the percentile the thresholds judge (p95 unless configured).
    let lat_head = c.threshold_name(id::LATENCY).unwrap_or("latency");
    let lag_head = c
        .threshold_name(id::PROJECTION_LAG)
        .map_or("lag".to_owned(), |n| n.replace("projection lag", "lag"));
    let _ = write!(
        out,
        "<table class=\"steps\"><thead><tr><th class=\"num\">#</th><th class=\"num\">Rate</th>\
         <th>Phase</th><th class=\"num\">Judged</th><th class=\"num\">Sent</th><th class=\"num\">Accepted</th>\
         <th class=\"num\">{}</th><th class=\"num\">Errors</th><th class=\"num\">{}</th>\
         <th class=\"num\">Lost</th><th>Result</th></tr></thead>\n<tbody>\n",
        escape(lat_head),
        escape(&lag_head),
    );
    let q = |v: Option<f64>| v.map_or_else(|| "-".to_owned(), |x| format_value(x, Unit::Seconds));
    for (i, s) in c.steps.iter().enumerate() {
        let t = &s.totals;
        let err = if t.requests > 0 {
            t.errors as f64 / t.requests as f64
        } else {
            0.0
        };
        let failed: Vec<&str> = s
            .thresholds
            .iter()
            .filter(|v| v.failed())
            .map(|v| v.name.as_str())
            .collect();
        let (cls, result) = if s.passed {
            let best = c.events_per_second == Some(s.events_per_second);
            (if best { "pass best" } else { "pass" }, pill(Status::Pass))
        } else {
            let why = if failed.is_empty() {
                String::new()
            } else {
                format!(
                    "<span class=\"detail\">{}</span>",
                    escape(&failed.join(", "))
                )
            };
            ("fail", format!("{}{why}", pill(Status::Fail)))
        };
        let _ = writeln!(
            out,
            "<tr class=\"{cls}\"><td class=\"num\">{n}</td><td class=\"num\">{rate}</td><td>{phase}</td>\
             <td class=\"num\">{from:.0}–{to:.0} s</td><td class=\"num\">{sent}</td><td class=\"num\">{acc}</td><td class=\"num\">{lat}</td>\
             <td class=\"num\">{err}</td><td class=\"num\">{lag}</td><td class=\"num\">{lost}</td>\
             <td>{result}</td></tr>",
            n = i + 1,
            rate = escape(&rate(s.events_per_second)),
            phase = s.phase,
            from = finite_or_zero(s.judged_from),
            to = finite_or_zero(s.ended_at),
            sent = escape(&rate(if t.seconds > 0.0 {
                t.events_sent as f64 / t.seconds
            } else {
                0.0
            })),
            acc = escape(&rate(t.achieved_events_per_second)),
            lat = escape(&q(s.judged_value(id::LATENCY))),
            err = escape(&format_value(err, Unit::Ratio)),
            lag = escape(&q(s.judged_value(id::PROJECTION_LAG))),
            lost = t.lost_events,
        );
    }
    if c.steps.is_empty() {
        out.push_str("<tr><td colspan=\"11\" class=\"muted\">no step was judged</td></tr>\n");
    }
    out.push_str("</tbody></table>\n</section>\n");
}

fn finite_or_zero(v: f64) -> f64 {
    if v.is_finite() {
        v
    } else {
        0.0
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

/// Seconds are charted in ms, or in s when the values reach 10 s.
fn time_scale(max_seconds: f64) -> (f64, &'static str) {
    if max_seconds >= 10.0 {
        (1.0, " s")
    } else {
        (1000.0, " ms")
    }
}

/// Points over less than this are not charted: a rate over a sliver of a
/// second (the partial point closed when traffic stops) is noise.
const MIN_POINT_SECONDS: f64 = 0.1;

/// Most points per series: a long run is folded into buckets so the page
/// stays small (a 24 h run would otherwise carry 86 400 points per line).
const MAX_POINTS: usize = 720;

/// Folds consecutive samples into buckets of `n`: rates are averaged,
/// quantiles keep the bucket's worst (so a spike stays visible), counts add
/// up, and a bucket is a burst if any of its seconds was.
fn downsample(ts: &[&Sample], n: usize) -> Vec<Sample> {
    ts.chunks(n.max(1))
        .filter_map(|c| {
            let last = c.last()?;
            let len = c.len() as f64;
            let mean = |f: fn(&Sample) -> f64| c.iter().map(|s| f(s)).sum::<f64>() / len;
            let worst =
                |f: fn(&Sample) -> Option<f64>| c.iter().filter_map(|s| f(s)).reduce(f64::max);
            Some(Sample {
                t: last.t,
                target_events_per_second: mean(|s| s.target_events_per_second),
                sent_events_per_second: mean(|s| s.sent_events_per_second),
                accepted_events_per_second: mean(|s| s.accepted_events_per_second),
                requests_per_second: mean(|s| s.requests_per_second),
                errors_per_second: mean(|s| s.errors_per_second),
                latency_p50_seconds: worst(|s| s.latency_p50_seconds),
                latency_p95_seconds: worst(|s| s.latency_p95_seconds),
                latency_p99_seconds: worst(|s| s.latency_p99_seconds),
                lag_p50_seconds: worst(|s| s.lag_p50_seconds),
                lag_p95_seconds: worst(|s| s.lag_p95_seconds),
                lag_samples: c.iter().map(|s| s.lag_samples).sum(),
                lost_events: c.iter().map(|s| s.lost_events).sum(),
                burst: c.iter().any(|s| s.burst),
            })
        })
        .collect()
}

fn charts(out: &mut String, r: &RunReport) {
    let mut prev = 0.0;
    let kept: Vec<&Sample> = r
        .timeseries
        .iter()
        .filter(|s| {
            let keep = s.t - prev >= MIN_POINT_SECONDS;
            prev = s.t;
            keep
        })
        .collect();
    let per_point = kept.len().div_ceil(MAX_POINTS).max(1);
    let ts = downsample(&kept, per_point);
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
    let line = |name: &str, color, stroke, f: &dyn Fn(&Sample) -> Option<f64>| Series {
        name: name.to_owned(),
        color,
        stroke,
        points: ts.iter().map(|s| (s.t, f(s))).collect(),
    };

    // 1. Rates.
    let mut spans = burst_spans.clone();
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
    let rates = Chart {
        title: "Event rates (events/s)".to_owned(),
        unit: "/s",
        series: vec![
            line("target", GREY, Stroke::Halo, &|s| {
                Some(s.target_events_per_second)
            }),
            line("accepted", GREEN, Stroke::Solid, &|s| {
                Some(s.accepted_events_per_second)
            }),
            line("sent", BLUE, Stroke::Dashed, &|s| {
                Some(s.sent_events_per_second)
            }),
            line("failed requests/s", RED, Stroke::Solid, &|s| {
                Some(s.errors_per_second)
            }),
        ],
        lines,
        spans,
        marks: None,
        x_max: 0.0,
    };

    // 2. Request latency.
    let lat_max = ts
        .iter()
        .flat_map(|s| {
            [
                s.latency_p50_seconds,
                s.latency_p95_seconds,
                s.latency_p99_seconds,
            ]
        })
        .flatten()
        .fold(0.0, f64::max);
    let lat_threshold = threshold(r, id::LATENCY);
    let (k, unit) = time_scale(if lat_max > 0.0 {
        lat_max
    } else {
        lat_threshold.map_or(0.0, |v| v.target)
    });
    let latency = Chart {
        title: "Request latency".to_owned(),
        unit,
        series: vec![
            line("p50", BLUE, Stroke::Solid, &|s| {
                s.latency_p50_seconds.map(|v| v * k)
            }),
            line("p95", ORANGE, Stroke::Solid, &|s| {
                s.latency_p95_seconds.map(|v| v * k)
            }),
            line("p99", PURPLE, Stroke::Solid, &|s| {
                s.latency_p99_seconds.map(|v| v * k)
            }),
        ],
        lines: threshold_line(lat_threshold, k),
        spans: burst_spans.clone(),
        marks: None,
        x_max: 0.0,
    };

    // 3. Projection lag, with lost probe events.
    let lag_max = ts
        .iter()
        .flat_map(|s| [s.lag_p50_seconds, s.lag_p95_seconds])
        .flatten()
        .fold(0.0, f64::max);
    let lag_threshold = threshold(r, id::PROJECTION_LAG);
    let (k, unit) = time_scale(if lag_max > 0.0 {
        lag_max
    } else {
        lag_threshold.map_or(0.0, |v| v.target)
    });
    // Losses are counts, marked from every point, however short.
    let lost: Vec<f64> = r
        .timeseries
        .iter()
        .filter(|s| s.lost_events > 0)
        .map(|s| s.t)
        .collect();
    let lost_total: u64 = r.timeseries.iter().map(|s| s.lost_events).sum();
    let lag = Chart {
        title: "Projection lag".to_owned(),
        unit,
        series: vec![
            line("p50", BLUE, Stroke::Solid, &|s| {
                s.lag_p50_seconds.map(|v| v * k)
            }),
            line("p95", ORANGE, Stroke::Solid, &|s| {
                s.lag_p95_seconds.map(|v| v * k)
            }),
        ],
        lines: threshold_line(lag_threshold.filter(|v| v.status != Status::Skipped), k),
        spans: burst_spans,
        marks: Some(Marks {
            legend: format!("lost events ({lost_total})"),
            color: RED,
            xs: lost,
        }),
        x_max: 0.0,
    };

    out.push_str("<section id=\"charts\">\n<h2>Over time</h2>\n");
    // One time axis for all three, so they line up.
    let mut all = [rates, latency, lag];
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

fn threshold_line(v: Option<&Verdict>, k: f64) -> Vec<Line> {
    v.map(|v| Line {
        legend: format!("threshold: {} {}", v.name, format_target(v)),
        value: v.target * k,
        color: RED,
    })
    .into_iter()
    .collect()
}

fn quantile_rows(out: &mut String, q: &Quantiles, count: &str) {
    let f = |v: Option<f64>| v.map_or_else(|| "-".to_owned(), |x| format_value(x, Unit::Seconds));
    let _ = write!(
        out,
        "<tr><td>{count}</td><td class=\"num\">{}</td></tr>\
         <tr><td>p50</td><td class=\"num\">{}</td></tr>\
         <tr><td>p95</td><td class=\"num\">{}</td></tr>\
         <tr><td>p99</td><td class=\"num\">{}</td></tr>\
         <tr><td>max</td><td class=\"num\">{}</td></tr>",
        q.count,
        f(q.p50),
        f(q.p95),
        f(q.p99),
        f(q.max)
    );
}

fn totals(out: &mut String, t: &SpanTotals) {
    let err = if t.requests > 0 {
        format!(
            " ({})",
            format_value(t.errors as f64 / t.requests as f64, Unit::Ratio)
        )
    } else {
        String::new()
    };
    out.push_str("<section id=\"totals\">\n<h2>Totals</h2>\n<div class=\"totals\">\n");
    let _ = writeln!(
        out,
        "<div><h3>Traffic</h3><table>\
         <tr><td>seconds of traffic</td><td class=\"num\">{:.1}</td></tr>\
         <tr><td>events scheduled</td><td class=\"num\">{:.0}</td></tr>\
         <tr><td>events sent</td><td class=\"num\">{}</td></tr>\
         <tr><td>events accepted</td><td class=\"num\">{}</td></tr>\
         <tr><td>accepted rate</td><td class=\"num\">{}</td></tr>\
         <tr><td>requests</td><td class=\"num\">{}</td></tr>\
         <tr><td>errors</td><td class=\"num\">{}{}</td></tr>\
         </table></div>",
        finite_or_zero(t.seconds),
        finite_or_zero(t.events_scheduled),
        t.events_sent,
        t.events_accepted,
        escape(&rate(t.achieved_events_per_second)),
        t.requests,
        t.errors,
        escape(&err),
    );
    out.push_str("<div><h3>Request latency</h3><table>");
    quantile_rows(out, &t.latency_seconds, "requests");
    out.push_str("</table></div>\n<div><h3>Projection lag</h3><table>");
    quantile_rows(out, &t.projection_lag_seconds, "lag samples");
    let _ = writeln!(
        out,
        "<tr><td>lost events</td><td class=\"num\">{}</td></tr>\
         <tr><td>late events</td><td class=\"num\">{}</td></tr></table></div>",
        t.lost_events, t.late_events
    );
    out.push_str("</div>\n</section>\n");
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::oneshot::recorder::Sample;
    use crate::oneshot::report::{CapacityStep, ModeKind, Phase, Planned, PlannedBurst, Tool};
    use crate::oneshot::thresholds::Comparison;

    fn verdict(id: &'static str, name: &str, status: Status, value: Option<f64>) -> Verdict {
        let (target, unit) = match id {
            id::LATENCY => (0.2, Unit::Seconds),
            id::PROJECTION_LAG => (0.1, Unit::Seconds),
            id::ERROR_RATE => (0.001, Unit::Ratio),
            id::EVENTS_PER_SECOND => (99.0, Unit::EventsPerSecond),
            _ => (0.0, Unit::Count),
        };
        Verdict {
            id,
            name: name.to_owned(),
            status,
            value,
            comparison: if id == id::EVENTS_PER_SECOND {
                Comparison::AtLeast
            } else {
                Comparison::AtMost
            },
            target,
            unit,
            detail: None,
        }
    }

    fn quantiles() -> Quantiles {
        Quantiles {
            count: 10,
            p50: Some(0.01),
            p95: Some(0.05),
            p99: None,
            max: Some(0.3),
        }
    }

    fn totals() -> SpanTotals {
        SpanTotals {
            seconds: 6.0,
            events_scheduled: 600.0,
            events_sent: 600,
            events_accepted: 590,
            achieved_events_per_second: 98.3,
            requests: 1000,
            errors: 3,
            latency_seconds: quantiles(),
            projection_lag_seconds: quantiles(),
            lost_events: 1,
            late_events: 0,
        }
    }

    /// Six seconds; the third has no latency or lag data, the fourth
    /// lost an event, seconds 2-4 are a burst.
    fn report() -> RunReport {
        let timeseries = (1..=6)
            .map(|i| {
                let t = f64::from(i);
                let q = |v: f64| (i != 3).then_some(v);
                Sample {
                    t,
                    target_events_per_second: if (2..=4).contains(&i) { 300.0 } else { 100.0 },
                    sent_events_per_second: 100.0,
                    accepted_events_per_second: 98.0,
                    requests_per_second: 180.0,
                    errors_per_second: 0.5,
                    latency_p50_seconds: q(0.02),
                    latency_p95_seconds: q(0.12),
                    latency_p99_seconds: q(0.25),
                    lag_p50_seconds: q(0.03),
                    lag_p95_seconds: q(0.08),
                    lag_samples: 3,
                    lost_events: u64::from(i == 4),
                    burst: (2..=4).contains(&i),
                }
            })
            .collect();
        let mut thresholds = vec![
            verdict(id::LATENCY, "p95 latency", Status::Pass, Some(0.12)),
            verdict(id::ERROR_RATE, "error rate", Status::Fail, Some(0.003)),
            verdict(
                id::EVENTS_PER_SECOND,
                "events/s accepted",
                Status::Pass,
                Some(98.3),
            ),
            verdict(
                id::PROJECTION_LAG,
                "projection lag p95",
                Status::Pass,
                Some(0.08),
            ),
            verdict(id::LOST_EVENTS, "lost events", Status::Fail, Some(1.0)),
        ];
        thresholds[2].detail = Some("99% of the 100.0/s scheduled".to_owned());
        RunReport {
            schema_version: 1,
            tool: Tool {
                name: "rehab-canary",
                version: "0.0.0-test",
            },
            profile: "nightly".to_owned(),
            mode: ModeKind::Steady,
            target: "https://api.example.test/v1/".to_owned(),
            started_at: "2026-11-24T15:01:02Z".to_owned(),
            finished_at: "2026-11-24T15:01:08Z".to_owned(),
            outcome: Outcome::Fail,
            aborted: None,
            interrupted: false,
            planned: Planned {
                duration_seconds: 6.0,
                events_per_second: 100.0,
                max_events_per_second: 2000.0,
                burst: Some(PlannedBurst {
                    every_seconds: 10.0,
                    duration_seconds: 3.0,
                    multiplier: 3.0,
                }),
                abort_on_fail: false,
            },
            thresholds,
            totals: totals(),
            bursts: vec![[1.0, 4.0]],
            capacity: None,
            timeseries,
        }
    }

    /// The `n`th chart (0-based) of the page.
    fn chart(html: &str, n: usize) -> &str {
        let start = html.match_indices("<svg").nth(n).expect("chart").0;
        let end = start + html[start..].find("</svg>").expect("end of chart");
        &html[start..end]
    }

    fn no_bad_numbers(html: &str) {
        for bad in ["NaN", "inf\"", "inf ", "inf,", "=\"-inf"] {
            assert!(!html.contains(bad), "{bad:?} in the page");
        }
    }

    #[test]
    fn the_page_has_three_titled_charts() {
        let html = render(&report());
        assert!(html.starts_with("<!doctype html>"));
        assert_eq!(html.matches("<svg").count(), 3);
        assert_eq!(html.matches("</svg>").count(), 3);
        for title in ["Event rates", "Request latency", "Projection lag"] {
            assert!(html.contains(&format!("<title>{title}")), "{title}");
        }
        for legend in ["target", "sent", "accepted", "p50", "p95", "p99"] {
            assert!(html.contains(&format!(">{legend}</text>")), "{legend}");
        }
        no_bad_numbers(&html);
    }

    #[test]
    fn the_threshold_table_has_every_row_and_marks_failures() {
        let r = report();
        let html = render(&r);
        let table = &html[html.find("<table class=\"thresholds\"").unwrap()..];
        let table = &table[..table.find("</table>").unwrap()];
        assert_eq!(table.matches("<tr class=").count(), 5);
        for v in &r.thresholds {
            let row = table
                .split("<tr ")
                .find(|row| row.contains(&format!("data-id=\"{}\"", v.id)))
                .unwrap();
            assert!(row.contains(&escape(&v.name)), "{}", v.name);
            let label = status_label(v.status);
            assert!(row.contains(&format!(">{label}</span>")), "{}", v.name);
            assert_eq!(row.starts_with("class=\"fail\""), v.failed(), "{}", v.name);
        }
        // Formatted as in the terminal table.
        assert!(table.contains("120.0 ms") && table.contains("&lt;= 200.0 ms"));
        assert!(table.contains("0.300 %") && table.contains("&gt;= 99.0/s"));
        assert!(table.contains("99% of the 100.0/s scheduled"));
        assert!(html.contains("<div class=\"outcome fail\""));
    }

    #[test]
    fn bursts_are_shaded_on_every_chart() {
        let mut r = report();
        let html = render(&r);
        for n in 0..3 {
            let c = chart(&html, n);
            assert_eq!(c.matches("class=\"span\"").count(), 1, "chart {n}");
            assert!(c.contains(">burst</text>"), "chart {n}");
        }
        r.bursts.clear();
        let html = render(&r);
        assert!(!html.contains("class=\"span\"") && !html.contains(">burst</text>"));
    }

    #[test]
    fn latency_and_lag_thresholds_are_dashed_lines() {
        let html = render(&report());
        assert!(!chart(&html, 0).contains("class=\"threshold\""));
        let lat = chart(&html, 1);
        assert_eq!(lat.matches("class=\"threshold\"").count(), 1);
        assert!(lat.contains("threshold: p95 latency &lt;= 200.0 ms"));
        // 200 ms is the top gridline: 0, 50, ..., 250 ms.
        assert!(lat.contains(">250 ms</text>"));
        let lag = chart(&html, 2);
        assert_eq!(lag.matches("class=\"threshold\"").count(), 1);
        assert!(lag.contains("threshold: projection lag p95 &lt;= 100.0 ms"));
    }

    #[test]
    fn missing_quantiles_are_gaps_not_zeros() {
        let html = render(&report());
        // Second 3 has no data: each quantile is two lines (1-2 and 4-6).
        assert_eq!(chart(&html, 1).matches("<polyline").count(), 3 * 2);
        assert_eq!(chart(&html, 2).matches("<polyline").count(), 2 * 2);
        // Rates always have data: one line each.
        assert_eq!(chart(&html, 0).matches("<polyline").count(), 4);
    }

    #[test]
    fn a_sliver_of_a_last_point_is_not_charted() {
        let mut r = report();
        let mut tail = r.timeseries[5].clone();
        tail.t += 0.0003;
        tail.target_events_per_second = 0.0;
        tail.lost_events = 2;
        r.timeseries.push(tail);
        let html = render(&r);
        let rates = chart(&html, 0);
        let first = &rates[rates.find("points=\"").unwrap() + 8..];
        let points = &first[..first.find('"').unwrap()];
        assert_eq!(points.split(' ').count(), 6, "{points}");
        // Its losses still count.
        assert_eq!(chart(&html, 2).matches("class=\"mark\"").count(), 2);
        assert!(html.contains(">lost events (3)</text>"));
    }

    #[test]
    fn lost_events_are_marked_on_the_lag_chart() {
        let html = render(&report());
        let lag = chart(&html, 2);
        assert_eq!(lag.matches("class=\"mark\"").count(), 1);
        assert!(lag.contains(">lost events (1)</text>"));
    }

    #[test]
    fn nothing_is_loaded_from_anywhere() {
        let r = report();
        let html = render(&r);
        let lower = html.to_lowercase();
        for bad in [
            "src=", "href=", "<link", "<script", "<img", "<iframe", "url(", "@import", "xlink",
        ] {
            assert!(!lower.contains(bad), "{bad} in the page");
        }
        // The only URL is the target, as text.
        assert_eq!(
            lower.matches("http").count(),
            html.matches(&escape(&r.target)).count()
        );
    }

    #[test]
    fn strings_from_the_config_are_escaped() {
        let mut r = report();
        r.profile = "<script>alert(1)</script>".to_owned();
        r.target = "http://x/\"><script>alert(2)</script>".to_owned();
        r.thresholds[0].name = "<b>latency</b>".to_owned();
        r.thresholds[2].detail = Some("<img src=x onerror=alert(3)>".to_owned());
        let html = render(&r);
        assert!(!html.contains("<script"));
        assert!(!html.contains("<b>") && !html.contains("<img"));
        assert!(html.contains("&lt;script&gt;alert(1)&lt;/script&gt;"));
        assert!(html.contains("&quot;&gt;&lt;script&gt;alert(2)"));
        assert!(html.contains("&lt;b&gt;latency&lt;/b&gt;"));
    }

    #[test]
    fn an_empty_run_renders_without_bad_numbers() {
        let mut r = report();
        r.timeseries.clear();
        r.bursts.clear();
        r.totals.seconds = 0.0;
        r.totals.latency_seconds = Quantiles {
            count: 0,
            p50: None,
            p95: None,
            p99: None,
            max: None,
        };
        r.thresholds[0].value = None;
        let html = render(&r);
        assert_eq!(html.matches("<svg").count(), 3);
        assert_eq!(html.matches(">no data</text>").count(), 3);
        no_bad_numbers(&html);

        // One second of all zeros.
        let mut one = report();
        one.timeseries.truncate(1);
        for s in &mut one.timeseries {
            s.target_events_per_second = 0.0;
            s.sent_events_per_second = 0.0;
            s.accepted_events_per_second = 0.0;
            s.errors_per_second = 0.0;
            s.latency_p50_seconds = Some(0.0);
        }
        one.thresholds.clear();
        let html = render(&one);
        assert_eq!(html.matches("<svg").count(), 3);
        no_bad_numbers(&html);
    }

    #[test]
    fn a_long_run_is_folded_into_few_points_and_keeps_its_spikes() {
        let mut r = report();
        let one = r.timeseries[0].clone();
        // Three hours, one second each, with a single latency spike.
        r.timeseries = (1..=10_800)
            .map(|i| Sample {
                t: f64::from(i),
                latency_p99_seconds: Some(if i == 5_000 { 3.0 } else { 0.25 }),
                ..one.clone()
            })
            .collect();
        let html = render(&r);
        no_bad_numbers(&html);
        let latency = chart(&html, 1);
        // Every series is one polyline of at most MAX_POINTS points.
        for line in latency.split("<polyline").skip(1) {
            let pts = line
                .split("points=\"")
                .nth(1)
                .unwrap()
                .split('"')
                .next()
                .unwrap();
            assert!(
                pts.split(' ').count() <= MAX_POINTS,
                "{} points",
                pts.split(' ').count()
            );
        }
        assert_eq!(latency.matches("<polyline").count(), 3, "p50, p95, p99");
        // The one-second spike survives the folding and sets the scale.
        // (A 15-second mean would have drawn it at 0.43 s.)
        assert!(latency.contains(">3000 ms<"), "the axis reaches the spike");
        assert!(html.len() < 400_000, "{} bytes", html.len());
        assert!(html.contains("One point per 15 seconds"));
    }

    #[test]
    fn interrupted_and_aborted_runs_say_so() {
        let mut r = report();
        r.interrupted = true;
        r.aborted = Some(vec![id::ERROR_RATE, id::LOST_EVENTS]);
        let html = render(&r);
        assert!(html.contains("Interrupted"));
        assert!(html.contains("Aborted early"));
        assert!(html.contains("error rate, lost events could no longer pass"));
    }

    #[test]
    fn a_capacity_run_has_its_steps_table_and_step_spans() {
        let mut r = report();
        r.mode = ModeKind::Capacity;
        r.bursts.clear();
        let step = |rate: f64, from: f64, passed: bool| CapacityStep {
            events_per_second: rate,
            phase: if rate > 400.0 {
                Phase::Refine
            } else {
                Phase::Ramp
            },
            started_at: from,
            judged_from: from + 2.0,
            ended_at: from + 3.0,
            passed,
            canary_limited: !passed,
            totals: totals(),
            thresholds: vec![verdict(
                id::LATENCY,
                "p99 latency",
                if passed { Status::Pass } else { Status::Fail },
                Some(if passed { 0.1 } else { 0.3 }),
            )],
        };
        r.capacity = Some(Capacity {
            events_per_second: Some(200.0),
            stopped_by: StoppedBy::Refined,
            limited_by: Some(LimitedBy::Canary),
            steps: vec![step(200.0, 0.0, true), step(400.0, 3.0, false)],
        });
        r.thresholds = vec![Verdict {
            detail: Some("ramp stopped by refined".to_owned()),
            ..verdict(
                id::CAPACITY,
                "capacity within all SLOs",
                Status::Fail,
                Some(200.0),
            )
        }];
        let html = render(&r);
        let steps = &html[html.find("<table class=\"steps\"").unwrap()..];
        let steps = &steps[..steps.find("</table>").unwrap()];
        assert_eq!(steps.matches("<tr class=").count(), 2);
        assert!(steps.contains("<tr class=\"pass best\">"));
        assert!(steps.contains("<tr class=\"fail\">"));
        assert!(steps.contains(">400.0/s<") && steps.contains("5–6 s"));
        // The failing step says which threshold failed.
        assert!(steps.contains("<span class=\"detail\">p99 latency</span>"));
        // The column shows the judged percentile, named as configured.
        assert!(steps.contains(">p99 latency</th>"), "{steps}");
        assert!(steps.contains(">300.0 ms<"), "{steps}");
        assert!(html.contains("<div class=\"figure\">200.0/s</div>"));
        assert!(
            html.contains("Limited by the canary"),
            "limited_by is shown"
        );
        let rates = chart(&html, 0);
        assert_eq!(rates.matches("class=\"span\"").count(), 2);
        assert!(rates.contains(">judged step: pass</text>"));
        assert!(rates.contains(">judged step: fail</text>"));
        assert!(rates.contains(">capacity 200.0/s</text>"));
        // The latency threshold comes from the steps' rows.
        assert!(chart(&html, 1).contains("class=\"threshold\""));
        no_bad_numbers(&html);
    }
}

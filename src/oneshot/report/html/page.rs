//! The page around the charts: skeleton, header, capacity steps, threshold
//! table and totals, with the words that explain them.

use std::fmt::Write;

use super::{charts, rate, trim_num, Esc};
use crate::oneshot::broadway::Broadway;
use crate::oneshot::report::table::{
    format_critical, format_target, format_value, outcome_label, status_label,
};
use crate::oneshot::report::{Capacity, LimitedBy, Quantiles, RunReport, SpanTotals, StoppedBy};
use crate::oneshot::thresholds::{id, FailOn, Status, Unit, Verdict};

const STYLE: &str = include_str!("report.css");

/// The whole report page.
pub fn render(r: &RunReport) -> String {
    let mut out = String::new();
    let _ = write!(
        out,
        "<!doctype html>\n<html lang=\"en\">\n<head>\n<meta charset=\"utf-8\">\n\
         <meta name=\"viewport\" content=\"width=device-width, initial-scale=1\">\n\
         <title>{} · {} · rehab-canary</title>\n<style>\n{STYLE}</style>\n</head>\n<body>\n<main>\n",
        outcome_label(r.outcome),
        Esc(&r.profile),
    );
    header(&mut out, r);
    if let Some(c) = &r.capacity {
        capacity(&mut out, c);
    }
    thresholds(&mut out, &r.thresholds);
    if let Some(b) = &r.broadway {
        broadway(&mut out, b);
    }
    charts::section(&mut out, r);
    totals(&mut out, &r.totals);
    let _ = write!(
        out,
        "<footer>{} {} · schema {} · the same data is in <code>summary.json</code></footer>\n\
         </main>\n</body>\n</html>\n",
        Esc(r.tool.name),
        Esc(r.tool.version),
        r.schema_version
    );
    out
}

/// A table cell. Text and figures are escaped as they are written; only
/// markup built in this module goes in as it is.
enum Td<'a> {
    Text(&'a str),
    /// Right-aligned, as figures are.
    Num(String),
    Html(String),
}

/// `<tr …>` (as `open`) and its cells. No line break after: the totals keep
/// a table's rows on one line, the other tables put each on its own.
fn row(out: &mut String, open: &str, cells: &[Td]) {
    out.push_str(open);
    for cell in cells {
        let _ = match cell {
            Td::Text(t) => write!(out, "<td>{}</td>", Esc(t)),
            Td::Num(t) => write!(out, "<td class=\"num\">{}</td>", Esc(t)),
            Td::Html(h) => write!(out, "<td>{h}</td>"),
        };
    }
    out.push_str("</tr>");
}

/// A titled two-column table of the totals: label, figure.
fn figures(out: &mut String, title: &str, rows: &[(&str, String)]) {
    let _ = write!(out, "<div><h3>{title}</h3><table>");
    for (label, value) in rows {
        row(out, "<tr>", &[Td::Text(label), Td::Num(value.clone())]);
    }
    out.push_str("</table></div>\n");
}

/// Small grey text after a pill: a row's detail, a step's failed rows.
fn detail(text: &str) -> String {
    format!("<span class=\"detail\">{}</span>", Esc(text))
}

/// A red note under the header (amber with `class` "warn"): `strong` says
/// what happened, `text` more.
fn note(out: &mut String, class: &str, strong: &str, text: &str) {
    let _ = writeln!(
        out,
        "<div class=\"note{}{class}\"><strong>{strong}</strong> {}</div>",
        if class.is_empty() { "" } else { " " },
        Esc(text)
    );
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
        LimitedBy::Target => {
            "Limited by the target: at the lowest failing rate the canary sent its full schedule."
        }
        LimitedBy::Canary => {
            "Limited by the canary: it could not send the lowest failing rate (see Sent). Give it more \
             CPU or shard it to measure higher; the target may sustain more."
        }
        LimitedBy::Ceiling => {
            "Limited by the rate ceiling traffic.max_events_per_second; raise it to look higher."
        }
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

/// `2026-11-24T15:01:02Z` → `2026-11-24 15:01:02 UTC`.
fn timestamp(rfc3339: &str) -> String {
    match rfc3339.strip_suffix('Z') {
        Some(t) if t.len() == 19 && t.as_bytes()[10] == b'T' => {
            format!("{} {} UTC", &t[..10], &t[11..])
        }
        _ => rfc3339.to_owned(),
    }
}

fn finite_or_zero(v: f64) -> f64 {
    if v.is_finite() {
        v
    } else {
        0.0
    }
}

/// A latency in the table's unit, `-` without data.
fn seconds(v: Option<f64>) -> String {
    v.map_or_else(|| "-".to_owned(), |x| format_value(x, Unit::Seconds))
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
        mode = r.mode.as_str(),
        profile = Esc(&r.profile),
        target = Esc(&r.target),
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
        let _ = write!(out, "<div><dt>{k}</dt><dd>{}</dd></div>", Esc(&v));
    }
    out.push_str("</dl>\n");
    if let Some(ids) = &r.aborted {
        let names: Vec<&str> = ids
            .iter()
            .map(|i| {
                r.thresholds
                    .iter()
                    .find(|v| v.id == *i)
                    .map_or(*i, |v| v.name.as_str())
            })
            .collect();
        note(
            out,
            "",
            "Aborted early",
            &format!(
                "(abort_on_fail): {} could no longer pass.",
                names.join(", ")
            ),
        );
    }
    if r.interrupted {
        note(
            out,
            "",
            "Interrupted",
            "(SIGINT/SIGTERM) before the planned end; an interrupted run fails.",
        );
    }
    let warned: Vec<&str> = r.warnings().map(|v| v.name.as_str()).collect();
    if !warned.is_empty() {
        let verdict = match r.fail_on {
            FailOn::Critical => "with --fail-on critical (the default) a warning passes the run",
            FailOn::Warn => "with --fail-on warn a warning fails the run",
        };
        note(
            out,
            "warn",
            "Past the target, within critical:",
            &format!("{}; {verdict}.", warned.join(", ")),
        );
    }
    out.push_str("</header>\n");
}

fn pill(s: Status) -> String {
    let l = status_label(s);
    format!("<span class=\"pill {}\">{l}</span>", l.to_lowercase())
}

fn thresholds(out: &mut String, rows: &[Verdict]) {
    out.push_str(
        "<section id=\"thresholds\">\n<h2>Thresholds</h2>\n<table class=\"thresholds\">\
         <thead><tr><th>Threshold</th><th class=\"num\">Value</th><th class=\"num\">Target</th>\
         <th class=\"num\">Critical</th><th>Result</th></tr></thead>\n<tbody>\n",
    );
    for v in rows {
        let value = v
            .value
            .map_or_else(|| "-".to_owned(), |x| format_value(x, v.unit));
        let detail = v.detail.as_deref().map_or_else(String::new, detail);
        let open = format!(
            "<tr class=\"{}\" data-id=\"{}\">",
            status_label(v.status).to_lowercase(),
            Esc(v.id)
        );
        row(
            out,
            &open,
            &[
                Td::Text(&v.name),
                Td::Num(value),
                Td::Num(format_target(v)),
                Td::Num(format_critical(v)),
                Td::Html(format!("{}{detail}", pill(v.status))),
            ],
        );
        out.push('\n');
    }
    out.push_str("</tbody></table>\n</section>\n");
}

fn capacity(out: &mut String, c: &Capacity) {
    let figure = c.events_per_second.map_or_else(|| "none".to_owned(), rate);
    let _ = write!(
        out,
        "<section id=\"capacity\">\n<h2>Capacity</h2>\n<div class=\"capacity-figure\">\
         <div class=\"figure{}\">{}</div><div>the highest rate within every threshold's target \
         <span class=\"muted\">· ramp stopped: {}</span></div></div>\n",
        if c.events_per_second.is_some() {
            ""
        } else {
            " none"
        },
        Esc(&figure),
        stopped_by(c.stopped_by)
    );
    if let Some(l) = c.limited_by {
        let _ = writeln!(out, "<p class=\"muted\">{}</p>", limited_by(l));
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
        Esc(lat_head),
        Esc(&lag_head),
    );
    for (i, s) in c.steps.iter().enumerate() {
        let t = &s.totals;
        let err = if t.requests > 0 {
            t.errors as f64 / t.requests as f64
        } else {
            0.0
        };
        let sent = if t.seconds > 0.0 {
            t.events_sent as f64 / t.seconds
        } else {
            0.0
        };
        // A step is judged at the targets: a WARN fails it too.
        let failed: Vec<&str> = s
            .thresholds
            .iter()
            .filter(|v| v.missed_target())
            .map(|v| v.name.as_str())
            .collect();
        let (cls, result) = if s.passed {
            let best = c.events_per_second == Some(s.events_per_second);
            (if best { "pass best" } else { "pass" }, pill(Status::Pass))
        } else {
            let why = if failed.is_empty() {
                String::new()
            } else {
                detail(&failed.join(", "))
            };
            ("fail", format!("{}{why}", pill(Status::Fail)))
        };
        row(
            out,
            &format!("<tr class=\"{cls}\">"),
            &[
                Td::Num((i + 1).to_string()),
                Td::Num(rate(s.events_per_second)),
                Td::Text(s.phase.as_str()),
                Td::Num(format!(
                    "{:.0}–{:.0} s",
                    finite_or_zero(s.judged_from),
                    finite_or_zero(s.ended_at)
                )),
                Td::Num(rate(sent)),
                Td::Num(rate(t.achieved_events_per_second)),
                Td::Num(seconds(s.judged_value(id::LATENCY))),
                Td::Num(format_value(err, Unit::Ratio)),
                Td::Num(seconds(s.judged_value(id::PROJECTION_LAG))),
                Td::Num(t.lost_events.to_string()),
                Td::Html(result),
            ],
        );
        out.push('\n');
    }
    if c.steps.is_empty() {
        out.push_str("<tr><td colspan=\"11\" class=\"muted\">no step was judged</td></tr>\n");
    }
    out.push_str("</tbody></table>\n</section>\n");
}

/// The Broadway phases: how each went on its own, with the service's
/// pushback and queue depth.
fn broadway(out: &mut String, b: &Broadway) {
    let figure = b
        .batched_capacity_events_per_second
        .map_or_else(|| "none".to_owned(), rate);
    let _ = write!(
        out,
        "<section id=\"broadway\">\n<h2>Broadway phases</h2>\n<p class=\"muted\">Each phase is \
         judged on its own. The run's verdict above judges <em>sustained</em> and \
         <em>bursts</em> together, with every lost event of the run; the ramp and backpressure \
         phases are shown, not gated on. Batched capacity (the highest ramp step within every \
         target): <strong>{}</strong>.</p>\n<table class=\"steps\"><thead><tr><th>Phase</th>\
         <th class=\"num\">Time</th><th class=\"num\">Rate</th><th class=\"num\">Batched</th>\
         <th class=\"num\">Accepted</th><th class=\"num\">Latency</th><th class=\"num\">Lag</th>\
         <th class=\"num\">Batch latency</th><th class=\"num\">429</th><th class=\"num\">503</th>\
         <th class=\"num\">Queue depth</th><th>Result</th></tr></thead>\n<tbody>\n",
        Esc(&figure)
    );
    for p in &b.phases {
        let status = if p.thresholds.iter().any(Verdict::failed) {
            Status::Fail
        } else if p.thresholds.iter().any(Verdict::missed_target) {
            Status::Warn
        } else {
            Status::Pass
        };
        let value = |row: &str| {
            seconds(
                p.thresholds
                    .iter()
                    .find(|v| v.id == row)
                    .and_then(|v| v.value),
            )
        };
        let depth = |v: Option<f64>| v.map_or_else(|| "–".to_owned(), |d| format!("{d:.0}"));
        let name = p.name.as_str();
        let gated = if p.judged {
            ""
        } else {
            " <span class=\"muted\">not gated</span>"
        };
        row(
            out,
            &format!("<tr class=\"{}\">", status_label(status).to_lowercase()),
            &[
                Td::Text(name),
                Td::Num(format!(
                    "{:.0}–{:.0} s",
                    finite_or_zero(p.started_at),
                    finite_or_zero(p.ended_at)
                )),
                Td::Num(rate(p.events_per_second)),
                Td::Num(format!("{:.0} %", p.batch_share * 100.0)),
                Td::Num(rate(p.totals.achieved_events_per_second)),
                Td::Num(value(id::LATENCY)),
                Td::Num(value(id::PROJECTION_LAG)),
                Td::Num(value(id::BATCH_LATENCY)),
                Td::Num(p.backpressure.too_many_requests.to_string()),
                Td::Num(p.backpressure.unavailable.to_string()),
                Td::Num(format!(
                    "{} → {} (max {})",
                    depth(p.queue_depth.start),
                    depth(p.queue_depth.end),
                    depth(p.queue_depth.max)
                )),
                Td::Html(format!("{}{gated}", pill(status))),
            ],
        );
        out.push('\n');
    }
    out.push_str("</tbody></table>\n</section>\n");
}

fn quantile_rows(q: &Quantiles, count: &'static str) -> [(&'static str, String); 5] {
    [
        (count, q.count.to_string()),
        ("p50", seconds(q.p50)),
        ("p95", seconds(q.p95)),
        ("p99", seconds(q.p99)),
        ("max", seconds(q.max)),
    ]
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
    figures(
        out,
        "Traffic",
        &[
            (
                "seconds of traffic",
                format!("{:.1}", finite_or_zero(t.seconds)),
            ),
            (
                "events scheduled",
                format!("{:.0}", finite_or_zero(t.events_scheduled)),
            ),
            ("events sent", t.events_sent.to_string()),
            ("events accepted", t.events_accepted.to_string()),
            ("accepted rate", rate(t.achieved_events_per_second)),
            ("requests", t.requests.to_string()),
            ("errors", format!("{}{err}", t.errors)),
        ],
    );
    figures(
        out,
        "Request latency",
        &quantile_rows(&t.latency_seconds, "requests"),
    );
    let mut lag = quantile_rows(&t.projection_lag_seconds, "lag samples").to_vec();
    lag.push(("lost events", t.lost_events.to_string()));
    lag.push(("late events", t.late_events.to_string()));
    figures(out, "Projection lag", &lag);
    figures(
        out,
        "Batch latency",
        &quantile_rows(&t.batch_visible_seconds, "batches"),
    );
    out.push_str("</div>\n</section>\n");
}

//! The terminal table, in the spirit of the seed's "Interpreting Results":
//! one row per threshold with its value, target, critical level and
//! PASS, WARN or FAIL.

use std::fmt::Write;

use super::{LimitedBy, RunReport, RunVerdict};
use crate::oneshot::thresholds::{id, Comparison, Status, Unit, Verdict};

/// A value in the unit people read it in: ms, %, events/s, a count.
pub fn format_value(v: f64, unit: Unit) -> String {
    match unit {
        Unit::Seconds if v < 1.0 => format!("{:.1} ms", v * 1000.0),
        Unit::Seconds => format!("{v:.2} s"),
        Unit::Ratio => format!("{:.3} %", v * 100.0),
        Unit::EventsPerSecond => format!("{v:.1}/s"),
        Unit::Count => format!("{v:.0}"),
    }
}

fn format_level(v: &Verdict, level: f64) -> String {
    let op = match v.comparison {
        Comparison::AtMost => "<=",
        Comparison::AtLeast => ">=",
    };
    format!("{op} {}", format_value(level, v.unit))
}

pub fn format_target(v: &Verdict) -> String {
    format_level(v, v.target)
}

/// The critical level, or `-` for a row judged at one level.
pub fn format_critical(v: &Verdict) -> String {
    v.critical
        .map_or_else(|| "-".to_owned(), |c| format_level(v, c))
}

pub fn status_label(s: Status) -> &'static str {
    match s {
        Status::Pass => "PASS",
        Status::Warn => "WARN",
        Status::Fail => "FAIL",
        Status::Skipped => "skipped",
    }
}

pub fn outcome_label(o: RunVerdict) -> &'static str {
    match o {
        RunVerdict::Pass => "PASS",
        RunVerdict::Fail => "FAIL",
    }
}

/// Renders rows as aligned columns: THRESHOLD, VALUE, TARGET, CRITICAL, RESULT.
pub fn threshold_rows(rows: &[Verdict]) -> String {
    let cells: Vec<[String; 5]> = rows
        .iter()
        .map(|v| {
            let value = v
                .value
                .map_or_else(|| "-".to_owned(), |x| format_value(x, v.unit));
            let result = match &v.detail {
                Some(d) if v.status != Status::Pass || v.value.is_none() => {
                    format!("{} ({d})", status_label(v.status))
                }
                _ => status_label(v.status).to_owned(),
            };
            [
                v.name.clone(),
                value,
                format_target(v),
                format_critical(v),
                result,
            ]
        })
        .collect();
    let header = ["THRESHOLD", "VALUE", "TARGET", "CRITICAL", "RESULT"].map(str::to_owned);
    let mut width = [0usize; 5];
    for row in std::iter::once(&header).chain(&cells) {
        for (w, c) in width.iter_mut().zip(row) {
            *w = (*w).max(c.chars().count());
        }
    }
    let mut out = String::new();
    for row in std::iter::once(&header).chain(&cells) {
        let line = format!(
            "{:<w0$}  {:>w1$}  {:<w2$}  {:<w3$}  {}",
            row[0],
            row[1],
            row[2],
            row[3],
            row[4],
            w0 = width[0],
            w1 = width[1],
            w2 = width[2],
            w3 = width[3],
        );
        let _ = writeln!(out, "{}", line.trim_end());
    }
    out
}

/// The whole terminal summary of a run.
pub fn render(r: &RunReport) -> String {
    let mut out = String::new();
    let t = &r.totals;
    let _ = writeln!(
        out,
        "rehab-canary {} profile {:?} against {}: {:.0} s, {} requests, {} events accepted of {} sent",
        r.mode.as_str(), r.profile, r.target, t.seconds, t.requests, t.events_accepted, t.events_sent
    );
    if let Some(c) = &r.capacity {
        let _ = writeln!(out);
        let _ = writeln!(
            out,
            "{:>10}  {:<7} {:>10}  {:>10}  {:>10}  {:>9}  {:>10}  {:>5}  RESULT",
            "RATE", "PHASE", "SENT", "ACCEPTED", "LATENCY", "ERRORS", "LAG", "LOST"
        );
        for s in &c.steps {
            let sent = if s.totals.seconds > 0.0 {
                s.totals.events_sent as f64 / s.totals.seconds
            } else {
                0.0
            };
            let q = |v: Option<f64>| {
                v.map_or_else(|| "-".to_owned(), |x| format_value(x, Unit::Seconds))
            };
            let err = if s.totals.requests > 0 {
                s.totals.errors as f64 / s.totals.requests as f64
            } else {
                0.0
            };
            let _ = writeln!(
                out,
                "{:>10}  {:<7} {:>10}  {:>10}  {:>10}  {:>9}  {:>10}  {:>5}  {}",
                format_value(s.events_per_second, Unit::EventsPerSecond),
                s.phase,
                format_value(sent, Unit::EventsPerSecond),
                format_value(s.totals.achieved_events_per_second, Unit::EventsPerSecond),
                q(s.judged_value(id::LATENCY)),
                format_value(err, Unit::Ratio),
                q(s.judged_value(id::PROJECTION_LAG)),
                s.totals.lost_events,
                if s.passed { "PASS" } else { "FAIL" },
            );
        }
        let _ = writeln!(
            out,
            "capacity: {} (ramp stopped by {}; limited by {})",
            c.events_per_second.map_or_else(
                || "none".to_owned(),
                |v| format_value(v, Unit::EventsPerSecond)
            ),
            c.stopped_by,
            c.limited_by.map_or("nothing yet", LimitedBy::as_str),
        );
        if c.limited_by == Some(LimitedBy::Canary) {
            let _ = writeln!(
                out,
                "note: the canary itself could not send the failing rate (SENT below the schedule); \
                 give it more CPU or shard it to measure higher"
            );
        }
    }
    if let Some(b) = &r.broadway {
        let _ = writeln!(out);
        out.push_str(&crate::oneshot::broadway::table(b));
    }
    let _ = writeln!(out);
    out.push_str(&threshold_rows(&r.thresholds));
    let _ = writeln!(out);
    if let Some(ids) = &r.aborted {
        let _ = writeln!(
            out,
            "aborted early (abort_on_fail): {} cannot pass",
            ids.join(", ")
        );
    }
    if r.interrupted {
        let _ = writeln!(out, "interrupted before the planned end");
    }
    let warned: Vec<&str> = r.warnings().map(|v| v.name.as_str()).collect();
    if warned.is_empty() {
        let _ = writeln!(out, "RESULT: {}", outcome_label(r.outcome));
    } else {
        let _ = writeln!(
            out,
            "WARN (past the target, within critical): {}",
            warned.join(", ")
        );
        let _ = writeln!(
            out,
            "RESULT: {} (--fail-on {})",
            outcome_label(r.outcome),
            r.fail_on.as_str()
        );
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    use crate::oneshot::thresholds::FailOn;

    fn row(id: &'static str, status: Status, critical: Option<f64>) -> Verdict {
        Verdict {
            id,
            name: id.replace('_', " "),
            status,
            value: Some(0.3),
            comparison: Comparison::AtMost,
            target: 0.2,
            critical,
            unit: Unit::Seconds,
            detail: None,
        }
    }

    #[test]
    fn rows_show_both_levels_and_the_three_words() {
        let text = threshold_rows(&[
            row("latency", Status::Warn, Some(0.5)),
            row("lost_events", Status::Fail, None),
        ]);
        let lines: Vec<&str> = text.lines().collect();
        let header: Vec<&str> = lines[0].split_whitespace().collect();
        assert_eq!(
            header,
            ["THRESHOLD", "VALUE", "TARGET", "CRITICAL", "RESULT"]
        );
        assert!(
            lines[1].ends_with("<= 200.0 ms  <= 500.0 ms  WARN"),
            "{text}"
        );
        // One level: no critical; columns line up.
        let at = lines[0].find("CRITICAL").unwrap();
        assert_eq!(&lines[2][at..at + 2], "- ", "{text}");
        assert!(lines[2].ends_with("FAIL"), "{text}");
        assert_eq!(status_label(Status::Pass), "PASS");
    }

    #[test]
    fn the_result_line_names_the_warnings_and_the_fail_on_level() {
        let mut r = crate::oneshot::report::html::tests::report();
        r.thresholds = vec![row("latency", Status::Warn, Some(0.5))];
        r.fail_on = FailOn::Critical;
        r.outcome = RunVerdict::Pass;
        let text = render(&r);
        assert!(
            text.contains("WARN (past the target, within critical): latency\nRESULT: PASS (--fail-on critical)\n"),
            "{text}"
        );
        r.thresholds[0].status = Status::Pass;
        assert!(render(&r).ends_with("RESULT: PASS\n"));
    }

    #[test]
    fn values_read_in_their_units() {
        assert_eq!(format_value(0.156, Unit::Seconds), "156.0 ms");
        assert_eq!(format_value(2.5, Unit::Seconds), "2.50 s");
        assert_eq!(format_value(0.0003, Unit::Ratio), "0.030 %");
        assert_eq!(format_value(1247.0, Unit::EventsPerSecond), "1247.0/s");
        assert_eq!(format_value(0.0, Unit::Count), "0");
    }
}

use super::fold::MAX_POINTS;
use super::render;
use crate::html::escape;
use crate::oneshot::recorder::Sample;
use crate::oneshot::report::table::status_label;
use crate::oneshot::report::{
    Capacity, CapacityStep, LimitedBy, ModeKind, Phase, Planned, PlannedBurst, Quantiles,
    RunReport, RunVerdict, SpanTotals, StoppedBy, Tool,
};
use crate::oneshot::thresholds::{id, Comparison, FailOn, Status, Unit, Verdict};

fn verdict(id: &'static str, name: &str, status: Status, value: Option<f64>) -> Verdict {
    let (target, critical, unit) = match id {
        id::LATENCY => (0.2, Some(0.5), Unit::Seconds),
        id::PROJECTION_LAG => (0.1, Some(1.0), Unit::Seconds),
        id::BATCH_LATENCY => (1.0, Some(2.0), Unit::Seconds),
        id::ERROR_RATE => (0.001, Some(0.01), Unit::Ratio),
        id::EVENTS_PER_SECOND => (99.0, Some(50.0), Unit::EventsPerSecond),
        _ => (0.0, None, Unit::Count),
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
        critical,
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
        batch_visible_seconds: quantiles(),
        lost_events: 1,
        late_events: 0,
    }
}

/// Six seconds; the third has no latency or lag data, the fourth
/// lost an event, seconds 2-4 are a burst.
pub(crate) fn report() -> RunReport {
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
                batch_visible_p95_seconds: None,
                backpressure_per_second: 0.0,
                queue_depth: None,
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
            Status::Warn,
            Some(0.3),
        ),
        verdict(
            id::BATCH_LATENCY,
            "batch latency p95",
            Status::Skipped,
            None,
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
        outcome: RunVerdict::Fail,
        fail_on: FailOn::Critical,
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
        broadway: None,
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
    assert_eq!(table.matches("<tr class=").count(), 6);
    assert!(table.contains("<th class=\"num\">Critical</th>"), "{table}");
    for v in &r.thresholds {
        let row = table
            .split("<tr ")
            .find(|row| row.contains(&format!("data-id=\"{}\"", v.id)))
            .unwrap();
        assert!(row.contains(&escape(&v.name)), "{}", v.name);
        let label = status_label(v.status);
        assert!(row.contains(&format!(">{label}</span>")), "{}", v.name);
        let class = label.to_lowercase();
        assert!(
            row.starts_with(&format!("class=\"{class}\"")),
            "{}: {row}",
            v.name
        );
    }
    // Formatted as in the terminal table, both levels.
    assert!(table.contains("120.0 ms") && table.contains("&lt;= 200.0 ms"));
    assert!(table.contains("&lt;= 500.0 ms"), "{table}");
    assert!(table.contains("0.300 %") && table.contains("&gt;= 99.0/s"));
    assert!(table.contains("&gt;= 50.0/s") && table.contains("&lt;= 1.000 %"));
    assert!(table.contains("99% of the 100.0/s scheduled"));
    // A warning row, and lost events with one level.
    let lag = table
        .split("<tr ")
        .find(|r| r.contains("projection_lag"))
        .unwrap();
    assert!(
        lag.contains("<span class=\"pill warn\">WARN</span>"),
        "{lag}"
    );
    let lost = table
        .split("<tr ")
        .find(|r| r.contains("lost_events"))
        .unwrap();
    assert!(lost.contains("<td class=\"num\">-</td>"), "{lost}");
    assert!(html.contains("<div class=\"outcome fail\""));
}

#[test]
fn warnings_are_named_under_the_header() {
    let mut r = report();
    r.thresholds.retain(|v| v.status != Status::Fail);
    r.outcome = RunVerdict::Pass;
    let html = render(&r);
    assert!(html.contains("<div class=\"outcome pass\""));
    let note = html
        .split("<div class=\"note warn\">")
        .nth(1)
        .expect("a warning note");
    assert!(note.contains("projection lag p95"), "{note}");
    assert!(note.contains("--fail-on critical"), "{note}");
    r.fail_on = FailOn::Warn;
    r.outcome = RunVerdict::Fail;
    let html = render(&r);
    assert!(html.contains("<div class=\"outcome fail\""));
    assert!(
        html.contains("--fail-on warn"),
        "the note says why it failed"
    );
    // No warning, no note.
    r.thresholds.retain(|v| v.status != Status::Warn);
    assert!(!render(&r).contains("note warn"));
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
    // Target and critical: 200 and 500 ms, the scale reaching both.
    let lat = chart(&html, 1);
    assert_eq!(lat.matches("class=\"threshold\"").count(), 2);
    assert!(lat.contains("target: p95 latency &lt;= 200.0 ms"));
    assert!(lat.contains("critical: &lt;= 500.0 ms"));
    assert!(lat.contains(">500 ms</text>"), "{lat}");
    // The lag data (80 ms) is far under the 1 s critical level: drawn at
    // the target only, the legend saying where the other line went.
    let lag = chart(&html, 2);
    assert_eq!(lag.matches("class=\"threshold\"").count(), 1);
    assert!(lag.contains("target: projection lag p95 &lt;= 100.0 ms"));
    assert!(
        lag.contains("critical: &lt;= 1.00 s (above the scale)"),
        "{lag}"
    );
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

#[test]
fn a_broadway_run_has_its_phases_table() {
    use crate::oneshot::broadway::{Broadway, Phase as BPhase, PhaseName, Pushback, QueueDepth};
    let mut r = report();
    r.mode = ModeKind::Broadway;
    let phase = |name, judged, status, depth: Option<f64>, pushed: u64| BPhase {
        name,
        started_at: 0.0,
        ended_at: 5.0,
        events_per_second: 60.0,
        batch_share: 1.0,
        bursts_as_batches: false,
        judged,
        totals: totals(),
        thresholds: vec![verdict(
            id::BATCH_LATENCY,
            "batch latency p95",
            status,
            Some(1.5),
        )],
        backpressure: Pushback {
            too_many_requests: 0,
            unavailable: pushed,
            retry_after: 0,
        },
        queue_depth: QueueDepth {
            start: Some(3.0),
            max: depth,
            end: depth,
        },
        steps: Vec::new(),
    };
    r.broadway = Some(Broadway {
        phases: vec![
            phase(PhaseName::Sustained, true, Status::Pass, Some(5.0), 0),
            phase(
                PhaseName::Backpressure,
                false,
                Status::Warn,
                Some(118.0),
                42,
            ),
        ],
        batched_capacity_events_per_second: None,
    });
    let html = render(&r);
    let section = &html[html.find("<section id=\"broadway\">").unwrap()..];
    let section = &section[..section.find("</section>").unwrap()];
    assert_eq!(section.matches("<tr class=").count(), 2);
    assert!(
        section.contains("<tr class=\"warn\"><td>backpressure</td>"),
        "{section}"
    );
    assert!(
        section.contains(">42<") && section.contains("3 → 118 (max 118)"),
        "{section}"
    );
    assert!(section.contains("not gated"));
    assert!(section.contains("Batched capacity") && section.contains("<strong>none</strong>"));
    no_bad_numbers(&html);
}

#[test]
fn batch_latency_and_the_queue_are_charted_when_the_run_has_them() {
    let mut r = report();
    for (i, s) in r.timeseries.iter_mut().enumerate() {
        s.batch_visible_p95_seconds = Some(0.4 + 0.1 * i as f64);
        s.queue_depth = Some(10.0 * i as f64);
        s.backpressure_per_second = if i > 3 { 5.0 } else { 0.0 };
    }
    r.thresholds.push(verdict(
        id::BATCH_LATENCY,
        "batch latency p95",
        Status::Pass,
        Some(0.5),
    ));
    r.thresholds
        .retain(|v| v.id != id::BATCH_LATENCY || v.status != Status::Skipped);
    let html = render(&r);
    assert_eq!(html.matches("<figure>").count(), 5);
    let batch = chart(&html, 3);
    assert!(batch.contains("Batch latency"), "{batch}");
    assert!(
        batch.contains("class=\"threshold\""),
        "target and critical lines"
    );
    let queue = chart(&html, 4);
    assert!(queue.contains("queue depth") && queue.contains("pushback/s"));
    assert!(queue.contains("class=\"span\""), "bursts shaded");
    no_bad_numbers(&html);
}

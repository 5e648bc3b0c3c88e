//! The lag section of `/status` and the landing page: per projection the last
//! lag, p50 and p95 ± the error bar over the last minute, the server-clock
//! lag where configured, and events lost in the last minute, plus the
//! running totals.

use std::fmt::Write as _;
use std::time::Duration;

use serde_json::json;

use super::audit_metrics::AuditSnapshot;
use super::batch_metrics::BatchSnapshot;
use super::metrics::{window_seconds, LagMetrics, ProjectionSnapshot};
use crate::html::escape;
use crate::status::StatusSection;

#[derive(Debug)]
pub struct LagStatus {
    pub metrics: LagMetrics,
    pub interval: Duration,
    pub timeout: Duration,
}

fn ms(v: Option<f64>) -> String {
    v.map_or_else(|| "–".to_owned(), |s| format!("{:.1} ms", s * 1e3))
}

/// `p95 ± error`: the error is the window's 95th percentile of the samples'
/// uncertainty.
fn pm(v: Option<f64>, err: Option<f64>) -> String {
    match (v, err) {
        (Some(v), Some(e)) => format!("{:.1} ± {:.1} ms", v * 1e3, e * 1e3),
        (v, _) => ms(v),
    }
}

impl StatusSection for LagStatus {
    fn key(&self) -> &'static str {
        "lag"
    }

    fn value(&self) -> serde_json::Value {
        json!({
            "interval_seconds": self.interval.as_secs_f64(),
            "timeout_seconds": self.timeout.as_secs_f64(),
            "window_seconds": window_seconds(),
            "in_flight": self.metrics.in_flight_now(),
            "projections": self.metrics.snapshot(),
            "batch": self.metrics.batch().snapshot(),
            "audit": self.metrics.audit().snapshot(),
        })
    }

    fn html(&self) -> Option<String> {
        let mut h = String::with_capacity(1024);
        let _ = write!(
            h,
            "<p>Probe interval {:.1} s, timeout {:.0} s; {} in flight. Quantiles and losses over \
             the last {:.0} s; ± is the 95th percentile of the samples' error bars. Server \
             clock: the service's own timestamps, where configured.</p>\n<table><tr>\
             <th>Projection</th><th>Last</th><th>p50</th><th>p95 ± error</th>\
             <th>Server clock p95</th><th>Weak</th><th>Lost (1 min)</th><th>Probes</th>\
             <th>Lost</th><th>Late</th><th>Errors</th><th>Rejected</th><th>Duplicated</th>\
             <th>Out of order</th></tr>\n",
            self.interval.as_secs_f64(),
            self.timeout.as_secs_f64(),
            self.metrics.in_flight_now(),
            window_seconds(),
        );
        for p in self.metrics.snapshot() {
            row(&mut h, &p);
        }
        h.push_str("</table>");
        batch(&mut h, &self.metrics.batch().snapshot());
        for a in self.metrics.audit().snapshot() {
            audit(&mut h, &a);
        }
        Some(h)
    }
}

/// One line on the batch probe: its newest batch and its totals.
fn batch(h: &mut String, b: &BatchSnapshot) {
    if b.probes_total == 0 {
        return;
    }
    let _ = write!(
        h,
        "<p>Batch probe: {} batches, {} events",
        b.probes_total, b.events_total
    );
    if let Some(last) = b.recent.first() {
        let _ = write!(
            h,
            "; newest batch of {}: every event visible after {}, the first after {}",
            last.events,
            pm(last.visible_seconds, last.visible_uncertainty_seconds),
            pm(
                last.first_visible_seconds,
                last.first_visible_uncertainty_seconds
            ),
        );
    }
    let bad = |n: u64| if n > 0 { " class=\"err\"" } else { "" };
    let _ = writeln!(
        h,
        ". <span{}>Lost {}</span>, late {}, duplicated {}, <span{}>failed batches {}</span>.</p>",
        bad(b.lost_total),
        b.lost_total,
        b.late_total,
        b.duplicated_total,
        bad(b.failed_total),
        b.failed_total,
    );
}

/// One line per audited projection: the integrity audit's totals.
fn audit(h: &mut String, a: &AuditSnapshot) {
    if a.audits_total == 0 {
        return;
    }
    let bad = |n: u64| if n > 0 { " class=\"err\"" } else { "" };
    let _ = writeln!(
        h,
        "<p>Integrity audit of {}: {} audits, {} old events re-read, <span{}>{} vanished</span>, \
         <span{}>{} duplicated</span>, {} not judged; {} remembered.</p>",
        escape(a.projection),
        a.audits_total,
        a.checked_total,
        bad(a.vanished_total),
        a.vanished_total,
        bad(a.duplicated_total),
        a.duplicated_total,
        a.unjudged_total,
        a.remembered,
    );
}

fn row(h: &mut String, p: &ProjectionSnapshot) {
    if !p.enabled {
        let _ = writeln!(
            h,
            "<tr><td>{}</td><td colspan=\"13\">disabled</td></tr>",
            escape(p.projection)
        );
        return;
    }
    let bad = |n: u64| if n > 0 { " class=\"err\"" } else { "" };
    let _ = writeln!(
        h,
        "<tr><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td{}>{}</td>\
         <td>{}</td><td{}>{}</td><td{}>{}</td><td{}>{}</td><td{}>{}</td><td{}>{}</td>\
         <td{}>{}</td></tr>",
        escape(p.projection),
        ms(p.last_seconds),
        ms(p.p50_seconds),
        pm(p.p95_seconds, p.p95_uncertainty_seconds),
        ms(p.server_clock_p95_seconds),
        p.weak_total,
        bad(p.lost_last_minute),
        p.lost_last_minute,
        p.probes_total,
        bad(p.lost_total),
        p.lost_total,
        bad(p.late_total),
        p.late_total,
        bad(p.error_total),
        p.error_total,
        bad(p.rejected_total),
        p.rejected_total,
        bad(p.duplicated_total),
        p.duplicated_total,
        bad(p.out_of_order_total),
        p.out_of_order_total,
    );
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::lag::metrics::Failure;
    use crate::lag::probe::Projection;

    #[test]
    fn status_and_page_show_each_projection() {
        let mut r = crate::metrics::Exposition::default();
        let m = LagMetrics::register(&mut r);
        m.set_enabled(Projection::Stream, true);
        crate::lag::metrics::tests::record(&m, Projection::Stream, 90, 4, None);
        m.failure(Projection::Stream, Failure::Lost);
        let s = LagStatus {
            metrics: m,
            interval: Duration::from_secs(1),
            timeout: Duration::from_secs(30),
        };
        let v = s.value();
        let stream = &v["projections"][0];
        assert_eq!(stream["projection"], "stream");
        assert_eq!(stream["last_seconds"], 0.09);
        assert_eq!(stream["lost_last_minute"], 1);
        assert!(stream["p95_seconds"].as_f64().is_some());
        assert_eq!(v["projections"][3]["enabled"], false);
        let html = s.html().unwrap();
        // HDR windows hold two significant digits: 90 ms reads 90.1.
        assert!(
            html.contains("<td>stream</td><td>90.0 ms</td><td>90.1 ms</td><td>90.1 ± 4.0 ms</td>"),
            "{html}"
        );
        assert!(html.contains("<td>work_queue</td><td colspan=\"13\">disabled</td>"));
        // No batch yet: no batch line.
        assert!(!html.contains("Batch probe"));
        assert_eq!(v["batch"]["probes_total"], 0);
        let u95 = stream["p95_uncertainty_seconds"].as_f64().unwrap();
        assert!((u95 - 0.004).abs() < 0.0001, "{u95}");
        assert_eq!(stream["recent"][0]["uncertainty_seconds"], 0.004);
    }
}

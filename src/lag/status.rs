//! The lag section of `/status` and the landing page: per projection the last
//! lag, p50 and p95 over the last minute, and events lost in the last minute,
//! plus the running totals.

use std::fmt::Write as _;
use std::time::Duration;

use serde_json::json;

use super::metrics::{window_seconds, LagMetrics, ProjectionSnapshot};
use crate::admin::{escape_html, StatusExtra};

#[derive(Debug)]
pub struct LagStatus {
    pub metrics: LagMetrics,
    pub interval: Duration,
    pub timeout: Duration,
}

fn ms(v: Option<f64>) -> String {
    v.map_or_else(|| "–".to_owned(), |s| format!("{:.1} ms", s * 1e3))
}

impl StatusExtra for LagStatus {
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
        })
    }

    fn html(&self) -> Option<String> {
        let mut h = String::with_capacity(1024);
        let _ = write!(
            h,
            "<p>Probe interval {:.1} s, timeout {:.0} s; {} in flight. Quantiles and losses over \
             the last {:.0} s.</p>\n<table><tr><th>Projection</th><th>Last</th><th>p50</th>\
             <th>p95</th><th>Lost (1 min)</th><th>Probes</th><th>Lost</th><th>Late</th>\
             <th>Errors</th><th>Rejected</th><th>Duplicated</th><th>Out of order</th></tr>\n",
            self.interval.as_secs_f64(),
            self.timeout.as_secs_f64(),
            self.metrics.in_flight_now(),
            window_seconds(),
        );
        for p in self.metrics.snapshot() {
            row(&mut h, &p);
        }
        h.push_str("</table>");
        Some(h)
    }
}

fn row(h: &mut String, p: &ProjectionSnapshot) {
    if !p.enabled {
        let _ = writeln!(
            h,
            "<tr><td>{}</td><td colspan=\"11\">disabled</td></tr>",
            escape_html(p.projection)
        );
        return;
    }
    let bad = |n: u64| if n > 0 { " class=\"err\"" } else { "" };
    let _ = writeln!(
        h,
        "<tr><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td{}>{}</td><td>{}</td><td{}>{}</td>\
         <td{}>{}</td><td{}>{}</td><td{}>{}</td><td{}>{}</td><td{}>{}</td></tr>",
        escape_html(p.projection),
        ms(p.last_seconds),
        ms(p.p50_seconds),
        ms(p.p95_seconds),
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
        let mut r = prometheus_client::registry::Registry::default();
        let m = LagMetrics::register(&mut r);
        m.set_enabled(Projection::Stream, true);
        m.record_lag(
            Projection::Stream,
            Duration::from_millis(90),
            Duration::from_millis(91),
            "e",
        );
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
        assert!(html.contains("<td>stream</td><td>90.0 ms</td>"), "{html}");
        assert!(html.contains("<td>work_queue</td><td colspan=\"11\">disabled</td>"));
    }
}

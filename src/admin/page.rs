//! `GET /`: a small self-contained HTML landing page, the at-a-glance view
//! when Grafana is not at hand. No external assets (the canary may run where
//! nothing else is reachable); every inserted value is HTML-escaped.

use crate::html::escape;
use std::fmt::Write;

use axum::extract::State;
use axum::http::header;
use axum::response::IntoResponse;

use super::status::Status;
use super::AdminState;

pub(super) async fn landing(State(state): State<AdminState>) -> impl IntoResponse {
    let status = Status::collect(&state.metrics, &state.info);
    let fragments = state.info.extras_html();
    (
        [
            (header::CONTENT_TYPE, "text/html; charset=utf-8"),
            (header::CACHE_CONTROL, "no-store"),
        ],
        render(&status, &fragments),
    )
}

fn ms(v: Option<f64>) -> String {
    v.map_or_else(|| "–".to_owned(), |s| format!("{:.1} ms", s * 1e3))
}

const STYLE: &str = "body{font-family:system-ui,sans-serif;margin:2em;color:#222}\
table{border-collapse:collapse}td,th{padding:.25em .8em;border-bottom:1px solid #ddd;text-align:right}\
th:first-child,td:first-child{text-align:left}.err{color:#b00}dt{font-weight:bold}\
dl{display:grid;grid-template-columns:max-content auto;gap:.2em 1em}";

/// Renders the page; `fragments` are the extras that render their own HTML.
/// `write!` into a `String` cannot fail, hence the ignored results.
pub(super) fn render(s: &Status, fragments: &[(&'static str, String)]) -> String {
    let snap = &s.snapshot;
    let mut h = String::with_capacity(4096);
    let _ = write!(
        h,
        "<!DOCTYPE html>\n<html lang=\"en\"><head><meta charset=\"utf-8\">\
         <meta http-equiv=\"refresh\" content=\"10\">\
         <title>rehab-canary</title><style>{STYLE}</style></head><body>\n\
         <h1>rehab-canary {version}</h1>\n<dl>\
         <dt>Target</dt><dd>{target}</dd>\
         <dt>Ready</dt><dd>{ready}</dd>\
         <dt>Target rate</dt><dd>{target_rate:.1} events/s</dd>\
         <dt>Achieved rate</dt><dd>{sent:.1} sent/s, {accepted:.1} accepted/s (last {window:.0} s)</dd>\
         <dt>Burst</dt><dd>{burst}</dd>\
         <dt>In flight</dt><dd>{in_flight}</dd>\
         <dt>Uptime</dt><dd>{uptime:.0} s</dd></dl>\n",
        version = escape(s.version),
        target = escape(&s.target),
        ready = if s.ready { "yes" } else { "no" },
        target_rate = snap.target_events_per_second,
        sent = snap.achieved_events_per_second.sent,
        accepted = snap.achieved_events_per_second.accepted,
        window = snap.window_seconds,
        burst = if snap.burst_active { "active" } else { "off" },
        in_flight = snap.in_flight,
        uptime = s.uptime_seconds,
    );
    let _ = write!(
        h,
        "<h2>Endpoints, last {:.0} s</h2>\n<table><tr><th>Endpoint</th><th>Requests</th>\
         <th>Errors</th><th>p50</th><th>p95</th><th>p99</th></tr>\n",
        snap.window_seconds
    );
    let active: Vec<_> = snap.endpoints.iter().filter(|e| e.requests > 0).collect();
    for e in &active {
        let class = if e.errors > 0 { " class=\"err\"" } else { "" };
        let _ = writeln!(
            h,
            "<tr><td>{}</td><td>{}</td><td{class}>{}</td><td>{}</td><td>{}</td><td>{}</td></tr>",
            escape(e.name),
            e.requests,
            e.errors,
            ms(e.p50),
            ms(e.p95),
            ms(e.p99),
        );
    }
    if active.is_empty() {
        h.push_str("<tr><td colspan=\"6\">No requests in the window.</td></tr>\n");
    }
    h.push_str("</table>\n");
    for (key, value) in &s.extras {
        if let Some((_, html)) = fragments.iter().find(|(k, _)| k == key) {
            let _ = write!(h, "<h2>{}</h2>\n{html}\n", escape(key));
            continue;
        }
        let pretty = serde_json::to_string_pretty(value).unwrap_or_default();
        let _ = write!(
            h,
            "<h2>{}</h2>\n<pre>{}</pre>\n",
            escape(key),
            escape(&pretty)
        );
    }
    h.push_str(
        "<p><a href=\"metrics\">Metrics</a> · <a href=\"status\">Status (JSON)</a> · \
         <a href=\"-/healthy\">Healthy</a> · <a href=\"-/ready\">Ready</a></p>\n</body></html>\n",
    );
    h
}

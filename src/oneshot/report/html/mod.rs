//! The self-contained HTML report: one HTML5 page with inline CSS and inline
//! SVG charts, no script and no external resource of any kind, so it can be
//! archived as a CI artifact and opened anywhere. What it shows, top down:
//! the outcome and the run's plan, the capacity found (capacity runs), the
//! threshold table, over-time charts of rates, latency and projection lag
//! (bursts shaded), and the totals.
//!
//! Every string from the report is escaped: profile names and targets come
//! from the user's config. The page keeps the shared `crate::html::escape`
//! rather than a template crate: its markup is a fixed skeleton around text
//! and numbers, so a few typed helpers ([`Esc`] and the cell and table
//! writers in `page`) are the only places text enters the page, without a
//! proc-macro dependency or a different byte output.

mod charts;
mod fold;
mod page;
mod svg;
#[cfg(test)]
pub(crate) mod tests;

use std::fmt;

use super::table::format_value;
use crate::html::escape;
use crate::oneshot::thresholds::Unit;

pub use page::render;

/// Text written into the page, escaped on the way (HTML content and quoted
/// attribute values alike).
struct Esc<'a>(&'a str);

impl fmt::Display for Esc<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&escape(self.0))
    }
}

fn rate(v: f64) -> String {
    format_value(v, Unit::EventsPerSecond)
}

/// `3` for 3.0, `2.5` for 2.5.
fn trim_num(v: f64) -> String {
    let s = format!("{v:.2}");
    s.trim_end_matches('0').trim_end_matches('.').to_owned()
}

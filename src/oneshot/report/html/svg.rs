//! A small line chart as inline SVG, for the HTML report: a title, a legend
//! above the plot, y from 0 with 1-2-5 ticks and gridlines, x in seconds
//! since the start, shaded spans (bursts, capacity steps), dashed horizontal
//! lines (thresholds) and tick marks along the bottom (lost events).
//!
//! Every coordinate written is finite: empty or all-zero series, a single
//! point and missing values (gaps) are all drawn without dividing by zero.

use std::fmt::Write;

use crate::html::escape;

const WIDTH: f64 = 960.0;
const LEFT: f64 = 70.0;
const RIGHT: f64 = 28.0;
const PLOT_HEIGHT: f64 = 230.0;
const LEGEND_ROW: f64 = 20.0;
/// Rough width of a 12 px sans-serif character, to lay out the legend.
const CHAR_WIDTH: f64 = 6.5;
/// A threshold line further above the data than this factor is not drawn
/// (it would flatten the data); the legend says it is above the scale.
const THRESHOLD_HEADROOM: f64 = 3.0;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Stroke {
    Solid,
    Dashed,
    /// Wide and pale, under the others: a reference such as the target rate.
    Halo,
}

/// One line: `(x, y)` points, `None` where there was no data (a gap).
#[derive(Debug, Clone)]
pub struct Series {
    pub name: String,
    pub color: &'static str,
    pub stroke: Stroke,
    pub points: Vec<(f64, Option<f64>)>,
}

/// A dashed horizontal line across the plot.
#[derive(Debug, Clone)]
pub struct Line {
    pub legend: String,
    pub value: f64,
    pub color: &'static str,
}

/// A shaded span of x, listed in the legend under `legend` (once per
/// distinct legend text); `label` is written at its top when it fits.
#[derive(Debug, Clone)]
pub struct Span {
    pub from: f64,
    pub to: f64,
    pub legend: String,
    pub fill: &'static str,
    pub label: Option<String>,
}

/// Short marks along the bottom of the plot at the given x.
#[derive(Debug, Clone)]
pub struct Marks {
    pub legend: String,
    pub color: &'static str,
    pub xs: Vec<f64>,
}

#[derive(Debug, Clone, Default)]
pub struct Chart {
    pub title: String,
    /// Appended to the y tick labels: `" ms"`, `"/s"`.
    pub unit: &'static str,
    pub series: Vec<Series>,
    pub lines: Vec<Line>,
    pub spans: Vec<Span>,
    pub marks: Option<Marks>,
    /// The x axis reaches at least this far (to line up charts); the data
    /// may take it further.
    pub x_max: f64,
}

enum Swatch {
    Line(&'static str, Stroke),
    Threshold(&'static str),
    Area(&'static str),
    Mark(&'static str),
}

/// A 1-2-5 step that splits `span` into about `n` parts (1 when `span`
/// is not a positive finite number).
pub fn nice_step(span: f64, n: f64) -> f64 {
    let raw = span / n;
    if !(raw.is_finite() && raw > 0.0) {
        return 1.0;
    }
    let mag = 10f64.powf(raw.log10().floor());
    let norm = raw / mag;
    let mult = if norm <= 1.0 {
        1.0
    } else if norm <= 2.0 {
        2.0
    } else if norm <= 5.0 {
        5.0
    } else {
        10.0
    };
    mult * mag
}

/// `v` with as many decimals as `step` needs.
fn tick_label(v: f64, step: f64) -> String {
    let decimals = if step >= 1.0 {
        0
    } else {
        (-step.log10().floor()).clamp(0.0, 6.0) as usize
    };
    format!("{v:.decimals$}")
}

/// Y ticks from 0: the step and the top of the axis.
fn y_axis(max: f64) -> (f64, f64) {
    // A little headroom: a line at the maximum stays off the top edge.
    let max = if max.is_finite() && max > 0.0 {
        max * 1.03
    } else {
        1.0
    };
    // Of the 1-2-5 step near a fifth of the range and the one below it, the
    // one with 4 to 8 gridlines and the lowest top (0-700 by 100 rather
    // than 0-800 by 200), the larger on a tie.
    let top_of = |step: f64| ((max / step) - 1e-9).ceil().max(1.0) * step;
    let big = nice_step(max, 5.0);
    let small = smaller_step(big);
    let fits = |step: f64| (4.0..=8.0).contains(&(top_of(step) / step).round());
    let step = match (fits(big), fits(small)) {
        (true, true) if top_of(small) < top_of(big) => small,
        (false, true) => small,
        _ => big,
    };
    (step, top_of(step))
}

/// The 1-2-5 step below `step`: 2000 → 1000 → 500 → 200.
fn smaller_step(step: f64) -> f64 {
    let mag = 10f64.powf(step.log10().floor());
    match (step / mag).round() as u32 {
        1 => mag / 2.0,
        2 => mag,
        _ => mag * 2.0,
    }
}

/// X ticks: 1-2-5 seconds up to 10 minutes, then whole minutes.
fn x_ticks(max: f64) -> (f64, Box<dyn Fn(f64) -> String>) {
    if max <= 600.0 {
        let step = nice_step(max, 8.0);
        (
            step,
            Box::new(move |v| format!("{} s", tick_label(v, step))),
        )
    } else {
        let minutes = [1.0, 2.0, 5.0, 10.0, 15.0, 20.0, 30.0, 60.0, 120.0, 240.0];
        let step = minutes
            .iter()
            .map(|m| m * 60.0)
            .find(|s| max / s <= 10.0)
            .unwrap_or_else(|| nice_step(max / 60.0, 8.0) * 60.0);
        (step, Box::new(|v| format!("{:.0} min", v / 60.0)))
    }
}

fn finite(v: Option<f64>) -> Option<f64> {
    v.filter(|v| v.is_finite())
}

impl Chart {
    /// The x range the chart needs: its data, spans and marks, at least 1.
    pub fn x_extent(&self) -> f64 {
        self.series
            .iter()
            .flat_map(|s| s.points.iter().map(|p| p.0))
            .chain(self.spans.iter().map(|s| s.to))
            .chain(self.marks.iter().flat_map(|m| m.xs.iter().copied()))
            .filter(|x| x.is_finite())
            .fold(1.0_f64, f64::max)
    }

    pub fn render(&self) -> String {
        let mut out = String::new();

        let x_max = match self.x_max {
            m if m.is_finite() => self.x_extent().max(m),
            _ => self.x_extent(),
        };
        let data_max = self
            .series
            .iter()
            .flat_map(|s| s.points.iter().filter_map(|p| finite(p.1)))
            .fold(0.0_f64, f64::max);
        let has_data = self
            .series
            .iter()
            .any(|s| s.points.iter().any(|p| finite(p.1).is_some()));
        // A threshold counts in the y range unless far above the data.
        let shown = |l: &Line| {
            l.value.is_finite()
                && l.value >= 0.0
                && (data_max <= 0.0 || l.value <= data_max * THRESHOLD_HEADROOM)
        };
        let mut y_want = self
            .lines
            .iter()
            .filter(|l| shown(l))
            .map(|l| l.value)
            .fold(data_max, f64::max);
        // Room for the span labels along the top, above the data.
        if self.spans.iter().any(|s| s.label.is_some()) {
            y_want *= 1.1;
        }
        let (y_step, y_top) = y_axis(y_want);

        // The legend, wrapped into rows above the plot.
        let mut legend: Vec<(String, Swatch)> = Vec::new();
        for s in &self.series {
            legend.push((s.name.clone(), Swatch::Line(s.color, s.stroke)));
        }
        for l in &self.lines {
            let text = if shown(l) {
                l.legend.clone()
            } else {
                format!("{} (above the scale)", l.legend)
            };
            legend.push((text, Swatch::Threshold(l.color)));
        }
        let mut seen: Vec<&str> = Vec::new();
        for s in &self.spans {
            if !seen.contains(&s.legend.as_str()) {
                seen.push(&s.legend);
                legend.push((s.legend.clone(), Swatch::Area(s.fill)));
            }
        }
        if let Some(m) = &self.marks {
            legend.push((m.legend.clone(), Swatch::Mark(m.color)));
        }
        let mut placed = Vec::new();
        let (mut lx, mut row) = (LEFT, 0.0);
        for (text, swatch) in legend {
            let w = 26.0 + text.chars().count() as f64 * CHAR_WIDTH;
            if lx > LEFT && lx + w > WIDTH - RIGHT {
                lx = LEFT;
                row += 1.0;
            }
            placed.push((lx, row, text, swatch));
            lx += w + 18.0;
        }
        let rows = if placed.is_empty() { 0.0 } else { row + 1.0 };
        let legend_top = 38.0;
        let top = legend_top + rows * LEGEND_ROW + 10.0;
        let bottom = top + PLOT_HEIGHT;
        let height = bottom + 44.0;
        let (left, right) = (LEFT, WIDTH - RIGHT);
        let pw = right - left;
        let px = |x: f64| left + (x.clamp(0.0, x_max) / x_max) * pw;
        let py = |y: f64| bottom - (y.clamp(0.0, y_top) / y_top) * PLOT_HEIGHT;

        let title = escape(&self.title);
        let _ = write!(
            out,
            "<svg class=\"chart\" viewBox=\"0 0 {WIDTH:.0} {height:.0}\" width=\"{WIDTH:.0}\" \
             height=\"{height:.0}\" role=\"img\" aria-label=\"{title}\">\
             <title>{title}</title>\
             <text class=\"chart-title\" x=\"{LEFT:.0}\" y=\"22\">{title}</text>"
        );

        for (x, row, text, swatch) in &placed {
            let y = legend_top + row * LEGEND_ROW;
            let (x1, x2, ym) = (x, x + 18.0, y - 4.0);
            match swatch {
                Swatch::Line(color, stroke) => {
                    let _ = write!(
                        out,
                        "<line x1=\"{x1:.1}\" y1=\"{ym:.1}\" x2=\"{x2:.1}\" y2=\"{ym:.1}\" {}/>",
                        stroke_attrs(color, *stroke)
                    );
                }
                Swatch::Threshold(color) => {
                    let _ = write!(
                        out,
                        "<line x1=\"{x1:.1}\" y1=\"{ym:.1}\" x2=\"{x2:.1}\" y2=\"{ym:.1}\" \
                         stroke=\"{color}\" stroke-width=\"1.5\" stroke-dasharray=\"5 3\"/>"
                    );
                }
                Swatch::Area(fill) => {
                    let _ = write!(
                        out,
                        "<rect x=\"{x1:.1}\" y=\"{:.1}\" width=\"18\" height=\"10\" fill=\"{fill}\"/>",
                        ym - 5.0
                    );
                }
                Swatch::Mark(color) => {
                    let _ = write!(
                        out,
                        "<line x1=\"{:.1}\" y1=\"{:.1}\" x2=\"{:.1}\" y2=\"{:.1}\" \
                         stroke=\"{color}\" stroke-width=\"2\"/>",
                        x1 + 9.0,
                        ym - 6.0,
                        x1 + 9.0,
                        ym + 5.0
                    );
                }
            }
            let _ = write!(
                out,
                "<text class=\"legend\" x=\"{:.1}\" y=\"{y:.1}\">{}</text>",
                x + 24.0,
                escape(text)
            );
        }

        // Plot background, spans, grid.
        let _ = write!(
            out,
            "<rect class=\"plot\" x=\"{left:.1}\" y=\"{top:.1}\" width=\"{pw:.1}\" \
             height=\"{PLOT_HEIGHT:.1}\" fill=\"#ffffff\"/>"
        );
        for s in &self.spans {
            let (from, to) = (s.from.min(s.to), s.from.max(s.to));
            if !(from.is_finite() && to.is_finite()) {
                continue;
            }
            let (x1, x2) = (px(from), px(to));
            let w = (x2 - x1).max(1.0);
            let _ = write!(
                out,
                "<rect class=\"span\" x=\"{x1:.1}\" y=\"{top:.1}\" width=\"{w:.1}\" \
                 height=\"{PLOT_HEIGHT:.1}\" fill=\"{}\"/>",
                s.fill
            );
            if let Some(label) = &s.label {
                if label.chars().count() as f64 * 6.0 + 4.0 <= w {
                    let _ = write!(
                        out,
                        "<text class=\"span-label\" x=\"{:.1}\" y=\"{:.1}\" \
                         text-anchor=\"middle\">{}</text>",
                        (x1 + x2) / 2.0,
                        top + 13.0,
                        escape(label)
                    );
                }
            }
        }
        let (x_step, x_label) = x_ticks(x_max);
        let n_x = (x_max / x_step + 1e-9).floor() as usize;
        for i in 0..=n_x {
            let v = i as f64 * x_step;
            let x = px(v);
            if i > 0 {
                class_line(&mut out, "grid-x", (x, top), (x, bottom));
            }
            class_line(&mut out, "axis", (x, bottom), (x, bottom + 5.0));
            let _ = write!(
                out,
                "<text class=\"tick\" x=\"{x:.1}\" y=\"{:.1}\" text-anchor=\"middle\">{}</text>",
                bottom + 19.0,
                x_label(v)
            );
        }
        let n_y = (y_top / y_step).round() as usize;
        for i in 0..=n_y {
            let v = i as f64 * y_step;
            let y = py(v);
            if i > 0 {
                class_line(&mut out, "grid-y", (left, y), (right, y));
            }
            let label = if y_top >= 10_000.0 {
                format!("{}k", tick_label(v / 1000.0, y_step / 1000.0))
            } else {
                tick_label(v, y_step)
            };
            let _ = write!(
                out,
                "<text class=\"tick\" x=\"{:.1}\" y=\"{:.1}\" text-anchor=\"end\">{label}{}</text>",
                left - 8.0,
                y + 4.0,
                escape(self.unit)
            );
        }

        // Threshold lines, then the data (halos first), then the marks.
        for l in self.lines.iter().filter(|l| shown(l)) {
            let y = py(l.value);
            let _ = write!(
                out,
                "<line class=\"threshold\" x1=\"{left:.1}\" y1=\"{y:.1}\" x2=\"{right:.1}\" \
                 y2=\"{y:.1}\" stroke=\"{}\" stroke-width=\"1.5\" stroke-dasharray=\"6 4\"/>",
                l.color
            );
        }
        let mut ordered: Vec<&Series> = self.series.iter().collect();
        ordered.sort_by_key(|s| s.stroke != Stroke::Halo);
        for s in ordered {
            for seg in segments(&s.points) {
                if let [(x, y)] = seg[..] {
                    let _ = write!(
                        out,
                        "<circle cx=\"{:.1}\" cy=\"{:.1}\" r=\"2.5\" fill=\"{}\"/>",
                        px(x),
                        py(y),
                        s.color
                    );
                    continue;
                }
                let mut pts = String::new();
                for (x, y) in seg {
                    let _ = write!(pts, "{:.1},{:.1} ", px(x), py(y));
                }
                let _ = write!(
                    out,
                    "<polyline class=\"series\" fill=\"none\" points=\"{}\" {}/>",
                    pts.trim_end(),
                    stroke_attrs(s.color, s.stroke)
                );
            }
        }
        if let Some(m) = &self.marks {
            for x in m.xs.iter().filter(|x| x.is_finite()) {
                let x = px(*x);
                let _ = write!(
                    out,
                    "<line class=\"mark\" x1=\"{x:.1}\" y1=\"{bottom:.1}\" x2=\"{x:.1}\" \
                     y2=\"{:.1}\" stroke=\"{}\" stroke-width=\"2\"/>",
                    bottom - 14.0,
                    m.color
                );
            }
        }
        if !has_data {
            let _ = write!(
                out,
                "<text class=\"no-data\" x=\"{:.1}\" y=\"{:.1}\" text-anchor=\"middle\">no data</text>",
                left + pw / 2.0,
                top + PLOT_HEIGHT / 2.0
            );
        }
        let _ = write!(
            out,
            "<line class=\"axis\" x1=\"{left:.1}\" y1=\"{top:.1}\" x2=\"{left:.1}\" y2=\"{bottom:.1}\"/>\
             <line class=\"axis\" x1=\"{left:.1}\" y1=\"{bottom:.1}\" x2=\"{right:.1}\" y2=\"{bottom:.1}\"/>\
             <text class=\"axis-title\" x=\"{:.1}\" y=\"{:.1}\" text-anchor=\"middle\">time since start</text>\
             </svg>",
            left + pw / 2.0,
            bottom + 37.0
        );
        out
    }
}

/// A line styled by its class alone (grid and axis ticks).
fn class_line(out: &mut String, class: &str, (x1, y1): (f64, f64), (x2, y2): (f64, f64)) {
    let _ = write!(
        out,
        "<line class=\"{class}\" x1=\"{x1:.1}\" y1=\"{y1:.1}\" x2=\"{x2:.1}\" y2=\"{y2:.1}\"/>"
    );
}

fn stroke_attrs(color: &str, stroke: Stroke) -> String {
    match stroke {
        Stroke::Solid => format!(
            "stroke=\"{color}\" stroke-width=\"1.75\" stroke-linejoin=\"round\""
        ),
        Stroke::Dashed => format!(
            "stroke=\"{color}\" stroke-width=\"1.75\" stroke-dasharray=\"4 3\" stroke-linejoin=\"round\""
        ),
        Stroke::Halo => format!(
            "stroke=\"{color}\" stroke-width=\"6\" stroke-opacity=\"0.35\" stroke-linejoin=\"round\""
        ),
    }
}

/// The runs of consecutive points with a (finite) value.
fn segments(points: &[(f64, Option<f64>)]) -> Vec<Vec<(f64, f64)>> {
    let mut out = Vec::new();
    let mut cur = Vec::new();
    for &(x, y) in points {
        match finite(y) {
            Some(y) if x.is_finite() => cur.push((x, y)),
            _ => {
                if !cur.is_empty() {
                    out.push(std::mem::take(&mut cur));
                }
            }
        }
    }
    if !cur.is_empty() {
        out.push(cur);
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn series(points: Vec<(f64, Option<f64>)>) -> Series {
        Series {
            name: "p95".to_owned(),
            color: "#000",
            stroke: Stroke::Solid,
            points,
        }
    }

    #[test]
    fn steps_are_1_2_5() {
        assert_eq!(nice_step(10.0, 5.0), 2.0);
        assert_eq!(nice_step(600.0, 5.0), 200.0);
        assert_eq!(nice_step(2.2, 5.0), 0.5);
        assert_eq!(nice_step(0.0, 5.0), 1.0);
        assert_eq!(nice_step(f64::NAN, 5.0), 1.0);
        assert_eq!(y_axis(0.0), (0.2, 1.0));
        assert_eq!(y_axis(600.0), (100.0, 700.0));
        assert_eq!(y_axis(580.0), (100.0, 600.0));
        assert_eq!(y_axis(5000.0), (1000.0, 6000.0));
        assert_eq!(y_axis(9.0), (2.0, 10.0));
        assert_eq!(y_axis(4200.0), (1000.0, 5000.0));
        assert_eq!(smaller_step(2000.0), 1000.0);
        assert_eq!(smaller_step(1.0), 0.5);
        assert_eq!(smaller_step(0.05), 0.02);
        assert_eq!(tick_label(0.4, 0.2), "0.4");
        assert_eq!(tick_label(400.0, 200.0), "400");
        assert_eq!(tick_label(0.05, 0.05), "0.05");
    }

    #[test]
    fn gaps_split_the_line() {
        let pts = vec![
            (1.0, Some(1.0)),
            (2.0, Some(2.0)),
            (3.0, None),
            (4.0, Some(f64::NAN)),
            (5.0, Some(3.0)),
            (6.0, Some(4.0)),
            (7.0, None),
            (8.0, Some(1.0)),
        ];
        assert_eq!(segments(&pts).len(), 3);
        let svg = Chart {
            title: "t".into(),
            unit: " ms",
            series: vec![series(pts)],
            ..Chart::default()
        }
        .render();
        assert_eq!(svg.matches("<polyline").count(), 2);
        // The lone last point is a dot.
        assert_eq!(svg.matches("<circle").count(), 1);
    }

    #[test]
    fn degenerate_inputs_draw_finite_coordinates() {
        for pts in [
            vec![],
            vec![(0.0, Some(0.0))],
            vec![(1.0, Some(0.0)), (2.0, Some(0.0))],
            vec![(1.0, None), (2.0, None)],
            vec![(f64::INFINITY, Some(f64::INFINITY))],
        ] {
            let svg = Chart {
                title: "t".into(),
                unit: "/s",
                series: vec![series(pts)],
                lines: vec![Line {
                    legend: "limit".into(),
                    value: 0.0,
                    color: "#f00",
                }],
                spans: vec![Span {
                    from: 0.0,
                    to: 0.0,
                    legend: "burst".into(),
                    fill: "#eee",
                    label: None,
                }],
                marks: Some(Marks {
                    legend: "lost".into(),
                    color: "#f00",
                    xs: vec![],
                }),
                x_max: f64::INFINITY,
            }
            .render();
            let lower = svg.to_lowercase();
            assert!(!lower.contains("nan") && !lower.contains("inf"), "{svg}");
        }
    }

    #[test]
    fn a_threshold_far_above_the_data_stays_off_the_scale() {
        let chart = |value| Chart {
            title: "latency".into(),
            unit: " ms",
            series: vec![series(vec![(1.0, Some(2.0)), (2.0, Some(3.0))])],
            lines: vec![Line {
                legend: "limit".into(),
                value,
                color: "#f00",
            }],
            ..Chart::default()
        };
        let near = chart(5.0).render();
        assert!(near.contains("class=\"threshold\""));
        assert!(!near.contains("above the scale"));
        let far = chart(200.0).render();
        assert!(!far.contains("class=\"threshold\""));
        assert!(far.contains("limit (above the scale)"));
    }

    #[test]
    fn long_runs_tick_in_minutes() {
        let (step, label) = x_ticks(3600.0);
        assert_eq!(step, 600.0);
        assert_eq!(label(1200.0), "20 min");
        let (step, label) = x_ticks(60.0);
        assert_eq!(step, 10.0);
        assert_eq!(label(20.0), "20 s");
    }
}

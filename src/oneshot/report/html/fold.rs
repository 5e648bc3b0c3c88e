//! The points the charts draw, from the one-per-second time series.

use crate::oneshot::recorder::Sample;

/// Points over less than this are not charted: a rate over a sliver of a
/// second (the partial point closed when traffic stops) is noise.
const MIN_POINT_SECONDS: f64 = 0.1;

/// Most points per series: a long run is folded into buckets so the page
/// stays small (a 24 h run would otherwise carry 86 400 points per line).
pub(super) const MAX_POINTS: usize = 720;

/// The charted points, and how many seconds each one folds.
pub(super) fn chart_points(timeseries: &[Sample]) -> (Vec<Sample>, usize) {
    let mut prev = 0.0;
    let kept: Vec<&Sample> = timeseries
        .iter()
        .filter(|s| {
            let keep = s.t - prev >= MIN_POINT_SECONDS;
            prev = s.t;
            keep
        })
        .collect();
    let per_point = kept.len().div_ceil(MAX_POINTS).max(1);
    (downsample(&kept, per_point), per_point)
}

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
                batch_visible_p95_seconds: worst(|s| s.batch_visible_p95_seconds),
                lost_events: c.iter().map(|s| s.lost_events).sum(),
                backpressure_per_second: mean(|s| s.backpressure_per_second),
                queue_depth: worst(|s| s.queue_depth),
                burst: c.iter().any(|s| s.burst),
            })
        })
        .collect()
}

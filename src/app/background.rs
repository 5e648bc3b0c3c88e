//! The daemon's background timers: the one-minute windows and the target's
//! health check.

use std::sync::Arc;
use std::time::Duration;

use reqwest::Url;

use crate::client::{Outcome, TargetClient};
use crate::lag::LagMetrics;
use crate::metrics::{Metrics, WINDOW_ROTATE_EVERY};

/// The one timer of every one-minute window (requests and lag alike), so
/// they cover the same span and keep rotating while the probes restart.
/// Each rotation also hands the finished slots to the verdict's collector.
pub(super) async fn rotate_windows(
    metrics: Arc<Metrics>,
    lag: LagMetrics,
    collector: Arc<crate::verdict::collect::Collector>,
) {
    let mut tick = tokio::time::interval(WINDOW_ROTATE_EVERY);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    tick.tick().await;
    loop {
        tick.tick().await;
        collector.rotate(&metrics, &lag);
    }
}

/// Polls the target's public health route for `rehab_canary_target_up`. An
/// unreachable target is reported, never fatal: the canary's job is to keep
/// measuring through the outage. Logs only on changes of state.
pub(super) async fn poll_target_health(
    http: TargetClient,
    url: Url,
    every: Duration,
    metrics: Arc<Metrics>,
) {
    let mut last: Option<bool> = None;
    let mut tick = tokio::time::interval(every);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tick.tick().await;
        let outcome = http.get_public(url.clone()).await.outcome;
        let up = matches!(outcome, Outcome::Status(200..=299));
        metrics.ops.target_up.set(i64::from(up));
        if last != Some(up) {
            if up {
                tracing::info!("target health check passed");
            } else {
                tracing::warn!(
                    ?outcome,
                    "target health check failed; the canary keeps running"
                );
            }
            last = Some(up);
        }
    }
}

/// Polls `target.detail` and sets one gauge per configured field from its
/// JSON pointer. A failed poll sets the fields it could not read to NaN
/// (a gap, not a stale number) and is logged once per kind of failure
/// until a poll succeeds again.
pub(super) async fn poll_target_detail(
    http: TargetClient,
    url: Url,
    every: Duration,
    fields: Vec<(String, String)>,
    metrics: Arc<Metrics>,
) {
    use crate::metrics::target_detail::DetailError;
    let detail = &metrics.target_detail;
    let gauges: Vec<_> = fields
        .iter()
        .map(|(name, pointer)| (name.as_str(), pointer.as_str(), detail.field(name)))
        .collect();
    let mut logged: Option<DetailError> = None;
    let mut tick = tokio::time::interval(every);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tick.tick().await;
        let resp = http.get_public(url.clone()).await;
        let doc = match resp.outcome {
            Outcome::Status(200..=299) => serde_json::from_slice::<serde_json::Value>(&resp.body)
                .map_err(|_| DetailError::Invalid),
            _ => Err(DetailError::Request),
        };
        let mut failure = doc.as_ref().err().copied();
        for (name, pointer, gauge) in &gauges {
            let value = doc
                .as_ref()
                .ok()
                .and_then(|d| d.pointer(pointer))
                .and_then(serde_json::Value::as_f64);
            if value.is_none() && doc.is_ok() {
                failure = Some(DetailError::Field);
                if logged != failure {
                    tracing::warn!(
                        field = name,
                        pointer,
                        "target detail: no number at this pointer"
                    );
                }
            }
            gauge.set(value.unwrap_or(f64::NAN));
        }
        if let Some(e) = failure {
            detail.error(e);
            if logged != Some(e) && e != DetailError::Field {
                tracing::warn!(
                    reason = e.as_str(),
                    outcome = ?resp.outcome,
                    "target detail route unreadable; its gauges are NaN until it answers"
                );
            }
        }
        logged = failure;
    }
}

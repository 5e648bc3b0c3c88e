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
pub(super) async fn rotate_windows(metrics: Arc<Metrics>, lag: LagMetrics) {
    let mut tick = tokio::time::interval(WINDOW_ROTATE_EVERY);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    tick.tick().await;
    loop {
        tick.tick().await;
        metrics.rotate_windows();
        lag.rotate();
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

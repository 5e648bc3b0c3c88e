//! `--push-gateway URL`: the batch-job way into Prometheus. The run's final
//! metrics plus its verdict (`rehab_canary_run_*`) replace the group
//! `job="rehab-canary-run", profile=NAME` with one PUT.
//!
//! The Pushgateway (1.x) parses the Prometheus text format 0.0.4, not
//! OpenMetrics, so the daemon's exposition is pushed in that format (no
//! exemplars, no `_created` series). The job differs from the always-on canary's, so its
//! alerts never mix the two.

use std::fmt::Write;

use super::report::{RunReport, RunVerdict};
use super::thresholds::Status;

/// The `job` of the pushed group.
pub const JOB: &str = "rehab-canary-run";

#[derive(Debug, thiserror::Error)]
pub enum PushError {
    #[error("push gateway URL {0}: must be http(s) with a host")]
    Url(String),
    #[error("push to the gateway at {url} failed: {message}")]
    Failed { url: String, message: String },
}

/// The verdict as gauges, so a dashboard or alert can read the last run.
pub fn verdict_metrics(r: &RunReport, now_unix: f64) -> String {
    let mut out = String::new();
    let gauge = |out: &mut String, name: &str, help: &str| {
        let _ = writeln!(out, "# HELP {name} {help}");
        let _ = writeln!(out, "# TYPE {name} gauge");
    };
    let single = |out: &mut String, name: &str, help: &str, value: &dyn std::fmt::Display| {
        gauge(out, name, help);
        let _ = writeln!(out, "{name} {value}");
    };
    single(
        &mut out,
        "rehab_canary_run_success",
        "1 if the run passed (exit 0: no threshold failed at the --fail-on level), else 0",
        &u8::from(r.outcome == RunVerdict::Pass),
    );
    gauge(
        &mut out,
        "rehab_canary_run_threshold_passed",
        "1 if the threshold met its target (PASS), else 0 (skipped ones are absent)",
    );
    let judged = || r.thresholds.iter().filter(|v| v.status != Status::Skipped);
    for v in judged() {
        let _ = writeln!(
            out,
            "rehab_canary_run_threshold_passed{{threshold=\"{}\"}} {}",
            v.id,
            u8::from(v.status == Status::Pass)
        );
    }
    gauge(
        &mut out,
        "rehab_canary_run_threshold_within_critical",
        "1 if the threshold stayed within its critical level (PASS or WARN), else 0 (skipped ones are absent)",
    );
    for v in judged() {
        let _ = writeln!(
            out,
            "rehab_canary_run_threshold_within_critical{{threshold=\"{}\"}} {}",
            v.id,
            u8::from(!v.failed())
        );
    }
    gauge(
        &mut out,
        "rehab_canary_run_threshold_value",
        "The measured value of each threshold, in its base unit",
    );
    for v in &r.thresholds {
        if let Some(x) = v.value {
            let _ = writeln!(
                out,
                "rehab_canary_run_threshold_value{{threshold=\"{}\"}} {x}",
                v.id
            );
        }
    }
    single(
        &mut out,
        "rehab_canary_run_duration_seconds",
        "Seconds of traffic the run sent",
        &r.totals.seconds,
    );
    if let Some(cap) = r.capacity.as_ref().and_then(|c| c.events_per_second) {
        single(
            &mut out,
            "rehab_canary_run_capacity_events_per_second",
            "Highest event rate sustained within all SLOs",
            &cap,
        );
    }
    single(
        &mut out,
        "rehab_canary_run_last_completion_timestamp_seconds",
        "When the run finished, in Unix seconds",
        &now_unix,
    );
    out
}

/// PUTs the run's metrics to `{base}/metrics/job/rehab-canary-run/profile/NAME`.
/// `exposition` is in the text format 0.0.4.
pub async fn push(base: &url::Url, r: &RunReport, exposition: &str) -> Result<(), PushError> {
    if !matches!(base.scheme(), "http" | "https") || base.host_str().is_none() {
        return Err(PushError::Url(redacted(base)));
    }
    let mut url = base.clone();
    url.path_segments_mut()
        .map_err(|()| PushError::Url(redacted(base)))?
        .pop_if_empty()
        .extend(["metrics", "job", JOB, "profile", &r.profile]);
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0.0, |d| d.as_secs_f64());
    let mut body = exposition.to_owned();
    body.push_str(&verdict_metrics(r, now));
    let shown = redacted(&url);
    let failed = |message: String| PushError::Failed {
        url: shown.clone(),
        message,
    };
    let client = reqwest::Client::builder()
        .timeout(std::time::Duration::from_secs(10))
        .build()
        .map_err(|e| failed(e.to_string()))?;
    let resp = client
        .put(url.clone())
        .header("Content-Type", "text/plain; version=0.0.4; charset=utf-8")
        .body(body)
        .send()
        .await
        .map_err(|e| failed(e.without_url().to_string()))?;
    let status = resp.status();
    if status.is_success() {
        tracing::info!(url = %shown, "metrics pushed to the gateway");
        Ok(())
    } else {
        // Only the start of the gateway's explanation: a body without end
        // must not hold the run's end.
        let mut resp = resp;
        let mut text = Vec::new();
        while let Ok(Some(chunk)) = resp.chunk().await {
            text.extend_from_slice(&chunk[..chunk.len().min(ERROR_TEXT_MAX - text.len())]);
            if text.len() >= ERROR_TEXT_MAX {
                break;
            }
        }
        let text = String::from_utf8_lossy(&text);
        Err(failed(format!("HTTP {status}: {}", text.trim())))
    }
}

/// Bytes of a refusing gateway's body kept for the error message.
const ERROR_TEXT_MAX: usize = 4096;

/// The URL without credentials, for logs and errors.
fn redacted(u: &url::Url) -> String {
    let mut u = u.clone();
    let _ = u.set_password(None);
    let _ = u.set_username("");
    u.to_string()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn credentials_never_show() {
        let u = url::Url::parse("https://user:s3cret@pgw.example:9091/").unwrap();
        assert!(!redacted(&u).contains("s3cret"));
    }
}

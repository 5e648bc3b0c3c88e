//! Helpers shared by the simulator's integration tests: start a sim on
//! 127.0.0.1:0, build events, read ground-truth metrics, poll with a deadline.
#![allow(dead_code)]

use std::future::Future;
use std::time::{Duration, Instant};

use rehab_canary::sim::{self, SimConfig, SimHandle};
use serde_json::{json, Value};

pub const TOKEN: &str = "Bearer dev-token";

/// A generous deadline: the box has two noisy cores.
pub const DEADLINE: Duration = Duration::from_secs(10);

/// A config whose pipeline is quick, so tests wait little.
pub fn fast_config() -> SimConfig {
    let mut cfg = SimConfig::default();
    cfg.pipeline.batch_timeout = Duration::from_millis(5);
    cfg
}

pub async fn start(cfg: SimConfig) -> SimHandle {
    sim::start("127.0.0.1:0".parse().unwrap(), cfg)
        .await
        .expect("sim starts")
}

pub fn client() -> reqwest::Client {
    reqwest::Client::builder()
        .timeout(Duration::from_secs(10))
        .build()
        .unwrap()
}

/// Polls `f` until it yields `Some`, failing the test after `DEADLINE`.
pub async fn eventually<T, F, Fut>(what: &str, mut f: F) -> T
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Option<T>>,
{
    let end = Instant::now() + DEADLINE;
    loop {
        if let Some(v) = f().await {
            return v;
        }
        assert!(Instant::now() < end, "timed out waiting for {what}");
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

/// An `exercise_session` start in the quickstart's envelope shape.
pub fn session_start(patient: &str, session: &str, start_time: &str, reps: u32) -> Value {
    json!({
        "kind": "exercise_session",
        "subject_id": patient,
        "exercise_id": "knee_flexion",
        "body": {
            "session_id": session,
            "prescribed_exercise_id": "template_knee_01",
            "start_time": start_time,
            "prescribed_reps": reps,
            "device_info": {"model": "iPhone 14", "app_version": "1.0.3"}
        },
        "meta": {"phi": true, "consent_id": "consent_001", "site_id": "clinic_main",
                 "correlation_id": session}
    })
}

pub fn session_completion(
    patient: &str,
    session: &str,
    end_time: &str,
    completed: u32,
    quality: f64,
) -> Value {
    json!({
        "kind": "exercise_session",
        "subject_id": patient,
        "body": {
            "session_id": session,
            "end_time": end_time,
            "completion_status": "completed",
            "completed_reps": completed,
            "overall_quality": quality
        },
        "meta": {"phi": true, "consent_id": "consent_001", "correlation_id": session}
    })
}

pub fn rep(patient: &str, session: &str, n: u32, quality: f64) -> Value {
    json!({
        "kind": "rep_observation",
        "subject_id": patient,
        "body": {"session_id": session, "rep_number": n, "quality_score": quality,
                 "confidence_rating": 0.95, "duration_ms": 3000},
        "meta": {"consent_id": "consent_001"}
    })
}

/// A minimal consented event.
pub fn feedback(patient: &str, note: &str) -> Value {
    json!({
        "kind": "feedback",
        "subject_id": patient,
        "body": {"note": note},
        "meta": {"consent_id": "c1"}
    })
}

pub async fn post_event(c: &reqwest::Client, base: &str, ev: &Value) -> reqwest::Response {
    c.post(format!("{base}/api/v1/events"))
        .header("authorization", TOKEN)
        .json(ev)
        .send()
        .await
        .expect("request sent")
}

pub async fn get_json(c: &reqwest::Client, url: &str) -> (u16, Value) {
    let r = c
        .get(url)
        .header("authorization", TOKEN)
        .send()
        .await
        .expect("request sent");
    let status = r.status().as_u16();
    let v = r.json().await.unwrap_or(Value::Null);
    (status, v)
}

/// The notes of the feedback events visible in a stream.
pub async fn stream_notes(c: &reqwest::Client, base: &str, patient: &str) -> Vec<String> {
    let (status, v) = get_json(
        c,
        &format!("{base}/api/v1/patients/{patient}/stream?limit=1000"),
    )
    .await;
    assert_eq!(status, 200, "{v}");
    v["events"]
        .as_array()
        .unwrap()
        .iter()
        .filter_map(|e| e["body"]["note"].as_str().map(String::from))
        .collect()
}

/// The ground-truth metrics as text.
pub async fn metrics_text(c: &reqwest::Client, base: &str) -> String {
    c.get(format!("{base}/metrics"))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap()
}

/// Value of the sample whose name-and-labels part is exactly `series`
/// (e.g. `rehab_sim_requests_total{route="health",status="200"}`); 0 if absent.
pub fn sample(text: &str, series: &str) -> f64 {
    text.lines()
        .filter(|l| !l.starts_with('#'))
        .find_map(|l| {
            let (name, value) = l.rsplit_once(' ')?;
            (name == series)
                .then(|| value.parse::<f64>().ok())
                .flatten()
        })
        .unwrap_or(0.0)
}

pub async fn metric(c: &reqwest::Client, base: &str, series: &str) -> f64 {
    sample(&metrics_text(c, base).await, series)
}

//! The reference API's HTTP contract, for the simulator's own tests: a
//! quick sim with a client, events in the quickstart's envelope, reads.

use std::time::Duration;

use rehab_canary::sim::{SimConfig, SimHandle};
use serde_json::{json, Value};

pub use super::metrics::{metric, metrics_text, sample};
pub use super::stack::DEV_TOKEN;
pub use super::wait::{eventually, DEADLINE};

pub const TOKEN: &str = "Bearer dev-token";

/// A config whose pipeline is quick, so tests wait little.
pub fn fast_config() -> SimConfig {
    let mut cfg = SimConfig::default();
    cfg.pipeline.batch_timeout = Duration::from_millis(5);
    cfg
}

/// A reference API started from `cfg`, a client and the API's base URL.
pub async fn api(cfg: SimConfig) -> (SimHandle, reqwest::Client, String) {
    let sim = super::stack::start_sim(cfg).await;
    let base = sim.base_url();
    (sim, client(), base)
}

/// [`api`] with [`fast_config`] changed by `tweak`.
pub async fn api_with(tweak: impl FnOnce(&mut SimConfig)) -> (SimHandle, reqwest::Client, String) {
    let mut cfg = fast_config();
    tweak(&mut cfg);
    api(cfg).await
}

pub fn client() -> reqwest::Client {
    reqwest::Client::builder()
        .timeout(Duration::from_secs(10))
        .build()
        .unwrap()
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

/// GETs `url` (as [`get_json`]) until `ok` holds for the body; the body.
pub async fn read_until(
    c: &reqwest::Client,
    url: &str,
    what: &str,
    ok: impl Fn(&Value) -> bool,
) -> Value {
    eventually(what, DEADLINE, || async {
        let (_, v) = get_json(c, url).await;
        ok(&v).then_some(v)
    })
    .await
}

/// GETs `url` with `token` as the bearer token.
pub async fn get_as(c: &reqwest::Client, url: &str, token: &str) -> reqwest::Response {
    c.get(url).bearer_auth(token).send().await.unwrap()
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

/// Sets the reference API's faults through its control plane.
pub async fn put_faults(c: &reqwest::Client, base: &str, f: Value) {
    let r = c
        .put(format!("{base}/sim/faults"))
        .json(&f)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200, "{f}");
}

/// [`api`] with [`fast_config`] and these faults set through the control plane.
pub async fn faulty_api(faults: Value) -> (SimHandle, reqwest::Client, String) {
    let (sim, c, base) = api(fast_config()).await;
    put_faults(&c, &base, faults).await;
    (sim, c, base)
}

/// Asserts the ground truth, one scrape: each series (as [`sample`] reads
/// it) has its value.
pub async fn assert_truth(c: &reqwest::Client, base: &str, want: &[(&str, f64)]) {
    let text = metrics_text(c, base).await;
    for (series, value) in want {
        assert_eq!(sample(&text, series), *value, "{series}");
    }
}

/// POSTs `body` as JSON to `url`, with no token.
pub async fn post_json(c: &reqwest::Client, url: &str, body: &Value) -> reqwest::Response {
    c.post(url).json(body).send().await.unwrap()
}

/// The versions of the events in a stream read, in order.
pub fn versions(read: &Value) -> Vec<u64> {
    read["events"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["version"].as_u64().unwrap())
        .collect()
}

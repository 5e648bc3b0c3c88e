//! Long-run safety of the simulator: retention caps, idle-patient eviction,
//! token expiry and a prompt, clean shutdown.

mod support;

use std::time::{Duration, Instant};

use serde_json::{json, Value};
use support::sim::*;

#[tokio::test]
async fn per_patient_cap_keeps_newest_and_versions_monotonic() {
    let (sim, c, base) = api_with(|cfg| cfg.retention.max_events_per_patient = 10).await;
    for i in 0..25 {
        assert_eq!(
            post_event(&c, &base, &feedback("pcap", &format!("{i}")))
                .await
                .status(),
            201
        );
    }
    let stream = format!("{base}/api/v1/patients/pcap/stream?limit=1000");
    let v = read_until(&c, &stream, "25 applied", |v| v["stream_version"] == 25).await;
    assert_eq!(versions(&v), (16..=25).collect::<Vec<_>>());
    // The read models still count everything that was ever applied.
    let (_, s) = get_json(
        &c,
        &format!("{base}/api/v1/projections/patient-summary?patient_id=pcap"),
    )
    .await;
    assert_eq!(s["events"]["by_kind"]["feedback"], 25);
    assert_truth(
        &c,
        &base,
        &[
            ("rehab_sim_events_trimmed_total", 15.0),
            ("rehab_sim_retained_events", 10.0),
        ],
    )
    .await;
    sim.shutdown().await;
}

#[tokio::test]
async fn per_patient_byte_cap_holds() {
    let (sim, c, base) = api_with(|cfg| cfg.retention.max_bytes_per_patient = 4096).await;
    let big = "y".repeat(1000);
    for i in 0..20 {
        post_event(
            &c,
            &base,
            &json!({"kind": "feedback", "subject_id": "pbytes",
            "body": {"note": format!("{i}"), "pad": big}, "meta": {"consent_id": "c"}}),
        )
        .await;
    }
    let stream = format!("{base}/api/v1/patients/pbytes/stream?limit=1000");
    let v = read_until(&c, &stream, "20 applied", |v| v["stream_version"] == 20).await;
    let n = v["events"].as_array().unwrap().len();
    // Each event is ~1.3 KiB of JSON plus 400 B charged for bookkeeping.
    assert!((1..=3).contains(&n), "{n} events kept under 4 KiB");
    sim.shutdown().await;
}

#[tokio::test]
async fn idle_patients_are_evicted_past_max_patients() {
    let (sim, c, base) = api_with(|cfg| cfg.retention.max_patients = 3).await;
    for i in 0..6 {
        let p = format!("pe{i}");
        post_event(&c, &base, &feedback(&p, "x")).await;
        eventually("applied", DEADLINE, || async {
            let (s, v) = get_json(&c, &format!("{base}/api/v1/patients/{p}/stream")).await;
            (s == 200 && v["count"] == 1).then_some(())
        })
        .await;
    }
    assert_truth(
        &c,
        &base,
        &[
            ("rehab_sim_patients", 3.0),
            ("rehab_sim_patients_evicted_total", 3.0),
        ],
    )
    .await;
    let summary = |p: &str| format!("{base}/api/v1/projections/patient-summary?patient_id={p}");
    assert_eq!(
        get_json(&c, &summary("pe0")).await.0,
        404,
        "least recently active is gone"
    );
    assert_eq!(get_json(&c, &summary("pe5")).await.0, 200);
    let (_, h) = get_json(&c, &format!("{base}/health/detailed")).await;
    assert_eq!(h["store"]["patients"], 3);
    sim.shutdown().await;
}

#[tokio::test]
async fn issued_tokens_expire_and_refresh_renews() {
    let (sim, c, base) = api_with(|cfg| cfg.auth.token_ttl = Duration::from_millis(300)).await;
    let v: Value = post_json(
        &c,
        &format!("{base}/api/v1/auth/login"),
        &json!({"username": "dev", "password": "dev-password"}),
    )
    .await
    .json()
    .await
    .unwrap();
    let access = v["access_token"].as_str().unwrap().to_string();
    let issued = Instant::now();
    let alerts = format!("{base}/api/v1/alerts");
    assert_eq!(get_as(&c, &alerts, &access).await.status(), 200);
    eventually("token expired", DEADLINE, || async {
        (get_as(&c, &alerts, &access).await.status() == 401).then_some(())
    })
    .await;
    assert!(issued.elapsed() >= Duration::from_millis(290));
    let v: Value = post_json(
        &c,
        &format!("{base}/api/v1/auth/refresh"),
        &json!({"refresh_token": v["refresh_token"]}),
    )
    .await
    .json()
    .await
    .unwrap();
    let renewed = v["access_token"].as_str().unwrap();
    assert_eq!(get_as(&c, &alerts, renewed).await.status(), 200);
    sim.shutdown().await;
}

#[tokio::test]
async fn static_tokens_replace_the_dev_token() {
    let (sim, c, base) = api_with(|cfg| cfg.auth.tokens = vec!["staging-secret".into()]).await;
    let alerts = format!("{base}/api/v1/alerts");
    assert_eq!(get_as(&c, &alerts, "staging-secret").await.status(), 200);
    assert_eq!(get_as(&c, &alerts, DEV_TOKEN).await.status(), 401);
    sim.shutdown().await;
}

#[tokio::test]
async fn shutdown_is_prompt_with_open_connections_and_frees_the_port() {
    let (sim, c, base) = api(fast_config()).await;
    let addr = sim.addr();
    // A kept-alive connection and queued work must not hold shutdown up.
    assert_eq!(
        c.get(format!("{base}/health"))
            .send()
            .await
            .unwrap()
            .status(),
        200
    );
    post_event(&c, &base, &feedback("psd", "x")).await;
    let t = Instant::now();
    tokio::time::timeout(Duration::from_secs(5), sim.shutdown())
        .await
        .expect("shutdown within 5 s");
    assert!(t.elapsed() < Duration::from_secs(2), "{:?}", t.elapsed());
    assert!(c.get(format!("{base}/health")).send().await.is_err());
    // The port is free again.
    let again = rehab_canary::sim::start(addr, fast_config())
        .await
        .expect("rebind");
    again.shutdown().await;
}

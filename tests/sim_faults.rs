//! Each injected fault, asserted through behaviour and through the
//! simulator's ground-truth metrics.

mod support;

use std::time::{Duration, Instant};

use rehab_canary::sim::Faults;
use serde_json::{json, Value};
use support::faults;
use support::sim::*;

#[tokio::test]
async fn latency_and_jitter_delay_every_api_response() {
    let (sim, c, base) = faulty_api(json!({"latency_ms": 150, "jitter_ms": 50})).await;
    let t = Instant::now();
    let r = c.get(format!("{base}/health")).send().await.unwrap();
    assert_eq!(r.status(), 200);
    let el = t.elapsed();
    assert!(el >= Duration::from_millis(150), "{el:?}");
    let t = Instant::now();
    assert_eq!(
        post_event(&c, &base, &feedback("pl", "x")).await.status(),
        201
    );
    assert!(t.elapsed() >= Duration::from_millis(150));
    // The control and truth planes are never delayed.
    let t = Instant::now();
    let text = metrics_text(&c, &base).await;
    assert!(t.elapsed() < Duration::from_millis(150));
    assert_eq!(
        sample(&text, r#"rehab_sim_faults_injected_total{fault="latency"}"#),
        2.0
    );
    sim.shutdown().await;
}

#[tokio::test]
async fn the_response_path_delay_comes_after_the_state_it_reports() {
    let (sim, c, base) =
        faulty_api(json!({"response_delay_ms": 120, "response_jitter_ms": 30})).await;
    let parse = |v: &Value| humantime::parse_rfc3339(v.as_str().unwrap()).unwrap();
    // The 201 arrives at least 120 ms after the send, but the commit it
    // reports was taken at once.
    let sent = std::time::SystemTime::now();
    let t = Instant::now();
    let r = post_event(&c, &base, &feedback("prd", "x")).await;
    let el = t.elapsed();
    assert_eq!(r.status(), 201);
    assert!(el >= Duration::from_millis(120), "{el:?}");
    assert!(el <= Duration::from_millis(1000), "{el:?}");
    let created: Value = r.json().await.unwrap();
    let committed = parse(&created["committed_at"]);
    let after_send = committed.duration_since(sent).unwrap_or(Duration::ZERO);
    assert!(after_send < Duration::from_millis(60), "{after_send:?}");
    // Reads and health too; the read shows when the event became visible,
    // on the same clock as the commit.
    let t = Instant::now();
    let r = get_as(&c, &format!("{base}/api/v1/patients/prd/stream"), DEV_TOKEN).await;
    assert!(t.elapsed() >= Duration::from_millis(120));
    let stream: Value = r.json().await.unwrap();
    let ev = &stream["events"][0];
    assert_eq!(ev["event_id"], created["event_id"]);
    assert!(parse(&ev["projected_at"]) >= committed);
    let t = Instant::now();
    c.get(format!("{base}/health")).send().await.unwrap();
    assert!(t.elapsed() >= Duration::from_millis(120));
    assert_truth(
        &c,
        &base,
        &[(
            r#"rehab_sim_faults_injected_total{fault="response_delay"}"#,
            3.0,
        )],
    )
    .await;
    // Healed: fast again.
    put_faults(
        &c,
        &base,
        json!({"response_delay_ms": 0, "response_jitter_ms": 0}),
    )
    .await;
    let t = Instant::now();
    c.get(format!("{base}/health")).send().await.unwrap();
    assert!(t.elapsed() < Duration::from_millis(100));
    sim.shutdown().await;
}

#[tokio::test]
async fn error_rate_answers_500_and_accepts_nothing() {
    let (sim, c, base) = faulty_api(json!({"error_rate": 1.0})).await;
    let r = post_event(&c, &base, &feedback("pe", "x")).await;
    assert_eq!(r.status(), 500);
    assert!(r.json::<Value>().await.unwrap()["error"].is_string());
    // A fraction is a fraction.
    put_faults(&c, &base, json!({"error_rate": 0.5})).await;
    let mut errors = 0;
    for _ in 0..200 {
        let r = c.get(format!("{base}/health")).send().await.unwrap();
        if r.status() == 500 {
            errors += 1;
        }
    }
    assert!((50..=150).contains(&errors), "{errors} of 200");
    assert_truth(
        &c,
        &base,
        &[
            ("rehab_sim_events_accepted_total", 0.0),
            (
                r#"rehab_sim_requests_total{route="events_create",status="500"}"#,
                1.0,
            ),
            (
                r#"rehab_sim_requests_total{route="health",status="500"}"#,
                errors as f64,
            ),
            (
                r#"rehab_sim_faults_injected_total{fault="error"}"#,
                1.0 + errors as f64,
            ),
        ],
    )
    .await;
    sim.shutdown().await;
}

#[tokio::test]
async fn rate_limit_answers_429_with_retry_after() {
    let (sim, c, base) = faulty_api(json!({"rate_limit_rate": 1.0, "retry_after_s": 7})).await;
    let r = post_event(&c, &base, &feedback("pr", "x")).await;
    assert_eq!(r.status(), 429);
    assert_eq!(r.headers()["retry-after"], "7");
    assert_truth(
        &c,
        &base,
        &[
            (
                r#"rehab_sim_requests_total{route="events_create",status="429"}"#,
                1.0,
            ),
            (
                r#"rehab_sim_faults_injected_total{fault="rate_limit"}"#,
                1.0,
            ),
            ("rehab_sim_events_accepted_total", 0.0),
        ],
    )
    .await;
    sim.shutdown().await;
}

#[tokio::test]
async fn reset_closes_the_connection_without_a_response() {
    let (sim, c, base) = faulty_api(json!({"reset_rate": 1.0})).await;
    for _ in 0..3 {
        let r = c.get(format!("{base}/health")).send().await;
        let err = r.expect_err("no response expected");
        assert!(!err.is_timeout(), "{err}");
        assert!(err.status().is_none(), "{err}");
    }
    let r = post_event_result(&c, &base, &feedback("px", "x")).await;
    assert!(r.is_err());
    assert_truth(
        &c,
        &base,
        &[
            (r#"rehab_sim_faults_injected_total{fault="reset"}"#, 4.0),
            ("rehab_sim_events_accepted_total", 0.0),
        ],
    )
    .await;
    // Healthy again once cleared.
    c.delete(format!("{base}/sim/faults")).send().await.unwrap();
    assert_eq!(
        c.get(format!("{base}/health"))
            .send()
            .await
            .unwrap()
            .status(),
        200
    );
    sim.shutdown().await;
}

async fn post_event_result(
    c: &reqwest::Client,
    base: &str,
    ev: &Value,
) -> reqwest::Result<reqwest::Response> {
    c.post(format!("{base}/api/v1/events"))
        .header("authorization", TOKEN)
        .json(ev)
        .send()
        .await
}

#[tokio::test]
async fn garbage_replaces_read_bodies_only() {
    let (sim, c, base) = faulty_api(json!({"garbage_rate": 1.0})).await;
    let r = post_event(&c, &base, &feedback("pg", "x")).await;
    assert_eq!(r.status(), 201);
    assert!(r.json::<Value>().await.is_ok(), "writes are not garbled");
    let r = c
        .get(format!("{base}/api/v1/patients/pg/stream"))
        .header("authorization", TOKEN)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    let body = r.text().await.unwrap();
    assert!(serde_json::from_str::<Value>(&body).is_err(), "{body}");
    // Error responses stay as they are.
    let r = c.get(format!("{base}/api/v1/alerts")).send().await.unwrap();
    assert_eq!(r.status(), 401);
    assert!(r.json::<Value>().await.is_ok());
    assert_truth(
        &c,
        &base,
        &[(r#"rehab_sim_faults_injected_total{fault="garbage"}"#, 1.0)],
    )
    .await;
    sim.shutdown().await;
}

#[tokio::test]
async fn dropped_events_are_answered_201_but_never_applied() {
    let (sim, c, base) = faulty_api(json!({"drop_rate": 1.0})).await;
    assert_eq!(
        post_event(&c, &base, &feedback("pd", "lost"))
            .await
            .status(),
        201
    );
    put_faults(&c, &base, json!({"drop_rate": 0.0})).await;
    assert_eq!(
        post_event(&c, &base, &feedback("pd", "kept"))
            .await
            .status(),
        201
    );
    let notes = eventually("kept applied", DEADLINE, || async {
        let n = stream_notes(&c, &base, "pd").await;
        n.contains(&"kept".to_string()).then_some(n)
    })
    .await;
    assert_eq!(notes, ["kept"]);
    assert_truth(
        &c,
        &base,
        &[
            ("rehab_sim_events_accepted_total", 2.0),
            ("rehab_sim_events_dropped_total", 1.0),
            ("rehab_sim_events_applied_total", 1.0),
        ],
    )
    .await;
    sim.shutdown().await;
}

#[tokio::test]
async fn duplicated_events_are_applied_twice() {
    let (sim, c, base) = faulty_api(json!({"duplicate_rate": 1.0})).await;
    let r = post_event(&c, &base, &feedback("pdup", "twice")).await;
    let id = r.json::<Value>().await.unwrap()["event_id"].clone();
    let stream = format!("{base}/api/v1/patients/pdup/stream");
    let v = read_until(&c, &stream, "duplicate applied", |v| v["count"] == 2).await;
    assert_eq!(v["events"][0]["event_id"], id);
    assert_eq!(v["events"][1]["event_id"], id);
    assert_eq!(v["stream_version"], 2);
    assert_truth(
        &c,
        &base,
        &[
            ("rehab_sim_events_applied_total", 1.0),
            ("rehab_sim_events_duplicated_total", 1.0),
        ],
    )
    .await;
    sim.shutdown().await;
}

#[tokio::test]
async fn projection_delay_holds_visibility_and_shows_in_the_lag_histogram() {
    let (sim, c, base) = faulty_api(json!({"projection_delay_ms": 300})).await;
    let r = post_event(&c, &base, &feedback("pdl", "late")).await;
    let accepted = Instant::now();
    assert_eq!(r.status(), 201);
    // Not visible yet, and not yet observed: the lag is recorded the moment
    // the event becomes visible.
    let text = metrics_text(&c, &base).await;
    if accepted.elapsed() < Duration::from_millis(250) {
        assert_eq!(sample(&text, "rehab_sim_projection_lag_seconds_count"), 0.0);
    }
    eventually("delayed event visible", DEADLINE, || async {
        let n = stream_notes(&c, &base, "pdl").await;
        (!n.is_empty()).then_some(())
    })
    .await;
    let seen = accepted.elapsed();
    assert!(seen >= Duration::from_millis(290), "visible after {seen:?}");
    let text = eventually("lag observed", DEADLINE, || async {
        let t = metrics_text(&c, &base).await;
        (sample(&t, "rehab_sim_projection_lag_seconds_count") == 1.0).then_some(t)
    })
    .await;
    assert_eq!(
        sample(
            &text,
            r#"rehab_sim_projection_lag_seconds_bucket{le="0.25"}"#
        ),
        0.0
    );
    assert_eq!(
        sample(
            &text,
            r#"rehab_sim_projection_lag_seconds_bucket{le="1.0"}"#
        ),
        1.0
    );
    let sum = sample(&text, "rehab_sim_projection_lag_seconds_sum");
    assert!(
        sum >= 0.3 && sum <= seen.as_secs_f64() + 0.05,
        "lag {sum} vs seen {seen:?}"
    );
    sim.shutdown().await;
}

#[tokio::test]
async fn stalled_projector_accepts_but_applies_nothing_then_fills_the_queue() {
    let (sim, c, base) = api_with(|cfg| {
        cfg.pipeline.queue_capacity = 4;
        cfg.pipeline.processors = 1;
        cfg.faults.stall_projector = true;
    })
    .await;
    for i in 0..4 {
        let r = post_event(&c, &base, &feedback("pst", &format!("n{i}"))).await;
        assert_eq!(r.status(), 201);
    }
    let r = post_event(&c, &base, &feedback("pst", "over")).await;
    assert_eq!(r.status(), 503);
    assert_eq!(r.headers()["retry-after"], "1");
    // Several batch timeouts later, still nothing applied.
    tokio::time::sleep(Duration::from_millis(100)).await;
    let text = metrics_text(&c, &base).await;
    assert_eq!(sample(&text, "rehab_sim_queue_depth"), 4.0);
    assert_eq!(sample(&text, "rehab_sim_events_applied_total"), 0.0);
    assert_eq!(sample(&text, "rehab_sim_events_accepted_total"), 4.0);
    assert_eq!(
        sample(
            &text,
            r#"rehab_sim_events_rejected_total{reason="queue_full"}"#
        ),
        1.0
    );
    assert_eq!(
        sample(
            &text,
            r#"rehab_sim_requests_total{route="events_create",status="503"}"#
        ),
        1.0
    );
    assert!(stream_notes(&c, &base, "pst").await.is_empty());

    sim.set_faults(Faults::default());
    let notes = eventually("stall released", DEADLINE, || async {
        let n = stream_notes(&c, &base, "pst").await;
        (n.len() == 4).then_some(n)
    })
    .await;
    assert_eq!(notes, ["n0", "n1", "n2", "n3"]);
    assert_truth(
        &c,
        &base,
        &[
            ("rehab_sim_queue_depth", 0.0),
            ("rehab_sim_events_applied_total", 4.0),
        ],
    )
    .await;
    sim.shutdown().await;
}

#[tokio::test]
async fn max_events_per_second_caps_ingestion_with_503() {
    let (sim, c, base) = faulty_api(json!({"max_events_per_second": 5})).await;
    let t = Instant::now();
    let mut created = 0;
    let mut unavailable = 0;
    for i in 0..30 {
        let r = post_event(&c, &base, &feedback("pcap", &format!("{i}"))).await;
        match r.status().as_u16() {
            201 => created += 1,
            503 => {
                assert_eq!(r.headers()["retry-after"], "1");
                unavailable += 1;
            }
            s => panic!("unexpected {s}"),
        }
    }
    let allowed = 5.0 + t.elapsed().as_secs_f64() * 5.0 + 1.0;
    assert!(
        f64::from(created) <= allowed,
        "{created} created, {allowed} allowed"
    );
    assert!(created >= 5 && unavailable > 0, "{created} / {unavailable}");
    assert_truth(
        &c,
        &base,
        &[
            (
                r#"rehab_sim_faults_injected_total{fault="capacity"}"#,
                f64::from(unavailable),
            ),
            ("rehab_sim_events_accepted_total", f64::from(created)),
        ],
    )
    .await;
    sim.shutdown().await;
}

#[tokio::test]
async fn apply_events_per_second_caps_the_processors_so_the_queue_grows_then_pushes_back() {
    // 20 events/s applied; a queue of 40. Ingestion is not capped.
    let (sim, c, base) = api_with(|cfg| {
        cfg.pipeline.queue_capacity = 40;
        cfg.pipeline.processors = 2;
        cfg.pipeline.batch_size = 10;
        cfg.faults.apply_events_per_second = 20;
    })
    .await;
    let t = Instant::now();
    let (mut created, mut full) = (0, 0);
    for i in 0..80 {
        let r = post_event(&c, &base, &feedback("papply", &format!("{i}"))).await;
        match r.status().as_u16() {
            201 => created += 1,
            503 => {
                assert_eq!(r.headers()["retry-after"], "1");
                full += 1;
            }
            s => panic!("unexpected {s}"),
        }
    }
    let text = metrics_text(&c, &base).await;
    let applied = sample(&text, "rehab_sim_events_applied_total");
    // By construction: at most 20/s plus one batch per processor applied
    // however the posting went.
    let bound = 20.0 * t.elapsed().as_secs_f64() + 20.0;
    assert!(applied <= bound, "{applied} applied, bound {bound}");
    assert!(
        full > 0,
        "the queue filled and pushed back: {created} / {full}"
    );
    assert_eq!(
        sample(
            &text,
            r#"rehab_sim_events_rejected_total{reason="queue_full"}"#
        ),
        f64::from(full)
    );
    let depth = sample(&text, "rehab_sim_queue_depth");
    assert!(depth > 0.0 && depth <= 40.0, "depth {depth}");
    // The detail route reports the same queue.
    let detail: Value = c
        .get(format!("{base}/health/detailed"))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert!(detail["queue"]["depth"].as_f64().unwrap() > 0.0, "{detail}");
    // Healed, everything accepted is applied.
    sim.set_faults(Faults::default());
    eventually("queue drained", DEADLINE, || async {
        let text = metrics_text(&c, &base).await;
        (sample(&text, "rehab_sim_events_applied_total") == f64::from(created)).then_some(())
    })
    .await;
    sim.shutdown().await;
}

#[tokio::test]
async fn faults_from_config_and_handle() {
    let (sim, c, base) = api_with(|cfg| cfg.faults.error_rate = 1.0).await;
    assert_eq!(
        c.get(format!("{base}/health"))
            .send()
            .await
            .unwrap()
            .status(),
        500
    );
    let v: Value = c
        .get(format!("{base}/sim/faults"))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(v["error_rate"], 1.0);
    sim.set_faults(faults(|f| {
        f.rate_limit_rate = 1.0;
        f.retry_after_s = 3;
    }));
    let r = c.get(format!("{base}/health")).send().await.unwrap();
    assert_eq!(r.status(), 429);
    c.delete(format!("{base}/sim/faults")).send().await.unwrap();
    assert_eq!(
        c.get(format!("{base}/health"))
            .send()
            .await
            .unwrap()
            .status(),
        200
    );
    assert_eq!(sim.faults(), Faults::default());
    sim.shutdown().await;
}

#[tokio::test]
async fn rebuild_leaves_old_events_out_of_the_stream_and_says_which() {
    let (sim, c, base) = api(fast_config()).await;
    for k in 0..40 {
        let ev = session_start("prb", &format!("s{k}"), "2025-09-08T10:00:00Z", 10);
        assert_eq!(post_event(&c, &base, &ev).await.status(), 201);
    }
    let url = format!("{base}/api/v1/patients/prb/stream?limit=1000");
    read_until(&c, &url, "all 40 visible", |v| v["count"] == 40).await;
    // Bad input: 400 naming the field; nothing changes.
    for (body, field) in [
        (json!({"drop_fraction": 1.5}), "drop_fraction"),
        (
            json!({"drop_fraction": 0.1, "projection": "adherence"}),
            "projection",
        ),
        (json!({"drop_fraction": 0.1, "nope": 1}), "nope"),
    ] {
        let r = post_json(&c, &format!("{base}/sim/rebuild"), &body).await;
        assert_eq!(r.status(), 400, "{body}");
        let text = r.text().await.unwrap();
        assert!(text.contains(field), "{body}: {text}");
    }
    // Nothing is an hour old: a rebuild of old events drops nothing.
    let r = post_json(
        &c,
        &format!("{base}/sim/rebuild"),
        &json!({"drop_fraction": 1.0, "older_than_ms": 3_600_000}),
    )
    .await;
    let v: Value = r.json().await.unwrap();
    assert_eq!(
        (v["examined"].as_u64(), v["dropped"].as_u64()),
        (Some(0), Some(0))
    );
    // Everything visible is old at 0 ms: half of it, about, is left out.
    let r = post_json(
        &c,
        &format!("{base}/sim/rebuild"),
        &json!({"drop_fraction": 0.5, "patient_id": "prb"}),
    )
    .await;
    assert_eq!(r.status(), 200);
    let v: Value = r.json().await.unwrap();
    let dropped = v["dropped"].as_u64().unwrap();
    assert_eq!(v["examined"], 40);
    assert_eq!(v["dropped_by_patient"]["prb"], dropped);
    assert!((5..=35).contains(&dropped), "{dropped}");
    let (_, read) = get_json(&c, &url).await;
    let kept = versions(&read);
    assert_eq!(kept.len() as u64, 40 - dropped);
    assert_eq!(read["stream_version"], 40, "the event store keeps them");
    assert_truth(
        &c,
        &base,
        &[("rehab_sim_rebuild_dropped_events_total", dropped as f64)],
    )
    .await;
    // In process, the truth names the events.
    let report = sim.rebuild(1.0, Duration::ZERO, Some("prb"));
    assert_eq!(report.dropped, 40 - dropped, "already left out stay out");
    let gone = &report.by_patient["prb"];
    assert!(gone.iter().all(|d| kept.contains(&d.version)));
    assert!(gone
        .iter()
        .all(|d| d.session_id.as_deref().is_some_and(|s| s.starts_with('s'))));
    sim.shutdown().await;
}

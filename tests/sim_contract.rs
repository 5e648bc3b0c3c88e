//! Contract tests of the reference API: every route of rehab-api.md with
//! each status it is specified to answer.

mod support;

use serde_json::{json, Value};
use support::sim::*;

#[tokio::test]
async fn health_routes_need_no_auth() {
    let (sim, c, base) = api(fast_config()).await;
    for path in [
        "/health",
        "/health/detailed",
        "/health/ready",
        "/health/live",
    ] {
        let r = c.get(format!("{base}{path}")).send().await.unwrap();
        assert_eq!(r.status(), 200, "{path}");
        let v: Value = r.json().await.unwrap();
        assert_eq!(v["status"], "ok", "{path}");
    }
    let r = c.get(format!("{base}/nope")).send().await.unwrap();
    assert_eq!(r.status(), 404);
    assert_truth(
        &c,
        &base,
        &[
            (
                r#"rehab_sim_requests_total{route="health",status="200"}"#,
                4.0,
            ),
            (
                r#"rehab_sim_requests_total{route="not_found",status="404"}"#,
                1.0,
            ),
        ],
    )
    .await;
    sim.shutdown().await;
}

#[tokio::test]
async fn ingestion_statuses() {
    let (sim, c, base) = api(fast_config()).await;
    let url = format!("{base}/api/v1/events");

    // Envelope shape: 201, location, stored event.
    let ev = session_start("patient_001", "session_001", "2025-09-08T10:00:00Z", 15);
    let r = post_event(&c, &base, &ev).await;
    assert_eq!(r.status(), 201);
    assert_eq!(
        r.headers()["location"].to_str().unwrap(),
        "/api/v1/patients/patient_001/stream"
    );
    let v: Value = r.json().await.unwrap();
    assert!(v["event_id"].as_str().unwrap().starts_with("evt_"));
    assert_eq!(v["kind"], "exercise_session");
    assert_eq!(v["body"]["prescribed_reps"], 15);

    // Flat shape.
    let flat = json!({"patient_id": "patient_002", "event_type": "feedback", "note": "ok",
                      "consent_id": "c2"});
    let r = post_event(&c, &base, &flat).await;
    assert_eq!(r.status(), 201);
    let v: Value = r.json().await.unwrap();
    assert_eq!(v["subject_id"], "patient_002");
    assert_eq!(v["body"]["note"], "ok");

    let cases: Vec<(&str, Option<&str>, String, u16)> = vec![
        ("malformed", Some(TOKEN), "{not json".into(), 400),
        ("not an object", Some(TOKEN), "[1,2]".into(), 400),
        (
            "no subject",
            Some(TOKEN),
            r#"{"kind":"feedback"}"#.into(),
            400,
        ),
        (
            "unknown kind",
            Some(TOKEN),
            r#"{"kind":"teleport","subject_id":"p"}"#.into(),
            422,
        ),
        ("no token", None, ev.to_string(), 401),
        ("bad token", Some("Bearer wrong"), ev.to_string(), 401),
        ("not bearer", Some(DEV_TOKEN), ev.to_string(), 401),
        (
            "over 1 MiB",
            Some(TOKEN),
            format!(
                r#"{{"kind":"feedback","subject_id":"p","body":{{"x":"{}"}}}}"#,
                "x".repeat(1 << 20)
            ),
            413,
        ),
        (
            "event over max_event_bytes",
            Some(TOKEN),
            format!(
                r#"{{"kind":"feedback","subject_id":"p","body":{{"x":"{}"}}}}"#,
                "x".repeat(40_000)
            ),
            413,
        ),
    ];
    for (name, auth, body, want) in cases {
        let mut req = c
            .post(&url)
            .header("content-type", "application/json")
            .body(body);
        if let Some(a) = auth {
            req = req.header("authorization", a);
        }
        let r = req.send().await.unwrap();
        assert_eq!(r.status().as_u16(), want, "{name}");
        let v: Value = r.json().await.unwrap_or(Value::Null);
        assert!(
            v["error"].is_string(),
            "{name}: JSON error expected, got {v}"
        );
    }
    assert_truth(
        &c,
        &base,
        &[
            ("rehab_sim_events_accepted_total", 2.0),
            (
                r#"rehab_sim_requests_total{route="events_create",status="401"}"#,
                3.0,
            ),
            (
                r#"rehab_sim_events_rejected_total{reason="unknown_kind"}"#,
                1.0,
            ),
        ],
    )
    .await;
    sim.shutdown().await;
}

#[tokio::test]
async fn batch_statuses() {
    let (sim, c, base) = api(fast_config()).await;
    let url = format!("{base}/api/v1/events/batch");
    let batch = json!([
        feedback("pb", "a"),
        feedback("pb", "b"),
        feedback("pb", "c")
    ]);
    let r = c
        .post(&url)
        .header("authorization", TOKEN)
        .json(&batch)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 201);
    let v: Value = r.json().await.unwrap();
    assert_eq!(v["count"], 3);
    assert_eq!(v["events"].as_array().unwrap().len(), 3);
    // The wrapped form works too.
    let r = c
        .post(&url)
        .header("authorization", TOKEN)
        .json(&json!({"events": [feedback("pb", "d")]}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 201);
    let notes = eventually("batch applied", DEADLINE, || async {
        let n = stream_notes(&c, &base, "pb").await;
        (n.len() == 4).then_some(n)
    })
    .await;
    assert_eq!(notes, ["a", "b", "c", "d"]);

    let cases = [
        (
            "mixed patients",
            json!([feedback("p1", "a"), feedback("p2", "b")]),
            422,
        ),
        ("empty", json!([]), 400),
        ("not a list", json!({"x": 1}), 400),
        (
            "bad item",
            json!([feedback("p1", "a"), {"kind": "nope", "subject_id": "p1"}]),
            422,
        ),
    ];
    for (name, body, want) in cases {
        let r = c
            .post(&url)
            .header("authorization", TOKEN)
            .json(&body)
            .send()
            .await
            .unwrap();
        assert_eq!(r.status().as_u16(), want, "{name}");
    }
    let r = post_json(&c, &url, &batch).await;
    assert_eq!(r.status(), 401);
    assert_eq!(
        metric(&c, &base, "rehab_sim_events_accepted_total").await,
        4.0
    );
    sim.shutdown().await;
}

#[tokio::test]
async fn stream_and_events_reads() {
    let (sim, c, base) = api(fast_config()).await;
    for i in 0..5 {
        post_event(&c, &base, &feedback("ps", &format!("f{i}"))).await;
    }
    post_event(&c, &base, &rep("ps", "s1", 1, 0.9)).await;
    let stream = format!("{base}/api/v1/patients/ps/stream");
    eventually("6 events visible", DEADLINE, || async {
        let r = c
            .get(&stream)
            .header("authorization", TOKEN)
            .send()
            .await
            .unwrap();
        (r.headers()["x-stream-version"] == "6").then_some(())
    })
    .await;

    let (s, v) = get_json(&c, &format!("{stream}?limit=2")).await;
    assert_eq!(s, 200);
    assert_eq!(v["stream_version"], 6);
    assert_eq!(
        versions(&v),
        [5, 6],
        "without start_version the newest come, in order"
    );

    let (_, v) = get_json(&c, &format!("{stream}?start_version=2&count=3")).await;
    assert_eq!(versions(&v), [2, 3, 4]);

    let (_, v) = get_json(&c, &format!("{stream}?event_type=rep_observation")).await;
    assert_eq!(v["count"], 1);
    assert_eq!(v["events"][0]["kind"], "rep_observation");

    let (s, v) = get_json(&c, &format!("{base}/api/v1/patients/ps/events")).await;
    assert_eq!(s, 200);
    assert_eq!(v["count"], 6);

    for (q, want) in [
        ("limit=1001", 400),
        ("count=0", 400),
        ("limit=abc", 400),
        ("event_type=zzz", 422),
    ] {
        let (s, _) = get_json(&c, &format!("{stream}?{q}")).await;
        assert_eq!(s, want, "{q}");
    }
    let r = c.get(&stream).send().await.unwrap();
    assert_eq!(r.status(), 401);
    let (s, _) = get_json(&c, &format!("{base}/api/v1/patients/unknown/stream")).await;
    assert_eq!(s, 403);
    sim.shutdown().await;
}

#[tokio::test]
async fn register_and_consent() {
    let (sim, c, base) = api(fast_config()).await;
    let r = c
        .get(format!("{base}/api/v1/patients/pr/consent"))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    assert_eq!(r.json::<Value>().await.unwrap()["consented"], false);
    // Public route: no token needed.
    let r = post_json(
        &c,
        &format!("{base}/api/v1/patients/register"),
        &json!({"patient_id": "pr", "therapist_id": "t1"}),
    )
    .await;
    assert_eq!(r.status(), 201);
    let v: Value = r.json().await.unwrap();
    assert_eq!(v["consented"], true);
    assert_eq!(v["therapist_id"], "t1");
    let r = c
        .get(format!("{base}/api/v1/patients/pr/consent"))
        .send()
        .await
        .unwrap();
    assert_eq!(r.json::<Value>().await.unwrap()["consented"], true);
    for body in ["{", r#"{"patient_id":"a b"}"#] {
        let r = c
            .post(format!("{base}/api/v1/patients/register"))
            .header("content-type", "application/json")
            .body(body)
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 400, "{body}");
    }
    sim.shutdown().await;
}

#[tokio::test]
async fn projection_routes() {
    let (sim, c, base) = api(fast_config()).await;
    post_event(
        &c,
        &base,
        &session_start("pp", "s1", "2025-09-08T10:00:00Z", 10),
    )
    .await;
    post_event(
        &c,
        &base,
        &session_completion("pp", "s1", "2025-09-08T10:20:00Z", 10, 0.9),
    )
    .await;
    let p = format!("{base}/api/v1/projections");
    let adherence = format!("{p}/adherence?patient_id=pp");
    read_until(&c, &adherence, "completion applied", |v| {
        v["sessions_completed"] == 1
    })
    .await;
    let (s, v) = get_json(&c, &format!("{p}/quality?patient_id=pp&window=14d")).await;
    assert_eq!(s, 200);
    assert_eq!(v["window"], "14d");
    assert_eq!(v["average_quality"], 0.9);
    let (s, v) = get_json(&c, &format!("{p}/patient-summary?patient_id=pp")).await;
    assert_eq!(s, 200);
    assert_eq!(v["stream_version"], 2);
    assert_eq!(v["adherence"]["sessions_completed"], 1);
    let (s, v) = get_json(&c, &format!("{p}/work-queue?therapist_id=t9")).await;
    assert_eq!(s, 200);
    assert_eq!(v["count"], 0);
    let (s, v) = get_json(
        &c,
        &format!("{base}/api/v1/alerts?alert_type=quality_degradation"),
    )
    .await;
    assert_eq!(s, 200);
    assert_eq!(v["count"], 0);

    let cases = [
        ("adherence", 400),
        ("adherence?patient_id=ghost", 404),
        ("quality?patient_id=pp&window=400d", 400),
        ("quality?patient_id=ghost", 404),
        ("patient-summary", 400),
        ("patient-summary?patient_id=ghost", 404),
    ];
    for (q, want) in cases {
        let (s, _) = get_json(&c, &format!("{p}/{q}")).await;
        assert_eq!(s, want, "{q}");
    }
    for q in [
        "adherence?patient_id=pp",
        "quality?patient_id=pp",
        "work-queue",
        "patient-summary?patient_id=pp",
    ] {
        let r = c.get(format!("{p}/{q}")).send().await.unwrap();
        assert_eq!(r.status(), 401, "{q}");
    }
    let r = c.get(format!("{base}/api/v1/alerts")).send().await.unwrap();
    assert_eq!(r.status(), 401);
    sim.shutdown().await;
}

#[tokio::test]
async fn auth_routes() {
    let (sim, c, base) = api(fast_config()).await;
    let login = format!("{base}/api/v1/auth/login");
    let r = post_json(
        &c,
        &login,
        &json!({"username": "dev", "password": "dev-password"}),
    )
    .await;
    assert_eq!(r.status(), 200);
    let v: Value = r.json().await.unwrap();
    assert_eq!(v["expires_in"], 900);
    let access = v["access_token"].as_str().unwrap().to_string();
    let refresh_token = v["refresh_token"].as_str().unwrap().to_string();
    let r = get_as(&c, &format!("{base}/api/v1/alerts"), &access).await;
    assert_eq!(r.status(), 200);
    let r = post_json(&c, &login, &json!({"username": "dev", "password": "nope"})).await;
    assert_eq!(r.status(), 401);
    let r = c.post(&login).body("{").send().await.unwrap();
    assert_eq!(r.status(), 400);

    let refresh = format!("{base}/api/v1/auth/refresh");
    let r = post_json(&c, &refresh, &json!({"refresh_token": refresh_token})).await;
    assert_eq!(r.status(), 200);
    let v: Value = r.json().await.unwrap();
    assert!(v["access_token"].as_str().unwrap() != access);
    let r = post_json(&c, &refresh, &json!({"refresh_token": refresh_token})).await;
    assert_eq!(r.status(), 401, "refresh tokens rotate");
    sim.shutdown().await;
}

#[tokio::test]
async fn control_and_truth_planes() {
    let (sim, c, base) = api(fast_config()).await;
    let f = format!("{base}/sim/faults");
    let v: Value = c.get(&f).send().await.unwrap().json().await.unwrap();
    assert_eq!(v["error_rate"], 0.0);
    let r = c
        .put(&f)
        .json(&json!({"latency_ms": 1, "error_rate": 0.25}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    let r = c
        .put(&f)
        .json(&json!({"jitter_ms": 2}))
        .send()
        .await
        .unwrap();
    let v: Value = r.json().await.unwrap();
    assert_eq!(
        (
            v["latency_ms"].as_u64(),
            v["jitter_ms"].as_u64(),
            v["error_rate"].as_f64()
        ),
        (Some(1), Some(2), Some(0.25)),
        "a field left out keeps its value"
    );
    for bad in [
        json!({"nope": 1}),
        json!({"error_rate": 2.0}),
        json!({"latency_ms": -1}),
    ] {
        let r = c.put(&f).json(&bad).send().await.unwrap();
        assert_eq!(r.status(), 400, "{bad}");
    }
    let r = c.delete(&f).send().await.unwrap();
    assert_eq!(r.status(), 200);
    let v: Value = c.get(&f).send().await.unwrap().json().await.unwrap();
    assert_eq!(v["error_rate"], 0.0);
    assert_eq!(v["latency_ms"], 0);

    let r = c.get(format!("{base}/metrics")).send().await.unwrap();
    assert_eq!(r.status(), 200);
    let text = r.text().await.unwrap();
    for name in [
        "rehab_sim_events_accepted_total",
        "rehab_sim_events_applied_total",
        "rehab_sim_events_dropped_total",
        "rehab_sim_events_duplicated_total",
        "rehab_sim_projection_lag_seconds_bucket{le=\"0.001\"}",
        "rehab_sim_projection_lag_seconds_bucket{le=\"30.0\"}",
        "rehab_sim_queue_depth",
        "rehab_sim_batch_duration_seconds_count",
        "rehab_sim_requests_total{route=\"sim_faults\",status=\"400\"}",
    ] {
        assert!(text.contains(name), "{name} missing");
    }
    let r = c.get(format!("{base}/")).send().await.unwrap();
    assert_eq!(r.status(), 200);
    sim.shutdown().await;
}

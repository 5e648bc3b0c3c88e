//! The Rehab service's own quickstart scenarios, run against the simulator.

mod support;

use serde_json::json;
use support::sim::*;

#[tokio::test]
async fn twelve_of_fifteen_reps_show_in_adherence() {
    let (sim, c, base) = api(fast_config()).await;
    post_event(
        &c,
        &base,
        &session_start("patient_001", "session_001", "2025-09-08T10:00:00Z", 15),
    )
    .await;
    for n in 1..=12 {
        let r = post_event(&c, &base, &rep("patient_001", "session_001", n, 0.85)).await;
        assert_eq!(r.status(), 201);
    }
    post_event(
        &c,
        &base,
        &session_completion(
            "patient_001",
            "session_001",
            "2025-09-08T10:30:00Z",
            12,
            0.85,
        ),
    )
    .await;
    let url = format!("{base}/api/v1/projections/adherence?patient_id=patient_001");
    let v = read_until(&c, &url, "completion in adherence", |v| {
        v["sessions_completed"] == 1
    })
    .await;
    assert_eq!(v["prescribed_reps"], 15);
    assert_eq!(v["completed_reps"], 12);
    assert_eq!(v["rep_adherence"], 0.8);
    assert_eq!(v["last_session"]["session_id"], "session_001");
    assert_eq!(v["last_session"]["completed_reps"], 12);
    assert_eq!(v["last_session"]["prescribed_reps"], 15);
    let (_, s) = get_json(
        &c,
        &format!("{base}/api/v1/projections/patient-summary?patient_id=patient_001"),
    )
    .await;
    assert_eq!(s["events"]["by_kind"]["rep_observation"], 12);
    sim.shutdown().await;
}

#[tokio::test]
async fn low_quality_week_raises_high_priority_alert_in_work_queue() {
    let (sim, c, base) = api(fast_config()).await;
    let r = post_json(
        &c,
        &format!("{base}/api/v1/patients/register"),
        &json!({"patient_id": "patient_q", "therapist_id": "therapist_001", "consent_id": "c9"}),
    )
    .await;
    assert_eq!(r.status(), 201);
    // 14 sessions at quality 0.65 over 7 days, sent as one batch per session.
    for i in 0..14u32 {
        let day = 8 + i / 2;
        let sid = format!("session_{i:02}");
        let batch = json!([
            session_start(
                "patient_q",
                &sid,
                &format!("2025-09-{day:02}T{:02}:00:00Z", 8 + i % 2 * 8),
                15
            ),
            session_completion(
                "patient_q",
                &sid,
                &format!("2025-09-{day:02}T{:02}:30:00Z", 8 + i % 2 * 8),
                15,
                0.65
            ),
        ]);
        let r = c
            .post(format!("{base}/api/v1/events/batch"))
            .header("authorization", TOKEN)
            .json(&batch)
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 201);
    }
    let adherence = format!("{base}/api/v1/projections/adherence?patient_id=patient_q");
    read_until(&c, &adherence, "all 14 sessions applied", |v| {
        v["sessions_completed"] == 14
    })
    .await;
    let url = format!("{base}/api/v1/projections/work-queue?therapist_id=therapist_001");
    let item = eventually("quality alert in work queue", DEADLINE, || async {
        let (_, v) = get_json(&c, &url).await;
        v["items"]
            .as_array()?
            .iter()
            .find(|a| a["alert_type"] == "quality_degradation")
            .cloned()
    })
    .await;
    assert_eq!(item["priority"], "high");
    assert_eq!(item["patient_id"], "patient_q");
    assert_eq!(item["details"]["average_quality"], 0.65);

    let (_, q) = get_json(
        &c,
        &format!("{base}/api/v1/projections/quality?patient_id=patient_q&window=7d"),
    )
    .await;
    assert_eq!(q["average_quality"], 0.65);
    assert_eq!(q["sessions"], 14);
    let (_, v) = get_json(
        &c,
        &format!("{base}/api/v1/alerts?alert_type=quality_degradation&patient_id=patient_q"),
    )
    .await;
    assert_eq!(v["count"], 1);
    // Another therapist does not see this patient.
    let (_, v) = get_json(
        &c,
        &format!("{base}/api/v1/projections/work-queue?therapist_id=someone_else"),
    )
    .await;
    assert_eq!(v["count"], 0);
    sim.shutdown().await;
}

#[tokio::test]
async fn stream_without_consent_is_forbidden() {
    let (sim, c, base) = api(fast_config()).await;
    let no_consent = json!({"kind": "feedback", "subject_id": "patient_nc", "body": {"note": "x"}});
    assert_eq!(post_event(&c, &base, &no_consent).await.status(), 201);
    let stream = format!("{base}/api/v1/patients/patient_nc/stream");
    let (s, v) = get_json(&c, &stream).await;
    assert_eq!(s, 403);
    assert_eq!(v["error"], "consent_required");
    let (s, _) = get_json(&c, &format!("{base}/api/v1/patients/patient_nc/events")).await;
    assert_eq!(s, 403);

    // Registration grants consent.
    post_json(
        &c,
        &format!("{base}/api/v1/patients/register"),
        &json!({"patient_id": "patient_nc"}),
    )
    .await;
    let (s, _) = get_json(&c, &stream).await;
    assert_eq!(s, 200);

    // So does an accepted event carrying meta.consent_id, at once (before it
    // is even applied).
    assert_eq!(
        post_event(&c, &base, &feedback("patient_mc", "y"))
            .await
            .status(),
        201
    );
    let (s, _) = get_json(&c, &format!("{base}/api/v1/patients/patient_mc/stream")).await;
    assert_eq!(s, 200);
    sim.shutdown().await;
}

//! The read models: patient streams, adherence, quality, patient summary,
//! the therapist work queue and alerts.

use axum::extract::rejection::QueryRejection;
use axum::extract::{Path, Query, State};
use axum::http::{HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use serde::Deserialize;
use serde_json::{json, Value};

use crate::sim::projections::Aggregates;
use crate::sim::store::PatientInfo;

use super::*;

#[derive(Deserialize)]
pub(super) struct StreamParams {
    limit: Option<usize>,
    count: Option<usize>,
    start_version: Option<u64>,
    event_type: Option<String>,
}

pub(super) async fn stream(
    State(s): S,
    Path(id): Path<String>,
    q: Result<Query<StreamParams>, QueryRejection>,
) -> Response {
    let Query(p) = match q {
        Ok(q) => q,
        Err(r) => return query_rejection(r),
    };
    let limit = p.limit.or(p.count).unwrap_or(DEFAULT_STREAM_LIMIT);
    if limit == 0 || limit > MAX_STREAM_LIMIT {
        return bad_request(&format!(
            "`limit`/`count` must be between 1 and {MAX_STREAM_LIMIT}"
        ));
    }
    let kind = match p.event_type.as_deref() {
        None | Some("") => None,
        Some(t) => match EventKind::parse(t) {
            Some(k) => Some(k),
            None => {
                return error_response(
                    StatusCode::UNPROCESSABLE_ENTITY,
                    "unknown_kind",
                    "unknown `event_type`",
                )
            }
        },
    };
    let query = StreamQuery {
        limit,
        start_version: p.start_version,
        kind,
    };
    match s.store.read_stream(&id, &query) {
        Ok(v) => {
            let mut r = json_bytes(StatusCode::OK, v.body);
            r.headers_mut()
                .insert("x-stream-version", HeaderValue::from(v.stream_version));
            r
        }
        Err(ReadError::NoConsent) => error_response(
            StatusCode::FORBIDDEN,
            "consent_required",
            "patient has no recorded consent",
        ),
    }
}

#[derive(Deserialize)]
pub(super) struct PatientParams {
    patient_id: Option<String>,
    window: Option<String>,
}

/// The common shape of a per-patient projection read: query parsed,
/// `patient_id` required, 404 for an unknown patient, and `render` given the
/// patient's up-to-date read models (it may refuse the query with a 400).
fn patient_read(
    s: &AppState,
    q: Result<Query<PatientParams>, QueryRejection>,
    render: impl FnOnce(&str, &PatientParams, &Aggregates, PatientInfo<'_>) -> Value,
    check: impl FnOnce(&PatientParams) -> Result<(), String>,
) -> Response {
    let Query(p) = match q {
        Ok(q) => q,
        Err(r) => return query_rejection(r),
    };
    let id = match p.patient_id.as_deref() {
        Some(id) if !id.is_empty() => id,
        _ => return bad_request("`patient_id` is required"),
    };
    if let Err(m) = check(&p) {
        return bad_request(&m);
    }
    match s.store.with_patient(id, |a, info| render(id, &p, a, info)) {
        Some(v) => axum::Json(v).into_response(),
        None => error_response(StatusCode::NOT_FOUND, "not_found", "unknown patient"),
    }
}

pub(super) async fn adherence(
    State(s): S,
    q: Result<Query<PatientParams>, QueryRejection>,
) -> Response {
    patient_read(&s, q, |id, _, a, _| a.adherence_json(id), |_| Ok(()))
}

/// `7d`, `14d`, ... (1-30 days); plain numbers are days too.
fn parse_window(w: Option<&str>) -> Result<u32, String> {
    let Some(w) = w else { return Ok(7) };
    let digits = w.strip_suffix('d').unwrap_or(w);
    match digits.parse::<u32>() {
        Ok(d) if (1..=30).contains(&d) => Ok(d),
        _ => Err("`window` must be like 7d or 14d (1d-30d)".into()),
    }
}

pub(super) async fn quality(
    State(s): S,
    q: Result<Query<PatientParams>, QueryRejection>,
) -> Response {
    let window = |p: &PatientParams| parse_window(p.window.as_deref());
    patient_read(
        &s,
        q,
        |id, p, a, _| a.quality_json(id, window(p).unwrap_or(7)),
        |p| window(p).map(|_| ()),
    )
}

pub(super) async fn patient_summary(
    State(s): S,
    q: Result<Query<PatientParams>, QueryRejection>,
) -> Response {
    let window = s.cfg.rules.quality_window_days;
    let render = |id: &str, _: &PatientParams, a: &Aggregates, info: PatientInfo<'_>| {
        let adherence = a.adherence_json(id);
        let quality = a.quality_json(id, window);
        json!({
            "patient_id": id,
            "therapist_id": info.therapist_id,
            "consented": info.consented,
            "consent_id": info.consent_id,
            "registered_at": info.registered_ms.map(envelope::format_ts_ms),
            "first_seen_at": envelope::format_ts_ms(info.first_seen_ms),
            "last_event_at": a.latest_ms().map(envelope::format_ts_ms),
            "stream_version": info.stream_version,
            "retained_events": info.retained_events,
            "events": a.counts_json(),
            "adherence": {
                "sessions_prescribed": adherence["sessions_prescribed"],
                "sessions_completed": adherence["sessions_completed"],
                "rep_adherence": adherence["rep_adherence"],
            },
            "quality": quality,
            "open_alerts": a.alerts().len(),
        })
    };
    patient_read(&s, q, render, |_| Ok(()))
}

#[derive(Deserialize)]
pub(super) struct WorkQueueParams {
    therapist_id: Option<String>,
}

pub(super) async fn work_queue(
    State(s): S,
    q: Result<Query<WorkQueueParams>, QueryRejection>,
) -> Response {
    let Query(p) = match q {
        Ok(q) => q,
        Err(r) => return query_rejection(r),
    };
    let therapist = p.therapist_id.as_deref().filter(|t| !t.is_empty());
    let items = s.store.alerts(&AlertFilter {
        therapist_id: therapist,
        ..AlertFilter::default()
    });
    axum::Json(json!({
        "therapist_id": therapist,
        "count": items.len(),
        "items": items,
    }))
    .into_response()
}

#[derive(Deserialize)]
pub(super) struct AlertParams {
    alert_type: Option<String>,
    patient_id: Option<String>,
}

pub(super) async fn alerts(State(s): S, q: Result<Query<AlertParams>, QueryRejection>) -> Response {
    let Query(p) = match q {
        Ok(q) => q,
        Err(r) => return query_rejection(r),
    };
    let items = s.store.alerts(&AlertFilter {
        alert_type: p.alert_type.as_deref().filter(|t| !t.is_empty()),
        patient_id: p.patient_id.as_deref().filter(|t| !t.is_empty()),
        therapist_id: None,
    });
    axum::Json(json!({"count": items.len(), "alerts": items})).into_response()
}

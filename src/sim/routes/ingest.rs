//! Ingestion: single events and batches (the drop, duplicate and capacity
//! faults and the acceptance instant the true lag starts from), patient
//! registration and consent.

use crate::sim::traces::CreatedEvent;
use crate::sim::truth::BatchWatch;
use std::sync::Arc;

use axum::body::Bytes;
use axum::extract::rejection::BytesRejection;
use axum::extract::{Path, State};
use axum::http::{header, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use serde::Deserialize;
use serde_json::{json, Value};

use super::*;

/// Maps a parse failure to its status and counts it.
fn reject(truth: &Truth, e: &EnvelopeError, index: Option<usize>) -> Response {
    let (status, code, reason) = match e {
        EnvelopeError::Malformed(_) => (
            StatusCode::BAD_REQUEST,
            "malformed_json",
            RejectReason::malformed,
        ),
        EnvelopeError::Invalid(_) => (
            StatusCode::BAD_REQUEST,
            "invalid_event",
            RejectReason::invalid,
        ),
        EnvelopeError::UnknownKind(_) => (
            StatusCode::UNPROCESSABLE_ENTITY,
            "unknown_kind",
            RejectReason::unknown_kind,
        ),
        EnvelopeError::TooLarge(_) => (
            StatusCode::PAYLOAD_TOO_LARGE,
            "payload_too_large",
            RejectReason::too_large,
        ),
    };
    truth.reject(reason);
    let message = match index {
        Some(i) => format!("events[{i}]: {e}"),
        None => e.to_string(),
    };
    error_response(status, code, &message)
}

/// Applies the drop/duplicate dice; `None` means "dropped" (counted by the
/// caller once the event is really accepted).
fn roll_queued(f: &Faults, event: Event, accepted_at: Instant) -> Option<Queued> {
    if roll(f.drop_rate) {
        return None;
    }
    Some(Queued {
        event,
        accepted_at,
        duplicate: roll(f.duplicate_rate),
        batch: None,
    })
}

pub(super) async fn create_event(State(s): S, body: Result<Bytes, BytesRejection>) -> Response {
    let body = match body {
        Ok(b) => b,
        Err(r) => {
            s.truth.reject(RejectReason::too_large);
            return body_rejection(r);
        }
    };
    let f = s.faults.load();
    if !s.faults.take_capacity(f.max_events_per_second, 1) {
        s.truth.fault(FaultKind::capacity);
        s.truth.reject(RejectReason::capacity);
        return unavailable("over_capacity", "ingestion capacity exceeded");
    }
    let received = Received::now();
    let now = received.ms;
    let event = match envelope::parse_event(&body, s.cfg.retention.max_event_bytes, received) {
        Ok(e) => e,
        Err(e) => return reject(&s.truth, &e, None),
    };
    let json = event.json.clone();
    let id = event.id.clone();
    let location = format!("/api/v1/patients/{}/stream", event.patient_id);
    let patient = event.patient_id.clone();
    let consent = event.consent_id.clone();
    let therapist = event.therapist_id.clone();
    match roll_queued(&f, event, received.at) {
        Some(q) => {
            if s.pipeline.try_enqueue(q).is_err() {
                s.truth.reject(RejectReason::queue_full);
                return unavailable("queue_full", "ingestion queue is full");
            }
        }
        None => {
            s.truth.dropped.inc();
        }
    }
    s.store
        .note_accepted(&patient, consent.as_deref(), therapist.as_deref(), now);
    s.truth.accepted.inc();
    let mut r = json_bytes(StatusCode::CREATED, json);
    if let Ok(v) = HeaderValue::from_str(&location) {
        r.headers_mut().insert(header::LOCATION, v);
    }
    r.extensions_mut().insert(CreatedEvent(id));
    r
}

pub(super) async fn create_batch(State(s): S, body: Result<Bytes, BytesRejection>) -> Response {
    let body = match body {
        Ok(b) => b,
        Err(r) => {
            s.truth.reject(RejectReason::too_large);
            return body_rejection(r);
        }
    };
    let value: Value = match serde_json::from_slice(&body) {
        Ok(v) => v,
        Err(e) => return reject(&s.truth, &EnvelopeError::Malformed(e.to_string()), None),
    };
    let items = match value {
        Value::Array(a) => a,
        Value::Object(mut m) => match m.remove("events") {
            Some(Value::Array(a)) => a,
            _ => return bad_request("a batch is a JSON array of events or {\"events\": [...]}"),
        },
        _ => return bad_request("a batch is a JSON array of events or {\"events\": [...]}"),
    };
    if items.is_empty() {
        return bad_request("a batch needs at least one event");
    }
    if items.len() > MAX_BATCH_EVENTS {
        s.truth.reject(RejectReason::too_large);
        return error_response(
            StatusCode::PAYLOAD_TOO_LARGE,
            "batch_too_large",
            &format!("at most {MAX_BATCH_EVENTS} events per batch"),
        );
    }
    let received = Received::now();
    let now = received.ms;
    let mut events = Vec::with_capacity(items.len());
    for (i, item) in items.into_iter().enumerate() {
        match envelope::from_value(item, s.cfg.retention.max_event_bytes, received) {
            Ok(e) => events.push(e),
            Err(e) => return reject(&s.truth, &e, Some(i)),
        }
    }
    let patient = events[0].patient_id.clone();
    if events.iter().any(|e| e.patient_id != patient) {
        s.truth.reject(RejectReason::invalid);
        return error_response(
            StatusCode::UNPROCESSABLE_ENTITY,
            "mixed_patients",
            "all events of a batch must belong to one patient",
        );
    }
    let f = s.faults.load();
    if !s
        .faults
        .take_capacity(f.max_events_per_second, events.len() as u64)
    {
        s.truth.fault(FaultKind::capacity);
        s.truth.reject(RejectReason::capacity);
        return unavailable("over_capacity", "ingestion capacity exceeded");
    }
    let n = events.len();
    let mut out = Vec::with_capacity(events.iter().map(|e| e.json.len() + 1).sum::<usize>() + 64);
    out.extend_from_slice(
        format!(
            "{{\"patient_id\":{},\"count\":{n},\"events\":[",
            Value::from(&*patient)
        )
        .as_bytes(),
    );
    let first_id = events[0].id.clone();
    let consent = events.iter().rev().find_map(|e| e.consent_id.clone());
    let therapist = events.iter().rev().find_map(|e| e.therapist_id.clone());
    let mut queued = Vec::with_capacity(n);
    for (i, e) in events.into_iter().enumerate() {
        if i > 0 {
            out.push(b',');
        }
        out.extend_from_slice(&e.json);
        if let Some(q) = roll_queued(&f, e, received.at) {
            queued.push(q);
        }
    }
    out.extend_from_slice(b"]}");
    let dropped = (n - queued.len()) as u64;
    let watch = BatchWatch::new(first_id, n, queued.len());
    for q in &mut queued {
        q.batch = Some(watch.clone());
    }
    let nothing_to_wait_for = queued.is_empty();
    if s.pipeline.try_enqueue_all(queued).is_err() {
        s.truth.reject(RejectReason::queue_full);
        return unavailable("queue_full", "ingestion queue is full");
    }
    if nothing_to_wait_for {
        s.truth.batch_done(&watch);
    }
    s.truth.dropped.inc_by(dropped);
    s.store
        .note_accepted(&patient, consent.as_deref(), therapist.as_deref(), now);
    s.truth.accepted.inc_by(n as u64);
    let mut r = json_bytes(StatusCode::CREATED, out);
    if let Ok(v) = HeaderValue::from_str(&format!("/api/v1/patients/{patient}/stream")) {
        r.headers_mut().insert(header::LOCATION, v);
    }
    r
}

#[derive(Deserialize)]
struct RegisterBody {
    patient_id: Option<String>,
    id: Option<String>,
    therapist_id: Option<String>,
    consent_id: Option<String>,
}

/// Errors of the parameter helpers are messages for a 400 (a `Response` is
/// too large to travel in a `Result`).
fn opt_id(v: Option<String>, key: &str) -> Result<Option<Box<str>>, String> {
    match v {
        None => Ok(None),
        Some(s) if valid_id(&s) => Ok(Some(s.into_boxed_str())),
        Some(_) => Err(format!("`{key}` must be 1-128 characters [A-Za-z0-9_.:@-]")),
    }
}

pub(super) async fn register(State(s): S, body: Result<Bytes, BytesRejection>) -> Response {
    let b: RegisterBody = match parsed_body(body, |e| format!("invalid registration: {e}")) {
        Ok(b) => b,
        Err(r) => return *r,
    };
    let (patient, therapist, consent) = match (
        opt_id(b.patient_id.or(b.id), "patient_id"),
        opt_id(b.therapist_id, "therapist_id"),
        opt_id(b.consent_id, "consent_id"),
    ) {
        (Ok(p), Ok(t), Ok(c)) => (p, t, c),
        (Err(m), _, _) | (_, Err(m), _) | (_, _, Err(m)) => return bad_request(&m),
    };
    let patient: Arc<str> = match patient {
        Some(p) => Arc::from(&*p),
        None => Arc::from(format!("patient_{:016x}", rand::random::<u64>())),
    };
    let v = s.store.register(&patient, therapist, consent, now_ms());
    let mut r = (StatusCode::CREATED, axum::Json(v)).into_response();
    if let Ok(v) = HeaderValue::from_str(&format!("/api/v1/patients/{patient}/stream")) {
        r.headers_mut().insert(header::LOCATION, v);
    }
    r
}

pub(super) async fn consent(State(s): S, Path(id): Path<String>) -> Response {
    match s.store.consent(&id) {
        Some(v) => axum::Json(v).into_response(),
        None => axum::Json(json!({
            "patient_id": id, "consented": false, "consent_id": null, "registered": false
        }))
        .into_response(),
    }
}

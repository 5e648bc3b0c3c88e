//! HTTP handlers of the reference API, the fault control plane and the
//! ground-truth endpoint, and the router that ties them together.

use std::sync::Arc;
use std::time::Instant;

use axum::body::{Body, Bytes};
use axum::extract::rejection::{BytesRejection, QueryRejection};
use axum::extract::{DefaultBodyLimit, Path, Query, State};
use axum::http::{header, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::Router;
use serde::Deserialize;
use serde_json::{json, Value};

use super::auth::Auth;
use super::config::{SimConfig, MAX_BODY_BYTES};
use super::envelope::{self, now_ms, valid_id, EnvelopeError, Event, Received};
use super::faults::{roll, FaultState, Faults, FaultsPatch};
use super::middleware::front;
use super::pipeline::{Pipeline, Queued};
use super::store::{AlertFilter, ReadError, Store, StreamQuery};
use super::truth::{FaultKind, RejectReason, Truth};
use crate::api::EventKind;

/// Most events in one `/events/batch` request.
pub const MAX_BATCH_EVENTS: usize = 1000;
/// Most events one stream read returns.
pub const MAX_STREAM_LIMIT: usize = 1000;
/// Events a stream read returns when neither `limit` nor `count` is given.
pub const DEFAULT_STREAM_LIMIT: usize = 100;

/// Shared state of every handler.
pub struct AppState {
    pub cfg: SimConfig,
    pub store: Arc<Store>,
    pub pipeline: Pipeline,
    pub faults: Arc<FaultState>,
    pub truth: Arc<Truth>,
    pub auth: Auth,
    pub started: Instant,
}

type S = State<Arc<AppState>>;

pub fn router(state: Arc<AppState>) -> Router {
    Router::new()
        .route("/", get(index))
        .route("/health", get(health))
        .route("/health/live", get(health))
        .route("/health/ready", get(health))
        .route("/health/detailed", get(health_detailed))
        .route("/api/v1/events", post(create_event))
        .route("/api/v1/events/batch", post(create_batch))
        .route("/api/v1/patients/register", post(register))
        .route("/api/v1/patients/{id}/stream", get(stream))
        .route("/api/v1/patients/{id}/events", get(stream))
        .route("/api/v1/patients/{id}/consent", get(consent))
        .route("/api/v1/projections/adherence", get(adherence))
        .route("/api/v1/projections/quality", get(quality))
        .route("/api/v1/projections/work-queue", get(work_queue))
        .route("/api/v1/projections/patient-summary", get(patient_summary))
        .route("/api/v1/alerts", get(alerts))
        .route("/api/v1/auth/login", post(login))
        .route("/api/v1/auth/refresh", post(refresh))
        .route(
            "/sim/faults",
            get(get_faults).put(put_faults).delete(delete_faults),
        )
        .route("/metrics", get(metrics))
        .fallback(not_found)
        .layer(DefaultBodyLimit::max(MAX_BODY_BYTES))
        .layer(axum::middleware::from_fn_with_state(state.clone(), front))
        .with_state(state)
}

/// `{"error": code, "message": ...}` with a status.
pub fn error_response(status: StatusCode, code: &str, message: &str) -> Response {
    (
        status,
        axum::Json(json!({"error": code, "message": message})),
    )
        .into_response()
}

fn bad_request(message: &str) -> Response {
    error_response(StatusCode::BAD_REQUEST, "invalid_request", message)
}

fn unavailable(code: &str, message: &str) -> Response {
    let mut r = error_response(StatusCode::SERVICE_UNAVAILABLE, code, message);
    r.headers_mut()
        .insert(header::RETRY_AFTER, HeaderValue::from_static("1"));
    r
}

fn body_rejection(r: BytesRejection) -> Response {
    let status = r.status();
    let code = if status == StatusCode::PAYLOAD_TOO_LARGE {
        "payload_too_large"
    } else {
        "invalid_body"
    };
    error_response(status, code, &r.body_text())
}

fn query_rejection(r: QueryRejection) -> Response {
    bad_request(&r.body_text())
}

fn json_bytes(status: StatusCode, body: impl Into<Bytes>) -> Response {
    let mut r = Response::new(Body::from(body.into()));
    *r.status_mut() = status;
    r.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/json"),
    );
    r
}

async fn index() -> Response {
    axum::response::Html(
        "<html><head><title>rehab-canary sim</title></head><body><h1>Rehab API reference \
         simulator</h1><p><a href=\"/metrics\">metrics</a> · <a href=\"/sim/faults\">faults</a> \
         · <a href=\"/health/detailed\">health</a></p></body></html>",
    )
    .into_response()
}

async fn not_found() -> Response {
    error_response(StatusCode::NOT_FOUND, "not_found", "no such route")
}

async fn health() -> Response {
    axum::Json(json!({"status": "ok"})).into_response()
}

async fn health_detailed(State(s): S) -> Response {
    let stats = s.store.stats();
    let f = s.faults.get();
    axum::Json(json!({
        "status": "ok",
        "uptime_seconds": s.started.elapsed().as_secs(),
        "queue": {"depth": s.pipeline.depth(), "capacity": s.pipeline.capacity()},
        "pipeline": {
            "processors": s.cfg.pipeline.processors,
            "batch_size": s.cfg.pipeline.batch_size,
            "batch_timeout_ms": s.cfg.pipeline.batch_timeout.as_millis() as u64,
            "stalled": f.stall_projector,
        },
        "store": {"patients": stats.patients, "events": stats.events},
        "faults_active": *f != Faults::default(),
    }))
    .into_response()
}

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
    })
}

async fn create_event(State(s): S, body: Result<Bytes, BytesRejection>) -> Response {
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
    r
}

async fn create_batch(State(s): S, body: Result<Bytes, BytesRejection>) -> Response {
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
    if s.pipeline.try_enqueue_all(queued).is_err() {
        s.truth.reject(RejectReason::queue_full);
        return unavailable("queue_full", "ingestion queue is full");
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

async fn register(State(s): S, body: Result<Bytes, BytesRejection>) -> Response {
    let body = match body {
        Ok(b) => b,
        Err(r) => return body_rejection(r),
    };
    let b: RegisterBody = match serde_json::from_slice(&body) {
        Ok(b) => b,
        Err(e) => return bad_request(&format!("invalid registration: {e}")),
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

async fn consent(State(s): S, Path(id): Path<String>) -> Response {
    match s.store.consent(&id) {
        Some(v) => axum::Json(v).into_response(),
        None => axum::Json(json!({
            "patient_id": id, "consented": false, "consent_id": null, "registered": false
        }))
        .into_response(),
    }
}

#[derive(Deserialize)]
struct StreamParams {
    limit: Option<usize>,
    count: Option<usize>,
    start_version: Option<u64>,
    event_type: Option<String>,
}

async fn stream(
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
struct PatientParams {
    patient_id: Option<String>,
    window: Option<String>,
}

fn require_patient(p: &PatientParams) -> Result<&str, String> {
    match p.patient_id.as_deref() {
        Some(id) if !id.is_empty() => Ok(id),
        _ => Err("`patient_id` is required".into()),
    }
}

fn unknown_patient() -> Response {
    error_response(StatusCode::NOT_FOUND, "not_found", "unknown patient")
}

async fn adherence(State(s): S, q: Result<Query<PatientParams>, QueryRejection>) -> Response {
    let Query(p) = match q {
        Ok(q) => q,
        Err(r) => return query_rejection(r),
    };
    let id = match require_patient(&p) {
        Ok(id) => id,
        Err(m) => return bad_request(&m),
    };
    match s.store.with_patient(id, |a, _| a.adherence_json(id)) {
        Some(v) => axum::Json(v).into_response(),
        None => unknown_patient(),
    }
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

async fn quality(State(s): S, q: Result<Query<PatientParams>, QueryRejection>) -> Response {
    let Query(p) = match q {
        Ok(q) => q,
        Err(r) => return query_rejection(r),
    };
    let id = match require_patient(&p) {
        Ok(id) => id,
        Err(m) => return bad_request(&m),
    };
    let days = match parse_window(p.window.as_deref()) {
        Ok(d) => d,
        Err(m) => return bad_request(&m),
    };
    match s.store.with_patient(id, |a, _| a.quality_json(id, days)) {
        Some(v) => axum::Json(v).into_response(),
        None => unknown_patient(),
    }
}

async fn patient_summary(State(s): S, q: Result<Query<PatientParams>, QueryRejection>) -> Response {
    let Query(p) = match q {
        Ok(q) => q,
        Err(r) => return query_rejection(r),
    };
    let id = match require_patient(&p) {
        Ok(id) => id,
        Err(m) => return bad_request(&m),
    };
    let window = s.cfg.rules.quality_window_days;
    let v = s.store.with_patient(id, |a, info| {
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
    });
    match v {
        Some(v) => axum::Json(v).into_response(),
        None => unknown_patient(),
    }
}

#[derive(Deserialize)]
struct WorkQueueParams {
    therapist_id: Option<String>,
}

async fn work_queue(State(s): S, q: Result<Query<WorkQueueParams>, QueryRejection>) -> Response {
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
struct AlertParams {
    alert_type: Option<String>,
    patient_id: Option<String>,
}

async fn alerts(State(s): S, q: Result<Query<AlertParams>, QueryRejection>) -> Response {
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

#[derive(Deserialize)]
struct LoginBody {
    username: String,
    password: String,
}

async fn login(State(s): S, body: Result<Bytes, BytesRejection>) -> Response {
    let body = match body {
        Ok(b) => b,
        Err(r) => return body_rejection(r),
    };
    let b: LoginBody = match serde_json::from_slice(&body) {
        Ok(b) => b,
        Err(_) => return bad_request("expected {\"username\": ..., \"password\": ...}"),
    };
    match s.auth.login(&b.username, &b.password) {
        Some(pair) => axum::Json(pair).into_response(),
        None => error_response(
            StatusCode::UNAUTHORIZED,
            "invalid_credentials",
            "unknown user or wrong password",
        ),
    }
}

#[derive(Deserialize)]
struct RefreshBody {
    refresh_token: String,
}

async fn refresh(State(s): S, body: Result<Bytes, BytesRejection>) -> Response {
    let body = match body {
        Ok(b) => b,
        Err(r) => return body_rejection(r),
    };
    let b: RefreshBody = match serde_json::from_slice(&body) {
        Ok(b) => b,
        Err(_) => return bad_request("expected {\"refresh_token\": ...}"),
    };
    match s.auth.refresh(&b.refresh_token) {
        Some(pair) => axum::Json(pair).into_response(),
        None => error_response(
            StatusCode::UNAUTHORIZED,
            "invalid_refresh_token",
            "refresh token unknown or expired",
        ),
    }
}

async fn get_faults(State(s): S) -> Response {
    axum::Json(&*s.faults.get()).into_response()
}

async fn put_faults(State(s): S, body: Result<Bytes, BytesRejection>) -> Response {
    let body = match body {
        Ok(b) => b,
        Err(r) => return body_rejection(r),
    };
    let patch: FaultsPatch = match serde_json::from_slice(&body) {
        Ok(p) => p,
        Err(e) => return bad_request(&format!("invalid fault set: {e}")),
    };
    let next = patch.apply_to(&s.faults.get());
    if let Err(e) = next.validate("") {
        return bad_request(&e.to_string());
    }
    tracing::info!(faults = ?next, "sim: faults changed");
    s.faults.set(next.clone());
    axum::Json(next).into_response()
}

async fn delete_faults(State(s): S) -> Response {
    tracing::info!("sim: faults cleared");
    s.faults.set(Faults::default());
    axum::Json(Faults::default()).into_response()
}

async fn metrics(State(s): S) -> Response {
    s.truth.queue_depth.set(s.pipeline.depth() as i64);
    let mut r = s.truth.encode().into_response();
    r.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/openmetrics-text; version=1.0.0; charset=utf-8"),
    );
    r
}

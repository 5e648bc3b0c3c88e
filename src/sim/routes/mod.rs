//! HTTP handlers of the reference API, the fault control plane and the
//! ground-truth endpoint, and the router that ties them together.

use std::sync::Arc;
use std::time::Instant;

use axum::body::{Body, Bytes};
use axum::extract::rejection::{BytesRejection, QueryRejection};
use axum::extract::{DefaultBodyLimit, State};
use axum::http::{header, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::Router;
use serde::Deserialize;
use serde_json::json;

use super::config::{SimConfig, MAX_BODY_BYTES};
use super::envelope::{self, now_ms, valid_id, EnvelopeError, Event, Received};
use super::faults::{roll, FaultState, Faults, FaultsPatch};
use super::middleware::front;
use super::pipeline::{Pipeline, Queued};
use super::store::{AlertFilter, ReadError, Store, StreamQuery};
use super::tokens::Auth;
use super::truth::{FaultKind, RejectReason, Truth};
use crate::api::EventKind;

mod ingest;
mod reads;
use ingest::{consent, create_batch, create_event, register};
use reads::{adherence, alerts, patient_summary, quality, stream, work_queue};

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
    pub traces: Arc<super::traces::TraceLog>,
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
        .route("/sim/traces", get(traces))
        .route("/sim/rebuild", post(rebuild))
        .route("/metrics", get(metrics))
        .fallback(not_found)
        .layer(DefaultBodyLimit::max(MAX_BODY_BYTES))
        .layer(axum::middleware::from_fn_with_state(state.clone(), front))
        .with_state(state)
}

/// The `traceparent` of recent requests per route (`sim/traces.rs`).
async fn traces(State(s): S) -> Response {
    axum::Json(s.traces.snapshot()).into_response()
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

#[derive(Deserialize)]
struct LoginBody {
    username: String,
    password: String,
}

/// A JSON body of type `T`, or the answer refusing it (`shape` says what
/// was expected).
fn json_body<T: serde::de::DeserializeOwned>(
    body: Result<Bytes, BytesRejection>,
    shape: &str,
) -> Result<T, Box<Response>> {
    parsed_body(body, |_| format!("expected {shape}"))
}

/// Like [`json_body`], with the parse error worded by `message`.
fn parsed_body<T: serde::de::DeserializeOwned>(
    body: Result<Bytes, BytesRejection>,
    message: impl FnOnce(serde_json::Error) -> String,
) -> Result<T, Box<Response>> {
    let body = body.map_err(|r| Box::new(body_rejection(r)))?;
    serde_json::from_slice(&body).map_err(|e| Box::new(bad_request(&message(e))))
}

async fn login(State(s): S, body: Result<Bytes, BytesRejection>) -> Response {
    let b: LoginBody = match json_body(body, "{\"username\": ..., \"password\": ...}") {
        Ok(b) => b,
        Err(r) => return *r,
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
    let b: RefreshBody = match json_body(body, "{\"refresh_token\": ...}") {
        Ok(b) => b,
        Err(r) => return *r,
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
    let patch: FaultsPatch = match parsed_body(body, |e| format!("invalid fault set: {e}")) {
        Ok(p) => p,
        Err(r) => return *r,
    };
    let next = patch.apply_to(&s.faults.get());
    if let Err(e) = next.validate("") {
        return bad_request(&e.to_string());
    }
    tracing::info!(faults = ?next, "sim: faults changed");
    s.faults.set(next.clone());
    axum::Json(next).into_response()
}

/// `POST /sim/rebuild`: replays the stream read model from the event store,
/// leaving out a fraction of its old events (see [`Store::rebuild`]).
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RebuildBody {
    /// Only `stream` (the patient streams) for now.
    #[serde(default = "stream_projection")]
    projection: String,
    drop_fraction: f64,
    #[serde(default)]
    older_than_ms: u64,
    #[serde(default)]
    patient_id: Option<String>,
}

fn stream_projection() -> String {
    "stream".to_owned()
}

async fn rebuild(State(s): S, body: Result<Bytes, BytesRejection>) -> Response {
    let b: RebuildBody = match parsed_body(body, |e| format!("invalid rebuild: {e}")) {
        Ok(b) => b,
        Err(r) => return *r,
    };
    if b.projection != "stream" {
        return bad_request("projection: only \"stream\" can be rebuilt");
    }
    if !(0.0..=1.0).contains(&b.drop_fraction) {
        return bad_request("drop_fraction: must be a fraction between 0 and 1");
    }
    let report = s.store.rebuild(&super::store::Rebuild {
        drop_fraction: b.drop_fraction,
        older_than: std::time::Duration::from_millis(b.older_than_ms),
        patient_id: b.patient_id.as_deref(),
    });
    tracing::info!(
        examined = report.examined,
        dropped = report.dropped,
        "sim: stream read model rebuilt"
    );
    let by_patient: serde_json::Map<String, serde_json::Value> = report
        .by_patient
        .iter()
        .map(|(id, d)| (id.clone(), json!(d.len())))
        .collect();
    axum::Json(json!({
        "projection": "stream",
        "examined": report.examined,
        "dropped": report.dropped,
        "dropped_by_patient": by_patient,
    }))
    .into_response()
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

//! `GET /status`: the daemon's current state as JSON (version, target,
//! readiness, the metrics snapshot, and sections added through `StatusSection`).

use axum::extract::State;
use axum::Json;
use serde::Serialize;

use super::{AdminState, RuntimeInfo};
use crate::metrics::{Metrics, Snapshot};

/// The `/status` document. The snapshot's fields sit at the top level, so new
/// snapshot fields appear without touching this type; other modules add
/// sections under `extras`.
#[derive(Clone, Debug, Serialize)]
pub struct Status {
    pub version: &'static str,
    pub target: String,
    pub ready: bool,
    pub uptime_seconds: f64,
    #[serde(flatten)]
    pub snapshot: Snapshot,
    #[serde(skip_serializing_if = "serde_json::Map::is_empty")]
    pub extras: serde_json::Map<String, serde_json::Value>,
}

impl Status {
    pub fn collect(metrics: &Metrics, info: &RuntimeInfo) -> Self {
        Status {
            version: info.version,
            target: info.target.clone(),
            ready: info.is_ready(),
            uptime_seconds: info.uptime_seconds(),
            snapshot: metrics.snapshot(),
            extras: info.extras(),
        }
    }
}

pub(super) async fn status(State(state): State<AdminState>) -> Json<Status> {
    Json(Status::collect(&state.metrics, &state.info))
}

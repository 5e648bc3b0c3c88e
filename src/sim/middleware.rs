//! The layer in front of every handler: names the route for metrics, injects
//! the HTTP faults (reset, latency, 429, 500, garbage, response delay),
//! enforces bearer auth
//! and counts `rehab_sim_requests_total{route,status}`.

use std::sync::Arc;

use axum::body::Body;
use axum::extract::{Request, State};
use axum::http::{header, HeaderValue, Method, StatusCode};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};

use super::faults::{roll, FaultState, Faults};
use super::routes::{error_response, AppState};
use super::traces::CreatedEvent;
use super::truth::FaultKind;
use crate::api::Endpoint;
use crate::client::trace::TRACEPARENT;

/// Marker on a response meaning "close the connection instead of answering".
/// The connection driver (`server.rs`) turns it into a dropped connection.
#[derive(Clone, Copy, Debug)]
pub struct ResetConnection;

/// How a route is treated.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct RouteInfo {
    pub name: &'static str,
    /// Faults apply (the API and health, not the control and truth planes).
    pub faultable: bool,
    /// Needs a bearer token.
    pub protected: bool,
}

const fn api(name: &'static str, protected: bool) -> RouteInfo {
    RouteInfo {
        name,
        faultable: true,
        protected,
    }
}

const fn plane(name: &'static str) -> RouteInfo {
    RouteInfo {
        name,
        faultable: false,
        protected: false,
    }
}

/// Bounded route name of a path; ids never reach a label.
pub fn route_info(path: &str) -> RouteInfo {
    let segs: Vec<&str> = path.trim_end_matches('/').split('/').skip(1).collect();
    match segs.as_slice() {
        ["health"] | ["health", "detailed" | "ready" | "live"] => {
            api(Endpoint::Health.as_str(), false)
        }
        ["api", "v1", rest @ ..] => match rest {
            ["events"] => api(Endpoint::EventsCreate.as_str(), true),
            ["events", "batch"] => api(Endpoint::EventsBatch.as_str(), true),
            ["patients", "register"] => api(Endpoint::PatientRegister.as_str(), false),
            ["patients", _, "stream"] => api(Endpoint::PatientStream.as_str(), true),
            ["patients", _, "events"] => api(Endpoint::PatientEvents.as_str(), true),
            ["patients", _, "consent"] => api("consent", false),
            ["projections", "adherence"] => api(Endpoint::Adherence.as_str(), true),
            ["projections", "quality"] => api(Endpoint::Quality.as_str(), true),
            ["projections", "work-queue"] => api(Endpoint::WorkQueue.as_str(), true),
            ["projections", "patient-summary"] => api(Endpoint::PatientSummary.as_str(), true),
            ["alerts"] => api(Endpoint::Alerts.as_str(), true),
            ["auth", "login"] => api(Endpoint::AuthLogin.as_str(), false),
            ["auth", "refresh"] => api(Endpoint::AuthRefresh.as_str(), false),
            _ => plane("not_found"),
        },
        ["sim", "faults"] => plane("sim_faults"),
        ["sim", "traces"] => plane("sim_traces"),
        ["sim", "rebuild"] => plane("sim_rebuild"),
        ["metrics"] => plane("metrics"),
        [] | [""] => plane("index"),
        _ => plane("not_found"),
    }
}

/// The body sent by the garbage fault: HTML from a confused proxy.
pub const GARBAGE_BODY: &str = "<html><body>502 upstream garbage \u{0}\u{1}</body></html>";

pub async fn front(State(s): State<Arc<AppState>>, req: Request, next: Next) -> Response {
    let route = route_info(req.uri().path());
    let traceparent = req.headers().get(TRACEPARENT).cloned();
    let resp = if route.faultable {
        faulted(&s, route, req, next).await
    } else {
        next.run(req).await
    };
    if resp.extensions().get::<ResetConnection>().is_none() {
        let status = resp.status().as_u16();
        s.truth.request(route.name, status);
        if route.faultable {
            let event = resp.extensions().get::<CreatedEvent>().map(|e| &*e.0);
            s.traces.record(
                route.name,
                traceparent.as_ref().map(HeaderValue::as_bytes),
                status,
                event,
            );
        }
    }
    resp
}

/// Every faultable answer, the reset aside, leaves through the response-path
/// delay: after the handler committed the event or rendered the read, so
/// the answer arrives later than the state it describes.
async fn faulted(s: &AppState, route: RouteInfo, req: Request, next: Next) -> Response {
    let f = s.faults.get();
    let resp = answer(s, &f, route, req, next).await;
    if resp.extensions().get::<ResetConnection>().is_none() {
        if let Some(d) = FaultState::response_delay(&f) {
            s.truth.fault(FaultKind::response_delay);
            tokio::time::sleep(d).await;
        }
    }
    resp
}

async fn answer(s: &AppState, f: &Faults, route: RouteInfo, req: Request, next: Next) -> Response {
    if roll(f.reset_rate) {
        s.truth.fault(FaultKind::reset);
        let mut r = Response::new(Body::empty());
        r.extensions_mut().insert(ResetConnection);
        return r;
    }
    // Latency goes before the handler so the 201 of an event is produced
    // right after it is queued: injected latency never inflates the lag
    // ground truth.
    if let Some(d) = FaultState::latency(f) {
        s.truth.fault(FaultKind::latency);
        tokio::time::sleep(d).await;
    }
    if roll(f.rate_limit_rate) {
        s.truth.fault(FaultKind::rate_limit);
        let mut r = error_response(
            StatusCode::TOO_MANY_REQUESTS,
            "rate_limited",
            "rate limit exceeded (injected)",
        );
        r.headers_mut()
            .insert(header::RETRY_AFTER, HeaderValue::from(f.retry_after_s));
        return r;
    }
    if roll(f.error_rate) {
        s.truth.fault(FaultKind::error);
        return error_response(
            StatusCode::INTERNAL_SERVER_ERROR,
            "internal_error",
            "internal server error (injected)",
        );
    }
    if route.protected
        && !s.auth.check(
            req.headers()
                .get(header::AUTHORIZATION)
                .map(HeaderValue::as_bytes),
        )
    {
        return error_response(
            StatusCode::UNAUTHORIZED,
            "unauthorized",
            "missing or invalid bearer token",
        );
    }
    let is_read = req.method() == Method::GET;
    let resp = next.run(req).await;
    if is_read && resp.status() == StatusCode::OK && roll(f.garbage_rate) {
        s.truth.fault(FaultKind::garbage);
        let mut r = (StatusCode::OK, GARBAGE_BODY).into_response();
        // Claims JSON, so a client that trusts the header fails to parse.
        r.headers_mut().insert(
            header::CONTENT_TYPE,
            HeaderValue::from_static("application/json"),
        );
        return r;
    }
    if is_read && resp.status() == StatusCode::OK && roll(f.huge_body_rate) {
        s.truth.fault(FaultKind::huge_body);
        return huge_body(f.huge_body_bytes);
    }
    resp
}

/// A JSON array of `{"pad":"xxxx..."}` items: `bytes` long (with a
/// `Content-Length`; the last item is cut, a client must refuse it long
/// before), or endless when 0. Chunks are produced only as fast as the
/// client reads them, so the sim's own memory stays flat while it streams.
fn huge_body(bytes: u64) -> Response {
    const ITEM_BYTES: usize = 16 * 1024;
    static ITEM: std::sync::OnceLock<Vec<u8>> = std::sync::OnceLock::new();
    let item: &'static [u8] = ITEM.get_or_init(|| {
        let mut v = b"{\"pad\":\"".to_vec();
        v.resize(ITEM_BYTES - 3, b'x');
        v.extend_from_slice(b"\"},");
        v
    });
    let endless = bytes == 0;
    let stream = futures_util::stream::unfold((true, bytes), move |(first, left)| async move {
        let chunk: &'static [u8] = if first { b"[" } else { item };
        let take = if endless {
            chunk.len()
        } else {
            chunk.len().min(usize::try_from(left).unwrap_or(usize::MAX))
        };
        if take == 0 {
            return None;
        }
        let rest = if endless { 0 } else { left - take as u64 };
        Some((
            Ok::<_, std::convert::Infallible>(bytes::Bytes::from_static(&chunk[..take])),
            (false, rest),
        ))
    });
    let mut r = Response::new(Body::from_stream(stream));
    if !endless {
        r.headers_mut()
            .insert(header::CONTENT_LENGTH, HeaderValue::from(bytes));
    }
    r.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/json"),
    );
    r
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn route_names_are_bounded() {
        let cases = [
            ("/api/v1/events", "events_create", true),
            ("/api/v1/events/batch", "events_batch", true),
            ("/api/v1/patients/p_1/stream", "patient_stream", true),
            ("/api/v1/patients/p_1/events", "patient_events", true),
            ("/api/v1/patients/p_1/consent", "consent", false),
            ("/api/v1/patients/register", "patient_register", false),
            ("/api/v1/projections/work-queue", "work_queue", true),
            ("/api/v1/alerts", "alerts", true),
            ("/api/v1/auth/login", "auth_login", false),
            ("/health/ready", "health", false),
            ("/sim/faults", "sim_faults", false),
            ("/sim/rebuild", "sim_rebuild", false),
            ("/metrics", "metrics", false),
            ("/api/v1/nope", "not_found", false),
            ("/x/y/z", "not_found", false),
        ];
        for (path, name, protected) in cases {
            let r = route_info(path);
            assert_eq!((r.name, r.protected), (name, protected), "{path}");
        }
    }
}

//! Mutating admin routes: `POST /-/reload`, `POST /-/pause`, `POST /-/resume`.
//! They act through the [`Control`] trait, so the admin server knows nothing
//! of the engine; other methods get 405, as exporter conventions expect.

use std::sync::Arc;

use axum::extract::State;
use axum::http::StatusCode;
use axum::response::IntoResponse;
use axum::routing::post;
use axum::{Json, Router};
use serde::Serialize;

use crate::reload::{ReloadOutcome, ReloadReport};

pub trait Control: Send + Sync + 'static {
    fn reload(&self) -> ReloadReport;
    fn pause(&self);
    fn resume(&self);
    fn is_paused(&self) -> bool;
}

pub fn router(control: Arc<dyn Control>) -> Router {
    Router::new()
        .route("/-/reload", post(reload))
        .route("/-/pause", post(pause))
        .route("/-/resume", post(resume))
        .with_state(control)
}

type Ctl = State<Arc<dyn Control>>;

async fn reload(State(c): Ctl) -> impl IntoResponse {
    let report = c.reload();
    let status = match report.outcome {
        ReloadOutcome::Applied | ReloadOutcome::Unchanged => StatusCode::OK,
        ReloadOutcome::Failed => StatusCode::INTERNAL_SERVER_ERROR,
        ReloadOutcome::NoConfigFile => StatusCode::CONFLICT,
    };
    (status, Json(report))
}

#[derive(Serialize)]
struct PauseState {
    paused: bool,
}

async fn pause(State(c): Ctl) -> impl IntoResponse {
    c.pause();
    Json(PauseState {
        paused: c.is_paused(),
    })
}

async fn resume(State(c): Ctl) -> impl IntoResponse {
    c.resume();
    Json(PauseState {
        paused: c.is_paused(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use axum::body::Body;
    use axum::http::Request;
    use parking_lot::Mutex;
    use tower::ServiceExt;

    #[derive(Default)]
    struct Fake {
        paused: Mutex<bool>,
        reloads: Mutex<u32>,
    }

    impl Control for Fake {
        fn reload(&self) -> ReloadReport {
            *self.reloads.lock() += 1;
            ReloadReport {
                outcome: ReloadOutcome::Failed,
                errors: vec!["traffic.max_in_flight: must be greater than 0".into()],
                restart_required: vec![],
            }
        }
        fn pause(&self) {
            *self.paused.lock() = true;
        }
        fn resume(&self) {
            *self.paused.lock() = false;
        }
        fn is_paused(&self) -> bool {
            *self.paused.lock()
        }
    }

    async fn call(app: &Router, method: &str, path: &str) -> (StatusCode, String) {
        let resp = app
            .clone()
            .oneshot(
                Request::builder()
                    .method(method)
                    .uri(path)
                    .body(Body::empty())
                    .unwrap(),
            )
            .await
            .unwrap();
        let status = resp.status();
        let body = axum::body::to_bytes(resp.into_body(), 1 << 20)
            .await
            .unwrap();
        (status, String::from_utf8_lossy(&body).into_owned())
    }

    #[tokio::test]
    async fn post_only_and_each_route_acts() {
        let fake = Arc::new(Fake::default());
        let app = router(fake.clone());
        for path in ["/-/reload", "/-/pause", "/-/resume"] {
            assert_eq!(
                call(&app, "GET", path).await.0,
                StatusCode::METHOD_NOT_ALLOWED
            );
        }
        assert_eq!(*fake.reloads.lock(), 0);
        let (status, body) = call(&app, "POST", "/-/reload").await;
        assert_eq!(status, StatusCode::INTERNAL_SERVER_ERROR);
        assert!(body.contains("traffic.max_in_flight"), "{body}");
        assert_eq!(call(&app, "POST", "/-/pause").await.1, r#"{"paused":true}"#);
        assert!(fake.is_paused());
        assert_eq!(
            call(&app, "POST", "/-/resume").await.1,
            r#"{"paused":false}"#
        );
        assert!(!fake.is_paused());
    }
}

//! Mutating admin routes: `POST /-/reload`, `POST /-/pause`, `POST /-/resume`.
//! They act through the [`Control`] trait, so the admin server knows nothing
//! of the engine; other methods get 405, as exporter conventions expect.
//!
//! Anyone who can reach them can silence the canary, so they answer 403
//! unless the listener is loopback, basic auth is configured (then the
//! server's auth layer checks the caller), or `server.enable_lifecycle`
//! says the network in front is trusted, as Prometheus keeps `/-/reload`
//! off without `--web.enable-lifecycle`. SIGHUP always reloads.

use std::net::SocketAddr;
use std::sync::Arc;

use axum::extract::{Request, State};
use axum::http::StatusCode;
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use axum::routing::post;
use axum::{Json, Router};
use serde::Serialize;

use super::WebState;
use crate::reload::{ReloadOutcome, ReloadReport};

/// The answer of a closed lifecycle route.
pub const CLOSED: &str =
    "lifecycle routes (/-/reload, /-/pause, /-/resume, /-/deploy) are off: the admin \
     listener is not loopback and has no basic auth. Configure basic_auth_users in the web \
     config, or set server.enable_lifecycle = true if the network in front is trusted. SIGHUP \
     still reloads.\n";

/// Who may use the mutating routes.
#[derive(Clone, Debug)]
pub struct Access {
    /// Loopback listener, or `server.enable_lifecycle`.
    open: bool,
    /// Read at each request: basic auth can be added by a web config reload.
    web: Arc<WebState>,
}

impl Access {
    pub fn new(listen: SocketAddr, enable_lifecycle: bool, web: Arc<WebState>) -> Self {
        Access {
            open: enable_lifecycle || listen.ip().to_canonical().is_loopback(),
            web,
        }
    }

    pub fn allowed(&self) -> bool {
        self.open || self.web.current().auth.is_some()
    }
}

pub(crate) async fn guard(State(access): State<Access>, req: Request, next: Next) -> Response {
    if access.allowed() {
        next.run(req).await
    } else {
        (StatusCode::FORBIDDEN, CLOSED).into_response()
    }
}

pub trait Control: Send + Sync + 'static {
    fn reload(&self) -> ReloadReport;
    fn pause(&self);
    fn resume(&self);
    fn is_paused(&self) -> bool;
}

pub fn router(control: Arc<dyn Control>, access: Access) -> Router {
    Router::new()
        .route("/-/reload", post(reload))
        .route("/-/pause", post(pause))
        .route("/-/resume", post(resume))
        .route_layer(axum::middleware::from_fn_with_state(access, guard))
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

    fn open() -> Access {
        Access::new("127.0.0.1:0".parse().unwrap(), false, WebState::plain())
    }

    #[tokio::test]
    async fn post_only_and_each_route_acts() {
        let fake = Arc::new(Fake::default());
        let app = router(fake.clone(), open());
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

    /// Every combination of listener, basic auth and `enable_lifecycle`.
    #[tokio::test]
    async fn lifecycle_routes_are_closed_on_an_open_listener_without_auth() {
        let dir = tempfile::tempdir().unwrap();
        let web_file = dir.path().join("web.yml");
        // bcrypt of "pw" is not needed: only whether auth is configured counts here.
        std::fs::write(
            &web_file,
            "basic_auth_users:\n  alice: $2y$04$uVzQq1bhlf6ILtYbL6ks5uVJKqLzkLzk8MVMHTyVUP2/6Ff8MZnAW\n",
        )
        .unwrap();
        let with_auth = WebState::load(Some(&web_file)).unwrap();
        let cases = [
            // (listen, enable_lifecycle, basic auth, allowed)
            ("127.0.0.1:8742", false, false, true),
            ("[::1]:8742", false, false, true),
            ("0.0.0.0:8742", false, false, false),
            ("[::]:8742", false, false, false),
            ("10.1.2.3:8742", false, false, false),
            ("0.0.0.0:8742", true, false, true),
            ("0.0.0.0:8742", false, true, true),
        ];
        for (listen, enable, auth, allowed) in cases {
            let web = if auth {
                with_auth.clone()
            } else {
                WebState::plain()
            };
            let fake = Arc::new(Fake::default());
            let app = router(
                fake.clone(),
                Access::new(listen.parse().unwrap(), enable, web),
            );
            for path in ["/-/reload", "/-/pause", "/-/resume"] {
                let (status, body) = call(&app, "POST", path).await;
                let what = format!("{listen} enable={enable} auth={auth} {path}: {status} {body}");
                if allowed {
                    assert_ne!(status, StatusCode::FORBIDDEN, "{what}");
                } else {
                    assert_eq!(status, StatusCode::FORBIDDEN, "{what}");
                    assert!(body.contains("server.enable_lifecycle"), "{what}");
                }
            }
            // A refused pause never reached the engine.
            assert_eq!(*fake.reloads.lock() > 0, allowed);
            assert!(!fake.is_paused());
        }
    }
}

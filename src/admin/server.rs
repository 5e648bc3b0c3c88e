//! The admin server's accept loop: plain HTTP or TLS (tokio-rustls, ring),
//! basic auth and the web config's response headers in front of the axum
//! router, and a graceful shutdown that lets open requests finish.
//!
//! `axum::serve` cannot terminate TLS, hence this small loop over hyper. It
//! serves every configuration, the plain one included, so there is one path
//! to test. The web config is re-read periodically (and on
//! [`WebState::reload`]): rotated certificates and changed users apply to new
//! connections and requests without a restart, like the exporter-toolkit,
//! which re-reads the file on every request.

use std::convert::Infallible;
use std::future::Future;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use arc_swap::ArcSwap;
use axum::body::Body;
use axum::http::{header, HeaderValue, Request, Response, StatusCode};
use axum::Router;
use hyper::body::Incoming;
use hyper_util::rt::{TokioIo, TokioTimer};
use hyper_util::server::graceful::GracefulShutdown;
use parking_lot::Mutex;
use tokio::net::TcpListener;
use tower::ServiceExt;

use super::basic_auth::requires_auth;
use super::web_config::{WebConfig, WebConfigErrors};

/// How long a client may take for the TLS handshake; a stalled one must not
/// hold a task and a socket forever.
const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);
/// How long a client may take to send request headers (slowloris).
const HEADER_READ_TIMEOUT: Duration = Duration::from_secs(30);
/// How often the web config file (and the files it names) is re-read.
pub const WEB_CONFIG_RECHECK: Duration = Duration::from_secs(30);

/// The live web config of the admin server and where it comes from.
pub struct WebState {
    path: Option<PathBuf>,
    current: ArcSwap<WebConfig>,
    /// Fingerprint of the last rejected version, so a broken file is logged
    /// once, not at every re-check.
    last_rejected: Mutex<Option<[u8; 32]>>,
}

impl std::fmt::Debug for WebState {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("WebState")
            .field("path", &self.path)
            .field("current", &**self.current.load())
            .finish()
    }
}

/// The result of a re-read of the web config file.
#[derive(Debug, PartialEq)]
pub enum WebReload {
    /// No file configured, or the same bytes as the running config.
    Unchanged,
    Applied,
}

#[derive(Debug, thiserror::Error)]
pub enum WebReloadError {
    #[error(transparent)]
    Invalid(#[from] WebConfigErrors),
    #[error("web config {}: turning TLS on or off needs a restart; the running config is kept", .0.display())]
    TlsModeChanged(PathBuf),
}

impl WebState {
    /// No web config: plain HTTP, no auth.
    pub fn plain() -> Arc<WebState> {
        Arc::new(WebState {
            path: None,
            current: ArcSwap::from_pointee(WebConfig::default()),
            last_rejected: Mutex::new(None),
        })
    }

    /// Loads the web config at `path`, if any. Called before the port is
    /// bound, so a bad file stops the start-up.
    pub fn load(path: Option<&Path>) -> Result<Arc<WebState>, WebConfigErrors> {
        let Some(path) = path else {
            return Ok(Self::plain());
        };
        let config = WebConfig::load(path)?;
        Ok(Arc::new(WebState {
            path: Some(path.to_path_buf()),
            current: ArcSwap::from_pointee(config),
            last_rejected: Mutex::new(None),
        }))
    }

    /// The config in force.
    pub fn current(&self) -> Arc<WebConfig> {
        self.current.load_full()
    }

    pub fn path(&self) -> Option<&Path> {
        self.path.as_deref()
    }

    /// Re-reads the file; applies it if it changed and is valid. Whether TLS
    /// is on is fixed at start (as in the toolkit): clients and probes are set
    /// up for one scheme.
    pub fn reload(&self) -> Result<WebReload, WebReloadError> {
        let Some(path) = &self.path else {
            return Ok(WebReload::Unchanged);
        };
        let new = WebConfig::load(path)?;
        let old = self.current.load();
        if new.fingerprint == old.fingerprint {
            return Ok(WebReload::Unchanged);
        }
        if new.tls.is_some() != old.tls.is_some() {
            return Err(WebReloadError::TlsModeChanged(path.clone()));
        }
        self.current.store(Arc::new(new));
        Ok(WebReload::Applied)
    }

    /// Re-reads the file every [`WEB_CONFIG_RECHECK`], logging what changed
    /// and each distinct failure once. Runs until aborted.
    pub async fn watch(self: Arc<Self>) {
        if self.path.is_none() {
            return;
        }
        let mut tick = tokio::time::interval(WEB_CONFIG_RECHECK);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        tick.tick().await;
        loop {
            tick.tick().await;
            let state = self.clone();
            // File reads and PEM parsing are blocking work.
            let Ok(result) = tokio::task::spawn_blocking(move || state.reload()).await else {
                continue;
            };
            match result {
                Ok(WebReload::Unchanged) => {}
                Ok(WebReload::Applied) => {
                    *self.last_rejected.lock() = None;
                    tracing::info!(file = ?self.path, "web config reloaded");
                }
                Err(e) => {
                    // A fingerprint of the error text stands for the version:
                    // log a broken file once, not every 30 s.
                    let mark =
                        ring::digest::digest(&ring::digest::SHA256, e.to_string().as_bytes());
                    let mut mark32 = [0u8; 32];
                    mark32.copy_from_slice(mark.as_ref());
                    let mut last = self.last_rejected.lock();
                    if *last != Some(mark32) {
                        *last = Some(mark32);
                        tracing::error!("{e}");
                    }
                }
            }
        }
    }
}

/// What the admin server sends for a request that needs credentials.
fn unauthorized() -> Response<Body> {
    let mut resp = Response::new(Body::from("Unauthorized\n"));
    *resp.status_mut() = StatusCode::UNAUTHORIZED;
    resp.headers_mut().insert(
        header::WWW_AUTHENTICATE,
        HeaderValue::from_static("Basic realm=\"rehab-canary\", charset=\"UTF-8\""),
    );
    resp
}

/// One request through the policy of `web`, then the router.
pub async fn handle(web: &WebConfig, router: Router, req: Request<Body>) -> Response<Body> {
    let allowed = match &web.auth {
        Some(auth) if requires_auth(req.method(), req.uri().path()) => {
            auth.check(req.headers()).await
        }
        _ => true,
    };
    let mut resp = if allowed {
        match router.oneshot(req).await {
            Ok(r) => r,
            Err(never) => match never {},
        }
    } else {
        tracing::debug!(
            method = %req.method(),
            path = req.uri().path(),
            "admin request refused: missing or wrong credentials"
        );
        unauthorized()
    };
    for (name, value) in &web.headers {
        resp.headers_mut().insert(name.clone(), value.clone());
    }
    resp
}

/// Serves `router` on `listener` with the policy of `web` (TLS, basic auth,
/// headers) until `shutdown` completes, then lets open requests finish.
pub async fn serve_with(
    listener: TcpListener,
    router: Router,
    web: Arc<WebState>,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> std::io::Result<()> {
    let graceful = GracefulShutdown::new();
    tokio::pin!(shutdown);
    loop {
        let (stream, peer) = tokio::select! {
            () = &mut shutdown => break,
            accepted = listener.accept() => match accepted {
                Ok(conn) => conn,
                Err(e) => {
                    // Out of fds and the like: pause instead of spinning, as
                    // axum::serve does; the listener itself stays usable.
                    tracing::warn!(error = %e, "admin server: accept failed");
                    tokio::time::sleep(Duration::from_millis(100)).await;
                    continue;
                }
            },
        };
        let _ = stream.set_nodelay(true);
        let config = web.current();
        let router = router.clone();
        let watcher = graceful.watcher();
        tokio::spawn(async move {
            let service = {
                let config = config.clone();
                hyper::service::service_fn(move |req: Request<Incoming>| {
                    let (config, router) = (config.clone(), router.clone());
                    async move { Ok::<_, Infallible>(handle(&config, router, req.map(Body::new)).await) }
                })
            };
            let mut http = hyper::server::conn::http1::Builder::new();
            http.timer(TokioTimer::new())
                .header_read_timeout(HEADER_READ_TIMEOUT);
            let result = match &config.tls {
                Some(tls) => {
                    let acceptor = tokio_rustls::TlsAcceptor::from(tls.clone());
                    match tokio::time::timeout(HANDSHAKE_TIMEOUT, acceptor.accept(stream)).await {
                        Ok(Ok(stream)) => {
                            watcher
                                .watch(http.serve_connection(TokioIo::new(stream), service))
                                .await
                        }
                        Ok(Err(e)) => {
                            tracing::debug!(%peer, error = %e, "admin server: TLS handshake failed");
                            return;
                        }
                        Err(_) => {
                            tracing::debug!(%peer, "admin server: TLS handshake timed out");
                            return;
                        }
                    }
                }
                None => {
                    watcher
                        .watch(http.serve_connection(TokioIo::new(stream), service))
                        .await
                }
            };
            if let Err(e) = result {
                tracing::debug!(%peer, error = %e, "admin server: connection ended with an error");
            }
        });
    }
    drop(listener);
    graceful.shutdown().await;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn users_yaml(password: &str) -> String {
        format!(
            "basic_auth_users:\n  alice: {}\n",
            bcrypt::hash(password, 4).unwrap()
        )
    }

    #[test]
    fn reload_applies_changes_keeps_the_old_config_on_errors() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("web.yml");
        std::fs::write(&file, users_yaml("one")).unwrap();
        let state = WebState::load(Some(&file)).unwrap();
        let first = state.current();
        assert_eq!(state.reload().unwrap(), WebReload::Unchanged);

        std::fs::write(&file, users_yaml("two")).unwrap();
        assert_eq!(state.reload().unwrap(), WebReload::Applied);
        let second = state.current();
        assert_ne!(first.fingerprint, second.fingerprint);

        // A broken file is refused and the running config stays.
        std::fs::write(&file, "basic_auth_users:\n  alice: plain\n").unwrap();
        assert!(matches!(state.reload(), Err(WebReloadError::Invalid(_))));
        assert_eq!(state.current().fingerprint, second.fingerprint);

        // Switching TLS on needs a restart.
        let ck = rcgen::generate_simple_self_signed(vec!["localhost".to_owned()]).unwrap();
        std::fs::write(dir.path().join("s.crt"), ck.cert.pem()).unwrap();
        std::fs::write(dir.path().join("s.key"), ck.signing_key.serialize_pem()).unwrap();
        std::fs::write(
            &file,
            "tls_server_config:\n  cert_file: s.crt\n  key_file: s.key\n",
        )
        .unwrap();
        assert!(matches!(
            state.reload(),
            Err(WebReloadError::TlsModeChanged(_))
        ));
        assert!(state.current().tls.is_none());
    }

    #[test]
    fn without_a_file_nothing_is_reloaded() {
        let state = WebState::load(None).unwrap();
        assert_eq!(state.reload().unwrap(), WebReload::Unchanged);
        assert!(state.current().auth.is_none());
    }

    #[tokio::test]
    async fn handle_applies_auth_policy_and_headers() {
        use axum::routing::{get, post};
        let yaml = format!(
            "{}http_server_config:\n  headers:\n    X-Content-Type-Options: nosniff\n",
            users_yaml("pw")
        );
        let web = WebConfig::parse(&yaml, Path::new(".")).unwrap();
        let router = Router::new()
            .route("/-/healthy", get(|| async { "OK" }))
            .route("/-/reload", post(|| async { "reloaded" }))
            .route("/metrics", get(|| async { "m" }));
        let req = |method: &str, path: &str, auth: Option<&str>| {
            let mut b = Request::builder().method(method).uri(path);
            if let Some(a) = auth {
                use base64::Engine as _;
                let token = base64::engine::general_purpose::STANDARD.encode(a);
                b = b.header(header::AUTHORIZATION, format!("Basic {token}"));
            }
            b.body(Body::empty()).unwrap()
        };
        let cases = [
            ("GET", "/-/healthy", None, StatusCode::OK),
            ("GET", "/metrics", None, StatusCode::UNAUTHORIZED),
            ("GET", "/metrics", Some("alice:pw"), StatusCode::OK),
            ("POST", "/-/reload", None, StatusCode::UNAUTHORIZED),
            (
                "POST",
                "/-/reload",
                Some("alice:nope"),
                StatusCode::UNAUTHORIZED,
            ),
            ("POST", "/-/reload", Some("alice:pw"), StatusCode::OK),
            ("GET", "/nowhere", None, StatusCode::UNAUTHORIZED),
            ("GET", "/nowhere", Some("alice:pw"), StatusCode::NOT_FOUND),
        ];
        for (method, path, auth, want) in cases {
            let resp = handle(&web, router.clone(), req(method, path, auth)).await;
            assert_eq!(resp.status(), want, "{method} {path} {auth:?}");
            assert_eq!(resp.headers()["x-content-type-options"], "nosniff");
        }
    }
}

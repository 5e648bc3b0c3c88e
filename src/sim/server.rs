//! The connection driver: accepts TCP connections and serves each with
//! hyper's HTTP/1 server, so that the reset fault can drop a connection
//! without answering, and so shutdown can drain connections gracefully.

use std::convert::Infallible;
use std::time::Duration;

use axum::Router;
use hyper::body::Incoming;
use hyper_util::rt::{TokioIo, TokioTimer};
use tokio::net::TcpListener;
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;
use tower::ServiceExt;

use super::middleware::ResetConnection;

/// How long shutdown waits for in-flight requests before giving up on them.
pub const DRAIN_GRACE: Duration = Duration::from_secs(5);

/// The error that makes hyper close a connection without a response.
#[derive(Debug)]
struct Reset;

impl std::fmt::Display for Reset {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("connection reset (injected)")
    }
}

impl std::error::Error for Reset {}

/// Serves until `shutdown` is cancelled, then drains connections.
pub async fn serve(listener: TcpListener, router: Router, shutdown: CancellationToken) {
    // Every connection task holds a clone; `recv` returns `None` once all are
    // done, which is how the drain knows it is finished.
    let (done_tx, mut done_rx) = mpsc::channel::<Infallible>(1);
    loop {
        let accepted = tokio::select! {
            () = shutdown.cancelled() => break,
            a = listener.accept() => a,
        };
        let stream = match accepted {
            Ok((stream, _)) => stream,
            Err(e) => {
                // Typically EMFILE: back off instead of spinning.
                tracing::warn!(error = %e, "sim: accept failed");
                tokio::time::sleep(Duration::from_millis(50)).await;
                continue;
            }
        };
        let _ = stream.set_nodelay(true);
        let router = router.clone();
        let shutdown = shutdown.clone();
        let done = done_tx.clone();
        tokio::spawn(async move {
            let svc = hyper::service::service_fn(move |req: hyper::Request<Incoming>| {
                let router = router.clone();
                async move {
                    let resp = match router.oneshot(req).await {
                        Ok(r) => r,
                        Err(never) => match never {},
                    };
                    if resp.extensions().get::<ResetConnection>().is_some() {
                        return Err(Reset);
                    }
                    Ok(resp)
                }
            });
            let conn = hyper::server::conn::http1::Builder::new()
                .timer(TokioTimer::new())
                .header_read_timeout(Duration::from_secs(30))
                .serve_connection(TokioIo::new(stream), svc);
            tokio::pin!(conn);
            tokio::select! {
                _ = conn.as_mut() => {}
                () = shutdown.cancelled() => {
                    conn.as_mut().graceful_shutdown();
                    let _ = conn.await;
                }
            }
            drop(done);
        });
    }
    drop(listener);
    drop(done_tx);
    if tokio::time::timeout(DRAIN_GRACE, done_rx.recv())
        .await
        .is_err()
    {
        tracing::warn!("sim: connections still open after the drain grace period");
    }
}

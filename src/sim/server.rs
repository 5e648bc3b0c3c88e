//! The connection driver: accepts TCP connections and serves each with
//! hyper's HTTP/1 server, so that the reset fault can drop a connection
//! without answering, and so shutdown can drain connections gracefully.

use std::convert::Infallible;
use std::sync::Arc;
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

/// Longest a TLS handshake may take before the connection is dropped.
const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);

/// Serves until `shutdown` is cancelled, then drains connections.
pub async fn serve(
    listener: TcpListener,
    router: Router,
    tls: Option<Arc<rustls::ServerConfig>>,
    shutdown: CancellationToken,
) {
    let tls = tls.map(tokio_rustls::TlsAcceptor::from);
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
        let tls = tls.clone();
        tokio::spawn(async move {
            match tls {
                None => connection(stream, router, shutdown).await,
                Some(acceptor) => {
                    match tokio::time::timeout(HANDSHAKE_TIMEOUT, acceptor.accept(stream)).await {
                        Ok(Ok(stream)) => connection(stream, router, shutdown).await,
                        // A refused client certificate, a client that does
                        // not trust us: the client sees it; nothing to serve.
                        Ok(Err(e)) => tracing::debug!(error = %e, "sim: TLS handshake failed"),
                        Err(_) => tracing::debug!("sim: TLS handshake timed out"),
                    }
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

/// Serves one connection (plain or TLS) until it ends or shutdown drains it.
async fn connection<I>(stream: I, router: Router, shutdown: CancellationToken)
where
    I: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin + Send + 'static,
{
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
}

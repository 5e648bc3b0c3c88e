//! TEMPORARY interface stub; replaced by the metrics branch at merge.
use std::future::Future;
use std::sync::atomic::AtomicBool;
use std::sync::Arc;

use crate::metrics::Metrics;

#[derive(Clone)]
pub struct AdminState {
    pub metrics: Arc<Metrics>,
    pub info: Arc<RuntimeInfo>,
}
pub struct RuntimeInfo {
    pub version: &'static str,
    pub target: String,
    pub ready: AtomicBool,
}
pub fn router(_state: AdminState) -> axum::Router {
    axum::Router::new()
}
pub async fn serve(
    listener: tokio::net::TcpListener,
    router: axum::Router,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> std::io::Result<()> {
    axum::serve(listener, router)
        .with_graceful_shutdown(shutdown)
        .await
}

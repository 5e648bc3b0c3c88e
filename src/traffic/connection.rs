//! The traffic's connections to the target, on hyper's HTTP/1.1
//! client-connection API: `target.connections` keep-alive connections, each
//! owned by one worker. There is no pool to search and no task per request,
//! the request head is built from values rendered once, and the open
//! descriptors are bounded by the setting. A broken connection is reopened
//! with backoff; while it backs off, its worker answers `connect_error` at
//! once rather than holding requests.
//!
//! The other paths to the target (lag probes, login, health) stay on
//! reqwest: they are a few requests per second, follow arbitrary reads, and
//! gain nothing from a dedicated connection.

use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use http::header::{AUTHORIZATION, CONTENT_TYPE, HOST, USER_AGENT};
use http::{HeaderValue, Method, Request, Uri};
use http_body_util::Full;
use hyper::client::conn::http1::{self, SendRequest};
use hyper_util::rt::TokioIo;
use reqwest::Url;
use rustls_pki_types::ServerName;
use tokio::net::TcpStream;
use tokio::time::Instant;
use tokio_rustls::TlsConnector;

use crate::client::trace::{TraceContext, TraceId, TRACEPARENT};
use crate::client::{self, BodyBudget, Outcome, Response, TargetClient};
use crate::config::TargetConfig;
use crate::metrics::{ConnectResult, Metrics};

const MIN_BACKOFF: Duration = Duration::from_millis(50);
/// Largest read buffer of one connection (hyper's default is ~400 KiB): 64
/// connections streaming a huge body then hold 4 MiB of buffers, not 26,
/// and a response head longer than this (headers without end) fails.
const READ_BUFFER_MAX: usize = 64 * 1024;
const MAX_BACKOFF: Duration = Duration::from_secs(2);

#[derive(Debug, thiserror::Error)]
pub enum ConnectionError {
    #[error("target.base_url has no host")]
    NoHost,
    #[error("target.tls.server_name: {0}")]
    ServerName(String),
}

/// What every connection to the target shares.
pub struct Target {
    host: String,
    port: u16,
    tls: Option<(TlsConnector, ServerName<'static>)>,
    host_header: HeaderValue,
    user_agent: HeaderValue,
    json: HeaderValue,
    connect_timeout: Duration,
    timeout: Duration,
    client: TargetClient,
    bodies: Arc<BodyBudget>,
    metrics: Arc<Metrics>,
}

impl Target {
    pub fn new(
        cfg: &TargetConfig,
        base: &Url,
        client: &TargetClient,
        metrics: Arc<Metrics>,
    ) -> Result<Target, ConnectionError> {
        let host = base.host_str().ok_or(ConnectionError::NoHost)?.to_owned();
        let port = base
            .port_or_known_default()
            .ok_or(ConnectionError::NoHost)?;
        let tls = if base.scheme() == "https" {
            let name = cfg.tls.server_name.clone().unwrap_or_else(|| {
                host.trim_start_matches('[')
                    .trim_end_matches(']')
                    .to_owned()
            });
            let name = ServerName::try_from(name)
                .map_err(|e| ConnectionError::ServerName(e.to_string()))?;
            Some((TlsConnector::from(client.tls_config()), name))
        } else {
            None
        };
        let authority = &base[url::Position::BeforeHost..url::Position::AfterPort];
        Ok(Target {
            host,
            port,
            tls,
            host_header: HeaderValue::from_str(authority).map_err(|_| ConnectionError::NoHost)?,
            user_agent: HeaderValue::from_static(client::USER_AGENT),
            json: HeaderValue::from_static("application/json"),
            connect_timeout: cfg.connect_timeout,
            timeout: cfg.timeout,
            client: client.clone(),
            bodies: client.body_budget(),
            metrics,
        })
    }
}

/// One keep-alive connection, reopened when it breaks.
pub struct Connection {
    target: Arc<Target>,
    sender: Option<SendRequest<Full<Bytes>>>,
    backoff: Duration,
    retry_at: Option<Instant>,
}

impl Connection {
    pub fn new(target: Arc<Target>) -> Connection {
        Connection {
            target,
            sender: None,
            backoff: Duration::ZERO,
            retry_at: None,
        }
    }

    pub async fn post_json(&mut self, uri: Uri, body: Bytes) -> Response {
        let (mut req, trace) = self.request(Method::POST, uri, body);
        req.headers_mut()
            .insert(CONTENT_TYPE, self.target.json.clone());
        self.send(req, trace).await
    }

    pub async fn get(&mut self, uri: Uri) -> Response {
        let (req, trace) = self.request(Method::GET, uri, Bytes::new());
        self.send(req, trace).await
    }

    fn request(&self, method: Method, uri: Uri, body: Bytes) -> (Request<Full<Bytes>>, TraceId) {
        let t = &self.target;
        let trace = TraceContext::new(t.client.sampled());
        let mut req = Request::new(Full::new(body));
        *req.method_mut() = method;
        *req.uri_mut() = uri;
        let h = req.headers_mut();
        h.insert(HOST, t.host_header.clone());
        h.insert(USER_AGENT, t.user_agent.clone());
        h.insert(TRACEPARENT, trace.traceparent());
        if let Some(auth) = t.client.auth_value() {
            h.insert(AUTHORIZATION, auth);
        }
        (req, trace.trace_id)
    }

    /// The whole exchange, connecting included, within `target.timeout`.
    async fn send(&mut self, req: Request<Full<Bytes>>, trace: TraceId) -> Response {
        let deadline = Instant::now() + self.target.timeout;
        let mut resp = match tokio::time::timeout_at(deadline, self.exchange(req)).await {
            Ok(resp) => resp,
            Err(_) => {
                // A half-read answer leaves the connection unusable.
                self.sender = None;
                Response::failed(Outcome::Timeout)
            }
        };
        resp.trace = trace;
        resp
    }

    async fn exchange(&mut self, req: Request<Full<Bytes>>) -> Response {
        if let Err(outcome) = self.ready().await {
            return Response::failed(outcome);
        }
        let Some(sender) = self.sender.as_mut() else {
            return Response::failed(Outcome::ConnectError);
        };
        match sender.send_request(req).await {
            Ok(resp) => {
                let (head, body) = resp.into_parts();
                let resp =
                    client::answer(&head, body, &self.target.bodies, |e| transport(&e)).await;
                if !matches!(resp.outcome, Outcome::Status(_)) {
                    // Cut or broken mid-body: never reuse it.
                    self.sender = None;
                }
                resp
            }
            Err(e) => {
                self.sender = None;
                Response::failed(transport(&e))
            }
        }
    }

    /// A connection ready for the next request: the open one, or a new one
    /// unless the last attempt failed less than a backoff ago.
    async fn ready(&mut self) -> Result<(), Outcome> {
        if let Some(s) = self.sender.as_mut() {
            if s.ready().await.is_ok() {
                return Ok(());
            }
            self.sender = None;
        }
        if self.retry_at.is_some_and(|at| Instant::now() < at) {
            return Err(Outcome::ConnectError);
        }
        match self.connect().await {
            Ok(sender) => {
                self.sender = Some(sender);
                self.backoff = Duration::ZERO;
                self.retry_at = None;
                Ok(())
            }
            Err(outcome) => {
                self.backoff = (self.backoff * 2).clamp(MIN_BACKOFF, MAX_BACKOFF);
                self.retry_at = Some(Instant::now() + self.backoff);
                Err(outcome)
            }
        }
    }

    async fn connect(&self) -> Result<SendRequest<Full<Bytes>>, Outcome> {
        let t = &self.target;
        let m = &t.metrics.connections;
        let tcp = match tokio::time::timeout(
            t.connect_timeout,
            TcpStream::connect((t.host.as_str(), t.port)),
        )
        .await
        {
            Ok(Ok(tcp)) => tcp,
            Ok(Err(_)) => {
                m.attempt_failed(ConnectResult::Error);
                return Err(Outcome::ConnectError);
            }
            Err(_) => {
                m.attempt_failed(ConnectResult::Timeout);
                return Err(Outcome::Timeout);
            }
        };
        let _ = tcp.set_nodelay(true);
        match &t.tls {
            None => self.handshake(tcp).await,
            Some((connector, name)) => {
                match tokio::time::timeout(t.connect_timeout, connector.connect(name.clone(), tcp))
                    .await
                {
                    Ok(Ok(tls)) => self.handshake(tls).await,
                    Ok(Err(e)) => {
                        m.attempt_failed(ConnectResult::TlsError);
                        Err(client::tls_failure(&e).unwrap_or(Outcome::ConnectError))
                    }
                    Err(_) => {
                        m.attempt_failed(ConnectResult::Timeout);
                        Err(Outcome::Timeout)
                    }
                }
            }
        }
    }

    /// HTTP/1.1 over `io`; its driver runs beside the worker for as long as
    /// the connection lives, counted in `rehab_canary_connections_open`.
    async fn handshake<I>(&self, io: I) -> Result<SendRequest<Full<Bytes>>, Outcome>
    where
        I: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin + Send + 'static,
    {
        let m = &self.target.metrics.connections;
        match http1::Builder::new()
            .max_buf_size(READ_BUFFER_MAX)
            .handshake(TokioIo::new(io))
            .await
        {
            Ok((sender, conn)) => {
                let open = m.opened(ConnectResult::Success);
                tokio::spawn(async move {
                    let _ = conn.await;
                    drop(open);
                });
                Ok(sender)
            }
            Err(e) => {
                m.attempt_failed(ConnectResult::Error);
                Err(transport(&e))
            }
        }
    }
}

/// A hyper error on an open connection: TLS (a refused client certificate
/// arrives after the handshake) or any other transport failure.
fn transport(e: &hyper::Error) -> Outcome {
    client::tls_failure(e).unwrap_or(Outcome::IoError)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::metrics::BuildInfo;

    fn target(base: &str) -> (Arc<Target>, Arc<Metrics>) {
        let cfg = TargetConfig {
            base_url: base.into(),
            ..TargetConfig::default()
        };
        let metrics = Arc::new(Metrics::new(BuildInfo {
            version: "test",
            revision: "test",
        }));
        let client = TargetClient::new(&cfg).unwrap();
        let url = Url::parse(base).unwrap();
        let t = Target::new(&cfg, &url, &client, metrics.clone()).unwrap();
        (Arc::new(t), metrics)
    }

    fn attempts(m: &Metrics, result: &str) -> f64 {
        let text = m.encode();
        let series = format!("rehab_canary_connection_attempts_total{{result=\"{result}\"}} ");
        text.lines()
            .find_map(|l| l.strip_prefix(series.as_str()))
            .and_then(|v| v.split_whitespace().next()?.parse().ok())
            .unwrap()
    }

    /// A refused connection is retried only after a backoff: requests in
    /// between fail at once, without an attempt, so a down target costs a
    /// bounded number of connects whatever the request rate.
    #[tokio::test]
    async fn a_refused_connect_backs_off() {
        // A port nothing listens on: bind, read the port, close.
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        let (t, m) = target(&format!("http://127.0.0.1:{port}/"));
        let mut c = Connection::new(t);
        let uri: Uri = "/health".parse().unwrap();
        assert_eq!(c.get(uri.clone()).await.outcome, Outcome::ConnectError);
        assert_eq!(attempts(&m, "error"), 1.0);
        for _ in 0..100 {
            assert_eq!(c.get(uri.clone()).await.outcome, Outcome::ConnectError);
        }
        assert!(attempts(&m, "error") <= 2.0, "{}", attempts(&m, "error"));
        // The backoff doubles: over 0.5 s at most a handful of attempts.
        let until = Instant::now() + Duration::from_millis(500);
        while Instant::now() < until {
            let _ = c.get(uri.clone()).await;
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
        let n = attempts(&m, "error");
        assert!((2.0..=6.0).contains(&n), "{n} attempts in 0.5 s");
        assert_eq!(m.connections.open_now(), 0);
    }

    #[test]
    fn the_host_header_is_the_base_urls_authority() {
        let (t, _) = target("https://rehab.example:8443/rehab/");
        assert_eq!(t.host_header, "rehab.example:8443");
        assert_eq!(t.port, 8443);
        let (t, _) = target("http://[::1]/");
        assert_eq!(t.host_header, "[::1]");
        assert_eq!(t.port, 80);
    }

    /// A raw server answering every request on every connection with
    /// `answer` (written in pieces, `gap` apart), then keeping it open.
    async fn raw_target(pieces: Vec<Vec<u8>>, gap: Duration) -> String {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        tokio::spawn(async move {
            while let Ok((mut sock, _)) = listener.accept().await {
                let pieces = pieces.clone();
                tokio::spawn(async move {
                    use tokio::io::{AsyncReadExt, AsyncWriteExt};
                    let mut buf = [0u8; 4096];
                    let _ = sock.read(&mut buf).await;
                    for p in pieces.iter().cycle() {
                        if sock.write_all(p).await.is_err() {
                            return;
                        }
                        tokio::time::sleep(gap).await;
                    }
                });
            }
        });
        format!("http://{addr}/")
    }

    fn short_timeout(base: &str) -> (Connection, Arc<Metrics>) {
        let cfg = TargetConfig {
            base_url: base.into(),
            timeout: Duration::from_millis(800),
            ..TargetConfig::default()
        };
        let metrics = Arc::new(Metrics::new(BuildInfo {
            version: "test",
            revision: "test",
        }));
        let client = TargetClient::new(&cfg).unwrap();
        let t = Target::new(&cfg, &Url::parse(base).unwrap(), &client, metrics.clone()).unwrap();
        (Connection::new(Arc::new(t)), metrics)
    }

    /// Hostile answers end as counted outcomes within the request timeout,
    /// each holding at most a read buffer: headers without end, a body that
    /// trickles, a redirect (not followed), a status line that is not HTTP.
    #[tokio::test]
    async fn hostile_answers_are_bounded_outcomes() {
        let uri: Uri = "/api/v1/alerts".parse().unwrap();
        let header_flood = vec![
            b"HTTP/1.1 200 OK\r\n".to_vec(),
            b"X-Pad: aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa\r\n"
                .repeat(64),
        ];
        let trickle = vec![
            b"HTTP/1.1 200 OK\r\ncontent-length: 100000\r\n\r\n".to_vec(),
            b"x".to_vec(),
        ];
        let redirect = vec![
            b"HTTP/1.1 302 Found\r\nlocation: /api/v1/alerts\r\ncontent-length: 0\r\n\r\n".to_vec(),
        ];
        let garbage = vec![b"SSH-2.0-OpenSSH_9.6\r\n".to_vec()];
        let cases = [
            (
                "headers without end",
                header_flood,
                Duration::ZERO,
                Outcome::IoError,
            ),
            (
                "a trickling body",
                trickle,
                Duration::from_millis(50),
                Outcome::Timeout,
            ),
            (
                "a redirect",
                redirect,
                Duration::from_secs(60),
                Outcome::Status(302),
            ),
            (
                "not HTTP",
                garbage,
                Duration::from_secs(60),
                Outcome::IoError,
            ),
        ];
        for (what, pieces, gap, want) in cases {
            let base = raw_target(pieces, gap).await;
            let (mut c, _) = short_timeout(&base);
            let t = Instant::now();
            let got = c.get(uri.clone()).await.outcome;
            assert_eq!(got, want, "{what}");
            assert!(
                t.elapsed() < Duration::from_secs(2),
                "{what}: {:?}",
                t.elapsed()
            );
        }
    }
}

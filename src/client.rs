//! The one HTTP client to the target: a shared reqwest (rustls) client with
//! keep-alive pool limits and a per-request timeout, the bearer token, and the
//! typed outcome of each request.
//!
//! Every answer is read under two bounds: `target.max_body_bytes` per body
//! and a budget for all bodies held at once, so a target answering with
//! endless or huge bodies costs the canary a counted `body_too_large`, never
//! its memory. Redirects are not followed: a 3xx is the target's answer.
//!
//! The token is held as a *sensitive* header value behind an `ArcSwap`, so it
//! can be rotated without locks and never shows up in `Debug` output or logs.

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;

use arc_swap::ArcSwapOption;
use bytes::{Bytes, BytesMut};
use std::time::{Duration, SystemTime};

use reqwest::header::{HeaderValue, AUTHORIZATION, CONTENT_TYPE, RETRY_AFTER};
use reqwest::Url;

use crate::config::TargetConfig;
use trace::{TraceContext, TraceId, TRACEPARENT};

pub mod tls;
pub mod trace;

pub use tls::{ClientIdentity, TargetTls, TlsError};

/// Sent with every request to the target.
pub const USER_AGENT: &str = concat!("rehab-canary/", env!("CARGO_PKG_VERSION"));

/// All response bodies held at once, per `max_body_bytes` allowed: with the
/// default 1 MiB that is 16 MiB, far under the pod's memory limit.
const BODIES_HELD_PER_LIMIT: u64 = 16;

#[derive(Debug, thiserror::Error)]
pub enum ClientError {
    #[error("cannot build the HTTP client: {0}")]
    Build(#[source] reqwest::Error),
    #[error(transparent)]
    Tls(#[from] TlsError),
    #[error("{origin}: the token is empty or not a valid header value")]
    BadToken { origin: String },
}

/// Builds the `Authorization` value, marked sensitive so it is never printed.
pub fn bearer(token: &str, origin: &str) -> Result<HeaderValue, ClientError> {
    let mut v =
        HeaderValue::from_str(&format!("Bearer {token}")).map_err(|_| ClientError::BadToken {
            origin: origin.to_owned(),
        })?;
    v.set_sensitive(true);
    Ok(v)
}

/// Outcome of one HTTP request, as the `status` label sees it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Outcome {
    /// The target answered with this HTTP status code.
    Status(u16),
    /// No complete answer within the request timeout.
    Timeout,
    /// The connection could not be established (refused, DNS).
    ConnectError,
    /// The TLS handshake failed: the target's certificate is not trusted
    /// or not for this name, or it refused the client certificate.
    TlsError,
    /// Any other transport failure (reset mid-response, body read error, ...).
    IoError,
    /// The body passed `target.max_body_bytes` (or the budget of all bodies
    /// held at once); it was cut and its connection closed.
    BodyTooLarge,
}

impl Outcome {
    /// An outcome counts as an error when it is not a 2xx/3xx answer.
    pub const fn is_error(self) -> bool {
        !matches!(self, Outcome::Status(200..=399))
    }
}

#[derive(Clone)]
pub struct TargetClient {
    http: reqwest::Client,
    auth: Arc<ArcSwapOption<HeaderValue>>,
    bodies: Arc<BodyBudget>,
    identity: Option<Arc<ClientIdentity>>,
    tls: Arc<rustls::ClientConfig>,
    /// The `traceparent` sampled flag (`tracing.sampled`).
    sampled: bool,
}

/// The bytes of all response bodies held at once, and the bounds on them.
#[derive(Debug)]
pub struct BodyBudget {
    per_body: u64,
    total: u64,
    held: AtomicU64,
}

impl BodyBudget {
    pub fn new(per_body: u64) -> Self {
        BodyBudget {
            per_body,
            total: per_body.saturating_mul(BODIES_HELD_PER_LIMIT),
            held: AtomicU64::new(0),
        }
    }

    /// Bytes of bodies held right now (for tests and the status page).
    pub fn held(&self) -> u64 {
        self.held.load(Ordering::Relaxed)
    }

    fn try_take(self: &Arc<Self>, lease: &mut BodyLease, n: u64) -> bool {
        let mut cur = self.held.load(Ordering::Relaxed);
        loop {
            if lease.bytes + n > self.per_body || cur + n > self.total {
                return false;
            }
            match self
                .held
                .compare_exchange_weak(cur, cur + n, Ordering::AcqRel, Ordering::Relaxed)
            {
                Ok(_) => {
                    lease.bytes += n;
                    return true;
                }
                Err(now) => cur = now,
            }
        }
    }
}

/// A body's share of the budget, given back when the response is dropped.
#[derive(Debug, Default)]
pub struct BodyLease {
    budget: Option<Arc<BodyBudget>>,
    bytes: u64,
}

impl Drop for BodyLease {
    fn drop(&mut self) {
        if let Some(b) = &self.budget {
            b.held.fetch_sub(self.bytes, Ordering::AcqRel);
        }
    }
}

impl std::fmt::Debug for TargetClient {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TargetClient").finish_non_exhaustive()
    }
}

/// The result of one request: its outcome, the body when there was one, and
/// the `Retry-After` of a 429/503.
pub struct Response {
    pub outcome: Outcome,
    pub body: Bytes,
    pub retry_after: Option<Duration>,
    /// Holds the body's bytes against the budget until dropped.
    pub lease: BodyLease,
    /// The trace id sent in the request's `traceparent`.
    pub trace: TraceId,
}

impl Response {
    pub fn failed(outcome: Outcome) -> Response {
        Response {
            outcome,
            body: Bytes::new(),
            retry_after: None,
            lease: BodyLease::default(),
            trace: TraceId::NONE,
        }
    }
}

/// Parses `Retry-After`: delta-seconds or an HTTP date (RFC 9110 §10.2.3).
/// A date in the past means "now"; anything unparsable is `None`.
pub fn parse_retry_after(value: &[u8], now: SystemTime) -> Option<Duration> {
    let text = std::str::from_utf8(value).ok()?.trim();
    if let Ok(secs) = text.parse::<u64>() {
        return Some(Duration::from_secs(secs));
    }
    let at = httpdate::parse_http_date(text).ok()?;
    Some(at.duration_since(now).unwrap_or(Duration::ZERO))
}

impl TargetClient {
    /// A client whose requests carry a sampled `traceparent` (see
    /// [`TargetClient::with_sampled`]).
    pub fn new(cfg: &TargetConfig) -> Result<Self, ClientError> {
        let tls = TargetTls::new(&cfg.tls)?;
        let http = reqwest::Client::builder()
            .use_preconfigured_tls((*tls.config).clone())
            .user_agent(USER_AGENT)
            .redirect(reqwest::redirect::Policy::none())
            .timeout(cfg.timeout)
            .connect_timeout(cfg.connect_timeout)
            .pool_max_idle_per_host(cfg.pool_max_idle_per_host)
            .pool_idle_timeout(cfg.pool_idle_timeout)
            .tcp_nodelay(true)
            .build()
            .map_err(ClientError::Build)?;
        Ok(TargetClient {
            http,
            auth: Arc::new(ArcSwapOption::empty()),
            bodies: Arc::new(BodyBudget::new(cfg.max_body_bytes)),
            identity: tls.identity,
            tls: tls.config,
            sampled: true,
        })
    }

    /// Sets the `traceparent` sampled flag (`tracing.sampled`).
    pub fn with_sampled(mut self, sampled: bool) -> Self {
        self.sampled = sampled;
        self
    }

    /// The TLS settings every connection to the target uses.
    pub fn tls_config(&self) -> Arc<rustls::ClientConfig> {
        self.tls.clone()
    }

    /// The `Authorization` value in force (a cheap clone), if any.
    pub fn auth_value(&self) -> Option<HeaderValue> {
        self.auth.load().as_deref().cloned()
    }

    /// The budget of response bodies, shared by every path to the target.
    pub fn body_budget(&self) -> Arc<BodyBudget> {
        self.bodies.clone()
    }

    /// The mTLS identity, whose files the daemon watches for rotation.
    pub fn identity(&self) -> Option<Arc<ClientIdentity>> {
        self.identity.clone()
    }

    pub fn bodies(&self) -> &BodyBudget {
        &self.bodies
    }

    /// Replaces the bearer token for every later request.
    pub fn set_auth(&self, value: Option<HeaderValue>) {
        self.auth.store(value.map(Arc::new));
    }

    pub fn has_auth(&self) -> bool {
        self.auth.load().is_some()
    }

    fn with_auth(&self, mut req: reqwest::RequestBuilder) -> reqwest::RequestBuilder {
        if let Some(v) = self.auth.load().as_deref() {
            req = req.header(AUTHORIZATION, v.clone());
        }
        req
    }

    fn json_post(&self, url: Url, body: Bytes) -> reqwest::RequestBuilder {
        self.http
            .post(url)
            .header(CONTENT_TYPE, HeaderValue::from_static("application/json"))
            .body(body)
    }

    pub async fn post_json(&self, url: Url, body: Bytes) -> Response {
        self.execute(self.with_auth(self.json_post(url, body)))
            .await
    }

    pub async fn get(&self, url: Url) -> Response {
        self.execute(self.with_auth(self.http.get(url))).await
    }

    /// A POST without the bearer token (login and refresh are public).
    pub async fn post_json_public(&self, url: Url, body: Bytes) -> Response {
        self.execute(self.json_post(url, body)).await
    }

    /// A GET without the bearer token (health routes are public).
    pub async fn get_public(&self, url: Url) -> Response {
        self.execute(self.http.get(url)).await
    }

    /// Sends with a fresh `traceparent`; the answer carries its trace id.
    async fn execute(&self, req: reqwest::RequestBuilder) -> Response {
        let ctx = TraceContext::new(self.sampled);
        let req = req.header(TRACEPARENT, ctx.traceparent());
        let mut resp = match req.send().await {
            Ok(resp) => {
                let (head, body) = http::Response::from(resp).into_parts();
                answer(&head, body, &self.bodies, |e| classify(&e)).await
            }
            Err(e) => Response::failed(classify(&e)),
        };
        resp.trace = ctx.trace_id;
        resp
    }

    /// The sampled flag this client's requests carry.
    pub fn sampled(&self) -> bool {
        self.sampled
    }
}

/// The answer to one request, its body read under the bounds. Shared by
/// reqwest (off the hot path) and the traffic connections (hyper).
pub(crate) async fn answer<B>(
    head: &http::response::Parts,
    body: B,
    bodies: &Arc<BodyBudget>,
    classify: impl Fn(B::Error) -> Outcome,
) -> Response
where
    B: hyper::body::Body<Data = Bytes> + Unpin,
{
    let status = head.status.as_u16();
    // Only throttling answers pay for the header lookup.
    let retry_after = if status == 429 || status == 503 {
        head.headers
            .get(RETRY_AFTER)
            .and_then(|v| parse_retry_after(v.as_bytes(), SystemTime::now()))
    } else {
        None
    };
    let length = head
        .headers
        .get(http::header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok()?.parse::<u64>().ok());
    match read_limited(body, length, bodies, classify).await {
        Ok((body, lease)) => Response {
            trace: TraceId::NONE,
            outcome: Outcome::Status(status),
            body,
            retry_after,
            lease,
        },
        Err(outcome) => Response::failed(outcome),
    }
}

/// Reads a body to its end under the per-body limit and the budget of all
/// bodies held. Read to the end, so the connection can be reused and a body
/// cut short counts as an error; past a bound it is dropped unread, which
/// closes its connection. One chunk (the usual answer) is kept as it came;
/// only a body in several chunks is copied.
async fn read_limited<B>(
    mut body: B,
    content_length: Option<u64>,
    bodies: &Arc<BodyBudget>,
    classify: impl Fn(B::Error) -> Outcome,
) -> Result<(Bytes, BodyLease), Outcome>
where
    B: hyper::body::Body<Data = Bytes> + Unpin,
{
    use http_body_util::BodyExt;
    if content_length.is_some_and(|n| n > bodies.per_body) {
        return Err(too_large(bodies));
    }
    let mut lease = BodyLease {
        budget: Some(bodies.clone()),
        bytes: 0,
    };
    let mut first: Option<Bytes> = None;
    let mut more = BytesMut::new();
    while let Some(frame) = body.frame().await {
        let Ok(chunk) = frame.map_err(&classify)?.into_data() else {
            continue; // trailers
        };
        if !bodies.try_take(&mut lease, chunk.len() as u64) {
            return Err(too_large(bodies));
        }
        match &first {
            None if more.is_empty() => first = Some(chunk),
            _ => {
                if let Some(f) = first.take() {
                    more.extend_from_slice(&f);
                }
                more.extend_from_slice(&chunk);
            }
        }
    }
    Ok((first.unwrap_or_else(|| more.freeze()), lease))
}

fn too_large(bodies: &BodyBudget) -> Outcome {
    log_once(
        &BODY_TOO_LARGE_LOGGED,
        format_args!(
            "a response body passed target.max_body_bytes ({} bytes) or the budget of all \
             bodies held at once; it was cut and its connection closed (status=\"body_too_large\"; \
             later ones are counted, not logged)",
            bodies.per_body
        ),
    );
    Outcome::BodyTooLarge
}

static BODY_TOO_LARGE_LOGGED: AtomicBool = AtomicBool::new(false);
static TLS_FAILURE_LOGGED: AtomicBool = AtomicBool::new(false);

fn log_once(flag: &AtomicBool, msg: std::fmt::Arguments<'_>) {
    if !flag.swap(true, Ordering::Relaxed) {
        tracing::warn!("{msg}");
    }
}

/// `TlsError` (logged the first time, with its reason) when `e` is TLS
/// failing, else `None`.
pub fn tls_failure(e: &(dyn std::error::Error + 'static)) -> Option<Outcome> {
    if !tls::is_tls_failure(e) {
        return None;
    }
    log_once(
        &TLS_FAILURE_LOGGED,
        format_args!(
            "TLS with the target failed (status=\"tls_error\"; later ones are counted, not \
             logged): {}",
            error_chain(e)
        ),
    );
    Some(Outcome::TlsError)
}

/// Maps a transport error to the bounded `status` label values.
pub fn classify(e: &reqwest::Error) -> Outcome {
    if e.is_timeout() {
        Outcome::Timeout
    } else if let Some(tls) = tls_failure(e) {
        tls
    } else if e.is_connect() {
        Outcome::ConnectError
    } else {
        Outcome::IoError
    }
}

/// The error and its sources on one line: reqwest's own message alone says
/// only "error sending request".
fn error_chain(e: &(dyn std::error::Error + 'static)) -> String {
    let mut out = e.to_string();
    let mut cur = e.source();
    while let Some(s) = cur {
        out.push_str(": ");
        out.push_str(&s.to_string());
        cur = s.source();
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn retry_after_accepts_seconds_and_http_dates() {
        let now = SystemTime::UNIX_EPOCH + Duration::from_secs(1_700_000_000);
        assert_eq!(parse_retry_after(b"2", now), Some(Duration::from_secs(2)));
        assert_eq!(
            parse_retry_after(b" 120 ", now),
            Some(Duration::from_secs(120))
        );
        let later = httpdate::fmt_http_date(now + Duration::from_secs(30));
        assert_eq!(
            parse_retry_after(later.as_bytes(), now),
            Some(Duration::from_secs(30))
        );
        let past = httpdate::fmt_http_date(now - Duration::from_secs(30));
        assert_eq!(
            parse_retry_after(past.as_bytes(), now),
            Some(Duration::ZERO)
        );
        for junk in [&b""[..], b"-1", b"soon", b"\xff\xfe", b"1.5"] {
            assert_eq!(parse_retry_after(junk, now), None);
        }
    }

    #[test]
    fn bearer_values_are_sensitive_and_hidden_from_debug() {
        let v = bearer("abc123", "test").unwrap();
        assert!(v.is_sensitive());
        assert!(!format!("{v:?}").contains("abc123"));
        assert!(bearer("bad\ntoken", "test").is_err());
    }
}

//! The one HTTP client to the target: a shared reqwest (rustls) client with
//! keep-alive pool limits and a per-request timeout, the bearer token, and the
//! typed outcome of each request.
//!
//! The token is held as a *sensitive* header value behind an `ArcSwap`, so it
//! can be rotated without locks and never shows up in `Debug` output or logs.

use std::sync::Arc;

use arc_swap::ArcSwapOption;
use bytes::Bytes;
use std::time::{Duration, SystemTime};

use reqwest::header::{HeaderValue, AUTHORIZATION, CONTENT_TYPE, RETRY_AFTER};
use reqwest::Url;

use crate::config::TargetConfig;

#[derive(Debug, thiserror::Error)]
pub enum ClientError {
    #[error("cannot build the HTTP client: {0}")]
    Build(#[source] reqwest::Error),
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
    /// The connection could not be established (refused, DNS, TLS handshake).
    ConnectError,
    /// Any other transport failure (reset mid-response, body read error, ...).
    IoError,
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
    pub fn new(cfg: &TargetConfig) -> Result<Self, ClientError> {
        let http = reqwest::Client::builder()
            .use_rustls_tls()
            .timeout(cfg.timeout)
            .connect_timeout(cfg.connect_timeout)
            .pool_max_idle_per_host(cfg.pool_max_idle_per_host)
            .pool_idle_timeout(cfg.pool_idle_timeout)
            .tcp_nodelay(true)
            .user_agent(concat!("rehab-canary/", env!("CARGO_PKG_VERSION")))
            .build()
            .map_err(ClientError::Build)?;
        Ok(TargetClient {
            http,
            auth: Arc::new(ArcSwapOption::empty()),
        })
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
        execute(self.with_auth(self.json_post(url, body))).await
    }

    pub async fn get(&self, url: Url) -> Response {
        execute(self.with_auth(self.http.get(url))).await
    }

    /// A POST without the bearer token (login and refresh are public).
    pub async fn post_json_public(&self, url: Url, body: Bytes) -> Response {
        execute(self.json_post(url, body)).await
    }

    /// A GET without the bearer token (health routes are public).
    pub async fn get_public(&self, url: Url) -> Response {
        execute(self.http.get(url)).await
    }
}

async fn execute(req: reqwest::RequestBuilder) -> Response {
    match req.send().await {
        Ok(resp) => {
            let status = resp.status().as_u16();
            // Only throttling answers pay for the header lookup.
            let retry_after = if status == 429 || status == 503 {
                resp.headers()
                    .get(RETRY_AFTER)
                    .and_then(|v| parse_retry_after(v.as_bytes(), SystemTime::now()))
            } else {
                None
            };
            // The body is always read to the end, so the connection goes back
            // to the pool and a body cut short counts as an error.
            match resp.bytes().await {
                Ok(body) => Response {
                    outcome: Outcome::Status(status),
                    body,
                    retry_after,
                },
                Err(e) => Response {
                    outcome: classify(&e),
                    body: Bytes::new(),
                    retry_after: None,
                },
            }
        }
        Err(e) => Response {
            outcome: classify(&e),
            body: Bytes::new(),
            retry_after: None,
        },
    }
}

/// Maps a transport error to the bounded `status` label values.
pub fn classify(e: &reqwest::Error) -> Outcome {
    if e.is_timeout() {
        Outcome::Timeout
    } else if e.is_connect() {
        Outcome::ConnectError
    } else {
        Outcome::IoError
    }
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

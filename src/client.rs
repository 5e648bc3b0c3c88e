//! The one HTTP client to the target: a shared reqwest (rustls) client with
//! keep-alive pool limits and a per-request timeout, the bearer token, and the
//! typed outcome of each request.
//!
//! The token is held as a *sensitive* header value behind an `ArcSwap`, so it
//! can be rotated without locks and never shows up in `Debug` output or logs.

use std::path::PathBuf;
use std::sync::Arc;

use arc_swap::ArcSwapOption;
use bytes::Bytes;
use reqwest::header::{HeaderValue, AUTHORIZATION, CONTENT_TYPE};
use reqwest::Url;

use crate::config::{AuthConfig, TargetConfig};
use crate::metrics::Outcome;

#[derive(Debug, thiserror::Error)]
pub enum ClientError {
    #[error("cannot build the HTTP client: {0}")]
    Build(#[source] reqwest::Error),
    #[error("auth.token_file {path}: {source}")]
    TokenFile {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("{origin}: the token is empty or not a valid header value")]
    BadToken { origin: String },
}

/// Where the bearer token came from; logged instead of the token itself.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum TokenSource {
    File(PathBuf),
    Env(String),
    /// The reference API's development token (embedded target only).
    Development,
    None,
}

/// Resolves the bearer token: a file wins over the env var; the embedded
/// target falls back to the reference API's development token.
pub fn resolve_token(
    auth: &AuthConfig,
    embedded: bool,
) -> Result<(Option<String>, TokenSource), ClientError> {
    if let Some(path) = &auth.token_file {
        let raw = std::fs::read_to_string(path).map_err(|source| ClientError::TokenFile {
            path: path.clone(),
            source,
        })?;
        let token = raw.trim().to_owned();
        if token.is_empty() {
            return Err(ClientError::BadToken {
                origin: format!("auth.token_file {}", path.display()),
            });
        }
        return Ok((Some(token), TokenSource::File(path.clone())));
    }
    match std::env::var(&auth.token_env) {
        Ok(v) if !v.trim().is_empty() => Ok((
            Some(v.trim().to_owned()),
            TokenSource::Env(auth.token_env.clone()),
        )),
        _ if embedded => Ok((
            Some(crate::api::DEV_TOKEN.to_owned()),
            TokenSource::Development,
        )),
        _ => Ok((None, TokenSource::None)),
    }
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

/// The result of one request: its outcome, and the body when there was one.
pub struct Response {
    pub outcome: Outcome,
    pub body: Bytes,
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

    pub async fn post_json(&self, url: Url, body: Bytes) -> Response {
        let req = self
            .http
            .post(url)
            .header(CONTENT_TYPE, HeaderValue::from_static("application/json"))
            .body(body);
        execute(self.with_auth(req)).await
    }

    pub async fn get(&self, url: Url) -> Response {
        execute(self.with_auth(self.http.get(url))).await
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
            // The body is always read to the end, so the connection goes back
            // to the pool and a body cut short counts as an error.
            match resp.bytes().await {
                Ok(body) => Response {
                    outcome: Outcome::Status(status),
                    body,
                },
                Err(e) => Response {
                    outcome: classify(&e),
                    body: Bytes::new(),
                },
            }
        }
        Err(e) => Response {
            outcome: classify(&e),
            body: Bytes::new(),
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
    fn token_file_wins_and_is_trimmed() {
        let mut f = tempfile::NamedTempFile::new().unwrap();
        std::io::Write::write_all(&mut f, b"  s3cret-token\n").unwrap();
        let auth = AuthConfig {
            token_env: "REHAB_CANARY_TEST_UNSET_VAR".into(),
            token_file: Some(f.path().to_path_buf()),
        };
        let (tok, src) = resolve_token(&auth, false).unwrap();
        assert_eq!(tok.as_deref(), Some("s3cret-token"));
        assert_eq!(src, TokenSource::File(f.path().to_path_buf()));
    }

    #[test]
    fn embedded_falls_back_to_the_development_token() {
        let auth = AuthConfig {
            token_env: "REHAB_CANARY_TEST_UNSET_VAR".into(),
            token_file: None,
        };
        assert_eq!(
            resolve_token(&auth, true).unwrap(),
            (Some("dev-token".into()), TokenSource::Development)
        );
        assert_eq!(
            resolve_token(&auth, false).unwrap(),
            (None, TokenSource::None)
        );
    }

    #[test]
    fn missing_or_empty_token_file_is_an_error_naming_the_key() {
        let auth = AuthConfig {
            token_env: "X".into(),
            token_file: Some("/nonexistent/token".into()),
        };
        let e = resolve_token(&auth, false).unwrap_err().to_string();
        assert!(e.contains("auth.token_file"), "{e}");
        let f = tempfile::NamedTempFile::new().unwrap();
        let auth = AuthConfig {
            token_env: "X".into(),
            token_file: Some(f.path().to_path_buf()),
        };
        assert!(matches!(
            resolve_token(&auth, false),
            Err(ClientError::BadToken { .. })
        ));
    }

    #[test]
    fn bearer_values_are_sensitive_and_hidden_from_debug() {
        let v = bearer("abc123", "test").unwrap();
        assert!(v.is_sensitive());
        assert!(!format!("{v:?}").contains("abc123"));
        assert!(bearer("bad\ntoken", "test").is_err());
    }
}

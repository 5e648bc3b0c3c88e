//! Bearer tokens from three sources: an env var (static), a file re-read when
//! it changes (Kubernetes secret rotation, systemd credentials), and the login
//! flow (`POST /auth/login`, a proactive refresh before expiry, one re-login
//! on a 401). Failures are counted and retried with backoff, never in a tight
//! loop; tokens and passwords are never logged.

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use reqwest::Url;
use serde::Deserialize;
use tokio::sync::{watch, Notify};
use tokio::time::Instant;

use crate::client::Outcome;
use crate::client::{bearer, ClientError, TargetClient};
use crate::config::AuthConfig;
use crate::metrics::{AuthFailure, Metrics};

#[derive(Debug, thiserror::Error)]
pub enum AuthError {
    #[error("{key} {path}: {source}")]
    File {
        key: &'static str,
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("{key}: the file is empty")]
    Empty { key: &'static str },
    #[error("auth.login: no password: set the env var named by auth.login.password_env or auth.login.password_file")]
    NoPassword,
    #[error(transparent)]
    Header(#[from] ClientError),
}

/// Where the bearer token comes from; logged instead of the token itself.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum TokenSource {
    File(PathBuf),
    Env(String),
    Login,
    /// The reference API's development token (embedded target only).
    Development,
    None,
}

fn read_secret(key: &'static str, path: &PathBuf) -> Result<String, AuthError> {
    let raw = std::fs::read_to_string(path).map_err(|source| AuthError::File {
        key,
        path: path.clone(),
        source,
    })?;
    let v = raw.trim();
    if v.is_empty() {
        return Err(AuthError::Empty { key });
    }
    Ok(v.to_owned())
}

/// Resolves a static token: a file wins over the env var; the embedded target
/// falls back to the reference API's development token.
pub fn resolve_token(
    auth: &AuthConfig,
    embedded: bool,
) -> Result<(Option<String>, TokenSource), AuthError> {
    if auth.login.enabled {
        return Ok((None, TokenSource::Login));
    }
    if let Some(path) = &auth.token_file {
        let token = read_secret("auth.token_file", path)?;
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

fn login_password(auth: &AuthConfig) -> Result<String, AuthError> {
    if let Some(path) = &auth.login.password_file {
        return read_secret("auth.login.password_file", path);
    }
    match std::env::var(&auth.login.password_env) {
        Ok(v) if !v.is_empty() => Ok(v),
        _ => Err(AuthError::NoPassword),
    }
}

/// The token pair of a login or refresh answer (top level, or under `data`).
#[derive(Debug, Deserialize)]
struct Issued {
    access_token: String,
    refresh_token: Option<String>,
    expires_in: Option<u64>,
}

#[derive(Debug, Deserialize)]
struct Wrapped {
    data: Issued,
}

/// Longest `expires_in` believed. A target answering `u64::MAX` would
/// otherwise overflow `Instant + ttl` when the refresh is scheduled and kill
/// the auth task (found by fuzzing); a year is "never" for a canary.
pub const MAX_TOKEN_LIFETIME: Duration = Duration::from_secs(365 * 24 * 3600);

/// Parses a login/refresh answer; `None` for anything unexpected.
pub fn parse_issued(body: &[u8]) -> Option<(String, Option<String>, Option<Duration>)> {
    let issued = serde_json::from_slice::<Issued>(body)
        .or_else(|_| serde_json::from_slice::<Wrapped>(body).map(|w| w.data))
        .ok()?;
    if issued.access_token.is_empty() {
        return None;
    }
    Some((
        issued.access_token,
        issued.refresh_token.filter(|r| !r.is_empty()),
        issued
            .expires_in
            .map(|s| Duration::from_secs(s.min(MAX_TOKEN_LIFETIME.as_secs()))),
    ))
}

/// Tells the auth task about 401s seen by the traffic, so it can act (re-read
/// the file, log in again) without any lock on the request path.
#[derive(Clone, Default)]
pub struct AuthSignal {
    unauthorized: Arc<Notify>,
}

impl AuthSignal {
    pub fn unauthorized(&self) {
        self.unauthorized.notify_one();
    }
}

/// Runs the token source in the background.
pub struct AuthTask {
    pub source: TokenSource,
    pub signal: AuthSignal,
    /// What keeps the token fresh (the login's refresh, the file watch), if
    /// anything: the caller runs it until shutdown.
    pub refresher: Option<std::pin::Pin<Box<dyn std::future::Future<Output = ()> + Send>>>,
}

const BACKOFF_START: Duration = Duration::from_secs(1);
const BACKOFF_MAX: Duration = Duration::from_secs(60);
/// A 401 triggers at most one re-login (or file re-read) per this interval.
const MIN_REACT_INTERVAL: Duration = Duration::from_secs(5);

/// Sets up the token on `client` and starts whatever keeps it fresh.
pub fn start(
    cfg: &AuthConfig,
    embedded: bool,
    client: &TargetClient,
    base: &Url,
    metrics: Arc<Metrics>,
) -> Result<AuthTask, AuthError> {
    let (token, source) = resolve_token(cfg, embedded)?;
    let signal = AuthSignal::default();
    let refresher: Option<std::pin::Pin<Box<dyn std::future::Future<Output = ()> + Send>>> =
        match &source {
            TokenSource::Login => {
                let password = login_password(cfg)?;
                let login = Login {
                    client: client.clone(),
                    login_url: base
                        .join("api/v1/auth/login")
                        .map_err(|_| AuthError::NoPassword)?,
                    refresh_url: base
                        .join("api/v1/auth/refresh")
                        .map_err(|_| AuthError::NoPassword)?,
                    username: cfg.login.username.clone(),
                    password,
                    refresh_before: cfg.login.refresh_before,
                    metrics,
                };
                Some(Box::pin(login.run(signal.clone())) as _)
            }
            TokenSource::File(path) => {
                let t = token.as_deref().unwrap_or_default();
                client.set_auth(Some(bearer(t, "auth.token_file")?));
                Some(Box::pin(watch_file(
                    path.clone(),
                    t.to_owned(),
                    cfg.token_file_check_interval,
                    client.clone(),
                    metrics,
                    signal.clone(),
                )) as _)
            }
            TokenSource::Env(_) | TokenSource::Development => {
                let t = token.as_deref().unwrap_or_default();
                client.set_auth(Some(bearer(t, "auth token")?));
                None
            }
            TokenSource::None => None,
        };
    Ok(AuthTask {
        source,
        signal,
        refresher,
    })
}

/// Re-reads the token file every `every`, and at once after a 401.
async fn watch_file(
    path: PathBuf,
    mut current: String,
    every: Duration,
    client: TargetClient,
    metrics: Arc<Metrics>,
    signal: AuthSignal,
) {
    let mut last_error: Option<String> = None;
    let mut last_react = Instant::now() - MIN_REACT_INTERVAL;
    // An interval, not a sleep re-created per pass: a stream of 401s must not
    // keep postponing the periodic re-read.
    let mut tick = tokio::time::interval(every);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    tick.tick().await;
    loop {
        tokio::select! {
            _ = tick.tick() => {}
            _ = signal.unauthorized.notified() => {
                if last_react.elapsed() < MIN_REACT_INTERVAL {
                    continue;
                }
                last_react = Instant::now();
            }
        }
        match read_secret("auth.token_file", &path) {
            Ok(token) if token != current => match bearer(&token, "auth.token_file") {
                Ok(v) => {
                    client.set_auth(Some(v));
                    current = token;
                    last_error = None;
                    tracing::info!(path = %path.display(), "token file changed; new token in use");
                }
                Err(e) => report_once(&mut last_error, &metrics, AuthFailure::TokenFile, &e),
            },
            Ok(_) => last_error = None,
            Err(e) => report_once(&mut last_error, &metrics, AuthFailure::TokenFile, &e),
        }
    }
}

/// Counts every failure, logs a given kind of failure once until it clears.
fn report_once(
    last: &mut Option<String>,
    metrics: &Metrics,
    kind: AuthFailure,
    e: &dyn std::fmt::Display,
) {
    metrics.ops.auth_failure(kind);
    let msg = e.to_string();
    if last.as_deref() != Some(msg.as_str()) {
        tracing::warn!(
            reason = kind.as_str(),
            "auth: {msg}; keeping the previous token"
        );
        *last = Some(msg);
    }
}

struct Login {
    client: TargetClient,
    login_url: Url,
    refresh_url: Url,
    username: String,
    password: String,
    refresh_before: Duration,
    metrics: Arc<Metrics>,
}

/// The outcome of a login or refresh call.
enum Got {
    Tokens {
        access: String,
        refresh: Option<String>,
        expires_in: Option<Duration>,
    },
    Failed(String),
}

impl Login {
    async fn call(&self, url: &Url, body: serde_json::Value) -> Got {
        let body = Bytes::from(body.to_string());
        let resp = self.client.post_json_public(url.clone(), body).await;
        match resp.outcome {
            Outcome::Status(200..=299) => match parse_issued(&resp.body) {
                Some((access, refresh, expires_in)) => Got::Tokens {
                    access,
                    refresh,
                    expires_in,
                },
                None => Got::Failed("answer without an access_token".into()),
            },
            other => Got::Failed(format!("{other:?}")),
        }
    }

    async fn login(&self) -> Got {
        let body = serde_json::json!({"username": self.username, "password": self.password});
        self.call(&self.login_url, body).await
    }

    /// Installs a token; returns when it should be refreshed.
    fn install(&self, access: &str, expires_in: Option<Duration>) -> Option<Instant> {
        match bearer(access, "auth.login") {
            Ok(v) => self.client.set_auth(Some(v)),
            Err(_) => {
                self.metrics.ops.auth_failure(AuthFailure::Login);
                return None;
            }
        }
        expires_in.map(|ttl| Instant::now() + ttl.saturating_sub(self.refresh_before).max(ttl / 2))
    }

    /// Logs in until it works, backing off after each failure.
    async fn login_with_backoff(
        &self,
        stop: &mut watch::Receiver<bool>,
    ) -> Option<(Option<String>, Option<Instant>)> {
        let mut backoff = BACKOFF_START;
        let mut logged = false;
        loop {
            match self.login().await {
                Got::Tokens {
                    access,
                    refresh,
                    expires_in,
                } => {
                    let due = self.install(&access, expires_in);
                    tracing::info!(user = %self.username, "logged in");
                    return Some((refresh, due));
                }
                Got::Failed(why) => {
                    self.metrics.ops.auth_failure(AuthFailure::Login);
                    if !logged {
                        tracing::warn!(user = %self.username, %why, "login failed; retrying with backoff");
                        logged = true;
                    }
                    tokio::select! {
                        _ = tokio::time::sleep(backoff) => {}
                        _ = stop.changed() => return None,
                    }
                    backoff = (backoff * 2).min(BACKOFF_MAX);
                }
            }
        }
    }

    async fn run(self, signal: AuthSignal) {
        // Never stopped from outside except by abort; the channel keeps the
        // backoff loop's select uniform.
        let (_keep, mut stop) = watch::channel(false);
        let Some((mut refresh, mut due)) = self.login_with_backoff(&mut stop).await else {
            return;
        };
        let mut last_relogin = Instant::now();
        loop {
            let refresh_at = due;
            tokio::select! {
                _ = sleep_until_opt(refresh_at) => {
                    let got = match &refresh {
                        Some(r) => self.call(&self.refresh_url, serde_json::json!({"refresh_token": r})).await,
                        None => Got::Failed("no refresh token".into()),
                    };
                    match got {
                        Got::Tokens { access, refresh: r, expires_in } => {
                            due = self.install(&access, expires_in);
                            if r.is_some() { refresh = r; }
                            tracing::debug!("token refreshed");
                        }
                        Got::Failed(why) => {
                            self.metrics.ops.auth_failure(AuthFailure::Refresh);
                            tracing::warn!(%why, "token refresh failed; logging in again");
                            let Some((r, d)) = self.login_with_backoff(&mut stop).await else { return };
                            refresh = r;
                            due = d;
                            last_relogin = Instant::now();
                        }
                    }
                }
                _ = signal.unauthorized.notified() => {
                    if last_relogin.elapsed() < MIN_REACT_INTERVAL {
                        continue;
                    }
                    tracing::info!("target answered 401; logging in again");
                    let Some((r, d)) = self.login_with_backoff(&mut stop).await else { return };
                    refresh = r;
                    due = d;
                    last_relogin = Instant::now();
                }
            }
        }
    }
}

async fn sleep_until_opt(at: Option<Instant>) {
    match at {
        Some(at) => tokio::time::sleep_until(at).await,
        None => std::future::pending().await,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cfg() -> AuthConfig {
        AuthConfig {
            token_env: "REHAB_CANARY_TEST_UNSET_VAR".into(),
            ..AuthConfig::default()
        }
    }

    #[test]
    fn token_file_wins_and_is_trimmed() {
        let mut f = tempfile::NamedTempFile::new().unwrap();
        std::io::Write::write_all(&mut f, b"  s3cret-token\n").unwrap();
        let auth = AuthConfig {
            token_file: Some(f.path().to_path_buf()),
            ..cfg()
        };
        let (tok, src) = resolve_token(&auth, false).unwrap();
        assert_eq!(tok.as_deref(), Some("s3cret-token"));
        assert_eq!(src, TokenSource::File(f.path().to_path_buf()));
    }

    #[test]
    fn embedded_falls_back_to_the_development_token() {
        assert_eq!(
            resolve_token(&cfg(), true).unwrap(),
            (Some("dev-token".into()), TokenSource::Development)
        );
        assert_eq!(
            resolve_token(&cfg(), false).unwrap(),
            (None, TokenSource::None)
        );
    }

    #[test]
    fn missing_or_empty_token_file_is_an_error_naming_the_key() {
        let auth = AuthConfig {
            token_file: Some("/nonexistent/token".into()),
            ..cfg()
        };
        let e = resolve_token(&auth, false).unwrap_err().to_string();
        assert!(e.contains("auth.token_file"), "{e}");
        let f = tempfile::NamedTempFile::new().unwrap();
        let auth = AuthConfig {
            token_file: Some(f.path().to_path_buf()),
            ..cfg()
        };
        assert!(matches!(
            resolve_token(&auth, false),
            Err(AuthError::Empty { .. })
        ));
    }

    #[test]
    fn issued_tokens_parse_flat_or_wrapped_and_reject_junk() {
        let flat = br#"{"access_token":"a","refresh_token":"r","expires_in":60}"#;
        assert_eq!(
            parse_issued(flat),
            Some(("a".into(), Some("r".into()), Some(Duration::from_secs(60))))
        );
        let wrapped = br#"{"data":{"access_token":"a"}}"#;
        assert_eq!(parse_issued(wrapped), Some(("a".into(), None, None)));
        for junk in [
            &b"<html>"[..],
            b"{}",
            br#"{"access_token":""}"#,
            b"",
            b"null",
        ] {
            assert_eq!(parse_issued(junk), None);
        }
    }
}

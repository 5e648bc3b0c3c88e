//! The admin server's web config file (`--web.config.file`), in the format of
//! the Prometheus exporter-toolkit, so operators can reuse what they already
//! write for node_exporter: `tls_server_config`, `http_server_config` and
//! `basic_auth_users` (bcrypt hashes).
//!
//! The file is parsed, validated and turned into ready-to-use parts
//! ([`WebConfig`]: a rustls `ServerConfig`, the basic-auth users, the extra
//! response headers) in one step, so a file that loads is a file that serves.
//! Every problem is reported with the key it concerns; keys of the format that
//! rehab-canary does not implement are refused by name rather than ignored,
//! because silently dropping, say, `client_allowed_sans` would weaken security
//! behind the operator's back.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use axum::http::{HeaderName, HeaderValue};
use ring::digest;
use rustls::ServerConfig;
use serde::Deserialize;

use super::basic_auth::BasicAuth;

mod tls;
use tls::build_tls;

/// One problem in a web config file, tied to the key it concerns.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum WebConfigError {
    #[error("cannot read: {0}")]
    Read(String),
    #[error("{key}: unknown key")]
    UnknownKey { key: String },
    #[error("{key}: not supported by rehab-canary ({why})")]
    Unsupported { key: String, why: &'static str },
    #[error("{key}: {message}")]
    Invalid { key: String, message: String },
}

impl WebConfigError {
    fn invalid(key: &str, message: impl Into<String>) -> Self {
        WebConfigError::Invalid {
            key: key.to_owned(),
            message: message.into(),
        }
    }

    /// The key path the error is about, when it is about one.
    pub fn key(&self) -> Option<&str> {
        match self {
            WebConfigError::Read(_) => None,
            WebConfigError::UnknownKey { key }
            | WebConfigError::Unsupported { key, .. }
            | WebConfigError::Invalid { key, .. } => Some(key),
        }
    }
}

/// Every problem found in one web config file.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
#[error("web config {}: {}", .file.display(), render(.errors))]
pub struct WebConfigErrors {
    pub file: PathBuf,
    pub errors: Vec<WebConfigError>,
}

impl crate::exit::ExitStatus for WebConfigErrors {
    fn exit(&self) -> crate::exit::Exit {
        crate::exit::Exit::Usage
    }
}

fn render(errors: &[WebConfigError]) -> String {
    errors
        .iter()
        .map(ToString::to_string)
        .collect::<Vec<_>>()
        .join("; ")
}

// ---- the file as written --------------------------------------------------

#[derive(Debug, Default, Deserialize)]
#[serde(default)]
struct RawWebConfig {
    tls_server_config: Option<RawTls>,
    http_server_config: Option<RawHttp>,
    basic_auth_users: Option<BTreeMap<String, String>>,
    rate_limit: Option<serde_norway::Value>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(default)]
struct RawTls {
    cert: Option<String>,
    key: Option<String>,
    client_ca: Option<String>,
    cert_file: Option<PathBuf>,
    key_file: Option<PathBuf>,
    client_ca_file: Option<PathBuf>,
    client_auth_type: Option<String>,
    client_allowed_sans: Option<serde_norway::Value>,
    min_version: Option<String>,
    max_version: Option<String>,
    cipher_suites: Option<Vec<String>>,
    prefer_server_cipher_suites: Option<bool>,
    curve_preferences: Option<Vec<String>>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(default)]
struct RawHttp {
    http2: Option<bool>,
    headers: Option<BTreeMap<String, String>>,
}

// ---- the validated result -------------------------------------------------

/// A loaded web config: what the admin server applies to each connection and
/// request. An empty file means plain HTTP without auth, as in the toolkit.
#[derive(Clone, Default)]
pub struct WebConfig {
    /// `Some` when `tls_server_config` is set: serve HTTPS only.
    pub tls: Option<Arc<ServerConfig>>,
    /// `Some` when `basic_auth_users` has at least one user.
    pub auth: Option<Arc<BasicAuth>>,
    /// `http_server_config.headers`, added to every response.
    pub headers: Vec<(HeaderName, HeaderValue)>,
    /// SHA-256 over the file and every file it names; equal fingerprints mean
    /// nothing changed, so a periodic re-read can skip the rebuild.
    pub fingerprint: [u8; 32],
}

impl std::fmt::Debug for WebConfig {
    // Never prints keys or hashes: only what is enabled.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("WebConfig")
            .field("tls", &self.tls.is_some())
            .field(
                "basic_auth_users",
                &self.auth.as_ref().map_or(0, |a| a.len()),
            )
            .field("headers", &self.headers.len())
            .finish()
    }
}

/// Reads files and feeds the fingerprint, so every byte the config depends on
/// is part of it.
struct Reader {
    dir: PathBuf,
    hasher: digest::Context,
}

impl Reader {
    /// Relative paths in the file are relative to the file's own directory,
    /// as in the exporter-toolkit, so a config and its certs move together.
    fn resolve(&self, p: &Path) -> PathBuf {
        if p.is_absolute() {
            p.to_path_buf()
        } else {
            self.dir.join(p)
        }
    }

    fn read(&mut self, key: &str, p: &Path) -> Result<Vec<u8>, WebConfigError> {
        let path = self.resolve(p);
        let bytes = std::fs::read(&path).map_err(|e| {
            WebConfigError::invalid(key, format!("cannot read {}: {e}", path.display()))
        })?;
        self.hasher.update(path.to_string_lossy().as_bytes());
        self.hasher.update(&(bytes.len() as u64).to_le_bytes());
        self.hasher.update(&bytes);
        Ok(bytes)
    }
}

impl WebConfig {
    /// Loads and validates the file at `path`, reading the files it names.
    pub fn load(path: &Path) -> Result<WebConfig, WebConfigErrors> {
        let fail = |errors| WebConfigErrors {
            file: path.to_path_buf(),
            errors,
        };
        let text = std::fs::read_to_string(path)
            .map_err(|e| fail(vec![WebConfigError::Read(e.to_string())]))?;
        let dir = path.parent().map(Path::to_path_buf).unwrap_or_default();
        Self::parse(&text, &dir).map_err(fail)
    }

    /// Parses the text of a web config; relative file names resolve against
    /// `dir`. Never panics, whatever the text.
    pub fn parse(text: &str, dir: &Path) -> Result<WebConfig, Vec<WebConfigError>> {
        let mut reader = Reader {
            dir: dir.to_path_buf(),
            hasher: digest::Context::new(&digest::SHA256),
        };
        reader.hasher.update(text.as_bytes());
        // Unknown keys do not stop the checks, so one run lists everything.
        let (raw, mut errors) = parse_raw(text)?;

        if raw.rate_limit.is_some() {
            errors.push(WebConfigError::Unsupported {
                key: "rate_limit".into(),
                why: "put a reverse proxy in front to rate-limit the admin server",
            });
        }
        let tls = match raw.tls_server_config {
            Some(t) => build_tls(t, &mut reader, &mut errors),
            None => None,
        };
        let mut headers = Vec::new();
        if let Some(http) = raw.http_server_config {
            // `http2` is accepted for compatibility: the admin server speaks
            // HTTP/1.1, which every Prometheus and probe client speaks too.
            let _ = http.http2;
            for (name, value) in http.headers.unwrap_or_default() {
                match header(&name, &value) {
                    Ok(Some(h)) => headers.push(h),
                    Ok(None) => {}
                    Err(e) => errors.push(e),
                }
            }
        }
        let users = raw.basic_auth_users.unwrap_or_default();
        for (user, hash) in &users {
            let key = format!("basic_auth_users.{user}");
            if user.is_empty() || user.contains(':') || user.chars().any(char::is_control) {
                errors.push(WebConfigError::invalid(
                    &key,
                    "a user name must be non-empty, without ':' or control characters",
                ));
            }
            // The message never repeats the hash: it is a secret too.
            if hash.parse::<bcrypt::HashParts>().is_err() {
                errors.push(WebConfigError::invalid(
                    &key,
                    "not a bcrypt hash (expected $2y$/$2b$/$2a$ with a cost, e.g. from `htpasswd -nBC 10`)",
                ));
            }
        }
        if !errors.is_empty() {
            return Err(errors);
        }
        let auth = (!users.is_empty()).then(|| Arc::new(BasicAuth::new(users)));
        let fingerprint = reader
            .hasher
            .finish()
            .as_ref()
            .try_into()
            .unwrap_or([0; 32]);
        Ok(WebConfig {
            tls,
            auth,
            headers,
            fingerprint,
        })
    }
}

/// YAML to the raw structure and the unknown keys; a syntax or type error
/// (named by its key) ends the parse.
fn parse_raw(text: &str) -> Result<(RawWebConfig, Vec<WebConfigError>), Vec<WebConfigError>> {
    // An empty file (or one with only comments) is an empty config, as in the
    // toolkit; YAML calls it a null document.
    let is_empty = text
        .lines()
        .all(|l| l.trim().is_empty() || l.trim_start().starts_with('#'));
    if is_empty {
        return Ok((RawWebConfig::default(), Vec::new()));
    }
    let mut unknown = Vec::new();
    let de = serde_norway::Deserializer::from_str(text);
    let parsed: Result<RawWebConfig, _> = serde_path_to_error::deserialize(
        serde_ignored::Deserializer::new(de, &mut |p: serde_ignored::Path<'_>| {
            unknown.push(key_path(&p))
        }),
    );
    let mut errors: Vec<WebConfigError> = unknown
        .into_iter()
        .map(|key| WebConfigError::UnknownKey { key })
        .collect();
    match parsed {
        Ok(raw) => Ok((raw, errors)),
        Err(e) => {
            let key = e.path().to_string();
            let key = if key == "." || key.is_empty() {
                "web config".to_owned()
            } else {
                key
            };
            errors.push(WebConfigError::invalid(&key, e.into_inner().to_string()));
            Err(errors)
        }
    }
}

/// `a.b.c` for a path of ignored keys; serde_ignored's own rendering marks
/// each `Option` layer with a `?`, which is noise to an operator.
fn key_path(p: &serde_ignored::Path<'_>) -> String {
    use serde_ignored::Path;
    let join = |parent: &Path<'_>, seg: String| {
        let parent = key_path(parent);
        if parent.is_empty() {
            seg
        } else {
            format!("{parent}.{seg}")
        }
    };
    match p {
        Path::Root => String::new(),
        // YAML allows an empty (or null, `? `) key; show it as `""` so the
        // error still names something (found by fuzzing).
        Path::Map { parent, key } if key.is_empty() => join(parent, "\"\"".to_owned()),
        Path::Map { parent, key } => join(parent, key.clone()),
        Path::Seq { parent, index } => join(parent, index.to_string()),
        Path::Some { parent }
        | Path::NewtypeStruct { parent }
        | Path::NewtypeVariant { parent } => key_path(parent),
    }
}

/// The toolkit's response headers, with its checks on the values. An empty
/// value leaves the header unset.
fn header(name: &str, value: &str) -> Result<Option<(HeaderName, HeaderValue)>, WebConfigError> {
    let key = format!("http_server_config.headers.{name}");
    const KNOWN: [&str; 5] = [
        "Content-Security-Policy",
        "X-Frame-Options",
        "X-Content-Type-Options",
        "X-XSS-Protection",
        "Strict-Transport-Security",
    ];
    if !KNOWN.contains(&name) {
        return Err(WebConfigError::UnknownKey { key });
    }
    if value.is_empty() {
        return Ok(None);
    }
    let lower = value.to_ascii_lowercase();
    match name {
        "X-Frame-Options" if !matches!(lower.as_str(), "deny" | "sameorigin") => {
            return Err(WebConfigError::invalid(&key, "must be deny or sameorigin"))
        }
        "X-Content-Type-Options" if lower != "nosniff" => {
            return Err(WebConfigError::invalid(&key, "must be nosniff"))
        }
        _ => {}
    }
    let value = HeaderValue::from_str(value)
        .map_err(|_| WebConfigError::invalid(&key, "not a valid header value"))?;
    let name = HeaderName::from_bytes(name.as_bytes())
        .map_err(|_| WebConfigError::invalid(&key, "not a valid header name"))?;
    Ok(Some((name, value)))
}

#[cfg(test)]
mod tests;

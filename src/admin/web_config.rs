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
use rustls::crypto::CryptoProvider;
use rustls::server::WebPkiClientVerifier;
use rustls::{RootCertStore, ServerConfig, SupportedProtocolVersion};
use rustls_pki_types::pem::PemObject;
use rustls_pki_types::{CertificateDer, PrivateKeyDer};
use serde::Deserialize;

use super::auth::BasicAuth;

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

/// Either an inline PEM value or a file, never both (as in the toolkit).
fn pem_source(
    reader: &mut Reader,
    errors: &mut Vec<WebConfigError>,
    inline: Option<String>,
    file: Option<PathBuf>,
    inline_key: &str,
    file_key: &str,
) -> Option<Vec<u8>> {
    match (inline, file) {
        (Some(_), Some(_)) => {
            errors.push(WebConfigError::invalid(
                file_key,
                format!("set either {inline_key} or {file_key}, not both"),
            ));
            None
        }
        (Some(text), None) => {
            reader.hasher.update(text.as_bytes());
            Some(text.into_bytes())
        }
        (None, Some(path)) => reader
            .read(file_key, &path)
            .map_err(|e| errors.push(e))
            .ok(),
        (None, None) => None,
    }
}

/// Go's `tls.VersionTLS1x` names to rustls versions; rustls has no TLS 1.0/1.1.
fn tls_version(
    key: &str,
    value: &str,
) -> Result<&'static SupportedProtocolVersion, WebConfigError> {
    match value {
        "TLS12" => Ok(&rustls::version::TLS12),
        "TLS13" => Ok(&rustls::version::TLS13),
        "TLS10" | "TLS11" => Err(WebConfigError::invalid(
            key,
            format!("{value} is not supported (TLS 1.2 and 1.3 only); use TLS12 or TLS13"),
        )),
        _ => Err(WebConfigError::invalid(
            key,
            format!("unknown TLS version `{value}`; use TLS12 or TLS13"),
        )),
    }
}

fn build_tls(
    t: RawTls,
    reader: &mut Reader,
    errors: &mut Vec<WebConfigError>,
) -> Option<Arc<ServerConfig>> {
    const P: &str = "tls_server_config";
    let before = errors.len();
    if t.client_allowed_sans.is_some() {
        errors.push(WebConfigError::Unsupported {
            key: format!("{P}.client_allowed_sans"),
            why: "restrict client certificates through client_ca_file",
        });
    }
    let cert = pem_source(
        reader,
        errors,
        t.cert,
        t.cert_file,
        &format!("{P}.cert"),
        &format!("{P}.cert_file"),
    );
    let key = pem_source(
        reader,
        errors,
        t.key,
        t.key_file,
        &format!("{P}.key"),
        &format!("{P}.key_file"),
    );
    let client_ca = pem_source(
        reader,
        errors,
        t.client_ca,
        t.client_ca_file,
        &format!("{P}.client_ca"),
        &format!("{P}.client_ca_file"),
    );
    let cert_key = format!("{P}.cert_file");
    let key_key = format!("{P}.key_file");
    let certs: Vec<CertificateDer<'static>> = match &cert {
        None => {
            if errors.len() == before {
                errors.push(WebConfigError::invalid(&cert_key, "required (or cert)"));
            }
            Vec::new()
        }
        Some(pem) => match CertificateDer::pem_slice_iter(pem).collect::<Result<Vec<_>, _>>() {
            Ok(c) if !c.is_empty() => c,
            Ok(_) => {
                errors.push(WebConfigError::invalid(
                    &cert_key,
                    "no PEM certificate found",
                ));
                Vec::new()
            }
            Err(e) => {
                errors.push(WebConfigError::invalid(&cert_key, format!("bad PEM: {e}")));
                Vec::new()
            }
        },
    };
    let private_key = match &key {
        None => {
            if cert.is_some() {
                errors.push(WebConfigError::invalid(&key_key, "required (or key)"));
            }
            None
        }
        // The parse error names no key material, so it is safe to show.
        Some(pem) => PrivateKeyDer::from_pem_slice(pem)
            .map_err(|e| {
                errors.push(WebConfigError::invalid(
                    &key_key,
                    format!("no usable PEM private key: {e}"),
                ))
            })
            .ok(),
    };

    // Client certificates: only the verifying policies. The toolkit's
    // RequestClientCert and RequireAnyClientCert accept any certificate
    // unverified, which would only look like security.
    let auth_key = format!("{P}.client_auth_type");
    let policy = t.client_auth_type.as_deref().unwrap_or("NoClientCert");
    let verify = match policy {
        "NoClientCert" => None,
        "VerifyClientCertIfGiven" => Some(false),
        "RequireAndVerifyClientCert" => Some(true),
        "RequestClientCert" | "RequireAnyClientCert" => {
            errors.push(WebConfigError::invalid(
                &auth_key,
                format!("{policy} accepts unverified certificates; use RequireAndVerifyClientCert (or VerifyClientCertIfGiven) with client_ca_file"),
            ));
            None
        }
        other => {
            errors.push(WebConfigError::invalid(
                &auth_key,
                format!("unknown policy `{other}`; use NoClientCert, VerifyClientCertIfGiven or RequireAndVerifyClientCert"),
            ));
            None
        }
    };
    let ca_key = format!("{P}.client_ca_file");
    let roots = match (&client_ca, verify) {
        (Some(_), None) if policy == "NoClientCert" => {
            errors.push(WebConfigError::invalid(
                &ca_key,
                "a client CA is set but client_auth_type is NoClientCert; set RequireAndVerifyClientCert",
            ));
            None
        }
        (None, Some(_)) => {
            errors.push(WebConfigError::invalid(
                &ca_key,
                format!("client_auth_type {policy} needs client_ca_file (or client_ca)"),
            ));
            None
        }
        (Some(pem), Some(_)) => {
            let mut roots = RootCertStore::empty();
            match CertificateDer::pem_slice_iter(pem).collect::<Result<Vec<_>, _>>() {
                Ok(cas) if !cas.is_empty() => {
                    let (_, bad) = roots.add_parsable_certificates(cas);
                    if bad > 0 || roots.is_empty() {
                        errors.push(WebConfigError::invalid(
                            &ca_key,
                            "a CA certificate could not be parsed",
                        ));
                    }
                }
                Ok(_) => errors.push(WebConfigError::invalid(&ca_key, "no PEM certificate found")),
                Err(e) => errors.push(WebConfigError::invalid(&ca_key, format!("bad PEM: {e}"))),
            }
            Some(roots)
        }
        _ => None,
    };

    let min = t
        .min_version
        .as_deref()
        .map(|v| tls_version(&format!("{P}.min_version"), v))
        .transpose()
        .map_err(|e| errors.push(e))
        .ok()
        .flatten();
    let max = t
        .max_version
        .as_deref()
        .map(|v| tls_version(&format!("{P}.max_version"), v))
        .transpose()
        .map_err(|e| errors.push(e))
        .ok()
        .flatten();
    let min = min.unwrap_or(&rustls::version::TLS12);
    let max = max.unwrap_or(&rustls::version::TLS13);
    let versions: Vec<&'static SupportedProtocolVersion> =
        [&rustls::version::TLS12, &rustls::version::TLS13]
            .into_iter()
            .filter(|v| rank(v) >= rank(min) && rank(v) <= rank(max))
            .collect();
    if versions.is_empty() {
        errors.push(WebConfigError::invalid(
            &format!("{P}.min_version"),
            "is above max_version",
        ));
    }

    let mut provider = rustls::crypto::ring::default_provider();
    if let Some(names) = &t.cipher_suites {
        match cipher_suites(&provider, names) {
            Ok(s) => provider.cipher_suites = s,
            Err(e) => errors.push(e),
        }
    }
    if let Some(names) = &t.curve_preferences {
        match curves(&provider, names) {
            Ok(k) => provider.kx_groups = k,
            Err(e) => errors.push(e),
        }
    }
    if errors.len() > before {
        return None;
    }
    let (Some(private_key), false) = (private_key, certs.is_empty()) else {
        return None;
    };
    let provider = Arc::new(provider);
    let builder = match ServerConfig::builder_with_provider(provider.clone())
        .with_protocol_versions(&versions)
    {
        Ok(b) => b,
        Err(e) => {
            errors.push(WebConfigError::invalid(P, e.to_string()));
            return None;
        }
    };
    let builder = match (roots, verify) {
        (Some(roots), Some(required)) => {
            let v = WebPkiClientVerifier::builder_with_provider(Arc::new(roots), provider);
            let v = if required {
                v
            } else {
                v.allow_unauthenticated()
            };
            match v.build() {
                Ok(v) => builder.with_client_cert_verifier(v),
                Err(e) => {
                    errors.push(WebConfigError::invalid(&ca_key, e.to_string()));
                    return None;
                }
            }
        }
        _ => builder.with_no_client_auth(),
    };
    // Also checks that the key matches the certificate.
    let mut config = match builder.with_single_cert(certs, private_key) {
        Ok(c) => c,
        Err(e) => {
            errors.push(WebConfigError::invalid(&key_key, e.to_string()));
            return None;
        }
    };
    config.ignore_client_order = t.prefer_server_cipher_suites.unwrap_or(true);
    config.alpn_protocols = vec![b"http/1.1".to_vec()];
    Some(Arc::new(config))
}

fn rank(v: &SupportedProtocolVersion) -> u16 {
    u16::from(v.version)
}

/// Go cipher suite names (as in `tls.CipherSuites()`) to the ring provider's
/// suites. As in Go, the list orders the TLS 1.2 suites; TLS 1.3 suites stay
/// enabled whatever it says.
fn cipher_suites(
    provider: &CryptoProvider,
    names: &[String],
) -> Result<Vec<rustls::SupportedCipherSuite>, WebConfigError> {
    let key = "tls_server_config.cipher_suites";
    let mut chosen: Vec<_> = provider
        .cipher_suites
        .iter()
        .filter(|s| s.version() == &rustls::version::TLS13)
        .copied()
        .collect();
    for name in names {
        // Go also accepts the CHACHA20 names without the `_SHA256` suffix.
        let full = if name.ends_with("CHACHA20_POLY1305") {
            format!("{name}_SHA256")
        } else {
            name.clone()
        };
        let suite = provider
            .cipher_suites
            .iter()
            .find(|s| format!("{:?}", s.suite()) == full)
            .ok_or_else(|| {
                WebConfigError::invalid(
                    key,
                    format!(
                        "`{name}` is not available (ECDHE with AES-GCM or CHACHA20-POLY1305 only)"
                    ),
                )
            })?;
        if !chosen.iter().any(|s| s.suite() == suite.suite()) {
            chosen.push(*suite);
        }
    }
    Ok(chosen)
}

/// Go curve names (`tls.CurveID`) to the ring provider's key exchange groups.
fn curves(
    provider: &CryptoProvider,
    names: &[String],
) -> Result<Vec<&'static dyn rustls::crypto::SupportedKxGroup>, WebConfigError> {
    let key = "tls_server_config.curve_preferences";
    if names.is_empty() {
        return Err(WebConfigError::invalid(key, "must not be empty"));
    }
    names
        .iter()
        .map(|name| {
            let group = match name.as_str() {
                "CurveP256" => rustls::NamedGroup::secp256r1,
                "CurveP384" => rustls::NamedGroup::secp384r1,
                "X25519" => rustls::NamedGroup::X25519,
                _ => {
                    return Err(WebConfigError::invalid(
                        key,
                        format!("`{name}` is not available; use CurveP256, CurveP384 or X25519"),
                    ))
                }
            };
            provider
                .kx_groups
                .iter()
                .find(|g| g.name() == group)
                .copied()
                .ok_or_else(|| WebConfigError::invalid(key, format!("`{name}` is not available")))
        })
        .collect()
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
#[path = "web_config_tests.rs"]
mod tests;

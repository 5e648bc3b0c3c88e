//! `rehab-canary healthcheck`: asks a running daemon's admin server for
//! `/-/healthy` and says whether it answered 200 within a short timeout. It is
//! the container's `HEALTHCHECK` (distroless images have no curl), and works
//! for any probe that can run a command.
//!
//! The address comes from `--url`, or else from the config (file and
//! `REHAB_CANARY__SERVER__LISTEN`), with a wildcard listen address mapped to
//! loopback. When the web config turns TLS on, the derived URL is https and
//! the certificate is not verified, as kubelet's HTTPS probes do: the probe
//! talks to its own host, sends no secret and trusts nothing in the answer
//! but its status, and the certificate rarely names `127.0.0.1`. An explicit
//! `https://` `--url` is verified (public roots plus `--cacert`) unless
//! `--insecure` is given. `/-/healthy` needs no basic auth, so no credentials
//! are ever needed; a web config with `RequireAndVerifyClientCert` cannot be
//! probed this way (the handshake needs a client certificate).

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::path::{Path, PathBuf};
use std::time::Duration;

use reqwest::Url;

use crate::config::{Config, ConfigErrors};
use crate::exit::{Exit, ExitStatus};

use super::web_config::{WebConfig, WebConfigErrors};

/// How long the whole check may take by default (connect, TLS, answer).
pub const DEFAULT_TIMEOUT: Duration = Duration::from_secs(3);

/// The liveness route of the admin server.
pub const HEALTHY_PATH: &str = "/-/healthy";

#[derive(Debug, thiserror::Error)]
pub enum HealthcheckError {
    #[error("--url {url}: {reason}")]
    BadUrl { url: String, reason: String },
    #[error("invalid configuration: {}", one_line(.0))]
    Config(ConfigErrors),
    #[error("{}", one_line(.0))]
    WebConfig(WebConfigErrors),
    #[error("server.listen {0} has port 0, which only the daemon knows: pass --url")]
    EphemeralPort(SocketAddr),
    #[error("--cacert {}: {reason}", .path.display())]
    CaFile { path: PathBuf, reason: String },
    #[error("cannot start the runtime: {0}")]
    Runtime(#[source] std::io::Error),
    #[error("cannot build the HTTP client: {0}")]
    Client(#[source] reqwest::Error),
    #[error("{url}: no answer within {}", humantime::format_duration(*.timeout))]
    Timeout { url: Url, timeout: Duration },
    #[error("{url}: {reason}")]
    Unreachable { url: Url, reason: String },
    #[error("{url}: answered {status}, not 200")]
    Unhealthy {
        url: Url,
        status: reqwest::StatusCode,
    },
}

/// A problem with the command line or the config exits 64; an unhealthy or
/// unreachable daemon, 1.
impl ExitStatus for HealthcheckError {
    fn exit(&self) -> Exit {
        match self {
            HealthcheckError::BadUrl { .. }
            | HealthcheckError::Config(_)
            | HealthcheckError::WebConfig(_)
            | HealthcheckError::EphemeralPort(_)
            | HealthcheckError::CaFile { .. } => Exit::Usage,
            _ => Exit::Failure,
        }
    }
}

/// Error lists joined on one line: a probe's message is read in one glance
/// (`docker inspect`, `systemctl status`).
fn one_line(e: &impl std::fmt::Display) -> String {
    e.to_string()
        .lines()
        .map(str::trim)
        .collect::<Vec<_>>()
        .join("; ")
}

/// What to ask and how far to trust the answer's TLS certificate.
#[derive(Debug, Clone, PartialEq)]
pub struct Probe {
    pub url: Url,
    /// Verify the server's certificate (https only).
    pub verify_tls: bool,
    /// Extra trusted CA certificates (PEM), besides the public roots.
    pub ca_file: Option<PathBuf>,
    pub timeout: Duration,
}

impl Probe {
    /// From `--url`: an admin server base URL (`http://host:8742`, `/-/healthy`
    /// is appended) or, when it has a path, the exact URL to ask.
    pub fn from_url(raw: &str) -> Result<Probe, HealthcheckError> {
        let bad = |reason: &str| HealthcheckError::BadUrl {
            url: raw.to_owned(),
            reason: reason.to_owned(),
        };
        let mut url = Url::parse(raw).map_err(|e| bad(&e.to_string()))?;
        if !matches!(url.scheme(), "http" | "https") {
            return Err(bad("the scheme must be http or https"));
        }
        if url.host().is_none() {
            return Err(bad("a host is needed"));
        }
        if url.path().is_empty() || url.path() == "/" {
            url.set_path(HEALTHY_PATH);
        }
        Ok(Probe {
            url,
            verify_tls: true,
            ca_file: None,
            timeout: DEFAULT_TIMEOUT,
        })
    }

    /// From the daemon's config: `server.listen` (a wildcard address mapped to
    /// loopback) and, to choose http or https, the web config (`web` wins over
    /// `server.web_config_file`, as for `run`). A TLS certificate found this
    /// way is not verified; see the module documentation.
    pub fn from_config(cfg: &Config, web: Option<&Path>) -> Result<Probe, HealthcheckError> {
        let listen = cfg
            .listen_addr()
            .map_err(|e| HealthcheckError::Config(ConfigErrors(vec![e])))?;
        if listen.port() == 0 {
            return Err(HealthcheckError::EphemeralPort(listen));
        }
        let web = web.or(cfg.server.web_config_file.as_deref());
        let tls = match web {
            Some(path) => WebConfig::load(path)
                .map_err(HealthcheckError::WebConfig)?
                .tls
                .is_some(),
            None => false,
        };
        let scheme = if tls { "https" } else { "http" };
        let addr = probe_addr(listen);
        let url = Url::parse(&format!("{scheme}://{addr}{HEALTHY_PATH}")).map_err(|e| {
            HealthcheckError::BadUrl {
                url: addr.to_string(),
                reason: e.to_string(),
            }
        })?;
        Ok(Probe {
            url,
            verify_tls: false,
            ca_file: None,
            timeout: DEFAULT_TIMEOUT,
        })
    }

    /// Asks once; `Ok` only for a 200 within the timeout.
    pub async fn check(&self) -> Result<(), HealthcheckError> {
        let mut builder = reqwest::Client::builder()
            .timeout(self.timeout)
            .connect_timeout(self.timeout)
            // A proxy from the environment must not stand between a probe and
            // its own host; a redirect is not a 200.
            .no_proxy()
            .redirect(reqwest::redirect::Policy::none())
            .user_agent(concat!(
                "rehab-canary-healthcheck/",
                env!("CARGO_PKG_VERSION")
            ));
        if !self.verify_tls {
            builder = builder.danger_accept_invalid_certs(true);
        }
        if let Some(path) = &self.ca_file {
            for cert in read_ca_file(path)? {
                builder = builder.add_root_certificate(cert);
            }
        }
        let client = builder.build().map_err(HealthcheckError::Client)?;
        let url = self.url.clone();
        // reqwest's timeout covers the answer's headers; this one bounds
        // everything, whatever the server does.
        let answer = tokio::time::timeout(self.timeout, client.get(url.clone()).send()).await;
        let resp = match answer {
            Err(_) => {
                return Err(HealthcheckError::Timeout {
                    url,
                    timeout: self.timeout,
                })
            }
            Ok(Err(e)) if e.is_timeout() => {
                return Err(HealthcheckError::Timeout {
                    url,
                    timeout: self.timeout,
                })
            }
            Ok(Err(e)) => {
                return Err(HealthcheckError::Unreachable {
                    url,
                    reason: root_cause(&e),
                })
            }
            Ok(Ok(resp)) => resp,
        };
        match resp.status() {
            reqwest::StatusCode::OK => Ok(()),
            status => Err(HealthcheckError::Unhealthy { url, status }),
        }
    }
}

/// Where to reach a server listening on `listen` from the same host: a
/// wildcard address is not a destination, so it becomes loopback of the same
/// family.
pub fn probe_addr(listen: SocketAddr) -> SocketAddr {
    let ip = match listen.ip() {
        IpAddr::V4(ip) if ip.is_unspecified() => IpAddr::V4(Ipv4Addr::LOCALHOST),
        IpAddr::V6(ip) if ip.is_unspecified() => IpAddr::V6(Ipv6Addr::LOCALHOST),
        ip => ip,
    };
    SocketAddr::new(ip, listen.port())
}

fn read_ca_file(path: &Path) -> Result<Vec<reqwest::Certificate>, HealthcheckError> {
    let fail = |reason: String| HealthcheckError::CaFile {
        path: path.to_path_buf(),
        reason,
    };
    let pem = std::fs::read(path).map_err(|e| fail(e.to_string()))?;
    let certs = reqwest::Certificate::from_pem_bundle(&pem).map_err(|e| fail(e.to_string()))?;
    if certs.is_empty() {
        return Err(fail("no PEM certificate in it".to_owned()));
    }
    Ok(certs)
}

/// The innermost cause of a request error ("Connection refused (os error
/// 111)", "invalid peer certificate: UnknownIssuer"): reqwest's own message
/// only says that sending failed.
fn root_cause(e: &(dyn std::error::Error + 'static)) -> String {
    let mut cause = e;
    while let Some(next) = cause.source() {
        cause = next;
    }
    cause.to_string()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn base_urls_get_the_healthy_path_full_urls_are_kept() {
        let cases = [
            ("http://127.0.0.1:8742", "http://127.0.0.1:8742/-/healthy"),
            ("http://127.0.0.1:8742/", "http://127.0.0.1:8742/-/healthy"),
            ("https://[::1]:8742", "https://[::1]:8742/-/healthy"),
            ("http://sim:4000/health", "http://sim:4000/health"),
            ("http://h:1/-/ready", "http://h:1/-/ready"),
        ];
        for (raw, want) in cases {
            let probe = Probe::from_url(raw).unwrap();
            assert_eq!(probe.url.as_str(), want, "{raw}");
            assert!(probe.verify_tls);
            assert_eq!(probe.timeout, DEFAULT_TIMEOUT);
        }
    }

    #[test]
    fn bad_urls_are_usage_errors() {
        for raw in ["", "127.0.0.1:8742", "ftp://h/", "unix:/run/x", "http://"] {
            let e = Probe::from_url(raw).unwrap_err();
            assert_eq!(e.exit(), Exit::Usage, "{raw}: {e}");
            assert!(e.to_string().starts_with("--url"), "{e}");
        }
    }

    #[test]
    fn wildcard_listen_addresses_map_to_loopback() {
        let cases = [
            ("0.0.0.0:8742", "127.0.0.1:8742"),
            ("[::]:8742", "[::1]:8742"),
            ("127.0.0.1:9", "127.0.0.1:9"),
            ("10.1.2.3:8742", "10.1.2.3:8742"),
            ("[fd00::1]:8742", "[fd00::1]:8742"),
        ];
        for (listen, want) in cases {
            assert_eq!(probe_addr(listen.parse().unwrap()).to_string(), want);
        }
    }

    #[test]
    fn the_config_gives_the_address_and_the_scheme() {
        let mut cfg = Config::default();
        let probe = Probe::from_config(&cfg, None).unwrap();
        assert_eq!(probe.url.as_str(), "http://127.0.0.1:8742/-/healthy");

        cfg.server.listen = "0.0.0.0:9000".into();
        assert_eq!(
            Probe::from_config(&cfg, None).unwrap().url.as_str(),
            "http://127.0.0.1:9000/-/healthy"
        );

        let dir = tempfile::tempdir().unwrap();
        let ck = rcgen::generate_simple_self_signed(vec!["localhost".to_owned()]).unwrap();
        std::fs::write(dir.path().join("s.crt"), ck.cert.pem()).unwrap();
        std::fs::write(dir.path().join("s.key"), ck.signing_key.serialize_pem()).unwrap();
        let tls = dir.path().join("tls.yml");
        std::fs::write(
            &tls,
            "tls_server_config:\n  cert_file: s.crt\n  key_file: s.key\n",
        )
        .unwrap();
        let empty = dir.path().join("empty.yml");
        std::fs::write(&empty, "").unwrap();

        cfg.server.web_config_file = Some(tls.clone());
        let probe = Probe::from_config(&cfg, None).unwrap();
        assert_eq!(probe.url.as_str(), "https://127.0.0.1:9000/-/healthy");
        assert!(!probe.verify_tls);
        // The command line's web config wins, as for `run`.
        let probe = Probe::from_config(&cfg, Some(&empty)).unwrap();
        assert_eq!(probe.url.scheme(), "http");

        cfg.server.web_config_file = Some(dir.path().join("missing.yml"));
        let e = Probe::from_config(&cfg, None).unwrap_err();
        assert_eq!(e.exit(), Exit::Usage);
        assert!(!e.to_string().contains('\n'), "{e}");
    }

    #[test]
    fn port_zero_cannot_be_probed() {
        let mut cfg = Config::default();
        cfg.server.listen = "127.0.0.1:0".into();
        let e = Probe::from_config(&cfg, None).unwrap_err();
        assert!(matches!(e, HealthcheckError::EphemeralPort(_)), "{e}");
        assert_eq!(e.exit(), Exit::Usage);
    }
}

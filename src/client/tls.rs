//! TLS towards the target: one rustls configuration for every client path,
//! trusting the built-in web roots and/or a private CA, presenting a client
//! certificate that is re-read when its files change, and checking the
//! server's certificate against a configured name when the URL's host is not
//! the name it carries.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use arc_swap::ArcSwap;
use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::client::{ResolvesClientCert, WebPkiServerVerifier};
use rustls::crypto::CryptoProvider;
use rustls::sign::CertifiedKey;
use rustls::{ClientConfig, DigitallySignedStruct, RootCertStore, SignatureScheme};
use rustls_pki_types::pem::PemObject;
use rustls_pki_types::{CertificateDer, PrivateKeyDer, ServerName, UnixTime};

use crate::config::TargetTlsConfig;

#[derive(Debug, thiserror::Error)]
pub enum TlsError {
    #[error("{key}: cannot read {}: {source}", path.display())]
    Read {
        key: &'static str,
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("{key}: {}: {msg}", path.display())]
    Invalid {
        key: &'static str,
        path: PathBuf,
        msg: String,
    },
    #[error("target.tls: {0}")]
    Setup(String),
}

/// Every TLS error is a setting that does not load: fix the file, not retry.
impl crate::exit::ExitStatus for TlsError {
    fn exit(&self) -> crate::exit::Exit {
        crate::exit::Exit::Usage
    }
}

/// The client side of TLS to the target, shared by every connection.
pub struct TargetTls {
    pub config: Arc<ClientConfig>,
    /// The mTLS identity, when configured; its watcher re-reads the files.
    pub identity: Option<Arc<ClientIdentity>>,
}

impl std::fmt::Debug for TargetTls {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TargetTls")
            .field("mtls", &self.identity.is_some())
            .finish_non_exhaustive()
    }
}

fn provider() -> Arc<CryptoProvider> {
    Arc::new(rustls::crypto::ring::default_provider())
}

impl TargetTls {
    pub fn new(cfg: &TargetTlsConfig) -> Result<TargetTls, TlsError> {
        let provider = provider();
        let mut roots = RootCertStore::empty();
        if cfg.web_roots {
            roots.extend(webpki_roots::TLS_SERVER_ROOTS.iter().cloned());
        }
        if let Some(path) = &cfg.ca_file {
            let key = "target.tls.ca_file";
            for cert in read_certs(key, path)? {
                roots.add(cert).map_err(|e| invalid(key, path, e))?;
            }
        }
        let webpki = WebPkiServerVerifier::builder_with_provider(Arc::new(roots), provider.clone())
            .build()
            .map_err(|e| TlsError::Setup(e.to_string()))?;
        let verifier: Arc<dyn ServerCertVerifier> = match &cfg.server_name {
            Some(name) => Arc::new(FixedName {
                inner: webpki,
                name: ServerName::try_from(name.clone())
                    .map_err(|e| TlsError::Setup(format!("server_name: {e}")))?,
            }),
            None => webpki,
        };
        let builder = ClientConfig::builder_with_provider(provider.clone())
            .with_safe_default_protocol_versions()
            .map_err(|e| TlsError::Setup(e.to_string()))?
            .dangerous()
            .with_custom_certificate_verifier(verifier);
        let identity = match (&cfg.cert_file, &cfg.key_file) {
            (Some(cert), Some(key)) => Some(Arc::new(ClientIdentity::load(
                cert.clone(),
                key.clone(),
                provider,
            )?)),
            _ => None,
        };
        let mut config = match &identity {
            Some(id) => builder.with_client_cert_resolver(id.clone()),
            None => builder.with_no_client_auth(),
        };
        config.alpn_protocols = vec![b"http/1.1".to_vec()];
        Ok(TargetTls {
            config: Arc::new(config),
            identity,
        })
    }
}

fn invalid(key: &'static str, path: &Path, msg: impl std::fmt::Display) -> TlsError {
    TlsError::Invalid {
        key,
        path: path.to_owned(),
        msg: msg.to_string(),
    }
}

fn read(key: &'static str, path: &Path) -> Result<Vec<u8>, TlsError> {
    std::fs::read(path).map_err(|source| TlsError::Read {
        key,
        path: path.to_owned(),
        source,
    })
}

fn read_certs(key: &'static str, path: &Path) -> Result<Vec<CertificateDer<'static>>, TlsError> {
    let pem = read(key, path)?;
    let certs = CertificateDer::pem_slice_iter(&pem)
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| invalid(key, path, e))?;
    if certs.is_empty() {
        return Err(invalid(key, path, "no PEM certificate in the file"));
    }
    Ok(certs)
}

/// The configured client certificate, swapped whole when its files change:
/// a handshake sees the old pair or the new one, never a mix.
pub struct ClientIdentity {
    cert_path: PathBuf,
    key_path: PathBuf,
    provider: Arc<CryptoProvider>,
    current: ArcSwap<CertifiedKey>,
    stamp: parking_lot::Mutex<[Option<(SystemTime, u64)>; 2]>,
}

impl std::fmt::Debug for ClientIdentity {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ClientIdentity")
            .field("cert_path", &self.cert_path)
            .finish_non_exhaustive()
    }
}

fn stamp(path: &Path) -> Option<(SystemTime, u64)> {
    let m = std::fs::metadata(path).ok()?;
    Some((m.modified().ok()?, m.len()))
}

impl ClientIdentity {
    fn load(
        cert_path: PathBuf,
        key_path: PathBuf,
        provider: Arc<CryptoProvider>,
    ) -> Result<ClientIdentity, TlsError> {
        let stamps = [stamp(&cert_path), stamp(&key_path)];
        let key = certified_key(&cert_path, &key_path, &provider)?;
        Ok(ClientIdentity {
            cert_path,
            key_path,
            provider,
            current: ArcSwap::from_pointee(key),
            stamp: parking_lot::Mutex::new(stamps),
        })
    }

    /// Re-reads the pair when either file changed. A pair that does not load
    /// (half-written, key not matching) keeps the running one.
    pub fn reload_if_changed(&self) -> Result<bool, TlsError> {
        let now = [stamp(&self.cert_path), stamp(&self.key_path)];
        if *self.stamp.lock() == now {
            return Ok(false);
        }
        let key = certified_key(&self.cert_path, &self.key_path, &self.provider)?;
        self.current.store(Arc::new(key));
        *self.stamp.lock() = now;
        Ok(true)
    }

    /// Checks the files every `interval`, for as long as it is polled; a
    /// failure to load is logged once until a load succeeds again.
    pub async fn watch(self: Arc<Self>, interval: Duration) {
        let mut failing = false;
        loop {
            tokio::time::sleep(interval).await;
            match self.reload_if_changed() {
                Ok(true) => {
                    failing = false;
                    tracing::info!(cert_file = %self.cert_path.display(), "client certificate reloaded");
                }
                Ok(false) => {}
                Err(e) if !failing => {
                    failing = true;
                    tracing::error!(
                        "client certificate not reloaded, the running one is kept: {e}"
                    );
                }
                Err(_) => {}
            }
        }
    }
}

fn certified_key(
    cert_path: &Path,
    key_path: &Path,
    provider: &CryptoProvider,
) -> Result<CertifiedKey, TlsError> {
    let chain = read_certs("target.tls.cert_file", cert_path)?;
    let key_key = "target.tls.key_file";
    let pem = read(key_key, key_path)?;
    let der = PrivateKeyDer::from_pem_slice(&pem).map_err(|e| invalid(key_key, key_path, e))?;
    let signing = provider
        .key_provider
        .load_private_key(der)
        .map_err(|e| invalid(key_key, key_path, e))?;
    let certified = CertifiedKey::new(chain, signing);
    certified.keys_match().map_err(|e| {
        invalid(
            key_key,
            key_path,
            format!("does not match the certificate: {e}"),
        )
    })?;
    Ok(certified)
}

impl ResolvesClientCert for ClientIdentity {
    fn resolve(
        &self,
        _root_hint_subjects: &[&[u8]],
        _sigschemes: &[SignatureScheme],
    ) -> Option<Arc<CertifiedKey>> {
        Some(self.current.load_full())
    }

    fn has_certs(&self) -> bool {
        true
    }
}

/// Verifies against a fixed name instead of the URL's host.
#[derive(Debug)]
struct FixedName {
    inner: Arc<WebPkiServerVerifier>,
    name: ServerName<'static>,
}

impl ServerCertVerifier for FixedName {
    fn verify_server_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        intermediates: &[CertificateDer<'_>],
        _server_name: &ServerName<'_>,
        ocsp_response: &[u8],
        now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        self.inner
            .verify_server_cert(end_entity, intermediates, &self.name, ocsp_response, now)
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        self.inner.verify_tls12_signature(message, cert, dss)
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        self.inner.verify_tls13_signature(message, cert, dss)
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.inner.supported_verify_schemes()
    }
}

/// Whether a transport error was TLS failing (a certificate not trusted, a
/// client certificate refused), as opposed to TCP. The rustls error sits
/// inside one or more `io::Error`s, whose `source()` skips what they wrap.
pub fn is_tls_failure(e: &(dyn std::error::Error + 'static)) -> bool {
    let mut cur = Some(e);
    while let Some(err) = cur {
        if err.is::<rustls::Error>() {
            return true;
        }
        cur = match err.downcast_ref::<std::io::Error>() {
            Some(io) => io
                .get_ref()
                .map(|inner| inner as &(dyn std::error::Error + 'static)),
            None => err.source(),
        };
    }
    false
}

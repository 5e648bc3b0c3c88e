//! The reference API over https: a server certificate and, optionally, a CA
//! whose client certificates it requires (mTLS), so every TLS setting of the
//! canary can be tested against it.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use rustls::server::WebPkiClientVerifier;
use rustls::{RootCertStore, ServerConfig};
use rustls_pki_types::pem::PemObject;
use rustls_pki_types::{CertificateDer, PrivateKeyDer};
use serde::Deserialize;

use super::error::SimError;
use crate::config::load::Errors;

/// `[tls]`: plain http unless `cert_file` and `key_file` are set.
#[derive(Clone, Debug, Default, Deserialize)]
#[serde(default)]
pub struct TlsConfig {
    /// The server certificate chain (PEM).
    pub cert_file: Option<PathBuf>,
    pub key_file: Option<PathBuf>,
    /// Require a client certificate signed by one of these CAs (PEM).
    pub client_ca_file: Option<PathBuf>,
}

impl TlsConfig {
    pub fn enabled(&self) -> bool {
        self.cert_file.is_some()
    }

    pub fn validate(&self, errs: &mut Errors) {
        errs.check(
            self.cert_file.is_some() == self.key_file.is_some(),
            if self.cert_file.is_some() {
                "tls.key_file"
            } else {
                "tls.cert_file"
            },
            "tls.cert_file and tls.key_file go together",
        );
        errs.check(
            self.client_ca_file.is_none() || self.cert_file.is_some(),
            "tls.client_ca_file",
            "needs tls.cert_file and tls.key_file",
        );
    }

    /// The server's rustls config, when TLS is on.
    pub fn server_config(&self) -> Result<Option<Arc<ServerConfig>>, SimError> {
        let (Some(cert), Some(key)) = (&self.cert_file, &self.key_file) else {
            return Ok(None);
        };
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let chain = certs("tls.cert_file", cert)?;
        let key = PrivateKeyDer::from_pem_slice(&read("tls.key_file", key)?)
            .map_err(|e| SimError::config("tls.key_file", e.to_string()))?;
        let builder = ServerConfig::builder_with_provider(provider.clone())
            .with_safe_default_protocol_versions()
            .map_err(|e| SimError::config("tls", e.to_string()))?;
        let builder = match &self.client_ca_file {
            Some(path) => {
                let mut roots = RootCertStore::empty();
                for c in certs("tls.client_ca_file", path)? {
                    roots
                        .add(c)
                        .map_err(|e| SimError::config("tls.client_ca_file", e.to_string()))?;
                }
                let verifier =
                    WebPkiClientVerifier::builder_with_provider(Arc::new(roots), provider)
                        .build()
                        .map_err(|e| SimError::config("tls.client_ca_file", e.to_string()))?;
                builder.with_client_cert_verifier(verifier)
            }
            None => builder.with_no_client_auth(),
        };
        let mut config = builder
            .with_single_cert(chain, key)
            .map_err(|e| SimError::config("tls.key_file", e.to_string()))?;
        config.alpn_protocols = vec![b"http/1.1".to_vec()];
        Ok(Some(Arc::new(config)))
    }
}

fn read(key: &str, path: &Path) -> Result<Vec<u8>, SimError> {
    std::fs::read(path).map_err(|e| SimError::config(key, format!("{}: {e}", path.display())))
}

fn certs(key: &str, path: &Path) -> Result<Vec<CertificateDer<'static>>, SimError> {
    let list = CertificateDer::pem_slice_iter(&read(key, path)?)
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| SimError::config(key, e.to_string()))?;
    if list.is_empty() {
        return Err(SimError::config(key, "no PEM certificate in the file"));
    }
    Ok(list)
}

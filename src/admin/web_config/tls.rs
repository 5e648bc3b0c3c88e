//! The `tls_server_config` part of a web config: certificates and keys
//! (inline or from files), client certificate authentication, versions,
//! cipher suites and curves, mapped from the exporter-toolkit's Go names to
//! a rustls `ServerConfig` with the ring provider.

use std::path::PathBuf;
use std::sync::Arc;

use rustls::crypto::CryptoProvider;
use rustls::server::WebPkiClientVerifier;
use rustls::{RootCertStore, ServerConfig, SupportedProtocolVersion};
use rustls_pki_types::pem::PemObject;
use rustls_pki_types::{CertificateDer, PrivateKeyDer};

use super::{RawTls, Reader, WebConfigError};

/// Either an inline PEM value or a file, never both (as in the toolkit).
pub(super) fn pem_source(
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

pub(super) fn build_tls(
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

    let mut version = |key: &str, v: &Option<String>| {
        v.as_deref()
            .map(|v| tls_version(&format!("{P}.{key}"), v))
            .transpose()
            .map_err(|e| errors.push(e))
            .ok()
            .flatten()
    };
    let min = version("min_version", &t.min_version);
    let max = version("max_version", &t.max_version);
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

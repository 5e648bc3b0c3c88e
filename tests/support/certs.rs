//! Certificates made with rcgen: a self-signed server certificate and a CA
//! that signs client certificates.

use std::path::{Path, PathBuf};

/// A self-signed server certificate for `names`, written as `server.crt`
/// and `server.key` in `dir`; returns the certificate's PEM.
pub fn write_server_cert(dir: &Path, names: &[&str]) -> String {
    let ck =
        rcgen::generate_simple_self_signed(names.iter().map(|n| n.to_string()).collect::<Vec<_>>())
            .unwrap();
    let pem = ck.cert.pem();
    std::fs::write(dir.join("server.crt"), &pem).unwrap();
    std::fs::write(dir.join("server.key"), ck.signing_key.serialize_pem()).unwrap();
    pem
}

/// A fresh CA, written as `ca.crt` in `dir`, that signs one client
/// certificate for `name`; returns the client's certificate and key as one
/// PEM (what `reqwest::Identity::from_pem` takes).
pub fn write_ca_and_client_cert(dir: &Path, name: &str) -> (PathBuf, String) {
    let ca_key = rcgen::KeyPair::generate().unwrap();
    let mut ca_params = rcgen::CertificateParams::new(Vec::<String>::new()).unwrap();
    ca_params.is_ca = rcgen::IsCa::Ca(rcgen::BasicConstraints::Unconstrained);
    let ca_cert = ca_params.self_signed(&ca_key).unwrap();
    let ca_path = dir.join("ca.crt");
    std::fs::write(&ca_path, ca_cert.pem()).unwrap();
    let issuer = rcgen::Issuer::new(ca_params, ca_key);
    let client_key = rcgen::KeyPair::generate().unwrap();
    let client_cert = rcgen::CertificateParams::new(vec![name.to_owned()])
        .unwrap()
        .signed_by(&client_key, &issuer)
        .unwrap();
    let identity = format!("{}{}", client_cert.pem(), client_key.serialize_pem());
    (ca_path, identity)
}

/// A CA for tests that issues server and client certificates, each written
/// as `{stem}.crt` and `{stem}.key`.
pub struct TestCa {
    pub pem: String,
    issuer: rcgen::Issuer<'static, rcgen::KeyPair>,
}

impl TestCa {
    pub fn new(name: &str) -> TestCa {
        let key = rcgen::KeyPair::generate().unwrap();
        let mut params = rcgen::CertificateParams::new(Vec::<String>::new()).unwrap();
        params.is_ca = rcgen::IsCa::Ca(rcgen::BasicConstraints::Unconstrained);
        params
            .distinguished_name
            .push(rcgen::DnType::CommonName, name);
        let cert = params.self_signed(&key).unwrap();
        TestCa {
            pem: cert.pem(),
            issuer: rcgen::Issuer::new(params, key),
        }
    }

    /// Writes the CA certificate as `{stem}.crt` in `dir`.
    pub fn write(&self, dir: &Path, stem: &str) -> PathBuf {
        let path = dir.join(format!("{stem}.crt"));
        std::fs::write(&path, &self.pem).unwrap();
        path
    }

    /// A certificate for `names` (DNS names or IP addresses) signed by this
    /// CA; returns the paths of its certificate and key.
    pub fn issue(&self, dir: &Path, stem: &str, names: &[&str]) -> (PathBuf, PathBuf) {
        let key = rcgen::KeyPair::generate().unwrap();
        let cert =
            rcgen::CertificateParams::new(names.iter().map(|n| n.to_string()).collect::<Vec<_>>())
                .unwrap()
                .signed_by(&key, &self.issuer)
                .unwrap();
        let (crt, pk) = (
            dir.join(format!("{stem}.crt")),
            dir.join(format!("{stem}.key")),
        );
        std::fs::write(&crt, cert.pem()).unwrap();
        std::fs::write(&pk, key.serialize_pem()).unwrap();
        (crt, pk)
    }
}

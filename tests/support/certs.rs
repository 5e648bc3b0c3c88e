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

//! Unit tests of the web config parser: valid files, unknown and unsupported
//! keys, missing files, bad hashes and certificates, each error naming its key.

use super::*;

struct Dir {
    dir: tempfile::TempDir,
}

impl Dir {
    /// A temp dir with a self-signed `server.crt`/`server.key` and a CA.
    fn new() -> Dir {
        let dir = tempfile::tempdir().unwrap();
        let ck = rcgen::generate_simple_self_signed(vec!["localhost".to_owned()]).unwrap();
        std::fs::write(dir.path().join("server.crt"), ck.cert.pem()).unwrap();
        std::fs::write(
            dir.path().join("server.key"),
            ck.signing_key.serialize_pem(),
        )
        .unwrap();
        let ca = rcgen::generate_simple_self_signed(vec!["ca".to_owned()]).unwrap();
        std::fs::write(dir.path().join("ca.crt"), ca.cert.pem()).unwrap();
        Dir { dir }
    }

    fn parse(&self, yaml: &str) -> Result<WebConfig, Vec<WebConfigError>> {
        WebConfig::parse(yaml, self.dir.path())
    }

    fn keys(&self, yaml: &str) -> Vec<String> {
        match self.parse(yaml) {
            Ok(c) => panic!("{yaml:?} was accepted: {c:?}"),
            Err(e) => e
                .iter()
                .map(|e| e.key().unwrap_or("-").to_owned())
                .collect(),
        }
    }
}

fn hash() -> String {
    bcrypt::hash("pw", 4).unwrap()
}

#[test]
fn empty_files_mean_plain_http_without_auth() {
    let d = Dir::new();
    for yaml in ["", "\n", "# only a comment\n", "{}"] {
        let c = d.parse(yaml).unwrap();
        assert!(c.tls.is_none() && c.auth.is_none() && c.headers.is_empty());
    }
}

#[test]
fn a_full_valid_file_loads() {
    let d = Dir::new();
    let yaml = format!(
        r#"
tls_server_config:
  cert_file: server.crt
  key_file: server.key
  client_auth_type: VerifyClientCertIfGiven
  client_ca_file: ca.crt
  min_version: TLS12
  max_version: TLS13
  cipher_suites:
    - TLS_ECDHE_ECDSA_WITH_AES_128_GCM_SHA256
    - TLS_ECDHE_RSA_WITH_CHACHA20_POLY1305
  prefer_server_cipher_suites: false
  curve_preferences: [X25519, CurveP256]
http_server_config:
  http2: false
  headers:
    X-Frame-Options: deny
    X-Content-Type-Options: nosniff
    Strict-Transport-Security: max-age=31536000
    Content-Security-Policy: ""
basic_auth_users:
  alice: {h}
  bob: '{h}'
"#,
        h = hash()
    );
    let c = d.parse(&yaml).unwrap();
    let tls = c.tls.as_ref().unwrap();
    assert!(!tls.ignore_client_order);
    assert_eq!(tls.alpn_protocols, vec![b"http/1.1".to_vec()]);
    assert_eq!(c.auth.as_ref().unwrap().len(), 2);
    // The empty header is left unset.
    assert_eq!(c.headers.len(), 3);
    // Debug shows what is on, never a hash.
    let debug = format!("{c:?}");
    assert!(!debug.contains("$2"), "{debug}");
}

#[test]
fn tls_13_only_and_inline_pem_load() {
    let d = Dir::new();
    let cert = std::fs::read_to_string(d.dir.path().join("server.crt")).unwrap();
    let key = std::fs::read_to_string(d.dir.path().join("server.key")).unwrap();
    let indent = |s: &str| s.lines().map(|l| format!("    {l}\n")).collect::<String>();
    let yaml = format!(
        "tls_server_config:\n  min_version: TLS13\n  cert: |\n{}  key: |\n{}",
        indent(&cert),
        indent(&key)
    );
    let c = d.parse(&yaml).unwrap();
    assert!(c.tls.is_some());
}

#[test]
fn unknown_keys_are_all_named() {
    let d = Dir::new();
    let k = d.keys(
        "tls_server_config:\n  cert_fil: server.crt\n  cert_file: server.crt\n  key_file: server.key\nbasic_auth_user:\n  a: b\nhttp_server_config:\n  http3: true\n  headers:\n    X-Powered-By: me\n",
    );
    for want in [
        "tls_server_config.cert_fil",
        "basic_auth_user",
        "http_server_config.http3",
    ] {
        assert!(k.contains(&want.to_owned()), "{want} not in {k:?}");
    }
}

#[test]
fn bad_values_name_their_key() {
    let d = Dir::new();
    let tls = "tls_server_config:\n  cert_file: server.crt\n  key_file: server.key\n";
    let cases: Vec<(String, &str)> = vec![
        (
            "tls_server_config:\n  cert_file: missing.crt\n  key_file: server.key\n".into(),
            "tls_server_config.cert_file",
        ),
        (
            "tls_server_config:\n  cert_file: server.crt\n  key_file: missing.key\n".into(),
            "tls_server_config.key_file",
        ),
        (
            "tls_server_config:\n  key_file: server.key\n".into(),
            "tls_server_config.cert_file",
        ),
        (
            "tls_server_config:\n  cert_file: server.crt\n".into(),
            "tls_server_config.key_file",
        ),
        (
            // A certificate where the key should be.
            "tls_server_config:\n  cert_file: server.crt\n  key_file: server.crt\n".into(),
            "tls_server_config.key_file",
        ),
        (
            // A key that does not match the certificate.
            "tls_server_config:\n  cert_file: ca.crt\n  key_file: server.key\n".into(),
            "tls_server_config.key_file",
        ),
        (
            "tls_server_config:\n  cert_file: server.key\n  key_file: server.key\n".into(),
            "tls_server_config.cert_file",
        ),
        (
            format!("{tls}  cert: inline\n"),
            "tls_server_config.cert_file",
        ),
        (
            format!("{tls}  min_version: TLS10\n"),
            "tls_server_config.min_version",
        ),
        (
            format!("{tls}  max_version: SSL3\n"),
            "tls_server_config.max_version",
        ),
        (
            format!("{tls}  min_version: TLS13\n  max_version: TLS12\n"),
            "tls_server_config.min_version",
        ),
        (
            format!("{tls}  client_auth_type: RequireAnyClientCert\n"),
            "tls_server_config.client_auth_type",
        ),
        (
            format!("{tls}  client_auth_type: Sometimes\n"),
            "tls_server_config.client_auth_type",
        ),
        (
            format!("{tls}  client_auth_type: RequireAndVerifyClientCert\n"),
            "tls_server_config.client_ca_file",
        ),
        (
            format!("{tls}  client_ca_file: ca.crt\n"),
            "tls_server_config.client_ca_file",
        ),
        (
            format!("{tls}  cipher_suites: [TLS_RSA_WITH_RC4_128_SHA]\n"),
            "tls_server_config.cipher_suites",
        ),
        (
            format!("{tls}  curve_preferences: [CurveP521]\n"),
            "tls_server_config.curve_preferences",
        ),
        (
            format!("{tls}  client_allowed_sans: [a.example]\n"),
            "tls_server_config.client_allowed_sans",
        ),
        (
            format!("{tls}  prefer_server_cipher_suites: maybe\n"),
            "tls_server_config.prefer_server_cipher_suites",
        ),
        (
            "basic_auth_users:\n  alice: plaintext\n".into(),
            "basic_auth_users.alice",
        ),
        (
            "basic_auth_users:\n  alice: $2y$10$short\n".into(),
            "basic_auth_users.alice",
        ),
        (
            format!("basic_auth_users:\n  'a:b': {}\n", hash()),
            "basic_auth_users.a:b",
        ),
        ("basic_auth_users: [alice]\n".into(), "basic_auth_users"),
        (
            "http_server_config:\n  headers:\n    X-Frame-Options: allow\n".into(),
            "http_server_config.headers.X-Frame-Options",
        ),
        (
            "http_server_config:\n  http2: yes please\n".into(),
            "http_server_config.http2",
        ),
        (
            "rate_limit:\n  interval: 1s\n  burst: 20\n".into(),
            "rate_limit",
        ),
    ];
    for (yaml, key) in &cases {
        let k = d.keys(yaml);
        assert!(
            k.iter().any(|k| k == key),
            "{yaml:?}: expected {key}, got {k:?}"
        );
    }
}

#[test]
fn errors_never_repeat_a_hash() {
    let d = Dir::new();
    let secretish = "$2y$10$notreallyahashbutsecretlooking";
    let errs = d
        .parse(&format!("basic_auth_users:\n  alice: '{secretish}'\n"))
        .unwrap_err();
    let text = format!("{errs:?} {}", render(&errs));
    assert!(!text.contains(secretish), "{text}");
}

#[test]
fn syntax_errors_are_reported_not_panicked() {
    let d = Dir::new();
    for yaml in [
        "tls_server_config: [",
        ":\n:",
        "\t- x",
        "basic_auth_users: {a: [1, 2]}",
    ] {
        assert!(d.parse(yaml).is_err(), "{yaml:?}");
    }
}

#[test]
fn load_names_a_missing_file_and_resolves_paths_beside_the_file() {
    let err = WebConfig::load(Path::new("/nonexistent/web.yml")).unwrap_err();
    assert!(err.to_string().contains("/nonexistent/web.yml"), "{err}");
    assert!(matches!(err.errors[0], WebConfigError::Read(_)));

    let d = Dir::new();
    let file = d.dir.path().join("web.yml");
    std::fs::write(
        &file,
        "tls_server_config:\n  cert_file: server.crt\n  key_file: server.key\n",
    )
    .unwrap();
    let a = WebConfig::load(&file).unwrap();
    assert!(a.tls.is_some());
    // The fingerprint covers the files it names: a new key changes it.
    let b = WebConfig::load(&file).unwrap();
    assert_eq!(a.fingerprint, b.fingerprint);
    let ck = rcgen::generate_simple_self_signed(vec!["localhost".to_owned()]).unwrap();
    std::fs::write(d.dir.path().join("server.crt"), ck.cert.pem()).unwrap();
    std::fs::write(
        d.dir.path().join("server.key"),
        ck.signing_key.serialize_pem(),
    )
    .unwrap();
    let c = WebConfig::load(&file).unwrap();
    assert_ne!(a.fingerprint, c.fingerprint);
}

#[test]
fn an_empty_yaml_key_is_still_named() {
    let d = Dir::new();
    assert_eq!(d.keys("?\n"), vec!["\"\"".to_owned()]);
}

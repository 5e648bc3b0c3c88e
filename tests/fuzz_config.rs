//! Property tests (proptest) of the two config parsers an operator feeds: the
//! daemon config loader (TOML file plus `REHAB_CANARY__*` environment
//! overrides) and the admin server's web config (YAML). Whatever the input,
//! they must not panic, and a refusal must name what is wrong: a key, or the
//! file when the text is not TOML at all.
//!
//! Inputs are both raw text (mostly syntax errors) and documents assembled
//! from the real key names with values of every type, which reach the
//! validation code where panics would hide. Case counts are bounded so CI
//! stays fast.

mod support;

use std::path::Path;

use proptest::prelude::*;
use rehab_canary::admin::WebConfig;
use rehab_canary::config::load::Errors;
use rehab_canary::config::{Config, ConfigError};

/// Cases per property; `PROPTEST_CASES=20000` searches deeper by hand.
fn cases() -> u32 {
    std::env::var("PROPTEST_CASES")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(300)
}

/// Every leaf key path of the daemon config (`traffic.burst.every`, ...).
fn config_keys() -> Vec<String> {
    fn walk(prefix: &str, v: &serde_json::Value, out: &mut Vec<String>) {
        match v.as_object() {
            Some(map) => {
                for (k, v) in map {
                    let p = if prefix.is_empty() {
                        k.clone()
                    } else {
                        format!("{prefix}.{k}")
                    };
                    walk(&p, v, out);
                }
            }
            None => out.push(prefix.to_owned()),
        }
    }
    let mut out = Vec::new();
    walk(
        "",
        &serde_json::to_value(Config::default()).unwrap(),
        &mut out,
    );
    out
}

/// A TOML value of any type, as text; durations and URLs appear often since
/// most keys want one.
fn toml_value() -> impl Strategy<Value = String> {
    let leaf = prop_oneof![
        any::<i64>().prop_map(|i| i.to_string()),
        any::<f64>().prop_map(|f| {
            if f.is_nan() {
                "nan".to_owned()
            } else if f.is_infinite() {
                if f > 0.0 { "inf" } else { "-inf" }.to_owned()
            } else {
                format!("{f:?}")
            }
        }),
        any::<bool>().prop_map(|b| b.to_string()),
        "[0-9]{1,20}(ns|us|ms|s|m|h|d|w|y)?".prop_map(|s| format!("{s:?}")),
        "(https?|ftp)://[a-z0-9.:@\\[\\]]{0,20}(/[a-z?#]{0,8})?".prop_map(|s| format!("{s:?}")),
        "[a-zA-Z0-9_ ./:\\-]{0,16}".prop_map(|s| format!("{s:?}")),
        ".{0,12}".prop_map(|s| format!("{s:?}")),
        Just("\"embedded\"".to_owned()),
        Just("\"127.0.0.1:0\"".to_owned()),
    ];
    leaf.prop_recursive(2, 8, 4, |inner| {
        prop_oneof![
            prop::collection::vec(inner.clone(), 0..4).prop_map(|v| format!("[{}]", v.join(", "))),
            prop::collection::vec(("[a-z_]{1,8}", inner), 0..3).prop_map(|kv| {
                let body: Vec<String> = kv.into_iter().map(|(k, v)| format!("{k} = {v}")).collect();
                format!("{{ {} }}", body.join(", "))
            }),
        ]
    })
}

/// A key path: a real one (most of the time), a real one with a typo, or junk.
fn key_path(keys: Vec<String>) -> impl Strategy<Value = String> {
    let n = keys.len();
    let real = (0..n).prop_map(move |i| keys[i].clone());
    prop_oneof![
        6 => real.clone(),
        1 => (real, "[a-z_]{1,6}").prop_map(|(k, s)| format!("{k}{s}")),
        1 => "[a-z_]{1,8}(\\.[a-z_]{1,8}){0,3}",
    ]
}

/// A TOML document of dotted keys (`a.b.c = v`), so any key path can be
/// written at the top level without table headers.
fn toml_doc() -> impl Strategy<Value = String> {
    prop::collection::vec((key_path(config_keys()), toml_value()), 0..12).prop_map(|kv| {
        let mut seen = std::collections::HashSet::new();
        kv.into_iter()
            // A key defined twice is a TOML error; keep the first.
            .filter(|(k, _)| seen.insert(k.clone()))
            .map(|(k, v)| format!("{k} = {v}\n"))
            .collect()
    })
}

/// Environment overrides: real keys in the env form, and junk under the prefix.
fn env_overrides() -> impl Strategy<Value = Vec<(String, String)>> {
    let keys: Vec<String> = config_keys()
        .into_iter()
        .map(|k| format!("REHAB_CANARY__{}", k.replace('.', "__").to_uppercase()))
        .collect();
    let n = keys.len();
    let key = prop_oneof![
        4 => (0..n).prop_map(move |i| keys[i].clone()),
        1 => "REHAB_CANARY_{0,3}[A-Z_]{0,16}",
    ];
    let value = prop_oneof![
        "[0-9]{1,12}(\\.[0-9]{1,4})?(ms|s|m)?",
        "-?[0-9]{1,6}",
        "(true|false|embedded|json|text|flat|envelope)",
        ".{0,16}",
    ];
    prop::collection::vec((key, value), 0..5)
}

/// The refusal names a key (or the file, for text that is not TOML).
fn check_errors(errors: &[ConfigError]) -> Result<(), TestCaseError> {
    prop_assert!(!errors.is_empty(), "an Err with no errors");
    for e in errors {
        match e {
            ConfigError::UnknownKey { key } | ConfigError::Invalid { key, .. } => {
                prop_assert!(!key.is_empty(), "error without a key: {e:?}")
            }
            ConfigError::Load { path, message } => {
                prop_assert!(!path.is_empty() && !message.is_empty(), "{e:?}")
            }
        }
        prop_assert!(!e.to_string().is_empty());
    }
    Ok(())
}

fn load(text: &str, env: Vec<(String, String)>) -> Result<(), TestCaseError> {
    let mut file = tempfile::Builder::new().suffix(".toml").tempfile().unwrap();
    std::io::Write::write_all(&mut file, text.as_bytes()).unwrap();
    match Config::load_with_env(Some(file.path()), env) {
        Ok(cfg) => {
            // What loads also passes validation on its own.
            prop_assert!(Errors::collect(|e| cfg.validate(e)).is_empty());
            Ok(())
        }
        Err(e) => check_errors(&e.0),
    }
}

proptest! {
    #![proptest_config(ProptestConfig { cases: cases(), ..ProptestConfig::default() })]

    #[test]
    fn config_loader_never_panics_on_arbitrary_text(text in "\\PC{0,200}", env in env_overrides()) {
        load(&text, env)?;
    }

    #[test]
    fn config_loader_never_panics_on_typed_documents(text in toml_doc(), env in env_overrides()) {
        load(&text, env)?;
    }
}

// ---- the web config -------------------------------------------------------

/// A dir with a real certificate and key, so generated files can also load.
fn cert_dir() -> &'static Path {
    static DIR: std::sync::OnceLock<tempfile::TempDir> = std::sync::OnceLock::new();
    DIR.get_or_init(|| {
        let dir = tempfile::tempdir().unwrap();
        support::certs::write_server_cert(dir.path(), &["localhost"]);
        dir
    })
    .path()
}

/// `key: value` lines indented by `indent`; of a repeated key only the first.
fn yaml_lines(kv: Vec<(&str, String)>, indent: &str) -> String {
    let mut seen = std::collections::HashSet::new();
    kv.into_iter()
        .filter(|(k, _)| seen.insert(*k))
        .map(|(k, v)| format!("{indent}{k}: {v}\n"))
        .collect()
}

fn yaml_scalar() -> impl Strategy<Value = String> {
    prop_oneof![
        Just("server.crt".to_owned()),
        Just("server.key".to_owned()),
        Just("missing.pem".to_owned()),
        "(TLS1[0-3]|NoClientCert|RequireAndVerifyClientCert|VerifyClientCertIfGiven|X25519|CurveP256)",
        "\\$2[abyx]\\$[0-9]{2}\\$[./A-Za-z0-9]{0,53}",
        any::<i64>().prop_map(|i| i.to_string()),
        any::<bool>().prop_map(|b| b.to_string()),
        "[a-zA-Z0-9 _:./-]{0,20}".prop_map(|s| format!("{s:?}")),
        Just("~".to_owned()),
        Just("[]".to_owned()),
        Just("{}".to_owned()),
        Just("[TLS_ECDHE_RSA_WITH_AES_128_GCM_SHA256, nope]".to_owned()),
    ]
}

fn yaml_doc() -> impl Strategy<Value = String> {
    let tls_keys = prop_oneof![
        Just("cert_file"),
        Just("key_file"),
        Just("cert"),
        Just("key"),
        Just("client_ca_file"),
        Just("client_ca"),
        Just("client_auth_type"),
        Just("min_version"),
        Just("max_version"),
        Just("cipher_suites"),
        Just("curve_preferences"),
        Just("prefer_server_cipher_suites"),
        Just("client_allowed_sans"),
        Just("cert_fil"),
    ];
    let tls = prop::collection::vec((tls_keys, yaml_scalar()), 0..6)
        .prop_map(|kv| format!("tls_server_config:\n{}", yaml_lines(kv, "  ")));
    let users = prop::collection::btree_map("[a-z:]{0,6}", yaml_scalar(), 0..3).prop_map(|m| {
        let body: String = m
            .into_iter()
            .map(|(k, v)| format!("  {k:?}: {v}\n"))
            .collect();
        format!("basic_auth_users:\n{body}")
    });
    let http = prop::collection::vec(
        (
            prop_oneof![
                Just("X-Frame-Options"),
                Just("X-Content-Type-Options"),
                Just("X-Powered-By")
            ],
            yaml_scalar(),
        ),
        0..3,
    )
    .prop_map(|kv| {
        format!(
            "http_server_config:\n  http2: true\n  headers:\n{}",
            yaml_lines(kv, "    ")
        )
    });
    let section = prop_oneof![
        tls,
        users,
        http,
        Just("rate_limit: {burst: 1}\n".to_owned())
    ];
    prop::collection::vec(section, 0..3).prop_map(|s| {
        // A section given twice is a YAML error; keep the first.
        let mut seen = std::collections::HashSet::new();
        s.into_iter()
            .filter(|sec| seen.insert(sec.split(':').next().unwrap_or("").to_owned()))
            .collect()
    })
}

fn parse_web(text: &str) -> Result<(), TestCaseError> {
    match WebConfig::parse(text, cert_dir()) {
        Ok(_) => Ok(()),
        Err(errors) => {
            prop_assert!(!errors.is_empty());
            for e in &errors {
                prop_assert!(!e.to_string().is_empty());
                prop_assert!(e.key().is_some_and(|k| !k.is_empty()), "{e:?}");
            }
            Ok(())
        }
    }
}

proptest! {
    #![proptest_config(ProptestConfig { cases: cases(), ..ProptestConfig::default() })]

    #[test]
    fn web_config_never_panics_on_arbitrary_text(text in "\\PC{0,300}") {
        parse_web(&text)?;
    }

    #[test]
    fn web_config_never_panics_on_arbitrary_bytes(bytes in prop::collection::vec(any::<u8>(), 0..300)) {
        parse_web(&String::from_utf8_lossy(&bytes))?;
    }

    #[test]
    fn web_config_never_panics_on_typed_documents(text in yaml_doc()) {
        parse_web(&text)?;
    }
}

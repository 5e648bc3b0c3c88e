//! The shipped example configs load, `default.toml` documents exactly the
//! defaults, and `check-config` reports every error with its key and exit 64.

mod support;

use std::process::Command;

use rehab_canary::config::profile::ProfileConfig;
use rehab_canary::config::Config;
use support::root;

#[test]
fn default_toml_matches_the_built_in_defaults() {
    let cfg = Config::load_with_env(Some(&root().join("config/default.toml")), []).unwrap();
    assert_eq!(cfg, Config::default());
}

#[test]
fn default_toml_documents_every_key() {
    // Every key of the serialized defaults appears in default.toml.
    let text = std::fs::read_to_string(root().join("config/default.toml")).unwrap();
    let value = toml::Value::try_from(Config::default()).unwrap();
    fn walk(prefix: &str, v: &toml::Value, text: &str) {
        if let toml::Value::Table(t) = v {
            for (k, v) in t {
                let path = if prefix.is_empty() {
                    k.clone()
                } else {
                    format!("{prefix}.{k}")
                };
                match v {
                    // A map of free names: checked key by key below.
                    toml::Value::Table(_) if path == "profiles" => {}
                    toml::Value::Table(_) => {
                        assert!(
                            text.contains(&format!("[{path}]")),
                            "section [{path}] missing"
                        );
                        walk(&path, v, text);
                    }
                    _ => assert!(
                        text.lines().any(|l| l
                            .trim_start()
                            .trim_start_matches("# ")
                            .starts_with(&format!("{k} ="))),
                        "key {path} is not documented in default.toml"
                    ),
                }
            }
        }
    }
    walk("", &value, &text);
    // Every key of a [profiles.NAME] table, optional ones included.
    let profile = serde_json::to_value(ProfileConfig::default()).unwrap();
    fn walk_json(prefix: &str, v: &serde_json::Value, text: &str) {
        for (k, v) in v.as_object().into_iter().flatten() {
            let path = format!("{prefix}.{k}");
            if v.is_object() {
                walk_json(&path, v, text);
            } else {
                assert!(
                    text.lines()
                        .any(|l| l.trim_start_matches("# ").starts_with(&format!("{k} ="))),
                    "profile key {path} is not documented in default.toml"
                );
            }
        }
    }
    walk_json("profiles.NAME", &profile, &text);
}

#[test]
fn example_configs_are_valid() {
    for name in ["demo.toml", "staging.example.toml"] {
        Config::load_with_env(Some(&root().join("config").join(name)), [])
            .unwrap_or_else(|e| panic!("{name}: {e}"));
    }
}

#[test]
fn check_config_lists_every_error_and_exits_64() {
    let dir = tempfile::tempdir().unwrap();
    let bad = dir.path().join("bad.toml");
    std::fs::write(
        &bad,
        "[traffic]\nevents_per_secnd = 5\nmax_in_flight = 0\n[target]\ntimeout = \"soon\"\n",
    )
    .unwrap();
    let out = Command::new(env!("CARGO_BIN_EXE_rehab-canary"))
        .args(["check-config", "--config"])
        .arg(&bad)
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(64));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("traffic.events_per_secnd"), "{err}");
    assert!(err.contains("target.timeout"), "{err}");

    let good = dir.path().join("good.toml");
    std::fs::write(&good, "[traffic]\nevents_per_second = 5\n").unwrap();
    let out = Command::new(env!("CARGO_BIN_EXE_rehab-canary"))
        .args(["check-config", "--config"])
        .arg(&good)
        .output()
        .unwrap();
    assert_eq!(
        out.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
}

#[test]
fn run_with_a_bad_config_exits_64_before_binding() {
    let out = Command::new(env!("CARGO_BIN_EXE_rehab-canary"))
        .args(["run"])
        .env("REHAB_CANARY__TRAFFIC__MAX_IN_FLIGHT", "0")
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(64));
    assert!(String::from_utf8_lossy(&out.stderr).contains("traffic.max_in_flight"));
}

#[test]
fn version_flag_prints_the_version() {
    let out = Command::new(env!("CARGO_BIN_EXE_rehab-canary"))
        .arg("--version")
        .output()
        .unwrap();
    assert!(out.status.success());
    assert!(String::from_utf8_lossy(&out.stdout).contains(env!("CARGO_PKG_VERSION")));
}

#[test]
fn every_documented_lag_probe_key_is_accepted() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("probes.toml");
    std::fs::write(
        &path,
        "[lag.probes.stream]\nenabled = true\ninterval = \"2s\"\n\
         route = \"patients/{patient}/stream?limit=50\"\nrule = \"marker\"\npointer = \"/events\"\n\
         [lag.probes.quality]\nrule = \"value\"\npointer = \"/x\"\nexpect = \"{marker}\"\n",
    )
    .unwrap();
    if let Err(e) = Config::load_with_env(Some(&path), []) {
        panic!("{e}");
    }
}

//! The shipped example configs load, `default.toml` documents exactly the
//! defaults, and `check-config` reports every error with its key and exit 64.

mod support;

use rehab_canary::config::profile::ProfileConfig;
use rehab_canary::config::Config;
use support::process::{canary, run};
use support::{root, temp_file, write};

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
    let (dir, bad) = temp_file(
        "bad.toml",
        "[traffic]\nevents_per_secnd = 5\nmax_in_flight = 0\n[target]\ntimeout = \"soon\"\n",
    );
    let out = run(canary(&["check-config", "--config"]).arg(&bad));
    assert_eq!(out.code, Some(64));
    let err = &out.stderr;
    assert!(err.contains("traffic.events_per_secnd"), "{err}");
    assert!(err.contains("target.timeout"), "{err}");

    let good = write(
        dir.path(),
        "good.toml",
        "[traffic]\nevents_per_second = 5\n",
    );
    run(canary(&["check-config", "--config"]).arg(&good)).assert_success("check-config");
}

#[test]
fn run_with_a_bad_config_exits_64_before_binding() {
    let out = run(canary(&["run"]).env("REHAB_CANARY__TRAFFIC__MAX_IN_FLIGHT", "0"));
    assert_eq!(out.code, Some(64));
    assert!(out.stderr.contains("traffic.max_in_flight"));
}

#[test]
fn version_flag_prints_the_version() {
    let out = run(&mut canary(&["--version"]));
    assert_eq!(out.code, Some(0));
    assert!(out.stdout.contains(env!("CARGO_PKG_VERSION")));
}

#[test]
fn every_documented_lag_probe_key_is_accepted() {
    let (_dir, path) = temp_file(
        "probes.toml",
        "[lag.probes.stream]\nenabled = true\ninterval = \"2s\"\n\
         route = \"patients/{patient}/stream?limit=50\"\nrule = \"marker\"\npointer = \"/events\"\n\
         [lag.probes.quality]\nrule = \"value\"\npointer = \"/x\"\nexpect = \"{marker}\"\n",
    );
    if let Err(e) = Config::load_with_env(Some(&path), []) {
        panic!("{e}");
    }
}

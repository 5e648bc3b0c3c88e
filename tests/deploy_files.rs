//! The deployment files, checked offline with the tools that judge them:
//! `systemd-analyze verify` and `security --offline=true` (systemd 252) on the
//! units, `yamllint --strict` and `promtool check config` on the compose
//! stack, plus structural checks that break when the stack would (a mounted
//! path that is gone, a scrape target that is no service, a Dockerfile
//! without its health check or non-root user). A missing tool fails the test
//! with what to install: scripts/test.sh installs them.

mod support;

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use rehab_canary::config::Config;
use serde_norway::Value;
use support::root as repo;

const UNITS: [&str; 2] = ["rehab-canary.service", "rehab-canary-sim.service"];
/// `systemd-analyze security` rates 0 (locked down) to 10; the issue asks for
/// "OK" or better.
const MAX_EXPOSURE: f64 = 1.5;
const BINARY: &str = "/usr/local/bin/rehab-canary";

fn read(rel: &str) -> String {
    std::fs::read_to_string(repo().join(rel)).unwrap_or_else(|e| panic!("{rel}: {e}"))
}

/// Runs a tool; a tool that is not installed fails the test with a hint.
fn run(cmd: &mut Command, install: &str) -> Output {
    let name = cmd.get_program().to_string_lossy().into_owned();
    match cmd.output() {
        Ok(out) => out,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            panic!("{name} is not installed ({install}); scripts/test.sh installs it")
        }
        Err(e) => panic!("cannot run {name}: {e}"),
    }
}

fn text(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}

// ---- systemd ----------------------------------------------------------------

/// The absolute paths of the programs a unit runs (`ExecStart=`,
/// `ExecReload=`, ...), prefixes such as `-` or `+` removed.
fn exec_paths(unit: &str) -> Vec<String> {
    unit.lines()
        .filter_map(|l| l.strip_prefix("Exec")?.split_once('='))
        .filter_map(|(_, cmd)| {
            cmd.trim_start_matches(['-', '@', ':', '+', '!'])
                .split_whitespace()
                .next()
        })
        .map(str::to_owned)
        .collect()
}

/// An installed-looking root for `systemd-analyze verify --root`: the host's
/// system units (sysinit.target and the rest that every service depends
/// on), our units in /etc/systemd/system, and an executable stub at every
/// program path the units run. Without --root, verify looks for
/// /usr/local/bin/rehab-canary on this machine.
fn verify_root(units: &[(&str, String)]) -> tempfile::TempDir {
    let root = tempfile::tempdir().unwrap();
    let host_units = ["/usr/lib/systemd/system", "/lib/systemd/system"]
        .into_iter()
        .map(Path::new)
        .find(|p| p.join("sysinit.target").exists())
        .expect("the host's systemd units (package `systemd`)");
    copy_tree(host_units, &root.path().join("usr/lib/systemd/system"));
    let etc = root.path().join("etc/systemd/system");
    std::fs::create_dir_all(&etc).unwrap();
    for (name, text) in units {
        std::fs::write(etc.join(name), text).unwrap();
        for program in exec_paths(text) {
            let stub = root.path().join(program.trim_start_matches('/'));
            std::fs::create_dir_all(stub.parent().unwrap()).unwrap();
            std::fs::write(&stub, "#!/bin/sh\nexit 0\n").unwrap();
            use std::os::unix::fs::PermissionsExt;
            std::fs::set_permissions(&stub, std::fs::Permissions::from_mode(0o755)).unwrap();
        }
    }
    root
}

/// Copies files and (as links) symlinks; unit directories hold both.
fn copy_tree(from: &Path, to: &Path) {
    std::fs::create_dir_all(to).unwrap();
    for entry in std::fs::read_dir(from).unwrap() {
        let entry = entry.unwrap();
        let (src, dst) = (entry.path(), to.join(entry.file_name()));
        let kind = entry.file_type().unwrap();
        if kind.is_symlink() {
            std::os::unix::fs::symlink(std::fs::read_link(&src).unwrap(), &dst).unwrap();
        } else if kind.is_dir() {
            copy_tree(&src, &dst);
        } else {
            std::fs::copy(&src, &dst).unwrap();
        }
    }
}

/// `systemd-analyze verify` of `units` as installed: the exit status and the
/// stderr lines about our units (others come from the host's own units).
fn verify(units: &[(&str, String)]) -> (bool, Vec<String>) {
    let root = verify_root(units);
    let mut cmd = Command::new("systemd-analyze");
    cmd.arg("verify")
        .arg(format!("--root={}", root.path().display()));
    cmd.args(units.iter().map(|(name, _)| name));
    let out = run(&mut cmd, "apt package `systemd`");
    let stderr = text(&out.stderr);
    let ours: Vec<String> = stderr
        .lines()
        .filter(|l| units.iter().any(|(name, _)| l.contains(name)))
        .map(str::to_owned)
        .collect();
    if ours.is_empty() && !stderr.trim().is_empty() {
        eprintln!("systemd-analyze verify, about other units:\n{stderr}");
    }
    (out.status.success(), ours)
}

fn unit(name: &str) -> (&str, String) {
    (name, read(&format!("systemd/{name}")))
}

#[test]
fn systemd_units_verify_clean() {
    let units: Vec<_> = UNITS.into_iter().map(unit).collect();
    for (name, text) in &units {
        let paths = exec_paths(text);
        assert!(
            paths.first().map(String::as_str) == Some(BINARY),
            "{name}: ExecStart must run {BINARY} (the README installs it there): {paths:?}"
        );
    }
    let (ok, warnings) = verify(&units);
    assert!(
        ok && warnings.is_empty(),
        "systemd-analyze verify: {warnings:#?}"
    );

    // The harness does see problems: verify exits 0 on an unknown key and a
    // bad value, and only says so on stderr.
    let broken = units[0].1.replace(
        "UMask=0077",
        "UMask=0077\nProtectSystem=everything\nSandboxing=yes",
    );
    let (_, warnings) = verify(&[(UNITS[0], broken)]);
    assert!(
        warnings.iter().any(|w| w.contains("Sandboxing"))
            && warnings.iter().any(|w| w.contains("everything")),
        "a broken unit went unnoticed: {warnings:#?}"
    );
}

/// "Overall exposure level for x.service: 1.1 OK 🙂" → 1.1
fn exposure(output: &str) -> Option<f64> {
    let line = output
        .lines()
        .find(|l| l.contains("Overall exposure level"))?;
    line.rsplit_once(": ")?
        .1
        .split_whitespace()
        .next()?
        .parse()
        .ok()
}

#[test]
fn systemd_units_are_hardened() {
    for name in UNITS {
        let path = repo().join("systemd").join(name);
        let out = run(
            Command::new("systemd-analyze")
                .args(["security", "--offline=true", "--no-pager"])
                .arg(&path),
            "apt package `systemd`",
        );
        let stdout = text(&out.stdout);
        let level = exposure(&stdout).unwrap_or_else(|| {
            panic!(
                "{name}: no exposure level in:\n{stdout}\n{}",
                text(&out.stderr)
            )
        });
        assert!(
            level <= MAX_EXPOSURE,
            "{name}: exposure {level} > {MAX_EXPOSURE}:\n{stdout}"
        );
    }
}

#[test]
fn the_token_reaches_the_daemon_as_a_credential_file() {
    let (_, text) = unit(UNITS[0]);
    assert!(text.contains("\nLoadCredential=token:/etc/rehab-canary/token\n"));
    assert!(text.contains("\nExecReload=/bin/kill -HUP $MAINPID\n"));
    // The unit's environment, with %d as systemd expands it, is accepted by
    // the config loader on top of the config the README installs.
    let env: Vec<(String, String)> = text
        .lines()
        .filter_map(|l| l.strip_prefix("Environment="))
        .filter_map(|kv| kv.split_once('='))
        .map(|(k, v)| {
            let v = v.replace("%d", "/run/credentials/rehab-canary.service");
            (k.to_owned(), v)
        })
        .collect();
    assert!(
        env.iter()
            .any(|(k, v)| k == "REHAB_CANARY__AUTH__TOKEN_FILE"
                && v == "/run/credentials/rehab-canary.service/token"),
        "{env:?}"
    );
    let cfg = Config::load_with_env(
        Some(&repo().join("config/staging.example.toml")),
        env.clone(),
    )
    .unwrap_or_else(|e| panic!("{env:?}: {e}"));
    assert_eq!(
        cfg.auth.token_file.as_deref(),
        Some(Path::new("/run/credentials/rehab-canary.service/token"))
    );
}

/// The unit's memory bounds match the pod's limit: one sizing, from the
/// benchmarks, wherever the daemon runs.
#[test]
fn the_unit_and_the_pod_share_one_memory_limit() {
    let (_, unit) = unit(UNITS[0]);
    let key = |k: &str| {
        unit.lines()
            .find_map(|l| l.strip_prefix(k))
            .unwrap_or_else(|| panic!("{k} missing"))
            .to_owned()
    };
    assert_eq!(key("MemoryMax="), "128M");
    let high: u64 = key("MemoryHigh=").trim_end_matches('M').parse().unwrap();
    assert!(
        high < 128,
        "MemoryHigh {high}M must throttle before MemoryMax"
    );
    let sts = read("deploy/kubernetes/base/statefulset.yaml");
    assert!(sts.contains("memory: 128Mi"), "the pod's limit changed");
}

// ---- container ----------------------------------------------------------------

/// Dockerfile instructions: comments dropped, continuation lines joined.
fn instructions(dockerfile: &str) -> Vec<(String, String)> {
    let mut out = Vec::new();
    let mut current = String::new();
    for line in dockerfile.lines() {
        let trimmed = line.trim();
        if trimmed.starts_with('#') || (current.is_empty() && trimmed.is_empty()) {
            continue;
        }
        match trimmed.strip_suffix('\\') {
            Some(part) => {
                current.push_str(part);
                current.push(' ');
            }
            None => {
                current.push_str(trimmed);
                let (op, args) = current
                    .split_once(char::is_whitespace)
                    .unwrap_or((&current, ""));
                out.push((op.to_uppercase(), args.trim().to_owned()));
                current.clear();
            }
        }
    }
    out
}

#[test]
fn dockerfile_is_multi_stage_non_root_with_a_healthcheck() {
    let dockerfile = read("deploy/container/Dockerfile");
    let ins = instructions(&dockerfile);
    let stages: Vec<&String> = ins
        .iter()
        .filter(|(op, _)| op == "FROM")
        .map(|(_, a)| a)
        .collect();
    assert!(stages.len() >= 2, "multi-stage: {stages:?}");
    let builder = stages[0]
        .split_whitespace()
        .collect::<Vec<_>>()
        .windows(2)
        .find(|w| w[0].eq_ignore_ascii_case("as"))
        .map(|w| w[1].to_owned())
        .expect("the build stage is named");
    let last_from = ins.iter().rposition(|(op, _)| op == "FROM").unwrap();
    let runtime = &ins[last_from..];
    let has =
        |op: &str, pred: &dyn Fn(&str) -> bool| runtime.iter().any(|(o, a)| o == op && pred(a));

    assert!(
        ins.iter()
            .any(|(op, a)| op == "RUN" && a.contains("cargo build --release --locked")),
        "cargo build --release --locked"
    );
    assert!(
        has("COPY", &|a| a.starts_with(&format!("--from={builder} "))
            && a.ends_with(BINARY)),
        "the runtime stage copies the binary from {builder} to {BINARY}"
    );
    // A numeric, non-root user, so that Kubernetes' runAsNonRoot can check it.
    let user = runtime
        .iter()
        .rfind(|(op, _)| op == "USER")
        .map(|(_, a)| a.clone())
        .expect("USER");
    let uid: u32 = user
        .split(':')
        .next()
        .unwrap()
        .parse()
        .expect("numeric USER");
    assert_ne!(uid, 0, "USER {user}");
    assert!(has("EXPOSE", &|a| a
        .split_whitespace()
        .any(|p| p == "8742")));
    assert!(has("ENV", &|a| a
        .contains("REHAB_CANARY__SERVER__LISTEN=0.0.0.0:8742")));
    // The health check is the binary itself, in exec form (no shell, no curl).
    let check = runtime
        .iter()
        .find(|(op, _)| op == "HEALTHCHECK")
        .map(|(_, a)| a.clone())
        .expect("HEALTHCHECK");
    let exec = check.split_once("CMD ").expect("HEALTHCHECK ... CMD").1;
    let argv: Vec<String> = serde_json::from_str(exec).expect("exec form (a JSON array)");
    assert_eq!(
        argv[..2],
        [BINARY.to_owned(), "healthcheck".to_owned()],
        "{argv:?}"
    );
    for tool in ["curl", "wget"] {
        assert!(
            !ins.iter().any(|(op, a)| op != "LABEL" && a.contains(tool)),
            "no {tool} in the image"
        );
    }

    // Everything COPY takes from the context exists and is not ignored.
    let ignored: Vec<String> = read(".dockerignore")
        .lines()
        .map(str::trim)
        .filter(|l| !l.is_empty() && !l.starts_with('#'))
        .map(|l| l.trim_end_matches('/').to_owned())
        .collect();
    for (_, args) in ins
        .iter()
        .filter(|(op, a)| op == "COPY" && !a.starts_with("--from"))
    {
        let parts: Vec<&str> = args
            .split_whitespace()
            .filter(|p| !p.starts_with("--"))
            .collect();
        for src in &parts[..parts.len() - 1] {
            assert!(
                repo().join(src).exists(),
                "COPY {src}: not in the repository"
            );
            assert!(
                !ignored
                    .iter()
                    .any(|i| src == i || src.starts_with(&format!("{i}/"))),
                "COPY {src}: excluded by .dockerignore"
            );
        }
    }
    // The config baked in as the default loads.
    let baked = ins
        .iter()
        .find(|(op, a)| op == "COPY" && a.ends_with("/etc/rehab-canary/config.toml"))
        .map(|(_, a)| a.split_whitespace().next().unwrap().to_owned())
        .expect("a default config");
    Config::load_with_env(Some(&repo().join(&baked)), Vec::new())
        .unwrap_or_else(|e| panic!("{baked}: {e}"));
}

// ---- compose --------------------------------------------------------------------

const COMPOSE_DIR: &str = "deploy/compose";

fn yaml(rel: &str) -> Value {
    let mut v: Value = serde_norway::from_str(&read(rel)).unwrap_or_else(|e| panic!("{rel}: {e}"));
    v.apply_merge().unwrap();
    v
}

fn compose() -> Value {
    yaml(&format!("{COMPOSE_DIR}/compose.yaml"))
}

fn services(compose: &Value) -> &serde_norway::Mapping {
    compose["services"].as_mapping().expect("services")
}

fn strings(v: &Value) -> Vec<String> {
    v.as_sequence()
        .map(|s| {
            s.iter()
                .filter_map(|x| x.as_str().map(str::to_owned))
                .collect()
        })
        .unwrap_or_default()
}

/// A service's bind mounts as (host path relative to the repository,
/// container path); named volumes are left out.
fn bind_mounts(service: &Value) -> Vec<(PathBuf, String)> {
    strings(&service["volumes"])
        .iter()
        .filter(|v| v.starts_with('.') || v.starts_with('/'))
        .map(|v| {
            let mut parts = v.split(':');
            let host = parts.next().unwrap();
            let container = parts.next().expect("host:container").to_owned();
            (Path::new(COMPOSE_DIR).join(host), container)
        })
        .collect()
}

fn normalize(p: &Path) -> PathBuf {
    let mut out = PathBuf::new();
    for c in p.components() {
        match c {
            std::path::Component::ParentDir => {
                out.pop();
            }
            std::path::Component::CurDir => {}
            c => out.push(c),
        }
    }
    out
}

/// Where a container path comes from on the host (through a bind mount),
/// relative to the repository.
fn host_path(service: &Value, container_path: &str) -> Option<PathBuf> {
    bind_mounts(service)
        .into_iter()
        .filter_map(|(host, target)| {
            let rest = Path::new(container_path).strip_prefix(&target).ok()?;
            Some((target.len(), normalize(&host.join(rest))))
        })
        .max_by_key(|(len, _)| *len)
        .map(|(_, p)| p)
}

fn yaml_files(dir: &Path, out: &mut Vec<PathBuf>) {
    for entry in std::fs::read_dir(dir).unwrap() {
        let path = entry.unwrap().path();
        if path.is_dir() {
            yaml_files(&path, out);
        } else if path.extension().is_some_and(|e| e == "yml" || e == "yaml") {
            out.push(path);
        }
    }
}

#[test]
fn compose_yaml_passes_yamllint_strict() {
    let mut files = Vec::new();
    yaml_files(&repo().join(COMPOSE_DIR), &mut files);
    assert!(files.len() >= 3, "{files:?}");
    let lint = |cmd: &mut Command| {
        cmd.current_dir(repo())
            .args(["--strict", "--format", "parsable", "-c", ".yamllint"])
            .args(&files)
            .output()
    };
    // pip --user puts the script in ~/.local/bin, which may not be on PATH.
    let missing =
        "yamllint is not installed (PyPI package `yamllint`); scripts/test.sh installs it";
    let out = match lint(&mut Command::new("yamllint")) {
        Ok(out) => out,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            let out = lint(Command::new("python3").args(["-m", "yamllint"])).expect(missing);
            assert!(
                !text(&out.stderr).contains("No module named yamllint"),
                "{missing}"
            );
            out
        }
        Err(e) => panic!("cannot run yamllint: {e}"),
    };
    assert!(
        out.status.success(),
        "yamllint --strict:\n{}{}",
        text(&out.stdout),
        text(&out.stderr)
    );
}

#[test]
fn compose_stack_is_wired_together() {
    let compose = compose();
    let services = services(&compose);
    let names: BTreeSet<&str> = services.keys().filter_map(Value::as_str).collect();
    for want in ["sim", "canary", "prometheus", "alertmanager", "grafana"] {
        assert!(names.contains(want), "service {want} in {names:?}");
    }

    for (name, service) in services {
        let name = name.as_str().unwrap();
        for (host, _) in bind_mounts(service) {
            assert!(
                repo().join(&host).exists(),
                "{name}: bind-mounted {} is not in the repository",
                host.display()
            );
        }
        // Published on this machine only.
        for port in strings(&service["ports"]) {
            assert!(
                port.starts_with("127.0.0.1:"),
                "{name}: port {port} is not on localhost"
            );
        }
    }

    // The canary and the simulator: built from the Dockerfile, read-only,
    // probed by the binary itself.
    for name in ["canary", "sim"] {
        let s = &services[name];
        assert_eq!(s["read_only"], Value::Bool(true), "{name}: read_only");
        let context =
            Path::new(COMPOSE_DIR).join(s["build"]["context"].as_str().expect("build.context"));
        let dockerfile = context.join(s["build"]["dockerfile"].as_str().expect("build.dockerfile"));
        assert_eq!(
            normalize(&dockerfile),
            Path::new("deploy/container/Dockerfile"),
            "{name}"
        );
        assert_eq!(
            normalize(&context),
            Path::new(""),
            "{name}: the context is the repository"
        );
        let test = strings(&s["healthcheck"]["test"]);
        assert_eq!(
            test[..3],
            ["CMD", BINARY, "healthcheck"],
            "{name}: {test:?}"
        );
    }

    // The canary's config loads and targets the sim service.
    let canary = &services["canary"];
    let command = strings(&canary["command"]);
    let config_at = command
        .iter()
        .skip_while(|a| *a != "--config")
        .nth(1)
        .expect("run --config");
    let config = host_path(canary, config_at).expect("the canary config is mounted");
    let cfg = Config::load_with_env(Some(&repo().join(&config)), Vec::new())
        .unwrap_or_else(|e| panic!("{}: {e}", config.display()));
    let target = reqwest::Url::parse(&cfg.target.base_url).unwrap();
    assert_eq!(target.host_str(), Some("sim"));
    assert_eq!(target.port(), Some(4000));
    assert!(strings(&services["sim"]["command"]).contains(&"0.0.0.0:4000".to_owned()));
    let health = strings(&services["sim"]["healthcheck"]["test"]);
    assert!(
        health
            .iter()
            .any(|a| a.starts_with("http://127.0.0.1:4000/")),
        "{health:?}"
    );
    // Both sides use the same token.
    let token = &canary["environment"][cfg.auth.token_env.as_str()];
    assert!(
        token.is_string(),
        "the canary's {} is set",
        cfg.auth.token_env
    );
    assert_eq!(&services["sim"]["environment"]["REHAB_SIM_TOKENS"], token);

    // Prometheus scrapes and alerts to services of the stack, under the job
    // name the generated alerts select (slo.job).
    let prometheus = &services["prometheus"];
    let prom_config =
        host_path(prometheus, "/etc/prometheus/prometheus.yml").expect("prometheus.yml is mounted");
    let prom = yaml(prom_config.to_str().unwrap());
    let mut targets = Vec::new();
    for job in prom["scrape_configs"].as_sequence().unwrap() {
        for sc in job["static_configs"].as_sequence().unwrap() {
            targets.extend(
                strings(&sc["targets"])
                    .into_iter()
                    .map(|t| (job["job_name"].as_str().unwrap().to_owned(), t)),
            );
        }
    }
    for am in prom["alerting"]["alertmanagers"].as_sequence().unwrap() {
        for sc in am["static_configs"].as_sequence().unwrap() {
            targets.extend(
                strings(&sc["targets"])
                    .into_iter()
                    .map(|t| ("alertmanager".to_owned(), t)),
            );
        }
    }
    for (job, target) in &targets {
        let host = target.split(':').next().unwrap();
        assert!(names.contains(host), "{job}: {target} is not a service");
    }
    assert!(
        targets.contains(&(cfg.slo.job.clone(), "canary:8742".to_owned())),
        "{targets:?}"
    );
    assert!(targets.iter().any(|(_, t)| t == "sim:4000"), "{targets:?}");
    assert!(
        targets.iter().any(|(_, t)| t == "alertmanager:9093"),
        "{targets:?}"
    );
    // The rules it loads are the generated ones.
    let rules =
        host_path(prometheus, "/etc/prometheus/rules/rehab-canary.yml").expect("rules are mounted");
    assert_eq!(rules, Path::new("deploy/prometheus/rules/rehab-canary.yml"));
    let am = host_path(
        &services["alertmanager"],
        "/etc/alertmanager/alertmanager.yml",
    )
    .expect("alertmanager.yml");
    assert!(repo().join(am).is_file());

    // Grafana: the datasource is the stack's Prometheus, and the dashboard
    // provider's path holds the dashboards.
    let grafana = &services["grafana"];
    let provisioning = "/etc/grafana/provisioning";
    let ds_dir = host_path(grafana, &format!("{provisioning}/datasources"))
        .expect("datasources are provisioned");
    let mut ds_files = Vec::new();
    yaml_files(&repo().join(&ds_dir), &mut ds_files);
    let urls: Vec<String> = ds_files
        .iter()
        .flat_map(|f| {
            let v: Value = serde_norway::from_str(&std::fs::read_to_string(f).unwrap()).unwrap();
            v["datasources"]
                .as_sequence()
                .unwrap()
                .iter()
                .map(|d| d["url"].as_str().unwrap().to_owned())
                .collect::<Vec<_>>()
        })
        .collect();
    assert_eq!(urls, ["http://prometheus:9090"], "{ds_dir:?}");
    let dash_dir = host_path(grafana, &format!("{provisioning}/dashboards"))
        .expect("dashboards are provisioned");
    let mut providers = Vec::new();
    yaml_files(&repo().join(&dash_dir), &mut providers);
    assert!(!providers.is_empty());
    for file in providers {
        let v: Value = serde_norway::from_str(&std::fs::read_to_string(&file).unwrap()).unwrap();
        for p in v["providers"].as_sequence().unwrap() {
            let path = p["options"]["path"].as_str().unwrap();
            let host = host_path(grafana, path).unwrap_or_else(|| panic!("{path} is not mounted"));
            let json = std::fs::read_dir(repo().join(&host))
                .unwrap()
                .filter(|e| {
                    e.as_ref()
                        .unwrap()
                        .path()
                        .extension()
                        .is_some_and(|x| x == "json")
                })
                .count();
            assert!(json >= 2, "{}: dashboards", host.display());
        }
    }
}

/// `promtool check config` on the compose Prometheus config, laid out as
/// the container sees it (the mounts copied under a temporary root), so the
/// rule files it loads are checked too.
#[test]
fn compose_prometheus_config_passes_promtool() {
    let compose = compose();
    let prometheus = &services(&compose)["prometheus"];
    let root = tempfile::tempdir().unwrap();
    for (host, target) in bind_mounts(prometheus) {
        let dst = root.path().join(target.trim_start_matches('/'));
        let src = repo().join(&host);
        if src.is_dir() {
            copy_tree(&src, &dst);
        } else {
            std::fs::create_dir_all(dst.parent().unwrap()).unwrap();
            std::fs::copy(&src, &dst).unwrap();
        }
    }
    let config = root.path().join("etc/prometheus/prometheus.yml");
    let out = run(
        Command::new("promtool")
            .args(["check", "config"])
            .arg(&config),
        "apt package `prometheus`",
    );
    let all = format!("{}{}", text(&out.stdout), text(&out.stderr));
    assert!(out.status.success(), "promtool check config:\n{all}");
    assert!(
        all.contains("rules/rehab-canary.yml"),
        "the rules were checked:\n{all}"
    );
}
